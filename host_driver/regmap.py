"""The driver's view of the register map, taken from :mod:`hdl.mgmt.regs` (nothing re-declared here).

Besides re-exporting the description, this module gives the helpers the driver needs to go
from a discovered block (type id, version, base address) to register addresses and to the
place each counter takes in ``counters.json``.
"""

from __future__ import annotations

from hdl.datapath.ports import PORT
from hdl.mgmt.regs import (
    BLOCK_STRIDE,
    BLOCK_TYPES,
    HEADER_WORDS,
    HW_VERSION,
    IDENTITY,
    MAGIC,
    Access,
    Block,
    BlockType,
    Register,
    RegisterMap,
)
from hdl.parser.counters import PARSER
from hdl.top import build_register_map

__all__ = ["Access", "Register", "BlockType", "Block", "RegisterMap", "build_register_map",
           "BLOCK_STRIDE", "HEADER_WORDS", "MAGIC", "HW_VERSION", "BLOCK_TYPES", "IDENTITY", "PORT", "PARSER",
           "header_offset", "split_id", "counter_registers", "const_registers", "counter_path",
           "decode_name", "format_version", "MAX_BLOCKS"]

#: Discovery gives up after this many blocks (a corrupt or looping chain).
MAX_BLOCKS = 256


def header_offset(word: str) -> int:
    """Byte offset of a block header word (``"ID"``, ``"NEXT"``, ...) from the block base."""
    return 4 * HEADER_WORDS.index(word)


def split_id(value: int) -> tuple[int, int]:
    """Split an ID word into ``(type_id, version)``."""
    return value >> 16, value & 0xFFFF


def counter_registers(btype: BlockType) -> list[Register]:
    """The block type's 64-bit counters, in address order."""
    return sorted((r for r in btype.registers if r.access is Access.COUNTER64), key=lambda r: r.offset)


def const_registers(btype: BlockType) -> list[Register]:
    """The block type's constant registers, in address order."""
    return sorted((r for r in btype.registers if r.access is Access.CONST), key=lambda r: r.offset)


def counter_path(btype: BlockType, reg_name: str) -> tuple[str, ...]:
    """Where a counter sits inside its block's entry of ``counters.json`` (the register's ``path``).

    ``("rx_packets",)`` for a port counter, ``("malformed", "runt")`` for a parser counter.
    """
    return btype.register(reg_name).path


def decode_name(lo: int, hi: int) -> str:
    """Port name from the NAME_LO/NAME_HI words (ASCII, first character in bits 7:0)."""
    raw = lo.to_bytes(4, "little") + hi.to_bytes(4, "little")
    return raw.rstrip(b"\0").decode("ascii", errors="replace")


def format_version(value: int) -> str:
    """HW_VERSION word (major << 16 | minor << 8 | patch) as ``"major.minor.patch"``."""
    return f"{value >> 16 & 0xFFFF}.{value >> 8 & 0xFF}.{value & 0xFF}"
