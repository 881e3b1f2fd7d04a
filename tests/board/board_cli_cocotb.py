"""cocotb side of tests/board/test_board_cli.py: NicTop (UART bridge + line tester) served on a pty.

The test process runs ``secnic board --port <pty> ...`` against it. The pty's path goes to the
file named by ``SECNIC_PTY_PATH_FILE``; the simulation ends when the file named by
``SECNIC_PTY_STOP_FILE`` appears.
"""

import os
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from sim.tb.nic import clock_impl, config_from_env, period_ps
from sim.tb.pty import PtyBridge
from sim.tb.uart import CocotbUartTransport


@cocotb.test()
async def serve_bridge_on_pty(dut):
    config = config_from_env()
    Clock(dut.clk, period_ps(config), unit="ps", impl=clock_impl()).start()
    for port in config.ports:      # no external traffic: the line tester drives the ingress ports
        for name in ("tvalid", "tdata", "tkeep", "tlast", "tuser"):
            getattr(dut, f"s_axis_{port}__{name}").value = 0
        getattr(dut, f"m_axis_{port}__tready").value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 4)
    bridge = PtyBridge(CocotbUartTransport(dut.uart_rx, dut.uart_tx, config.uart_baud), dut.clk)
    stop = Path(os.environ["SECNIC_PTY_STOP_FILE"])
    Path(os.environ["SECNIC_PTY_PATH_FILE"]).write_text(bridge.path)
    try:
        await bridge.serve(until=stop.exists)
    finally:
        bridge.close()
    assert bridge.bytes_in and bridge.bytes_out, f"{bridge!r}: the host never talked to the bridge"
