"""The experiment's report across participants (`report --state-dir` on an experiment's folder).

Like the paper's figures: the like-rate over phase I (ratings pooled across participants in bins,
with 95 % Wilson intervals, and each participant's own curve), and phase II's good vs random
like-rates (pooled with 95 % intervals, and per participant). Each participant's best and worst
loops (liked loops the critic rated highest, disliked ones it rated lowest) are rendered to .wav
beside the figures and listed in `experiment-loops.md`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from deepdrummer_live.errors import StateError
from deepdrummer_live.experiment import PARTICIPANTS_DIR, PLAN_FILE, Plan
from deepdrummer_live.storage.dataset import Rating, read_ratings

Z95 = 1.96
N_BEST = 3
GOOD_COLOR, RANDOM_COLOR = "#2e9e44", "#7a7a7a"


@dataclass
class Participant:
    code: str
    state_dir: Path
    plan: Plan
    phase1: list[Rating]  # in the order given
    phase2: list[tuple[Rating, str]]  # (rating, kind: good|random)
    meta: dict


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float, float]:
    """(rate, low, high): the Wilson score interval of k successes in n trials."""
    if n == 0:
        return float("nan"), 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, max(0.0, centre - half), min(1.0, centre + half)


def is_experiment(state_dir: Path) -> bool:
    return (Path(state_dir).expanduser() / PARTICIPANTS_DIR).is_dir()


def load_participants(root: Path) -> list[Participant]:
    out = []
    for pdir in sorted((Path(root).expanduser() / PARTICIPANTS_DIR).iterdir()):
        if not (pdir / PLAN_FILE).exists():
            continue
        plan = Plan.load(pdir / PLAN_FILE)
        ratings, meta = read_ratings(pdir, plan.participant)
        kinds = {i: k for i, k in plan.items}
        phase1 = [r for r in ratings if r.loop.id not in kinds][: plan.phase1]
        phase2 = [(r, kinds[r.loop.id]) for r in ratings if r.loop.id in kinds]
        out.append(Participant(plan.participant, pdir, plan, phase1, phase2, meta))
    if not out:
        raise StateError(f"{root}/{PARTICIPANTS_DIR} holds no experiment; run `deepdrummer-live experiment "
                         f"--state-dir {root} --participant CODE` first")
    return out


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=110, layout="constrained")


def plot_phase1(people: list[Participant], path: Path) -> Path:
    longest = max(len(p.phase1) for p in people)
    width = max(2, longest // 8)
    fig = _figure(8, 3.8)
    ax = fig.add_subplot()
    xs, rates, lows, highs = [], [], [], []
    for start in range(0, longest, width):
        window = [r.liked for p in people for r in p.phase1[start:start + width]]
        rate, low, high = wilson(sum(window), len(window))
        xs.append(start + min(width, longest - start) / 2 + 0.5)
        rates.append(rate)
        lows.append(low)
        highs.append(high)
    ax.fill_between(xs, lows, highs, color=GOOD_COLOR, alpha=0.2, label="95 % interval (Wilson)")
    ax.plot(xs, rates, color=GOOD_COLOR, lw=2.5, marker="o",
            label=f"all participants, bins of {width} ratings")
    for p in people:
        liked = [float(r.liked) for r in p.phase1]
        k = max(2, width)
        smooth = [sum(liked[max(0, i - k + 1):i + 1]) / len(liked[max(0, i - k + 1):i + 1]) for i in range(len(liked))]
        ax.plot(range(1, len(liked) + 1), smooth, lw=0.8, alpha=0.6, label=f"{p.code} (last {k})")
    ax.set(xlabel="rating # in phase I", ylabel="fraction liked", ylim=(-0.02, 1.02), xlim=(0.5, longest + 0.5),
           title=f"Phase I: like rate while the critic learns ({len(people)} participants)")
    ax.legend(fontsize=7, loc="upper left", ncols=2)
    ax.grid(alpha=0.3)
    fig.savefig(path)
    return path


def plot_phase2(people: list[Participant], path: Path) -> tuple[Path, dict]:
    fig = _figure(8, 3.8)
    pooled_ax, each_ax = fig.subplots(1, 2, width_ratios=[1, 2])
    summary = {}
    for x, (kind, color) in enumerate((("good", GOOD_COLOR), ("random", RANDOM_COLOR))):
        verdicts = [r.liked for p in people for r, k in p.phase2 if k == kind]
        rate, low, high = wilson(sum(verdicts), len(verdicts))
        summary[kind] = {"liked": sum(verdicts), "rated": len(verdicts), "rate": rate, "ci95": [low, high]}
        pooled_ax.bar(x, rate if verdicts else 0, color=color, alpha=0.8)
        pooled_ax.errorbar(x, rate if verdicts else 0, yerr=[[max(0, rate - low)], [max(0, high - rate)]]
                           if verdicts else None, color="k", capsize=6)
        pooled_ax.text(x, 1.02, f"{sum(verdicts)}/{len(verdicts)}", ha="center", fontsize=8)
    pooled_ax.set(xticks=[0, 1], xticklabels=["critic's good", "random"], ylim=(0, 1.1), ylabel="fraction liked",
                  title="Phase II, pooled (95 %)")
    for p in people:
        rates = []
        for kind in ("good", "random"):
            v = [r.liked for r, k in p.phase2 if k == kind]
            rates.append(sum(v) / len(v) if v else float("nan"))
        each_ax.plot([0, 1], rates, marker="o", lw=1.5, label=p.code)
    each_ax.set(xticks=[0, 1], xticklabels=["critic's good", "random"], xlim=(-0.3, 1.3), ylim=(-0.05, 1.05),
                title="Phase II, each participant (blind, shuffled)")
    each_ax.legend(fontsize=7)
    for ax in (pooled_ax, each_ax):
        ax.grid(alpha=0.3)
    fig.savefig(path)
    return path, summary


def best_and_worst(p: Participant, n: int = N_BEST) -> tuple[list[Rating], list[Rating]]:
    """Liked loops the critic rated highest, disliked loops it rated lowest (P(like) when proposed)."""
    rated = p.phase1 + [r for r, _ in p.phase2]
    best = sorted((r for r in rated if r.liked), key=lambda r: -r.loop.p_like)[:n]
    worst = sorted((r for r in rated if not r.liked), key=lambda r: r.loop.p_like)[:n]
    return best, worst


def write_loops(people: list[Participant], out: Path, kit_arg: str | None = None) -> Path:
    """Render each participant's best and worst loops to wav and list them in experiment-loops.md."""
    import soundfile as sf

    from deepdrummer_live.cli.dataset import WAV_SR, render_rating, resolve_session_kit

    lines = ["# The experiment, per participant", "", "| participant | phase I liked (1st half, 2nd half) | "
             "phase II good liked | phase II random liked |", "|---|---|---|---|"]
    for p in people:
        half = len(p.phase1) // 2
        first, second = p.phase1[:half], p.phase1[half:]
        good = [r.liked for r, k in p.phase2 if k == "good"]
        rand = [r.liked for r, k in p.phase2 if k == "random"]
        lines.append(f"| {p.code} | {sum(r.liked for r in first)}/{len(first)}, {sum(r.liked for r in second)}/"
                     f"{len(second)} | {sum(good)}/{len(good)} | {sum(rand)}/{len(rand)} |")
    lines += ["", "# Best and worst loops per participant", "",
              "Best: liked loops the critic gave the highest P(like); worst: disliked ones it gave the lowest.", ""]
    kits: dict = {}
    for p in people:
        best, worst = best_and_worst(p)
        folder = out / p.code
        folder.mkdir(parents=True, exist_ok=True)
        lines += [f"## {p.code}", "", "| | loop | P(like) | rows (sample: steps) | audio |", "|---|---|---|---|---|"]
        for tag, group in (("best", best), ("worst", worst)):
            for rank, r in enumerate(group, start=1):
                key = (p.meta.get("kit_path"), r.loop.kit)
                if key not in kits:
                    kits[key] = resolve_session_kit(kit_arg, p.meta, {r.loop.kit})
                wav = folder / f"{tag}-{rank}-loop{r.loop.id}.wav"
                sf.write(wav, render_rating(kits[key], r), WAV_SR, subtype="PCM_24")
                rows = "<br>".join(f"`{row.sample}`: `{row.levels}`" for row in r.loop.rows)
                lines.append(f"| {tag} {rank} | {r.loop.id} | {r.loop.p_like:.2f} | {rows} | `{wav}` |")
        lines.append("")
    path = out / "experiment-loops.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def write_experiment_report(root: Path, out: Path) -> tuple[list[Path], dict]:
    """(written files, phase II summary) for the experiment under `root`."""
    people = load_participants(root)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if any(p.phase1 for p in people):
        written.append(plot_phase1(people, out / "experiment-phase1-like-rate.png"))
    summary = {}
    if any(p.phase2 for p in people):
        path, summary = plot_phase2(people, out / "experiment-phase2-good-vs-random.png")
        written.append(path)
    written.append(write_loops(people, out))
    written += sorted(out.glob("*/*.wav"))
    return written, summary
