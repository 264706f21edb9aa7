"""Dynamics, density, locks and headroom: the generator's prior, the one mix, the store's levels."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
import torch

from deepdrummer_live import commands
from deepdrummer_live.errors import DeepDrummerError
from deepdrummer_live.learn.critic import LEAN_CONFIG
from deepdrummer_live.learn.kinds import build_critic
from deepdrummer_live.learn.search import MODES, search
from deepdrummer_live.loop import LoopRecord
from deepdrummer_live.sound import dynamics, pattern
from deepdrummer_live.sound.kit import load_kit
from deepdrummer_live.sound.render import (
    CEILING,
    LEVEL_GAINS,
    level_gain,
    render_bar_numpy,
    render_bars,
    sample_bank,
    step_length,
)
from deepdrummer_live.storage.store import Store

from daemon import wait_for

KITS = ["dd-analog", "dd-digital"]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --- levels as text ---------------------------------------------------------------------------

def test_levels_strings_round_trip():
    loops = pattern.random_loops(50, 10, gen(1), "cpu")
    for b in range(len(loops)):
        text = pattern.levels_to_strings(loops.levels[b])
        assert torch.equal(pattern.strings_to_levels(text), loops.levels[b])
        steps = pattern.grid_to_strings(loops.grid[b])
        assert dynamics.steps_of(text) == steps
        dynamics.check_levels(steps, text)  # '.' exactly where steps rests
    assert any("1" in s for s in text) or any("9" in s for s in text)
    with pytest.raises(ValueError, match="0"):
        pattern.strings_to_levels(["x..0"])
    with pytest.raises(ValueError, match="do not match"):
        dynamics.check_levels(["x..."], ["..5."])


def test_old_steps_read_at_the_default_level():
    assert dynamics.default_levels(["x.x.", "...."]) == ["7.7.", "...."]
    assert pattern.strings_to_levels(["x.x."]).tolist() == [[7, 0, 7, 0]]
    assert [dynamics.velocity(v) for v in (1, 7, 9)] == [14, 99, 127]


def test_level_gain_is_one_db_curve():
    assert level_gain(0) == 0.0 and level_gain(dynamics.DEFAULT_LEVEL) == 1.0
    db = [20 * np.log10(g) for g in LEVEL_GAINS[1:]]
    steps = np.diff(db)
    assert np.allclose(steps, steps[0]) and steps[0] > 0  # louder with every level, equal dB apart
    with pytest.raises(ValueError, match="10"):
        level_gain(10)


# --- the prior and mutation -------------------------------------------------------------------

def test_prior_levels_are_uniform_and_paper_prior_is_binary():
    loops = pattern.random_loops(4000, 10, gen(2), "cpu")
    hits = loops.levels[loops.levels > 0].long()
    counts = torch.bincount(hits, minlength=10)[1:].float() / hits.numel()
    assert torch.allclose(counts, torch.full((9,), 1 / 9), atol=0.01)
    paper = pattern.random_loops(500, 10, gen(2), "cpu", prior=pattern.PAPER_PRIOR)
    assert set(paper.levels.unique().tolist()) == {0, dynamics.DEFAULT_LEVEL}
    assert set(pattern.mutate(paper, 10, gen(3), prior=pattern.PAPER_PRIOR).levels.unique().tolist()) == {
        0, dynamics.DEFAULT_LEVEL}


def test_density_per_row_holds_under_mutation():
    prior = pattern.Prior(density=(0.1, 0.5, 0.9, 0.3))
    loops = pattern.random_loops(3000, 10, gen(4), "cpu", prior=prior)
    want = torch.tensor(prior.density)
    assert torch.allclose(loops.grid.float().mean(dim=(0, 2)), want, atol=0.02)
    for _ in range(30):  # a long chain of mutations keeps each row's density
        loops = pattern.mutate(loops, 10, gen(5 + _), prior=prior)
    assert torch.allclose(loops.grid.float().mean(dim=(0, 2)), want, atol=0.03)
    g = gen(6)
    before = pattern.random_loops(4000, 10, g, "cpu")
    after = pattern.mutate(before, 10, g)
    kept = before.grid & after.grid
    changed = (before.levels != after.levels) & kept
    assert abs(changed.float().sum() / kept.float().sum() - pattern.P_RELEVEL * 8 / 9) < 0.02
    with pytest.raises(Exception, match="0.05-0.95"):
        pattern.check_density(0.99)


def test_mutation_moves_a_whole_rows_density_now_and_then():
    """Cell toggles alone barely move a big loop's density; a row thinned or filled as a whole does."""
    loops = pattern.random_loops(4000, 10, gen(8), "cpu", prior=pattern.Prior(rows=8, bars=2))
    after = pattern.mutate(loops, 10, gen(9), prior=pattern.Prior(rows=8, bars=2))
    per_row = loops.grid.float().mean(dim=2)
    moved = (after.grid.float().mean(dim=2) - per_row).abs() > 0.15  # a toggle-only row moves ~0.05
    assert abs(moved.float().mean().item() - pattern.P_ROW_DENSITY) < 0.02
    # ... both ways, about as often
    down = (after.grid.float().mean(dim=2) - per_row < -0.15).float().mean().item()
    assert abs(down - pattern.P_ROW_DENSITY / 2) < 0.015


