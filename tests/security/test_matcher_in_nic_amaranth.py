"""The payload matcher inside NicTop (amaranth.sim, both NIC kinds): docs/security.md, "The payload
matcher in the stage".

A few Suricata content rules are compiled by ``host_driver.rules.content.compile_content`` and
written into the NIC the way a driver does, over the CSR bus (``MATCHER_WRITE`` per used bucket,
then ``MATCHER_COMMIT``). Frames made by scapy go through the real parser, the security stage, the
gate, the payload stage and the packet buffer. Per frame, the record's match fields must equal
what the golden model of the matcher (``host_driver.model.matcher.MatcherModel``) reports for the
payload ``host_driver.inspect.payload_bounds`` gives (the host path's own definition), except that
a frame the security stage bypasses (rx_error, the bypass port: written out by hand from
docs/security.md) has every match field zero, and that with CONTROL bit 1 (``punt_all_payload``)
every inspected frame is punted. The SECMATCH counters count the final records. The same frames
through the same build without a matcher leave the same egress frames and the same records
otherwise (the matcher never changes forwarding this round). A 1472-byte frame followed by
minimum frames nearly back to back makes the records wait for their matcher results behind its
replay.
"""

from __future__ import annotations

import dataclasses

from amaranth.sim import Simulator
from nictop_watch import send_frame, watch_nictop
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether

from hdl.config import NicConfig
from hdl.packet.meta import MATCH_FIELDS, verdict_record_of
from hdl.security.regs import CONTROL_PUNT_ALL_PAYLOAD, SECMATCH, SECURITY, Command
from hdl.security.settings import SecuritySettings
from hdl.top import NicTop
from host_driver.inspect import payload_bounds
from host_driver.model.matcher import MatcherModel
from host_driver.model.nic import parse_frame
from host_driver.rules import parse_rules
from host_driver.rules.content import compile_content
from tests.security.test_security_top_amaranth import Axil

INDEX_BITS = 6            # 64 buckets: a table written in 64 commands
MAX_HITS = 2              # few slots: overflow is easy to reach
RULES = """\
alert ip any any -> any any (msg:"evil"; content:"evil"; nocase; sid:1;)
alert tcp any any -> any any (msg:"long"; content:"attack-payload"; sid:2;)
alert ip any any -> any any (msg:"binary"; content:"|de ad be ef|"; sid:3;)
alert udp any any -> any any (msg:"two"; content:"GET"; content:"/admin"; distance:0; sid:4;)
"""
MAC_A, MAC_B = "02:00:00:00:00:01", "02:00:00:00:00:02"


def program():
    prog = compile_content(parse_rules(RULES), index_bits=INDEX_BITS)
    assert all(r.status != "host only" for r in prog.rules)
    assert any(e.settled for e in prog.table.values()) and any(not e.settled for e in prog.table.values())
    return prog


