"""Amaranth-level checks of the switch stage's parts (hdl/switch/stage.py) that the frame-level
tests reach only in part: the VLAN table's power-on rows, which the stage makes in logic (its
block RAM starts empty and holds each row XOR its power-on value)."""

import gc

import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from hdl.config import NicConfig
from hdl.switch.settings import VLAN_COUNT
from hdl.switch.stage import SwitchStage
from host_driver.switch_config import PROFILES, SwitchConfig, nic_config

#: A trunk with a VLAN list and no native VLAN, a trunk of every VLAN, access ports.
MIXED_PORTS = {"phy0": {"mode": "trunk", "native": 1}, "vm1": {"vlan": 1}, "vm2": {"vlan": 7},
               "up2": {"mode": "trunk", "native": "none", "vlans": [2, 100, 4094]}}


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")   # only a method of the stage is used
@pytest.mark.parametrize("table", [PROFILES["switch"], {"ports": MIXED_PORTS}], ids=["switch", "mixed"])
def test_power_on_rows_are_the_settings(table):
    config: NicConfig = nic_config(SwitchConfig.from_toml(table))
    power_on_row = SwitchStage(config)._power_on_row
    vid = Signal(12)
    row = Signal(len(config.ports))
    m = Module()
    m.d.comb += row.eq(power_on_row(vid))
    got = []

    async def bench(ctx):
        for v in range(VLAN_COUNT):
            ctx.set(vid, v)
            got.append(ctx.get(row))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    want = [config.switch.vlan_members(v) for v in range(VLAN_COUNT)]
    bad = [(v, got[v], want[v]) for v in range(VLAN_COUNT) if got[v] != want[v]]
    assert not bad, f"(VID, logic, settings) differ: {bad[:5]}"
    assert len(set(want)) > 2, "the table must have rows of several kinds"
    del power_on_row
    gc.collect()          # the unelaborated stage warns here, under the mark below
