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

What stands in for blocks that have not landed (said in every report under ``offload.basis``):

* **Matcher**: a frame is punted when the NIC's own record says ``punt``, and, while the matcher is
  not wired into the NIC, when it matches the header of a rule that the rule compiler
  (:mod:`host_driver.rules`) leaves to the payload matcher (``payload``) or to the host (``host
  path``): such traffic is inspected on the host (the "rule split"). Once the matcher lands, set
  ``rule_split_punts=False`` and the NIC's records alone decide.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["NicRun", "NicPath", "SimulatedNic", "rule_matches", "PUNT_VERDICTS", "WARMUP_NS", "frame_rate_bound",
           "security_settings", "ACL_DROP_REASONS"]

log = logging.getLogger(__name__)

#: Rule verdicts (host_driver.rules) whose traffic is inspected on the host until the matcher lands.
PUNT_VERDICTS = ("host path", "payload")
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
    ``engine`` ("verilator": bulk mode; "model": the golden model), with the punt set also taken from
    ``rules`` (compiled rules) while ``rule_split_punts``. ``acl`` (a :class:`sim.run.alerts.RuleSet`,
    :func:`sim.compare.firewall.nic_rule_set`) is programmed into the security stage before the traffic; the config
    must have one (``config.security``)."""

    def __init__(self, config, rules: Sequence = (), engine: str = "verilator", rule_split_punts: bool = True,
                 topology=None, acl=None):
        if acl is not None and config.security is None:
            raise ValueError("SimulatedNic: firewall rules (acl) need a NIC with a security stage (config.security)")
        self.config, self.engine, self.topology, self.acl = config, engine, topology, acl
        self.punt_rules = [r for r in rules if r.verdict in PUNT_VERDICTS] if rule_split_punts else []
        self.rule_split_punts = rule_split_punts

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
        # The ACL decides first: a frame it drops never reaches the host, whatever the rule split says.
        acl_dropped = [i for i, r in enumerate(records) if r is not None and r.get("verdict") == "drop"
                       and r.get("reason") in ACL_DROP_REASONS]
        dropped = set(acl_dropped)
        punted = [i for i, r in enumerate(records) if r is not None and i not in dropped and (
                  r.get("verdict") == "punt" or any(rule_matches(rule, r) for rule in self.punt_rules))]
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
        if self.acl is None:
            firewall = "firewall: none (no chain has a firewall hop)"
        else:
            sec = self.config.security
            n_rules = len({(e.gid, e.sid) for e in self.acl.entries})
            firewall = (f"firewall: the firewall hops' {n_rules} header-only rules ({self.acl.source}: each chain's "
                        "with $HOME_NET its VM's network, narrowed to frames to it) in the NIC's "
                        f"security stage ({sum(e.ternary_count() for e in self.acl.entries)} of {sec.acl_entries} "
                        f"ACL entries, flow table {sec.flow_sets}x{sec.flow_ways}), programmed through the driver; "
                        f"the frames it drops are dropped by the NIC ({len(acl_dropped)} here)"
                        + (f"; {len(self.acl.left_out)} rules did not fit" if self.acl.left_out else ""))
        basis = (f"{self.engine} ({mode}); switch fabric: {fabric}; {firewall}; punts: NIC records"
                 + (f" + rule split ({len(self.punt_rules)} payload/host-path rules' traffic inspected on the host "
                    "until the matcher is wired into the NIC)" if self.rule_split_punts else ""))
        warmup_cycles = round(warmup * self.config.clock_mhz / 1000)
        security = None
        if self.acl is not None:
            security = {"counters": counters.get("security"), "alerts": run["security"]["alerts"]}
        return NicRun(records, egress, counters, run, punted, basis, sorted(bridged), warmup_cycles, acl_dropped,
                      security)
