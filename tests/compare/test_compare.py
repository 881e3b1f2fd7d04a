"""``secnic compare`` end to end on a small scenario: report files and plots, bad scenarios, Dask.

The NIC runs on the golden model here (``--engine model``) to keep the default suite fast; the
bulk-mode path is the same code with ``engine="verilator"`` (``make sim`` runs it).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from small_scenario import scenario_toml

from sim.cli.main import main

RULES = REPO_ROOT / "scenarios" / "rules" / "default.rules"

SMALL = scenario_toml("small", {"frames": 400, "flows": 32, "east_west": 0.5},
                      {"vm1": (RULES, ["firewall", "ids"]), "vm2": (RULES, ["ids"])}, gbps=(0.25, 4))


@pytest.fixture
def small(tmp_path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    return path


def run(scenario, out, *extra) -> int:
    return main(["compare", str(scenario), "--out", str(out), "--engine", "model", *extra])


def test_report_files_and_fields(small, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(small, out, "--scheduler", "none") == 0
    printed = capsys.readouterr().out
    assert "security cores per 10 Gb/s" in printed and "VMs per 16-core host" in printed
    for name in ("report.md", "report.json", "throughput.png", "latency.png", "cores.png", "chaining.png"):
        assert (out / name).is_file(), name
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    rep = json.loads((out / "report.json").read_text())
    assert set(rep["sweep"]) == {"software", "offload"}
    for path in ("software", "offload"):
        assert [p["gbps"] for p in rep["sweep"][path]] == [0.25, 4.0]
        for p in rep["sweep"][path]:
            for key in ("offered_gbps", "throughput_gbps", "drop_rate", "latency_p50_ns", "latency_p99_ns",
                        "cores_used", "security_cores"):
                assert p[key] is not None, (path, key)
    low_sw, high_sw = rep["sweep"]["software"]
    # 2 vSwitch cores at ~4 us a pass cannot carry 4 Gb/s of IMIX: the software path falls off there.
    assert low_sw["drop_rate"] == 0 and high_sw["drop_rate"] > 0.2
    assert rep["knees"]["software"]["offered_gbps"] == high_sw["offered_gbps"]
    # The NIC carries 4 Gb/s; its host cost is the punted share only: the 1 % of frames planted with
    # default.rules' content literals (the default payload_hit_share; random payloads never hold them).
    low_off, high_off = rep["sweep"]["offload"]
    assert low_off["planted"]["payload"] == 4 and low_off["punts"] == 4 and 0 < low_off["security_cores"] < 0.1
    assert high_off["drop_rate"] < 0.01
    assert low_off["cores_used"] < low_sw["cores_used"]
    cap = rep["capacity"]
    assert cap["reference_gbps"] == 0.25
    assert cap["per_path"]["software"]["security_cores_per_10g"] > cap["per_path"]["offload"]["security_cores_per_10g"]
    assert cap["consolidation"]["extra_vms_offloaded"] >= 0
    assert [c["appliances"] for c in rep["chaining"]] == [1, 2, 3]
    cores = [c["software"]["cores_used"] for c in rep["chaining"]]
    assert cores[0] < cores[1] < cores[2]        # every appliance adds a VM hop and a vSwitch pass
    assert rep["storm"]["software"]["vswitch_cores_busy"] > 1.5     # the vSwitch spins
    assert rep["storm"]["nic"]["normal_delivered"] == 1.0 and rep["storm"]["nic"]["host_cores"] == 0
    md = (out / "report.md").read_text()
    assert md.startswith("# Security appliances in software versus offloaded on the NIC: scenario small\n")
    assert "stands in" not in md
    # The headline at the top of report.md is the one printed at the end, the planted frames' line with it.
    top = md.split("## Headline\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert [f"  {line[2:]}" for line in top] == printed.splitlines()[-len(top):]
    assert "hostile traffic at 0.25 Gb/s: 4 attack frames planted" in printed


def test_dask_and_local_give_identical_report(small, tmp_path):
    assert run(small, tmp_path / "local", "--scheduler", "none") == 0
    assert run(small, tmp_path / "dask", "--scheduler", "local", "--workers", "2") == 0
    assert (tmp_path / "local" / "report.json").read_bytes() == (tmp_path / "dask" / "report.json").read_bytes()


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace('hops = [{kind = "ids", cores = 1}]', 'hops = [{kind = "ids"}, {kind = "idz"}]'),
     "chain.vm2.hops[1].kind: unknown kind 'idz' (known: firewall, ids)"),
    (lambda s: s.replace("cores = 16", "cores = 16\nthreads = 2"),
     "host.threads: unknown key (known: cores, clock_ghz, vswitch_cores, ring, mode)"),
    (lambda s: s.replace("frames = 400", "frames = -1"), "traffic.frames: must be at least 100, not -1"),
    (lambda s: s.replace("frames = 400", "frames = 400\nattack_share = 0.6"),
     "traffic.attack_share: must be at most 0.5, not 0.6"),
    (lambda s: s.replace("frames = 400", "frames = 400\npayload_hit_share = -0.1"),
     "traffic.payload_hit_share: must be at least 0, not -0.1"),
    (lambda s: s.replace("frames = 400", 'frames = 400\nattack_share = "1%"'),
     "traffic.attack_share: must be a number, not '1%'"),
    (lambda s: s.replace("[chain.vm2]", "[chain.vm9]"), "chain.vm9: unknown key (known: vm1, vm2)"),
    (lambda s: s.replace("reference_gbps = 0.25", "reference_gbps = 3"),
     "sweep.reference_gbps: must be one of the sweep's loads [0.25, 4], not 3"),
    (lambda s: s.replace("cores = 16", "cores = = 16"), "small.toml:3:9: TOML syntax error"),
])
def test_bad_scenario_exits_2_naming_the_key(tmp_path, capsys, edit, message):
    path = tmp_path / "small.toml"
    path.write_text(edit(SMALL))
    out = tmp_path / "out"
    assert run(path, out, "--scheduler", "none") == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err
    assert not out.exists()


def test_out_dir_of_someone_else_is_refused(small, tmp_path, capsys):
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert run(small, out, "--scheduler", "none") == 2
    assert "holds no previous secnic run" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def _default_with(tmp_path, frames: int, duration_us: float | None = None, pcap: Path | None = None) -> Path:
    """The default scenario (so the same switch build as `make sim`) with fewer frames (replayed
    from ``pcap`` if given)."""
    import re
    text = (REPO_ROOT / "scenarios" / "default.toml").read_text().replace('"rules/', f'"{RULES.parent}/')
    text = re.sub(r"(?m)^frames = .*$", f"frames = {frames}", text)
    if pcap is not None:
        text = text.replace('kind = "imix"', f'kind = "pcap"\npcap = "{pcap}"')
        text = re.sub(r"(?m)^(attack_share|payload_hit_share) = .*$", "", text)
    if duration_us is not None:
        text = re.sub(r"(?m)^duration_us = .*$", f"duration_us = {duration_us:g}", text)
    path = tmp_path / "default-small.toml"
    path.write_text(text)
    return path


@pytest.mark.sim
@pytest.mark.slow          # the bulk-mode build of `make sim`'s switch (shared with it), minutes on CI
def test_bulk_mode_nic_agrees_with_the_golden_model(tmp_path):
    """The offloaded path's NIC (the default scenario's switch) in bulk-mode Verilator gives the
    golden model's records and punt set; its timing is simulated (the model's an estimate). The
    traffic (scapy) goes to the four VMs' web and MySQL ports, one frame in five with default.rules'
    "/bin/sh" planted in its payload: those are the frames the matcher punts."""
    import random

    from conftest import require_simulator
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    from sim.compare.sweep import Context, _load, _nic
    from sim.compare.traffic import arrivals
    require_simulator("verilator")
    rng = random.Random(5)
    pkts = []
    for i in range(40):
        payload = bytearray(rng.randbytes(rng.choice((30, 500, 1400))))
        if i % 5 == 2:
            payload[7:14] = b"/bin/sh"
        pkts.append(Ether() / IP(src="198.18.0.7", dst=f"10.{1 + i % 4}.0.9")
                    / TCP(sport=41000 + i, dport=(80, 3306)[i % 2], flags="PA") / bytes(payload))
    wrpcap(str(tmp_path / "mix.pcap"), pkts)
    path = _default_with(tmp_path, 600, pcap=tmp_path / "mix.pcap")
    runs = {}
    for engine in ("model", "verilator"):
        ctx = Context(str(path), str(REPO_ROOT / "calibration" / "calibration.json"), engine)
        scenario, _, frames, _ = _load(ctx)
        nic = _nic(ctx)
        nic.prepare()
        runs[engine] = nic.run(frames, arrivals(frames, 2.0, 1))
    model, bulk = runs["model"], runs["verilator"]
    assert bulk.run["sim_mode"] == "bulk" and bulk.run["timing"] == "simulated"
    assert bulk.records == model.records and bulk.punted == model.punted
    assert bulk.punted == [i for i, f in enumerate(frames) if b"/bin/sh" in f.data]
    assert bulk.egress_packets == model.egress_packets
    # The firewall rules ran in the security stage: its alert rules (MySQL, port 3306) hit.
    assert bulk.security == model.security and bulk.security["counters"]["acl_alert"] > 0
    assert any(r["sids"] for r in bulk.records if r)
    # the switch forwards every frame to its VM's port, once
    assert sum(bulk.egress_packets.values()) == len(frames)
    assert set(bulk.egress_packets) == {"vm1", "vm2", "vm3", "vm4"}


@pytest.mark.sim
@pytest.mark.slow          # the bulk-mode build of `make sim`'s switch (shared with it) and 24k cycles
def test_loop_storm_gateware_agrees_with_the_golden_model(tmp_path):
    """The loop storm on the switch gateware (the offloaded path's bulk-mode build, the loop closed
    in its C++) against the golden model in the same loop: the storm each VM port receives within
    5 % (the switch scenarios' storm tolerance), the normal traffic delivered in full, the excess
    dropped by each looped port's storm control and counted, loop guard reporting the loop. The
    default scenario's switch (uplink phy0 looped with vm3 and vm4), over 150 us."""
    from conftest import require_simulator

    from sim.compare.sweep import Context, run_point
    require_simulator("verilator")
    path = _default_with(tmp_path, 1000, duration_us=150)
    cal = str(REPO_ROOT / "calibration" / "calibration.json")
    point = {"task": "storm_nic", "gbps": 1.0}
    gate = run_point(Context(str(path), cal, "verilator"), point)
    model = run_point(Context(str(path), cal, "model"), point)
    assert gate["basis"].startswith("switch gateware") and model["basis"].startswith("golden model")
    for vm in ("vm1", "vm2", "vm3", "vm4"):
        g, m = gate["storm_gbps_by_port"][vm], model["storm_gbps_by_port"][vm]
        assert m > 0 and abs(g - m) / m < 0.05, (vm, g, m)
    assert gate["normal_frames"] > 10 and gate["normal_delivered"] == 1.0
    for port in ("phy0", "vm3", "vm4"):
        assert gate["storm_drops"][f"{port}:storm_broadcast"] > 0
    assert gate["loop_events"] >= 1
