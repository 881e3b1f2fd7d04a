"""``python -m sim.flows.bench`` (``make bench``): simulation speed and parser throughput of the NIC.

For each data width (W=64 and W=512 by default), on one traffic: the demo mix
(:func:`sim.tb.traffic.demo_mix`) at line rate on both ports,

* **simulated cycles per wall second** of
  - the **cocotb path** (sim.run.nic_cocotb ``run``: cocotbext-axi sources and sinks, the record
    monitor) on Verilator and Icarus, over the first ``--cocotb-frames`` frames (it runs at about
    1 % of the others' speed), timed inside the simulation;
  (bulk mode and the ceiling get ``--frames`` frames at W=64 and W/64 times as many at wider W,
  about a million cycles each: the demo mix at W=512 takes an eighth of the beats);
  - **bulk mode** (:mod:`sim.bulk`: C++ sources and sinks, Python waking every 65,536 cycles);
  - the **ceiling**: the same harness and traffic under a bare Verilator C++ main
    (``sim/bulk/ceiling_main.cpp``, built only here), and bulk mode as a fraction of it. Bulk and
    ceiling alternate ``--repeat`` times and the medians are reported (the machine is shared);
    both time the traffic phase in C++ (first edge to the last frame), and their output files
    must be identical;
* the **switch's delivered rate** at full load (``--switch-widths``, the ``switch`` profile): two
  or six ports sending back to back to known hosts, 64- and 1500-byte frames: Mpps, Gb/s and
  drops (0 when the width carries the load; the sources wait otherwise, as a MAC's pause would
  make them);
* the **parser's sustained beats per cycle** for back-to-back 64-byte and 1500-byte frames on
  one port (bulk mode): beats of frames 2..N over the cycles between the first and the last
  record. The design target is 1.0 (II=1); anything lower fails the bench.

Prints a table with the issue's targets (bulk at W=64: 400,000 cycles/s and 0.8 of the ceiling;
at W=512: 200,000) and writes ``build/bench.json``. Exit status 1 if a parser figure is below 1.0;
speed figures depend on the machine and are reported, not enforced.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from hdl.config import NicConfig
from sim.build import BUILD_ROOT

__all__ = ["cocotb_speed", "bulk_vs_ceiling", "parser_beats_per_cycle", "main", "TARGETS"]

log = logging.getLogger(__name__)

#: Bulk mode's targets per data width: (cycles/s, fraction of the ceiling or None).
TARGETS = {64: (400_000, 0.8), 512: (200_000, None)}


def _traffic(config: NicConfig, n: int):
    from sim.tb.traffic import demo_mix
    return [(config.port_index(p) if p in config.ports else i % 2, f, False, None)
            for i, (p, f) in enumerate(demo_mix(n=n, seed=1)) if f]


def cocotb_speed(config: NicConfig, sim: str, frames, workdir: Path) -> dict:
    """Cycles per wall second of the cocotb testbench on ``frames``."""
    from sim.run.nic_cocotb import write_stimulus
    from sim.runner import run_cocotb
    stim = write_stimulus(workdir / "stim.pkl", config, frames, output=workdir / "results.json")
    run_cocotb(config, sim, "sim.run.nic_cocotb", env={"SECNIC_STIMULUS": str(stim)}, test_dir=workdir / "sim",
               test_filter=r"sim\.run\.nic_cocotb\.run$")
    res = json.loads((workdir / "results.json").read_text())
    return {"frames": len(frames), "cycles": res["total_cycles"], "wall_s": round(res["wall_s"], 3),
            "cycles_per_s": round(res["total_cycles"] / res["wall_s"])}


def bulk_vs_ceiling(config: NicConfig, frames, workdir: Path, repeat: int) -> dict:
    """Bulk mode and the C++ ceiling on ``frames``, alternating ``repeat`` times; medians."""
    from sim.bulk.run import CEILING_SOURCE, build_model, run_bulk, run_ceiling
    build_model(config)
    build_model(config, CEILING_SOURCE)
    speeds = {"bulk": [], "ceiling": []}
    cycles = None
    for k in range(repeat):
        bulk = run_bulk(config, frames, workdir / f"bulk{k}")
        ceiling = run_ceiling(config, frames, workdir / f"ceiling{k}")
        for name, res in (("bulk", bulk), ("ceiling", ceiling)):
            st = res["status"]
            speeds[name].append(st["done_cycle"] / st["wall_s"])
            cycles = st["done_cycle"]
        same = all(bulk[key] == ceiling[key] for key in ("records", "ingress", "egress"))
        if not same:
            raise RuntimeError("bulk mode and the ceiling wrote different results for the same traffic")
    bulk_med = statistics.median(speeds["bulk"])
    ceiling_med = statistics.median(speeds["ceiling"])
    return {"frames": len(frames), "cycles": cycles, "repeat": repeat,
            "bulk_cycles_per_s": round(bulk_med), "ceiling_cycles_per_s": round(ceiling_med),
            "bulk_runs": [round(v) for v in speeds["bulk"]], "ceiling_runs": [round(v) for v in speeds["ceiling"]],
            "fraction_of_ceiling": round(bulk_med / ceiling_med, 3)}


def parser_beats_per_cycle(config: NicConfig, size: int, n: int, workdir: Path) -> dict:
    """Sustained beats per cycle for ``n`` back-to-back ``size``-byte frames on port 0 (bulk mode)."""
    from sim.bulk.run import run_bulk
    frame = bytes([0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00, 0x45, 0, (size - 14) >> 8,
                   (size - 14) & 0xFF, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2])
    frame = frame + bytes(size - len(frame))
    res = run_bulk(config, [(0, frame, False, None)] * n, workdir)
    cycles = [c for c, _ in res["records"]]
    beats = -(-size // config.bytes_per_beat)
    span = cycles[-1] - cycles[0]
    bpc = beats * (len(cycles) - 1) / span if span else float("nan")
    return {"size": size, "frames": n, "beats_per_frame": beats, "record_span_cycles": span,
            "beats_per_cycle": round(bpc, 4)}


def _switch_config(width: int) -> NicConfig:
    from host_driver.switch_config import PROFILES, SwitchConfig, nic_config
    return nic_config(SwitchConfig.from_toml(PROFILES["switch"]), {"data_width": width})


def switch_throughput(config: NicConfig, active: int, size: int, n: int, workdir: Path,
                      senders: list[int] | None = None) -> dict:
    """The switch at full load: ports 0..``active``-1 (or the port numbers ``senders``) each send
    a broadcast (so every host is learned), then ``n`` back-to-back ``size``-byte frames to the
    next active port's host (bulk mode). Delivered Mpps and Gb/s over the cycles from the first
    to the last egress beat, the drops (switch reasons and output queues: lossless means 0) and
    the simulation speed."""
    import time as _time

    from sim.bulk.run import run_bulk
    senders = list(range(active)) if senders is None else list(senders)
    active = len(senders)
    hosts = [bytes([2, 0, 0, 0, 0, i + 1]) for i in range(active)]
    frames = [(p, b"\xff" * 6 + hosts[i] + b"\x88\xb5" + bytes(46), False, 0) for i, p in enumerate(senders)]
    for _ in range(n):
        for i, p in enumerate(senders):
            frames.append((p, hosts[(i + 1) % active] + hosts[i] + b"\x88\xb5" + bytes(size - 14), False, 100))
    t0 = _time.monotonic()
    res = run_bulk(config, frames, workdir)
    wall = _time.monotonic() - t0
    ends = [e for p in res["egress"].values() for e in p if len(e["data"]) == size]
    first, last = min(e["start"] for e in ends), max(e["end"] for e in ends)
    cycles = last - first + 1
    per_s = config.clock_mhz * 1e6 / cycles
    drops = sum(v for c in res["counters"]["ports"].values() for k, v in c.get("switch", {}).items()
                if k.startswith("drop_") or k == "tx_queue_drop")
    return {"active_ports": active, "senders": [config.ports[p] for p in senders], "size": size,
            "frames": len(ends), "cycles": cycles,
            "mpps": round(len(ends) * per_s / 1e6, 3), "gbps": round(len(ends) * size * 8 * per_s / 1e9, 3),
            "drops": drops, "sim_cycles_per_s": round(res["status"]["cycles"] / res["status"]["wall_s"]),
            "wall_s": round(wall, 1)}


def _machine() -> str:
    import os
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sim.flows.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--widths", default="64,512", help="comma-separated data widths (default: 64,512)")
    ap.add_argument("--sims", default="verilator,icarus", help="simulators for the cocotb path (default: both)")
    ap.add_argument("--frames", type=int, default=20000,
                    help="frames for bulk mode and the ceiling at W=64, times W/64 at wider W so that every "
                         "run spans about a million cycles (default: 20000)")
    ap.add_argument("--cocotb-frames", type=int, default=2000,
                    help="the first frames of the same traffic for the cocotb path (default: 2000)")
    ap.add_argument("--repeat", type=int, default=3, help="bulk/ceiling alternations (default: 3)")
    ap.add_argument("--switch-widths", default="64,256",
                    help="data widths for the switch's throughput at full load (default: 64,256; '' for none)")
    ap.add_argument("--out", default=str(BUILD_ROOT / "bench.json"), help="JSON report (default: build/bench.json)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    widths = [int(w) for w in args.widths.split(",") if w.strip()]
    sims = [s.strip() for s in args.sims.split(",") if s.strip()]
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": _machine(), "widths": {}}
    ok = True
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="secnic-bench-") as tmp:
        for w in widths:
            config = NicConfig(data_width=w)
            frames = _traffic(config, args.frames * max(1, w // 64))
            entry = {"clock_mhz": config.clock_mhz, "cocotb": {}}
            print(f"W={w}: bulk mode and ceiling, {len(frames)} frames x {args.repeat} ...", file=sys.stderr)
            entry["bulk"] = bulk_vs_ceiling(config, frames, Path(tmp) / f"w{w}", args.repeat)
            for sim in sims:
                print(f"W={w}: cocotb path on {sim}, {args.cocotb_frames} frames ...", file=sys.stderr)
                entry["cocotb"][sim] = cocotb_speed(config, sim, frames[:args.cocotb_frames],
                                                    Path(tmp) / f"w{w}-{sim}")
            entry["parser"] = []
            for size, n in ((64, 400), (1500, 40)):
                r = parser_beats_per_cycle(config, size, n, Path(tmp) / f"w{w}-parser{size}")
                entry["parser"].append(r)
                ok &= r["beats_per_cycle"] >= 1.0
            report["widths"][w] = entry
        report["switch"] = []
        for w in [int(x) for x in args.switch_widths.split(",") if x.strip()]:
            config = _switch_config(w)
            vms = [config.ports.index(p) for p in config.ports if p.startswith("vm")][:4]
            for active, size, n, senders in ((2, 64, 4000, None), (6, 64, 1500, None), (6, 1500, 100, None),
                                             (4, 64, 1500, vms)):     # the saturation case
                print(f"W={w}: switch, {active} ports at full load, {size}-byte frames ...", file=sys.stderr)
                workdir = Path(tmp) / f"switch-w{w}-{active}-{size}{'-vm' if senders else ''}"
                report["switch"].append({"data_width": w, **switch_throughput(config, active, size, n, workdir,
                                                                              senders)})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"secnic bench, {report['date']}: {report['machine']}")
    print(f"traffic: the demo mix at line rate on both ports; {time.monotonic() - t0:.0f} s")
    print(f"{'W':>4} {'path':<22} {'cycles/s':>10} {'cycles':>9} {'of ceiling':>10}  target")
    for w, e in report["widths"].items():
        b = e["bulk"]
        ceiling = b["ceiling_cycles_per_s"]
        for sim, c in e["cocotb"].items():
            print(f"{w:>4} {'cocotb (' + sim + ')':<22} {c['cycles_per_s']:>10,} {c['cycles']:>9,} "
                  f"{c['cycles_per_s'] / ceiling:>10.3f}")
        speed, frac = TARGETS.get(w, (None, None))
        met = (speed is None or b["bulk_cycles_per_s"] >= speed) and (frac is None or b["fraction_of_ceiling"] >= frac)
        want = " and ".join(x for x in (f">= {speed:,}/s" if speed else "",
                                        f">= {frac} of ceiling" if frac else "") if x)
        print(f"{w:>4} {'bulk (verilator)':<22} {b['bulk_cycles_per_s']:>10,} {b['cycles']:>9,} "
              f"{b['fraction_of_ceiling']:>10.3f}  {want or '-'}: {'met' if met else 'NOT MET'}")
        print(f"{w:>4} {'ceiling (C++ main)':<22} {ceiling:>10,} {b['cycles']:>9,} {1:>10.3f}")
        p = {r["size"]: r["beats_per_cycle"] for r in e["parser"]}
        print(f"{w:>4} parser beats/cycle: 64 B {p[64]}, 1500 B {p[1500]} (target 1.0)")
    if report["switch"]:
        print(f"switch ({len(_switch_config(64).ports)}-port profile), every active port at full load to a "
              "known host: delivered")
        print(f"{'W':>4} {'sending ports':<28} {'bytes':>5} {'Mpps':>8} {'Gb/s':>8} {'drops':>6} {'sim cycles/s':>12}")
        for r in report["switch"]:
            print(f"{r['data_width']:>4} {','.join(r['senders']):<28} {r['size']:>5} {r['mpps']:>8} {r['gbps']:>8} "
                  f"{r['drops']:>6} {r['sim_cycles_per_s']:>12,}")
    print(f"wrote {out}")
    if not ok:
        print("FAIL: the parser did not sustain 1.0 beats per cycle", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
