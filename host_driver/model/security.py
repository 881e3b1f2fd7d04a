"""Golden model of the NIC's security stage: the flow table and the ACL classifier per frame.

Written from the security contract (docs/security.md) and Suricata's documented semantics, not
from the gateware. Per frame, in frame order, after the parser:

* **Bypass**: a frame with ``rx_error``, oversize, another malformed bit without a complete L3
  header, or received on ``bypass_port`` (the host path's re-injections) makes no flow request and
  no ACL lookup, and its verdict is left alone (:func:`bypassed`).
* **Flow**: an IPv4 or IPv6 frame with ``has_l3`` and no malformed bit makes one request of the flow table
  (:class:`host_driver.model.flow.FlowTable`): protocol, family, addresses, ports as parsed (0
  without L4), TCP flags for TCP. Other frames have no flow.
* **ACL**: one lookup of the key :func:`host_driver.model.acl.acl_key` (the flow bits only when
  the flow was found) in the table as the driver programmed it (:meth:`SecurityModel.apply`:
  the row, action, commit and counter operations of :class:`host_driver.rules.program.Op`). The
  first matching entry of the current generation decides; ``multi`` says another entry matched
  too. The deciding entry's counter slot counts the hit.
* **Payload matcher** (builds with ``matcher_index_bits``; docs/security.md, "The payload matcher in
  the stage"): an inspected frame that is IPv4/IPv6 with a payload offset, no malformed bit and no
  ``rx_error`` goes through :class:`host_driver.model.matcher.MatcherModel` over its IP payload
  (:func:`host_driver.inspect.payload_bounds`); others are skipped (``inspected`` 0). ``punt`` is
  the matcher's, or CONTROL bit 1 (``punt_all_payload``) on an inspected frame. A bypassed frame
  has every matcher field zero. The matcher never changes the verdict (IDS round).
* **Punt and mirror** (docs/security.md, "ACL actions punt and mirror"): a first hit ``punt`` or
  ``mirror`` decides nothing (the verdict is that of no hit, no alert, no ``acl_*`` count; the
  slot counts it). ``acl_punt``: the first hit is ``punt``, or a drop / reject / alert first hit
  has ``multi`` while CONTROL bit 2 (``punt_acl_multi``) is set.
* **Verdict**: ``pass`` forwards without an alert; ``alert`` forwards and alerts; ``drop`` and
  ``reject`` drop (reasons ``ACL_DROP`` / ``ACL_REJECT``) and alert ("blocked"). No hit forwards,
  except with ``default_deny``: an IP frame with no hit is dropped (``DEFAULT_DENY``) unless its
  flow was found and is established or the frame goes to the client (return traffic). A flow the
  table could not hold (``table_full``, ``unsupported``) is no flow: default deny drops it.

The table is modelled at the level the driver writes it (rows of the chunked TCAM, per entry an
action word: the one definition in :mod:`hdl.acl.layouts`), so a driver that writes a row to the
wrong place is caught by the model engine too; what the rows mean is held to Suricata's semantics
by tests/security/test_security_model.py, against an evaluator of the rule text.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hdl.acl.layouts import COLUMN_ENTRIES, KEY_BITS, AclAction, AclActionWord, TcamGeometry, key_fields
from hdl.packet.meta import L3Type, MalformedReason
from host_driver.model.flow import TCP, FlowPacket, FlowResult, FlowTable, Timeouts
from host_driver.model.matcher import Entry, FrameResult, Hit, MatcherModel

__all__ = ["SecurityModel", "SecurityResult", "SecurityDrop", "MatchResult", "SECURITY_COUNTS", "flow_request",
           "matcher_skips"]

log = logging.getLogger(__name__)

_COLUMN_MASK = (1 << COLUMN_ENTRIES) - 1
_KEY_FIELDS = key_fields()
_IP_TYPES = (L3Type.IPV4, L3Type.IPV6)


class SecurityDrop(enum.Enum):
    """Why the security stage drops a frame (the names of the NIC's DropReason values)."""
    ACL_DROP = "acl_drop"
    ACL_REJECT = "acl_reject"
    DEFAULT_DENY = "default_deny"


#: Names of the SECURITY block's counts, as :attr:`SecurityModel.counts` keys them.
SECURITY_COUNTS = ("flow_new", "flow_existing", "flow_table_full", "flow_unsupported", "acl_pass", "acl_alert",
                   "acl_drop", "acl_reject", "default_deny")


@dataclass(frozen=True)
class MatchResult:
    """The payload matcher's part of a frame's record (``match_*``): all False / empty for a frame
    the stage bypassed or the matcher skipped. ``hits`` are the recorded hits in payload order."""
    inspected: bool = False
    too_long: bool = False
    overflow: bool = False
    punt: bool = False
    hits: tuple[Hit, ...] = ()

    def record_fields(self) -> dict:
        """The record's ``match_*`` fields: ints, and ``match_hits`` as ``[bucket, settled]`` pairs of
        the ``match_n_hits`` slots used (the slots after them are not part of the result)."""
        return {"match_inspected": int(self.inspected), "match_too_long": int(self.too_long),
                "match_overflow": int(self.overflow), "match_punt": int(self.punt), "match_n_hits": len(self.hits),
                "match_hits": [[h.bucket, int(h.settled)] for h in self.hits]}

    def frame_result(self) -> FrameResult:
        """As :class:`~host_driver.model.matcher.FrameResult`, for :class:`MatcherProgram`'s
        ``candidates`` and ``settled``."""
        return FrameResult(list(self.hits), self.overflow, self.punt)

    @classmethod
    def from_record(cls, fields: Mapping) -> MatchResult:
        """From a record's decoded ``match_*`` fields (:meth:`record_fields`' form). The record holds no
        hit position: hits get position 0."""
        hits = tuple(Hit(int(b), 0, bool(st)) for b, st in fields["match_hits"][:fields["match_n_hits"]])
        return cls(bool(fields["match_inspected"]), bool(fields["match_too_long"]), bool(fields["match_overflow"]),
                   bool(fields["match_punt"]), hits)


@dataclass(frozen=True)
class SecurityResult:
    """What the security stage decided for one frame (the verdict record's security fields).

    ``bypass``: not inspected (no request, no lookup). ``flow``: the flow table's answer, None
    without a request. ``acl_index`` / ``acl_slot``: the deciding hardware entry and its counter
    slot (0 without a hit). ``drop``: the security drop reason, None to forward. ``alert``: the
    stage raises one alert (the hit's rule: ``alert``, ``drop`` or ``reject``).
    """
    bypass: bool = False
    flow: FlowResult | None = None
    acl_hit: bool = False
    acl_action: AclAction | None = None
    acl_index: int = 0
    acl_slot: int = 0
    acl_multi: bool = False
    drop: SecurityDrop | None = None
    key: Mapping[str, int] | None = field(default=None, repr=False)
    #: The payload matcher's result; None in a build without a matcher.
    match: MatchResult | None = None

    #: The ACL hands the frame to the host path (the record's ``acl_punt``).
    acl_punt: bool = False

    @property
    def alert(self) -> bool:
        return self.acl_hit and self.acl_action.decides and self.acl_action is not AclAction.PASS

    @property
    def flow_found(self) -> bool:
        return self.flow is not None and self.flow.found

    @property
    def flow_established(self) -> bool:
        return self.flow_found and self.flow.established

    @property
    def flow_to_server(self) -> bool:
        return self.flow_found and self.flow.to_server

    @property
    def flow_outcome(self) -> int:
        """The :class:`hdl.flow.flow_table.Outcome` value, 0 without a request."""
        return 0 if self.flow is None else self.flow.outcome.value

    def record_fields(self) -> dict[str, int]:
        """The verdict record's security fields as ints (``acl_action`` 0 without a hit), and the
        matcher's (:meth:`MatchResult.record_fields`) in a build with one."""
        out = {"acl_hit": int(self.acl_hit), "acl_action": self.acl_action.value if self.acl_hit else 0,
               "acl_index": self.acl_index, "acl_slot": self.acl_slot, "acl_multi": int(self.acl_multi),
               "acl_punt": int(self.acl_punt),
               "flow_found": int(self.flow_found), "flow_established": int(self.flow_established),
               "flow_to_server": int(self.flow_to_server), "flow_outcome": self.flow_outcome}
        if self.match is not None:
            out.update(self.match.record_fields())
        return out


def bypassed(meta: Mapping[str, int], in_port: int, rx_error: bool, bypass_port: int | None) -> bool:
    """Whether the stage leaves a frame alone: ``rx_error``, oversize, another malformed bit without a
    complete L3 header, or received on ``bypass_port``. A malformed frame with its L3 header (a bad
    TCP offset, a short L4 header, an IP length that disagrees) is still inspected, without a flow
    request, as Suricata inspects it with its IP-only rules; it stays dropped as malformed."""
    malformed = meta["malformed"]
    return bool(rx_error or malformed >> MalformedReason.OVERSIZE & 1 or (malformed and not meta["has_l3"])
                or in_port == bypass_port)


def matcher_skips(meta: Mapping[str, int], rx_error: bool) -> bool:
    """Whether the payload matcher skips an inspected frame (``PayloadStage``'s rule): no payload
    offset, not IPv4/IPv6, any malformed bit, or ``rx_error``."""
    return bool(not meta["has_payload_offset"] or meta["l3_type"] not in _IP_TYPES or meta["malformed"] or rx_error)


def flow_request(meta: Mapping[str, int]) -> FlowPacket | None:
    """The flow table request of a parsed frame (:func:`host_driver.model.nic.parse_frame` fields),
    None for a frame that makes none (not IPv4/IPv6 with an L3 header)."""
    if meta["l3_type"] not in _IP_TYPES or not meta["has_l3"]:
        return None
    proto = meta["ip_proto"]
    return FlowPacket(proto=proto, src=meta["ip_src"], dst=meta["ip_dst"], sport=meta["sport"], dport=meta["dport"],
                      flags=meta["tcp_flags"] & 0xFF if proto == TCP else 0,
                      ipv6=meta["l3_type"] == L3Type.IPV6)


class SecurityModel:
    """The security stage of one NIC: flow table, programmed ACL table, counters.

    Parameters
    ----------
    acl_entries, cycles_per_key:
        The classifier's :class:`~hdl.acl.layouts.TcamGeometry`.
    flow_sets, flow_ways, flow_addr_bits:
        The flow table's geometry (:class:`host_driver.model.flow.FlowTable`).
    default_deny:
        Drop IP frames no entry decides unless they belong to an established flow or go to the
        client (settable later: the CONTROL register).
    bypass_port:
        Port number whose frames are not inspected (the host port), or None.
    timeouts:
        Flow timeouts in ms (settable later: the timeout registers).
    matcher_index_bits, matcher_max_hits, data_width:
        The payload matcher's table (``2**matcher_index_bits`` buckets, whole tags), hit slots and the
        data path's width (hits are recorded one per beat); ``matcher_index_bits`` 0: no matcher.

    Members
    -------
    counts : dict
        The SECURITY block's counts by :data:`SECURITY_COUNTS` name.
    hits : dict
        Hits per counter slot since the slot was last cleared.
    matcher : MatcherModel or None
        The payload matcher's tables, written by MATCHER_WRITE and swapped by MATCHER_COMMIT.
    punt_all_payload : bool
        CONTROL bit 1: every frame the matcher inspects is punted.
    punt_acl_multi : bool
        CONTROL bit 2: a drop / reject / alert first hit with ``multi`` is punted too.
    ips_divert : bool
        CONTROL bit 3: a punted frame the NIC would forward is diverted to the host port
        (:class:`host_driver.model.nic.NicModel` carries it out).
    """

    def __init__(self, *, acl_entries: int = 256, cycles_per_key: int = 8, flow_sets: int = 1024,
                 flow_ways: int = 4, flow_addr_bits: int = 128, default_deny: bool = False,
                 bypass_port: int | None = None, timeouts: Timeouts | None = None, matcher_index_bits: int = 0,
                 matcher_max_hits: int = 4, data_width: int = 64):
        self.matcher = (MatcherModel(data_width, matcher_index_bits, max_hits=matcher_max_hits)
                        if matcher_index_bits else None)
        self.punt_all_payload = False
        self.punt_acl_multi = False
        self.ips_divert = False
        self.geometry = TcamGeometry(acl_entries, cycles_per_key)
        self.flows = FlowTable(flow_sets, flow_ways, flow_addr_bits, timeouts=timeouts or Timeouts())
        self.default_deny = bool(default_deny)
        self.bypass_port = bypass_port
        self.generation = 0
        self.rows: dict[tuple[int, int], int] = {}     # (column, row address) -> row word; absent = 0
        self.actions: dict[int, int] = {}              # entry index -> AclActionWord bits
        self.hits: dict[int, int] = {}
        self.counts: dict[str, int] = dict.fromkeys(SECURITY_COUNTS, 0)

    def __repr__(self):
        return (f"SecurityModel(acl_entries={self.geometry.entries}, flow_sets={self.flows.sets}, "
                f"flow_ways={self.flows.ways}, default_deny={self.default_deny}, bypass_port={self.bypass_port})")

    @classmethod
    def from_settings(cls, settings, *, cycles_per_key: int = 8, data_width: int = 64) -> SecurityModel:
        """The model of a build's ``NicConfig.security`` (a ``SecuritySettings``) at data width ``data_width``."""
        return cls(acl_entries=settings.acl_entries, cycles_per_key=cycles_per_key, flow_sets=settings.flow_sets,
                   flow_ways=settings.flow_ways, flow_addr_bits=settings.flow_addr_bits,
                   default_deny=settings.default_deny, bypass_port=settings.bypass_port,
                   matcher_index_bits=settings.matcher_index_bits, matcher_max_hits=settings.matcher_max_hits,
                   data_width=data_width)

    # -- the payload matcher's table, as the driver writes it -------------------------------------

    def matcher_write(self, bucket: int, entry: Entry) -> None:
        """MATCHER_WRITE: one bucket of the shadow bank."""
        if self.matcher is None:
            raise ValueError("MATCHER_WRITE on a build without a payload matcher")
        self.matcher.write(bucket, entry)

    def matcher_commit(self) -> None:
        """MATCHER_COMMIT: the shadow bank becomes active (before the next frame)."""
        if self.matcher is None:
            raise ValueError("MATCHER_COMMIT on a build without a payload matcher")
        self.matcher.commit()

    def match(self, frame: bytes, meta: Mapping[str, int], rx_error: bool) -> MatchResult:
        """The matcher's result for an inspected (not bypassed) frame."""
        from host_driver.inspect import payload_bounds  # host_driver.inspect imports the NIC model
        bounds = None if matcher_skips(meta, rx_error) else payload_bounds(frame, meta)
        if bounds is None:
            return MatchResult()
        res = self.matcher.frame(frame, bounds[0], bounds[1] - bounds[0])
        return MatchResult(True, False, res.overflow, res.punt or self.punt_all_payload, tuple(res.hits))

    # -- the table, as the driver writes it -----------------------------------------------------

    def apply(self, op) -> int | None:
        """Carry out one :class:`host_driver.rules.program.Op`; a counter read returns the count."""
        if op.kind == "row":
            col, row = op.addr >> 9, op.addr & 0x1FF
            if col >= self.geometry.columns or op.data >> self.geometry.row_bits:
                raise ValueError(f"row write to column {col} with {op.data.bit_length()} bits: this table has "
                                 f"{self.geometry.columns} columns of {self.geometry.row_bits}-bit rows")
            self.rows[col, row] = op.data
        elif op.kind == "action":
            if not 0 <= op.addr < self.geometry.entries:
                raise ValueError(f"action write to entry {op.addr}: this table has {self.geometry.entries}")
            self.actions[op.addr] = op.data
        elif op.kind == "commit":
            self.generation ^= 1
        elif op.kind == "wait_commit":
            pass        # the model has no keys in flight
        elif op.kind in ("clear_counter", "read_counter"):
            count = self.hits.get(op.addr, 0)
            if op.kind == "clear_counter":
                self.hits.pop(op.addr, None)
            return count
        else:
            raise ValueError(f"unknown operation {op.kind!r}")
        return None

    def load(self, ops: Sequence) -> None:
        """Apply a whole programming sequence (``AclTable.replace``'s operations)."""
        for op in ops:
            self.apply(op)

    def matches(self, key: Mapping[str, int]) -> list[int]:
        """Indices of the entries that accept ``key`` in the current generation, lowest first."""
        geo = self.geometry
        k, r = geo.chunk_bits, geo.cycles_per_key
        word = _pack_key(key) | self.generation << KEY_BITS
        out = []
        for col in range(geo.columns):
            acc = _COLUMN_MASK
            for chunk in range(geo.chunks):
                group, cycle = divmod(chunk, r)
                value = word >> (chunk * k) & ((1 << k) - 1)
                acc &= self.rows.get((col, cycle << k | value), 0) >> (group * COLUMN_ENTRIES) & _COLUMN_MASK
                if not acc:
                    break
            out += [col * COLUMN_ENTRIES + j for j in range(COLUMN_ENTRIES) if acc >> j & 1]
        return out

    # -- one frame ------------------------------------------------------------------------------

    def inspect(self, meta: Mapping[str, int], in_port: int, *, rx_error: bool = False, now_ms: int = 0,
                frame: bytes | None = None) -> SecurityResult:
        """The security stage's decision for one parsed frame received on ``in_port`` at ``now_ms``.
        ``frame``: its bytes, for the payload matcher; without them (or without a matcher) the
        result's ``match`` is None (the flow table and the ACL alone, as a caller that only checks
        those asks)."""
        with_match = self.matcher is not None and frame is not None
        if bypassed(meta, in_port, rx_error, self.bypass_port):
            return SecurityResult(bypass=True, match=MatchResult() if with_match else None)
        match = self.match(frame, meta, rx_error) if with_match else None
        from host_driver.model.acl import acl_key  # host_driver.model.acl imports the NIC model
        request = None if meta["malformed"] else flow_request(meta)
        flow = None
        if request is not None:
            flow = self.flows.packet(request, now_ms)
            self.counts["flow_" + flow.outcome.name.lower()] += 1
        found = flow is not None and flow.found
        key = acl_key(meta, in_port, found and flow.established, found and flow.to_server)
        hits = self.matches(key)
        if hits:
            index = hits[0]
            word = AclActionWord.from_bits(self.actions.get(index, 0))
            action, slot = AclAction(word.action), int(word.slot)
            self.hits[slot] = self.hits.get(slot, 0) + 1
            multi = len(hits) > 1
            punt = action is AclAction.PUNT or (self.punt_acl_multi and multi and action.decides
                                                and action is not AclAction.PASS)
            if action.decides:
                self.counts["acl_" + action.name.lower()] += 1
                drop = {AclAction.DROP: SecurityDrop.ACL_DROP, AclAction.REJECT: SecurityDrop.ACL_REJECT}.get(action)
                return SecurityResult(False, flow, True, action, index, slot, multi, drop, key, match, punt)
            # PUNT / MIRROR decide nothing: the verdict below is that of no hit.
            hit_fields = dict(acl_hit=True, acl_action=action, acl_index=index, acl_slot=slot, acl_multi=multi,
                              acl_punt=punt)
        else:
            hit_fields = {}
        drop = None
        if self.default_deny and request is not None:
            admitted = found and (flow.established or not flow.to_server)
            if not admitted:
                drop = SecurityDrop.DEFAULT_DENY
                self.counts["default_deny"] += 1
        return SecurityResult(False, flow, drop=drop, key=key, match=match, **hit_fields)


def _pack_key(key: Mapping[str, int]) -> int:
    word = 0
    for name, (lsb, width) in _KEY_FIELDS.items():
        value = key[name]
        if value >> width:
            raise ValueError(f"key field {name}={value:#x} does not fit in {width} bits")
        word |= value << lsb
    return word
