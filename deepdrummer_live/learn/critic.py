"""Critics: P(like) from one bar of audio, and their online training from ratings.

- `PaperCritic`: the DeepDrummer paper's network, kept exactly (60 MFCCs of 2 s at 44.1 kHz ->
  three strided Conv2d with LeakyReLU/dropout/batch norm -> 1x1 conv -> MLP -> 2-way log-softmax,
  about 291k parameters). Trained on augmented audio (gain, DC offset, noise, circular shift).
- `LeanCritic` (default): 40 MFCCs, frames aligned to the 16th grid (4 frames per step at hop 500,
  16 kHz, 120 BPM). A trunk turns each step into one embedding: a strided Conv1d over the step's
  frames, plus a fixed "onset spectrum" (the MFCCs turned back into a smoothed log-mel spectrum,
  pooled to a few bands: its rise at the step's first frame and its level) through a 1x1 conv,
  two residual 1x1 layers (a small MLP per step: hits sounding together are told apart there),
  then a circular conv across steps. Before any rating the trunk *learns to hear*: on a few
  thousand random loops of the kit, whose content the learner knows, it learns which GM role
  group starts on which step (`train_hearing`, a few seconds of CPU in the background).
  Ratings then train only the like head, a logistic regression on those per-step role
  probabilities and the mean step embedding (what it sounds like): a taste about where the
  snare falls, how busy the loop is, or which drums it uses is a few weights there, which a few
  dozen ratings can set. Features are computed once per rated loop; augmentation is applied to
  them where it is cheap. Label smoothing keeps the critic from claiming P(like) >= 0.95 too
  early, so the `good` search keeps climbing instead of stopping at the first over-confident loop.
  The critic still hears nothing but the rendered audio: the role labels only teach it to listen.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepdrummer_live.learn.features import MfccSpec, dct_matrix

PAPER_SR = 44100
PAPER_SPEC = MfccSpec(sr=16000, n_fft=400, hop=200, n_mels=128, n_mfcc=60, fmax=8000.0, htk=True,
                      mel_norm=None, top_db=80.0, circular=False, pad_mode="reflect")
# torchaudio.transforms.MFCC defaults as the paper used them: its nominal 16 kHz rate on 44.1 kHz audio.
# 40 coefficients of 40 mels: the whole log-mel spectrum, for hearing hits under others (docs/learning.md)
LEAN_SPEC = MfccSpec(sr=16000, n_fft=512, hop=500, n_mels=40, n_mfcc=40, fmax=8000.0, top_db=80.0)
MAX_LOSSES = 1000  # Trainer keeps this many recent losses: a long session must not grow memory
REFERENCE_BPM = 120.0  # the critic always hears the loop at this tempo: its input is tempo-invariant


@dataclass(frozen=True)
class CriticConfig:
    name: str
    spec: MfccSpec
    audio_sr: int
    bar_seconds: float = 2.0
    lr: float = 5.7e-5
    weight_decay: float = 5.9e-6
    dropout: float = 0.167
    batch_size: int = 16
    batches_per_rating: int = 40
    gain_sd: float = 0.05
    dc_sd: float = 0.05
    noise_sd: float = 0.006
    max_shift: int = 128  # samples (paper) or frames (lean)
    width: int = 32
    hidden: int = 64
    label_smoothing: float = 0.0  # target 1 - eps/2 for the rated class (0: the paper's plain NLL)
    bands: int = 10  # lean: log-mel bands of the per-step onset spectrum (n_mels must be a multiple)
    hearing_pass_steps: int = 0  # lean: a new session's hearing pass, steps on random loops (0: none, no role head)
    hearing_pass_loops: int = 2048
    shipped_hearing_steps: int = 10000  # the built-in kits' shipped hearing critics learn longer, once
    shipped_hearing_loops: int = 32768  # fresh loops: hearing kept improving up to here (docs/learning.md)
    fit: str = "sgd"  # "sgd": augmented mini-batches; "full": the like head fitted on every rating at once
    fit_iters: int = 100  # "full": L-BFGS iterations per fit (it stops earlier once converged)
    head_l2: float = 0.2  # "full": L2 penalty on the like head's weights (inputs are standardized)
    head_clip: float = 0.0  # like head inputs squashed to +-this many SDs of random loops (0: not squashed)
    step_width: int = 0  # lean: width of the per-step network before the step embedding (0: `width`)
    step_layers: int = 0  # lean: residual 1x1 layers of the per-step network
    # Recency: a rating `half_life` ratings older than the newest weighs half as much (0: every rating the
    # same), so the critic follows a performer who changes their mind (docs/learning.md, "a change of mind")
    half_life: float = 0.0


PAPER_CONFIG = CriticConfig("paper", PAPER_SPEC, PAPER_SR)
LEAN_CONFIG = CriticConfig("lean-hearing", LEAN_SPEC, LEAN_SPEC.sr, hearing_pass_steps=400, lr=1e-3, weight_decay=1e-4,
                           dropout=0.2, batches_per_rating=1, noise_sd=0.05, max_shift=0, width=32, hidden=0,
                           label_smoothing=0.2, bands=10, fit="full", head_clip=2.0, step_width=96, step_layers=2,
                           half_life=10.0)  # a change of mind: +0.08 like-rate after it, docs/learning.md


class PaperCritic(nn.Module):
    """The paper's MFCCCritic(n_conv=64, n_mlp=128, p_dropout=0.167) head and tail on MFCC input."""

    def __init__(self, n_mfcc: int = 60, n_frames: int = 442, n_conv: int = 64, n_mlp: int = 128,
                 p_dropout: float = 0.167):
        super().__init__()

        def block(c_in):
            return [nn.Conv2d(c_in, n_conv, kernel_size=(4, 8), stride=(2, 4)), nn.LeakyReLU(),
                    nn.Dropout(p_dropout), nn.BatchNorm2d(n_conv)]

        self.head = nn.Sequential(*block(1), *block(n_conv), *block(n_conv),
                                  nn.Conv2d(n_conv, 8, kernel_size=1), nn.LeakyReLU(), nn.BatchNorm2d(8))
        with torch.no_grad():
            emb = self.head.eval()(torch.zeros(1, 1, n_mfcc, n_frames)).numel()
        self.head.train()
        self.tail = nn.Sequential(nn.Linear(emb, n_mlp), nn.LeakyReLU(), nn.Linear(n_mlp, 2),
                                  nn.LeakyReLU(), nn.LogSoftmax(dim=1))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """MFCC `[batch, n_mfcc, frames]` -> log-probabilities `[batch, 2]` (index 1 = like)."""
        return self.tail(self.head(feats.unsqueeze(1)).flatten(1))


