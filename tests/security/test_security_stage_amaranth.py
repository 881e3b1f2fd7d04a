"""Amaranth-level tests of the security stage (hdl/security/stage.py): random Suricata rule sets
through host_driver.rules and random scapy traffic (TCP handshakes, UDP both ways, ICMP, IPv6,
ARP, malformed and MAC-flagged frames, frames on the bypass port), frame by frame against the
contract of docs/security.md composed from the golden models of its two blocks
(host_driver.model.flow.FlowTable and host_driver.model.acl.classify) and to the golden model the
other engines run (host_driver.model.security.SecurityModel); default deny with return
traffic and a full flow table written out by hand; atomic ACL replacement while frames stream."""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import random

import pytest
from amaranth.sim import Simulator
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether

from hdl.acl.layouts import AclAction
from hdl.config import NicConfig
from hdl.flow.flow_table import Outcome
from hdl.packet.meta import DropReason, L3Type, MalformedReason
from hdl.security.settings import SecuritySettings
from hdl.security.stage import SecurityStage
from hdl.switch.settings import SwitchPort, SwitchSettings
from host_driver.model.acl import acl_key, classify, entry_matches
from host_driver.model.flow import FlowPacket, FlowTable, flow_hash
from host_driver.model.nic import parse_frame
from host_driver.model.security import SecurityModel
from host_driver.rules.compile import compile_rules
from host_driver.rules.parse import parse_rules
from host_driver.rules.program import AclTable, count_ternary

PORTS = ("phy0", "vm1", "host")   # the host port (2) is the bypass port
NOW = 5000                        # ms: nothing expires within a test
RESULT_FIELDS = ("inspected", "acl_hit", "acl_action", "acl_index", "acl_slot", "acl_multi", "acl_punt", "flow_found",
                 "flow_established", "flow_to_server", "flow_outcome", "drop", "reason")

CLIENTS = ["10.0.0.1", "10.0.0.2", "10.1.2.3"]
SERVERS = ["192.168.1.10", "192.168.1.20"]
CLIENTS6 = ["2001:db8::1", "2001:db8:1::5"]
SERVERS6 = ["2001:db8:ff::10"]
S, A, F, R, P = 0x02, 0x10, 0x01, 0x04, 0x08
TCP_SCRIPTS = [
    [(1, S), (0, S | A), (1, A), (1, P | A), (0, P | A), (1, F | A), (0, F | A), (1, A)],
    [(1, S), (0, S | A), (1, A), (0, R | A)],
    [(1, S), (1, S)],
    [(1, P | A), (0, A)],                    # midstream: never established
]


def make_config(default_deny=False, **kw):
    ports = tuple(SwitchPort() for _ in PORTS)
    return NicConfig(ports=PORTS, physical_ports=("phy0",), switch=SwitchSettings(ports=ports),
                     security=SecuritySettings(acl_entries=72, flow_sets=kw.pop("flow_sets", 64),
                                               default_deny=default_deny, **kw))


# -- stimulus ------------------------------------------------------------------------------------

def pad(frame):
    """Ethernet minimum (60 bytes without FCS): phy0 is a physical port, shorter is a runt."""
    return bytes(frame).ljust(60, b"\0")


