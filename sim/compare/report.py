"""The comparison's answers and its files: report.json, report.md and PNG plots.

:func:`build_report` turns the points' results into report.json's dict (knees, the capacity
answer, chaining, the loop storm); :func:`write_report` writes it with report.md and the plots into
a staging directory. Nothing here depends on wall time or the machine, so the same points give
byte-identical report.json (the Dask and local paths are held to that).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from sim.compare.sweep import KNEE_DROP, KNEE_LATENCY_FACTOR, find_knee, reference_load

__all__ = ["build_report", "write_report", "headline", "PLOTS", "REPORT_VERSION"]

REPORT_VERSION = 1
PLOTS = ("throughput.png", "latency.png", "cores.png", "chaining.png")
PATHS = ("software", "offload")
LABELS = {"software": "software (vSwitch + appliance VMs)", "offload": "offloaded (NIC + host punt path)"}


def _per_10g(cores: float, gbps: float) -> float | None:
    return None if gbps <= 0 else round(cores / gbps * 10, 3)


def _capacity(scenario, sweep: dict) -> dict:
    """Cores spent on security per 10 Gb/s at the reference load, and VMs per host both ways."""
    ref = reference_load(scenario)
    out = {"reference_gbps": ref, "per_path": {}}
    for path in PATHS:
        p = next(p for p in sweep[path] if p["gbps"] == ref)
        out["per_path"][path] = {
            "throughput_gbps": p["throughput_gbps"], "drop_rate": p["drop_rate"],
            "cores_used": p["cores_used"], "security_cores": p["security_cores"],
            "security_cores_per_10g": _per_10g(p["security_cores"], p["throughput_gbps"]),
            "cores_per_10g": _per_10g(p["cores_used"], p["throughput_gbps"]),
        }
    # Consolidation: each VM needs its own cores plus the networking and security cores its traffic
    # costs at the reference load's cost per Gb/s (cores given to the vSwitch and appliances as needed).
    host = scenario.host
    vm_cores = sum(v.cores for v in scenario.vms) / len(scenario.vms)
    vm_gbps = sum(v.gbps for v in scenario.vms) / len(scenario.vms)
    consolidation = {}
    for path in PATHS:
        per10 = out["per_path"][path]["cores_per_10g"]
        need = vm_cores + (per10 or 0.0) * vm_gbps / 10
        vms = math.floor(host.cores / need) if need > 0 else 0
        consolidation[path] = {"cores_per_vm": round(need, 3), "vms_per_host": vms}
    over = [path for path in PATHS if out["per_path"][path]["drop_rate"] > KNEE_DROP]
    if over:
        out["note"] = (f"{' and '.join(over)} drop(s) more than {KNEE_DROP:.0%} at the reference load: its cost per "
                       "10 Gb/s is that of an overloaded path; set [sweep] reference_gbps below its knee")
    gain = consolidation["offload"]["vms_per_host"] - consolidation["software"]["vms_per_host"]
    out["consolidation"] = {**consolidation, "vm_cores": vm_cores, "vm_gbps": vm_gbps, "host_cores": host.cores,
                            "extra_vms_offloaded": gain}
    return out


def build_report(scenario, calibration: dict, points: list[dict], engine: str) -> dict:
    """report.json's dict from the scenario, the calibration and the results of :func:`sweep.plan`'s points."""
    sweep = {path: [p for p in points if p["task"] == path] for path in PATHS}
    knees = {}
    for path in PATHS:
        knee = find_knee(sweep[path])
        if knee is not None:
            before = [p["offered_gbps"] for p in sweep[path] if p["offered_gbps"] < knee["offered_gbps"]]
            knee["last_good_gbps"] = max(before) if before else 0.0
        knees[path] = knee
    chain = [p for p in points if p["task"] == "chain"]
    offload_ref = next(p for p in sweep["offload"] if p["gbps"] == reference_load(scenario))
    chaining = [{"appliances": p["hops"],
                 "software": {k: p[k] for k in ("throughput_gbps", "drop_rate", "latency_p99_ns", "cores_used",
                                                "security_cores")},
                 "offload": {k: offload_ref[k] for k in ("throughput_gbps", "drop_rate", "latency_p99_ns",
                                                         "cores_used", "security_cores")}}
                for p in chain]
    storm = {"software": next(p for p in points if p["task"] == "storm_software"),
             "nic": next(p for p in points if p["task"] == "storm_nic")}
    return {
        "report_version": REPORT_VERSION,
        "scenario": scenario.to_dict(),
        "engine": engine,
        "calibration": {"machine": calibration.get("machine", {}), "measured_at": calibration.get("measured_at"),
                        "figures": calibration["figures"]},
        "knee_rule": f"first load with drops > {KNEE_DROP:.0%} or p99 latency > {KNEE_LATENCY_FACTOR:g}x the "
                     "lowest load's",
        "sweep": sweep,
        "knees": knees,
        "capacity": _capacity(scenario, sweep),
        "chaining": chaining,
        "storm": storm,
        "offload_basis": offload_ref.get("basis"),
    }


def headline(report: dict) -> list[str]:
    """The few lines printed at the end of ``secnic compare`` (and at the top of report.md)."""
    cap = report["capacity"]
    sw, off = cap["per_path"]["software"], cap["per_path"]["offload"]
    cons = cap["consolidation"]
    k = report["knees"]

    def knee(path):
        text = "no knee in the sweep" if k[path] is None else \
            f"knee at {k[path]['offered_gbps']:g} Gb/s ({k[path]['why']})"
        bound = report["sweep"][path][0].get("nic_bound_gbps")
        if bound is not None:
            text += f"; the NIC's pipeline carries at most {bound:g} Gb/s of this mix " \
                    f"(its {report['sweep'][path][0]['nic_bound_by']})"
        return text

    def per10(x):
        return "n/a" if x is None else f"{x:g}"
    st = report["storm"]
    ref = cap["reference_gbps"]
    sw_ref, off_ref = ({p["gbps"]: p for p in report["sweep"][path]}[ref] for path in PATHS)
    punt = off_ref.get("punt_rate", 0)
    return [
        f"security cores per 10 Gb/s at {cap['reference_gbps']:g} Gb/s offered: software "
        f"{per10(sw['security_cores_per_10g'])}, offloaded {per10(off['security_cores_per_10g'])} (punt "
        f"rate {punt:.1%})",
        f"software: {knee('software')}; offloaded: {knee('offload')}",
        f"VMs per {cons['host_cores']}-core host: software {cons['software']['vms_per_host']}, offloaded "
        f"{cons['offload']['vms_per_host']} ({cons['extra_vms_offloaded']:+d})",
        f"loop storm: software vSwitch {st['software']['vswitch_cores_busy']:g} of {st['software']['vswitch_cores']} "
        f"cores busy, {st['software']['normal_delivered']:.0%} of normal traffic delivered; NIC storm control: "
        f"{st['nic']['normal_delivered']:.0%} delivered, 0 host cores",
        _hostile_line(sw_ref, off_ref, ref),
    ]


def _hostile_line(sw: dict, off: dict, gbps: float) -> str:
    """What the security functions caught at the reference load, on each path, against what was planted."""
    pl = off.get("planted") or {}
    if not pl.get("attack") and not pl.get("payload"):
        return (f"hostile traffic: none planted ([traffic] attack_share and payload_hit_share are 0); IDS alerts at "
                f"{gbps:g} Gb/s: software {sw.get('ids_alerts', 0)}, offloaded {off.get('ids_alerts', 0)}")
    spl = sw.get("planted") or {}
    return (f"hostile traffic at {gbps:g} Gb/s: {pl['attack']} attack frames planted, dropped by the firewall: "
            f"software {spl.get('attack_dropped', 0)}, offloaded {pl['attack_dropped']}; {pl['payload']} attack "
            f"payloads planted, alerted on by the IDS: software {spl.get('payload_alerted', 0)}, offloaded "
            f"{pl['payload_alerted']} ({off.get('punts', 0)} frames punted by the NIC's matcher)")


def _fmt(x, unit=""):
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.3g}{unit}"
    return f"{x}{unit}"


def _markdown(report: dict) -> str:
    sc = report["scenario"]
    lines = [f"# Security appliances in software versus offloaded on the NIC: scenario {sc['name']}", "",
             "The same traffic through a software vSwitch and a chain of appliance VMs on the host's cores, and "
             "through the NIC with the chain's rules in its ACL and payload matcher; what each path delivers, drops "
             "and costs in host cores as the load grows.", "", "## Headline", ""]
    lines += [f"- {h}" for h in headline(report)]
    lines += ["", f"Scenario `{sc['file']}`: {sc['host']['cores']} cores at {sc['host']['clock_ghz']} GHz, "
              f"{len(sc['vms'])} VMs, {sc['traffic']['kind']} traffic ({sc['traffic']['frames']} frames per point, "
              f"{sc['traffic']['east_west']:.0%} east-west). NIC engine: {report['engine']}. Knee: "
              f"{report['knee_rule']}. Hostile frames planted: {sc['traffic'].get('attack_share', 0):.1%} attacks on "
              f"the firewalls' drop rules, {sc['traffic'].get('payload_hit_share', 0):.1%} payloads holding the IDS "
              "rules' contents (docs/compare.md).",
              "", "## Sweep", "",
              "| path | offered Gb/s | throughput Gb/s | drops | p50 ns | p99 ns | cores | security cores |",
              "|---|---|---|---|---|---|---|---|"]
    for path in PATHS:
        for p in report["sweep"][path]:
            lines.append(f"| {path} | {_fmt(p['offered_gbps'])} | {_fmt(p['throughput_gbps'])} | "
                         f"{p['drop_rate']:.2%} | "
                         f"{_fmt(p['latency_p50_ns'])} | {_fmt(p['latency_p99_ns'])} | {_fmt(p['cores_used'])} | "
                         f"{_fmt(p['security_cores'])} |")
    lines += ["", "## The security functions at work", "",
              "Planted frames (docs/compare.md) and what each path did with them: attacks dropped by the firewall "
              "(VM or NIC ACL), payloads alerted on by their own rule (IDS VM with Hyperscan, or the NIC's matcher and "
              "host path). A frame lost before its firewall or IDS is neither.", "",
              "| path | offered Gb/s | attacks dropped | payloads alerted | frames with IDS alerts | punted |",
              "|---|---|---|---|---|---|"]
    for path in PATHS:
        for p in report["sweep"][path]:
            pl = p.get("planted") or {}
            lines.append(f"| {path} | {_fmt(p['offered_gbps'])} | {pl.get('attack_dropped', 0)} of "
                         f"{pl.get('attack', 0)} | {pl.get('payload_alerted', 0)} of {pl.get('payload', 0)} | "
                         f"{p.get('ids_alerts', 0)} | {p['punts'] if 'punts' in p else '-'} |")
    lines += ["", "## Chaining (software path at the reference load; the NIC runs any chain in one pass)", "",
              "| appliances | software throughput | software drops | software p99 ns | software cores | "
              "offloaded cores |",
              "|---|---|---|---|---|---|"]
    for c in report["chaining"]:
        s, o = c["software"], c["offload"]
        lines.append(f"| {c['appliances']} | {_fmt(s['throughput_gbps'])} | {s['drop_rate']:.2%} | "
                     f"{_fmt(s['latency_p99_ns'])} | {_fmt(s['cores_used'])} | {_fmt(o['cores_used'])} |")
    st = report["storm"]
    lines += ["", "## Loop storm", "",
              f"- software: {st['software']['basis']}. Over {st['software']['duration_us']:g} us the vSwitch switched "
              f"{st['software']['storm_frames_switched']} looped frames, kept {st['software']['vswitch_cores_busy']:g} "
              f"of {st['software']['vswitch_cores']} cores busy and delivered {st['software']['normal_delivered']:.1%} "
              "of the normal traffic.",
              f"- NIC: {st['nic']['basis']}. Broadcast limit {st['nic']['broadcast_limit_mbps']:g} Mb/s "
              "per looped port; "
              f"storm on the VM ports {max(st['nic']['storm_gbps_by_port'].values()):g} Gb/s at most; normal traffic "
              f"delivered {st['nic']['normal_delivered']:.1%}; no host cores.",
              "- NIC storm per egress port (Gb/s): "
              + ", ".join(f"{p} {g:g}" for p, g in st["nic"]["storm_gbps_by_port"].items())
              + "; storm drops (switch counters): "
              + (", ".join(f"{k} {v}" for k, v in st["nic"]["storm_drops"].items()) or "none")
              + f"; lost in the external switch's queues: {st['nic'].get('external_switch_lost', 0)}"
              + (f"; loops loop guard reported: {st['nic']['loop_events']}" if "loop_events" in st["nic"] else "")
              + ".",
              "", "## Offloaded path: what the NIC runs", "",
              f"{report['offload_basis']}",
              "", "Policy drops (each chain's firewall rules: the firewall VM in software, the NIC's ACL offloaded; "
              "policy, not loss: outside the drop rate), by VM at the lowest load: "
              + "; ".join(f"{path} "
                          + (", ".join(f"{vm} {n}" for vm, n in
                                       report["sweep"][path][0].get("acl_drops_by_vm", {}).items() if n) or "none")
                          for path in PATHS) + ". Offloaded, per load: "
              + "; ".join(f"{_fmt(p['offered_gbps'])} Gb/s: "
                          + (", ".join(f"{k} {v}" for k, v in p.get("acl_drops", {}).items()) or "none")
                          for p in report["sweep"]["offload"]) + ".",
              "", "## Calibration", "",
              f"Machine: {report['calibration']['machine'].get('cpu')} at "
              f"{report['calibration']['machine'].get('clock_ghz')} GHz, measured "
              f"{report['calibration']['measured_at']}.",
              "", "| figure | value | uncertainty | source |", "|---|---|---|---|"]
    for name, fig in report["calibration"]["figures"].items():
        lines.append(f"| {name} | {fig['value']:g} | {fig['uncertainty']:g} | {str(fig.get('source', ''))[:80]} |")
    lines += ["", "Plots: " + ", ".join(f"[{p}]({p})" for p in PLOTS), ""]
    return "\n".join(lines)


def _plots(report: dict, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    colors = {"software": "tab:red", "offload": "tab:blue"}

    def sweep_plot(fname, key, ylabel, log=False, extra=None):
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
        for path in PATHS:
            pts = report["sweep"][path]
            xs = [p["offered_gbps"] for p in pts]
            keys = key if isinstance(key, tuple) else (key,)
            for k, style in zip(keys, ("-o", "--s")):
                ys = [p[k] if p[k] is not None else float("nan") for p in pts]
                label = f"{LABELS[path]} {k}" if len(keys) > 1 else LABELS[path]
                ax.plot(xs, ys, style, color=colors[path], label=label)
        if extra:
            extra(ax)
        top = ax.get_ylim()[1]          # once every curve is drawn, so both labels sit at the top
        for path in PATHS:
            knee = report["knees"][path]
            if knee is not None:
                ax.axvline(knee["offered_gbps"], color=colors[path], linestyle=":", alpha=0.8)
                ax.annotate(f"knee {knee['offered_gbps']:.3g} Gb/s", (knee["offered_gbps"], top),
                            color=colors[path], fontsize=8, ha="right", va="top", rotation=90)
        ax.set_xlabel("offered load (Gb/s)")
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / fname, metadata={"Software": None})
        plt.close(fig)

    sweep_plot("throughput.png", "throughput_gbps", "throughput (Gb/s)",
               extra=lambda ax: ax.plot(*[[p["offered_gbps"] for p in report["sweep"]["software"]]] * 2, color="grey",
                                        linewidth=0.8, label="offered"))
    sweep_plot("latency.png", ("latency_p50_ns", "latency_p99_ns"), "latency (ns)", log=True)
    sweep_plot("cores.png", "cores_used", "host cores used")
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    n = [c["appliances"] for c in report["chaining"]]
    ax.bar([x - 0.2 for x in n], [c["software"]["cores_used"] for c in report["chaining"]], 0.4,
           color=colors["software"], label=LABELS["software"])
    ax.bar([x + 0.2 for x in n], [c["offload"]["cores_used"] for c in report["chaining"]], 0.4,
           color=colors["offload"], label=LABELS["offload"])
    ax.set_xticks(n)
    ax.set_xlabel("appliances in the chain")
    ax.set_ylabel(f"host cores at {report['capacity']['reference_gbps']:g} Gb/s offered")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "chaining.png", metadata={"Software": None})
    plt.close(fig)


def write_report(report: dict, directory: Path) -> list[str]:
    """Write report.json, report.md and the plots into ``directory``; return the file names."""
    directory = Path(directory)
    (directory / "report.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    (directory / "report.md").write_text(_markdown(report))
    _plots(report, directory)
    return ["report.json", "report.md", *PLOTS]
