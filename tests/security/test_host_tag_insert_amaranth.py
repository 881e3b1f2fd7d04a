"""HostTagInsert (hdl/packet/host_tag_insert.py) in amaranth.sim against the host driver's reading of
a diverted frame (:func:`host_driver.blocks.security.split_host_tag`): every tagged frame out splits
into the tag asked for and the frame in, byte for byte; untagged frames pass unchanged; ``tuser``
stays on the last beat. Random lengths (12 bytes to a jumbo's start, including every length around
the beat where the tag makes an extra beat), idle input cycles and output back-pressure, at W = 64,
128 and 256."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from hdl.packet.host_tag import HOST_TAG_ETHERTYPE, HOST_TAG_VERSION, HostTag
from hdl.packet.host_tag_insert import HostTagInsert
from host_driver.blocks.security import split_host_tag


def _frames(rng, n_bytes, count):
    lengths = [12, 13, 14, 60, 64, 1514] + [n_bytes * k + d for k in range(1, 5) for d in range(-9, 2)
                                           if n_bytes * k + d >= 12]
    lengths += [rng.randrange(12, 300) for _ in range(count - len(lengths))]
    out = []
    for length in lengths:
        frame = bytes(rng.randrange(256) for _ in range(length))
        tag = None
        if rng.random() < 0.7:
            tag = {"tpid": HOST_TAG_ETHERTYPE, "version": HOST_TAG_VERSION, "acl_punt": rng.randrange(2),
                   "match_punt": rng.randrange(2), "in_port": rng.randrange(16), "vlan": rng.randrange(4096),
                   "egress": rng.randrange(1 << 16)}
        out.append((frame, tag, rng.random() < 0.2))
    return out


@pytest.mark.parametrize("width", [64, 128, 256])
def test_insert_matches_the_drivers_split(width):
    rng = random.Random(width)
    n_bytes = width // 8
    frames = _frames(rng, n_bytes, 60)
    dut = HostTagInsert(width)
    got = []

    async def source(ctx):
        for frame, tag, bad in frames:
            ctx.set(dut.s_tag.payload, {"insert": tag is not None, "tag": tag or {}})
            ctx.set(dut.s_tag.valid, 1)
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
                *_, tag_taken = await ctx.tick().sample(dut.s_tag.ready).until(dut.s_axis.tready)
            ctx.set(dut.s_axis.tvalid, 0)
            if not tag_taken:           # the tag is held until the frame's last beat out (an extra beat)
                await ctx.tick().until(dut.s_tag.ready)
            ctx.set(dut.s_tag.valid, 0)

    async def sink(ctx):
        current, users = b"", []
        o = dut.m_axis
        ctx.set(o.tready, 1)
        # Values sampled at each clock edge: a beat moves when valid and ready were both high there.
        async for _, _, valid, ready, data, keep, last, user in ctx.tick().sample(
                o.tvalid, o.tready, o.tdata, o.tkeep, o.tlast, o.tuser):
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
    for (frame, tag, bad), (out, users) in zip(frames, got, strict=True):
        assert users[:-1] == [0] * (len(users) - 1) and users[-1] == bad
        if tag is None:
            assert out == frame
        else:
            fields, inner = split_host_tag(out)
            assert (fields, inner) == ({**tag, "reinject": 0, "reserved": 0}, frame), len(frame)
    assert HostTag.BYTES == 8
