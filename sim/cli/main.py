"""``secnic``: the command line (console script ``secnic = sim.cli.main:main``).

::

    secnic run (--in PORT=FILE.pcap ... | --pcap FILE.pcap) [--config nic.toml]
               [--engine model|verilator|icarus] [--pace line|pcap|GBPS] [--waves] --out DIR
    secnic regmap --format md|json [--config nic.toml]
    secnic demo [--engine verilator|icarus|model] [--out build/sim] [--count N] [--seed S]

Exit status: 0 success; 2 bad input (unreadable or non-Ethernet pcap, unknown port, bad option,
bad config file: the message names the file and, for TOML syntax errors, line and column) with
nothing written; 1 when a run itself fails (simulator build or simulation error), also with
nothing written.

``--config`` reads a TOML file whose ``[nic]`` table holds :class:`hdl.config.NicConfig` options::

    [nic]
    data_width = 64
    ports = ["phy0", "vm1"]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tomllib
from pathlib import Path

__all__ = ["main", "load_config", "BadInput"]

log = logging.getLogger("secnic")


class BadInput(Exception):
    """A user error: message for stderr, exit status 2."""


def load_config(path: str | Path | None):
    """NicConfig from a TOML file's ``[nic]`` table (defaults without a file)."""
    from hdl.config import NicConfig
    if path is None:
        return NicConfig()
    try:
        return NicConfig.from_dict(read_nic_table(path), source=f"{path} [nic]")
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def read_nic_table(path: str | Path) -> dict:
    """The ``[nic]`` table of a TOML file, unvalidated (bad file or syntax: :class:`BadInput`)."""
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
    nic = doc.get("nic", {})
    if not isinstance(nic, dict):
        raise BadInput(f"{path}: [nic] must be a table, not {type(nic).__name__}")
    return nic


def _parse_inputs(args, config):
    from sim.run.engine import InputFrame
    from sim.run.pcapio import PcapError, read_pcap

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
    inputs = []
    for port, file in pairs:
        if port not in config.ports:
            raise BadInput(f"unknown port {port!r} in --in {port}={file}; this NIC has ports "
                           f"{', '.join(config.ports)}")
        try:
            frames = read_pcap(file)
        except PcapError as exc:
            raise BadInput(str(exc)) from None
        inputs += [InputFrame(port, file, f.index, f.data, f.ts_ns) for f in frames]
    return inputs


def _check_out(out: str) -> Path:
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise BadInput(f"--out {out}: exists and is not a directory")
    return path


def cmd_run(args) -> int:
    from sim.run.engine import PaceError, parse_pace, run_engine
    if args.rules:
        raise BadInput(f"--rules {args.rules}: rule files are not yet supported by this NIC build "
                       "(no classifier/matcher in this slice)")
    config = load_config(args.config)
    try:
        pace = parse_pace(args.pace)
    except ValueError as exc:
        raise BadInput(f"--pace: {exc}") from None
    out = _check_out(args.out)
    inputs = _parse_inputs(args, config)
    try:
        run = run_engine(config, inputs, engine=args.engine, pace=pace, waves=args.waves, out_dir=out)
    except PaceError as exc:
        raise BadInput(str(exc)) from None
    print(f"{run['engine']}: {run['packets_in']} packets in, {run['packets_out']} out, "
          f"{run['gbps']} Gb/s, {run['mpps']} Mpps ({run['timing']}) -> {out}")
    return 0


def cmd_regmap(args) -> int:
    from hdl.mgmt.regs import build_register_map
    config = load_config(args.config)
    rmap = build_register_map(config)
    sys.stdout.write(rmap.to_markdown() if args.format == "md" else rmap.to_json())
    return 0


def cmd_demo(args) -> int:
    from sim.cli.demo import run_demo
    config = load_config(args.config)
    out = _check_out(args.out)
    summary = run_demo(config, engine=args.engine, out_dir=out, n=args.count, seed=args.seed)
    print(summary)
    return 0


