"""Engine: batched paths equal one-at-a-time paths; torch MFCC equals librosa's; the paper's network."""

from __future__ import annotations

import dataclasses

import librosa
import numpy as np
import pytest
import torch

from deepdrummer_live.learn.critic import (
    LEAN_CONFIG,
    LEAN_SPEC,
    PAPER_CONFIG,
    PAPER_SPEC,
    PaperCritic,
    Trainer,
    augment_features,
    count_parameters,
    squash,
)
from deepdrummer_live.learn.features import MfccTransform
from deepdrummer_live.learn.kinds import build_critic
from deepdrummer_live.learn.learner import Learner
from deepdrummer_live.learn.search import search
from deepdrummer_live.sound import pattern
from deepdrummer_live.sound.live import LiveAudio
from deepdrummer_live.sound.render import CEILING, MIX_GAIN, render_bar_numpy, render_bars, sample_bank, step_length


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_render_batched_equals_hit_by_hit(kit):
    sr, step = 16000, step_length(120, 16000)
    audio = kit.audio_at(sr)
    bank = sample_bank(audio, step, 16, "cpu")
    loops = pattern.random_loops(12, len(kit), gen(1), "cpu")
    batched = render_bars(loops.levels, loops.sample_ids, bank)
    for b in range(len(loops)):
        levels = pattern.levels_to_strings(loops.levels[b])
        one = render_bar_numpy(levels, [audio[i] for i in loops.sample_ids[b].tolist()], step)
        np.testing.assert_allclose(batched[b].numpy(), one, atol=1e-5)


def test_render_wraps_tails_and_keeps_headroom():
    step = 4
    long_tail = np.full(3 * step, 0.5, dtype=np.float32)  # rings for three steps
    bank = sample_bank([long_tail], step, 4, "cpu")
    grid = torch.tensor([[[False, False, False, True]]])  # hit on the last step: its tail wraps
    out = render_bars(grid, torch.tensor([[0]]), bank)[0].numpy()
    expected = np.zeros(16, dtype=np.float32)
    expected[12:16] = 0.5 * MIX_GAIN
    expected[0:8] = 0.5 * MIX_GAIN
    np.testing.assert_allclose(out, expected)
    loud = sample_bank([np.linspace(3.0, 1.0, 16, dtype=np.float32)], step, 4, "cpu")
    out = render_bars(torch.ones(1, 1, 4, dtype=torch.bool), torch.tensor([[0]]), loud)[0]
    assert float(out.abs().max()) == pytest.approx(CEILING)  # turned down as a whole, not clipped
    assert len(torch.unique(out)) > 1


@pytest.mark.parametrize("spec", [LEAN_SPEC, PAPER_SPEC], ids=["lean", "paper"])
def test_mfcc_matches_librosa(spec):
    rng = np.random.default_rng(0)
    n = 16000
    y = (rng.standard_normal(n) * np.exp(-np.arange(n) / 3000)).astype(np.float32)
    ours = MfccTransform(spec, "cpu")(torch.from_numpy(y)[None])[0].numpy()
    kwargs = dict(sr=spec.sr, n_mfcc=spec.n_mfcc, n_fft=spec.n_fft, hop_length=spec.hop, n_mels=spec.n_mels,
                  fmin=spec.fmin, fmax=spec.fmax, htk=spec.htk, norm="ortho", mel_norm=spec.mel_norm,
                  window="hann")
    assert spec.top_db == 80.0  # librosa.feature.mfcc's own power_to_db default
    if spec.circular:
        half = spec.n_fft // 2
        padded = np.concatenate([y[-half:], y, y[:half]])
        ref = librosa.feature.mfcc(y=padded, center=False, **kwargs)[:, : n // spec.hop]
    else:
        ref = librosa.feature.mfcc(y=y, center=True, pad_mode=spec.pad_mode, **kwargs)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=2e-2)


def test_mfcc_batched_equals_one_at_a_time():
    rng = np.random.default_rng(1)
    audio = torch.from_numpy(rng.standard_normal((5, 32000)).astype(np.float32)) * torch.linspace(0.01, 1, 5)[:, None]
    tr = MfccTransform(LEAN_SPEC, "cpu")
    batched = tr(audio)
    for i in range(5):
        torch.testing.assert_close(batched[i], tr(audio[i:i + 1])[0], atol=1e-3, rtol=1e-4)


