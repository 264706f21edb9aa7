"""The player process: clock, MIDI out/in, controller input and the live audio bar lines.

It runs in its own interpreter (multiprocessing "spawn"), so torch work in the main process
cannot hold a GIL the clock needs. The main process talks to it through `PlayerHandle`:
commands down one pipe, events up another (see docs/architecture.md, "Player process
protocol"). Inside the child, one engine thread owns the output port and all timing; the
MIDI input callback and the command pipe only feed its inbox.
"""

from __future__ import annotations

import heapq
import math
import multiprocessing as mp
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from deepdrummer_live.errors import AudioLost, UsageError
from deepdrummer_live.player import midi
from deepdrummer_live.player.clock import (
    STEPS_PER_BAR,
    ClockSource,
    InternalClock,
    LinkClock,
    MidiClockFollower,
    check_bpm,
)
from deepdrummer_live.player.controller import program_event
from deepdrummer_live.sound.dynamics import DEFAULT_LEVEL, LEVEL_CHARS, velocity
from deepdrummer_live.vocab import swing_problem

CLOCKS = ("internal", "midi", "link")
AUDIO_MODES = ("pyo", "none")
SPIN_S = 0.001  # sleep until this close to a deadline, then spin
HOUSEKEEPING_S = 0.5  # port liveness checks
REOPEN_S = 2.0  # retry period for a vanished MIDI system
IDLE_WAIT_S = 0.25  # longest blocking wait when nothing is scheduled (follower mode)
START_TIMEOUT_S = 30.0


@dataclass
class PlayerConfig:
    midi_backend: str = field(default_factory=lambda: midi.default_backend() or "none")
    midi_out: str | None = "DeepDrummer"
    midi_in: str | None = None
    clock: str = "internal"
    tempo: float = 120.0
    midi_offset_ms: float = 0.0
    controller: str | None = None  # a built-in mapping name (paths.controllers_dir()) or a .toml path
    learned: Path | None = None  # MIDI-learned bindings (player/midilearn.py), laid over `controller`
    audio: str = "pyo"
    audio_backend: str = "portaudio"
    audio_sr: int = 48000
    audio_out_path: Path | None = None  # offline rendering target for audio_backend "offline"
    audio_required: bool = False  # asked for with a flag: no audio ends `run` (exit 2) instead of a warning
    stderr_path: Path | None = None  # libjack/ALSA/pyo print to fd 2: keep that in the daemon's log
    realtime: bool = True  # try SCHED_FIFO (then nice) for the engine thread; off = plain

    def validate(self) -> None:
        """UsageError naming the bad value and the fix; called before anything opens."""
        if self.midi_backend not in midi.BACKENDS:
            raise UsageError(f"--midi-backend {self.midi_backend}: unknown; use one of "
                             f"{'/'.join(midi.BACKENDS)}")
        if self.clock not in CLOCKS:
            raise UsageError(f"--clock {self.clock}: unknown; use one of {'/'.join(CLOCKS)}")
        try:
            check_bpm(self.tempo)
        except ValueError as exc:
            raise UsageError(f"--tempo {self.tempo}: {exc}") from exc
        if not (math.isfinite(self.midi_offset_ms) and abs(self.midi_offset_ms) <= 500):
            raise UsageError(f"--midi-offset-ms {self.midi_offset_ms}: out of range -500..500; "
                             f"use the DAW's reported latency in ms")
        if self.audio not in AUDIO_MODES:
            raise UsageError(f"--audio {self.audio}: unknown; use one of {'/'.join(AUDIO_MODES)}")
        if self.clock == "midi" and (self.midi_backend == "none" or not self.midi_in):
            raise UsageError("--clock midi needs an input port to receive the clock on; add "
                             "--midi-in NAME (and a --midi-backend other than none)")


# ---- the engine (inside the player process; unit-testable with fakes) ---------------------

_PRIO = {"off": 0, "bar": 1, "on": 2}  # at equal times: note-offs before re-triggers


