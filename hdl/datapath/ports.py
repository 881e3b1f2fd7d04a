"""The PORT register block: one per packet port, its identity and traffic counters.

The counters are driven from the forwarder's per-frame record (receive side and drops) and from
each egress port's beats (transmit side): see :meth:`hdl.top.NicTop.elaborate`.
"""

from __future__ import annotations

import enum

from hdl.config import NicConfig
from hdl.mgmt.regs import Access, Block, BlockType, Increment, Register, counters
from hdl.packet.meta import COUNTED_DROP_REASONS

__all__ = ["PortCounter", "PORT", "port_values"]


class PortCounter(enum.Enum):
    """Traffic events of a port (drops are counted per :class:`~hdl.packet.meta.DropReason`)."""
    RX_PACKETS = "rx_packets"
    RX_BYTES = "rx_bytes"
    TX_PACKETS = "tx_packets"
    TX_BYTES = "tx_bytes"


def _describe(block: Block) -> str:
    raw = block.value("NAME_LO").to_bytes(4, "little") + block.value("NAME_HI").to_bytes(4, "little")
    return "port " + raw.rstrip(b"\0").decode()


PORT = BlockType(0x0010, 1, "PORT", "One per packet port: identity and 64-bit traffic counters.", (
    Register("NAME_LO", 0x10, Access.CONST, "Port name, ASCII, first four characters (first in bits 7:0)."),
    Register("NAME_HI", 0x14, Access.CONST, "Port name, ASCII, characters five to eight."),
    Register("FLAGS", 0x18, Access.CONST, "Bit 0: attached to a physical PHY (runt check applies)."),
) + counters(0x20, [
    (PortCounter.RX_PACKETS, "RX_PACKETS", "Frames received on this port (every frame, dropped or not)."),
    (PortCounter.RX_BYTES, "RX_BYTES", "Bytes of frames received (frame length without FCS; saturates per "
     "frame at 16383).", Increment.FRAME_BYTES),
    (PortCounter.TX_PACKETS, "TX_PACKETS", "Frames sent out of this port."),
    (PortCounter.TX_BYTES, "TX_BYTES", "Bytes of frames sent.", Increment.BEAT_BYTES),
] + [(r, f"DROP_{r.name}", f"Frames received on this port and dropped: {r.label}.") for r in COUNTED_DROP_REASONS]),
    describe=_describe)


def port_values(config: NicConfig, index: int) -> dict[str, int]:
    """The PORT block's constants for port ``index`` of ``config``."""
    raw = config.ports[index].encode("ascii")[:8].ljust(8, b"\0")
    return {"NAME_LO": int.from_bytes(raw[:4], "little"), "NAME_HI": int.from_bytes(raw[4:], "little"),
            "FLAGS": int(config.is_physical(config.ports[index]))}
