"""Run a user's cocotb module against the NIC: what ``secnic testbench`` and the ``secnic_sim``
pytest fixture call (docs/testbench.md).

:func:`run_testbench` takes the path of a Python file holding ``@cocotb.test()`` functions, checks
it (exists, parses, a module name that shadows nothing), builds the NIC for the simulator (cached)
and runs the file's tests in it through :func:`sim.runner.run_cocotb`, which raises when any
test fails. The file's folder is made importable for the simulation's Python, so the user sets
no ``PYTHONPATH`` and edits no ``sys.path``.

This module does not import cocotb: it runs in the host process, not in the simulator.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import logging
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from hdl.config import NicConfig

__all__ = ["run_testbench", "TestbenchError", "check_testbench_file", "default_test_dir"]

log = logging.getLogger(__name__)

# sys.path is process-wide: two runs in threads must not restore each other's entries early.
_SYS_PATH_LOCK = threading.Lock()


class TestbenchError(ValueError):
    """The testbench file cannot be run (missing, not Python, a syntax error, a clashing name).

    The message names the file, and line and column for a syntax error.
    """

    __test__ = False     # not a pytest test class despite its name


def check_testbench_file(path: str | Path) -> tuple[Path, str]:
    """``(absolute path, module name)`` of a runnable testbench file; :class:`TestbenchError` if not."""
    path = Path(path)
    if path.suffix != ".py":
        raise TestbenchError(f"{path}: a testbench is a Python file ending in .py")
    try:
        source = path.read_bytes()
    except OSError as exc:
        raise TestbenchError(f"{path}: cannot read testbench ({exc.strerror or exc})") from None
    try:
        ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        where = f"{path}:{exc.lineno}:{exc.offset}" if exc.lineno else str(path)
        raise TestbenchError(f"{where}: Python syntax error: {exc.msg}") from None
    name = path.stem
    if not name.isidentifier():
        raise TestbenchError(f"{path}: {name!r} is not a valid Python module name (use letters, digits, _)")
    try:
        spec = importlib.util.find_spec(name) if name not in sys.builtin_module_names else True
    except (ImportError, ValueError):     # a half-initialised module of that name: taken too
        spec = True
    other = getattr(spec, "origin", None) if spec is not True else "built in"
    if spec and (other is None or Path(other).resolve() != path.resolve()):
        raise TestbenchError(f"{path}: module name {name!r} is already taken by {other or 'a package'}; "
                             "rename the file")
    return path.resolve(), name


def default_test_dir(module: str, sim: str) -> Path:
    """Where a run leaves sim.log, results.xml and waves: ``build/testbench/<module>-<sim>``."""
    from sim.build import BUILD_ROOT
    return BUILD_ROOT / "testbench" / f"{module}-{sim}"


@contextlib.contextmanager
def _importable(folder: Path) -> Iterator[None]:
    """``folder`` on sys.path while the simulation starts: cocotb's runner hands its own sys.path
    to the simulator as PYTHONPATH (an ``extra_env`` PYTHONPATH would be overwritten). Appended,
    not prepended, so a ``sim`` or ``hdl`` folder beside the user's file cannot shadow secnic's;
    the module's own name was checked to be free (:func:`check_testbench_file`)."""
    entry = str(folder)
    with _SYS_PATH_LOCK:
        added = entry not in sys.path
        if added:
            sys.path.append(entry)
        try:
            yield
        finally:
            if added:
                with contextlib.suppress(ValueError):
                    sys.path.remove(entry)


def run_testbench(path: str | Path, sim: str = "verilator", *, config: NicConfig | None = None,
                  test_dir: str | Path | None = None, waves: bool = False,
                  testcase: str | Sequence[str] | None = None, seed: int | None = None) -> Path:
    """Run every ``@cocotb.test()`` of the file at ``path`` against the NIC in ``sim``.

    Parameters
    ----------
    path:
        The testbench file (its folder needs no ``__init__.py`` and no PYTHONPATH).
    sim:
        ``"verilator"`` or ``"icarus"``.
    config:
        The NIC build (default: ``NicConfig()``, ports ``phy0`` and ``vm1``); inside the simulation
        ``TB(dut)`` picks it up.
    test_dir:
        Where sim.log, results.xml and waves go (default :func:`default_test_dir`).
    waves:
        Dump an FST waveform (``WAVES=1`` in the environment does the same).
    testcase:
        Run only these test function names.
    seed:
        cocotb's random seed.

    Returns the results.xml path. Raises :class:`TestbenchError` for a file that cannot be run,
    :class:`sim.runner.CocotbTestFailure` (an AssertionError) when a test fails, and
    :class:`sim.runner.SimulatorUnavailable` when the simulator is not installed.
    """
    from sim.runner import run_cocotb
    file, module = check_testbench_file(path)
    config = config if config is not None else NicConfig()
    test_dir = Path(test_dir) if test_dir is not None else default_test_dir(module, sim)
    log.info("running %s on %s in %s", file, sim, test_dir)
    with _importable(file.parent):
        return run_cocotb(config, sim, module, testcase, test_dir=test_dir, waves=waves, seed=seed)
