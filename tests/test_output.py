"""Musical control at the outputs: velocities, swing, distinct notes, note maps, each loop's own kit."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from test_dynamics import next_loop
from test_player import T0, FakePorts, run

from deepdrummer_live.errors import UsageError
from deepdrummer_live.learn.learner import Learner
from deepdrummer_live.loop import LoopRecord
from deepdrummer_live.player.clock import InternalClock
from deepdrummer_live.player.notemap import NoteMap, available
from deepdrummer_live.player.protocol import PlayerConfig
from deepdrummer_live.player.sequencer import Sequencer
from deepdrummer_live.sound import pattern
from deepdrummer_live.sound.dynamics import default_levels, velocity
from deepdrummer_live.sound.live import LiveAudio
from deepdrummer_live.sound.render import render_bar_numpy, step_length, step_onsets
from deepdrummer_live.storage import library, sfz
from deepdrummer_live.vocab import GM_NOTES

from daemon import wait_for

ROWS = [
    {"note": 36, "steps": "x...x...x...x...", "levels": "9...5...9...1..."},
    {"note": 42, "steps": "xxxxxxxxxxxxxxxx", "levels": "1234567891234567"},
    {"note": 38, "steps": "....x.......x...", "levels": None},
    {"note": 46, "steps": "................", "levels": "................"},
]


def play_one_bar(swing: float, rows=ROWS, bpm: float = 120.0):
    """(time, bytes) of every note-on/off of one bar, and the clock's step-0 time."""
    cfg = PlayerConfig(midi_backend="none", audio="none")
    ports = FakePorts()
    eng = Sequencer(cfg, ports, InternalClock(bpm, T0), lambda e: None, now=lambda: ports.now)
    eng.handle_command({"type": "set_loop", "loop_id": 1, "rows": rows, "at_bar": False, "swing": swing}, T0)
    eng.handle_command({"type": "play"}, T0)
    run(eng, ports, T0 + 60.0 / bpm * 4 + 0.1)  # the last note-off of a swung bar falls on the next bar line
    clock = eng.clock
    t0 = clock.grid.time_of(clock.start_tick)
    bar_end = t0 + 60.0 / bpm * 4
    ons = [(t, d) for t, d in ports.sent if d[0] == 0x99 and t < bar_end - 1e-9]
    offs = [(t, d) for t, d in ports.sent if d[0] == 0x89 and t <= bar_end + 1e-9]
    return ons + offs, t0


# ---- MIDI port: velocities and swing on absolute times ----------------------------------

@pytest.mark.parametrize("swing", [0.0, 1 / 3, 0.5])
def test_port_velocities_follow_levels_and_odd_steps_swing(swing):
    sent, t0 = play_one_bar(swing)
    step_s = 60.0 / 120.0 / 4
    ons = [(t, d[1], d[2]) for t, d in sent if d[0] == 0x99]
    expected = []
    for row in ROWS:
        levels = row["levels"] or row["steps"].replace("x", "7")  # no levels: DEFAULT_LEVEL
        for k, c in enumerate(levels):
            if c != ".":
                expected.append((t0 + (k + (swing if k % 2 else 0)) * step_s, row["note"],
                                 round(127 * int(c) / 9)))
    got = sorted(ons)
    assert [(n, v) for _, n, v in got] == [(n, v) for _, n, v in sorted(expected)]
    for (t, _, _), (te, _, _) in zip(got, sorted(expected)):
        assert t == pytest.approx(te, abs=1e-9)
    offs = [(t, d[1]) for t, d in sent if d[0] == 0x89]
    assert len(offs) == len(ons)  # every note-on has its note-off, half a step later
    hats = [t for t, n, _ in ons if n == 42]
    hat_offs = [t for t, n in offs if n == 42]
    assert all(off - on == pytest.approx(step_s / 2) for on, off in zip(hats, hat_offs))


