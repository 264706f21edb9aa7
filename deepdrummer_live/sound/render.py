"""The one mix definition, and renderers of one bar per loop (batched torch, and the paper's path).

A loop plays forever, so one bar heard in steady state is one bar rendered *circularly*: a
sample's tail that runs past the bar end sounds at the start of the next pass. Every hit is
scaled by MIX_GAIN (the paper's mix_vol) times `level_gain(level)` (its dynamics), rows are
summed, and a loop whose sum would peak above CEILING (-1 dBFS) is turned down as a whole until
it peaks there (never clipped: headroom for the DAW and the converters). The critic's input, the
live audio and the exported .wav all come from `render_bars`, so they follow this one rule.

Swing (the performer's knob, 0-0.5) delays every odd step by `swing` x one step. It is played,
not learnt: the critic hears the straight bar, so a rating stays valid whatever the swing was
when it was given and turning the knob never invalidates the buffered proposals. The live audio
is swung through the same `render_bars`: `swing_split` turns a swung loop into a straight one
whose extra rows play the one-shots delayed by `swing_delay` samples. The library's .wav puts
each hit on the sample of its .mid tick (`sum_events`) and goes through the same `mix`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from deepdrummer_live.sound.dynamics import DEFAULT_LEVEL, MAX_LEVEL, parse_level
from deepdrummer_live.vocab import STEPS_PER_BEAT

MIX_GAIN = 0.5
LEVEL_DB = 2.5  # dB between two levels: level 1 (ghost) is -15 dB, 9 (accent) +5 dB from the default
CEILING_DBFS = -1.0
# A hundredth of a dB under: float32 and 24-bit WAV rounding never lift a peak past -1 dBFS.
CEILING = 10.0 ** ((CEILING_DBFS - 0.01) / 20.0)


def level_gain(level) -> float:
    """The gain of a hit at `level` (0 = rest: 0; DEFAULT_LEVEL: 1; LEVEL_DB dB per level)."""
    level = int(level)
    if not 0 <= level <= MAX_LEVEL:
        raise ValueError(f"level {level}: use 0 (rest) to {MAX_LEVEL}")
    return 0.0 if level == 0 else 10.0 ** ((level - DEFAULT_LEVEL) * LEVEL_DB / 20.0)


LEVEL_GAINS = tuple(level_gain(v) for v in range(MAX_LEVEL + 1))


def _levels_of(levels: torch.Tensor) -> torch.Tensor:
    """A bool grid (every hit at DEFAULT_LEVEL) or uint8 levels -> long levels, same shape."""
    return levels.long() * DEFAULT_LEVEL if levels.dtype == torch.bool else levels.long()


def step_length(tempo: float, sr: int) -> int:
    """Samples per 16th note, rounded so a bar is a whole number of equal steps."""
    return int(round(sr * 60.0 / tempo / STEPS_PER_BEAT))


def swing_delay(step_len: int, swing: float) -> int:
    """Samples by which an odd step (0-based) is late: `swing` x one step, rounded."""
    return int(round(swing * step_len))


def step_onsets(n_steps: int, step_len: int, swing: float = 0.0) -> np.ndarray:
    """Onset of every step in samples from the bar start, long `[step]`: odd steps swung."""
    onsets = np.arange(n_steps, dtype=np.int64) * step_len
    onsets[1::2] += swing_delay(step_len, swing)
    return onsets


def delayed(sample: np.ndarray, delay: int) -> np.ndarray:
    """The one-shot starting `delay` samples late (leading silence), float32."""
    return np.concatenate([np.zeros(delay, dtype=np.float32), np.asarray(sample, dtype=np.float32)])


def swing_split(cells: torch.Tensor, sample_ids: torch.Tensor, n_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A swung loop as a straight one, for `render_bars` with a bank of `samples + delayed samples`.

    cells: any `[batch, row, step]` (grid or levels); sample_ids: long `[batch, row]` ->
    (`[batch, 2 * row, step]`: rows' even-step cells, then their odd-step cells;
    long `[batch, 2 * row]`: the rows' samples, then the same ids + `n_samples`, i.e. the delayed copies).
    """
    even = torch.zeros_like(cells)
    odd = torch.zeros_like(cells)
    even[..., 0::2] = cells[..., 0::2]
    odd[..., 1::2] = cells[..., 1::2]
    return torch.cat([even, odd], dim=1), torch.cat([sample_ids, sample_ids + n_samples], dim=1)