def conversation(rng):
    """Frames of one conversation: ``[(frame bytes, from client)]``."""
    v6 = rng.random() < 0.25
    c, s = rng.choice(CLIENTS6 if v6 else CLIENTS), rng.choice(SERVERS6 if v6 else SERVERS)
    ipc = (lambda a, b: IPv6(src=a, dst=b)) if v6 else (lambda a, b: IP(src=a, dst=b, ttl=rng.choice([64, 3])))
    kind = rng.choice(["tcp", "tcp", "udp", "icmp"])
    cport, sport = rng.choice([40000, 1024, rng.randrange(1024, 65536)]), rng.choice([80, 443, 53, 22])
    out = []
    if kind == "tcp":
        for from_client, flags in rng.choice(TCP_SCRIPTS):
            a, b, pa, pb = (c, s, cport, sport) if from_client else (s, c, sport, cport)
            out.append((Ether() / ipc(a, b) / TCP(sport=pa, dport=pb, flags=flags), from_client))
    elif kind == "udp":
        for from_client in (1, 0, 1, 0)[:rng.randrange(1, 5)]:
            a, b, pa, pb = (c, s, cport, sport) if from_client else (s, c, sport, cport)
            out.append((Ether() / ipc(a, b) / UDP(sport=pa, dport=pb) / (b"x" * 8), from_client))
    else:
        if v6:
            from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest
            out = [(Ether() / IPv6(src=c, dst=s) / ICMPv6EchoRequest(), 1),
                   (Ether() / IPv6(src=s, dst=c) / ICMPv6EchoReply(), 0)]
        else:
            out = [(Ether() / IP(src=c, dst=s) / ICMP(type=8), 1), (Ether() / IP(src=s, dst=c) / ICMP(type=0), 0)]
    return [(pad(f), fc) for f, fc in out]


def random_traffic(rng, count):
    """``count`` frames ``(bytes, in_port, rx_error)``: conversations interleaved, client on port 1
    or 0, plus ARP, malformed, MAC-flagged and bypass-port frames."""
    convs, frames = [], []
    while len(frames) < count:
        if len(convs) < 5 or rng.random() < 0.1:
            client_port = rng.choice([0, 1])
            convs.append((conversation(rng), client_port))
        r = rng.random()
        if r < 0.05:
            frames.append((pad(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=rng.choice(CLIENTS), pdst=SERVERS[0])),
                           rng.choice([0, 1]), 0))
            continue
        if r < 0.08:    # an IPv4 header cut short: malformed, bypassed
            frames.append((bytes(Ether() / IP(src=CLIENTS[0], dst=SERVERS[0]) / TCP())[:30], 1, 0))
            continue
        if r < 0.11:    # a TCP data offset past the IP payload: malformed, inspected without a flow
            frames.append((pad(Ether() / IP(src=rng.choice(CLIENTS), dst=SERVERS[0]) / TCP(dport=80, dataofs=15)),
                           rng.choice([0, 1]), 0))
            continue
        i = rng.randrange(len(convs))
        conv, client_port = convs[i]
        frame, from_client = conv.pop(0)
        if not conv:
            convs.pop(i)
        port = client_port if from_client else 1 - client_port
        if rng.random() < 0.05:
            port = 2        # re-injected by the host: bypassed
        frames.append((frame, port, int(rng.random() < 0.03)))
    return frames


#: Host-only payload rules (fast patterns under the matcher's 4-byte window): the compiler makes
#: their headers ACL punt entries, placed after every deciding entry (docs/security.md).
HOST_ONLY = ['alert udp any any -> 192.168.1.0/24 any (msg:"h1"; content:"zz"; sid:{};)',
             'alert tcp any any -> any 80 (msg:"h2"; content:"q"; flow:established; sid:{};)',
             'drop ip 10.0.0.0/8 any -> any any (msg:"h3"; content:"ab"; sid:{};)']


