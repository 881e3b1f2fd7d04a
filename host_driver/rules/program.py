"""Classifier entries into the ACL gateware's table: entry words, row writes, atomic replacement.

:func:`ternary_entries` turns one :class:`~host_driver.rules.compile.ClassifierEntry` into the
value/mask pairs the TCAM matches (ranges split into prefixes: the hardware has no range compare),
:func:`entry_word` packs one into the :class:`hdl.acl.layouts.AclEntry` word, and
:class:`AclTable` keeps the placement of the live table and produces the management operations
that replace it atomically (docs/acl.md "Programming"). Every bit position comes from the
layouts in :mod:`hdl.acl.layouts`.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from amaranth.lib import data

from hdl.acl.layouts import (
    COLUMN_ENTRIES,
    IN_PORT_BITS,
    KEY_BITS,
    AclAction,
    AclActionWord,
    AclEntry,
    TcamGeometry,
    key_fields,
)
from host_driver.rules.compile import ClassifierEntry, Range

__all__ = ["ternary_entries", "entry_word", "search_pair", "action_word", "TernaryEntry", "AclTable", "Op",
           "TableFullError", "count_ternary"]

log = logging.getLogger(__name__)

_FIELDS = key_fields()
_ENTRY = data.Layout.cast(AclEntry)
_ACTION_WORD = data.Layout.cast(AclActionWord)


class TableFullError(ValueError):
    """The new table does not fit beside the live one (atomic replacement needs both at once)."""


@dataclass(frozen=True)
class TernaryEntry:
    """One hardware entry: value/mask over :class:`~hdl.acl.layouts.AclKey`, and its rule."""
    value: int
    mask: int
    action: AclAction
    source: int          # index of the ClassifierEntry it came from
    rule: tuple[int, int]  # (gid, sid)


def _put(value: int, mask: int, name: str, v: int, m: int | None = None) -> tuple[int, int]:
    lsb, width = _FIELDS[name]
    full = (1 << width) - 1
    m = full if m is None else m
    if v & ~full or m & ~full:
        raise ValueError(f"{name}={v:#x}/{m:#x} does not fit in {width} bits")
    return value | (v & m) << lsb, mask | m << lsb


def _range_choices(rng: Range | None, width: int) -> list[tuple[int, int] | None]:
    if rng is None:
        return [None]
    return [(v, ((1 << plen) - 1) << (width - plen)) for v, plen in rng.prefixes(width)]


def ternary_entries(entry: ClassifierEntry, source: int = 0) -> list[TernaryEntry]:
    """The value/mask entries that together match exactly what ``entry`` matches, in order."""
    value = mask = 0
    if entry.in_port is not None:
        if not 0 <= entry.in_port < 1 << IN_PORT_BITS:
            raise ValueError(f"in_port {entry.in_port} does not fit in {IN_PORT_BITS} bits")
        value, mask = _put(value, mask, "in_port", entry.in_port)
    if entry.vlan is not None:
        value, mask = _put(value, mask, "vlan_tagged", 1)
        value, mask = _put(value, mask, "vlan_vid", entry.vlan)
    value, mask = _put(value, mask, "ethertype", entry.ethertype)
    for name, net in (("ip_src", entry.src), ("ip_dst", entry.dst)):
        bits = net.max_prefixlen
        # IPv4 sits in the low 32 bits; the upper 96 are zero for every IPv4 packet (ethertype decides).
        net_mask = ((1 << net.prefixlen) - 1) << (bits - net.prefixlen)
        value, mask = _put(value, mask, name, int(net.network_address), net_mask)
    if entry.tcp_flags is not None:
        value, mask = _put(value, mask, "tcp_flags", *entry.tcp_flags)
    for name, flag in (("fragment", entry.fragment), ("flow_established", entry.flow_established),
                       ("flow_to_server", entry.flow_to_server)):
        if flag is not None:
            value, mask = _put(value, mask, name, int(flag))
    ranges = [("ip_proto", entry.ip_proto), ("sport", entry.sport), ("dport", entry.dport),
              ("icmp_type", entry.icmp_type), ("icmp_code", entry.icmp_code), ("ttl", entry.ttl)]
    axes = [[(name, c) for c in _range_choices(rng, _FIELDS[name][1])] for name, rng in ranges]
    out = []
    for combo in itertools.product(*axes):
        v, m = value, mask
        for name, choice in combo:
            if choice is not None:
                v, m = _put(v, m, name, *choice)
        out.append(TernaryEntry(v, m, AclAction[entry.action.upper()], source, (entry.gid, entry.sid)))
    return out


def count_ternary(entries: Sequence[ClassifierEntry]) -> int:
    """Hardware entries ``entries`` need (without building them)."""
    return sum(e.ternary_count() for e in entries)


def action_word(action: AclAction, slot: int) -> int:
    """The :class:`~hdl.acl.layouts.AclActionWord` bits."""
    return AclActionWord.const({"action": action, "slot": slot}).as_value().value


def entry_word(t: TernaryEntry, slot: int, generation: int | None) -> int:
    """The :class:`~hdl.acl.layouts.AclEntry` word of a ternary entry (``generation`` None: both)."""
    fields = {"value": t.value, "mask": t.mask, "gen": generation or 0, "gen_care": generation is not None,
              "valid": 1, "result": action_word(t.action, slot)}
    word = 0
    for name, f in _ENTRY:
        word |= int(fields[name]) << f.offset
    return word


def search_pair(word: int) -> tuple[int, int] | None:
    """(value, mask) over the search word (key, then generation) of an entry word; None if not valid."""
    e = AclEntry.from_bits(word)
    if not e.valid:
        return None
    return (e.value.as_value().value | e.gen << KEY_BITS, e.mask.as_value().value | e.gen_care << KEY_BITS)


@dataclass(frozen=True)
class Op:
    """One management operation on :class:`hdl.acl.classifier.AclClassifier`'s ports.

    ``kind``: ``row`` (``addr`` = column << 9 | row, ``data`` = the row word), ``action``
    (``addr`` = entry index, ``data`` = action word), ``clear_counter`` (``addr`` = slot),
    ``commit``, ``wait_commit`` (poll until ``commit_busy`` is low).
    """
    kind: str
    addr: int = 0
    data: int = 0


@dataclass
class AclTable:
    """The driver's picture of the classifier table and how to replace it atomically.

    Generation 0 tables fill entries (and counter slots) from index 0 up, generation 1 tables end
    at the top of the table, so the next table can be written beside the live one and committed
    with one command. A replacement therefore needs ``live + new <= capacity`` entries.
    """
    geometry: TcamGeometry
    generation: int = 0
    image: list = field(default_factory=list)          # entry index -> (value, mask) search pair or None
    live: list[TernaryEntry] = field(default_factory=list)
    live_base: int = 0
    slots: dict[tuple[int, int], int] = field(default_factory=dict)   # (gid, sid) -> counter slot
    index_of: list[int] = field(default_factory=list)   # entry index -> source ClassifierEntry index

    def __post_init__(self):
        self.image = [None] * self.geometry.entries
        self.index_of = [-1] * self.geometry.entries

    def replace(self, entries: Sequence[ClassifierEntry]) -> list[Op]:
        """Operations that replace the live table by ``entries`` (classifier order) atomically.

        Raises :class:`TableFullError` when the new table does not fit beside the live one;
        nothing is changed then.
        """
        n_cap = self.geometry.entries
        ternary = [t for i, e in enumerate(entries) for t in ternary_entries(e, i)]
        if len(self.live) + len(ternary) > n_cap:
            raise TableFullError(f"the new table needs {len(ternary)} entries and the live one holds "
                                 f"{len(self.live)}: {len(self.live) + len(ternary)} of {n_cap} "
                                 "(an atomic replacement needs both at once)")
        new_gen = 1 - self.generation
        base = 0 if new_gen == 0 else n_cap - len(ternary)
        rules = list(dict.fromkeys(t.rule for t in ternary))
        slot_base = 0 if new_gen == 0 else n_cap - len(rules)
        slots = {rule: slot_base + i for i, rule in enumerate(rules)}
        ops: list[Op] = []
        touched = set()
        for i, t in enumerate(ternary):
            idx = base + i
            self.image[idx] = (t.value | new_gen << KEY_BITS, t.mask | 1 << KEY_BITS)
            self.index_of[idx] = t.source
            touched.add(idx // COLUMN_ENTRIES)
            ops.append(Op("action", idx, action_word(t.action, slots[t.rule])))
        for slot in slots.values():
            ops.append(Op("clear_counter", slot))
        ops += [Op("row", col << 9 | row, word) for (col, row), word in
                sorted(self.geometry.rows(self.image, sorted(touched)).items())]
        ops += [Op("commit"), Op("wait_commit")]
        # The old generation's entries are free now: clear their rows so they never match again.
        old = range(self.live_base, self.live_base + len(self.live))
        for idx in old:
            self.image[idx] = None
            self.index_of[idx] = -1
        old_cols = sorted({idx // COLUMN_ENTRIES for idx in old})
        ops += [Op("row", col << 9 | row, word) for (col, row), word in
                sorted(self.geometry.rows(self.image, old_cols).items())]
        self.generation, self.live, self.live_base, self.slots = new_gen, ternary, base, slots
        log.info("ACL table: %d entries (%d rules) in generation %d at %d; %d operations",
                 len(ternary), len(rules), new_gen, base, len(ops))
        return ops
