"""The loop storm on the switch gateware: the comparison's NIC in bulk mode with a loop closed in C++.

The NIC is the offloaded path's own build (:func:`sim.compare.sweep.comparison_topology`: the
scenario's switch with its security stage, broadcast storm control on the looped ports, loop guard
reporting without blocking), so the storm needs no model of its own. Bulk mode's C++ side
(:func:`sim.bulk.run.run_looped`, ``sim/bulk/bulk_dpi.cpp``) is the rest of the world:

* **one external flooding switch** behind the looped ports (the uplink, and VM ports whose VMs
  bridge their vNIC onto the physical network): a broadcast that leaves one of them comes back
  into every other one ``loop_delay_cycles`` later. Its queue towards each port holds
  ``cable_frames`` frames; more are lost there (what a saturated link cannot carry), counted.
  Unicast frames reach their VM and stay out of the loop;
* **the VMs' normal traffic**: the scenario's frames at the reference load, each entering the
  port it comes from (the uplink, or its source VM's port) at its arrival cycle, after one
  learning frame per VM port (:meth:`Topology.learning_frames`);
* **one broadcast** into the uplink at ``storm_at_cycle``.

It runs ``duration_cycles`` with the loop closed, then ``drain_cycles`` more for the normal frames
still in flight, and reports per-port egress (storm and normal frames and bytes within the
duration), the normal frames delivered to their VM's port, the external switch's losses and the
NIC's counters read through the driver at the end. Everything is a function of the inputs: the
same spec gives the same result on any machine (Dask workers included).
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

__all__ = ["StormSpec", "run_storm"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StormSpec:
    """What the looped run simulates (plain data; cycles count from the end of the warm-up)."""
    loop_ports: tuple[str, ...]                 # closed through the external switch; the first is the uplink
    learn: tuple[tuple[str, str], ...]          # (port, frame hex) before the traffic
    normal: tuple[tuple[str, int, str, str | None], ...]   # (ingress port, cycle, frame hex, destination port or None)
    storm_frame: str                            # hex
    storm_at_cycle: int
    loop_delay_cycles: int
    duration_cycles: int
    drain_cycles: int = 2000
    warmup_cycles: int = 400
    cable_frames: int = 64


def run_storm(config, spec: StormSpec, rules=None) -> dict:
    """Run ``spec`` on the bulk-mode model of ``config`` (Verilator), the security stage programmed
    with ``rules`` (a :class:`sim.run.alerts.RuleSet`, as the sweep's points program it) when given;
    the looped run's results (see the module docstring). Raises :class:`sim.run.engine.EngineError`
    when the simulator is missing or the simulation fails."""
    from sim.bulk.run import BulkError, Loop, run_looped
    from sim.run.engine import EngineError
    from sim.runner import SimulatorUnavailable
    ports = list(config.ports)
    index = {p: i for i, p in enumerate(ports)}
    t0 = spec.warmup_cycles
    end = t0 + spec.duration_cycles
    frames = [(index[p], bytes.fromhex(f), False, None) for p, f in spec.learn]
    expected: dict[str, Counter] = {p: Counter() for p in ports}
    for port, at, frame, dest in spec.normal:
        data = bytes.fromhex(frame)
        frames.append((index[port], data, False, t0 + at))
        if dest is not None:              # None: its firewall drops it by policy
            expected[dest][data] += 1
    storm = bytes.fromhex(spec.storm_frame)
    frames.append((index[spec.loop_ports[0]], storm, False, t0 + spec.storm_at_cycle))
    # A port's source sends its frames in input order: by start cycle (the learning frames first).
    frames.sort(key=lambda f: f[3] or 0)
    loop = Loop(tuple(index[p] for p in spec.loop_ports), spec.loop_delay_cycles, spec.cable_frames, end)

    async def program(nic):
        await nic.security.program(rules.entries, matcher=rules.matcher)
    with tempfile.TemporaryDirectory(prefix="secnic-storm-") as tmp:
        try:
            res = run_looped(config, frames, loop, end + spec.drain_cycles, Path(tmp),
                             before=None if rules is None else program)
        except (BulkError, SimulatorUnavailable, OSError) as exc:
            raise EngineError(f"loop storm (bulk mode, Verilator) failed: {exc}") from exc
    storm_out = dict.fromkeys(ports, 0)
    storm_bytes = dict.fromkeys(ports, 0)
    normal_out = dict.fromkeys(ports, 0)
    normal_bytes = dict.fromkeys(ports, 0)
    got: dict[str, Counter] = {p: Counter() for p in ports}
    for port, out in res["egress"].items():
        for e in out:
            data = e["data"]
            got[port][data] += 1
            if e["end"] >= end:
                continue
            if data == storm:
                storm_out[port] += 1
                storm_bytes[port] += len(data)
            else:
                normal_out[port] += 1
                normal_bytes[port] += len(data)
    delivered = sum(min(n, got[p][data]) for p in ports for data, n in expected[p].items())
    return {
        "cycles": spec.duration_cycles,
        "storm_frames_out": storm_out, "storm_bytes_out": storm_bytes,
        "normal_frames_out": normal_out, "normal_bytes_out": normal_bytes,
        "normal_frames": len(spec.normal),
        "normal_delivered_frames": delivered,
        "cable_lost": res["status"]["loop_lost"],
        "looped": res["status"]["loop_sent"],
        "counters": res["counters"],
        "wall_s": res["wall_s"],
    }
