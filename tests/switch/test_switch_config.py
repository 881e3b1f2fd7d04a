"""The [switch] table of nic.toml and the built-in profiles (host_driver/switch_config.py)."""

from __future__ import annotations

import tomllib

import pytest

from host_driver.model.switch import PortVlan, StormClass, SwitchDrop
from host_driver.switch_config import PROFILES, SwitchConfig, SwitchConfigError, profile

EXAMPLE = """
[switch.ports]
phy0 = { mode = "trunk", native = 1 }
up = { mode = "trunk", native = "none", vlans = [2, 3] }
vm1 = { mode = "access", vlan = 1 }
vm2 = { vlan = 2 }
mon = { vlan = 1 }
[switch.storm.vm1]
broadcast = { mbps = 100, burst = 1500 }
[[switch.mirror]]
to = "mon"
ingress = ["vm1"]
egress = ["phy0"]
[switch.table]
aging_s = 60
port_limit = 8
[switch.loop_guard]
moves = 4
window_us = 10
block = false
"""


def test_example_reads_as_written():
    cfg = SwitchConfig.from_toml(tomllib.loads(EXAMPLE)["switch"])
    assert list(cfg.ports) == ["phy0", "up", "vm1", "vm2", "mon"]
    assert cfg.ports["up"] == PortVlan("trunk", None, frozenset({2, 3}))
    assert cfg.ports["vm2"] == PortVlan("access", 2)
    assert cfg.storm[("vm1", StormClass.BROADCAST)].mbps == 100
    assert cfg.mirrors[0].ingress == {"vm1"} and cfg.mirrors[0].egress == {"phy0"}
    assert (cfg.aging_s, cfg.port_limit) == (60, 8)
    assert (cfg.loop_guard.moves, cfg.loop_guard.window_us, cfg.loop_guard.block) == (4, 10, False)
    model = cfg.model(156.25)
    # aging and loop guard's window count ticks of 1024 cycles, as the gateware does
    assert model.table.aging == 60 * 156_250_000 // 1024 and model.table.limit_of("vm1") == 8
    assert model.loop_guard.window == 1562 // 1024 and not model.loop_guard.block
    assert model.storm[("vm1", StormClass.BROADCAST)].rate == 81
    # and it switches: a broadcast from vm2 (VLAN 2) reaches both trunks tagged, nothing else
    frame = bytes.fromhex("ffffffffffff020000000001") + b"\x08\x00" + bytes(46)
    res = model.process("vm2", frame)
    assert set(res.egress) == {"phy0", "up"}
    assert res.egress["up"][12:16] == res.egress["phy0"][12:16] == bytes.fromhex("81000002")


@pytest.mark.parametrize("text,key", [
    ("[switch]\nports = {}", "switch.ports"),
    ("[switch.ports]\nvm1 = { mode = 'hybrid' }", "switch.ports.vm1.mode"),
    ("[switch.ports]\nvm1 = { vlan = 4095 }", "switch.ports.vm1.vlan"),
    ("[switch.ports]\nvm1 = { vlan = 1, native = 2 }", "switch.ports.vm1.native"),
    ("[switch.ports]\nt = { mode = 'trunk', vlans = [1, 0] }", "switch.ports.t.vlans[1]"),
    ("[switch.ports]\nvm1 = {}\n[switch.storm.vm9]\nbroadcast = { mbps = 1, burst = 100 }", "switch.storm.vm9"),
    ("[switch.ports]\nvm1 = {}\n[switch.storm.vm1]\nbcast = { mbps = 1, burst = 100 }", "switch.storm.vm1.bcast"),
    ("[switch.ports]\nvm1 = {}\n[switch.storm.vm1]\nbroadcast = { mbps = 1 }",
     "switch.storm.vm1.broadcast.burst"),
    ("[switch.ports]\nvm1 = {}\n[[switch.mirror]]\nto = 'mon'", "switch.mirror[0].to"),
    ("[switch.ports]\nvm1 = {}\nmon = {}\n[[switch.mirror]]\nto = 'mon'\ningress = ['mon']",
     "switch.mirror[0].ingress"),
    ("[switch.ports]\nvm1 = {}\n[switch.table]\naging_s = -1", "switch.table.aging_s"),
    ("[switch.ports]\nvm1 = {}\n[switch.table]\nsets = 12", "switch.table.sets"),
    ("[switch.ports]\nvm1 = {}\n[switch.table]\nbuckets = 8", "switch.table.buckets"),
    ("[switch.ports]\nvm1 = {}\n[switch.loop_guard]\nblock = 'yes'", "switch.loop_guard.block"),
    ("[switch]\nwire = true\n[switch.ports]\na = {}\nb = {}\nc = {}", "switch.wire"),
    ("[switch]\nwire = true\n[switch.ports]\na = {}\nb = {}\n[switch.table]\naging_s = 5", "switch.table"),
    ("[switch]\nspeed = 1\n[switch.ports]\na = {}", "switch.speed"),
])
def test_mistakes_name_their_key(text, key):
    with pytest.raises(SwitchConfigError) as err:
        SwitchConfig.from_toml(tomllib.loads(text)["switch"])
    assert str(err.value).startswith(key + ":"), str(err.value)


def test_profiles():
    sw = profile("switch")
    assert list(sw.ports) == ["phy0", "vm1", "vm2", "vm3", "vm4", "host", "mon"]
    assert sw.ports["phy0"] == PortVlan("trunk", 1, None) and sw.ports["vm3"] == PortVlan("access", 1)
    model = sw.model(156.25)
    res = model.process("vm1", bytes.fromhex("ffffffffffff020000000001") + b"\x08\x00" + bytes(46))
    assert set(res.egress) == {"phy0", "vm2", "vm3", "vm4", "host"}, "mon is a monitor port: never flooded to"
    assert model.process("vm1", bytes.fromhex("0180c2000000020000000001") + bytes(48)).drop is SwitchDrop.RESERVED
    wire = profile("bump-in-the-wire")
    assert wire.wire and list(wire.ports) == ["phy0", "vm1"]
    with pytest.raises(ValueError):
        wire.model(156.25)
    with pytest.raises(KeyError, match="switch, bump-in-the-wire"):
        profile("router")
    assert set(PROFILES) == {"switch", "bump-in-the-wire"}
