"""A taste to start from (`deepdrummer-live pretrain`, `dataset import`): critics whose taste is trained
before a session, from exported ratings (one or many participants) or from the performer's own music
(bars they like against the generator's random loops). Learning to hear the kit is another thing
(the hearing pass: critic.train_hearing, `critic pretrain-hearing`).

Every critic here is a `Learner`'s critic written in the `Learner.save_checkpoint` format, so
`run --critic PATH` (and a state dir's `critic.pt`) load it as they load any checkpoint. The
trunk first learns to hear the kit (as every new session does), then the like head is trained on
the examples, with the session's own trainer (balanced batches, the same augmentation).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from deepdrummer_live.learn import checkpoint
from deepdrummer_live.learn.critic import LEAN_CONFIG, REFERENCE_BPM, ROLE_GROUPS
from deepdrummer_live.learn.learner import Learner
from deepdrummer_live.sound import pattern
from deepdrummer_live.sound.dynamics import MAX_LEVEL
from deepdrummer_live.sound.pattern import Loops
from deepdrummer_live.sound.render import step_length
from deepdrummer_live.storage.dataset import Rating
from deepdrummer_live.vocab import MAX_ROWS

MAX_PRETRAIN_BATCHES = 600  # enough for the like head (a logistic regression) to settle
REPLAY_WINDOW = 10  # ratings per point of the replay's learning curve


def new_learner(kit, device, seed: int, kind: str | None = None) -> Learner:
    learner = Learner(kit, device, seed, kind=kind)
    checkpoint.choose_start(learner)  # a built-in kit's shipped hearing critic, as a new session
    if learner.needs_hearing():
        learner.learn_to_hear()
    return learner


def train_head(learner: Learner, n_examples: int) -> float | None:
    """As many batches as a session would spend on `n_examples` ratings, capped."""
    n = min(MAX_PRETRAIN_BATCHES, learner.config.batches_per_rating * max(n_examples, 1))
    return learner.train(n)


def critic_from_ratings(kit, ratings: list[Rating], device, seed: int = 1) -> tuple[Learner, int]:
    """(a learner whose critic learnt every rating it can rebuild, how many it used)."""
    learner = new_learner(kit, device, seed)
    used = 0
    for key, r in enumerate(ratings):
        loops = learner.loops_from_record(r.loop)
        if loops is not None:
            learner.set_rating(key, loops, int(r.liked))
            used += 1
    if not learner.trainer.ready():
        from deepdrummer_live.errors import StateError

        raise StateError(f"{used} usable ratings with kit {kit.name!r}, not both likes and dislikes; a critic "
                         f"needs at least one of each (import more datasets, or pass --kit with their kit)")
    train_head(learner, used)
    return learner, used


def replay(kit, ratings: list[Rating], device, seed: int = 1) -> dict:
    """A participant's ratings in their order through a fresh critic: each is predicted (P(like) >= 0.5)
    before the critic learns from it, as it happened live. -> accuracy per window and per half,
    beside the baseline that always answers the majority label seen so far."""
    learner = new_learner(kit, device, seed)
    hits, base, skipped = [], [], 0
    seen = {0: 0, 1: 0}
    for key, r in enumerate(ratings):
        loops = learner.loops_from_record(r.loop)
        if loops is None:
            skipped += 1
            continue
        if learner.trainer.ready():
            p = float(learner.scorer.score(learner.model, loops)[0])
            hits.append(float((p >= 0.5) == r.liked))
            base.append(float((seen[1] >= seen[0]) == r.liked))
        learner.set_rating(key, loops, int(r.liked))
        seen[int(r.liked)] += 1
        learner.train()

    def mean(v):
        return sum(v) / len(v) if v else float("nan")

    half = len(hits) // 2
    curve = [(k + len(ratings) - len(hits) - skipped, mean(hits[k:k + REPLAY_WINDOW]))
             for k in range(0, len(hits), REPLAY_WINDOW)]
    return {"ratings": len(ratings), "skipped": skipped, "predicted": len(hits), "accuracy": mean(hits),
            "first_half": mean(hits[:half]), "second_half": mean(hits[half:]),
            "majority_baseline": mean(base), "curve": curve}


def critic_sr() -> int:
    """The audio rate the session's critic hears at."""
    return LEAN_CONFIG.audio_sr


