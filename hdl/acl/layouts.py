"""ACL classifier key, entry word and table geometry: the one definition gateware and driver share.

The classifier is a TCAM emulated in block RAM (docs/acl.md "Technique"). A ternary entry is a
value/mask pair over the *search word*: the :class:`AclKey` of a packet followed by one
generation bit (:data:`SEARCH_BITS` bits). The search word is cut into chunks of ``k`` bits; for
every chunk there is a table of ``2**k`` rows whose bit ``e`` says "entry ``e`` accepts this chunk
value". A key matches entry ``e`` when every chunk's row has bit ``e`` set. The classifier reads
one chunk per group per cycle over the ``R`` cycles a key is given, so a block RAM of 512 x 36 bits
holds ``R`` chunk tables of ``2**k = 512 / R`` rows for 36 entries (:class:`TcamGeometry`).

The host never writes single bits: it writes *rows* (one row of every group at once for one
column of 36 entries) and *actions* (entry index -> :class:`AclAction`). :func:`TcamGeometry.rows`
turns ternary entries into those rows; ``host_driver.rules.program`` calls it.
"""


from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from amaranth.hdl import Shape
from amaranth.lib import data
from amaranth.lib import enum as hdl_enum

__all__ = ["AclKey", "AclAction", "AclActionWord", "AclEntry", "TcamGeometry", "KEY_BITS", "SEARCH_BITS",
           "SLOT_BITS", "IN_PORT_BITS", "COLUMN_ENTRIES", "BRAM_ROWS", "key_fields", "field_slice"]

#: Ingress port numbers up to 15 (the NIC's port_bits is 3 today).
IN_PORT_BITS = 4
#: Counter slots (one per rule, shared by its entries): up to 4096.
SLOT_BITS = 12
#: One ECP5 block RAM (DP16KD as PDPW16KD): 512 rows of 36 bits.
COLUMN_ENTRIES = 36
BRAM_ROWS = 512


class AclKey(data.Struct):
    """The packet fields an ACL entry can test, built per packet by :func:`hdl.acl.classifier.acl_key_from_meta`.

    Addresses are 128 bits with IPv4 in the low 32 bits (upper bits zero), as in
    :class:`hdl.packet.meta.PacketMeta`; the family is told by ``ethertype``. ``tcp_flags`` is
    CWR..FIN (the parser's NS bit is not part of the key). Fields of an absent layer are zero
    (a packet without L4 ports has ports 0, as in Suricata).
    """
    in_port: IN_PORT_BITS
    vlan_tagged: 1
    vlan_vid: 12          # outer tag
    ethertype: 16
    ip_src: 128
    ip_dst: 128
    ip_proto: 8
    sport: 16
    dport: 16
    tcp_flags: 8
    icmp_type: 8
    icmp_code: 8
    fragment: 1
    ttl: 8
    flow_established: 1   # from the flow table
    flow_to_server: 1     # from the flow table


#: Bits of :class:`AclKey` and of the search word (key, then the generation bit).
KEY_BITS = Shape.cast(AclKey).width
SEARCH_BITS = KEY_BITS + 1


class AclAction(hdl_enum.Enum, shape=3):
    """What the first matching entry does: Suricata's four actions in its action order (pass first),
    then the NIC's own two (bit 2 set: not a decision; docs/security.md, "ACL actions punt and
    mirror"). The compiler places PUNT and MIRROR entries after every deciding entry, so their first
    hit means no deciding entry matched."""
    PASS = 0
    DROP = 1
    REJECT = 2
    ALERT = 3
    PUNT = 4      # hand the frame to the host path (the record's acl_punt)
    MIRROR = 5    # a copy for the monitor port (recorded only this round)

    @property
    def decides(self) -> bool:
        """A Suricata action (pass, drop, reject, alert): the verdict is this entry's."""
        return self.value < 4


class AclActionWord(data.Struct):
    """Per-entry result data, written by index through the action port."""
    action: AclAction
    slot: SLOT_BITS       # hit counter index: the rule's, shared by all its entries


class AclEntry(data.Struct):
    """The entry word: one ternary entry as the driver describes it (mask bit 1 = compare).

    ``gen_care`` 0 makes the entry live in both generations; 1 only in generation ``gen``.
    An all-zero ``valid`` entry is written as rows that match nothing.
    """
    value: AclKey
    mask: AclKey
    gen: 1
    gen_care: 1
    valid: 1
    result: AclActionWord