def random_rules(rng, first_sid=1, budget=60, punt=False):
    """Header-only Suricata rules over the test's hosts, compiled; at most ``budget`` ternary entries.
    ``punt``: also :data:`HOST_ONLY`'s punt entries and one ``mirror`` entry (IPv6 UDP from the
    servers), after the deciding ones, within 68 entries."""
    lines = []
    for i in range(rng.randrange(8, 16)):
        action = rng.choice(["alert", "alert", "alert", "drop", "pass", "reject"])
        proto = rng.choice(["tcp", "tcp", "udp", "icmp", "ip"])
        v6 = rng.random() < 0.2
        src = rng.choice(["any", "10.0.0.0/8", CLIENTS[0], "192.168.1.0/24"] if not v6 else ["2001:db8::/32", "any"])
        dst = rng.choice(["any", SERVERS[0], "192.168.0.0/16", "10.0.0.0/8"] if not v6 else ["2001:db8:ff::/48"])
        ports = proto in ("tcp", "udp")
        sp = rng.choice(["any", "any", "any", "32768:", "80"]) if ports else "any"
        dp = rng.choice(["any", "80", "[53,443]", "22", "any"]) if ports else "any"
        opts = []
        if rng.random() < 0.6:
            opts.append("flow:" + rng.choice(["established,to_server", "to_client", "established", "to_server",
                                              "not_established"]) + ";")
        if proto == "tcp" and rng.random() < 0.2:
            opts.append("flags:S;")
        if proto == "ip" and rng.random() < 0.3:
            opts.append("ttl:<10;")
        lines.append(f'{action} {proto} {src} {sp} -> {dst} {dp} (msg:"r{first_sid + i}"; {" ".join(opts)} '
                     f"sid:{first_sid + i}; rev:1;)")
    # One sure hit of each action on the servers' ports (classifier order puts each in its group).
    n = first_sid + len(lines)
    lines += [f'drop udp any any -> any 53 (msg:"dns"; sid:{n}; rev:1;)',
              f'reject tcp any any -> any 22 (msg:"ssh"; sid:{n + 1}; rev:1;)',
              f'alert icmp any any -> any any (msg:"icmp"; sid:{n + 2}; rev:1;)',
              f'pass udp any any -> any 443 (msg:"quic"; sid:{n + 3}; rev:1;)']
    if punt:
        lines += [r.format(n + 10 + i) for i, r in enumerate(HOST_ONLY)]
    compiled = compile_rules(parse_rules("\n".join(lines), "random.rules"), capacity=1 << 20)
    entries = []
    for e in compiled.entries + compiled.punt_entries:
        if count_ternary(entries + [e]) <= (budget if e.action != "punt" else 68):
            entries.append(e)
    if punt:
        assert len({e.sid for e in entries if e.action == "punt"}) == len(HOST_ONLY), "every host-only header punts"
        # IPv6 UDP answers from the servers: no punt entry takes them (nor, with seed 3, a deciding one).
        udp = next(e for e in entries if e.sid == n + 10)
        entries.append(dataclasses.replace(udp, action="mirror", sid=n + 20, ethertype=0x86DD,
                                           src=ipaddress.ip_network("2001:db8:ff::/48"),
                                           dst=ipaddress.ip_network("2001:db8::/32")))
    return entries


# -- the contract, composed from the two blocks' golden models -----------------------------------

