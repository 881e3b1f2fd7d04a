"""The queueing core: a discrete-event model of packet hops on host cores, in simpy.

A :class:`Stage` is one piece of software on the host (the vSwitch, an appliance VM, the host's
punt path): ``cores`` servers (a ``simpy.Resource``) in front of one ring of ``ring`` descriptors.
A packet that finds the ring full is dropped there. Each packet carries its own route: the stages
it visits in order and the service time it needs at each (per-packet + per-byte cost, worked out
by the caller from the calibration). Overheads:

* ``mode="interrupt"``: a packet that finds its stage idle pays ``wake_ns`` (interrupt, context
  switch) on top of its service; cores count as used while they serve;
* ``mode="poll"``: no wake-up cost, but a polling stage spins: it counts all its cores as used.

:func:`simulate` returns per-packet outcomes and per-stage busy time; tests hold it to the closed
forms of M/D/1 and M/M/1, written out in the test (tests/compare/test_des.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import simpy

__all__ = ["Stage", "Packet", "Outcome", "SimResult", "simulate", "percentile"]


@dataclass(frozen=True)
class Stage:
    """A software stage: ``cores`` servers, a ring of ``ring`` packets, its overhead ``mode``."""
    name: str
    cores: int = 1
    ring: int = 1024
    mode: str = "interrupt"
    wake_ns: float = 0.0

    def __post_init__(self):
        if self.cores < 1 or self.ring < 1:
            raise ValueError(f"stage {self.name!r}: cores and ring must be at least 1, not {self.cores}, {self.ring}")
        if self.mode not in ("interrupt", "poll"):
            raise ValueError(f"stage {self.name!r}: mode must be 'interrupt' or 'poll', not {self.mode!r}")


@dataclass(frozen=True)
class Packet:
    """One packet: arrival time (ns), length in bytes, and its route of (stage name, service ns)."""
    arrival: float
    length: int
    route: tuple[tuple[str, float], ...]
    #: Called when the packet leaves a stage; returns more packets to inject (the loop storm's copies).
    spawn: Callable[[float, str], Sequence[Packet]] | None = None
    tag: str = "traffic"


@dataclass
class Outcome:
    """What happened to one packet: delivered (with latency) or dropped at a stage."""
    tag: str
    length: int
    arrival: float
    done: float | None = None
    dropped_at: str | None = None

    @property
    def latency(self) -> float | None:
        return None if self.done is None else self.done - self.arrival


@dataclass
class SimResult:
    """Outcomes of every packet, busy ns per stage, and the simulated span (first arrival to last event)."""
    outcomes: list[Outcome]
    busy_ns: dict[str, float]
    span_ns: float
    stages: dict[str, Stage] = field(default_factory=dict)

    def cores_used(self, name: str) -> float:
        """Cores a stage kept busy on average over the span (all of them for a polling stage)."""
        st = self.stages[name]
        if st.mode == "poll":
            return float(st.cores)
        return self.busy_ns[name] / self.span_ns if self.span_ns > 0 else 0.0

    def select(self, tag: str = "traffic") -> list[Outcome]:
        return [o for o in self.outcomes if o.tag == tag]


def simulate(stages: Sequence[Stage], packets: Sequence[Packet], *, until: float | None = None) -> SimResult:
    """Run ``packets`` through ``stages`` (see the module docstring); deterministic for a given input.

    ``until`` stops the simulation at that time (ns); packets still inside count as neither delivered
    nor dropped (their ``done`` and ``dropped_at`` stay None).
    """
    env = simpy.Environment()
    by_name = {s.name: s for s in stages}
    servers = {s.name: simpy.Resource(env, capacity=s.cores) for s in stages}
    inside = dict.fromkeys(by_name, 0)          # packets in a stage's ring or being served
    busy = dict.fromkeys(by_name, 0.0)
    outcomes: list[Outcome] = []
    last = [0.0]

    def journey(pkt: Packet, out: Outcome):
        if pkt.arrival > env.now:
            yield env.timeout(pkt.arrival - env.now)
        for name, service in pkt.route:
            st = by_name[name]
            if inside[name] >= st.ring + st.cores:
                out.dropped_at = name
                last[0] = max(last[0], env.now)
                return
            idle = inside[name] == 0
            inside[name] += 1
            with servers[name].request() as req:
                yield req
                cost = service + (st.wake_ns if st.mode == "interrupt" and idle else 0.0)
                yield env.timeout(cost)
                busy[name] += cost
            inside[name] -= 1
            if pkt.spawn is not None:
                for child in pkt.spawn(env.now, name):
                    start(child)
        out.done = env.now
        last[0] = max(last[0], env.now)

    def start(pkt: Packet):
        out = Outcome(pkt.tag, pkt.length, pkt.arrival)
        outcomes.append(out)
        env.process(journey(pkt, out))

    first = min((p.arrival for p in packets), default=0.0)
    for p in packets:
        start(p)
    env.run(until=until)
    end = until if until is not None else max(last[0], max((p.arrival for p in packets), default=0.0))
    return SimResult(outcomes, busy, max(0.0, end - first), dict(by_name))


def percentile(values: Sequence[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile (as run.json's latency figures are computed)."""
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(p / 100 * len(v)) - 1))]