def cmd_bitstream(args) -> int:
    from hdl.board.boards import BOARDS
    from sim.flows.bitstream import BitstreamError, TimingError, build_bitstream
    if args.board not in BOARDS:
        raise BadInput(f"unknown board {args.board!r}; known boards: {', '.join(BOARDS)}")
    if args.tries is not None and args.tries < 1:
        raise BadInput(f"--tries must be at least 1, not {args.tries}")
    overrides = read_nic_table(args.config) if args.config else {}
    try:
        BOARDS[args.board].config(overrides)     # validate before any tool runs
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    try:
        report = build_bitstream(args.board, Path(args.out), overrides=overrides, seed=args.seed,
                                 tries=args.tries)
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


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="secnic", description="secnic: security smart-NIC emulator")
    ap.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run pcaps through the NIC and write trace, egress pcaps, counters")
    run.add_argument("--in", dest="inputs", action="append", metavar="PORT=FILE.pcap",
                     help="frames of FILE enter port PORT (repeatable)")
    run.add_argument("--pcap", action="append", metavar="FILE.pcap",
                     help="frames of FILE enter the first port")
    run.add_argument("--rules", metavar="FILE.rules", help="Suricata rules (not yet supported)")
    run.add_argument("--config", metavar="nic.toml", help="NIC build options ([nic] table)")
    run.add_argument("--engine", choices=("model", "verilator", "icarus"), default="model")
    run.add_argument("--pace", default="line", metavar="line|pcap|GBPS",
                     help="line: back to back; pcap: capture timestamps; GBPS: rate per port")
    run.add_argument("--waves", action="store_true", help="dump waves.fst (simulator engines)")
    run.add_argument("--out", required=True, metavar="DIR")
    run.set_defaults(func=cmd_run)

    rm = sub.add_parser("regmap", help="print the register map")
    rm.add_argument("--format", choices=("md", "json"), default="md")
    rm.add_argument("--config", metavar="nic.toml")
    rm.set_defaults(func=cmd_regmap)

    demo = sub.add_parser("demo", help="run the demo traffic mix through the NIC (what `make sim` runs)")
    demo.add_argument("--engine", choices=("model", "verilator", "icarus"), default="verilator")
    demo.add_argument("--out", default="build/sim", metavar="DIR")
    demo.add_argument("--config", metavar="nic.toml")
    demo.add_argument("--count", type=int, default=2000, help="frames in the mix")
    demo.add_argument("--seed", type=int, default=1)
    demo.set_defaults(func=cmd_demo)

    from hdl.board.boards import BOARDS
    bit = sub.add_parser("bitstream", help="build a bitstream and report.json for a dev board (YoWASP tools)",
                         description="Boards: " + "; ".join(f"{b.name}: {b.doc}" for b in BOARDS.values()))
    bit.add_argument("--board", required=True, metavar="NAME", help=f"one of {', '.join(BOARDS)}")
    bit.add_argument("--config", metavar="nic.toml", help="NIC option overrides ([nic] table)")
    bit.add_argument("--out", required=True, metavar="DIR")
    bit.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (of the first run)")
    bit.add_argument("--tries", type=int, metavar="N",
                     help="place-and-route runs with seeds SEED, SEED+1, ... until timing is met "
                          "(default: the board's: "
                          + ", ".join(f"{b.name} {b.pnr_tries}" for b in BOARDS.values()) + ")")
    bit.set_defaults(func=cmd_bitstream)
    from sim.cli import board, testbench  # subcommands kept in their own modules
    testbench.register(sub)
    board.register(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.verbose < 2:
        os.environ.setdefault("COCOTB_LOG_LEVEL", "WARNING")
    try:
        return args.func(args)
    except BadInput as exc:
        print(f"secnic {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("secnic: interrupted; nothing written", file=sys.stderr)
        return 130
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