class Expected:
    """docs/security.md's per-frame contract over the golden flow table and classifier."""

    def __init__(self, config, entries, table):
        s = config.security
        self.flow = FlowTable(s.flow_sets, s.flow_ways, s.flow_addr_bits)
        self.bypass_port = s.bypass_port
        self.default_deny = s.default_deny
        self.punt_acl_multi = any(e.action == "punt" for e in entries)   # CONTROL bit 2, as the driver sets it
        self.load(entries, table)

    def load(self, entries, table):
        self.entries = entries
        self.placement = {table.live_base + i: t.source for i, t in enumerate(table.live)}
        self.slots = dict(table.slots)

    def frame(self, meta, in_port, rx_error):
        none = dict.fromkeys(RESULT_FIELDS, 0)
        malformed = meta["malformed"]
        oversize = malformed >> MalformedReason.OVERSIZE & 1
        if rx_error or oversize or (malformed and not meta["has_l3"]) or in_port == self.bypass_port:
            return none
        out = dict(none, inspected=1)
        # A malformed frame with its L3 header is looked up without a flow request.
        ip = meta["l3_type"] in (L3Type.IPV4, L3Type.IPV6) and meta["has_l3"] and not malformed
        found = est = to_server = False
        if ip:
            tcp = meta["ip_proto"] == 6
            r = self.flow.packet(FlowPacket(meta["ip_proto"], meta["ip_src"], meta["ip_dst"], meta["sport"],
                                            meta["dport"], meta["tcp_flags"] & 0xFF if tcp else 0,
                                            meta["l3_type"] == L3Type.IPV6), NOW)
            found, est, to_server = r.found, r.found and r.established, r.found and r.to_server
            out.update(flow_found=int(found), flow_established=int(est), flow_to_server=int(to_server),
                       flow_outcome=int(r.outcome.value))
        key = acl_key(meta, in_port, est, to_server)
        v = classify(self.entries, key)
        matching = [i for i, e in enumerate(self.entries) if entry_matches(e, key)]
        multi = int(len(matching) > 1)
        if v.action is not None:
            out.update(acl_hit=1, acl_action=AclAction[v.action.upper()].value, acl_index=("entry", v.entry),
                       acl_slot=self.slots[v.rule], acl_multi=multi,
                       acl_punt=int(bool(multi and v.action != "pass" and self.punt_acl_multi)))
            if v.action in ("drop", "reject"):
                out.update(drop=1, reason=(DropReason.ACL_DROP if v.action == "drop" else DropReason.ACL_REJECT).value)
        else:
            if matching:
                # Only punt / mirror entries matched: the first of them is the hit, and decides nothing.
                e = self.entries[matching[0]]
                out.update(acl_hit=1, acl_action=AclAction[e.action.upper()].value, acl_index=("entry", matching[0]),
                           acl_slot=self.slots[(e.gid, e.sid)], acl_multi=multi, acl_punt=int(e.action == "punt"))
            if self.default_deny and ip and not (found and (est or not to_server)):
                out.update(drop=1, reason=DropReason.DEFAULT_DENY.value)
        return out

    def hardware(self, got):
        """``got`` with the entry index mapped back to the classifier entry it came from."""
        got = dict(got)
        if got["acl_hit"]:
            got["acl_index"] = ("entry", self.placement.get(got["acl_index"]))
        return got


# -- the testbench -------------------------------------------------------------------------------

async def apply_ops(ctx, dut, ops):
    """AclTable.replace's operations on the stage's classifier ports, as the command engine does."""
    for op in ops:
        if op.kind == "row":
            ctx.set(dut.acl_row_addr, op.addr)
            ctx.set(dut.acl_row_data, op.data)
            ctx.set(dut.acl_row_we, 1)
            await ctx.tick()
            ctx.set(dut.acl_row_we, 0)
        elif op.kind == "action":
            ctx.set(dut.acl_act_index, op.addr)
            ctx.set(dut.acl_act_data.as_value(), op.data)
            ctx.set(dut.acl_act_we, 1)
            await ctx.tick()
            ctx.set(dut.acl_act_we, 0)
        elif op.kind == "clear_counter":
            ctx.set(dut.acl_cnt_slot, op.addr)
            ctx.set(dut.acl_cnt_clear, 1)
            ctx.set(dut.acl_cnt_en, 1)
            await ctx.tick().until(dut.acl_cnt_ack)
            ctx.set(dut.acl_cnt_en, 0)
            ctx.set(dut.acl_cnt_clear, 0)
        elif op.kind == "commit":
            ctx.set(dut.acl_commit, 1)
            await ctx.tick()
            ctx.set(dut.acl_commit, 0)
        elif op.kind == "wait_commit":
            await ctx.tick()
            while ctx.get(dut.acl_commit_busy):
                await ctx.tick()
        else:
            raise AssertionError(op.kind)


