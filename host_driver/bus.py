"""The bus the driver talks through: 32-bit reads and writes on an AXI4-Lite style CSR space.

Implementations: the cocotb AXI-Lite master (simulation), :class:`host_driver.model.nic.ModelBus`
(the golden model's register file) and, later, a serial bridge to a board. The :class:`Nic`
driver only ever uses this interface.
"""

from __future__ import annotations

import abc
import enum

__all__ = ["Bus", "BusError", "AxiResp"]


class AxiResp(enum.IntEnum):
    """AXI4-Lite ``RRESP``/``BRESP`` codes (AMBA AXI and ACE spec, A3.4.4)."""
    OKAY = 0
    EXOKAY = 1
    SLVERR = 2
    DECERR = 3


class BusError(Exception):
    """A bus access answered with an error response (SLVERR or DECERR).

    ``addr`` is the byte address, ``resp`` the :class:`AxiResp`, ``op`` ``"read"`` or ``"write"``.
    """

    def __init__(self, addr: int, resp: int, op: str = "read", detail: str = ""):
        self.addr = addr
        self.resp = AxiResp(resp)
        self.op = op
        msg = f"{self.resp.name} response to {op} at address 0x{addr:08x}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class Bus(abc.ABC):
    """Asynchronous 32-bit register access. Addresses are byte addresses, word aligned."""

    @abc.abstractmethod
    async def read32(self, addr: int) -> int:
        """Read one 32-bit word; raise :class:`BusError` on an error response."""

    @abc.abstractmethod
    async def write32(self, addr: int, value: int) -> None:
        """Write one 32-bit word; raise :class:`BusError` on an error response."""
