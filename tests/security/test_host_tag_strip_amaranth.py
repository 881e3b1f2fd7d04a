"""HostTagStrip (hdl/packet/host_tag_strip.py) in amaranth.sim against the golden model's reading of a
frame on the host port (:meth:`NicModel._reinjection`, docs/security.md "IPS: divert and re-inject")
and the driver's packing (:func:`host_driver.blocks.security.reinjection`, ``split_host_tag``): a valid
re-injection leaves without its tag and reports the model's tag; a frame with the tag's ethertype
that the model does not take as a re-injection (``reinject`` clear, another version, a port the NIC
does not have) leaves unchanged, kind BAD; every other frame unchanged, kind NONE. Random lengths
(every length around the beats where the tag ends), idle input cycles and output back-pressure, at
W = 64, 128 and 256."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from hdl.packet.host_tag import HOST_TAG_ETHERTYPE, HOST_TAG_OFFSET, HOST_TAG_VERSION, HostTag
from hdl.packet.host_tag_strip import HostTagStrip, StripKind
from hdl.packet.layouts import encode
from host_driver.blocks.security import reinjection, split_host_tag
from host_driver.model.nic import NicModel
from tests.security.test_acl_mirror_amaranth import PORTS, config

HOST = PORTS.index("host")


def _frames(rng, n_bytes, count):
    lengths = [12, 14, 19, 20, 21, 60, 1514] + [n_bytes * k + d for k in range(1, 5) for d in range(-9, 10)
                                               if n_bytes * k + d >= 12]
    lengths += [rng.randrange(12, 300) for _ in range(count - len(lengths))]
    out = []
    for length in lengths:
        frame = bytes(rng.randrange(256) for _ in range(length))
        if rng.random() < 0.8 and length >= 14:
            tag = {"tpid": HOST_TAG_ETHERTYPE, "version": HOST_TAG_VERSION, "acl_punt": rng.randrange(2),
                   "match_punt": rng.randrange(2), "in_port": rng.randrange(len(PORTS)), "vlan": rng.randrange(4096),
                   "egress": rng.randrange(1 << len(PORTS)), "reinject": 0, "reserved": 0}
            bad = rng.random()
            tag["reinject"] = int(bad < 0.3)     # the bad tags below are sent as re-injections
            if bad < 0.1:
                tag["version"] = 2
            elif bad < 0.2:
                tag["in_port"] = rng.randrange(len(PORTS), 16)
            elif bad < 0.3:
                tag["egress"] |= 1 << rng.randrange(len(PORTS), 16)
            diverted = frame[:HOST_TAG_OFFSET] + encode(HostTag, tag) + frame[HOST_TAG_OFFSET:]
            # The host's re-injection, or the diverted frame sent back unchanged (reinject clear).
            frame = reinjection(diverted) if bad >= 0.4 else diverted
            frame = frame[:length] if rng.random() < 0.1 else frame       # cut inside the tag at times
        out.append((frame, rng.random() < 0.2))
    return out


def _expected(model, frame):
    """(kind, frame out, tag fields) as the model reads the frame on the host port."""
    tag = model._reinjection(frame, HOST)
    if tag is not None:
        fields, inner = split_host_tag(frame)
        return StripKind.REINJECT, inner, fields
    tpid = len(frame) >= HOST_TAG_OFFSET + HostTag.BYTES and \
        int.from_bytes(frame[HOST_TAG_OFFSET:HOST_TAG_OFFSET + 2], "big") == HOST_TAG_ETHERTYPE
    return (StripKind.BAD if tpid else StripKind.NONE), frame, None


@pytest.mark.parametrize("width", [64, 128, 256])
def test_strip_matches_the_models_reading(width):
    rng = random.Random(width)
    n_bytes = width // 8
    frames = _frames(rng, n_bytes, 90)
    model = NicModel(config())
    dut = HostTagStrip(width, len(PORTS))
    got, tags = [], []

    async def source(ctx):
        for frame, bad in frames:
            beats = [frame[k:k + n_bytes] for k in range(0, len(frame), n_bytes)]
            for k, beat in enumerate(beats):
                while rng.random() < 0.2:
                    ctx.set(dut.s_axis.tvalid, 0)
                    await ctx.tick()
                ctx.set(dut.s_axis.tdata, int.from_bytes(beat, "little"))
                ctx.set(dut.s_axis.tkeep, (1 << len(beat)) - 1)
                ctx.set(dut.s_axis.tlast, k == len(beats) - 1)
                ctx.set(dut.s_axis.tuser, bad and k == len(beats) - 1)
                ctx.set(dut.s_axis.tvalid, 1)
                await ctx.tick().until(dut.s_axis.tready)
            ctx.set(dut.s_axis.tvalid, 0)

    async def sink(ctx):
        current, users = b"", []
        o = dut.m_axis
        ctx.set(o.tready, 1)
        async for _, _, valid, ready, data, keep, last, user, tag_valid, tag in ctx.tick().sample(
                o.tvalid, o.tready, o.tdata, o.tkeep, o.tlast, o.tuser, dut.m_tag.valid, dut.m_tag.payload):
            if tag_valid:
                tags.append(tag)
            if valid and ready:
                assert keep & (keep + 1) == 0 and keep, f"frame {len(got)}: tkeep {keep:#x} not packed"
                current += data.to_bytes(n_bytes, "little")[:bin(keep).count("1")]
                users.append(user)
                if last:
                    got.append((current, users))
                    current, users = b"", []
                    if len(got) == len(frames):
                        return
            ctx.set(o.tready, rng.random() < 0.8)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    assert len(tags) == len(frames)
    kinds = set()
    for k, ((frame, bad), (out, users), tag) in enumerate(zip(frames, got, tags, strict=True)):
        kind, want, fields = _expected(model, frame)
        kinds.add(kind)
        assert users[:-1] == [0] * (len(users) - 1) and users[-1] == bad, k
        assert (StripKind(tag.kind), out) == (kind, want), (k, len(frame))
        if fields is not None:
            assert {name: int(getattr(tag.tag, name)) for name in fields} == fields, k
    assert kinds == set(StripKind)
