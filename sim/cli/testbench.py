"""``secnic testbench FILE.py``: run a user's cocotb module against the NIC (docs/testbench.md).

::

    secnic testbench FILE.py [--sim verilator|icarus] [--config nic.toml] [--test NAME ...]
                             [--waves] [--out DIR]

Builds the NIC (cached), runs every ``@cocotb.test()`` in FILE.py and prints how many passed.
Exit status: 0 every test passed; 1 a test failed (the end of the simulation log is printed);
2 the file cannot be run (missing, a syntax error with its line and column, a module name that
clashes), a bad config, or the simulator is not installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["register", "cmd_testbench"]


def register(add) -> None:
    """Add the ``testbench`` subcommand through ``add(name, **kw)``, which makes a subparser with the common options."""
    from sim.runner import SIMULATORS
    ap = add("testbench", help="run a cocotb testbench file against the NIC",
                        description="Run every @cocotb.test() in FILE.py against the NIC (ports phy0 and vm1 "
                                    "by default). The file's folder is importable; no PYTHONPATH needed.")
    ap.add_argument("file", metavar="FILE.py", help="the cocotb module")
    ap.add_argument("--sim", choices=SIMULATORS, default="verilator", help="simulator (default verilator)")
    ap.add_argument("--config", metavar="nic.toml", help="NIC build options ([nic] table; default: NicConfig())")
    ap.add_argument("--test", action="append", metavar="NAME",
                    help="run only this test function (repeatable; default: every test in the file)")
    ap.add_argument("--waves", action="store_true", help="dump an FST waveform into the output folder (default: off)")
    ap.add_argument("--out", metavar="DIR",
                    help="folder for sim.log, results.xml and waves (default build/testbench/<module>-<sim>)")
    ap.set_defaults(func=cmd_testbench)


def cmd_testbench(args) -> int:
    from cocotb_tools.check_results import get_results

    from sim.cli.main import BadInput, load_config
    from sim.runner import CocotbTestFailure, SimulatorUnavailable, check_simulator
    from sim.tb.testbench import TestbenchError, check_testbench_file, default_test_dir, run_testbench
    config = load_config(args.config)
    try:
        _, module = check_testbench_file(args.file)
        check_simulator(args.sim)
    except (TestbenchError, SimulatorUnavailable) as exc:
        raise BadInput(str(exc)) from None
    out = Path(args.out) if args.out else default_test_dir(module, args.sim)
    try:
        results = run_testbench(args.file, args.sim, config=config, test_dir=out, waves=args.waves,
                                testcase=args.test)
    except CocotbTestFailure as exc:
        print(f"secnic testbench: FAILED: {exc}", file=sys.stderr)
        return 1
    n_tests, _ = get_results(results)
    print(f"{args.file}: {n_tests} test(s) passed on {args.sim}; log in {out / 'sim.log'}")
    return 0
