"""One exception root. Messages name the bad value, the valid range and the fix."""


class DeepDrummerError(Exception):
    """Root of every error the project raises on purpose."""


class UsageError(DeepDrummerError):
    """Bad flag, missing kit, unusable port or device: `run` exits with status 2."""


class KitError(UsageError):
    """A kit folder or kit file that cannot be used."""


class CommandError(DeepDrummerError):
    """A command (from OSC, the terminal, a controller or the page) with wrong arguments, or one that
    cannot run now; nothing changed. OSC answers it with /dd/error."""


class StateError(DeepDrummerError):
    """The state dir cannot be used (permissions, disk full, corrupt file)."""


class AudioLost(DeepDrummerError):
    """The audio server went away mid-session (e.g. jackd stopped): a fault the daemon survives."""
