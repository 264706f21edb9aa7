"""The session's one background thread: it owns the learner (torch) and the slow jobs.

Priorities, checked before every task: a performer waiting for the next loop, then queued jobs
(library files, learning from a rating), then training, then keeping proposals fresh, and last
the long hearing pass of a kit with no hearing critic of its own (idle time only, resting as long
as it works). Long work (hearing, training bursts) runs in slices so a waiting performer is
served between two of them. Nothing here sends MIDI or audio: that is the player process.

One way: the session imports this module, never the reverse. The worker sees its session only
through `SessionHooks` (its mutex, its proposal policy, its error reporting); the session reads the
worker's proposal buffer and queues jobs on it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from deepdrummer_live.errors import DeepDrummerError
from deepdrummer_live.learn import checkpoint
from deepdrummer_live.storage.store import TASTE_META, Store

if TYPE_CHECKING:
    from deepdrummer_live.learn.learner import Learner, Proposal

log = logging.getLogger(__name__)

BUFFER_DEPTH = 2  # proposals kept ready for the current mode
MAX_QUEUED_JOBS = 64  # a flood of /dd/save must not grow memory without bound
TRAIN_SLICE = 8  # training batches between two looks at the queue
HEARING_SLICE = 25  # hearing steps between two looks at the queue
IDLE_HEARING_SLICE = 10  # the long pass's steps per slice (about 25 ms on one core): it never holds up a rating
MAX_TRAIN_BACKLOG_RATINGS = 3  # a burst of ratings trains as if it were at most this many
CHECKPOINT_EVERY_S = 5.0
IDLE_WAKE_S = 0.5
# A performer already waiting (nothing buffered fits) is served from this share of the chains: the
# search's first scoring of every chain cannot be cut short, and on a busy machine all of them took
# most of a second (docs/learning.md); a buffered proposal, the usual case, keeps the full budget.
HURRY_CHAINS_DIVISOR = 8
HEARING_REST = 1.0  # the long hearing pass rests this many times as long as each slice worked
JOIN_TIMEOUT_S = 30.0


@dataclass
class Job:
    run: Callable[[], None]
    kind: str  # "library" jobs are written even on shutdown; "learn" and "hearing" may be dropped


@dataclass
class Stats:
    rating_to_next_ms: deque = field(default_factory=lambda: deque(maxlen=1000))
    train_ms: deque = field(default_factory=lambda: deque(maxlen=1000))
    losses: deque = field(default_factory=lambda: deque(maxlen=200))


class SessionHooks(Protocol):
    """What the worker asks of the session that owns it (the session hands itself over)."""

    mutex: Any  # the session's re-entrant lock: it guards the worker's queue and buffer too

    def waiting_for_next(self) -> bool:
        """A rating or /dd/next waits for a proposal."""

    def proposal_request(self) -> dict:
        """Keyword arguments of `Learner.propose` for the next proposal (called with the mutex held)."""

    def proposal_fits(self, proposal: Proposal) -> bool:
        """Whether a buffered proposal still fits the session's settings (called with the mutex held)."""

    def proposal_ready(self) -> None:
        """A fresh proposal is in the buffer (called with the mutex held)."""

    def report_error(self, message: str, address: str) -> None:
        """A job failed: tell the surfaces."""


