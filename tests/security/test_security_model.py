"""The security stage's golden model (host_driver/model/security.py) against references it was not
written from.

* The rule text is judged by the brute-force evaluator of tests/acl/test_acl_model.py (Suricata's
  documented header semantics, scapy's fields), extended here with ``flow`` from a naive
  connection tracker written from Suricata's documentation ("Flow Keywords": established after the
  three-way handshake, the packet carrying the state it arrives in; other protocols once both
  directions were seen; the creator of a flow is the client). The model programs the same rules
  the way the driver does (``AclTable.replace`` operations) and judges the same frames as bytes.
* The contract's verdicts (docs/security.md): default deny admits return traffic and established
  flows, and never a frame whose flow the table could not hold; bypassed frames are not inspected.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import random
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether

from hdl.acl.layouts import AclAction, TcamGeometry
from host_driver.model.nic import parse_frame
from host_driver.model.security import SecurityDrop, SecurityModel
from host_driver.rules import compile_rules, parse_rules
from host_driver.rules.program import AclTable, Op


def _load_acl_reference():
    """tests/acl/test_acl_model.py, whose evaluator of the rule text this test reuses."""
    path = Path(__file__).resolve().parents[1] / "acl" / "test_acl_model.py"
    spec = importlib.util.spec_from_file_location("acl_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ref = _load_acl_reference()

MAC = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}
SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08


# -- the reference: a naive connection tracker (Suricata's "Flow Keywords") ----------------------

class RefTracker:
    """Per connection (protocol, the two endpoints in either order): who opened it (the client),
    and whether it is established, as Suricata's documentation describes it."""

    def __init__(self):
        self.conns = {}

    def packet(self, f) -> dict:
        """The flow state ``f`` (packet_fields) arrives in: established, to_server."""
        src, dst = (f["src"], f["sport"]), (f["dst"], f["dport"])
        key = (f["proto"], frozenset([src, dst]))
        c = self.conns.get(key)
        flags = f["flags"] or 0
        tcp = f["proto"] == 6
        fresh_syn = tcp and flags & SYN and not flags & (ACK | RST)
        if c is None or (fresh_syn and c["phase"] in ("closed", "midstream")):
            # A new connection (or a SYN reopening a dead one): its sender is the client.
            phase = "syn" if fresh_syn else ("closed" if tcp and flags & RST else "midstream" if tcp else "one-way")
            self.conns[key] = {"client": src, "phase": phase, "fins": set()}
            return {"established": False, "to_server": True}
        to_server = src == c["client"]
        established = c["phase"] == "established"
        if tcp:
            if flags & RST:
                c["phase"] = "closed"
            elif c["phase"] == "syn" and flags & SYN and flags & ACK and not to_server:
                c["phase"] = "syn-ack"
            elif c["phase"] == "syn-ack" and flags & ACK and not flags & SYN and to_server:
                c["phase"] = "established"
            elif c["phase"] == "established" and flags & FIN and not flags & SYN:
                c["fins"].add(to_server)
                if len(c["fins"]) == 2:
                    c["phase"] = "closed"
        elif not to_server:
            # The first reply is already established: the flow has now been seen both ways.
            c["phase"] = "established"
            established = True
        return {"established": established, "to_server": to_server}


def ref_flow_ok(rule, state) -> bool:
    words = [w.strip() for w in rule["options"].get("flow", "").split(",") if w.strip()]
    for w in words:
        if w == "established" and not state["established"]:
            return False
        if w == "not_established" and state["established"]:
            return False
        if w in ("to_server", "from_client") and not state["to_server"]:
            return False
        if w in ("to_client", "from_server") and state["to_server"]:
            return False
    return True


