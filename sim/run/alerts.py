"""``secnic run --rules``: the rule set a run programs, and the alerts its frames raise.

The NIC is programmed through the driver (:meth:`host_driver.blocks.security.Security.program`)
with the compiled header rules that fit its ACL (:func:`fit_entries`); each frame's verdict
record then says which entry decided it (``acl_slot``: the rule's counter slot). What the host
makes of a record (:func:`frame_alerts`), the same for every engine:

* ``pass``: no alert; ``drop`` / ``reject``: one alert, ``blocked``; ``alert``: one alert,
  ``allowed``, and when ``acl_multi`` is set more alert rules may apply: the host path finishes the
  list in software (:func:`host_driver.model.acl.classify` over the programmed entries, with the
  record's flow bits) and the run counts that host work.
* payload (content) rules, compiled for the NIC's matcher (:class:`HostPath`): a settled hit
  alerts its offloaded rules without the host (``MatcherProgram.settled``); a record with
  ``match_punt`` sends the frame's bytes (the input frame the record belongs to) to the host path,
  which verifies the candidate rules (``MatcherProgram.candidates``) with
  :class:`host_driver.inspect.HostInspector`, their ``flow`` option against the record's flow bits.
  A record with ``acl_punt`` (the ACL's punt entries: the headers of the host-only payload rules,
  docs/security.md "ACL actions punt and mirror") goes there too, with the host-only rules as
  candidates (and the matcher's, when it punted as well).
  The frame's payload alerts then join the classifier's in Suricata's default action order
  (:func:`merge_alerts`): a matching ``pass`` rule silences the frame, a ``drop``/``reject`` rule
  first in order is its only alert, else every alert rule fires. The matcher never changes where a
  frame goes (IDS round): a content ``drop``/``reject`` rule alerts ``allowed`` unless the classifier
  dropped the frame.
* eve.json gets one :func:`host_driver.eve.alert_event` per alert, in frame order; the NIC port is
  the event's ``in_iface`` and the input file its ``pcap_filename`` (Suricata's own fields: its
  schema admits no others).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hdl.acl.layouts import AclAction, TcamGeometry
from hdl.packet.meta import MATCH_FIELDS
from hdl.security.regs import CYCLES_PER_KEY
from host_driver.eve import ACTION_ALLOWED, ACTION_BLOCKED, alert_event
from host_driver.rules.compile import ClassifierEntry, CompiledRules, classifier_order
from host_driver.rules.content import DEFAULT_INDEX_BITS

__all__ = ["RuleSet", "FrameAlerts", "HostPath", "fit_entries", "frame_alerts", "merge_alerts", "alert_events",
           "slot_rules", "rules_table", "load_rule_set", "record_security_fields", "SECURITY_FIELDS"]

log = logging.getLogger(__name__)

#: The verdict record's security fields (hdl.packet.meta.make_verdict_record(..., security=True)).
SECURITY_FIELDS = ("acl_hit", "acl_action", "acl_index", "acl_slot", "acl_multi", "acl_punt", "flow_found",
                   "flow_established", "flow_to_server", "flow_outcome")


@dataclass
class RuleSet:
    """The rules of one run: the compiled file, the entries the NIC is programmed with, and the
    classtype table for alert categories."""
    source: str
    compiled: CompiledRules
    entries: list[ClassifierEntry]
    classifications: Mapping | None = None
    #: (gid, sid) of rules compiled as offloadable that the ACL could not hold (ternary entries).
    left_out: list[tuple[int, int]] = field(default_factory=list)
    #: The payload rules compiled for the NIC's matcher (a ``MatcherProgram``), or None when the
    #: build has no matcher (they are then counted, not run).
    matcher: object = None

    @property
    def rules_by_id(self) -> dict:
        return {(r.gid, r.sid): r for r in self.compiled.rules}

    @functools.cached_property
    def order(self) -> dict[tuple[int, int], tuple]:
        """(gid, sid) -> the rule's place in Suricata's default action order (the classifier's order,
        :func:`host_driver.rules.compile.classifier_order`), over every rule of the file."""
        return {(r.gid, r.sid): classifier_order(r, i) for i, r in enumerate(self.compiled.rules)}


def record_security_fields(config, rec: Mapping) -> dict | None:
    """The security (and matcher) fields of a decoded record, as ints (``match_hits`` as pairs),
    None for a build without a security stage."""
    if config.security is None:
        return None
    out = {k: int(rec[k]) for k in SECURITY_FIELDS}
    if config.security.matcher is not None:
        out.update({k: (rec[k] if k == "match_hits" else int(rec[k])) for k in MATCH_FIELDS})
    return out


def fit_entries(compiled: CompiledRules, acl_entries: int) -> tuple[list[ClassifierEntry], list[tuple[int, int]]]:
    """The compiled entries, then the punt entries, whose rules fit an ACL of ``acl_entries`` ternary
    entries, whole rules in classifier order (a rule that does not fit is left out, and so is every
    rule after it: leaving out a rule but keeping a later one would change the first match).
    Returns (entries, left out)."""
    out, used, cut = [], 0, False
    left_out: list[tuple[int, int]] = []
    by_rule: dict[tuple[int, int], list[ClassifierEntry]] = {}
    for e in compiled.entries + compiled.punt_entries:     # the punt entries last (docs/security.md)
        by_rule.setdefault((e.gid, e.sid), []).append(e)
    for rule, entries in by_rule.items():
        need = sum(e.ternary_count() for e in entries)
        if cut or used + need > acl_entries:
            cut = True
            left_out.append(rule)
            continue
        out += entries
        used += need
    if left_out:
        log.warning("%d rule(s) do not fit the %d ACL entries and are not enforced (first: %d:%d)",
                    len(left_out), acl_entries, *left_out[0])
    return out, left_out


def slot_rules(entries: Sequence[ClassifierEntry], acl_entries: int) -> dict[int, tuple[int, int]]:
    """Counter slot -> (gid, sid) of a NIC freshly programmed with ``entries`` by the driver (the
    placement of :class:`host_driver.rules.program.AclTable`, which every engine's driver uses)."""
    from host_driver.rules.program import AclTable
    table = AclTable(TcamGeometry(acl_entries, CYCLES_PER_KEY))
    table.replace(entries)
    return {slot: rule for rule, slot in table.slots.items()}


@dataclass
class FrameAlerts:
    """What the host makes of one frame's record: the deciding rule, the alerting rules, and
    whether the host path finished the alert list in software; with payload rules, the payload
    rules that matched (``payload``, pass rules included) and those of them the host path found
    (``host``: the others were settled in hardware)."""
    acl_rule: int | None = None
    alerts: list[tuple[int, int]] = field(default_factory=list)
    action: str = ACTION_ALLOWED
    host_finished: bool = False
    payload: list[tuple[int, int]] = field(default_factory=list)
    host: list[tuple[int, int]] = field(default_factory=list)


class HostPath:
    """The payload rules' side of a run (module docstring): settled hits, punted frames inspected.

    Members
    -------
    punted, settled_alerts, host_alerts : int
        Frames with ``match_punt`` or ``acl_punt``; payload alerts raised by settled hits and by the
        host's inspection.
    acl_punted : int
        Frames with ``acl_punt`` (some also with ``match_punt``).
    inspector : HostInspector
        ``inspector.frames_in`` is the frames the host inspected (every punted frame).
    """

    def __init__(self, program):
        from host_driver.inspect import HostInspector
        self.program = program
        self.inspector = HostInspector(program.rules)
        self.punted = self.settled_alerts = self.host_alerts = self.acl_punted = 0

    def __repr__(self):
        return f"HostPath(punted={self.punted}, inspected={self.inspector.frames_in})"

    def frame(self, sec: Mapping | None, frame: bytes) -> tuple[list, list]:
        """(payload rules that match, those the host found) for one frame's record fields ``sec``
        and its bytes. Rules are :class:`~host_driver.rules.content.ContentRule`, pass rules included."""
        from host_driver.model.security import MatchResult
        if not sec or not sec.get("match_inspected"):
            return [], []
        result = MatchResult.from_record(sec).frame_result()
        settled = list(self.program.settled(result))
        host = []
        acl_punt = bool(sec.get("acl_punt"))
        if sec["match_punt"] or acl_punt:
            self.punted += 1
            self.acl_punted += acl_punt
            # The matcher's candidates end with the host-only rules; an ACL punt alone needs only those.
            candidates = self.program.candidates(result) if sec["match_punt"] else self.program.host_only()
            flow = (bool(sec["flow_established"]), bool(sec["flow_to_server"])) if sec["flow_found"] else (False, False)
            found = self.inspector.inspect(frame, candidates, flow=flow).fired
            host = [r for r in found if not any(r is s for s in settled)]
        return settled + host, host

    def summary(self, frames: int) -> dict:
        """run.json's ``host_path``."""
        return {"punted": self.punted, "acl_punted": self.acl_punted, "inspected": self.inspector.frames_in,
                "alerts": self.host_alerts,
                "settled_alerts": self.settled_alerts,
                "punt_rate": round(self.punted / frames, 6) if frames else 0.0}


def merge_alerts(acl: FrameAlerts, sec: Mapping | None, payload: Sequence, host: Sequence, rules: RuleSet
                 ) -> FrameAlerts:
    """One frame's alerts from the classifier's (``acl``, :func:`frame_alerts`) and the payload rules
    that matched (``payload``; ``host``: those the host path found), in Suricata's default action
    order (pass, drop, reject, alert; then priority, then file order): a classifier ``pass`` hit or a
    matching payload ``pass`` rule silences the frame; else the first ``drop``/``reject`` rule in
    order, if any, is its only alert; else every alert rule fires, in order. The action stays the
    classifier's (``blocked`` only when it dropped the frame: the matcher does not change forwarding)."""
    out = FrameAlerts(acl.acl_rule, list(acl.alerts), acl.action, acl.host_finished,
                      [(r.rule.gid, r.rule.sid) for r in payload], [(r.rule.gid, r.rule.sid) for r in host])
    if not payload:
        return out
    acl_action = AclAction(sec["acl_action"]) if sec and sec["acl_hit"] else None
    if acl_action is AclAction.PASS or any(r.rule.action == "pass" for r in payload):
        out.alerts = []
        return out
    order = rules.order
    blocking = [(r.rule.gid, r.rule.sid) for r in payload if r.rule.action != "alert"]
    if acl_action in (AclAction.DROP, AclAction.REJECT):
        blocking += acl.alerts[:1]
    if blocking:
        out.alerts = [min(blocking, key=order.__getitem__)]
        return out
    fired = out.alerts + [rid for rid in out.payload if rid not in out.alerts]
    out.alerts = sorted(fired, key=order.__getitem__)
    return out


def frame_alerts(sec: Mapping[str, int] | None, meta: Mapping, in_port: int, rules: RuleSet,
                 slots: Mapping[int, tuple[int, int]]) -> FrameAlerts:
    """The alerts of one frame from its record's security fields ``sec`` (module docstring)."""
    if not sec or not sec["acl_hit"]:
        return FrameAlerts()
    rule = slots.get(sec["acl_slot"])
    if rule is None:
        from sim.run.engine import EngineError
        raise EngineError(f"the record names ACL counter slot {sec['acl_slot']}, which holds no programmed rule")
    action = AclAction(sec["acl_action"])
    if not action.decides:
        return FrameAlerts()        # a punt or mirror entry decides nothing (no acl_rule, no alert)
    out = FrameAlerts(acl_rule=rule[1])
    if action is AclAction.PASS:
        return out
    out.alerts = [rule]
    if action in (AclAction.DROP, AclAction.REJECT):
        out.action = ACTION_BLOCKED
    elif sec["acl_multi"]:
        from host_driver.model.acl import acl_key, classify
        key = acl_key(meta, in_port, bool(sec["flow_established"]), bool(sec["flow_to_server"]))
        full = classify(rules.entries, key)
        if full.alerts[:1] != [rule]:
            log.warning("host path: the NIC's first alert %d:%d is not software's first %s", *rule, full.alerts[:1])
        out.alerts = [rule] + [r for r in full.alerts if r != rule]
        out.host_finished = True
    return out


def alert_events(alerts: FrameAlerts, rules: RuleSet, meta: Mapping, *, timestamp: float, in_iface: str,
                 in_file: str, pcap_cnt: int) -> list[dict]:
    """The eve.json events of one frame's alerts."""
    by_id = rules.rules_by_id
    events = []
    for rule in alerts.alerts:
        event = alert_event(by_id[rule], meta, timestamp=timestamp, action=alerts.action,
                            classifications=rules.classifications, in_iface=in_iface, pcap_cnt=pcap_cnt,
                            pkt_src="wire/pcap")
        event["pcap_filename"] = str(in_file)
        events.append(event)
    return events


def rules_table(rules: RuleSet, hits: Mapping[tuple[int, int], int]) -> list[dict]:
    """counters.json's ``rules``: every programmed rule in classifier order with its hit counter
    (frames it decided) as read through the driver."""
    by_id = rules.rules_by_id
    # A host-only payload rule's entries are ``punt``: that is what the NIC does with its header.
    actions = {(e.gid, e.sid): e.action for e in rules.entries if e.action in ("punt", "mirror")}
    seen = list(dict.fromkeys((e.gid, e.sid) for e in rules.entries))
    return [{"gid": g, "sid": s, "rev": by_id[(g, s)].rev, "action": actions.get((g, s), by_id[(g, s)].action),
             "msg": by_id[(g, s)].msg, "hits": hits.get((g, s), 0)} for g, s in seen]


def load_rule_set(path: str | Path, acl_entries: int, *, vars_path: str | Path | None = None,
                  matcher_index_bits: int = DEFAULT_INDEX_BITS) -> RuleSet:
    """Read, compile and fit a rule file (``classification.config`` beside it gives categories and
    priorities); its payload rules are compiled for a matcher of ``2**matcher_index_bits`` buckets
    (0: the NIC has no matcher; they are counted, not run, with a warning).
    :class:`host_driver.rules.RuleSyntaxError` (file, line, column) on bad input."""
    from host_driver.rules import compile_rules, load_vars, read_classifications, read_rules
    path = Path(path)
    address_groups, port_groups = load_vars(vars_path) if vars_path else ({}, {})
    cls_path = path.parent / "classification.config"
    classifications = read_classifications(cls_path) if cls_path.is_file() else None
    priorities = {name: c.priority for name, c in (classifications or {}).items()} or None
    rules = read_rules(path, address_groups, port_groups, priorities)
    compiled = compile_rules(rules, capacity=acl_entries, matcher_index_bits=matcher_index_bits or DEFAULT_INDEX_BITS)
    entries, left_out = fit_entries(compiled, acl_entries)
    matcher = compiled.matcher if matcher_index_bits and compiled.matcher.rules else None
    if compiled.matcher.rules and not matcher_index_bits:
        log.warning("%d payload rule(s) are not run: the build has no payload matcher (matcher_index_bits = 0)",
                    len(compiled.matcher.rules))
    return RuleSet(str(path), compiled, entries, classifications, left_out, matcher)
