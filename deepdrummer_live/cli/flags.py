"""The edge words a lower layer's error with the flag it came from.

Lower layers (sound/, learn/, storage/, player/) raise plain errors that name the value, the range
and the fix, never a flag: they do not know which command line (or OSC address) gave the value.
The command that read the flag wraps the call, and the one-line error says which flag to change.
"""

from __future__ import annotations

import contextlib

from deepdrummer_live.errors import DeepDrummerError, UsageError


@contextlib.contextmanager
def flag_errors(flag: str):
    """Errors raised inside the block come out as `<flag>: <message>`, of the same kind (a ValueError,
    a plain check's error, becomes a UsageError: exit status 2)."""
    try:
        yield
    except DeepDrummerError as exc:
        raise type(exc)(f"{flag}: {exc}") from None
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None