def ref_verdict(texts, pkt, state, default_deny):
    """(deciding action, matching sids in order, dropped with which SecurityDrop or None)."""
    rules = [ref.bf_parse(t) for t in texts]
    order = sorted(range(len(rules)), key=lambda i: (ref.ORDER[rules[i]["action"]], rules[i]["priority"], i))
    f = ref.packet_fields(pkt)
    matching = [rules[i] for i in order if ref.bf_matches(rules[i], f) and ref_flow_ok(rules[i], state)]
    if not matching:
        admitted = state["established"] or not state["to_server"]
        return None, [], None if not default_deny or admitted else SecurityDrop.DEFAULT_DENY
    action = matching[0]["action"]
    drop = {"drop": SecurityDrop.ACL_DROP, "reject": SecurityDrop.ACL_REJECT}.get(action)
    return action, [r["sid"] for r in matching], drop


# -- traffic: interleaved conversations -----------------------------------------------------------

def conversation(rng, v6):
    """Packets (scapy) of one conversation between two random hosts."""
    a, b = ref.random_host(rng, v6), ref.random_host(rng, v6)
    while b == a:
        b = ref.random_host(rng, v6)
    ip = (lambda s, d: IPv6(src=s, dst=d, hlim=64)) if v6 else (lambda s, d: IP(src=s, dst=d, ttl=64))
    pa, pb = rng.choice([1050, 40000, 2001]), rng.choice([22, 53, 80, 443, 1024])
    kind = rng.choice(["tcp", "tcp", "tcp-half", "tcp-midstream", "tcp-rst", "udp", "udp-oneway", "icmp"])
    if kind.startswith("tcp"):
        def seg(fwd, flags):
            return ip(a, b) / TCP(sport=pa, dport=pb, flags=flags) if fwd else ip(b, a) / TCP(sport=pb, dport=pa,
                                                                                          flags=flags)
        if kind == "tcp-midstream":
            return [seg(True, "PA"), seg(False, "A"), seg(True, "PA")]
        steps = [seg(True, "S"), seg(False, "SA")]
        if kind == "tcp-half":
            return steps + [seg(True, "S")]
        steps += [seg(True, "A"), seg(True, "PA"), seg(False, "A"), seg(False, "PA")]
        if kind == "tcp-rst":
            return steps + [seg(False, "R"), seg(True, "PA"), seg(True, "S"), seg(False, "SA")]
        return steps + [seg(True, "FA"), seg(False, "FA"), seg(True, "A")]
    if kind.startswith("udp"):
        n = 3 if kind == "udp" else 1
        out = [ip(a, b) / UDP(sport=pa, dport=pb)]
        for _ in range(n):
            out += [ip(b, a) / UDP(sport=pb, dport=pa), ip(a, b) / UDP(sport=pa, dport=pb)]
        return out[:2 * n + 1] if kind == "udp" else out[:1] + out[2:]
    return [ip(a, b) / ICMP(type=8), ip(b, a) / ICMP(type=0)] if not v6 else [ip(a, b) / UDP(sport=pa, dport=pb)]


def interleaved(rng, n_conversations):
    convs = [conversation(rng, rng.random() < 0.2) for _ in range(n_conversations)]
    out = []
    while convs:
        c = rng.choice(convs)
        out.append(Ether(**MAC) / c.pop(0))
        if not c:
            convs.remove(c)
    return out


FLOW_OPTIONS = ["established", "not_established", "to_server", "to_client", "established,to_server",
                "established,to_client", "not_established,to_server", "from_server"]


def random_flow_rule(rng, sid):
    text = ref.random_rule(rng, sid)
    while "flags:!" in text:
        # The evaluator reads "!" as "none of these set", the compiler (host_driver/rules/parse.py)
        # as "not all of them set": they disagree, and this test is about flows, not flags.
        text = ref.random_rule(rng, sid)
    if rng.random() < 0.6:
        text = text.replace(f"sid:{sid};", f"flow:{rng.choice(FLOW_OPTIONS)}; sid:{sid};")
    return text


