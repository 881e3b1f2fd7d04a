"""Output directories that never lose a user's files.

A run's files are written to a staging directory and moved into ``--out`` only when everything
succeeded; the last thing written is a manifest, ``.secnic-run``, listing every file of the run.
That manifest is how a later run recognises a previous secnic output, and the only list of files
secnic ever deletes:

* a new or empty directory is written;
* a directory holding a previous run (a manifest) gets that run's files replaced; anything else
  in it (notes, a capture someone copied there) stays;
* any other non-empty directory is refused (:class:`OutDirError`, exit status 2 on the command
  line) unless ``force``: then the run is written beside the files already there, and a file of
  the same name as one the run writes is still refused rather than overwritten.

Paths that cannot be written (a parent that is a file, a read-only file system, no permission)
are refused up front with a message naming the path, before any simulation runs.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

__all__ = ["MANIFEST", "OutDirError", "check_out_dir", "staging_dir", "publish", "read_manifest"]

log = logging.getLogger(__name__)

#: The manifest a run leaves in its output directory (JSON: ``{"written_by": ..., "files": [...]}``).
MANIFEST = ".secnic-run"
_STAGING_PREFIX = ".secnic-tmp-"
_BACKUP_PREFIX = ".secnic-old-"


class OutDirError(ValueError):
    """The output directory cannot be used; the message names it and says what to do."""


def _why(exc: OSError) -> str:
    """``Permission denied`` rather than ``[Errno 13] Permission denied: '/x'``."""
    if exc.errno == errno.EROFS:
        return "read-only file system"
    return (exc.strerror or str(exc)).lower()


def read_manifest(out_dir: Path) -> list[str] | None:
    """Files of the previous run recorded in ``out_dir``'s manifest (None: no manifest).

    Only plain relative paths inside ``out_dir`` are returned, so a damaged or hand-edited
    manifest can never make secnic delete anything outside the directory.
    """
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        files = json.loads(path.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("%s: unreadable manifest; treating the directory as foreign", path)
        return None
    safe = []
    for name in files if isinstance(files, list) else []:
        p = PurePosixPath(str(name))
        if p.is_absolute() or ".." in p.parts or not p.parts or p.name == MANIFEST:
            log.warning("%s: ignoring manifest entry %r", path, name)
            continue
        safe.append(str(p))
    return safe


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_out_dir(out_dir: str | Path, *, force: bool = False, option: str = "--out") -> Path:
    """Check that a run may write ``out_dir`` (rules in the module docstring); return it resolved.

    Raises :class:`OutDirError` naming the directory otherwise. Nothing is created.
    """
    given = str(out_dir)
    out_dir = Path(out_dir).resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise OutDirError(f"{option} {given}: exists and is not a directory")
    if out_dir.is_dir():
        entries = [e.name for e in out_dir.iterdir()
                   if not e.name.startswith((_STAGING_PREFIX, _BACKUP_PREFIX))]
        if entries and read_manifest(out_dir) is None and not force:
            shown = ", ".join(sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")
            raise OutDirError(
                f"{option} {given}: directory is not empty ({len(entries)} entries: {shown}) and holds no "
                f"previous secnic run (no {MANIFEST} manifest); secnic does not write into it. Give a new or "
                "empty directory, or add --force to write the run beside those files (nothing of "
                "theirs is deleted)")
        target = out_dir
    else:
        target = _nearest_existing(out_dir.parent)
        if not target.is_dir():
            raise OutDirError(f"{option} {given}: cannot create it: {target} is not a directory")
    if not os.access(target, os.W_OK | os.X_OK):
        raise OutDirError(f"{option} {given}: cannot write in {target}: permission denied")
    return out_dir


def staging_dir(out_dir: Path, *, option: str = "--out") -> Path:
    """A fresh staging directory on ``out_dir``'s file system (inside it if it exists, else beside
    it), so publishing is a rename. Creates ``out_dir``'s parents; OSError becomes :class:`OutDirError`."""
    out_dir = Path(out_dir)
    try:
        if out_dir.is_dir():
            return Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=out_dir))
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}{_STAGING_PREFIX}", dir=out_dir.parent))
    except OSError as exc:
        where = out_dir if out_dir.is_dir() else _nearest_existing(out_dir.parent)
        raise OutDirError(f"{option} {out_dir}: cannot create files in {where}: {_why(exc)}") from None


def _files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink())


def _write_manifest(directory: Path, files: list[str]) -> None:
    from importlib.metadata import PackageNotFoundError, version
    try:
        who = f"secnic {version('secnic')}"
    except PackageNotFoundError:
        who = "secnic"
    tmp = directory / f"{MANIFEST}.tmp"
    tmp.write_text(json.dumps({"written_by": who, "files": files}, indent=1) + "\n")
    tmp.replace(directory / MANIFEST)


def _prune_empty_dirs(root: Path, names: list[str]) -> None:
    """Remove directories that only held files of ``names`` (e.g. an old ``egress/``)."""
    parents = sorted({p for n in names for p in PurePosixPath(n).parents if str(p) != "."},
                     key=lambda p: -len(p.parts))
    for p in parents:
        with contextlib.suppress(OSError):
            (root / p).rmdir()   # only succeeds when empty


def publish(staged: Path, out_dir: Path, *, force: bool = False, option: str = "--out") -> list[str]:
    """Move every file of ``staged`` into ``out_dir`` with its manifest; return the files.

    A previous run's files (its manifest) are moved aside first and restored if anything fails;
    they are deleted only once the new run is in place. Files secnic did not write are never
    touched: a name clash with one raises :class:`OutDirError` before anything moves.
    """
    staged, out_dir = Path(staged), Path(out_dir)
    files = _files_under(staged)
    if not out_dir.exists():
        _write_manifest(staged, files)
        staged.rename(out_dir)
        return files
    check_out_dir(out_dir, force=force, option=option)
    old = read_manifest(out_dir) or []
    clash = [f for f in files if (out_dir / f).exists() and f not in old]
    if clash:
        raise OutDirError(f"{option} {out_dir}: {', '.join(clash[:3])} already exist(s) and were not written by "
                          "secnic; not overwriting them. Move them away or choose another directory")
    backup = Path(tempfile.mkdtemp(prefix=_BACKUP_PREFIX, dir=out_dir))
    moved_old, moved_new = [], []
    try:
        for name in old + [MANIFEST]:
            src = out_dir / name
            if src.is_file() or src.is_symlink():
                (backup / name).parent.mkdir(parents=True, exist_ok=True)
                src.rename(backup / name)
                moved_old.append(name)
        _prune_empty_dirs(out_dir, old)
        for name in files:
            (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (staged / name).rename(out_dir / name)
            moved_new.append(name)
        _write_manifest(out_dir, files)
    except BaseException:
        for name in moved_new:
            with contextlib.suppress(OSError):
                (out_dir / name).unlink()
        _prune_empty_dirs(out_dir, moved_new)
        for name in moved_old:
            with contextlib.suppress(OSError):
                (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
                (backup / name).rename(out_dir / name)
        raise
    finally:
        shutil.rmtree(backup, ignore_errors=True)
        shutil.rmtree(staged, ignore_errors=True)
    return files
