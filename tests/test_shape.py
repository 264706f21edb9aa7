"""The shape of a loop (contract v1.2): rows, bars (a phrase) and meters, through the generator, the
critic that reads the loop, the store, the dataset, the library and OSC on a running daemon."""

from __future__ import annotations

import mido
import pytest
import torch

from deepdrummer_live.learn import grid
from deepdrummer_live.loop import LoopRecord
from deepdrummer_live.sound import pattern
from deepdrummer_live.sound.kit import load_kit
from deepdrummer_live.vocab import METERS, metric_classes, steps_per_bar

from daemon import start_with_client


@pytest.fixture(scope="module")
def kit():
    return load_kit(None)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_metric_positions_follow_the_meter():
    # 0 strong beat, 1 other beat, 2 an 8th between beats, 3 a 16th between 8ths
    assert metric_classes("4/4", 16) == [0, 3, 2, 3, 1, 3, 2, 3, 0, 3, 2, 3, 1, 3, 2, 3]
    assert metric_classes("6/8", 12) == [0, 3, 2, 3, 2, 3, 1, 3, 2, 3, 2, 3]  # beats on steps 0 and 6
    assert metric_classes("3/4", 12) == [0, 3, 2, 3, 1, 3, 2, 3, 1, 3, 2, 3]
    assert metric_classes("7/8", 14)[:9] == [0, 3, 2, 3, 1, 3, 2, 3, 1]  # 2+2+3 eighths
    assert metric_classes("5/4", 40)[20] == 0 and metric_classes("5/4", 20)[12] == 0  # 3+2: the 4 is strong
    assert {m: steps_per_bar(m) for m in METERS} == {"4/4": 16, "3/4": 12, "6/8": 12, "5/4": 20, "7/8": 14}
    assert pattern.fotf_row("6/8", 24).nonzero().flatten().tolist() == [0, 6, 12, 18]


