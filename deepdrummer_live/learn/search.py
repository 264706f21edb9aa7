"""Scoring and search: the paper's Metropolis-Hastings and hill-climbing, over many chains at once.

`Scorer` turns loops into P(like) in one batch (render -> MFCC -> critic) on one device.
`search` runs a population of chains as tensors: every iteration mutates all chains, scores
all candidates in one batch and accepts per chain. `PaperScorer` is the original program's
one-candidate-at-a-time path, kept as the baseline the benchmark compares against.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from deepdrummer_live.learn.critic import PAPER_SR, REFERENCE_BPM, CriticConfig, p_like
from deepdrummer_live.learn.features import MfccTransform
from deepdrummer_live.sound import pattern
from deepdrummer_live.sound.kit import Kit
from deepdrummer_live.sound.pattern import Loops
from deepdrummer_live.sound.render import render_bars, render_paper, sample_bank, step_length
from deepdrummer_live.vocab import MODES

GOOD_P = 0.95  # the paper's phase II: MH until P(like) >= 0.95


class Scorer:
    """Render, featurize and score loops of one kit, batched, on `device`."""

    cpu_chunk = 16

    def __init__(self, kit: Kit, config: CriticConfig, device):
        self.kit = kit
        self.config = config
        self.device = torch.device(device)
        self.step_len = step_length(REFERENCE_BPM, config.audio_sr)
        self.bank = sample_bank(kit.audio_at(config.audio_sr), self.step_len, pattern.N_STEPS, self.device)
        self.transform = MfccTransform(config.spec, self.device)
        self.n_samples = len(kit)
        kicks = kit.ids_with_role("kick") or list(range(len(kit)))
        self.kick_ids = torch.tensor(kicks, device=self.device)

    def audio(self, loops: Loops) -> torch.Tensor:
        """One mixed bar per loop at the critic's rate and reference tempo `[batch, samples]`."""
        return render_bars(loops.levels, loops.sample_ids, self.bank)

    def features(self, loops: Loops) -> torch.Tensor:
        """MFCC `[batch, n_mfcc, frames]` of each loop's bar."""
        # Small chunks on the CPU keep a bar's audio and its spectrogram in cache (the pipeline is
        # memory-bound there: 5x faster at 16 loops a chunk than at 1024); a GPU wants big batches.
        chunk = self.cpu_chunk if self.device.type == "cpu" else 8192
        outs = [self.transform(self.audio(loops.take(slice(i, i + chunk))))
                for i in range(0, len(loops), chunk)]
        return torch.cat(outs)

    def score(self, model, loops: Loops) -> torch.Tensor:
        """P(like) `[batch]`."""
        return p_like(model, self.features(loops))


class PaperScorer:
    """The original path: render 4 bars at 44.1 kHz in numpy, keep the first 2 s, score one loop."""

    def __init__(self, kit: Kit, config: CriticConfig, device):
        self.kit = kit
        self.config = config
        self.device = torch.device(device)
        self.samples = kit.audio_at(PAPER_SR)
        self.transform = MfccTransform(config.spec, self.device)
        self.n_samples = len(kit)
        kicks = kit.ids_with_role("kick") or list(range(len(kit)))
        self.kick_ids = torch.tensor(kicks, device=self.device)
        self.n_audio = int(config.bar_seconds * PAPER_SR)

    def audio_one(self, grid_row_step: torch.Tensor, ids: torch.Tensor) -> np.ndarray:
        steps = pattern.grid_to_strings(grid_row_step.cpu())
        samples = [self.samples[i] for i in ids.tolist()]
        return render_paper(steps, samples)[: self.n_audio]

    def audio(self, loops: Loops) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.audio_one(g, i) for g, i in zip(loops.grid, loops.sample_ids)])
                                ).to(self.device)

    def features(self, loops: Loops) -> torch.Tensor:
        return self.transform(self.audio(loops))

    def score(self, model, loops: Loops) -> torch.Tensor:
        """One candidate at a time, as the original program did."""
        out = [p_like(model, self.transform(torch.from_numpy(self.audio_one(g, i))[None].to(self.device)))
               for g, i in zip(loops.grid, loops.sample_ids)]
        return torch.cat(out) if out else torch.zeros(0, device=self.device)


@dataclass
class SearchResult:
    loop: Loops  # one loop
    p_like: float
    candidates: int  # how many candidates were scored


def search(scorer, model, mode: str, gen: torch.Generator, chains: int = 256, iters: int = 8,
           fotf: bool = False, should_stop: Callable[[], bool] | None = None,
           prior: pattern.Prior | None = None) -> SearchResult:
    """One proposal in `mode` from `chains` chains run for at most `iters` iterations each.

    explore: Metropolis-Hastings on P(like) (accept with min(1, p_new / p_cur)), then one chain's
    state drawn at random; good: the same until a chain reaches P(like) >= 0.95; bad: hill-climb
    towards P(like) = 0; random: the prior alone. `should_stop` is polled between iterations:
    when a performer is waiting, the chains' current states are good enough (anytime search).
    `prior` (density, dynamics, locked rows) shapes every candidate of every mode: locked rows
    are the same in all of them, so the search varies only the others.
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: use one of {', '.join(MODES)}")
    dev = scorer.device
    kick_ids = scorer.kick_ids
    n = 1 if mode == "random" else chains
    cur = pattern.random_loops(n, scorer.n_samples, gen, dev, fotf=fotf, kick_ids=kick_ids, prior=prior)
    cur_p = scorer.score(model, cur)
    scored = n
    if mode != "random":
        for _ in range(iters):
            if mode == "good" and bool((cur_p >= GOOD_P).any()):
                break
            if should_stop is not None and should_stop():
                break
            new = pattern.mutate(cur, scorer.n_samples, gen, fotf=fotf, kick_ids=kick_ids, prior=prior)
            new_p = scorer.score(model, new)
            scored += n
            if mode == "bad":
                accept = new_p <= cur_p
            else:
                ratio = new_p / cur_p.clamp(min=1e-12)
                accept = torch.rand(n, generator=gen, device=dev) < ratio
            cur = new.where(accept, cur)
            cur_p = torch.where(accept, new_p, cur_p)
    if mode == "bad":
        pick = int(torch.argmin(cur_p))
    elif mode == "good":
        hits = torch.nonzero(cur_p >= GOOD_P).flatten()
        pick = int(hits[torch.randint(0, len(hits), (), generator=gen, device=dev)]) if len(hits) else int(
            torch.argmax(cur_p))
    else:
        pick = int(torch.randint(0, n, (), generator=gen, device=dev))
    return SearchResult(cur.take(pick), float(cur_p[pick]), scored)


def resolve_device(name: str) -> torch.device:
    """auto|cpu|cuda|mps -> torch.device; UsageError naming the value and the fix when unusable."""
    from deepdrummer_live.errors import UsageError

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("device 'cuda': no CUDA device is available to torch; use auto or cpu")
        return torch.device("cuda")
    if name == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise UsageError("device 'mps': Metal (MPS) is not available; use auto or cpu")
        return torch.device("mps")
    raise UsageError(f"device {name!r} unknown; use auto, cpu, cuda or mps")
