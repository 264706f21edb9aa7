"""Simulated performers: consistent tastes over the grid and the rows' GM roles.

A simulated user judges a loop only from what the daemon sends in `/dd/loop`
(`i loop_id, f p_like, f bpm, i n_steps`, then per row `s sample_name, i midi_note, s steps`),
the `/dd/levels` that follows it (per row `s levels`) and the `/dd/shape` after that (its meter):
sample names and GM notes give each row a role, the step strings give where it hits, the levels
how hard (1-9; without `/dd/levels` every hit is at the default level), the meter what is on the
beat (contract v1.2: 6/8 has its beats on steps 0 and 6...). Nothing else is used, so the same
user works with any kit; only `sounds` also listens to the kit's one-shots (its taste is about
sounds). Counts of hits are per bar and per 4 rows of 16 steps, so a taste for sparse or busy
loops means the same for 8 rows over 4 bars of 7/8.

Every user has a `score(loop) -> float` (its taste, higher is better) and a threshold;
`like_probability(loop)` is a steep logistic around the threshold mixed with a small
lapse rate (a person who sometimes presses the wrong button), and `judge(loop)` draws from
it with a generator seeded by the user's seed and the loop's content, so a given user gives
the same loop the same answer every time (deterministic, yet noisy across loops).

Thresholds are set so that the like-rate on the paper's prior (random loops: 4 random
samples, each cell on with p=0.5) lies in 0.2-0.5 with both the built-in kit and the
paper's 292-sample kit (see `base_rate` and tests/test_simuser.py).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from deepdrummer_live.loop import LoopRecord, LoopRow
from deepdrummer_live.sound.dynamics import MAX_LEVEL, default_levels
from deepdrummer_live.sound.kit import GM_NOTES, role_from_name
from deepdrummer_live.vocab import metric_classes

N_STEPS = 16

_NOTE_ROLES = {note: role for role, note in GM_NOTES.items()}

KICKS = {"kick"}
SNARES = {"snare", "clap", "rim"}
HATS = {"closed_hat", "pedal_hat", "open_hat", "shaker", "tambourine"}
CYMBALS = {"crash", "ride", "open_hat"}
TOMS = {"tom_low", "tom_mid", "tom_high"}
PERCS = TOMS | {"conga", "cowbell", "clave", "perc", "tambourine", "shaker"}


def with_roles(loop: LoopRecord, roles: set[str]) -> list[LoopRow]:
    return [r for r in loop.rows if r.role in roles]


def positions(loop: LoopRecord, *classes: int) -> tuple[int, ...]:
    """The steps of the loop at these metric classes (0 strong beat, 1 other beat, 2 an 8th
    between beats, 3 a 16th between 8ths), over every bar."""
    return tuple(k for k, c in enumerate(metric_classes(loop.meter, loop.n_steps)) if c in classes)


def scale(loop: LoopRecord) -> float:
    """Hits here -> hits in one bar of 4 rows of 16 steps (the loop the tastes were written for)."""
    return (4 / max(len(loop.rows), 1)) * (N_STEPS / max(loop.n_steps, 1))


def total_hits(loop: LoopRecord) -> float:
    """Hits per bar and per 4 rows of 16 steps (the paper's loop: its raw count)."""
    return sum(r.n_hits for r in loop.rows) * scale(loop)


def content_key(loop: LoopRecord) -> str:
    """The loop's content (not its id): same content, same judgement."""
    return "|".join(f"{r.sample}:{r.note}:{''.join(str(v) for v in r.level_values)}" for r in loop.rows)


def row_role(name: str, note: int) -> str:
    """A row's role: from the sample name when it names one, else from the GM note."""
    role = role_from_name(name)
    if role == "perc" and note in _NOTE_ROLES:
        return _NOTE_ROLES[note]
    return role


def parse_loop(args: Sequence | LoopRecord, levels: Sequence | None = None,
               shape: Sequence | None = None) -> LoopRecord:
    """The arguments of a `/dd/loop` message (a list), and optionally of the `/dd/levels` that
    follows it (`[loop_id, levels...]`) and of the `/dd/shape` after that (`[loop_id, steps_per_bar,
    bars, meter]`) -> the loop as this user hears it (each row's role from its name and note). A
    record is returned as is (one parsed already)."""
    if isinstance(args, LoopRecord):
        return args
    return LoopRecord.from_osc(args, levels, shape, role=row_role)


def hear(loop: LoopRecord) -> LoopRecord:
    """A loop the daemon would send, as a simulated user hears it: through its OSC messages."""
    return parse_loop(loop.loop_args(), loop.levels_args(), loop.shape_args())


def make_loop(rows: Sequence[tuple[str, str]], loop_id: int = 0) -> LoopRecord:
    """A loop from (role-or-sample-name, steps) pairs, for tests: note from GM_NOTES. Steps
    may be level strings ('.', '1'-'9') as well as 'x'/'.'."""
    args: list = [loop_id, 0.5, 120.0, len(rows[0][1])]
    levels: list = [loop_id]
    for name, steps in rows:
        args += [name, GM_NOTES.get(role_from_name(name), GM_NOTES["perc"]),
                 "".join("." if c == "." else "x" for c in steps)]
        levels.append(steps if "x" not in steps else default_levels([steps])[0])
    return parse_loop(args, levels)


# --- users ---------------------------------------------------------------------------------------

@dataclass
class SimUser:
    """One taste: `score` (higher = better), liked when above `threshold`."""

    name: str
    description: str
    score: Callable[[LoopRecord], float]
    threshold: float
    sharpness: float = 8.0  # logistic slope around the threshold (per unit of score)
    lapse: float = 0.03  # probability of answering at random
    seed: int = 0

    def like_probability(self, loop) -> float:
        loop = parse_loop(loop)
        z = self.sharpness * (self.score(loop) - self.threshold)
        p = 1.0 / (1.0 + math.exp(-max(min(z, 60.0), -60.0)))
        return self.lapse * 0.5 + (1.0 - self.lapse) * p

    def judge(self, loop) -> bool:
        """Like (True) or dislike; the same loop content always gets the same answer."""
        loop = parse_loop(loop)
        digest = hashlib.sha256(f"{self.name}/{self.seed}/{content_key(loop)}".encode()).digest()
        u = int.from_bytes(digest[:8], "little") / 2.0**64
        return u < self.like_probability(loop)


def _frac(row: LoopRow, steps: Sequence[int]) -> float:
    return sum(row.on(s) for s in steps) / len(steps)


def _best(rows: list[LoopRow], f: Callable[[LoopRow], float], default: float = 0.0) -> float:
    return max((f(r) for r in rows), default=default)


def backbeat(loop: LoopRecord) -> float:
    """Snare/clap/rim on the weak beats (2 and 4 in 4/4) and a kick on the one; not on every step."""
    weak, strong = positions(loop, 1), positions(loop, 0)

    def row_score(r: LoopRow) -> float:
        return _frac(r, weak) - 0.5 * _frac(r, strong)
    kick_one = 0.5 if any(r.on(0) for r in with_roles(loop, KICKS)) else 0.0
    return _best(with_roles(loop, SNARES), row_score, -0.5) + kick_one


def four_on_the_floor(loop: LoopRecord) -> float:
    """A kick on every beat, and few kicks in between."""
    beats, off = positions(loop, 0, 1), positions(loop, 2, 3)

    def row_score(r: LoopRow) -> float:
        return _frac(r, beats) - _frac(r, off)
    return _best(with_roles(loop, KICKS), row_score, -0.5)


def offbeat_hats(loop: LoopRecord) -> float:
    """Hats (closed/pedal/open, shaker, tambourine) on the offbeats, not on the beats."""
    offbeats, beats = positions(loop, 2), positions(loop, 0, 1)

    def row_score(r: LoopRow) -> float:
        return _frac(r, offbeats) - _frac(r, beats)
    return _best(with_roles(loop, HATS), row_score, -1.0)


def sparse(loop: LoopRecord) -> float:
    """Few hits in all: 1 at 16 hits or fewer, 0 at 40 or more."""
    return min(1.0, max(0.0, (40 - total_hits(loop)) / 24.0))


def busy(loop: LoopRecord) -> float:
    """Many hits in all: 0 at 24 or fewer, 1 at 48 or more."""
    return min(1.0, max(0.0, (total_hits(loop) - 24) / 24.0))


def no_cymbals(loop: LoopRecord) -> float:
    """Hates crash, ride and open hat (the more their hits, the worse); wants a kick and a snare."""
    cym = sum(r.n_hits for r in with_roles(loop, CYMBALS)) * scale(loop) * len(loop.rows) / 4
    core = bool(with_roles(loop, KICKS)) + bool(with_roles(loop, SNARES))
    return core / 2.0 - cym / 8.0


def percussionist(loop: LoopRecord) -> float:
    """Loves toms and hand percussion: rows of them, and many hits on them."""
    rows = with_roles(loop, PERCS)
    return len(rows) / max(len(loop.rows), 1) + sum(r.n_hits for r in rows) * scale(loop) / 64.0


def dynamics(loop: LoopRecord) -> float:
    """Accents on the beats, ghost notes off them: the share of beat hits at level 7 or more
    plus the share of other hits at level 4 or less, halved (0..1; a loop with no hits: 0)."""
    beats, off = positions(loop, 0, 1), positions(loop, 2, 3)
    on_beat = [r.level(s) for r in loop.rows for s in beats if r.on(s)]
    off_beat = [r.level(s) for r in loop.rows for s in off if r.on(s)]
    if not on_beat and not off_beat:
        return 0.0
    accents = sum(v >= 7 for v in on_beat) / len(on_beat) if on_beat else 0.0
    ghosts = sum(v <= 4 for v in off_beat) / len(off_beat) if off_beat else 0.0
    return 0.5 * (accents + ghosts)


def syncopation(loop: LoopRecord) -> float:
    """Kick and snare hits off the 8th grid (odd 16ths) rather than on it."""
    rows = with_roles(loop, KICKS | SNARES)
    odd_16ths, eighths = positions(loop, 3), positions(loop, 0, 1, 2)
    odd = sum(_frac(r, odd_16ths) for r in rows)
    even = sum(_frac(r, eighths) for r in rows)
    return (odd - even) if rows else -1.0


# Threshold per user: like-rate on the paper's prior about 0.2-0.5 with both the built-in kit
# and the paper's kit (measured by `base_rate`, 4000 random loops each; see docs/learning.md).
USERS: dict[str, tuple[str, Callable[[LoopRecord], float], float, float]] = {
    # name: (description, score, threshold, sharpness)
    "backbeat": ("snare/clap on 2 and 4 (steps 4, 12), kick on the one", backbeat, 0.625, 20.0),
    "fotf": ("four-on-the-floor kick (steps 0, 4, 8, 12), little else on the kick", four_on_the_floor, 0.1, 30.0),
    "offbeat_hats": ("hats on the offbeats (2, 6, 10, 14), not on the beats", offbeat_hats, 0.125, 20.0),
    "sparse": ("few hits in all (minimalist)", sparse, 0.44, 20.0),
    "busy": ("many hits in all (dense)", busy, 0.44, 20.0),
    "no_cymbals": ("hates crash/ride/open hat; wants kick and snare", no_cymbals, 0.8, 20.0),
    "percussionist": ("loves toms and hand percussion", percussionist, 0.6, 12.0),
    "syncopation": ("kick/snare on odd 16ths rather than on the 8th grid", syncopation, 0.19, 20.0),
    "dynamics": ("accents (level 7-9) on the beats, ghost notes (level 1-4) off them", dynamics, 0.45, 20.0),
}


def make_user(name: str, seed: int = 0, lapse: float = 0.03, kit=None) -> SimUser:
    if name == "sounds":
        if kit is None:
            raise ValueError("the simulated user 'sounds' listens to the kit's one-shots; pass kit=")
        return sound_user(kit, seed, lapse)
    if name not in USERS:
        raise ValueError(f"unknown simulated user {name!r}; use one of {', '.join(USERS)}, sounds")
    description, score, threshold, sharpness = USERS[name]
    return SimUser(name, description, score, threshold, sharpness=sharpness, lapse=lapse, seed=seed)


def all_users(seed: int = 0) -> list[SimUser]:
    return [make_user(n, seed) for n in USERS]


# --- the prior, for calibration ------------------------------------------------------------------

def random_loop(kit_rows: Sequence[tuple[str, int]], rng: random.Random, loop_id: int = 0) -> LoopRecord:
    """A loop from the paper's prior over (sample name, GM note) pairs of a kit."""
    args: list = [loop_id, 0.5, 120.0, N_STEPS]
    for _ in range(4):
        name, note = kit_rows[rng.randrange(len(kit_rows))]
        args += [name, note, "".join("x" if rng.random() < 0.5 else "." for _ in range(N_STEPS))]
    # Levels uniform 1-9 as the generator draws them, from their own stream (the grid's draws
    # stay as they were, so the other users' base rates do not move).
    lv_rng = random.Random("|".join(str(a) for a in args))
    levels = [loop_id] + ["".join("." if c == "." else str(lv_rng.randint(1, MAX_LEVEL)) for c in a)
                          for a in args[6::3]]
    return parse_loop(args, levels)


def base_rate(user: SimUser, kit_rows: Sequence[tuple[str, int]], n: int = 2000, seed: int = 0,
              expected: bool = True) -> float:
    """The user's like-rate on random loops of a kit (mean like_probability, or judged)."""
    rng = random.Random(seed)
    loops = [random_loop(kit_rows, rng, i) for i in range(n)]
    if expected:
        return sum(user.like_probability(lp) for lp in loops) / n
    return sum(user.judge(lp) for lp in loops) / n


# --- a taste for sounds ---------------------------------------------------------------------------

def brightness_of(kit) -> dict[str, float]:
    """Each sample's brightness: log2 of its spectral centroid (librosa, over the first 250 ms, where
    the hit is) relative to the kit's median. What `sounds` hears of a one-shot."""
    import librosa
    import numpy as np

    raw = {}
    for sample in kit.samples:
        head = np.asarray(sample.audio[: max(2048, int(0.25 * sample.sr))], dtype=np.float32)
        if head.size < 2048:
            head = np.pad(head, (0, 2048 - head.size))
        centroid = librosa.feature.spectral_centroid(y=head, sr=sample.sr, n_fft=2048)
        raw[sample.name] = float(np.log2(max(float(np.median(centroid)), 20.0)))
    median = float(np.median(list(raw.values())))
    return {name: value - median for name, value in raw.items()}


def sound_user(kit, seed: int = 0, lapse: float = 0.03) -> SimUser:
    """`sounds`: a taste about sounds, not where they fall: dark, warm one-shots over bright ones
    (the loop's mean brightness, each row weighted by its hits, below the kit's median). Its
    threshold puts the like-rate on random loops of this kit at about 0.3."""
    bright = brightness_of(kit)

    def darkness(loop: LoopRecord) -> float:
        rows = [r for r in loop.rows if r.n_hits and r.sample in bright]
        if not rows:
            return -3.0
        return -sum(bright[r.sample] * r.n_hits for r in rows) / sum(r.n_hits for r in rows)

    rng = random.Random(seed)
    kit_rows = [(x.name, x.note) for x in kit.samples]
    scores = sorted(darkness(random_loop(kit_rows, rng, i)) for i in range(2000))
    threshold = scores[int(0.7 * len(scores))]
    spread = max(scores[int(0.9 * len(scores))] - scores[int(0.5 * len(scores))], 1e-3)
    return SimUser("sounds", "dark, warm sounds over bright ones (about sounds, not where they fall)", darkness,
                   threshold, sharpness=4.0 / spread, lapse=lapse, seed=seed)


SOUND_USERS = ("sounds",)  # users that need the kit: make_user(name, seed, kit=kit)
