"""Header-only rules into classifier entries, in the order the classifier must try them.

Order (Suricata's, so that the first matching entry gives Suricata's verdict): by action, pass
before drop before reject before alert (Suricata's default ``action-order``); then by the rule's
priority, 1 first (``priority`` option, else its ``classtype``'s, else 3); then file order.
Entries of one rule are consecutive. After every rule that decides come the NIC's own ``punt``
entries (docs/security.md, "ACL actions punt and mirror"): the header of each payload rule the
matcher cannot prefilter (``host only``), so that only the frames its header matches go to the
host path; placed last, a punt entry never shadows a decision.

One entry is one combination of a source prefix, a destination prefix, an IP protocol range, a
source and a destination port range, a TCP flags value/mask, an ICMP type range and code range
and a TTL range (None for a field means "any"). A rule becomes the cross product of its sets:
negations become their complement (``!$HOME_NET`` is 31 IPv4 prefixes), ``<>`` adds the reversed
direction, Suricata's ``icmp`` is two protocols (1 and 58).

Capacity is counted two ways: entries as above (a classifier that compares ranges), and ternary
entries, what a TCAM that only matches value/mask needs once every range is split into prefixes
(:func:`~host_driver.rules.expr.range_to_prefixes`). Rules are placed in classifier order while
their entries fit; a rule that does not fit goes to the host path with that reason.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from host_driver.rules.content import DEFAULT_INDEX_BITS, compile_content
from host_driver.rules.expr import IntervalSet, range_to_prefixes
from host_driver.rules.parse import PROTOCOLS, Rule

__all__ = ["Range", "ClassifierEntry", "CompiledRules", "compile_rules", "header_entries", "classifier_order",
           "ACTION_ORDER", "DEFAULT_CAPACITY",
           "ETHERTYPE_IPV4", "ETHERTYPE_IPV6"]

log = logging.getLogger(__name__)

#: Suricata's default action order: the first of these that matches decides the packet; then the
#: NIC's own actions, which decide nothing and so come after every deciding entry.
ACTION_ORDER = {"pass": 0, "drop": 1, "reject": 2, "alert": 3, "punt": 4, "mirror": 5}
DEFAULT_CAPACITY = 256
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
_ICMP_PROTOS = IntervalSet(255, [(1, 1), (58, 58)])
_TCP = IntervalSet(255, [(6, 6)])

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, order=True)
class Range:
    """An inclusive range of a key field."""

    lo: int
    hi: int

    def prefixes(self, width: int) -> list[tuple[int, int]]:
        """(value, prefix length) pairs that cover the range in a ``width``-bit field."""
        return range_to_prefixes(self.lo, self.hi, width)

    def __repr__(self) -> str:
        return f"Range({self.lo}, {self.hi})"


@dataclass(frozen=True)
class ClassifierEntry:
    """One classifier table entry: key fields (None = any) and what a match does.

    Key fields are those of issue 14's classifier: in-port, VLAN, ethertype, source/destination
    prefix, IP protocol, L4 port ranges, TCP flags value/mask, ICMP type/code, fragment bit; plus
    the TTL (the ``ttl`` option) and the flow table's state and direction (``flow``), which the
    classifier takes from the parser and the flow table.
    """

    action: str
    sid: int
    gid: int
    rev: int
    priority: int
    ethertype: int
    src: Network
    dst: Network
    ip_proto: Range | None = None
    sport: Range | None = None
    dport: Range | None = None
    tcp_flags: tuple[int, int] | None = None
    icmp_type: Range | None = None
    icmp_code: Range | None = None
    ttl: Range | None = None
    flow_established: bool | None = None
    flow_to_server: bool | None = None
    in_port: int | None = None
    vlan: int | None = None
    fragment: bool | None = None
    line: int = 0

    def ternary_count(self) -> int:
        """TCAM value/mask entries this entry needs once its ranges are split into prefixes."""
        n = 1
        for rng, width in ((self.ip_proto, 8), (self.sport, 16), (self.dport, 16), (self.icmp_type, 8),
                           (self.icmp_code, 8), (self.ttl, 8)):
            if rng is not None:
                n *= len(rng.prefixes(width))
        return n


@dataclass
class _Expansion:
    """A rule's entries as a cross product of field choices (counted without building them)."""

    rule: Rule
    axes: list[tuple[str, list, int]]   # (field, choices, bit width for ranges or 0)
    directions: list[dict]

    def count(self) -> int:
        return sum(len(d["src"]) * len(d["dst"]) * math.prod(len(c) for n, c, w in self.axes + d["ports"])
                   for d in self.directions)

    def ternary(self) -> int:
        def weight(choices, width):
            return sum(len(c.prefixes(width)) if c is not None and width else 1 for c in choices)
        return sum(len(d["src"]) * len(d["dst"]) * math.prod(weight(c, w) for n, c, w in self.axes + d["ports"])
                   for d in self.directions)

    def entries(self, action: str | None = None) -> Iterator[ClassifierEntry]:
        """The entries, with the rule's action or ``action`` (``punt`` for a host-only payload rule)."""
        r = self.rule
        if action is None:
            action = "reject" if r.action.startswith("reject") else r.action
        for d in self.directions:
            names = [n for n, c, w in self.axes + d["ports"]]
            for src, dst in itertools.product(d["src"], d["dst"]):     # one family per direction
                for combo in itertools.product(*(c for n, c, w in self.axes + d["ports"])):
                    yield ClassifierEntry(
                        action=action, sid=r.sid, gid=r.gid, rev=r.rev, priority=r.priority,
                        ethertype=ETHERTYPE_IPV4 if src.version == 4 else ETHERTYPE_IPV6, src=src, dst=dst,
                        flow_established=r.flow.established if r.flow else None,
                        flow_to_server=r.flow.to_server if r.flow else None, line=r.line,
                        **dict(zip(names, combo)))


