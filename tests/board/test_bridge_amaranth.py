"""UART bridge (hdl/board/bridge.py, hdl/board/uart.py) in amaranth.sim, plus the host-side frame codec and
SerialBus retry logic (host_driver/serialbus.py) in pure Python.

The gateware tests drive the ``rx`` pin bit by bit from the testbench, decode ``tx`` with a
mid-bit sampling receiver, and put either the real :class:`hdl.mgmt.csr.CsrSlave` or a small AXI4-Lite
slave model (random stalls, chosen SLVERR/DECERR addresses, protocol checks) on the bus.
"""

import asyncio
import random

import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from hdl.board.bridge import REQUEST_LEN, RESPONSE_LEN, TIMEOUT_BITS, Cmd, Status, UartBridge, crc8
from hdl.board.uart import uart_divisor
from hdl.config import NicConfig
from hdl.lib.axil_slice import AXILiteSlice
from hdl.mgmt.csr import CsrSlave
from hdl.mgmt.regs import MAGIC
from hdl.profile import AREA, SPEED
from hdl.top import build_register_map
from host_driver.bus import BusError
from host_driver.serialbus import (
    BridgeTimeout,
    ByteTransport,
    ResponseError,
    SerialBus,
    TransportTimeout,
    decode_response,
    encode_request,
    encode_response,
)

DIV = 8
CLK_HZ = 8_000_000
BAUD = CLK_HZ // DIV
REGMAP = build_register_map(NicConfig())
IDENT = REGMAP.block("IDENTITY")
AW = REGMAP.address_width
OKAY, SLVERR, DECERR = 0, 2, 3


# -- pure Python: CRC and frames -------------------------------------------------------------------

def test_crc8_check_value():
    assert crc8(b"123456789") == 0xF4          # CRC-8/SMBUS check value
    assert crc8(b"") == 0
    body = bytes([1, 7, 0x10, 0, 0, 0])
    assert crc8(body + bytes([crc8(body)])) == 0  # residue of a message with its CRC appended


def test_encode_request_layout():
    raw = encode_request(Cmd.WRITE32, 0x42, 0x12345678, 0xCAFEF00D)
    assert raw[:11] == bytes([0xA5, 0x02, 0x42, 0x78, 0x56, 0x34, 0x12, 0x0D, 0xF0, 0xFE, 0xCA])
    assert raw[11] == crc8(raw[1:11])
    assert len(raw) == REQUEST_LEN[Cmd.WRITE32]
    raw = encode_request(Cmd.READ32, 0, 0x10)
    assert raw == bytes([0xA5, 1, 0, 0x10, 0, 0, 0, crc8(bytes([1, 0, 0x10, 0, 0, 0]))])
    assert len(raw) == REQUEST_LEN[Cmd.READ32]


def test_encode_request_errors():
    with pytest.raises(ValueError, match=r"^a WRITE32 request needs data$"):
        encode_request(Cmd.WRITE32, 0, 0)
    with pytest.raises(ValueError, match=r"^a READ32 request carries no data, got 5$"):
        encode_request(Cmd.READ32, 0, 0, 5)
    with pytest.raises(ValueError, match=r"^sequence number must be in 0..255, not 256$"):
        encode_request(Cmd.READ32, 256, 0)
    with pytest.raises(ValueError, match=r"^address must be a 32-bit unsigned integer, not -4$"):
        encode_request(Cmd.READ32, 0, -4)


def test_decode_response():
    raw = encode_response(Status.OK, 9, MAGIC)
    assert raw[:3] == bytes([0x5A, 0, 9]) and raw[3:7] == MAGIC.to_bytes(4, "little")
    assert decode_response(raw) == (Status.OK, 9, MAGIC)
    bad = bytearray(raw)
    bad[4] ^= 0x01
    with pytest.raises(ResponseError, match="response CRC"):
        decode_response(bad)
    with pytest.raises(ResponseError, match="not sync 0x5a"):
        decode_response(b"\xa5" + raw[1:])
    with pytest.raises(ResponseError, match="a response is 8 bytes, not 7"):
        decode_response(raw[:7])


def test_uart_divisor_checks():
    assert uart_divisor(156_250_000, 115200) == 1356
    with pytest.raises(ValueError, match="needs at least 4 clock cycles per bit"):
        uart_divisor(1_000_000, 500_000)
    with pytest.raises(ValueError, match="an error of"):
        uart_divisor(9_000_000, 2_000_000)     # 4.5 -> 4: 12.5 % off


