"""cocotb tests: the host's SerialBus and Nic driver over simulated UART pins, against the bridge.

Top: ``secnic_top`` with ``uart_rx``/``uart_tx`` (``sim.tb.bridge_top.BridgeTop``, or NicTop once it
carries the bridge). Run through ``tests/test_bridge_cocotb.py`` on Verilator and Icarus.
"""

import json
import logging
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, Timer

from hdl.board.bridge import RESPONSE_LEN, TIMEOUT_BITS, Cmd, Status
from hdl.config import NicConfig
from hdl.mgmt.regs import MAGIC
from hdl.top import build_register_map
from host_driver.bus import BusError
from host_driver.driver import Nic
from host_driver.serialbus import BridgeTimeout, SerialBus, decode_response, encode_request
from sim.tb.bridge_top import EVENTS
from sim.tb.nic import clock_impl, period_ps
from sim.tb.uart import CocotbUartTransport

log = logging.getLogger(__name__)


class TB:
    """Clock, reset, the UART transport and a SerialBus with simulation-scale timeouts."""

    def __init__(self, dut):
        self.dut = dut
        self.config = NicConfig.from_dict(json.loads(os.environ["SECNIC_CONFIG"]))
        self.regmap = build_register_map(self.config)
        self.baud = self.config.uart_baud
        self.bit_s = 1 / self.baud
        self.period_ps = period_ps(self.config)
        Clock(dut.clk, self.period_ps, unit="ps", impl=clock_impl()).start()
        self._tie_off()
        self.transport = CocotbUartTransport(dut.uart_rx, dut.uart_tx, self.baud)
        # 40 byte times: far above one response (8 byte times) and far below a hung simulation.
        self.bus = SerialBus(self.transport, timeout=400 * self.bit_s, retries=3)
        #: Bus reads of the BRIDGE block made by events() so far (NicTop only).
        self.event_reads = 0

    def _tie_off(self):
        """NicTop's packet ports idle (Icarus would otherwise see X on undriven inputs)."""
        for p in self.config.ports:
            for name, value in (("tvalid", 0), ("tdata", 0), ("tkeep", 0), ("tlast", 0), ("tuser", 0)):
                if hasattr(self.dut, f"s_axis_{p}__{name}"):
                    getattr(self.dut, f"s_axis_{p}__{name}").value = value
            if hasattr(self.dut, f"m_axis_{p}__tready"):
                getattr(self.dut, f"m_axis_{p}__tready").value = 1
        if hasattr(self.dut, "record__ready"):
            self.dut.record__ready.value = 1

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 4)

    async def events(self) -> dict:
        """Bridge event counts: the test top's pulse counters, or on NicTop the BRIDGE block's
        counters read over the bridge itself (LO words). Those reads are frames too: on NicTop
        ``ok`` is returned without the reads made by earlier calls and without this call's
        FRAMES_OK read, which its own count already includes (the bridge pulses ``ok`` as it
        issues the bus read), so it compares exactly on both tops."""
        if hasattr(self.dut, "cnt_ok"):
            return {e: int(getattr(self.dut, f"cnt_{e}").value) for e in EVENTS}
        block = self.regmap.block("BRIDGE")
        names = {"ok": "FRAMES_OK", "bad_checksum": "BAD_CHECKSUM", "bad_command": "BAD_COMMAND",
                 "truncated": "TRUNCATED"}
        got = {}
        for e, reg in names.items():
            got[e] = await self.bus.read32(block.addr(reg))
            if e == "ok":
                got[e] -= self.event_reads + 1
            self.event_reads += 1
        return got

    async def check_events(self, **expected):
        """Compare event counts exactly."""
        got = await self.events()
        assert {k: got[k] for k in expected} == expected, f"bridge events {got}, expected {expected}"

    async def idle_bits(self, n):
        await Timer(round(n * self.bit_s * 1e12), "ps")


async def setup(dut) -> TB:
    tb = TB(dut)
    await tb.reset()
    return tb


@cocotb.test()
async def identity_and_counters(dut):
    """Nic.discover/identity/counters over the serial bus; SCRATCH write/read back."""
    tb = await setup(dut)
    nic = Nic(tb.bus)
    blocks = await nic.discover()
    assert [b.type.name for b in blocks] == [b.type.name for b in tb.regmap.blocks]
    ident = await nic.identity()
    assert ident["num_ports"] == len(tb.config.ports)
    assert ident["clock_khz"] == round(tb.config.clock_mhz * 1000)
    ident_block = tb.regmap.block("IDENTITY")
    assert await tb.bus.read32(ident_block.addr("MAGIC")) == MAGIC
    counters = await nic.counters()
    assert set(counters["ports"]) == set(tb.config.ports)
    assert all(v == 0 for port in counters["ports"].values() for k, v in port.items() if k == "rx_packets")
    scratch = ident_block.addr("SCRATCH")
    await tb.bus.write32(scratch, 0xC0FFEE11)
    assert await tb.bus.read32(scratch) == 0xC0FFEE11
    assert tb.bus.stats["retries"] == 0
    await tb.check_events(ok=tb.bus.stats["requests"], bad_checksum=0, bad_command=0, truncated=0)


