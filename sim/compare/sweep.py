"""The comparison's points, run locally or as Dask tasks, and the answers drawn from them.

A point is a plain dict (``{"task": "software", "gbps": 4.0}``) and :func:`run_point` a pure
function of the scenario file, the calibration file, the NIC engine and the point: every random
draw is seeded from the scenario, so a point gives the same result in this process, in a
LocalCluster worker or on a remote Dask cluster, and report.json is identical either way.

Tasks:

* ``software`` / ``offload``: one offered load through one path (metrics: :func:`_metrics`);
* ``chain``: the software path at the reference load with 1, 2 or 3 appliances per chain;
* ``storm_software`` / ``storm_nic``: the loop storm (the uplink and two VM ports closed through one
  external flooding switch, so every broadcast that leaves one comes back on the two others) with
  the scenario's traffic.
"""

from __future__ import annotations

import concurrent.futures
import functools
import heapq
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sim.compare.costs import Costs, load_calibration
from sim.compare.des import Packet, Stage, percentile, simulate
from sim.compare.scenario import Scenario, load_scenario
from sim.compare.traffic import Frame, arrivals, make_frames

__all__ = ["Context", "plan", "prepare", "wait_prepared", "NIC_TASKS", "run_point", "storm_spec", "storm_on_model",
           "run_points", "find_knee", "KNEE_DROP", "KNEE_LATENCY_FACTOR",
           "STORM_LOOP_PORTS", "STORM_LOOP_DELAY_NS", "comparison_topology"]

log = logging.getLogger(__name__)

#: A curve's knee: the first load where more than this share of frames is dropped ...
KNEE_DROP = 0.01
#: ... or p99 latency is this many times its value at the lowest load.
KNEE_LATENCY_FACTOR = 5.0
#: The loop storm's topology: this many of the NIC's ports (the uplink and VM ports whose VMs bridge
#: their vNIC onto the physical network) closed through one flooding external switch.
STORM_LOOP_PORTS = 3
#: Time a frame spends outside the host between leaving one uplink and returning on another.
STORM_LOOP_DELAY_NS = 2000.0
#: Broadcast frame of the storm (an ARP request's size).
STORM_FRAME = 60
#: Burst of the looped ports' broadcast storm buckets (bytes).
STORM_BURST = 2 * 1514
#: Frames the external switch queues towards each uplink; more are lost there.
STORM_CABLE_FRAMES = 64


@dataclass(frozen=True)
class Context:
    """Everything a worker needs, as paths and names (small to ship to a Dask worker)."""
    scenario: str
    calibration: str
    engine: str = "verilator"


@functools.lru_cache(maxsize=4)
def _load(ctx: Context):
    scenario = load_scenario(ctx.scenario)
    cal = load_calibration(ctx.calibration)
    costs = Costs.from_calibration(cal, scenario.host.clock_ghz)
    frames = make_frames(scenario)
    rules = _rules(scenario)
    return scenario, costs, frames, rules


@functools.lru_cache(maxsize=4)
def _firewalls(ctx: Context):
    """The chains' firewalls (:func:`sim.compare.firewall.chain_firewalls`) and each frame's firewall
    verdict (its chain's first-match action, None without a firewall hop), computed once per process."""
    from sim.compare.firewall import chain_firewalls, verdicts
    scenario, _, frames, _ = _load(ctx)
    firewalls = chain_firewalls(scenario)
    return firewalls, verdicts(frames, firewalls, scenario.nic_config(), per_flow=scenario.traffic.kind == "imix")


def _policy_drops(ctx: Context) -> dict[int, str]:
    """Frame index -> report reason (``acl_drop``, ``acl_reject``) of the frames their firewall drops."""
    from sim.compare.firewall import ACL_REASON
    return {i: ACL_REASON[v] for i, v in enumerate(_firewalls(ctx)[1]) if v in ACL_REASON}


@functools.lru_cache(maxsize=4)
def _software_alerts(ctx: Context) -> list[tuple[int, ...]]:
    """The content-rule sids each frame raises in its VM's software IDS (:class:`sim.compare.ids.SoftwareIds`:
    Hyperscan), computed once per process."""
    from sim.compare.ids import SoftwareIds
    scenario, _, frames, _ = _load(ctx)
    return SoftwareIds(_ids(ctx)).alerts(frames, scenario.nic_config())