def frames_for(inside: str, outside: str, bypass_port: str | None):
    """(port, frame, rx_error) in two phases (before and after punt_all_payload is set)."""
    def v4(src, dst, l4, payload, mac=(MAC_A, MAC_B)):
        return bytes(Ether(src=mac[0], dst=mac[1]) / IP(src="10.0.0.1", dst="10.0.0.2") / l4 / payload)

    def v6(src, dst, l4, payload):
        return bytes(Ether(src=MAC_A, dst=MAC_B) / IPv6(src="2001:db8::1", dst="2001:db8::2") / l4 / payload)

    tcp, udp = TCP(sport=1000, dport=80, flags="PA"), UDP(sport=53, dport=5353)
    big = b"x" * 600 + b"attack-payload" + b"y" * 800 + b"EvIl"
    phase1 = [
        (inside, v4(inside, outside, tcp, b"hello EVIL world"), False),          # settled hit: no punt
        (outside, v4(outside, inside, tcp, b"an attack-payload here"), False),    # unsettled: punt
        (inside, v6(inside, outside, tcp, b"\x00\xde\xad\xbe\xef\x00"), False),   # IPv6, settled
        (outside, v4(outside, inside, udp, b"GET /admin HTTP/1.0"), False),       # several contents
        (inside, v4(inside, outside, udp, b"nothing to see"), False),             # inspected, no hit
        (inside, v4(inside, outside, udp, b""), False),                            # empty payload
        (outside, v4(outside, inside, tcp, b"evil evil evil deadevil"), False),    # overflow
        (inside, bytes(Ether(src=MAC_A, dst="ff:ff:ff:ff:ff:ff") / ARP(pdst="10.0.0.2")
                       / b"evil").ljust(60, b"\0"), False),                       # not IP: skipped
        (inside, v4(inside, outside, udp, b"evil"), True),                        # rx_error: bypassed
        (inside, v4(inside, outside, udp, b"ab") + b"evil" + bytes(10), False),   # literal in padding
        # A long frame, then minimum frames back to back: their records wait behind its replay.
        (outside, v4(outside, inside, tcp, big), False),
        *((inside, v4(inside, outside, udp, b"evil" if i % 2 else b"-"), False) for i in range(6)),
    ]
    if bypass_port is not None:
        phase1.append((bypass_port, v4(inside, outside, tcp, b"attack-payload evil"), False))   # bypassed
    phase2 = [
        (inside, v4(inside, outside, udp, b"nothing to see"), False),             # punt_all: punted
        (outside, v4(outside, inside, tcp, b"hello EVIL world"), False),           # settled, punted anyway
        (inside, bytes(Ether(src=MAC_A, dst="ff:ff:ff:ff:ff:ff") / ARP(pdst="10.0.0.2")).ljust(60, b"\0"),
         False),                                                                   # not inspected: no punt
    ]
    if bypass_port is not None:
        phase2.append((bypass_port, v4(inside, outside, udp, b"evil"), False))   # bypassed: no punt
    return phase1, phase2


def expected_match(config, model, port_index, frame, rx_error, punt_all):
    """The record's match fields for one frame, from the golden models and the contract."""
    zero = dict.fromkeys(MATCH_FIELDS[:-1], 0) | {"match_hits": []}
    if rx_error or port_index == config.security.bypass_port:       # the security stage's bypass
        return zero
    meta = parse_frame(frame, physical=config.is_physical(config.ports[port_index]),
                       header_window=config.header_window, max_frame=config.max_frame)
    bounds = payload_bounds(frame, meta)
    if bounds is None or meta["malformed"]:          # PayloadStage's skipped frames (docs/matcher.md)
        return zero
    start, end = bounds
    res = model.frame(frame, start, end - start)
    return {"match_inspected": 1, "match_too_long": 0, "match_overflow": int(res.overflow),
            "match_punt": int(res.punt or punt_all), "match_n_hits": len(res.hits),
            "match_hits": [(h.bucket, int(h.settled)) for h in res.hits]}


def run(config, prog, phases):
    """Program the matcher over the CSR bus, send ``phases`` (punt_all_payload set between them) and
    return (records, egress frames per port, SECMATCH counters or None, MATCHER_GEOMETRY or None)."""
    dut = NicTop(config, reset_tree=False)
    regs = dut.regmap
    sec = regs.block(SECURITY)
    with_matcher = config.security.matcher is not None
    records, egress, out = [], {name: [] for name in config.ports}, {}
    seq = [0]

    async def command(bus, op, *args):
        for i, a in enumerate(args):
            await bus.write(sec.addr(f"ARG{i}"), a)
        seq[0] = (seq[0] + 1) & 0xFF
        await bus.write(sec.addr("CMD"), seq[0] << 24 | op)
        for _ in range(100):
            if await bus.read(sec.addr("CMD_DONE")) >> 24 == seq[0]:
                return
        raise AssertionError(f"command {op!r} never finished")

    async def send(ctx, port, frame, rx_error):
        await send_frame(ctx, dut, port, frame, rx_error)

    async def main(ctx):
        bus = Axil(ctx, dut.s_axil)
        if with_matcher:
            out["geometry"] = await bus.read(regs.block(SECMATCH).addr("MATCHER_GEOMETRY"))
            # The used buckets only (packed by the driver's own table_writes): the banks start invalid,
            # and a bucket per command costs ~50 simulated cycles.
            for index, word in prog.table_writes():
                if index in prog.table:
                    await command(bus, Command.MATCHER_WRITE, index, word)
            await command(bus, Command.MATCHER_COMMIT)
        for n, phase in enumerate(phases):
            if n:
                await bus.write(sec.addr("CONTROL"), 1 << CONTROL_PUNT_ALL_PAYLOAD)
            for port, frame, rx_error in phase:
                await send(ctx, port, frame, rx_error)
                if len(frame) < 100:
                    await ctx.tick().repeat(2)      # minimum frames nearly back to back
            await ctx.tick().repeat(300)
        if with_matcher:
            block = regs.block(SECMATCH)
            out["counters"] = {name: await bus.read(block.addr(name))
                               for name in ("MATCHER_FRAMES", "MATCHER_PUNTS", "MATCHER_OVERFLOWS",
                                            "MATCHER_TOO_LONG")}

    async def watch(ctx):
        await watch_nictop(ctx, dut, config, records, egress)

    sim = Simulator(dut)
    sim.add_clock(6.4e-9)
    sim.add_testbench(main)
    sim.add_testbench(watch, background=True)
    sim.run()
    return records, egress, out.get("counters"), out.get("geometry")


