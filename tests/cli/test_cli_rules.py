"""``secnic run --rules`` (docs/security.md, "Driver and secnic run"): rules compiled and programmed
through the driver, alerts in eve.json (held to Suricata's EVE schema), trace.jsonl's ``acl_rule`` and
``sids``, counters.json's SECURITY/SECPORT counters and ``rules`` table; suricata-verify's header-only
cases through the whole command; bad rules and a bad ``[security]`` table exit 2 with nothing written.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import SHARED_DATA
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from host_driver.driver import received_drops
from sim.cli.main import main
from sim.run.pcapio import write_pcap

M = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}
# The server side sends from other MACs: on the switch every frame enters phy0, and a reply to a
# MAC learned there would be a same-port drop.
R = {"src": "02:00:00:00:00:03", "dst": "02:00:00:00:00:04"}
PAD = Raw(b"x" * 20)
C, S = "10.0.0.1", "192.0.2.9"

RULES = """\
alert tcp any any -> any 80 (msg:"web est"; flow:established,to_server; sid:1; rev:2;)
alert tcp any any -> any 80 (msg:"web any"; sid:2;)
drop udp any any -> any 53 (msg:"dns"; sid:3;)
reject tcp any any -> any 22 (msg:"ssh"; sid:4;)
pass icmp any any -> any any (sid:5;)
"""

#: (frame, sids of its alerts, verdict, drop reason): a handshake to port 80 and its data
#: (sid 1 only once established, sid 2 always; the data frame alerts twice: the NIC reports sid 1
#: with multi, the host finishes the list), a DNS query (dropped), SSH (rejected), ICMP (passed).
FRAMES = [
    (Ether(**M) / IP(src=C, dst=S) / TCP(sport=40000, dport=80, flags="S") / PAD, [2], "forward", None),
    (Ether(**R) / IP(src=S, dst=C) / TCP(sport=80, dport=40000, flags="SA") / PAD, [], "forward", None),
    (Ether(**M) / IP(src=C, dst=S) / TCP(sport=40000, dport=80, flags="A") / PAD, [2], "forward", None),
    (Ether(**M) / IP(src=C, dst=S) / TCP(sport=40000, dport=80, flags="PA") / PAD, [1, 2], "forward", None),
    (Ether(**M) / IP(src=C, dst="8.8.8.8") / UDP(sport=5000, dport=53) / PAD, [3], "drop", "acl_drop"),
    (Ether(**M) / IP(src=C, dst=S) / ICMP(type=8) / PAD, [], "forward", None),
    (Ether(**M) / IP(src="10.0.0.5", dst=S) / TCP(sport=1, dport=22, flags="S") / PAD, [4], "drop", "acl_reject"),
]


@pytest.fixture
def case(tmp_path):
    pcap = tmp_path / "in.pcap"
    write_pcap(pcap, [(bytes(f), 1_765_000_000_000_000_000 + i * 1_000_000) for i, (f, *_) in enumerate(FRAMES)])
    rules = tmp_path / "local.rules"
    rules.write_text(RULES)
    bump = tmp_path / "bump.toml"
    bump.write_text('[nic]\nports = ["phy0", "vm1"]\n[security]\nacl_entries = 72\nflow_sets = 64\n')
    return pcap, rules, bump


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("nic", ["bump", "switch"])
def test_run_with_rules_on_the_model(nic, case, tmp_path):
    """Each frame's sids, verdict and reason; one eve event per alert with its action; the rule
    hit counters; per port, received = forwarded + dropped with the security drops counted.
    ``switch``: the default NIC (no --config), which --rules gives the default security stage."""
    pcap, rules, bump = case
    out = tmp_path / "out"
    config = ["--config", str(bump)] if nic == "bump" else []
    assert main(["run", "--pcap", str(pcap), "--rules", str(rules), *config, "--out", str(out)]) == 0
    trace = _lines(out / "trace.jsonl")
    assert [(t["sids"], t["verdict"], t["reason"]) for t in trace] == [(s, v, r) for _, s, v, r in FRAMES]
    assert [t["acl_rule"] for t in trace] == [2, None, 2, 1, 3, 5, 4]
    eve = _lines(out / "eve.json")
    assert [(e["pcap_cnt"], e["alert"]["signature_id"], e["alert"]["action"]) for e in eve] == [
        (1, 2, "allowed"), (3, 2, "allowed"), (4, 1, "allowed"), (4, 2, "allowed"), (5, 3, "blocked"),
        (7, 4, "blocked")]
    assert eve[2]["alert"]["rev"] == 2 and eve[2]["alert"]["signature"] == "web est"
    assert all(e["in_iface"] == "phy0" and e["pcap_filename"] == str(pcap) for e in eve)
    counters = json.loads((out / "counters.json").read_text())
    assert {r["sid"]: r["hits"] for r in counters["rules"]} == {1: 1, 2: 2, 3: 1, 4: 1, 5: 1}
    sec = counters["security"]
    assert (sec["flow_new"], sec["flow_existing"], sec["acl_alert"], sec["acl_drop"], sec["acl_reject"],
            sec["acl_pass"]) == (4, 3, 3, 1, 1, 1)
    phy0 = counters["ports"]["phy0"]
    assert phy0["security"] == {"drop_acl": 1, "drop_reject": 1, "drop_default_deny": 0, "alerts": 5, "acl_punts": 0,
                                "acl_mirrors": 0, "ips_diverts": 0, "ips_reinjects": 0}
    for port in counters["ports"].values():
        forwarded = sum(1 for t in trace if t["verdict"] == "forward" and t["in_port"] == "phy0") \
            if port is phy0 else 0
        assert port["rx_packets"] == forwarded + received_drops(port)
    run = json.loads((out / "run.json").read_text())
    assert run["security"]["host_finished_frames"] == 1 and run["security"]["alerts"] == 6


def test_eve_is_valid_against_suricatas_schema(case, tmp_path, shared_data):
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is a dev dependency")
    path = shared_data / "suricata-eve-schema" / "schema.json"
    if not path.is_file():
        pytest.skip(f"Suricata's EVE schema not found at {path}")
    doc = json.loads(path.read_text())
    validator = jsonschema.validators.validator_for(doc)(doc, format_checker=jsonschema.FormatChecker())
    pcap, rules, bump = case
    assert main(["run", "--pcap", str(pcap), "--rules", str(rules), "--config", str(bump),
                 "--out", str(tmp_path / "out")]) == 0
    events = _lines(tmp_path / "out" / "eve.json")
    assert len(events) == 6
    # ... and content rules' alerts (settled in hardware and from the host path).
    rules.write_text(PAYLOAD_RULES)
    payload_pcap = tmp_path / "payload.pcap"
    write_pcap(payload_pcap, [(bytes(f), i) for i, (f, *_) in enumerate(PAYLOAD_FRAMES)])
    assert main(["run", "--pcap", str(payload_pcap), "--rules", str(rules), "--config", str(bump),
                 "--out", str(tmp_path / "payload")]) == 0
    payload_events = _lines(tmp_path / "payload" / "eve.json")
    assert len(payload_events) == 5
    for e in events + payload_events:
        errors = sorted(validator.iter_errors(e), key=str)
        assert not errors, f"{e}: {errors[0].message} at {list(errors[0].absolute_path)}"


def test_default_deny_from_the_config(case, tmp_path):
    """``default_deny = true`` in [security]: with only a pass rule for the opening SYN, the
    server's answer (to the client) and the established data pass; the stranger's SYN and the DNS
    query are dropped by default deny; ARP-free IPv4 only here."""
    pcap, _, bump = case
    rules = tmp_path / "deny.rules"
    rules.write_text('pass tcp 10.0.0.1 any -> any 80 (flow:to_server,not_established; sid:9;)\n')
    cfg = tmp_path / "deny.toml"
    cfg.write_text(bump.read_text() + "default_deny = true\n")
    out = tmp_path / "out"
    assert main(["run", "--pcap", str(pcap), "--rules", str(rules), "--config", str(cfg), "--out", str(out)]) == 0
    trace = _lines(out / "trace.jsonl")
    assert [t["reason"] for t in trace] == [None, None, None, None, "default_deny", "default_deny", "default_deny"]
    counters = json.loads((out / "counters.json").read_text())
    assert counters["security"]["default_deny"] == 3
    assert counters["ports"]["phy0"]["security"]["drop_default_deny"] == 3
    assert (out / "eve.json").read_text() == ""


def test_rule_syntax_error_exits_2_with_file_line_column(case, tmp_path, capsys):
    pcap, _, bump = case
    bad = tmp_path / "bad.rules"
    bad.write_text('alert tcp any any -> any 80 (sid:1;)\nalert tcp any any -> any 8o (sid:2;)\n')
    out = tmp_path / "out"
    assert main(["run", "--pcap", str(pcap), "--rules", str(bad), "--config", str(bump), "--out", str(out)]) == 2
    assert re.search(rf"{re.escape(str(bad))}:2:\d+: ", capsys.readouterr().err)
    assert not out.exists()


@pytest.mark.parametrize("table, needle", [
    ("flow_set = 64", "security.flow_set: unknown key"),
    ("flow_sets = 100", "security.flow_sets: must be a power of two"),
    ("default_deny = 1", "security.default_deny: must be true or false"),
    ('bypass_port = "eth9"', "security.bypass_port: must name a port"),
])
def test_bad_security_table_exits_2_naming_the_key(table, needle, case, tmp_path, capsys):
    pcap, rules, _ = case
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f'[nic]\nports = ["phy0", "vm1"]\n[security]\n{table}\n')
    out = tmp_path / "out"
    assert main(["run", "--pcap", str(pcap), "--rules", str(rules), "--config", str(cfg), "--out", str(out)]) == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()


# -- content (payload) rules end to end: the matcher, settled hits, the host path ---------------------

PAYLOAD_RULES = """\
alert ip any any -> any any (msg:"four bytes"; content:"|de ad be ef|"; sid:20;)
alert tcp any any -> any 80 (msg:"evil get"; content:"GET /evil"; sid:21;)
drop udp any any -> any 53 (msg:"evil dns"; content:"evil"; nocase; sid:22;)
alert tcp any any -> any 80 (msg:"secret"; content:"SECRET"; flow:established,to_server; sid:23;)
alert tcp any any -> any 22 (msg:"ssh"; sid:24;)
pass tcp any any -> any 8080 (content:"trusted"; sid:25;)
"""

#: (frame, sids, punted to the host): sid 20 is offloaded (4 bytes, any IP: settled in hardware, no
#: punt); 21-23 and 25 are verified on the host (their header, flow, case); 23 needs the flow
#: established (the handshake's data frame only: the stranger's frame 7 is new); 22 is a content drop:
#: it alerts, the frame goes on (IDS round); frame 8 hits 21's literal on port 22: punted, the host
#: finds only the classifier's sid 24; frame 9's pass rule silences sid 20 (Suricata: pass first).
PAYLOAD_FRAMES = [
    (Ether(**M) / IP(src=C, dst=S) / TCP(sport=40000, dport=80, flags="S") / PAD, [], False),
    (Ether(**R) / IP(src=S, dst=C) / TCP(sport=80, dport=40000, flags="SA") / PAD, [], False),
    (Ether(**M) / IP(src=C, dst=S) / TCP(sport=40000, dport=80, flags="A") / PAD, [], False),
    (Ether(**M) / IP(src=C, dst=S) / TCP(sport=40000, dport=80, flags="PA") / Raw(b"GET /evil SECRET x"), [21, 23],
     True),
    (Ether(**M) / IP(src=C, dst="8.8.8.8") / UDP(sport=5000, dport=53) / Raw(b"an EVIL query here"), [22], True),
    (Ether(**M) / IP(src=C, dst=S) / UDP(sport=5000, dport=9999) / Raw(b"xx\xde\xad\xbe\xefyy and more bytes"),
     [20], False),
    (Ether(**M) / IP(src="10.0.0.7", dst=S) / TCP(sport=1, dport=80, flags="PA") / Raw(b"SECRET stuff here"), [],
     True),
    (Ether(**M) / IP(src=C, dst=S) / TCP(sport=2, dport=22, flags="S") / Raw(b"GET /evil on 22 x"), [24], True),
    (Ether(**M) / IP(src=C, dst=S) / TCP(sport=3, dport=8080, flags="S") / Raw(b"trusted \xde\xad\xbe\xef x"), [],
     True),
]


@pytest.fixture
def payload_case(tmp_path):
    pcap = tmp_path / "payload.pcap"
    write_pcap(pcap, [(bytes(f), 1_765_000_000_000_000_000 + i * 1_000_000)
                      for i, (f, *_) in enumerate(PAYLOAD_FRAMES)])
    rules = tmp_path / "payload.rules"
    rules.write_text(PAYLOAD_RULES)
    bump = tmp_path / "bump.toml"
    bump.write_text('[nic]\nports = ["phy0", "vm1"]\n[security]\nacl_entries = 72\nflow_sets = 64\n'
                    'matcher_index_bits = 9\n')
    return pcap, rules, bump


def test_content_rules_end_to_end_on_the_model(payload_case, tmp_path, capsys):
    """Each frame's sids (trace and eve.json, in frame order), the matcher fields in trace.jsonl,
    run.json's host path (punted = inspected) and the SECMATCH counters; the summary's punt rate."""
    pcap, rules, bump = payload_case
    out = tmp_path / "out"
    assert main(["run", "--pcap", str(pcap), "--rules", str(rules), "--config", str(bump), "--out", str(out)]) == 0
    assert "  alerts           5 (eve.json); host path: 5 of 9 frames punted (55.6 %), 3 alerts found there" \
        in capsys.readouterr().out.splitlines()
    trace = _lines(out / "trace.jsonl")
    assert [t["sids"] for t in trace] == [s for _, s, _ in PAYLOAD_FRAMES]
    assert [t["match"]["punt"] for t in trace] == [p for *_, p in PAYLOAD_FRAMES]
    assert all(t["verdict"] == "forward" for t in trace), "the matcher never changes forwarding"
    assert trace[5]["match"]["hits"][0][1] == 1 and trace[5]["match"]["host_sids"] == []
    assert trace[3]["match"]["host_sids"] == [21, 23] and trace[8]["match"]["sids"] == [20, 25]
    eve = _lines(out / "eve.json")
    assert [(e["pcap_cnt"], e["alert"]["signature_id"], e["alert"]["action"]) for e in eve] == [
        (4, 21, "allowed"), (4, 23, "allowed"), (5, 22, "allowed"), (6, 20, "allowed"), (8, 24, "allowed")]
    run = json.loads((out / "run.json").read_text())
    assert run["host_path"] == {"punted": 5, "acl_punted": 0, "inspected": 5, "alerts": 3, "settled_alerts": 1,
                                "punt_rate": round(5 / 9, 6)}
    assert run["security"]["payload_rules"] == {"offloaded": 1, "prefilter": 4, "host only": 0}
    counters = json.loads((out / "counters.json").read_text())
    # (Two literals in one 8-byte beat overflow the one-hit-per-beat collector: frames 4 and 9 here.)
    assert counters["secmatch"] == {"matcher_frames": 9, "matcher_punts": 5,
                                    "matcher_overflows": sum(t["match"]["overflow"] for t in trace),
                                    "matcher_too_long": 0}


#: Host-only payload rules (2-byte fast patterns: no matcher window) and a header rule over one of
#: their frames: the compiler makes the host-only rules' headers ACL punt entries, after the others.
HOST_ONLY_RULES = """\
alert udp any any -> any any (msg:"yy"; content:"yy"; sid:26;)
alert tcp any any -> any 7 (msg:"zz"; content:"zz"; sid:27;)
alert udp any any -> any 9999 (msg:"udp 9999"; sid:28;)
"""


def test_host_only_content_rules_punt_by_their_header(payload_case, tmp_path):
    """Host-only rules punt only the frames their header matches (docs/security.md, "ACL actions
    punt and mirror"), not every inspected frame: the two UDP frames (sid 26's header; sid 27's,
    TCP to port 7, matches none). Frame 5 (DNS) was punted by the matcher anyway; frame 6's first
    hit is sid 28's alert entry, with sid 26's punt entry behind it (``multi``): CONTROL bit 2 punts
    it, and the host finds sid 26's "yy" there. Written by hand from the frames above."""
    pcap, rules, bump = payload_case
    rules.write_text(PAYLOAD_RULES + HOST_ONLY_RULES)
    out = tmp_path / "out"
    assert main(["run", "--pcap", str(pcap), "--rules", str(rules), "--config", str(bump), "--out", str(out)]) == 0
    trace = _lines(out / "trace.jsonl")
    assert [t["sids"] for t in trace] == [[], [], [], [21, 23], [22], [20, 26, 28], [], [24], []]
    assert trace[5]["match"]["host_sids"] == [26] and trace[5]["acl_rule"] == 28
    # The DNS frame's first hit is sid 26's punt entry: it decides nothing (no acl_rule).
    assert trace[4]["acl_rule"] is None
    assert [t["match"]["punt"] for t in trace] == [p for *_, p in PAYLOAD_FRAMES], "the matcher's punts unchanged"
    run = json.loads((out / "run.json").read_text())
    assert run["host_path"]["punted"] == 6 and run["host_path"]["acl_punted"] == 2
    assert run["security"]["payload_rules"]["host only"] == 2
    counters = json.loads((out / "counters.json").read_text())
    assert {r["sid"]: r["action"] for r in counters["rules"]} == {24: "alert", 28: "alert", 26: "punt", 27: "punt"}
    # Punt entries decide nothing: SECURITY counts only the deciding first hits (sid 24, sid 28).
    assert counters["security"]["acl_alert"] == 2 and counters["security"]["acl_pass"] == 0
    # The ACL's punts per frame (trace) and per port (SECPORT): frames 5 (sid 26's punt entry first)
    # and 6 (sid 28's alert with sid 26's punt behind it); no mirror entries. Punts are no drops.
    assert [t["acl_punt"] for t in trace] == [False] * 4 + [True, True] + [False] * 3
    assert not any(t["acl_mirror"] for t in trace)
    phy0 = counters["ports"]["phy0"]
    assert (phy0["security"]["acl_punts"], phy0["security"]["acl_mirrors"]) == (2, 0)
    assert counters["ports"]["vm1"]["security"]["acl_punts"] == 0
    assert phy0["rx_packets"] == len(PAYLOAD_FRAMES) == counters["ports"]["vm1"]["tx_packets"] + received_drops(phy0)


