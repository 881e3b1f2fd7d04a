"""The register bus over the NIC's UART bridge (docs/uart-bridge.md).

:class:`SerialBus` is a :class:`~host_driver.bus.Bus`, so ``Nic(SerialBus(transport))`` runs the
same driver against a board (:class:`PySerialTransport`) or the simulator (``sim.tb.uart``).
Frame constants and the CRC come from :mod:`hdl.board.bridge`, the gateware's own definitions.

This module never imports cocotb or the ``sim`` package; pyserial is imported only when a
:class:`PySerialTransport` is created.
"""

import abc
import asyncio
import logging

from hdl.board.bridge import RESPONSE_LEN, SYNC_REQUEST, SYNC_RESPONSE, Cmd, Status, crc8
from host_driver.bus import AxiResp, Bus, BusError

__all__ = ["SerialBus", "ByteTransport", "PySerialTransport", "TransportTimeout", "BridgeTimeout",
           "ResponseError", "encode_request", "encode_response", "decode_response", "crc8", "Cmd", "Status",
           "RESPONSE_LEN"]

log = logging.getLogger(__name__)

M32 = 0xFFFFFFFF


class TransportTimeout(TimeoutError):
    """A transport read did not get all its bytes in time."""


class BridgeTimeout(TimeoutError):
    """No usable response from the bridge after every retry.

    ``op``/``addr`` name the access, ``attempts`` how many requests were sent, ``last`` what went
    wrong with the last one.
    """

    def __init__(self, op: str, addr: int, attempts: int, last: str):
        self.op, self.addr, self.attempts, self.last = op, addr, attempts, last
        super().__init__(f"UART bridge: no valid response to {op} at address 0x{addr:08x} after "
                         f"{attempts} attempt(s); last attempt: {last}")


class ResponseError(ValueError):
    """A response frame that cannot be trusted (wrong sync byte, length or CRC)."""


# -- frames ---------------------------------------------------------------------------------------

def encode_request(cmd: int, seq: int, addr: int, data: int | None = None) -> bytes:
    """Request frame ``A5 CMD SEQ ADDR[4] [DATA[4]] CRC`` (little-endian fields).

    ``data`` is required for :attr:`Cmd.WRITE32` and refused for READ32. Any other ``cmd`` is
    encoded in the READ32 layout (with ``data`` if given), which is what the bridge expects of an
    unknown command; tests use that to provoke :attr:`Status.BAD_COMMAND`.
    """
    if not 0 <= cmd <= 0xFF:
        raise ValueError(f"command must be a byte, not {cmd!r}")
    if not 0 <= seq <= 0xFF:
        raise ValueError(f"sequence number must be in 0..255, not {seq!r}")
    if not 0 <= addr <= M32:
        raise ValueError(f"address must be a 32-bit unsigned integer, not {addr!r}")
    if cmd == Cmd.WRITE32 and data is None:
        raise ValueError("a WRITE32 request needs data")
    if cmd == Cmd.READ32 and data is not None:
        raise ValueError(f"a READ32 request carries no data, got {data!r}")
    body = bytes([cmd, seq]) + addr.to_bytes(4, "little")
    if data is not None:
        if not 0 <= data <= M32:
            raise ValueError(f"data must be a 32-bit unsigned integer, not {data!r}")
        body += data.to_bytes(4, "little")
    return bytes([SYNC_REQUEST]) + body + bytes([crc8(body)])


def encode_response(status: int, seq: int, data: int = 0) -> bytes:
    """Response frame ``5A STATUS SEQ DATA[4] CRC`` (what the bridge sends; for models and tests)."""
    body = bytes([status, seq]) + (data & M32).to_bytes(4, "little")
    return bytes([SYNC_RESPONSE]) + body + bytes([crc8(body)])


def decode_response(raw: bytes) -> tuple[int, int, int]:
    """``(status, seq, data)`` of an 8-byte response frame; :class:`ResponseError` if it is not one.

    ``status`` is returned as a :class:`Status` when it is a known code, else as the raw int.
    """
    raw = bytes(raw)
    if len(raw) != RESPONSE_LEN:
        raise ResponseError(f"a response is {RESPONSE_LEN} bytes, not {len(raw)}: {raw.hex(' ')}")
    if raw[0] != SYNC_RESPONSE:
        raise ResponseError(f"response starts with 0x{raw[0]:02x}, not sync 0x{SYNC_RESPONSE:02x}")
    if crc8(raw[1:-1]) != raw[-1]:
        raise ResponseError(f"response CRC 0x{raw[-1]:02x} != computed 0x{crc8(raw[1:-1]):02x}: "
                            f"{raw.hex(' ')}")
    status = raw[1]
    try:
        status = Status(status)
    except ValueError:
        pass
    return status, raw[2], int.from_bytes(raw[3:7], "little")


# -- transports -----------------------------------------------------------------------------------

class ByteTransport(abc.ABC):
    """A full-duplex byte pipe to the bridge. Timeouts are in seconds (simulated seconds in sim)."""

    @abc.abstractmethod
    async def write(self, data: bytes) -> None:
        """Send ``data``; may return before the last byte is on the wire."""

    @abc.abstractmethod
    async def read_exactly(self, n: int, timeout: float) -> bytes:
        """Return the next ``n`` received bytes; raise :class:`TransportTimeout` if they do not all
        arrive within ``timeout``."""

    async def discard_input(self) -> None:
        """Drop bytes already received and not read (stale responses). Default: nothing."""
        return None


