"""pytest plugin (entry point ``pytest11: secnic``): the ``secnic_sim`` fixture.

::

    def test_vm1_to_phy0(secnic_sim):
        secnic_sim("vm1_to_phy0.py")             # a cocotb module beside this test file

The fixture runs the named cocotb module against the NIC (:func:`sim.tb.testbench.run_testbench`)
and fails the test when any cocotb test in it fails. A relative path is taken from the folder of
the requesting test file; the run's files go to the test's ``tmp_path``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

__all__ = ["secnic_sim"]


@pytest.fixture
def secnic_sim(request, tmp_path):
    """``run(path, sim="verilator", **kwargs)``: run a cocotb module against the NIC; returns the
    results.xml path. Skips when the simulator is not installed; keyword arguments as for
    :func:`sim.tb.testbench.run_testbench` (``config``, ``waves``, ``testcase``, ``seed``)."""
    from sim.runner import SimulatorUnavailable, check_simulator
    from sim.tb.testbench import run_testbench

    def run(path, sim: str = "verilator", **kwargs):
        try:
            check_simulator(sim)
        except SimulatorUnavailable as exc:
            pytest.skip(str(exc))
        path = Path(path)
        if not path.is_absolute():
            path = Path(request.path).parent / path
        kwargs.setdefault("test_dir", tmp_path / f"{path.stem}-{sim}")
        return run_testbench(path, sim, **kwargs)

    return run
