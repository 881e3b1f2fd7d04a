"""Issue 13's scenarios on the switch gateware: loop storm, MAC flooding attack, saturation.

* Loop storm (cocotb, switch_scenarios_cocotb.py): a looped broadcast circulates; storm control
  holds it to the limit within 5 %; loop guard blocks the port and freezes the flight recorder;
  CSR reads complete during the storm.
* MAC flood (bulk mode): 100,000 frames with random source MACs from one port. Static and earlier
  learned entries survive (the driver's dump of the whole table), table-full is counted, and the
  flood out of the other ports stays within the port's unknown-unicast storm limit.
* Saturation (bulk mode): every port at 100 % load of minimum frames to known destinations:
  nothing is dropped; a trunk that must tag every frame (4 bytes more: one beat more per frame at
  W=64) is oversubscribed and drops only in its own output queue, counted; the other ports lose
  nothing.
"""

from __future__ import annotations

import json
import random

import pytest

from hdl.config import NicConfig
from host_driver.model.switch import mac_hash
from host_driver.switch_config import SwitchConfig, nic_config
from sim.runner import SimulatorUnavailable, check_simulator, run_cocotb

pytestmark = pytest.mark.sim

LOOP_PORTS = {"phy0": {"mode": "trunk", "native": 1}, "vm1": {"vlan": 1}, "vm2": {"vlan": 1}, "vm3": {"vlan": 1}}


def _loop_config() -> NicConfig:
    return nic_config(SwitchConfig.from_toml({"ports": LOOP_PORTS, "loop_guard": False, "table": {"sets": 64}}))


def _require(sim: str) -> None:
    try:
        check_simulator(sim)
    except SimulatorUnavailable as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("sim", ["verilator", pytest.param("icarus", marks=pytest.mark.slow)])
def test_loop_storm(sim, tmp_path):
    _require(sim)
    out = tmp_path / "loop_storm.json"
    run_cocotb(_loop_config(), sim, "switch_scenarios_cocotb", test_dir=tmp_path / "sim",
               env={"SECNIC_SCENARIO_OUT": str(out)})
    figures = json.loads(out.read_text())
    assert figures["csr_read_cycles"]["max"] < 100, figures


# -- bulk-mode scenarios ----------------------------------------------------------------------------

def _eth(dst: bytes, src: bytes, n: int = 46) -> bytes:
    return dst + src + b"\x88\xb5" + bytes(n)


def _bulk(config: NicConfig, frames, workdir, before=None):
    """Run ``frames`` ((port, frame, start cycle)) in bulk mode; ``before(nic)`` programs the NIC
    through the driver before the traffic starts. (results, counters, the MAC table dump)."""
    from sim.bulk.run import run_bulk
    idx = [(config.ports.index(p), f, False, t) for p, f, t in frames]

    async def dump(nic):
        return await nic.mac_table()
    res = run_bulk(config, idx, workdir, before=before, after=dump)
    return res, res["counters"], res["after"]


FLOOD_PORTS = {"phy0": {"mode": "trunk", "native": 1}, "vm1": {"vlan": 1}, "vm2": {"vlan": 1}, "vm3": {"vlan": 1}}
#: vm1's unknown-unicast and broadcast limit in the flood: 1 byte per cycle (1.25 Gb/s).
FLOOD_RATE, FLOOD_BURST = 1024, 3000


