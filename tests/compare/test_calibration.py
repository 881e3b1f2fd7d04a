"""Calibration: a rerun on this machine lands within the shipped file's stated uncertainty, and the
pieces the measurements are built from (literals, nftables rules, the offload punt set) are right."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from conftest import REPO_ROOT

from host_driver.rules import parse_rules, read_rules
from sim.compare.calibration import measure_hyperscan, measure_nftables, measure_ovs, nft_rules, rule_literals
from sim.compare.offload import rule_matches
from sim.compare.scenario import DEFAULT_CALIBRATION

RULES = REPO_ROOT / "scenarios" / "rules" / "default.rules"
SHIPPED = json.loads(DEFAULT_CALIBRATION.read_text())


def within(measured: dict, name: str) -> None:
    fig = SHIPPED["figures"][name]
    assert abs(measured["value"] - fig["value"]) <= fig["uncertainty"], (name, measured, fig)


# A timing measurement: on a loaded 2-core machine (the rest of the suite) it moved twice its
# stated uncertainty, so it runs with the other calibration reruns in `make test-slow`.
@pytest.mark.slow
def test_hyperscan_rerun_within_uncertainty():
    res = measure_hyperscan(rule_literals(read_rules(RULES)))
    within(res["per_packet_ns"], "ids_match.per_packet_ns")
    within(res["per_byte_ns"], "ids_match.per_byte_ns")


needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("tcpreplay") is None,
                                reason="needs root (network namespaces) and tcpreplay")


@pytest.mark.slow
@needs_root
def test_ovs_rerun_within_uncertainty():
    res = measure_ovs()
    within(res["per_packet_ns"], "vswitch.per_packet_ns")
    within(res["per_byte_ns"], "vswitch.per_byte_ns")


@pytest.mark.slow
@needs_root
def test_nftables_rerun_within_uncertainty():
    lines, _ = nft_rules(read_rules(RULES))
    res = measure_nftables(lines)
    within(res["per_packet_ns"], "firewall.per_packet_ns")
    within(res["per_rule_ns"], "firewall.per_rule_ns")


def test_every_figure_says_where_it_came_from():
    for name, fig in SHIPPED["figures"].items():
        assert fig.get("source"), name
        if fig["source"] == "measured":
            assert fig.get("command"), name
        else:
            assert fig.get("cite"), name
    assert SHIPPED["machine"]["clock_ghz"] > 0 and SHIPPED["measured_at"]


def test_rule_literals_decode_hex_and_nocase():
    rules = parse_rules('alert tcp any any -> any 80 (content:"GET |20 2f|x"; nocase; sid:1;)\n'
                        'alert udp any any -> any 53 (content:"a\\;b"; sid:2;)\n', file="t.rules")
    assert rule_literals(rules) == [(b"GET  /x", True), (b"a;b", False)]


def test_nft_rules_from_header_rules():
    rules = parse_rules("drop tcp 192.0.2.0/24 any -> 10.0.0.0/8 [23,445] (sid:1;)\n"
                        "alert udp any any -> any any (sid:2;)\n"
                        'alert tcp any any -> any 80 (content:"x"; sid:3;)\n', file="t.rules")
    lines, skipped = nft_rules(rules)
    assert lines == ["ether type ip ip saddr { 192.0.2.0/24 } ip daddr { 10.0.0.0/8 } tcp dport { 23, 445 } counter",
                     "ether type ip meta l4proto udp counter"]
    assert skipped == 0


@pytest.mark.parametrize("rec, expected", [
    ({"ip_proto": 6, "ip_src": "198.18.0.1", "ip_dst": "10.1.0.5", "sport": 40000, "dport": 80}, True),
    ({"ip_proto": 6, "ip_src": "198.18.0.1", "ip_dst": "10.1.0.5", "sport": 40000, "dport": 81}, False),
    ({"ip_proto": 17, "ip_src": "198.18.0.1", "ip_dst": "10.1.0.5", "sport": 40000, "dport": 80}, False),
    ({"ip_proto": 6, "ip_src": "198.18.0.1", "ip_dst": "172.200.0.5", "sport": 40000, "dport": 80}, False),
    # The reverse direction only for a bidirectional rule.
    ({"ip_proto": 6, "ip_src": "10.1.0.5", "ip_dst": "198.18.0.1", "sport": 80, "dport": 40000}, False),
    ({"ip_proto": None, "ip_src": None, "ip_dst": None, "sport": None, "dport": None}, False),
])
def test_punt_rule_matches_header(rec, expected):
    rule = parse_rules('alert tcp any any -> 10.0.0.0/8 80 (content:"x"; sid:1;)\n', file="t.rules")[0]
    assert rule_matches(rule, rec) is expected
    both = parse_rules('alert tcp any any <> 10.0.0.0/8 80 (content:"x"; sid:1;)\n', file="t.rules")[0]
    reverse = {"ip_proto": 6, "ip_src": "10.1.0.5", "ip_dst": "198.18.0.1", "sport": 80, "dport": 40000}
    assert rule_matches(both, reverse)


def test_calibrate_without_root_says_so_and_keeps_shipped_figures(tmp_path, monkeypatch, capsys):
    from sim.cli.main import main
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    out = tmp_path / "cal.json"
    assert main(["calibrate", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "not root" in err and "shipped calibration" in err
    doc = json.loads(out.read_text())
    for name in ("vswitch.per_packet_ns", "firewall.per_rule_ns"):
        assert doc["figures"][name]["value"] == SHIPPED["figures"][name]["value"]
        assert doc["figures"][name]["source"].startswith("shipped (not root")
    assert doc["figures"]["ids_match.per_byte_ns"]["source"] == "measured"
    assert doc["machine"]["cores"] >= 1