class Bench:
    """Frames into ``parsed`` (one per 8 cycles at most, held while ``space`` is low); every
    ``result`` collected, with random backpressure."""

    def __init__(self, config, rng):
        self.config, self.rng = config, rng
        self.dut = SecurityStage(config)
        self.results = []
        self.sent = 0
        self.punt_acl_multi = False      # CONTROL bit 2

    async def send(self, ctx, frames, gap=(0, 0, 0, 3, 20)):
        dut = self.dut
        ctx.set(dut.now, NOW)
        ctx.set(dut.punt_acl_multi, self.punt_acl_multi)
        for frame, port, rx_error in frames:
            while not ctx.get(dut.space):
                await ctx.tick()
            meta = parse_frame(frame, physical=self.config.is_physical(port), header_window=128, max_frame=9216)
            ctx.set(dut.parsed.payload.meta, meta)
            ctx.set(dut.parsed.payload.in_port, port)
            ctx.set(dut.parsed.payload.rx_error, rx_error)
            ctx.set(dut.parsed.valid, 1)
            await ctx.tick()
            ctx.set(dut.parsed.valid, 0)
            self.sent += 1
            await ctx.tick().repeat(7 + self.rng.choice(gap))

    async def collect(self, ctx, count, backpressure=0.3, budget=100_000):
        dut = self.dut
        for _ in range(budget):
            if len(self.results) == count:
                return
            ready = self.rng.random() >= backpressure
            ctx.set(dut.result.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.result.valid, dut.result.payload)
            if valid and ready:
                self.results.append({name: _int(getattr(payload, name)) for name in RESULT_FIELDS})
        raise AssertionError(f"{len(self.results)} results of {count} after {budget} cycles")

    def run(self, *testbenches):
        sim = Simulator(self.dut)
        sim.add_clock(6.4e-9)
        for tb in testbenches:
            sim.add_testbench(tb)
        sim.run()


def _int(v):
    return int(v.value) if isinstance(v, enum.Enum) else int(v)


def metas(config, frames):
    return [(parse_frame(f, physical=config.is_physical(p), header_window=128, max_frame=9216), p, e)
            for f, p, e in frames]


# -- tests ---------------------------------------------------------------------------------------

def test_settings_and_config_contract():
    """bypass_port defaults to the host port; bad values name the key; the dict round-trips."""
    assert make_config().security.bypass_port == 2
    assert NicConfig(security=SecuritySettings()).security.bypass_port is None     # phy0, vm1: no host
    cfg = make_config(default_deny=True)
    assert NicConfig.from_dict(cfg.as_dict()) == cfg
    assert "security" not in NicConfig().as_dict()      # builds without the stage keep their key
    with pytest.raises(ValueError, match="nic.toml: unknown security option"):
        NicConfig.from_dict({"security": {"acl_entrys": 3}}, source="nic.toml")
    with pytest.raises(ValueError, match="flow_sets must be a power of two"):
        SecuritySettings(flow_sets=100)
    with pytest.raises(ValueError, match="bypass_port 5 is not a port index"):
        NicConfig(security=SecuritySettings(bypass_port=5))


def test_matcher_settings_record_and_registers():
    """The payload matcher's build keys (docs/security.md, "The payload matcher in the stage"): defaults,
    validation naming the key, nic.toml, the record's match fields and SECMATCH's geometry."""
    from hdl.packet.meta import make_verdict_record, verdict_record_of
    from hdl.security.regs import SECMATCH
    from hdl.top import build_register_map
    from host_driver.switch_config import SwitchConfigError, security_settings

    s = SecuritySettings()
    assert (s.matcher_index_bits, s.matcher_max_hits, s.matcher, s.matcher_tag_bits) == (11, 4, (11, 4), 21)
    assert SecuritySettings(matcher_index_bits=0).matcher is None
    for bad in ({"matcher_index_bits": 3}, {"matcher_index_bits": 21}, {"matcher_index_bits": True},
                {"matcher_max_hits": 0}, {"matcher_max_hits": 17}):
        with pytest.raises(ValueError, match=f"^{next(iter(bad))} must be"):
            SecuritySettings(**bad)
    cfg = make_config(matcher_index_bits=9, matcher_max_hits=2)
    assert NicConfig.from_dict(cfg.as_dict()) == cfg
    ports = ("phy0", "vm1", "host")
    assert security_settings({"matcher_index_bits": 0}, ports).matcher is None
    assert security_settings({"matcher_index_bits": 13, "matcher_max_hits": 8}, ports).matcher == (13, 8)
    for table, message in (({"matcher_index_bits": 2}, "security.matcher_index_bits: must be 0"),
                           ({"matcher_index_bits": 32}, "security.matcher_index_bits: must be an integer"),
                           ({"matcher_max_hits": 0}, "security.matcher_max_hits: must be an integer in 1..16")):
        with pytest.raises(SwitchConfigError, match=message):
            security_settings(table, ports)

    # The record: the match fields after the security fields, only in builds with a matcher.
    layout = verdict_record_of(cfg)
    names = list(layout.members)
    assert names[names.index("flow_outcome") + 1:] == ["match_inspected", "match_too_long", "match_overflow",
                                                       "match_punt", "match_n_hits", "match_hits"]
    assert layout.size == make_verdict_record(cfg.port_bits, 3, security=True).size + 4 + 2 + 2 * (9 + 1)
    hit = layout.const({"match_n_hits": 2, "match_hits": [{"bucket": 5, "settled": 1}, {"bucket": 7}]})
    assert (hit.match_hits[0].bucket, hit.match_hits[0].settled, hit.match_hits[1].bucket) == (5, 1, 7)
    assert "match_hits" not in verdict_record_of(make_config(matcher_index_bits=0)).members
    with pytest.raises(ValueError, match="needs the security fields"):
        make_verdict_record(2, 3, matcher=(11, 4))

    # SECMATCH: after the SECPORT blocks, MATCHER_GEOMETRY first, only with a matcher.
    regmap = build_register_map(cfg)
    block = regmap.block(SECMATCH)
    assert [b.type.name for b in regmap.blocks][-2:] == ["SECPORT", "SECMATCH"]
    assert block.value("MATCHER_GEOMETRY") == 9 | 23 << 8 | 2 << 16
    assert SECMATCH.registers[0].name == "MATCHER_GEOMETRY"
    assert "SECMATCH" not in [b.type.name for b in build_register_map(make_config(matcher_index_bits=0)).blocks]


