r"""The register schema: written once, everything else is generated from it.

A block that has registers declares them next to its component, as a :class:`BlockType` whose
counters name the events they count with enum members (``PORT`` in :mod:`hdl.datapath.ports`,
``PARSER`` in :mod:`hdl.parser.counters`, ``BRIDGE`` and ``LINETEST`` in :mod:`hdl.board`).
The NIC top places the blocks of the components it instantiates
(:func:`hdl.top.build_register_map`), and from that one map:

* the gateware decoder (:class:`hdl.mgmt.csr.CsrSlave`) builds its address decode, and a block's
  owner reaches its registers by object: ``csr.count(block.event(PortCounter.RX_PACKETS))``,
  ``csr.rw(block, linetest.FRAME_LEN)``;
* the host driver's map (:mod:`host_driver.regmap`) and the golden model's register file import it;
* ``secnic regmap --format md|json`` renders docs/registers.md (checked up to date by a test).

Layout rules
------------
The address space is a chain of self-describing blocks, each `BLOCK_STRIDE` (0x100) bytes, the first at
address 0. Every block starts with a four-word header:

| offset | name | content |
|---|---|---|
| 0x00 | ID | `type << 16 \| version` |
| 0x04 | NEXT | byte address of the next block, 0 for the last one |
| 0x08 | INSTANCE | instance number of this block type (the port number for PORT) |
| 0x0C | SIZE | bytes of registers used in this block, header included |

64-bit counters occupy two words, low word first. Reading the low word latches the high word of
the same counter; reading the high word returns that latch, so a LO-then-HI read pair is one
coherent 64-bit snapshot even while traffic runs. Reads of unmapped addresses and writes to
read-only registers answer SLVERR.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from hdl.config import NicConfig
from hdl.packet.meta import FRAME_LEN_BITS

__all__ = ["Access", "Increment", "Register", "BlockType", "Block", "Event", "RegisterMap", "RegisterMapBuilder",
           "counters", "BLOCK_STRIDE", "HEADER_WORDS", "MAGIC", "HW_VERSION", "BLOCK_TYPES", "IDENTITY",
           "identity_values", "OKAY", "SLVERR"]

BLOCK_STRIDE = 0x100
HEADER_WORDS = ("ID", "NEXT", "INSTANCE", "SIZE")
MAGIC = 0x534E4943  # "SNIC"
HW_VERSION = (0, 1, 0)
OKAY, SLVERR = 0, 2


class Access(enum.Enum):
    CONST = "const"          #: read-only, fixed at build time
    RW = "rw"                #: read/write storage
    COUNTER64 = "counter64"  #: read-only 64-bit event counter (two words, LO then HI)
    STATUS = "status"        #: read-only live value driven by the gateware


class Increment(enum.Enum):
    """What a counter can add in one clock cycle: its largest increment comes from this.

    A block drives a packet, drop, parser or bridge event as one bit, ``rx_bytes`` with the
    frame length of a frame record, ``tx_bytes`` with the bytes of one egress beat
    (:meth:`RegisterMap.max_increment` turns these into numbers). A counter store that
    accumulates increments before adding them (the CSR's block-RAM store) sizes its
    accumulators and increment inputs from it.
    """
    EVENT = "event"              #: 0 or 1 per cycle
    FRAME_BYTES = "frame_bytes"  #: one frame's length at once: up to 2**FRAME_LEN_BITS - 1
    BEAT_BYTES = "beat_bytes"    #: the bytes of one datapath beat: up to data_width // 8


@dataclass(frozen=True)
class Register:
    """One register of a block type. ``offset`` is in bytes from the block base.

    A COUNTER64 register counts ``event`` (an enum member the owning block declares, e.g.
    ``PortCounter.RX_PACKETS`` or ``MalformedReason.RUNT``) and sits at ``path`` inside its
    block's entry of ``counters.json`` (default: the lower-cased register name).
    """
    name: str
    offset: int
    access: Access
    doc: str
    reset: int = 0
    increment: Increment = Increment.EVENT  #: COUNTER64 only: what one cycle can add
    event: enum.Enum | None = None          #: COUNTER64 only: the event counted
    path: tuple[str, ...] = ()              #: COUNTER64 only: place in counters.json

    def __post_init__(self):
        if self.access is Access.COUNTER64 and self.event is None:
            raise ValueError(f"counter register {self.name} needs the event it counts")
        if not self.path:
            object.__setattr__(self, "path", (self.name.lower(),))

    @property
    def words(self) -> int:
        return 2 if self.access is Access.COUNTER64 else 1


#: Every block type by type id, filled as block types are defined next to their components
#: (the driver decodes discovered blocks and docs/registers.md lists the types from it).
BLOCK_TYPES: dict[int, BlockType] = {}


@dataclass(frozen=True)
class BlockType:
    """A kind of register block: its type id, version and registers after the header.

    Defined once, next to the component that owns the registers; defining it registers it in
    :data:`BLOCK_TYPES` (type ids must be unique).
    """
    type_id: int
    version: int
    name: str
    doc: str
    registers: tuple[Register, ...]
    #: The notes column of docs/registers.md for a placed block (e.g. a port's name).
    describe: Callable[[Block], str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        other = BLOCK_TYPES.get(self.type_id)
        if other is not None and other != self:
            raise ValueError(f"block type id 0x{self.type_id:04x} of {self.name} is taken by {other.name}")
        if self.size > BLOCK_STRIDE:
            raise ValueError(f"block type {self.name} needs {self.size} bytes, more than {BLOCK_STRIDE}")
        BLOCK_TYPES[self.type_id] = self

    def __repr__(self):
        return f"BlockType({self.name}, 0x{self.type_id:04x}, v{self.version})"

    def register(self, name: str) -> Register:
        for reg in self.registers:
            if reg.name == name:
                return reg
        raise KeyError(f"block {self.name} has no register {name!r}")

    def counter(self, event: enum.Enum) -> Register:
        """The COUNTER64 register that counts ``event``."""
        for reg in self.registers:
            if reg.event is event:
                return reg
        raise KeyError(f"block {self.name} counts no event {event!r}")

    @property
    def size(self) -> int:
        last = max(self.registers, key=lambda r: r.offset)
        return last.offset + 4 * last.words


class Event(NamedTuple):
    """One counted event of one block instance: the key of a counter in the CSR and the model.

    Made by :meth:`Block.event`, never by hand.
    """
    block: str
    instance: int
    what: enum.Enum

    def __str__(self):
        return f"{self.block}#{self.instance}.{self.what.name}"

    @property
    def label(self) -> str:
        """Identifier-safe name (``port0_rx_packets``), for signal names."""
        reg_name = BLOCK_TYPES_BY_NAME[self.block].counter(self.what).name
        return f"{self.block.lower()}{self.instance}_{reg_name.lower()}"


class _TypesByName(dict):
    def __missing__(self, name):
        for btype in BLOCK_TYPES.values():
            if btype.name == name:
                return btype
        raise KeyError(f"no block type named {name!r}")


BLOCK_TYPES_BY_NAME = _TypesByName()


@dataclass(frozen=True)
class Block:
    """One instance of a block type placed in the address map.

    ``values`` gives the CONST registers' values and RW reset values of this instance.
    """
    type: BlockType
    base: int
    instance: int
    next: int
    values: tuple[tuple[str, int], ...] = ()

    def addr(self, name: str) -> int:
        if name in HEADER_WORDS:
            return self.base + 4 * HEADER_WORDS.index(name)
        return self.base + self.type.register(name).offset

    def value(self, name: str) -> int:
        return dict(self.values)[name]

    def header_values(self) -> dict[str, int]:
        return {"ID": self.type.type_id << 16 | self.type.version, "NEXT": self.next,
                "INSTANCE": self.instance, "SIZE": self.type.size}

    def event(self, what: enum.Enum) -> Event:
        """The key of this block's counter for ``what`` (KeyError if the block does not count it)."""
        self.type.counter(what)
        return Event(self.type.name, self.instance, what)

    @property
    def events(self) -> list[Event]:
        """Every event this block counts, in address order."""
        return [Event(self.type.name, self.instance, r.event) for r in self.type.registers
                if r.access is Access.COUNTER64]

    @property
    def counters(self) -> tuple[tuple[str, Event], ...]:
        """``(register name, event)`` of every counter, in address order."""
        return tuple((r.name, Event(self.type.name, self.instance, r.event)) for r in self.type.registers
                     if r.access is Access.COUNTER64)


def counters(start: int, events) -> tuple[Register, ...]:
    """COUNTER64 registers 8 bytes apart from ``start``, one per ``(event, name, doc[, increment[, path]])``."""
    regs = []
    for i, (event, name, doc, *rest) in enumerate(events):
        increment = rest[0] if rest else Increment.EVENT
        path = rest[1] if len(rest) > 1 else ()
        regs.append(Register(name, start + 8 * i, Access.COUNTER64, doc, increment=increment, event=event,
                             path=path))
    return tuple(regs)


IDENTITY = BlockType(0x0001, 1, "IDENTITY", "Who this NIC is and how it was built.", (
    Register("MAGIC", 0x10, Access.CONST, 'Constant 0x534E4943, "SNIC".'),
    Register("HW_VERSION", 0x14, Access.CONST, "Gateware version: major << 16 \\| minor << 8 \\| patch."),
    Register("DATA_WIDTH", 0x18, Access.CONST, "Datapath width W in bits."),
    Register("NUM_PORTS", 0x1C, Access.CONST, "Number of packet ports."),
    Register("CLOCK_KHZ", 0x20, Access.CONST, "Core clock the build targets, in kHz."),
    Register("HEADER_WINDOW", 0x24, Access.CONST, "Bytes at the start of a frame the parser sees."),
    Register("MAX_FRAME", 0x28, Access.CONST, "Largest frame carried, in bytes (longer: dropped as oversize)."),
    Register("BUFFER_BYTES", 0x2C, Access.CONST, "Store-and-forward packet buffer size in bytes."),
    Register("SCRATCH", 0x30, Access.RW, "Free read/write word for bus checks."),
    Register("COUNTER_WIDTH", 0x34, Access.CONST, "Bits kept per event counter (64, or 32 on small FPGAs)."),
))


def identity_values(config: NicConfig) -> dict[str, int]:
    """The IDENTITY block's constants for a build of ``config``."""
    major, minor, patch = HW_VERSION
    return {"MAGIC": MAGIC, "HW_VERSION": major << 16 | minor << 8 | patch,
            "DATA_WIDTH": config.data_width, "NUM_PORTS": len(config.ports),
            "CLOCK_KHZ": round(config.clock_mhz * 1000), "HEADER_WINDOW": config.header_window,
            "MAX_FRAME": config.max_frame, "BUFFER_BYTES": config.buffer_bytes,
            "COUNTER_WIDTH": config.counter_width}


class RegisterMap:
    """All blocks of one NIC build, in chain order."""

    def __init__(self, blocks: list[Block], counter_width: int = 64, *, bytes_per_beat: int = 8):
        self.blocks = blocks
        self.counter_width = counter_width
        self.bytes_per_beat = bytes_per_beat

    def __repr__(self):
        return f"RegisterMap({len(self.blocks)} blocks, {self.address_width} address bits)"

    @property
    def address_width(self) -> int:
        end = self.blocks[-1].base + BLOCK_STRIDE
        return max(12, (end - 1).bit_length())

    def block(self, btype: BlockType | str, instance: int = 0) -> Block:
        """The placed block of type ``btype`` (a :class:`BlockType` or its name) and ``instance``."""
        name = btype if isinstance(btype, str) else btype.name
        for b in self.blocks:
            if b.type.name == name and b.instance == instance:
                return b
        raise KeyError(f"no {name} block with instance {instance}")

    def blocks_of(self, btype: BlockType) -> list[Block]:
        """Every placed block of type ``btype``, in instance order."""
        return sorted((b for b in self.blocks if b.type is btype), key=lambda b: b.instance)

    def words(self):
        """Yield ``(address, block, name, access, word_index)`` for every mapped 32-bit word."""
        for b in self.blocks:
            for i, name in enumerate(HEADER_WORDS):
                yield b.base + 4 * i, b, name, Access.CONST, 0
            for reg in b.type.registers:
                for w in range(reg.words):
                    yield b.base + reg.offset + 4 * w, b, reg.name, reg.access, w

    def const_value(self, block: Block, name: str) -> int:
        if name in HEADER_WORDS:
            return block.header_values()[name]
        return block.value(name)

    def counter_events(self) -> list[Event]:
        """Every counted event, in address order (the gateware's counter array order)."""
        return [ev for b in self.blocks for ev in b.events]

    def max_increment(self, event: Event) -> int:
        """The most the counter of ``event`` can be incremented by in one clock cycle.

        From the counter register's :class:`Increment`: 1 for events, ``2**FRAME_LEN_BITS - 1``
        for frame bytes, :attr:`bytes_per_beat` for beat bytes.
        """
        if event not in self.counter_events():
            raise KeyError(f"no counter for event {event!r}")
        inc = BLOCK_TYPES_BY_NAME[event.block].counter(event.what).increment
        return {Increment.EVENT: 1, Increment.FRAME_BYTES: 2 ** FRAME_LEN_BITS - 1,
                Increment.BEAT_BYTES: self.bytes_per_beat}[inc]

    def to_json(self) -> str:
        out = []
        for b in self.blocks:
            regs = [{"name": n, "offset": 4 * i, "access": "const"} for i, n in enumerate(HEADER_WORDS)]
            for r in b.type.registers:
                entry = {"name": r.name, "offset": r.offset, "access": r.access.value, "doc": r.doc}
                if r.access is Access.CONST:
                    entry["value"] = b.value(r.name)
                elif r.access is Access.RW:
                    entry["reset"] = r.reset
                regs.append(entry)
            out.append({"type": b.type.name, "type_id": b.type.type_id, "version": b.type.version,
                        "instance": b.instance, "base": b.base, "next": b.next, "registers": regs})
        return json.dumps({"block_stride": BLOCK_STRIDE, "blocks": out}, indent=2) + "\n"

    def to_markdown(self) -> str:
        lines = ["# Register map", "",
                 "Generated by `secnic regmap --format md` from `hdl/mgmt/regs.py`; do not edit by hand.",
                 "This is the default build (see `hdl/config.py`); other builds have the same blocks with",
                 "other constants and one PORT block per port.", "",
                 "AXI4-Lite, 32-bit data. " + __doc__.split("Layout rules\n------------\n", 1)[1].strip(), "",
                 "## Block types", ""]
        # Every block type, including those only board builds have (BRIDGE, LINETEST).
        for t in sorted(BLOCK_TYPES.values(), key=lambda t: t.type_id):
            lines += [f"### {t.name} (type 0x{t.type_id:04x}, version {t.version})", "", t.doc, "",
                      "| offset | name | access | description |", "|---|---|---|---|"]
            for r in t.registers:
                span = f"0x{r.offset:02x}" + (f"-0x{r.offset + 7:02x}" if r.words == 2 else "")
                lines.append(f"| {span} | {r.name} | {r.access.value} | {r.doc} |")
            lines.append("")
        lines += ["## Blocks in the default build", "",
                  "Board builds add BRIDGE and LINETEST after PARSER (see `hdl/board/boards.py`).", "",
                  "| base | block | instance | notes |", "|---|---|---|---|"]
        for b in self.blocks:
            note = b.type.describe(b) if b.type.describe else ""
            lines.append(f"| 0x{b.base:04x} | {b.type.name} | {b.instance} | {note} |")
        return "\n".join(lines) + "\n"


class RegisterMapBuilder:
    """Places blocks one after the other, in the order they are added, `BLOCK_STRIDE` apart.

    The NIC top adds a block for each component that has registers
    (:func:`hdl.top.build_register_map`); nothing here knows which blocks exist.
    """

    def __init__(self, counter_width: int = 64, *, bytes_per_beat: int = 8):
        self.counter_width, self.bytes_per_beat = counter_width, bytes_per_beat
        self._placed: list[tuple[BlockType, int, dict[str, int]]] = []

    def add(self, btype: BlockType, instance: int = 0, values: dict[str, int] | None = None) -> None:
        """Place a block of ``btype``; ``values`` gives its CONST values (and RW resets, else the defaults)."""
        values = dict(values or {})
        for reg in btype.registers:
            if reg.access is Access.RW:
                values.setdefault(reg.name, reg.reset)
            elif reg.access is Access.CONST and reg.name not in values:
                raise ValueError(f"block {btype.name}#{instance}: no value for constant {reg.name}")
        self._placed.append((btype, instance, values))

    def build(self) -> RegisterMap:
        blocks = []
        for i, (btype, instance, values) in enumerate(self._placed):
            base = i * BLOCK_STRIDE
            nxt = base + BLOCK_STRIDE if i + 1 < len(self._placed) else 0
            blocks.append(Block(btype, base, instance, nxt, tuple(values.items())))
        return RegisterMap(blocks, self.counter_width, bytes_per_beat=self.bytes_per_beat)
