"""Critics chosen through one interface; pre-trained starts: shipped hearing critics and `run --critic`."""

from __future__ import annotations

import io
import subprocess

import pytest
import torch

from deepdrummer_live.cli.critic import hearing_critic_file
from deepdrummer_live.learn import checkpoint
from deepdrummer_live.learn.critic import ROLE_GROUPS, with_overrides
from deepdrummer_live.learn.kinds import (
    KINDS,
    LEAN,
    PAPER,
    CriticFileError,
    kind_for,
    resolve_critic_source,
    shipped_names,
    shipped_path,
)
from deepdrummer_live.learn.learner import Learner
from deepdrummer_live.sound import pattern
from deepdrummer_live.storage.store import Store

from daemon import CLI, REPO, Daemon, OscClient, free_udp_port


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def hearing_quality(learner: Learner, kit) -> tuple[float, float]:
    """Recall (of loud hits) and precision of 'which role group starts on which step' on fresh
    random loops (the hearing reads a hit's level / 9, so quiet hits stay under 0.5)."""
    loops = pattern.random_loops(256, len(kit), gen(11), "cpu")
    with torch.no_grad():
        hit = torch.sigmoid(learner.model.role_logits(learner.scorer.features(loops))) > 0.5
    group_of = torch.tensor([ROLE_GROUPS[r] for r in kit.roles])
    truth, loud = torch.zeros_like(hit), torch.zeros_like(hit)
    for r in range(pattern.N_ROWS):
        truth[torch.arange(256), group_of[loops.sample_ids[:, r]]] |= loops.grid[:, r]
        loud[torch.arange(256), group_of[loops.sample_ids[:, r]]] |= loops.levels[:, r] >= 6
    return float((hit & loud).sum() / loud.sum()), float((hit & truth).sum() / hit.sum())


def test_one_registry_names_every_critic():
    from deepdrummer_live.learn.kinds import GRID
    from deepdrummer_live.vocab import CRITIC_KINDS

    assert set(KINDS) == {GRID.name, LEAN.name, PAPER.name} == set(CRITIC_KINDS)
    assert kind_for(False) is GRID and kind_for(True) is PAPER and kind_for(False, "lean-hearing") is LEAN
    assert GRID.any_shape and not LEAN.any_shape and not PAPER.any_shape
    assert LEAN.trains_on == "features" and PAPER.trains_on == "audio"
    paper = PAPER.build()
    assert "291,290 parameters" in PAPER.describe(paper)
    assert PAPER.budget(torch.device("cpu")) == (1, 100)  # the original program's one chain of 100 steps


def test_new_session_on_a_built_in_kit_starts_hearing_without_a_hearing_pass(kit):
    learner = Learner(kit, torch.device("cpu"), seed=2, chains=8, iters=1, kind=LEAN)
    assert learner.needs_hearing()
    where = checkpoint.choose_start(learner)
    assert "shipped" in where and not learner.needs_hearing()
    recall, precision = hearing_quality(learner, kit)
    assert recall > 0.6 and precision > 0.8, (recall, precision)  # chance: both near 0.1
    # It hears, but has no taste yet: every loop is a coin toss until the first ratings.
    p = learner.scorer.score(learner.model, pattern.random_loops(16, len(kit), gen(3), "cpu"))
    torch.testing.assert_close(p, torch.full_like(p, 0.5))


def test_a_shipped_critic_of_another_version_is_skipped_and_hearing_learnt(kit, tmp_path, monkeypatch, caplog):
    """A shipped file whose shapes no longer fit the critic (code changed, `make critics` not run)
    must not stop the session: it is reported and the critic learns to hear instead."""
    from deepdrummer_live.learn.kinds import kit_fingerprint

    state = torch.load(shipped_path(f"{kit.name}-hearing"), weights_only=True)
    state["model"]["per_step.weight"] = torch.zeros(64, 20, 4)  # another trunk width
    assert state["kit"] == kit_fingerprint(kit)
    misfit = tmp_path / "misfit.pt"
    torch.save(state, misfit)
    monkeypatch.setattr(checkpoint, "shipped_path", lambda name: misfit)
    learner = Learner(kit, torch.device("cpu"), seed=2, chains=8, iters=1, kind=LEAN)
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}
    assert checkpoint.choose_start(learner) == "an untrained critic"
    assert learner.needs_hearing()
    assert "unusable" in caplog.text and "misfit.pt" in caplog.text
    for k, v in learner.model.state_dict().items():  # nothing half-loaded
        torch.testing.assert_close(v, before[k])