def test_velocity_formula_and_levels_validation():
    assert [velocity(v) for v in range(1, 10)] == [14, 28, 42, 56, 71, 85, 99, 113, 127]
    cfg = PlayerConfig(midi_backend="none", audio="none")
    events = []
    eng = Sequencer(cfg, FakePorts(), InternalClock(120.0, T0), events.append, now=lambda: T0)
    for bad in ("x...............", "1.2.............", "0..............."):
        eng.handle_command({"type": "set_loop", "loop_id": 2, "at_bar": False,
                            "rows": [{"note": 36, "steps": "x...............", "levels": bad}]}, T0)
        assert "must have '1'-'9' where steps" in events[-1]["message"]
    eng.handle_command({"type": "set_loop", "loop_id": 2, "at_bar": False, "swing": 0.7,
                        "rows": [{"note": 36, "steps": "x..............."}]}, T0)
    assert "swing 0.7 out of range; use 0-0.5" in events[-1]["message"]


def test_swing_changes_with_the_loop_at_the_bar_line():
    cfg = PlayerConfig(midi_backend="none", audio="none")
    ports = FakePorts()
    eng = Sequencer(cfg, ports, InternalClock(120.0, T0), lambda e: None, now=lambda: ports.now)
    row = [{"note": 42, "steps": "x" * 16}]
    eng.handle_command({"type": "set_loop", "loop_id": 1, "rows": row, "at_bar": False, "swing": 0.0}, T0)
    eng.handle_command({"type": "play"}, T0)
    run(eng, ports, T0 + 0.5)
    eng.handle_command({"type": "set_loop", "loop_id": 1, "rows": row, "at_bar": True, "swing": 0.5}, ports.now)
    run(eng, ports, T0 + 4.0)
    ons = [t for t, d in ports.sent if d[0] == 0x99]
    t0, step_s = ons[0], 0.125
    first_bar = [round((t - t0) / step_s, 6) for t in ons[:16]]
    second_bar = [round((t - t0) / step_s, 6) for t in ons[16:32]]
    assert first_bar == list(range(16))  # straight until the bar line
    assert second_bar == [16 + k + (0.5 if k % 2 else 0) for k in range(16)]


# ---- live audio: swung through the one mix -----------------------------------------------

@pytest.mark.parametrize("swing", [0.0, 0.2, 1 / 3])
def test_live_audio_swings_odd_steps(kit, swing):
    learner = Learner(kit, torch.device("cpu"), seed=3, chains=8, iters=1)
    loops = pattern.random_loops(1, len(kit), torch.Generator().manual_seed(4), "cpu")
    live = LiveAudio(learner.kit).render(loops, 97.0, 16000, swing)
    ids = loops.sample_ids[0].tolist()
    samples = [kit.audio_at(16000)[i] for i in ids]
    levels = pattern.levels_to_strings(loops.levels[0])
    reference = render_bar_numpy(levels, samples, step_length(97.0, 16000), swing)
    np.testing.assert_allclose(live, reference, atol=1e-5)
    if swing:
        straight = LiveAudio(learner.kit).render(loops, 97.0, 16000, 0.0)
        assert np.abs(straight - live).max() > 0.01


def test_step_onsets():
    assert step_onsets(4, 100, 1 / 3).tolist() == [0, 133, 200, 333]
    assert step_onsets(4, 100, 0.0).tolist() == [0, 100, 200, 300]


# ---- library: .mid ticks, and .mid + .sfz = .wav --------------------------------------------

def test_library_mid_ticks_and_velocities_with_swing():
    mid = library.midi_file(LoopRecord.of(samples=["a", "b"], notes=[36, 36], steps=[r["steps"] for r in ROWS[:2]],
                                          levels=[r["levels"] for r in ROWS[:2]], tempo=120.0, swing=1 / 3))
    assert mid.ticks_per_beat == 960
    tick, ons = 0, []
    for msg in mid.tracks[0]:
        tick += msg.time
        if msg.type == "note_on":
            ons.append((tick, msg.velocity))
    step = 240
    assert (0, 127) in ons and (4 * step, 71) in ons and (12 * step, 14) in ons  # kick row levels
    hats = sorted(t for t, _ in ons)
    assert 1 * step + 80 in hats and 3 * step + 80 in hats and 2 * step in hats  # 1/3 swing: 80 ticks late
    assert all(t % step in (0, 80) for t in hats)
    assert tick == 4 * 960  # one bar


