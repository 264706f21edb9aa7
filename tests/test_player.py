"""The player: engine units with fake ports and injected time, then the real process on JACK."""

from __future__ import annotations

import threading
import time

import pytest

from deepdrummer_live.errors import AudioLost, UsageError
from deepdrummer_live.player import midi
from deepdrummer_live.player.clock import InternalClock, MidiClockFollower
from deepdrummer_live.player.handle import PlayerHandle
from deepdrummer_live.player.jackd import SAMPLE_RATE, FrameRecorder
from deepdrummer_live.player.protocol import PlayerConfig
from deepdrummer_live.player.sequencer import Sequencer

from jack_frames import connect_when_listed
from jack_midi import ALL_NOTES_OFF, collect_until, jack_port, send_clock

ROWS_A = [
    {"note": 36, "steps": "x...x...x...x..."},
    {"note": 38, "steps": "....x.......x..."},
    {"note": 42, "steps": "x.x.x.x.x.x.x.x."},
    {"note": 46, "steps": "..............x."},
]
ROWS_B = [
    {"note": 51, "steps": "x.......x......."},
    {"note": 39, "steps": "....x.......x..."},
    {"note": 44, "steps": "................"},
    {"note": 49, "steps": "................"},
]
T0 = 100.0


# ---- units --------------------------------------------------------------------------------

class FakePorts:
    def __init__(self):
        self.sent: list[tuple[float, list[int]]] = []
        self.now = T0
        self.is_alive = True
        self.closed = False

    def send(self, data):
        self.sent.append((self.now, list(data)))

    def alive(self):
        return self.is_alive

    def close(self):
        self.closed = True


class FakeAudio:
    def __init__(self):
        self.calls = []

    def queue_bar(self, audio):
        self.calls.append(("queue", audio))

    def bar_line(self):
        self.calls.append(("bar",))

    def stop_transport(self):
        self.calls.append(("stop",))

    def close(self):
        self.calls.append(("close",))


class DyingAudio(FakeAudio):
    """Live audio whose server goes away after `bars` bar lines (what LoopAudio raises then)."""

    def __init__(self, bars):
        super().__init__()
        self.bars = bars

    def bar_line(self):
        if self.bars == 0:
            raise AudioLost("audio backend 'jack' went away (test)")
        self.bars -= 1
        super().bar_line()


def make_engine(offset_ms=0.0, audio=None):
    cfg = PlayerConfig(midi_backend="none", audio="none", midi_offset_ms=offset_ms)
    ports = FakePorts()
    events = []
    clock = InternalClock(120.0, T0, lead=max(0.0, -offset_ms / 1000))
    eng = Sequencer(cfg, ports, clock, events.append, audio=audio, now=lambda: ports.now)
    return eng, ports, events


def run(eng, ports, until):
    while True:
        d = eng.deadline(ports.now)
        if d > until:
            ports.now = until
            eng.tick(until)
            return
        ports.now = max(ports.now, d)
        eng.tick(ports.now)


def tick_index_of(sent):
    """For each message: the number of clocks since Start minus one (the tick it rides on)."""
    out, ticks, started = [], -1, False
    for t, data in sent:
        if data == [midi.START]:
            started, ticks = True, -1
        elif data == [midi.CLOCK] and started:
            ticks += 1
        out.append((ticks if started else None, t, data))
    return out


def test_engine_notes_on_the_grid_with_note_offs():
    eng, ports, events = make_engine()
    eng.handle_command({"type": "set_loop", "loop_id": 7, "rows": ROWS_A, "audio": None,
                        "at_bar": True}, T0)
    assert events[-1] == {"type": "switched", "loop_id": 7}  # stopped: applies at once
    eng.handle_command({"type": "play"}, T0)
    run(eng, ports, T0 + 2.05)  # one bar at 120 BPM, plus a bit
    ons = [(k, d[1]) for k, _, d in tick_index_of(ports.sent) if d[0] == 0x99]
    expected = [(6 * s, r["note"]) for s in range(17) for r in ROWS_A if r["steps"][s % 16] == "x"]
    assert ons == expected
    offs = [(t, d[1]) for t, d in ports.sent if d[0] == 0x89]
    on_times = [(t, d[1]) for t, d in ports.sent if d[0] == 0x99]
    for (t_on, n_on), (t_off, n_off) in zip(on_times, offs):
        assert n_on == n_off and t_off - t_on == pytest.approx(0.0625)  # half a step
    assert [e["step"] for e in events if e["type"] == "step"][:17] == list(range(16)) + [0]