def _parse_rows(rows) -> list[tuple[int, str, tuple[int, ...]]]:
    """Player rows `{note, steps, levels?}` -> (note, steps, velocity per step, 0 on rests).

    A row without `levels` plays every hit at DEFAULT_LEVEL.
    """
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"set_loop rows {rows!r}: need a non-empty list of {{note, steps, levels}}")
    out = []
    n_steps = None
    for i, row in enumerate(rows):
        note, steps = row.get("note"), row.get("steps")
        if not (isinstance(note, int) and 0 <= note <= 127):
            raise ValueError(f"set_loop row {i}: note {note!r} out of range 0..127")
        if not (isinstance(steps, str) and steps and set(steps) <= {"x", "."}):
            raise ValueError(f"set_loop row {i}: steps {steps!r} must be 'x'/'.' characters")
        if n_steps is not None and len(steps) != n_steps:
            raise ValueError(f"set_loop row {i}: {len(steps)} steps, other rows have {n_steps}")
        n_steps = len(steps)
        levels = row.get("levels")
        if levels is None:
            levels = "".join(str(DEFAULT_LEVEL) if c == "x" else "." for c in steps)
        if not (isinstance(levels, str) and len(levels) == n_steps
                and all((c == ".") if s == "." else (c in LEVEL_CHARS) for s, c in zip(steps, levels))):
            raise ValueError(f"set_loop row {i}: levels {levels!r} must have '1'-'9' where steps {steps!r} "
                             f"has 'x' and '.' where it has '.'")
        out.append((note, steps, tuple(0 if c == "." else velocity(int(c)) for c in levels)))
    return out


def check_swing(amount) -> float:
    """A swing amount 0.0-0.5 as a float, else ValueError naming it and the range."""
    problem = swing_problem(amount)
    if problem:
        raise ValueError(problem)
    return float(amount)


