"""The software IDS VM's alerts: Hyperscan over each frame's payload, as Suricata's matcher runs.

The software path's IDS hop is priced by the calibration (``ids_match``: Hyperscan over the rules'
literals, plus Suricata's per-packet work); :class:`SoftwareIds` says what it *finds*, so the
report can hold the two paths' detections side by side. Per VM whose chain has an IDS hop, every
positive ``content`` of its content rules (:func:`sim.compare.firewall.chain_ids`, scoped to the
VM) is one Hyperscan expression (``HS_FLAG_CASELESS`` for ``nocase``, ``HS_FLAG_SOM_LEFTMOST`` for
the match's start) in one block-mode database. A rule alerts on a frame when its header matches the
frame (protocol, addresses, ports: :func:`sim.compare.offload.rule_matches`) and its contents
match in rule order with their ``offset`` / ``depth`` / ``distance`` / ``within`` /
``startswith`` / ``endswith`` and ``dsize`` (the first match that fits each content, no
backtracking), and no negated content matches anywhere. Rules the compiler leaves to the host path
(pcre, ...) are not run here either.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence

__all__ = ["SoftwareIds"]

log = logging.getLogger(__name__)


def _fits(c, start: int, end: int, size: int, prev_end: int | None) -> bool:
    if c.relative:
        if prev_end is None:
            return False
        if c.distance is not None and start < prev_end + c.distance:
            return False
        if c.within is not None and end > prev_end + c.within:
            return False
    else:
        lo = c.offset or 0
        if start < lo or (c.depth is not None and end > lo + c.depth):
            return False
    if c.startswith and start != 0:
        return False
    return not (c.endswith and end != size)


class SoftwareIds:
    """The IDS VMs of a scenario (``ids``: :func:`sim.compare.firewall.chain_ids`): :meth:`alerts`
    gives the sids each frame raises with Hyperscan as the matcher (module docstring)."""

    def __init__(self, ids: dict):
        import hyperscan

        from host_driver.rules.content import parse_content_rule
        self._per_vm = {}
        for vm, chain in ids.items():
            rules = [parse_content_rule(r) for r in chain.content]
            exprs, flags, owner = [], [], []
            for ri, cr in enumerate(rules):
                for ci, c in enumerate(cr.contents):
                    # Regex mode with \xHH: literal mode rejects NUL (docs/TOOLCHAIN, "hyperscan").
                    exprs.append(b"".join(b"\\x%02x" % b for b in c.pattern))
                    flags.append(hyperscan.HS_FLAG_SOM_LEFTMOST | (hyperscan.HS_FLAG_CASELESS if c.nocase else 0))
                    owner.append((ri, ci))
            if not exprs:
                continue
            db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            db.compile(expressions=exprs, ids=list(range(len(exprs))), elements=len(exprs), flags=flags)
            self._per_vm[vm] = (db, rules, owner)

    def __repr__(self) -> str:
        return f"SoftwareIds(vms={sorted(self._per_vm)})"

    def _frame_alerts(self, vm: str, data: bytes, config) -> tuple[int, ...]:
        from host_driver.model.nic import parse_frame
        from sim.compare.offload import rule_matches
        entry = self._per_vm.get(vm)
        if entry is None:
            return ()
        db, rules, owner = entry
        meta = parse_frame(data, physical=False, header_window=config.header_window, max_frame=config.max_frame)
        if not meta["has_payload_offset"] or not meta["has_l3"]:
            return ()
        payload = data[meta["payload_offset"]:]
        if meta["ip_proto"] == 6 or meta["ip_proto"] == 17:
            payload = payload[:max(0, _l3_end(data, meta) - meta["payload_offset"])]
        found: dict[tuple[int, int], list[tuple[int, int]]] = {}

        def on_match(expr_id, start, end, flags, context):
            found.setdefault(owner[expr_id], []).append((start, end))
        db.scan(payload, match_event_handler=on_match)
        if not found:
            return ()
        rec = {"ip_proto": meta["ip_proto"], "ip_src": str(ipaddress.IPv4Address(meta["ip_src"])),
               "ip_dst": str(ipaddress.IPv4Address(meta["ip_dst"])), "sport": meta["sport"], "dport": meta["dport"]}
        sids = []
        for ri, cr in enumerate(rules):
            if cr.dsize is not None and not cr.dsize.matches(len(payload)):
                continue
            prev_end, ok = None, True
            for ci, c in enumerate(cr.contents):
                spans = sorted(found.get((ri, ci), []))
                if c.negated:
                    if spans:
                        ok = False
                        break
                    continue
                hit = next(((s, e) for s, e in spans if _fits(c, s, e, len(payload), prev_end)), None)
                if hit is None:
                    ok = False
                    break
                prev_end = hit[1]
            if ok and rule_matches(cr.rule, rec):
                sids.append(cr.rule.sid)
        return tuple(sorted(set(sids)))

    def alerts(self, frames: Sequence, config) -> list[tuple[int, ...]]:
        """The sids each of ``frames`` (:class:`sim.compare.traffic.Frame`) raises in its VM's IDS."""
        out = [self._frame_alerts(f.vm, f.data, config) for f in frames]
        log.info("software IDS: %d of %d frames alert", sum(bool(a) for a in out), len(frames))
        return out


def _l3_end(data: bytes, meta: dict) -> int:
    """Where the IPv4 packet ends in the frame (its total length): the rest is Ethernet padding."""
    l3 = meta["l3_offset"]
    if meta["l3_type"] != 1 or len(data) < l3 + 4:
        return len(data)
    return min(len(data), l3 + int.from_bytes(data[l3 + 2:l3 + 4], "big"))
