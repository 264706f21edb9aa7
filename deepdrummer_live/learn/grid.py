"""The critic that reads the loop (the default): P(like) from the loop as the generator wrote it.

The learner knows every loop it made: which one-shot each row plays, its role, and the level of
every hit on every step. This critic reads that instead of hearing the mix, so nothing is lost to
hearing (accents, ghost notes, a hit under another), scoring needs no render, and a producer on
MIDI, who hears their own drum rack and not our render, teaches it what they hear: roles, steps
and levels. The sound of each one-shot is heard alone, once per kit (`sound_descriptors`), so a
taste for sounds is learnable and carries to similar sounds of another kit.

`grid_features` turns a batch of loops of any shape (1-8 rows, 1-4 bars, any meter) into one
fixed-size vector per loop, in units that mean the same on every kit and shape:

- where each role group plays: per group, its hits per step at each metric position of the
  loop's meter (strong beat, other beat, 8th between, 16th between) and whether it plays at all;
- how it plays them: per group, the level of its hits on the beat against between; the mean level
  on and off the beat, the spread of levels, and the share of accents (7-9) and ghost notes (1-3)
  on the beats and between;
- how busy: hits per row and step at each metric position, the share of rows that play;
- what rows do together: how often the low, middle, high and other drums hit on one step;
- the phrase: how much later bars differ from the first, how much denser its last half bar is
  (a fill);
- the sounds: the one-shots' descriptors weighted by how often they play, over the loop and per
  register (low, middle, high, other drums).

`GridCritic` standardizes them against random loops of the kit, squashes them (as the hearing
critic's head does: the search cannot buy P(like) by pushing one summary far past anything rated)
and a logistic head learns the taste from ratings (fitted on every rating at once). No rule is
written for any particular taste: these are the loop's facts, and the ratings weigh them.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from deepdrummer_live.learn.critic import ROLE_GROUPS, squash
from deepdrummer_live.sound.dynamics import MAX_LEVEL
from deepdrummer_live.sound.pattern import Loops
from deepdrummer_live.vocab import metric_classes, steps_per_bar, sureness

N_CLASSES = 4  # metric positions: strong beat, other beat, 8th between beats, 16th between 8ths
N_GROUPS = max(ROLE_GROUPS.values()) + 1
# Role groups -> registers: what "rows together" is measured between (kick and toms low; snare,
# clap, rim middle; hats and cymbals high; the rest other percussion).
REGISTER_OF_GROUP = (0, 1, 1, 1, 2, 2, 0, 2, 3, 3, 3, 3, 3)
N_REGISTERS = 4
PAIRS = tuple((i, j) for i in range(N_REGISTERS) for j in range(i + 1, N_REGISTERS))
SOUND_SR = 16000
N_SOUND = 8  # sound descriptors per one-shot (see sound_descriptors)
ACCENT, GHOST = 7, 3  # levels from which a hit is an accent, up to which it is a ghost note
N_FEATURES = (N_GROUPS * N_CLASSES + N_GROUPS + N_GROUPS + 7 + N_CLASSES + 1 + len(PAIRS) + 2
              + N_SOUND * (1 + N_REGISTERS))


def group_of_roles(roles: list[str]) -> list[int]:
    """The role group of each kit sample (unknown roles are other percussion)."""
    return [ROLE_GROUPS.get(r, ROLE_GROUPS["perc"]) for r in roles]


# --- sounds, heard alone ------------------------------------------------------------------------

def sound_descriptors(samples: list[np.ndarray], sr: int = SOUND_SR) -> np.ndarray:
    """What each one-shot sounds like, in fixed units (about -2..2 for drum sounds, the same on any
    kit): float32 `[n_samples, N_SOUND]`.

    Columns: brightness (log spectral centroid), width (log bandwidth), the energy shares below
    200 Hz, 200 Hz-2 kHz and above 5 kHz, length (log time to 90 % of the energy), noisiness
    (spectral flatness) and level (RMS of the attack, dB). One-shots are mono float at `sr`.
    """
    n_fft = 1024
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    window = np.hanning(n_fft)
    out = np.zeros((len(samples), N_SOUND), dtype=np.float32)
    for i, sample in enumerate(samples):
        x = np.asarray(sample, dtype=np.float64)
        if x.size < n_fft:
            x = np.pad(x, (0, n_fft - x.size))
        head = x[: max(n_fft, int(0.25 * sr))]  # the attack and body: what the hit sounds like
        frames = np.lib.stride_tricks.sliding_window_view(head, n_fft)[:: n_fft // 4] * window
        power = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).mean(axis=0) + 1e-12
        total = power.sum()
        centroid = float((freqs * power).sum() / total)
        bandwidth = float(np.sqrt(((freqs - centroid) ** 2 * power).sum() / total))
        low = power[freqs < 200].sum() / total
        mid = power[(freqs >= 200) & (freqs < 2000)].sum() / total
        high = power[freqs >= 5000].sum() / total
        energy = np.cumsum(x ** 2)
        length = (np.searchsorted(energy, 0.9 * energy[-1]) + 1) / sr if energy[-1] > 0 else 1.0 / sr
        flatness = float(np.exp(np.log(power).mean()) / power.mean())
        attack = x[: int(0.05 * sr)]
        level_db = 10 * np.log10(np.mean(attack ** 2) + 1e-10)
        out[i] = np.clip((np.log2(max(centroid, 20.0) / 1500.0), np.log2(max(bandwidth, 20.0) / 1500.0),
                  2 * low - 0.5, 2 * mid - 0.5, 2 * high - 0.5, np.log10(length / 0.1),
                  4 * flatness - 0.5, (level_db + 20.0) / 10.0), -3.0, 3.0)
    return out


# --- the loop's facts ---------------------------------------------------------------------------

@lru_cache(maxsize=64)
def _class_matrix(meter: str, n_steps: int, device: str) -> torch.Tensor:
    """float `[step, N_CLASSES]`: one-hot metric class of each step."""
    classes = torch.tensor(metric_classes(meter, n_steps), device=device)
    return F.one_hot(classes, N_CLASSES).float()


def grid_features(levels: torch.Tensor, sample_ids: torch.Tensor, meter: str, groups: torch.Tensor,
                  sounds: torch.Tensor) -> torch.Tensor:
    """The loop's facts (see the module's docstring) -> float `[batch, N_FEATURES]`.

    levels: uint8 `[batch, row, step]` (0 rest, 1-9 a hit's level), step over every bar; sample_ids:
    long `[batch, row]`; meter: the loops' meter; groups: long `[n_samples]`, each sample's role
    group; sounds: float `[n_samples, N_SOUND]`, each sample's descriptors. Pure: no I/O, any device.
    """
    batch, n_rows, n_steps = levels.shape
    dev = levels.device
    spb = steps_per_bar(meter)
    hits = (levels > 0).float()  # [b, r, t]
    lv = levels.float() / MAX_LEVEL
    classes = _class_matrix(meter, n_steps, str(dev))  # [t, c]
    per_class = classes.sum(0).clamp(min=1)  # steps of each class
    row_group = F.one_hot(groups[sample_ids], N_GROUPS).float()  # [b, r, g]
    row_plays = (hits.sum(-1) > 0).float()  # [b, r]

    where = torch.einsum("brt,tc->brc", hits, classes) / per_class  # hits per step, each class
    group_where = torch.einsum("brg,brc->bgc", row_group, where).flatten(1)
    group_plays = torch.einsum("brg,br->bg", row_group, row_plays).clamp(max=1.0)

    on_beat = classes[:, :2].sum(1)  # [t]: 1 on a beat
    hits_on, hits_off = hits * on_beat, hits * (1 - on_beat)
    n_on, n_off = hits_on.sum(-1), hits_off.sum(-1)  # [b, r]
    level_on = (lv * hits_on).sum(-1) / n_on.clamp(min=1)
    level_off = (lv * hits_off).sum(-1) / n_off.clamp(min=1)
    contrast = (level_on - level_off) * ((n_on > 0) & (n_off > 0)).float()  # accents vs ghosts, per row
    group_contrast = torch.einsum("brg,br->bg", row_group, contrast)
    all_on, all_off = n_on.sum(-1), n_off.sum(-1)
    n_hits = hits.sum((1, 2))
    mean_level = (lv * hits).sum((1, 2)) / n_hits.clamp(min=1)
    spread = (((lv - mean_level[:, None, None]) ** 2) * hits).sum((1, 2)) / n_hits.clamp(min=1)
    # accents (levels 7-9) and ghost notes (1-3): their share of the hits on the beats and between
    accent, ghost = (levels >= ACCENT).float(), ((levels > 0) & (levels <= GHOST)).float()
    shares = [(kind * where_).sum((1, 2)) / n.clamp(min=1) for where_, n in ((hits_on, all_on), (hits_off, all_off))
              for kind in (accent, ghost)]
    levels_summary = torch.stack([(lv * hits_on).sum((1, 2)) / all_on.clamp(min=1),
                                  (lv * hits_off).sum((1, 2)) / all_off.clamp(min=1), spread.sqrt(), *shares], dim=1)

    busy = where.mean(1)  # [b, c]: hits per row and step, each class
    rows_playing = row_plays.mean(1, keepdim=True)

    register_of = torch.tensor(REGISTER_OF_GROUP, device=dev)
    row_register = F.one_hot(register_of[groups[sample_ids]], N_REGISTERS).float()  # [b, r, k]
    sounding = (torch.einsum("brk,brt->bkt", row_register, hits) > 0).float()  # [b, k, t]
    together = torch.stack([(sounding[:, i] * sounding[:, j]).mean(-1) for i, j in PAIRS], dim=1)

    if n_steps > spb:
        bars = hits.reshape(batch, n_rows, n_steps // spb, spb)
        variation = (bars[:, :, 1:] != bars[:, :, :1]).float().mean((1, 2, 3))
        half = hits[..., n_steps - spb + spb // 2:].mean((1, 2))
        fill = half - hits.mean((1, 2))
        phrase = torch.stack([variation, fill], dim=1)
    else:
        phrase = torch.zeros(batch, 2, device=dev)

    row_sound = sounds[sample_ids]  # [b, r, d]
    weight = hits.mean(-1)  # [b, r]: how often each row plays
    overall = torch.einsum("br,brd->bd", weight, row_sound) / weight.sum(1, keepdim=True).clamp(min=1e-6)
    reg_weight = torch.einsum("brk,br->bk", row_register, weight)
    per_register = (torch.einsum("brk,br,brd->bkd", row_register, weight, row_sound)
                    / reg_weight[..., None].clamp(min=1e-6)).flatten(1)

    return torch.cat([group_where, group_plays, group_contrast, levels_summary, busy, rows_playing, together,
                      phrase, overall, per_register], dim=1)


# --- the critic ---------------------------------------------------------------------------------

class GridCritic(nn.Module):
    """A logistic like head on the loop's standardized, squashed facts: `[batch, N_FEATURES]` ->
    log-probabilities `[batch, 2]` (dislike, like)."""

    def __init__(self, n_features: int = N_FEATURES, clip: float = 2.0):
        super().__init__()
        self.clip = clip
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))
        self.mlp = nn.Linear(n_features, 2)  # `mlp`: the name the trainer's head fit looks for
        nn.init.zeros_(self.mlp.weight)
        nn.init.zeros_(self.mlp.bias)

    def calibrate(self, feats: torch.Tensor) -> None:
        """Standardize against `feats` of random loops of the kit `[n, N_FEATURES]`. A fact that never
        varies there (a role the kit lacks) keeps a unit scale, so another kit's loops that have it
        stay in range."""
        with torch.no_grad():
            self.mean.copy_(feats.mean(0))
            sd = feats.std(0)
            self.scale.copy_(torch.where(sd > 1e-3, sd, torch.ones_like(sd)))

    def head_input(self, feats: torch.Tensor) -> torch.Tensor:
        return squash((feats - self.mean) / self.scale, self.clip)

    def rating_parameters(self):
        return self.mlp.parameters()

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.mlp(self.head_input(feats)), dim=1)

    def taste(self) -> torch.Tensor:
        """The like head's weight on each standardized fact `[N_FEATURES]` (like minus dislike)."""
        return (self.mlp.weight[1] - self.mlp.weight[0]).detach()


class GridScorer:
    """Scores loops of one kit from their grid, batched, on `device`: no render, no MFCC."""

    def __init__(self, kit, config, device):
        self.kit = kit
        self.config = config
        self.device = torch.device(device)
        self.n_samples = len(kit)
        kicks = kit.ids_with_role("kick") or list(range(len(kit)))
        self.kick_ids = torch.tensor(kicks, device=self.device)
        self.groups = torch.tensor(group_of_roles(kit.roles), device=self.device)
        self.sounds = torch.from_numpy(sound_descriptors(kit.audio_at(SOUND_SR))).to(self.device)
        self.transform = None  # examples are features already

    def features(self, loops: Loops) -> torch.Tensor:
        """`[batch, N_FEATURES]`."""
        return grid_features(loops.levels, loops.sample_ids, loops.meter, self.groups, self.sounds)

    def score(self, model, loops: Loops) -> torch.Tensor:
        """P(like) `[batch]`."""
        with torch.no_grad():
            return model(self.features(loops))[:, 1].exp()


def feature_names() -> list[str]:
    """A name for each column of `grid_features`, in order (the taste map reads them)."""
    groups = sorted(set(ROLE_GROUPS.values()))
    group_name = {g: "/".join(r for r, v in ROLE_GROUPS.items() if v == g) for g in groups}
    classes = ("strong beats", "weak beats", "8ths between", "16ths between")
    registers = ("low", "middle", "high", "other")
    sound = ("bright", "wide", "low end", "mids", "highs", "long", "noisy", "loud")
    names = [f"{group_name[g]} on {c}" for g in groups for c in classes]
    names += [f"{group_name[g]} plays" for g in groups]
    names += [f"{group_name[g]} accents on the beats" for g in groups]
    names += ["loud on the beats", "loud between", "level spread", "accents on the beats", "ghost notes on the beats",
              "accents between", "ghost notes between"]
    names += [f"busy on {c}" for c in classes] + ["rows playing"]
    names += [f"{registers[i]} with {registers[j]}" for i, j in PAIRS]
    names += ["bars vary", "ends in a fill"]
    names += [f"sound: {s}" for s in sound] + [f"{r} sound: {s}" for r in registers for s in sound]
    return names


def taste_map(model: GridCritic, examples: torch.Tensor, l2: float, top: int = 3) -> dict:
    """What the like head learnt, readable at a glance: the facts it prefers and avoids most surely.

    examples: the rated loops' features `[n, N_FEATURES]` (what the head was fitted on); l2: its
    penalty. Each fact's weight (like minus dislike, per SD of random loops) is set against its
    standard error from the fit's curvature (the Laplace approximation of the L2 logistic fit), so
    `z` says how sure the critic is: |z| >= 2 sure, >= 1 leaning. -> {"likes": [(name, weight, z, words)],
    "avoids": [...], "ratings": n}. Pure: no I/O."""
    names = feature_names()
    weight = model.taste()
    n = len(examples)
    if n == 0 or not bool(weight.abs().sum() > 0):
        return {"likes": [], "avoids": [], "ratings": n}
    with torch.no_grad():
        x = model.head_input(examples)
        p = model(examples)[:, 1].exp()
        curvature = (x * (p * (1 - p))[:, None]).T @ x + 2 * l2 * n * torch.eye(x.shape[1], device=x.device)
        se = torch.linalg.inv(curvature).diagonal().clamp(min=1e-12).sqrt()
    z = weight / se
    order = torch.argsort(z, descending=True).tolist()

    def pick(indices):
        return [(names[i], round(float(weight[i]), 3), round(float(z[i]), 2), sureness(float(z[i])))
                for i in indices[:top]]

    return {"likes": pick([i for i in order if z[i] > 0]), "avoids": pick([i for i in reversed(order) if z[i] < 0]),
            "ratings": n}