def key_fields() -> dict[str, tuple[int, int]]:
    """``{field: (lsb, width)}`` of :class:`AclKey` in the search word."""
    return {name: (f.offset, Shape.cast(f.shape).width) for name, f in data.Layout.cast(AclKey)}


def field_slice(name: str) -> tuple[int, int]:
    """(lsb, width) of one :class:`AclKey` field."""
    return key_fields()[name]


@dataclass(frozen=True)
class TcamGeometry:
    """How ``entries`` ternary entries and a key every ``cycles_per_key`` cycles map onto block RAM.

    ``chunk_bits`` = log2(512 / R): each group RAM holds R chunk tables of 2**k rows; ``groups``
    RAMs side by side cover the search word; ``columns`` of 36 entries cover the table. A RAM row
    address is ``cycle << chunk_bits | chunk value``.
    """
    entries: int
    cycles_per_key: int

    def __post_init__(self):
        r = self.cycles_per_key
        if not isinstance(r, int) or r < 2 or r > 64 or r & (r - 1):
            raise ValueError(f"cycles_per_key must be a power of two in 2..64, not {r!r}")
        if not isinstance(self.entries, int) or not 1 <= self.entries <= 1 << SLOT_BITS:
            raise ValueError(f"entries must be an integer in 1..{1 << SLOT_BITS}, not {self.entries!r}")

    @property
    def chunk_bits(self) -> int:
        return (BRAM_ROWS // self.cycles_per_key).bit_length() - 1

    @property
    def chunks(self) -> int:
        return -(-SEARCH_BITS // self.chunk_bits)

    @property
    def groups(self) -> int:
        return -(-self.chunks // self.cycles_per_key)

    @property
    def columns(self) -> int:
        return -(-self.entries // COLUMN_ENTRIES)

    @property
    def rams(self) -> int:
        """Block RAMs (512 x 36) of the chunk tables."""
        return self.groups * self.columns

    @property
    def row_bits(self) -> int:
        """Bits of one row write: the same row of every group of one column."""
        return self.groups * COLUMN_ENTRIES

    def chunk_of(self, group: int, cycle: int) -> int | None:
        """Chunk index read by ``group`` at ``cycle`` of a key, None past the search word."""
        i = group * self.cycles_per_key + cycle
        return i if i < self.chunks else None

    def accepts(self, value: int, mask: int, chunk: int, v: int) -> bool:
        """Does a ternary (value, mask) over the search word accept ``v`` in ``chunk``?"""
        k = self.chunk_bits
        cm = (mask >> (chunk * k)) & ((1 << k) - 1)
        cv = (value >> (chunk * k)) & ((1 << k) - 1)
        return (v ^ cv) & cm == 0

    def rows(self, entries: Sequence[tuple[int, int] | None], columns: Iterable[int] | None = None
             ) -> dict[tuple[int, int], int]:
        """Row words for ``columns`` (default all) of a table of ternary (value, mask) search words.

        ``entries[i]`` is entry ``i``'s (value, mask) or None for a free entry (matches nothing).
        Returns ``{(column, row address): word}``, the word holding group ``g``'s 36 bits at
        ``g * 36`` (bit ``e % 36`` of a group's bits for entry ``e``). Rows past the search word
        are never read and not returned.
        """
        k, r = self.chunk_bits, self.cycles_per_key
        out = {}
        cols = range(self.columns) if columns is None else columns
        for col in cols:
            members = [(j, entries[e]) for j, e in enumerate(range(col * COLUMN_ENTRIES, (col + 1) * COLUMN_ENTRIES))
                       if e < len(entries) and entries[e] is not None]
            for cycle in range(r):
                for v in range(1 << k):
                    word = 0
                    for g in range(self.groups):
                        chunk = self.chunk_of(g, cycle)
                        if chunk is None:
                            continue
                        bits = 0
                        for j, (value, mask) in members:
                            if self.accepts(value, mask, chunk, v):
                                bits |= 1 << j
                        word |= bits << (g * COLUMN_ENTRIES)
                    out[col, cycle << k | v] = word
        return out
