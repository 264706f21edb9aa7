"""The session: current loop, ratings, modes, bar-synchronous switching, background learning.

Callers (OSC handlers, the terminal surface, MIDI controller events) call the public methods;
they return quickly. One worker thread owns the engine: it keeps the next proposal ready,
trains the critic after ratings, writes checkpoints and library files. The next loop never
waits for training: a proposal is popped from the buffer the moment a rating lands.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from deepdrummer_live.sound.pattern import DENSITY_RANGE, N_ROWS, P_CELL_ON, check_density
from deepdrummer_live.storage import library
from deepdrummer_live.learn.learner import Learner, Proposal
from deepdrummer_live.errors import DeepDrummerError, OscError
from deepdrummer_live.learn.search import MODES
from deepdrummer_live.storage.store import LoopRecord, Store

log = logging.getLogger(__name__)


def _load_density(saved: str | None) -> list[float]:
    """The stored per-row density (JSON list), or the paper's 0.5 for every row."""
    try:
        values = [float(v) for v in json.loads(saved)] if saved else []
    except (ValueError, TypeError) as exc:
        log.warning("stored density %r unreadable (%s); using %g", saved, exc, P_CELL_ON)
        values = []
    if len(values) != N_ROWS or not all(DENSITY_RANGE[0] <= v <= DENSITY_RANGE[1] for v in values):
        return [P_CELL_ON] * N_ROWS
    return values

TEMPO_RANGE = (20.0, 300.0)
BUFFER_DEPTH = 2  # proposals kept ready for the current mode
MAX_QUEUED_JOBS = 64  # a flood of /dd/save must not grow memory without bound
TRAIN_SLICE = 8
HEARING_SLICE = 25  # pretraining steps between two looks at the queue  # batches between two looks at the queue, so a waiting performer is served first
MAX_TRAIN_BACKLOG_RATINGS = 3  # a burst of ratings trains as if it were at most this many
WAV_SR = 44100
CHECKPOINT_EVERY_S = 5.0


@dataclass
class Loop:
    id: int
    proposal: Proposal
    samples: list[str]
    notes: list[int]
    roles: list[str]
    steps: list[str]
    levels: list[str]  # per row: '.' rest, '1'-'9' a hit's level (/dd/levels)

    @property
    def p_like(self) -> float:
        return self.proposal.p_like

    def player_rows(self) -> list[dict]:
        """What the player process needs to play it: GM note, steps and levels per row."""
        return [{"note": n, "steps": st, "levels": lv} for n, st, lv in zip(self.notes, self.steps, self.levels)]

    def rows(self) -> list[dict]:
        return [{"sample": s, "note": n, "role": r, "steps": st, "levels": lv}
                for s, n, r, st, lv in zip(self.samples, self.notes, self.roles, self.steps, self.levels)]


@dataclass
class Stats:
    ratings: int = 0
    rating_to_next_ms: deque = field(default_factory=lambda: deque(maxlen=1000))
    train_ms: deque = field(default_factory=lambda: deque(maxlen=1000))
    losses: deque = field(default_factory=lambda: deque(maxlen=200))