@pytest.mark.parametrize("rows,bars,meter", [(1, 1, "4/4"), (8, 2, "7/8"), (5, 4, "6/8"), (8, 4, "5/4")])
def test_the_generator_makes_every_shape_and_phrases_vary_their_first_bar(kit, rows, bars, meter):
    prior = pattern.Prior(rows=rows, bars=bars, meter=meter)
    loops = pattern.random_loops(512, len(kit), gen(1), "cpu", prior=prior)
    spb = steps_per_bar(meter)
    assert loops.levels.shape == (512, rows, bars * spb) and loops.sample_ids.shape == (512, rows)
    assert loops.meter == meter and loops.bars == bars
    mutated = pattern.mutate(loops, len(kit), gen(2), prior=prior)
    assert mutated.levels.shape == loops.levels.shape and mutated.meter == meter
    if bars > 1:
        hits = loops.grid.reshape(512, rows, bars, spb)
        # later bars (but the last half of the last, where a fill may be) stay close to the first
        changed = (hits[:, :, 1:-1] != hits[:, :, :1]).float().mean() if bars > 2 else None
        assert changed is None or changed < 0.2
        first_half = (hits[:, :, -1, : spb // 2] != hits[:, :, 0, : spb // 2]).float().mean()
        assert first_half < 0.2
        # about half the phrases end in a fill: their last half bar is drawn again, denser
        last_half = hits[:, :, -1, spb // 2:].float().mean()
        assert last_half > hits[:, :, 0, spb // 2:].float().mean() + 0.05


def test_fotf_puts_a_kick_on_every_beat_of_the_meter(kit):
    prior = pattern.Prior(rows=3, bars=2, meter="6/8", fotf=True)
    kicks = torch.tensor(kit.ids_with_role("kick"))
    loops = pattern.random_loops(64, len(kit), gen(3), "cpu", prior=prior, kick_ids=kicks)
    assert bool((loops.grid[:, 0] == pattern.fotf_row("6/8", 24)).all())
    assert bool(torch.isin(loops.sample_ids[:, 0], kicks).all())


@pytest.mark.parametrize("meter,bars,rows", [("4/4", 1, 4), ("7/8", 2, 8), ("6/8", 4, 3)])
def test_grid_features_batched_equal_one_at_a_time(kit, meter, bars, rows):
    from deepdrummer_live.learn.kinds import GRID

    scorer = grid.GridScorer(kit, GRID.config, "cpu")
    loops = pattern.random_loops(32, len(kit), gen(4), "cpu", prior=pattern.Prior(rows=rows, bars=bars, meter=meter))
    batched = scorer.features(loops)
    assert batched.shape == (32, grid.N_FEATURES) and len(grid.feature_names()) == grid.N_FEATURES
    single = torch.cat([scorer.features(loops.take(i)) for i in range(32)])
    torch.testing.assert_close(batched, single)
    assert bool(torch.isfinite(batched).all())


def test_the_critic_that_reads_the_loop_learns_an_accent_taste_a_mix_hides(kit):
    """Accents on the beat against the same grid with flat levels: only the levels differ, and a few
    dozen ratings teach it (the hearing critic's weakest taste, docs/learning.md)."""
    from deepdrummer_live.learn.learner import Learner

    learner = Learner(kit, torch.device("cpu"), seed=1, chains=8, iters=1)
    loops = pattern.random_loops(80, len(kit), gen(5), "cpu")
    beats = torch.tensor(metric_classes("4/4", 16)) <= 1
    accented = loops.levels.clone()
    accented[:, :, beats] = torch.where(accented[:, :, beats] > 0, 9, 0).to(torch.uint8)
    accented[:, :, ~beats] = torch.where(accented[:, :, ~beats] > 0, 2, 0).to(torch.uint8)
    flat = torch.where(loops.levels > 0, 5, 0).to(torch.uint8)
    for i in range(20):
        learner.set_rating(i, pattern.Loops(accented[i:i + 1], loops.sample_ids[i:i + 1]), 1)
        learner.set_rating(100 + i, pattern.Loops(flat[20 + i:21 + i], loops.sample_ids[20 + i:21 + i]), 0)
    learner.train()
    p_acc = learner.scorer.score(learner.model, pattern.Loops(accented[40:], loops.sample_ids[40:]))
    p_flat = learner.scorer.score(learner.model, pattern.Loops(flat[40:], loops.sample_ids[40:]))
    assert float((p_acc > p_flat).float().mean()) > 0.9, (p_acc.mean(), p_flat.mean())


def test_a_taste_learnt_on_one_kit_ranks_loops_of_another_better_than_chance():
    """The pattern part of a taste carries over a kit change: a critic that learnt backbeat on the
    built-in analog kit ranks loops of the digital kit by that user's judgement well above chance."""
    from deepdrummer_live.learn.learner import Learner
    from deepdrummer_live.learn.simuser import make_user, parse_loop

    user = make_user("backbeat")
    first, second = load_kit("dd-analog"), load_kit("dd-digital")

    def judged(learner, loops):
        out = []
        for i in range(len(loops)):
            rec = learner.record(loops.take(i), id=i, p_like=0.5)
            out.append(user.like_probability(parse_loop(rec.loop_args(), rec.levels_args())))
        return torch.tensor(out)

    teacher = Learner(first, torch.device("cpu"), seed=2, chains=8, iters=1)
    train = pattern.random_loops(400, len(first), gen(6), "cpu")
    truth = judged(teacher, train)
    for i in range(400):
        teacher.set_rating(i, train.take(i), int(truth[i] > 0.5))
    teacher.train()
    student = Learner(second, torch.device("cpu"), seed=3, chains=8, iters=1)
    student.model.load_state_dict(teacher.model.state_dict())  # run --kit B --critic A/critic.pt
    test = pattern.random_loops(400, len(second), gen(7), "cpu")
    liked = judged(student, test) > 0.5
    p = student.scorer.score(student.model, test)
    auc = float((p[liked][:, None] > p[~liked][None, :]).float().mean())
    assert liked.any() and (~liked).any()
    assert auc > 0.7, auc  # chance: 0.5


def test_features_from_the_grid_survive_a_round_trip_through_ratings_csv(tmp_path, kit):
    """The loop's facts from its grid equal those the learner computes after ratings.csv rebuilds it."""
    from deepdrummer_live.learn.learner import Learner
    from deepdrummer_live.storage.dataset import read_csv, read_ratings, write_csv
    from deepdrummer_live.storage.store import Store

    learner = Learner(kit, torch.device("cpu"), seed=4, chains=8, iters=1)
    store = Store(tmp_path / "state")
    made = []
    for i, (rows, bars, meter) in enumerate([(4, 1, "4/4"), (8, 2, "7/8"), (2, 4, "5/4")]):
        loops = pattern.random_loops(1, len(kit), gen(10 + i), "cpu", prior=pattern.Prior(rows=rows, bars=bars,
                                                                                           meter=meter))
        loop_id = store.add_loop(learner.record(loops, p_like=0.5, mode="explore", tempo=120.0))
        store.add_rating(loop_id, i % 2 == 0, 0.5)
        made.append(loops)
    store.close()
    ratings, _ = read_ratings(tmp_path / "state")
    write_csv(ratings, tmp_path / "ratings.csv")
    back = read_csv(tmp_path / "ratings.csv")
    assert [(r.loop.meter, r.loop.bars, len(r.loop.rows)) for r in back] == [("4/4", 1, 4), ("7/8", 2, 8),
                                                                              ("5/4", 4, 2)]
    for loops, rating in zip(made, back):
        rebuilt = learner.loops_from_record(rating.loop)
        torch.testing.assert_close(learner.scorer.features(rebuilt), learner.scorer.features(loops))


def test_a_hearing_critic_reads_only_one_bar_of_4_4(kit):
    from deepdrummer_live.learn.learner import Learner

    hearing = Learner(kit, torch.device("cpu"), seed=1, chains=8, iters=1, kind="lean-hearing")
    names = [s.name for s in kit.samples[:2]]
    waltz = LoopRecord.of(id=1, kit=kit.name, samples=names, notes=[36, 38], roles=["kick", "snare"],
                          levels=["5" * 12] * 2, p_like=0.5, mode="explore", meter="3/4")
    assert hearing.loops_from_record(waltz) is None
    assert Learner(kit, torch.device("cpu"), seed=1, chains=8, iters=1).loops_from_record(waltz).meter == "3/4"


def midi_steps(path, step_ticks: int) -> tuple[tuple[int, int], int, dict]:
    """(time signature, loop length in steps, {note: steps with a note-on}) of a library .mid."""
    mid = mido.MidiFile(path)
    now, ons, sig = 0, {}, None
    for msg in mid.tracks[0]:
        now += msg.time
        if msg.type == "time_signature":
            sig = (msg.numerator, msg.denominator)
        elif msg.type == "note_on" and msg.velocity:
            ons.setdefault(msg.note, []).append(now // step_ticks)
    return sig, now // step_ticks, ons


@pytest.mark.slow
def test_shapes_over_osc_on_a_running_daemon(tmp_path):
    """--rows/--bars/--meter, /dd/shape after /dd/levels, /dd/rows /dd/bars /dd/meter with their errors,
    and the library's .mid in the loop's meter and length."""
    from deepdrummer_live.storage.library import STEP_TICKS

    d, c = start_with_client(tmp_path / "state", "--rows", "8", "--bars", "2", "--meter", "7/8")
    try:
        c.send("/dd/next")
        loop = c.expect("/dd/loop", timeout=60)
        levels = c.expect("/dd/levels")
        shape = c.expect("/dd/shape")
        assert loop[3] == 28 and len(loop[4:]) == 8 * 3 and all(len(st) == 28 for st in loop[6::3])
        assert levels[0] == loop[0] and len(levels) == 9 and all(len(lv) == 28 for lv in levels[1:])
        assert shape == [loop[0], 14, 2, "7/8"]
        for address, value, words in (("/dd/rows", 9, "1-8"), ("/dd/bars", 3, "1, 2"), ("/dd/meter", "9/8", "7/8"),
                                      ("/dd/rows", 2.5, "integer")):
            c.send(address, value)
            error = c.expect("/dd/error")
            assert error[1] == address and words in error[0], error
        c.send("/dd/rows", 3)
        c.send("/dd/bars", 4)
        c.send("/dd/meter", "6/8")
        c.send("/dd/ping")
        c.expect("/dd/pong")
        assert not [m for m in c.received() if m[0] == "/dd/error"]
        shape = None
        for _ in range(10):  # a loop already made with the old shape may come first
            c.send("/dd/next")
            shape = c.expect("/dd/shape", timeout=60)
            if shape[1:] == [12, 4, "6/8"]:
                break
        assert shape[1:] == [12, 4, "6/8"], shape
        c.send("/dd/like", shape[0])
        saved = c.expect("/dd/saved", timeout=60)
        sig, length, ons = midi_steps(saved[1], STEP_TICKS)
        assert sig == (6, 8) and length == 48 and len(ons) <= 3
    finally:
        assert d.stop() == 0
        c.close()


def test_the_taste_map_names_what_was_learnt_and_how_sure(kit):
    """A performer who likes a snare on the weak beats (and dislikes the rest): the map's surest like
    is about the snare group on the weak beats; the surfaces print it in words."""
    from deepdrummer_live.learn.learner import Learner
    from deepdrummer_live.surfaces.taste import taste_line

    learner = Learner(kit, torch.device("cpu"), seed=1, chains=8, iters=1)
    assert learner.taste_map() == {"likes": [], "avoids": [], "ratings": 0}
    snares = kit.ids_with_role("snare")
    loops = pattern.random_loops(60, len(kit), gen(9), "cpu")
    weak = torch.tensor(metric_classes("4/4", 16)) == 1
    for i in range(60):
        liked = i % 2 == 0
        lp = loops.take(i)
        lp.sample_ids[0, 1] = snares[i % len(snares)]
        lp.levels[0, 1] = torch.where(weak, 7, 0).to(torch.uint8) if liked else torch.where(weak, 0, 7).to(torch.uint8)
        learner.set_rating(i, lp, int(liked))
    learner.train()
    taste = learner.taste_map()
    assert taste["ratings"] == 60
    assert taste["likes"][0][0].startswith("snare") and "weak beats" in taste["likes"][0][0], taste
    assert taste["likes"][0][3] in ("sure", "leaning") and taste["likes"][0][2] >= 1
    line = taste_line(taste)
    assert line.startswith("+ snare") and f"({taste['likes'][0][3]})" in line and "| -" in line
    hearing = Learner(kit, torch.device("cpu"), seed=1, chains=8, iters=1, kind="lean-hearing")
    assert hearing.taste_map() is None  # a critic that hears has no named facts


@pytest.mark.parametrize("flags,named", [(["--rows", "9"], "--rows 9"), (["--bars", "3"], "--bars 3"),
                                         (["--meter", "9/8"], "--meter '9/8'"), (["--rows", "0"], "--rows 0"),
                                         (["--bars", "2", "--critic-kind", "lean-hearing"], "--bars")])
def test_a_bad_shape_flag_ends_run_with_exit_2_and_one_line(tmp_path, flags, named):
    import subprocess

    from daemon import CLI, REPO, free_udp_port

    proc = subprocess.run([*CLI, "run", "--headless", "--state-dir", str(tmp_path / "state"), "--midi-backend", "none",
                           "--audio", "none", "--web-port", "0", "--osc-port", str(free_udp_port()), *flags],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], proc.stderr