@pytest.mark.parametrize("seed, default_deny, punt", [(1, False, False), (2, True, False), (3, True, True)])
def test_random_rules_and_traffic_equal_the_contract(seed, default_deny, punt):
    """``punt``: with host-only payload rules' punt entries and a mirror entry after the deciding
    ones, and CONTROL bit 2 set as the driver sets it (docs/security.md, "ACL actions punt and mirror")."""
    rng = random.Random(seed)
    config = make_config(default_deny)
    bench = Bench(config, rng)
    entries = random_rules(rng, punt=punt)
    bench.punt_acl_multi = any(e.action == "punt" for e in entries)
    table = AclTable(bench.dut.acl.geometry)
    ops = table.replace(entries)
    frames = random_traffic(rng, 160)
    want = Expected(config, entries, table)

    async def main(ctx):
        await apply_ops(ctx, bench.dut, ops)
        await bench.send(ctx, frames)

    async def collect(ctx):
        await bench.collect(ctx, len(frames))

    bench.run(main, collect)
    assert len(bench.results) == len(frames)
    mismatches = []
    for i, ((meta, port, err), got) in enumerate(zip(metas(config, frames), bench.results)):
        exp = want.frame(meta, port, err)
        if want.hardware(got) != exp:
            mismatches.append((i, port, err, want.hardware(got), exp))
    assert not mismatches, mismatches[:3]
    # And frame for frame what the other engines run: the golden SecurityModel, programmed with
    # the same operations (the model engine and the simulators must agree byte for byte).
    model = SecurityModel.from_settings(config.security)
    model.punt_acl_multi = bench.punt_acl_multi
    model.load(ops)
    for i, ((meta, port, err), got) in enumerate(zip(metas(config, frames), bench.results)):
        r = model.inspect(meta, port, rx_error=bool(err), now_ms=NOW)
        want_model = dict(r.record_fields(), inspected=int(not r.bypass), drop=int(r.drop is not None),
                          reason=DropReason[r.drop.name].value if r.drop else 0)
        assert got == want_model, (i, got, want_model)
    # The traffic reached every branch of the contract.
    kinds = {(r["inspected"], r["acl_hit"] and r["acl_action"], r["reason"], r["flow_outcome"])
             for r in bench.results}
    assert any(not r["inspected"] for r in bench.results)
    assert any(r["flow_established"] for r in bench.results)
    assert any(r["acl_hit"] for r in bench.results) and len(kinds) > 4
    assert len({r["acl_action"] for r in bench.results if r["acl_hit"]}) >= 3
    assert DropReason.ACL_DROP.value in {r["reason"] for r in bench.results}
    if default_deny:
        assert DropReason.DEFAULT_DENY.value in {r["reason"] for r in bench.results}
    if punt:
        # Each way a frame gets acl_punt, and a mirror first hit, happened.
        actions = {r["acl_action"] for r in bench.results if r["acl_hit"] and r["acl_punt"]}
        assert AclAction.PUNT.value in actions and actions - {AclAction.PUNT.value}, actions
        assert any(r["acl_hit"] and r["acl_action"] == AclAction.MIRROR.value for r in bench.results)
        # A punt first hit decides nothing: default deny still drops such frames.
        assert any(r["acl_action"] == AclAction.PUNT.value and r["reason"] == DropReason.DEFAULT_DENY.value
                   for r in bench.results if r["acl_hit"])