def _detection(frames: Sequence[Frame], alerts: dict[int, tuple[int, ...]], dropped: set[int]) -> dict:
    """The fields both paths report alike on what the security functions caught: frames with an IDS
    (content rule) alert, by sid, and what became of the planted frames (``[traffic] attack_share``,
    ``payload_hit_share``): attacks dropped by policy, payloads alerted on by their own rule."""
    by_sid: dict[str, int] = {}
    for sids in alerts.values():
        for sid in sids:
            by_sid[str(sid)] = by_sid.get(str(sid), 0) + 1
    attacks = [i for i, f in enumerate(frames) if f.planted and f.planted.kind == "attack"]
    payloads = [i for i, f in enumerate(frames) if f.planted and f.planted.kind == "payload"]
    return {"ids_alerts": sum(1 for sids in alerts.values() if sids), "ids_alerts_by_sid": dict(sorted(by_sid.items())),
            "planted": {"attack": len(attacks), "attack_dropped": sum(i in dropped for i in attacks),
                        "payload": len(payloads),
                        "payload_alerted": sum(frames[i].planted.sid in alerts.get(i, ()) for i in payloads)}}


def _rules(scenario: Scenario) -> dict:
    """Compiled rules per rule file (the rule compiler's split: offloaded / payload / host path)."""
    from host_driver.rules import compile_rules, read_rules
    out = {}
    for path in scenario.rule_files():
        out[path] = compile_rules(read_rules(path))
    return out


def reference_load(scenario: Scenario) -> float:
    """The load of the capacity answer, the chaining and the loop storm (``[sweep] reference_gbps``)."""
    return scenario.reference_gbps


def plan(scenario: Scenario) -> list[dict]:
    """Every point of the comparison, in report order."""
    points = [{"task": path, "gbps": g} for path in ("software", "offload") for g in scenario.sweep_gbps]
    ref = reference_load(scenario)
    points += [{"task": "chain", "gbps": ref, "hops": n} for n in (1, 2, 3)]
    points += [{"task": "storm_software", "gbps": ref}, {"task": "storm_nic", "gbps": ref}]
    return points


# -- software path ---------------------------------------------------------------------------------

def _chain_hops(scenario: Scenario, vm: str, n: int | None):
    hops = list(scenario.chains[vm].hops)
    if n is None or not hops:
        return hops
    return [hops[min(i, len(hops) - 1)] for i in range(n)]


def _software_stages(scenario: Scenario, costs: Costs, n: int | None) -> list[Stage]:
    h = scenario.host
    stages = [Stage("vswitch", h.vswitch_cores, h.ring, h.mode, costs.wake_ns)]
    for vm in scenario.vms:
        for i, hop in enumerate(_chain_hops(scenario, vm.name, n)):
            stages.append(Stage(f"{vm.name}.{i}.{hop.kind}", hop.cores, h.ring, h.mode, costs.wake_ns))
    return stages


def _software_route(scenario, costs: Costs, rules, frame: Frame, n: int | None,
                    dropped: bool = False) -> tuple[tuple[str, float], ...]:
    """vSwitch -> appliance -> vSwitch -> ... -> destination VM: n appliances, n + 1 vSwitch passes,
    each pass paying one VM-boundary crossing per VM end (the uplink is not a VM). A frame its
    firewall drops (``dropped``) ends at the chain's first firewall hop."""
    length = frame.length
    hops = _chain_hops(scenario, frame.vm, n)
    chain = scenario.chains[frame.vm]
    n_rules = _firewall_rules(rules, chain.rules)
    route = []
    from_vm = frame.src_vm is not None
    for i, hop in enumerate(hops):
        route.append(("vswitch", costs.vswitch(length) + costs.virtio(length) * (from_vm + 1)))
        cost = costs.firewall(length, n_rules) if hop.kind == "firewall" else costs.ids(length)
        route.append((f"{frame.vm}.{i}.{hop.kind}", cost))
        if dropped and hop.kind == "firewall":
            return tuple(route)
        from_vm = True
    route.append(("vswitch", costs.vswitch(length) + costs.virtio(length) * (from_vm + 1)))
    return tuple(route)


def _firewall_rules(rules: dict, path) -> int:
    """Rules a firewall VM evaluates: the header-only rules of its chain's file (nftables rules)."""
    table = rules.get(path)
    return 0 if table is None else sum(r.verdict == "offloaded" for r in table.rules)


def _baseline_ns(costs: Costs, frame: Frame) -> float:
    """A host without security: one vSwitch pass to the VM."""
    return costs.vswitch(frame.length) + costs.virtio(frame.length) * (1 + (frame.src_vm is not None))


def _metrics(frames: Sequence[Frame], times: Sequence[float], delivered: Sequence[bool],
             latencies: Sequence[float], span_ns: float, policy: int = 0) -> dict:
    """The sweep fields of one point; ``policy`` frames were dropped by the firewalls' rules: not a
    loss, so outside the drop rate (which finds the knee)."""
    offered_span = (times[-1] - times[0]) or 1.0
    offered_bytes = sum(f.length for f in frames)
    delivered_bytes = sum(f.length for f, ok in zip(frames, delivered) if ok)
    return {
        "offered_gbps": round(offered_bytes * 8 / offered_span, 4),
        "throughput_gbps": round(delivered_bytes * 8 / max(span_ns, offered_span), 4),
        "drop_rate": round(1 - sum(delivered) / max(1, len(frames) - policy), 5),
        "latency_p50_ns": _r(percentile(latencies, 50)),
        "latency_p99_ns": _r(percentile(latencies, 99)),
    }