def _one_shots(kit, names, sr):
    audio = kit.audio_at(sr)
    index = {s.name: i for i, s in enumerate(kit.samples)}
    return [audio[index[name]] for name in names]


@pytest.mark.parametrize("bpm,swing", [(120.0, 0.0), (97.0, 1 / 3), (112.0, 0.25), (61.0, 0.5), (143.0, 0.5)])
def test_sfz_round_trip_mid_through_sfz_is_the_wav(tmp_path, kit, bpm, swing):
    """Our SFZ player renders the loop's .mid through its .sfz: that is the .wav, sample for sample."""
    sr = 44100
    by_role = {}
    for s in kit.samples:
        by_role.setdefault(s.role, s.name)
    names = [by_role["kick"], by_role["kick"] if len(kit.ids_with_role("kick")) < 2 else
             kit.samples[kit.ids_with_role("kick")[1]].name, by_role["closed_hat"], by_role["snare"]]
    steps = ["x.....x...x.....", "..x.........x...", "x.xxx.x.x.xxx.xx", "....x.......x..x"]
    levels = ["9.....3...7.....", "..5.........2...", "2.345.6.7.891.23", default_levels([steps[3]])[0]]
    notes = NoteMap.load(None).assign(["kick", "kick", "closed_hat", "snare"], [36, 36, 42, 38])
    loop = LoopRecord.of(id=12, samples=names, notes=notes, steps=steps, levels=levels, tempo=bpm, swing=swing)
    mid_path, wav_path = library.write_loop(tmp_path, loop, "my groove 1", _one_shots(kit, names, sr), sr)
    sfz_path = tmp_path / "000012-my groove 1.sfz"  # a space in the sample folder's path too
    assert sfz_path.exists() and (tmp_path / "000012-my groove 1-samples").is_dir()
    wav, wav_sr = sf.read(wav_path, dtype="float64")
    assert wav_sr == sr and len(wav) == round(4 * 60 / bpm * sr)
    played = sfz.render_midi(mid_path, sfz_path, sr)
    assert 0.05 < np.abs(wav).max() <= 10 ** (-1 / 20) + 1e-6  # headroom: peaks at or under -1 dBFS
    np.testing.assert_allclose(played, wav, atol=2e-6)  # 24-bit .wav: 1.2e-7 per LSB
    text = sfz_path.read_text()
    assert "key=36" in text and "key=35" in text  # two kicks, two notes


def test_sfz_player_refuses_what_it_does_not_know(tmp_path):
    (tmp_path / "x.sfz").write_text("<region> key=36 sample=a.wav cutoff=300\n")
    with pytest.raises(sfz.SfzError, match="cutoff=300 is not supported"):
        sfz.parse_sfz(tmp_path / "x.sfz")


def test_library_names_stay_inside(tmp_path, kit):
    names = [kit.samples[0].name] * 4
    loop = LoopRecord.of(id=1, samples=names, notes=[36, 37, 38, 39], steps=["x" + "." * 15] * 4)
    with pytest.raises(Exception, match="save name"):
        library.write_loop(tmp_path, loop, "../evil", _one_shots(kit, names, 8000), 8000)


# ---- distinct notes and note maps --------------------------------------------------------------

def test_two_rows_of_one_role_get_distinct_notes():
    gm = NoteMap.load(None)
    assert gm.assign(["kick", "kick", "snare", "snare"], [36, 36, 38, 38]) == [36, 35, 38, 40]
    assert gm.assign(["closed_hat"] * 4, [42] * 4) == [42, 44, 46, 60]  # then the spare notes
    assert gm.assign(["clap", "clap", "clap", "kick"], [39, 39, 39, 36]) == [39, 60, 61, 36]
    assert gm.assign(["kick", "tom_low", "tom_low", "tom_low"], [36, 45, 45, 45]) == [36, 45, 41, 43]
    custom_kit_note = gm.assign(["kick", "kick"], [24, 24])
    assert custom_kit_note == [24, 36]  # a kit.toml note comes first under GM
    # a locked row keeps its note (here 35, from an earlier loop); the others go around it
    assert gm.assign(["kick", "kick", "snare", "snare"], [36, 36, 38, 38], {1: 35}) == [36, 35, 38, 40]
    assert gm.assign(["kick", "kick", "snare", "snare"], [36, 36, 38, 38], {1: 36}) == [35, 36, 38, 40]


