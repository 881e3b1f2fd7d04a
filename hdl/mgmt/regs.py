r"""The register description: written once, everything else is generated from it.

* the gateware decoder (:class:`hdl.mgmt.csr.CsrSlave`) builds its address decode from
  :func:`build_register_map`;
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
from dataclasses import dataclass

from hdl.config import NicConfig
from hdl.packet.meta import COUNTED_DROP_REASONS, FRAME_LEN_BITS, MalformedReason

__all__ = ["Access", "Increment", "Register", "BlockType", "Block", "RegisterMap", "build_register_map",
           "BLOCK_STRIDE", "HEADER_WORDS", "MAGIC", "HW_VERSION", "BLOCK_TYPES",
           "IDENTITY", "PORT", "PARSER", "BRIDGE", "LINETEST"]

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

    The owners in :class:`hdl.top.NicTop` drive a packet, drop, parser or bridge event as one
    bit, ``rx_bytes`` with the frame length of a frame record, ``tx_bytes`` with the bytes of one
    egress beat (:meth:`RegisterMap.max_increment` turns these into numbers). A counter store
    that accumulates increments before adding them (``CsrSlave(counter_store="bram")``) sizes its
    accumulators and increment inputs from it.
    """
    EVENT = "event"              #: 0 or 1 per cycle
    FRAME_BYTES = "frame_bytes"  #: one frame's length at once: up to 2**FRAME_LEN_BITS - 1
    BEAT_BYTES = "beat_bytes"    #: the bytes of one datapath beat: up to data_width // 8


@dataclass(frozen=True)
class Register:
    """One register of a block type. ``offset`` is in bytes from the block base."""
    name: str
    offset: int
    access: Access
    doc: str
    reset: int = 0
    increment: Increment = Increment.EVENT  #: COUNTER64 only: what one cycle can add

    @property
    def words(self) -> int:
        return 2 if self.access is Access.COUNTER64 else 1


@dataclass(frozen=True)
class BlockType:
    """A kind of register block: its type id, version and registers after the header."""
    type_id: int
    version: int
    name: str
    doc: str
    registers: tuple[Register, ...]

    def register(self, name: str) -> Register:
        for reg in self.registers:
            if reg.name == name:
                return reg
        raise KeyError(f"block {self.name} has no register {name!r}")

    @property
    def size(self) -> int:
        last = max(self.registers, key=lambda r: r.offset)
        return last.offset + 4 * last.words


@dataclass(frozen=True)
class Block:
    """One instance of a block type placed in the address map.

    ``values`` gives the CONST registers' values and RW reset values of this instance.
    ``counters`` maps each COUNTER64 register name to the event it counts (a key the gateware
    and the model both know, e.g. ``("port", 0, "rx_packets")``).
    """
    type: BlockType
    base: int
    instance: int
    next: int
    values: tuple[tuple[str, int], ...] = ()
    counters: tuple[tuple[str, tuple], ...] = ()

    def addr(self, name: str) -> int:
        if name in HEADER_WORDS:
            return self.base + 4 * HEADER_WORDS.index(name)
        return self.base + self.type.register(name).offset

    def value(self, name: str) -> int:
        return dict(self.values)[name]

    def header_values(self) -> dict[str, int]:
        return {"ID": self.type.type_id << 16 | self.type.version, "NEXT": self.next,
                "INSTANCE": self.instance, "SIZE": self.type.size}


def _counters(start: int, names_docs) -> tuple[Register, ...]:
    """COUNTER64 registers from ``(name, doc)`` or ``(name, doc, increment)``, 8 bytes apart."""
    return tuple(Register(name, start + 8 * i, Access.COUNTER64, doc, increment=rest[0] if rest else Increment.EVENT)
                 for i, (name, doc, *rest) in enumerate(names_docs))


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