class Worker:
    """Runs the session's learner jobs in one thread; shares the session's mutex."""

    def __init__(self, learner: Learner, store: Store, session: SessionHooks):
        self.session = session
        self.learner = learner
        self.store = store
        self.mutex = session.mutex
        self.wake = threading.Condition(self.mutex)
        self.buffer: deque[Proposal] = deque()
        self.jobs: deque[Job] = deque()
        self.train_pending = 0  # batches owed to ratings not yet learned from
        self.stats = Stats()
        self.running = False
        self._hearing_started: float | None = None
        self._hearing_rest_until = 0.0  # monotonic time before which the long hearing pass rests
        self._last_checkpoint = 0.0  # monotonic time of the last checkpoint written while training
        self._thread = threading.Thread(target=self._run, name="learner-worker", daemon=True)

    # --- life cycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self.running = True
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current task; then write every queued library file and a final checkpoint."""
        with self.mutex:
            self.running = False
            self.wake.notify_all()
        self._thread.join(timeout=JOIN_TIMEOUT_S)
        if self._thread.is_alive():
            log.error("the learner worker did not stop within %.0f s; queued library files may be missing "
                      "(the next run writes those of acknowledged likes)", JOIN_TIMEOUT_S)
            return
        with self.mutex:
            library_jobs = [j for j in self.jobs if j.kind == "library"]
            self.jobs.clear()
        for job in library_jobs:  # acknowledged likes and saves: their files are written before exit
            self._run_job(job.run)
        if self.learner.trainer.steps:
            try:  # what was learnt since the last checkpoint survives a clean shutdown
                self._save_critic()
            except (OSError, DeepDrummerError) as exc:
                log.error("could not write the final critic checkpoint: %s", exc)

    # --- queue (callers hold the session lock) -----------------------------------------------------

    def add_job(self, run: Callable[[], None], kind: str, first: bool = False) -> None:
        job = Job(run, kind)
        self.jobs.appendleft(job) if first else self.jobs.append(job)
        self.wake.notify_all()

    def queued(self, kind: str) -> int:
        return sum(1 for j in self.jobs if j.kind == kind)

    def owe_training(self, batches: int) -> None:
        cap = self.learner.config.batches_per_rating * MAX_TRAIN_BACKLOG_RATINGS
        self.train_pending = min(self.train_pending + batches, cap)
        self.wake.notify_all()

    def drop_proposals(self) -> None:
        """The mode or a constraint changed: what is buffered no longer fits."""
        self.buffer.clear()
        self.wake.notify_all()

    def take_proposal(self) -> Proposal | None:
        """The first buffered proposal that fits the session's current settings, or None."""
        for p in self.buffer:
            if self.session.proposal_fits(p):
                self.buffer.remove(p)
                self.wake.notify_all()  # refill
                return p
        return None

    # --- the thread ----------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self.mutex:
                while self.running and not self._has_work():
                    rest = self._hearing_rest_until - time.monotonic()
                    self.wake.wait(timeout=min(IDLE_WAKE_S, rest) if rest > 0 else IDLE_WAKE_S)
                if not self.running:
                    return
                task = self._next_task()
            self._run_job(task)

    def _run_job(self, task: Callable[[], None]) -> None:
        try:
            task()
        except DeepDrummerError as exc:
            self.session.report_error(str(exc), "/dd/engine")
        except Exception as exc:  # the worker must survive anything; the log keeps the traceback
            log.exception("learner worker task failed")
            self.session.report_error(f"internal error in the learner: {exc!r}", "/dd/engine")

    def _has_work(self) -> bool:
        return (self.session.waiting_for_next() or bool(self.jobs) or self.train_pending > 0
                or self._buffer_short() or self._may_keep_hearing())

    def _buffer_short(self) -> bool:
        return sum(p.critic_version == self.learner.version for p in self.buffer) < BUFFER_DEPTH

    def _may_keep_hearing(self) -> bool:
        return time.monotonic() >= self._hearing_rest_until and self.learner.long_hearing_left() > 0

    def _next_task(self) -> Callable[[], None]:
        if self.session.waiting_for_next() and not self.buffer:
            return self._propose
        if self.jobs:
            return self.jobs.popleft().run
        if self.train_pending > 0:
            return self._train
        if self._buffer_short() or self.session.waiting_for_next():  # waiting: none buffered fits
            return self._propose
        return self._keep_hearing

    def _performer_waiting(self) -> bool:
        # Read without the lock: a stale answer only costs one more search iteration.
        return self.session.waiting_for_next() and not self.buffer

    def _propose(self) -> None:
        with self.mutex:
            request = self.session.proposal_request()
            hurry = self._performer_waiting()
        chains = max(1, self.learner.chains // HURRY_CHAINS_DIVISOR) if hurry else None
        proposal = self.learner.propose(**request, should_stop=self._performer_waiting, chains=chains)
        with self.mutex:
            if not self.session.proposal_fits(proposal):
                return
            # Fresh proposals replace stale ones (made by an older critic).
            for p in [p for p in self.buffer if p.critic_version != proposal.critic_version]:
                self.buffer.remove(p)
            self.buffer.append(proposal)
            while len(self.buffer) > BUFFER_DEPTH:
                self.buffer.popleft()
            self.session.proposal_ready()

    def hearing(self) -> None:
        """The critic learns to hear the kit's roles (self-supervised), a slice at a time."""
        if self._hearing_started is None:
            self._hearing_started = time.perf_counter()
        loss = self.learner.learn_to_hear(HEARING_SLICE)
        if not self.learner.hearing_done:
            with self.mutex:
                self.add_job(self.hearing, "hearing", first=True)
            return
        log.info("critic learnt to hear the kit's roles in %.1f s (loss %.3f)",
                 time.perf_counter() - self._hearing_started, loss)
        self._save_critic()

    def _keep_hearing(self) -> None:
        """A slice of the long hearing pass, then as long a rest: idle time of a session whose kit came
        without a hearing critic improves what the critic hears, at most about half the worker's CPU."""
        t0 = time.monotonic()
        changed = self.learner.keep_hearing(IDLE_HEARING_SLICE)
        with self.mutex:
            self._hearing_rest_until = time.monotonic() + HEARING_REST * (time.monotonic() - t0)
            if changed:
                self.wake.notify_all()  # the critic moved: proposals to remake
        if changed:
            left = self.learner.long_hearing_left()
            log.info("the critic hears the kit better: %d hearing steps learnt%s", self.learner.hearing_steps,
                     f", {left} to go in idle time" if left else "; the long hearing pass is done")
            self._save_critic()

    def _save_critic(self) -> None:
        """The critic's checkpoint, and the taste map `report` shows without loading the critic."""
        checkpoint.save(self.learner, self.store)
        taste = self.learner.taste_map()
        if taste is not None:
            self.store.set_meta(TASTE_META, json.dumps(taste))

    def _train(self) -> None:
        with self.mutex:
            n = min(TRAIN_SLICE, self.train_pending)
            self.train_pending -= n
            done = self.train_pending == 0
        t0 = time.perf_counter()
        loss = self.learner.train(n)
        if loss is None:
            return
        self.stats.train_ms.append((time.perf_counter() - t0) * 1000 / n)
        self.stats.losses.append(loss)
        # One checkpoint per burst of learning, not per slice; and at least every CHECKPOINT_EVERY_S
        # while ratings keep coming (a burst that never ends must not leave the disk untrained).
        if done or time.monotonic() - self._last_checkpoint > CHECKPOINT_EVERY_S:
            self._save_critic()
            self._last_checkpoint = time.monotonic()
            self.store.log_train(self.learner.trainer.steps, loss)