def test_pretrain_hearing_is_deterministic_and_ships_small_files():
    a = hearing_critic_file("dd-analog", seed=0, steps=3, loops=32)
    b = hearing_critic_file("dd-analog", seed=0, steps=3, loops=32)
    assert a == b
    state = torch.load(io.BytesIO(a), weights_only=True)
    assert state["config"] == LEAN.name and state["hearing_done"]
    for name in ("dd-analog-hearing", "dd-digital-hearing"):
        assert name in shipped_names()
        assert shipped_path(name).stat().st_size < 200_000


def test_a_hearing_critic_made_for_a_kit_folder_starts_a_session_on_it(tmp_path):
    """`critic pretrain-hearing --kit DIR --out D` names the file after the folder, and a session on
    that kit started with `--critic` from it needs no hearing pass (the kit's fingerprint matches)."""
    from deepdrummer_live.sound.kit import load_kit

    from daemon import EXTERNAL_KIT

    proc = subprocess.run([*CLI, "critic", "pretrain-hearing", "--kit", str(EXTERNAL_KIT), "--out", str(tmp_path),
                           "--steps", "3", "--loops", "32"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    made = tmp_path / f"{EXTERNAL_KIT.name}-hearing.pt"
    assert made.is_file() and str(made) in proc.stdout
    learner = Learner(load_kit(EXTERNAL_KIT), torch.device("cpu"), seed=1, chains=8, iters=1, kind=LEAN)
    assert learner.needs_hearing()
    assert checkpoint.choose_start(learner, critic=made) == f"critic from {made}"
    assert not learner.needs_hearing()


def test_critic_files_are_checked_and_named(tmp_path):
    with pytest.raises(CriticFileError, match="nowhere"):
        resolve_critic_source(tmp_path / "nowhere.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a critic")
    with pytest.raises(CriticFileError, match="junk.pt"):
        LEAN.read(junk)
    paper = tmp_path / "paper.pt"
    torch.save({"model": PAPER.build().state_dict(), "config": PAPER.name}, paper)
    with pytest.raises(CriticFileError, match="'paper' critic"):
        LEAN.read(paper)
    (tmp_path / "state").mkdir()
    torch.save({"model": {}, "config": LEAN.name}, tmp_path / "state" / "critic.pt")
    assert resolve_critic_source(tmp_path / "state") == tmp_path / "state" / "critic.pt"
    assert resolve_critic_source("dd-analog-hearing") == shipped_path("dd-analog-hearing")


@pytest.mark.parametrize("what", ["missing", "junk", "paper"])
def test_run_with_a_bad_critic_exits_2_with_one_line(tmp_path, what):
    path = tmp_path / f"{what}.pt"
    if what == "junk":
        path.write_bytes(b"\x00garbage")
    elif what == "paper":
        torch.save({"model": PAPER.build().state_dict(), "config": PAPER.name}, path)
    # (a paper critic file is refused when another kind is asked for: alone, it would choose its own kind)
    proc = subprocess.run([*CLI, "run", "--headless", "--state-dir", str(tmp_path / "state"), "--midi-backend",
                           "none", "--audio", "none", "--osc-port", str(free_udp_port()), "--critic", str(path),
                           "--critic-kind", "grid"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0], proc.stderr


def fotf_taste(learner: Learner, kit) -> None:
    """Likes: a kick on every beat; dislikes: nothing on the beats."""
    g = gen(7)
    kicks = torch.tensor(kit.ids_with_role("kick"))
    liked = pattern.random_loops(20, len(kit), g, "cpu", fotf=True, kick_ids=kicks)
    disliked = pattern.random_loops(20, len(kit), g, "cpu")
    disliked.grid[:, :, ::4] = False
    for i in range(20):
        learner.set_rating(i, liked.take(i), 1)
        learner.set_rating(100 + i, disliked.take(i), 0)
    learner.train()


def test_run_critic_of_another_state_dir_resumes_its_taste(tmp_path, kit):
    """A critic that learnt to like four-on-the-floor, saved in state dir A, starts a new session in
    B: B's very first loops are scored by that taste (fotf loops high, loops with empty beats low)."""
    # 40 ratings of one steady taste given at once: every rating counts the same (no recency half-life,
    # which would let the last few dozen dominate; this test is about carrying a taste to another dir)
    from deepdrummer_live.learn.kinds import GRID

    teacher = Learner(kit, torch.device("cpu"), seed=4, chains=8, iters=1,
                      config=with_overrides(GRID.config, half_life=0))
    checkpoint.choose_start(teacher)
    fotf_taste(teacher, kit)
    store_a = Store(tmp_path / "a")
    checkpoint.save(teacher, store_a)
    store_a.close()

    student = Learner(kit, torch.device("cpu"), seed=5, chains=8, iters=1)
    checkpoint.choose_start(student, critic=resolve_critic_source(tmp_path / "a"))
    g = gen(8)
    kicks = torch.tensor(kit.ids_with_role("kick"))
    on = pattern.random_loops(32, len(kit), g, "cpu", fotf=True, kick_ids=kicks)
    off = pattern.random_loops(32, len(kit), g, "cpu")
    off.grid[:, :, ::4] = False
    assert student.scorer.score(student.model, on).mean() > student.scorer.score(student.model, off).mean() + 0.3

    # Over OSC: the daemon's first loops in `good` mode carry that taste's P(like); without it, 0.5.
    c = OscClient(0)
    d = Daemon(tmp_path / "b", "--critic", str(tmp_path / "a" / "critic.pt"), "--notify", f"127.0.0.1:{c.port}")
    c.target = ("127.0.0.1", d.port)
    d.start()
    try:
        first = c.expect("/dd/loop", timeout=60)
        assert abs(first[1] - 0.5) > 0.02, first  # an untrained head says exactly 0.5 (test above)
        c.send("/dd/mode", "good")
        good = []
        while len(good) < 3:
            c.send("/dd/next")
            msg = c.expect("/dd/loop", timeout=60)
            if msg[0] >= 2:  # made after the mode change
                good.append(msg[1])
        assert sum(good) / len(good) > 0.55, good
        c.send("/dd/status")
        assert c.expect("/dd/status")[5] >= 1  # train_steps: the teacher's
        # A crash before this session's first rating: the state dir already holds the critic it was
        # started from, so the next run (no --critic) resumes it, not an untrained one.
        d.kill9()
        d = Daemon(tmp_path / "b", "--notify", f"127.0.0.1:{c.port}", port=d.port)
        d.start()
        c.send("/dd/status")
        st = c.expect("/dd/status")
        while st[2] < 0:  # a status the daemon sent its subscribers while it was starting
            st = c.expect("/dd/status")
        assert st[5] >= 1, (st, d.output())
        c.send("/dd/next")
        resumed = c.expect("/dd/loop", timeout=60)
        assert abs(resumed[1] - 0.5) > 0.02, resumed
    finally:
        if d.proc.poll() is None:
            assert d.stop() == 0
        c.close()


def test_ratings_given_while_hearing_is_learnt_are_refitted_after(kit):
    import dataclasses

    from deepdrummer_live.learn.critic import LEAN_CONFIG

    config = dataclasses.replace(LEAN_CONFIG, hearing_pass_steps=4, hearing_pass_loops=64)
    learner = Learner(kit, torch.device("cpu"), seed=6, config=config, chains=4, iters=1)
    loops = pattern.random_loops(6, len(kit), gen(12), "cpu")
    for i in range(6):
        learner.set_rating(i, loops.take(i), i % 2)
    learner.train()  # on a trunk that has not learnt to hear yet
    fitted = learner.trainer.steps
    learner.learn_to_hear()
    assert learner.hearing_done and learner.trainer.steps == fitted + 1


def short_then_long_hearing(kit, long_steps: int, seed: int = 7) -> Learner:
    """A learner whose kit has no hearing critic: a 20-step pass at start, then `long_steps` more."""
    import dataclasses

    from deepdrummer_live.learn.critic import LEAN_CONFIG

    config = dataclasses.replace(LEAN_CONFIG, hearing_pass_steps=20, hearing_pass_loops=64,
                                 shipped_hearing_steps=20 + long_steps)
    return Learner(kit, torch.device("cpu"), seed=seed, config=config, chains=4, iters=1)


def test_the_long_hearing_pass_goes_on_in_slices_on_fresh_loops_in_a_bounded_pool(kit, monkeypatch):
    from deepdrummer_live.learn import learner as learner_module

    monkeypatch.setattr(learner_module, "HEARING_POOL_LOOPS", 128)
    monkeypatch.setattr(learner_module, "HEARING_FRESH_LOOPS", 32)
    monkeypatch.setattr(learner_module, "HEARING_STEPS_PER_REFRESH", 10)
    monkeypatch.setattr(learner_module, "HEARING_REFIT_EVERY", 100)
    torch.set_num_threads(1)
    learner = short_then_long_hearing(kit, long_steps=230)
    assert learner.long_hearing_left() == 0  # nothing to go on with before the short pass
    loops = pattern.random_loops(6, len(kit), gen(12), "cpu")
    for i in range(6):
        learner.set_rating(i, loops.take(i), i % 2)
    learner.learn_to_hear()
    assert learner.hearing_steps == 20 and learner.long_hearing_left() == 230
    version, fits = learner.version, learner.trainer.steps
    before = learner.scorer.score(learner.model, loops)
    changed, pools = [], set()
    while learner.long_hearing_left():
        changed.append(learner.keep_hearing(25))
        if learner._long_hearing is not None:
            pools.add(len(learner._long_hearing["feats"]))
    assert learner.hearing_steps == 250 and not learner.keep_hearing(25)
    # every 100 steps and at the end the like head follows the trunk: refitted on the ratings
    assert sum(changed) == 3 and learner.version == version + 3 and learner.trainer.steps == fits + 3
    assert max(pools) == 128 and min(pools) == 64  # grew from the short pass's 64 loops, then a ring
    assert learner._long_hearing is None  # its pool is let go
    assert not torch.allclose(before, learner.scorer.score(learner.model, loops))  # the critic moved


def test_a_checkpoint_keeps_how_far_hearing_went_and_a_resumed_session_goes_on(kit, tmp_path):
    torch.set_num_threads(1)
    learner = short_then_long_hearing(kit, long_steps=60)
    learner.learn_to_hear()
    learner.keep_hearing(25)
    while learner._long_hearing["fresh_in"] > 0 and learner.hearing_steps < 45:
        learner.keep_hearing(25)
    steps = learner.hearing_steps
    store = Store(tmp_path)
    checkpoint.save(learner, store)
    resumed = short_then_long_hearing(kit, long_steps=60, seed=8)
    assert checkpoint.load(resumed, store)
    assert resumed.hearing_steps == steps and resumed.long_hearing_left() == 80 - steps > 0
    while resumed.long_hearing_left():
        resumed.keep_hearing(25)  # a fresh pool, then on to the end
    assert resumed.hearing_steps == 80
    # complete: its file names no steps, as a shipped one (so `make critics` remakes those byte for byte)
    assert "hearing_steps" not in resumed.critic_state() and "hearing_steps" in learner.critic_state()
    # a critic that came with its hearing (shipped, --critic, an older file) has no long pass
    shipped = Learner(kit, torch.device("cpu"), seed=2, chains=4, iters=1, kind=LEAN)
    checkpoint.choose_start(shipped)
    assert shipped.hearing_steps is None and shipped.long_hearing_left() == 0 and not shipped.keep_hearing(25)
    store.close()


def test_a_critic_started_from_another_keeps_that_taste_as_its_prior(tmp_path, kit):
    """`run --critic A/critic.pt`: the first few ratings of the new session move the taste it came with
    (the head's L2 pulls towards it) instead of refitting from nothing on them; a resumed session keeps
    that prior. Without it, six ratings that say nothing about kicks on the beat would erase the taste."""
    teacher = Learner(kit, torch.device("cpu"), seed=4, chains=8, iters=1)
    fotf_taste(teacher, kit)
    store_a = Store(tmp_path / "a")
    checkpoint.save(teacher, store_a)
    store_a.close()

    def taste_gap(learner) -> float:
        g = gen(8)
        kicks = torch.tensor(kit.ids_with_role("kick"))
        on = pattern.random_loops(64, len(kit), g, "cpu", fotf=True, kick_ids=kicks)
        off = pattern.random_loops(64, len(kit), g, "cpu")
        return float(learner.scorer.score(learner.model, on).mean() - learner.scorer.score(learner.model, off).mean())

    def six_ratings(learner) -> None:
        loops = pattern.random_loops(6, len(kit), gen(11), "cpu")
        for i in range(6):
            learner.set_rating(1000 + i, loops.take(i), i % 2)
        learner.train()

    carried = Learner(kit, torch.device("cpu"), seed=5, chains=8, iters=1)
    checkpoint.start_from(carried, resolve_critic_source(tmp_path / "a"))
    before = taste_gap(carried)
    six_ratings(carried)
    assert before > 0.2 and taste_gap(carried) > 0.4 * before, (before, taste_gap(carried))
    forgetful = Learner(kit, torch.device("cpu"), seed=5, chains=8, iters=1)
    checkpoint.start_from(forgetful, resolve_critic_source(tmp_path / "a"))
    forgetful.trainer.anchor = None  # what a fit towards zero does with the same six ratings
    six_ratings(forgetful)
    assert taste_gap(forgetful) < 0.5 * taste_gap(carried), (taste_gap(forgetful), taste_gap(carried))
    store_b = Store(tmp_path / "b")
    checkpoint.save(carried, store_b)
    resumed = Learner(kit, torch.device("cpu"), seed=6, chains=8, iters=1)
    assert checkpoint.load(resumed, store_b) and resumed.trainer.anchor is not None
    for name, w in resumed.trainer.anchor.items():
        torch.testing.assert_close(w, carried.trainer.anchor[name])
    store_b.close()