def test_engine_bar_synchronous_switch_and_stop_flush():
    audio = FakeAudio()
    eng, ports, events = make_engine(audio=audio)
    eng.handle_command({"type": "set_loop", "loop_id": 1, "rows": ROWS_A, "audio": "A",
                        "at_bar": True}, T0)
    eng.handle_command({"type": "play"}, T0)
    run(eng, ports, T0 + 0.7)
    eng.handle_command({"type": "set_loop", "loop_id": 2, "rows": ROWS_B, "audio": "B",
                        "at_bar": True}, ports.now)
    assert not [e for e in events if e == {"type": "switched", "loop_id": 2}]
    run(eng, ports, T0 + 2.3)
    assert {"type": "switched", "loop_id": 2} in events
    rows = tick_index_of(ports.sent)
    first_b = next(k for k, _, d in rows if d[0] == 0x99 and d[1] == 51)
    assert first_b == 96  # the bar line
    assert not [k for k, _, d in rows if d[0] == 0x99 and d[1] == 36 and k >= 96]
    assert audio.calls[:3] == [("queue", "A"), ("bar",), ("queue", "B")]
    assert audio.calls[3] == ("bar",)
    n = len(ports.sent)
    eng.handle_command({"type": "stop"}, ports.now)
    tail = [d for _, d in ports.sent[n:]]
    assert tail[0] == [midi.STOP] and tail[-1] == [0xB9, 123, 0]
    assert all(d[0] == 0x89 for d in tail[1:-1])  # note-offs for what was sounding
    assert {"type": "transport", "playing": False} in events
    assert audio.calls[-1] == ("stop",)
    eng.close()
    assert ports.closed and ports.sent[-1][1] == [0xB9, 123, 0]


def test_engine_survives_losing_its_audio_at_a_bar_line():
    """Bug 4: AudioLost at the bar line is reported once; notes and steps go on, audio is dropped."""
    audio = DyingAudio(bars=1)
    eng, ports, events = make_engine(audio=audio)
    eng.handle_command({"type": "set_loop", "loop_id": 1, "rows": ROWS_A, "audio": "A", "at_bar": True}, T0)
    eng.handle_command({"type": "play"}, T0)
    run(eng, ports, T0 + 2.5)  # the second bar line (T0 + 2 s) is where the audio is found gone
    errors = [e["message"] for e in events if e["type"] == "error"]
    assert len(errors) == 1 and "went away" in errors[0] and "MIDI and the clock keep running" in errors[0]
    assert [e["address"] for e in events if e["type"] == "error"] == ["/dd/audio"]  # /dd/error names the audio
    assert eng.audio is None
    n_sent, n_steps = len(ports.sent), len([e for e in events if e["type"] == "step"])
    eng.handle_command({"type": "set_loop", "loop_id": 2, "rows": ROWS_B, "audio": "B", "at_bar": True}, ports.now)
    run(eng, ports, T0 + 6.5)
    assert {"type": "switched", "loop_id": 2} in events
    assert len([e for e in events if e["type"] == "step"]) - n_steps >= 31  # 2 more bars (16 steps each)
    assert any(d[0] == 0x99 and d[1] == 51 for _, d in ports.sent[n_sent:])  # loop 2 plays its notes
    assert len([e for e in events if e["type"] == "error"]) == 1
    eng.handle_command({"type": "stop"}, ports.now)
    eng.close()
    assert audio.calls[-1] == ("close",) and ports.closed  # the lost audio is closed at shutdown


def test_engine_offset_shifts_notes_both_ways():
    for offset_ms in (30.0, -30.0):
        eng, ports, _ = make_engine(offset_ms=offset_ms)
        eng.handle_command({"type": "set_loop", "loop_id": 1, "rows": ROWS_A, "audio": None,
                            "at_bar": False}, T0)
        eng.handle_command({"type": "play"}, T0)
        run(eng, ports, T0 + 1.0)
        clock = eng.clock
        on_times = [t for t, d in ports.sent if d[0] == 0x99]
        step0 = clock.grid.time_of(clock.start_tick)
        assert on_times[0] == pytest.approx(step0 + offset_ms / 1000)


