"""The Nic driver running over the golden model's register file (ModelBus)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from hdl.config import NicConfig
from hdl.datapath.ports import PortCounter
from hdl.mgmt.regs import Event
from hdl.packet.meta import COUNTED_DROP_REASONS, MalformedReason
from host_driver import regmap
from host_driver.bus import AxiResp, Bus, BusError
from host_driver.driver import DiscoveryError, IdentityError, Nic
from host_driver.model.nic import ModelBus, NicModel
from sim.tb.traffic import demo_mix


def run(coro):
    return asyncio.run(coro)


async def _nic(model):
    nic = Nic(ModelBus(model))
    await nic.discover()
    return nic


class PatchedBus(Bus):
    """Wraps a bus and overrides some read addresses (to fake broken or unknown hardware)."""

    def __init__(self, inner: Bus, overrides: dict[int, int]):
        self.inner, self.overrides = inner, overrides

    async def read32(self, addr):
        if addr in self.overrides:
            return self.overrides[addr]
        return await self.inner.read32(addr)

    async def write32(self, addr, value):
        await self.inner.write32(addr, value)


def test_discovery_matches_register_map():
    model = NicModel(NicConfig())
    nic = run(_nic(model))
    got = [(b.type.name, b.base, b.instance, b.version, b.size) for b in nic.blocks]
    want = [(b.type.name, b.base, b.instance, b.type.version, b.type.size) for b in model.regmap.blocks]
    assert got == want
    assert [b.key for b in nic.find("PORT")] == ["PORT0", "PORT1"]


def test_unknown_block_is_skipped(caplog):
    model = NicModel(NicConfig())
    port1 = model.regmap.block("PORT", 1)
    bus = PatchedBus(ModelBus(model), {port1.base: 0x7777 << 16 | 3})
    nic = Nic(bus)
    with caplog.at_level(logging.WARNING, logger="host_driver.driver"):
        blocks = run(nic.discover())
    assert [b.key for b in blocks] == ["IDENTITY0", "PORT0", "PARSER0"]
    assert "unknown block type 0x7777" in caplog.text


def test_chain_loop_and_runaway_chain_raise():
    model = NicModel(NicConfig())
    last = model.regmap.blocks[-1]
    bus = PatchedBus(ModelBus(model), {last.base + regmap.header_offset("NEXT"): regmap.BLOCK_STRIDE})
    with pytest.raises(DiscoveryError, match="loops back to 0x100"):
        run(Nic(bus).discover())

    class Endless(Bus):
        async def read32(self, addr):
            return addr - 4 + regmap.BLOCK_STRIDE if addr % regmap.BLOCK_STRIDE == 4 else 0xABCD0001

        async def write32(self, addr, value):
            raise AssertionError

    with pytest.raises(DiscoveryError, match="more than 256 blocks"):
        run(Nic(Endless()).discover())


def test_identity():
    config = NicConfig(data_width=128, header_window=192, max_frame=2000, buffer_bytes=8192, clock_mhz=200.0,
                       counter_width=32)
    nic = run(_nic(NicModel(config)))
    ident = run(nic.identity())
    assert ident == {"hw_version": "0.1.0", "data_width": 128, "num_ports": 2, "clock_khz": 200000,
                     "header_window": 192, "max_frame": 2000, "buffer_bytes": 8192, "counter_width": 32}


def test_wrong_magic_is_a_clear_error():
    model = NicModel(NicConfig())
    magic = model.regmap.block("IDENTITY").addr("MAGIC")
    nic = Nic(PatchedBus(ModelBus(model), {magic: 0xDEADBEEF}))
    run(nic.discover())
    with pytest.raises(IdentityError, match="reads 0xdeadbeef, expected 0x534e4943"):
        run(nic.identity())
    with pytest.raises(IdentityError, match="no IDENTITY block"):
        run(Nic(ModelBus(model)).identity())


def test_counters_after_traffic():
    model = NicModel(NicConfig(ports=("phy0", "vm1")))
    for port, frame in demo_mix(300, seed=5):
        model.process(frame, port)
    model.process(bytes(60), "vm1", rx_error=True)
    nic = run(_nic(model))
    counters = run(nic.counters())
    assert list(counters) == ["ports", "parser"]
    assert list(counters["ports"]) == ["phy0", "vm1"]
    port_events = list(PortCounter) + list(COUNTED_DROP_REASONS)
    port_keys = ["rx_packets", "rx_bytes", "tx_packets", "tx_bytes"] + \
        [f"drop_{r.label}" for r in COUNTED_DROP_REASONS]
    for i, name in enumerate(("phy0", "vm1")):
        assert list(counters["ports"][name]) == port_keys
        for key, event in zip(port_keys, port_events):
            assert counters["ports"][name][key] == model.counters[Event("PORT", i, event)]
    assert counters["parser"]["packets"] == 301
    assert list(counters["parser"]["malformed"]) == [r.label for r in MalformedReason]
    for r in MalformedReason:
        assert counters["parser"]["malformed"][r.label] == model.counters[Event("PARSER", 0, r)]
    assert counters["ports"]["vm1"]["drop_rx_error"] == 1
    again = run(nic.counters())
    assert json.dumps(again) == json.dumps(counters)


def test_port_names_come_from_the_hardware():
    nic = run(_nic(NicModel(NicConfig(ports=("uplink0", "vm12345"), physical_ports=("uplink0",)))))
    assert list(run(nic.counters())["ports"]) == ["uplink0", "vm12345"]


def test_read_counter64_and_latch_coherence():
    model = NicModel(NicConfig())
    bus = ModelBus(model)
    nic = Nic(bus)
    run(nic.discover())
    port0 = nic.block("PORT", 0)
    key = Event("PORT", 0, PortCounter.RX_BYTES)
    model.counters[key] = 0x1_FFFF_FFFF
    assert run(nic.read_counter64(port0, "RX_BYTES")) == 0x1_FFFF_FFFF

    lo_addr = port0.addr("RX_BYTES")

    async def torn_read():
        lo = await bus.read32(lo_addr)
        model.counters[key] += 1          # traffic between the two reads carries into the high word
        hi = await bus.read32(lo_addr + 4)
        return hi << 32 | lo

    assert run(torn_read()) == 0x1_FFFF_FFFF          # the snapshot taken at the LO read
    assert run(nic.read_counter64(port0, "RX_BYTES")) == 0x2_0000_0000

    async def hi_without_lo():
        await bus.read32(port0.addr("TX_BYTES"))      # latches another counter
        model.counters[key] = 0x5_0000_0000
        return await bus.read32(lo_addr + 4)

    # The gateware returns the live high word here, not the other counter's latch (checked in
    # tests/mgmt/test_csr_amaranth.py); the model's register file must do the same.
    assert run(hi_without_lo()) == 5
    with pytest.raises(ValueError, match="not a 64-bit counter"):
        run(nic.read_counter64(port0, "FLAGS"))


def test_scratch_and_bus_errors():
    model = NicModel(NicConfig())
    bus = ModelBus(model)
    nic = Nic(bus)
    run(nic.discover())
    ident = nic.block("IDENTITY")
    run(nic.write(ident, "SCRATCH", 0x1234_5678))
    assert run(nic.read(ident, "SCRATCH")) == 0x1234_5678
    unmapped = ident.base + regmap.BLOCK_STRIDE - 4
    with pytest.raises(BusError, match=f"SLVERR response to read at address 0x{unmapped:08x}") as exc:
        run(bus.read32(unmapped))
    assert exc.value.resp is AxiResp.SLVERR and exc.value.addr == unmapped
    with pytest.raises(BusError, match="SLVERR response to read at address 0x00010000"):
        run(bus.read32(0x10000))
    with pytest.raises(BusError, match="SLVERR response to write at address 0x00000010"):
        run(bus.write32(ident.addr("MAGIC"), 0))
    with pytest.raises(BusError, match="write at .*counter64 register is read-only"):
        run(bus.write32(nic.block("PORT", 1).addr("RX_PACKETS") + 4, 0))
    with pytest.raises(BusError, match="write"):
        run(bus.write32(0, 0))
    with pytest.raises(BusError, match="unmapped"):
        run(bus.write32(0x8000, 0))


def test_counter_paths_come_from_the_register_description():
    assert regmap.counter_path(regmap.PORT, "RX_PACKETS") == ("rx_packets",)
    assert regmap.counter_path(regmap.PARSER, "MALFORMED_TRUNC_L4") == ("malformed", "trunc_l4")
    # A counter declared without a path sits under its lower-cased register name.
    assert regmap.Register("SOMETHING_NEW", 0x10, regmap.Access.COUNTER64, "", event=PortCounter.RX_PACKETS).path \
        == ("something_new",)
    assert regmap.format_version(1 << 16 | 2 << 8 | 3) == "1.2.3"
    assert regmap.decode_name(int.from_bytes(b"vm12", "little"), 0) == "vm12"


def test_port_held_reads_the_models_learning_count():
    """SWPORT PORT_HELD over ModelBus: what each port holds as its learning limit counts it (the
    gateware's register; tests/switch/test_switch_gateware.py reads it from the simulators)."""
    from host_driver.blocks.switch import Switch
    from host_driver.model.switch import parse_mac
    from host_driver.switch_config import SwitchConfig
    names = ("phy0", "vm1", "vm2", "host")
    cfg = SwitchConfig.from_toml({"ports": {n: {"mode": "access", "vlan": 1} for n in names},
                                  "table": {"port_limit": {"vm1": 2}}})
    model = NicModel(NicConfig(ports=names, physical_ports=("phy0",),
                               switch=cfg.settings(list(names), 156.25, mac_sets=64, mac_ways=4)))
    for k in range(5):                 # five sources on vm1 (two held), three on vm2
        model.process(b"\xff" * 6 + parse_mac(f"02:00:00:00:01:{k:02x}") + bytes(50), "vm1")
    for k in range(3):
        model.process(b"\xff" * 6 + parse_mac(f"02:00:00:00:02:{k:02x}") + bytes(50), "vm2")

    async def read():
        nic = await _nic(model)
        sw = Switch(nic)
        return [await sw.port_held(i) for i in range(len(names))]
    assert run(read()) == [0, 2, 3, 0]
