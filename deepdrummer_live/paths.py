"""Where things live: the package's read-only data, and the user's writable folders.

Package data sits in `deepdrummer_live/data/` and is found through importlib.resources, so an
installed wheel runs from any folder. Nothing is ever written there: what the program makes
(state, ratings, the library, kits built by `kits build`) goes under the user's data dir.

    data/kits/<name>/         built-in kits: kit.toml + one-shots (synth.py makes them, byte-identical)
    data/controllers/*.toml   controller mappings (`--controller NAME`)
    data/puredata/            the Pure Data control patch
    data/README.md            how to add more (Reaper scripts, note maps, web assets, critics)

Imports nothing heavy: the CLI, doctor and report import it before torch.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from platformdirs import user_data_dir

from deepdrummer_live.errors import UsageError

APP_NAME = "deepdrummer-live"
DATA_FOLDER = "data"


def default_state_dir() -> Path:
    """Ratings, checkpoints and the loop library when --state-dir is not given."""
    return Path(user_data_dir(APP_NAME))


def user_kits_dir() -> Path:
    """Where `deepdrummer-live kits build` writes by default; `--kit NAME` also looks here."""
    return default_state_dir() / "kits"


def data_path(*parts: str) -> Path:
    """A file or folder of the package's data, as a real path (read-only: never write to it).

    `data_path("controllers", "generic.toml")`; the folder itself with no parts.
    """
    found = resources.files("deepdrummer_live").joinpath(DATA_FOLDER, *parts)
    if not isinstance(found, Path):
        # zip imports give a Traversable; soundfile and Pd need real files
        raise UsageError(f"package data {'/'.join(parts) or DATA_FOLDER} is inside a zip ({found}); "
                         f"install deepdrummer-live as a regular package (pip install, pipx install)")
    return found


def builtin_kits_dir() -> Path:
    return data_path("kits")


def controllers_dir() -> Path:
    return data_path("controllers")


def puredata_dir() -> Path:
    return data_path("puredata")


def notemaps_dir() -> Path:
    return data_path("notemaps")
