"""Progress bars for long work: simulator builds, long simulations, bitstream builds.

Off by default, so libraries, tests and pipelines stay quiet; the command line turns them on with
:func:`enable` when stdout is a terminal. Bars go to stderr (tqdm), leaving stdout to the summary.

Long work here happens in another process (a compiler, a simulator, nextpnr), so a bar is fed by
a *poll* function that a background thread calls twice a second: it returns ``(done, status)``
read from whatever the work leaves behind (a progress file, a log).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator

__all__ = ["enable", "enabled", "watch"]

_enabled = False


def enable(on: bool = True) -> None:
    """Show progress bars from now on (the command line calls this when stdout is a terminal)."""
    global _enabled
    _enabled = bool(on)


def enabled() -> bool:
    """Whether progress bars are shown."""
    return _enabled


Poll = Callable[[], tuple[int | None, str | None]]


@contextlib.contextmanager
def watch(desc: str, poll: Poll | None = None, total: int | None = None, unit: str = "it",
          interval: float = 0.5) -> Iterator[None]:
    """Show a bar while the ``with`` body runs: ``desc``, ``done`` of ``total`` (or just the
    elapsed time without a total), and ``poll``'s status text. Does nothing when disabled."""
    if not _enabled:
        yield
        return
    from tqdm import tqdm
    if total is None:
        fmt = "{desc}: {elapsed}{postfix}"
    else:
        fmt = "{desc}: {n_fmt}/{total_fmt} {unit} |{bar}| {elapsed}<{remaining}{postfix}"
    # A pseudo-terminal without a window size (`script` run from a non-terminal, some CI runners)
    # reports 0 columns and 0 rows, for which tqdm draws nothing: follow the terminal's size only
    # when it has one.
    try:
        sized = os.get_terminal_size(sys.stderr.fileno()).columns > 0
    except (OSError, ValueError):
        sized = False
    bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, bar_format=fmt, leave=False,
               dynamic_ncols=sized, ncols=None if sized else 100, nrows=None if sized else 24,
               mininterval=interval)
    stop = threading.Event()

    def tick():
        while not stop.wait(interval):
            done, status = poll() if poll else (None, None)
            if done is not None and done != bar.n:
                bar.n = done
            if status is not None:
                bar.set_postfix_str(status, refresh=False)
            bar.refresh()

    thread = threading.Thread(target=tick, name=f"progress: {desc}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        bar.close()