class TimedPorts(FakePorts):
    """Ports that place each message at its time (as jackmidi.JackMidiPorts does): the engine runs ahead."""

    lookahead = 0.05

    def __init__(self):
        super().__init__()
        self.timed: list[tuple[float, float, list[int]]] = []  # (handed over at, due at, bytes)

    def send_at(self, data, t):
        self.timed.append((self.now, t, list(data)))


def test_engine_runs_ahead_of_timed_ports_and_hands_over_exact_times():
    cfg = PlayerConfig(midi_backend="none", audio="none")
    ports, events, audio = TimedPorts(), [], FakeAudio()
    eng = Sequencer(cfg, ports, InternalClock(120.0, T0), events.append, audio=audio, now=lambda: ports.now)
    ahead = eng.ahead
    assert ahead == TimedPorts.lookahead

    def run_timed(until):  # `until` and ports.now on the ports' clock; the engine's time is ahead of it
        while (d := eng.deadline(ports.now + ahead) - ahead) <= until:
            ports.now = max(ports.now, d)
            eng.tick(ports.now + ahead)
        ports.now = until

    eng.clock.resync(T0 + ahead)
    eng.handle_command({"type": "set_loop", "loop_id": 1, "rows": ROWS_A, "audio": "A", "at_bar": True,
                        "swing": 0.5}, T0 + ahead)
    eng.handle_command({"type": "play"}, T0 + ahead)
    run_timed(T0 + 2.5)
    assert not ports.sent  # nothing is sent "now"
    assert all(due - at >= ahead - 1e-9 for at, due, _ in ports.timed)  # handed over a lookahead early
    grid = eng.clock.grid
    start = eng.clock.start_tick
    ticks = [due for _, due, d in ports.timed if d == [midi.CLOCK]]
    assert all(t == pytest.approx(grid.time_of(round((t - grid.anchor_t) / grid.interval) + grid.anchor_n))
               for t in ticks)  # each tick at its own time on the grid, however late the engine woke
    ons = [(due, d[1]) for _, due, d in ports.timed if d[0] == 0x99]
    step_s = 0.125
    for due, note in ons:
        x = (due - grid.time_of(start)) / step_s
        step = round(x - 0.25)
        assert x == pytest.approx(step + (0.5 if step % 2 else 0.0))  # swung odd steps, to the float
        assert note in [r["note"] for r in ROWS_A if r["steps"][step % 16] == "x"]
    # the audio's bar line is called at the bar's time on the ports' clock, not the engine's
    assert ("bar",) in audio.calls
    n = len(ports.timed)
    eng.handle_command({"type": "stop"}, ports.now + ahead)
    tail = ports.timed[n:]
    assert tail[0][2] == [midi.STOP] and tail[0][1] == pytest.approx(ports.now + ahead)  # after all handed over
    assert tail[-1][2] == [0xB9, 123, 0]
    assert max(due for _, due, _ in ports.timed[:n]) <= tail[0][1]


def test_engine_bad_commands_are_errors_not_crashes():
    eng, ports, events = make_engine()
    eng.handle_command({"type": "set_loop", "loop_id": 1, "rows": [{"note": 200, "steps": "x"}]}, T0)
    eng.handle_command({"type": "tempo", "bpm": 999}, T0)
    eng.handle_command({"type": "dance"}, T0)
    msgs = [e["message"] for e in events if e["type"] == "error"]
    assert "note 200 out of range 0..127" in msgs[0]
    assert "tempo 999 BPM out of range; use 20-300" in msgs[1]
    assert "player command 'dance' unknown" in msgs[2]
    assert {e["address"] for e in events if e["type"] == "error"} == {"/dd/midi"}  # what /dd/error names
    eng.handle_midi([0xF0, 1, 2, 0xF7], T0)
    eng.handle_midi([], T0)
    assert eng.midi_ignored == 2


def test_engine_port_fault_reports_and_reopens():
    eng, ports, events = make_engine()
    fresh = FakePorts()
    fresh.out_full_name, fresh.in_full_name = "DeepDrummer Live:DeepDrummer", None
    eng._reopen = lambda: fresh
    ports.is_alive = False
    run(eng, ports, T0 + 1.0)
    assert any(e["type"] == "error" and "MIDI ports lost" in e["message"] and e["address"] == "/dd/midi"
               for e in events)
    fresh.now = ports.now
    run(eng, ports, T0 + 3.5)
    assert {"type": "ports", "midi_out": "DeepDrummer Live:DeepDrummer", "midi_in": None} in events
    assert eng.ports is fresh and ports.closed