@cocotb.test()
async def corrupted_request_is_retried(dut):
    """A bit flipped in a request on the wire: STATUS bad checksum, the driver retries and succeeds.
    A corrupted write is not executed: seen with retries off, so no good copy of the same write
    can hide it."""
    tb = await setup(dut)
    magic = tb.regmap.block("IDENTITY").addr("MAGIC")
    tb.transport.flip_next_request = (4, 0x10)       # an address byte
    assert await tb.bus.read32(magic) == MAGIC
    assert tb.bus.stats["retries"] == 1 and tb.bus.stats["bad_checksum"] == 1
    scratch = tb.regmap.block("IDENTITY").addr("SCRATCH")
    await tb.bus.write32(scratch, 0xA5A5A5A5)
    tb.bus.retries = 0
    tb.transport.flip_next_request = (9, 0x01)       # a data byte of a write: must not be executed
    try:
        await tb.bus.write32(scratch, 0x12345678)
    except BridgeTimeout:
        pass
    else:
        raise AssertionError("a write with a bad checksum was answered OK")
    tb.bus.retries = 3
    assert await tb.bus.read32(scratch) == 0xA5A5A5A5, "the corrupted write was executed"
    tb.transport.flip_next_request = (9, 0x01)       # now with the retry: a new value gets through
    await tb.bus.write32(scratch, 0x0BADCAFE)
    assert await tb.bus.read32(scratch) == 0x0BADCAFE
    assert tb.bus.stats["retries"] == 2 and tb.bus.stats["bad_checksum"] == 3
    await tb.check_events(ok=5, bad_checksum=3, truncated=0)


@cocotb.test()
async def corrupted_response_is_retried(dut):
    """A bit flipped in a response: the driver's CRC check rejects it and it asks again."""
    tb = await setup(dut)
    magic = tb.regmap.block("IDENTITY").addr("MAGIC")
    tb.transport.flip_next_response = (4, 0x80)
    assert await tb.bus.read32(magic) == MAGIC
    assert tb.bus.stats["retries"] == 1 and tb.bus.stats["bad_crc_responses"] == 1


@cocotb.test()
async def truncated_frame_then_good_frame(dut):
    """Half a frame, silence, then a good frame: the half is dropped, the good one answered."""
    tb = await setup(dut)
    scratch = tb.regmap.block("IDENTITY").addr("SCRATCH")
    await tb.transport.source.write(encode_request(Cmd.WRITE32, 0x77, scratch, 0xBAD)[:6])
    await tb.transport.source.wait()
    await tb.idle_bits(TIMEOUT_BITS + 8)
    assert tb.transport.sink.empty(), "the bridge answered a truncated frame"
    await tb.check_events(truncated=1, ok=0)
    assert await tb.bus.read32(scratch) == 0
    # Truncated without a pause: the good frame's sync byte lands inside the torn frame, so that
    # one fails (bad checksum or timeout) and the driver's retry gets through.
    await tb.transport.source.write(encode_request(Cmd.WRITE32, 0x78, scratch, 0xBAD)[:5])
    await tb.bus.write32(scratch, 0x600D)
    assert await tb.bus.read32(scratch) == 0x600D
    assert tb.bus.stats["retries"] >= 1


@cocotb.test()
async def bus_error_and_bad_command(dut):
    """SLVERR becomes BusError (not retried); an unknown command gets STATUS 3 and is not executed."""
    tb = await setup(dut)
    ident = tb.regmap.block("IDENTITY")
    try:
        await tb.bus.write32(ident.addr("MAGIC"), 0)
    except BusError as exc:
        assert exc.op == "write" and exc.addr == ident.addr("MAGIC")
    else:
        raise AssertionError("write to a read-only register did not raise BusError")
    assert tb.bus.stats["requests"] == 1
    await tb.transport.write(encode_request(0x33, 0x44, ident.addr("SCRATCH")))
    raw = await tb.transport.read_exactly(RESPONSE_LEN, 100 * tb.bit_s)
    assert decode_response(raw) == (Status.BAD_COMMAND, 0x44, 0)
    await tb.check_events(ok=1, bad_command=1, bad_checksum=0)


@cocotb.test()
async def garbage_and_idle_line(dut):
    """Noise before SYNC is skipped; the line idles high after reset and between responses."""
    tb = await setup(dut)
    assert int(dut.uart_tx.value) == 1
    await tb.transport.source.write(b"\x00\xff\x5a\x13")
    assert await tb.bus.read32(tb.regmap.block("IDENTITY").addr("MAGIC")) == MAGIC
    await RisingEdge(dut.clk)
    assert int(dut.uart_tx.value) == 1
