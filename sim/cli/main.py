"""``secnic``: the command line (console script ``secnic = sim.cli.main:main``).

::

    secnic [--version] [-v] COMMAND ...
    secnic run (--in PORT=FILE.pcap ... | --pcap FILE.pcap) [--config nic.toml]
               [--rules FILE.rules [--vars vars.toml] [--ips]]
               [--engine model|verilator|icarus] [--pace line|pcap|GBPS] [--waves]
               [--bulk | --no-bulk] [--jobs N] --out DIR [--force]
    secnic regmap --format md|json [--config nic.toml]
    secnic rules check FILE.rules [--vars vars.toml] [--capacity N]
    secnic compare SCENARIO.toml --out DIR [--scheduler local|none|ADDRESS] [--engine verilator|model]
    secnic calibrate --out FILE.json [--scenario SCENARIO.toml]
    secnic demo [--engine verilator|icarus|model] [--out build/demo] [--count N] [--seed S] [--waves]
                [--bulk | --no-bulk] [--jobs N]

Exit status: 0 success; 2 bad input (unreadable or non-Ethernet pcap, unknown port, bad option,
bad config file: the message names the file and, for TOML syntax errors, line and column; an
``--out`` directory that holds files secnic did not write, or cannot be written) with nothing
written; 1 when a run itself fails (simulator build or simulation error), also with nothing
written; 141 when the reader of its output went away (``| head``). ``-v`` may come before or
after the command. A bad option prints that command's usage.

``--out`` never loses a user's file: see :mod:`sim.run.outdir` (a previous run's files are
replaced; any other non-empty directory needs ``--force``, which still deletes nothing of theirs).

``--config`` reads a TOML file whose ``[nic]`` table holds :class:`hdl.config.NicConfig` options::

    [nic]
    data_width = 64
    ports = ["phy0", "vm1"]

and, for the security stage, a ``[security]`` table (:func:`host_driver.switch_config.security_settings`,
docs/security.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tomllib
from pathlib import Path

__all__ = ["main", "load_config", "BadInput"]

log = logging.getLogger("secnic")


class BadInput(Exception):
    """A user error: message for stderr, exit status 2."""


#: The NIC ``secnic run`` and ``demo`` build without ``--config`` (issue 13: the switch).
DEFAULT_PROFILE = "switch"


def load_config(spec: str | Path | None, *, default: str | None = DEFAULT_PROFILE):
    """The NicConfig of ``--config SPEC``: a built-in profile by name
    (:data:`host_driver.switch_config.PROFILES`: ``switch``, ``bump-in-the-wire``) or a TOML file
    with a ``[nic]`` table (build options) and, for a switch, a ``[switch]`` table (docs/switch.md;
    a file without one is the two-port bump in the wire). ``None``: the ``default`` profile, or
    ``NicConfig()`` when ``default`` is None. A mistake is :class:`BadInput` naming the key."""
    from hdl.config import NicConfig
    from host_driver.switch_config import PROFILES, SwitchConfig, SwitchConfigError, nic_config
    if spec is None:
        if default is None:
            return NicConfig()
        spec = default
    if str(spec) in PROFILES and not Path(spec).exists():
        return nic_config(SwitchConfig.from_toml(PROFILES[str(spec)]))
    doc = _read_toml(spec)
    nic = _nic_table(doc, spec)
    try:
        if "switch" not in doc:
            config = NicConfig.from_dict(nic, source=f"{spec} [nic]")
        else:
            config = nic_config(SwitchConfig.from_toml(doc["switch"]), nic, source=f"{spec}")
        return _with_security(config, doc, spec)
    except SwitchConfigError as exc:
        raise BadInput(f"{spec}: {exc}") from None
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def _with_security(config, doc: dict, spec):
    """``config`` with the security stage of the file's ``[security]`` table, if it has one."""
    import dataclasses

    from host_driver.switch_config import security_settings
    if "security" not in doc:
        return config
    if "security" in _nic_table(doc, spec):
        raise BadInput(f"{spec}: nic.security: the security stage is configured in the [security] table")
    settings = security_settings(doc["security"], config.ports)
    return dataclasses.replace(config, security=settings)


