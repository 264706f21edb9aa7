"""The session: the current loop, ratings, modes and bar-synchronous switching.

Surfaces never call this directly: they run commands from `commands.py`, which call the public
methods here; each returns quickly. Slow work (search, training, library files) is the worker's
(`worker.py`); MIDI, clock and audio are the playback's (the player process). Outbound messages
go to every listener (OSC server, web page...) through `emit`, with the origin of the command
that caused them, so a reply also reaches a client that is not subscribed.

The next loop never waits for training: a proposal is taken from the worker's buffer the moment
a rating lands.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from deepdrummer_live.errors import CommandError, DeepDrummerError
from deepdrummer_live.learn import checkpoint
from deepdrummer_live.learn.learner import Learner, Proposal
from deepdrummer_live.loop import LoopRecord
from deepdrummer_live.playback import Playback, VirtualPlayback
from deepdrummer_live.player.midilearn import LEARNED_FILE, MidiLearn
from deepdrummer_live.player.notemap import NoteMap
from deepdrummer_live.player.protocol import Event as PlayerEvent
from deepdrummer_live.sound.live import LiveAudio
from deepdrummer_live.sound.pattern import DENSITY_RANGE, P_CELL_ON, check_density
from deepdrummer_live.storage import library
from deepdrummer_live.storage.store import Store
from deepdrummer_live.vocab import (
    BARS,
    DEFAULT_METER,
    DEFAULT_PROFILE,
    DEFAULT_TEMPO,
    MAX_ROWS,
    METERS,
    MODES,
    N_ROWS,
    ROWS_RANGE,
    SWITCH_POINTS,
    check_clock,
    check_tempo,
    profile_problem,
    shape_problem,
    steps_per_bar,
    swing_problem,
)
from deepdrummer_live.worker import MAX_QUEUED_JOBS, Worker

log = logging.getLogger(__name__)

WAV_SR = 44100
# listener(address, args, origin): origin is whoever ran the command that caused the message, or None
Listener = Callable[[str, tuple, Any], None]
CURRENT = object()  # emit()'s default origin: the command this thread is running


# What the surfaces offer for the loop's shape (the command table checks the same ranges)
SHAPE_CHOICES = {"rows": list(range(ROWS_RANGE[0], ROWS_RANGE[1] + 1)), "bars": list(BARS), "meter": list(METERS)}


def _load_density(saved: str | None) -> list[float]:
    """The stored per-row density (JSON list, one per row of the largest loop), or the paper's 0.5 for
    every row (a state dir of 4-row loops keeps its 4 and gets 0.5 for the rest)."""
    try:
        values = [float(v) for v in json.loads(saved)] if saved else []
    except (ValueError, TypeError) as exc:
        log.warning("stored density %r unreadable (%s); using %g", saved, exc, P_CELL_ON)
        values = []
    if len(values) > MAX_ROWS or not all(DENSITY_RANGE[0] <= v <= DENSITY_RANGE[1] for v in values):
        return [P_CELL_ON] * MAX_ROWS
    return values + [P_CELL_ON] * (MAX_ROWS - len(values))


@dataclass(frozen=True)
class Loop:
    """A loop the session proposed: its record (what is stored, sent and played; `record.id` is its
    stored id) and the learner's proposal (its tensors)."""

    record: LoopRecord
    proposal: Proposal

    @property
    def id(self) -> int:
        return self.record.id