# -- IPS: divert to the host, drop or re-inject (docs/security.md, "IPS: divert and re-inject") ------

#: PAYLOAD_FRAMES (all into phy0 of the default switch) by hand: the NIC punts frames 4, 5, 7, 8 and 9
#: (1-based); in IPS mode they are diverted to the host port instead. The host drops frame 5 (sid 22,
#: a content drop rule, matches "EVIL") and passes the others (alerts, no alert, a pass rule), which it
#: re-injects: they leave where the IDS run sent them, in the same order.
IPS_DIVERTED = {4: "pass", 5: "drop", 7: "pass", 8: "pass", 9: "pass"}
VMS = ["vm1", "vm2", "vm3", "vm4"]


def _eve_validator(shared_data):
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is a dev dependency")
    path = shared_data / "suricata-eve-schema" / "schema.json"
    if not path.is_file():
        pytest.skip(f"Suricata's EVE schema not found at {path}")
    doc = json.loads(path.read_text())
    return jsonschema.validators.validator_for(doc)(doc, format_checker=jsonschema.FormatChecker())


def test_ips_diverts_and_the_host_drops_or_reinjects(payload_case, tmp_path, shared_data):
    """One content drop rule hits frame 5: it does not leave the NIC; the other diverted frames leave
    every port as in IDS mode, in order; counters balance: diverted = re-injected + dropped by the
    host, per port received = sent (to the host too) + dropped; eve.json has the blocked alert and a
    drop event, valid against Suricata's schema."""
    from host_driver.blocks.security import split_host_tag
    from sim.run.pcapio import read_pcap
    pcap, rules, _ = payload_case
    outs = {}
    for mode in ("ids", "ips"):
        outs[mode] = out = tmp_path / mode
        assert main(["run", "--pcap", str(pcap), "--rules", str(rules), *(["--ips"] if mode == "ips" else []),
                     "--out", str(out)]) == 0
    ids, ips = outs["ids"], outs["ips"]
    trace = _lines(ips / "trace.jsonl")
    assert [t["verdict"] for t in trace] == ["punt" if k in IPS_DIVERTED else "forward" for k in range(1, 10)]
    assert {t["pcap_cnt"]: t["ips"]["verdict"] for t in trace if "ips" in t} == IPS_DIVERTED
    assert all(t["egress"] == ["host"] for t in trace if "ips" in t)
    assert [t["sids"] for t in trace] == [t["sids"] for t in _lines(ids / "trace.jsonl")], "the same alerts"

    def frames(out, port):
        return [f.data for f in read_pcap(out / "egress" / f"{port}.pcap")]
    dropped = bytes(PAYLOAD_FRAMES[4][0])
    for port in VMS:
        assert frames(ips, port) == [f for f in frames(ids, port) if f != dropped], port
        assert len(frames(ips, port)) == 8
    # The host port: each diverted frame with its host tag, then (passed) the frame as the flood sends it.
    host = frames(ips, "host")
    tagged = [split_host_tag(f) for f in host if f[12:14] == b"\x88\xb5"]
    assert [f for _, f in tagged] == [bytes(PAYLOAD_FRAMES[k - 1][0]) for k in IPS_DIVERTED]
    egress_mask = sum(1 << q for q in (1, 2, 3, 4, 5))          # vm1..vm4 and host: the flood
    assert all((t["in_port"], t["vlan"], t["egress"], t["match_punt"], t["reinject"]) == (0, 1, egress_mask, 1, 0)
               for t, _ in tagged)
    assert [f for f in host if f[12:14] != b"\x88\xb5"] == [f for f in frames(ids, "host") if f != dropped]

    run = json.loads((ips / "run.json").read_text())
    hp = run["host_path"]
    assert (hp["diverted"], hp["reinjected"], hp["host_dropped"]) == (5, 4, 1)
    assert hp["diverted"] == hp["punted"] == hp["reinjected"] + hp["host_dropped"]
    counters = json.loads((ips / "counters.json").read_text())
    ports = counters["ports"]
    assert ports["phy0"]["security"]["ips_diverts"] == 5 and ports["host"]["security"]["ips_reinjects"] == 4
    forwarded = sum(1 for t in trace if t["verdict"] == "forward")
    assert ports["phy0"]["rx_packets"] == forwarded + 5 + received_drops(ports["phy0"]) == 9
    assert ports["host"]["rx_packets"] == 4 + received_drops(ports["host"])
    assert ports["host"]["tx_packets"] == 4 + 5 + 4         # floods of 1, 2, 3, 6; diverted; re-injected
    eve = _lines(ips / "eve.json")
    assert [(e["pcap_cnt"], e["event_type"], e.get("alert", {}).get("action")) for e in eve] == [
        (4, "alert", "allowed"), (4, "alert", "allowed"), (5, "alert", "blocked"), (5, "drop", None),
        (6, "alert", "allowed"), (8, "alert", "allowed")]
    assert eve[3]["drop"]["udplen"] == 8 + len(b"an EVIL query here") and eve[3]["drop"]["reason"] == "rules"
    validator = _eve_validator(shared_data)
    for e in eve:
        errors = sorted(validator.iter_errors(e), key=str)
        assert not errors, f"{e}: {errors[0].message} at {list(errors[0].absolute_path)}"