def test_scores_batched_equal_one_at_a_time(scorer, kit):
    model = build_critic(LEAN_CONFIG).eval()
    torch.nn.init.normal_(model.mlp[0].weight, generator=gen(1))  # an untrained like head is all zeros
    loops = pattern.random_loops(40, len(kit), gen(2), "cpu")
    batched = scorer.score(model, loops)
    singles = torch.cat([scorer.score(model, loops.take(i)) for i in range(len(loops))])
    torch.testing.assert_close(batched, singles, atol=1e-5, rtol=1e-4)


def test_paper_critic_is_the_papers_network():
    model = PaperCritic()
    assert count_parameters(model) == 291290  # the original's 291k parameters
    feats = MfccTransform(PAPER_SPEC, "cpu")(torch.zeros(2, 88200))
    assert feats.shape == (2, 60, 442)
    assert model.eval()(feats).shape == (2, 2)
    # the paper's hyper-parameters reach the network and the optimizer (values: critic.py)
    built = build_critic(PAPER_CONFIG)
    assert {m.p for m in built.modules() if isinstance(m, torch.nn.Dropout)} == {PAPER_CONFIG.dropout}
    trainer = Trainer(PAPER_CONFIG, built, MfccTransform(PAPER_SPEC, "cpu"), gen(0))
    (group,) = trainer.optimizer.param_groups
    assert (group["lr"], group["weight_decay"]) == (PAPER_CONFIG.lr, PAPER_CONFIG.weight_decay)
    for i in range(4):
        trainer.set_example(i, torch.zeros(100), i % 2)
    x, y = trainer._batch()
    assert len(x) == PAPER_CONFIG.batch_size and y.sum().item() == PAPER_CONFIG.batch_size // 2


def test_mutation_and_fotf_follow_the_paper(kit):
    g = gen(3)
    kicks = torch.tensor(kit.ids_with_role("kick"))
    loops = pattern.random_loops(4000, len(kit), g, "cpu")
    assert abs(loops.grid.float().mean().item() - pattern.P_CELL_ON) < 0.02
    mutated = pattern.mutate(loops, len(kit), g)
    # cells toggle with p=0.05 (the paper's); a row thinned or filled as a whole (ours, p=0.1) flips about a
    # quarter of its cells at density 0.5 (a toggled cell's move undoes it half the time)
    toggled = (1 - pattern.P_ROW_DENSITY) * pattern.P_TOGGLE + pattern.P_ROW_DENSITY * (0.25 + pattern.P_TOGGLE / 2)
    assert abs((mutated.grid ^ loops.grid).float().mean().item() - toggled) < 0.005
    swapped = (mutated.sample_ids != loops.sample_ids).float().mean().item()
    assert abs(swapped - pattern.P_SWAP_SAMPLE * (1 - 1 / len(kit))) < 0.02
    fotf = pattern.mutate(pattern.random_loops(200, len(kit), g, "cpu", True, kicks), len(kit), g, True, kicks)
    assert bool((fotf.grid[:, 0] == pattern.fotf_row()).all())
    assert bool(torch.isin(fotf.sample_ids[:, 0], kicks).all())


def test_search_is_reproducible_and_respects_modes(scorer):
    model = build_critic(LEAN_CONFIG).eval()
    a = search(scorer, model, "explore", gen(5), chains=16, iters=3)
    b = search(scorer, model, "explore", gen(5), chains=16, iters=3)
    assert torch.equal(a.loop.grid, b.loop.grid) and a.p_like == b.p_like
    assert a.candidates == 16 * 4
    # bad hill-climbs: with a head that has a taste, it ends at or below its best start
    with torch.no_grad():
        for p in model.mlp.parameters():
            p.copy_(torch.randn(p.shape, generator=gen(9)))
    start = pattern.random_loops(32, scorer.n_samples, gen(6), "cpu", kick_ids=scorer.kick_ids)
    bad = search(scorer, model, "bad", gen(6), chains=32, iters=4)
    assert bad.p_like <= float(scorer.score(model, start).min()) + 1e-6
    assert bad.p_like < float(scorer.score(model, start).mean())  # the spread is real: it found lower ones
    rnd = search(scorer, model, "random", gen(6))
    assert rnd.candidates == 1
    with pytest.raises(ValueError):
        search(scorer, model, "groovy", gen(0))


@pytest.fixture(scope="module")
def hearing_engine(kit):
    """An learner whose critic has learnt to hear this kit's roles (a short pretraining)."""
    config = dataclasses.replace(LEAN_CONFIG, hearing_pass_loops=1024)  # the default steps: it hears counts too
    learner = Learner(kit, torch.device("cpu"), seed=3, config=config, chains=16, iters=2)
    learner.learn_to_hear()
    return learner


