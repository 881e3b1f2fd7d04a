"""Bulk mode with ``--rules``: the driver programs the security stage over the harness's CSR bus
(PipeBus) before the traffic, the records carry the security fields back, and the run files equal
the golden model's (``--engine model``) byte for byte on conversations through the flow table with
default deny; ``--jobs`` refuses a security build (its flow table carries state across the cuts).

The golden model is the reference here: it is itself held to Suricata's rule semantics and a naive
flow tracker written from Suricata's "Flow Keywords" (tests/security/test_security_model.py).
"""

from __future__ import annotations

import json

import pytest
from conftest import require_simulator
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from hdl.config import NicConfig
from hdl.security.settings import SecuritySettings
from sim.run.engine import InputFrame, run_engine

pytestmark = pytest.mark.sim

FILES = ["trace.jsonl", "counters.json", "eve.json", "egress/phy0.pcap", "egress/vm1.pcap"]

#: Default deny: only what a rule lets through opens a flow; the answers ride on the flow table.
RULES = """\
pass tcp 10.0.0.0/24 any -> any 80 (msg:"web out"; flow:to_server,not_established; sid:1; rev:1;)
alert tcp any any -> 10.0.0.0/24 22 (msg:"ssh in"; flow:to_server; sid:2; rev:1;)
drop tcp any any -> any 23 (msg:"telnet"; sid:3; rev:1;)
pass udp 10.0.0.0/24 any -> any 53 (msg:"dns out"; sid:4; rev:1;)
reject tcp any any -> any 445 (msg:"smb"; sid:5; rev:1;)
alert tcp any any -> any 80 (msg:"web established"; flow:established,to_server; sid:6; rev:1;)
"""

#: The VM (vm1) side and the uplink (phy0) side of each conversation.
VM, OUT = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}, {"src": "02:00:00:00:00:02",
                                                                      "dst": "02:00:00:00:00:01"}
PAD = Raw(b"p" * 24)


def _conversations():
    """(port, frame) in time order: two outbound web handshakes with data and answers, DNS out and
    its answer, an inbound SSH handshake (alerted), telnet (dropped), SMB (rejected), an unsolicited
    UDP datagram and a stray SYN-ACK (default deny)."""
    c, s = "10.0.0.5", "192.0.2.80"
    out = []

    def tcp(port, src, dst, sport, dport, flags, seq=0, ack=0):
        side = VM if port == "vm1" else OUT
        out.append((port, Ether(**side) / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags, seq=seq,
                                                                    ack=ack) / PAD))

    def udp(port, src, dst, sport, dport):
        side = VM if port == "vm1" else OUT
        out.append((port, Ether(**side) / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / PAD))

    for k, sport in enumerate((40000, 40001)):
        srv = f"192.0.2.{80 + k}"
        tcp("vm1", c, srv, sport, 80, "S", 100)
        tcp("phy0", srv, c, 80, sport, "SA", 900, 101)
        tcp("vm1", c, srv, sport, 80, "A", 101, 901)
        tcp("vm1", c, srv, sport, 80, "PA", 101, 901)
        tcp("phy0", srv, c, 80, sport, "PA", 901, 125)
    udp("vm1", c, "198.51.100.53", 5353, 53)
    udp("phy0", "198.51.100.53", c, 53, 5353)
    udp("vm1", c, "198.51.100.53", 5353, 53)
    tcp("phy0", "203.0.113.7", c, 50000, 22, "S", 7)
    tcp("vm1", c, "203.0.113.7", 22, 50000, "SA", 70, 8)
    tcp("phy0", "203.0.113.7", c, 50000, 22, "A", 8, 71)
    tcp("phy0", "203.0.113.8", c, 50001, 23, "S", 1)
    tcp("phy0", "203.0.113.9", c, 50002, 445, "S", 1)
    udp("phy0", "203.0.113.10", c, 4444, 9999)
    tcp("phy0", s, c, 80, 41000, "SA", 5, 6)
    return out


def _case(tmp_path, default_deny=True):
    from sim.run.alerts import load_rule_set
    config = NicConfig(ports=("phy0", "vm1"),
                       security=SecuritySettings(acl_entries=72, flow_sets=64, default_deny=default_deny))
    path = tmp_path / "flows.rules"
    path.write_text(RULES)
    rules = load_rule_set(path, config.security.acl_entries)
    # 2 us apart (about 300 cycles): each frame is decided before the next, on every engine, so the
    # flow table sees the conversations in the same order everywhere.
    inputs = [InputFrame(port, "flows.pcap", k + 1, bytes(f), 1_765_000_000_000_000_000 + 2000 * k)
              for k, (port, f) in enumerate(_conversations())]
    return config, rules, inputs


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow          # a Verilator build of its own (the first with a security stage): about 2 min here
def test_bulk_rules_equal_the_model(tmp_path):
    require_simulator("verilator")
    config, rules, inputs = _case(tmp_path)
    runs = {}
    for engine, bulk in (("model", None), ("verilator", True)):
        runs[engine] = run_engine(config, inputs, engine, pace="pcap", out_dir=tmp_path / engine, bulk=bulk,
                                  rules=rules)
    assert runs["verilator"]["sim_mode"] == "bulk"
    for name in FILES:
        assert (tmp_path / "verilator" / name).read_bytes() == (tmp_path / "model" / name).read_bytes(), \
            f"{name} differs between bulk mode and the model"
    assert runs["verilator"]["security"] == runs["model"]["security"]
    # The case exercises what it is meant to: flows opened by pass rules and answered through the
    # flow table, alerts, ACL drop and reject, and default deny.
    trace = _lines(tmp_path / "verilator" / "trace.jsonl")
    reasons = [t["reason"] for t in trace]
    assert reasons.count("default_deny") == 2 and "acl_drop" in reasons and "acl_reject" in reasons
    assert [t["verdict"] for t in trace[:10]] == ["forward"] * 10, "both web handshakes and their data pass"
    assert sorted({s for t in trace for s in t["sids"]}) == [2, 3, 5, 6]
    counters = json.loads((tmp_path / "verilator" / "counters.json").read_text())
    assert counters["security"]["default_deny"] == 2
    assert {r["sid"]: r["hits"] for r in counters["rules"]}[1] == 4, "sid 1 opens both handshakes (SYN and ACK)"


def test_bulk_jobs_refuse_a_security_build(tmp_path, capsys):
    """``--jobs 2`` would start each segment with an empty flow table: refused, exit 2, nothing written."""
    from sim.cli.main import main
    from sim.run.pcapio import write_pcap
    config, _, inputs = _case(tmp_path)
    pcap = tmp_path / "in.pcap"
    write_pcap(pcap, [(f.frame, f.ts_ns) for f in inputs if f.port == "phy0"])
    cfg = tmp_path / "nic.toml"
    cfg.write_text('[nic]\nports = ["phy0", "vm1"]\n[security]\nacl_entries = 72\nflow_sets = 64\n'
                   'default_deny = true\n')
    out = tmp_path / "out"
    assert main(["run", "--pcap", str(pcap), "--rules", str(tmp_path / "flows.rules"), "--config", str(cfg),
                 "--engine", "verilator", "--jobs", "2", "--out", str(out)]) == 2
    assert "flow table" in capsys.readouterr().err
    assert not out.exists()