def test_ips_on_random_traffic_balances_and_only_host_drops_go_missing(payload_case, tmp_path):
    """IPS against IDS on 120 random frames (the payload rules, the host-only rules' ACL punt entries,
    two MACs so that the switch both floods and sends unicast): the same alerts per frame; every
    diverted frame the host passes leaves every port as the IDS run sent it, in order, and only the
    frames the host dropped (those whose alert is a drop rule's, eve ``blocked`` + ``drop``) are
    missing; diverted = punted = re-injected + dropped by the host, by frame and by counter."""
    import random

    from sim.run.pcapio import read_pcap
    pcap, rules, _ = payload_case
    rules.write_text(PAYLOAD_RULES + HOST_ONLY_RULES)
    rng = random.Random(15)
    words = [b"GET /evil", b"SECRET", b"evil", b"\xde\xad\xbe\xef", b"trusted", b"yy", b"zz", b"nothing"]
    frames = []
    for _ in range(120):
        mac = rng.choice([M, R])
        body = b" ".join(rng.choice(words) for _ in range(rng.randrange(1, 4))) + b" pad"
        l4 = (UDP(sport=rng.randrange(1024, 60000), dport=rng.choice([53, 9999, 5000]))
              if rng.random() < 0.5 else TCP(sport=rng.randrange(1024, 60000), dport=rng.choice([80, 22, 7, 8080]),
                                             flags=rng.choice(["S", "PA", "A"])))
        frames.append(Ether(**mac) / IP(src=rng.choice([C, S, "10.0.0.7"]), dst=rng.choice([C, S])) / l4 / Raw(body))
    write_pcap(pcap, [(bytes(f), 1_765_000_000_000_000_000 + i * 1_000_000) for i, f in enumerate(frames)])
    runs = {}
    for mode in ("ids", "ips"):
        runs[mode] = out = tmp_path / mode
        assert main(["run", "--pcap", str(pcap), "--rules", str(rules), *(["--ips"] if mode == "ips" else []),
                     "--out", str(out)]) == 0
    ids, ips = (_lines(runs[m] / "trace.jsonl") for m in ("ids", "ips"))
    assert [t["sids"] for t in ips] == [t["sids"] for t in ids]
    punted = [t for t in ids if t["acl_punt"] or (t["match"] or {}).get("punt")]
    diverted = [t for t in ips if "ips" in t]
    assert [t["pcap_cnt"] for t in diverted] == [t["pcap_cnt"] for t in punted if t["verdict"] == "forward"]
    assert any(t["acl_punt"] for t in diverted) and any(t["match"]["punt"] for t in diverted)
    dropped = {t["pcap_cnt"] for t in diverted if t["ips"]["verdict"] == "drop"}
    # The host drops exactly the diverted frames whose alert is sid 22's, the one drop rule (a drop rule
    # that matches is a frame's only alert, docs/security.md "Payload rules").
    assert dropped == {t["pcap_cnt"] for t in diverted if 22 in t["sids"]}
    assert 0 < len(dropped) < len(diverted)
    eve = _lines(runs["ips"] / "eve.json")
    blocked = {e["pcap_cnt"] for e in eve if e["event_type"] == "alert" and e["alert"]["action"] == "blocked"}
    assert {e["pcap_cnt"] for e in eve if e["event_type"] == "drop"} == dropped <= blocked
    for port in VMS + ["mon"]:
        want = [(f.ts_ns, f.data) for f in read_pcap(runs["ids"] / "egress" / f"{port}.pcap")
                if (f.ts_ns - 1_765_000_000_000_000_000) // 1_000_000 + 1 not in dropped]
        assert [(f.ts_ns, f.data) for f in read_pcap(runs["ips"] / "egress" / f"{port}.pcap")] == want, port
    hp = json.loads((runs["ips"] / "run.json").read_text())["host_path"]
    assert (hp["diverted"], hp["reinjected"], hp["host_dropped"]) == (len(diverted), len(diverted) - len(dropped),
                                                                      len(dropped))
    counters = json.loads((runs["ips"] / "counters.json").read_text())["ports"]
    assert counters["phy0"]["security"]["ips_diverts"] == len(diverted)
    assert counters["host"]["security"]["ips_reinjects"] == counters["host"]["rx_packets"] == hp["reinjected"]
    forwarded = sum(1 for t in ips if t["verdict"] == "forward")
    assert counters["phy0"]["rx_packets"] == forwarded + len(diverted) + received_drops(counters["phy0"]) == 120


@pytest.mark.parametrize("how, needle", [
    (["--config", "bump"], "needs a switch with a host port"),
    (["--config", "drop", "--engine", "icarus"], 'needs ingress = "pause"'),
    ([None], "give --rules too")])
def test_ips_refused_where_it_cannot_run(payload_case, tmp_path, capsys, how, needle):
    """--ips on the bump in the wire (no host port), on a simulator with ingress FIFOs that drop (its
    host loop counts frame ends per port) or without rules: exit 2, nothing written."""
    pcap, rules, bump = payload_case
    drop = tmp_path / "drop.toml"
    drop.write_text(IPS_SWITCH + '[switch]\ningress = "drop"\n')
    args = ["run", "--pcap", str(pcap), "--ips", "--out", str(tmp_path / "out")]
    if how != [None]:
        configs = {"bump": bump, "drop": drop}
        args += ["--rules", str(rules)] + [str(configs.get(a, a)) for a in how]
    assert main(args) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("test", ["util-action-09", "util-action-10"])
def test_suricata_verify_ips_cases_with_content_drops(test, tmp_path):
    """suricata-verify's IPS cases (``--simulate-ips``) with drop and content rules in Suricata's default
    action order where a pass rule wins: Suricata passes the packets and alerts on none (09: a header
    pass over a header drop and a content alert; 10: a header pass over a content drop). Through
    ``--ips`` on the default switch: the NIC diverts the frames its matcher punts, the host passes
    every one (re-injected), no alert, and every port sends what the IDS run sends. (util-action-08,
    a content pass over a header drop, is dropped by the classifier in hardware before any host
    sees it, in IDS and IPS mode alike: docs/security.md.)"""
    from sim.run.pcapio import read_pcap
    folder = SHARED_DATA / "suricata-verify" / "util-action-tests" / test
    if not folder.is_dir():
        pytest.skip(f"suricata-verify not found at {folder}")
    runs = {}
    for mode in ("ids", "ips"):
        runs[mode] = out = tmp_path / mode
        assert main(["run", "--pcap", str(folder / "input.pcap"), "--rules", str(folder / "test.rules"),
                     *(["--ips"] if mode == "ips" else []), "--out", str(out)]) == 0
        assert (out / "eve.json").read_text() == ""        # expected: sids 1, 2, 3 each 0 times
    hp = json.loads((runs["ips"] / "run.json").read_text())["host_path"]
    assert hp["diverted"] == hp["reinjected"] > 0 and hp["host_dropped"] == 0
    for port in VMS + ["phy0"]:
        want = [f.data for f in read_pcap(runs["ids"] / "egress" / f"{port}.pcap")]
        assert [f.data for f in read_pcap(runs["ips"] / "egress" / f"{port}.pcap")] == want, port


def test_content_rules_without_a_matcher_are_counted_not_run(payload_case, tmp_path, caplog):
    """``matcher_index_bits = 0`` builds no matcher: the header rules still run, the content rules
    are counted (with a warning), no record has matcher fields, run.json has no host path."""
    pcap, rules, bump = payload_case
    bump.write_text(bump.read_text().replace("matcher_index_bits = 9", "matcher_index_bits = 0"))
    out = tmp_path / "out"
    assert main(["run", "--pcap", str(pcap), "--rules", str(rules), "--config", str(bump), "--out", str(out)]) == 0
    assert "5 payload rule(s) are not run: the build has no payload matcher" in caplog.text
    trace = _lines(out / "trace.jsonl")
    assert [t["sids"] for t in trace] == [[], [], [], [], [], [], [], [24], []]
    assert all("match" not in t for t in trace)
    run = json.loads((out / "run.json").read_text())
    assert run["host_path"] is None and run["security"]["payload_rules"] is None
    assert "secmatch" not in json.loads((out / "counters.json").read_text())


# -- suricata-verify's header-only cases through the whole command ----------------------------------

SV = SHARED_DATA / "suricata-verify"
#: Cases of tests/acl/test_acl_model.py's comparison that secnic run cannot pose, and why.
SV_RUN_SKIP = {"bug-4663-02": "its own action-order (drop first): secnic run compiles Suricata's default order"}


def _acl_reference():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "acl" / "test_acl_model.py"
    spec = importlib.util.spec_from_file_location("acl_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _flow_only(ref, case) -> bool:
    """A case tests/acl leaves out only because its rules use ``flow`` (the flow table is in the NIC now)."""
    return (case["test"] not in ref.SV_NOT_APPLICABLE
            and set(case["keywords"]) - ref.META_OPTIONS - ref.HEADER_OPTIONS == {"flow"})


def test_suricata_verify_header_only_cases_through_secnic_run(tmp_path):
    """docs/acl.md "suricata-verify": each case's capture and rules through ``secnic run --engine
    model`` (a bump with no physical port, so their short frames are not runts) give the sids
    Suricata fired; counts exactly where every rule has a per-packet option (``flow`` is one:
    Suricata evaluates such rules per packet). With the flow table in the NIC, the cases whose
    rules also use ``flow`` are compared too (like-ip-only-01: 17 alerts, bug-1401-04, bug-5066-*,
    ips/firewall-02)."""
    ref = _acl_reference()
    cases = [c for c in ref.sv_cases() if (ref.sv_applicable(c) is None or _flow_only(ref, c))
             and c["test"] not in SV_RUN_SKIP]
    if not cases:
        pytest.skip("../shared/data/suricata-verify absent")
    cfg = tmp_path / "nic.toml"
    cfg.write_text('[nic]\nports = ["phy0", "vm1"]\nphysical_ports = []\n[security]\nacl_entries = 4096\n')
    failures, compared = [], set()
    for n, case in enumerate(cases):
        folder = SV / case["test"]
        pcap = tmp_path / f"case{n}.pcap"
        write_pcap(pcap, [(f, i) for i, f in enumerate(ref.ethernet_frames(folder / case["pcap"]))])
        out = tmp_path / f"out{n}"
        assert main(["run", "--pcap", str(pcap), "--rules", str(folder / case["rules"]), "--config", str(cfg),
                     "--out", str(out)]) == 0, case["test"]
        counts: dict[int, int] = {}
        for e in _lines(out / "eve.json"):
            sid = e["alert"]["signature_id"]
            counts[sid] = counts.get(sid, 0) + 1
        total = sum(counts.values())
        rules_text = (folder / case["rules"]).read_text()
        per_packet = all(set(re.findall(r"(\w+)\s*:", line.split("(", 1)[1])) & (ref.HEADER_OPTIONS | {"flow"})
                         for line in rules_text.splitlines() if line.strip() and not line.startswith("#"))
        for check in case["expected_alerts"]:
            m = re.fullmatch(r"(any|\d+):(\d+)(\+)?(\[.*\])?", check)
            if m.group(4):
                continue
            want = int(m.group(2))
            got = total if m.group(1) == "any" else counts.get(int(m.group(1)), 0)
            compared.add(case["test"])
            if (got > 0) != (want > 0) or (per_packet and got != want):
                failures.append(f"{case['test']} {check}: secnic run {got}")
    assert not failures, failures
    assert len(compared) >= 14, sorted(compared)


# -- the simulators against the model ----------------------------------------------------------------

@pytest.mark.sim
@pytest.mark.parametrize("engine, nic", [
    # Icarus in the default suite (34 s with its build); the Verilator builds of these configurations
    # are their own (149 s for the bump here), so those cases run with make test-slow.
    ("icarus", "bump"), pytest.param("verilator", "bump", marks=pytest.mark.slow),
    # The default seven-port switch with the default stage (256 entries).
    pytest.param("verilator", "switch", marks=pytest.mark.slow),
    # Bulk mode: the driver programs the ACL and the matcher over the harness's pipe.
    pytest.param("bulk", "bump", marks=pytest.mark.slow)])
def test_simulators_equal_the_model_with_rules(engine, nic, case, tmp_path):
    """The rules programmed by the driver over AXI-Lite in the cocotb testbench (ACL and matcher):
    egress pcaps, trace, counters (the rules table and SECMATCH included) and eve.json equal the
    model engine's byte for byte (the engine also holds every record's security and matcher fields
    to the programmed model)."""
    from conftest import require_simulator
    require_simulator("verilator" if engine == "bulk" else engine)
    pcap, rules, bump = case
    # The header rules and the content rules together: the matcher's record fields, settled hits and
    # the host path on the gateware too (one build: the default 2048-bucket matcher).
    rules.write_text(RULES + PAYLOAD_RULES + HOST_ONLY_RULES)
    write_pcap(pcap, [(bytes(f), 1_765_000_000_000_000_000 + i * 1_000_000)
                      for i, (f, *_) in enumerate(FRAMES + PAYLOAD_FRAMES)])
    config = ["--config", str(bump)] if nic == "bump" else []
    runs = {}
    for e in ("model", engine):
        out = runs[e] = tmp_path / e
        how = ["--engine", "verilator", "--bulk"] if e == "bulk" else ["--engine", e]
        assert main(["run", "--pcap", str(pcap), "--rules", str(rules), *config, *how, "--out", str(out)]) == 0
    ports = ["phy0", "vm1"] if nic == "bump" else ["phy0", "vm1", "vm2", "vm3", "vm4", "host", "mon"]
    for name in ["trace.jsonl", "counters.json", "eve.json"] + [f"egress/{p}.pcap" for p in ports]:
        assert (runs[engine] / name).read_bytes() == (runs["model"] / name).read_bytes(), f"{engine}: {name}"
    sids = {e["alert"]["signature_id"] for e in _lines(runs[engine] / "eve.json")}
    assert {1, 2, 3, 4, 20, 21, 23} <= sids
    host_path = json.loads((runs[engine] / "run.json").read_text())["host_path"]
    assert host_path["punted"] == host_path["inspected"] > 0


#: A small switch with a host port for the simulators' IPS runs (a short build): a trunk uplink, one
#: VM and the host in VLAN 1, the security stage as the bump's above.
IPS_SWITCH = """\
[switch.ports]
phy0 = { mode = "trunk", native = 1 }
vm1  = { mode = "access", vlan = 1 }
host = { mode = "access", vlan = 1 }
[security]
acl_entries = 72
flow_sets = 64
matcher_index_bits = 9
"""


@pytest.mark.sim
@pytest.mark.parametrize("engine", [
    # Icarus in the default suite (its build of this three-port switch and the run: see the commit);
    # Verilator's build is its own, so it runs with make test-slow.
    "icarus", pytest.param("verilator", marks=pytest.mark.slow),
    # Bulk mode: the C++ harness releases the frames one at a time and Python plays the host.
    pytest.param("bulk", marks=pytest.mark.slow)])
def test_simulators_equal_the_model_with_ips(engine, payload_case, tmp_path):
    """--ips on the simulators (the cocotb testbench, bulk mode): the harness plays the host (takes
    each diverted frame off the host port, decides with the same host inspector, sends the
    re-injection back before the next frame), and every output file equals the model engine's byte
    for byte; the content drop rule (sid 22) drops frame 5 on the host, the other diverted frames
    are re-injected (IPS_DIVERTED)."""
    from conftest import require_simulator
    require_simulator("verilator" if engine == "bulk" else engine)
    pcap, rules, _ = payload_case
    config = tmp_path / "switch.toml"
    config.write_text(IPS_SWITCH)
    runs = {}
    for e in ("model", engine):
        out = runs[e] = tmp_path / e
        how = ["--engine", "verilator", "--bulk"] if e == "bulk" else ["--engine", e]
        assert main(["run", "--pcap", str(pcap), "--rules", str(rules), "--ips", "--config", str(config),
                     *how, "--out", str(out)]) == 0
    for name in ["trace.jsonl", "counters.json", "eve.json"] + [f"egress/{p}.pcap" for p in ("phy0", "vm1", "host")]:
        assert (runs[engine] / name).read_bytes() == (runs["model"] / name).read_bytes(), f"{engine}: {name}"
    trace = _lines(runs[engine] / "trace.jsonl")
    assert {t["pcap_cnt"]: t["ips"]["verdict"] for t in trace if "ips" in t} == IPS_DIVERTED
    hp = json.loads((runs[engine] / "run.json").read_text())["host_path"]
    assert (hp["diverted"], hp["reinjected"], hp["host_dropped"]) == (5, 4, 1)
    assert hp["punted"] == hp["reinjected"] + hp["host_dropped"]
    counters = json.loads((runs[engine] / "counters.json").read_text())["ports"]
    assert counters["host"]["security"]["ips_reinjects"] == counters["host"]["rx_packets"] == 4