def programmed(texts, *, entries=2048, **kw):
    """A SecurityModel with ``texts`` programmed as the driver does, and the table's placement."""
    compiled = compile_rules(parse_rules("\n".join(texts)), capacity=100_000).entries
    table = AclTable(TcamGeometry(entries, 8))
    model = SecurityModel(acl_entries=entries, **kw)
    model.load(table.replace(compiled))
    return model, table, compiled


def meta_of(pkt):
    return parse_frame(bytes(pkt), physical=False, header_window=128, max_frame=9216)


def rule_of_slot(table):
    return {slot: rule for rule, slot in table.slots.items()}


# -- the tests ------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("default_deny", [False, True])
def test_model_equals_reference_on_conversations(seed, default_deny):
    """Random rule files with ``flow`` options over interleaved conversations (TCP handshakes,
    half-open, midstream, RST and reopening, FIN; UDP both ways and one way; ICMP; IPv6): per
    frame the flow state, the deciding rule, the drop and ``multi`` are the reference's."""
    rng = random.Random(seed)
    texts = [random_flow_rule(rng, sid) for sid in range(1, 15)]
    model, table, _ = programmed(texts, default_deny=default_deny)
    slots = rule_of_slot(table)
    tracker = RefTracker()
    seen = set()
    for n, pkt in enumerate(interleaved(rng, 40)):
        state = tracker.packet(ref.packet_fields(pkt))
        want_action, want_sids, want_drop = ref_verdict(texts, pkt, state, default_deny)
        got = model.inspect(meta_of(pkt), 0)
        where = f"frame {n} {pkt.summary()} in {state}:\n" + "\n".join(texts)
        assert (got.flow_found, got.flow_established, got.flow_to_server) == (True, state["established"],
                                                                              state["to_server"]), where
        assert got.acl_hit == (want_action is not None), where
        if got.acl_hit:
            assert got.acl_action == AclAction[want_action.upper()], where
            assert slots[got.acl_slot][1] == want_sids[0], where
            if len(want_sids) > 1:
                assert got.acl_multi, where
        assert got.drop == want_drop, where
        seen.add((want_action, want_drop))
    assert len(seen) >= 3, f"only {seen}: the random rules do not exercise the verdicts"


def test_established_and_direction_over_a_handshake():
    """``flow:established,to_server`` fires on the client's data after the handshake, not on the
    handshake's own ACK (the state a packet arrives in); ``to_client`` on the server's replies."""
    texts = ['alert tcp any any -> any 80 (msg:"est"; flow:established,to_server; sid:1;)',
             'alert tcp any 80 -> any any (msg:"reply"; flow:to_client; sid:2;)']
    model, table, _ = programmed(texts, entries=72)
    slots = rule_of_slot(table)
    c, s = IP(src="10.0.0.1", dst="10.0.0.2"), IP(src="10.0.0.2", dst="10.0.0.1")
    steps = [(c, "S", None), (s, "SA", 2), (c, "A", None), (c, "PA", 1), (s, "A", 2), (c, "FA", 1), (s, "FA", 2),
             (c, "A", None)]
    got = []
    for ip, flags, _ in steps:
        fwd = ip is c
        tcp = TCP(sport=40000, dport=80, flags=flags) if fwd else TCP(sport=80, dport=40000, flags=flags)
        r = model.inspect(meta_of(Ether(**MAC) / ip / tcp), 0)
        got.append(slots[r.acl_slot][1] if r.acl_hit else None)
    assert got == [want for _, _, want in steps]
    assert model.counts["flow_new"] == 1 and model.counts["flow_existing"] == 7
    assert model.counts["acl_alert"] == 5
    assert sum(model.hits.values()) == 5


