"""The paper's experiment for one participant: phase I, then a blind, shuffled phase II.

Phase I: the participant rates `phase1` loops chosen the usual way (`explore`: Metropolis-Hastings
on the critic's P(like)) while the critic learns from every rating. Phase II: the critic is frozen
and the participant rates `phase2` loops, half from the critic (`good`: MH until P(like) >= 0.95)
and half from the prior (`random`), in an order shuffled once at the start (seeded, kept in
`experiment.json`). Phase II is blind: its loops go out with P(like) 0.5 and the mode shows as
`blind` in `/dd/status` and `snapshot()`, so no surface tells good from random; the store alone
knows (its `mode` column). Afterwards the session goes on as a normal one (`explore`).

`ExperimentSession` is a `Session` whose next-loop choice, views and learning follow the plan;
`Plan` is the plan and progress, kept in `<state-dir>/experiment.json` (a restart resumes it).
Progress goes out as `/dd/experiment s participant, s phase (1|2|done), i rated, i of` after
every rating and undo, and answers an inbound `/dd/experiment`.
"""

from __future__ import annotations

import json
import random
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deepdrummer_live.errors import CommandError, UsageError
from deepdrummer_live.session import Session
from deepdrummer_live.storage.store import atomic_write

PLAN_FILE = "experiment.json"
PARTICIPANTS_DIR = "participants"  # under an experiment's --state-dir: one state dir per participant
PARTICIPANT_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
BLIND_P_LIKE = 0.5  # what phase II loops show as P(like): says nothing
BLIND_MODE = "blind"
PHASE2_KINDS = ("good", "random")


def check_participant(code: str) -> str:
    if not PARTICIPANT_RE.fullmatch(code or ""):
        raise UsageError(f"participant code {code!r} not allowed; use a code of 1-32 letters, digits, '-' or '_' "
                         f"(a code, not a real name: it names a folder and goes into datasets)")
    return code


def check_phase1(ratings: int) -> int:
    if ratings < 2:
        raise UsageError(f"{ratings} phase I ratings; use 2 or more (the critic needs a like and a dislike)")
    return ratings


def check_phase2(ratings: int) -> int:
    if ratings < 2 or ratings % 2:
        raise UsageError(f"{ratings} phase II ratings; use an even number, 2 or more (half good, half random)")
    return ratings


def participant_dir(root: Path, code: str) -> Path:
    return Path(root).expanduser() / PARTICIPANTS_DIR / check_participant(code)