# --- locks ------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fotf", [False, True], ids=["free", "fotf"])
def test_locked_rows_never_change_in_any_mode(scorer, kit, mode, fotf):
    model = build_critic(LEAN_CONFIG).eval()
    model.calibrate(scorer.features(pattern.random_loops(64, len(kit), gen(0), "cpu")))
    source = pattern.random_loops(1, len(kit), gen(7), "cpu")
    locked = (0, 2) if not fotf else (1, 3)  # with fotf, row 0 is the kick the constraint sets
    prior = pattern.Prior(fotf=fotf, lock=pattern.Lock.of(source, locked))
    g = gen(8)
    free_rows = [r for r in range(pattern.N_ROWS) if r not in locked]
    seen = {r: set() for r in free_rows}
    for _ in range(12):
        out = search(scorer, model, mode, g, chains=16, iters=3, fotf=fotf, prior=prior).loop
        for r in locked:
            assert torch.equal(out.levels[0, r], source.levels[0, r])
            assert int(out.sample_ids[0, r]) == int(source.sample_ids[0, r])
        for r in free_rows:
            seen[r].add((int(out.sample_ids[0, r]), tuple(out.levels[0, r].tolist())))
    for r in free_rows:
        assert len(seen[r]) > 6, (r, len(seen[r]))  # the other rows do vary


def test_lock_wins_over_fotf_on_row_zero(kit):
    source = pattern.random_loops(1, len(kit), gen(9), "cpu")
    source.levels[0, 0] = 0  # a locked empty row 0
    kicks = torch.tensor(kit.ids_with_role("kick"))
    prior = pattern.Prior(fotf=True, lock=pattern.Lock.of(source, [0]))
    loops = pattern.mutate(pattern.random_loops(64, len(kit), gen(10), "cpu", kick_ids=kicks, prior=prior),
                           len(kit), gen(11), kick_ids=kicks, prior=prior)
    assert int(loops.levels[:, 0].sum()) == 0


def test_locks_compare_by_content():
    a = pattern.random_loops(1, 10, gen(12), "cpu")
    assert pattern.Lock.of(a, [1]) == pattern.Lock.of(a.take(0), [1])
    assert pattern.Lock.of(a, [1]) != pattern.Lock.of(a, [2])
    assert pattern.Lock.of(a, []) is None


# --- the one mix --------------------------------------------------------------------------------

def test_batched_render_with_levels_equals_one_at_a_time(kit):
    sr = 44100
    step = step_length(97.0, sr)
    audio = kit.audio_at(sr)
    bank = sample_bank(audio, step, 16, "cpu")
    loops = pattern.random_loops(8, len(kit), gen(13), "cpu")
    batched = render_bars(loops.levels, loops.sample_ids, bank)
    for b in range(len(loops)):
        one = render_bar_numpy(pattern.levels_to_strings(loops.levels[b]),
                               [audio[i] for i in loops.sample_ids[b].tolist()], step)
        np.testing.assert_allclose(batched[b].numpy(), one, atol=2e-5)
    quiet = pattern.Loops(torch.where(loops.levels > 0, 1, 0).to(torch.uint8), loops.sample_ids)
    assert float(render_bars(quiet.levels, quiet.sample_ids, bank).abs().max()) < float(batched.abs().max())