class Session:
    def __init__(self, learner: Learner, store: Store, tempo: float | None = None,
                 clock: str = "internal", audio_sr: int | None = None, swing: float | None = None,
                 note_map: NoteMap | None = None, now: Callable[[], float] = time.perf_counter,
                 rows: int | None = None, bars: int | None = None, meter: str | None = None,
                 profile: str | None = None):
        check_clock(clock)
        self.learner = learner
        self.live_audio = LiveAudio(learner.kit)  # what the player plays beside the MIDI
        self.now = now  # for latency figures only; injectable for tests
        self.store = store
        self.playback: Playback | None = None
        self.clock = clock
        self.audio_sr = audio_sr
        self.mutex = threading.RLock()
        self.listeners: list[Listener] = []
        self._origin = threading.local()
        self.mode = store.get_meta("mode", "explore")
        self.fotf = store.get_meta("fotf", "0") == "1"
        self.density = _load_density(store.get_meta("density"))  # hit probability per row (MAX_ROWS)
        # The shape of the loops proposed from now on: an explicit value (run's flags) wins over the resumed one
        self.rows = self._setting("rows", rows, int, N_ROWS)
        self.bars = self._setting("bars", bars, int, 1)
        self.meter = self._setting("meter", meter, str, DEFAULT_METER)
        problem = shape_problem(self.rows, self.bars, self.meter)
        if problem:
            log.warning("stored loop shape unusable (%s); using 4 rows, 1 bar of 4/4", problem)
            self.rows, self.bars, self.meter = N_ROWS, 1, DEFAULT_METER
        if not learner.kind.reads(self.bars, self.meter):
            log.warning("the %s critic hears one bar of 4/4; loops are 1 bar of 4/4", learner.kind.name)
            self.bars, self.meter = 1, DEFAULT_METER
        self.switch_at = store.get_meta("switch", "phrase")  # a new loop waits for the phrase's end, or a bar's
        self.locked: set[int] = set()  # rows of lock_source kept in every proposal
        self.lock_source = None  # Loops (batch of one) the locked rows come from
        self.locked_notes: dict[int, int] = {}  # row -> the note a locked row keeps going out on
        self._resume_locks(store.get_meta("locks"))
        # an explicit --swing wins over the resumed one, like --tempo
        self.swing = float(store.get_meta("swing", "0.0")) if swing is None else float(swing)
        if swing is not None:
            store.set_meta("swing", repr(self.swing))
        self.note_map = note_map or NoteMap.load(None)
        # An explicit tempo wins; else the resumed one (internal clock), else the default.
        resumed = store.get_meta("tempo") if clock == "internal" else None
        self.tempo = float(tempo if tempo is not None else resumed if resumed is not None else DEFAULT_TEMPO)
        if tempo is not None and clock == "internal":
            store.set_meta("tempo", repr(self.tempo))  # what was asked for is what the next run resumes
        self.playing = False
        self.step = 0
        self.current: Loop | None = None
        self.pending: Loop | None = None
        self.want_next_since: float | None = None  # a rating/next waits for a proposal since then
        self.last_error = ""
        self.ratings = 0
        # The taste profile: an explicit --profile wins, else the one the last run ended with (a setting,
        # like the tempo), else `default`. Stored before anything is acknowledged.
        problem = profile_problem(profile) if profile is not None else None
        if problem:
            raise CommandError(problem)
        self.profile = profile or store.get_meta("profile") or DEFAULT_PROFILE
        if profile_problem(self.profile) or not store.has_profile(self.profile):
            store.add_profile(self.profile)
        if profile is not None:
            store.set_meta("profile", self.profile)
        self.profile_base: str | None = None  # the profile the current one was copied from, made in this run
        self.profile_names = [n for n, _ in store.profiles()]
        self.vary_of: int | None = None  # /dd/vary: the loop whose variation comes next
        self._vary_source = None  # ... its Loops
        self.fill_loop: Loop | None = None  # /dd/fill: the fill sent for the next bar line
        self._fill_for: int | None = None  # the loop a fill is being made for (one at a time)
        self.likes, self.dislikes = store.totals(self.profile)
        self.worker = Worker(learner, store, self)
        self.pad_learning = MidiLearn(store.dir / LEARNED_FILE, self.emit)

    def _setting(self, key: str, given, kind, default):
        """A setting from run's flags (stored, so the next run resumes it), else the stored one, else the default."""
        if given is not None:
            self.store.set_meta(key, str(given))
            return kind(given)
        stored = self.store.get_meta(key)
        try:
            return kind(stored) if stored is not None else default
        except ValueError:
            log.warning("stored %s %r unreadable; using %s", key, stored, default)
            return default

    # --- outbound -------------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        self.listeners.append(listener)

    @contextlib.contextmanager
    def origin(self, origin: Any):
        """Messages emitted by this thread inside the block also reach `origin`."""
        previous = getattr(self._origin, "value", None)
        self._origin.value = origin
        try:
            yield
        finally:
            self._origin.value = previous

    def current_origin(self) -> Any:
        return getattr(self._origin, "value", None)

    def emit(self, address: str, *args, origin: Any = CURRENT) -> None:
        """To every listener; `origin` defaults to the origin of the command this thread is running
        (None: to subscribers only)."""
        if origin is CURRENT:
            origin = self.current_origin()
        for listener in list(self.listeners):
            try:
                listener(address, args, origin)
            except Exception:  # one broken surface must not silence the others; keep the traceback
                log.exception("listener failed on %s", address)

    def report_error(self, message: str, address: str) -> None:
        self.last_error = message
        log.error("%s (%s)", message, address)
        self.emit("/dd/error", message, address)

    # --- life cycle -------------------------------------------------------------------------------

    def attach_playback(self, playback: Playback) -> None:
        self.playback = playback

    def start(self, autoplay: bool = False) -> None:
        """Resume from the store, write missing library files, propose the first loop, start the worker."""
        checkpoint.load(self.learner, self.store)
        resumed = 0
        with self.mutex:
            # Every profile's ratings (a copied profile's include those of the one it was copied from);
            # a loop's features are computed once however many profiles rated it.
            examples: dict[int, Any] = {}
            for name in self.profile_names:
                for loop_id, rating in self.store.training_ratings(name):
                    if loop_id not in examples:
                        rec = self.store.loop(loop_id)
                        loops = self.learner.loops_from_record(rec) if rec is not None else None
                        examples[loop_id] = (loops, self.learner.example(loops) if loops is not None else None)
                    loops, example = examples[loop_id]
                    if loops is not None:
                        self.learner.set_rating(loop_id, loops, rating, profile=name, example=example)
            self.learner.use_profile(self.profile)
            for rec, rating in self.store.rated_loops():
                loops = self.learner.loops_from_record(rec)
                if loops is None:
                    continue
                resumed += 1
                if rating == 1 and not library.has_files(self.store.library, rec.id):
                    # An acknowledged like whose files a kill -9 or power cut prevented.
                    # (its swing at the time is not stored: the session's swing, resumed, is the best guess)
                    self.worker.add_job(
                        lambda r=rec, lo=loops: self._write_library(r, lo, "liked", None, self.swing),
                        "library")
            if resumed:
                log.info("resumed %d rated loops from %s", resumed, self.store.dir)
            if self.learner.needs_hearing():
                self.worker.add_job(self.worker.hearing, "hearing")
            if resumed and self.learner.trainer.ready():
                self.worker.owe_training(self.learner.config.batches_per_rating)  # settle on the resumed ratings
        self.worker.start()
        with self.mutex:
            self._request_next()
        if autoplay and self.clock == "internal":
            self.play()

    def shutdown(self) -> None:
        """The daemon ends: the worker stops, after writing queued library files and the final checkpoint.
        (The musical transport stops with `stop_transport`.)"""
        self.worker.stop()

    # --- proposals (called by the worker with the lock held) ---------------------------------------

    def proposal_request(self) -> dict:
        """What the learner's next proposal must satisfy (keyword arguments of `Learner.propose`)."""
        request = {"mode": self.mode, "fotf": self.fotf, "prior": self._prior(), "profile": self.profile,
                   "profile_base": self.profile_base}
        if self.vary_of is not None:
            request.update(vary=self._vary_source, vary_of=self.vary_of)
        return request

    def proposal_fits(self, p: Proposal) -> bool:
        return (p.mode == self.mode and p.fotf == self.fotf and p.prior == self._prior()
                and p.profile == self.profile and p.vary_of == self.vary_of)

    def _prior(self):
        """The generator's prior now: density per row, fotf, locked rows (call with the lock held)."""
        return self.learner.make_prior(self.fotf, tuple(self.density[: self.rows]), tuple(sorted(self.locked)),
                                       self.lock_source, rows=self.rows, bars=self.bars, meter=self.meter)

    def waiting_for_next(self) -> bool:
        return self.want_next_since is not None

    def proposal_ready(self) -> None:
        if self.want_next_since is not None:
            self._advance_now()

    def _settings_changed(self) -> None:
        self.worker.drop_proposals()

    # --- switching ------------------------------------------------------------------------------

    def _request_next(self) -> None:
        """Make the next loop current (stopped) or pending for the next bar line (playing)."""
        if self.pending is not None:
            return  # already switching at the next bar line: one rating, one switch
        self.want_next_since = self.now()
        if any(self.proposal_fits(p) for p in self.worker.buffer):
            self._advance_now()
        else:
            self.worker.drop_proposals()

    def _advance_now(self) -> None:
        proposal = self.worker.take_proposal()
        if proposal is None:
            return
        rec = self.learner.record(proposal.loops, p_like=proposal.p_like, mode=proposal.mode, tempo=self.tempo)
        # the notes that go out: one per row, distinct; a locked row keeps its note
        rec = rec.with_notes(self.note_map.assign(rec.roles, rec.notes,
                                                  {r: self.locked_notes[r] for r in self.locked}))
        loop = Loop(replace(rec, id=self.store.add_loop(rec)), proposal)
        if self.want_next_since is not None:
            self.worker.stats.rating_to_next_ms.append((self.now() - self.want_next_since) * 1000)
        self.want_next_since = None
        if proposal.vary_of is not None:  # one variation was asked for: the loops after it are searched again
            self.vary_of = self._vary_source = None
            self._settings_changed()
        self._present(loop)

    def _present(self, loop: Loop) -> None:
        """Make `loop` current (stopped, or no playback) or pending for the next bar line (playing)."""
        self.fill_loop = None  # a fill waiting for its bar line is replaced by the new loop
        self._fill_for = None
        if self.playback is None:
            self._make_current(loop)
            return
        self.pending = loop
        self._send_loop(loop)

    def _send_loop(self, loop: Loop) -> None:
        """Hand `loop` to the playback with its live audio, at the tempo and swing of now."""
        audio = (self.live_audio.render(loop.proposal.loops, self.tempo, self.audio_sr, self.swing)
                 if self.audio_sr else None)
        self.playback.set_loop(loop.id, loop.record.player_rows(), audio, at_bar=self.playing, swing=self.swing,
                                steps_per_bar=loop.record.steps_per_bar, switch_at=self.switch_at)

    def _resend(self) -> None:
        """The loop waiting for its bar line (else the current one) again, at today's tempo and swing."""
        loop = self.pending or self.current
        if loop is not None and self.playback is not None:
            self._send_loop(loop)

    def _make_current(self, loop: Loop) -> None:
        self.current = loop
        self.pending = None
        self.emit("/dd/loop", *self.loop_args(loop), origin=None)
        self.emit("/dd/levels", *loop.record.levels_args(), origin=None)
        self.emit("/dd/shape", *loop.record.shape_args(), origin=None)

    def loop_args(self, loop: Loop) -> list:
        """/dd/loop's arguments: the loop at the tempo of now."""
        return replace(loop.record, tempo=self.tempo).loop_args()

    # --- player events ----------------------------------------------------------------------------

    def on_player_event(self, event: PlayerEvent) -> None:
        """An event of the player process (or the virtual playback); player/protocol.py lists them."""
        kind = event.get("type")
        with self.mutex:
            if kind == "switched":
                fill = self.fill_loop
                if fill is not None and fill.id == event.get("loop_id"):
                    self._fill_started(fill)
                elif self.pending is not None and self.pending.id == event["loop_id"]:
                    self._make_current(self.pending)
            elif kind == "transport":
                self.playing = bool(event["playing"])
            elif kind == "tempo":
                self.tempo = float(event["bpm"])
            elif kind == "step":
                self.step = int(event["step"])
            elif kind == "error":
                # the player's own faults name no OSC address: each names the part that failed instead
                # (.get: this runs on the player's event thread, which a KeyError would end)
                self.report_error(str(event.get("message")), str(event.get("address", "/dd/midi")))
            elif kind == "learn_armed":
                self.pad_learning.on_armed(bool(event.get("on")))
            elif kind == "learn_bound":
                self.pad_learning.on_bound()
            elif kind == "learn_midi":
                try:
                    self.pad_learning.on_midi(self.playback, event.get("data") or [])
                except (OSError, DeepDrummerError) as exc:
                    self.report_error(f"MIDI learn: could not save the binding ({exc})", "/dd/learn")
        if kind == "control":
            self.control(event.get("command"), event.get("args", ()))
        elif kind == "program":
            self.program_change(event.get("number"))

    def control(self, name: str, args=()) -> None:
        """A command from a MIDI controller: run through the command table; errors are reported, never raised."""
        from deepdrummer_live import commands  # the table's handlers call back into this module

        try:
            commands.execute(self, str(name), args)
        except DeepDrummerError as exc:
            self.report_error(str(exc), f"/dd/{name}")

    # --- what the commands do ---------------------------------------------------------------------

    def _resolve_loop(self, loop_id: int | None) -> LoopRecord:
        """The stored loop a rating is for (default: the current one)."""
        if loop_id is None:
            if self.current is None:
                raise CommandError("no loop is current yet; wait for the first /dd/loop")
            loop_id = self.current.id
        rec = self.store.loop(loop_id)
        if rec is not None:
            return rec
        raise CommandError(f"loop id {loop_id} was never proposed; use the id of a /dd/loop "
                           f"(current: {self.current.id if self.current else 'none'})")

    def rate(self, loop_id: int | None, liked: bool) -> tuple[int, int, int]:
        """Store a rating durably, then learn from it; returns (loop_id, likes, dislikes)."""
        with self.mutex:
            rec = self._resolve_loop(loop_id)
            loop_id = rec.id
            is_current = self.current is not None and loop_id == self.current.id
            profile = self.profile  # the rating belongs to the profile current when it was given
        likes, dislikes = self.store.add_rating(loop_id, liked, rec.p_like, profile)  # durable before acknowledged
        with self.mutex:
            if profile != self.profile:  # switched meanwhile: the totals shown are the new profile's
                likes, dislikes = self.store.totals(self.profile)
            self.likes, self.dislikes = likes, dislikes
            self.ratings += 1
            self.emit("/dd/rated", loop_id, "like" if liked else "dislike", likes, dislikes)
            loops = self.learner.loops_from_record(rec)
            self.worker.add_job(lambda: self._train(loop_id, loops, int(liked), profile), "learn")
            if liked and loops is not None:
                origin, swing = self.current_origin(), self.swing  # the files sound as the loop did when liked
                self.worker.add_job(lambda: self._write_library(rec, loops, "liked", origin, swing),
                                    "library")
            if is_current:
                try:  # the rating is stored and acknowledged; a failure to switch is a separate error
                    self._request_next()
                except DeepDrummerError as exc:
                    self.report_error(str(exc), "/dd/loop")
        return loop_id, likes, dislikes

    def _train(self, loop_id: int, loops, label: int | None, profile: str | None = None) -> None:
        """(worker) The learner takes the rating (None: taken back) and owes training on it."""
        self.learner.set_rating(loop_id, loops, label, profile)
        if label is not None:
            with self.mutex:
                self.worker.owe_training(self.learner.config.batches_per_rating)

    def next(self) -> None:
        with self.mutex:
            self._request_next()

    def undo(self) -> tuple[int, int, int]:
        profile = self.profile  # undo takes back the current profile's last rating
        undone = self.store.undo_last(profile)
        if undone is None:
            raise CommandError(f"nothing to undo: no rating left in profile {profile!r}")
        loop_id, _ = undone
        with self.mutex:
            self.likes, self.dislikes = self.store.totals(self.profile)
            # what the profile learns from it now: an earlier rating of it may remain (or the copied one's)
            rating = dict(self.store.training_ratings(profile)).get(loop_id)
            rec = self.store.loop(loop_id)
            loops = self.learner.loops_from_record(rec) if rec else None
            self.worker.add_job(lambda: self._train(loop_id, loops, rating, profile), "learn")
            self.emit("/dd/undone", loop_id, self.likes, self.dislikes)
        return loop_id, self.likes, self.dislikes

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise CommandError(f"mode {mode!r} unknown; use one of {', '.join(MODES)}")
        with self.mutex:
            self.mode = mode
            self._settings_changed()
        self.store.set_meta("mode", mode)

    def set_fotf(self, on: bool) -> None:
        with self.mutex:
            self.fotf = bool(on)
            self._settings_changed()
        self.store.set_meta("fotf", "1" if on else "0")

    def set_lock(self, row: int, on: bool) -> None:
        """Keep (on) or free row `row` of the current loop in every loop that follows, in all modes."""
        with self.mutex:
            if self.current is None:
                raise CommandError("no loop is current yet; wait for the first /dd/loop, then lock its rows")
            n_rows = len(self.current.record.rows)
            if not (isinstance(row, int) and 0 <= row < n_rows):
                raise CommandError(f"row {row!r} is outside the loop; use 0-{n_rows - 1} (the rows of /dd/loop, "
                                   f"in order)")
            if on:
                # Rows locked earlier are the same in the current loop, so it can be the one source.
                self.locked.add(row)
                self.lock_source = self.current.proposal.loops
                self.locked_notes[row] = self.current.record.rows[row].note
            else:
                self.locked.discard(row)
                self.locked_notes.pop(row, None)
            self._settings_changed()
            value = self._locks_json()
        self.store.set_meta("locks", value)  # a lock is a setting: the next run on this state dir keeps it

    def _locks_json(self) -> str:
        """The locked rows and the current loop, which holds them as they are (call with the lock held)."""
        if not self.locked or self.current is None:
            return ""
        cur = self.current.record
        return json.dumps({"rows": sorted(self.locked), "samples": cur.samples, "steps": cur.steps,
                           "levels": cur.levels, "notes": cur.notes, "meter": cur.meter})

    def _resume_locks(self, text: str | None) -> None:
        """The locks of the last run, when this kit still has their samples."""
        if not text:
            return
        try:
            data = json.loads(text)
            rows = [int(r) for r in data["rows"]]
            record = LoopRecord.of(samples=list(data["samples"]), steps=list(data["steps"]),
                                   levels=list(data["levels"]), notes=[int(n) for n in data["notes"]],
                                   meter=str(data.get("meter", DEFAULT_METER)))
            notes = record.notes
            if not all(0 <= r < len(notes) for r in rows):
                raise ValueError(f"rows {rows} do not fit {len(notes)} rows")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("the stored locks are unreadable (%s); starting with no row locked", exc)
            return
        loops = self.learner.loops_from_record(record)
        if loops is None:
            log.warning("the locked rows of the last run use samples this kit does not have; "
                        "starting with no row locked")
            return
        if (len(record.rows), record.n_steps, record.meter) != (
                self.rows, self.bars * steps_per_bar(self.meter), self.meter):
            log.warning("the locked rows of the last run do not fit loops of %d rows x %d bars of %s; "
                        "starting with no row locked", self.rows, self.bars, self.meter)
            return
        self.locked, self.lock_source = set(rows), loops
        self.locked_notes = {r: notes[r] for r in rows}
        log.info("rows %s stay locked from the last run", ", ".join(str(r + 1) for r in sorted(rows)))

    def set_density(self, p: float, row: int | None = None) -> None:
        """The prior probability of a hit (the paper's 0.5): of every row, or of row `row`."""
        with self.mutex:
            if row is None:
                self.density = [check_density(p)] * MAX_ROWS
            else:
                if not (isinstance(row, int) and 0 <= row < self.rows):
                    raise CommandError(f"row {row!r} is outside the loop; use 0-{self.rows - 1} "
                                       f"(loops have {self.rows} rows now)")
                self.density[row] = check_density(p, f"row {row} density")
            self._settings_changed()
            value = json.dumps(self.density)
        self.store.set_meta("density", value)

    def set_shape(self, rows: int | None = None, bars: int | None = None, meter: str | None = None) -> None:
        """The shape of the loops proposed from now on (the current loop plays on). Locks that no longer
        fit are released: a locked row past the new row count, every lock when the steps change."""
        problem = shape_problem(rows, bars, meter)
        if problem:
            raise CommandError(problem)
        new_bars = self.bars if bars is None else bars
        new_meter = self.meter if meter is None else meter
        if not self.learner.kind.reads(new_bars, new_meter):
            raise CommandError(f"the {self.learner.kind.name} critic hears one bar of 4/4 only; run with the "
                               f"default critic (no --critic-kind) for {new_bars} bar(s) of {new_meter}")
        with self.mutex:
            steps_change = (new_bars, new_meter) != (self.bars, self.meter)
            self.rows = self.rows if rows is None else rows
            self.bars, self.meter = new_bars, new_meter
            drop = set(self.locked) if steps_change else {r for r in self.locked if r >= self.rows}
            for r in drop:
                self.locked.discard(r)
                self.locked_notes.pop(r, None)
            if not self.locked:
                self.lock_source = None
            self._settings_changed()
            locks = self._locks_json()
        for key, value in (("rows", self.rows), ("bars", self.bars), ("meter", self.meter)):
            self.store.set_meta(key, str(value))
        self.store.set_meta("locks", locks)

    def set_switch(self, at: str) -> None:
        """While playing, a new loop starts at the end of the playing loop's phrase, or at its next bar line."""
        if at not in SWITCH_POINTS:
            raise CommandError(f"switch {at!r} unknown; use one of {', '.join(SWITCH_POINTS)}")
        with self.mutex:
            self.switch_at = at
        self.store.set_meta("switch", at)

    def midi_learn(self, action: str, row: int | None = None) -> None:
        """MIDI learn: the next note/CC press on the input port triggers `action` from now on
        (and after a restart); /dd/learned says which. See player/midilearn.py."""
        self.pad_learning.start(self.playback, action, row, origin=self.current_origin())

    def set_tempo(self, tempo: float) -> None:
        """The internal clock's tempo in BPM (the command table checks the range)."""
        tempo = check_tempo(tempo)
        if self.clock != "internal":
            raise CommandError(f"tempo follows the {self.clock} clock; change it there, or run with --clock internal")
        with self.mutex:
            self.tempo = tempo
            if self.playback is not None:
                self.playback.set_tempo(self.tempo)
                if self.audio_sr:  # the playing bar must follow the tempo
                    self._resend()
        self.store.set_meta("tempo", repr(self.tempo))

    def set_swing(self, amount: float) -> None:
        """Odd steps late by `amount` x one step, from the next bar line, in MIDI and live audio;
        library files written from now on are swung too."""
        problem = swing_problem(amount)
        if problem:
            raise CommandError(problem)
        with self.mutex:
            self.swing = float(amount)
            self._resend()
        self.store.set_meta("swing", repr(self.swing))

    def _check_transport_owner(self) -> None:
        if self.clock != "internal":
            raise CommandError(f"the transport follows the {self.clock} clock; start/stop it there "
                               f"(or run with --clock internal)")

    def play(self) -> None:
        self._check_transport_owner()
        with self.mutex:
            self.playing = True
        if self.playback is not None:
            self.playback.play()

    def stop_transport(self) -> None:
        self._check_transport_owner()
        with self.mutex:
            self.playing = False
        if self.playback is not None:
            self.playback.stop()

    def save(self, name: str | None) -> None:
        """Queue the current loop for the library; /dd/saved follows once the files are on disk."""
        if name is not None:
            library.check_name(name)
        with self.mutex:
            if self.current is None:
                raise CommandError("no loop is current yet; wait for the first /dd/loop")
            queued = self.worker.queued("library")
            if queued >= MAX_QUEUED_JOBS:
                raise CommandError(f"{queued} library writes are already queued; wait for /dd/saved")
            loop, swing = self.current, self.swing
            origin = self.current_origin()
            self.worker.add_job(lambda: self._write_library(loop.record, loop.proposal.loops, name or "saved", origin,
                                                            swing), "library")

    # --- the performer's set: taste profiles, variations, fills, recall (contract v1.2) ------------------

    def profile_reply(self) -> tuple[str, int]:
        """/dd/profile: the current profile and its ratings in effect."""
        with self.mutex:
            args = (self.profile, self.likes + self.dislikes)
        self.emit("/dd/profile", *args)
        return args

    def set_profile(self, name: str, base: str | None = None) -> tuple[str, int]:
        """Make profile `name` current, creating it if new (a copy of `base`'s taste and ratings, else an
        untrained taste over the shared hearing). Stored durably before it is acknowledged; the next loop
        comes from its critic (buffered proposals are dropped, nothing waits for training)."""
        for value in (name, base):
            problem = profile_problem(value) if value is not None else None
            if problem:
                raise ValueError(problem)  # the command table checks names; a caller that did not is a bug
        exists = self.store.has_profile(name)
        if not exists and base is not None and not self.store.has_profile(base):
            raise CommandError(f"profile {base!r} (to copy from) does not exist; use one of "
                               f"{', '.join(self.profile_names)}, or leave `from` out for an untrained taste")
        if exists and base is not None and name != self.profile:
            log.info("profile %s exists already: it keeps its own taste (`from %s` only applies to a new one)",
                     name, base)
        if not exists:
            self.store.add_profile(name, base)
        self.store.set_meta("profile", name)  # durable before acknowledged: a restart resumes it
        with self.mutex:
            if not exists:
                self.profile_names = [n for n, _ in self.store.profiles()]
            if name != self.profile:
                self.profile = name
                self.profile_base = None if exists else base
                self.likes, self.dislikes = self.store.totals(name)
                self._settings_changed()  # the next loop comes from this profile's critic
                log.info("taste profile %s%s", name, f" (new, a copy of {base})" if not exists and base else
                         " (new, untrained)" if not exists else "")
            args = (self.profile, self.likes + self.dislikes)
        self.emit("/dd/profile", *args)
        return args

    def select_profile(self, index: int) -> tuple[str, int]:
        """The index-th profile (0-based, in the order `deepdrummer-live profiles` lists them)."""
        names = list(self.profile_names)
        if not 0 <= index < len(names):
            raise CommandError(f"profile index {index} does not exist; use 0-{len(names) - 1} "
                               f"({', '.join(f'{i} {n}' for i, n in enumerate(names))})")
        return self.set_profile(names[index])

    def next_profile(self) -> tuple[str, int]:
        names = list(self.profile_names)
        at = names.index(self.profile) if self.profile in names else -1
        return self.set_profile(names[(at + 1) % len(names)])

    def program_change(self, number) -> None:
        """MIDI Program Change n on the input port: the n-th profile; a number with no profile is logged."""
        names = list(self.profile_names)
        if not (isinstance(number, int) and 0 <= number < len(names)):
            log.warning("MIDI Program Change %r: no profile with that number (%s); ignored", number,
                        ", ".join(f"{i} {n}" for i, n in enumerate(names)))
            return
        self.control("profile", [names[number]])

    def vary(self) -> None:
        """The next loop is a variation of the current one (the critic's best of a few), at once
        (stopped) or at the next bar line (playing), like /dd/next."""
        with self.mutex:
            if self.current is None:
                raise CommandError("no loop is current yet; wait for the first /dd/loop, then vary it")
            if self.pending is not None:
                raise CommandError(f"loop {self.pending.id} comes at the next bar line already; "
                                   f"vary it once it plays")
            self.vary_of = self.current.id
            self._vary_source = self.current.proposal.loops
            self._settings_changed()
            self._request_next()

    def fill(self) -> None:
        """The next bar played is a fill of the current loop, then the loop goes on. The fill is made by
        the worker (first in its queue) and sent for the next bar line; when the player switches to it,
        the current loop is sent again for the bar line after (see _fill_started)."""
        with self.mutex:
            if self.current is None:
                raise CommandError("no loop is current yet; wait for the first /dd/loop")
            if not self.playing:
                raise CommandError("the transport is stopped: a fill plays at the next bar line; start it "
                                   "first (/dd/play, or the clock that drives it)")
            if self.pending is not None:
                raise CommandError(f"loop {self.pending.id} comes at the next bar line already; ask for the "
                                   f"fill once it plays")
            if self._fill_for is not None:
                raise CommandError(f"a fill of loop {self._fill_for} is on its way already; it plays at the "
                                   f"next bar line")
            loop = self.current
            self._fill_for = loop.id
            self.worker.add_job(lambda: self._make_fill(loop), "fill", first=True)

    def _make_fill(self, loop: Loop) -> None:
        fill, p_like = self.learner.fill(loop.proposal.loops)
        rec = self.learner.record(fill, p_like=p_like, mode="fill").with_notes(loop.record.notes)
        with self.mutex:
            if self._fill_for != loop.id or self.current is not loop or self.pending is not None:
                self._fill_for = None
                return  # the session moved on meanwhile: the fill is not wanted any more
            rec = replace(rec, tempo=self.tempo)
            proposal = replace(loop.proposal, loops=fill, p_like=p_like, mode="fill", vary_of=None)
            self.fill_loop = Loop(replace(rec, id=self.store.add_loop(rec)), proposal)
            if self.playback is None:
                self._fill_started(self.fill_loop)
            else:
                self._send_loop(self.fill_loop)

    def _fill_started(self, fill: Loop) -> None:
        """The fill plays this bar: say so, and send the current loop for the next bar line (once)."""
        self.fill_loop = None
        self._fill_for = None
        back = self.current
        self.emit("/dd/filled", fill.id, back.id if back else -1, *fill.record.steps, origin=None)
        if back is not None and self.pending is None and self.playback is not None:
            self._send_loop(back)

    def recall(self, loop_id: int) -> None:
        """Make an earlier loop of this state dir current again: its own id, samples, notes, steps and
        levels (at the next bar line while playing)."""
        rec = self.store.loop(loop_id)
        if rec is None:
            raise CommandError(f"loop id {loop_id} was never proposed in this state dir; use the id of a "
                               f"/dd/loop (the page lists the liked and saved ones)")
        loops = self.learner.loops_from_record(rec)
        if loops is None:
            names = {s.name for s in self.learner.kit.samples}
            missing = [n for n in rec.samples if n not in names] or rec.samples
            raise CommandError(f"loop {loop_id} cannot be played with kit {self.learner.kit.name}: it uses "
                               f"{', '.join(missing)}; run with --kit {rec.kit} to recall it")
        with self.mutex:
            proposal = Proposal(loops, rec.p_like, rec.mode, self.fotf, self.learner.version, self._prior(),
                                self.profile)
            loop = Loop(rec, proposal)
            self.want_next_since = None  # a loop asked for earlier is superseded by this one
            if self.vary_of is not None:
                self.vary_of = self._vary_source = None
                self._settings_changed()
            self.pending = None
            self._present(loop)

    def _write_library(self, rec: LoopRecord, loops, name: str, origin: Any, swing: float = 0.0) -> None:
        """The library files of a stored loop, at its stored tempo and `swing` (not stored: the one of when
        it was liked or saved)."""
        kit_audio = self.learner.kit.audio_at(WAV_SR)
        audio = [kit_audio[i] for i in loops.sample_ids[0].tolist()]
        mid, wav = library.write_loop(self.store.library, replace(rec, swing=swing), name, audio, WAV_SR)
        self.emit("/dd/saved", rec.id, str(mid), str(wav), origin=origin)

    # --- views ---------------------------------------------------------------------------------------

    def status_args(self) -> list:
        with self.mutex:
            return [self.likes, self.dislikes, self.current.id if self.current else -1, self.mode,
                    str(self.learner.device), self.learner.trainer.steps]

    def snapshot(self) -> dict:
        """Everything a surface shows (terminal, page), as plain data."""
        with self.mutex:
            loop = self.current.record if self.current is not None else None
            return {
                "loop": None if loop is None else {
                    "id": loop.id, "p_like": loop.p_like, "meter": loop.meter, "bars": loop.bars,
                    "steps_per_bar": loop.steps_per_bar, "beats": list(METERS[loop.meter][1]),
                    "rows": [{"sample": row.sample, "note": row.note, "role": row.role, "steps": row.steps,
                              "levels": row.levels, "locked": r in self.locked} for r, row in enumerate(loop.rows)]},
                "shape": {"rows": self.rows, "bars": self.bars, "meter": self.meter, "switch": self.switch_at,
                          "choices": SHAPE_CHOICES},
                "locks": sorted(self.locked), "density": list(self.density[: self.rows]),
                "profile": self.profile, "profiles": list(self.profile_names),
                "likes": self.likes, "dislikes": self.dislikes, "mode": self.mode, "fotf": self.fotf,
                "tempo": self.tempo, "swing": self.swing, "note_map": self.note_map.name, "clock": self.clock,
                "playing": self.playing,
                "step": self.playback.current_step() if isinstance(self.playback, VirtualPlayback) else self.step,
                "device": str(self.learner.device), "train_steps": self.learner.trainer.steps,
                "hearing": self.learner.hearing_progress(),  # [learnt, of] while it learns to hear the kit
                "taste": self.learner.taste_map(),  # what the critic that reads loops prefers and avoids
                "losses": list(self.worker.stats.losses), "last_error": self.last_error,
            }
