"""CsrSlave (hdl/csr.py) against the register description, through a small AXI4-Lite master."""

import random

import pytest
from amaranth.back import verilog
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from hdl.config import NicConfig
from hdl.csr import COUNT_LATENCY, READ_LATENCY, READ_SAMPLE_DELAY, CsrSlave
from hdl.regs import BLOCK_STRIDE, HEADER_WORDS, HW_VERSION, MAGIC, OKAY, SLVERR, Access, build_register_map

CONFIGS = {
    "default": NicConfig(),
    "w512": NicConfig(data_width=512, ports=("eth0", "hostvm12"), physical_ports=(),
                      header_window=256, clock_mhz=250.0),
}
M32 = 0xFFFFFFFF


def run(dut, *benches, deadline=None):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for bench in benches:
        sim.add_testbench(bench)
    if deadline is None:
        sim.run()
    else:
        sim.run_until(deadline)


class Master:
    """AXI4-Lite master. Counts its own clock ticks (``cycle``) so reads can be tied to traffic."""

    def __init__(self, ctx, bus):
        self.ctx, self.bus, self.cycle = ctx, bus, 0

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
        for _ in range(50):
            rvalid, rdata, rresp = ctx.get(bus.rvalid), ctx.get(bus.rdata), ctx.get(bus.rresp)
            if r_delay == 0 and not rvalid:
                assert self.cycle - hs < READ_LATENCY, "read slower than READ_LATENCY"
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


def test_discovery_and_constants(regmap):
    dut = CsrSlave(regmap)
    bus = dut.s_axil

    async def bench(ctx):
        m = Master(ctx, bus)
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


def test_scratch_strobes_and_errors(regmap):
    dut = CsrSlave(regmap)
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
        m = Master(ctx, bus)
        assert ctx.get(dut.rw("IDENTITY", 0, "SCRATCH")) == 0
        assert await m.write32(scratch, 0x12345678) == OKAY
        assert await m.read_ok(scratch) == 0x12345678
        assert ctx.get(dut.rw("IDENTITY", 0, "SCRATCH")) == 0x12345678
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


def test_channel_orderings_and_backpressure(regmap):
    dut = CsrSlave(regmap)
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
        assert ctx.get(dut.rw("IDENTITY", 0, "SCRATCH")) != 0xCAFEF00D
        assert await m.write32(scratch, 0, aw_delay=2, send_w=False) == OKAY  # W already held
        assert await m.read_ok(scratch) == 0xCAFEF00D

    run(dut, bench)


def test_back_to_back_concurrent_read_write(regmap):
    dut = CsrSlave(regmap)
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
        # back-to-back: a new read every READ_LATENCY + 1 cycles (arready returns after R handshake)
        assert m.cycle - start == 30 * (READ_LATENCY + 1)
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


def test_count_key_errors(regmap):
    dut = CsrSlave(regmap)
    Fragment.get(dut, None)  # elaborated: no UnusedElaboratable warning
    events = regmap.counter_events()
    assert len(events) >= 20
    assert dut.count(events[0]).shape().width == 16
    with pytest.raises(KeyError, match=r"no counter for event .*'nope'.*valid keys: .*rx_packets"):
        dut.count(("port", 0, "nope"))
    with pytest.raises(KeyError, match="no RW register"):
        dut.rw("IDENTITY", 0, "MAGIC")
    assert dut.rw("IDENTITY", 0, "SCRATCH").shape().width == 32


def test_counters_count_and_coherent(regmap):
    events = regmap.counter_events()
    lo_addr = _counter_words(regmap)
    rng = random.Random(1)
    # two counters start just below the 32-bit boundary so carries happen during the test
    # events[1] gets 16383 every cycle: expected(hs) = init + 16383 * (hs - 1) (+ the all-counter bumps)
    carry_at = 20
    near = {events[1]: 2 ** 32 - 16383 * (carry_at - 1) - 100, events[-1]: 2 ** 32 - 40 * 7}
    init = {k: near.get(k, 0) for k in events}
    dut = CsrSlave(regmap, counter_init={k: v for k, v in near.items()})
    bus = dut.s_axil
    driven = []            # driven[c] = {key: amount} for cycle c
    stop = []
    busy_keys = [events[0], events[1], events[7 % len(events)], events[-1]]

    def expected(key, hs):
        """Counter value sampled by a read whose AR handshake was in cycle ``hs``."""
        sampled = hs + READ_SAMPLE_DELAY
        total = init[key] + sum(d.get(key, 0) for d in driven[:max(0, sampled - COUNT_LATENCY + 1)])
        return total % 2 ** 64

    async def traffic(ctx):
        cyc = 0
        while not stop:
            amounts = {}
            for k in busy_keys:
                if k == events[1]:
                    a = 16383                             # largest frame's bytes every cycle
                elif k == events[-1]:
                    a = 7
                else:
                    a = rng.choice([0, 1, 1, 60, 1514, 16383, 65534])
                amounts[k] = a
            # occasionally touch every counter in the same cycle
            if cyc % 17 == 3:
                for k in events:
                    amounts[k] = amounts.get(k, 0) + 1
            for k in events:
                ctx.set(dut.count(k), amounts.get(k, 0))
            driven.append(amounts)
            await ctx.tick()
            cyc += 1
        for k in events:
            ctx.set(dut.count(k), 0)

    async def host(ctx):
        m = Master(ctx, bus)
        # deterministic carry between LO and HI: LO sampled just below 2**32, HI after the carry
        await m.idle(carry_at - m.cycle - READ_SAMPLE_DELAY)
        lo, _, hs_lo = await m.read32(lo_addr[events[1]])
        hi, _, hs_hi = await m.read32(lo_addr[events[1]] + 4)
        snap = expected(events[1], hs_lo)
        assert snap >> 32 == 0 and expected(events[1], hs_hi) >> 32 == 1
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
            lo = await m.read_ok(lo_addr[key])
            hi = await m.read_ok(lo_addr[key] + 4)
            assert hi << 32 | lo == expected(key, len(driven) + COUNT_LATENCY), key
        assert expected(events[1], len(driven) + 2) >> 32 >= 1
        assert expected(events[-1], len(driven) + 2) >> 32 >= 1

    run(dut, traffic, host)


def test_counter_wraps_64():
    regmap = build_register_map(NicConfig())
    key = regmap.counter_events()[0]
    lo_addr = _counter_words(regmap)[key]
    dut = CsrSlave(regmap, counter_init={key: 2 ** 64 - 3})

    async def bench(ctx):
        m = Master(ctx, dut.s_axil)
        ctx.set(dut.count(key), 5)
        await m.tick()
        ctx.set(dut.count(key), 0)
        await m.idle(COUNT_LATENCY)
        assert await m.read_ok(lo_addr) == 2
        assert await m.read_ok(lo_addr + 4) == 0

    run(dut, bench)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_converts_to_verilog(name):
    text = verilog.convert(CsrSlave(build_register_map(CONFIGS[name])), name="csr")
    assert "module csr" in text and "s_axil__rdata" in text