def test_default_deny_admits_return_traffic_and_established_flows_only():
    """Default deny with one pass rule for the client's opening: the server's answers (to_client)
    and the established conversation pass; a stranger's packet into the server is dropped, and so
    is a fresh connection from outside."""
    texts = ['pass tcp 10.0.0.0/24 any -> any 80 (flow:to_server,not_established; sid:1;)']
    model, _, _ = programmed(texts, entries=72, default_deny=True)
    c, s = IP(src="10.0.0.1", dst="192.0.2.9"), IP(src="192.0.2.9", dst="10.0.0.1")

    def send(ip, sport, dport, flags):
        return model.inspect(meta_of(Ether(**MAC) / ip / TCP(sport=sport, dport=dport, flags=flags)), 0)
    assert send(c, 40000, 80, "S").acl_action is AclAction.PASS
    r = send(s, 80, 40000, "SA")
    assert (r.acl_hit, r.drop, r.flow_to_server) == (False, None, False)        # return traffic
    assert send(c, 40000, 80, "A").acl_action is AclAction.PASS                   # not yet established
    r = send(c, 40000, 80, "PA")
    assert (r.acl_hit, r.drop, r.flow_established) == (False, None, True)        # established
    assert send(IP(src="192.0.2.66", dst="10.0.0.1"), 5555, 22, "S").drop is SecurityDrop.DEFAULT_DENY
    # Not IP: no flow request, never default-denied.
    arp = model.inspect(meta_of(Ether(**MAC) / ARP(psrc="10.0.0.1", pdst="10.0.0.2")), 0)
    assert (arp.flow, arp.drop) == (None, None)
    assert model.counts["default_deny"] == 1 and model.counts["acl_pass"] == 2


def test_table_full_is_never_admitted():
    """A flow the table could not hold is no flow: under default deny its answers (which would be
    return traffic) are dropped, and a rule that asks for a flow direction does not match."""
    model = SecurityModel(acl_entries=72, flow_sets=2, flow_ways=1, default_deny=True)
    model.load(AclTable(TcamGeometry(72, 8)).replace(compile_rules(parse_rules(
        'pass udp any any -> any 53 (flow:to_server; sid:1;)')).entries))
    answers = []
    for i in range(12):
        client, server = f"10.0.0.{i + 1}", "10.9.9.9"
        q = model.inspect(meta_of(Ether(**MAC) / IP(src=client, dst=server) / UDP(sport=1000 + i, dport=53)), 0)
        a = model.inspect(meta_of(Ether(**MAC) / IP(src=server, dst=client) / UDP(sport=53, dport=1000 + i)), 0)
        answers.append((q.flow.outcome.name, q.drop, a.drop))
    full = [x for x in answers if x[0] == "TABLE_FULL"]
    assert full and len(full) < len(answers), answers
    # Refused: the query has no flow (to_server unknown: the pass rule cannot match), so it and its
    # answer are dropped; held flows pass both ways.
    assert all(q == a == SecurityDrop.DEFAULT_DENY for _, q, a in full), answers
    assert all(q is None and a is None for o, q, a in answers if o != "TABLE_FULL"), answers
    assert model.counts["flow_table_full"] == 2 * len(full)


def test_bypass_frames_are_not_inspected():
    """Frames with rx_error, malformed frames and frames on the bypass port make no request and no
    lookup: no counts move, no hit is recorded."""
    model, _, _ = programmed(['drop ip any any -> any any (sid:1;)'], entries=72, bypass_port=3)
    frame = Ether(**MAC) / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2)
    runt = bytes(frame)[:20]
    for meta, port, rx_error in [(meta_of(frame), 3, False), (meta_of(frame), 0, True),
                                 (parse_frame(runt, physical=False, header_window=128, max_frame=9216), 0, False)]:
        r = model.inspect(meta, port, rx_error=rx_error)
        assert r.bypass and r.flow is None and not r.acl_hit and r.drop is None
    assert not any(model.counts.values()) and not model.hits
    assert model.inspect(meta_of(frame), 0).drop is SecurityDrop.ACL_DROP
    # Malformed with a complete L3 header (a TCP data offset past the IP payload): looked up (as
    # Suricata's IP-only rules see it) but no flow request.
    bad_offset = meta_of(Ether(**MAC) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2, dataofs=15))
    assert bad_offset["malformed"] and bad_offset["has_l3"]
    before = dict(model.counts)
    r = model.inspect(bad_offset, 0)
    assert not r.bypass and r.flow is None and r.acl_hit and r.drop is SecurityDrop.ACL_DROP
    assert {k: v - before.get(k, 0) for k, v in model.counts.items() if v != before.get(k, 0)} == {"acl_drop": 1}


