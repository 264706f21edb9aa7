"""Loops as tensors: the paper's generator (random grids, mutation, four-on-the-floor), batched,
with dynamics (a level per hit), a density knob per row and locked rows.

A batch of loops is two tensors on one device:
- `levels`: uint8 `[batch, row, step]`, 0 = rest, 1-9 = a hit's level (ghost to accent);
  `grid` (bool, a hit where True) is `levels > 0`;
- `sample_ids`: long `[batch, row]`, which kit sample each row plays.

The prior keeps the paper's few assumptions: every cell is on with a probability (the paper's
0.5, here a knob per row) and every hit's level is drawn uniformly from 1-9, independently (no
idea of accents or beats is built in: the critic learns the taste). Mutation toggles cells,
re-draws levels and swaps samples. `Prior` carries the knobs; a `Lock` pins rows of one loop
(sample and levels, at the same positions) in every loop the generator makes.

All functions are pure: tensors and a `torch.Generator` in, new tensors out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from deepdrummer_live.errors import CommandError
from deepdrummer_live.sound.dynamics import DEFAULT_LEVEL, MAX_LEVEL, REST, parse_level
from deepdrummer_live.vocab import (
    DEFAULT_METER,
    DENSITY_MAX,
    DENSITY_MIN,
    METERS,
    N_ROWS,
    N_STEPS,  # noqa: F401 (the hearing critics' one bar of 4/4; imported from here by them)
    steps_per_bar,
)

P_CELL_ON = 0.5  # paper: random cells on with p=0.5 (the default density)
P_TOGGLE = 0.05  # paper: mutation toggles each cell with p=0.05 (at density 0.5)
P_SWAP_SAMPLE = 0.15  # paper: and swaps each row's sample with p=0.15
P_RELEVEL = 0.1  # ours: mutation re-draws a hit's level with p=0.1
P_ROW_DENSITY = 0.1  # ours: mutation thins or fills a whole row with p=0.1 (cell toggles alone barely move
#                      the density of a big loop: 8 rows x 2 bars at 0.5 is 50 % +- 3 % hits)
P_FILL = 0.5  # ours: the last bar of a phrase ends in a fill with this probability
FILL_DENSITY_BOOST = 0.25  # a fill's half bar is re-drawn this much denser (capped at DENSITY_MAX)
DENSITY_RANGE = (DENSITY_MIN, DENSITY_MAX)


@dataclass
class Loops:
    levels: torch.Tensor  # uint8 [batch, row, step], 0 = rest; step runs over every bar of the phrase
    sample_ids: torch.Tensor  # long [batch, row]
    meter: str = DEFAULT_METER  # one meter per batch: what step k is (on the beat, between)

    @property
    def bars(self) -> int:
        return self.levels.shape[-1] // steps_per_bar(self.meter)

    @property
    def grid(self) -> torch.Tensor:
        """bool `[batch, row, step]`: a hit where True."""
        return self.levels > 0

    def __len__(self) -> int:
        return self.levels.shape[0]

    @staticmethod
    def from_grid(grid: torch.Tensor, sample_ids: torch.Tensor, level: int = DEFAULT_LEVEL,
                  meter: str = DEFAULT_METER) -> Loops:
        """Every hit of a bool grid `[batch, row, step]` at one level (the paper's loops)."""
        return Loops(grid.to(torch.uint8) * level, sample_ids, meter)

    def take(self, index: torch.Tensor | int | slice) -> Loops:
        if isinstance(index, int):
            index = torch.tensor([index], device=self.levels.device)
        return Loops(self.levels[index], self.sample_ids[index], self.meter)

    def where(self, mask: torch.Tensor, other: Loops) -> Loops:
        """Per loop: self where mask [batch] is True, else other."""
        return Loops(
            torch.where(mask[:, None, None], self.levels, other.levels),
            torch.where(mask[:, None], self.sample_ids, other.sample_ids),
            self.meter,
        )

    def to(self, device: torch.device | str) -> Loops:
        return Loops(self.levels.to(device), self.sample_ids.to(device), self.meter)


@dataclass(frozen=True, eq=False)
class Lock:
    """Rows pinned in every generated loop: `rows` (indices) of `source`, a loop-of-one."""

    rows: tuple[int, ...]
    source: Loops  # batch of one

    @staticmethod
    def of(loop: Loops, rows) -> Lock | None:
        """Lock `rows` (indices) of `loop` (a batch of one); None when no row is locked."""
        rows = tuple(sorted(set(int(r) for r in rows)))
        return Lock(rows, loop.take(slice(0, 1))) if rows else None

    @property
    def key(self) -> tuple:
        """What the lock pins, as plain values: equal keys, equal locks."""
        lv = self.source.levels[0].tolist()
        ids = self.source.sample_ids[0].tolist()
        return tuple((r, ids[r], tuple(lv[r])) for r in self.rows)

    def __eq__(self, other) -> bool:
        return isinstance(other, Lock) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def apply(self, loops: Loops) -> Loops:
        """Locked rows of every loop become the source's rows (sample, levels, same positions)."""
        device = loops.levels.device
        src = self.source.to(device)
        if src.levels.shape[1:] != loops.levels.shape[1:] or max(self.rows) >= loops.levels.shape[1]:
            raise ValueError(f"locked rows {self.rows} of a {tuple(src.levels.shape[1:])} loop do not fit "
                             f"loops of {tuple(loops.levels.shape[1:])} (rows, steps)")
        mask = torch.zeros(loops.levels.shape[1], dtype=torch.bool, device=device)
        mask[list(self.rows)] = True
        return Loops(torch.where(mask[None, :, None], src.levels, loops.levels),
                     torch.where(mask[None, :], src.sample_ids, loops.sample_ids), loops.meter)


@dataclass(frozen=True)
class Prior:
    """What the generator assumes: the loop's shape, per-row hit probability, fotf, dynamics on/off,
    locked rows."""

    density: tuple[float, ...] = (P_CELL_ON,) * N_ROWS  # per row; rows past its end use its last value
    fotf: bool = False
    dynamics: bool = True  # False: the paper's binary grid (every hit at DEFAULT_LEVEL)
    lock: Lock | None = None
    rows: int = N_ROWS
    bars: int = 1
    meter: str = DEFAULT_METER

    @property
    def n_steps(self) -> int:
        return self.bars * steps_per_bar(self.meter)

    def density_tensor(self, device) -> torch.Tensor:
        """float `[row]`: the hit probability of each of the `rows` rows."""
        values = list(self.density[: self.rows]) + [self.density[-1]] * max(0, self.rows - len(self.density))
        return torch.tensor(values, dtype=torch.float32, device=device)


PAPER_PRIOR = Prior(dynamics=False)


def check_density(p: float, what: str = "density") -> float:
    """A hit probability in DENSITY_RANGE, else a CommandError naming it and the range."""
    lo, hi = DENSITY_RANGE
    if not (isinstance(p, (int, float)) and lo <= float(p) <= hi):
        raise CommandError(f"{what} {p!r} out of range; use {lo:g}-{hi:g} (0.5 is the paper's)")
    return float(p)


def fotf_row(meter: str = DEFAULT_METER, n_steps: int | None = None) -> torch.Tensor:
    """bool `[step]`: a hit on every beat of `meter` (four on the floor, or its meter's equivalent)."""
    spb, beats, _ = METERS[meter]
    n_steps = spb if n_steps is None else n_steps
    row = torch.zeros(n_steps, dtype=torch.bool)
    for bar in range(0, n_steps, spb):
        row[[bar + b for b in beats if bar + b < n_steps]] = True
    return row


def _random_ids(shape, n_samples: int, gen: torch.Generator, device) -> torch.Tensor:
    return torch.randint(0, n_samples, shape, generator=gen, device=device)


def _random_kick_ids(batch: int, kick_ids: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    pick = torch.randint(0, len(kick_ids), (batch,), generator=gen, device=kick_ids.device)
    return kick_ids[pick]


def _random_levels(shape, gen: torch.Generator, device, dynamics: bool) -> torch.Tensor:
    """uint8 levels for would-be hits: uniform 1-9 with dynamics, else DEFAULT_LEVEL."""
    if not dynamics:
        return torch.full(shape, DEFAULT_LEVEL, dtype=torch.uint8, device=device)
    return torch.randint(1, MAX_LEVEL + 1, shape, generator=gen, device=device, dtype=torch.uint8)


def apply_fotf(loops: Loops, kick_ids: torch.Tensor, gen: torch.Generator, dynamics: bool = True) -> Loops:
    """Row 0 becomes a kick on every beat of the loops' meter; a non-kick row-0 sample is replaced by a
    random kick.

    kick_ids: long [n_kicks], kit indices whose role is kick (must not be empty). Beats that
    were already hits keep their level; new ones get a level from the prior.
    """
    levels = loops.levels.clone()
    beats = fotf_row(loops.meter, levels.shape[-1]).to(levels.device)
    row0 = levels[:, 0, :]
    fresh = _random_levels(row0.shape, gen, levels.device, dynamics)
    levels[:, 0, :] = torch.where(beats, torch.where(row0 > 0, row0, fresh), torch.zeros_like(row0))
    ids = loops.sample_ids.clone()
    is_kick = torch.isin(ids[:, 0], kick_ids)
    ids[:, 0] = torch.where(is_kick, ids[:, 0], _random_kick_ids(len(ids), kick_ids, gen))
    return Loops(levels, ids, loops.meter)


def _finish(loops: Loops, gen: torch.Generator, prior: Prior, kick_ids: torch.Tensor | None) -> Loops:
    if prior.fotf:
        loops = apply_fotf(loops, kick_ids, gen, prior.dynamics)
    return prior.lock.apply(loops) if prior.lock is not None else loops


def _prior_of(prior: Prior | None, fotf: bool) -> Prior:
    prior = prior or Prior()
    return replace(prior, fotf=True) if fotf and not prior.fotf else prior


def random_loops(batch: int, n_samples: int, gen: torch.Generator, device,
                 fotf: bool = False, kick_ids: torch.Tensor | None = None, prior: Prior | None = None) -> Loops:
    """The prior: `prior.rows` random samples, each cell of the first bar on with its row's density,
    each hit at a random level -> Loops of `batch`, `[batch, rows, bars x steps_per_bar]`. A phrase
    (bars > 1) is not bars drawn apart: every later bar is the first one after a mutation, and the
    last bar ends in a fill (its second half drawn again, denser) with p = P_FILL; whether a performer
    likes variation and fills is the critic's to learn. `fotf=True` is `prior.fotf` (kept for the
    paper's call sites)."""
    prior = _prior_of(prior, fotf)
    spb = steps_per_bar(prior.meter)
    density = prior.density_tensor(device)[None, :, None]
    shape = (batch, prior.rows, spb)
    on = torch.rand(shape, generator=gen, device=device) < density
    bar = _random_levels(shape, gen, device, prior.dynamics) * on
    ids = _random_ids((batch, prior.rows), n_samples, gen, device)
    bars = [bar]
    for _ in range(1, prior.bars):
        bars.append(_mutate_levels(bar, density, gen, prior.dynamics))
    if prior.bars > 1:
        bars[-1] = _fill(bars[-1], density, gen, prior.dynamics)
    return _finish(Loops(torch.cat(bars, dim=-1), ids, prior.meter), gen, prior, kick_ids)


def _fill(bar: torch.Tensor, density: torch.Tensor, gen: torch.Generator, dynamics: bool) -> torch.Tensor:
    """With p = P_FILL per loop, the second half of `bar` (uint8 `[batch, row, step]`) drawn again at
    density + FILL_DENSITY_BOOST: a fill, with no idea of which drums a fill uses."""
    batch, _, spb = bar.shape
    dense = (density + FILL_DENSITY_BOOST).clamp(max=DENSITY_MAX)
    on = torch.rand(bar.shape, generator=gen, device=bar.device) < dense
    fresh = _random_levels(bar.shape, gen, bar.device, dynamics) * on
    half = torch.arange(spb, device=bar.device) >= spb // 2
    filled = torch.rand(batch, generator=gen, device=bar.device) < P_FILL
    return torch.where(filled[:, None, None] & half[None, None, :], fresh, bar)


def _mutate_levels(levels: torch.Tensor, density: torch.Tensor, gen: torch.Generator,
                   dynamics: bool) -> torch.Tensor:
    """The cell part of the paper's mutation (see `mutate`) on uint8 levels `[batch, row, step]`."""
    shape, device = levels.shape, levels.device
    hit = levels > 0
    u = torch.rand(shape, generator=gen, device=device)
    toggle = torch.where(hit, u < 2 * P_TOGGLE * (1 - density), u < 2 * P_TOGGLE * density)
    fresh = _random_levels(shape, gen, device, dynamics)
    relevel = torch.rand(shape, generator=gen, device=device) < P_RELEVEL
    if not dynamics:
        relevel = torch.zeros_like(relevel)
    new_hit = hit ^ toggle
    keep_level = hit & ~relevel
    return torch.where(new_hit, torch.where(keep_level, levels, fresh), torch.zeros_like(fresh))


def _move_row_density(levels: torch.Tensor, density: torch.Tensor, gen: torch.Generator,
                      dynamics: bool) -> torch.Tensor:
    """With p=P_ROW_DENSITY per row of uint8 levels `[batch, row, step]`: thin it (each hit off with p = 1 -
    the row's density) or fill it (each rest on with p = its density), either with p=0.5. A row's density
    moves in one step, and a chain of these keeps the prior's density on average (at density d, thinning
    takes d x (1 - d) of the cells, filling gives (1 - d) x d)."""
    batch, rows, steps = levels.shape
    device = levels.device
    u = torch.rand((batch, rows, 1), generator=gen, device=device)
    thin, fill = u < P_ROW_DENSITY / 2, (u >= P_ROW_DENSITY / 2) & (u < P_ROW_DENSITY)
    cell = torch.rand(levels.shape, generator=gen, device=device)
    hit = levels > 0
    off = thin & hit & (cell < 1 - density)
    on = fill & ~hit & (cell < density)
    fresh = _random_levels(levels.shape, gen, device, dynamics)
    return torch.where(off, torch.zeros_like(levels), torch.where(on, fresh, levels))


def mutate(loops: Loops, n_samples: int, gen: torch.Generator,
           fotf: bool = False, kick_ids: torch.Tensor | None = None, prior: Prior | None = None) -> Loops:
    """The paper's mutation, applied to every loop of the batch independently, plus levels.

    A rest turns on with p = 2 * P_TOGGLE * density and a hit turns off with
    p = 2 * P_TOGGLE * (1 - density): the paper's p=0.05 both ways at density 0.5, and in general
    a chain of mutations keeps the row's density. A hit that stays re-draws its level with
    p=P_RELEVEL; a new hit gets a random level. Ours too: a row is thinned or filled as a whole with
    p=P_ROW_DENSITY, so the search can reach sparser and busier loops than the prior's.
    """
    prior = _prior_of(prior, fotf)
    device = loops.levels.device
    density = prior.density_tensor(device)[None, :, None]
    levels = _mutate_levels(loops.levels, density, gen, prior.dynamics)
    levels = _move_row_density(levels, density, gen, prior.dynamics)
    swap = torch.rand(loops.sample_ids.shape, generator=gen, device=device) < P_SWAP_SAMPLE
    ids = torch.where(swap, _random_ids(loops.sample_ids.shape, n_samples, gen, device), loops.sample_ids)
    return _finish(Loops(levels, ids, loops.meter), gen, prior, kick_ids)


VARY_MAX_CELLS = 0.25  # /dd/vary: at most this share of a loop's step cells change (hit <-> rest)
VARY_MIN_KEPT_ROWS = 0.5  # /dd/vary: at least this share of its rows keep their sample
FILL_SHARE = 0.25  # /dd/fill: the bar's last quarter is drawn again (the fill's run-up to the next one)
FILL_DENSITY = 0.7  # ... and busier than the paper's 0.5: a fill is a burst


def variations(source: Loops, batch: int, n_samples: int, gen: torch.Generator, prior: Prior | None = None,
               kick_ids: torch.Tensor | None = None) -> Loops:
    """`batch` variations of one loop (a batch of one), each within the /dd/vary bounds: at least half
    of its rows keep their sample and at most a quarter of its cells change. Each draws how many cells
    (1 up to half the bound: "a few changes") and how many rows' samples (0 up to the bound) to change,
    then picks them at random; a new hit gets a level from the prior. Locked rows stay as they are."""
    prior = prior or Prior()
    device = source.levels.device
    _, rows, steps = source.levels.shape
    levels = source.levels.expand(batch, rows, steps).clone()
    ids = source.sample_ids.expand(batch, rows).clone()
    max_cells = int(rows * steps * VARY_MAX_CELLS)
    max_swaps = rows - math.ceil(rows * VARY_MIN_KEPT_ROWS)
    fresh = _random_levels(levels.shape, gen, device, prior.dynamics)
    for b in range(batch):
        k = int(torch.randint(1, max(1, max_cells // 2) + 1, (), generator=gen, device=device))
        cells = torch.randperm(rows * steps, generator=gen, device=device)[:k]
        r, st = cells // steps, cells % steps
        levels[b, r, st] = torch.where(levels[b, r, st] > 0, torch.zeros_like(fresh[b, r, st]), fresh[b, r, st])
        swaps = int(torch.randint(0, max_swaps + 1, (), generator=gen, device=device))
        if swaps:
            which = torch.randperm(rows, generator=gen, device=device)[:swaps]
            ids[b, which] = _random_ids((swaps,), n_samples, gen, device)
    out = Loops(levels, ids, source.meter)
    if prior.fotf and kick_ids is not None:
        fotf_out = apply_fotf(out, kick_ids, gen, prior.dynamics)
        # four on the floor may change row 0 beyond the bounds (a source made without it): keep those within
        ok = within_variation(source, fotf_out)
        out = fotf_out.where(ok, out)
    return prior.lock.apply(out) if prior.lock is not None else out


def within_variation(source: Loops, loops: Loops) -> torch.Tensor:
    """bool `[batch]`: each loop is a /dd/vary variation of `source` (a batch of one)."""
    rows, steps = source.levels.shape[1:]
    changed = (loops.grid != source.grid).sum(dim=(1, 2))
    kept = (loops.sample_ids == source.sample_ids).sum(dim=1)
    return (changed <= int(rows * steps * VARY_MAX_CELLS)) & (kept >= math.ceil(rows * VARY_MIN_KEPT_ROWS))


def fills(source: Loops, batch: int, gen: torch.Generator, prior: Prior | None = None) -> Loops:
    """`batch` fills of one loop: the same samples, all of it as it is but the last quarter of its last
    bar (of a phrase: the phrase ends in the fill), every row drawn again there at FILL_DENSITY (levels
    from the prior). Locked rows are not spared: a fill plays once, and the loop comes back whole after it."""
    prior = prior or Prior()
    device = source.levels.device
    _, rows, steps = source.levels.shape
    levels = source.levels.expand(batch, rows, steps).clone()
    start = steps - max(1, int(steps_per_bar(source.meter) * FILL_SHARE))
    shape = (batch, rows, steps - start)
    on = torch.rand(shape, generator=gen, device=device) < FILL_DENSITY
    levels[:, :, start:] = _random_levels(shape, gen, device, prior.dynamics) * on
    return Loops(levels, source.sample_ids.expand(batch, rows).clone(), source.meter)


# --- strings (the contract's `steps` and `levels`) --------------------------------------------

def grid_to_strings(grid_row_step: torch.Tensor) -> list[str]:
    """bool (or levels) `[row, step]` -> one 'x'/'.' string per row (the contract's `steps`)."""
    return ["".join("x" if v else "." for v in row.tolist()) for row in grid_row_step]


def strings_to_grid(rows: list[str]) -> torch.Tensor:
    """Inverse of grid_to_strings -> bool [row, step]."""
    return torch.tensor([[c == "x" for c in row] for row in rows], dtype=torch.bool)


def levels_to_strings(levels_row_step: torch.Tensor) -> list[str]:
    """uint8 `[row, step]` -> one string per row: '.' for a rest, '1'-'9' for a hit (`/dd/levels`)."""
    return ["".join(REST if v == 0 else str(v) for v in row.tolist()) for row in levels_row_step]


def strings_to_levels(rows: list[str]) -> torch.Tensor:
    """Inverse of levels_to_strings -> uint8 `[row, step]` ('x' reads as DEFAULT_LEVEL)."""
    return torch.tensor([[parse_level(c) for c in row] for row in rows], dtype=torch.uint8)
