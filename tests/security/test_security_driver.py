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


# -- the payload matcher: MATCHER_WRITE / MATCHER_COMMIT, CONTROL bit 1, the record's match fields ---

CONTENT = ('alert ip any any -> any any (content:"ab|00|d"; nocase; sid:11;)\n'         # offloaded: settled
           'alert tcp any any -> any 80 (content:"GET /evil"; sid:12;)\n')               # prefilter: punted


def content_program(text, index_bits=11):
    from host_driver.rules.content import compile_content
    return compile_content(parse_rules(text), index_bits=index_bits)


def active_table(model):
    """The matcher's live bank, valid buckets only (an invalid bucket written is as good as absent)."""
    m = model.security.matcher
    return {k: e for k, e in m.banks[m.active].items() if e.valid}


def payload_frame(payload, l4=None):
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.0.0.1", dst="10.0.0.2")
                 / (l4 or TCP(sport=1234, dport=80, flags="PA")) / Raw(payload))


def test_matcher_table_through_commands_and_record_fields(nic):
    """The driver writes the compiled table through MATCHER_WRITE/MATCHER_COMMIT; the model then
    reports each frame as the contract says (expectations written by hand from the literals)."""
    model, nic = nic
    sec = nic.security
    assert asyncio.run(sec.matcher_geometry()) == {"index_bits": 11, "tag_bits": 21, "max_hits": 4}
    program = content_program(CONTENT)
    assert [r.status for r in program.rules] == ["offloaded", "prefilter"]
    asyncio.run(sec.program([], matcher=program))
    assert active_table(model) == program.table
    assert asyncio.run(sec.punt_all_payload()) is False
    settled_bucket = program.rules[0].placement.bucket
    # The 4 bytes of sid 11 (in any case): one settled hit, no punt.
    r = model.process(payload_frame(b"xxAB\x00Dyy"), 0).security.match
    assert (r.inspected, r.punt, r.overflow, [(h.bucket, h.settled) for h in r.hits]) == \
        (True, False, False, [(settled_bucket, True)])
    # sid 12's literal: an unsettled hit, punted.
    r = model.process(payload_frame(b"GET /evil HTTP/1.0"), 0).security.match
    assert r.inspected and r.punt and len(r.hits) == 1 and not r.hits[0].settled
    # No literal: inspected, nothing else. Skipped: rx_error, malformed, no payload offset (ARP).
    assert model.process(payload_frame(b"hello, no literal in here"), 0).security.match.record_fields() == {
        "match_inspected": 1, "match_too_long": 0, "match_overflow": 0, "match_punt": 0, "match_n_hits": 0,
        "match_hits": []}
    from scapy.layers.l2 import ARP
    for raw, err in [(payload_frame(b"ab\x00d"), True), (payload_frame(b"ab\x00d")[:-2], False),
                     (bytes(Ether() / ARP()), False)]:
        assert model.process(raw, 0, rx_error=err).security.match.record_fields()["match_inspected"] == 0
    counted = asyncio.run(nic.counters())["secmatch"]
    assert counted == {"matcher_frames": 3, "matcher_punts": 1, "matcher_overflows": 0, "matcher_too_long": 0}


def test_host_only_rules_punt_every_inspected_frame(nic):
    model, nic = nic
    sec = nic.security
    asyncio.run(sec.program([], matcher=content_program(CONTENT + 'alert udp any any -> any any (content:"ab"; '
                                                                  'sid:13;)\n')))
    assert asyncio.run(sec.punt_all_payload()) is True
    assert model.process(payload_frame(b"nothing here at all, none"), 0).security.match.punt
    # Default deny (bit 0) and punt_all_payload (bit 1) live side by side in CONTROL.
    asyncio.run(sec.set_default_deny(True))
    assert asyncio.run(sec.punt_all_payload()) is True and model.security.default_deny
    # A program without host-only rules clears bit 1; the table swaps (the old literal no longer hits).
    asyncio.run(sec.program_matcher(content_program('alert ip any any -> any any (content:"wxyz"; nocase; sid:1;)')))
    assert asyncio.run(sec.punt_all_payload()) is False and asyncio.run(sec.default_deny()) is True
    r = model.process(payload_frame(b"GET /evil"), 0).security.match
    assert (r.inspected, r.punt, r.hits) == (True, False, ())
    assert model.process(payload_frame(b"..WXYZ.."), 0).security.match.hits[0].settled