def reference_bar_samples() -> int:
    """Samples of one bar at the reference tempo and the critic's rate (what `Scorer.audio` renders)."""
    return pattern.N_STEPS * step_length(REFERENCE_BPM, critic_sr())


def transcribe(hearer: Learner, feats: torch.Tensor, threshold: float = 0.5) -> list[Loops | None]:
    """What a hearing critic hears in bars of music, as loops of its kit (one per bar, or None when it
    hears no drum of a group the kit has): a row per role group it hears, played by the kit's first
    sample of that group, a hit where the group's probability passes `threshold`, at level round(9 p).

    feats: MFCC `[n, n_mfcc, frames]` of one bar each at the reference tempo -> n loops `[1, rows, 16]`.
    """
    with torch.no_grad():
        heard = torch.sigmoid(hearer.model.role_logits(feats))  # [n, group, step]
    first_of_group: dict[int, int] = {}
    for i, role in enumerate(hearer.kit.roles):
        first_of_group.setdefault(ROLE_GROUPS.get(role, ROLE_GROUPS["perc"]), i)
    out: list[Loops | None] = []
    for probs in heard:
        groups = [g for g in first_of_group if bool((probs[g] > threshold).any())]
        groups = sorted(groups, key=lambda g: -float(probs[g].sum()))[:MAX_ROWS]
        if not groups:
            out.append(None)
            continue
        p = probs[groups]
        levels = torch.where(p > threshold, (p * MAX_LEVEL).round().clamp(1, MAX_LEVEL), torch.zeros_like(p))
        ids = torch.tensor([[first_of_group[g] for g in groups]], device=feats.device)
        out.append(Loops(levels.to(torch.uint8)[None], ids))
    return out


def critic_from_music(kit, bars: np.ndarray, device, *, seed: int = 1, negatives: int | None = None,
                      kind: str | None = None) -> Learner:
    """A critic that likes the performer's bars (float `[n, bar_samples]` at the hearing critic's rate and
    the reference tempo) over random loops of the generator (the paper's prior, `negatives` of them,
    default as many as bars). Each bar is brought to the random loops' median loudness, so a critic
    that hears cannot tell them apart by level alone. The default critic reads loops, not audio: a
    hearing critic of the kit first turns each bar into the loop it hears (`transcribe`), then the
    same like head learns from those."""
    learner = new_learner(kit, device, seed, kind)
    hearer = learner if learner.kind.name == LEAN_CONFIG.name else new_learner(kit, device, seed, LEAN_CONFIG.name)
    n_neg = negatives or len(bars)
    randoms = pattern.random_loops(n_neg, len(kit), learner.train_gen, learner.device)
    with torch.no_grad():
        neg_audio = hearer.scorer.audio(randoms)
    target_rms = float(neg_audio.square().mean(dim=1).sqrt().median())
    pos = torch.from_numpy(np.asarray(bars, dtype=np.float32)).to(learner.device)
    pos = pos * (target_rms / pos.square().mean(dim=1, keepdim=True).sqrt().clamp(min=1e-6))
    pos = pos.clamp(-1.0, 1.0)
    with torch.no_grad():
        if learner.kind.trains_on == "audio":  # the paper's critic hears the bar itself
            pos_feats = learner.scorer.transform(pos)
        elif learner is hearer:
            pos_feats = learner.scorer.transform(pos)
        else:
            heard = [loops for loops in transcribe(hearer, hearer.scorer.transform(pos)) if loops is not None]
            if not heard:
                from deepdrummer_live.errors import StateError

                raise StateError(f"the hearing critic of kit {kit.name!r} hears no drum in the {len(bars)} bars; "
                                 f"use --critic-kind lean-hearing (it learns from the bars as they sound)")
            pos_feats = [learner.scorer.features(loops)[0] for loops in heard]
        neg_feats = learner.scorer.features(randoms)
    for i, f in enumerate(pos_feats):
        learner.trainer.set_example(("like", i), f, 1)
    for i, f in enumerate(neg_feats):
        learner.trainer.set_example(("random", i), f, 0)
    train_head(learner, len(bars) + n_neg)
    return learner


def write_critic(learner: Learner, path: Path) -> Path:
    """The learner's critic as a checkpoint file at `path` (atomically, the session's format)."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    # save_checkpoint writes to a store's checkpoint_path; this names any file instead.
    checkpoint.write(learner.checkpoint_contents()[None], path)
    return path