# -- pure Python: SerialBus retry logic against a byte-level bridge model -----------------------------

class FakeBridge(ByteTransport):
    """Answers requests like the gateware does, with faults injected per request number."""

    def __init__(self, faults=()):
        self.regs = {0x30: 0}
        self.faults = list(faults)          # per request: None, "corrupt", "drop", "garble", "stale"
        self.rx = bytearray()
        self.requests = []

    async def write(self, data):
        self.requests.append(bytes(data))
        fault = self.faults.pop(0) if self.faults else None
        req = bytearray(data)
        if fault == "corrupt":
            req[3] ^= 0x40                  # flipped on the wire: the bridge sees a bad CRC
        if fault == "drop":
            return
        cmd, seq = req[1], req[2]
        addr = int.from_bytes(req[3:7], "little")
        n = REQUEST_LEN.get(cmd, 8)
        if crc8(req[1:n - 1]) != req[n - 1]:
            resp = encode_response(Status.BAD_CHECKSUM, seq)
        elif cmd == Cmd.READ32:
            resp = (encode_response(Status.OK, seq, self.regs[addr]) if addr in self.regs
                    else encode_response(Status.BUS_ERROR, seq))
        elif cmd == Cmd.WRITE32:
            self.regs[addr] = int.from_bytes(req[7:11], "little")
            resp = encode_response(Status.OK, seq)
        else:
            resp = encode_response(Status.BAD_COMMAND, seq)
        if fault == "garble":
            resp = resp[:5] + bytes([resp[5] ^ 1]) + resp[6:]
        if fault == "stale":
            resp = encode_response(Status.OK, (seq - 1) & 0xFF, 0xDEAD) + resp
        self.rx += (b"\x00\x13" if fault == "stale" else b"") + resp   # line noise first

    async def read_exactly(self, n, timeout):
        if len(self.rx) < n:
            self.rx.clear()
            raise TransportTimeout(f"only {len(self.rx)} bytes")
        out, self.rx[:] = bytes(self.rx[:n]), self.rx[n:]
        return out


@pytest.mark.parametrize("fault", [None, "corrupt", "drop", "garble", "stale"])
def test_serialbus_recovers(fault):
    fake = FakeBridge([fault])
    bus = SerialBus(fake, timeout=0.01, retries=2)
    asyncio.run(bus.write32(0x30, 0x1234_5678))
    assert fake.regs[0x30] == 0x1234_5678
    assert asyncio.run(bus.read32(0x30)) == 0x1234_5678
    expected_retries = 1 if fault in ("corrupt", "drop", "garble") else 0
    assert bus.stats["retries"] == expected_retries
    assert bus.stats["stale_responses"] == (1 if fault == "stale" else 0)


def test_serialbus_bus_error_and_timeout():
    fake = FakeBridge()
    bus = SerialBus(fake, timeout=0.01, retries=2)
    with pytest.raises(BusError, match=r"^SLVERR response to read at address 0x00000040 \(UART bridge"):
        asyncio.run(bus.read32(0x40))
    assert len(fake.requests) == 1          # a bus error is an answer, not retried
    fake.faults = ["drop"] * 3
    with pytest.raises(BridgeTimeout, match=r"^UART bridge: no valid response to read at address "
                       r"0x00000030 after 3 attempt\(s\); last attempt: no response within 0.01 s$"):
        asyncio.run(bus.read32(0x30))
    assert issubclass(BridgeTimeout, TimeoutError)
    with pytest.raises(ValueError, match="word aligned"):
        asyncio.run(bus.read32(0x31))


def test_pyserial_transport_loopback():
    serial = pytest.importorskip("serial")
    del serial
    from host_driver.serialbus import PySerialTransport

    async def go():
        t = PySerialTransport("loop://", 115200)
        await t.write(b"\xa5\x01\x02")
        assert await t.read_exactly(3, 0.5) == b"\xa5\x01\x02"
        with pytest.raises(TransportTimeout, match="got 0 of 1 bytes"):
            await t.read_exactly(1, 0.05)
        t.close()
    asyncio.run(go())


# -- gateware harness ----------------------------------------------------------------------------------

