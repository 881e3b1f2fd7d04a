"""Golden model of the ACL classifier: classifier entries in, Suricata's verdict out (docs/acl.md).

Written from the entry semantics of docs/rules.md and Suricata's documented actions, not from the
gateware: it compares ranges and prefixes directly, with no ternary expansion.

Verdict, as Suricata's documentation describes the actions in its default action order (pass,
drop, reject, alert; the compiler orders the entries so): the first matching entry decides.
``pass`` stops inspection, nothing alerts. ``drop`` and ``reject`` stop inspection and alert
once (their own rule). ``alert`` lets the packet through and every matching ``alert`` rule fires,
so ``alerts`` then lists every matching alert rule, each once, in table order. The gateware reports
the first match only, plus a ``multi`` bit when another entry matched too; the host path finishes
the alert list for those packets (docs/acl.md "Several alerts").

The NIC's own ``punt`` and ``mirror`` entries decide nothing (docs/security.md, "ACL actions punt
and mirror"): they are skipped for the verdict; ``punt`` says a ``punt`` entry matched a packet
no ``pass`` entry decided (the host path must then see it), ``mirror`` likewise for ``mirror``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hdl.acl.layouts import key_fields
from host_driver.model.nic import parse_frame
from host_driver.rules.compile import ClassifierEntry

__all__ = ["AclVerdict", "acl_key", "entry_matches", "classify", "classify_frame", "AclModel"]

_KEY_FIELDS = tuple(key_fields())


@dataclass
class AclVerdict:
    """What the classifier decides for one packet.

    ``action`` is None when no entry matched (the NIC forwards). ``entry`` is the index of the
    deciding entry, ``rule`` its (gid, sid); ``alerts`` the (gid, sid) of every rule that fires.
    """
    action: str | None = None
    entry: int | None = None
    rule: tuple[int, int] | None = None
    alerts: list[tuple[int, int]] = field(default_factory=list)
    punt: bool = False
    mirror: bool = False

    @property
    def sids(self) -> list[int]:
        return [sid for _, sid in self.alerts]


def acl_key(meta: Mapping[str, int], in_port: int = 0, flow_established: bool = False,
            flow_to_server: bool = False) -> dict[str, int]:
    """The classifier key (``AclKey`` fields as ints) of a parsed frame (:func:`parse_frame` output)."""
    return {
        "in_port": in_port, "vlan_tagged": int(meta["vlan_count"] > 0), "vlan_vid": meta["vlan0_vid"],
        "ethertype": meta["ethertype"], "ip_src": meta["ip_src"], "ip_dst": meta["ip_dst"],
        "ip_proto": meta["ip_proto"], "sport": meta["sport"], "dport": meta["dport"],
        "tcp_flags": meta["tcp_flags"] & 0xFF, "icmp_type": meta["icmp_type"], "icmp_code": meta["icmp_code"],
        "fragment": meta["ip_fragment"], "ttl": meta["ip_ttl"], "flow_established": int(flow_established),
        "flow_to_server": int(flow_to_server),
    }


def entry_matches(e: ClassifierEntry, key: Mapping[str, int]) -> bool:
    """Does ``key`` fall inside every field of ``e`` (None = any)?"""
    if e.in_port is not None and key["in_port"] != e.in_port:
        return False
    if e.vlan is not None and not (key["vlan_tagged"] and key["vlan_vid"] == e.vlan):
        return False
    if key["ethertype"] != e.ethertype:
        return False
    for name, net in (("ip_src", e.src), ("ip_dst", e.dst)):
        addr = key[name] & ((1 << net.max_prefixlen) - 1)
        if addr & int(net.netmask) != int(net.network_address):
            return False
    for name in ("ip_proto", "sport", "dport", "icmp_type", "icmp_code", "ttl"):
        rng = getattr(e, name)
        if rng is not None and not rng.lo <= key[name] <= rng.hi:
            return False
    if e.tcp_flags is not None and key["tcp_flags"] & e.tcp_flags[1] != e.tcp_flags[0]:
        return False
    for name in ("fragment", "flow_established", "flow_to_server"):
        want = getattr(e, name)
        if want is not None and key[name] != int(want):
            return False
    return True


def classify(entries: Sequence[ClassifierEntry], key: Mapping[str, int]) -> AclVerdict:
    """Suricata's verdict for ``key`` over ``entries`` in classifier order (module docstring)."""
    verdict = AclVerdict()
    for i, e in enumerate(entries):
        if not entry_matches(e, key):
            continue
        if e.action in ("punt", "mirror"):
            setattr(verdict, e.action, True)
            continue
        rule = (e.gid, e.sid)
        if verdict.action is None:
            verdict.action, verdict.entry, verdict.rule = e.action, i, rule
            if e.action == "pass":
                return verdict
            if e.action in ("drop", "reject"):
                verdict.alerts = [rule]
        if verdict.action == "alert" and e.action == "alert" and rule not in verdict.alerts:
            verdict.alerts.append(rule)
    return verdict


def classify_frame(entries: Sequence[ClassifierEntry], frame: bytes, *, in_port: int = 0,
                   flow_established: bool = False, flow_to_server: bool = False,
                   header_window: int = 128, max_frame: int = 16383) -> AclVerdict:
    """Parse ``frame`` with the NIC model's parser and classify it."""
    meta = parse_frame(bytes(frame), physical=False, header_window=header_window, max_frame=max_frame)
    return classify(entries, acl_key(meta, in_port, flow_established, flow_to_server))


class AclModel:
    """The classifier block: a table of entries, per-rule hit counters, and atomic replacement.

    ``load`` replaces the whole table at once (what the gateware's commit guarantees); hits are
    counted per rule (gid, sid) for the first entry hit, as the gateware's counter bank does: the
    deciding entry, or a punt / mirror entry when nothing decided (they sort after every deciding
    entry, docs/security.md).
    """

    def __init__(self, entries: Sequence[ClassifierEntry] = ()):
        self.entries: list[ClassifierEntry] = list(entries)
        self.hits: dict[tuple[int, int], int] = {}

    def load(self, entries: Sequence[ClassifierEntry]) -> None:
        """Replace the table (counters of rules no longer present are dropped)."""
        self.entries = list(entries)
        rules = {(e.gid, e.sid) for e in self.entries}
        self.hits = {r: n for r, n in self.hits.items() if r in rules}

    def classify(self, key: Mapping[str, int]) -> AclVerdict:
        """Classify one key and count the deciding rule's hit."""
        missing = [f for f in _KEY_FIELDS if f not in key]
        if missing:
            raise KeyError(f"key lacks field(s) {', '.join(missing)}")
        verdict = classify(self.entries, key)
        rule = verdict.rule
        if rule is None and (verdict.punt or verdict.mirror):
            first = next(e for e in self.entries if entry_matches(e, key))
            rule = (first.gid, first.sid)
        if rule is not None:
            self.hits[rule] = self.hits.get(rule, 0) + 1
        return verdict
