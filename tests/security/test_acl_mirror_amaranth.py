"""The ACL's mirror action in the switch NIC (docs/security.md, "ACL actions punt and mirror"):
a forwarded frame whose first hit is a mirror entry is also copied whole to the mirror session's
monitor port, as the session's ingress copy is made, and counted (SECPORT ACL_MIRRORS).

* The golden model against the switch's own mirror path: the copy the ACL makes of each frame is
  the copy a session mirroring the frame's ingress port makes of it (same bytes, same tag for the
  monitor port); a frame the ACL mirrors and the session also copies leaves one copy; a frame
  dropped (by the switch or by default deny) gets none.
* The gateware against the model: NicTop (a five-port switch with a mirror session on a trunk
  monitor port) in amaranth.sim, programmed by the driver over its AXI-Lite port, random traffic
  (unicast, flood, VLAN 2 with priorities, IPv4/IPv6, TCP/UDP): every record's egress and reason,
  every byte each port sends and every counter read back through the driver equal the model's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import random

import pytest
from amaranth.sim import Simulator
from nictop_watch import send_frame, watch_nictop
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether

from hdl.config import NicConfig
from hdl.security.settings import SecuritySettings
from hdl.switch.settings import SwitchPort, SwitchSettings
from hdl.top import NicTop
from host_driver.bus import Bus, BusError
from host_driver.driver import Nic
from host_driver.model.nic import ModelBus, NicModel
from host_driver.rules import compile_rules, parse_rules
from tests.security.test_security_top_amaranth import Axil

PORTS = ("phy0", "vm1", "vm2", "host", "mon")
MON = PORTS.index("mon")
RULES = """\
drop udp any any -> any 9 (msg:"discard"; sid:1;)
alert tcp any any -> any 80 (msg:"web"; sid:2;)
pass udp any any -> any 123 (msg:"ntp"; sid:3;)
"""
MACS = [f"02:00:00:00:00:{i:02x}" for i in range(1, 7)]


def config(mirror_ingress: int = 0, default_deny: bool = False, matcher_index_bits: int = 0) -> NicConfig:
    """phy0 a trunk (native VLAN 1, VLAN 2), vm1 and host in VLAN 1, vm2 in VLAN 2, mon a trunk (native
    1) and the monitor port of a session copying what vm2 sends (and ``mirror_ingress``)."""
    ports = (SwitchPort(trunk=True, pvid=1, vlans=(2,)), SwitchPort(pvid=1), SwitchPort(pvid=2), SwitchPort(pvid=1),
             SwitchPort(trunk=True, pvid=1, vlans=(2,)))
    return NicConfig(ports=PORTS, switch=SwitchSettings(ports=ports, mac_sets=16, recorder_depth=16, mirror_to=MON,
                                                         mirror_egress=1 << 2, mirror_ingress=mirror_ingress),
                     security=SecuritySettings(acl_entries=36, flow_sets=16, matcher_index_bits=matcher_index_bits,
                                               default_deny=default_deny))


def entries():
    """The rules' entries, then two mirror entries after them (as the contract places them): UDP to
    port 53, and IPv4 TCP from 10.0.0.0/8 (behind the web alert for port 80: seen only as multi)."""
    compiled = compile_rules(parse_rules(RULES, "mirror.rules"), capacity=36).entries
    udp = next(e for e in compiled if e.sid == 1)
    tcp = next(e for e in compiled if e.sid == 2)
    return compiled + [dataclasses.replace(udp, action="mirror", sid=10, dport=dataclasses.replace(udp.dport, lo=53,
                                                                                                   hi=53)),
                       dataclasses.replace(tcp, action="mirror", sid=11, dport=None,
                                           src=ipaddress.ip_network("10.0.0.0/8"))]


def random_frames(rng: random.Random, n: int) -> list[tuple[str, bytes]]:
    frames = []
    for _ in range(n):
        port = rng.choice(["phy0", "phy0", "vm1", "vm2", "host"])
        src, dst = rng.choice(MACS), rng.choice(MACS + ["ff:ff:ff:ff:ff:ff"])
        v6 = rng.random() < 0.2
        ip = (IPv6(src=f"2001:db8::{rng.randrange(1, 5):x}", dst=f"2001:db8::{rng.randrange(1, 5):x}") if v6 else
              IP(src=rng.choice(["10.0.0.1", "10.1.2.3", "192.168.1.5"]), dst=rng.choice(["10.0.0.9", "8.8.8.8"])))
        l4 = (UDP(sport=rng.randrange(1024, 65535), dport=rng.choice([53, 53, 9, 123, 5000])) if rng.random() < 0.6
              else TCP(sport=rng.randrange(1024, 65535), dport=rng.choice([80, 22, 443]), flags="S"))
        eth = Ether(src=src, dst=dst)
        if port == "phy0" and rng.random() < 0.5:
            eth = eth / Dot1Q(vlan=2, prio=rng.randrange(8))          # VLAN 2 with a priority
        frames.append((port, bytes(eth / ip / l4 / (b"x" * rng.randrange(4, 40)))))
    return frames


def model_run(cfg: NicConfig, frames, acl) -> tuple[list, dict, dict]:
    """(results, egress bytes per port, counters through the driver) of the golden model."""
    model = NicModel(cfg)
    nic = Nic(ModelBus(model))

    async def program():
        await nic.discover()
        await nic.security.program(acl)
    asyncio.run(program())
    results, egress = [], {p: [] for p in PORTS}
    for port, frame in frames:
        r = model.process(frame, port)
        results.append(r)
        for q in r.egress:
            egress[PORTS[q]].append(r.egress_frames[q])
    return results, egress, asyncio.run(nic.counters())


@pytest.mark.parametrize("default_deny", [False, True])
def test_the_acl_copy_is_the_sessions_ingress_copy(default_deny):
    """The model's ACL mirror against its own SPAN path: the same traffic through the same NIC whose
    session also copies every port's ingress (and no mirror entries) gives each frame the ACL
    mirrors the very copy the ACL made; every other frame's monitor traffic is the session's. With
    default deny a mirror hit decides nothing, so the new flows it denies get no copy."""
    rng = random.Random(5)
    frames = random_frames(rng, 150)
    acl = entries()
    with_acl, _, counters = model_run(config(default_deny=default_deny), frames, acl)
    deciding = [e for e in acl if e.action != "mirror"]
    span, _, _ = model_run(config(mirror_ingress=0b01111, default_deny=default_deny), frames, deciding)
    plain, _, _ = model_run(config(default_deny=default_deny), frames, deciding)
    mirrored = copied = 0
    for a, s, p in zip(with_acl, span, plain, strict=True):
        hit = a.security.acl_hit and a.security.acl_action.name == "MIRROR"
        mirrored += hit
        assert (a.reason, sorted(set(a.egress) - {MON})) == (p.reason, sorted(set(p.egress) - {MON})), \
            "the mirror action changes nothing else"
        if hit and a.reason.name == "NONE":
            copied += 1
            assert a.egress_frames[MON] == s.egress_frames[MON], "the ACL's copy is the session's ingress copy"
        else:
            assert a.egress_frames.get(MON) == p.egress_frames.get(MON), "no ACL copy: the session's alone"
    assert counters["ports"]["mon"]["tx_packets"] == sum(MON in r.egress for r in with_acl)
    assert sum(c["security"]["acl_mirrors"] for c in counters["ports"].values()) == mirrored
    # The traffic covers the cases: copies made, mirror hits dropped (no copy: the switch's same-port
    # drops; with default deny the new flows), copies of frames the session copies anyway (vm2's
    # unicast and floods: one copy, the priority kept).
    assert mirrored > copied
    if not default_deny:
        assert copied > 5
        assert any(MON in p.egress and a.egress_frames[MON] != p.egress_frames[MON]
                   for a, p in zip(with_acl, plain, strict=True))
    else:
        assert any(a.security.acl_action.name == "MIRROR" and a.reason.name == "DEFAULT_DENY"
                   for a in with_acl if a.security.acl_hit)


class SimBus(Bus):
    """The driver's bus over NicTop's AXI-Lite port in amaranth.sim (:class:`Axil`)."""

    def __init__(self, axil: Axil):
        self.axil = axil

    async def read32(self, addr: int) -> int:
        try:
            return await self.axil.read(addr)
        except AssertionError as exc:
            raise BusError(addr, 2, "read", str(exc)) from exc

    async def write32(self, addr: int, value: int) -> None:
        try:
            await self.axil.write(addr, value & 0xFFFFFFFF)
        except AssertionError as exc:
            raise BusError(addr, 2, "write", str(exc)) from exc


@pytest.mark.slow          # 98 s: the driver programs the ACL over AXI-Lite in amaranth.sim
@pytest.mark.parametrize("matcher_index_bits", [0, 6])
def test_gateware_mirrors_as_the_model_on_random_traffic(matcher_index_bits):
    """Both of the gate's paths: without the payload matcher (one join) and with it (the copy decided
    at the first join, kept with the answer for the record's second join; an empty pattern table)."""
    cfg = config(matcher_index_bits=matcher_index_bits)
    rng = random.Random(11)
    frames = random_frames(rng, 60)
    acl = entries()
    want, want_egress, want_counters = model_run(cfg, frames, acl)
    dut = NicTop(cfg, reset_tree=False)
    records, egress, got_counters = [], {p: [] for p in PORTS}, {}

    async def main(ctx):
        nic = Nic(SimBus(Axil(ctx, dut.s_axil)))
        await nic.discover()
        await nic.security.program(acl)
        for port, frame in frames:
            await send_frame(ctx, dut, port, frame)
            await ctx.tick().repeat(4)
        await ctx.tick().repeat(400)
        got_counters.update(await nic.counters())

    async def watch(ctx):
        await watch_nictop(ctx, dut, cfg, records, egress)

    sim = Simulator(dut)
    sim.add_clock(6.4e-9)
    sim.add_testbench(main)
    sim.add_testbench(watch, background=True)
    sim.run()
    assert len(records) == len(frames)
    for k, (r, w) in enumerate(zip(records, want, strict=True)):
        want_mask = sum(1 << q for q in w.egress)
        assert (int(r.in_port), int(r.reason), int(r.egress)) == (w.in_port, int(w.reason), want_mask), f"frame {k}"
        action = r.acl_action.value if hasattr(r.acl_action, "value") else int(r.acl_action)
        assert (int(r.acl_hit), action) == (int(w.security.acl_hit),
                                            w.security.acl_action.value if w.security.acl_hit else 0), f"frame {k}"
    assert egress == want_egress
    assert got_counters == want_counters
    assert sum(w.security.acl_hit and w.security.acl_action.name == "MIRROR" and MON in w.egress for w in want) > 3