@dataclass
class Plan:
    participant: str
    phase1: int  # ratings in phase I
    phase2: int  # loops rated in phase II (half good, half random)
    kinds: list[str]  # phase II order: the kind of each loop, shuffled once
    phase: str = "1"  # "1", "2" or "done"
    items: list[list] = field(default_factory=list)  # phase II loops shown: [loop_id, kind], in order
    started: float = field(default_factory=time.time)
    phase2_started: float | None = None
    finished: float | None = None

    @staticmethod
    def new(participant: str, phase1: int, phase2: int, seed: int) -> Plan:
        check_phase1(phase1)
        check_phase2(phase2)
        kinds = [PHASE2_KINDS[i % 2] for i in range(phase2)]
        random.Random(seed).shuffle(kinds)
        return Plan(check_participant(participant), phase1, phase2, kinds)

    @staticmethod
    def load(path: Path) -> Plan:
        try:
            return Plan(**json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as exc:
            raise UsageError(f"{path}: not a readable experiment plan ({exc}); move it aside to start over") from exc

    def save(self, path: Path) -> None:
        data = json.dumps(asdict(self), indent=1).encode()
        atomic_write(Path(path), lambda fh: fh.write(data))

    def kind_of(self, loop_id: int) -> str | None:
        return next((k for i, k in self.items if i == loop_id), None)

    def progress(self, ratings: int, rated_items: int) -> tuple[str, int, int]:
        """(phase, rated in it, of how many)."""
        if self.phase == "1":
            return "1", min(ratings, self.phase1), self.phase1
        if self.phase == "2":
            return "2", rated_items, self.phase2
        return "done", self.phase2, self.phase2


class ExperimentSession(Session):
    """A session run by a `Plan` (see the module docstring)."""

    def __init__(self, *args, participant: str, phase1: int, phase2: int, plan_seed: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.plan_path = self.store.dir / PLAN_FILE
        if self.plan_path.exists():
            self.plan = Plan.load(self.plan_path)
            if self.plan.participant != participant:
                raise UsageError(f"{self.store.dir} holds participant {self.plan.participant!r}'s experiment, "
                                 f"not {participant!r}; give each participant their own code")
        else:
            self.plan = Plan.new(participant, phase1, phase2, plan_seed)
            self.plan.save(self.plan_path)
        if self.plan.phase == "1":
            self.mode = "explore"  # not persisted: after the experiment the performer's mode returns

    # --- plan -------------------------------------------------------------------------------------

    def _rated_items(self) -> int:
        return sum(self.store.effective_rating(i) is not None for i, _ in self.plan.items)

    def _advance_plan(self) -> None:
        """Move to phase II / done when the ratings say so; choose the next loop's mode (lock held)."""
        plan = self.plan
        changed = False
        if plan.phase == "1" and self.likes + self.dislikes >= plan.phase1:
            plan.phase, plan.phase2_started, changed = "2", time.time(), True
        if plan.phase == "2":
            rated = self._rated_items()
            if rated >= plan.phase2:
                plan.phase, plan.finished, changed = "done", time.time(), True
                self.mode = "explore"
            else:
                kind = plan.kinds[rated]
                if kind != self.mode:
                    self.mode = kind
                    self._settings_changed()
        if changed:
            plan.save(self.plan_path)

    def experiment_args(self) -> list:
        with self.mutex:
            return [self.plan.participant, *self.plan.progress(self.likes + self.dislikes, self._rated_items())]

    def _announce(self) -> None:
        self.emit("/dd/experiment", *self.experiment_args(), origin=None)

    # --- Session hooks ------------------------------------------------------------------------------

    def start(self, autoplay: bool = False) -> None:
        with self.mutex:
            self._advance_plan()
        super().start(autoplay)
        if self.plan.items:  # a resumed phase II: its ratings came back as lessons; forget them before any training
            with self.mutex:
                self.worker.add_job(self._forget_phase2, "learn", first=True)
        self._announce()

    def _forget_phase2(self) -> None:
        for loop_id, _ in self.plan.items:
            self.learner.set_rating(loop_id, None, None)

    def _request_next(self) -> None:
        if self.pending is None:
            self._advance_plan()
        super()._request_next()

    def _make_current(self, loop) -> None:
        if self.plan.phase == "2" and self.plan.kind_of(loop.id) is None:
            self.plan.items.append([loop.id, loop.proposal.mode])
            self.plan.save(self.plan_path)
        super()._make_current(loop)

    def _train(self, loop_id: int, loops, label: int | None, profile: str | None = None) -> None:
        if self.plan.kind_of(loop_id) is not None:
            return  # phase II rates a frozen critic's loops: its verdicts are results, not lessons
        super()._train(loop_id, loops, label, profile)

    def rate(self, loop_id: int | None, liked: bool):
        out = super().rate(loop_id, liked)
        self._announce()
        return out

    def undo(self):
        out = super().undo()
        self._announce()
        return out

    def set_mode(self, mode: str) -> None:
        if self.plan.phase != "done":
            phase, rated, total = self.plan.progress(self.likes + self.dislikes, self._rated_items())
            raise CommandError(f"mode {mode!r}: the experiment chooses the loops until it is done (phase {phase}, "
                           f"{rated}/{total} rated); rate on, /dd/mode works afterwards")
        super().set_mode(mode)

    # --- blind views --------------------------------------------------------------------------------

    def _blind(self, loop_id: int | None) -> bool:
        return loop_id is not None and self.plan.kind_of(loop_id) is not None

    def loop_args(self, loop) -> list:
        args = super().loop_args(loop)
        if self._blind(loop.id):
            args[1] = BLIND_P_LIKE
        return args

    def status_args(self) -> list:
        args = super().status_args()
        if self.plan.phase == "2":
            args[3] = BLIND_MODE
        return args

    def snapshot(self) -> dict:
        snap = super().snapshot()
        if snap.get("loop") and self._blind(snap["loop"]["id"]):
            snap["loop"]["p_like"] = BLIND_P_LIKE
        if self.plan.phase == "2":
            snap["mode"] = BLIND_MODE
        phase, rated, total = self.experiment_args()[1:]
        snap["experiment"] = {"participant": self.plan.participant, "phase": phase, "rated": rated, "of": total}
        return snap