class PySerialTransport(ByteTransport):
    """:class:`ByteTransport` over pyserial; blocking calls run in the default thread executor.

    Parameters
    ----------
    port:
        Device path (``/dev/ttyUSB1``) or any pyserial URL (``loop://``, ``socket://host:port``).
    baudrate:
        Line rate; the gateware's ``uart_baud``.
    """

    def __init__(self, port: str, baudrate: int = 115200):
        try:
            import serial  # lazily: the driver works without pyserial when no serial port is used
        except ImportError as exc:
            raise ImportError("PySerialTransport needs pyserial (pip install pyserial)") from exc
        self.port = port
        self.baudrate = baudrate
        self._serial = serial.serial_for_url(port, baudrate=baudrate, bytesize=serial.EIGHTBITS,
                                             parity=serial.PARITY_NONE, stopbits=serial.STOPBITS_ONE,
                                             timeout=1.0)

    def __repr__(self):
        return f"PySerialTransport({self.port!r}, baudrate={self.baudrate})"

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def write(self, data: bytes) -> None:
        await self._run(self._serial.write, bytes(data))

    async def read_exactly(self, n: int, timeout: float) -> bytes:
        def read():
            self._serial.timeout = timeout
            return self._serial.read(n)
        data = await self._run(read)
        if len(data) < n:
            raise TransportTimeout(f"{self.port}: got {len(data)} of {n} bytes in {timeout} s")
        return bytes(data)

    async def discard_input(self) -> None:
        await self._run(self._serial.reset_input_buffer)

    def close(self) -> None:
        self._serial.close()


# -- the bus --------------------------------------------------------------------------------------

class SerialBus(Bus):
    """32-bit register access through the UART bridge.

    Each access sends one request and waits for the response with the same sequence number. A
    bad-checksum or bad-command status, a response that fails its CRC, or no response within
    ``timeout`` is retried (with a fresh sequence number, so a late answer to an earlier attempt
    is recognised and skipped) up to ``retries`` more times, then :class:`BridgeTimeout` is
    raised. STATUS 1 raises :class:`~host_driver.bus.BusError` at once (not retried: a write may
    have had side effects).

    Parameters
    ----------
    transport:
        The byte pipe (:class:`PySerialTransport`, or ``sim.tb.uart.CocotbUartTransport``).
    timeout:
        Seconds to wait for each response byte group; about 10 response times is plenty (an
        8-byte response takes 0.7 ms at 115200 baud).
    retries:
        Extra attempts after the first.

    Attributes
    ----------
    stats: dict
        Counts of ``requests``, ``retries``, ``timeouts``, ``bad_crc_responses``, ``stale_responses``
        and each non-OK status name.
    """

    #: Stale or unrelated responses skipped while waiting for one attempt's answer.
    MAX_STALE = 4

    def __init__(self, transport: ByteTransport, *, timeout: float = 0.1, retries: int = 3):
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, not {retries!r}")
        self.transport = transport
        self.timeout = timeout
        self.retries = retries
        self._seq = 0
        self.stats = {"requests": 0, "retries": 0, "timeouts": 0, "bad_crc_responses": 0,
                      "stale_responses": 0}

    def __repr__(self):
        return f"SerialBus({self.transport!r}, timeout={self.timeout}, retries={self.retries})"

    async def read32(self, addr: int) -> int:
        return await self._access(Cmd.READ32, addr, None)

    async def write32(self, addr: int, value: int) -> None:
        await self._access(Cmd.WRITE32, addr, value)

    def _bump(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1

    async def _response(self, seq: int) -> tuple[int, int]:
        """Read until the response for ``seq``: ``(status, data)``. Raises TransportTimeout or
        ResponseError."""
        for _ in range(self.MAX_STALE + 1):
            # Hunt for the sync byte: anything before it is line noise or a torn earlier response.
            skipped = 0
            while (await self.transport.read_exactly(1, self.timeout))[0] != SYNC_RESPONSE:
                skipped += 1
                if skipped > 4 * RESPONSE_LEN:
                    raise ResponseError(f"no response sync byte in {skipped} bytes")
            raw = bytes([SYNC_RESPONSE]) + await self.transport.read_exactly(RESPONSE_LEN - 1, self.timeout)
            status, rseq, data = decode_response(raw)
            if rseq == seq:
                return status, data
            self._bump("stale_responses")
            log.debug("skipping response with seq %d while waiting for %d", rseq, seq)
        raise ResponseError(f"{self.MAX_STALE + 1} responses, none with sequence number {seq}")

    async def _access(self, cmd: Cmd, addr: int, data: int | None) -> int:
        op = "read" if cmd == Cmd.READ32 else "write"
        if addr % 4:
            raise ValueError(f"address must be word aligned, not 0x{addr:x}")
        last = ""
        for attempt in range(self.retries + 1):
            seq = self._seq
            self._seq = (self._seq + 1) & 0xFF
            frame = encode_request(cmd, seq, addr, data)
            self._bump("requests")
            if attempt:
                self._bump("retries")
                log.info("%s at 0x%08x: retry %d after %s", op, addr, attempt, last)
            await self.transport.discard_input()
            await self.transport.write(frame)
            try:
                status, rdata = await self._response(seq)
            except TransportTimeout:
                self._bump("timeouts")
                last = f"no response within {self.timeout} s"
                continue
            except ResponseError as exc:
                self._bump("bad_crc_responses")
                last = f"unusable response ({exc})"
                continue
            if status == Status.OK:
                return rdata
            self._bump(getattr(status, "name", f"status_{status}").lower())
            if status == Status.BUS_ERROR:
                raise BusError(addr, AxiResp.SLVERR, op, "UART bridge STATUS 1: SLVERR/DECERR or address "
                               "outside the bridge's range")
            last = (f"bridge answered {status.name}" if isinstance(status, Status)
                    else f"bridge answered unknown status {status}")
        raise BridgeTimeout(op, addr, self.retries + 1, last)