def _widen_addresses(expansion: _Expansion) -> _Expansion:
    """``expansion`` with every direction's source and destination the whole of their IP family
    (one prefix each): a superset of the rule's packets, for punt entries."""
    directions = [{**d, "src": [ipaddress.ip_network("0.0.0.0/0" if d["src"][0].version == 4 else "::/0")],
                   "dst": [ipaddress.ip_network("0.0.0.0/0" if d["dst"][0].version == 4 else "::/0")]}
                  for d in expansion.directions if d["src"] and d["dst"]]
    unique = list({repr((d["src"], d["dst"], d["ports"])): d for d in directions}.values())
    return _Expansion(expansion.rule, expansion.axes, unique)


def _choices(values: IntervalSet | None, full_is_any: bool = True) -> list[Range | None]:
    if values is None or (full_is_any and values.is_full()):
        return [None]
    return [Range(lo, hi) for lo, hi in values.intervals]


def _expand(rule: Rule) -> tuple[_Expansion | None, str]:
    """The rule's entries, or None and why it matches no packet."""
    protos = IntervalSet.full(255) if PROTOCOLS[rule.proto] is None else \
        IntervalSet(255, [(p, p) for p in PROTOCOLS[rule.proto]])
    why = [f"protocol {rule.proto}"]
    if rule.ip_protos is not None:
        protos = protos & IntervalSet(255, rule.ip_protos.ranges)
        why.append("ip_proto")
    if rule.tcp_flags is not None:
        protos = protos & _TCP
        why.append("flags (TCP only)")
    if rule.itype is not None or rule.icode is not None:
        protos = protos & _ICMP_PROTOS
        why.append("itype/icode (ICMP only)")
    if not protos:
        return None, f"matches no packet: {' and '.join(why)} leave no IP protocol"
    axes: list[tuple[str, list, int]] = [("ip_proto", _choices(protos), 8)]
    if rule.tcp_flags is not None:
        if not rule.tcp_flags.ternary:
            return None, "matches no packet: its flags can never be true"
        axes.append(("tcp_flags", list(rule.tcp_flags.ternary), 0))
    for name, values in (("icmp_type", rule.itype), ("icmp_code", rule.icode), ("ttl", rule.ttl)):
        if values is not None:
            if not values.ranges:
                return None, f"matches no packet: its {name} range is empty"
            axes.append((name, _choices(IntervalSet(255, values.ranges), full_is_any=False), 8))

    def direction(src, sport, dst, dport):
        # Ports apply to every protocol: like Suricata, a packet without L4 ports has port 0 in the key.
        ports = [("sport", _choices(sport), 16), ("dport", _choices(dport), 16)]
        families = [f for f in (4, 6) if getattr(src, f"v{f}") and getattr(dst, f"v{f}")]
        return {"src": [n for f in families for n in src.networks(f)],
                "dst": [n for f in families for n in dst.networks(f)], "ports": ports,
                "families": families}

    directions = [direction(rule.src, rule.sport, rule.dst, rule.dport)]
    if rule.bidirectional and (rule.src, rule.sport) != (rule.dst, rule.dport):
        directions.append(direction(rule.dst, rule.dport, rule.src, rule.sport))
    # Source and destination prefixes pair up only within one family.
    split = []
    for d in directions:
        for f in d["families"]:
            split.append({**d, "src": [n for n in d["src"] if n.version == f],
                          "dst": [n for n in d["dst"] if n.version == f]})
    if not split:
        return None, "matches no packet: source and destination have no IP family in common"
    return _Expansion(rule, axes, split), ""


