"""``secnic run --rules``: the rule set a run programs, and the alerts its frames raise.

The NIC is programmed through the driver (:meth:`host_driver.blocks.security.Security.program`)
with the compiled header rules that fit its ACL (:func:`fit_entries`); each frame's verdict
record then says which entry decided it (``acl_slot``: the rule's counter slot). What the host
makes of a record (:func:`frame_alerts`), the same for every engine:

* ``pass``: no alert; ``drop`` / ``reject``: one alert, ``blocked``; ``alert``: one alert,
  ``allowed``, and when ``acl_multi`` is set more alert rules may apply: the host path finishes the
  list in software (:func:`host_driver.model.acl.classify` over the programmed entries, with the
  record's flow bits) and the run counts that host work.
* eve.json gets one :func:`host_driver.eve.alert_event` per alert, in frame order; the NIC port is
  the event's ``in_iface`` and the input file its ``pcap_filename`` (Suricata's own fields: its
  schema admits no others).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hdl.acl.layouts import AclAction, TcamGeometry
from hdl.security.regs import CYCLES_PER_KEY
from host_driver.eve import ACTION_ALLOWED, ACTION_BLOCKED, alert_event
from host_driver.rules.compile import ClassifierEntry, CompiledRules

__all__ = ["RuleSet", "FrameAlerts", "fit_entries", "frame_alerts", "alert_events", "slot_rules", "rules_table",
           "load_rule_set", "SECURITY_FIELDS"]

log = logging.getLogger(__name__)

#: The verdict record's security fields (hdl.packet.meta.make_verdict_record(..., security=True)).
SECURITY_FIELDS = ("acl_hit", "acl_action", "acl_index", "acl_slot", "acl_multi", "flow_found", "flow_established",
                   "flow_to_server", "flow_outcome")


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

    @property
    def rules_by_id(self) -> dict:
        return {(r.gid, r.sid): r for r in self.compiled.rules}


def fit_entries(compiled: CompiledRules, acl_entries: int) -> tuple[list[ClassifierEntry], list[tuple[int, int]]]:
    """The compiled entries whose rules fit an ACL of ``acl_entries`` ternary entries, whole rules in
    classifier order (a rule that does not fit is left out, and so is every rule after it: leaving
    out a rule but keeping a later one would change the first match). Returns (entries, left out)."""
    out, used, cut = [], 0, False
    left_out: list[tuple[int, int]] = []
    by_rule: dict[tuple[int, int], list[ClassifierEntry]] = {}
    for e in compiled.entries:
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
    whether the host path finished the alert list in software."""
    acl_rule: int | None = None
    alerts: list[tuple[int, int]] = field(default_factory=list)
    action: str = ACTION_ALLOWED
    host_finished: bool = False


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
    seen = list(dict.fromkeys((e.gid, e.sid) for e in rules.entries))
    return [{"gid": g, "sid": s, "rev": by_id[(g, s)].rev, "action": by_id[(g, s)].action,
             "msg": by_id[(g, s)].msg, "hits": hits.get((g, s), 0)} for g, s in seen]


def load_rule_set(path: str | Path, acl_entries: int, *, vars_path: str | Path | None = None) -> RuleSet:
    """Read, compile and fit a rule file (``classification.config`` beside it gives categories and
    priorities). :class:`host_driver.rules.RuleSyntaxError` (file, line, column) on bad input."""
    from host_driver.rules import compile_rules, load_vars, read_classifications, read_rules
    path = Path(path)
    address_groups, port_groups = load_vars(vars_path) if vars_path else ({}, {})
    cls_path = path.parent / "classification.config"
    classifications = read_classifications(cls_path) if cls_path.is_file() else None
    priorities = {name: c.priority for name, c in (classifications or {}).items()} or None
    rules = read_rules(path, address_groups, port_groups, priorities)
    compiled = compile_rules(rules, capacity=acl_entries)
    entries, left_out = fit_entries(compiled, acl_entries)
    return RuleSet(str(path), compiled, entries, classifications, left_out)