def test_replacement_switches_generation_and_counters_read_and_clear():
    """A second table replaces the first at its commit; hits are counted per rule slot and a
    counter read with clear restarts from zero."""
    geo = TcamGeometry(72, 8)
    table = AclTable(geo)
    model = SecurityModel(acl_entries=72)
    frame = meta_of(Ether(**MAC) / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=53))
    model.load(table.replace(compile_rules(parse_rules('alert udp any any -> any 53 (sid:7;)')).entries))
    assert model.inspect(frame, 0).acl_action is AclAction.ALERT
    ops = table.replace(compile_rules(parse_rules('drop udp any any -> any 53 (sid:8;)')).entries)
    commit = [op.kind for op in ops].index("commit")
    model.load(ops[:commit])
    assert model.inspect(frame, 0).acl_action is AclAction.ALERT       # the new rows are not live yet
    model.load(ops[commit:])
    r = model.inspect(frame, 0)
    assert r.acl_action is AclAction.DROP and table.slots[(1, 8)] == r.acl_slot
    assert model.apply(Op("clear_counter", r.acl_slot)) == 1
    assert model.apply(Op("clear_counter", r.acl_slot)) == 0


def test_the_reference_tracker_reads_suricata_verify_like_ip_only():
    """Sanity of the reference itself on docs/flow.md's settled case: a handshake's own ACK is not
    established, the data after it is; a UDP reply is."""
    t = RefTracker()

    def f(src, dst, sport, dport, proto, flags=0):
        return {"src": ipaddress.ip_address(src), "dst": ipaddress.ip_address(dst), "sport": sport,
                "dport": dport, "proto": proto, "flags": flags}
    seq = [f("1.1.1.1", "2.2.2.2", 5, 80, 6, SYN), f("2.2.2.2", "1.1.1.1", 80, 5, 6, SYN | ACK),
           f("1.1.1.1", "2.2.2.2", 5, 80, 6, ACK), f("1.1.1.1", "2.2.2.2", 5, 80, 6, PSH | ACK)]
    assert [t.packet(p)["established"] for p in seq] == [False, False, False, True]
    assert t.packet(f("3.3.3.3", "4.4.4.4", 9, 53, 17))["established"] is False
    assert t.packet(f("4.4.4.4", "3.3.3.3", 53, 9, 17)) == {"established": True, "to_server": False}


# -- the payload matcher in the stage: held to scapy's payload and Hyperscan's matches ---------------

def _scapy_payload(raw: bytes) -> bytes | None:
    """The L4 payload as scapy dissects the frame (Ethernet padding excluded), None when scapy finds
    no TCP/UDP/ICMP layer."""
    from scapy.packet import Padding
    pkt = Ether(raw)
    for layer in (TCP, UDP, ICMP):
        if layer in pkt:
            body = bytes(pkt[layer].payload)
            pad = pkt[Padding].load if Padding in pkt else b""
            return body[:len(body) - len(pad)] if pad else body
    return None