def _r(x, nd=1):
    return None if x is None else round(x, nd)


def _software_point(ctx: Context, gbps: float, n: int | None = None) -> dict:
    scenario, costs, frames, rules = _load(ctx)
    policy = _policy_drops(ctx)
    times = arrivals(frames, gbps, scenario.traffic.seed)
    stages = _software_stages(scenario, costs, n)
    packets = [Packet(t, f.length, _software_route(scenario, costs, rules, f, n, i in policy))
               for i, (f, t) in enumerate(zip(frames, times))]
    res = simulate(stages, packets)
    # A frame its firewall dropped ends "done" at that hop: the policy working, not a delivery. (With
    # fewer hops than the chain, the chaining points, a frame may have no firewall to cross.)
    ends_at_firewall = [i in policy and packets[i].route[-1][0].endswith(".firewall") for i in range(len(frames))]
    dropped = {i for i, o in enumerate(res.outcomes) if ends_at_firewall[i] and o.done is not None}
    delivered = [o.done is not None and i not in dropped for i, o in enumerate(res.outcomes)]
    lat = [o.latency for o, ok in zip(res.outcomes, delivered) if ok]
    out = _metrics(frames, times, delivered, lat, res.span_ns, len(dropped))
    out.update(_policy_fields(scenario, frames, delivered, {i: policy[i] for i in dropped}))
    # The IDS VM alerts on what it inspected: frames that crossed its hop (delivered ones; a frame
    # its firewall dropped never reaches it). Chaining points without an IDS hop alert on nothing.
    has_ids = {vm.name: any(h.kind == "ids" for h in _chain_hops(scenario, vm.name, n)) for vm in scenario.vms}
    soft = _software_alerts(ctx)
    out.update(_detection(frames, {i: soft[i] for i, ok in enumerate(delivered) if ok and has_ids[frames[i].vm]},
                          set(dropped)))
    by_stage = {s.name: round(res.cores_used(s.name), 3) for s in stages}
    baseline = sum(_baseline_ns(costs, f) for f in frames) / max(res.span_ns, 1.0)
    total = sum(by_stage.values())
    out.update({"cores_used": round(total, 3), "cores_by_stage": by_stage,
                "security_cores": round(max(0.0, total - baseline), 3),
                "drops_by_stage": _drops(res.outcomes)})
    return out


def _policy_fields(scenario, frames: Sequence[Frame], delivered: Sequence[bool], dropped: dict[int, str]) -> dict:
    """The fields both paths report alike: policy drops by reason and by VM, their share of the
    frames, and the frames delivered to each VM."""
    by_reason: dict[str, int] = {}
    by_vm = dict.fromkeys((v.name for v in scenario.vms), 0)
    for i, reason in dropped.items():
        by_reason[reason] = by_reason.get(reason, 0) + 1
        by_vm[frames[i].vm] += 1
    got = dict.fromkeys((v.name for v in scenario.vms), 0)
    for f, ok in zip(frames, delivered):
        got[f.vm] += bool(ok)
    return {"acl_drops": dict(sorted(by_reason.items())), "acl_drops_by_vm": by_vm,
            "acl_drop_rate": round(len(dropped) / len(frames), 5), "delivered_by_vm": got}


def _drops(outcomes) -> dict:
    d: dict[str, int] = {}
    for o in outcomes:
        if o.dropped_at:
            d[o.dropped_at] = d.get(o.dropped_at, 0) + 1
    return dict(sorted(d.items()))


# -- offloaded path ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _ids(ctx: Context):
    """The chains' IDS (:func:`sim.compare.firewall.chain_ids`), computed once per process."""
    from sim.compare.firewall import chain_ids
    return chain_ids(_load(ctx)[0])


def comparison_topology(scenario):
    """The NIC of the whole comparison and the ports its loop storm closes: the scenario's switch
    (:func:`sim.compare.topology.topology`) with broadcast storm control
    (``storm.broadcast_limit_mbps``, burst :data:`STORM_BURST`) on the :data:`STORM_LOOP_PORTS`
    ports of :func:`sim.compare.topology.loop_ports`, and loop guard reporting a loop without
    blocking the port (blocking would end the storm at its first returning broadcast). The sweep's
    traffic has no broadcasts, so neither setting touches it, and one Verilator build serves the
    sweep and the storm. ``()`` loop ports when the scenario has no VM port to loop."""
    from sim.compare.topology import loop_ports, topology
    try:
        looped = loop_ports(topology(scenario), STORM_LOOP_PORTS)
    except ValueError:
        return topology(scenario), ()
    return topology(scenario, broadcast_limit_mbps=scenario.storm.broadcast_limit_mbps, burst=STORM_BURST,
                    storm_ports=looped, loop_block=False), looped