@dataclass
class CompiledRules:
    """The result of :func:`compile_rules`: every rule with its verdict, and the classifier table.

    ``rules`` are in file order; ``entries`` in classifier order (first match wins).
    ``entries_by_sid`` gives each offloaded rule's entry count, ``ternary_by_sid`` its ternary count.
    """

    rules: list[Rule]
    entries: list[ClassifierEntry]
    capacity: int
    ternary_entries: int
    entries_by_sid: dict[tuple[int, int], int] = field(default_factory=dict)
    ternary_by_sid: dict[tuple[int, int], int] = field(default_factory=dict)
    #: The payload rules compiled for the matcher (host_driver/rules/content.py), or None.
    matcher: object = None
    #: The ``punt`` entries of the host-only payload rules' headers, to go after ``entries`` (in the
    #: room ``entries`` leave of the capacity; not counted in ``ternary_entries`` or the ``*_by_sid``).
    punt_entries: list[ClassifierEntry] = field(default_factory=list)

    @property
    def verdicts(self) -> Counter:
        """How many rules got each verdict."""
        return Counter(r.verdict for r in self.rules)


def header_entries(rule: Rule) -> list[ClassifierEntry]:
    """The classifier entries of ``rule``'s header and header options alone (its payload options
    left aside), [] when it matches no packet: what the host path checks a payload rule's header
    against (:class:`host_driver.inspect.HostInspector`)."""
    expansion, _ = _expand(rule)
    return [] if expansion is None else list(expansion.entries())


def classifier_order(rule: Rule, index: int) -> tuple[int, int, int]:
    """Sort key: action order, then priority (1 first), then file order."""
    action = "reject" if rule.action.startswith("reject") else rule.action
    return ACTION_ORDER[action], rule.priority, index


def compile_rules(rules: Sequence[Rule], capacity: int = DEFAULT_CAPACITY,
                  matcher_index_bits: int = DEFAULT_INDEX_BITS) -> CompiledRules:
    """Build the classifier table from parsed rules (see the module docstring for order and capacity),
    and the payload matcher's (:func:`~host_driver.rules.content.compile_content`, a table of
    ``2**matcher_index_bits`` buckets: the NIC's MATCHER_GEOMETRY).

    Changes ``verdict``/``reason`` of rules that match no packet (``unsupported``) or do not fit
    (``host path``).
    """
    if capacity < 0:
        raise ValueError(f"capacity must be a non-negative number of entries, not {capacity!r}")
    candidates = []
    for index, rule in enumerate(rules):
        if rule.verdict != "offloaded":
            continue
        expansion, why = _expand(rule)
        if expansion is None:
            rule.verdict, rule.reason = "unsupported", why
            continue
        candidates.append((classifier_order(rule, index), expansion))
    candidates.sort(key=lambda c: c[0])
    entries: list[ClassifierEntry] = []
    ternary = 0
    by_sid, ternary_by_sid = {}, {}
    for _, expansion in candidates:
        rule, need = expansion.rule, expansion.count()
        if len(entries) + need > capacity:
            rule.verdict = "host path"
            rule.reason = f"does not fit: needs {need} entries, {capacity - len(entries)} of {capacity} left"
            continue
        entries += expansion.entries()
        rule_ternary = expansion.ternary()
        ternary += rule_ternary
        by_sid[(rule.gid, rule.sid)] = need
        ternary_by_sid[(rule.gid, rule.sid)] = rule_ternary
    # Payload rules go to the matcher's tables; the host-only ones' headers become punt entries, last.
    program = compile_content(rules, matcher_index_bits)
    punt: list[ClassifierEntry] = []
    for cr in program.host_only():
        expansion, why = _expand(cr.rule)
        if expansion is None:
            continue            # its header matches no packet: nothing to punt
        rule, need, note = cr.rule, expansion.count(), ""
        if len(entries) + len(punt) + need > capacity:
            # A punt entry may match more than the rule: the host checks every candidate's header in
            # full. So the address sets ($EXTERNAL_NET's 31 prefixes...) may widen to their family.
            expansion = _widen_addresses(expansion)
            need, note = expansion.count(), " (addresses widened)"
        if len(entries) + len(punt) + need > capacity:
            left = capacity - len(entries) - len(punt)
            cr.reason += f"; header not punted by the ACL (needs {need} entries, {left} left)"
            continue
        punt += expansion.entries("punt")
        cr.reason += "; header punted by the ACL" + note
    log.info("%d rules, %d entries of %d, %d ternary; %d punt entries", len(rules), len(entries), capacity, ternary,
             len(punt))
    return CompiledRules(list(rules), entries, capacity, ternary, by_sid, ternary_by_sid, program, punt)
