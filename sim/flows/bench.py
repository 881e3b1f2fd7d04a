"""``python -m sim.flows.bench`` (``make bench``): simulation speed and parser throughput of the NIC.

Measures, for each simulator (Verilator, Icarus):

* **simulated cycles per wall second** of the cocotb testbench (sim.run.nic_cocotb ``run``: two
  AXI-Stream sources and sinks from cocotbext-axi, the record monitor) on a mixed-size load
  (:func:`sim.tb.traffic.demo_mix`) at line rate on both ports, timed inside the simulation (build
  and simulator start-up excluded);
* the **parser's sustained beats per cycle** for back-to-back 64-byte and 1500-byte frames on
  one port: beats of frames 2..N divided by the cycles between the first and the last record.
  The design target is 1.0 (II=1, no bubble between frames); anything lower fails the bench.

Prints a table and writes ``build/bench.json``. Exit status 1 if a parser figure is below 1.0.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from hdl.config import NicConfig
from sim.build import BUILD_ROOT

__all__ = ["bench_simulator", "parser_beats_per_cycle", "main"]

log = logging.getLogger(__name__)


def _run(config: NicConfig, sim: str, frames, workdir: Path) -> dict:
    from sim.run.nic_cocotb import write_stimulus
    from sim.runner import run_cocotb
    stim = write_stimulus(workdir / "stim.pkl", config, frames, output=workdir / "results.json")
    run_cocotb(config, sim, "sim.run.nic_cocotb", env={"SECNIC_STIMULUS": str(stim)}, test_dir=workdir / "sim",
               test_filter=r"sim\.run\.nic_cocotb\.run$")
    return json.loads((workdir / "results.json").read_text())


def bench_simulator(config: NicConfig, sim: str, n: int, workdir: Path) -> dict:
    """Cycles per wall second on ``n`` frames of the demo mix, both ports at line rate."""
    from sim.tb.traffic import demo_mix
    frames = [(config.port_index(p) if p in config.ports else i % 2, f, False, None)
              for i, (p, f) in enumerate(demo_mix(n=n, seed=1)) if f]
    t0 = time.monotonic()
    res = _run(config, sim, frames, workdir)
    wall = time.monotonic() - t0
    return {"frames": len(frames), "cycles": res["total_cycles"], "in_sim_wall_s": round(res["wall_s"], 3),
            "cycles_per_s": round(res["total_cycles"] / res["wall_s"]), "total_wall_s": round(wall, 2)}


def parser_beats_per_cycle(config: NicConfig, sim: str, size: int, n: int, workdir: Path) -> dict:
    """Sustained beats per cycle for ``n`` back-to-back ``size``-byte frames on port 0."""
    frame = bytes([0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00, 0x45, 0, (size - 14) >> 8,
                   (size - 14) & 0xFF, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2])
    frame = frame + bytes(size - len(frame))
    res = _run(config, sim, [(0, frame, False, None)] * n, workdir)
    cycles = [c for c, _ in res["records"]]
    beats = -(-size // config.bytes_per_beat)
    span = cycles[-1] - cycles[0]
    bpc = beats * (len(cycles) - 1) / span if span else float("nan")
    return {"size": size, "frames": n, "beats_per_frame": beats, "record_span_cycles": span,
            "beats_per_cycle": round(bpc, 4)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sim.flows.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--sims", default="verilator,icarus", help="comma-separated simulators")
    ap.add_argument("--width", type=int, default=64, help="datapath width W")
    ap.add_argument("--frames", type=int, default=1000, help="frames in the speed run")
    ap.add_argument("--out", default=str(BUILD_ROOT / "bench.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = NicConfig(data_width=args.width)
    report = {"data_width": config.data_width, "clock_mhz": config.clock_mhz, "simulators": {}}
    ok = True
    with tempfile.TemporaryDirectory(prefix="secnic-bench-") as tmp:
        for sim in [s.strip() for s in args.sims.split(",") if s.strip()]:
            entry = {"speed": bench_simulator(config, sim, args.frames, Path(tmp) / f"{sim}-speed")}
            entry["parser"] = []
            for size, n in ((64, 400), (1500, 40)):
                r = parser_beats_per_cycle(config, sim, size, n, Path(tmp) / f"{sim}-{size}")
                entry["parser"].append(r)
                ok &= r["beats_per_cycle"] >= 1.0
            report["simulators"][sim] = entry
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"secnic bench: W={config.data_width}, {config.clock_mhz} MHz, cocotb + cocotbext-axi testbench")
    print(f"{'simulator':<10} {'cycles/s':>10} {'frames':>7} {'cycles':>8}  "
          f"{'parser beats/cycle 64 B':>24} {'1500 B':>8}")
    for sim, e in report["simulators"].items():
        s = e["speed"]
        p = {r["size"]: r["beats_per_cycle"] for r in e["parser"]}
        print(f"{sim:<10} {s['cycles_per_s']:>10} {s['frames']:>7} {s['cycles']:>8}  "
              f"{p[64]:>24} {p[1500]:>8}")
    print(f"wrote {out}")
    if not ok:
        print("FAIL: the parser did not sustain 1.0 beats per cycle", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