class Sequencer:
    """Turns clock steps into notes, switches loops on bar lines, maps controller input.

    `ports` needs send(bytes), alive(), close(); `emit(event_dict)` must not block.
    The threaded `run()` loop calls the same `tick()`/`handle_*()` that unit tests call
    with an injected time.
    """

    def __init__(self, config: PlayerConfig, ports, clock_source: ClockSource, emit: Callable[[dict], None],
                 audio=None, controller=None, now: Callable[[], float] = time.perf_counter,
                 reopen: Callable[[], object] | None = None):
        self.config = config
        self.ports = ports
        self.clock = clock_source
        self.emit = emit
        self.audio = audio
        self.controller = controller
        self.now = now
        self._reopen = reopen
        self.offset = config.midi_offset_ms / 1000.0
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.rows: list[tuple[int, str, tuple[int, ...]]] = []
        self.swing = 0.0  # odd steps late by this x one step; set_loop commands carry it
        self.loop_id: int | None = None
        self.loop_start = 0  # song step where the current loop's step 0 falls
        self.pending: tuple | None = None  # (loop_id, rows, audio, swing) waiting for a bar line
        self.playing = False
        self.sounding: dict[int, int] = {}
        self._heap: list = []
        self._seq = 0
        self._running = True
        self._ports_down = False
        self._next_housekeeping = 0.0
        self._next_reopen = 0.0
        self.midi_ignored = 0
        self.learning = False  # MIDI learn: forward the next press instead of mapping it
        self._lost_audio = None  # closed at shutdown, not on the clock thread when it fails

    # -- inputs --------------------------------------------------------------------------

    def on_midi_input(self, data: list[int], t: float) -> None:
        """Called from the MIDI system's thread: only queue."""
        self.inbox.put(("midi", data, t))

    def handle_midi(self, data: list[int], t: float) -> None:
        if not data:
            self.midi_ignored += 1
            return
        status = data[0]
        if status in midi.REALTIME or status == midi.SONG_POSITION:
            self._clock_events(self.clock.on_midi(data, t), t)
            return
        if self.learning and 0x80 <= status < 0xF0:
            from deepdrummer_live.player.midilearn import is_press

            if is_press(data):
                self.learning = False  # one press is one binding
                self.emit({"type": "learn_midi", "data": list(data[:3])})
                return
        program = program_event(data)  # a taste profile (player/controller.py), with or without a mapping
        if program is not None:
            self.emit(program)
            return
        if self.controller is not None and 0x80 <= status < 0xF0:
            event = self.controller.handle(data)
            if event is not None:
                self.emit(event)
            return
        self.midi_ignored += 1  # sysex, active sensing, unmapped input: never fatal

    def handle_command(self, cmd: dict, now: float) -> None:
        kind = cmd.get("type") if isinstance(cmd, dict) else None
        try:
            if kind == "set_loop":
                self._set_loop(cmd, now)
            elif kind == "play":
                self._clock_events(self.clock.play(now), now)
            elif kind == "stop":
                self._clock_events(self.clock.stop(now), now)
            elif kind == "tempo":
                self._clock_events(self.clock.set_tempo(cmd.get("bpm"), now), now)
            elif kind == "stats":
                self.emit(self.stats())
            elif kind == "learn":
                self.learning = bool(cmd.get("on", True))
                self.emit({"type": "learn_armed", "on": self.learning})  # press the pad from now on
            elif kind == "bind":
                self._bind(cmd)
            elif kind == "shutdown":
                self._running = False
            else:
                raise ValueError(f"player command {kind!r} unknown; use set_loop, play, stop, "
                                 f"tempo, stats, learn, bind or shutdown")
        except (ValueError, TypeError) as exc:
            self.emit({"type": "error", "message": str(exc), "address": "/dd/midi"})

    def _bind(self, cmd: dict) -> None:
        from deepdrummer_live.player.controller import Binding, ControllerMap

        b = Binding(cmd["kind"], int(cmd["number"]), cmd.get("channel"), cmd["action"], cmd.get("value"))
        if self.controller is None:
            self.controller = ControllerMap("learned", None, [])
            self.controller.tempo_hint = self.config.tempo
        self.controller.bind(b)
        self.emit({"type": "learn_bound", "kind": b.kind, "number": b.number, "channel": b.channel})

    def stats(self) -> dict:
        """How late the clock ticks left this process (send side, before any MIDI system)."""
        late = sorted(self.clock.lateness)
        out = {"type": "stats", "midi_ignored": self.midi_ignored, "ticks": len(late)}
        if late:
            out["tick_late_ms_p50"] = round(late[len(late) // 2] * 1000, 3)
            out["tick_late_ms_p99"] = round(late[min(len(late) - 1, int(0.99 * len(late)))] * 1000, 3)
            out["tick_late_ms_max"] = round(late[-1] * 1000, 3)
        return out

    def _set_loop(self, cmd: dict, now: float) -> None:
        rows = _parse_rows(cmd.get("rows"))
        # Swing changes with the loop, at its bar line, so MIDI and the (swung) audio bar agree.
        swing = self.swing if cmd.get("swing") is None else check_swing(cmd["swing"])
        entry = (cmd.get("loop_id"), rows, cmd.get("audio"), swing)
        if self.playing and cmd.get("at_bar", True):
            self.pending = entry
        else:
            self._apply(entry, bar_step=None)

    def _apply(self, entry: tuple, bar_step: int | None) -> None:
        self.loop_id, self.rows, audio, self.swing = entry
        self.pending = None
        if bar_step is not None:
            self.loop_start = bar_step
        elif not self.playing:
            self.loop_start = 0
        if audio is not None and self.audio is not None:
            self._audio_call(self.audio.queue_bar, audio)
        self.emit({"type": "switched", "loop_id": self.loop_id})

    # -- clock events ----------------------------------------------------------------------

    def _clock_events(self, events: list, now: float) -> None:
        for event in events:
            kind = event[0]
            if kind == "send":
                self._send(event[1])
            elif kind == "step":
                self._step(*event[1:])
            elif kind == "transport":
                self._transport(event[1])
            elif kind == "tempo":
                self.emit({"type": "tempo", "bpm": event[1]})

    def _push(self, t: float, kind: str, arg=None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, _PRIO[kind], self._seq, kind, arg))

    def _step(self, step: int, t_step: float, step_s: float) -> None:
        bar_line = step % STEPS_PER_BAR == 0
        if bar_line and self.pending is not None:
            self._apply(self.pending, bar_step=step)
        t_on = t_step + self.offset
        if bar_line and self.audio is not None:
            self._push(t_on, "bar")
        if self.rows:
            pos = (step - self.loop_start) % len(self.rows[0][1])
            if pos % 2:
                # Swing: odd steps late by swing x one step (the clock's ticks are not moved). The
                # note-off stays half a step after the note-on: at most at the next step's onset,
                # and note-offs sort first there.
                t_on += self.swing * step_s
            for note, _, velocities in self.rows:
                if velocities[pos]:
                    self._push(t_on, "on", (note, velocities[pos]))
                    self._push(t_on + step_s / 2.0, "off", note)
        self.emit({"type": "step", "step": step % STEPS_PER_BAR})

    def _transport(self, playing: bool) -> None:
        self.playing = playing
        if not playing:
            self._flush()
            if self.audio is not None:
                self._audio_call(self.audio.stop_transport)
            if self.pending is not None:  # stopped: a waiting loop applies at once
                self._apply(self.pending, bar_step=None)
        else:
            self.loop_start = 0
        self.emit({"type": "transport", "playing": playing})

    def _flush(self) -> None:
        """Note-offs for everything sounding, drop what is scheduled, all-notes-off."""
        self._heap.clear()
        for note, count in list(self.sounding.items()):
            for _ in range(count):
                self._send(midi.note_off(note))
        self.sounding.clear()
        self._send(midi.all_notes_off())

    def _send(self, data: list[int]) -> None:
        if self._ports_down:
            return
        try:
            self.ports.send(data)
        except ConnectionError as exc:
            self._port_fault(str(exc))

    def _port_fault(self, why: str) -> None:
        if self._ports_down:
            return
        self._ports_down = True
        self.sounding.clear()
        self._next_reopen = self.now() + REOPEN_S
        self.emit({"type": "error", "message": f"MIDI ports lost ({why}); still running, "
                                               f"retrying every {REOPEN_S:g} s", "address": "/dd/midi"})

    def _audio_call(self, method: Callable, *args) -> None:
        """Call the live audio; if its server went away (AudioLost), say so once and play on
        without audio: MIDI and the clock must not stop with it."""
        try:
            method(*args)
        except AudioLost as exc:
            self._lost_audio, self.audio = self.audio, None
            self.emit({"type": "error", "message": f"{exc}; MIDI and the clock keep running", "address": "/dd/audio"})

    # -- time ------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Do everything due at `now`: clock output, steps, scheduled notes, housekeeping."""
        self._clock_events(self.clock.advance(now), now)
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, _, kind, arg = heapq.heappop(heap)
            if kind == "on":
                note, vel = arg
                self._send(midi.note_on(note, vel))
                self.sounding[note] = self.sounding.get(note, 0) + 1
            elif kind == "off":
                if self.sounding.get(arg):
                    self.sounding[arg] -= 1
                    if not self.sounding[arg]:
                        del self.sounding[arg]
                    self._send(midi.note_off(arg))
            elif kind == "bar" and self.audio is not None:
                self._audio_call(self.audio.bar_line)
        if now >= self._next_housekeeping:
            self._next_housekeeping = now + HOUSEKEEPING_S
            self._housekeeping(now)

    def _housekeeping(self, now: float) -> None:
        if not self._ports_down and not self.ports.alive():
            self._port_fault("the MIDI system went away")
        if self._ports_down and self._reopen is not None and now >= self._next_reopen:
            self._next_reopen = now + REOPEN_S
            try:
                new_ports = self._reopen()
            except UsageError:
                return  # still down; the error event was sent when it went away
            self.ports.close()
            self.ports = new_ports
            self._ports_down = False
            self.emit({"type": "ports", "midi_out": new_ports.out_full_name,
                       "midi_in": new_ports.in_full_name})

    def deadline(self, now: float) -> float:
        d = self.clock.deadline()
        d = now + IDLE_WAIT_S if d is None else d
        if self._heap:
            d = min(d, self._heap[0][0])
        return min(d, self._next_housekeeping)

    def run(self) -> None:
        """The engine thread: wait for the next deadline or input, whichever is first."""
        now_fn, inbox = self.now, self.inbox
        self.clock.resync(now_fn())
        while self._running:
            now = now_fn()
            self.tick(now)
            deadline = self.deadline(now)
            timeout = deadline - now_fn() - SPIN_S
            if timeout > 0:
                try:
                    item = inbox.get(timeout=timeout)
                except queue.Empty:
                    item = None
                while item is not None:
                    self._handle_item(item)
                    try:
                        item = inbox.get_nowait()
                    except queue.Empty:
                        item = None
                if now_fn() < deadline - SPIN_S:
                    continue  # woken by input early: recompute the deadline
            while now_fn() < deadline:
                pass

    def _handle_item(self, item: tuple) -> None:
        if item[0] == "midi":
            self.handle_midi(item[1], item[2])
        else:
            self.handle_command(item[1], self.now())

    def close(self) -> None:
        """Flush note-offs (and Stop when leading), close ports and audio."""
        if self.playing and self.clock.kind == "internal":  # the leader tells followers it stopped
            self._send([midi.STOP])
        self._flush()
        self.playing = False
        for audio in (self.audio, self._lost_audio):
            if audio is None:
                continue
            try:
                if audio is self.audio:
                    audio.stop_transport()
                audio.close()
            except Exception as exc:  # audio teardown must not keep the ports open
                print(f"deepdrummer-live: closing audio: {exc}", file=sys.stderr)
        self.clock.close()
        self.ports.close()


# ---- the child process ---------------------------------------------------------------------

def _make_clock(config: PlayerConfig, now: float) -> ClockSource:
    lead = max(0.0, -config.midi_offset_ms / 1000.0)
    if config.clock == "internal":
        return InternalClock(config.tempo, now, lead)
    if config.clock == "midi":
        return MidiClockFollower(lead, fallback_bpm=config.tempo)
    try:
        import asyncio

        import aalink

        # aalink wants an event loop for its callbacks; we only poll, so it never runs
        link = aalink.Link(config.tempo, asyncio.new_event_loop())
    except Exception as exc:  # ImportError, or the native library failing to start
        raise UsageError(f"--clock link: Ableton Link is unavailable ({exc}); install aalink "
                         f"(pip install aalink) or use --clock internal/midi") from exc
    return LinkClock(link, config.tempo, now, lead)


RT_PRIORITY = 5  # below a realtime jackd's process thread (its default is 10)


def raise_priority() -> str | None:
    """Give the calling thread SCHED_FIFO, else a better nice value; what worked, or None.

    Only this thread: its waits are short sleeps plus <= 1 ms spins, so it cannot hog a core.
    """
    if hasattr(os, "sched_setscheduler"):
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(RT_PRIORITY))
            return "fifo"
        except OSError:
            pass  # EPERM without CAP_SYS_NICE / rtprio limit: try nice next
    if hasattr(os, "setpriority"):
        try:
            os.setpriority(os.PRIO_PROCESS, 0, -10)
            return "nice"
        except OSError:
            return None  # unprivileged: the clock still runs, just with more jitter under load
    return None