class BridgeCsr(Elaboratable):
    """UartBridge driving the real CsrSlave, directly or through an AXILiteSlice (as on the ULX3S)."""

    def __init__(self, compact=False, through_slice=False):
        self.bridge = UartBridge(clk_hz=CLK_HZ, baud=BAUD, addr_width=AW, target=AREA if compact else SPEED)
        self.csr = CsrSlave(REGMAP)
        self.slice = AXILiteSlice(AW) if through_slice else None

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = self.bridge
        m.submodules.csr = self.csr
        if self.slice is None:
            wiring.connect(m, self.bridge.m_axil, self.csr.s_axil)
        else:
            m.submodules.slice = self.slice
            wiring.connect(m, self.bridge.m_axil, self.slice.s_axil)
            wiring.connect(m, self.slice.m_axil, self.csr.s_axil)
        return m


class Monitor:
    """Per-cycle observer: decodes ``tx``, counts event pulses and bus handshakes."""

    PULSES = ("ok", "bad_checksum", "bad_command", "truncated")

    def __init__(self, bridge):
        self.b = bridge
        self.rx_bytes = []
        self.tx_ferr = 0
        self.pulses = dict.fromkeys(self.PULSES, 0)
        self.ar = []
        self.aw = []
        self.cycle = 0

    async def process(self, ctx):
        b, bus = self.b, self.b.m_axil
        state, cnt, shreg = None, 0, 0
        sig = [b.tx, *(getattr(b, p) for p in self.PULSES), bus.arvalid, bus.arready, bus.araddr,
               bus.awvalid, bus.awready, bus.awaddr]
        async for _, _, tx, *vals in ctx.tick().sample(*sig):
            self.cycle += 1
            for name, v in zip(self.PULSES, vals[:4], strict=True):
                self.pulses[name] += v
            arv, arr, ara, awv, awr, awa = vals[4:]
            if arv and arr:
                self.ar.append(ara)
            if awv and awr:
                self.aw.append(awa)
            if state is None:
                if not tx:
                    state, cnt = 0, DIV // 2
                continue
            cnt -= 1
            if cnt:
                continue
            cnt = DIV
            if state == 0:
                assert not tx, "start bit glitch on tx"
                shreg = 0
            elif state <= 8:
                shreg |= tx << (state - 1)
            else:
                if tx:
                    self.rx_bytes.append(shreg)
                else:
                    self.tx_ferr += 1
                state = None
                continue
            state += 1


class AxiSlaveModel:
    """AXI4-Lite slave with random ready/valid delays; checks the master keeps valid and payload
    stable until the handshake."""

    def __init__(self, bus, *, seed=1, errors=None):
        self.bus = bus
        self.mem = {}
        self.errors = dict(errors or {})     # addr -> resp
        self.rng = random.Random(seed)
        self.violations = []

    async def process(self, ctx):
        bus, rng = self.bus, self.rng
        held = {}                             # channel -> payload while valid without handshake
        aw = w = None
        r_pending = b_pending = None
        sig = [bus.arvalid, bus.araddr, bus.arready, bus.rvalid, bus.rready,
               bus.awvalid, bus.awaddr, bus.awready, bus.wvalid, bus.wdata, bus.wstrb, bus.wready,
               bus.bvalid, bus.bready]
        async for _, _, *v in ctx.tick().sample(*sig):
            arv, ara, arr, rv, rr, awv, awa, awr, wv, wd, ws, wr, bv, br = v
            for ch, valid, ready, payload in (("ar", arv, arr, ara), ("aw", awv, awr, awa),
                                              ("w", wv, wr, (wd, ws))):
                if ch in held and (not valid or payload != held[ch]):
                    self.violations.append(f"{ch}: valid/payload changed before ready")
                held.pop(ch, None)
                if valid and not ready:
                    held[ch] = payload
            if arv and arr:
                resp = self.errors.get(ara, OKAY)
                r_pending = (self.mem.get(ara, ara ^ 0xA5A5_0000) if resp == OKAY else 0, resp)
            r_out = rv and not rr             # rvalid as driven after this edge
            if rv and rr:
                ctx.set(bus.rvalid, 0)
            if awv and awr:
                aw = awa
            if wv and wr:
                assert ws == 0xF
                w = wd
            if bv and br:
                ctx.set(bus.bvalid, 0)
            if aw is not None and w is not None:
                resp = self.errors.get(aw, OKAY)
                if resp == OKAY:
                    self.mem[aw] = w
                b_pending = resp
                aw = w = None
            # next cycle's outputs
            if r_pending is not None and rng.random() < 0.4:
                ctx.set(bus.rdata, r_pending[0])
                ctx.set(bus.rresp, r_pending[1])
                ctx.set(bus.rvalid, 1)
                r_pending, r_out = None, True
            if b_pending is not None and rng.random() < 0.4:
                ctx.set(bus.bresp, b_pending)
                ctx.set(bus.bvalid, 1)
                b_pending = None
            busy_r = r_pending is not None or r_out
            ctx.set(bus.arready, int(not busy_r and rng.random() < 0.5))
            ctx.set(bus.awready, int(aw is None and rng.random() < 0.5))
            ctx.set(bus.wready, int(w is None and rng.random() < 0.5))


