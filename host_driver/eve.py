"""Alerts in Suricata's EVE JSON format: the events the NIC's rule hits become in ``eve.json``.

One JSON object per line, as Suricata's ``eve-log`` writes it (docs.suricata.io, "Eve JSON
Format"): the common part (``timestamp``, ``flow_id``, ``in_iface``, ``event_type``, ``vlan``, the
tuple ``src_ip``/``src_port``/``dest_ip``/``dest_port``, ``proto``, ``icmp_type``/``icmp_code``,
``pcap_cnt``, ``pkt_src``) and, for ``event_type: alert``, the ``alert`` object (``action``,
``gid``, ``signature_id``, ``rev``, ``signature``, ``category``, ``severity``, ``metadata``).
Every line is valid against Suricata's own schema (etc/schema.json; tests check it with
``jsonschema``).

Suricata's conventions kept here:

* ``alert.action`` is ``allowed`` unless the packet was dropped (a ``drop`` or ``reject`` rule on
  an inline NIC): ``blocked``.
* ``category`` is the classtype's description from classification.config; ``severity`` the rule's
  priority (its ``priority`` option, else its classtype's, else 3).
* ``proto`` is the protocol's name in Suricata's table (``TCP``, ``UDP``, ``ICMP``, ``IPv6-ICMP``,
  ...) or its number as text; ports only for TCP, UDP and SCTP; ICMP type and code for ICMP.
* ``timestamp`` is ``YYYY-MM-DDTHH:MM:SS.uuuuuu+0000`` (UTC).
* ``flow_id`` correlates every event of one flow; Suricata's is a hash of the flow, so is this
  one (the same 5-tuple and VLAN in either direction give the same id, 51 bits like Suricata's).

Nothing is half-written: :class:`EveWriter` writes to a temporary file next to the target and
renames it when closed without an error.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from host_driver.rules.parse import Classification
from host_driver.trace import format_ip

__all__ = ["alert_event", "flow_id", "eve_timestamp", "proto_name",
           "EveWriter", "ACTION_ALLOWED", "ACTION_BLOCKED"]

ACTION_ALLOWED = "allowed"
ACTION_BLOCKED = "blocked"

#: Suricata's names of IP protocols (util-proto-name.c); others are written as their number.
_PROTO_NAMES = {1: "ICMP", 2: "IGMP", 4: "IP-in-IP", 6: "TCP", 17: "UDP", 41: "IPv6", 47: "GRE", 50: "ESP",
                51: "AH", 58: "IPv6-ICMP", 103: "PIM", 132: "SCTP"}
_PORT_PROTOS = {6, 17, 132}
_ICMP_PROTOS = {1, 58}
#: Suricata's flow ids are positive 51-bit numbers (they stay exact in a JSON double).
_FLOW_ID_BITS = 51


def eve_timestamp(seconds: float) -> str:
    """Seconds since the epoch as Suricata writes them: ``2026-12-07T12:00:00.000001+0000``."""
    whole = int(seconds)
    micros = round((seconds - whole) * 1e6)
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    return datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{micros:06d}+0000"


def proto_name(ip_proto: int) -> str:
    """``proto`` of an event: Suricata's name of the IP protocol, or its number."""
    return _PROTO_NAMES.get(ip_proto, str(ip_proto))


def _vlans(meta: Mapping) -> list[int]:
    return [meta[f"vlan{k}_vid"] for k in range(min(meta.get("vlan_count", 0), 2))]


def flow_id(meta: Mapping) -> int:
    """A positive id shared by both directions of a flow (addresses, ports, protocol, VLANs of a
    parsed frame, :func:`host_driver.model.nic.parse_frame`'s fields)."""
    ends = sorted([(meta["ip_src"], meta.get("sport", 0)), (meta["ip_dst"], meta.get("dport", 0))])
    key = repr((meta["l3_type"], meta["ip_proto"], ends, _vlans(meta))).encode()
    value = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & ((1 << _FLOW_ID_BITS) - 1)
    return value or 1