def board_config(board, spec: str | Path | None):
    """The NicConfig ``secnic bitstream --board B --config SPEC`` builds: the board's own (its
    line-test switch, or the bump in the wire) when SPEC is None; a built-in profile by name
    (``bump-in-the-wire``: the board's NIC without a switch; ``switch``: that profile's seven ports
    and VLANs); a TOML file: its ``[nic]`` options over the board's, and its ``[switch]`` table,
    if any, instead of the board's switch. A mistake is :class:`BadInput` naming the key."""
    from host_driver.switch_config import PROFILES, SwitchConfig, SwitchConfigError, nic_config
    def board_options() -> dict:
        """The board's own NIC options, without its ports and switch (a [switch] table gives those)."""
        from hdl.security.settings import AUTO_BYPASS
        base = board.config(bump=True).as_dict()
        for key in ("switch", "ports", "physical_ports"):
            base.pop(key, None)
        if base.get("security") is not None:
            # The two-port build resolved its bypass port to None (it has no host port): let the
            # switch's own ports resolve it again, or host re-injections would be inspected again.
            base["security"]["bypass_port"] = AUTO_BYPASS
        return base
    try:
        if spec is None:
            return board.config()
        if str(spec) in PROFILES and not Path(spec).exists():
            switch = SwitchConfig.from_toml(PROFILES[str(spec)])
            if switch.wire:
                return board.config(bump=True)
            return nic_config(switch, board_options(), source=f"board {board.name}, profile {spec}")
        doc = _read_toml(spec)
        nic = _nic_table(doc, spec)
        if "switch" not in doc:
            return board.config(nic)
        return nic_config(SwitchConfig.from_toml(doc["switch"]), board_options() | nic, source=f"{spec}")
    except SwitchConfigError as exc:
        raise BadInput(f"{spec}: {exc}") from None
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def _nic_table(doc: dict, path) -> dict:
    nic = doc.get("nic", {})
    if not isinstance(nic, dict):
        raise BadInput(f"{path}: [nic] must be a table, not {type(nic).__name__}")
    return nic


def _read_toml(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"{path}: cannot read config file ({exc.strerror or exc})") from None
    try:
        doc = tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: not UTF-8 text ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already ends in "(at line L, column C)".
        raise BadInput(f"{path}: TOML syntax error: {exc}") from None
    return doc


def _parse_inputs(args, config):
    """(engine inputs, [(file, why truncated)]) from ``--in`` and ``--pcap``."""
    from sim.run.engine import InputFrame
    from sim.run.pcapio import PcapError, read_capture

    pairs: list[tuple[str, str]] = []
    for spec in args.inputs or []:
        port, sep, file = spec.partition("=")
        if not sep or not port or not file:
            raise BadInput(f"--in expects PORT=FILE.pcap, not {spec!r}")
        pairs.append((port, file))
    for file in args.pcap or []:
        pairs.append((config.ports[0], file))
    if not pairs:
        raise BadInput("no input: give --in PORT=FILE.pcap (repeatable) or --pcap FILE.pcap")
    inputs, truncated = [], []
    for port, file in pairs:
        if port not in config.ports:
            raise BadInput(f"unknown port {port!r} in --in {port}={file}; this NIC has ports "
                           f"{', '.join(config.ports)}")
        try:
            cap = read_capture(file)
        except PcapError as exc:
            raise BadInput(str(exc)) from None
        if cap.truncated:
            truncated.append((file, cap.truncated))
        inputs += [InputFrame(port, file, f.index, f.data, f.ts_ns,
                              wire_len=f.wire_len if f.snaplen_cut else None) for f in cap.frames]
    return inputs, truncated


def _check_out(out: str, force: bool = False) -> Path:
    from sim.run.outdir import OutDirError, check_out_dir
    try:
        return check_out_dir(out, force=force)
    except OutDirError as exc:
        raise BadInput(str(exc)) from None


def _warn(command: str, text: str) -> None:
    print(f"secnic {command}: warning: {text}", file=sys.stderr)


def warn_suspicious(command: str, run: dict) -> None:
    """Say once, on stderr, what was odd about the input (run.json's ``suspicious_input``)."""
    sus = run.get("suspicious_input") or {}
    if sus.get("snaplen_cut"):
        first = sus["snaplen_cut_first"]
        _warn(command, f"{sus['snaplen_cut']} frame(s) were cut by the capture's snaplen (first: "
                       f"{first['in_file']} #{first['pcap_cnt']}); the NIC sees only the captured bytes "
                       "and drops them as malformed (ip_len_mismatch, trunc_*). Capture with -s 0")
    if sus.get("short_on_physical_port"):
        first = sus["short_on_physical_port_first"]
        _warn(command, f"{sus['short_on_physical_port']} frame(s) under 60 bytes entered a physical port "
                       f"(first: {first['in_file']} #{first['pcap_cnt']}) and are dropped as runts; a capture "
                       "taken on a host holds frames before the NIC pads them: feed it to a VM port "
                       "(--in vm1=FILE) or pad the frames")
    for t in sus.get("truncated_files", []):
        _warn(command, f"{t['file']}: truncated capture ({t['detail']}); the frames before the cut were used")