class VirtualTransport:
    """Bar lines from the monotonic clock, for runs with no MIDI and no audio (headless tests)."""

    def __init__(self, tempo: float, on_event: Callable[[dict], None]):
        self.tempo = tempo
        self.on_event = on_event
        self.playing = False
        self.origin = 0.0
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def _bar_seconds(self) -> float:
        return 4 * 60.0 / self.tempo

    def set_loop(self, loop_id: int, rows, audio, at_bar: bool) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            if not (at_bar and self.playing):
                self._timer = None
                self.on_event({"type": "switched", "loop_id": loop_id})
                return
            bar = self._bar_seconds()
            elapsed = time.monotonic() - self.origin
            next_bar = self.origin + (int(elapsed // bar) + 1) * bar
            self._timer = threading.Timer(max(0.0, next_bar - time.monotonic()),
                                          self.on_event, args=({"type": "switched", "loop_id": loop_id},))
            self._timer.daemon = True
            self._timer.start()

    def current_step(self) -> int:
        """The playhead (0-15), computed from the clock: no events needed for a display."""
        with self._lock:
            if not self.playing:
                return 0
            return int((time.monotonic() - self.origin) / (self._bar_seconds() / 16)) % 16

    def play(self) -> None:
        with self._lock:
            if not self.playing:
                self.playing = True
                self.origin = time.monotonic()
        self.on_event({"type": "transport", "playing": True})

    def stop(self) -> None:
        with self._lock:
            self.playing = False
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
            timer.function(*timer.args)  # a switch waiting for a bar line happens now
        self.on_event({"type": "transport", "playing": False})

    def set_lock(self, row: int, on: bool) -> None:
        """Keep (on) or free row `row` of the current loop in every loop that follows, in all modes."""
        with self.lock:
            if self.current is None:
                raise OscError("no loop is current yet; wait for the first /dd/loop, then lock its rows")
            n_rows = len(self.current.steps)
            if not (isinstance(row, int) and 0 <= row < n_rows):
                raise OscError(f"row {row!r} is outside the loop; use 0-{n_rows - 1} (the rows of /dd/loop, in order)")
            if on:
                # Rows locked earlier are the same in the current loop, so it can be the one source.
                self.locked.add(row)
                self.lock_source = self.current.proposal.loops
            else:
                self.locked.discard(row)
            self.buffer.clear()
            self.wake.notify_all()

    def set_density(self, p: float, row: int | None = None) -> None:
        """The prior probability of a hit (the paper's 0.5): of every row, or of row `row`."""
        with self.lock:
            if row is None:
                self.density = [check_density(p)] * N_ROWS
            else:
                if not (isinstance(row, int) and 0 <= row < N_ROWS):
                    raise OscError(f"row {row!r} is outside the loop; use 0-{N_ROWS - 1}")
                self.density[row] = check_density(p, f"row {row} density")
            self.buffer.clear()
            self.wake.notify_all()
            value = json.dumps(self.density)
        self.store.set_meta("density", value)

    def set_tempo(self, bpm: float) -> None:
        with self._lock:
            if self.playing:  # keep the bar phase: re-anchor so the current position is unchanged
                now = time.monotonic()
                phase = ((now - self.origin) / self._bar_seconds()) % 1.0
                self.tempo = bpm
                self.origin = now - phase * self._bar_seconds()
            else:
                self.tempo = bpm

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = None


class Session:
    def __init__(self, engine: Learner, store: Store, out: Callable[..., None], tempo: float = 120.0,
                 clock: str = "internal", audio_sr: int | None = None):
        self.engine = engine
        self.store = store
        self.out = out  # out(address, *args): to every subscriber
        self.transport = None
        self.clock = clock
        self.audio_sr = audio_sr
        self.lock = threading.RLock()
        self.wake = threading.Condition(self.lock)
        self.mode = store.get_meta("mode", "explore")
        self.fotf = store.get_meta("fotf", "0") == "1"
        self.density = _load_density(store.get_meta("density"))  # hit probability per row
        self.locked: set[int] = set()  # rows of lock_source kept in every proposal (this run only)
        self.lock_source = None  # Loops (batch of one) the locked rows come from
        self.tempo = float(store.get_meta("tempo", str(tempo))) if clock == "internal" else tempo
        if tempo != 120.0:
            self.tempo = tempo  # an explicit --tempo wins over the resumed one
        self.playing = False
        self.step = 0
        self.current: Loop | None = None
        self.pending: Loop | None = None
        self.want_next_since: float | None = None  # a rating/next waits for a proposal since then
        self.buffer: deque[Proposal] = deque()
        self.train_pending = 0  # batches owed to ratings not yet learned from
        self.jobs: deque[Callable[[], None]] = deque()  # library writes etc., run by the worker
        self.last_error = ""
        self._hearing_started: float | None = None
        self._last_checkpoint = 0.0  # monotonic time of the last checkpoint written while training
        self.stats = Stats()
        self.running = False
        self._worker = threading.Thread(target=self._run_worker, name="engine-worker", daemon=True)
        self.likes, self.dislikes = store.totals()

    # --- life cycle ---------------------------------------------------------------------------

    def attach_transport(self, transport) -> None:
        self.transport = transport

    def start(self, autoplay: bool = False) -> None:
        """Resume from the store, propose the first loop, start the worker."""
        self.engine.load_checkpoint(self.store)
        resumed = 0
        for rec, rating in self.store.rated_loops():
            loops = self.engine.loops_from_record(rec)
            if loops is not None:
                self.engine.set_rating(rec.id, loops, rating)
                resumed += 1
        if resumed:
            log.info("resumed %d rated loops from %s", resumed, self.store.dir)
        if self.engine.needs_hearing():
            self.jobs.append(self._task_hearing)
        if resumed and self.engine.trainer.ready():
            self.train_pending = self.engine.config.batches_per_rating  # settle on the resumed ratings
        self.running = True
        self._worker.start()
        with self.lock:
            self._request_next()
        if autoplay and self.clock == "internal":
            self.play()

    def stop(self) -> None:
        with self.lock:
            self.running = False
            self.wake.notify_all()
        self._worker.join(timeout=30)
        if not self._worker.is_alive() and self.engine.trainer.steps:
            try:  # what was learnt since the last checkpoint survives a clean shutdown
                self.engine.save_checkpoint(self.store)
            except (OSError, DeepDrummerError) as exc:
                log.error("could not write the final critic checkpoint: %s", exc)

    # --- worker ---------------------------------------------------------------------------------

    def _key_ok(self, p: Proposal) -> bool:
        return p.mode == self.mode and p.fotf == self.fotf and p.prior == self._prior()

    def _prior(self):
        """The generator's prior now: density per row, fotf, locked rows (call with the lock held)."""
        return self.engine.make_prior(self.fotf, tuple(self.density), tuple(sorted(self.locked)),
                                      self.lock_source)

    def _run_worker(self) -> None:
        while True:
            with self.lock:
                while self.running and not self._has_work():
                    self.wake.wait(timeout=0.5)
                if not self.running:
                    return
                task = self._next_task()
            try:
                task()
            except DeepDrummerError as exc:
                self.report_error(str(exc), "/dd/engine")
            except Exception as exc:  # the worker must survive anything; the log keeps the traceback
                log.exception("engine worker task failed")
                self.report_error(f"internal error in the engine: {exc!r}", "/dd/engine")

    def _has_work(self) -> bool:
        fresh = [p for p in self.buffer if p.critic_version == self.engine.version]
        return (self.want_next_since is not None or bool(self.jobs) or self.train_pending > 0
                or len(fresh) < BUFFER_DEPTH)

    def _next_task(self) -> Callable[[], None]:
        # Priority: a waiting performer, then files, then learning, then keeping proposals fresh.
        if self.want_next_since is not None and not self.buffer:
            return self._task_propose
        if self.jobs:
            return self.jobs.popleft()
        if self.train_pending > 0:
            return self._task_train
        return self._task_propose

    def _performer_waiting(self) -> bool:
        # Read without the lock: a stale answer only costs one more search iteration.
        return self.want_next_since is not None and not self.buffer

    def _task_propose(self) -> None:
        with self.lock:
            mode, fotf, prior = self.mode, self.fotf, self._prior()
        proposal = self.engine.propose(mode, fotf, should_stop=self._performer_waiting, prior=prior)
        with self.lock:
            if not self._key_ok(proposal):
                return
            # Fresh proposals replace stale ones (made by an older critic).
            stale = [p for p in self.buffer if p.critic_version != proposal.critic_version]
            for p in stale:
                self.buffer.remove(p)
            self.buffer.append(proposal)
            while len(self.buffer) > BUFFER_DEPTH:
                self.buffer.popleft()
            if self.want_next_since is not None:
                self._advance_now()

    def _task_hearing(self) -> None:
        # In slices, so a performer waiting for the next loop is served between them.
        if self._hearing_started is None:
            self._hearing_started = time.perf_counter()
        loss = self.engine.learn_to_hear(HEARING_SLICE)
        if not self.engine.hearing_done:
            with self.lock:
                self.jobs.appendleft(self._task_hearing)
            return
        log.info("critic learnt to hear the kit's roles in %.1f s (loss %.3f)",
                 time.perf_counter() - self._hearing_started, loss)
        self.engine.save_checkpoint(self.store)

    def _task_train(self) -> None:
        with self.lock:
            n = min(TRAIN_SLICE, self.train_pending)
            self.train_pending -= n
            done = self.train_pending == 0
        t0 = time.perf_counter()
        loss = self.engine.train(n)
        if loss is None:
            return
        self.stats.train_ms.append((time.perf_counter() - t0) * 1000 / n)
        self.stats.losses.append(loss)
        # One checkpoint per burst of learning, not per slice; and at least every CHECKPOINT_EVERY_S
        # while ratings keep coming (a burst that never ends must not leave the disk untrained).
        if done or time.monotonic() - self._last_checkpoint > CHECKPOINT_EVERY_S:
            self.engine.save_checkpoint(self.store)
            self._last_checkpoint = time.monotonic()
            self.store.log_train(self.engine.trainer.steps, loss)

    # --- switching ------------------------------------------------------------------------------

    def _request_next(self) -> None:
        """Make the next loop current (stopped) or pending for the next bar line (playing)."""
        if self.pending is not None:
            return  # already switching at the next bar line: one rating, one switch
        self.want_next_since = time.perf_counter()
        if any(self._key_ok(p) for p in self.buffer):
            self._advance_now()
        else:
            self.buffer.clear()
            self.wake.notify_all()

    def _advance_now(self) -> None:
        proposal = next(p for p in self.buffer if self._key_ok(p))
        self.buffer.remove(proposal)
        samples, notes, roles, steps = self.engine.describe(proposal.loops)
        levels = self.engine.levels(proposal.loops)
        loop_id = self.store.add_loop(self.engine.kit.name, samples, notes, roles, steps, proposal.p_like,
                                      proposal.mode, self.tempo, levels)
        loop = Loop(loop_id, proposal, samples, notes, roles, steps, levels)
        if self.want_next_since is not None:
            self.stats.rating_to_next_ms.append((time.perf_counter() - self.want_next_since) * 1000)
        self.want_next_since = None
        self.wake.notify_all()  # refill the buffer
        if self.transport is None:
            self._make_current(loop)
            return
        self.pending = loop
        audio = self.engine.live_audio(proposal.loops, self.tempo, self.audio_sr) if self.audio_sr else None
        self.transport.set_loop(loop_id, loop.player_rows(), audio, at_bar=self.playing)

    def _make_current(self, loop: Loop) -> None:
        self.current = loop
        self.pending = None
        self.out("/dd/loop", *self.loop_args(loop))
        self.out("/dd/levels", loop.id, *loop.levels)

    def loop_args(self, loop: Loop) -> list:
        args = [loop.id, float(loop.p_like), float(self.tempo), len(loop.steps[0])]
        for s, n, st in zip(loop.samples, loop.notes, loop.steps):
            args += [s, n, st]
        return args

    # --- transport events -------------------------------------------------------------------------

    def on_transport_event(self, event: dict) -> None:
        kind = event.get("type")
        with self.lock:
            if kind == "switched":
                if self.pending is not None and self.pending.id == event["loop_id"]:
                    self._make_current(self.pending)
            elif kind == "transport":
                self.playing = bool(event["playing"])
            elif kind == "tempo":
                self.tempo = float(event["bpm"])
            elif kind == "step":
                self.step = int(event["step"])
            elif kind == "error":
                self.report_error(str(event.get("message")), "/dd/midi")
        if kind == "control":
            self.control(event.get("action"), event.get("value"))

    def control(self, action: str, value=None) -> None:
        """A MIDI controller or key press; errors are reported, never raised."""
        try:
            if action in ("like", "dislike"):
                self.rate(None, action == "like")
            elif action == "next":
                self.next()
            elif action == "undo":
                self.undo()
            elif action == "mode":
                self.set_mode(value if value in MODES else MODES[(MODES.index(self.mode) + 1) % len(MODES)])
            elif action == "fotf":
                self.set_fotf(not self.fotf if value in (None, "toggle") else bool(value))
            elif action == "lock":  # value: the row; toggles
                row = int(value)
                self.set_lock(row, row not in self.locked)
            elif action == "tempo":
                self.set_tempo(float(value))
            elif action == "tempo_delta":
                self.set_tempo(min(max(self.tempo + float(value), TEMPO_RANGE[0]), TEMPO_RANGE[1]))
            elif action == "save":
                self.save(None)
            elif action == "play":
                self.play()
            elif action == "stop":
                self.stop_transport()
            elif action == "toggle_play":
                self.stop_transport() if self.playing else self.play()
            else:
                raise OscError(f"controller action {action!r} unknown")
        except DeepDrummerError as exc:
            self.report_error(str(exc), f"/dd/{action}")

    def report_error(self, message: str, address: str) -> None:
        self.last_error = message
        log.error("%s (%s)", message, address)
        self.out("/dd/error", message, address)

    # --- public commands ----------------------------------------------------------------------------

    def _resolve_loop(self, loop_id: int | None) -> LoopRecord:
        """The stored loop a rating is for (default: the current one)."""
        if loop_id is None:
            if self.current is None:
                raise OscError("no loop is current yet; wait for the first /dd/loop")
            loop_id = self.current.id
        rec = self.store.loop(loop_id)
        if rec is not None:
            return rec
        raise OscError(f"loop id {loop_id} was never proposed; use the id of a /dd/loop "
                       f"(current: {self.current.id if self.current else 'none'})")

    def rate(self, loop_id: int | None, liked: bool) -> tuple[int, int, int]:
        """Store a rating durably, then learn from it; returns (loop_id, likes, dislikes)."""
        with self.lock:
            rec = self._resolve_loop(loop_id)
            loop_id = rec.id
            is_current = self.current is not None and loop_id == self.current.id
        likes, dislikes = self.store.add_rating(loop_id, liked, rec.p_like)  # durable before acknowledged
        with self.lock:
            self.likes, self.dislikes = likes, dislikes
            self.stats.ratings += 1
            self.out("/dd/rated", loop_id, "like" if liked else "dislike", likes, dislikes)
            loops = self.engine.loops_from_record(rec)
            self.jobs.append(lambda: self._learn(loop_id, loops, int(liked)))
            if liked and loops is not None:
                self.jobs.append(lambda: self._write_library(loop_id, rec, loops, "liked"))
            if is_current:
                try:  # the rating is stored and acknowledged; a failure to switch is a separate error
                    self._request_next()
                except DeepDrummerError as exc:
                    self.report_error(str(exc), "/dd/loop")
            self.wake.notify_all()
        return loop_id, likes, dislikes

    def _learn(self, loop_id: int, loops, label: int | None) -> None:
        self.engine.set_rating(loop_id, loops, label)
        if label is None:
            return
        per_rating = self.engine.config.batches_per_rating
        with self.lock:
            self.train_pending = min(self.train_pending + per_rating, per_rating * MAX_TRAIN_BACKLOG_RATINGS)

    def next(self) -> None:
        with self.lock:
            self._request_next()

    def undo(self) -> tuple[int, int, int]:
        undone = self.store.undo_last()
        if undone is None:
            raise OscError("nothing to undo: no rating left in this state dir")
        loop_id, _ = undone
        with self.lock:
            self.likes, self.dislikes = self.store.totals()
            rating = self.store.effective_rating(loop_id)  # an earlier rating of it may remain
            rec = self.store.loop(loop_id)
            loops = self.engine.loops_from_record(rec) if rec else None
            self.jobs.append(lambda: self._learn(loop_id, loops, rating))
            self.out("/dd/undone", loop_id, self.likes, self.dislikes)
            self.wake.notify_all()
        return loop_id, self.likes, self.dislikes

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise OscError(f"mode {mode!r} unknown; use one of {', '.join(MODES)}")
        with self.lock:
            self.mode = mode
            self.buffer.clear()
            self.wake.notify_all()
        self.store.set_meta("mode", mode)

    def set_fotf(self, on: bool) -> None:
        with self.lock:
            self.fotf = bool(on)
            self.buffer.clear()
            self.wake.notify_all()
        self.store.set_meta("fotf", "1" if on else "0")

    def set_lock(self, row: int, on: bool) -> None:
        """Keep (on) or free row `row` of the current loop in every loop that follows, in all modes."""
        with self.lock:
            if self.current is None:
                raise OscError("no loop is current yet; wait for the first /dd/loop, then lock its rows")
            n_rows = len(self.current.steps)
            if not (isinstance(row, int) and 0 <= row < n_rows):
                raise OscError(f"row {row!r} is outside the loop; use 0-{n_rows - 1} (the rows of /dd/loop, in order)")
            if on:
                # Rows locked earlier are the same in the current loop, so it can be the one source.
                self.locked.add(row)
                self.lock_source = self.current.proposal.loops
            else:
                self.locked.discard(row)
            self.buffer.clear()
            self.wake.notify_all()

    def set_density(self, p: float, row: int | None = None) -> None:
        """The prior probability of a hit (the paper's 0.5): of every row, or of row `row`."""
        with self.lock:
            if row is None:
                self.density = [check_density(p)] * N_ROWS
            else:
                if not (isinstance(row, int) and 0 <= row < N_ROWS):
                    raise OscError(f"row {row!r} is outside the loop; use 0-{N_ROWS - 1}")
                self.density[row] = check_density(p, f"row {row} density")
            self.buffer.clear()
            self.wake.notify_all()
            value = json.dumps(self.density)
        self.store.set_meta("density", value)

    def set_tempo(self, bpm: float) -> None:
        lo, hi = TEMPO_RANGE
        if not lo <= bpm <= hi:
            raise OscError(f"tempo {bpm:g} BPM out of range; use {lo:g}-{hi:g}")
        if self.clock != "internal":
            raise OscError(f"tempo follows the {self.clock} clock; change it there, or run with --clock internal")
        with self.lock:
            self.tempo = float(bpm)
            if self.transport is not None:
                self.transport.set_tempo(self.tempo)
                if self.audio_sr and self.current is not None:  # the playing bar must follow the tempo
                    audio = self.engine.live_audio(self.current.proposal.loops, self.tempo, self.audio_sr)
                    self.transport.set_loop(self.current.id, self.current.player_rows(), audio, at_bar=self.playing)
        self.store.set_meta("tempo", repr(self.tempo))

    def _check_transport_owner(self) -> None:
        if self.clock != "internal":
            raise OscError(f"the transport follows the {self.clock} clock; start/stop it there "
                           f"(or run with --clock internal)")

    def play(self) -> None:
        self._check_transport_owner()
        with self.lock:
            self.playing = True
        if self.transport is not None:
            self.transport.play()

    def stop_transport(self) -> None:
        self._check_transport_owner()
        with self.lock:
            self.playing = False
        if self.transport is not None:
            self.transport.stop()

    def save(self, name: str | None) -> None:
        """Queue the current loop for the library; /dd/saved follows once the files are on disk."""
        if name is not None:
            library.check_name(name)
        with self.lock:
            if self.current is None:
                raise OscError("no loop is current yet; wait for the first /dd/loop")
            if len(self.jobs) >= MAX_QUEUED_JOBS:
                raise OscError(f"{len(self.jobs)} library writes are already queued; wait for /dd/saved")
            loop = self.current
            rec = self.store.loop(loop.id)
            self.jobs.append(lambda: self._write_library(loop.id, rec, loop.proposal.loops, name or "saved"))
            self.wake.notify_all()

    def _write_library(self, loop_id: int, rec, loops, name: str) -> None:
        bpm = rec.bpm if rec else self.tempo
        audio = self.engine.live_audio(loops, bpm, WAV_SR)
        rows = list(zip(rec.notes, rec.steps))
        mid, wav = library.write_loop(self.store.library, loop_id, name, rows, bpm, audio, WAV_SR)
        self.out("/dd/saved", loop_id, str(mid), str(wav))

    # --- views ---------------------------------------------------------------------------------------

    def status_args(self) -> list:
        with self.lock:
            return [self.likes, self.dislikes, self.current.id if self.current else -1, self.mode,
                    str(self.engine.device), self.engine.trainer.steps]

    def snapshot(self) -> dict:
        """Everything the terminal surface shows, as plain data."""
        with self.lock:
            loop = self.current
            return {
                "loop": None if loop is None else {"id": loop.id, "p_like": loop.p_like, "rows": [
                    dict(row, locked=r in self.locked) for r, row in enumerate(loop.rows())]},
                "locks": sorted(self.locked), "density": list(self.density),
                "likes": self.likes, "dislikes": self.dislikes, "mode": self.mode, "fotf": self.fotf,
                "tempo": self.tempo, "clock": self.clock, "playing": self.playing,
                "step": self.transport.current_step() if isinstance(self.transport, VirtualTransport) else self.step,
                "device": str(self.engine.device), "train_steps": self.engine.trainer.steps,
                "losses": list(self.stats.losses), "last_error": self.last_error,
            }
