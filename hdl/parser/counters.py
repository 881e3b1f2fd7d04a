"""The PARSER register block: frames parsed and malformed frames by reason.

Counted from the forwarder's per-frame record (the parser's metadata), whichever parser
architecture the build uses.
"""

from __future__ import annotations

import enum

from hdl.mgmt.regs import BlockType, Increment, counters
from hdl.packet.meta import MalformedReason

__all__ = ["ParserCounter", "PARSER"]


class ParserCounter(enum.Enum):
    """Parser events (malformed frames are counted per :class:`~hdl.packet.meta.MalformedReason`)."""
    PACKETS = "packets"


PARSER = BlockType(0x0020, 1, "PARSER", "Header parser: frames parsed and malformed frames by reason.", counters(
    0x10, [(ParserCounter.PACKETS, "PACKETS", "Frames parsed.")]
    + [(r, f"MALFORMED_{r.name}", f"Frames flagged malformed: {r.label} (a frame may count under several "
        "reasons).", Increment.EVENT, ("malformed", r.label)) for r in MalformedReason]))
