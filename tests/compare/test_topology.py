"""The offloaded path's switch (sim/compare/topology.py): ports from the scenario, and the frames the
switch forwards to the VM the scenario says, by MAC address (golden-model NIC: fast)."""

from __future__ import annotations

from collections import Counter

import pytest
from conftest import REPO_ROOT

from sim.compare.scenario import load_scenario
from sim.compare.topology import HOST_PORT, ROUTER_MAC, loop_ports, topology, vm_mac
from sim.compare.traffic import make_frames

SCENARIOS = REPO_ROOT / "scenarios"


def test_default_scenario_gets_a_port_per_vm():
    sc = load_scenario(SCENARIOS / "default.toml")
    topo = topology(sc)
    assert list(topo.switch.ports) == ["phy0", "vm1", "vm2", "vm3", "vm4", HOST_PORT]
    assert topo.switch.ports["phy0"].mode == "trunk" and topo.switch.ports["phy0"].trunks is None
    assert all(topo.switch.ports[p].mode == "access" and topo.switch.ports[p].vlan == 1
               for p in ("vm1", "vm2", "vm3", "vm4", HOST_PORT))
    assert not topo.shared
    config = topo.nic_config(sc.nic, source="test")
    assert config.switch is not None and config.ports == ("phy0", "vm1", "vm2", "vm3", "vm4", HOST_PORT)
    # the learning frames: one per VM, from its port, its own address both ways
    assert [(p, f[:6], f[6:12]) for p, f in topo.learning_frames()] == [
        (f"vm{i + 1}", vm_mac(i), vm_mac(i)) for i in range(4)]


def test_vms_beyond_the_port_limit_share_ports_and_their_frames_stay_on_the_host():
    sc = load_scenario(SCENARIOS / "east-west.toml")       # eight VMs: six get ports of their own
    topo = topology(sc)
    assert len(topo.switch.ports) == 8
    assert topo.shared == ("vm7", "vm8")
    assert topo.port_of["vm7"] == "vm1" and topo.port_of["vm8"] == "vm2"
    frames = make_frames(sc)
    bridged = [f for f in frames if topo.bridged(f)]
    assert bridged and all({f.vm, f.src_vm} in ({"vm1", "vm7"}, {"vm2", "vm8"}) for f in bridged)
    storm = topology(sc, uplinks=3)
    assert list(storm.switch.ports)[:3] == ["phy0", "phy1", "phy2"] and len(storm.switch.ports) == 8
    assert storm.shared == ("vm5", "vm6", "vm7", "vm8")


def test_the_comparison_switch_polices_the_loop_storm_ports(tmp_path):
    """One build serves the sweep and the loop storm: the uplink and the last two VM ports of VLAN 1
    are looped, each with the scenario's broadcast storm limit, and loop guard reports without
    blocking; a VM in another VLAN is never looped (a broadcast from the uplink cannot reach it)."""
    from sim.compare.sweep import STORM_BURST, comparison_topology
    sc = load_scenario(SCENARIOS / "default.toml")
    topo, looped = comparison_topology(sc)
    assert looped == ("phy0", "vm3", "vm4") == loop_ports(topology(sc), 3)
    limits = {port: (s.mbps, s.burst) for (port, _), s in topo.switch.storm.items()}
    assert limits == dict.fromkeys(looped, (100.0, STORM_BURST))
    assert topo.switch.loop_guard is not None and not topo.switch.loop_guard.block
    text = (SCENARIOS / "default.toml").read_text()
    text = text.replace('name = "vm4"\ncores = 4', 'name = "vm4"\nvlan = 7\ncores = 4')
    path = tmp_path / "vlan.toml"
    path.write_text(text.replace('"rules/default.rules"', f'"{SCENARIOS / "rules" / "default.rules"}"'))
    assert comparison_topology(load_scenario(path))[1] == ("phy0", "vm2", "vm3")


def test_frames_carry_the_addresses_the_switch_forwards_by(tmp_path):
    text = (SCENARIOS / "default.toml").read_text()
    text = text.replace('name = "vm4"\ncores = 4', 'name = "vm4"\nvlan = 7\ncores = 4')
    text = text.replace('"rules/default.rules"', f'"{SCENARIOS / "rules" / "default.rules"}"')
    path = tmp_path / "vlan.toml"
    path.write_text(text)
    sc = load_scenario(path)
    topo = topology(sc)
    assert topo.switch.ports["vm4"].vlan == 7
    names = [v.name for v in sc.vms]
    for f in make_frames(sc):
        assert f.data[:6] == vm_mac(names.index(f.vm))
        assert f.data[6:12] == (ROUTER_MAC if f.src_vm is None else vm_mac(names.index(f.src_vm)))
        tagged = f.data[12:14] == b"\x81\x00"
        assert tagged == (f.vm == "vm4" and f.src_vm is None)
        if f.vm == "vm4":
            assert f.src_vm is None          # vm4 is alone in VLAN 7: no east-west peer
            assert int.from_bytes(f.data[14:16], "big") == 7