def test_mac_flood(tmp_path):
    _require("verilator")
    table = {"ports": FLOOD_PORTS, "loop_guard": False, "table": {"sets": 64, "ways": 4},
             "storm": {"vm1": {"unknown_unicast": {"mbps": 1250, "burst": FLOOD_BURST},
                               "broadcast": {"mbps": 1250, "burst": FLOOD_BURST}}}}
    config = nic_config(SwitchConfig.from_toml(table))
    assert config.switch.storm_limit(1, config.switch.storm[0][1])[0] == FLOOD_RATE
    rng = random.Random(13)
    server, router = bytes.fromhex("020000000a02"), bytes.fromhex("020000000a03")
    locked = bytes.fromhex("020000000bad")
    frames = [("vm2", _eth(b"\xff" * 6, server), 0), ("vm3", _eth(b"\xff" * 6, router), 0)]
    n = 100_000
    for _ in range(n):          # the attack: random sources to random unknown destinations
        src = bytes([rng.randrange(256) & 0xFE | 0x02]) + rng.randbytes(5)
        dst = bytes([0x02]) + rng.randbytes(5)
        frames.append(("vm1", _eth(dst, src), 200))
    frames.append(("vm2", _eth(router, server), 1_000_000))  # after the flood: still known

    async def lock(nic):
        from host_driver.blocks.switch import Switch
        await Switch(nic).add_static(mac_hash(1, locked, 6), 0, 1, locked, config.ports.index("phy0"))
    res, counters, dump = _bulk(config, frames, tmp_path, before=lock)
    entries = {(e.vlan, e.mac): e for e in dump}
    assert entries[(1, "02:00:00:00:0b:ad")].static and entries[(1, "02:00:00:00:0b:ad")].port == "phy0"
    assert entries[(1, "02:00:00:00:0a:02")].port == "vm2" and entries[(1, "02:00:00:00:0a:03")].port == "vm3"
    assert counters["switch"]["table_full"] > 0
    assert len(dump) == 64 * 4, "the table is full, of the flood's sources and the three above"
    vm1 = counters["ports"]["vm1"]
    assert vm1["rx_packets"] == n
    # Flooding stays within the storm limit: vm1's frames that left by vm2 (all of vm2's egress
    # but vm3's broadcast), over the cycles the attack lasted.
    flood = [i for i, (p, _, _) in enumerate(frames) if p == "vm1"]
    cycles = res["ingress"][flood[-1]][1] - res["ingress"][flood[0]][0]
    admitted = len(res["egress"]["vm2"]) - 1
    flooded = sum(len(e["data"]) for e in res["egress"]["vm2"]) - 60
    assert FLOOD_RATE / 1024 * cycles * 0.95 <= flooded <= FLOOD_RATE / 1024 * cycles * 1.05 + FLOOD_BURST
    assert vm1["switch"]["drop_storm_unknown"] == n - admitted > 0.8 * n
    # the last frame, server to router, went to the router's port only
    assert res["egress"]["vm3"][-1]["data"] == _eth(router, server)
    assert all(e["data"] != _eth(router, server) for e in res["egress"]["phy0"])


def test_saturation(tmp_path):
    """Four ports at 100 % of 64-byte frames, each to a known host on another port."""
    _require("verilator")
    ports = {"phy0": {"mode": "trunk", "native": 1}, "vm1": {"vlan": 1}, "vm2": {"vlan": 1}, "vm3": {"vlan": 1}}
    config = nic_config(SwitchConfig.from_toml({"ports": ports, "loop_guard": False, "table": {"sets": 64}}))
    hosts = {p: bytes([2, 0, 0, 0, 0, i + 1]) for i, p in enumerate(ports)}
    peer = {"phy0": "vm1", "vm1": "phy0", "vm2": "vm3", "vm3": "vm2"}
    frames = [(p, _eth(b"\xff" * 6, hosts[p]), 0) for p in ports]         # everyone learned
    n = 5_000
    frames += [(p, _eth(hosts[peer[p]], hosts[p]), 100) for _ in range(n) for p in ports]
    res, counters, _ = _bulk(config, frames, tmp_path)
    for p in ports:
        c = counters["ports"][p]
        assert c["rx_packets"] == n + 1 and c["switch"]["tx_queue_drop"] == 0
        assert sum(v for k, v in c["switch"].items() if k.startswith("drop_")) == 0
        assert len(res["egress"][p]) == n + 3     # its peer's n frames and three broadcasts
