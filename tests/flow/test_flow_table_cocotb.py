"""The issue's SYN flood (100,000 random flows into a full table while established flows keep
passing) through the standalone flow table in Verilator: ``flow_table_cocotb.syn_flood``, run
through :func:`sim.runner.run_cocotb`, which raises on a failed cocotb test. Measured: see
docs/flow.md (build once, then the run)."""

import pytest
from flow_table_cocotb import flood_top

from hdl.config import NicConfig
from sim.runner import SimulatorUnavailable, check_simulator, run_cocotb

pytestmark = pytest.mark.sim


@pytest.mark.slow
def test_syn_flood_100k_verilator():
    try:
        check_simulator("verilator")
    except SimulatorUnavailable as exc:
        pytest.skip(str(exc))
    run_cocotb(NicConfig(), "verilator", "flow_table_cocotb", top=flood_top, env={"FLOOD": "100000"})


def test_syn_flood_verilator_short():
    """The same test with 2,000 SYNs (the default suite's cut)."""
    try:
        check_simulator("verilator")
    except SimulatorUnavailable as exc:
        pytest.skip(str(exc))
    run_cocotb(NicConfig(), "verilator", "flow_table_cocotb", top=flood_top, env={"FLOOD": "2000"})
