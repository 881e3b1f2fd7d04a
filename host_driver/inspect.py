"""The host path: the software inspector that finishes what the NIC's matcher punted.

Given a frame and the payload rules the NIC could not settle (:meth:`MatcherProgram.candidates`),
decide the final alerts with Suricata's semantics for ``content`` (``|hex|``, ``nocase``,
``offset``, ``depth``, ``distance``, ``within``, ``startswith``, ``endswith``, negation),
``dsize`` and the rule header (protocol, addresses, ports, ``<>``, and the header options
``flags``, ``ttl``, ``itype``, ``icode``, ``ip_proto``; ``flow`` from the flow state the NIC's
record gives, ignored when none is given), then the verdict: ``drop``
when a matching rule's action is drop/reject, else ``reinject``. A matching ``pass`` rule
silences the frame's alerts (Suricata's default action order: pass first).

Literals are found by Hyperscan (the multi-literal matcher inside Suricata), every occurrence of
every content of the loaded rules in one scan of the payload; the positional constraints are
then checked with Suricata's backtracking (detect-engine-content-inspection.c): a relative content
starts ``distance`` after the previous content's match end and must end within ``distance +
within`` of it; if a later content fails, the previous one is retried at its next occurrence
when that later content is bound to it by ``within`` (Suricata's DETECT_CONTENT_WITHIN_NEXT).

Every punted frame is counted in and out (``frames_in == reinjected + dropped``). Nothing here
imports :mod:`sim`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import hyperscan

from hdl.packet.meta import L3Type
from host_driver.model.nic import parse_frame
from host_driver.rules.content import Content, ContentRule

__all__ = ["HostInspector", "Inspection", "payload_bounds", "match_contents"]

log = logging.getLogger(__name__)

_HEADER_WINDOW = 256
_MAX_FRAME = 16383


@dataclass
class Inspection:
    """The host's decision for one punted frame: the rules that fire, the verdict."""

    alerts: list[ContentRule] = field(default_factory=list)
    verdict: str = "reinject"
    passed: bool = False
    #: Every rule that matched, ``pass`` rules included (for merging with the classifier's verdict).
    fired: list[ContentRule] = field(default_factory=list)

    @property
    def sids(self) -> list[int]:
        return [r.sid for r in self.alerts]


def payload_bounds(frame: bytes, meta: dict) -> tuple[int, int] | None:
    """(start, end) of the L4 payload in ``frame`` (Ethernet padding excluded), or None."""
    if not meta["has_payload_offset"]:
        return None
    l3 = meta["l3_offset"]
    if meta["l3_type"] == L3Type.IPV4:
        end = l3 + int.from_bytes(frame[l3 + 2:l3 + 4], "big")
    elif meta["l3_type"] == L3Type.IPV6:
        end = l3 + 40 + int.from_bytes(frame[l3 + 4:l3 + 6], "big")
    else:
        return None
    end = min(end, len(frame))
    start = meta["payload_offset"]
    return (start, end) if start <= end else None


def _hs_expression(pattern: bytes) -> bytes:
    # literal mode rejects NUL (TOOLCHAIN.md); every byte as \xHH is a literal regex.
    return b"".join(b"\\x%02x" % b for b in pattern)


def match_contents(contents: Sequence[Content], payload_len: int, starts: Sequence[Sequence[int]]) -> bool:
    """Whether the contents match a payload of ``payload_len`` bytes where content ``i`` occurs at
    the sorted positions ``starts[i]`` (Suricata's inspection, with backtracking)."""

    def window(c: Content, prev_end: int) -> tuple[int, int]:
        """(first start, last end) allowed for ``c``."""
        if c.relative:
            dist = c.distance or 0
            lo = max(0, prev_end + dist)
            hi = payload_len if c.within is None else min(payload_len, prev_end + dist + c.within)
        else:
            lo = c.offset or 0
            hi = payload_len if c.depth is None else min(payload_len, lo + c.depth)
            if c.startswith:
                lo, hi = 0, min(payload_len, len(c.pattern))
        return lo, hi

    def fits(c: Content, p: int, lo: int, hi: int) -> bool:
        end = p + len(c.pattern)
        return p >= lo and end <= hi and (not c.endswith or end == payload_len)

    def step(i: int, prev_end: int) -> bool:
        if i == len(contents):
            return True
        c = contents[i]
        lo, hi = window(c, prev_end)
        hits = [p for p in starts[i] if fits(c, p, lo, hi)]
        if c.negated:
            return not hits and step(i + 1, prev_end)
        # Suricata retries this content's next occurrence only when the next content is bound to
        # it by ``within`` (DETECT_CONTENT_WITHIN_NEXT); otherwise the first occurrence decides.
        retry = i + 1 < len(contents) and contents[i + 1].within is not None
        for p in hits:
            if step(i + 1, p + len(c.pattern)):
                return True
            if not retry:
                return False
        return False

    return step(0, 0)