_PORT_COUNTERS = [
    ("RX_PACKETS", "Frames received on this port (every frame, dropped or not)."),
    ("RX_BYTES", "Bytes of frames received (frame length without FCS; saturates per frame at 16383).",
     Increment.FRAME_BYTES),
    ("TX_PACKETS", "Frames sent out of this port."),
    ("TX_BYTES", "Bytes of frames sent.", Increment.BEAT_BYTES),
] + [(f"DROP_{r.name}", f"Frames received on this port and dropped: {r.label}.") for r in COUNTED_DROP_REASONS]

PORT = BlockType(0x0010, 1, "PORT", "One per packet port: identity and 64-bit traffic counters.", (
    Register("NAME_LO", 0x10, Access.CONST, "Port name, ASCII, first four characters (first in bits 7:0)."),
    Register("NAME_HI", 0x14, Access.CONST, "Port name, ASCII, characters five to eight."),
    Register("FLAGS", 0x18, Access.CONST, "Bit 0: attached to a physical PHY (runt check applies)."),
) + _counters(0x20, _PORT_COUNTERS))

PARSER = BlockType(0x0020, 1, "PARSER", "Header parser: frames parsed and malformed frames by reason.", (
    _counters(0x10, [("PACKETS", "Frames parsed.")]
              + [(f"MALFORMED_{r.name}", f"Frames flagged malformed: {r.label} (a frame may count "
                  "under several reasons).") for r in MalformedReason])))

BRIDGE = BlockType(0x0030, 1, "BRIDGE", "UART-to-CSR bridge (board builds): request frames by outcome.", (
    _counters(0x10, [
        ("FRAMES_OK", "Requests executed and answered."),
        ("BAD_CHECKSUM", "Requests rejected for a bad CRC (never executed)."),
        ("BAD_COMMAND", "Requests rejected for an unknown command (never executed)."),
        ("TRUNCATED", "Requests abandoned mid-frame (inter-byte timeout or UART framing error)."),
    ])))

def _template_word(i: int) -> int:
    from hdl.board.linetest import default_template
    return int.from_bytes(default_template()[4 * i:4 * i + 4], "little")


def _default_seed() -> int:
    from hdl.board.linetest import DEFAULT_SEED
    return DEFAULT_SEED


LINETEST = BlockType(0x0040, 1, "LINETEST", "Built-in line-rate tester (board builds): a frame generator on "
                     "every ingress port and a signature checker on every egress port.", (
    Register("CONTROL", 0x10, Access.RW, "Bit 0: generators on (they take over the ingress ports)."),
    Register("FRAME_LEN", 0x14, Access.RW, "Generated frame length in bytes (60..max_frame).", reset=64),
    Register("GAP", 0x18, Access.RW, "Idle cycles between generated frames (bits 15:0; the rest is ignored).",
             reset=0),
    Register("SEED", 0x1C, Access.RW, "Payload LFSR seed (nonzero).", reset=_default_seed()),
) + tuple(Register(f"SIGNATURE_{i}", 0x20 + 4 * i, Access.STATUS,
                   f"Egress port {i}: XOR-rotate signature of every byte sent since reset.") for i in range(4))
  + tuple(Register(f"TEMPLATE_{i}", 0x40 + 4 * i, Access.RW,
                   f"Generated frame bytes {4 * i}..{4 * i + 3} (first in bits 7:0); reset: an "
                   "Ethernet/IPv4/UDP header.", reset=_template_word(i)) for i in range(16)))

BLOCK_TYPES = {t.type_id: t for t in (IDENTITY, PORT, PARSER, BRIDGE, LINETEST)}