def _nic(ctx: Context):
    import dataclasses

    from sim.compare.firewall import nic_rule_set
    from sim.compare.offload import SimulatedNic, security_settings
    scenario = _load(ctx)[0]
    topo = comparison_topology(scenario)[0]
    config = topo.nic_config(scenario.nic, source=f"{scenario.path} [nic]")
    # Each chain's firewall rules run in the NIC's ACL and its IDS's content rules in the NIC's
    # payload matcher, all scoped to its VM (docs/compare.md).
    ids = _ids(ctx)
    rules = nic_rule_set(_firewalls(ctx)[0], ids)
    if rules is not None:
        config = dataclasses.replace(config, security=security_settings(rules.compiled))
    return SimulatedNic(config, engine=ctx.engine, topology=topo, acl=rules,
                        host_rules={vm: chain.host_rules for vm, chain in ids.items()})


#: Tasks that run the NIC's simulator model (and so wait for its build).
NIC_TASKS = ("offload", "storm_nic")
#: Builds :func:`prepare` started, by context; :func:`run_points` waits for them.
_builds: dict[Context, concurrent.futures.Future] = {}


def prepare(ctx: Context) -> None:
    """Start building the one simulator model the points run (the offloaded path's switch in bulk
    mode, which the loop storm runs too) in a thread of this process, and return. :func:`run_points`
    runs the points that need no model (the software path's, the chaining, the software storm)
    meanwhile and the NIC's once the model is built, so workers on this machine share the build and
    the build's single-threaded steps (elaboration, Verilating) do not leave a core idle. A failed
    build raises from :func:`run_points` (or :func:`wait_prepared`)."""
    if ctx.engine == "model" or ctx in _builds:
        return
    _load(ctx)                            # read once, here, before the build's thread starts
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="secnic-build")
    _builds[ctx] = pool.submit(lambda: _nic(ctx).prepare())
    pool.shutdown(wait=False)


def wait_prepared(ctx: Context) -> None:
    """Wait for the build :func:`prepare` started for ``ctx`` (if any); raise what it raised."""
    build = _builds.pop(ctx, None)
    if build is not None:
        build.result()


def _switch_drops(counters: dict) -> dict:
    """The switch's drops by reason over every port (SWPORT counters, as the driver read them)."""
    out: dict[str, int] = {}
    for port in counters.get("ports", {}).values():
        for k, v in (port.get("switch") or {}).items():
            if (k.startswith("drop_") or k in ("tx_queue_drop", "ingress_full", "ingress_too_long")) and v:
                out[k] = out.get(k, 0) + v
    return dict(sorted(out.items()))