def _tcp(src, dst, sport, dport, flags):
    return pad(Ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags))


def test_default_deny_admits_return_traffic_only():
    """Written out by hand from the contract: under default deny with one pass rule for the
    inside clients' web traffic, a handshake opened from inside passes both ways (the SYN-ACK
    and the server's data as return traffic), an outside SYN is denied, and so is the server's
    answer to a connection the NIC never saw open (midstream: no established flow)."""
    config = make_config(default_deny=True)
    rng = random.Random(5)
    bench = Bench(config, rng)
    entries = compile_rules(parse_rules(
        'pass tcp 10.0.0.0/8 any -> any 80 (msg:"web out"; flow:to_server; sid:1; rev:1;)', "t.rules")).entries
    table = AclTable(bench.dut.acl.geometry)
    ops = table.replace(entries)
    c, s = "10.0.0.1", "192.168.1.10"
    frames = [(_tcp(c, s, 40000, 80, S), 1, 0),          # 0 pass hit (to_server)
              (_tcp(s, c, 80, 40000, S | A), 0, 0),      # 1 return traffic: admitted
              (_tcp(c, s, 40000, 80, A), 1, 0),          # 2 pass hit
              (_tcp(s, c, 80, 40000, P | A), 0, 0),      # 3 established: admitted
              (_tcp(s, c, 2222, 22, S), 0, 0),           # 4 outside SYN to the inside: denied
              (_tcp(c, s, 22, 2222, S | A), 1, 0),       # 5 ... its answer is return traffic: admitted
              (_tcp(s, c, 80, 41000, P | A), 0, 0),      # 6 midstream from outside: new flow, to_server: denied
              (pad(Ether() / ARP()), 0, 0)]            # 7 not IP: no default deny

    async def main(ctx):
        await apply_ops(ctx, bench.dut, ops)
        await bench.send(ctx, frames)

    async def collect(ctx):
        await bench.collect(ctx, len(frames))

    bench.run(main, collect)
    got = [(r["drop"], r["reason"], r["acl_hit"]) for r in bench.results]
    deny = (1, DropReason.DEFAULT_DENY.value, 0)
    assert got == [(0, 0, 1), (0, 0, 0), (0, 0, 1), (0, 0, 0), deny, (0, 0, 0), deny, (0, 0, 0)]
    assert [r["flow_outcome"] for r in bench.results] == [Outcome.NEW.value, *[Outcome.EXISTING.value] * 3,
                                                          Outcome.NEW.value, Outcome.EXISTING.value,
                                                          Outcome.NEW.value, 0]