def _shipped(name: str, tmp_path, frames: int):
    """A shipped scenario with fewer frames (rule paths made absolute); ``default+vlans``: the default
    with vm3 and vm4 in VLAN 7 (their uplink frames tagged, east-west only within a VLAN)."""
    import re
    vlans = name.endswith("+vlans")
    name = name.removesuffix("+vlans") + ".toml" if vlans else name
    text = (SCENARIOS / name).read_text().replace('"rules/', f'"{SCENARIOS}/rules/')
    if vlans:
        for vm in ("vm3", "vm4"):
            text = text.replace(f'name = "{vm}"\ncores = 4', f'name = "{vm}"\nvlan = 7\ncores = 4')
        assert text.count("vlan = 7") == 2
    path = tmp_path / name
    path.write_text(re.sub(r"(?m)^frames = \d+", f"frames = {frames}", text))
    return path


@pytest.mark.parametrize("scenario", ["default.toml", "east-west.toml", "default+vlans"])
def test_the_switch_delivers_each_frame_to_its_vm_port(scenario, tmp_path):
    """The golden-model NIC of the offloaded path, run as a point runs it: each frame leaves by the
    port of the VM the scenario sends it to, once (no flooding: every VM was learned first)."""
    from sim.compare.sweep import Context, _load, _nic
    from sim.compare.traffic import arrivals
    path = _shipped(scenario, tmp_path, 1000)
    if scenario.endswith("+vlans"):
        assert {v.vlan for v in load_scenario(path).vms} == {1, 7}
    ctx = Context(str(path), str(REPO_ROOT / "calibration" / "calibration.json"), "model")
    sc, _, frames, _ = _load(ctx)
    nic = _nic(ctx)
    run = nic.run(frames, arrivals(frames, 1.0, 1))
    topo = nic.topology
    # The frames planted as attacks on the VMs' firewall drop rules ([traffic] attack_share) leave by no port.
    attacks = {i for i, f in enumerate(frames) if f.planted and f.planted.kind == "attack"}
    assert attacks
    want = Counter(topo.port_of[f.vm] for i, f in enumerate(frames) if not topo.bridged(f) and i not in attacks)
    assert run.egress_packets == dict(want)
    assert run.bridged == [i for i, f in enumerate(frames) if topo.bridged(f)]
    for i, r in enumerate(run.records):
        if r is not None:
            assert r["egress"] == ([] if i in attacks else [topo.port_of[frames[i].vm]]), (i, r)
    # the NIC's counters agree: what each VM port sent, and each frame came in by the port it
    # comes from (the uplink, or its source VM's port, plus that port's learning frame)
    for port, n in want.items():
        assert run.counters["ports"][port]["tx_packets"] == n
    came_from = Counter("phy0" if f.src_vm is None else topo.port_of[f.src_vm] for f in frames if not topo.bridged(f))
    came_from.update(topo.port_of[v.name] for v in sc.vms)
    assert {p: c["rx_packets"] for p, c in run.counters["ports"].items() if c["rx_packets"]} == dict(came_from)


def test_the_nic_bound_names_the_switch_frame_rate_where_it_binds():
    """One frame per 8 cycles (19.53 Mpps at 156.25 MHz, measured in docs/performance.md "The switch
    at full load") binds 60-byte frames at W=128; at W=64 their 8 beats bind first."""
    from sim.compare.offload import frame_rate_bound
    from sim.compare.traffic import Frame
    sc = load_scenario(SCENARIOS / "default.toml")
    small = [Frame(bytes(60), "vm1", None, 0)] * 10
    wide = frame_rate_bound(topology(sc).nic_config({"data_width": 128}, source="test"), small)
    assert wide["by"] == "frame rate" and wide["gbps"] == pytest.approx(19.53e6 * 60 * 8 / 1e9, rel=1e-3)
    assert wide["data_path_gbps"] == pytest.approx(2 * wide["gbps"], rel=1e-3)    # 4 beats, not 8
    narrow = frame_rate_bound(topology(sc).nic_config({}, source="test"), small)
    assert narrow["by"] == "data path" and narrow["gbps"] == wide["gbps"]
    jumbo = frame_rate_bound(topology(sc).nic_config({}, source="test"), [Frame(bytes(1514), "vm1", None, 0)])
    assert jumbo["by"] == "data path" and jumbo["gbps"] == pytest.approx(1514 * 8 * 156.25e6 / 190 / 1e9, rel=1e-3)