def test_reprogramming_rewrites_the_shadow_bank(nic):
    """After a commit the shadow holds the older table: programming A, B, then A again must leave
    exactly A active (the driver rewrites every bucket that differs from the shadow's content)."""
    model, nic = nic
    sec = nic.security
    a = content_program('alert ip any any -> any any (content:"wxyz"; nocase; sid:1;)')
    b = content_program('alert ip any any -> any any (content:"qrst"; nocase; sid:2;)')
    for p in (a, b, a, b, b):
        asyncio.run(sec.program_matcher(p))
        assert active_table(model) == p.table


def test_a_program_for_another_geometry_is_refused_with_nothing_written(nic):
    model, nic = nic
    writes = []
    bus = nic.bus
    real = bus.write32

    async def counting(addr, value):
        writes.append(addr)
        await real(addr, value)
    bus.write32 = counting
    with pytest.raises(SecurityError, match=r"compiled for a matcher table of 2\*\*9 buckets with 23-bit tags; "
                                            r"this NIC's has 2\*\*11 buckets with 21-bit tags"):
        asyncio.run(nic.security.program([], matcher=content_program(CONTENT, index_bits=9)))
    assert writes == []
    no_matcher = Nic(ModelBus(NicModel(NicConfig(security=SecuritySettings(matcher_index_bits=0)))))
    asyncio.run(no_matcher.discover())
    with pytest.raises(SecurityError, match="this NIC has no payload matcher"):
        asyncio.run(no_matcher.security.program([], matcher=content_program(CONTENT)))


HOST_ONLY = ('alert udp any any -> any 53 (content:"ab"; sid:31;)\n'                       # 2-byte fast pattern
             'alert tcp $HOME_NET any -> $EXTERNAL_NET 4786 (content:"zz"; sid:32;)\n')    # 31 x 3 prefixes


def test_host_only_rules_punt_by_their_header(nic):
    """Host-only payload rules become ACL punt entries (docs/security.md, "ACL actions punt and
    mirror"): only the frames their header matches get ``acl_punt``; a header too big for the
    table is widened to any address (the host checks the header in full); punt_all_payload stays
    clear, CONTROL bit 2 is set. A table without room for them falls back to punt_all_payload."""
    from hdl.acl.layouts import AclAction
    model, nic = nic
    sec = nic.security
    compiled = compile_rules(parse_rules(HOST_ONLY), capacity=72)
    reasons = {cr.rule.sid: cr.reason for cr in compiled.matcher.host_only()}
    assert reasons[31].endswith("; header punted by the ACL")
    assert reasons[32].endswith("; header punted by the ACL (addresses widened)")
    assert compiled.entries == [] and {e.action for e in compiled.punt_entries} == {"punt"}
    asyncio.run(sec.program(compiled.punt_entries, matcher=compiled.matcher))
    assert asyncio.run(sec.punt_all_payload()) is False and model.security.punt_acl_multi
    udp = payload_frame(b"..ab.." + bytes(20), UDP(sport=5000, dport=53))
    for raw, punt in [(udp, True), (payload_frame(b"..ab..", UDP(sport=5000, dport=54)), False),
                      (payload_frame(b"zz", TCP(sport=1, dport=4786)), True),
                      (payload_frame(b"zz", TCP(sport=1, dport=4787)), False)]:
        r = model.process(raw, 0).security
        assert (r.acl_punt, r.acl_action if r.acl_hit else None) == (punt, AclAction.PUNT if punt else None)
        assert not r.match.punt and r.drop is None and not r.alert
    # No room for the punt entries: every inspected frame is punted, as before.
    compiled = compile_rules(parse_rules(HOST_ONLY), capacity=0)
    assert compiled.punt_entries == []
    asyncio.run(sec.program(compiled.punt_entries, matcher=compiled.matcher))
    assert asyncio.run(sec.punt_all_payload()) is True and not model.security.punt_acl_multi
    assert model.process(udp, 0).security.match.punt
