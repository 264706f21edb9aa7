"""A learner's critic files: where a session's critic starts, resuming it, writing it.

The file I/O of the critic lives here, not in the learner (which only builds, proposes and trains):
critic.pt in the state dir, profiles/<name>/critic.pt for each taste profile, `run --critic FILE`
and the shipped hearing critics (learn/kinds.py reads and checks the format).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from deepdrummer_live.learn.kinds import CriticFileError, kit_fingerprint, shipped_path
from deepdrummer_live.storage.store import Store, atomic_write
from deepdrummer_live.vocab import DEFAULT_PROFILE

if TYPE_CHECKING:
    from deepdrummer_live.learn.learner import Learner

log = logging.getLogger(__name__)


def save(learner: Learner, store: Store) -> None:
    """critic.pt and the profiles' critic files whose taste changed (see Learner.checkpoint_contents)."""
    for profile, content in learner.checkpoint_contents().items():
        path = store.checkpoint_path if profile is None else store.profile_checkpoint_path(profile)
        write(content, path)


def write(content: dict, path: Path) -> Path:
    """One critic file, atomically (a crash leaves the old file or the new one, never half of one)."""
    buf = io.BytesIO()
    torch.save(content, buf)
    data = buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, lambda fh: fh.write(data))
    return path


def load(learner: Learner, store: Store) -> bool:
    """Resume the state dir's own critic and its profiles' tastes; a bad or foreign file is logged
    and that critic (or taste) starts fresh."""
    for name, _ in store.profiles():
        path = store.profile_checkpoint_path(name)
        if name == DEFAULT_PROFILE or not path.exists():
            continue
        try:
            learner.adopt_taste(name, learner.kind.read(path, learner.device)["model"])
        except (CriticFileError, KeyError) as exc:
            log.warning("profile %s: its critic file is unusable (%s); it learns again from its ratings", name, exc)
    path = store.checkpoint_path
    if not path.exists():
        return False
    try:
        learner.adopt(learner.kind.read(path, learner.device), path)
    except CriticFileError as exc:
        log.warning("%s; starting from an untrained critic", exc)
        return False
    return True


def choose_start(learner: Learner, checkpoint: Path | None = None, critic: Path | None = None) -> str:
    """Where this session's critic starts, before `load` (which a resumed state dir then applies over
    it). `checkpoint`: the state dir's own critic.pt (a session resumes when it is usable); `critic`:
    `run --critic` (checked even when resuming, so a bad file is reported). A new session starts from
    `critic`, else from the shipped hearing critic of a built-in kit, else from an untrained critic
    that learns to hear in the background. Sets `learner.resumed`; returns a log line."""
    resuming = checkpoint is not None and _usable(learner, checkpoint)
    learner.resumed = resuming
    if critic is not None:
        start_from(learner, critic)
        if resuming:
            return f"critic {critic} checked, but the state dir resumes its own critic"
        return f"critic from {critic}"
    if not resuming and start_from_shipped(learner):
        return f"shipped hearing critic for kit {learner.kit.name}: no hearing pass needed"
    return "the state dir's critic" if resuming else "an untrained critic"


def _usable(learner: Learner, path: Path) -> bool:
    if not path.exists():
        return False
    try:
        learner.check_fits(learner.kind.read(path, learner.device), path)
    except CriticFileError:
        return False  # load says why, once
    return True


def start_from(learner: Learner, path: Path) -> None:
    """A new session starts from another critic (`run --critic`): its weights, what it learnt to
    hear, and its taste; this session's own ratings then train on from there. CriticFileError
    (naming the file) when it cannot be used."""
    state = learner.kind.read(path, learner.device)
    learner.adopt(state, path)
    learner.anchor_taste()
    if state.get("kit") not in (None, kit_fingerprint(learner.kit)):
        log.warning("critic %s was made on another kit; its taste for where and how drums play carries over, "
                    "what it learnt of sounds (or hearing) fits %s less well until you rate", path, learner.kit.name)


def start_from_shipped(learner: Learner) -> bool:
    """Start from the hearing trunk shipped for this kit, when there is one made for exactly this
    kit's audio: the session then needs no hearing pass."""
    if not learner.needs_hearing():
        return False
    path = shipped_path(f"{learner.kit.name}-hearing")
    if path is None:
        return False
    try:
        state = learner.kind.read(path, learner.device)
        if state.get("kit") != kit_fingerprint(learner.kit):
            log.info("shipped hearing critic %s was made for other audio of kit %s; learning to hear instead",
                     path.name, learner.kit.name)
            return False
        # A file made by another version of the critic (not remade with `make critics`) must
        # not stop the session: learn to hear instead
        learner.check_fits(state, path)
    except CriticFileError as exc:
        log.warning("shipped hearing critic unusable (%s); learning to hear instead", exc)
        return False
    learner.adopt(state, path)
    return True