def _name_words(name: str) -> tuple[int, int]:
    raw = name.encode("ascii")[:8].ljust(8, b"\0")
    return int.from_bytes(raw[:4], "little"), int.from_bytes(raw[4:], "little")


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

    def block(self, type_name: str, instance: int = 0) -> Block:
        for b in self.blocks:
            if b.type.name == type_name and b.instance == instance:
                return b
        raise KeyError(f"no {type_name} block with instance {instance}")

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

    def counter_events(self) -> list[tuple]:
        """Every counted event key, in address order (the gateware's counter array order)."""
        return [ev for b in self.blocks for _, ev in b.counters]

    def max_increment(self, key) -> int:
        """The most the counter of event ``key`` can be incremented by in one clock cycle.

        From the counter register's :class:`Increment`: 1 for events, ``2**FRAME_LEN_BITS - 1``
        for frame bytes, :attr:`bytes_per_beat` for beat bytes.
        """
        for b in self.blocks:
            for name, ev in b.counters:
                if ev == key:
                    inc = b.type.register(name).increment
                    return {Increment.EVENT: 1, Increment.FRAME_BYTES: 2 ** FRAME_LEN_BITS - 1,
                            Increment.BEAT_BYTES: self.bytes_per_beat}[inc]
        raise KeyError(f"no counter for event {key!r}")

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
        for t in BLOCK_TYPES.values():
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
            note = ""
            if b.type is PORT:
                lo, hi = b.value("NAME_LO"), b.value("NAME_HI")
                note = "port " + (lo.to_bytes(4, "little") + hi.to_bytes(4, "little")).rstrip(b"\0").decode()
            lines.append(f"| 0x{b.base:04x} | {b.type.name} | {b.instance} | {note} |")
        return "\n".join(lines) + "\n"


def build_register_map(config: NicConfig) -> RegisterMap:
    """Place the blocks for ``config``: IDENTITY, one PORT per port, PARSER, then BRIDGE and
    LINETEST when the build has them."""
    major, minor, patch = HW_VERSION
    placed: list[tuple[BlockType, int, dict, dict]] = [
        (IDENTITY, 0, {
            "MAGIC": MAGIC, "HW_VERSION": major << 16 | minor << 8 | patch,
            "DATA_WIDTH": config.data_width, "NUM_PORTS": len(config.ports),
            "CLOCK_KHZ": round(config.clock_mhz * 1000), "HEADER_WINDOW": config.header_window,
            "MAX_FRAME": config.max_frame, "BUFFER_BYTES": config.buffer_bytes,
            "COUNTER_WIDTH": config.counter_width,
        }, {}),
    ]
    counter_keys = [name.lower() for name, *_ in _PORT_COUNTERS]
    for index, name in enumerate(config.ports):
        lo, hi = _name_words(name)
        placed.append((PORT, index, {"NAME_LO": lo, "NAME_HI": hi, "FLAGS": int(config.is_physical(name))},
                       {reg: ("port", index, key) for reg, key in zip([n for n, *_ in _PORT_COUNTERS], counter_keys)}))
    placed.append((PARSER, 0, {}, {"PACKETS": ("parser", "packets"),
                                   **{f"MALFORMED_{r.name}": ("parser", "malformed", r.label)
                                      for r in MalformedReason}}))
    if config.uart_bridge:
        placed.append((BRIDGE, 0, {}, {name: ("bridge", name.lower()) for name in
                                       ("FRAMES_OK", "BAD_CHECKSUM", "BAD_COMMAND", "TRUNCATED")}))
    if config.line_tester:
        placed.append((LINETEST, 0, {}, {}))
    blocks = []
    for i, (btype, instance, values, counters) in enumerate(placed):
        base = i * BLOCK_STRIDE
        nxt = base + BLOCK_STRIDE if i + 1 < len(placed) else 0
        for reg in btype.registers:
            if reg.access is Access.RW:
                values.setdefault(reg.name, reg.reset)
        assert btype.size <= BLOCK_STRIDE, btype.name
        blocks.append(Block(btype, base, instance, nxt, tuple(values.items()), tuple(counters.items())))
    return RegisterMap(blocks, config.counter_width, bytes_per_beat=config.bytes_per_beat)