def _open_audio(config: PlayerConfig, emit):
    if config.audio == "none":
        return None, None
    try:
        from deepdrummer_live.player.audio import LoopAudio

        audio = LoopAudio(config.audio_backend, config.audio_sr, config.audio_out_path)
        audio.start()
    except Exception as exc:  # pyo raises many types; any of them means "no audio here"
        if config.audio_required:
            fix = "" if "--audio none" in str(exc) else ("; start the audio system, use --audio-backend offline, "
                                                          "or --audio none")
            raise UsageError(f"--audio pyo: no audio output: {exc}{fix}") from exc
        # the default audio on a machine without any: MIDI keeps fully working, and the log says so
        emit({"type": "error", "message": f"running without audio: {exc}", "address": "/dd/audio"})
        return None, None
    return audio, f"pyo/{config.audio_backend}"


def player_main(config: PlayerConfig, cmd_conn, evt_conn) -> None:
    """Entry point of the player process."""
    import gc

    if config.stderr_path is not None:
        # C libraries write diagnostics straight to fd 2; the daemon's stderr stays one line per error.
        fd = os.open(config.stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(fd, 2)
        os.close(fd)
    sys.setswitchinterval(0.0005)  # the engine thread gets the GIL back quickly from helpers
    outbox: queue.SimpleQueue = queue.SimpleQueue()

    def sender() -> None:
        while True:
            event = outbox.get()
            if event is None:
                return
            try:
                evt_conn.send(event)
            except (OSError, EOFError):
                return  # the parent is gone; the command pipe's EOF stops the engine

    sender_thread = threading.Thread(target=sender, name="dd-player-events", daemon=True)
    sender_thread.start()
    emit = outbox.put
    engine = None
    try:
        config.validate()
        controller = None
        if config.controller:
            from deepdrummer_live.player.controller import load_mapping

            controller = load_mapping(config.controller)
        if config.learned is not None:
            from deepdrummer_live.player.midilearn import load_learned, overlay

            learned = load_learned(config.learned)
            if learned is not None:
                controller = overlay(controller, learned)
        clock_source = _make_clock(config, time.perf_counter())
        out_name = config.midi_out if config.midi_backend != "none" else None
        in_name = config.midi_in if config.midi_backend != "none" else None
        holder: dict = {}

        def on_input(data, t):
            target = holder.get("engine")
            if target is not None:  # input before the engine exists is dropped
                target.on_midi_input(data, t)

        def open_ports():
            ports = midi.MidiPorts(config.midi_backend, out_name, in_name, on_input)
            ports.open()
            return ports

        ports = open_ports()
        audio, audio_name = _open_audio(config, emit)
        engine = Sequencer(config, ports, clock_source, emit, audio=audio, controller=controller,
                        reopen=open_ports)
        holder["engine"] = engine
    except UsageError as exc:
        emit({"type": "fatal", "message": str(exc)})
        outbox.put(None)
        sender_thread.join(timeout=5)
        return

    def reader() -> None:
        while True:
            try:
                cmd = cmd_conn.recv()
            except (EOFError, OSError):
                cmd = {"type": "shutdown"}  # the parent died or closed: stop cleanly
            if not isinstance(cmd, dict):
                cmd = {"type": repr(cmd)}  # answered with an error event by the engine
            engine.inbox.put(("cmd", cmd))
            if cmd.get("type") == "shutdown":
                return

    threading.Thread(target=reader, name="dd-player-commands", daemon=True).start()
    # the engine runs on this (main) thread of the child, so priority applies to it alone
    priority = raise_priority() if config.realtime else None
    emit({"type": "ready", "midi_out": ports.out_full_name, "midi_in": ports.in_full_name,
          "audio": audio_name, "priority": priority})
    gc.collect()
    gc.freeze()  # fewer objects for the collector to walk while the clock runs
    try:
        engine.run()
    finally:
        engine.close()
        outbox.put(None)
        sender_thread.join(timeout=5)


# ---- the main-process side -----------------------------------------------------------------

_main_lock = threading.Lock()


class _hidden_main:
    """Keep "spawn" from re-running the parent's __main__ in the child.

    The child's entry point lives in this module, so it never needs __main__; re-running it
    would import torch (seconds, hundreds of MB) or, for a script without a main guard,
    start a second player.
    """

    def __enter__(self):
        _main_lock.acquire()
        self.main = sys.modules.get("__main__")
        self.saved = {k: getattr(self.main, k) for k in ("__file__", "__spec__")
                      if self.main is not None and hasattr(self.main, k)}
        for k in self.saved:
            if k == "__spec__":
                self.main.__spec__ = None
            else:
                delattr(self.main, k)
        return self

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            setattr(self.main, k, v)
        _main_lock.release()
        return False

class PlayerHandle:
    """Starts and talks to the player process. Call `close()` explicitly."""

    def __init__(self, config: PlayerConfig, on_event: Callable[[dict], None]):
        self.config = config
        self.on_event = on_event
        self.ready: dict | None = None
        self._proc = None
        self._cmd = None
        self._evt = None
        self._reader: threading.Thread | None = None
        self._closing = False
        self._send_lock = threading.Lock()

    def start(self, timeout: float = START_TIMEOUT_S) -> dict:
        """Spawn the player; return its `ready` event or raise UsageError with its message."""
        self.config.validate()
        ctx = mp.get_context("spawn")
        cmd_r, cmd_w = ctx.Pipe(duplex=False)
        evt_r, evt_w = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=player_main, args=(self.config, cmd_r, evt_w),
                                 name="deepdrummer-player", daemon=True)
        with _hidden_main():
            self._proc.start()
        cmd_r.close()  # only the child holds these ends, so EOF means the other side died
        evt_w.close()
        self._cmd, self._evt = cmd_w, evt_r
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not evt_r.poll(remaining):
                self.close()
                raise UsageError(f"the player process did not start within {timeout:g} s; "
                                 f"check the MIDI/audio system or use --midi-backend none --audio none")
            try:
                event = evt_r.recv()
            except EOFError:
                code = self._proc.exitcode
                self.close()
                raise UsageError(f"the player process exited during startup (exit code {code}); "
                                 f"run with --midi-backend none --audio none to isolate the cause") from None
            if event.get("type") == "fatal":
                self.close()
                raise UsageError(event["message"])
            if event.get("type") == "ready":
                self.ready = event
                break
            self.on_event(event)  # e.g. "running without audio" before ready
        self._reader = threading.Thread(target=self._read_events, name="dd-player-reader",
                                        daemon=True)
        self._reader.start()
        return event

    def _read_events(self) -> None:
        while True:
            try:
                event = self._evt.recv()
            except (EOFError, OSError):
                if not self._closing:
                    code = self._proc.exitcode if self._proc else None
                    self.on_event({"type": "error", "address": "/dd/midi",
                                   "message": f"player process ended unexpectedly (exit code {code})"})
                return
            self.on_event(event)

    def _send(self, cmd: dict) -> None:
        if self._cmd is None:
            raise RuntimeError("player is not running; call start() first")
        with self._send_lock:
            self._cmd.send(cmd)

    def set_loop(self, loop_id: int, rows: list[dict], audio=None, at_bar: bool = True,
                 swing: float | None = None) -> None:
        """Play `rows` ({note, steps, levels}) from the next bar line (or now); `swing` None keeps it."""
        self._send({"type": "set_loop", "loop_id": loop_id, "rows": rows, "audio": audio,
                    "at_bar": at_bar, "swing": swing})

    def play(self) -> None:
        self._send({"type": "play"})

    def stop(self) -> None:
        self._send({"type": "stop"})

    def set_tempo(self, bpm: float) -> None:
        self._send({"type": "tempo", "bpm": float(bpm)})

    @property
    def can_learn(self) -> bool:
        """MIDI learn needs the input port (and the controller map) of the player."""
        return bool(self.ready and self.ready.get("midi_in"))

    def learn(self, on: bool = True) -> None:
        """The next note/CC press comes back as a `learn_midi` event instead of being mapped."""
        self._send({"type": "learn", "on": on})

    def bind(self, binding) -> None:
        """Add a controller binding (a `controller.Binding`) to the player's mapping."""
        self._send({"type": "bind", "kind": binding.kind, "number": binding.number, "channel": binding.channel,
                    "action": binding.action, "value": binding.value})

    def request_stats(self) -> None:
        """The player answers with a `stats` event (send-side clock lateness)."""
        self._send({"type": "stats"})

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def close(self, timeout: float = 5.0) -> None:
        """Shutdown (note-offs flushed by the child), join, terminate if stuck."""
        self._closing = True
        if self._cmd is not None:
            try:
                with self._send_lock:
                    self._cmd.send({"type": "shutdown"})
            except (OSError, BrokenPipeError):
                pass  # the child is already gone; joining below reaps it
        if self._proc is not None:
            self._proc.join(timeout)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join(2.0)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(2.0)
        if self._reader is not None:
            self._reader.join(2.0)
            self._reader = None
        for conn in (self._cmd, self._evt):
            if conn is not None:
                conn.close()
        self._cmd = self._evt = None
        self._proc = None