class HostInspector:
    """Software inspector for punted frames over a set of payload rules (see the module docstring).

    Parameters
    ----------
    rules : Sequence[ContentRule]
        Every payload rule the host may be asked about (usually ``MatcherProgram.rules``).

    Members
    -------
    frames_in, reinjected, dropped : int
        Counters: every frame passed to :meth:`inspect` is counted in and then out once.
    """

    def __init__(self, rules: Sequence[ContentRule]):
        self.rules = list(rules)
        self._ids: dict[int, tuple[int, int]] = {}       # hyperscan id -> (rule index, content index)
        self._index = {id(r): i for i, r in enumerate(self.rules)}
        expressions, flags, ids = [], [], []
        for ri, cr in enumerate(self.rules):
            for ci, c in enumerate(cr.contents):
                hid = len(ids)
                self._ids[hid] = (ri, ci)
                expressions.append(_hs_expression(c.pattern))
                flags.append(hyperscan.HS_FLAG_CASELESS if c.nocase else 0)
                ids.append(hid)
        self._headers: dict[int, tuple[list, list]] = {}    # rule index -> (entries, entries without flow)
        self._db = None
        if expressions:
            self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            self._db.compile(expressions=expressions, ids=ids, elements=len(ids), flags=flags)
        self.frames_in = self.reinjected = self.dropped = 0

    def __repr__(self):
        return f"HostInspector({len(self.rules)} rules, in={self.frames_in}, out={self.reinjected + self.dropped})"

    def occurrences(self, payload: bytes) -> dict[tuple[int, int], list[int]]:
        """(rule index, content index) -> sorted start positions of that content in ``payload``."""
        found: dict[tuple[int, int], list[int]] = {}
        if self._db is None or not payload:
            return found

        def on_match(hid, _from, to, _flags, _ctx):
            ri, ci = self._ids[hid]
            found.setdefault((ri, ci), []).append(to - len(self.rules[ri].contents[ci].pattern))
            return 0

        self._db.scan(payload, match_event_handler=on_match)
        return {k: sorted(set(v)) for k, v in found.items()}

    def _header_entries(self, cr: ContentRule) -> tuple[list, list]:
        """The rule's header as classifier entries (the rule compiler's own expansion, which
        tests/acl holds to Suricata's semantics), with and without their ``flow`` fields."""
        ri = self._index[id(cr)]
        if ri not in self._headers:
            from host_driver.rules.compile import header_entries
            entries = header_entries(cr.rule)
            self._headers[ri] = (entries, [replace(e, flow_established=None, flow_to_server=None) for e in entries])
        return self._headers[ri]

    def header_matches(self, cr: ContentRule, meta: dict, flow: tuple[bool, bool] | None = None) -> bool:
        """The rule's header (protocol, addresses, ports either way for ``<>``, ``flags``, ``ttl``,
        ``itype``/``icode``, ``ip_proto``) against the parsed frame; ``flow`` = (established,
        to_server) as the flow table found the frame's flow (both False: no flow), or None to
        ignore the rule's ``flow`` option."""
        from host_driver.model.acl import acl_key, entry_matches
        if meta["l3_type"] not in (L3Type.IPV4, L3Type.IPV6):
            return False
        with_flow, without_flow = self._header_entries(cr)
        key = acl_key(meta, 0, *(flow or (False, False)))
        return any(entry_matches(e, key) for e in (without_flow if flow is None else with_flow))

    def matches(self, payload: bytes, rules: Iterable[ContentRule], meta: dict | None = None,
                flow: tuple[bool, bool] | None = None) -> list[ContentRule]:
        """The rules among ``rules`` whose payload part (and header, given ``meta``; ``flow`` as
        :meth:`header_matches`) matches."""
        occ = self.occurrences(payload)
        out = []
        for cr in rules:
            ri = self._index[id(cr)]
            if meta is not None and not self.header_matches(cr, meta, flow):
                continue
            if cr.dsize is not None and not cr.dsize.matches(len(payload)):
                continue
            starts = [occ.get((ri, ci), []) for ci in range(len(cr.contents))]
            if match_contents(cr.contents, len(payload), starts):
                out.append(cr)
        return out

    def inspect(self, frame: bytes, candidates: Iterable[ContentRule] | None = None,
                flow: tuple[bool, bool] | None = None) -> Inspection:
        """Alerts and verdict for a punted frame; ``candidates`` None checks every rule; ``flow``:
        (established, to_server) from the frame's record, for rules with ``flow`` (None: ignored).
        ``fired`` lists every matching rule, ``pass`` ones included."""
        self.frames_in += 1
        candidates = self.rules if candidates is None else list(candidates)
        meta = parse_frame(frame, physical=False, header_window=_HEADER_WINDOW, max_frame=_MAX_FRAME)
        bounds = payload_bounds(frame, meta)
        fired = [] if bounds is None else self.matches(frame[bounds[0]:bounds[1]], candidates, meta, flow)
        res = Inspection(fired=fired)
        if any(cr.rule.action == "pass" for cr in fired):
            res.passed = True
        else:
            res.alerts = fired
            if any(cr.rule.action in ("drop", "reject", "rejectsrc", "rejectdst", "rejectboth") for cr in fired):
                res.verdict = "drop"
        if res.verdict == "drop":
            self.dropped += 1
        else:
            self.reinjected += 1
        log.debug("inspected frame: %d candidates, sids %s, %s", len(candidates), res.sids, res.verdict)
        return res
