"""The engine of the player process: clock steps -> notes, loops switched on bar lines, controller input.

One engine thread owns the output port and all timing; the MIDI input callback and the command pipe
only feed its inbox (player/process.py starts it; player/protocol.py spells out its messages). Times
are absolute on one monotonic clock (perf_counter). With ports that place each message at its own
time (`lookahead` > 0: player/jackmidi.py writes it at its frame in JACK's cycle), the engine runs
that far ahead of the clock and hands every message over with its due time; with ports that send
now (python-rtmidi) it sleeps to each deadline and spins the last millisecond.
"""

from __future__ import annotations

import heapq
import queue
import sys
import time
from collections.abc import Callable

from deepdrummer_live.errors import AudioLost, UsageError
from deepdrummer_live.player import midi
from deepdrummer_live.player import protocol as msg
from deepdrummer_live.player.clock import STEPS_PER_BAR, ClockSource
from deepdrummer_live.player.controller import program_event
from deepdrummer_live.player.protocol import PlayerConfig, check_swing, parse_rows

SPIN_S = 0.001  # sleep until this close to a deadline, then spin (ports that send now only)
HOUSEKEEPING_S = 0.5  # port liveness checks
REOPEN_S = 2.0  # retry period for a vanished MIDI system
IDLE_WAIT_S = 0.25  # longest blocking wait when nothing is scheduled (follower mode)

_PRIO = {"off": 0, "bar": 1, "on": 2}  # at equal times: note-offs before re-triggers


