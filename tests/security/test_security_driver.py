"""The security stage's driver (host_driver/blocks/security.py) over the golden model's register file:
programming, rule counters, the flow table dump, timeouts and default deny through the registers,
and the per-port drop accounting (received = forwarded + dropped)."""

from __future__ import annotations

import asyncio

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from hdl.config import NicConfig
from hdl.flow.flow_table import FlowState
from hdl.packet.meta import DropReason
from hdl.security.settings import SecuritySettings
from host_driver.blocks.security import SecurityError
from host_driver.driver import Nic, received_drops
from host_driver.model.flow import FlowEntry
from host_driver.model.nic import ModelBus, NicModel
from host_driver.rules import compile_rules, parse_rules

CYCLES_PER_MS = 156_250
PAD = Raw(b"x" * 20)


def frame(src, dst, l4):
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=src, dst=dst) / l4 / PAD)


@pytest.fixture
def nic():
    model = NicModel(NicConfig(security=SecuritySettings(acl_entries=72, flow_sets=4, flow_ways=2)))
    nic = Nic(ModelBus(model))
    asyncio.run(nic.discover())
    return model, nic


def test_program_counts_and_clears_rule_hits(nic):
    model, nic = nic
    entries = compile_rules(parse_rules('drop udp any any -> any 53 (sid:3;)\nalert tcp any any -> any 80 (sid:4;)'
                                        )).entries
    sec = nic.security
    assert asyncio.run(sec.geometry())["acl"].cycles_per_key == 8
    asyncio.run(sec.program(entries))
    for _ in range(3):
        model.process(frame("10.0.0.1", "10.0.0.2", UDP(sport=1, dport=53)), 0)
    model.process(frame("10.0.0.1", "10.0.0.2", TCP(sport=1, dport=80)), 0)
    hits = asyncio.run(sec.rule_hits(clear=True))
    assert [(h.sid, h.hits) for h in hits] == [(3, 3), (4, 1)]
    assert [h.hits for h in asyncio.run(sec.rule_hits())] == [0, 0]
    # Drops are the port's: received = forwarded + dropped.
    port = asyncio.run(nic.counters())["ports"]["phy0"]
    assert port["security"]["drop_acl"] == 3 and port["security"]["alerts"] == 4
    assert port["rx_packets"] == 1 + received_drops(port)


def test_flow_dump_timeouts_and_default_deny_through_registers(nic):
    model, nic = nic
    sec = nic.security
    flows = [(f"10.0.0.{i}", "10.9.9.9", 1000 + i) for i in range(1, 6)]
    for src, dst, sport in flows:
        model.process(frame(src, dst, UDP(sport=sport, dport=53)), 0, now=0)
    dump = asyncio.run(sec.flow_table())
    assert dump == model.security.flows.dump(0)
    # 4 sets x 2 ways: a flow may have met a full set.
    counted = asyncio.run(nic.counters())["security"]
    assert len(dump) == counted["flow_new"] and counted["flow_new"] + counted["flow_table_full"] == 5
    # A 5 ms timeout for one-way flows: 6 ms later none is live, and the same packet makes a new flow.
    asyncio.run(sec.set_timeouts(other_new=5))
    assert asyncio.run(sec.timeouts()).other_new == 5
    src, dst, sport = flows[0]
    r = model.process(frame(src, dst, UDP(sport=sport, dport=53)), 0, now=6 * CYCLES_PER_MS)
    assert r.security.flow.outcome.name == "NEW"
    assert asyncio.run(sec.now()) == 6
    assert [e.lo_port or e.hi_port for _, _, e in asyncio.run(sec.flow_table())] == [sport]
    # Default deny from CONTROL: the stranger's packet is dropped.
    asyncio.run(sec.set_default_deny(True))
    assert asyncio.run(sec.default_deny()) is True
    r = model.process(frame("10.1.1.1", "10.2.2.2", TCP(sport=5, dport=22, flags="S")), 0, now=6 * CYCLES_PER_MS)
    assert r.reason is DropReason.DEFAULT_DENY


def test_flow_write_read_clear(nic):
    model, nic = nic
    sec = nic.security
    entry = FlowEntry(True, FlowState.ESTABLISHED, True, False, 6, 0x0A000001, 0x0A000002, 80, 40000, 7)
    asyncio.run(sec.write_flow(3, 1, entry))
    assert asyncio.run(sec.read_flow(3, 1)) == entry
    assert model.security.flows.read(3, 1) == entry
    assert asyncio.run(sec.read_flow(3, 0)) == FlowEntry()
    asyncio.run(sec.clear_flows())
    assert asyncio.run(sec.read_flow(3, 1)) == FlowEntry()


def test_no_security_stage_is_a_clear_error():
    nic = Nic(ModelBus(NicModel(NicConfig())))
    asyncio.run(nic.discover())
    with pytest.raises(SecurityError, match="this NIC has no security stage"):
        nic.security  # noqa: B018


def test_a_new_driver_commits_into_the_generation_the_nic_searches(nic):
    """A second driver (a restarted host) programs a NIC a first driver had programmed: its table,
    not the first one, decides after its commit."""
    model, first = nic
    udp = frame("10.0.0.1", "10.0.0.2", UDP(sport=1, dport=53))
    asyncio.run(first.security.program(compile_rules(parse_rules('alert udp any any -> any 53 (sid:1;)')).entries))
    assert model.process(udp, 0).reason is DropReason.NONE
    second = Nic(ModelBus(model))
    asyncio.run(second.discover())
    asyncio.run(second.security.program(compile_rules(parse_rules('drop udp any any -> any 53 (sid:2;)')).entries))
    assert model.process(udp, 0).reason is DropReason.ACL_DROP