async def uart_send(ctx, rx, data, *, bad_stop=(), gap_bits=0):
    """Drive ``data`` on ``rx`` at DIV cycles per bit; bytes at indexes in ``bad_stop`` get a low stop
    bit (framing error); ``gap_bits`` idle bit times between characters."""
    for i, byte in enumerate(data):
        bits = [0] + [byte >> k & 1 for k in range(8)] + [0 if i in bad_stop else 1]
        for bit in bits:
            ctx.set(rx, bit)
            await ctx.tick().repeat(DIV)
        ctx.set(rx, 1)
        if gap_bits:
            await ctx.tick().repeat(DIV * gap_bits)


async def wait_response(ctx, mon, n=1, limit=4000):
    """Wait until ``n`` responses in total have arrived; return them all, decoded."""
    want = n * RESPONSE_LEN
    for _ in range(limit):
        if len(mon.rx_bytes) >= want:
            break
        await ctx.tick()
    assert len(mon.rx_bytes) >= want, f"only {len(mon.rx_bytes)} response bytes, wanted {want}"
    return [decode_response(bytes(mon.rx_bytes[i:i + RESPONSE_LEN])) for i in range(0, want, RESPONSE_LEN)]


def run(dut, bench, *processes):
    sim = Simulator(dut)
    sim.add_clock(1 / CLK_HZ)
    for p in processes:
        sim.add_process(p)
    sim.add_testbench(bench)
    sim.run()


def csr_sim(bench, compact=False, *, through_slice=False):
    dut = BridgeCsr(compact, through_slice)
    mon = Monitor(dut.bridge)

    async def tb(ctx):
        await ctx.tick().repeat(5)
        await bench(ctx, dut.bridge, mon)
    run(dut, tb, mon.process)


# -- gateware tests ------------------------------------------------------------------------------------
# Every gateware test runs on both builds of the bridge: the default one and the compact one
# (NicConfig.compact: receive FIFO in block RAM).

@pytest.fixture(params=[False, True], ids=["default", "compact"])
def compact(request):
    return request.param


@pytest.mark.parametrize("through_slice", [False, True], ids=["direct", "axil_slice"])
def test_read_write_csr(compact, through_slice):
    magic = IDENT.addr("MAGIC")
    scratch = IDENT.addr("SCRATCH")

    async def bench(ctx, b, mon):
        await uart_send(ctx, b.rx, encode_request(Cmd.READ32, 1, magic))
        await uart_send(ctx, b.rx, encode_request(Cmd.WRITE32, 2, scratch, 0xDEADBEEF))
        await uart_send(ctx, b.rx, encode_request(Cmd.READ32, 3, scratch))
        await uart_send(ctx, b.rx, encode_request(Cmd.WRITE32, 4, magic, 1))      # read-only: SLVERR
        await uart_send(ctx, b.rx, encode_request(Cmd.READ32, 5, 0xFFC))          # unmapped: SLVERR
        got = await wait_response(ctx, mon, 5)
        assert got == [(Status.OK, 1, MAGIC), (Status.OK, 2, 0), (Status.OK, 3, 0xDEADBEEF),
                       (Status.BUS_ERROR, 4, 0), (Status.BUS_ERROR, 5, 0)]
        assert mon.pulses == {"ok": 5, "bad_checksum": 0, "bad_command": 0, "truncated": 0}
        assert mon.ar == [magic, scratch, 0xFFC] and mon.aw == [scratch, magic]
        assert mon.tx_ferr == 0
    csr_sim(bench, compact, through_slice=through_slice)


