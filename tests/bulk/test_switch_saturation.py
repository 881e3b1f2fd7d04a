"""The switch at full load in bulk mode (issue 13, "Saturation"): the four VM ports of the
``switch`` profile at W=256 send 64-byte frames back to back, each to the next port's host.

Nothing may be lost (no switch drop, no output-queue drop, every frame out), and the pipeline
must deliver exactly the frame rate the NIC's pacing lets in (``hdl.switch.stage.FRAME_CYCLES``):
more would mean the switch stage was overrun, less that frames wait longer than the pacing
says. The issue's target, 4 x 10 Gb/s of 64-byte frames (59.52 Mpps), needs one frame per 2
cycles, which the MAC table does not take yet (docs/switch.md, "Which width for how many ports").
"""

from __future__ import annotations

import pytest
from conftest import require_simulator

from hdl.switch.stage import FRAME_CYCLES
from host_driver.switch_config import PROFILES, SwitchConfig, nic_config
from sim.flows.bench import switch_throughput

pytestmark = pytest.mark.sim

FRAMES_PER_PORT = 500


@pytest.mark.slow      # a Verilator build of the seven-port W=256 NIC: minutes
def test_four_vm_ports_at_full_load_lose_nothing(tmp_path):
    require_simulator("verilator")
    config = nic_config(SwitchConfig.from_toml(PROFILES["switch"]), {"data_width": 256})
    senders = [config.ports.index(f"vm{i}") for i in range(1, 5)]
    r = switch_throughput(config, len(senders), 64, FRAMES_PER_PORT, tmp_path, senders=senders)
    assert r["drops"] == 0, r
    assert r["frames"] == len(senders) * FRAMES_PER_PORT, r
    # From the first to the last delivered frame, one frame per FRAME_CYCLES cycles.
    assert r["cycles"] == pytest.approx(r["frames"] * FRAME_CYCLES, abs=FRAME_CYCLES), r
    assert r["mpps"] == pytest.approx(config.clock_mhz / FRAME_CYCLES, rel=0.002), r
