"""``secnic calibrate``: measure the software path's hop costs on this machine (docs/compare.md).

::

    secnic calibrate --out FILE.json [--scenario SCENARIO.toml] [--frames N]

Measures Open vSwitch's userspace datapath, nftables on a Linux bridge and Hyperscan
(:mod:`sim.compare.calibration`) with a progress display, and writes a calibration file that a
scenario names with ``calibration = "FILE.json"``. The rules are the scenario's (default: the
default scenario's). Without root, only Hyperscan is measured: it says so, and the other figures
come from the shipped calibration (calibration/calibration.json), marked as such.

Exit status: 0 written; 2 bad input (unreadable scenario or rules, bad option); 1 a measurement failed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["register", "cmd_calibrate"]

DEFAULT_SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "default.toml"


def register(add) -> None:
    """Add the ``calibrate`` command through ``add(name, **kw)``."""
    from sim.compare.calibration import FRAMES_PER_RUN
    ap = add("calibrate", help="measure OVS, nftables and Hyperscan costs here; write a calibration file",
             description="Measure the software path's per-hop costs on this machine. See docs/compare.md.")
    ap.add_argument("--out", required=True, metavar="FILE.json",
                    help="calibration file to write (required, no default)")
    ap.add_argument("--scenario", metavar="SCENARIO.toml",
                    help="scenario whose rules are measured (default: scenarios/default.toml)")
    ap.add_argument("--frames", type=int, default=FRAMES_PER_RUN, metavar="N",
                    help="frames per OVS / bridge run")
    ap.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args) -> int:
    from host_driver.rules import RuleSyntaxError, read_rules
    from sim.cli.main import BadInput
    from sim.compare.calibration import CalibrationUnavailable, calibrate
    from sim.compare.costs import CalibrationError
    from sim.compare.scenario import ScenarioError, load_scenario
    if args.frames < 1000:
        raise BadInput(f"--frames must be at least 1000, not {args.frames}")
    out = Path(args.out)
    if out.is_dir():
        raise BadInput(f"--out {out}: is a directory; give a file name (e.g. {out}/calibration.json)")
    try:
        scenario = load_scenario(args.scenario or DEFAULT_SCENARIO)
        rules = [r for path in scenario.rule_files() for r in read_rules(path)]
    except ScenarioError as exc:
        raise BadInput(str(exc)) from None
    except RuleSyntaxError as exc:
        raise BadInput(str(exc)) from None
    if os.geteuid() != 0:
        print("secnic calibrate: not root: Open vSwitch and nftables need network namespaces (CAP_NET_ADMIN); "
              "measuring Hyperscan only and taking the other figures from the shipped calibration "
              f"({scenario.calibration})", file=sys.stderr)
    from tqdm import tqdm

    from sim.compare.calibration import REPEATS, SIZES
    steps = 1 + len(SIZES) * REPEATS + 3 * REPEATS
    with tqdm(total=steps, desc="calibrating", unit="step", disable=not sys.stderr.isatty()) as bar:
        def step(what: str) -> None:
            bar.set_postfix_str(what)
            bar.update(1)
        try:
            doc = calibrate(out, rules, shipped=scenario.calibration, step=step, frames=args.frames)
        except CalibrationError as exc:
            raise BadInput(str(exc)) from None
        except CalibrationUnavailable as exc:
            print(f"secnic calibrate: failed: {exc}", file=sys.stderr)
            return 1
    for note in doc["notes"]:
        print(f"secnic calibrate: note: {note}", file=sys.stderr)
    print(f"{out}: calibration of {doc['machine']['cpu']} ({doc['machine']['cores']} cores, "
          f"{doc['machine']['clock_ghz']} GHz)")
    for name, fig in doc["figures"].items():
        print(f"  {name:28} {fig['value']:>10.3f} +- {fig['uncertainty']:<9.3f} {str(fig.get('source'))[:60]}")
    return 0