def test_out_of_range_and_unaligned_not_issued(compact):
    async def bench(ctx, b, mon):
        await uart_send(ctx, b.rx, encode_request(Cmd.READ32, 7, 1 << AW))
        await uart_send(ctx, b.rx, encode_request(Cmd.WRITE32, 8, 0x8000_0030, 5))
        await uart_send(ctx, b.rx, encode_request(Cmd.READ32, 9, IDENT.addr("MAGIC") + 2))
        got = await wait_response(ctx, mon, 3)
        assert got == [(Status.BUS_ERROR, 7, 0), (Status.BUS_ERROR, 8, 0), (Status.BUS_ERROR, 9, 0)]
        assert mon.ar == [] and mon.aw == []
        assert mon.pulses["ok"] == 3
    csr_sim(bench, compact)


def test_bad_checksum_not_executed(compact):
    async def bench(ctx, b, mon):
        frame = bytearray(encode_request(Cmd.WRITE32, 0x11, IDENT.addr("SCRATCH"), 0x5555))
        frame[-1] ^= 0x80
        await uart_send(ctx, b.rx, frame)
        frame = bytearray(encode_request(Cmd.READ32, 0x12, IDENT.addr("MAGIC")))
        frame[4] ^= 0x01                      # address byte hit on the wire
        await uart_send(ctx, b.rx, frame)
        got = await wait_response(ctx, mon, 2)
        assert got == [(Status.BAD_CHECKSUM, 0x11, 0), (Status.BAD_CHECKSUM, 0x12, 0)]
        assert mon.ar == [] and mon.aw == []
        assert mon.pulses == {"ok": 0, "bad_checksum": 2, "bad_command": 0, "truncated": 0}
    csr_sim(bench, compact)


def test_bad_command(compact):
    async def bench(ctx, b, mon):
        await uart_send(ctx, b.rx, encode_request(0x07, 0x21, 0x10))
        await uart_send(ctx, b.rx, encode_request(Cmd.READ32, 0x22, IDENT.addr("MAGIC")))
        got = await wait_response(ctx, mon, 2)
        assert got == [(Status.BAD_COMMAND, 0x21, 0), (Status.OK, 0x22, MAGIC)]
        assert mon.ar == [IDENT.addr("MAGIC")]
        assert mon.pulses == {"ok": 1, "bad_checksum": 0, "bad_command": 1, "truncated": 0}
    csr_sim(bench, compact)


def test_garbage_before_sync_skipped(compact):
    async def bench(ctx, b, mon):
        noise = bytes([0x00, 0xFF, 0x5A, 0x13, 0x01])
        await uart_send(ctx, b.rx, noise + encode_request(Cmd.READ32, 3, 0x10))
        got = await wait_response(ctx, mon, 1)
        assert got == [(Status.OK, 3, MAGIC)]
        assert mon.pulses == {"ok": 1, "bad_checksum": 0, "bad_command": 0, "truncated": 0}
    csr_sim(bench, compact)


def test_truncated_then_good_frame(compact):
    async def bench(ctx, b, mon):
        await uart_send(ctx, b.rx, encode_request(Cmd.WRITE32, 1, IDENT.addr("SCRATCH"), 0x77)[:6])
        await ctx.tick().repeat(DIV * (TIMEOUT_BITS + 4))
        assert mon.pulses["truncated"] == 1
        await uart_send(ctx, b.rx, encode_request(Cmd.READ32, 2, IDENT.addr("SCRATCH")))
        got = await wait_response(ctx, mon, 1)
        assert got == [(Status.OK, 2, 0)]
        await ctx.tick().repeat(DIV * 40)
        assert len(mon.rx_bytes) == RESPONSE_LEN  # nothing answered the torn frame
        assert mon.aw == []
        assert mon.pulses == {"ok": 1, "bad_checksum": 0, "bad_command": 0, "truncated": 1}
    csr_sim(bench, compact)


def test_slow_sender_within_timeout(compact):
    async def bench(ctx, b, mon):
        await uart_send(ctx, b.rx, encode_request(Cmd.READ32, 4, 0x10), gap_bits=TIMEOUT_BITS - 12)
        got = await wait_response(ctx, mon, 1)
        assert got == [(Status.OK, 4, MAGIC)]
        assert mon.pulses["truncated"] == 0
    csr_sim(bench, compact)


