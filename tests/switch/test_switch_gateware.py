"""The switch fabric's gateware against its golden model, frame for frame, on both simulators.

The model (host_driver/model/switch.py) is itself held frame for frame to Open vSwitch
(test_switch_vs_ovs.py); here the NIC built with a switch (``NicConfig.switch``) must make the
same decision for every frame (drop reason, egress ports) and send the same bytes out of every
port, in the same order: learning, flooding within the VLAN, known unicast, same-port drops,
reserved addresses, access and trunk ports, native VLAN, priority tags, QinQ, tag insert and
strip, and a mirror session. Frames go in on all ports at once at line rate; the model switches
them in the order the gateware's records say it did (its arbiter's order), at the record's cycle.
"""

from __future__ import annotations

import pytest

from hdl.config import NicConfig
from hdl.packet.meta import DropReason
from host_driver.model.switch import PortVlan
from host_driver.switch_config import SwitchConfig
from sim.run.engine import _record_decoder
from sim.tb.traffic import switch_frames

pytestmark = pytest.mark.sim

#: The ports of test_switch_vs_ovs.py (held to OVS there), and a monitor port.
PORTS = {
    "phy0": PortVlan("trunk", 1, None),
    "vm1": PortVlan("access", 1),
    "vm2": PortVlan("access", 1),
    "vm3": PortVlan("access", 2),
    "vm4": PortVlan("access", 2),
    "up2": PortVlan("trunk", None, frozenset({2, 100})),
}
NAMES = list(PORTS) + ["mon"]
ETH_LOCAL = b"\x88\xb5"          # IEEE local experimental ethertype: the parser reads L2 only


def switch_config(mirror: bool = True, port_limit: dict | None = None) -> SwitchConfig:
    ports = _port_specs()
    ports["mon"] = {"mode": "trunk", "native": 1}
    table = {"ports": ports, "loop_guard": False}
    if port_limit:
        table["table"] = {"port_limit": port_limit}
    if mirror:
        table["mirror"] = [{"to": "mon", "ingress": ["vm1"], "egress": ["up2"]}]
    return SwitchConfig.from_toml(table)


def nic_config(cfg: SwitchConfig, width: int = 64) -> NicConfig:
    return NicConfig(data_width=width, ports=tuple(NAMES), physical_ports=("phy0",),
                     switch=cfg.settings(NAMES, 156.25, mac_sets=64, mac_ways=4))


def random_frames(seed: int, n: int) -> list[tuple[str, bytes]]:
    """Frames over the switch's ports (not its monitor port): :func:`sim.tb.traffic.switch_frames`."""
    return switch_frames(PORTS, seed, n, ethertype=ETH_LOCAL, payload=(42, 200))


def check_against_model(nic: NicConfig, cfg: SwitchConfig, frames, res) -> None:
    """Every record and every port's egress of a simulation ``res`` equal the model's."""
    decode = _record_decoder(nic)
    model = cfg.model(nic.clock_mhz, sets=nic.switch.mac_sets, ways=nic.switch.mac_ways)
    per_port: dict[int, list[int]] = {}
    for i, (port, _) in enumerate(frames):
        per_port.setdefault(NAMES.index(port), []).append(i)
    expected: dict[str, list[tuple[int, bytes]]] = {p: [] for p in NAMES}
    assert len(res["records"]) == len(frames)
    for cycle, bits in res["records"]:
        rec = decode(bits)
        idx = per_port[rec["in_port"]].pop(0)
        port, frame = frames[idx]
        got = model.process(port, frame, now=cycle)
        want_reason = got.drop.value if got.drop else "none"
        reason = DropReason(rec["reason"]).label
        assert reason == want_reason, f"frame {idx} from {port}: {reason} != {want_reason}"
        want_egress = sorted(NAMES.index(q) for q in [*got.egress, *(q for q, _ in got.mirrored)])
        assert rec["egress"] == want_egress, f"frame {idx} from {port}: egress {rec['egress']} != {want_egress}"
        for q, data in [*got.egress.items(), *got.mirrored]:
            expected[q].append((idx, data))
    for name in NAMES:
        sent = [e["data"] for e in res["egress"][name]]
        want = [d for _, d in expected[name]]
        assert len(sent) == len(want), f"{name}: {len(sent)} frames sent, the model sends {len(want)}"
        for k, (s, (idx, w)) in enumerate(zip(sent, expected[name])):
            assert s == w, f"{name}: frame {k} (input {idx}) differs:\n{s.hex()}\n{w.hex()}"
        assert not any(e.get("flags") for e in res["egress"][name]), f"{name}: tuser or tkeep not packed"


