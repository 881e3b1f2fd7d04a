"""IPS divert and re-inject in the switch NIC's gateware against the golden model (docs/security.md,
"IPS: divert and re-inject").

NicTop (a five-port switch: a trunk uplink, two VMs in VLANs 1 and 2, the host port, a trunk monitor
port with a mirror session) in amaranth.sim, programmed by the driver over its AXI-Lite port with a
content drop rule the matcher cannot prefilter (a two-byte pattern: the compiler makes its header
ACL punt entries), a header drop, a header alert and an ACL mirror entry, then IPS mode
(``Security.set_ips``). Random traffic, a few frames from the host port with a tag the NIC must not
take. The host side, played by the test, unpacks every tagged frame the host port sends
(``split_host_tag``) and gives a fixed verdict: every third diverted frame dropped, the others sent
back (``reinjection``) before the next frame, as the model's host answers at once. Every record's
verdict, reason and egress (the re-injections' included), every byte each port sends and every
counter read back through the driver equal :class:`NicModel`'s for the same traffic and verdicts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random

import pytest
from amaranth.sim import Simulator
from nictop_watch import send_frame, watch_nictop
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether

from hdl.packet.host_tag import HOST_TAG_ETHERTYPE, HOST_TAG_OFFSET, HostTag
from hdl.packet.layouts import encode
from hdl.packet.meta import Verdict
from hdl.top import NicTop
from host_driver.blocks.security import reinjection, split_host_tag
from host_driver.driver import Nic
from host_driver.model.nic import ModelBus, NicModel
from host_driver.rules import compile_rules, parse_rules
from host_driver.rules.content import compile_content
from tests.security.test_acl_mirror_amaranth import MACS, PORTS, SimBus, config
from tests.security.test_security_top_amaranth import Axil

HOST = PORTS.index("host")
RULES = """\
drop udp any any -> any 5000 (msg:"evil"; content:"ev"; sid:1;)
drop udp any any -> any 9 (msg:"discard"; sid:2;)
alert tcp any any -> any 80 (msg:"web"; sid:3;)
"""
#: With the payload matcher: a content drop rule it prefilters (its hits punt: match_punt).
MATCHER_RULES = """\
drop udp any any -> any 7000 (msg:"evil payload"; content:"evil"; sid:4;)
"""


def entries():
    """The deciding entries, then the content rule's punt entries, then a mirror entry for UDP to 53
    (a mirrored frame is not punted: its copy goes with the frame)."""
    compiled = compile_rules(parse_rules(RULES, "ips.rules"), capacity=36)
    udp = next(e for e in compiled.entries if e.sid == 2)
    mirror = dataclasses.replace(udp, action="mirror", sid=10, dport=dataclasses.replace(udp.dport, lo=53, hi=53))
    return compiled.entries + compiled.punt_entries + [mirror]


def random_frames(rng: random.Random, n: int) -> list[tuple[str, bytes]]:
    frames = []
    for _ in range(n):
        port = rng.choice(["phy0", "phy0", "vm1", "vm2", "host"])
        src, dst = rng.choice(MACS), rng.choice(MACS + ["ff:ff:ff:ff:ff:ff"])
        v6 = rng.random() < 0.2
        ip = (IPv6(src=f"2001:db8::{rng.randrange(1, 5):x}", dst=f"2001:db8::{rng.randrange(1, 5):x}") if v6 else
              IP(src=rng.choice(["10.0.0.1", "192.168.1.5"]), dst=rng.choice(["10.0.0.9", "8.8.8.8"])))
        l4 = (UDP(sport=rng.randrange(1024, 65535), dport=rng.choice([5000, 5000, 7000, 7000, 9, 53]))
              if rng.random() < 0.7
              else TCP(sport=rng.randrange(1024, 65535), dport=rng.choice([80, 22]), flags="S"))
        eth = Ether(src=src, dst=dst)
        if port == "phy0" and rng.random() < 0.5:
            eth = eth / Dot1Q(vlan=2, prio=rng.randrange(8))          # VLAN 2 with a priority
        payload = rng.choice([b"ev", b"xx", b"evil"]) * rng.randrange(2, 30)
        frame = bytes(eth / ip / l4 / payload)
        if port == "host" and rng.random() < 0.3:
            # A tag the NIC does not take: a diverted frame sent back unchanged (reinject clear), or a
            # re-injection naming a port the NIC does not have. Dropped, reason MALFORMED.
            tag = {"tpid": HOST_TAG_ETHERTYPE, "version": 1, "reinject": rng.randrange(2), "in_port": 1,
                   "vlan": 1, "egress": 0b10}
            if tag["reinject"]:
                tag["egress"] = 1 << 9
            frame = frame[:HOST_TAG_OFFSET] + encode(HostTag, tag) + frame[HOST_TAG_OFFSET:]
        frames.append((port, frame))
    return frames


def tagged(frames: list[bytes]) -> list[bytes]:
    """The host-tagged frames among ``frames`` (those the NIC diverted)."""
    return [f for f in frames if f[HOST_TAG_OFFSET:HOST_TAG_OFFSET + 2] == HOST_TAG_ETHERTYPE.to_bytes(2, "big")]


def reinjected_result(result) -> bool:
    """The model's result is a re-injection's (a frame the host sent back)."""
    return result.in_port == HOST and result.security is None and result.verdict == Verdict.FORWARD


def host_passes(k: int) -> bool:
    """The host's fixed verdict on the k-th diverted frame: every third is dropped."""
    return k % 3 != 0


