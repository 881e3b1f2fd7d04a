"""The simulated UART bridge served on a pseudo-terminal, so host programs reach it as a serial port.

:class:`PtyBridge` opens a pty pair; bytes a host writes to the slave side (``path``, e.g.
``/dev/pts/7``, opened by pyserial like any serial device) are sent on the DUT's ``uart_rx`` by a
:class:`~sim.tb.uart.CocotbUartTransport`, and bytes the DUT sends on ``uart_tx`` are written back.
``secnic board --port /dev/pts/7 ...`` then runs unchanged against the bridge gateware; the tests
use this to check that command end to end.

Simulated time runs while the host is idle (Python polls the pty every ``poll_cycles``), so a
line tester started from the host keeps generating until it is stopped. The pty ignores the baud
rate the host sets; the bits on the simulated wire use the gateware's ``uart_baud``.
"""

from __future__ import annotations

import logging
import os
import time
import tty
from collections.abc import Callable

from cocotb.triggers import ClockCycles

from sim.tb.uart import CocotbUartTransport

__all__ = ["PtyBridge"]

log = logging.getLogger(__name__)


class PtyBridge:
    """Pump bytes between a pseudo-terminal and the simulated UART pins.

    Parameters
    ----------
    transport:
        The UART models on the DUT's pins.
    clk:
        The DUT clock (the pump polls every ``poll_cycles`` of it).
    poll_cycles:
        Clock cycles between polls of the pty; 64 costs nothing measurable and adds well under a
        byte time at the simulation baud rate (clock / 8).

    Attributes
    ----------
    path:
        The slave device to open as a serial port.
    """

    def __init__(self, transport: CocotbUartTransport, clk, poll_cycles: int = 64):
        self.transport = transport
        self.clk = clk
        self.poll_cycles = poll_cycles
        self._master, self._slave = os.openpty()
        # Raw mode: no echo, no CR/LF translation, no flow-control characters (the frames are binary).
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self.bytes_in = 0
        self.bytes_out = 0

    def __repr__(self):
        return f"PtyBridge({self.path!r}, in={self.bytes_in}, out={self.bytes_out})"

    def _read_host(self) -> bytes:
        try:
            return os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError:          # EIO while no host has the slave open: nothing to read
            return b""

    async def serve(self, until: Callable[[], bool], wall_timeout_s: float = 600.0) -> None:
        """Pump until ``until()`` is true (checked every 16 polls) or ``wall_timeout_s`` wall seconds
        have passed (then AssertionError: a host that never finished)."""
        deadline = time.monotonic() + wall_timeout_s
        source, sink = self.transport.source, self.transport.sink
        polls = 0
        while True:
            data = self._read_host()
            if data:
                self.bytes_in += len(data)
                source.write_nowait(data)
            if not sink.empty():
                out = bytes(sink.read_nowait(sink.count()))
                self.bytes_out += len(out)
                os.write(self._master, out)
            polls += 1
            if polls % 16 == 0:
                if until():
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self!r}: host still talking after {wall_timeout_s} s")
            await ClockCycles(self.clk, self.poll_cycles)

    def close(self) -> None:
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
