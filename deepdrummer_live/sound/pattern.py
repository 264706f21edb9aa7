"""Loops as tensors: the paper's generator (random grids, mutation, four-on-the-floor), batched.

A batch of loops is two tensors on one device:
- `grid`: bool `[batch, row, step]`, a hit where True;
- `sample_ids`: long `[batch, row]`, which kit sample each row plays.

All functions are pure: tensors and a `torch.Generator` in, new tensors out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

N_ROWS = 4
N_STEPS = 16
P_CELL_ON = 0.5  # paper: random cells on with p=0.5
P_TOGGLE = 0.05  # paper: mutation toggles each cell with p=0.05
P_SWAP_SAMPLE = 0.15  # paper: and swaps each row's sample with p=0.15
FOTF_STEPS = (0, 4, 8, 12)


@dataclass
class Loops:
    grid: torch.Tensor  # bool [batch, row, step]
    sample_ids: torch.Tensor  # long [batch, row]

    def __len__(self) -> int:
        return self.grid.shape[0]

    def take(self, index: torch.Tensor | int) -> "Loops":
        if isinstance(index, int):
            index = torch.tensor([index], device=self.grid.device)
        return Loops(self.grid[index], self.sample_ids[index])

    def where(self, mask: torch.Tensor, other: "Loops") -> "Loops":
        """Per loop: self where mask [batch] is True, else other."""
        return Loops(
            torch.where(mask[:, None, None], self.grid, other.grid),
            torch.where(mask[:, None], self.sample_ids, other.sample_ids),
        )

    def to(self, device: torch.device | str) -> "Loops":
        return Loops(self.grid.to(device), self.sample_ids.to(device))


def fotf_row() -> torch.Tensor:
    row = torch.zeros(N_STEPS, dtype=torch.bool)
    row[list(FOTF_STEPS)] = True
    return row


def _random_ids(shape, n_samples: int, gen: torch.Generator, device) -> torch.Tensor:
    return torch.randint(0, n_samples, shape, generator=gen, device=device)


def _random_kick_ids(batch: int, kick_ids: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    pick = torch.randint(0, len(kick_ids), (batch,), generator=gen, device=kick_ids.device)
    return kick_ids[pick]


def apply_fotf(loops: Loops, kick_ids: torch.Tensor, gen: torch.Generator) -> Loops:
    """Row 0 becomes a kick on every beat; a non-kick row-0 sample is replaced by a random kick.

    kick_ids: long [n_kicks], kit indices whose role is kick (must not be empty).
    """
    grid = loops.grid.clone()
    grid[:, 0, :] = fotf_row().to(grid.device)
    ids = loops.sample_ids.clone()
    is_kick = torch.isin(ids[:, 0], kick_ids)
    ids[:, 0] = torch.where(is_kick, ids[:, 0], _random_kick_ids(len(ids), kick_ids, gen))
    return Loops(grid, ids)


def random_loops(batch: int, n_samples: int, gen: torch.Generator, device,
                 fotf: bool = False, kick_ids: torch.Tensor | None = None) -> Loops:
    """The paper's prior: 4 random samples, each cell on with p=0.5 -> Loops of `batch`."""
    grid = torch.rand((batch, N_ROWS, N_STEPS), generator=gen, device=device) < P_CELL_ON
    ids = _random_ids((batch, N_ROWS), n_samples, gen, device)
    loops = Loops(grid, ids)
    return apply_fotf(loops, kick_ids, gen) if fotf else loops


def mutate(loops: Loops, n_samples: int, gen: torch.Generator,
           fotf: bool = False, kick_ids: torch.Tensor | None = None) -> Loops:
    """The paper's mutation, applied to every loop of the batch independently."""
    device = loops.grid.device
    toggle = torch.rand(loops.grid.shape, generator=gen, device=device) < P_TOGGLE
    grid = loops.grid ^ toggle
    swap = torch.rand(loops.sample_ids.shape, generator=gen, device=device) < P_SWAP_SAMPLE
    fresh = _random_ids(loops.sample_ids.shape, n_samples, gen, device)
    ids = torch.where(swap, fresh, loops.sample_ids)
    out = Loops(grid, ids)
    return apply_fotf(out, kick_ids, gen) if fotf else out


def grid_to_strings(grid_row_step: torch.Tensor) -> list[str]:
    """bool [row, step] -> one 'x'/'.' string per row (the contract's `steps`)."""
    return ["".join("x" if v else "." for v in row.tolist()) for row in grid_row_step]


def strings_to_grid(rows: list[str]) -> torch.Tensor:
    """Inverse of grid_to_strings -> bool [row, step]."""
    return torch.tensor([[c == "x" for c in row] for row in rows], dtype=torch.bool)
