"""Amaranth-level tests of storm control's buckets (hdl/switch/storm.py) against the golden
model's ``StormLimit`` (host_driver/model/switch.py): check by check, at the check's cycle."""

import gc
import random
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from hdl.switch.settings import StormClass
from hdl.switch.storm import LATENCY, SPACING, TOKEN_SHIFT, StormBuckets
from host_driver.model.switch import StormLimit


def run_checks(dut: StormBuckets, limits: dict, checks: list) -> dict:
    """Drive ``checks`` ((gap, port, class, length, admit)) into ``dut`` with ``limits``
    ((port, class) -> (rate, burst)) and hold every verdict to a ``StormLimit`` per policed bucket.
    ``admit`` False: the frame is checked but never reaches storm control (the stage checks every
    frame; the model admits only flooded ones): it must not pay. Returns coverage figures."""
    model = {k: StormLimit(rate, burst) for k, (rate, burst) in limits.items() if rate or burst}
    paid_at = {}
    seen = {"pass": 0, "drop": 0, "full_again": 0, "clock_wrapped": 0}
    clock_range = 1 << dut.clock_bits

    async def bench(ctx):
        for (port, cls), (rate, burst) in limits.items():
            ctx.set(getattr(dut, f"rate_{port}_{cls.label}"), rate)
            ctx.set(getattr(dut, f"burst_{port}_{cls.label}"), burst)
        await ctx.tick().repeat(2)
        now = 2
        for k, (gap, port, cls, length, admit) in enumerate(checks):
            if gap:
                await ctx.tick().repeat(gap)
            now += gap
            ctx.set(dut.check.payload, {"port": port, "cls": cls, "length": length})
            ctx.set(dut.check.valid, 1)
            await ctx.tick()
            ctx.set(dut.check.valid, 0)
            await ctx.tick().repeat(LATENCY - 1)
            assert ctx.get(dut.verdict.valid), f"check {k}: no verdict {LATENCY} cycles later"
            policed, enough = ctx.get(dut.verdict.payload.policed), ctx.get(dut.verdict.payload.enough)
            limit = model.get((port, cls))
            assert policed == (limit is not None), f"check {k}: policed {policed}, limits {limits[port, cls]}"
            pay = 0
            if limit is not None and admit:
                rate, burst = limits[port, cls]
                last = paid_at.get((port, cls))
                if last is not None and rate * (now - last) >= burst << TOKEN_SHIFT:
                    seen["full_again"] += 1
                if last is not None and rate * now // clock_range != rate * last // clock_range:
                    seen["clock_wrapped"] += 1
                want = limit.admit(length, now)
                assert enough == want, (f"check {k}: bucket {port}/{cls.label} {limits[port, cls]}, {length} bytes "
                                        f"at cycle {now}: gateware {'passes' if enough else 'drops'}")
                seen["pass" if want else "drop"] += 1
                pay = int(want)
                if want:
                    paid_at[port, cls] = now
            ctx.set(dut.pay, pay)
            await ctx.tick()
            ctx.set(dut.pay, 0)
            await ctx.tick().repeat(SPACING - LATENCY - 1)
            now += SPACING

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return seen


def random_limits(rng, ports, rate_max, burst_max):
    limits = {}
    for port in range(ports):
        for cls in StormClass:
            kind = rng.random()
            if kind < 0.1:
                limits[port, cls] = (0, 0)                      # not policed
            elif kind < 0.2:
                limits[port, cls] = (0, rng.randrange(1, burst_max))   # never refills
            elif kind < 0.25:
                limits[port, cls] = (rng.randrange(1, rate_max), 0)    # never holds a frame
            else:
                limits[port, cls] = (rng.randrange(1, rate_max), rng.randrange(1, burst_max))
    return limits


@pytest.mark.parametrize("seed", [1, 2])
def test_buckets_equal_the_model(seed):
    """The build's widths, limits near the traffic (a few bytes per cycle, a few frames of
    burst): frames pass and drop, on every kind of bucket."""
    rng = random.Random(seed)
    ports = 3
    dut = StormBuckets(ports)
    limits = random_limits(rng, ports, 4000, 4000)
    checks = [(rng.choice([0, 0, 1, 5, 50, 400, 2000]), rng.randrange(ports), rng.choice(list(StormClass)),
               rng.randrange(60, 1519), rng.random() < 0.85) for _ in range(250)]
    seen = run_checks(dut, limits, checks)
    assert seen["pass"] > 30 and seen["drop"] > 30, seen
    assert seen["full_again"] > 10, seen


def test_clock_wraps_and_stale_buckets():
    """Narrow settings (6-bit burst, 8-bit rate, 7-bit lengths): the credit clocks wrap every
    few thousand cycles, so lazy refills across wraps, across more than a whole clock range (the bucket
    counted as full) and right at the edges are all exercised."""
    rng = random.Random(7)
    dut = StormBuckets(2, rate_bits=8, burst_bits=6, length_bits=7)
    limits = random_limits(rng, 2, 256, 64)
    limits[0, StormClass.BROADCAST] = (255, 63)       # the fastest clock
    checks = [(rng.choice([0, 0, 2, 30, 200, 700, 1500]), rng.randrange(2), rng.choice(list(StormClass)),
               rng.randrange(1, 80), rng.random() < 0.9) for _ in range(400)]
    seen = run_checks(dut, limits, checks)
    assert seen["pass"] > 50 and seen["drop"] > 50, seen
    assert seen["clock_wrapped"] > 30 and seen["full_again"] > 50, seen


def test_rate_too_wide_for_burst_is_refused():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)   # the half-built component
        with pytest.raises(ValueError, match=r"^storm rate of 10 bits too wide for a burst of 1 bits$"):
            StormBuckets(1, rate_bits=10, burst_bits=1)
        gc.collect()
