"""sim.flows.conformance: how Suricata's own tests are read and judged (the runs through `secnic run`
are in test_conformance_runs below, on the golden model)."""

from __future__ import annotations

import json
import struct

import pytest

from host_driver.rules import parse_rules
from sim.flows import conformance
from sim.flows.conformance import action_order, expected_counts, ip_only
from sim.run.pcapio import read_pcap


def test_expected_alerts_are_read_with_counts_and_at_least():
    case = {"test": "t", "expected_alerts": ["1:3", "2:0", "any:2", "any:4", "7:1+"]}
    assert expected_counts(case) == {"1": (3, False), "2": (0, False), "any": (4, False), "7": (1, True)}
    with pytest.raises(ValueError, match="t: cannot read"):
        expected_counts({"test": "t", "expected_alerts": ["sid=1"]})


def test_ip_only_rules_are_metadata_only_with_any_ports():
    rules = parse_rules(
        'alert ip 10.0.0.0/8 any -> any any (msg:"a; b:"; sid:1; rev:2; classtype:misc-activity;)\n'
        "alert tcp any any -> any 80 (sid:2;)\n"
        "alert ip any any -> any any (ttl:3; sid:3;)\n"
        "alert tcp any any -> any any (flow:established; sid:4;)\n"
        "alert icmp any any -> any any (itype:8; sid:5;)\n"
        "alert ip any any -> any any (sid:6;)\n")
    assert [ip_only(r) for r in rules] == [True, False, False, False, False, True]


def test_action_order_overlays(tmp_path):
    (tmp_path / "a.yaml").write_text("outputs:\n  - x\n\naction-order:\n  - drop\n  - pass\n  - reject\n"
                                     "  - alert\n\nother: 1\n")
    (tmp_path / "b.yaml").write_text("action-order:\n- pass\n- drop\n- reject\n- alert\n")
    assert action_order(tmp_path / "a.yaml") == ["drop", "pass", "reject", "alert"]
    assert action_order(tmp_path / "b.yaml") == conformance.DEFAULT_ACTION_ORDER
    assert action_order(tmp_path / "absent.yaml") is None


def _pcap(linktype: int, packets: list[bytes]) -> bytes:
    """A classic pcap file of ``packets`` with ``linktype``, written here by hand (the reader under test
    is scapy's)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)]
    for p in packets:
        out += [struct.pack("<IIII", 1, 0, len(p), len(p)), p]
    return b"".join(out)


def test_raw_ip_captures_get_an_ethernet_header(tmp_path):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    raw = [bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP()), bytes(IPv6(src="::1", dst="::2") / UDP())]
    src = tmp_path / "raw.pcap"
    src.write_bytes(_pcap(101, raw))
    linktype, n = conformance._ethernet_capture(src, tmp_path / "eth.pcap")
    assert (linktype, n) == (101, 2)
    frames = [f.data for f in read_pcap(tmp_path / "eth.pcap")]      # refuses anything but Ethernet
    assert [f[12:14] for f in frames] == [b"\x08\x00", b"\x86\xdd"]
    assert [f[14:] for f in frames] == raw
    # Another link type is left alone (no file written): the case is not applicable.
    src.write_bytes(_pcap(113, [b"\0" * 20]))
    assert conformance._ethernet_capture(src, tmp_path / "sll.pcap")[0] == 113
    assert not (tmp_path / "sll.pcap").exists()


def test_missing_data_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SECNIC_SHARED_DATA", str(tmp_path))
    assert conformance.main(["--out", str(tmp_path / "out")]) == 2
    assert "no suricata-verify cases" in capsys.readouterr().err


def test_index_is_read(shared_data):
    cases = conformance.cases(shared_data)
    if not cases:
        pytest.skip(f"{shared_data}/suricata-verify/INDEX.json is absent")
    assert {c["tier"] for c in cases} <= {"A", "B", "C"}
    assert all(json.dumps(expected_counts(c)) for c in cases)


@pytest.fixture(scope="module")
def model_results(tmp_path_factory):
    from tests.conftest import SHARED_DATA
    cases = [c for c in conformance.cases(SHARED_DATA) if c["tier"] in ("A", "B")]
    if not cases:
        pytest.skip(f"{SHARED_DATA}/suricata-verify is absent")
    validator = conformance._eve_validator(SHARED_DATA)
    if validator is None:
        pytest.skip(f"Suricata's EVE schema is absent under {SHARED_DATA}")
    out = tmp_path_factory.mktemp("conformance")
    return {c["test"]: (c, conformance.run_case(c, "model", out, data=SHARED_DATA, validator=validator))
            for c in cases}


def test_every_applicable_tier_a_and_b_case_passes_through_secnic_run(model_results):
    """The issue's target on the golden model (the gateware engines give the same files: tests/cli)."""
    results = [r for _, r in model_results.values()]
    assert not {r.test: r.reason for r in results if r.outcome == "fail"}
    passed = [r.test for r in results if r.outcome == "pass"]
    assert len(passed) >= 33, passed
    # Content rules through the matcher and the host path (flow bits from the record, pass rules
    # silencing the classifier's alerts): every tier-A/B per-packet payload case.
    assert {"alert-distance-within-1", "alert-no-3whs-established", "alert-testmyids-not-established", "bug-130",
            "bug-docs-5030-01", "bug-docs-5030-02", "tcp-fastopen-06", "util-action-tests/util-action-03",
            "util-action-tests/util-action-08"} <= set(passed)
    # A case listed as needing what the NIC does not do still runs, and says how it went.
    assert model_results["bug-4571-01"][1].reason.endswith("run anyway: fail (sid 1: 0 alerts, expected 1+)")
    assert all(r.eve_lines for r in results if r.outcome == "pass" and any(v != "0" for v in r.expected.values()))


