"""``secnic board``: the command a board user runs, end to end against the bridge gateware.

The simulation (``board_cli_cocotb``: NicTop with the UART bridge and the line tester, Verilator)
serves its UART on a pseudo-terminal; the test runs ``secnic board --port <pty> ...`` in this
process, so pyserial, SerialBus, the Nic driver and the command code are the ones used on a board.
The error cases (no such device, no answer) need no simulator.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time

import pytest
from conftest import require_simulator

from hdl.board.linetest import DEFAULT_SEED
from sim.cli.main import main
from sim.runner import run_cocotb
from sim.tb.bridge_top import sim_config

#: The simulated board: the default NIC with bridge and line tester, UART at clock/8.
BOARD_CONFIG = sim_config(uart_bridge=True, line_tester=True)
#: Wall seconds per response: the simulation answers a request in tens of milliseconds.
TIMEOUT = ["--timeout", "5"]


def board(capsys, port, *args):
    """Run ``secnic board --port PORT ARGS``: (exit status, stdout, stderr)."""
    capsys.readouterr()
    rc = main(["board", "--port", port, *args])
    out, err = capsys.readouterr()
    return rc, out, err


# -- errors, no simulator ------------------------------------------------------------------------

def test_no_such_device(capsys, tmp_path):
    dev = str(tmp_path / "ttyUSB9")
    rc, out, err = board(capsys, dev, "identity")
    assert rc == 2 and out == ""
    assert f"secnic board: error: --port {dev}: no such device" in err


def test_no_answer(capsys):
    master, slave = os.openpty()          # a serial line with nothing at the other end
    dev = os.ttyname(slave)
    try:
        rc, out, err = board(capsys, dev, "--timeout", "0.05", "--retries", "1", "counters")
    finally:
        os.close(master)
        os.close(slave)
    assert rc == 2 and out == ""
    assert f"secnic board: error: no answer from a secnic UART bridge on {dev}" in err
    assert "at 115200 baud" in err and "after 2 attempt(s)" in err and "docs/boards.md" in err


def test_bad_options(capsys):
    with pytest.raises(SystemExit) as info:
        main(["board", "--port", "/dev/null", "--board", "nosuchboard", "identity"])
    assert info.value.code == 2
    assert "invalid choice: 'nosuchboard'" in capsys.readouterr().err
    rc, _, err = board(capsys, "/dev/null", "--timeout", "0", "identity")
    assert rc == 2 and "--timeout must be positive, not 0.0" in err


# -- against the simulated bridge ----------------------------------------------------------------

@pytest.fixture
def simulated_board(tmp_path):
    """The pty path of a running simulation of the board's NIC; stops it afterwards and fails the
    test if the simulation failed."""
    require_simulator("verilator")
    path_file, stop_file = tmp_path / "pty", tmp_path / "stop"
    outcome = {}

    def simulate():
        try:
            run_cocotb(BOARD_CONFIG, "verilator", "board_cli_cocotb", test_dir=tmp_path / "sim",
                       env={"SECNIC_PTY_PATH_FILE": str(path_file), "SECNIC_PTY_STOP_FILE": str(stop_file)})
        except BaseException as exc:          # noqa: BLE001 -- reported in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=simulate, daemon=True)
    thread.start()
    deadline = time.monotonic() + 900           # a cold Verilator build of NicTop on a busy machine
    while not path_file.exists():
        assert thread.is_alive(), f"simulation ended before serving the pty: {outcome.get('error')}"
        assert time.monotonic() < deadline, "the simulation did not start serving the pty in 900 s"
        time.sleep(0.2)
    yield path_file.read_text()
    stop_file.touch()
    thread.join(120)
    assert not thread.is_alive(), "the simulation did not stop"
    if "error" in outcome:
        raise outcome["error"]


def _write_seed(port: str, seed: int) -> None:
    """Write LINETEST.SEED through the same serial path (the driver, not the command)."""
    from host_driver.driver import Nic
    from host_driver.serialbus import PySerialTransport, SerialBus

    async def go():
        transport = PySerialTransport(port, 115200)
        try:
            nic = Nic(SerialBus(transport, timeout=5))
            await nic.discover()
            await nic.write(nic.block("LINETEST"), "SEED", seed)
        finally:
            transport.close()
    asyncio.run(go())


@pytest.mark.sim
def test_board_session_against_simulated_bridge(simulated_board, capsys):
    pty = simulated_board
    rc, out, err = board(capsys, pty, *TIMEOUT, "identity")
    assert rc == 0, err
    ident = json.loads(out)
    assert ident["data_width"] == BOARD_CONFIG.data_width
    assert ident["clock_khz"] == round(BOARD_CONFIG.clock_mhz * 1000)
    assert ident["max_frame"] == BOARD_CONFIG.max_frame
    assert ident["blocks"] == ["IDENTITY0", "PORT0", "PORT1", "PARSER0", "BRIDGE0", "LINETEST0"]

    rc, out, err = board(capsys, pty, *TIMEOUT, "counters")
    assert rc == 0, err
    counters = json.loads(out)
    assert set(counters["ports"]) == {"phy0", "vm1"}
    assert counters["ports"]["phy0"]["rx_packets"] == 0
    assert counters["bridge"]["frames_ok"] > 0       # this session's own requests

    rc, out, err = board(capsys, pty, *TIMEOUT, "linetest", "check")
    assert rc == 1 and "no frames were generated since reset" in err

    rc, out, err = board(capsys, pty, *TIMEOUT, "linetest", "start", "--frame-len", "100", "--seed", "0x1234")
    assert rc == 0, err
    assert out.strip() == "line tester started: 100-byte frames, gap 0, seed 0x00001234"
    rc, out, err = board(capsys, pty, *TIMEOUT, "linetest", "start", "--frame-len", "100")
    assert rc == 2 and "the line tester is running: stop() it before configure()" in err
    rc, out, err = board(capsys, pty, *TIMEOUT, "linetest", "check")
    assert rc == 2 and "`linetest stop` it before `linetest check`" in err
    rc, out, err = board(capsys, pty, *TIMEOUT, "linetest", "stop")
    assert rc == 0 and out.strip() == "line tester stopped"

    rc, out, err = board(capsys, pty, *TIMEOUT, "linetest", "check")
    assert rc == 0, out + err
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == ["phy0", "vm1"]
    assert all(line.endswith(": OK") for line in lines[:2]), out
    assert lines[2] == "settings: 100-byte frames, gap 0, seed 0x00001234"
    generated = [int(line.split(" frames out of ")[1].split()[0]) for line in lines[:2]]
    assert min(generated) > 0, out

    # The same frames checked against another seed must not pass: the check really compares.
    _write_seed(pty, DEFAULT_SEED)
    rc, out, err = board(capsys, pty, *TIMEOUT, "linetest", "check")
    assert rc == 1 and out.count("MISMATCH") == 2, out
    assert "predictable only for one start/stop since the board was reset" in err
