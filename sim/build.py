"""Amaranth -> SystemVerilog build cache.

``build_verilog(config)`` returns the path of ``secnic_top.sv`` for ``config``, generating it only
when no cached copy exists. The cache lives in ``build/cache/<key>/`` where ``key`` combines
``NicConfig.key()`` with a hash of every ``hdl/**/*.py`` source (and of the top factory's module when
a non-default top is given), so any edit to the gateware or the parameters rebuilds. Files are
written to a temporary name and renamed into place, so a crash never leaves a half-written
cache entry.

SystemVerilog (``write_verilog -sv``) is emitted rather than plain Verilog: Icarus 11 leaves some
``always @*`` outputs of Amaranth's Verilog at X, while ``always_comb`` evaluates at time 0
(see /work/shared/TOOLCHAIN.md).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from hdl.config import NicConfig

__all__ = ["REPO_ROOT", "BUILD_ROOT", "TOP_NAME", "source_hash", "cache_key", "build_verilog"]

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Root of all generated build products; override with SECNIC_BUILD_DIR.
BUILD_ROOT = Path(os.environ.get("SECNIC_BUILD_DIR", REPO_ROOT / "build"))
TOP_NAME = "secnic_top"
#: Bump when the conversion recipe below changes (part of the cache key).
RECIPE = "sv-proc-2"


def source_hash(extra_files: tuple[Path, ...] = ()) -> str:
    """Hash of every ``hdl/**/*.py`` file (names and contents) plus ``extra_files``."""
    h = hashlib.sha256(RECIPE.encode())
    # Recursive: the gateware lives in subfolders (hdl/lib, hdl/board, ...); a flat glob saw only
    # hdl/top.py and hdl/config.py, so an edited block reused a stale simulator build.
    files = sorted((REPO_ROOT / "hdl").rglob("*.py")) + sorted(Path(f) for f in extra_files)
    for path in files:
        h.update(str(path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path).encode())
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:12]


def _factory_file(top: Callable | None) -> tuple[Path, ...]:
    if top is None:
        return ()
    module = sys.modules.get(top.__module__)
    path = inspect.getsourcefile(module) if module is not None else None
    return (Path(path),) if path else ()


def cache_key(config: NicConfig, top: Callable | None = None) -> str:
    """Cache directory name for ``config`` built with top factory ``top`` (None: ``hdl.top.NicTop``)."""
    name = "nic" if top is None else f"{top.__module__}.{top.__qualname__}".replace("<", "").replace(">", "")
    return f"{config.key()}-{source_hash(_factory_file(top))}" + ("" if top is None else f"-{name}")


def _elaborate(config: NicConfig, top: Callable | None) -> str:
    from hdl.lib.export import to_verilog
    if top is not None:
        return to_verilog(top(config), TOP_NAME)
    try:
        import hdl.top as hdl_top
    except ImportError as exc:
        raise RuntimeError(f"the NIC top level (hdl/top.py) cannot be imported: {exc}") from exc
    return to_verilog(hdl_top.NicTop(config), TOP_NAME)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_verilog(config: NicConfig, top: Callable | None = None, *, cache_root: Path | None = None) -> Path:
    """Return ``build/cache/<key>/secnic_top.sv`` for ``config``, generating it if needed.

    The environment variable ``SECNIC_SV`` names a Verilog file to use instead of elaborating
    ``hdl/`` (debugging only; it must match ``config``).

    Parameters
    ----------
    config:
        NIC parameters.
    top:
        Callable ``config -> wiring.Component`` to build instead of ``hdl.top.NicTop`` (tests use
        this for stand-in tops). Its module's source is part of the cache key.
    """
    root = Path(cache_root) if cache_root else BUILD_ROOT / "cache"
    override = os.environ.get("SECNIC_SV") if top is None else None
    if override:
        # Debug hook: simulate a given Verilog file (e.g. a hand-edited or older build) instead
        # of elaborating hdl/. It must have been built for the same config.
        text = Path(override).read_text()
        out = root / f"{config.key()}-sv-{hashlib.sha256(text.encode()).hexdigest()[:12]}" / f"{TOP_NAME}.sv"
        if not out.exists():
            log.warning("SECNIC_SV: simulating %s instead of elaborating hdl/", override)
            _atomic_write(out, text)
        return out
    out = root / cache_key(config, top) / f"{TOP_NAME}.sv"
    if out.exists():
        log.debug("Verilog cache hit: %s", out)
        return out
    log.info("elaborating %s (W=%d) -> %s", "NicTop" if top is None else top.__qualname__,
             config.data_width, out)
    text = _elaborate(config, top)
    _atomic_write(out, text)
    _atomic_write(out.parent / "config.json", json.dumps(config.as_dict(), indent=2) + "\n")
    return out
