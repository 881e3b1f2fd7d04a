"""``secnic run --rules --ips``: the host side of IPS mode (docs/security.md, "IPS: divert and re-inject").

With SECURITY CONTROL bit 3 set, the NIC diverts each frame it punts (and would forward) to its
``host`` port with a host tag (:mod:`hdl.packet.host_tag`) instead of forwarding it. The host
(:class:`IpsHost`) finishes the frame's alerts as the IDS host path does (:mod:`sim.run.alerts`:
the classifier's, the settled payload hits, the candidates :class:`HostPath` verifies with
Hyperscan) and decides as Suricata in IPS mode: the frame is dropped when its alert, in Suricata's
action order, is a ``drop`` or ``reject`` rule's; otherwise it is passed, and the host re-injects
it into the host port with the tag's ``reinject`` bit set
(:func:`host_driver.blocks.security.reinjection`) so that the NIC sends it where it would have gone.

**The host loop's timing rule** (every engine): the host answers before the next input frame is
offered. The model engine processes a diverted frame's re-injection right after it, before the next
frame in its service order; the simulators (:class:`HostLoop`, used by ``sim.run.nic_cocotb`` and
``sim.bulk.run``) offer the input frames one at a time in that same order (the model engine's
round robin over the schedule, ``sim.run.engine._service_order``), each at its scheduled cycle
or once the frame before it has its record and, when diverted, the host's re-injection has its
record, whichever is later. So every engine switches the same frames in the same order and the
outputs agree byte for byte; the simulators' timing figures include the host's round trips.

A dropped frame's eve.json lines are its alert, ``blocked``, and an ``event_type: drop`` event
(:func:`drop_event`) as Suricata writes one for a packet a rule dropped (``drop`` logging on).
"""

from __future__ import annotations

from collections.abc import Mapping

from hdl.packet.layouts import IPPROTO_TCP, IPPROTO_UDP, IPv4, Tcp, decode
from hdl.packet.meta import L3Type
from sim.run.alerts import HostPath, RuleSet, frame_alerts, merge_alerts, slot_rules

__all__ = ["IpsHost", "HostLoop", "drop_event", "PASS", "DROP"]

#: The host's verdicts on a diverted frame.
PASS, DROP = "pass", "drop"


class IpsHost:
    """The host's decision on each diverted frame: :data:`DROP` or :data:`PASS` (module docstring).

    It keeps its own :class:`HostPath` (its counts are the decisions', apart from the report's)."""

    def __init__(self, rules: RuleSet, acl_entries: int):
        self.rules = rules
        self.slots = slot_rules(rules.entries, acl_entries)
        self.path = HostPath(rules.matcher) if rules.matcher is not None else None
        self.passed = self.dropped = 0

    def __repr__(self):
        return f"IpsHost({self.rules.source!r}, passed={self.passed}, dropped={self.dropped})"

    def decide(self, sec: Mapping, meta: Mapping, in_port: int, frame: bytes) -> str:
        """The verdict on one diverted frame: ``sec`` its record's security fields, ``meta`` its parsed
        fields, ``frame`` its bytes as the NIC received them (the tag removed)."""
        alerts = frame_alerts(sec, meta, in_port, self.rules, self.slots)
        if self.path is not None:
            matched, found = self.path.frame(sec, frame)
            alerts = merge_alerts(alerts, sec, matched, found, self.rules)
        blocking = bool(alerts.alerts) and self.rules.rules_by_id[alerts.alerts[0]].action in ("drop", "reject")
        if blocking:
            self.dropped += 1
            return DROP
        self.passed += 1
        return PASS


class HostLoop:
    """The host side of IPS mode in a simulator harness: for each record, whether the frame was
    diverted; for each diverted frame taken off the host port, the host's answer (module docstring,
    "The host loop's timing rule"). ``config`` is the build, ``rules`` the run's
    :class:`sim.run.alerts.RuleSet`."""

    def __init__(self, config, rules: RuleSet):
        self.config = config
        self.host = IpsHost(rules, config.security.acl_entries)
        self.port = config.security.bypass_port

    def __repr__(self):
        return f"HostLoop(port={self.port}, {self.host!r})"

    def diverted(self, record_bits: int) -> bool:
        """The record's verdict is PUNT: the NIC diverted the frame to the host port."""
        from hdl.packet.meta import Verdict
        from sim.run.engine import decode_record
        return decode_record(self.config, record_bits)["verdict"] == Verdict.PUNT

    def answer(self, record_bits: int, tagged: bytes) -> tuple[str, bytes | None]:
        """(verdict, the frame to send back into the host port or None) for the diverted frame
        ``tagged`` (as the host port sent it) whose record is ``record_bits``: the host's inputs are
        the record's fields and the frame with its tag removed."""
        from host_driver.blocks.security import reinjection, split_host_tag
        from sim.run.alerts import record_security_fields
        from sim.run.engine import decode_record
        rec = decode_record(self.config, record_bits)
        _, inner = split_host_tag(tagged)
        verdict = self.host.decide(record_security_fields(self.config, rec), rec["meta"], rec["in_port"], inner)
        return verdict, (reinjection(tagged) if verdict == PASS else None)


def is_tagged(frame: bytes) -> bool:
    """``frame`` carries a host tag (a diverted frame on the host port's egress)."""
    from hdl.packet.host_tag import HOST_TAG_ETHERTYPE, HOST_TAG_OFFSET
    return frame[HOST_TAG_OFFSET:HOST_TAG_OFFSET + 2] == HOST_TAG_ETHERTYPE.to_bytes(2, "big")


def drop_event(alert: dict, meta: Mapping, frame: bytes) -> dict:
    """The ``event_type: drop`` event of a frame the host dropped, from its (blocked) alert event:
    the same header fields and, under ``drop``, the packet's IP and TCP/UDP fields as Suricata logs
    them, with ``reason: rules``."""
    event = {k: v for k, v in alert.items() if k != "alert"}
    event["event_type"] = "drop"
    drop: dict = {"len": len(frame) - meta["l3_offset"]}
    l3, l4 = meta["l3_offset"], meta["l4_offset"]
    if meta["l3_type"] == L3Type.IPV4:
        ip = decode(IPv4, frame[l3:])
        drop.update(len=int(ip.total_length), tos=int(ip.dscp) << 2 | int(ip.ecn), ttl=int(ip.ttl),
                    ipid=int(ip.identification))
    else:
        drop["hoplimit"] = meta["ip_ttl"]
    if meta["has_l4"] and meta["ip_proto"] == IPPROTO_TCP:
        tcp = decode(Tcp, frame[l4:])
        flags = meta["tcp_flags"]
        drop.update(tcpseq=int(tcp.seq), tcpack=int(tcp.ack), tcpwin=int(tcp.window),
                    syn=bool(flags & 0x02), ack=bool(flags & 0x10), psh=bool(flags & 0x08), rst=bool(flags & 0x04),
                    urg=bool(flags & 0x20), fin=bool(flags & 0x01), tcpres=0, tcpurgp=int(tcp.urgent))
    elif meta["has_l4"] and meta["ip_proto"] == IPPROTO_UDP:
        drop["udplen"] = int.from_bytes(frame[l4 + 4:l4 + 6], "big")
    drop["reason"] = "rules"
    event["drop"] = drop
    return event