def test_a_wrong_expectation_fails(model_results, tmp_path):
    """The judgement can fail: detect-itype with one more alert expected for one sid; and
    util-action-01 (IP-only rules, two packets of one flow direction: Suricata alerts once) when
    IP-only rules are counted per packet."""
    from tests.conftest import SHARED_DATA
    case, result = model_results["detect-itype"]
    assert result.outcome == "pass"
    sid, count = next((k, v) for k, v in result.expected.items() if k != "any" and v != "0")
    wrong = dict(case, expected_alerts=[f"{sid}:{int(count.rstrip('+')) + 1}"])
    again = conformance.run_case(wrong, "model", tmp_path, data=SHARED_DATA)
    assert again.outcome == "fail" and f"sid {sid}" in again.reason
    case, result = model_results["util-action-tests/util-action-01"]
    assert result.outcome == "pass"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(conformance, "ip_only", lambda rule: False)
        again = conformance.run_case(case, "model", tmp_path / "per-packet", data=SHARED_DATA)
    assert again.outcome == "fail" and "sid 1: 2 alerts, expected 1" in again.reason


def test_a_broken_content_modifier_fails_a_payload_case(model_results, tmp_path):
    """Payload cases can fail through secnic run: with ``distance`` ignored by the host path,
    alert-distance-within-1 and bug-docs-5030-01 get the wrong count."""
    from dataclasses import replace

    import host_driver.inspect as inspect_mod
    from tests.conftest import SHARED_DATA
    real = inspect_mod.match_contents

    def no_distance(contents, n, starts):
        return real([replace(c, distance=None) for c in contents], n, starts)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(inspect_mod, "match_contents", no_distance)
        for name in ("alert-distance-within-1", "bug-docs-5030-01"):
            case, result = model_results[name]
            assert result.outcome == "pass"
            again = conformance.run_case(case, "model", tmp_path / "broken", data=SHARED_DATA)
            assert again.outcome == "fail", name


def test_other_engines_are_compared_case_by_case(tmp_path):
    from sim.flows.conformance import CaseResult, other_engines
    mine = [CaseResult("a", "A", "pass", fired={"1": 2}), CaseResult("b", "B", "n/a", reason="x")]
    (tmp_path / "verilator.json").write_text(json.dumps([{"test": "a", "outcome": "pass", "fired": {"1": 2}},
                                                         {"test": "b", "outcome": "n/a", "fired": {}}]))
    (tmp_path / "verilator.wall").write_text("12\n")
    assert "in 12 s: 1 pass; every case has the same outcome" in other_engines(tmp_path, "model", mine)
    (tmp_path / "icarus.json").write_text(json.dumps([{"test": "a", "outcome": "pass", "fired": {"1": 3}},
                                                      {"test": "b", "outcome": "n/a", "fired": {}}]))
    assert "icarus engine's last run: 1 pass; cases that differ: a." in other_engines(tmp_path, "model", mine)
    assert other_engines(tmp_path, "verilator", mine).count("engine's last run") == 1
