"""Clock sources as pure scheduling logic, driven with an injected time."""

import pytest

from deepdrummer_live.player import clock as ck
from deepdrummer_live.player import midi

T0 = 1000.0


def run_until(source, t_end, step=0.0005):
    """Call advance() at each deadline up to t_end; return (time, event) pairs."""
    out = []
    now = T0
    while now <= t_end:
        d = source.deadline()
        now = max(now, d)
        if now > t_end:
            break
        for e in source.advance(now):
            out.append((now, e))
    return out


def test_tick_grid_absolute_times_and_retempo_without_jump():
    g = ck.TickGrid(120.0, T0)
    iv = 60 / (120 * 24)
    assert g.time_of(24) == pytest.approx(T0 + 0.5)
    t10 = g.time_of(10)
    g.retempo(60.0, 10)
    assert g.time_of(10) == pytest.approx(t10)  # no jump at the anchor
    assert g.time_of(11) - g.time_of(10) == pytest.approx(2 * iv)
    assert g.first_tick_at_or_after(g.time_of(12)) == 12
    assert g.first_tick_at_or_after(g.time_of(12) + 1e-6) == 13


def test_internal_clock_ticks_start_steps():
    c = ck.InternalClock(120.0, T0)
    evs = run_until(c, T0 + 0.1)
    ticks = [t for t, e in evs if e[:2] == ("send", [midi.CLOCK])]
    assert all(e[2] == t for t, e in evs if e[0] == "send")  # each tick carries its own due time
    assert len(ticks) == 5  # 24 ppqn at 120 BPM: one tick every 20.83 ms
    diffs = [b - a for a, b in zip(ticks, ticks[1:])]
    assert all(d == pytest.approx(60 / 120 / 24) for d in diffs)
    first = c.play(T0 + 0.1)
    assert first == [("send", [0xF2, 0, 0], T0 + 0.1), ("transport", True)]  # SPP(0) before Start
    evs = run_until(c, T0 + 0.1 + 1.0)
    sends = [e for _, e in evs if e[0] == "send"]
    assert sends[0][:2] == ("send", [midi.START]) and sends[1][:2] == ("send", [midi.CLOCK])
    assert sends[0][2] == sends[1][2] == c.grid.time_of(c.start_tick)  # Start rides on its tick
    steps = [(t, e) for t, e in evs if e[0] == "step"]
    assert [e[1] for _, e in steps] == list(range(8))  # 8 sixteenths in 1 s at 120 BPM
    for t, e in steps:
        assert e[2] == pytest.approx(t)
        assert e[3] == pytest.approx(0.125)
    # steps land exactly on every 6th tick from Start
    start_tick = c.start_tick
    for _, e in steps:
        assert e[2] == pytest.approx(c.grid.time_of(start_tick + 6 * e[1]))
    assert c.stop(T0 + 2) == [("send", [midi.STOP], T0 + 2), ("transport", False)]
    assert c.stop(T0 + 2) == []


def test_internal_clock_tempo_change_reanchors():
    c = ck.InternalClock(120.0, T0)
    c.play(T0)
    run_until(c, T0 + 0.5)
    nxt = c.next_tick
    t_next = c.grid.time_of(nxt)
    assert c.set_tempo(60.0, T0 + 0.5) == [("tempo", 60.0)]
    assert c.grid.time_of(nxt) == pytest.approx(t_next)
    assert c.grid.time_of(nxt + 1) - t_next == pytest.approx(60 / 60 / 24)
    with pytest.raises(ValueError, match="tempo 500 BPM out of range; use 20-300"):
        c.set_tempo(500, T0)


def test_internal_clock_lead_announces_steps_early():
    c = ck.InternalClock(120.0, T0, lead=0.03)
    c.play(T0)
    evs = run_until(c, T0 + 0.5)
    for t, e in evs:
        if e[0] == "step":
            assert t == pytest.approx(e[2] - 0.03)


def feed(follower, msgs):
    out = []
    for data, t in msgs:
        out.extend(follower.on_midi(data, t))
    return out


def clocks(n, t0, iv):
    return [([midi.CLOCK], t0 + i * iv) for i in range(n)]


