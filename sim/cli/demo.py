"""``secnic demo`` (``make sim``): the demo traffic mix through the NIC, with a readable summary.

The mix is :func:`sim.tb.traffic.demo_mix` (both ports, valid traffic plus some malformed frames). It
runs at line rate through the chosen engine (Verilator by default) and the usual run files land in
the output directory (``build/sim/`` by default): trace.jsonl, egress/*.pcap, counters.json,
eve.json, run.json.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hdl.config import NicConfig
from sim.run.engine import InputFrame, run_engine

__all__ = ["demo_inputs", "run_demo", "format_summary"]

log = logging.getLogger(__name__)


def demo_inputs(config: NicConfig, n: int = 2000, seed: int = 1) -> list[InputFrame]:
    """The demo mix as engine inputs; timestamps 1 us apart, pcap_cnt counted per port."""
    from sim.tb.traffic import demo_mix
    counts: dict[str, int] = {}
    out = []
    for i, (port, frame) in enumerate(demo_mix(n=n, seed=seed)):
        if port not in config.ports:
            port = config.ports[0] if port == "phy0" else config.ports[-1]
        counts[port] = counts.get(port, 0) + 1
        out.append(InputFrame(port, f"demo_mix(seed={seed})", counts[port], frame, i * 1000))
    return out


def format_summary(run: dict, counters: dict, out_dir: Path) -> str:
    """Human-readable summary of a run."""
    lines = [f"secnic demo: {run['engine']} engine, W={run['data_width']}, {run['clock_mhz']} MHz "
             f"({run['timing']} timing)",
             f"  packets in       {run['packets_in']} ({run['bytes_in']} bytes)",
             f"  packets out      {run['packets_out']}"]
    drops: dict[str, int] = {}
    for port in counters.get("ports", {}).values():
        for key, value in port.items():
            if key.startswith("drop_") and value:
                drops[key[5:]] = drops.get(key[5:], 0) + value
    lines.append("  drops            " + (", ".join(f"{k} {v}" for k, v in sorted(drops.items())) or "none"))
    mal = {k: v for k, v in counters.get("parser", {}).get("malformed", {}).items() if v}
    if mal:
        lines.append("  malformed        " + ", ".join(f"{k} {v}" for k, v in mal.items()))
    lines.append(f"  throughput       {run['gbps']} Gb/s, {run['mpps']} Mpps over {run['cycles']} cycles")
    lat, lat_ns = run.get("latency_cycles"), run.get("latency_ns")
    if lat:
        lines.append(f"  latency          min {lat['min']} / p50 {lat['p50']} / p99 {lat['p99']} "
                     f"/ max {lat['max']} "
                     f"cycles ({lat_ns['p50']} ns p50)")
    if run.get("sim_cycles_per_s"):
        lines.append(f"  simulation speed {run['sim_cycles_per_s']:.0f} cycles/s, wall {run['wall_s']} s")
    lines.append(f"  files            {out_dir}/")
    return "\n".join(lines)


def run_demo(config: NicConfig | None = None, *, engine: str = "verilator", out_dir: str | Path = "build/sim",
             n: int = 2000, seed: int = 1) -> str:
    """Run the demo mix and return the summary text."""
    config = config or NicConfig()
    out_dir = Path(out_dir)
    run = run_engine(config, demo_inputs(config, n, seed), engine=engine, pace="line", out_dir=out_dir)
    counters = json.loads((out_dir / "counters.json").read_text())
    return format_summary(run, counters, out_dir)
