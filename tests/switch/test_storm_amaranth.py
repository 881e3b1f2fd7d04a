"""Amaranth-level tests of storm control's buckets (hdl/switch/storm.py) against the golden
model's ``StormLimit`` (host_driver/model/switch.py): check by check, at the check's cycle, with
checks as close as the block takes them (``SPACING``)."""

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
    A check starts ``SPACING + gap`` cycles after the one before (gap 0: back to back, the
    verdicts of the checks ahead still to come). ``admit`` False: the frame is checked but never
    reaches storm control (the stage checks every frame; the model admits only flooded ones): it
    must not pay. Returns coverage figures (``paid_ahead_<d>``: a check of a bucket that the
    check ``d`` cycles ahead paid from, with ``d`` at most the save delay: a forwarded payment)."""
    model = {k: StormLimit(rate, burst) for k, (rate, burst) in limits.items() if rate or burst}
    paid_at = {}
    seen = {"pass": 0, "drop": 0, "full_again": 0, "clock_wrapped": 0,
            "paid_ahead_2": 0, "paid_ahead_3": 0, "paid_ahead_4": 0}
    clock_range = 1 << dut.clock_bits
    starts, t = [], 2
    for gap, *_ in checks:
        t += SPACING + gap
        starts.append(t)
    events = sorted({*starts, *(s + LATENCY for s in starts)})
    start_of = {s: k for k, s in enumerate(starts)}
    verdict_of = {s + LATENCY: k for k, s in enumerate(starts)}

    async def bench(ctx):
        for (port, cls), (rate, burst) in limits.items():
            ctx.set(getattr(dut, f"rate_{port}_{cls.label}"), rate)
            ctx.set(getattr(dut, f"burst_{port}_{cls.label}"), burst)
        now = 0
        for t in events:
            if t > now:
                await ctx.tick().repeat(t - now)
                now = t
            if t in start_of:
                _, port, cls, length, _ = checks[start_of[t]]
                ctx.set(dut.check.payload, {"port": port, "cls": cls, "length": length})
                ctx.set(dut.check.valid, 1)
            if t in verdict_of:
                k = verdict_of[t]
                _, port, cls, length, admit = checks[k]
                check_at = starts[k]
                assert ctx.get(dut.verdict.valid), f"check {k}: no verdict {LATENCY} cycles later"
                policed, enough = ctx.get(dut.verdict.payload.policed), ctx.get(dut.verdict.payload.enough)
                limit = model.get((port, cls))
                assert policed == (limit is not None), f"check {k}: policed {policed}, limits {limits[port, cls]}"
                if limit is not None and admit:
                    rate, burst = limits[port, cls]
                    last = paid_at.get((port, cls))
                    if last is not None and rate * (check_at - last) >= burst << TOKEN_SHIFT:
                        seen["full_again"] += 1
                    if last is not None and rate * check_at // clock_range != rate * last // clock_range:
                        seen["clock_wrapped"] += 1
                    if last is not None and check_at - last <= LATENCY + 1:
                        seen[f"paid_ahead_{check_at - last}"] += 1
                    want = limit.admit(length, check_at)
                    assert enough == want, (f"check {k}: bucket {port}/{cls.label} {limits[port, cls]}, {length} "
                                            f"bytes at cycle {check_at}: gateware {'passes' if enough else 'drops'}")
                    seen["pass" if want else "drop"] += 1
                    if want:
                        ctx.set(dut.pay, 1)
                        paid_at[port, cls] = check_at
            await ctx.tick()
            now += 1
            ctx.set(dut.check.valid, 0)     # both for one cycle only
            ctx.set(dut.pay, 0)

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
    checks = [(rng.choice([0, 0, 1, 2, 5, 50, 400, 2000]), rng.randrange(ports), rng.choice(list(StormClass)),
               rng.randrange(60, 1519), rng.random() < 0.85) for _ in range(250)]
    seen = run_checks(dut, limits, checks)
    assert seen["pass"] > 30 and seen["drop"] > 30, seen
    assert seen["full_again"] > 10, seen
    assert min(seen["paid_ahead_2"], seen["paid_ahead_3"], seen["paid_ahead_4"]) > 0, seen


def test_back_to_back_on_one_bucket():
    """Frames every 2, 3 or 4 cycles on few buckets (the W=256 switch sends a 64-byte frame every
    2 cycles): each check reads its bucket before the payments of the checks ahead are saved, so
    it passes or drops exactly as the model says only if those payments are forwarded."""
    rng = random.Random(11)
    dut = StormBuckets(2)
    limits = {(p, c): (0, 0) for p in range(2) for c in StormClass}
    limits[0, StormClass.BROADCAST] = (9000, 1600)    # a few 60..400-byte frames of burst
    limits[1, StormClass.MULTICAST] = (12000, 900)
    checks = [(rng.choice([0, 0, 0, 1, 1, 2, 30]), rng.choice([0, 1]),
               StormClass.BROADCAST if rng.random() < 0.5 else StormClass.MULTICAST,
               rng.randrange(60, 400), rng.random() < 0.95) for _ in range(400)]
    checks = [(g, p, StormClass.BROADCAST if p == 0 else StormClass.MULTICAST, n, a) for g, p, _, n, a in checks]
    seen = run_checks(dut, limits, checks)
    assert seen["pass"] > 50 and seen["drop"] > 50, seen
    assert min(seen["paid_ahead_2"], seen["paid_ahead_3"], seen["paid_ahead_4"]) > 10, seen


def test_clock_wraps_and_stale_buckets():
    """Narrow settings (6-bit burst, 8-bit rate, 7-bit lengths): the credit clocks wrap every
    few thousand cycles, so lazy refills across wraps, across more than a whole clock range (the bucket
    counted as full) and right at the edges are all exercised."""
    rng = random.Random(7)
    dut = StormBuckets(2, rate_bits=8, burst_bits=6, length_bits=7)
    limits = random_limits(rng, 2, 256, 64)
    limits[0, StormClass.BROADCAST] = (255, 63)       # the fastest clock
    checks = [(rng.choice([0, 0, 1, 2, 30, 200, 700, 1500]), rng.randrange(2), rng.choice(list(StormClass)),
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