class LeanCritic(nn.Module):
    def __init__(self, n_mfcc: int = 20, frames_per_step: int = 4, width: int = 32, hidden: int = 64,
                 p_dropout: float = 0.2, n_mels: int = 40, bands: int = 10, n_steps: int = 16,
                 n_groups: int = 0, n_rows: int = 4, head_clip: float = 0.0, step_width: int = 0,
                 step_layers: int = 0):
        super().__init__()
        self.head_clip = head_clip
        self.n_groups = n_groups
        if n_mels % bands:
            raise ValueError(f"n_mels {n_mels} is not a multiple of bands {bands}")
        self.frames_per_step, self.bands, self.n_steps = frames_per_step, bands, n_steps
        self.register_buffer("feat_mean", torch.zeros(n_mfcc, 1))
        self.register_buffer("feat_std", torch.ones(n_mfcc, 1))
        # MFCC -> smoothed log-mel: the transpose of the orthonormal DCT-II (fixed, not learned)
        self.register_buffer("idct", dct_matrix(n_mels, n_mfcc).T.contiguous())
        self.register_buffer("onset_mean", torch.zeros(2 * bands, 1))
        self.register_buffer("onset_std", torch.ones(2 * bands, 1))
        inner = step_width or width
        self.per_step = nn.Conv1d(n_mfcc, inner, kernel_size=frames_per_step, stride=frames_per_step)
        self.onset = nn.Conv1d(2 * bands, inner, kernel_size=1)
        # A small MLP per step, wider than the embedding: 4 rows sounding at once (a quiet hit under a
        # loud one) are told apart better than by one layer (hearing r 0.72 -> 0.78, docs/learning.md)
        self.step_layers = nn.ModuleList(nn.Conv1d(inner, inner, kernel_size=1) for _ in range(step_layers))
        self.step_out = nn.Conv1d(inner, width, kernel_size=1) if inner != width else None
        self.across = nn.Conv1d(width, width, kernel_size=3, padding=1, padding_mode="circular")
        self.drop = nn.Dropout(p_dropout)
        # Hearing: which kind of drum (GM role group) starts on which step, and how many rows hit
        # on each step (0..n_rows: how busy it is). Learnt before any rating from random loops
        # whose content the learner knows (see train_hearing).
        self.roles = nn.Conv1d(width, n_groups, kernel_size=1) if n_groups else None
        self.counts = nn.Conv1d(width, n_rows + 1, kernel_size=1) if n_groups else None
        if n_groups:
            head_in = n_groups * len(METRIC_POSITIONS) + 1 + n_steps + 1 + width
            # What the like head sees is standardized over random loops of the kit (calibrate_head)
            self.register_buffer("head_mean", torch.zeros(head_in))
            self.register_buffer("head_std", torch.ones(head_in))
        else:
            head_in = width * n_steps + width
        # hidden 0: a logistic regression on what the trunk hears (fewer ways to overfit 50 ratings)
        self.mlp = (nn.Sequential(nn.Linear(head_in, hidden), nn.LeakyReLU(), nn.Linear(hidden, 2)) if hidden
                    else nn.Sequential(nn.Linear(head_in, 2)))
        if n_groups and not hidden:
            # No taste before the first rating: P(like) = 0.5 for every loop, not a random preference
            nn.init.zeros_(self.mlp[0].weight)
            nn.init.zeros_(self.mlp[0].bias)

    def trunk(self, feats: torch.Tensor) -> torch.Tensor:
        """MFCC -> one embedding per step `[batch, width, n_steps]`."""
        x = (feats - self.feat_mean) / self.feat_std
        onsets = (self.step_spectra(feats) - self.onset_mean) / self.onset_std
        steps = F.leaky_relu(self.per_step(x) + self.onset(onsets))
        for layer in self.step_layers:
            steps = steps + F.leaky_relu(layer(steps))
        if self.step_out is not None:
            steps = F.leaky_relu(self.step_out(steps))
        return steps + F.leaky_relu(self.across(steps))

    def role_logits(self, feats: torch.Tensor) -> torch.Tensor:
        """Hit logits per role group and step `[batch, n_groups, n_steps]`."""
        return self.roles(self.trunk(feats))

    def rating_parameters(self):
        """What ratings train: the like head only once hearing is learnt (50 ratings would
        otherwise wash out what thousands of known loops taught), else everything."""
        return self.mlp.parameters() if self.roles is not None else self.parameters()

    def step_spectra(self, feats: torch.Tensor) -> torch.Tensor:
        """MFCC `[batch, n_mfcc, frames]` -> per step: onset rise and level in `bands` log-mel bands,
        `[batch, 2 * bands, n_steps]`."""
        mel = torch.matmul(self.idct, feats)  # [batch, n_mels, frames]
        batch, n_mels, frames = mel.shape
        mel = mel.reshape(batch, self.bands, n_mels // self.bands, frames).mean(dim=2)
        per = mel.reshape(batch, self.bands, self.n_steps, self.frames_per_step)
        before = torch.roll(per[..., -1], shifts=1, dims=2)  # the previous step's last frame (circular)
        rise = F.relu(per[..., 0] - before)
        level = per[..., : max(1, self.frames_per_step // 2)].mean(dim=-1)
        return torch.cat([rise, level], dim=1)

    def calibrate(self, feats: torch.Tensor) -> None:
        """Fix the input scaling from MFCCs of random loops `[batch, n_mfcc, frames]` (not learned)."""
        self.feat_mean.copy_(feats.mean(dim=(0, 2))[:, None])
        self.feat_std.copy_(feats.std(dim=(0, 2))[:, None].clamp(min=1e-3))
        spectra = self.step_spectra(feats)
        self.onset_mean.copy_(spectra.mean(dim=(0, 2))[:, None])
        self.onset_std.copy_(spectra.std(dim=(0, 2))[:, None].clamp(min=1e-3))

    def hit_counts(self, steps: torch.Tensor) -> torch.Tensor:
        """Step embeddings `[batch, width, n_steps]` -> expected rows hitting per step `[batch, n_steps]`."""
        probs = F.softmax(self.counts(steps), dim=1)
        return (probs * torch.arange(probs.shape[1], device=probs.device, dtype=probs.dtype)[:, None]).sum(dim=1)

    def heard(self, feats: torch.Tensor) -> torch.Tensor:
        """What the like head of a hearing critic sees, before standardization `[batch, head_in]`:
        per role group, how much of it starts on the beats, backbeats, offbeats, odd 16ths and in
        all; how many hits in all; the expected hits per step; and the mean step embedding (what
        it sounds like). Summaries, not 13 x 16 separate cells: a taste then needs a few weights
        that a few dozen ratings can set (docs/learning.md)."""
        steps = self.trunk(feats)
        where = torch.sigmoid(self.roles(steps))  # [batch, group, step]
        per_position = [where[:, :, list(pos)].sum(dim=2) for pos in METRIC_POSITIONS]
        counts = self.hit_counts(steps)
        return torch.cat(per_position + [where.sum(dim=(1, 2))[:, None], counts, counts.sum(dim=1, keepdim=True),
                                         steps.mean(dim=2)], dim=1)

    def head_input(self, feats: torch.Tensor) -> torch.Tensor:
        """MFCC -> the like head's input `[batch, head_in]`."""
        if self.roles is None:
            steps = self.trunk(feats)
            return torch.cat([steps.flatten(1), steps.mean(dim=2)], dim=1)
        return squash((self.heard(feats) - self.head_mean) / self.head_std, self.head_clip)

    def calibrate_head(self, feats: torch.Tensor, chunk: int = 256) -> None:
        """Fix the like head's input scaling from MFCCs of random loops (after hearing is learnt)."""
        with torch.no_grad():
            heard = torch.cat([self.heard(feats[i:i + chunk]) for i in range(0, len(feats), chunk)])
        self.head_mean.copy_(heard.mean(dim=0))
        self.head_std.copy_(heard.std(dim=0).clamp(min=1e-3))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """MFCC `[batch, n_mfcc, n_steps * frames_per_step]` -> log-probabilities `[batch, 2]`."""
        return F.log_softmax(self.mlp(self.drop(self.head_input(feats))), dim=1)


def squash(x: torch.Tensor, limit: float) -> torch.Tensor:
    """`limit * tanh(x / limit)` (`limit` 0: x as it is): about x within one SD, never past +-limit.

    Why: the search climbs P(like) through the logistic head, and a head fitted on 50 ratings
    extrapolates linearly; unsquashed, the search walks to loops whose heard summaries lie far outside
    anything rated or heard in training, where hearing errs most and the head's claim means least
    (docs/learning.md). Squashed, more of one summary buys ever less, so the search must please the
    taste's other summaries too; the order of loops along one summary is kept."""
    return limit * torch.tanh(x / limit) if limit > 0 else x


# Metrical positions of the 16th grid the hearing critic's like head summarizes: the one and three,
# the backbeat (two and four), the 8th offbeats, the odd 16ths, and all steps.
METRIC_POSITIONS = ((0, 8), (4, 12), (2, 6, 10, 14), tuple(range(1, 16, 2)), tuple(range(16)))


# How much hearing the number of hits per step weighs against hearing which drum is hit: enough
# to make density audible, little enough not to slow the roles down.
COUNT_LOSS_WEIGHT = 0.3

# Role groups the lean critic learns to hear (GM roles with similar function share a group).
ROLE_GROUPS = {"kick": 0, "snare": 1, "clap": 2, "rim": 3, "closed_hat": 4, "pedal_hat": 4, "open_hat": 5,
               "tom_low": 6, "tom_mid": 6, "tom_high": 6, "crash": 7, "ride": 7, "cowbell": 8, "shaker": 9,
               "tambourine": 9, "conga": 10, "clave": 11, "perc": 12}
N_ROLE_GROUPS = 13


def hearing_optimizer(model: LeanCritic, lr: float = 3e-3) -> torch.optim.Optimizer:
    """Adam over everything but the like head (which only ratings train)."""
    return torch.optim.Adam([p for name, p in model.named_parameters() if not name.startswith("mlp.")], lr=lr)


def train_hearing(model: LeanCritic, feats: torch.Tensor, targets: torch.Tensor, counts: torch.Tensor,
                     steps: int, gen: torch.Generator, optimizer: torch.optim.Optimizer, batch: int = 64) -> float:
    """Teach the trunk which role group starts on which step, and how many rows hit on each step,
    from loops the learner made itself.

    feats: MFCC `[n, n_mfcc, frames]`; targets: float `[n, n_groups, n_steps]` (1 where a sample
    of that group is hit); counts: long `[n, n_steps]` (rows hitting) -> mean loss of the last
    steps. No rating is involved; the like head is untouched. Call it repeatedly with the same
    optimizer to train in slices.
    """
    model.train()
    losses = []
    for _ in range(steps):
        pick = torch.randint(0, feats.shape[0], (batch,), generator=gen, device=gen.device)
        heard = model.trunk(feats[pick])
        loss = (F.binary_cross_entropy_with_logits(model.roles(heard), targets[pick])
                + COUNT_LOSS_WEIGHT * F.cross_entropy(model.counts(heard), counts[pick]))
        model.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    tail = losses[-20:] or [float("nan")]
    return sum(tail) / len(tail)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def p_like(model: nn.Module, feats: torch.Tensor) -> torch.Tensor:
    """P(like) `[batch]` from features `[batch, n_mfcc, frames]`; model must be in eval mode."""
    with torch.no_grad():
        return model(feats)[:, 1].exp()


# --- augmentation -------------------------------------------------------------------------------

def augment_audio(audio: torch.Tensor, cfg: CriticConfig, gen: torch.Generator) -> torch.Tensor:
    """The paper's augmentation on audio `[batch, samples]`: gain, DC offset, noise, circular shift."""
    dev = audio.device
    gain = 1.0 + cfg.gain_sd * torch.randn((), generator=gen, device=dev)
    dc = cfg.dc_sd * torch.randn((), generator=gen, device=dev)
    noise = cfg.noise_sd * torch.randn(audio.shape, generator=gen, device=dev)
    shift = int(torch.randint(0, max(cfg.max_shift, 1), (), generator=gen, device=gen.device))
    return torch.roll(audio * gain + dc + noise, shifts=shift, dims=-1)


def augment_features(feats: torch.Tensor, cfg: CriticConfig, gen: torch.Generator) -> torch.Tensor:
    """Cheap equivalents on MFCCs `[batch, n_mfcc, frames]`.

    Gain g adds 20*log10(g) dB to every mel band, which an orthonormal DCT puts in c0 alone
    (times sqrt(n_mels)); noise becomes small noise on the coefficients; a circular shift of
    whole frames is a roll. A DC offset only touches the lowest FFT bin, which the mel bank
    barely weights, so it is left out.
    """
    dev = feats.device
    batch = feats.shape[0]
    gain_db = 20.0 * torch.log10((1.0 + cfg.gain_sd * torch.randn(batch, generator=gen, device=dev)).clamp(min=0.5))
    out = feats.clone()
    out[:, 0, :] += gain_db[:, None] * cfg.spec.n_mels ** 0.5
    out = out + cfg.noise_sd * feats.std() * torch.randn(feats.shape, generator=gen, device=dev)
    if cfg.max_shift > 0:
        shift = int(torch.randint(-cfg.max_shift, cfg.max_shift + 1, (), generator=gen, device=gen.device))
        out = torch.roll(out, shifts=shift, dims=-1)
    return out


# --- online training -----------------------------------------------------------------------------

@dataclass
class Trainer:
    """Online training from ratings. `examples` are what the critic's trainable input is built from:
    features (lean) or audio (paper, re-featurized after augmentation every batch)."""

    config: CriticConfig
    model: nn.Module
    featurize: object  # callable: audio [batch, samples] -> feats
    gen: torch.Generator
    on_audio: bool = False  # examples are audio: augment it, then featurize (the paper's way)
    examples: dict = field(default_factory=dict)  # loop_id -> (tensor, label)
    # The like head's weights the L2 penalty pulls towards (name -> tensor): a session started from
    # another critic (`run --critic`) keeps its taste as the prior a few new ratings move, instead of
    # refitting from nothing on them. None: towards zero.
    anchor: dict | None = None
    steps: int = 0
    losses: deque = field(default_factory=lambda: deque(maxlen=MAX_LOSSES))  # recent mean losses

    def __post_init__(self):
        params = getattr(self.model, "rating_parameters", self.model.parameters)()
        self.optimizer = torch.optim.Adam(params, lr=self.config.lr, weight_decay=self.config.weight_decay)

    def reset_optimizer(self) -> None:
        """A new optimizer over the rating parameters (another profile's taste was loaded: the old
        moments belong to the taste that left)."""
        self.__post_init__()

    def set_example(self, loop_id: int, example: torch.Tensor, label: int | None) -> None:
        """Add or replace (re-rating) or remove (label None: undo) a rated loop. `examples` stays in the
        order the ratings were given (a re-rating moves to the end): recency weighting reads it."""
        self.examples.pop(loop_id, None)
        if label is not None:
            self.examples[loop_id] = (example, int(label))

    def recency(self, n: int, device=None) -> torch.Tensor:
        """Weights of `n` ratings, oldest first: 0.5 ** (age / half_life), age 0 for the newest;
        all ones when half_life is 0."""
        age = torch.arange(n - 1, -1, -1, dtype=torch.float32, device=device)
        if self.config.half_life <= 0:
            return torch.ones(n, device=device)
        return torch.pow(0.5, age / self.config.half_life)

    def ready(self) -> bool:
        labels = {lab for _, lab in self.examples.values()}
        return labels == {0, 1}

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        items = list(self.examples.values())
        recency = self.recency(len(items), self.gen.device)
        good = [x for x, lab in items if lab == 1]
        bad = [x for x, lab in items if lab == 0]
        half = self.config.batch_size // 2
        labels = torch.tensor([lab for _, lab in items], device=self.gen.device)
        if self.config.half_life > 0:  # drawn in proportion to recency
            pick_good = torch.multinomial(recency[labels == 1], half, replacement=True, generator=self.gen).tolist()
            pick_bad = torch.multinomial(recency[labels == 0], half, replacement=True, generator=self.gen).tolist()
        else:
            pick_good = torch.randint(0, len(good), (half,), generator=self.gen, device=self.gen.device).tolist()
            pick_bad = torch.randint(0, len(bad), (half,), generator=self.gen, device=self.gen.device).tolist()
        x = torch.stack([good[i] for i in pick_good] + [bad[i] for i in pick_bad])
        y = torch.tensor([1] * half + [0] * half, device=x.device)
        return x, y

    def train(self, n_batches: int | None = None) -> float | None:
        """Run `n_batches` (default: config.batches_per_rating); mean loss, or None if not ready."""
        if not self.ready():
            return None
        if self.config.fit == "full":
            return self.fit_head(n_batches or 1)
        n = self.config.batches_per_rating if n_batches is None else n_batches
        self.model.train()
        total = 0.0
        for _ in range(n):
            x, y = self._batch()
            if self.on_audio:
                feats = self.featurize(augment_audio(x, self.config, self.gen))
            else:
                feats = augment_features(x, self.config, self.gen)
            logp = self.model(feats)
            loss = F.nll_loss(logp, y)
            eps = self.config.label_smoothing
            if eps > 0:
                loss = (1.0 - eps) * loss - eps * logp.mean(dim=1).mean()
            self.model.zero_grad(set_to_none=True)  # also the frozen trunk's, or they pile up
            loss.backward()
            self.optimizer.step()
            total += float(loss.detach())
            self.steps += 1
        self.model.eval()
        mean = total / max(n, 1)
        self.losses.append(mean)
        return mean


    def fit_head(self, rounds: int = 1) -> float:
        """Fit the like head on every rating at once (L-BFGS, warm-started), on what the frozen trunk
        hears: converged each time, deterministic, and a few milliseconds for a few hundred ratings.
        Each class weighs half (a performer who dislikes most loops still teaches what they like),
        targets are label-smoothed and the weights L2-penalized. Returns the final loss."""
        items = list(self.examples.values())
        with torch.no_grad():
            x = torch.cat([self.model.head_input(torch.stack([f for f, _ in items[i:i + 256]]))
                           for i in range(0, len(items), 256)])
        y = torch.tensor([lab for _, lab in items], device=x.device)
        # Each class weighs half (by count), times each rating's recency (mean 1). Recency is not
        # normalized within a class: a class whose ratings are all old (the likes of a taste the
        # performer left) fades with them instead of keeping half of the fit (docs/learning.md)
        pos = float(y.float().mean())
        recency = self.recency(len(items), x.device)
        weight = torch.where(y == 1, 0.5 / pos, 0.5 / (1.0 - pos)) * recency / recency.mean()
        eps = self.config.label_smoothing
        target = torch.stack([1.0 - y.float(), y.float()], dim=1) * (1.0 - eps) + eps / 2
        head = self.model.mlp
        params = list(head.parameters())
        # More rounds owed (a backlog of ratings) buy a few more iterations, not unbounded ones
        optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=self.config.fit_iters * min(rounds, 4),
                                      line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad(set_to_none=True)
            logp = F.log_softmax(head(x), dim=1)
            loss = (weight * -(target * logp).sum(dim=1)).mean()
            anchor = self.anchor or {}
            loss = loss + self.config.head_l2 * sum((w - anchor[n] if n in anchor else w).square().sum()
                                                    for n, w in head.named_parameters() if n.endswith("weight"))
            loss.backward()
            return loss

        self.model.eval()
        optimizer.step(closure)
        loss = float(closure().detach())
        self.steps += 1
        self.losses.append(loss)
        return loss


def with_overrides(config: CriticConfig, **kwargs) -> CriticConfig:
    return replace(config, **kwargs)
