"""The learner: one kit, one critic, one device; proposes loops, learns from rated ones.

Not thread-safe by itself: the session's worker thread is its only caller, so training and
search never run at the same time and never touch the timing-critical player process.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from deepdrummer_live.learn.critic import (
    ROLE_GROUPS,
    CriticConfig,
    Trainer,
    count_parameters,
    hearing_optimizer,
    train_hearing,
)
from deepdrummer_live.learn.grid import N_FEATURES, GridCritic, taste_map
from deepdrummer_live.learn.kinds import (
    DEFAULT,
    CriticKind,
    kind_named,
    kit_fingerprint,
)
from deepdrummer_live.learn.search import search
from deepdrummer_live.loop import LoopRecord
from deepdrummer_live.sound import pattern
from deepdrummer_live.sound.dynamics import MAX_LEVEL
from deepdrummer_live.sound.kit import Kit
from deepdrummer_live.sound.pattern import Loops
from deepdrummer_live.vocab import DEFAULT_PROFILE, steps_per_bar

log = logging.getLogger(__name__)
CALIBRATION_LOOPS = 256
# The long hearing pass (a session on a kit with no hearing critic of its own, in idle time): fresh
# loops are featurized HEARING_FRESH_LOOPS at a time every HEARING_STEPS_PER_REFRESH steps into a
# pool of at most HEARING_POOL_LOOPS (about 20 MB of MFCCs); the like head follows the trunk every
# HEARING_REFIT_EVERY steps.
HEARING_POOL_LOOPS = 4096
HEARING_FRESH_LOOPS = 128  # about 50 ms of rendering and MFCCs on one core: a short slice
HEARING_STEPS_PER_REFRESH = 40  # 3.2 fresh loops per step, as the shipped critics' 32,768 for 10,000
HEARING_REFIT_EVERY = 1000
MIN_CHAINS = 32  # the fewest chains a search of a big loop runs (see Learner.propose)

VARY_CANDIDATES = 64  # /dd/vary: variations scored; the critic's best is played (one batch, ~0.1 s on a core)
FILL_CANDIDATES = 16  # /dd/fill: fills scored the same way


@dataclass
class Proposal:
    loops: Loops  # batch of one, on the learner's device
    p_like: float
    mode: str
    fotf: bool
    critic_version: int  # training rounds behind it; stale once the critic has moved on
    prior: pattern.Prior = pattern.Prior()  # density, dynamics and locks it was made under
    profile: str = DEFAULT_PROFILE  # the taste profile whose critic chose it
    vary_of: int | None = None  # /dd/vary: the id of the loop it is a variation of


class Learner:
    def __init__(self, kit: Kit, device: torch.device, seed: int, kind: CriticKind | str | None = None,
                 config: CriticConfig | None = None, chains: int | None = None, iters: int | None = None):
        self.kit = kit
        self.device = device
        if kind is None:  # a config names its kind
            kind = config.name if config is not None else DEFAULT
        self.kind = kind_named(kind) if isinstance(kind, str) else kind
        self.prior = self.kind.prior
        if device.type == "cpu":
            torch.set_num_threads(min(2, torch.get_num_threads()))  # leave the rest to the player and OS
        self.config = config or self.kind.config
        self.gen = torch.Generator(device=device).manual_seed(seed)
        self.train_gen = torch.Generator(device=device).manual_seed(seed + 1)
        self.scorer = self.kind.make_scorer(kit, self.config, device)
        default_chains, default_iters = self.kind.budget(device)
        self.chains, self.iters = chains or default_chains, iters or default_iters
        torch.manual_seed(seed)  # initial critic weights
        self.model = self.kind.build(self.config).to(device)
        if hasattr(self.model, "calibrate"):  # the like head reads its inputs standardized
            calib = pattern.random_loops(CALIBRATION_LOOPS, len(kit), self.gen, device, prior=self.prior)
            self.model.calibrate(self.scorer.features(calib))
        self.model.eval()
        self.trainer = Trainer(self.config, self.model, self.scorer.transform, self.train_gen,
                               on_audio=self.kind.trains_on == "audio")
        # Taste profiles: one model; what a profile owns (its taste: the like head of a hearing critic,
        # else every weight) is swapped in when it becomes current, what is heard is shared.
        self.profile = DEFAULT_PROFILE
        self._fresh_taste = self._taste()  # an untrained taste (a new profile with no `from`)
        self._tastes: dict[str, dict] = {}  # the other profiles: {"examples", "taste" (None: untrained), "unsaved"}
        self.version = 0
        self.hearing_done = False
        self.hearing_steps: int | None = None  # hearing steps the trunk has learnt; None: came with it
        self._hearing: dict | None = None  # the hearing pass's data and progress while it runs
        self._long_hearing: dict | None = None  # the long pass's pool and progress (keep_hearing)
        self._taste_map: tuple | None = None  # (key, taste map): recomputed when the critic moves
        self.resumed = False  # choose_start found the state dir's own critic to go on with

    @property
    def n_parameters(self) -> int:
        return count_parameters(self.model)

    # --- proposals --------------------------------------------------------------------------

    def make_prior(self, fotf: bool = False, density: tuple[float, ...] | None = None,
                   locked: tuple[int, ...] = (), source: Loops | None = None, *, rows: int | None = None,
                   bars: int | None = None, meter: str | None = None) -> pattern.Prior:
        """The generator's prior for this learner: the loops' shape, density per row, fotf, and `locked`
        rows of `source` (a batch of one) kept in every proposal. The paper's learner has no dynamics."""
        lock = pattern.Lock.of(source.to(self.device), locked) if source is not None and locked else None
        return replace(self.prior, fotf=fotf, lock=lock,
                       density=tuple(density) if density is not None else self.prior.density,
                       rows=rows or self.prior.rows, bars=bars or self.prior.bars, meter=meter or self.prior.meter)

    def propose(self, mode: str, fotf: bool, *, should_stop=None, prior: pattern.Prior | None = None,
                chains: int | None = None, profile: str | None = None, profile_base: str | None = None,
                vary: Loops | None = None, vary_of: int | None = None) -> Proposal:
        """One proposal; `chains` (default: the learner's budget) is fewer when a performer waits. The budget
        is in cells of the paper's loop (4 rows x 16 steps): a bigger loop gets fewer chains.
        `profile`: the taste that chooses (made current first; a new one copies `profile_base`'s);
        `vary`: a loop (batch of one) whose variation is wanted instead of a search."""
        if profile is not None:
            self.use_profile(profile, profile_base)
        prior = replace(prior or self.prior, fotf=fotf)
        if vary is not None:
            loop, p = self.best_of(pattern.variations(vary.to(self.device), VARY_CANDIDATES, len(self.kit), self.gen,
                                                      prior, self.scorer.kick_ids))
            return Proposal(loop, p, mode, fotf, self.version, prior, self.profile, vary_of)
        # A bigger loop: fewer chains, so a search costs what a paper-sized loop's does (generation and
        # mutation cost per cell). More steps per chain were tried for 8x2 loops: no gain (docs/learning.md)
        cells = prior.rows * prior.n_steps
        scale = min(1.0, pattern.N_ROWS * pattern.N_STEPS / cells)
        n = max(MIN_CHAINS, int((chains or self.chains) * scale)) if chains != 1 else 1
        result = search(self.scorer, self.model, mode, self.gen, n, self.iters, fotf, should_stop, prior=prior)
        return Proposal(result.loop, result.p_like, mode, fotf, self.version, prior, self.profile)

    def fill(self, source: Loops) -> tuple[Loops, float]:
        """A fill of `source` (a batch of one): its last quarter drawn again busier, the critic's best
        of FILL_CANDIDATES -> (the fill, its P(like))."""
        return self.best_of(pattern.fills(source.to(self.device), FILL_CANDIDATES, self.gen, self.prior))

    def best_of(self, candidates: Loops) -> tuple[Loops, float]:
        """The candidate the current critic likes most, and its P(like)."""
        p = self.scorer.score(self.model, candidates)
        best = int(torch.argmax(p))
        return candidates.take(best), float(p[best])

    def record(self, loops: Loops, **fields) -> LoopRecord:
        """A batch-of-one as a loop record (id 0 until stored; each row's note its sample's, before the
        note map); `fields`: the record's other fields (p_like, mode, tempo...)."""
        samples = [self.kit.samples[i] for i in loops.sample_ids[0].tolist()]
        return LoopRecord.of(samples=[s.name for s in samples], notes=[s.note for s in samples],
                             roles=[s.role for s in samples], levels=pattern.levels_to_strings(loops.levels[0].cpu()),
                             meter=loops.meter, kit=self.kit.name, **fields)

    def loops_from_record(self, rec: LoopRecord) -> Loops | None:
        """Rebuild a stored or rated loop with this kit; None when the kit lacks one of its samples, or
        the critic cannot read its shape."""
        names = {s.name: i for i, s in enumerate(self.kit.samples)}
        if any(n not in names for n in rec.samples) or not rec.samples:
            return None
        meter = rec.meter
        if len({len(lv) for lv in rec.levels}) != 1 or len(rec.levels[0]) % steps_per_bar(meter):
            return None
        if not self.kind.reads(len(rec.levels[0]) // steps_per_bar(meter), meter):
            return None  # a critic that hears one bar of 4/4 cannot read it
        levels = pattern.strings_to_levels(rec.levels)[None].to(self.device)
        ids = torch.tensor([[names[n] for n in rec.samples]], device=self.device)
        return Loops(levels, ids, meter)

    # --- learning ---------------------------------------------------------------------------

    def needs_hearing(self) -> bool:
        return getattr(self.model, "roles", None) is not None and not self.hearing_done

    def learn_to_hear(self, steps: int | None = None) -> float:
        """Before any rating: teach the critic which role group starts on which step, from random
        loops of this kit (their content is known, so no human is needed). Runs `steps` more
        optimizer steps (default: all that are left), so a caller can interleave other work.
        Returns the recent loss; `hearing_done` turns True after the last step."""
        if self._hearing is None:
            feats, targets, counts = self._hearing_examples(self.config.hearing_pass_loops)
            self._hearing = {"feats": feats, "targets": targets, "counts": counts,
                             "left": self.config.hearing_pass_steps, "optimizer": hearing_optimizer(self.model)}
        h = self._hearing
        n = h["left"] if steps is None else min(steps, h["left"])
        loss = train_hearing(self.model, h["feats"], h["targets"], h["counts"], n, self.train_gen,
                                h["optimizer"])
        h["left"] -= n
        self.hearing_steps = (self.hearing_steps or 0) + n
        if h["left"] <= 0:
            self._hearing = None
            self.hearing_done = True
            if self.long_hearing_left():  # its loops and optimizer start the long pass
                self._start_long_hearing(h["feats"], h["targets"], h["counts"], h["optimizer"])
            self._settle_hearing(h["feats"])
        return loss

    def _hearing_examples(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`n` random loops of this kit and what hearing learns of them: MFCC `[n, n_mfcc, frames]`,
        soft role targets `[n, n_groups, n_steps]`, rows hitting per step `[n, n_steps]`."""
        loops = pattern.random_loops(n, len(self.kit), self.train_gen, self.device, prior=self.prior)
        group_of = torch.tensor([ROLE_GROUPS.get(r, ROLE_GROUPS["perc"]) for r in self.kit.roles],
                                device=self.device)
        groups = group_of[loops.sample_ids]  # [n, row]
        targets = torch.zeros(n, self.model.n_groups, pattern.N_STEPS, device=self.device)
        index = torch.arange(n, device=self.device)
        # Soft targets: a hit's level / 9, so the trunk learns to hear how loud each hit is
        # too (a taste for accents and ghost notes needs it); the loudest row of a group wins.
        strength = loops.levels.float() / MAX_LEVEL
        for r in range(loops.levels.shape[1]):
            targets[index, groups[:, r]] = torch.maximum(targets[index, groups[:, r]], strength[:, r])
        with torch.no_grad():
            feats = self.scorer.features(loops)
        return feats, targets, loops.grid.sum(dim=1)

    def long_hearing_left(self) -> int:
        """Hearing steps still to learn after the short pass at start, to reach what a shipped
        hearing critic learnt offline (config.shipped_hearing_steps); 0 for a critic that came
        with its hearing (shipped, --critic, a file that does not say)."""
        if self.hearing_steps is None or not self.hearing_done:
            return 0
        return max(0, self.config.shipped_hearing_steps - self.hearing_steps)

    def hearing_progress(self) -> tuple[int, int] | None:
        """(hearing steps learnt, steps to reach) while the critic still learns to hear this kit (the
        short pass at start, then the long one in idle time); None once it hears as well as it will."""
        if self.needs_hearing():
            return (self.hearing_steps or 0, self.config.shipped_hearing_steps)
        if self.long_hearing_left():
            return (self.hearing_steps, self.config.shipped_hearing_steps)
        return None

    def keep_hearing(self, steps: int) -> bool:
        """One slice of the long hearing pass, for the worker's idle time: featurize a few fresh
        loops into a bounded pool, or run at most `steps` hearing steps on it. Every
        HEARING_REFIT_EVERY steps, and at the end, the like head is rescaled and refitted on what
        the trunk now hears (as after the short pass). Returns True when that happened: the
        critic changed, proposals made before are stale."""
        if not self.long_hearing_left():
            return False
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # idle work on one core: the other stays free for the performer's path
        try:
            return self._keep_hearing(steps)
        finally:
            torch.set_num_threads(threads)

    def _keep_hearing(self, steps: int) -> bool:
        h = self._long_hearing
        if h is None:  # resumed half-way (a checkpoint): a new pool
            h = self._start_long_hearing(*self._hearing_examples(HEARING_FRESH_LOOPS), hearing_optimizer(self.model))
        if h["fresh_in"] <= 0:
            self._add_fresh_hearing_loops(h)
            h["fresh_in"] = HEARING_STEPS_PER_REFRESH
            return False
        n = min(steps, h["fresh_in"], h["refit_in"], self.long_hearing_left())
        train_hearing(self.model, h["feats"], h["targets"], h["counts"], n, self.train_gen, h["optimizer"])
        self.hearing_steps += n
        h["fresh_in"] -= n
        h["refit_in"] -= n
        if h["refit_in"] > 0 and self.long_hearing_left():
            return False
        h["refit_in"] = HEARING_REFIT_EVERY
        self._settle_hearing(h["feats"])
        if not self.long_hearing_left():
            self._long_hearing = None  # its pool (about 20 MB) is not needed any more
        return True

    def _start_long_hearing(self, feats, targets, counts, optimizer) -> dict:
        """The long pass's state: its pool (a ring once full: `next`), optimizer, and steps left
        before the next fresh loops and the next refit."""
        self._long_hearing = {"feats": feats, "targets": targets, "counts": counts, "next": 0, "optimizer": optimizer,
                              "fresh_in": HEARING_STEPS_PER_REFRESH, "refit_in": HEARING_REFIT_EVERY}
        return self._long_hearing

    def _add_fresh_hearing_loops(self, h: dict) -> None:
        """HEARING_FRESH_LOOPS new loops into the pool; once it holds HEARING_POOL_LOOPS, they replace
        the oldest (fresh loops keep hearing from learning one pool by heart, the bound keeps memory)."""
        new = self._hearing_examples(HEARING_FRESH_LOOPS)
        keys = ("feats", "targets", "counts")
        if len(h["feats"]) < HEARING_POOL_LOOPS:
            for key, part in zip(keys, new):
                h[key] = torch.cat([h[key], part])
            return
        at = torch.arange(h["next"], h["next"] + HEARING_FRESH_LOOPS, device=self.device) % HEARING_POOL_LOOPS
        for key, part in zip(keys, new):
            h[key][at] = part
        h["next"] = int(at[-1]) + 1

    def _settle_hearing(self, feats: torch.Tensor) -> None:
        """The trunk has moved: rescale the like head's input (over random loops) and refit it on the
        ratings so far, which were fitted on what the trunk heard before."""
        self.model.calibrate_head(feats)
        self.version += 1
        if self.config.fit == "full":
            self.trainer.train()

    def example(self, loops: Loops) -> torch.Tensor:
        """What training keeps for a rated loop: MFCCs (lean) or the 2 s of audio (paper)."""
        with torch.no_grad():
            if self.kind.trains_on == "audio":
                return self.scorer.audio(loops)[0]
            return self.scorer.features(loops)[0]

    def set_rating(self, loop_id: int, loops: Loops | None, label: int | None, profile: str | None = None,
                   *, example: torch.Tensor | None = None) -> None:
        """Learn (label 1/0) or forget (None) a rated loop in `profile` (default: the current one);
        `example`: what `example(loops)` gives, when the caller has it already."""
        if label is not None and loops is not None and example is None:
            example = self.example(loops)
        if label is None or loops is None:
            example, label = None, None
        if profile is None or profile == self.profile:
            self.trainer.set_example(loop_id, example, label)
            return
        examples = self._tastes.setdefault(profile, {"examples": {}, "taste": None})["examples"]
        examples.pop(loop_id, None)  # the same order rules as Trainer.set_example
        if label is not None:
            examples[loop_id] = (example, int(label))

    # --- taste profiles ------------------------------------------------------------------------

    def _taste_keys(self) -> list[str]:
        """What a profile owns of the model: the like head of a critic that learnt to hear (the hearing is
        shared) or that reads loops, else all of it (the paper's critic has nothing to share)."""
        keys = list(self.model.state_dict())
        if getattr(self.model, "roles", None) is not None or isinstance(self.model, GridCritic):
            # the critic that reads loops shares its standardization (the kit's random loops) the same way
            return [k for k in keys if k.startswith("mlp.")]
        return keys

    def _taste(self, state: dict | None = None) -> dict:
        state = self.model.state_dict() if state is None else state
        return {k: state[k].detach().clone() for k in self._taste_keys()}

    def use_profile(self, name: str, base: str | None = None) -> bool:
        """Make profile `name` the taste that scores and learns. A profile never seen starts as a copy
        of `base`'s taste and ratings, else untrained (P(like) 0.5 for every loop until it is rated)
        over the hearing the session has. Nothing waits for training: a hearing critic's head is
        refitted on the profile's ratings at once (milliseconds). Returns True when it changed."""
        if name == self.profile:
            return False
        self._tastes[self.profile] = {"examples": self.trainer.examples, "taste": self._taste(), "unsaved": True}
        entry = self._tastes.pop(name, None)
        if entry is None:
            source = self._tastes.get(base) if base is not None else None
            entry = ({"examples": dict(source["examples"]), "taste": source["taste"], "unsaved": True}
                     if source is not None else {"examples": {}, "taste": None, "unsaved": True})
        self.trainer.examples = entry["examples"]
        self.model.load_state_dict(entry["taste"] if entry["taste"] is not None else self._fresh_taste, strict=False)
        self.model.eval()
        self.trainer.reset_optimizer()
        self.profile = name
        self.version += 1  # proposals made by the other taste are stale
        if self.config.fit == "full" and self.trainer.ready():
            self.trainer.train()  # fitted over what the trunk hears now, which may have moved since
        log.info("taste profile %s: %d ratings to learn from", name, len(self.trainer.examples))
        return True

    def train(self, n_batches: int | None = None) -> float | None:
        loss = self.trainer.train(n_batches)
        if loss is not None:
            self.version += 1
        return loss

    def taste_map(self, top: int = 3) -> dict | None:
        """What the critic that reads loops has learnt (learn/grid.taste_map), for the surfaces; None for
        a critic that hears (its taste is over heard summaries with no names). Kept per critic version."""
        if not isinstance(self.model, GridCritic):
            return None
        key = (self.version, len(self.trainer.examples), top)
        if self._taste_map is None or self._taste_map[0] != key:
            feats = [f for f, _ in list(self.trainer.examples.values())]
            examples = torch.stack(feats) if feats else torch.zeros(0, N_FEATURES, device=self.device)
            self._taste_map = (key, taste_map(self.model, examples, self.config.head_l2, top))
        return self._taste_map[1]

    # --- checkpoints --------------------------------------------------------------------------

    def critic_state(self) -> dict:
        """What a critic file holds (see learn/kinds.py)."""
        state = {"model": self.model.state_dict(), "config": self.kind.name, "train_steps": self.trainer.steps,
                 "version": self.version, "hearing_done": self.hearing_done, "kit": kit_fingerprint(self.kit)}
        if self.trainer.anchor:  # a session started from another critic: that taste stays its prior on resuming
            state["anchor"] = self.trainer.anchor
        # Only a critic still short of full hearing says how far it got (a resumed session goes on from
        # there); a complete one writes nothing, like the shipped files, so `make critics` remakes them
        # byte for byte.
        if self.hearing_steps is not None and self.hearing_steps < self.config.shipped_hearing_steps:
            state["hearing_steps"] = self.hearing_steps
        return state

    def checkpoint_contents(self) -> dict[str | None, dict]:
        """What the checkpoint files hold (learn/checkpoint.py writes them): None -> critic.pt, the hearing
        and the `default` profile's taste (so a state dir from before profiles, and `run --critic`, read
        it as ever); a profile's name -> the whole critic with that profile's taste, for the current
        profile and any other whose taste changed since the last call."""
        state = self.critic_state()
        contents: dict[str | None, dict] = {}
        if self.profile != DEFAULT_PROFILE:
            contents[self.profile] = state
            default = self._tastes.get(DEFAULT_PROFILE, {}).get("taste") or self._fresh_taste
            state = {**state, "model": {**state["model"], **default}}
        contents[None] = state
        for name, entry in self._tastes.items():
            if name != DEFAULT_PROFILE and entry.get("unsaved") and entry["taste"] is not None:
                contents[name] = {**state, "model": {**state["model"], **entry["taste"]}}
                entry["unsaved"] = False
        return contents

    def adopt_taste(self, profile: str, model_state: dict) -> None:
        """A resumed profile's taste (read from its critic file), swapped in when it becomes current."""
        self._tastes[profile] = {"examples": {}, "taste": self._taste(model_state), "unsaved": False}

    def anchor_taste(self) -> None:
        """A session started from another critic: its taste is the prior this session's ratings move."""
        head = getattr(self.model, "mlp", None)
        if head is not None and self.config.fit == "full":
            self.trainer.anchor = {n: w.detach().clone() for n, w in head.named_parameters() if n.endswith("weight")}

    def check_fits(self, state: dict, path: Path) -> None:
        """CriticFileError when `state` does not fit this critic; checked on a copy, so a file that
        fails half-way never leaves this critic half-loaded."""
        self.kind.fits(copy.deepcopy(self.model), state, path)

    def adopt(self, state: dict, path: Path) -> None:
        """Take over a critic file's state (read by learn/checkpoint.py); `path` names it in errors."""
        self.kind.fits(self.model, state, path)
        self.model.eval()
        anchor = state.get("anchor")
        self.trainer.anchor = ({n: w.to(self.device) for n, w in anchor.items()}
                               if isinstance(anchor, dict) else None)
        self.hearing_done = bool(state.get("hearing_done", False))
        steps = state.get("hearing_steps")  # absent: a shipped or --critic file, its hearing complete
        self.hearing_steps = int(steps) if steps is not None and self.hearing_done else None
        self._long_hearing = None
        self.trainer.steps = int(state.get("train_steps", 0))
        self.version = int(state.get("version", 0)) + 1  # proposals made before are stale