def test_full_flow_table_is_never_admitted():
    """A flow table of one entry (2 sets x 1 way): once both sets hold a flow, a new flow's
    frames get ``table_full``, no flow, and default deny drops them, return direction included."""
    config = make_config(default_deny=True, flow_sets=2, flow_ways=1)
    bench = Bench(config, random.Random(6))
    table = AclTable(bench.dut.acl.geometry)
    frames = []
    for i in range(12):
        frames += [(_tcp("10.0.0.1", "192.168.1.10", 40000 + i, 80, S), 1, 0),
                   (_tcp("192.168.1.10", "10.0.0.1", 80, 40000 + i, S | A), 0, 0)]

    async def main(ctx):
        await bench.send(ctx, frames)

    async def collect(ctx):
        await bench.collect(ctx, len(frames))

    bench.run(main, collect)
    full = [r for r in bench.results if r["flow_outcome"] == Outcome.TABLE_FULL.value]
    assert len(full) >= 8     # two flows fit; most of the others find their set taken
    assert all(r["drop"] and r["reason"] == DropReason.DEFAULT_DENY.value and not r["flow_found"] for r in full)
    want = Expected(config, [], table)
    assert [want.hardware(r) for r in bench.results] == [want.frame(*m) for m in metas(config, frames)]


def test_acl_replacement_is_atomic_between_frames():
    """Frames stream while table A (drop every UDP frame) is replaced by table B (alert on it):
    each frame sees all of A or all of B, and once a frame has seen B no later frame sees A."""
    config = make_config()
    rng = random.Random(7)
    bench = Bench(config, rng)
    table = AclTable(bench.dut.acl.geometry)
    a = compile_rules(parse_rules('drop udp any any -> any any (msg:"A"; sid:1; rev:1;)', "a.rules")).entries
    b = compile_rules(parse_rules('alert udp any any -> any any (msg:"B"; sid:2; rev:1;)', "b.rules")).entries
    ops_a, ops_b = table.replace(a), table.replace(b)
    frames = [(pad(Ether() / IP(src="10.0.0.1", dst="192.168.1.10") / UDP(sport=1000 + i, dport=53)), 1, 0)
              for i in range(60)]
    loaded = []

    async def main(ctx):
        await apply_ops(ctx, bench.dut, ops_a)
        loaded.append(1)
        await bench.send(ctx, frames, gap=(8,))

    async def manage(ctx):
        while not loaded:
            await ctx.tick()
        await ctx.tick().repeat(20)
        await apply_ops(ctx, bench.dut, ops_b)

    async def collect(ctx):
        await bench.collect(ctx, len(frames), backpressure=0)

    bench.run(main, manage, collect)
    seen = ["A" if r["acl_action"] == AclAction.DROP.value and r["drop"] else
            "B" if r["acl_action"] == AclAction.ALERT.value and not r["drop"] else "?" for r in bench.results]
    assert "?" not in seen and all(r["acl_hit"] for r in bench.results)
    assert seen == sorted(seen) and "A" in seen and "B" in seen, "".join(seen)


def test_set_index_is_the_models_flow_hash():
    """Every flow request the stage makes carries the model's ``flow_hash`` of its 5-tuple as
    ``req_set`` (the stage hashes it in two register stages; a wrong but symmetric index would
    pass the tests above, whose tables rarely fill a set)."""
    rng = random.Random(7)
    config = make_config(flow_sets=1024)
    bench = Bench(config, rng)
    frames = [f for f in random_traffic(rng, 60) if f[1] != 2]    # not on the bypass port
    seen = []

    async def main(ctx):
        await bench.send(ctx, frames)

    async def collect(ctx):
        await bench.collect(ctx, len(frames))

    async def watch(ctx):
        flow = bench.dut.flow
        async for _, _, valid, ready, req, req_set in ctx.tick().sample(
                flow.req.valid, flow.req.ready, flow.req.payload, flow.req_set):
            if valid and ready:
                pkt = FlowPacket(int(req.proto), int(req.src_addr), int(req.dst_addr), int(req.src_port),
                                 int(req.dst_port), ipv6=bool(req.ipv6))
                seen.append((int(req_set), flow_hash(pkt, 10)))

    sim = Simulator(bench.dut)
    sim.add_clock(6.4e-9)
    sim.add_testbench(main)
    sim.add_testbench(collect)
    sim.add_testbench(watch, background=True)
    sim.run()
    assert len(seen) >= 20
    assert [got for got, _ in seen] == [want for _, want in seen]