def test_framing_error_drops_frame(compact):
    async def bench(ctx, b, mon):
        frame = encode_request(Cmd.WRITE32, 5, IDENT.addr("SCRATCH"), 0x99)
        await uart_send(ctx, b.rx, frame, bad_stop={4})   # low stop bit inside the frame
        await uart_send(ctx, b.rx, encode_request(Cmd.READ32, 6, IDENT.addr("SCRATCH")))
        got = await wait_response(ctx, mon, 1)
        await ctx.tick().repeat(DIV * 40)
        # The rest of the torn frame is hunted through; none of its bytes is a sync byte here.
        assert got == [(Status.OK, 6, 0)] and len(mon.rx_bytes) == RESPONSE_LEN
        assert mon.aw == []
        assert mon.pulses == {"ok": 1, "bad_checksum": 0, "bad_command": 0, "truncated": 1}
    csr_sim(bench, compact)


def test_back_to_back_requests(compact):
    """Requests sent without waiting for responses are buffered and answered in order."""
    async def bench(ctx, b, mon):
        # Different answers back to back: a response must not pick up the next request's data.
        scratch = IDENT.addr("SCRATCH")
        requests = [encode_request(Cmd.WRITE32, 0, scratch, 0x11223344)]
        requests += [encode_request(Cmd.READ32, s, (IDENT.addr("MAGIC"), scratch)[s % 2]) for s in range(1, 6)]
        await uart_send(ctx, b.rx, b"".join(requests))
        got = await wait_response(ctx, mon, 6)
        assert got == [(Status.OK, 0, 0)] + [(Status.OK, s, (MAGIC, 0x11223344)[s % 2]) for s in range(1, 6)]
    csr_sim(bench, compact)


@pytest.mark.parametrize("seed", [1, 2])
def test_axi_model_slave_random_stalls(seed, compact):
    rng = random.Random(seed)
    bridge = UartBridge(clk_hz=CLK_HZ, baud=BAUD, addr_width=16, target=AREA if compact else SPEED)
    slave = AxiSlaveModel(bridge.m_axil, seed=seed, errors={0x100: SLVERR, 0x104: DECERR})
    mon = Monitor(bridge)
    expect = {}

    async def tb(ctx):
        await ctx.tick().repeat(5)
        seq = 0
        results = []
        for _ in range(12):
            addr = rng.choice([0x0, 0x4, 0x8, 0x100, 0x104, 0xFFFC])
            if rng.random() < 0.5:
                value = rng.getrandbits(32)
                await uart_send(ctx, bridge.rx, encode_request(Cmd.WRITE32, seq, addr, value))
                ok = addr not in slave.errors
                if ok:
                    expect[addr] = value
                results.append((Status.OK if ok else Status.BUS_ERROR, seq, 0))
            else:
                await uart_send(ctx, bridge.rx, encode_request(Cmd.READ32, seq, addr))
                if addr in slave.errors:
                    results.append((Status.BUS_ERROR, seq, 0))
                else:
                    results.append((Status.OK, seq, expect.get(addr, addr ^ 0xA5A5_0000)))
            got = await wait_response(ctx, mon, seq + 1)
            assert got[-1] == results[-1]
            seq += 1
        assert slave.violations == []
    run(bridge, tb, mon.process, slave.process)


# The byte-exact examples of docs/uart-bridge.md.
DOC_READ = (bytes.fromhex("a5 01 07 10 00 00 00 67"), bytes.fromhex("5a 00 07 43 49 4e 53 07"))
DOC_WRITE = (bytes.fromhex("a5 02 08 30 00 00 00 ef be ad de dd"), bytes.fromhex("5a 00 08 00 00 00 00 19"))


def test_doc_examples_codec():
    assert encode_request(Cmd.READ32, 7, IDENT.addr("MAGIC")) == DOC_READ[0]
    assert encode_response(Status.OK, 7, MAGIC) == DOC_READ[1]
    assert encode_request(Cmd.WRITE32, 8, IDENT.addr("SCRATCH"), 0xDEADBEEF) == DOC_WRITE[0]
    assert encode_response(Status.OK, 8) == DOC_WRITE[1]


def test_doc_examples_on_gateware(compact):
    async def bench(ctx, b, mon):
        await uart_send(ctx, b.rx, DOC_READ[0] + DOC_WRITE[0])
        await wait_response(ctx, mon, 2)
        assert bytes(mon.rx_bytes) == DOC_READ[1] + DOC_WRITE[1]
    csr_sim(bench, compact)