def matcher_program(cfg):
    """The matcher's table of :data:`MATCHER_RULES` (None for a build without the matcher)."""
    bits = cfg.security.matcher_index_bits
    return compile_content(parse_rules(MATCHER_RULES, "ips.rules"), index_bits=bits) if bits else None


def model_run(cfg, frames, acl):
    """(results, egress bytes per port, counters through the driver) of the golden model in IPS
    mode, its host giving :func:`host_passes`' verdicts."""
    model = NicModel(cfg)
    nic = Nic(ModelBus(model))

    async def program():
        await nic.discover()
        await nic.security.program(acl, matcher=matcher_program(cfg))
        await nic.security.set_ips(True)
    asyncio.run(program())
    results, egress = [], {p: [] for p in PORTS}
    diverted = 0

    def receive(port, frame):
        r = model.process(frame, port)
        results.append(r)
        for q in r.egress:
            egress[PORTS[q]].append(r.egress_frames[q])
        return r
    for port, frame in frames:
        r = receive(port, frame)
        if r.verdict == Verdict.PUNT:
            if host_passes(diverted):
                receive("host", reinjection(r.egress_frames[HOST]))
            diverted += 1
    return results, egress, asyncio.run(nic.counters())


@pytest.mark.slow          # 160 s and 205 s (2 cores at load 9): the driver over AXI-Lite, the host's round trips
@pytest.mark.parametrize("matcher_index_bits", [0, 6])
def test_gateware_diverts_as_the_model_on_random_traffic(matcher_index_bits):
    """Both of the gate's paths: without the payload matcher (the divert decided at its one join, no
    cycle added) and with it (the descriptor held until the second join, the matcher's result)."""
    cfg = config(matcher_index_bits=matcher_index_bits)
    rng = random.Random(15)
    frames = random_frames(rng, 60)
    acl = entries()
    want, want_egress, want_counters = model_run(cfg, frames, acl)
    dut = NicTop(cfg, reset_tree=False)
    records, egress, got_counters = [], {p: [] for p in PORTS}, {}

    async def main(ctx):
        nic = Nic(SimBus(Axil(ctx, dut.s_axil)))
        await nic.discover()
        await nic.security.program(acl, matcher=matcher_program(cfg))
        await nic.security.set_ips(True)

        async def send(port, frame):
            await send_frame(ctx, dut, port, frame)
            expected = len(records) + 1
            while len(records) < expected:          # its record: the NIC has decided
                await ctx.tick()

        diverted = 0
        for port, frame in frames:
            await send(port, frame)
            if int(records[-1].verdict) == Verdict.PUNT:
                # The host: take the tagged frame off the host port, decide, send it back or not.
                while len(tagged(egress["host"])) <= diverted:
                    await ctx.tick()
                if host_passes(diverted):
                    await send("host", reinjection(tagged(egress["host"])[diverted]))
                diverted += 1
        await ctx.tick().repeat(400)
        got_counters.update(await nic.counters())

    async def watch(ctx):
        await watch_nictop(ctx, dut, cfg, records, egress)

    sim = Simulator(dut)
    sim.add_clock(6.4e-9)
    sim.add_testbench(main)
    sim.add_testbench(watch, background=True)
    sim.run()

    assert len(records) == len(want)
    for k, (r, w) in enumerate(zip(records, want, strict=True)):
        want_mask = sum(1 << q for q in w.egress)
        assert (int(r.in_port), int(r.verdict), int(r.reason), int(r.egress)) == \
            (w.in_port, int(w.verdict), int(w.reason), want_mask), f"frame {k}"
    # The host's side: each diverted frame is the frame received, with the tag the model gave it.
    diverted = [(w, frames[k][1]) for k, w in enumerate(w for w in want if not reinjected_result(w))
                if w.verdict == Verdict.PUNT]
    assert len(tagged(egress["host"])) == len(diverted)
    for got, (w, frame) in zip(tagged(egress["host"]), diverted, strict=True):
        fields, inner = split_host_tag(got)
        assert inner == frame
        assert (fields["in_port"], fields["reinject"]) == (w.in_port, 0)
    assert egress == want_egress
    assert got_counters == want_counters
    # The traffic covers the cases: diverted frames from both VLANs (a tagged one kept as received),
    # the rule's frames the switch drops anyway (not diverted), frames the host port gets untagged.
    assert len(diverted) > 5
    assert any(received[12:14] == b"\x81\x00" for _, received in diverted)
    assert any(w.security is not None and w.security.acl_punt and w.verdict == Verdict.DROP for w in want)
    assert len(egress["host"]) > len(tagged(egress["host"]))
    reinjections = sum(reinjected_result(w) for w in want)
    assert 3 < reinjections < len(diverted), "frames re-injected and frames the host dropped"
    assert any(w.in_port == HOST and w.reason.name == "MALFORMED" for w in want), "a bad tag dropped"
    if matcher_index_bits:
        assert any(w.verdict == Verdict.PUNT and not w.security.acl_punt for w in want), "a matcher punt diverted"
