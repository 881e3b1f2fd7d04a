"""Run frames through the NIC in bulk mode and read the results back (docs/bulk.md).

* :func:`run_bulk`: one simulation: the harness (:mod:`sim.bulk.harness`) under ``bulk_main.cpp``,
  driven over a pipe by :class:`BulkSim`; the host driver reads the counters through
  :class:`PipeBus`. Verilator only.
* :func:`run_segments`: the same frames cut into segments simulated in parallel (one simulator
  process each), merged as if the segments had run one after another (which figures that
  changes: docs/bulk.md).
* :func:`run_ceiling`: the same harness and traffic under a bare C++ main (``ceiling_main.cpp``),
  for ``make bench``'s ceiling.
* :func:`run_looped`: a run of fixed length with some ports closed into a loop through one external
  flooding switch in the C++ (:class:`Loop`; the comparison's loop storm), on the same model.

Results have the shape of :func:`sim.run.nic_cocotb.read_results` (``records`` as ``[cycle, int]``,
``ingress``, ``egress`` per port name, ``counters``, ``identity``, ``total_cycles``, ``wall_s``) plus
``status`` (from the C++: cycles, records, egress per port, ``timed_out``) and ``sim_cycles`` (the
cycles of the traffic phase, which the C++ times as ``status["wall_s"]``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hdl.config import NicConfig
from host_driver.bus import AxiResp, Bus, BusError
from sim.build import BUILD_ROOT, build_verilog
from sim.bulk.harness import DPI_SOURCE, TOPLEVEL, read_outputs, write_frames, write_harness
from sim.runner import TIMESCALE, VERILATOR_ARGS, VERILATOR_MAKEFLAGS, build_lock, check_simulator

__all__ = ["run_bulk", "run_segments", "split_segments", "build_model", "run_ceiling", "run_looped", "Loop",
           "BULK_MAKEFLAGS", "timeout_cycles",
           "BulkSim", "PipeBus", "BulkError", "MAIN_SOURCE", "CEILING_SOURCE", "CHUNK_CYCLES"]

log = logging.getLogger(__name__)

MAIN_SOURCE = Path(__file__).with_name("bulk_main.cpp")
CEILING_SOURCE = Path(__file__).with_name("ceiling_main.cpp")
#: Clocking and reset shared by both mains (part of the build's cache key).
CLOCK_HEADER = Path(__file__).with_name("harness_clock.h")
#: Cycles the simulator runs between two looks from Python: waking every 1000 cycles or more costs
#: nothing measurable (TOOLCHAIN.md); the progress bar moves a few times a second.
CHUNK_CYCLES = 65536
#: Cycles after the traffic is done before the counters are read: the counter pipeline's latency.
SETTLE_CYCLES = 8
#: The bulk-mode model's compiler flags: sim.runner's, but the model's own code (OPT_FAST) at -O1 instead
#: of -O2. On the comparison's switch (W=64, security stage) that halves the compile's CPU time and
#: costs a few per cent of simulated cycles per CPU-second (docs/performance.md, "make sim": the
#: build flags); a bulk model is built for each design and often run for less time than it builds.
BULK_MAKEFLAGS = tuple(f for f in VERILATOR_MAKEFLAGS if not f.startswith("OPT_FAST=")) + ("OPT_FAST=-O1",)
#: Frames: (port index, bytes, rx_error, start cycle or None), as sim.run.nic_cocotb takes them.
Frames = Sequence[tuple[int, bytes, bool, int | None]]


class BulkError(RuntimeError):
    """The bulk simulator failed (build, start or a command); the message has its stderr."""


def timeout_cycles(config: NicConfig, frames: Frames) -> int:
    """Cycles after which a run gives up: the cocotb path's bound (every beat 8 times over, after the
    last scheduled start, plus 50,000)."""
    beats = sum(-(-max(len(f[1]), 1) // config.bytes_per_beat) + 2 for f in frames)
    last_start = max(((f[3] or 0) for f in frames), default=0)
    return 8 * beats + last_start + 50_000


def build_model(config: NicConfig, main: Path = MAIN_SOURCE) -> Path:
    """Build the harness with ``main`` (:data:`MAIN_SOURCE` or :data:`CEILING_SOURCE`) and the DPI
    traffic code into an executable, with the cocotb builds' Verilator flags (compiler flags
    :data:`BULK_MAKEFLAGS`) but no VPI and no public signals; return it. Cached per (Verilog,
    harness, C++ sources, flags)."""
    check_simulator("verilator")
    sv = build_verilog(config)
    harness_sv = write_harness(config, sv)
    kind = "ceiling" if Path(main) == CEILING_SOURCE else "bulk"
    build_dir = BUILD_ROOT / "sim_build" / f"{sv.parent.name}-verilator-{kind}"
    cxx = [DPI_SOURCE, Path(main)]
    args = [*VERILATOR_ARGS, "--timescale", "/".join(TIMESCALE)]
    texts = [f.read_text() for f in (sv, harness_sv, *cxx, CLOCK_HEADER)] + args + list(BULK_MAKEFLAGS)
    stamp = hashlib.sha256("\0".join(texts).encode()).hexdigest()
    exe = build_dir / f"secnic_{kind}"
    with build_lock(build_dir.parent / ".locks" / f"{build_dir.name}.lock"):
        stamp_file = build_dir / ".secnic-build-stamp"
        if exe.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
            return exe
        from sim.run import progress
        shutil.rmtree(build_dir, ignore_errors=True)
        build_dir.mkdir(parents=True)
        cmd = ["verilator", "--cc", "--exe", "--build", "-j", str(os.cpu_count() or 1), "--top-module", TOPLEVEL,
               "--prefix", "Vtop", "-Mdir", str(build_dir), "-o", exe.name, *args,
               str(sv), str(harness_sv), *map(str, cxx)]
        t0 = time.monotonic()
        env = dict(os.environ, MAKEFLAGS=" ".join(filter(None, [os.environ.get("MAKEFLAGS"), *BULK_MAKEFLAGS])))
        with progress.watch(f"building the {kind}-mode model (once per design)"):
            with open(build_dir / "build.log", "w") as logf:
                proc = subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=build_dir, env=env)
        if proc.returncode != 0 or not exe.exists():
            raise BulkError(f"{kind}-mode build failed; see {build_dir / 'build.log'}")
        stamp_file.write_text(stamp)
        log.info("built the %s-mode model in %.1f s", kind, time.monotonic() - t0)
    return exe


class BulkSim:
    """One bulk-mode simulator process (``bulk_main.cpp``) and its command pipe.

    Use as a context manager; :meth:`quit` (called on exit) ends the simulation, which writes the
    output files. Reset is done when the process starts.
    """

    def __init__(self, exe: Path, frames_bin: Path, out_dir: Path, cwd: Path, loop_file: Path | None = None):
        env = dict(os.environ, SECNIC_BULK_IN=str(Path(frames_bin).resolve()),
                   SECNIC_BULK_OUT=str(Path(out_dir).resolve()))
        if loop_file is not None:
            env["SECNIC_BULK_LOOP"] = str(Path(loop_file).resolve())
        self._stderr = open(Path(cwd) / "sim.log", "w+")
        self.proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, text=True, env=env, cwd=cwd, bufsize=1)
        self._expect("ready")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            if self.proc.poll() is None:
                self.quit()
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self._stderr.close()

    def _fail(self, what: str):
        self.proc.poll()
        self._stderr.flush()
        self._stderr.seek(0)
        tail = self._stderr.read()[-2000:].strip()
        raise BulkError(f"bulk simulator {what} (exit status {self.proc.returncode})" + (f": {tail}" if tail else ""))

    def _expect(self, first: str) -> list[str]:
        line = self.proc.stdout.readline()
        words = line.split()
        if not words or words[0] != first:
            self._fail(f"answered {line.strip()!r}" if line else "ended")
        return words[1:]

    def command(self, *words) -> list[str]:
        """Send one command (bulk_main.cpp lists them); return the reply's words after ``ok``."""
        try:
            self.proc.stdin.write(" ".join(str(w) for w in words) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            self._fail("ended")
        return self._expect("ok")

    def go(self) -> None:
        self.command("go")

    def run(self, cycles: int) -> tuple[int, int, bool]:
        """Run up to ``cycles`` cycles, fewer once the traffic is done: (cycles since start, records, done)."""
        total, records, done = self.command("run", cycles)
        return int(total), int(records), done == "1"

    def cycles(self, n: int) -> int:
        return int(self.command("cycles", n)[0])

    def quit(self) -> None:
        self.command("quit")


class PipeBus(Bus):
    """:class:`host_driver.bus.Bus` over a :class:`BulkSim`: the driver programs and reads the NIC
    through its CSR bus (AXI-Lite, cycle by cycle in the simulator)."""

    def __init__(self, sim: BulkSim):
        self.sim = sim

    async def read32(self, addr: int) -> int:
        data, resp = self.sim.command("read", addr)
        if int(resp) != AxiResp.OKAY:
            raise BusError(addr, int(resp), "read")
        return int(data)

    async def write32(self, addr: int, value: int) -> None:
        (resp,) = self.sim.command("write", addr, value & 0xFFFFFFFF)
        if int(resp) != AxiResp.OKAY:
            raise BusError(addr, int(resp), "write")


def _program(sim: BulkSim, before) -> None:
    """Run ``before(nic)`` (the driver programming the NIC over the simulator's CSR pipe) when given."""
    if before is None:
        return
    from host_driver.driver import Nic

    async def program():
        nic = Nic(PipeBus(sim))
        await nic.discover()
        await before(nic)
    asyncio.run(program())


def run_bulk(config: NicConfig, frames: Frames, workdir: Path, *,
             progress: Callable[[int], None] | None = None, before=None, after=None, ips=None) -> dict:
    """Run ``frames`` through the NIC in bulk mode in ``workdir``; return the results.

    ``progress(records)`` is called between chunks with the number of frames that have a record
    (or, ``ingress = "drop"``, were dropped at ingress).
    ``before(nic)`` and ``after(nic)`` (async, given the host driver's discovered
    :class:`~host_driver.driver.Nic` over the harness's bus) run before the traffic starts (to
    program the NIC) and after it ended; what ``after`` returns is in the results as ``"after"``.
    ``ips``: IPS mode's ``{"loop": sim.run.ips.HostLoop, "order": [input indices]}``: the frames go in
    one at a time in that order and Python plays the host (:func:`_host_loop`); the results get
    ``ips`` as :mod:`sim.run.nic_cocotb`'s.
    """
    from host_driver.driver import Nic
    workdir = Path(workdir)
    out = workdir / "out"
    out.mkdir(parents=True, exist_ok=True)
    exe = build_model(config)
    limit = timeout_cycles(config, frames)
    if ips is not None:
        limit += len(frames) * HOST_ROUND_TRIP_CYCLES     # each frame waits for the one before it
    frames_bin = write_frames(workdir / "frames.bin", config, frames, limit, gated=ips is not None)
    wall0 = time.monotonic()
    ips_results = None
    with BulkSim(exe, frames_bin, out, workdir) as sim:
        _program(sim, before)
        sim.go()
        if ips is not None:
            ips_results = _host_loop(sim, config, frames, ips["loop"], ips["order"], progress)
        done = False
        while not done:
            _, records, done = sim.run(CHUNK_CYCLES)
            if progress is not None:
                progress(records)
        sim.cycles(SETTLE_CYCLES)

        async def read_back():
            from host_driver.blocks.switch import frozen_recorder
            nic = Nic(PipeBus(sim))
            await nic.discover()
            return (await nic.counters(), await nic.identity(), await frozen_recorder(nic),
                    await after(nic) if after is not None else None)
        counters, identity, recorder, after_result = asyncio.run(read_back())
        total = sim.cycles(0)
    res = read_outputs(out, config, len(frames))
    res.update(counters=counters, identity=identity, recorder=recorder, after=after_result, total_cycles=total,
               ips=ips_results,
               sim_cycles=res["status"]["done_cycle"], wall_s=res["status"]["wall_s"],
               process_wall_s=time.monotonic() - wall0)
    return res


#: Gated mode: cycles one frame may take from its release to its record, or a diverted frame to its
#: tagged copy on the host port and its re-injection to its record, before the run is an error.
HOST_ROUND_TRIP_CYCLES = 100_000


def _host_loop(sim: BulkSim, config: NicConfig, frames: Frames, loop, order, progress=None) -> list[dict]:
    """IPS mode in bulk: release the frames one at a time in ``order``; after each, run until its
    record; when it was diverted, take its tagged frame off the host port, let ``loop`` (a
    :class:`sim.run.ips.HostLoop`) decide, inject the re-injection into the host port and run until
    its record, before the next frame (sim/run/ips.py, "The host loop's timing rule"). Returns per
    diverted frame ``{"frame", "verdict", "record"}`` as the cocotb testbench does."""
    from sim.run.ips import is_tagged
    sim.command("tap", loop.port)
    out, settled = [], 0

    def step(what: str) -> tuple[int, int]:
        _, records, drops = map(int, sim.command("step", settled + 1, HOST_ROUND_TRIP_CYCLES))
        if records + drops < settled + 1:
            raise BulkError(f"no record for {what} within {HOST_ROUND_TRIP_CYCLES} cycles")
        return records, drops

    for n, idx in enumerate(order):
        sim.command("offer", idx)
        records, drops = step(f"input frame {idx}")
        settled += 1
        if drops:
            raise BulkError(f"input frame {idx} was dropped at ingress: IPS needs ingress = \"pause\"")
        _, bits = sim.command("record", records - 1)
        bits = int(bits, 16)
        if not loop.diverted(bits):
            continue
        while True:
            (data,) = sim.command("take", HOST_ROUND_TRIP_CYCLES)
            if data == "-":
                raise BulkError(f"input frame {idx} was diverted, the host port sent no tagged frame")
            tagged = bytes.fromhex(data)
            if is_tagged(tagged):
                break
        verdict, back = loop.answer(bits, tagged)
        record = None
        if back is not None:
            sim.command("inject", loop.port, back.hex())
            record = records
            step(f"the re-injection of input frame {idx}")
            settled += 1
        out.append({"frame": idx, "verdict": verdict, "record": record})
        if progress is not None and n % 64 == 0:
            progress(n)
    sim.command("close")
    return out


# -- parallel segments ----------------------------------------------------------------------------

def split_segments(config: NicConfig, frames: Frames, n: int) -> list[list[int]]:
    """Cut ``frames`` into at most ``n`` segments of about equal size, by the cycle each frame is
    offered (its start cycle, or when its port is free of the frames before it), so that each
    segment keeps the ports' traffic side by side and each port's frames stay in order. Returns
    input indices per segment, each in input order."""
    free: dict[int, int] = {}
    offered = []
    for i, (port, data, _, start) in enumerate(frames):
        t = max(start or 0, free.get(port, 0))
        free[port] = t + max(1, -(-len(data) // config.bytes_per_beat))
        offered.append((t, i))
    offered.sort()
    n = max(1, min(n, len(frames)))
    size = -(-len(frames) // n) if frames else 0
    segments = [sorted(i for _, i in offered[k:k + size]) for k in range(0, len(offered), size or 1)]
    return [s for s in segments if s]


def _segment_worker(args) -> dict:
    config, frames, workdir = args
    return run_bulk(config, frames, Path(workdir))


def _add_counters(a, b):
    if isinstance(a, dict):
        return {k: _add_counters(a[k], b[k]) for k in a}
    return a + b


def run_segments(config: NicConfig, frames: Frames, workdir: Path, jobs: int) -> dict:
    """Run ``frames`` as ``jobs`` segments simulated in parallel and merge the results as if the
    segments had run one after another: cycles of segment k are shifted by the cycles the segments
    before it ran, per-frame results keep input order, egress frames per port follow segment
    order, counters are summed. Paced start cycles are rebased to each segment's first."""
    workdir = Path(workdir)
    build_model(config)   # once, before the workers look for it
    segments = split_segments(config, frames, jobs)
    tasks = []
    for k, seg in enumerate(segments):
        starts = [frames[i][3] for i in seg if frames[i][3] is not None]
        base = min(starts, default=0)
        sub = [(frames[i][0], frames[i][1], frames[i][2], None if frames[i][3] is None else frames[i][3] - base)
               for i in seg]
        tasks.append((config, sub, workdir / f"segment{k}"))
    wall0 = time.monotonic()
    # Threads are enough: each segment's simulation is a process of its own (bulk_main.cpp), and
    # Python only writes its input and reads its results. (A process pool would re-import the
    # caller's main module in every worker.)
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        parts = list(pool.map(_segment_worker, tasks))
    wall = time.monotonic() - wall0
    merged = {"records": [], "ingress": [None] * len(frames),
              "egress": {name: [] for name in config.ports}, "counters": None, "identity": parts[0]["identity"],
              "status": {"timed_out": False, "segments": []}, "segments": len(parts)}
    offset = 0
    total = 0
    for seg, part in zip(segments, parts, strict=True):
        merged["records"] += [[c + offset, bits] for c, bits in part["records"]]
        for local, i in enumerate(seg):
            ing = part["ingress"][local]
            merged["ingress"][i] = None if ing is None else [ing[0] + offset, ing[1] + offset]
        for name, out in part["egress"].items():
            merged["egress"][name] += [dict(e, start=e["start"] + offset, end=e["end"] + offset) for e in out]
        merged["counters"] = (part["counters"] if merged["counters"] is None
                              else _add_counters(merged["counters"], part["counters"]))
        merged["status"]["timed_out"] |= part["status"]["timed_out"]
        merged["status"]["segments"].append(part["status"])
        offset += part["status"]["done_cycle"]
        total += part["total_cycles"]
    merged.update(total_cycles=total, sim_cycles=offset, wall_s=wall)
    return merged


# -- the ceiling: the same harness under a bare C++ main ------------------------------------------

def run_ceiling(config: NicConfig, frames: Frames, workdir: Path) -> dict:
    """Run ``frames`` through the harness under ``ceiling_main.cpp``; return its outputs as
    :func:`sim.bulk.harness.read_outputs` reads them (``status["wall_s"]`` times the traffic)."""
    exe = build_model(config, CEILING_SOURCE)
    workdir = Path(workdir)
    out = workdir / "out"
    out.mkdir(parents=True, exist_ok=True)
    frames_bin = write_frames(workdir / "frames.bin", config, frames, timeout_cycles(config, frames))
    env = dict(os.environ, SECNIC_BULK_IN=str(frames_bin.resolve()), SECNIC_BULK_OUT=str(out.resolve()))
    proc = subprocess.run([str(exe)], env=env, capture_output=True, text=True, cwd=workdir)
    if proc.returncode != 0:
        raise BulkError(f"ceiling run failed (exit status {proc.returncode}): {proc.stderr[-2000:]}")
    return read_outputs(out, config, len(frames))


# -- a loop through an external switch, closed in the C++ -----------------------------------------

@dataclass(frozen=True)
class Loop:
    """Ports closed into a loop through one external flooding switch (``bulk_dpi.cpp`` does it
    cycle by cycle): a group-addressed frame whose last beat leaves one of ``ports`` at cycle t
    (before ``until``) is offered to each other of them from cycle t + ``delay``, behind what that
    port's source already holds; the external switch queues at most ``queue`` frames towards each
    port and loses the rest (``status["loop_lost"]``). Unicast frames reach their host and stay out
    of the loop."""
    ports: tuple[int, ...]
    delay: int
    queue: int
    until: int

    def write(self, path: Path) -> Path:
        """The loop file ``bulk_dpi.cpp`` reads (``SECNIC_BULK_LOOP``)."""
        path = Path(path)
        path.write_text(f"delay {self.delay}\nqueue {self.queue}\nuntil {self.until}\n"
                        f"ports {' '.join(str(p) for p in self.ports)}\n")
        return path


def run_looped(config: NicConfig, frames: Frames, loop: Loop, cycles: int, workdir: Path, *,
               before=None) -> dict:
    """Run ``frames`` with ``loop`` closed for exactly ``cycles`` cycles from the start of the traffic
    (a storm never ends by itself), on the model :func:`build_model` builds for ``config`` (the one
    :func:`run_bulk` runs); ``before(nic)`` as there. Results as :func:`run_bulk`'s, without the
    recorder; the looped frames' records are in ``records`` after (or between) the input frames'."""
    from host_driver.driver import Nic
    workdir = Path(workdir)
    out = workdir / "out"
    out.mkdir(parents=True, exist_ok=True)
    exe = build_model(config)
    frames_bin = write_frames(workdir / "frames.bin", config, frames, cycles + 1)
    loop_file = loop.write(workdir / "loop.txt")
    wall0 = time.monotonic()
    with BulkSim(exe, frames_bin, out, workdir, loop_file) as sim:
        _program(sim, before)
        sim.go()
        start = sim.cycles(0)             # the next edge is the traffic's cycle 1
        done = 0
        while done < cycles:
            done = sim.cycles(min(CHUNK_CYCLES, cycles - done)) - start
        sim.cycles(SETTLE_CYCLES)

        async def read_back():
            nic = Nic(PipeBus(sim))
            await nic.discover()
            return await nic.counters(), await nic.identity()
        counters, identity = asyncio.run(read_back())
        total = sim.cycles(0)
    res = read_outputs(out, config, len(frames))
    res.update(counters=counters, identity=identity, total_cycles=total, sim_cycles=cycles,
               wall_s=time.monotonic() - wall0)
    return res
