"""The host driver's :class:`~host_driver.serialbus.ByteTransport` over simulated UART pins.

``SerialBus(CocotbUartTransport(dut.uart_rx, dut.uart_tx, baud))`` runs the real serial driver
against the gateware bridge. Bytes are sent and received with cocotbext-uart's
:class:`UartSource`/:class:`UartSink`; timeouts are in *simulated* seconds.
"""

import logging

from cocotb.utils import get_sim_time
from cocotbext.uart import UartSink, UartSource

from host_driver.serialbus import ByteTransport, TransportTimeout

__all__ = ["CocotbUartTransport"]


class CocotbUartTransport(ByteTransport):
    """Byte pipe to a simulated bridge.

    Parameters
    ----------
    rx_pin:
        The DUT's receive input (driven here).
    tx_pin:
        The DUT's transmit output (sampled here).
    baud:
        Line rate of the DUT's bridge.

    Attributes
    ----------
    source, sink:
        The cocotbext-uart models, for tests that write raw bytes or flip them on the wire.
    flip_next_request, flip_next_response:
        ``(byte_index, xor_mask)`` applied once to the next frame written / the next bytes read,
        to model a bit error on the line; ``None`` when unused.
    """

    def __init__(self, rx_pin, tx_pin, baud: int):
        self.baud = baud
        self.source = UartSource(rx_pin, baud=baud, bits=8, stop_bits=1)
        self.sink = UartSink(tx_pin, baud=baud, bits=8, stop_bits=1)
        for model in (self.source, self.sink):
            model.log.setLevel(logging.WARNING)   # they log every byte at INFO
        self.flip_next_request = None
        self.flip_next_response = None

    def __repr__(self):
        return f"CocotbUartTransport(baud={self.baud})"

    async def write(self, data: bytes) -> None:
        data = bytearray(data)
        if self.flip_next_request is not None:
            index, mask = self.flip_next_request
            self.flip_next_request = None
            data[index] ^= mask
        await self.source.write(data)
        await self.source.wait()              # like a blocking serial write + flush

    async def read_exactly(self, n: int, timeout: float) -> bytes:
        deadline = get_sim_time("ps") + round(timeout * 1e12)
        out = bytearray()
        while len(out) < n:
            if not self.sink.empty():
                out += self.sink.read_nowait(min(n - len(out), self.sink.count()))
                continue
            left = deadline - get_sim_time("ps")
            if left <= 0:
                raise TransportTimeout(f"got {len(out)} of {n} bytes in {timeout * 1e6:.1f} us (simulated)")
            await self.sink.wait(left, "ps")
        if self.flip_next_response is not None:
            index, mask = self.flip_next_response
            if index < len(out):
                out[index] ^= mask
                self.flip_next_response = None
            else:
                self.flip_next_response = (index - len(out), mask)
        return bytes(out)

    async def discard_input(self) -> None:
        self.sink.clear()
