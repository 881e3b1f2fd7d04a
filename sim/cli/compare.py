"""``secnic compare``: software appliances versus offload for one scenario (``make sim``; docs/compare.md).

::

    secnic compare SCENARIO.toml --out DIR [--scheduler local|none|ADDRESS] [--workers N]
                   [--engine verilator|model] [--calibration FILE.json] [--force]

Runs the scenario's sweep on both paths, the chaining and loop-storm cases, and writes report.md,
report.json and PNG plots into DIR (guarded like ``secnic run``'s output: :mod:`sim.run.outdir`).
Points run as Dask tasks: a LocalCluster on this machine's cores (``local``, the default), the
scheduler at ADDRESS (``tcp://host:8786``), or in this process (``none``). report.json is the same
either way. A few lines of headline answer are printed at the end.

Exit status: 0 written; 2 bad input (the scenario: file and key path, or line:column for TOML
syntax; an unusable calibration file; an --out directory secnic did not write) with nothing
written; 1 a run failed (simulator build, a Dask worker), also with nothing written.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

__all__ = ["register", "cmd_compare"]

log = logging.getLogger(__name__)


def register(add) -> None:
    """Add the ``compare`` command through ``add(name, **kw)``."""
    ap = add("compare", help="software appliances vs offload on the NIC: sweep, knees, cores (what `make sim` runs)",
             description="Compare a service chain run as software appliances with the NIC offload. "
                         "See docs/compare.md.")
    ap.add_argument("scenario", metavar="SCENARIO.toml", help="scenario file (e.g. scenarios/default.toml)")
    ap.add_argument("--out", required=True, metavar="DIR",
                    help="output directory: new, empty or a previous run's (required, no default)")
    ap.add_argument("--force", action="store_true",
                    help="write beside files secnic did not write (none is deleted or overwritten; default: refuse)")
    ap.add_argument("--scheduler", default="local", metavar="local|none|ADDRESS",
                    help="Dask: a LocalCluster on this machine's cores, no Dask (this process), or a scheduler address")
    ap.add_argument("--workers", type=int, metavar="N",
                    help="LocalCluster workers (default: this machine's cores)")
    ap.add_argument("--engine", choices=("verilator", "model"), default="verilator",
                    help="the offloaded path's NIC: Verilator in bulk mode, or the golden model (timing estimated)")
    ap.add_argument("--calibration", metavar="FILE.json",
                    help="calibration file (default: the scenario's, else the shipped calibration/calibration.json)")
    ap.set_defaults(func=cmd_compare)


def cmd_compare(args) -> int:
    from sim.cli.main import BadInput
    from sim.compare.costs import CalibrationError, load_calibration
    from sim.compare.report import build_report, headline, write_report
    from sim.compare.scenario import ScenarioError, load_scenario
    from sim.compare.sweep import Context, plan, run_points
    from sim.run.outdir import OutDirError, check_out_dir, publish, staging_dir

    if args.workers is not None and args.workers < 1:
        raise BadInput(f"--workers must be at least 1, not {args.workers}")
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        raise BadInput(str(exc)) from None
    cal_path = Path(args.calibration).resolve() if args.calibration else scenario.calibration
    try:
        calibration = load_calibration(cal_path)
        out = check_out_dir(args.out, force=args.force)
        # Rule files are read here, so a syntax error is bad input, not a failed worker.
        from host_driver.rules import RuleSyntaxError, read_rules
        for path in scenario.rule_files():
            read_rules(path)
    except (CalibrationError, OutDirError) as exc:
        raise BadInput(str(exc)) from None
    except RuleSyntaxError as exc:
        raise BadInput(str(exc)) from None
    ctx = Context(str(scenario.path), str(cal_path), args.engine)
    scheduler = None if args.scheduler == "none" else args.scheduler
    wall0 = time.monotonic()
    from sim.compare.sweep import prepare
    from sim.run.engine import EngineError
    prepare(ctx)                      # build the simulators once, before workers run them side by side
    points = plan(scenario)
    from tqdm import tqdm
    with tqdm(total=len(points), desc=f"compare {scenario.name}", unit="point",
              disable=not sys.stderr.isatty()) as bar:
        try:
            results = run_points(ctx, points, scheduler=scheduler, progress=bar.update, workers=args.workers)
        except (EngineError, OSError) as exc:
            raise RuntimeError(f"a sweep point failed: {exc}") from exc
    report = build_report(scenario, calibration, results, args.engine)
    tmp = staging_dir(out)
    try:
        write_report(report, tmp)
        publish(tmp, out, force=args.force)
    except OutDirError as exc:
        raise BadInput(str(exc)) from None
    except BaseException:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    wall = time.monotonic() - wall0
    log.info("report: %s", json.dumps(report["capacity"]))
    print(f"secnic compare: {scenario.name}: {len(points)} points in {wall:.0f} s "
          f"({'no Dask' if scheduler is None else 'Dask ' + args.scheduler}); report in {out}")
    for line in headline(report):
        print(f"  {line}")
    return 0