@pytest.mark.parametrize("kit_name", KITS)
@pytest.mark.parametrize("sr,bpm", [(16000, 120.0), (44100, 120.0), (44100, 300.0), (48000, 20.0)])
def test_densest_loops_keep_one_db_of_headroom(kit_name, sr, bpm):
    """All rows on all steps at level 9 with the kit's loudest samples: nothing above -1 dBFS."""
    kit = load_kit(kit_name)
    audio = kit.audio_at(sr)
    loudest = np.argsort([-float(np.abs(a).max()) for a in audio])[: pattern.N_ROWS]
    bank = sample_bank(audio, step_length(bpm, sr), pattern.N_STEPS, "cpu")
    ids = torch.tensor([loudest.tolist(), [int(loudest[0])] * pattern.N_ROWS])
    levels = torch.full((2, pattern.N_ROWS, pattern.N_STEPS), dynamics.MAX_LEVEL, dtype=torch.uint8)
    out = render_bars(levels, ids, bank)
    assert float(out.abs().max()) <= CEILING + 1e-6
    assert float(out.abs().max()) > 0.5 * CEILING  # loud, not silent
    ref = render_bar_numpy(pattern.levels_to_strings(levels[0]), [audio[i] for i in loudest], step_length(bpm, sr))
    assert float(np.abs(ref).max()) <= CEILING + 1e-6


# --- the store ------------------------------------------------------------------------------------

OLD_SCHEMA = """
CREATE TABLE loops(id INTEGER PRIMARY KEY, created REAL, kit TEXT, samples TEXT,
                   notes TEXT, roles TEXT, grid TEXT, p_like REAL, mode TEXT, bpm REAL);
CREATE TABLE ratings(seq INTEGER PRIMARY KEY AUTOINCREMENT, loop_id INTEGER, rating INTEGER,
                     ts REAL, p_like REAL, undone INTEGER DEFAULT 0);
"""


def test_store_migrates_an_old_state_dir(tmp_path):
    db = sqlite3.connect(tmp_path / "state.sqlite")
    db.executescript(OLD_SCHEMA)
    db.execute("INSERT INTO loops VALUES (1, 0, 'dd-analog', '[\"a\",\"b\"]', '[36,38]', '[\"kick\",\"snare\"]', "
               "'x...|..x.', 0.5, 'explore', 120.0)")
    db.execute("INSERT INTO ratings(loop_id, rating, ts, p_like) VALUES (1, 1, 0, 0.5)")
    db.commit()
    db.close()
    store = Store(tmp_path)
    old = store.loop(1)
    assert old.steps == ["x...", "..x."] and old.levels == ["7...", "..7."]
    assert [r.levels for r, _ in store.rated_loops()] == [["7...", "..7."]]
    new_id = store.add_loop(LoopRecord.of(kit="dd-analog", samples=["a"], notes=[36], roles=["kick"], steps=["x.x."],
                                          p_like=0.4, mode="good", tempo=100.0, levels=["9.2."]))
    assert new_id == 2 and store.loop(new_id).levels == ["9.2."]
    store.close()
    again = Store(tmp_path)  # migrating twice is harmless
    assert again.loop(2).levels == ["9.2."] and again.loop(1).levels == ["7...", "..7."]
    again.close()


# --- the session: locks and density across proposals ----------------------------------------------

@pytest.fixture
def session(tmp_path, kit):
    from deepdrummer_live.learn.learner import Learner
    from deepdrummer_live.session import Session

    store = Store(tmp_path)
    learner = Learner(kit, torch.device("cpu"), seed=2, chains=8, iters=2)
    learner.hearing_done = True  # no pretraining: these tests are about the generator's prior
    s = Session(learner, store)
    s.sent = []
    s.add_listener(lambda address, args, origin: s.sent.append((address, *args)))
    s.start()
    yield s
    s.shutdown()
    store.close()


def next_loop(session):
    before = session.current.id
    session.next()
    wait_for(lambda: session.current is not None and session.current.id != before, what="the next loop")
    return session.current.record


@pytest.mark.parametrize("mode", MODES)
def test_session_locks_hold_across_loops_and_modes(session, mode):
    wait_for(lambda: session.current is not None, what="a first loop")
    first = session.current.record
    commands.execute(session, "lock", (1, 1))
    commands.execute(session, "lock_toggle", (3,))
    commands.execute(session, "mode", (mode,))
    seen = set()
    for _ in range(5):
        loop = next_loop(session)
        for r in (1, 3):
            assert (loop.samples[r], loop.levels[r]) == (first.samples[r], first.levels[r])
        seen.add((loop.samples[0], loop.levels[0], loop.samples[2], loop.levels[2]))
    assert len(seen) > 2
    snap = session.snapshot()
    assert snap["locks"] == [1, 3] and [r["locked"] for r in snap["loop"]["rows"]] == [False, True, False, True]
    levels = [a for a in session.sent if a[0] == "/dd/levels"]
    assert levels[-1][1] == loop.id and list(levels[-1][2:]) == loop.levels
    commands.execute(session, "lock", (1, 0))
    assert session.snapshot()["locks"] == [3]
    with pytest.raises(DeepDrummerError, match="0-3|row"):
        commands.execute(session, "lock", (4, 1))
    with pytest.raises(DeepDrummerError, match="0-3"):
        session.set_lock(4, True)