def test_engine_follower_steps_on_incoming_clock():
    cfg = PlayerConfig(midi_backend="none", audio="none", clock="midi", midi_in="x")
    ports = FakePorts()
    events = []
    eng = Sequencer(cfg, ports, MidiClockFollower(), events.append, now=lambda: ports.now)
    eng.handle_command({"type": "set_loop", "loop_id": 1, "rows": ROWS_A, "at_bar": True}, T0)
    eng.handle_midi([midi.START], T0)
    for i in range(13):
        ports.now = T0 + i * 0.02
        eng.handle_midi([midi.CLOCK], ports.now)
        eng.tick(ports.now)
    assert [e["step"] for e in events if e["type"] == "step"] == [0, 1, 2]
    assert not [d for _, d in ports.sent if d[0] == midi.CLOCK]  # no clock of its own
    eng.handle_command({"type": "play"}, T0)
    assert "follows the incoming MIDI clock" in events[-1]["message"]


def test_config_validation_messages():
    # A lower layer names the value and the fix, never a flag (cli/run.py words its flags' errors)
    with pytest.raises(UsageError, match="the MIDI clock needs an input port"):
        PlayerConfig(midi_backend="jack", clock="midi").validate()
    with pytest.raises(UsageError, match="clock 'wall' unknown; use one of internal/midi/link"):
        PlayerConfig(clock="wall").validate()
    with pytest.raises(UsageError, match="tempo 400 BPM out of range; use 20-300"):
        PlayerConfig(tempo=400).validate()
    with pytest.raises(UsageError, match="MIDI offset 900 ms out of range; use -500 to 500"):
        PlayerConfig(midi_offset_ms=900).validate()


# ---- the real process on a real JACK server -----------------------------------------------

class Events:
    def __init__(self):
        self.items: list[dict] = []
        self.cond = threading.Condition()

    def __call__(self, event):
        with self.cond:
            self.items.append(event)
            self.cond.notify_all()

    def wait(self, pred, timeout=10.0, since=0):
        """The first event from index `since` on that `pred` accepts; AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for e in self.items[since:]:
                    if pred(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching event in {timeout} s; got {self.items[-10:]}")
                self.cond.wait(left)

    def wait_steps(self, n, timeout=10.0, since=0):
        """Until `n` step events have come after index `since`."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.steps(since)) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.steps(since))} of {n} steps in {timeout} s")
                self.cond.wait(left)

    def steps(self, since=0):
        return [e["step"] for e in self.items[since:] if e.get("type") == "step"]


STOPPED = {"type": "transport", "playing": False}


def ticks_by_time(msgs, bpm):
    """Tick index of each message from its JACK receive time relative to Start.

    Rounding to the tick grid (not counting clocks) keeps one clock lost in a JACK xrun
    from shifting every later note.
    """
    iv = 60.0 / (bpm * 24)
    t_start = next(t for t, d in msgs if d == [midi.START])
    return [(round((t - t_start) / iv) if t >= t_start else None, t, d) for t, d in msgs]


class _Xruns:
    """A failed real-port check where jackd could not run realtime AND missed cycles says so (MIDI
    lost or bunched by the machine, not by us): a timing check fails, never skips, and this names the
    fix. With a realtime jackd, or one that kept up, the failure stands as it is."""

    def __init__(self, server):
        self.server, self.before = server, server.xruns()

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is not None and issubclass(kind, (AssertionError, StopIteration, ValueError)):
            n = self.server.xruns() - self.before
            if n > 0 and not self.server.realtime:
                pytest.fail(f"jackd (no realtime allowed here) overran {n} cycles during the test, MIDI was "
                            f"lost or bunched ({kind.__name__}: {exc}); run the tests as root, or give this user "
                            f"realtime priority (limits.conf rtprio), so the test jackd runs realtime")
        return False


