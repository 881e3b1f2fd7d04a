"""The offloaded path: the NIC behind a narrow interface that later blocks plug into.

:class:`NicPath` is all the comparison asks of the NIC: given the scenario's frames with their
arrival times, run them and return a :class:`NicRun`: per-frame records (verdict, reason, egress
ports), packets per egress port, the counters, run.json, and the **punt set** (the frames that go
to the host for software inspection). :class:`SimulatedNic` implements it with the NIC as it is
today: :func:`sim.run.engine.run_engine` in bulk mode (Verilator), or the golden model, on a
**switch** built for the scenario (:mod:`sim.compare.topology`): frames from the uplink enter
``phy0``, a VM's frames its own port, and the switch forwards each to its VM's port by MAC
address, after one learning frame per VM port. Egress per port and the switch's counters are the
gateware's (run_engine holds every decision and byte to the golden model).

**The firewall in the NIC.** The header-only rules of the chains' firewall hops (the rules the
software path's firewall VMs evaluate), each chain's scoped to its own VM
(:func:`sim.compare.firewall.nic_rule_set`), run in the NIC's security stage: the switch's config
gets ``security`` (:func:`security_settings`: the ACL sized to hold them all), the driver programs
the entries before the traffic, as ``secnic run --rules`` does, and the frames the ACL drops or
rejects are dropped by the NIC (``NicRun.acl_dropped``, counted in the report).

**The payload matcher in the NIC.** The IDS hops' content rules, each chain's scoped to its own VM
(:func:`sim.compare.firewall.chain_ids`), are compiled into the security stage's matcher with the
ACL (the same :class:`sim.run.alerts.RuleSet`) and programmed by the driver. A frame goes to the
host when its record says so: the matcher's ``match_punt`` (trace.jsonl's ``match.punt``: an
unverified candidate, an overflow, a frame too long for it, or every inspected payload when the
program has host-only rules) or a ``punt`` verdict. This round the matcher is an IDS (docs/security.md):
a punt is a copy of the frame for the host path, and the NIC forwards the frame all the same.

Rules neither the ACL nor the matcher can run (``host path``: pcre, ...) are not run on the offloaded
path: the frames their headers match are counted (``NicRun.host_rule_frames``) and said in the basis.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["NicRun", "NicPath", "SimulatedNic", "rule_matches", "WARMUP_NS", "frame_rate_bound",
           "security_settings", "ACL_DROP_REASONS", "is_punt"]

log = logging.getLogger(__name__)

#: The traffic starts this long after the learning frames (which take well under 1 us).
WARMUP_NS = 2000
_PROTO = {"tcp": {6}, "udp": {17}, "icmp": {1}, "ip": None, "pkthdr": None}
#: trace.jsonl reasons of frames the security stage dropped (its policy, not a loss).
ACL_DROP_REASONS = ("acl_drop", "acl_reject", "default_deny")


@dataclass
class NicRun:
    """What the NIC did with a batch of frames (the offloaded path's side of the comparison)."""
    records: list[dict]
    egress_packets: dict[str, int]
    counters: dict
    run: dict
    punted: list[int] = field(default_factory=list)
    basis: str = ""
    #: Frames between two VMs behind one NIC port (bridged on the host; their records are None).
    bridged: list[int] = field(default_factory=list)
    #: Cycles of the learning frames before the traffic (not part of its span).
    warmup_cycles: int = 0
    #: Frames the NIC's security stage dropped by policy (ACL drop / reject, default deny).
    acl_dropped: list[int] = field(default_factory=list)
    #: The security stage's counters (SECURITY block) and alerts, when the NIC has one.
    security: dict | None = None
    #: Frames whose header matches one of their chain's host-path rules (pcre, ...): not run offloaded.
    host_rule_frames: list[int] = field(default_factory=list)
    #: run.json's ``host_path`` (the payload rules' host path: punted, inspected, alerts), if any.
    host_path: dict | None = None


def is_punt(rec: dict | None) -> bool:
    """Whether the NIC sends a frame to the host, by its trace.jsonl record: the matcher's
    ``match_punt`` (``match.punt``) or a ``punt`` verdict."""
    return rec is not None and (rec.get("verdict") == "punt" or bool((rec.get("match") or {}).get("punt")))


class NicPath:
    """The interface: ``run(frames, arrivals_ns) -> NicRun``. Frames are :class:`sim.compare.traffic.Frame`."""

    def run(self, frames: Sequence, arrivals_ns: Sequence[float]) -> NicRun:  # pragma: no cover - interface
        raise NotImplementedError


def rule_matches(rule, rec: dict) -> bool:
    """Whether a parsed frame (a trace.jsonl record) matches a rule's header (protocol, addresses, ports)."""
    protos = _PROTO.get(rule.proto, set())
    if rec.get("ip_proto") is None:
        return False
    if protos is not None and rec["ip_proto"] not in protos:
        return False
    try:
        src, dst = ipaddress.ip_address(rec["ip_src"]), ipaddress.ip_address(rec["ip_dst"])
    except (KeyError, TypeError, ValueError):
        return False

    def has(aset, addr) -> bool:
        iv = aset.v4 if addr.version == 4 else aset.v6
        return any(lo <= int(addr) <= hi for lo, hi in iv.intervals)

    def port_in(pset, port) -> bool:
        if protos is None or protos == {1}:
            return True
        return port is not None and any(lo <= port <= hi for lo, hi in pset.intervals)

    def one_way(s, sp, d, dp) -> bool:
        return has(rule.src, s) and has(rule.dst, d) and port_in(rule.sport, sp) and port_in(rule.dport, dp)
    sport, dport = rec.get("sport"), rec.get("dport")
    return one_way(src, sport, dst, dport) or (rule.bidirectional and one_way(dst, dport, src, sport))


def frame_rate_bound(config, frames) -> dict:
    """What the NIC's shared pipeline can carry of this traffic mix: each frame holds it for its
    beats, and a switch for at least ``FRAME_CYCLES`` (one frame per 8 cycles: the MAC table is
    sequential; docs/switch.md). Gb/s and what binds: ``data path`` or ``frame rate``."""
    from hdl.switch.stage import FRAME_CYCLES
    nbytes = sum(f.length for f in frames)
    beats = sum(-(-f.length // config.bytes_per_beat) for f in frames)
    cycles = sum(max(-(-f.length // config.bytes_per_beat), FRAME_CYCLES) for f in frames)
    gbps = nbytes * 8 * config.clock_mhz / 1000 / cycles
    return {"gbps": round(gbps, 3), "by": "frame rate" if cycles > beats else "data path",
            "frame_cycles": FRAME_CYCLES, "data_path_gbps": round(nbytes * 8 * config.clock_mhz / 1000 / beats, 3)}


def security_settings(compiled):
    """The security stage of the comparison's NIC: the default stage with an ACL of the next power
    of two that holds every ternary entry of ``compiled`` (at least the default 256), so that no
    firewall rule is left out (a cut would drop every later rule too: sim.run.alerts.fit_entries)."""
    from hdl.acl.layouts import SLOT_BITS
    from hdl.security.settings import SecuritySettings
    need = sum(e.ternary_count() for e in compiled.entries)
    size = SecuritySettings().acl_entries
    while size < need and size < 1 << SLOT_BITS:
        size *= 2
    return SecuritySettings(acl_entries=size)


class SimulatedNic(NicPath):
    """The NIC of ``config`` (a switch: ``topology``, :class:`sim.compare.topology.Topology`) run by
    ``engine`` ("verilator": bulk mode; "model": the golden model). ``acl`` (a
    :class:`sim.run.alerts.RuleSet`, :func:`sim.compare.firewall.nic_rule_set`: the firewall hops'
    ACL entries and the IDS hops' matcher program) is programmed into the security stage before the
    traffic; the config must have one (``config.security``). ``host_rules`` maps a VM to its chain's
    host-path rules (counted, not run: module docstring)."""

    def __init__(self, config, engine: str = "verilator", topology=None, acl=None,
                 host_rules: dict[str, Sequence] | None = None):
        if acl is not None and config.security is None:
            raise ValueError("SimulatedNic: firewall rules (acl) need a NIC with a security stage (config.security)")
        if acl is not None and acl.matcher is not None and config.security.matcher is None:
            raise ValueError("SimulatedNic: content rules need a NIC with a payload matcher "
                             "(config.security.matcher_index_bits > 0)")
        self.config, self.engine, self.topology, self.acl = config, engine, topology, acl
        self.host_rules = host_rules or {}

    def prepare(self) -> None:
        """Build the simulator model once (before sweep points run it in parallel)."""
        if self.engine == "verilator":
            from sim.bulk.run import build_model
            build_model(self.config)

    def run(self, frames, arrivals_ns) -> NicRun:
        from sim.run.engine import InputFrame, run_engine
        topo = self.topology
        if topo is None:                     # a bump in the wire: uplink frames first port, VM-to-VM the last
            first, last = self.config.ports[0], self.config.ports[-1]
            learn, bridged = [], set()
            warmup = 0

            def port(f):
                return first if f.src_vm is None else last
        else:
            learn = topo.learning_frames()
            bridged = {i for i, f in enumerate(frames) if topo.bridged(f)}
            warmup = WARMUP_NS
            port = topo.ingress_port
        inputs = [InputFrame(p, "compare", k + 1, data, 0) for k, (p, data) in enumerate(learn)]
        index = []                           # input position -> frame index
        for i, (f, t) in enumerate(zip(frames, arrivals_ns, strict=True)):
            if i not in bridged:
                index.append(i)
                inputs.append(InputFrame(port(f), "compare", len(inputs) + 1, f.data, round(t) + warmup))
        with tempfile.TemporaryDirectory(prefix="secnic-compare-") as tmp:
            out = Path(tmp) / "run"
            run = run_engine(self.config, inputs, engine=self.engine, pace="pcap", out_dir=out,
                             bulk=True if self.engine == "verilator" else None, rules=self.acl)
            trace = [json.loads(line) for line in (out / "trace.jsonl").read_text().splitlines()]
            counters = json.loads((out / "counters.json").read_text())
        for k, r in enumerate(trace[:len(learn)]):
            if r.get("egress") or r.get("reason") != "same_port":
                raise RuntimeError(f"learning frame {k + 1} was not learned and kept on its port: {r}")
        records: list[dict | None] = [None] * len(frames)
        for i, r in zip(index, trace[len(learn):], strict=True):
            records[i] = r
        acl_dropped = [i for i, r in enumerate(records) if r is not None and r.get("verdict") == "drop"
                       and r.get("reason") in ACL_DROP_REASONS]
        # The records alone decide. The matcher runs beside the ACL, so a frame the ACL drops may be
        # punted too: the host path inspects its copy (run.json's host_path counts it alike).
        punted = [i for i, r in enumerate(records) if is_punt(r)]
        host_rule_frames = [i for i, (f, r) in enumerate(zip(frames, records)) if r is not None
                            and any(rule_matches(rule, r) for rule in self.host_rules.get(f.vm, ()))]
        egress: dict[str, int] = {}
        for r in records:
            for p in (r or {}).get("egress") or []:
                egress[p] = egress.get(p, 0) + 1
        mode = run.get("sim_mode") or run.get("timing")
        if topo is None:
            fabric = "two-port bump in the wire (uplink frames on the first port, VM-to-VM on the last)"
        else:
            bound = frame_rate_bound(self.config, frames)
            source = "the golden model" if self.engine == "model" else "the gateware"
            fabric = (f"{topo.describe()}; forwarding, egress per port and counters from {source} "
                      f"(one learning frame per VM port first); the shared pipeline carries at most "
                      f"{bound['gbps']:g} Gb/s of this mix (bound by the {bound['by']}: W={self.config.data_width} "
                      f"at {self.config.clock_mhz:g} MHz, one frame per {bound['frame_cycles']} cycles at most)")
        sec = self.config.security
        if self.acl is None or not self.acl.entries:
            firewall = "firewall: none (no chain has a firewall hop)"
        else:
            n_rules = len({(e.gid, e.sid) for e in self.acl.entries})
            firewall = (f"firewall: the firewall hops' {n_rules} header-only rules ({self.acl.source}: each chain's "
                        "with $HOME_NET its VM's network, narrowed to frames to it) in the NIC's "
                        f"security stage ({sum(e.ternary_count() for e in self.acl.entries)} of {sec.acl_entries} "
                        f"ACL entries, flow table {sec.flow_sets}x{sec.flow_ways}), programmed through the driver; "
                        f"the frames it drops are dropped by the NIC ({len(acl_dropped)} here)"
                        + (f"; {len(self.acl.left_out)} rules did not fit" if self.acl.left_out else ""))
        program = None if self.acl is None else self.acl.matcher
        if program is None:
            ids = "IDS: none (no chain with an IDS hop has content rules); punts: the NIC's records"
        else:
            status = program.by_status()
            n_sids = len({(r.rule.gid, r.rule.sid) for r in program.rules})
            ids = (f"IDS: the IDS hops' {n_sids} content rules ({len(program.rules)} scoped copies: each chain's "
                   f"narrowed to its VM's network) in the NIC's payload matcher ({len(program.table)} of "
                   f"{1 << program.index_bits} buckets; {len(status['offloaded'])} settled in hardware, "
                   f"{len(status['prefilter'])} prefiltered, {len(status['host only'])} host only"
                   + (", so every inspected payload is punted" if status["host only"] else "")
                   + f"), programmed through the driver; punts: the NIC's records (match_punt: {len(punted)} "
                   "frames here), each a copy the host path verifies while the NIC forwards the frame (IDS)")
        n_host = sum(len(v) for v in self.host_rules.values())
        if n_host:
            ids += (f"; not run offloaded: {len({(r.gid, r.sid) for v in self.host_rules.values() for r in v})} "
                    f"host-path rules (pcre, ...), whose headers match {len(host_rule_frames)} frames here")
        basis = f"{self.engine} ({mode}); switch fabric: {fabric}; {firewall}; {ids}"
        warmup_cycles = round(warmup * self.config.clock_mhz / 1000)
        security = None
        if self.acl is not None:
            security = {"counters": counters.get("security"), "alerts": run["security"]["alerts"]}
        return NicRun(records, egress, counters, run, punted, basis, sorted(bridged), warmup_cycles, acl_dropped,
                      security, host_rule_frames, run.get("host_path"))