def _run(simulator: str, nic: NicConfig, frames, tmp_path):
    idx = [(NAMES.index(p), f, False, 0) for p, f in frames]
    if simulator == "verilator":
        from sim.bulk.run import run_bulk
        return run_bulk(nic, idx, tmp_path)
    from sim.run.engine import _run_cocotb
    return _run_cocotb(nic, idx, simulator, False, tmp_path, [0])


def check_counters(nic: NicConfig, frames, res) -> None:
    """Every counter the driver reads from the gateware equals the golden NIC model's, the model
    fed the frames in the gateware's order at the records' cycles."""
    import asyncio

    from host_driver.driver import Nic
    from host_driver.model.nic import ModelBus, NicModel
    decode = _record_decoder(nic)
    model = NicModel(nic)
    per_port: dict[int, list[int]] = {}
    for i, (port, _) in enumerate(frames):
        per_port.setdefault(NAMES.index(port), []).append(i)
    for cycle, bits in res["records"]:
        port, frame = frames[per_port[decode(bits)["in_port"]].pop(0)]
        model.process(frame, port, now=cycle)

    async def read():
        driver = Nic(ModelBus(model))
        await driver.discover()
        return await driver.counters()
    want = asyncio.run(read())
    assert res["counters"] == want
    assert sum(c["switch"]["drop_reserved"] for c in want["ports"].values()) > 0, "the sequence must drop"


@pytest.mark.parametrize("seed", [1, 2])
def test_switch_equals_model_verilator(tmp_path, seed):
    cfg = switch_config()
    nic = nic_config(cfg)
    frames = random_frames(seed, 600)
    res = _run("verilator", nic, frames, tmp_path)
    check_against_model(nic, cfg, frames, res)
    check_counters(nic, frames, res)


def test_switch_equals_model_icarus(tmp_path):
    """On Icarus with learning limits on two ports (vm1's three hosts, the phy0 trunk's hosts in
    several VLANs reach them); Verilator runs without limits above and with them below."""
    cfg = switch_config(port_limit={"vm1": 2, "phy0": 4})
    nic = nic_config(cfg)
    frames = random_frames(3, 120)
    res = _run("icarus", nic, frames, tmp_path)
    check_against_model(nic, cfg, frames, res)
    limited = {p: c["switch"]["learn_limit"] for p, c in res["counters"]["ports"].items()}
    assert limited["vm1"] > 0 and limited["phy0"] > 0, limited