@pytest.fixture
def player_factory(jack_server):
    handles = []

    def make(**kw):
        events = Events()
        cfg = PlayerConfig(midi_backend="jack", audio="none", **kw)
        h = PlayerHandle(cfg, events)
        ready = h.start()
        handles.append(h)
        return h, events, ready

    guard = _Xruns(jack_server)  # counts overruns from the start of the test
    make.xruns = lambda: guard
    make.server = jack_server
    yield make
    for h in handles:
        h.close()


def play_and_record(h, events, probe, rows, bars_before_switch=None, switch_to=None, bars=1.5):
    """The JACK choreography of these tests: set a loop, play, optionally switch loops once the
    player is `bars_before_switch` into the bar, play on for `bars` bars (counted in the player's own
    steps), stop, and return every MIDI message the probe heard up to the all-notes-off of Stop."""
    play_and_stop(h, events, rows, bars_before_switch, switch_to, bars)
    return collect_until(probe, lambda d: d == ALL_NOTES_OFF)


def play_and_stop(h, events, rows, bars_before_switch=None, switch_to=None, bars=1.5) -> None:
    """play_and_record up to the player's Stop, for a probe that records by itself (a FrameRecorder)."""
    h.set_loop(1, rows, None, True)
    events.wait(lambda e: e == {"type": "switched", "loop_id": 1})
    h.play()
    mark = len(events.items)
    if switch_to is not None:
        events.wait_steps(bars_before_switch, timeout=10, since=mark)
        h.set_loop(2, switch_to, None, True)
        events.wait(lambda e: e == {"type": "switched", "loop_id": 2}, timeout=10, since=mark)
        mark = len(events.items)
    events.wait_steps(int(bars * 16), timeout=15, since=mark)
    h.stop()
    events.wait(lambda e: e == STOPPED, since=mark)


@pytest.mark.slow
def test_jack_internal_clock_notes_transport(player_factory):
    """What the player sends, heard by a JACK client of its own process (jackd.FrameRecorder) and timed
    by JACK's frames: a cycle a loaded machine misses (a jackd XRun) costs that cycle's messages and is
    allowed for as such, never a shift of the time of everything heard after it (as timing the
    messages in this process did)."""
    server = player_factory.server
    h, events, ready = player_factory(midi_out="ddout1", tempo=120.0)
    assert ready["midi_out"] == "DeepDrummer Live:ddout1"
    assert ready["midi_writer"] == "jack-frames"  # JACK-Client is a dependency: each message at its frame
    recorder = FrameRecorder(server, name="dd-rec1")
    try:
        connect_when_listed(server, ready["midi_out"], recorder.port)
        xruns = server.xruns()
        play_and_stop(h, events, ROWS_A)
        heard = recorder.wait_for(lambda m: any(d == bytes(ALL_NOTES_OFF) for _, d in m), timeout=15)
        lost = server.xruns() - xruns
    finally:
        recorder.stop()
    with player_factory.xruns():
        check_internal_run([(f / SAMPLE_RATE, list(d)) for f, d in heard], lost=lost)