def check(config, inside, outside, bypass_port=None):
    prog = program()
    model = MatcherModel(config.data_width, index_bits=INDEX_BITS, max_hits=MAX_HITS)
    model.load(prog.table)
    phases = frames_for(inside, outside, bypass_port)
    records, egress, counters, geometry = run(config, prog, phases)

    sent = [(config.ports.index(port), frame, rx, n == 1) for n, phase in enumerate(phases)
            for port, frame, rx in phase]
    assert len(records) == len(sent)
    want = [expected_match(config, model, p, frame, rx, punt_all) for p, frame, rx, punt_all in sent]
    got = [{name: int(getattr(r, name)) for name in MATCH_FIELDS[:-1]}
           | {"match_hits": [(int(h.bucket), int(h.settled)) for h in r.match_hits][:int(r.match_n_hits)]}
           for r in records]
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"frame {i}: record {g} != expected {w}"
    assert [int(r.in_port) for r in records] == [p for p, *_ in sent]
    # The scenario reaches every case it is meant to.
    assert {(w["match_inspected"], w["match_punt"], w["match_overflow"]) for w in want} >= {
        (1, 0, 0), (1, 1, 0), (1, 1, 1), (0, 0, 0)}
    assert any(w["match_n_hits"] and not w["match_punt"] for w in want)      # settled: alerted without the host
    assert geometry == INDEX_BITS | (32 - INDEX_BITS) << 8 | MAX_HITS << 16
    assert counters == {"MATCHER_FRAMES": sum(w["match_inspected"] for w in want),
                        "MATCHER_PUNTS": sum(w["match_punt"] for w in want),
                        "MATCHER_OVERFLOWS": sum(w["match_overflow"] for w in want),
                        "MATCHER_TOO_LONG": 0}

    # Forwarding is unchanged: the same frames through the build without a matcher.
    plain = dataclasses.replace(config, security=dataclasses.replace(config.security, matcher_index_bits=0))
    plain_records, plain_egress, _, _ = run(plain, prog, phases)
    assert egress == plain_egress
    assert sum(map(len, egress.values())) > 0
    fields = [name for name in verdict_record_of(plain).members]
    assert [[getattr(r, f) for f in fields] for r in records] == [[getattr(r, f) for f in fields]
                                                                 for r in plain_records]


def test_matcher_in_the_bump_in_the_wire():
    """Bump in the wire (phy0 <-> vm1; no bypass port): the rx_error frame is the bypassed one."""
    config = NicConfig(security=SecuritySettings(acl_entries=36, flow_sets=16, bypass_port=None,
                                                 matcher_index_bits=INDEX_BITS, matcher_max_hits=MAX_HITS))
    check(config, "vm1", "phy0")


def test_matcher_in_the_switch():
    """The switch (phy0, vm1, host): the host port is the bypass port."""
    from hdl.switch.settings import SwitchPort, SwitchSettings

    ports = ("phy0", "vm1", "host")
    config = NicConfig(ports=ports, switch=SwitchSettings(ports=(SwitchPort(),) * 3, mac_sets=16, recorder_depth=16),
                       security=SecuritySettings(acl_entries=36, flow_sets=16, matcher_index_bits=INDEX_BITS,
                                                 matcher_max_hits=MAX_HITS))
    assert config.security.bypass_port == 2
    check(config, "vm1", "phy0", bypass_port="host")
