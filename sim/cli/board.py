"""``secnic board``: talk to a NIC on a dev board through its UART register bridge (docs/boards.md).

::

    secnic board --port DEV [--board NAME] [--baud N] [--timeout S] [--retries N] COMMAND
        identity                                   build constants (IDENTITY) and the blocks found
        counters                                   every counter, as JSON (the shape of counters.json)
        linetest start [--frame-len N] [--gap N] [--seed S]
        linetest stop
        linetest check                             signatures against the frames the settings make

Every command is the host driver of the simulations, :class:`host_driver.driver.Nic`, over
:class:`host_driver.serialbus.SerialBus` on a :class:`~host_driver.serialbus.PySerialTransport`;
DEV is a serial device (``/dev/ttyUSB0``) or any pyserial URL. The tests run these commands
against the bridge gateware in simulation through a pseudo-terminal (``sim.tb.pty``).

Exit status: 0 success; 1 ``linetest check`` found a mismatch, or the board answered a bus
error; 2 no such device, no answer from a bridge, not a secnic NIC, a request the line tester
refuses in its state, or a bad option.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import sys
from pathlib import Path

__all__ = ["register", "cmd_board"]

log = logging.getLogger(__name__)

#: Baud rate when neither --baud nor --board says otherwise: NicConfig's default ``uart_baud``.
DEFAULT_BAUD = 115200
#: Above this many frames per port, ``linetest check`` says how long the Python reference takes
#: (about 0.55 us per byte generated, measured on this project's 2-core machine).
SLOW_CHECK_FRAMES = 100_000
CHECK_SECONDS_PER_BYTE = 0.6e-6


def register(add) -> None:
    """Add the ``board`` subcommand through ``add(name, **kw)``, which makes a subparser with the common options."""
    from hdl.board.boards import BOARDS
    ap = add(
        "board", help="talk to a board through its UART bridge: identity, counters, line tester",
        description="Reach a NIC on a dev board through its UART register bridge with the host driver. "
                    "See docs/boards.md for loading the bitstream and finding the serial device.")
    ap.add_argument("--port", required=True, metavar="DEV",
                    help="serial device (e.g. /dev/ttyUSB0) or pyserial URL (required; no default)")
    ap.add_argument("--board", choices=list(BOARDS), metavar="NAME",
                    help=f"the board (sets the default baud): one of {', '.join(BOARDS)}")
    ap.add_argument("--baud", type=int, metavar="N",
                    help=f"line rate (default: the board's uart_baud, else {DEFAULT_BAUD})")
    ap.add_argument("--timeout", type=float, default=0.1, metavar="S",
                    help="seconds to wait for each response (default 0.1)")
    ap.add_argument("--retries", type=int, default=3, metavar="N",
                    help="extra attempts after a lost or corrupted response (default 3)")
    cmds = ap.add_subparsers(dest="board_command", required=True, metavar="COMMAND")
    cmds.add_parser("identity", help="build constants from IDENTITY and the register blocks found")
    cmds.add_parser("counters", help="every counter as JSON")
    lt = cmds.add_parser("linetest", help="the built-in line tester: start, stop, check")
    ops = lt.add_subparsers(dest="linetest_command", required=True, metavar="OP")
    start = ops.add_parser("start", help="program frame length, gap and seed, then start the generators")
    start.add_argument("--frame-len", type=int, default=64, metavar="N",
                       help="frame length in bytes; the NIC clamps it to 60..MAX_FRAME (default 64)")
    start.add_argument("--gap", type=int, default=0, metavar="N", help="idle cycles between frames (default 0)")
    start.add_argument("--seed", type=integer, default=None, metavar="S",
                       help="payload LFSR seed, nonzero (default 0xACE1; 0x prefix for hex)")
    ops.add_parser("stop", help="stop the generators (each finishes its frame)")
    ops.add_parser("check", help="compare SIGNATURE registers with the frames the settings generate")
    ap.set_defaults(func=cmd_board)


def integer(text: str) -> int:
    """An integer in any Python base notation (``4660``, ``0x1234``), for argparse."""
    return int(text, 0)


def _baud(args) -> int:
    from hdl.board.boards import BOARDS
    from sim.cli.main import BadInput
    if args.baud is not None:
        if args.baud <= 0:
            raise BadInput(f"--baud must be positive, not {args.baud}")
        return args.baud
    if args.board is not None:
        return BOARDS[args.board].config().uart_baud
    return DEFAULT_BAUD


def _open(args, baud: int):
    """The serial transport; BadInput naming the device when it cannot be opened."""
    from host_driver.serialbus import PySerialTransport
    from sim.cli.main import BadInput
    dev = args.port
    if "://" not in dev and not Path(dev).exists():
        raise BadInput(f"--port {dev}: no such device (is the board plugged in? see docs/boards.md "
                       "for its serial device)")
    try:
        return PySerialTransport(dev, baud)
    except (OSError, ValueError) as exc:   # serial.SerialException is an OSError
        raise BadInput(f"--port {dev}: cannot open the serial device ({exc})") from None


async def _connect(args, transport):
    from host_driver.driver import Nic
    from host_driver.serialbus import SerialBus
    nic = Nic(SerialBus(transport, timeout=args.timeout, retries=args.retries))
    await nic.discover()
    return nic


async def _identity(nic, args) -> int:
    out = await nic.identity()
    out["blocks"] = [b.key for b in nic.blocks]
    print(json.dumps(out, indent=2))
    return 0


async def _counters(nic, args) -> int:
    print(json.dumps(await nic.counters(), indent=2))
    return 0


async def _port_names(nic) -> list[str]:
    blocks = sorted(nic.find("PORT"), key=lambda b: b.instance)
    return [await nic.port_name(b) for b in blocks]


async def _linetest(nic, args) -> int:
    from host_driver.blocks.linetest import LineTester
    op = {"start": _linetest_start, "stop": _linetest_stop, "check": _linetest_check}[args.linetest_command]
    return await op(LineTester(nic), args)


async def _linetest_start(lt, args) -> int:
    from host_driver.blocks.linetest import DEFAULT_SEED
    from sim.cli.main import BadInput
    try:
        s = await lt.configure(args.frame_len, gap=args.gap, seed=DEFAULT_SEED if args.seed is None else args.seed)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    await lt.start()
    print(f"line tester started: {s.effective_len}-byte frames, gap {s.gap}, seed 0x{s.seed:08x}")
    return 0


async def _linetest_stop(lt, args) -> int:
    await lt.stop()
    print("line tester stopped")
    return 0


async def _linetest_check(lt, args) -> int:
    """Each egress port's SIGNATURE against the frames its peer port's generator sent."""
    from host_driver.blocks.linetest import LineTesterError, expected_signature, iter_frames
    from host_driver.driver import received_drops
    if await lt.running():
        raise LineTesterError("the line tester is running: `linetest stop` it before `linetest check`")
    nic = lt.nic
    settings = await lt.read_settings()
    bpb = (await lt.build_info())["bytes_per_beat"]
    names = await _port_names(nic)
    counters = (await nic.counters())["ports"]
    signatures = await lt.signatures()
    ok = True
    total = 0
    for egress, name in enumerate(names[:len(signatures)]):
        # Generated on the peer port, forwarded here: the bump in the wire sends every frame to
        # the other port, a board's switch keeps each peer pair in a VLAN of its own.
        peer = egress ^ 1
        sent = counters[name]["tx_packets"]
        signature = signatures[egress]
        if peer >= len(names):
            # The odd port out (a board switch's monitor port): nothing is addressed to it.
            good = sent == 0 and signature == 0
            ok &= good
            print(f"{name}: {sent} frames, no peer port to generate them, signature 0x{signature:08x}, "
                  f"expected 0x00000000: {'OK' if good else 'MISMATCH'}")
            continue
        ingress = names[peer]
        generated = counters[ingress]["rx_packets"]
        drops = received_drops(counters[ingress]) + counters[name].get("switch", {}).get("tx_queue_drop", 0)
        total += generated
        if drops:
            good, detail = False, f"{drops} dropped, signature not predictable"
        else:
            if generated > SLOW_CHECK_FRAMES:
                print(f"{name}: checking {generated} frames in Python, about "
                      f"{generated * settings.effective_len * CHECK_SECONDS_PER_BYTE:.0f} s "
                      "(use --gap to generate fewer)", file=sys.stderr)
            # Streamed, not listed: a second at line rate is millions of frames.
            frames = itertools.islice(iter_frames(settings.effective_len, bpb, seed=settings.seed,
                                                  template=settings.template, port=peer), generated)
            want = expected_signature(frames, bpb)
            good = want == signature and sent == generated
            detail = f"signature 0x{signature:08x}, expected 0x{want:08x}"
        ok &= good
        print(f"{name}: {sent} frames out of {generated} generated on {ingress}; "
              f"{detail}: {'OK' if good else 'MISMATCH'}")
    print(f"settings: {settings.effective_len}-byte frames, gap {settings.gap}, seed 0x{settings.seed:08x}")
    if total == 0:
        print("no frames were generated since reset: `linetest start`, wait, `linetest stop`, then check",
              file=sys.stderr)
        return 1
    if not ok:
        print("check failed; signatures count every frame since reset, so they are predictable only "
              "for one start/stop since the board was reset (reload the bitstream to reset it)",
              file=sys.stderr)
        return 1
    return 0


_COMMANDS = {"identity": _identity, "counters": _counters, "linetest": _linetest}


def cmd_board(args: argparse.Namespace) -> int:
    """Run one ``secnic board`` command; errors a user can act on become :class:`BadInput` (exit 2)."""
    from host_driver.blocks.linetest import LineTesterError
    from host_driver.bus import BusError
    from host_driver.driver import DiscoveryError, IdentityError
    from host_driver.serialbus import BridgeTimeout
    from sim.cli.main import BadInput
    if args.timeout <= 0:
        raise BadInput(f"--timeout must be positive, not {args.timeout}")
    if args.retries < 0:
        raise BadInput(f"--retries must be 0 or more, not {args.retries}")
    baud = _baud(args)
    transport = _open(args, baud)

    async def session():
        nic = await _connect(args, transport)
        return await _COMMANDS[args.board_command](nic, args)

    try:
        return asyncio.run(session())
    except BridgeTimeout as exc:
        raise BadInput(f"no answer from a secnic UART bridge on {args.port} at {baud} baud ({exc}); "
                       "is the bitstream loaded, and are the device and baud right? (docs/boards.md)") from None
    except (IdentityError, DiscoveryError) as exc:
        raise BadInput(f"{args.port}: the device answers but is not a secnic NIC: {exc}") from None
    except LineTesterError as exc:
        raise BadInput(f"{args.port}: {exc}") from None
    except BusError as exc:
        print(f"secnic board: failed: {args.port}: {exc}", file=sys.stderr)
        return 1
    finally:
        transport.close()