def check_internal_run(msgs, lost: int = 0):
    """msgs: (seconds, bytes) on JACK's frame clock. `lost`: cycles jackd missed meanwhile (each may have
    taken the messages of one cycle with it: a clock, or one step's notes); a message heard is never
    excused, it must be on the grid."""
    data = [d for _, d in msgs]
    i_start = data.index([midi.START])
    # SPP(0) is the last thing before Start but the idle clock's ticks: the clock runs while stopped,
    # and a player thread woken late (a loaded machine) sends overdue ticks before the Start tick
    before = [d for d in data[:i_start] if d != [midi.CLOCK]]
    assert before and before[-1] == [0xF2, 0, 0], before[-3:]
    assert data[i_start + 1] == [midi.CLOCK]  # Start rides on a tick
    i_stop = data.index([midi.STOP])
    assert [0xB9, 123, 0] in data[i_stop:]  # all-notes-off after Stop
    played = [(t, d) for t, d in msgs[i_start:i_stop + 1]]
    rows = ticks_by_time(played, 120.0)
    ons = [(k, d[1]) for k, _, d in rows if d[0] == 0x99]
    for k, note in ons:
        assert k % 6 == 0, f"note {note} off the 16th grid (tick {k})"
        step = k // 6 % 16
        assert note in [r["note"] for r in ROWS_A if r["steps"][step] == "x"]
    # every step due a tick or more before Stop was heard, but those of cycles jackd missed
    k_stop = rows[-1][0]
    due = {(6 * s, r["note"]) for s in range(k_stop // 6 + 1) if 6 * s <= k_stop - 1
           for r in ROWS_A if r["steps"][s % 16] == "x"}
    missing_steps = {k for k, _ in due - set(ons)}
    assert len(due) >= 16 and len(missing_steps) <= lost, \
        f"steps {sorted(missing_steps)} (ticks) not heard of {len(due)} notes due, {lost} jackd cycles missed"
    n_on = sum(1 for _, d in played if d[0] == 0x99)
    n_off = sum(1 for _, d in msgs[i_start:] if d[0] == 0x89)
    assert n_off >= n_on - len(ROWS_A) * lost  # every note gets its note-off
    ticks = [k for k, _, d in rows if d == [midi.CLOCK]]
    assert len(set(range(ticks[0], ticks[-1] + 1)) - set(ticks)) <= lost, f"clocks lost ({lost} cycles missed)"
    assert all(d[0] & 0x0F == 9 for _, d in played if d[0] & 0xF0 in (0x80, 0x90))  # channel 10
    clocks = [t for t, d in msgs if d == [midi.CLOCK]]
    mean = (clocks[-1] - clocks[0]) / (len(clocks) - 1)
    assert mean == pytest.approx(60 / 120 / 24, rel=0.02)  # 24 ppqn (loose: not a timing test)


@pytest.mark.slow
def test_jack_bar_synchronous_switch(player_factory):
    h, events, _ = player_factory(midi_out="ddout2", tempo=150.0)
    with jack_port(player_factory.server, "in", "ddout2") as probe:
        msgs = play_and_record(h, events, probe, ROWS_A, bars_before_switch=6, switch_to=ROWS_B, bars=1)
    with player_factory.xruns():
        rows = ticks_by_time(msgs, 150.0)
        first_b = next(k for k, _, d in rows if d[0] == 0x99 and d[1] == 51)
        assert first_b % 96 == 0 and first_b > 0, f"loop 2 started at tick {first_b}, not on a bar line"
        assert not [k for k, _, d in rows
                    if d[0] == 0x99 and d[1] == 36 and k is not None and k >= first_b]


@pytest.mark.slow
def test_jack_follower(player_factory):
    h, events, ready = player_factory(midi_out="ddout3", midi_in="ddin3", clock="midi")
    assert ready["midi_in"] == "DeepDrummer Live:ddin3"
    with jack_port(player_factory.server, "in", "ddout3") as probe, \
            jack_port(player_factory.server, "out", "ddin3") as clock_out, player_factory.xruns():
        run_follower(h, events, probe, clock_out)


def run_follower(h, events, probe, mo):
    h.set_loop(1, ROWS_A, None, True)
    events.wait(lambda e: e.get("type") == "switched")
    t = send_clock(mo, 125.0, 72)  # pre-roll: tempo only
    tempo = events.wait(lambda e: e.get("type") == "tempo", timeout=5)
    assert tempo["bpm"] == pytest.approx(125.0, rel=0.01)
    mo.send_message([0xF2, 0, 0])
    mo.send_message([midi.START])
    t = send_clock(mo, 125.0, 96, t)  # one bar: steps 0..15
    mo.send_message([midi.STOP])
    events.wait(lambda e: e == STOPPED, timeout=5)
    assert events.steps() == list(range(16))
    msgs = collect_until(probe, lambda d: d == ALL_NOTES_OFF)
    mark = len(events.items)
    mo.send_message(midi.song_position(20))  # bar 2, step 4
    mo.send_message([midi.CONTINUE])
    send_clock(mo, 125.0, 12)
    mo.send_message([midi.STOP])
    events.wait(lambda e: e == STOPPED, timeout=5, since=mark)
    assert events.steps(since=mark) == [4, 5]
    collect_until(probe, lambda d: d == ALL_NOTES_OFF, into=msgs)
    data = [d for _, d in msgs]
    assert [midi.CLOCK] not in data and [midi.START] not in data  # no clock of its own
    ons = [d[1] for d in data if d[0] == 0x99]
    expected = [r["note"] for s in list(range(16)) + [4, 5] for r in ROWS_A if r["steps"][s] == "x"]
    assert sorted(ons) == sorted(expected)


@pytest.mark.slow
def test_jack_controller_input(player_factory):
    h, events, _ = player_factory(midi_out="ddout4", midi_in="ddin4", controller="generic")
    with jack_port(player_factory.server, "out", "ddin4") as pads, player_factory.xruns():
        pads.send_message([0xF0, 0x7E, 0x01, 0x02, 0xF7])  # sysex junk: ignored
        pads.send_message([0x99, 99, 100])  # unmapped note: ignored
        pads.send_message([0x99, 36, 100])
        assert events.wait(lambda e: e.get("type") == "control") == \
            {"type": "control", "command": "like", "args": []}
        pads.send_message([0xB0, 20, 127])
        events.wait(lambda e: e.get("type") == "control" and e["command"] == "tempo" and e["args"] == [300.0])
        assert h.alive


def test_no_jack_server_is_a_usage_error(monkeypatch):
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "dd-no-such-server")
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    h = PlayerHandle(PlayerConfig(midi_backend="jack", audio="none"), lambda e: None)
    with pytest.raises(UsageError) as info:
        h.start()
    assert str(info.value) == ("--midi-backend jack: no JACK server running; start jackd or use "
                               "--midi-backend alsa/none")
    assert not h.alive