def _check_waves(args) -> None:
    if args.waves and args.engine == "model":
        raise BadInput("--waves needs a simulator engine (--engine verilator or icarus): the golden model "
                       "has no signals to dump")
    from sim.run.engine import use_bulk
    if args.jobs < 1:
        raise BadInput(f"--jobs must be at least 1, not {args.jobs}")
    try:
        use_bulk(args.engine, 0, args.bulk, args.waves, args.jobs)
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def cmd_run(args) -> int:
    from sim.cli.summary import format_summary
    from sim.run.engine import PaceError, line_rate_gbps, parse_pace, run_engine
    from sim.run.outdir import OutDirError
    _check_waves(args)
    config = load_config(args.config)
    rules = None
    if args.vars and not args.rules:
        raise BadInput("--vars gives the variables of --rules: give --rules too")
    if args.rules:
        config, rules = _load_rules(args.rules, args.vars, config)
        if rules is None:
            return 2
    try:
        pace = parse_pace(args.pace)
    except ValueError as exc:
        raise BadInput(f"--pace: {exc}") from None
    if not isinstance(pace, str) and pace > line_rate_gbps(config):
        _warn("run", f"--pace {args.pace} Gb/s is above a port's line rate ({line_rate_gbps(config):g} Gb/s: "
                     f"{config.data_width} bits at {config.clock_mhz} MHz); frames go back to back, "
                     "as with --pace line")
    out = _check_out(args.out, args.force)
    inputs, truncated = _parse_inputs(args, config)
    try:
        run = run_engine(config, inputs, engine=args.engine, pace=pace, waves=args.waves, out_dir=out,
                         force=args.force, truncated_files=truncated, bulk=args.bulk, jobs=args.jobs, rules=rules,
                         ips=args.ips)
    except (PaceError, OutDirError, ValueError) as exc:
        raise BadInput(str(exc)) from None
    warn_suspicious("run", run)
    counters = json.loads((out / "counters.json").read_text())
    print(format_summary("secnic run", run, counters, out))
    return 0


def _load_rules(path, vars_path, config):
    """(config, RuleSet) for ``--rules``: the build gets the default security stage if it has none
    (docs/security.md, "Driver and secnic run"). A syntax error is printed as FILE:LINE:COL on
    stderr and gives (config, None): exit status 2, nothing written."""
    import dataclasses

    from hdl.security.settings import SecuritySettings
    from host_driver.rules import RuleSyntaxError
    from sim.run.alerts import load_rule_set
    if not Path(path).is_file():
        raise BadInput(f"{path}: no such rule file")
    if config.security is None:
        log.info("--rules: the build has no [security] table; adding the default security stage")
        config = dataclasses.replace(config, security=SecuritySettings())
    try:
        return config, load_rule_set(path, config.security.acl_entries, vars_path=vars_path,
                                     matcher_index_bits=config.security.matcher_index_bits)
    except RuleSyntaxError as exc:
        print(str(exc), file=sys.stderr)
        return config, None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ({exc.strerror or exc})") from None


def cmd_regmap(args) -> int:
    from hdl.top import build_register_map
    config = load_config(args.config)
    rmap = build_register_map(config)
    sys.stdout.write(rmap.to_markdown() if args.format == "md" else rmap.to_json())
    return 0


def cmd_demo(args) -> int:
    from sim.cli.demo import run_demo
    from sim.run.outdir import OutDirError
    _check_waves(args)
    if args.count < 1:
        raise BadInput(f"--count must be at least 1, not {args.count}")
    config = load_config(args.config)
    out = _check_out(args.out, args.force)
    try:
        summary = run_demo(config, engine=args.engine, out_dir=out, n=args.count, seed=args.seed,
                           waves=args.waves, force=args.force, bulk=args.bulk, jobs=args.jobs)
    except (OutDirError, ValueError) as exc:
        raise BadInput(str(exc)) from None
    print(summary)
    return 0