def _metadata(entries) -> dict[str, list[str]]:
    """A rule's ``metadata`` option (``key value`` entries) as Suricata logs it: key -> values."""
    out: dict[str, list[str]] = {}
    for entry in entries:
        key, _, value = str(entry).strip().partition(" ")
        if key:
            out.setdefault(key, []).append(value.strip())
    return out


def alert_event(rule, meta: Mapping, *, timestamp: float, action: str = ACTION_ALLOWED,
                classifications: Mapping[str, Classification] | None = None, in_iface: str | None = None,
                pcap_cnt: int | None = None, pkt_src: str | None = None, direction: str | None = None) -> dict:
    """The ``event_type: alert`` event of ``rule`` (a :class:`host_driver.rules.Rule`, or any object
    with ``gid``, ``sid``, ``rev``, ``msg``, ``classtype``, ``priority``, ``metadata``) firing on the
    frame whose parsed fields are ``meta``.

    ``action``: :data:`ACTION_ALLOWED` or :data:`ACTION_BLOCKED` (the frame was dropped).
    ``classifications`` gives ``category`` (the classtype's description; left out when the rule has
    no known classtype, as Suricata does). ``pcap_cnt``: the frame's number in its capture, from 1.
    """
    if action not in (ACTION_ALLOWED, ACTION_BLOCKED):
        raise ValueError(f"action must be {ACTION_ALLOWED!r} or {ACTION_BLOCKED!r}, not {action!r}")
    if not meta.get("has_l3"):
        raise ValueError("an alert event needs an IP packet (the rule compiler takes IP rules only)")
    event: dict = {"timestamp": eve_timestamp(timestamp), "flow_id": flow_id(meta)}
    if pcap_cnt is not None:
        event["pcap_cnt"] = pcap_cnt
    if in_iface is not None:
        event["in_iface"] = in_iface
    event["event_type"] = "alert"
    vlans = _vlans(meta)
    if vlans:
        event["vlan"] = vlans
    l3, proto = meta["l3_type"], meta["ip_proto"]
    event["src_ip"] = format_ip(meta["ip_src"], l3)
    if proto in _PORT_PROTOS and meta.get("has_l4"):
        event["src_port"] = meta["sport"]
    event["dest_ip"] = format_ip(meta["ip_dst"], l3)
    if proto in _PORT_PROTOS and meta.get("has_l4"):
        event["dest_port"] = meta["dport"]
    event["proto"] = proto_name(proto)
    if proto in _ICMP_PROTOS and meta.get("has_l4"):
        event["icmp_type"], event["icmp_code"] = meta["icmp_type"], meta["icmp_code"]
    if pkt_src is not None:
        event["pkt_src"] = pkt_src
    if direction is not None:
        event["direction"] = direction
    alert = {"action": action, "gid": rule.gid, "signature_id": rule.sid, "rev": rule.rev, "signature": rule.msg}
    known = (classifications or {}).get(rule.classtype) if rule.classtype else None
    if known is not None:
        alert["category"] = known.description
    alert["severity"] = rule.priority
    metadata = _metadata(getattr(rule, "metadata", ()) or ())
    if metadata:
        alert["metadata"] = metadata
    event["alert"] = alert
    return event


class EveWriter:
    """Writes events to ``path``, one JSON object per line, all or nothing: the lines go to a
    temporary file in the same folder, renamed to ``path`` by :meth:`close` (and by a ``with``
    block that ends without an exception); on an exception the temporary file is removed and
    ``path`` is left as it was."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._tmp = self.path.with_name(f".{self.path.name}.partial")
        self._file = self._tmp.open("w", encoding="utf-8")
        self.count = 0

    def write(self, event: Mapping) -> None:
        self._file.write(json.dumps(event, separators=(",", ":")) + "\n")
        self.count += 1

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
            os.replace(self._tmp, self.path)

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> EveWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
