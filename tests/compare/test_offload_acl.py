"""The offloaded path runs the firewall hops' header-only rules in the NIC's security stage: the
frames the ACL drops are dropped by the NIC, counted in the report and kept out of the punt set and
of the loss rate; the content rule runs in the NIC's payload matcher (tests/compare/test_offload_matcher.py).
On the golden model (``--engine model``),
as tests/compare/test_compare.py; the bulk-mode gateware gives the same records (test_compare's
slow ``test_bulk_mode_nic_agrees_with_the_golden_model``, which now runs the security stage too).

The expected drops are counted from the frames themselves with scapy's dissection (TCP to port
22), not with the comparison's own rule matcher.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import REPO_ROOT
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from small_scenario import scenario_toml

from sim.cli.main import main

RULES = """\
drop tcp any any -> $HOME_NET 22 (msg:"ssh to tenants"; sid:1; rev:1;)
alert tcp any any -> $HOME_NET 3306 (msg:"mysql"; sid:2; rev:1;)
alert tcp any any -> $HOME_NET 80 (msg:"traversal"; content:"../"; sid:3; rev:1;)
"""

def scenario_text(rules: Path) -> str:
    return scenario_toml("acl", {"frames": 400, "flows": 48, "east_west": 0.5},
                         {"vm1": (rules, ["firewall", "ids"]), "vm2": (rules, ["firewall", "ids"])})


def _ssh(data: bytes) -> bool:
    pkt = Ether(data)
    return TCP in pkt and pkt[TCP].dport == 22 and pkt[IP].dst.startswith("10.")


def test_firewall_rules_drop_in_the_nic(tmp_path):
    from sim.compare.sweep import Context, _load, _nic
    from sim.compare.traffic import arrivals
    rules = tmp_path / "acl.rules"
    rules.write_text(RULES)
    path = tmp_path / "acl.toml"
    path.write_text(scenario_text(rules))

    ctx = Context(str(path), str(REPO_ROOT / "calibration" / "calibration.json"), "model")
    _, _, frames, _ = _load(ctx)
    ssh = {i for i, f in enumerate(frames) if _ssh(f.data)}
    assert 10 < len(ssh) < len(frames) // 4, "the traffic must hold some SSH, or nothing is checked"
    nic = _nic(ctx)
    assert nic.config.security is not None and nic.config.security.acl_entries == 256
    nr = nic.run(frames, arrivals(frames, 0.25, 1))
    assert set(nr.acl_dropped) == ssh
    # "../" is shorter than the matcher's 4-byte window: host only, so the NIC punts every payload it
    # inspects (punt_all_payload), the dropped frames' copies included (the matcher runs beside the ACL).
    assert set(nr.punted) == {i for i, r in enumerate(nr.records) if r["match"] and r["match"]["punt"]}
    assert ssh < set(nr.punted)
    assert "2 host only, so every inspected payload is punted" in nr.basis     # one copy per VM
    assert all(not nr.records[i]["egress"] and nr.records[i]["sids"] == [1] for i in ssh)
    assert nr.security["counters"]["acl_drop"] == len(ssh)
    assert "firewall: the firewall hops' 2 header-only rules" in nr.basis

    out = tmp_path / "out"
    assert main(["compare", str(path), "--out", str(out), "--engine", "model", "--scheduler", "none"]) == 0
    rep = json.loads((out / "report.json").read_text())
    for point in rep["sweep"]["offload"]:
        assert point["acl_drops"] == {"acl_drop": len(ssh)}
        assert point["acl_drop_rate"] == round(len(ssh) / len(frames), 5)
    low = rep["sweep"]["offload"][0]
    assert low["drop_rate"] < 0.001 < low["acl_drop_rate"], "policy drops are not losses"
    assert f"dropped by the NIC ({len(ssh)} here)" in rep["offload_basis"]
    assert "Policy drops" in (out / "report.md").read_text()
