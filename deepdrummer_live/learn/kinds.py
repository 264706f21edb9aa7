"""Which critic a session uses, chosen in one place.

A `CriticKind` says everything that differs between critics: its network and training config,
how candidates are scored (batched, or the paper's one at a time), what a rated loop is kept as
for training (features, or audio re-featurized after augmentation), its default search budget,
and how its checkpoint files are checked and loaded. The learner, the bench, the doctor and
`run --critic` ask the kind instead of checking names.

Critic files (`critic.pt` of a state dir, or a shipped pre-trained one) are a dict saved with
`torch.save` and read back with `weights_only=True` (a file with code in it never runs):
`{"model": state_dict, "config": kind name, "train_steps", "version", "hearing_done",
  "kit": kit fingerprint (optional)}`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn as nn

from deepdrummer_live.errors import UsageError
from deepdrummer_live.learn.critic import (
    LEAN_CONFIG,
    N_ROLE_GROUPS,
    PAPER_CONFIG,
    REFERENCE_BPM,
    CriticConfig,
    LeanCritic,
    PaperCritic,
    count_parameters,
)
from deepdrummer_live.learn.grid import N_FEATURES, GridCritic, GridScorer
from deepdrummer_live.learn.search import PaperScorer, Scorer
from deepdrummer_live.paths import data_path
from deepdrummer_live.sound.pattern import PAPER_PRIOR, Prior
from deepdrummer_live.vocab import DEFAULT_METER, STEPS_PER_BEAT

SHIPPED_DIR = "critics"  # package data: deepdrummer_live/data/critics/<name>.pt
CHECKPOINT_NAME = "critic.pt"  # what a state dir keeps


class CriticFileError(UsageError):
    """A critic file that cannot be used: missing, unreadable, or made for another critic."""


@dataclass(frozen=True)
class CriticKind:
    name: str  # also what a checkpoint's "config" says
    config: CriticConfig
    summary: str
    trains_on: str  # "features": MFCCs kept per rated loop; "audio": audio, re-featurized per batch
    make_scorer: Callable  # (kit, config, device) -> Scorer | PaperScorer
    budget: Callable[[torch.device], tuple[int, int]]  # default (chains, iterations) of a search
    prior: Prior = Prior()  # what the generator assumes (the paper's: a binary grid, no dynamics)
    any_shape: bool = False  # reads loops of any rows, bars and meter (the critics that hear: 1 bar of 4/4)

    def reads(self, bars: int, meter: str) -> bool:
        """Whether this critic can judge loops of `bars` bars of `meter` (the critics that hear: 1 bar of 4/4)."""
        return self.any_shape or (bars, meter) == (1, DEFAULT_METER)

    def build(self, config: CriticConfig | None = None) -> nn.Module:
        return _BUILDERS[self.name](config or self.config)

    def describe(self, model: nn.Module) -> str:
        return f"{self.name} ({count_parameters(model):,} parameters): {self.summary}"

    def read(self, path: Path, device: torch.device | str = "cpu") -> dict:
        """A critic file's state, checked to be this kind's; CriticFileError naming the file if not."""
        path = Path(path)
        if not path.is_file():
            raise CriticFileError(f"critic file {str(path)!r} does not exist; give a critic.pt of another "
                                  f"state dir or a shipped critic ({', '.join(shipped_names()) or 'none shipped'})")
        try:
            state = torch.load(path, map_location=device, weights_only=True)
        except Exception as exc:  # torch raises many types for a bad file; all mean "not a critic file"
            raise CriticFileError(f"critic file {str(path)!r} is unreadable as a critic ({type(exc).__name__}); "
                                  f"give a critic.pt written by deepdrummer-live") from exc
        if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
            raise CriticFileError(f"critic file {str(path)!r} holds no critic weights; give a critic.pt "
                                  f"written by deepdrummer-live")
        if state.get("config") != self.name:
            other = state.get("config")
            raise CriticFileError(f"critic file {str(path)!r} is a {other!r} critic, this run "
                                  f"uses {self.name!r}; give a {self.name} critic file"
                                  + (f" or run with --critic-kind {other}" if other in KINDS else ""))
        return state

    def fits(self, model: nn.Module, state: dict, path: Path) -> None:
        """Load `state` into `model`; CriticFileError naming the file when the shapes differ."""
        try:
            model.load_state_dict(state["model"])
        except (RuntimeError, KeyError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CriticFileError(f"critic file {str(path)!r} does not fit this {self.name} critic ({first}); "
                                  f"it was made by another version; start without --critic") from exc


def _build_paper(config: CriticConfig) -> nn.Module:
    return PaperCritic(n_mfcc=config.spec.n_mfcc, p_dropout=config.dropout)


def _build_lean(config: CriticConfig) -> nn.Module:
    frames_per_step = int(config.audio_sr * 60 / REFERENCE_BPM / STEPS_PER_BEAT) // config.spec.hop
    return LeanCritic(config.spec.n_mfcc, frames_per_step, config.width, config.hidden, config.dropout,
                      n_mels=config.spec.n_mels, bands=config.bands,
                      n_groups=N_ROLE_GROUPS if config.hearing_pass_steps else 0, head_clip=config.head_clip,
                      step_width=config.step_width, step_layers=config.step_layers)


def _build_grid(config: CriticConfig) -> nn.Module:
    return GridCritic(N_FEATURES, config.head_clip)


def _lean_budget(device: torch.device) -> tuple[int, int]:
    return (4096, 32) if device.type != "cpu" else (256, 8)


def _grid_budget(device: torch.device) -> tuple[int, int]:
    # Scoring reads the grid (no render): many more chains and steps for the same time as hearing's
    return (8192, 32) if device.type != "cpu" else (1024, 16)


# The critic that reads the loop: its like head is fitted on every rating at once, like the hearing one's
GRID_CONFIG = replace(LEAN_CONFIG, name="grid", hearing_pass_steps=0, step_width=0, step_layers=0)

_BUILDERS = {PAPER_CONFIG.name: _build_paper, LEAN_CONFIG.name: _build_lean, GRID_CONFIG.name: _build_grid}

LEAN = CriticKind(LEAN_CONFIG.name, LEAN_CONFIG,
                  "learns to hear which drum starts on which step, then a logistic like head on what it hears",
                  "features", Scorer, _lean_budget)
# The original program ran one chain of 100 MH steps per proposal.
PAPER = CriticKind(PAPER_CONFIG.name, PAPER_CONFIG, "the paper's MFCC CNN, 44.1 kHz, one candidate at a time",
                   "audio", PaperScorer, lambda device: (1, 100), PAPER_PRIOR)
GRID = CriticKind(GRID_CONFIG.name, GRID_CONFIG,
                  "reads the loop as the generator wrote it (roles, steps, levels, each sound heard alone), "
                  "then a logistic like head", "features", GridScorer, _grid_budget, any_shape=True)
KINDS: dict[str, CriticKind] = {k.name: k for k in (GRID, LEAN, PAPER)}
DEFAULT = GRID


def kind_named(name: str) -> CriticKind:
    if name not in KINDS:
        raise UsageError(f"critic kind {name!r}: use one of {', '.join(KINDS)}")
    return KINDS[name]


def kind_for(paper: bool, name: str | None = None) -> CriticKind:
    """The kind behind the `--paper` switch and `--critic-kind NAME` (None: the default)."""
    if paper and name not in (None, PAPER.name):
        raise UsageError(f"the paper's critic and the {name} critic both asked for; the paper's critic is kind "
                         f"paper; give one")
    return PAPER if paper else kind_named(name) if name else DEFAULT


def kind_of_file(path: Path) -> str | None:
    """The kind a critic file was made for (its "config"), or None when it cannot be read."""
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception:  # unreadable: the kind's own read() says why, naming the file, when it is used
        return None
    name = state.get("config") if isinstance(state, dict) else None
    return name if name in KINDS else None


def build_critic(config: CriticConfig) -> nn.Module:
    """The network for a config (its name is its kind's)."""
    return kind_named(config.name).build(config)


# --- shipped pre-trained critics -------------------------------------------------------------------

def shipped_dir() -> Path:
    return data_path(SHIPPED_DIR)


def shipped_names() -> list[str]:
    folder = shipped_dir()
    return sorted(p.stem for p in folder.glob("*.pt")) if folder.is_dir() else []


def shipped_path(name: str) -> Path | None:
    """The file of a shipped critic by name (e.g. a built-in kit's hearing critic), or None."""
    path = shipped_dir() / f"{name}.pt"
    return path if path.is_file() else None


def resolve_critic_source(value: str | Path) -> Path:
    """`--critic VALUE` -> a critic file: a shipped name, a file, or a state dir holding critic.pt."""
    text = str(value)
    if text and "/" not in text and not text.endswith(".pt"):
        found = shipped_path(text)
        if found is not None:
            return found
    path = Path(text).expanduser()
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise CriticFileError(f"critic {text!r}: no such critic file, state dir with {CHECKPOINT_NAME}, or "
                              f"shipped critic; use a path or one of: {', '.join(shipped_names()) or 'none shipped'}")
    return path


def kit_fingerprint(kit) -> str:
    """What a hearing trunk is specific to: the kit's sample names, roles and audio."""
    digest = hashlib.sha256()
    for sample in kit.samples:
        digest.update(f"{sample.name}\0{sample.role}\0{sample.sr}\0".encode())
        digest.update(sample.audio.astype("float32").tobytes())
    return digest.hexdigest()[:16]