def cmd_bitstream(args) -> int:
    from hdl.board.boards import BOARDS
    from sim.flows.bitstream import BitstreamError, TimingError, build_bitstream
    if args.board not in BOARDS:
        raise BadInput(f"unknown board {args.board!r}; known boards: {', '.join(BOARDS)}")
    if args.tries is not None and args.tries < 1:
        raise BadInput(f"--tries must be at least 1, not {args.tries}")
    config = board_config(BOARDS[args.board], args.config)     # validated before any tool runs
    try:
        report = build_bitstream(args.board, Path(args.out), config=config, seed=args.seed, tries=args.tries)
    except TimingError as exc:
        print(f"secnic bitstream: timing not met: {exc}", file=sys.stderr)
        return 1
    except BitstreamError as exc:
        print(f"secnic bitstream: failed: {exc}", file=sys.stderr)
        return 1
    res = report["resources"]
    print(f"{report['board']}: {report['bitstream']} in {args.out}; "
          f"LUT {res['lut']['used']}/{res['lut']['available']}, "
          f"FF {res['ff']['used']}, BRAM {res['bram']['used']}/{res['bram']['available']}; core "
          f"{report['core_fmax_mhz']} MHz (target {report['target_mhz']}) in {report['build_s']} s")
    return 0


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default; options without one say so in their help."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.option_strings and "default" not in text and action.default not in (None, False)
                and action.default is not argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("secnic")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _add_bulk_options(parser: argparse.ArgumentParser) -> None:
    from sim.run.engine import BULK_MIN_FRAMES
    parser.add_argument("--bulk", action=argparse.BooleanOptionalAction, default=None,
                        help="Verilator in bulk mode (traffic moved in C++, about 80x faster; docs/bulk.md) or "
                             f"the cocotb testbench (default: bulk from {BULK_MIN_FRAMES} frames on, without --waves)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="split a bulk run into N segments simulated in parallel, merged as one run "
                             "(timing figures change at the cuts: docs/bulk.md; default: 1)")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and each command's own parser (for its usage on a bad option)."""
    ap = argparse.ArgumentParser(prog="secnic", description="secnic: security smart-NIC emulator",
                                 formatter_class=_HelpFormatter)
    ap.add_argument("--version", action="version", version=f"secnic {_version()}")
    ap.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug; default: warnings)")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # -v after the command too; counted separately because a subparser starts its own namespace.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", dest="verbose_after", action="count", default=0,
                        help="more logging (-vv: debug; default: warnings)")
    parsers: dict[str, argparse.ArgumentParser] = {}

    def add(name, **kw):
        p = sub.add_parser(name, parents=[common], formatter_class=_HelpFormatter, **kw)
        parsers[name] = p
        return p

    run = add("run", help="run pcaps through the NIC and write trace, egress pcaps, counters")
    run.add_argument("--in", dest="inputs", action="append", metavar="PORT=FILE.pcap",
                     help="frames of FILE enter port PORT (repeatable; default: none, give --in or --pcap)")
    run.add_argument("--pcap", action="append", metavar="FILE.pcap",
                     help="frames of FILE enter the first port (repeatable; default: none)")
    run.add_argument("--rules", metavar="FILE.rules",
                     help="Suricata rules: their header rules program the ACL through the driver; alerts go to "
                          "eve.json (a build without a [security] table gets the default security stage; "
                          "default: none)")
    run.add_argument("--vars", metavar="vars.toml",
                     help="[address-groups] and [port-groups] for --rules (default: Suricata's suricata.yaml vars)")
    run.add_argument("--ips", action="store_true",
                     help="IPS mode for --rules: frames the host path must settle are diverted to the host port "
                          "and re-injected or dropped by the host (docs/security.md; a switch with a host port, "
                          "a simulator plays the host one frame at a time; default: IDS, "
                          "the host gets a copy)")
    run.add_argument("--config", metavar="nic.toml",
                     help="NIC build options ([nic] table; default: the built-in NIC, W=64, phy0 + vm1)")
    run.add_argument("--engine", choices=("model", "verilator", "icarus"), default="model",
                     help="golden model (fast, timing estimated) or the gateware in a simulator")
    run.add_argument("--pace", default="line", metavar="line|pcap|GBPS",
                     help="line: back to back; pcap: capture timestamps; GBPS: rate per port")
    run.add_argument("--waves", action="store_true",
                     help="dump waves.fst (simulator engines only; default: off)")
    _add_bulk_options(run)
    run.add_argument("--out", required=True, metavar="DIR",
                     help="output directory: new, empty or a previous run's (required, no default)")
    run.add_argument("--force", action="store_true",
                     help="write into a non-empty directory that secnic did not write, beside its files "
                          "(none of them is deleted or overwritten; default: refuse)")
    run.set_defaults(func=cmd_run)

    rm = add("regmap", help="print the register map")
    rm.add_argument("--format", choices=("md", "json"), default="md", help="Markdown table or JSON")
    rm.add_argument("--config", metavar="nic.toml",
                    help="NIC build options ([nic] table; default: the built-in NIC)")
    rm.set_defaults(func=cmd_regmap)

    demo = add("demo", help="run the demo traffic mix through the NIC (what `make demo` runs)")
    demo.add_argument("--engine", choices=("model", "verilator", "icarus"), default="verilator",
                      help="simulator or golden model")
    demo.add_argument("--out", default="build/demo", metavar="DIR",
                      help="output directory: new, empty or a previous run's")
    demo.add_argument("--force", action="store_true",
                      help="write beside files secnic did not write (default: refuse)")
    demo.add_argument("--config", metavar="nic.toml",
                      help="NIC build options ([nic] table; default: the built-in NIC)")
    demo.add_argument("--count", type=int, default=2000, help="frames in the mix")
    demo.add_argument("--seed", type=int, default=1, help="random seed of the mix")
    demo.add_argument("--waves", action="store_true", help="dump waves.fst (simulators only; default: off)")
    _add_bulk_options(demo)
    demo.set_defaults(func=cmd_demo)

    from hdl.board.boards import BOARDS
    bit = add("bitstream", help="build a bitstream and report.json for a dev board (YoWASP tools)",
              description="Boards: " + "; ".join(f"{b.name}: {b.doc}" for b in BOARDS.values()))
    bit.add_argument("--board", required=True, metavar="NAME",
                     help=f"one of {', '.join(BOARDS)} (required, no default)")
    bit.add_argument("--config", metavar="nic.toml|PROFILE",
                     help="a TOML file ([nic] options over the board's; a [switch] table instead of the "
                          "board's switch) or a profile name (bump-in-the-wire, switch); default: the "
                          "board's own configuration")
    bit.add_argument("--out", required=True, metavar="DIR", help="output directory (required, no default)")
    bit.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (of the first run)")
    bit.add_argument("--tries", type=int, metavar="N",
                     help="place-and-route runs with seeds SEED, SEED+1, ... until timing is met "
                          "(default: the board's: "
                          + ", ".join(f"{b.name} {b.pnr_tries}" for b in BOARDS.values()) + ")")
    bit.set_defaults(func=cmd_bitstream)
    from sim.cli import board, calibrate, compare, rules, testbench  # subcommands kept in their own modules
    testbench.register(add)
    board.register(add)
    rules.register(add)
    compare.register(add)
    calibrate.register(add)
    return ap, parsers


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line; a bad option after a command is reported with that command's usage."""
    ap, parsers = build_parser()
    args, extra = ap.parse_known_args(argv)
    if extra:
        # argparse reports unknown options with the top-level usage; the command's own is the useful one.
        argv = sys.argv[1:] if argv is None else argv
        before_command = argv.index(args.command) > argv.index(extra[0]) if extra[0] in argv else False
        (ap if before_command else parsers[args.command]).error(f"unrecognized arguments: {' '.join(extra)}")
    args.verbose += getattr(args, "verbose_after", 0)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.verbose < 2:
        os.environ.setdefault("COCOTB_LOG_LEVEL", "WARNING")
    from sim.run import progress
    # Bars only for a person watching: not in pipes, logs or CI (stdout is the summary's).
    progress.enable(sys.stdout.isatty() and sys.stderr.isatty())
    try:
        return args.func(args)
    except BadInput as exc:
        print(f"secnic {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("secnic: interrupted; nothing written", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`secnic ... | head`): stop quietly, as Unix tools do, and keep
        # Python's exit-time flush of stdout from failing again.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 141
    except Exception as exc:  # a failed run: say what failed, leave nothing behind
        from sim.run.engine import EngineError
        if isinstance(exc, EngineError) or args.verbose == 0:
            print(f"secnic {args.command}: failed: {exc}", file=sys.stderr)
            if not isinstance(exc, EngineError):
                log.debug("traceback", exc_info=True)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