def test_session_density_shapes_the_prior_and_persists(session):
    wait_for(lambda: session.current is not None, what="a first loop")
    commands.execute(session, "mode", ("random",))
    commands.execute(session, "density", (0.1,))
    commands.execute(session, "row_density", (2, 0.9))
    hits = [0, 0]
    for _ in range(6):
        loop = next_loop(session)
        hits[0] += sum(st.count("x") for r, st in enumerate(loop.steps) if r != 2)
        hits[1] += loop.steps[2].count("x")
    assert hits[0] / (6 * 3 * 16) < 0.25 and hits[1] / (6 * 16) > 0.7
    assert session.snapshot()["density"] == [0.1, 0.1, 0.9, 0.1]
    assert json.loads(session.store.get_meta("density")) == [0.1, 0.1, 0.9] + [0.1] * 5  # every row of 8
    with pytest.raises(DeepDrummerError, match="0.05"):
        commands.execute(session, "density", (1.5,))
    with pytest.raises(DeepDrummerError, match="0.05-0.95"):
        session.set_density(1.5)


# --- loudness ---------------------------------------------------------------------------------------

def test_lufs_of_a_reference_tone_and_of_silence():
    from deepdrummer_live.sound.loudness import SILENCE_LUFS, loop_lufs, peak_dbfs

    sr = 48000
    t = np.arange(sr // 2) / sr
    tone = np.sin(2 * np.pi * 997 * t)  # BS.1770: a full-scale 997 Hz sine reads -3.01 LUFS
    assert loop_lufs(tone, sr) == pytest.approx(-3.01, abs=0.1)
    assert loop_lufs(0.5 * tone, sr) == pytest.approx(-3.01 - 6.02, abs=0.1)
    assert loop_lufs(np.zeros(sr), sr) == SILENCE_LUFS
    assert peak_dbfs(0.5 * tone) == pytest.approx(-6.02, abs=0.01)


@pytest.mark.parametrize("kit_name", KITS)
def test_loops_of_a_session_sit_near_one_level(kit_name):
    """The headroom rule also evens out loudness: 90 % of random loops within 8 LU of each other."""
    from deepdrummer_live.sound.loudness import loop_lufs

    kit = load_kit(kit_name)
    sr = 44100
    audio = kit.audio_at(sr)
    bank = sample_bank(audio, step_length(120.0, sr), pattern.N_STEPS, "cpu")
    loops = pattern.random_loops(40, len(kit), gen(14), "cpu")
    bars = render_bars(loops.levels, loops.sample_ids, bank).numpy()
    lufs = np.array([loop_lufs(b, sr) for b in bars])
    assert np.percentile(lufs, 95) - np.percentile(lufs, 5) < 8.0, lufs
    assert -24.0 < np.median(lufs) < -9.0


def test_the_library_wav_of_the_densest_loop_stays_under_one_db(tmp_path):
    """After 24-bit quantization too: the file a DAW imports peaks at or under -1 dBFS."""
    import soundfile as sf

    kit = load_kit(None)
    sr = 44100
    audio = kit.audio_at(sr)
    loudest = int(np.argmax([float(np.abs(a).max()) for a in audio]))
    bank = sample_bank(audio, step_length(120.0, sr), pattern.N_STEPS, "cpu")
    levels = torch.full((1, pattern.N_ROWS, pattern.N_STEPS), dynamics.MAX_LEVEL, dtype=torch.uint8)
    bar = render_bars(levels, torch.full((1, pattern.N_ROWS), loudest), bank)[0].numpy()
    sf.write(tmp_path / "dense.wav", bar, sr, subtype="PCM_24")
    back, _ = sf.read(tmp_path / "dense.wav", dtype="float64")
    assert 20 * np.log10(np.abs(back).max()) <= -1.0