def test_matcher_fields_against_scapy_and_hyperscan():
    """Random frames (IPv4/IPv6, TCP/UDP/ICMP, VLAN, padding, truncated, rx_error, ARP) through the
    model with 4-byte offloaded literals programmed: a frame is inspected exactly when scapy finds
    a whole L4 header in a frame without a malformed bit (runts on a physical port included) or
    rx_error; it has hits exactly when Hyperscan finds a literal in
    scapy's payload (caseless); the first hit is the literal Hyperscan finds first; every hit is
    settled, and nothing is punted without overflow."""
    import hyperscan
    from scapy.layers.l2 import Dot1Q
    from scapy.packet import Raw

    from host_driver.rules.content import compile_content
    rng = random.Random(15)
    literals = [bytes(rng.choice(b"abcdefghij\x00\x01\xfe") for _ in range(4)) for _ in range(12)]
    literals = list(dict.fromkeys(literals))
    text = "".join(f'alert ip any any -> any any (content:"|{lit.hex(" ")}|"; nocase; sid:{i + 1};)\n'
                   for i, lit in enumerate(literals))
    program = compile_content(parse_rules(text), index_bits=11)
    placed = [(lit, r.placement.bucket) for lit, r in zip(literals, program.rules, strict=True)
              if r.status == "offloaded"]
    assert len(placed) >= 8
    model = SecurityModel(acl_entries=8, matcher_index_bits=11)
    model.load([Op("commit")])
    for index, entry in program.table.items():
        model.matcher_write(index, entry)
    model.matcher_commit()
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    db.compile(expressions=[b"".join(b"\\x%02x" % b for b in lit) for lit, _ in placed],
               ids=list(range(len(placed))), elements=len(placed), flags=[hyperscan.HS_FLAG_CASELESS] * len(placed))
    checked = {"inspected": 0, "hit": 0, "skipped": 0}
    for n in range(400):
        body = bytearray(rng.randbytes(rng.randrange(0, 90)))
        if body and rng.random() < 0.6:
            lit = rng.choice(placed)[0]
            at = rng.randrange(len(body) + 1)
            body[at:at] = bytes(c ^ 0x20 if 0x61 <= c <= 0x7A and rng.random() < 0.5 else c for c in lit)
        l4 = rng.choice([TCP(sport=1, dport=2, flags="PA"), UDP(sport=3, dport=4), ICMP(type=8)])
        l3 = IP(src="10.0.0.1", dst="10.0.0.2") if rng.random() < 0.7 else IPv6(src="::1", dst="::2")
        if isinstance(l3, IPv6) and isinstance(l4, ICMP):
            l4 = UDP(sport=5, dport=6)
        pkt = Ether(**MAC) / l3 / l4 / Raw(bytes(body))
        if rng.random() < 0.2:
            pkt = Ether(**MAC) / Dot1Q(vlan=5) / l3 / l4 / Raw(bytes(body))
        raw = bytes(pkt)
        if rng.random() < 0.2:
            raw = raw + rng.choice([b"\x00" * 8, rng.choice(placed)[0] * 2])     # Ethernet padding: never payload
        if rng.random() < 0.1:
            raw = raw[:rng.randrange(14, len(raw))]                              # truncated: malformed
        rx_error = rng.random() < 0.05
        if rng.random() < 0.05:
            raw = bytes(Ether(**MAC) / ARP())
        if len(raw) < 14:
            continue
        # On a physical port a frame under 60 bytes is a runt: malformed, so not matched.
        meta = parse_frame(raw, physical=rng.random() < 0.5, header_window=128, max_frame=9216)
        got = model.inspect(meta, 0, rx_error=rx_error, frame=raw).match
        payload = _scapy_payload(raw)
        well_formed = payload is not None and not meta["malformed"] and not rx_error
        assert got.inspected == well_formed, (n, raw.hex())
        if not got.inspected:
            assert got.record_fields()["match_n_hits"] == 0 and not got.punt
            checked["skipped"] += 1
            continue
        checked["inspected"] += 1
        found = []
        db.scan(payload, match_event_handler=lambda i, _f, to, _fl, _c, found=found:
                found.append((to - 4, placed[i][1])))
        found.sort()
        assert bool(got.hits) == bool(found), (n, payload, found, got)
        if found:
            checked["hit"] += 1
            assert got.hits[0].bucket == found[0][1]
            assert {h.bucket for h in got.hits} <= {b for _, b in found}
            assert all(h.settled for h in got.hits) and got.punt == got.overflow
    assert min(checked.values()) >= 20, checked