def test_follower_steps_every_six_clocks_and_estimates_tempo():
    f = ck.MidiClockFollower()
    iv = 60 / (125 * 24)
    out = feed(f, clocks(48, T0, iv))  # clock before Start: tempo only
    assert not [e for e in out if e[0] == "step"]
    assert f.tempo == pytest.approx(125, rel=1e-6)
    assert ("tempo", 125.0) in out
    t1 = T0 + 48 * iv  # the clock runs on through Start
    out = feed(f, [([midi.START], t1 - 0.001)] + clocks(13, t1, iv))
    assert out[0] == ("transport", True)
    steps = [e for e in out if e[0] == "step"]
    assert [e[1] for e in steps] == [0, 1, 2]
    assert steps[1][2] == pytest.approx(t1 + 6 * iv)
    assert steps[1][3] == pytest.approx(6 * iv)
    assert feed(f, [([midi.STOP], T0 + 2)]) == [("transport", False)]
    assert not feed(f, clocks(12, T0 + 2, iv))[1:]  # stopped: no steps


def test_follower_spp_and_continue():
    f = ck.MidiClockFollower()
    iv = 0.02
    out = feed(f, [(midi.song_position(16), T0), ([midi.CONTINUE], T0)] + clocks(7, T0, iv))
    assert [e[1] for e in out if e[0] == "step"] == [16, 17]
    feed(f, [([midi.STOP], T0 + 1)])
    out = feed(f, [([midi.CONTINUE], T0 + 2)] + clocks(6, T0 + 2, iv))
    # resumes where it stopped (7 clocks in: next boundary is step 18)
    assert [e[1] for e in out if e[0] == "step"] == [18]


def test_follower_transport_commands_are_refused():
    f = ck.MidiClockFollower()
    with pytest.raises(ValueError, match="follows the incoming MIDI clock"):
        f.play(T0)
    with pytest.raises(ValueError, match="change it at the clock source"):
        f.set_tempo(100, T0)


def test_follower_lead_predicts_steps():
    f = ck.MidiClockFollower(lead=0.025)
    iv = 0.02
    t1 = T0 + 24 * iv
    feed(f, clocks(24, T0, iv))  # the estimate the prediction uses
    out = []
    for data, t in [([midi.START], t1 - 0.001)] + clocks(12, t1, iv):
        got = f.on_midi(data, t)
        out += [(t, e) for e in got]
    steps = [(t, e) for t, e in out if e[0] == "step"]
    # step 1 (clock 6, at t1 + 0.12) is announced at clock 4: waiting for clock 5 would be 5 ms too late
    assert steps[1][1][2] == pytest.approx(t1 + 6 * iv)
    assert steps[1][0] == pytest.approx(t1 + 4 * iv)


def test_tempo_estimator_resets_after_gap():
    est = ck.TempoEstimator(window=8, min_intervals=4)
    for i in range(10):
        est.add(i * 0.02)
    assert est.tempo == pytest.approx(125)
    est.add(5.0)
    assert est.tempo is None


class FakeLink:
    def __init__(self, tempo=120.0):
        self.tempo, self.playing, self.quantum = tempo, False, 4.0
        self.num_peers, self.enabled, self.start_stop_sync_enabled = 0, False, False
        self.t0 = T0

    def at(self, now):
        self.now = now

    @property
    def beat(self):
        return (self.now - self.t0) * self.tempo / 60.0


def test_link_clock_quantizes_start_to_bar_and_follows_tempo():
    link = FakeLink()
    link.at(T0)
    c = ck.LinkClock(link, 120.0, T0)
    assert link.enabled and link.start_stop_sync_enabled
    out = []
    now = T0 + 0.3  # beat 0.6: the next bar line is beat 4 = 2.0 s
    c.play(now)
    assert link.playing
    while now < T0 + 3.0:
        link.at(now)
        out += [(now, e) for e in c.advance(now)]
        now = max(now + 1e-4, c.deadline())
    assert ("transport", True) in [e for _, e in out]
    steps = [e for _, e in out if e[0] == "step"]
    assert steps[0][1] == 0 and steps[0][2] == pytest.approx(T0 + 2.0, abs=1e-3)
    assert [e[1] for e in steps] == list(range(len(steps)))
    assert len(steps) == 8  # 2.0 .. 3.0 s at 120 BPM
    link.tempo = 100.0
    assert ("tempo", 100.0) in c.advance(now)