def _offload_point(ctx: Context, gbps: float) -> dict:
    from sim.compare.offload import frame_rate_bound
    scenario, costs, frames, _ = _load(ctx)
    times = arrivals(frames, gbps, scenario.traffic.seed)
    nic = _nic(ctx)
    nr = nic.run(frames, times)
    run = nr.run
    ns_per_cycle = 1000 / run["clock_mhz"]
    nic_ns = (run["cycles"] - nr.warmup_cycles) * ns_per_cycle
    offered_span = (times[-1] - times[0]) or 1.0
    # The simulated source holds back what a port cannot take; a real MAC would drop the excess.
    accepted = min(1.0, offered_span / nic_ns) if nic_ns > 0 else 1.0
    punted, bridged = set(nr.punted), set(nr.bridged)
    h = scenario.host
    host = Stage("host", h.vswitch_cores, h.ring, h.mode, costs.wake_ns)
    firewalls = _firewalls(ctx)[0]
    verdict = _policy_drops(ctx)

    def bridge_firewall(i):
        """The host bridge's nftables over the chain's rules (a bridged frame never meets the NIC's ACL)."""
        fw = firewalls.get(frames[i].vm)
        return 0.0 if fw is None else costs.bridge_firewall(fw.header_rules)

    def host_work(i):
        length = frames[i].length
        if i in bridged:          # between two VMs behind one NIC port: a bridge pass on the host
            return costs.vswitch(length) + 2 * costs.virtio(length) + bridge_firewall(i)
        # A punted frame crosses to the host and back (two ring crossings) and is inspected there.
        return 2 * costs.virtio(length) + costs.ids(length)
    on_host = sorted(punted | bridged)
    packets = [Packet(times[i], frames[i].length, (("host", host_work(i)),)) for i in on_host]
    res = simulate([host], packets)
    host_lost = {i for i, o in zip(on_host, res.outcomes) if o.done is None}
    # A punt is a copy (the matcher is an IDS: the NIC forwards the frame whatever the host finds), so
    # a punted copy lost in the host's ring leaves its frame delivered but uninspected; a bridged
    # frame lost there is lost.
    punt_lost = sorted(host_lost & punted)
    host_lost -= punted
    # Frames the firewall rules drop are the policy working, not a loss: out of the drop rate (which
    # finds the knee), counted as acl_drops / acl_drop_rate. The NIC's ACL drops them, or the host
    # bridge's firewall for a frame between two VMs behind one NIC port.
    policy = {i: nr.records[i]["reason"] for i in nr.acl_dropped}
    policy.update({i: verdict[i] for i in bridged - host_lost if i in verdict})
    forwarded = [i not in host_lost and i not in policy and (i in bridged or bool(r.get("egress")))
                 for i, r in enumerate(nr.records)]
    weight = [1.0 if i in bridged else accepted for i in range(len(frames))]
    kept = [i not in policy for i in range(len(frames))]
    nic_lat = run.get("latency_ns") or {}
    punt_lat = [o.latency for i, o in zip(on_host, res.outcomes) if o.done is not None and i in punted]
    delivered_bytes = sum(f.length * w for f, ok, w in zip(frames, forwarded, weight) if ok)
    offered_bytes = sum(f.length for f in frames)
    host_cores = res.cores_used("host") if packets else 0.0
    work = sum(host_work(i) for i in on_host)
    security_work = sum(host_work(i) for i in punted) + sum(bridge_firewall(i) for i in bridged)
    security = host_cores * (security_work / work) if work else 0.0
    bound = frame_rate_bound(nic.config, frames)
    # The IDS's alerts on the offloaded path: the records' content-rule sids (the matcher's settled
    # hits and the host path's verdicts on the punted copies), less the copies the host's ring lost.
    content_sids = {r.sid for chain in _ids(ctx).values() for r in chain.content}
    nic_alerts = {i: tuple(sorted(set(r.get("sids") or ()) & content_sids)) for i, r in enumerate(nr.records)
                  if r is not None and i not in punt_lost}
    return {
        **_detection(frames, nic_alerts, set(policy)),
        "offered_gbps": round(offered_bytes * 8 / offered_span, 4),
        "throughput_gbps": round(delivered_bytes * 8 / offered_span, 4),
        "drop_rate": round(1 - sum(w for ok, w in zip(forwarded, weight) if ok) / max(1, sum(kept)), 5),
        **_policy_fields(scenario, frames, forwarded, policy),
        "latency_p50_ns": _r(nic_lat.get("p50")),
        "latency_p99_ns": _r(nic_lat.get("p99")),
        "punt_rate": round(len(punted) / len(frames), 5),
        "punts": len(punted),
        "punts_uninspected": len(punt_lost),
        "host_rule_frames": len(nr.host_rule_frames),
        "punt_latency_p99_ns": _r(None if not punt_lat else (nic_lat.get("p50") or 0) + percentile(punt_lat, 99)),
        "cores_used": round(host_cores, 3),
        "security_cores": round(security, 3),
        "nic_accepted": round(accepted, 5),
        "nic_cycles": run["cycles"] - nr.warmup_cycles,
        "nic_packets_out": run["packets_out"],
        "nic_bound_gbps": bound["gbps"],
        "nic_bound_by": bound["by"],
        "egress_packets": dict(sorted(nr.egress_packets.items())),
        "switch_drops": _switch_drops(nr.counters),
        "bridged_rate": round(len(bridged) / len(frames), 5),
        "basis": nr.basis,
    }


# -- loop storm ------------------------------------------------------------------------------------

def _storm_window(scenario, frames, gbps):
    duration = scenario.storm.duration_us * 1000
    times = arrivals(frames, gbps, scenario.traffic.seed + 1)
    keep = [(f, t) for f, t in zip(frames, times) if t < duration]
    return duration, keep


