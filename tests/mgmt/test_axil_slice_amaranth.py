"""AXILiteSlice (hdl/lib/axil_slice.py) in amaranth.sim: a register on every channel, nothing lost.

A testbench master with random valid delays and random ``bready``/``rready`` writes and reads
the IDENTITY SCRATCH register and reads MAGIC through the slice into the real CsrSlave; every
response must match a direct model, in order, and no output of either side may follow the
other side's inputs within the same cycle.
"""

import random

from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from hdl.config import NicConfig
from hdl.lib.axil_slice import AXILiteSlice
from hdl.mgmt.csr import CsrSlave
from hdl.mgmt.regs import MAGIC
from hdl.top import build_register_map

REGMAP = build_register_map(NicConfig())
IDENT = REGMAP.block("IDENTITY")
OKAY, SLVERR = 0, 2


class SliceCsr(Elaboratable):
    def __init__(self):
        self.slice = AXILiteSlice(REGMAP.address_width)
        self.csr = CsrSlave(REGMAP)

    def elaborate(self, platform):
        m = Module()
        m.submodules.slice, m.submodules.csr = self.slice, self.csr
        wiring.connect(m, self.slice.m_axil, self.csr.s_axil)
        return m


def test_random_traffic_through_slice():
    dut = SliceCsr()
    bus = dut.slice.s_axil
    rng = random.Random(7)
    seen = []

    async def idle(ctx, n):
        for _ in range(n):
            await ctx.tick()

    async def wait(ctx, signal):
        while not ctx.get(signal):
            await ctx.tick()

    async def handshake(ctx, pairs):
        """Hold each (valid, ready) pair's valid until a clock edge with ready high."""
        pending = list(pairs)
        for valid, _ in pending:
            ctx.set(valid, 1)
        while pending:
            ready = [bool(ctx.get(r)) for _, r in pending]
            await ctx.tick()
            for (valid, _), done in zip(pending, ready):
                if done:
                    ctx.set(valid, 0)
            pending = [p for p, done in zip(pending, ready) if not done]

    async def bench(ctx):
        scratch = 0
        for _ in range(60):
            await idle(ctx, rng.randrange(3))
            op = rng.choice(["write", "read_scratch", "read_magic", "write_ro", "read_unmapped"])
            if op.startswith("write"):
                value = rng.getrandbits(32)
                ctx.set(bus.awaddr, IDENT.addr("SCRATCH") if op == "write" else IDENT.addr("MAGIC"))
                ctx.set(bus.wdata, value)
                ctx.set(bus.wstrb, 0xF)
                await handshake(ctx, [(bus.awvalid, bus.awready), (bus.wvalid, bus.wready)])
                await wait(ctx, bus.bvalid)
                await idle(ctx, rng.randrange(3))         # bvalid must hold while bready is low
                assert ctx.get(bus.bvalid)
                got = ctx.get(bus.bresp)
                await handshake(ctx, [(bus.bready, bus.bvalid)])
                if op == "write":
                    scratch = value
                seen.append(("b", got, OKAY if op == "write" else SLVERR))
            else:
                ctx.set(bus.araddr, {"read_scratch": IDENT.addr("SCRATCH"), "read_magic": IDENT.addr("MAGIC"),
                                     "read_unmapped": 0xFFC}[op])
                await handshake(ctx, [(bus.arvalid, bus.arready)])
                await wait(ctx, bus.rvalid)
                await idle(ctx, rng.randrange(3))
                assert ctx.get(bus.rvalid)
                got = (ctx.get(bus.rresp), ctx.get(bus.rdata))
                await handshake(ctx, [(bus.rready, bus.rvalid)])
                seen.append(("r", got, {"read_scratch": (OKAY, scratch), "read_magic": (OKAY, MAGIC),
                                        "read_unmapped": (SLVERR, 0)}[op]))
        assert len(seen) == 60
        assert all(got == want for _, got, want in seen), [s for s in seen if s[1] != s[2]]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_no_combinational_path_across():
    """Every output of the slice is a flip-flop: changing inputs moves no output within a cycle.

    Tried in every state the random traffic reaches (each channel register empty and full, the
    far side ready or not), not only after reset: a ready passed through from the far side
    (``ready = ~full | far_ready``) only shows while the register is full."""
    dut = AXILiteSlice(REGMAP.address_width)
    s, m_ = dut.s_axil, dut.m_axil
    outputs = [s.awready, s.wready, s.arready, s.bvalid, s.bresp, s.rvalid, s.rdata, s.rresp,
               m_.awvalid, m_.awaddr, m_.wvalid, m_.wdata, m_.arvalid, m_.araddr, m_.bready, m_.rready]
    inputs = [s.awvalid, s.awaddr, s.wvalid, s.wdata, s.wstrb, s.arvalid, s.araddr, s.bready, s.rready,
              m_.awready, m_.wready, m_.arready, m_.bvalid, m_.bresp, m_.rvalid, m_.rdata, m_.rresp]
    # (channel register full = the valid it drives, far-side ready) for each channel
    channels = [(m_.awvalid, m_.awready), (m_.wvalid, m_.wready), (m_.arvalid, m_.arready),
                (s.bvalid, s.bready), (s.rvalid, s.rready)]
    rng = random.Random(11)
    moved = []
    states = set()

    async def bench(ctx):
        for cycle in range(400):
            await ctx.tick()
            before = [ctx.get(o) for o in outputs]
            # Each input to a random value, one at a time, outputs checked after each change.
            for sig in rng.sample(inputs, len(inputs)):
                ctx.set(sig, rng.getrandbits(len(sig)) if rng.random() < 0.8 else (1 << len(sig)) - 1)
                after = [ctx.get(o) for o in outputs]
                if after != before:
                    moved.append((cycle, sig.name, [o.name for o, b, a in zip(outputs, before, after) if a != b]))
                before = after
            for k, (full, far_ready) in enumerate(channels):
                states.add((k, ctx.get(full), ctx.get(far_ready)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert not moved, f"outputs moved within a cycle (cycle, input, outputs): {moved[:5]}"
    assert states == {(k, full, ready) for k in range(len(channels)) for full in (0, 1) for ready in (0, 1)}, \
        "some channel state was never tried"