@pytest.mark.slow   # a Verilator build of its own; the Icarus comparison keeps the limits in the default suite
def test_switch_port_limit_verilator(tmp_path):
    """Learning limits on two ports (port security): vm1 may hold 2 entries (its hosts are 3),
    the phy0 trunk 4 (its hosts in several VLANs). Random traffic, then a MAC flood from vm1
    (40 random source addresses) while vm2's hosts keep talking: every decision, every byte and
    every counter equal the model's; vm1 never holds more than its limit, each refused source
    is counted on its port, and vm2 learns all its hosts."""
    import random

    from sim.bulk.run import run_bulk
    cfg = switch_config(port_limit={"vm1": 2, "phy0": 4})
    nic = nic_config(cfg)
    rng = random.Random(9)
    flood = []
    for k in range(40):
        flood.append(("vm1", b"\xff" * 6 + bytes([0x02, 0xF1, 0, 0, 0, k]) + ETH_LOCAL + bytes(46)))
        if k % 4 == 0:
            flood.append(("vm2", b"\xff" * 6 + bytes([0x02, 0, 0, 0, 3, rng.randrange(3)]) + ETH_LOCAL + bytes(46)))
    frames = random_frames(4, 300) + flood

    async def dump(n):
        from host_driver.blocks.switch import Switch
        sw = Switch(n)
        ports = range(len(NAMES))
        return (await n.mac_table(), [await sw.port_limit(i) for i in ports], [await sw.port_held(i) for i in ports])
    res = run_bulk(nic, [(NAMES.index(p), f, False, 0) for p, f in frames], tmp_path, after=dump)
    check_against_model(nic, cfg, frames, res)
    check_counters(nic, frames, res)
    table, limits, held_csr = res["after"]
    held = {p: sum(1 for e in table if e.port == p and not e.static) for p in NAMES}
    assert held["vm1"] == 2 and held["phy0"] == 4
    # The driver reads the limits (the build's reset values) and what each port holds.
    assert limits == [4, 2, 0, 0, 0, 0, 0] and held_csr == [held[p] for p in NAMES]
    assert {e.mac for e in table if e.port == "vm2"} == {f"02:00:00:00:03:0{k}" for k in range(3)}
    limited = {p: c["switch"]["learn_limit"] for p, c in res["counters"]["ports"].items()}
    assert limited["vm1"] >= 40 and limited["phy0"] > 0
    assert all(n == 0 for p, n in limited.items() if p not in ("vm1", "phy0"))


def test_switch_equals_ovs_verilator(tmp_path):
    """The gateware against Open vSwitch itself, no model between them: OVS switches the frames in
    the order the gateware's records say it took them; every port's egress and the MAC table
    (the driver's dump against ``fdb/show``) must be equal."""
    from sim.tb.ovs import OvsPort, OvsSwitch, ovs_unavailable
    reason = ovs_unavailable()
    if reason:
        pytest.skip(reason)
    from sim.bulk.run import run_bulk
    names = list(PORTS)
    cfg = SwitchConfig.from_toml({"ports": _port_specs(), "loop_guard": False})
    nic = NicConfig(ports=tuple(names), physical_ports=("phy0",),
                    switch=cfg.settings(names, 156.25, mac_sets=64, mac_ways=4))
    frames = random_frames(5, 300)

    async def dump(n):
        return await n.mac_table()
    res = run_bulk(nic, [(names.index(p), f, False, 0) for p, f in frames], tmp_path / "bulk", after=dump)
    decode = _record_decoder(nic)
    per_port: dict[int, list[int]] = {}
    for i, (port, _) in enumerate(frames):
        per_port.setdefault(names.index(port), []).append(i)
    order = [per_port[decode(bits)["in_port"]].pop(0) for _, bits in res["records"]]
    ports = [OvsPort(n, p.mode, p.vlan, None if p.trunks is None else tuple(sorted(p.trunks)))
             for n, p in PORTS.items()]
    with OvsSwitch(tmp_path / "ovs", ports) as ovs:
        ovs.send_all([frames[i] for i in order])
        want, fdb = ovs.egress(), ovs.fdb()
    for name in names:
        got = [e["data"] for e in res["egress"][name]]
        assert got == want[name], f"{name}: gateware sent {len(got)} frames, OVS {len(want[name])}"
    assert sorted((e.port, e.vlan, e.mac) for e in res["after"]) == sorted(fdb)


def _port_specs() -> dict:
    """:data:`PORTS` as a ``[switch.ports]`` table."""
    return {n: ({"mode": "access", "vlan": p.vlan} if p.mode == "access" else
                {"mode": "trunk", "native": p.vlan if p.vlan is not None else "none",
                 **({"vlans": sorted(p.trunks)} if p.trunks is not None else {})})
            for n, p in PORTS.items()}