def fold_to_bar(sample: np.ndarray, bar_len: int) -> np.ndarray:
    """A one-shot as heard in a looping bar: its tail past `bar_len` wraps around (summed)."""
    n_bars = max(1, -(-len(sample) // bar_len))
    padded = np.zeros(n_bars * bar_len, dtype=np.float32)
    padded[: len(sample)] = sample
    return padded.reshape(n_bars, bar_len).sum(axis=0)


@dataclass
class SampleBank:
    """Kit samples folded to one bar and cut into steps, on one device.

    chunks: float `[n_samples, step, step_len]`; active: bool `[n_samples, step]`, False where a
    chunk is all zeros (most one-shots end long before the bar does), so no work is spent on it.
    """

    chunks: torch.Tensor
    active: torch.Tensor

    @property
    def bar_len(self) -> int:
        return self.chunks.shape[1] * self.chunks.shape[2]


def sample_bank(samples: list[np.ndarray], step_len: int, n_steps: int, device) -> SampleBank:
    bar = step_len * n_steps
    folded = np.stack([fold_to_bar(s, bar) for s in samples]).reshape(len(samples), n_steps, step_len)
    chunks = torch.from_numpy(folded).to(device)
    return SampleBank(chunks, (chunks != 0).any(dim=2))


def mix(summed: torch.Tensor) -> torch.Tensor:
    """The mix: the sum of every hit at its level's gain `[batch, samples]` -> MIX_GAIN, and each
    loop that would peak above CEILING turned down to peak at it (one gain per loop, no clipping)."""
    out = MIX_GAIN * summed
    peak = out.abs().amax(dim=-1, keepdim=True)
    return out * torch.clamp(CEILING / peak.clamp(min=1e-12), max=1.0)


def hit_matrix(levels: torch.Tensor, sample_ids: torch.Tensor, bank: SampleBank) -> torch.Tensor:
    """Sparse `[batch * step, n_samples * step]`: bar chunk m of loop b sums sample chunks.

    levels: uint8 `[batch, row, step]` (or a bool grid: every hit at DEFAULT_LEVEL). A hit of
    sample s at step k puts chunk j of s into bar chunk (k + j) % S (circular), so entry
    (b*S + m, s*S + j) sums the gains of the hits of s at step (m - j) % S in loop b.
    """
    levels = _levels_of(levels)
    batch, _, n_steps = levels.shape
    n_samples = bank.chunks.shape[0]
    b, r, k = torch.nonzero(levels, as_tuple=True)
    s = sample_ids[b, r]
    gain = torch.tensor(LEVEL_GAINS, dtype=bank.chunks.dtype, device=levels.device)[levels[b, r, k]]
    j = torch.arange(n_steps, device=levels.device)
    keep = bank.active[s]  # [hits, j]: skip silent chunks
    hit, jj = torch.nonzero(keep, as_tuple=True)
    rows = b[hit] * n_steps + (k[hit] + jj) % n_steps
    cols = s[hit] * n_steps + j[jj]
    index = torch.stack([rows, cols])
    values = gain[hit]
    return torch.sparse_coo_tensor(index, values, (batch * n_steps, n_samples * n_steps),
                                   check_invariants=False).coalesce()


def render_bars(levels: torch.Tensor, sample_ids: torch.Tensor, bank: SampleBank) -> torch.Tensor:
    """One mixed bar per loop.

    levels: uint8 `[batch, row, step]` (or a bool grid); sample_ids: long `[batch, row]`
    -> float `[batch, step * step_len]`.
    """
    batch, _, n_steps = levels.shape
    n_samples, _, step_len = bank.chunks.shape
    weights = hit_matrix(levels, sample_ids, bank)
    if weights.device.type == "mps":  # no sparse matmul there
        weights = weights.to_dense()
    summed = torch.sparse.mm(weights, bank.chunks.reshape(n_samples * n_steps, step_len))
    return mix(summed.reshape(batch, n_steps * step_len))


def render_bar_numpy(steps: list[str], samples: list[np.ndarray], step_len: int,
                     swing: float = 0.0) -> np.ndarray:
    """The same mix for one loop, hit by hit in numpy: the reference that `render_bars` must equal.

    steps: one string per row, 'x'/'.' (every hit at DEFAULT_LEVEL) or levels '.'/'1'-'9';
    samples: the row's sample (unit gain) -> float32 `[samples]`.
    """
    n_steps = len(steps[0])
    bar = n_steps * step_len
    onsets = step_onsets(n_steps, step_len, swing)
    rows = np.zeros((len(steps), bar), dtype=np.float64)
    for r, (row, sample) in enumerate(zip(steps, samples)):
        folded = fold_to_bar(sample, bar)
        for k, cell in enumerate(row):
            level = parse_level(cell)
            if level:
                rows[r] += level_gain(level) * np.roll(folded, onsets[k])
    out = MIX_GAIN * rows.sum(axis=0)
    peak = float(np.abs(out).max(initial=0.0))
    if peak > CEILING:
        out *= CEILING / peak
    return out.astype(np.float32)


def sum_events(events: list[tuple[int, int, float]], samples: list[np.ndarray], bar_len: int) -> np.ndarray:
    """One bar of hits at any sample onsets (not only on a step grid), circular, before the mix.

    events: (onset in samples from the bar start, index into `samples`, gain) per hit;
    samples: unit-gain one-shots -> float64 `[bar_len]`. The library's .wav is `mix_one` of this,
    with onsets at the exact times of its .mid (a bar of `render_bars` has whole equal steps).
    """
    folded = [fold_to_bar(s, bar_len).astype(np.float64) for s in samples]
    summed = np.zeros(bar_len, dtype=np.float64)
    for onset, index, gain in events:
        summed += gain * np.roll(folded[index], onset)
    return summed


def mix_one(summed: np.ndarray) -> np.ndarray:
    """`mix` of one bar in numpy: `[samples]` -> float32 `[samples]`."""
    return mix(torch.from_numpy(np.asarray(summed, dtype=np.float64))[None])[0].numpy().astype(np.float32)


def render_paper(steps: list[str], samples: list[np.ndarray], *, tempo: float = 120.0, sr: int = 44100,
                 num_repeats: int = 4, pad_seconds: float = 1.0) -> np.ndarray:
    """The original program's renderer, kept as the baseline: four bars plus a 1 s pad, no wrap."""
    note_len = 60.0 / tempo / STEPS_PER_BEAT
    n_steps = len(steps[0])
    audio = np.zeros(int((num_repeats * n_steps * note_len + pad_seconds) * sr), dtype=np.float32)
    for step in range(num_repeats * n_steps):
        start = int(step * note_len * sr)
        for row, sample in zip(steps, samples):
            if row[step % n_steps] == "x":
                end = min(start + len(sample), len(audio))
                audio[start:end] += sample[: end - start] * MIX_GAIN
    return audio