def _storm_software(ctx: Context, gbps: float) -> dict:
    """The vSwitch floods a looped broadcast to the other looped ports and every VM; each copy that
    leaves a looped port returns on the two others after the loop delay, and nothing stops it."""
    scenario, costs, frames, rules = _load(ctx)
    duration, keep = _storm_window(scenario, frames, gbps)
    stages = _software_stages(scenario, costs, None)
    n_vms = len(scenario.vms)
    fan_out = (STORM_LOOP_PORTS - 1) * (STORM_LOOP_PORTS - 1)
    cost = costs.vswitch(STORM_FRAME) + costs.virtio(STORM_FRAME) * n_vms

    def spawn(now: float, stage: str) -> list[Packet]:
        return [Packet(now + STORM_LOOP_DELAY_NS, STORM_FRAME, (("vswitch", cost),), spawn, "storm")] * fan_out
    policy = _policy_drops(ctx)           # keep is a prefix of the frames: index i is frame i
    packets = [Packet(t, f.length, _software_route(scenario, costs, rules, f, None, i in policy))
               for i, (f, t) in enumerate(keep)]
    packets.append(Packet(1000.0, STORM_FRAME, (("vswitch", cost),), spawn, "storm"))
    res = simulate(stages, packets, until=duration)
    normal = res.select("traffic")
    storm = res.select("storm")
    # Frames a firewall dropped by policy are neither delivered nor lost: out of the share.
    refused = sum(1 for i, o in enumerate(normal) if i in policy and o.done is not None)
    delivered = sum(1 for i, o in enumerate(normal) if i not in policy and o.done is not None)
    return {
        "duration_us": scenario.storm.duration_us,
        "normal_frames": len(normal),
        "normal_delivered": round(delivered / max(1, len(normal) - refused), 4),
        "storm_frames_switched": sum(o.done is not None for o in storm),
        "storm_mpps": round(sum(o.done is not None for o in storm) / duration * 1000, 3),
        "vswitch_cores_busy": round(res.cores_used("vswitch"), 3),
        "vswitch_cores": scenario.host.vswitch_cores,
        "basis": f"DES: vSwitch floods each looped broadcast to the {STORM_LOOP_PORTS - 1} other looped ports "
                 f"(the uplink and VMs bridged onto the physical network) and {n_vms} VMs; each copy that leaves a "
                 f"looped port returns on the {STORM_LOOP_PORTS - 1} others after {STORM_LOOP_DELAY_NS / 1000:g} us",
    }


def _storm_topology(scenario):
    """The storm's NIC: the comparison's (:func:`comparison_topology`); ValueError without a loop."""
    topo, looped = comparison_topology(scenario)
    if not looped:
        raise ValueError(f"{scenario.path}: the loop storm needs a VM port in VLAN 1 to close its loop with the uplink")
    return topo, looped


def storm_spec(ctx: Context, gbps: float):
    """The loop storm's input (:class:`sim.compare.storm_tb.StormSpec`) for the scenario at ``gbps``.
    A frame its firewall drops by policy has no destination to reach (as on the software path)."""
    from sim.compare.storm_tb import StormSpec
    scenario, _, frames, _ = _load(ctx)
    topo, looped = _storm_topology(scenario)
    clock = scenario.nic_config().clock_mhz
    duration, keep = _storm_window(scenario, frames, gbps)
    policy = _policy_drops(ctx)           # keep is a prefix of the frames: index i is frame i
    normal = tuple((topo.ingress_port(f), round(t * clock / 1000), f.data.hex(),
                    None if i in policy else topo.port_of[f.vm])
                   for i, (f, t) in enumerate(keep) if not topo.bridged(f))
    return StormSpec(loop_ports=looped, learn=tuple((p, d.hex()) for p, d in topo.learning_frames()),
                     normal=normal, storm_frame=_storm_frame().hex(), storm_at_cycle=round(1000.0 * clock / 1000),
                     loop_delay_cycles=round(STORM_LOOP_DELAY_NS * clock / 1000),
                     duration_cycles=round(duration * clock / 1000), cable_frames=STORM_CABLE_FRAMES)


def _storm_frame() -> bytes:
    return b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x06" + bytes(STORM_FRAME - 14)


def _storm_nic(ctx: Context, gbps: float) -> dict:
    """The same loop against the NIC's switch with broadcast storm control on each looped port: the
    offloaded path's own bulk-mode model with the loop closed in C++ (:mod:`sim.compare.storm_tb`),
    its ACL and matcher programmed as for the sweep; with ``--engine model``, the golden model
    (:func:`storm_on_model`)."""
    if ctx.engine == "model":
        return storm_on_model(ctx, gbps)
    from sim.compare.storm_tb import run_storm
    scenario, _, _, _ = _load(ctx)
    topo, looped = _storm_topology(scenario)
    nic = _nic(ctx)
    config = nic.config
    spec = storm_spec(ctx, gbps)
    res = run_storm(config, spec, rules=nic.acl)
    window_s = spec.duration_cycles / config.clock_mhz / 1e6
    ports = config.ports

    def gbps_of(nbytes):
        return round(nbytes * 8 / window_s / 1e9, 4)
    sw = {p: res["counters"]["ports"][p].get("switch") or {} for p in ports}
    drops = {f"{p}:{k[len('drop_'):]}": v for p in ports for k, v in sorted(sw[p].items())
             if k.startswith("drop_") and v and k != "drop_same_port"}
    expected = sum(1 for n in spec.normal if n[3] is not None)
    return {
        "duration_us": scenario.storm.duration_us,
        "broadcast_limit_mbps": scenario.storm.broadcast_limit_mbps,
        "frames_switched": sum(res["counters"]["ports"][p]["rx_packets"] for p in ports) - len(spec.learn),
        "storm_gbps_by_port": {p: gbps_of(res["storm_bytes_out"][p]) for p in ports},
        "normal_gbps_by_port": {p: gbps_of(res["normal_bytes_out"][p]) for p in ports},
        "storm_drops": drops,
        "tx_queue_drops": {p: sw[p]["tx_queue_drop"] for p in ports if sw[p].get("tx_queue_drop")},
        "external_switch_lost": res["cable_lost"],
        "loop_events": (res["counters"].get("switch") or {}).get("loop_events", 0),
        "normal_frames": len(spec.normal),
        "normal_delivered": round(res["normal_delivered_frames"] / max(1, expected), 4),
        "host_cores": 0.0,
        "basis": f"switch gateware (Verilator, bulk mode: the offloaded path's build, ACL and matcher programmed) "
                 f"with {', '.join(looped)} looped through one external flooding switch (each broadcast back on the "
                 f"other looped ports after {STORM_LOOP_DELAY_NS / 1000:g} us, {spec.cable_frames} frames queued per "
                 f"port), broadcast storm control on each looped port, loop guard reporting without blocking; "
                 f"{topo.describe()}",
    }


