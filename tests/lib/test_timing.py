"""hdl.lib.timing.elapsed_at_least: ``(now - start) mod 2**n >= limit`` with one carry chain, held
to Python's modular arithmetic (the definition), exhaustively at 4 bits and at random at 32."""

import random

import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from hdl.lib.timing import elapsed_at_least


def _check(bits, cases):
    now, start, neg_limit, limit_zero = Signal(bits), Signal(bits), Signal(bits), Signal()
    out = Signal()
    m = Module()
    m.d.comb += out.eq(elapsed_at_least(now, start, neg_limit, limit_zero))
    wrong = []

    async def bench(ctx):
        for a, b, limit in cases:
            ctx.set(now, a)
            ctx.set(start, b)
            ctx.set(neg_limit, -limit % (1 << bits))
            ctx.set(limit_zero, limit == 0)
            if ctx.get(out) != ((a - b) % (1 << bits) >= limit):
                wrong.append((a, b, limit))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert not wrong, f"(now, start, limit) wrong: {wrong[:5]} of {len(wrong)}"


def test_every_case_at_four_bits():
    _check(4, [(a, b, c) for a in range(16) for b in range(16) for c in range(16)])


def test_random_at_thirty_two_bits():
    rng = random.Random(13)
    top = (1 << 32) - 1
    cases = [(rng.randrange(1 << 32), rng.randrange(1 << 32), rng.randrange(1 << 24)) for _ in range(1500)]
    # Around the wrap and at the limit exactly.
    cases += [(5, top - 2, 8), (5, top - 2, 9), (0, 0, 0), (top, 0, top), (0, top, 1), (0, top, 2),
              (100, 40, 60), (100, 40, 61)]
    _check(32, cases)


def test_narrow_operands_are_refused():
    with pytest.raises(ValueError, match=r"start and neg_limit must be at least as wide as now \(8 bits\)"):
        elapsed_at_least(Signal(8), Signal(4), Signal(8), Signal())