def test_gm_map_agrees_with_the_vocabulary():
    """gm.toml lists each role's GM alternatives; its first note is the role's note in vocab.GM_NOTES."""
    gm = NoteMap.load("gm")
    assert set(gm.notes) == set(GM_NOTES)
    assert {role: notes[0] for role, notes in gm.notes.items()} == GM_NOTES


def test_note_maps_ship_and_load(tmp_path):
    assert {"gm", "drum-rack"} <= set(available())
    rack = NoteMap.load("drum-rack")
    roles = ["kick", "rim", "snare", "clap", "closed_hat", "pedal_hat", "open_hat", "tom_low", "tom_mid",
             "tom_high", "crash", "ride", "tambourine", "cowbell", "conga", "shaker", "clave", "perc"]
    for i in range(0, len(roles), 4):
        notes = rack.assign(roles[i:i + 4], [0] * 4)
        assert all(36 <= n <= 51 for n in notes) and len(set(notes)) == len(notes)
    own = tmp_path / "mine.toml"
    own.write_text('name = "mine"\n[roles]\nperc = [60]\nkick = [24, 25]\n')
    mine = NoteMap.load(str(own))
    assert mine.name == "mine" and mine.assign(["kick", "kick", "snare"], [36, 36, 38]) == [24, 25, 60]
    bad = tmp_path / "bad.toml"
    bad.write_text("[roles]\nperc = [200]\n")
    with pytest.raises(UsageError, match=r"roles.perc = \[200\]: use a list of MIDI notes 0-127"):
        NoteMap.load(str(bad))
    with pytest.raises(UsageError, match="no such map; use one of drum-rack, gm"):
        NoteMap.load("nope")


# ---- the session: locked rows keep their notes; swing persists ------------------------------------



@pytest.fixture
def session(tmp_path, kit):
    """A session on the built-in kit with no transport (loops become current at once)."""
    from deepdrummer_live.session import Session
    from deepdrummer_live.storage.store import Store

    sent = []
    store = Store(tmp_path / "state")
    learner = Learner(kit, torch.device("cpu"), seed=2, chains=8, iters=2)
    learner.hearing_done = True  # no pretraining: these tests are about the notes that go out
    s = Session(learner, store)
    s.add_listener(lambda address, args, origin: sent.append((address, *args)))
    s.sent = sent
    s.start()
    yield s
    s.shutdown()
    store.close()


def test_locked_rows_keep_their_notes_and_every_loop_has_distinct_notes(session):
    wait_for(lambda: session.current is not None, what="a first loop")
    first = session.current.record
    session.set_lock(0, True)
    session.set_lock(2, True)
    session.set_mode("random")
    for _ in range(6):
        loop = next_loop(session)
        assert (loop.notes[0], loop.notes[2]) == (first.notes[0], first.notes[2])
        assert len(set(loop.notes)) == len(loop.notes)
        assert loop.player_rows()[1]["note"] == loop.notes[1]  # what the port plays is what /dd/loop shows
    loops = [a for a in session.sent if a[0] == "/dd/loop"]
    assert loops[-1][1] == loop.id and [loops[-1][6 + 3 * r] for r in range(4)] == loop.notes


def test_swing_persists_and_is_checked(session):
    session.set_swing(0.25)
    assert session.snapshot()["swing"] == 0.25 and session.store.get_meta("swing") == "0.25"
    with pytest.raises(Exception, match=r"swing 0.6 out of range; use 0-0.5"):
        session.set_swing(0.6)
    assert session.swing == 0.25