class Sequencer:
    """Turns clock steps into notes, switches loops on bar lines, maps controller input.

    `ports` needs send(bytes), alive(), close(); ports with a `lookahead` (seconds) > 0 also
    send_at(bytes, t) and get every message that long before its time `t`. `emit(event)` must not
    block. The threaded `run()` loop calls the same `tick()`/`handle_*()` that unit tests call with
    an injected time; that time is the engine's (the clock's plus `ahead`).
    """

    def __init__(self, config: PlayerConfig, ports, clock_source: ClockSource, emit: Callable[[dict], None],
                 audio=None, controller=None, now: Callable[[], float] | None = None,
                 reopen: Callable[[], object] | None = None):
        self.config = config
        self.ports = ports
        self.clock = clock_source
        self.emit = emit
        self.audio = audio
        self.controller = controller
        # one clock for everything: the timed ports' own (JACK's frames), else perf_counter
        self.now = now if now is not None else self._ports_clock
        self._reopen = reopen
        # how far the engine runs ahead of the clock: the ports place each message at its time
        self.ahead = float(getattr(ports, "lookahead", 0.0) or 0.0)
        self.offset = config.midi_offset_ms / 1000.0
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.rows: list[msg.ParsedRow] = []
        self.swing = 0.0  # odd steps late by this x one step; set_loop commands carry it
        self.loop_id: int | None = None
        self.loop_start = 0  # song step where the current loop's step 0 falls
        self.bar_steps = STEPS_PER_BAR  # steps in a bar of the current loop's meter
        # (loop_id, rows, audio, swing, bar_steps, switch_at) waiting for the phrase's end or a bar line
        self.pending: tuple | None = None
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

    def _ports_clock(self) -> float:
        clock = getattr(self.ports, "clock", None)
        return clock() if clock is not None else time.perf_counter()

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
                self.emit(msg.learn_midi(list(data[:3])))
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

    def handle_command(self, cmd: msg.Command, now: float) -> None:
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
                self.emit(msg.learn_armed(self.learning))  # press the pad from now on
            elif kind == "bind":
                self._bind(cmd)
            elif kind == "shutdown":
                self._running = False
            else:
                raise ValueError(f"player command {kind!r} unknown; use {', '.join(msg.COMMANDS[:-1])} "
                                 f"or {msg.COMMANDS[-1]}")
        except (ValueError, TypeError) as exc:
            self.emit(msg.error(str(exc), "/dd/midi"))

    def _bind(self, cmd: dict) -> None:
        from deepdrummer_live.player.controller import Binding, ControllerMap

        b = Binding(cmd["kind"], int(cmd["number"]), cmd.get("channel"), cmd["action"], cmd.get("value"))
        if self.controller is None:
            self.controller = ControllerMap("learned", None, [])
            self.controller.tempo_hint = self.config.tempo
        self.controller.bind(b)
        self.emit(msg.learn_bound(b.kind, b.number, b.channel))

    def stats(self) -> msg.StatsReport:
        """How late the clock ticks left this process (send side, before any MIDI system)."""
        late = sorted(self.clock.lateness)
        out: msg.StatsReport = {"type": "stats", "midi_ignored": self.midi_ignored, "ticks": len(late)}
        if late:
            out["tick_late_ms_p50"] = round(late[len(late) // 2] * 1000, 3)
            out["tick_late_ms_p99"] = round(late[min(len(late) - 1, int(0.99 * len(late)))] * 1000, 3)
            out["tick_late_ms_max"] = round(late[-1] * 1000, 3)
        return out

    def _set_loop(self, cmd: dict, now: float) -> None:
        rows = parse_rows(cmd.get("rows"))
        # Swing changes with the loop, at its bar line, so MIDI and the (swung) audio bar agree.
        swing = self.swing if cmd.get("swing") is None else check_swing(cmd["swing"])
        bar_steps = int(cmd.get("steps_per_bar") or STEPS_PER_BAR)
        if len(rows[0][1]) % bar_steps:
            raise ValueError(f"set_loop: {len(rows[0][1])} steps are not whole bars of {bar_steps} steps")
        entry = (cmd.get("loop_id"), rows, cmd.get("audio"), swing, bar_steps, cmd.get("switch_at", "phrase"))
        if self.playing and cmd.get("at_bar", True):
            self.pending = entry
        else:
            self._apply(entry, bar_step=None)

    def _apply(self, entry: tuple, bar_step: int | None) -> None:
        self.loop_id, self.rows, audio, self.swing, self.bar_steps, _ = entry
        self.pending = None
        if bar_step is not None:
            self.loop_start = bar_step
        elif not self.playing:
            self.loop_start = 0
        if audio is not None and self.audio is not None:
            self._audio_call(self.audio.queue_bar, audio)
        self.emit(msg.switched(self.loop_id))

    # -- clock events ----------------------------------------------------------------------

    def _clock_events(self, events: list, now: float) -> None:
        for event in events:
            kind = event[0]
            if kind == "send":  # ("send", bytes, due time)
                self._send(event[1], event[2])
            elif kind == "step":
                self._step(*event[1:])
            elif kind == "transport":
                self._transport(event[1], now)
            elif kind == "tempo":
                self.emit(msg.tempo_changed(event[1]))

    def _push(self, t: float, kind: str, arg=None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, _PRIO[kind], self._seq, kind, arg))

    def _step(self, step: int, t_step: float, step_s: float) -> None:
        if self.pending is not None:
            # the playing loop's phrase end (its step 0 comes round), or its next bar line when asked
            n_steps = len(self.rows[0][1]) if self.rows else self.bar_steps
            unit = n_steps if self.pending[5] == "phrase" else self.bar_steps
            if (step - self.loop_start) % unit == 0:
                self._apply(self.pending, bar_step=step)
        t_on = t_step + self.offset
        n_steps = len(self.rows[0][1]) if self.rows else self.bar_steps
        pos = (step - self.loop_start) % n_steps
        if pos == 0 and self.audio is not None:  # the audio is the whole loop (every bar of the phrase)
            period = getattr(self.ports, "period", 0)
            if period and getattr(self.ports, "rate", 0):
                # JACK: the bar starts at its frame. The audio is triggered half a period into the cycle before
                # the bar's (far from a cycle boundary), with the bar's frame, and delays itself into the block.
                bar_frame = round(t_on * self.ports.rate)
                t_call = ((bar_frame // period - 1) * period + period // 2) / self.ports.rate
                self._push(t_call + self.ahead, "bar", bar_frame)
            else:
                # the audio starts its bar when called: at the bar's time on the clock, not the engine's
                self._push(t_on + self.ahead, "bar")
        if self.rows:
            if pos % 2:
                # Swing: odd steps late by swing x one step (the clock's ticks are not moved). The
                # note-off stays half a step after the note-on: at most at the next step's onset,
                # and note-offs sort first there.
                t_on += self.swing * step_s
            for note, _, velocities in self.rows:
                if velocities[pos]:
                    self._push(t_on, "on", (note, velocities[pos]))
                    self._push(t_on + step_s / 2.0, "off", note)
        self.emit(msg.step(pos))

    def _transport(self, playing: bool, now: float) -> None:
        self.playing = playing
        if not playing:
            self._flush(now)
            if self.audio is not None:
                self._audio_call(self.audio.stop_transport)
            if self.pending is not None:  # stopped: a waiting loop applies at once
                self._apply(self.pending, bar_step=None)
        else:
            self.loop_start = 0
        self.emit(msg.transport(playing))

    def _flush(self, now: float) -> None:
        """Note-offs for everything sounding, drop what is scheduled, all-notes-off (at `now`)."""
        self._heap.clear()
        for note, count in list(self.sounding.items()):
            for _ in range(count):
                self._send(midi.note_off(note), now)
        self.sounding.clear()
        self._send(midi.all_notes_off(), now)

    def _send(self, data: list[int], t: float) -> None:
        """`data` out at time `t` (engine time): placed there by timed ports, sent now by the others."""
        if self._ports_down:
            return
        try:
            if self.ahead:
                self.ports.send_at(data, t)
            else:
                self.ports.send(data)
        except ConnectionError as exc:
            self._port_fault(str(exc))

    def _port_fault(self, why: str) -> None:
        if self._ports_down:
            return
        self._ports_down = True
        self.sounding.clear()
        self._next_reopen = self.now() + self.ahead + REOPEN_S
        self.emit(msg.error(f"MIDI ports lost ({why}); still running, retrying every {REOPEN_S:g} s", "/dd/midi"))

    def _audio_call(self, method: Callable, *args) -> None:
        """Call the live audio; if its server went away (AudioLost), say so once and play on
        without audio: MIDI and the clock must not stop with it."""
        try:
            method(*args)
        except AudioLost as exc:
            self._lost_audio, self.audio = self.audio, None
            self.emit(msg.error(f"{exc}; MIDI and the clock keep running", "/dd/audio"))

    # -- time ------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Do everything due at `now` (engine time): clock output, steps, scheduled notes, housekeeping."""
        self._clock_events(self.clock.advance(now), now)
        heap = self._heap
        while heap and heap[0][0] <= now:
            t, _, _, kind, arg = heapq.heappop(heap)
            if kind == "on":
                note, vel = arg
                self._send(midi.note_on(note, vel), t)
                self.sounding[note] = self.sounding.get(note, 0) + 1
            elif kind == "off":
                if self.sounding.get(arg):
                    self.sounding[arg] -= 1
                    if not self.sounding[arg]:
                        del self.sounding[arg]
                    self._send(midi.note_off(arg), t)
            elif kind == "bar" and self.audio is not None:
                if arg is None:
                    self._audio_call(self.audio.bar_line)
                else:  # the audio's next block is JACK's next cycle: delay the bar into it up to its frame
                    period, rate = self.ports.period, self.ports.rate
                    next_cycle = (round((now - self.ahead) * rate) // period + 1) * period
                    self._audio_call(self.audio.bar_line, max(0, arg - next_cycle))
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
            self.emit(msg.ports(new_ports.out_full_name, new_ports.in_full_name))

    def deadline(self, now: float) -> float:
        d = self.clock.deadline()
        d = now + IDLE_WAIT_S if d is None else d
        if self._heap:
            d = min(d, self._heap[0][0])
        return min(d, self._next_housekeeping)

    def engine_now(self) -> float:
        """The engine's time: the clock's, plus how far ahead the ports let it run."""
        return self.now() + self.ahead

    def run(self) -> None:
        """The engine thread: wait for the next deadline or input, whichever is first."""
        now_fn, inbox, ahead = self.engine_now, self.inbox, self.ahead
        # Ports that send now need the last millisecond spun; timed ones place each message at its own
        # time, so a late wake-up costs nothing and the spin would only hold the GIL their callback needs.
        spin = 0.0 if ahead else SPIN_S
        self.clock.resync(now_fn())
        while self._running:
            now = now_fn()
            self.tick(now)
            deadline = self.deadline(now)
            timeout = deadline - now_fn() - spin
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
                if now_fn() < deadline - spin:
                    continue  # woken by input early: recompute the deadline
            while now_fn() < deadline:
                pass

    def _handle_item(self, item: tuple) -> None:
        if item[0] == "midi":
            # input is timed on the clock (its arrival, or its frame in JACK's cycle); the engine runs ahead
            self.handle_midi(item[1], item[2] + self.ahead)
        else:
            self.handle_command(item[1], self.engine_now())

    def close(self) -> None:
        """Flush note-offs (and Stop when leading), close ports and audio."""
        now = self.engine_now()
        if self.playing and self.clock.kind == "internal":  # the leader tells followers it stopped
            self._send([midi.STOP], now)
        self._flush(now)
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
