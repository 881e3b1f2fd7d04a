"""The loop storm on the switch gateware: a looped testbench around the NIC (cocotb, Verilator).

The NIC is the scenario's switch (:func:`sim.compare.topology.topology` with ``uplinks`` trunks
``phy0``.., one access port per VM, ``host``) with a broadcast storm limit on each uplink. The
testbench (:mod:`sim.compare.storm_cocotb`) is the rest of the world:

* **one external flooding switch** behind the uplinks: whatever leaves one uplink comes back on
  every other uplink ``loop_delay_cycles`` later. Its queue towards each uplink holds
  ``cable_frames`` frames; more are lost there (what a saturated link cannot carry), counted;
* **the VMs' normal traffic**: the scenario's frames at the reference load, each entering the
  port it comes from (the first uplink, or its source VM's port) at its arrival cycle, after one
  learning frame per VM port (:meth:`Topology.learning_frames`);
* **one broadcast** into the first uplink at ``storm_at_cycle``.

It runs ``duration_cycles`` with the loop closed, then ``drain_cycles`` more for the normal frames
still in flight, and reports per-port egress (storm and normal frames and bytes within the
duration), the normal frames delivered to their VM's port, the external switch's losses and the
NIC's counters read through the driver at the end. Everything is a function of the inputs: the
same spec gives the same result on any machine (Dask workers included).
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["StormSpec", "run_storm", "prepare_storm", "SPEC_ENV", "TEST_MODULE"]

log = logging.getLogger(__name__)

#: The environment variable naming the spec file the cocotb module reads.
SPEC_ENV = "SECNIC_STORM_SPEC"
TEST_MODULE = "sim.compare.storm_cocotb"


@dataclass(frozen=True)
class StormSpec:
    """What the looped testbench runs (plain data: JSON to the simulation)."""
    uplinks: tuple[str, ...]
    learn: tuple[tuple[str, str], ...]          # (port, frame hex) before the traffic
    normal: tuple[tuple[str, int, str, str], ...]   # (ingress port, cycle, frame hex, destination port)
    storm_frame: str                            # hex
    storm_at_cycle: int
    loop_delay_cycles: int
    duration_cycles: int
    drain_cycles: int = 2000
    warmup_cycles: int = 400
    cable_frames: int = 64


def prepare_storm(config) -> None:
    """Build the simulator model once (before sweep points run it in parallel)."""
    from sim.runner import build
    build(config, "verilator")


def run_storm(config, spec: StormSpec, sim: str = "verilator") -> dict:
    """Run ``spec`` on the gateware of ``config``; the testbench's results (see the module docstring).
    Raises :class:`sim.run.engine.EngineError` when the simulator is missing or the simulation fails."""
    from sim.run.engine import EngineError
    from sim.runner import CocotbTestFailure, SimulatorUnavailable, run_cocotb
    with tempfile.TemporaryDirectory(prefix="secnic-storm-") as tmp:
        tmp = Path(tmp)
        spec_file = tmp / "spec.json"
        out = tmp / "result.json"
        spec_file.write_text(json.dumps({**asdict(spec), "out": str(out)}))
        try:
            run_cocotb(config, sim, TEST_MODULE, env={SPEC_ENV: str(spec_file)}, test_dir=tmp / "sim")
        except (CocotbTestFailure, SimulatorUnavailable, RuntimeError) as exc:
            raise EngineError(f"loop storm testbench ({sim}) failed: {exc}") from exc
        return json.loads(out.read_text())