def test_hearing_knows_which_role_starts_on_which_step(hearing_engine, kit):
    learner = hearing_engine
    loops = pattern.random_loops(256, len(kit), gen(11), "cpu")
    with torch.no_grad():
        hit = torch.sigmoid(learner.model.role_logits(learner.scorer.features(loops))) > 0.5  # [n, group, step]
    from deepdrummer_live.learn.critic import ROLE_GROUPS

    group_of = torch.tensor([ROLE_GROUPS[r] for r in kit.roles])
    # It hears how loud a hit is (target level / 9): loud hits (level >= 6) read above 0.5.
    truth, loud = torch.zeros_like(hit), torch.zeros_like(hit)
    for r in range(4):
        truth[torch.arange(256), group_of[loops.sample_ids[:, r]]] |= loops.grid[:, r]
        loud[torch.arange(256), group_of[loops.sample_ids[:, r]]] |= loops.levels[:, r] >= 6
    recall = (hit & loud).sum() / loud.sum()
    precision = (hit & truth).sum() / hit.sum()
    assert recall > 0.6 and precision > 0.8, (recall, precision)  # chance: both near 0.1


def test_training_moves_the_critic_towards_ratings(hearing_engine, kit):
    """Likes have a kick on every beat, dislikes have none: a few rounds separate them."""
    learner = hearing_engine
    g = gen(7)
    kicks = torch.tensor(kit.ids_with_role("kick"))
    liked = pattern.random_loops(16, len(kit), g, "cpu", fotf=True, kick_ids=kicks)
    disliked = pattern.random_loops(16, len(kit), g, "cpu")
    disliked.levels[:, :, ::4] = 0  # nothing on the beats
    for i in range(16):
        learner.set_rating(i, liked.take(i), 1)
        learner.set_rating(100 + i, disliked.take(i), 0)
    for _ in range(6):
        learner.train()
    fresh_l = pattern.random_loops(32, len(kit), g, "cpu", fotf=True, kick_ids=kicks)
    fresh_d = pattern.random_loops(32, len(kit), g, "cpu")
    fresh_d.levels[:, :, ::4] = 0
    score = learner.scorer.score
    assert score(learner.model, fresh_l).mean() > score(learner.model, fresh_d).mean() + 0.3


def test_the_like_heads_inputs_are_squashed_but_keep_their_order(hearing_engine, kit):
    """The search cannot buy P(like) without bound by pushing one heard summary far past what random
    loops give (docs/learning.md: the head extrapolates where hearing errs); near the middle the
    inputs are as they were, and a louder summary still counts more."""
    x = torch.tensor([-50.0, -3.0, -0.3, 0.0, 0.2, 1.0, 3.0, 50.0])
    y = squash(x, 2.0)
    assert y.abs().max() <= 2.0 and torch.all(y[1:] > y[:-1])
    assert torch.allclose(y[2:5], x[2:5], atol=0.01)
    assert torch.equal(squash(x, 0.0), x)
    model = hearing_engine.model
    assert model.head_clip == LEAN_CONFIG.head_clip > 0  # the default critic squashes
    loops = pattern.random_loops(64, len(kit), torch.Generator().manual_seed(3), "cpu")
    with torch.no_grad():
        feats = hearing_engine.scorer.features(loops)
        z = (model.heard(feats) - model.head_mean) / model.head_std
        assert torch.equal(model.head_input(feats), squash(z, model.head_clip))


def test_feature_augmentation_gain_moves_only_c0():
    cfg = dataclasses.replace(LEAN_CONFIG, noise_sd=0.0, max_shift=0)
    feats = torch.randn(4, 20, 64)
    out = augment_features(feats, cfg, gen(9))
    torch.testing.assert_close(out[:, 1:], feats[:, 1:])
    assert not torch.allclose(out[:, 0], feats[:, 0])


def test_live_audio_is_the_critics_mix(kit):
    """The bar the performer hears (any rate/tempo) is render_bars of the same loop: one mix."""
    learner = Learner(kit, torch.device("cpu"), seed=1, chains=8, iters=1, kind="lean-hearing")
    prop = learner.propose("random", False)
    live = LiveAudio(learner.kit).render(prop.loops, 120.0, 16000)
    critic_input = learner.scorer.audio(prop.loops)[0].numpy()
    np.testing.assert_allclose(live, critic_input, atol=1e-6)
    slow = LiveAudio(learner.kit).render(prop.loops, 90.0, 44100)
    assert len(slow) == 16 * step_length(90.0, 44100)