def test_bad_controller_file_is_a_usage_error(tmp_path):
    bad = tmp_path / "pads.toml"
    bad.write_text('[[note]]\nnote = 36\naction = "love"\n')
    h = PlayerHandle(PlayerConfig(midi_backend="none", audio="none", controller=str(bad)),
                     lambda e: None)
    with pytest.raises(UsageError, match=r"pads.toml: \[\[note\]\] #1: action 'love' is unknown"):
        h.start()


def test_none_backend_runs_and_closes():
    events = Events()
    h = PlayerHandle(PlayerConfig(midi_backend="none", audio="none", tempo=240), events)
    assert h.start()["midi_out"] is None
    try:
        h.set_loop(3, ROWS_A, None, True)
        h.play()
        events.wait(lambda e: e.get("type") == "step" and e["step"] == 3, timeout=5)
        h.set_tempo(200)
        events.wait(lambda e: e == {"type": "tempo", "bpm": 200.0})
    finally:
        h.close()
    assert not h.alive


@pytest.mark.slow
def test_jack_server_vanishing_is_survived(private_jack_server):
    name, kill, start_again = private_jack_server
    events = Events()
    h = PlayerHandle(PlayerConfig(midi_backend="jack", audio="none", midi_out="ddout5"), events)
    h.start()
    try:
        h.set_loop(1, ROWS_A, None, True)
        h.play()
        kill()
        events.wait(lambda e: e.get("type") == "error" and "MIDI ports lost" in e["message"])
        start_again()
        ev = events.wait(lambda e: e.get("type") == "ports", timeout=15)
        assert ev["midi_out"] == "DeepDrummer Live:ddout5"
        assert h.alive
    finally:
        h.close()


@pytest.mark.slow
def test_jack_audio_dying_leaves_the_clock_and_midi_running(private_jack_server):
    """Bug 4: pyo's JACK server dies while the loop plays. The player says so once (the daemon
    forwards it as /dd/error) and keeps stepping and switching loops without audio."""
    import numpy as np

    _name, kill, _start_again = private_jack_server
    events = Events()
    h = PlayerHandle(PlayerConfig(midi_backend="none", audio="pyo", audio_backend="jack", tempo=240.0), events)
    try:
        assert h.start()["audio"] == "pyo/jack"
        bar = np.zeros(48000, dtype=np.float32)  # one bar at 240 BPM, 48 kHz
        bar[::6000] = 0.5
        h.set_loop(1, ROWS_A, bar, True)
        h.play()
        events.wait_steps(4)
        kill()
        lost = events.wait(lambda e: e.get("type") == "error", timeout=20)
        assert "went away" in lost["message"] and "keep running" in lost["message"], lost
        assert lost["address"] == "/dd/audio", lost
        mark = len(events.items)
        h.set_loop(2, ROWS_B, bar, True)
        events.wait(lambda e: e == {"type": "switched", "loop_id": 2}, timeout=10, since=mark)
        events.wait_steps(20, timeout=10, since=mark)  # more than a bar after the loss
        assert h.alive
        assert [e for e in events.items if e.get("type") == "error"] == [lost]
    finally:
        h.close()
