"""The queueing core (sim.compare.des) against closed-form queueing results.

The references are textbook formulas written out here, not taken from the code under test:
Pollaczek-Khinchine for M/D/1 (mean wait rho*S / (2(1-rho))), M/M/1's mean time in system
1/(mu - lambda), and a finite M/M/1/K queue's blocking probability.
"""

from __future__ import annotations

import random

import pytest

from sim.compare.des import Packet, Stage, simulate
from sim.compare.sweep import find_knee

N = 40_000


def poisson(rate_per_ns: float, n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(n):
        out.append(t)
        t += rng.expovariate(rate_per_ns)
    return out


def mean(values):
    return sum(values) / len(values)


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_md1_mean_wait(rho):
    service = 1000.0
    times = poisson(rho / service, N, seed=7)
    res = simulate([Stage("s", cores=1, ring=10**9)], [Packet(t, 64, (("s", service),)) for t in times])
    waits = [o.latency - service for o in res.outcomes]
    expected = rho * service / (2 * (1 - rho))
    assert mean(waits) == pytest.approx(expected, rel=0.1)
    assert res.cores_used("s") == pytest.approx(rho, rel=0.03)


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_mm1_mean_sojourn(rho):
    mu = 1 / 1000.0
    rng = random.Random(3)
    times = poisson(rho * mu, N, seed=11)
    res = simulate([Stage("s", cores=1, ring=10**9)],
                   [Packet(t, 64, (("s", rng.expovariate(mu)),)) for t in times])
    assert mean([o.latency for o in res.outcomes]) == pytest.approx(1 / (mu - rho * mu), rel=0.1)


def test_mm1k_blocking():
    """A ring of K-1 places plus the server: P(block) = (1-rho) rho^K / (1 - rho^(K+1))."""
    rho, ring, mu = 0.9, 4, 1 / 1000.0
    k = ring + 1
    rng = random.Random(5)
    times = poisson(rho * mu, N, seed=13)
    res = simulate([Stage("s", cores=1, ring=ring)], [Packet(t, 64, (("s", rng.expovariate(mu)),)) for t in times])
    dropped = sum(o.dropped_at == "s" for o in res.outcomes) / N
    assert dropped == pytest.approx((1 - rho) * rho**k / (1 - rho ** (k + 1)), rel=0.1)


def test_interrupt_wake_cost_and_poll_cores():
    """A packet finding its stage idle pays the wake-up; a polling stage counts all its cores."""
    pkts = [Packet(t, 64, (("s", 100.0),)) for t in (0.0, 50.0, 10_000.0)]
    res = simulate([Stage("s", cores=2, ring=8, mode="interrupt", wake_ns=50.0)], pkts)
    # The second packet finds the stage busy (no wake-up); the third finds it idle again.
    assert [o.latency for o in res.outcomes] == [150.0, 100.0, 150.0]
    res = simulate([Stage("s", cores=2, ring=8, mode="poll")], pkts)
    assert res.cores_used("s") == 2.0


def test_knee_where_utilisation_approaches_one():
    """Sweeping an M/D/1 stage's load: p99 latency takes off as rho -> 1; the knee lies in 0.7..1."""
    service = 1000.0
    loads = [0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 1.05, 1.2]
    points = []
    for rho in loads:
        times = poisson(rho / service, 8000, seed=17)
        res = simulate([Stage("s", cores=1, ring=256)], [Packet(t, 64, (("s", service),)) for t in times])
        lat = sorted(o.latency for o in res.outcomes if o.latency is not None)
        drop = sum(o.dropped_at is not None for o in res.outcomes) / len(res.outcomes)
        points.append({"offered_gbps": rho, "drop_rate": drop, "latency_p99_ns": lat[int(0.99 * len(lat))]})
    knee = find_knee(points)
    assert knee is not None and 0.7 <= knee["offered_gbps"] <= 1.0
