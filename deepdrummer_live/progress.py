"""A tiny progress bar on stderr for long first-run steps (kit synthesis, critic warm-up)."""

from __future__ import annotations

import sys
from collections.abc import Callable


def bar(title: str, width: int = 30) -> Callable[[int, int, str], None]:
    """progress(done, total, label) callback drawing `title [#####.....] done/total label`."""
    tty = sys.stderr.isatty()

    def show(done: int, total: int, label: str = "") -> None:
        filled = int(width * done / max(total, 1))
        line = f"{title} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label}"
        if tty:
            sys.stderr.write("\r" + line[:120].ljust(120))
            if done >= total:
                sys.stderr.write("\n")
        elif done >= total or done % max(total // 4, 1) == 0:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    return show