def storm_on_model(ctx: Context, gbps: float) -> dict:
    """The loop storm on the golden model (:meth:`SwitchConfig.model`, the same switch as the
    gateware's) in the same loop, timed here: each looped port's ingress link and the shared pipeline
    carry one frame at a time (at least ``FRAME_CYCLES`` per frame), the fixed pipeline latency of
    :func:`sim.run.engine.pipeline_cycles`, line rate and an output queue per egress port, the
    external switch's queue of :data:`STORM_CABLE_FRAMES` per looped port. The normal traffic's share is
    computed from the storm's rate on the VM ports. The gateware's cross-check (tests/compare) and
    ``--engine model``."""
    from hdl.switch.stage import FRAME_CYCLES
    from sim.run.engine import pipeline_cycles
    scenario, _, frames, _ = _load(ctx)
    topo, looped = _storm_topology(scenario)
    config = _nic(ctx).config
    clock = config.clock_mhz
    switch = topo.switch.model(clock, sets=config.switch.mac_sets, ways=config.switch.mac_ways)
    duration, keep = _storm_window(scenario, frames, gbps)
    line_gbps = config.data_width * clock / 1000
    end = round(duration * clock / 1000)
    delay = round(STORM_LOOP_DELAY_NS * clock / 1000)
    frame = _storm_frame()
    beats = -(-STORM_FRAME // config.bytes_per_beat)
    latency = pipeline_cycles(config, STORM_FRAME) - beats     # from the last beat in to the first out
    ports = config.ports
    queue_limit = config.switch.egress_queue_bytes // STORM_FRAME
    link_free = dict.fromkeys(looped, 0)        # each looped port's ingress link
    waiting = dict.fromkeys(looped, 0)          # the external switch's queue towards each looped port
    egress_free = dict.fromkeys(ports, 0)
    egress_bytes = dict.fromkeys(ports, 0)
    pipe_free = lost = processed = seq = 0
    # (cycle the frame is in at the port, sequence, port, from the loop?)
    events = [(round(1000.0 * clock / 1000) + beats, 0, looped[0], False)]
    while events:
        ready, _, port, from_loop = heapq.heappop(events)
        if from_loop:
            waiting[port] -= 1
        now = max(ready, pipe_free)
        if now >= end:
            break
        pipe_free = now + max(beats, FRAME_CYCLES)
        processed += 1
        res = switch.process(port, frame, now)
        for out in res.egress:
            start = max(now + latency, egress_free[out])
            if (start - now - latency) // beats > queue_limit:
                continue                          # output queue full: dropped
            egress_free[out] = start + beats
            if start < end:
                egress_bytes[out] += STORM_FRAME
            if out not in looped:
                continue
            for back in looped:                   # the external switch floods it to the other looped ports
                if back == out:
                    continue
                if waiting[back] >= STORM_CABLE_FRAMES:
                    lost += 1
                    continue
                waiting[back] += 1
                link_free[back] = max(start + beats + delay, link_free[back]) + beats
                seq += 1
                heapq.heappush(events, (link_free[back], seq, back, True))
    window_s = duration / 1e9
    storm_gbps = {p: round(n * 8 / window_s / 1e9, 4) for p, n in egress_bytes.items()}
    # Normal traffic shares each VM port's egress with the storm's flood copies.
    vm_ports = sorted(set(topo.port_of.values()))
    normal_gbps = sum(f.length for f, _ in keep) * 8 / duration
    per_vm = normal_gbps / max(1, len(vm_ports))
    worst = max((storm_gbps[v] for v in vm_ports), default=0.0)
    delivered = 1.0 if per_vm <= 0 else min(1.0, max(0.0, line_gbps - worst) / per_vm)
    return {
        "duration_us": scenario.storm.duration_us,
        "broadcast_limit_mbps": scenario.storm.broadcast_limit_mbps,
        "frames_switched": processed,
        "storm_gbps_by_port": storm_gbps,
        "storm_drops": {f"{p}:{w.value}": n for (p, w), n in sorted(switch.drops.items(), key=lambda kv: str(kv[0]))},
        "external_switch_lost": lost,
        "normal_delivered": round(delivered, 4),
        "host_cores": 0.0,
        "basis": f"golden model host_driver.model.switch.SwitchModel (--engine model) in the same loop, timed by "
                 f"the comparison (ingress links, shared pipeline, output queues); {topo.describe()}",
    }


# -- running ----------------------------------------------------------------------------------------

def run_point(ctx: Context, point: dict) -> dict:
    """One point's result (pure: the same inputs give the same dict on any worker)."""
    task = point["task"]
    if task == "software":
        res = _software_point(ctx, point["gbps"])
    elif task == "offload":
        res = _offload_point(ctx, point["gbps"])
    elif task == "chain":
        res = _software_point(ctx, point["gbps"], point["hops"])
    elif task == "storm_software":
        res = _storm_software(ctx, point["gbps"])
    elif task == "storm_nic":
        res = _storm_nic(ctx, point["gbps"])
    else:
        raise ValueError(f"unknown task {task!r}")
    return {**point, **res}


def run_points(ctx: Context, points: Sequence[dict], *, scheduler: str | None = "local",
               progress: Callable[[int], None] | None = None, workers: int | None = None) -> list[dict]:
    """Run ``points`` in this process (``scheduler=None``), on a LocalCluster (``"local"``) or on the
    Dask scheduler at an address; results in the order of ``points``. The points that run the NIC's
    model start once the build :func:`prepare` started is done; the others do not wait for it."""
    nic = [i for i, p in enumerate(points) if p["task"] in NIC_TASKS]
    other = [i for i, p in enumerate(points) if p["task"] not in NIC_TASKS]
    if scheduler is None:
        out: list[dict | None] = [None] * len(points)
        for i in other:
            out[i] = run_point(ctx, points[i])
            if progress:
                progress(1)
        wait_prepared(ctx)
        for i in nic:
            out[i] = run_point(ctx, points[i])
            if progress:
                progress(1)
        return out  # type: ignore[return-value]
    import os
    import time

    from dask.distributed import Client, LocalCluster, as_completed
    if not log.isEnabledFor(logging.INFO):
        # distributed logs its scheduler's life at INFO through its own handler: quiet unless -v.
        logging.getLogger("distributed").setLevel(logging.WARNING)
    cluster = None
    if scheduler == "local":
        n = workers or os.cpu_count() or 1
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.WARNING)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        results: list[dict | None] = [None] * len(points)
        futures = {}

        def submit(indices):
            for i in indices:
                fut = client.submit(run_point, ctx, points[i], pure=False, key=f"secnic-compare-{i}-{os.getpid()}")
                futures[fut] = i
                done.add(fut)
        # The points without the model first, while it builds; the NIC's as soon as it is built,
        # offload points first (each a simulator run, the longest tasks).
        done = as_completed()
        submit(other)
        build = _builds.pop(ctx, None)
        waiting = True
        while waiting or not done.is_empty():
            if waiting and (build is None or build.done()):
                if build is not None:
                    build.result()
                submit(sorted(nic, key=lambda i: points[i]["task"] != "offload"))
                waiting = False
            if not waiting or done.has_ready():
                for fut in done.next_batch(block=not waiting):
                    results[futures[fut]] = fut.result()
                    if progress:
                        progress(1)
            else:
                time.sleep(0.2)
        return results  # type: ignore[return-value]
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def find_knee(points: Sequence[dict]) -> dict | None:
    """The first point (by offered load) where drops exceed :data:`KNEE_DROP` or p99 latency exceeds
    :data:`KNEE_LATENCY_FACTOR` times the lowest load's; None if the curve never bends."""
    pts = sorted(points, key=lambda p: p["offered_gbps"])
    base = next((p["latency_p99_ns"] for p in pts if p.get("latency_p99_ns")), None)
    for p in pts:
        if p["drop_rate"] > KNEE_DROP:
            return {"offered_gbps": p["offered_gbps"], "why": f"drops {p['drop_rate']:.1%}"}
        if base and p.get("latency_p99_ns") and p["latency_p99_ns"] > KNEE_LATENCY_FACTOR * base:
            return {"offered_gbps": p["offered_gbps"],
                    "why": f"p99 latency {p['latency_p99_ns'] / base:.1f}x the lowest load's"}
    return None


def scenario_paths(scenario_file: str | Path, calibration: str | Path | None) -> tuple[str, str]:
    sc = load_scenario(scenario_file)
    return str(sc.path), str(Path(calibration).resolve() if calibration else sc.calibration)
