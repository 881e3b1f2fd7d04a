"""The one summary ``secnic run`` and ``secnic demo`` print after a run (from run.json and counters.json)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["format_summary", "drops_by_reason"]


#: A switch port's SWPORT counters of frames lost outside the switch stage's decision.
_SWPORT_LOSSES = ("tx_queue_drop", "ingress_full", "ingress_too_long")


def drops_by_reason(counters: dict) -> dict[str, int]:
    """Drops summed over ports, by reason (``drop_<reason>`` counters that are not zero, a switch
    port's and the security stage's among them, and its output queue and ingress FIFO losses)."""
    drops: dict[str, int] = {}
    for port in counters.get("ports", {}).values():
        switch = port.get("switch", {})
        security = port.get("security", {})
        found = [(k[5:], v) for k, v in [*port.items(), *switch.items(), *security.items()] if k.startswith("drop_")]
        found += [(k, switch[k]) for k in _SWPORT_LOSSES if k in switch]
        for reason, value in found:
            if value:
                drops[reason] = drops.get(reason, 0) + value
    return dict(sorted(drops.items()))


def _stats_line(stats: dict | None, ns_per_cycle: float) -> str:
    if not stats:
        return "none forwarded"
    return (f"p50 {stats['p50']} / p99 {stats['p99']} / max {stats['max']} cycles "
            f"({stats['p50'] * ns_per_cycle:.0f} / {stats['p99'] * ns_per_cycle:.0f} / "
            f"{stats['max'] * ns_per_cycle:.0f} ns)")


def format_summary(title: str, run: dict, counters: dict, out_dir: Path) -> str:
    """Human-readable summary: offered and delivered load, drops by reason, latency split into
    pipeline and queueing, a note when the input is too short for its rates to mean much."""
    ns = 1000 / run["clock_mhz"]
    offered, delivered = run["offered"], run["delivered"]
    lines = [f"{title}: {run['engine']} engine, W={run['data_width']}, {run['clock_mhz']} MHz "
             f"({run['timing']} timing, line rate {run['line_rate_gbps_per_port']:g} Gb/s per port)",
             f"  offered          {offered['gbps']} Gb/s, {offered['mpps']} Mpps: {run['packets_in']} frames, "
             f"{run['bytes_in']} bytes over {offered['cycles']} cycles",
             f"  delivered        {delivered['gbps']} Gb/s, {delivered['mpps']} Mpps: {run['packets_out']} "
             f"frames, {run['bytes_out']} bytes over {run['cycles']} cycles"]
    drops = drops_by_reason(counters)
    lines.append("  drops            " + (", ".join(f"{k} {v}" for k, v in drops.items()) or "none"))
    mal = {k: v for k, v in counters.get("parser", {}).get("malformed", {}).items() if v}
    if mal:
        lines.append("  malformed        " + ", ".join(f"{k} {v}" for k, v in mal.items()))
    if run.get("security"):
        line = f"  alerts           {run['security']['alerts']} (eve.json)"
        hp = run.get("host_path")
        if hp:
            line += (f"; host path: {hp['punted']} of {run['packets_in']} frames punted "
                     f"({100 * hp['punt_rate']:.1f} %), {hp['alerts']} alerts found there")
        lines.append(line)
    if run.get("latency_cycles"):
        lines.append("  latency pipeline " + _stats_line(run["latency_pipeline_cycles"], ns))
        lines.append("          queueing " + _stats_line(run["latency_queueing_cycles"], ns))
        lines.append("          total    " + _stats_line(run["latency_cycles"], ns))
    else:
        lines.append("  latency          no frame was forwarded")
    if run.get("rate_note"):
        lines.append(f"  note             {run['rate_note']}")
    sus = run.get("suspicious_input") or {}
    odd = [f"{sus[k]} {what}" for k, what in (("snaplen_cut", "cut by snaplen"),
                                             ("short_on_physical_port", "short frames into a physical port"))
           if sus.get(k)]
    odd += [f"truncated file {t['file']}" for t in sus.get("truncated_files", [])]
    if odd:
        lines.append("  suspicious input " + "; ".join(odd))
    if run.get("sim_cycles_per_s"):
        lines.append(f"  simulation speed {run['sim_cycles_per_s']:.0f} cycles/s, wall {run['wall_s']} s")
    else:
        lines.append(f"  wall time        {run['wall_s']} s (timing estimated, nothing simulated)")
    lines.append(f"  files            {out_dir}/")
    return "\n".join(lines)
