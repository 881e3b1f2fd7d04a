"""``secnic demo`` (``make sim``): the demo traffic mix through the NIC, with a readable summary.

The mix is :func:`sim.tb.traffic.demo_mix` (both ports, valid traffic plus some malformed frames). It
runs at line rate through the chosen engine (Verilator by default) and the usual run files land in
the output directory (``build/demo/`` by default): trace.jsonl, egress/*.pcap, counters.json,
eve.json, run.json.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hdl.config import NicConfig
from sim.cli.summary import format_summary
from sim.run.engine import InputFrame, run_engine

__all__ = ["demo_inputs", "run_demo"]

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


def run_demo(config: NicConfig | None = None, *, engine: str = "verilator", out_dir: str | Path = "build/demo",
             n: int = 2000, seed: int = 1, waves: bool = False, force: bool = False,
             bulk: bool | None = None, jobs: int = 1) -> str:
    """Run the demo mix and return the summary text (the same summary as ``secnic run``)."""
    config = config or NicConfig()
    out_dir = Path(out_dir)
    run = run_engine(config, demo_inputs(config, n, seed), engine=engine, pace="line", out_dir=out_dir,
                     waves=waves, force=force, bulk=bulk, jobs=jobs)
    counters = json.loads((out_dir / "counters.json").read_text())
    return format_summary("secnic demo", run, counters, out_dir)
