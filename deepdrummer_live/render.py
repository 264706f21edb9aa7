"""The one mix definition, and renderers of one bar per loop (batched torch, and the paper's path).

A loop plays forever, so one bar heard in steady state is one bar rendered *circularly*: a
sample's tail that runs past the bar end sounds at the start of the next pass. Every hit is
scaled by MIX_GAIN (the paper's mix_vol), rows are summed, and the sum is clipped to [-1, 1].
The critic's input, the live audio and the exported .wav all come from `render_bars`.
"""

from __future__ import annotations

import numpy as np
import torch

MIX_GAIN = 0.5
STEPS_PER_BEAT = 4


def step_length(bpm: float, sr: int) -> int:
    """Samples per 16th note, rounded so a bar is a whole number of equal steps."""
    return int(round(sr * 60.0 / bpm / STEPS_PER_BEAT))


def fold_to_bar(sample: np.ndarray, bar_len: int) -> np.ndarray:
    """A one-shot as heard in a looping bar: its tail past `bar_len` wraps around (summed)."""
    n_bars = max(1, -(-len(sample) // bar_len))
    padded = np.zeros(n_bars * bar_len, dtype=np.float32)
    padded[: len(sample)] = sample
    return padded.reshape(n_bars, bar_len).sum(axis=0)


def sample_bank(samples: list[np.ndarray], step_len: int, n_steps: int, device) -> torch.Tensor:
    """Kit samples folded to one bar and cut into steps -> float `[n_samples, n_steps, step_len]`."""
    bar = step_len * n_steps
    folded = np.stack([fold_to_bar(s, bar) for s in samples])
    return torch.from_numpy(folded).reshape(len(samples), n_steps, step_len).to(device)


def _circulant_index(n_steps: int, device) -> torch.Tensor:
    m = torch.arange(n_steps, device=device)
    return (m[:, None] - m[None, :]) % n_steps  # [out_step, sample_chunk] -> onset step


def mix(rows_audio: torch.Tensor) -> torch.Tensor:
    """The mix: float `[..., row, samples]` of unit-gain row renders -> `[..., samples]`."""
    return torch.clamp(MIX_GAIN * rows_audio.sum(dim=-2), -1.0, 1.0)


def render_rows(grid: torch.Tensor, sample_ids: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Each row of each loop rendered alone at unit gain.

    grid: bool `[batch, row, step]`; sample_ids: long `[batch, row]`;
    bank: float `[n_samples, step, step_len]` (from `sample_bank`) -> float `[batch, row, step*step_len]`.

    Bar chunk m of a row is sum_j g[(m - j) % S] * chunk_j(sample): a circulant matrix of the
    row's steps times the sample's chunks, so a whole batch is one batched matmul per row.
    """
    batch, n_rows, n_steps = grid.shape
    step_len = bank.shape[-1]
    circ = _circulant_index(n_steps, grid.device)
    g = grid.to(bank.dtype)[:, :, circ]  # [batch, row, m, j]
    chunks = bank[sample_ids]  # [batch, row, j, step_len]
    out = torch.matmul(g, chunks)  # [batch, row, m, step_len]
    return out.reshape(batch, n_rows, n_steps * step_len)


def render_bars(grid: torch.Tensor, sample_ids: torch.Tensor, bank: torch.Tensor,
                chunk: int = 256) -> torch.Tensor:
    """One mixed bar per loop: float `[batch, step*step_len]`, in chunks to bound memory."""
    outs = [mix(render_rows(grid[i:i + chunk], sample_ids[i:i + chunk], bank))
            for i in range(0, grid.shape[0], chunk)]
    return torch.cat(outs) if outs else bank.new_zeros((0, bank.shape[1] * bank.shape[2]))


def render_bar_numpy(steps: list[str], samples: list[np.ndarray], step_len: int) -> np.ndarray:
    """The same mix for one loop, hit by hit in numpy: the reference that `render_bars` must equal.

    steps: one 'x'/'.' string per row; samples: the row's sample (unit gain) -> float32 `[samples]`.
    """
    n_steps = len(steps[0])
    bar = n_steps * step_len
    rows = np.zeros((len(steps), bar), dtype=np.float32)
    for r, (row, sample) in enumerate(zip(steps, samples)):
        folded = fold_to_bar(sample, bar)
        for k, cell in enumerate(row):
            if cell == "x":
                rows[r] += np.roll(folded, k * step_len)
    return np.clip(MIX_GAIN * rows.sum(axis=0), -1.0, 1.0).astype(np.float32)


def render_paper(steps: list[str], samples: list[np.ndarray], bpm: float = 120.0, sr: int = 44100,
                 num_repeats: int = 4, pad_seconds: float = 1.0) -> np.ndarray:
    """The original program's renderer, kept as the baseline: four bars plus a 1 s pad, no wrap."""
    note_len = 60.0 / bpm / STEPS_PER_BEAT
    n_steps = len(steps[0])
    audio = np.zeros(int((num_repeats * n_steps * note_len + pad_seconds) * sr), dtype=np.float32)
    for step in range(num_repeats * n_steps):
        start = int(step * note_len * sr)
        for row, sample in zip(steps, samples):
            if row[step % n_steps] == "x":
                end = min(start + len(sample), len(audio))
                audio[start:end] += sample[: end - start] * MIX_GAIN
    return audio
