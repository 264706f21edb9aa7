"""`deepdrummer-live report`: PNG plots of a session, read (read-only) from `<state-dir>/state.sqlite`.

Loading (`load_session`) is apart from drawing (one function per picture), so each picture is
testable on a hand-made store. Matplotlib draws off-screen (Agg) and without pyplot's global
state, so the report works over SSH and inside the daemon's process alike.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path

from deepdrummer_live.errors import StateError
from deepdrummer_live.loop import LoopRecord
from deepdrummer_live.paths import default_state_dir
from deepdrummer_live.storage.store import TASTE_META, effective_ratings, loop_rows, open_readonly, profile_column
from deepdrummer_live.surfaces.taste import taste_line
from deepdrummer_live.vocab import DEFAULT_PROFILE

MAX_GRIDS = 24  # liked loops drawn; more would make an unreadable poster
LIKE_COLOR, DISLIKE_COLOR = "#2e9e44", "#c8553d"


@dataclass
class Rated:
    seq: int
    loop_id: int
    liked: bool
    ts: float
    p_like: float  # the critic's P(like) when the loop was proposed
    profile: str = DEFAULT_PROFILE  # the taste profile it was rated in


@dataclass
class SessionData:
    path: Path
    rated: list[Rated] = field(default_factory=list)  # effective ratings, in the order they were given
    loops: dict[int, LoopRecord] = field(default_factory=dict)  # the rated ones
    train: list[tuple[int, float]] = field(default_factory=list)  # (step, loss)
    n_loops: int = 0


def load_session(state_dir: Path, profile: str | None = None) -> SessionData:
    """Read the store without writing to it (a running daemon may hold it open); `profile`: only the
    ratings of that taste profile (None: every rating, each with its profile)."""
    db_path = Path(state_dir).expanduser() / "state.sqlite"
    db = open_readonly(state_dir)
    try:
        try:
            query = (f"SELECT e.seq, e.loop_id, e.rating, e.ts, COALESCE(l.p_like, e.p_like), e.profile "
                     f"FROM ({effective_ratings(profile_column(db))}) e LEFT JOIN loops l ON l.id = e.loop_id "
                     f"ORDER BY e.seq")
            rated = [Rated(s, i, bool(r), ts, float(p or 0.0), str(pr)) for s, i, r, ts, p, pr in db.execute(query)
                     if profile is None or pr == profile]
            rated_ids = {r.loop_id for r in rated}
            # only rated loops are drawn; a long session has thousands
            loops = {row["id"]: LoopRecord.from_store(row) for row in loop_rows(db.execute("SELECT * FROM loops"))
                     if row["id"] in rated_ids}
            train = [(int(s), float(loss)) for s, loss in
                     db.execute("SELECT step, loss FROM train_log WHERE loss IS NOT NULL ORDER BY step, ts")]
            n_loops = db.execute("SELECT COUNT(*) FROM loops").fetchone()[0]
        finally:
            db.close()
    except (sqlite3.Error, ValueError) as exc:  # JSON or a row that is no loop: ValueError
        raise StateError(f"{db_path}: cannot read it ({exc}); is it a deepdrummer-live state file? "
                         f"copy it aside and retry, or point --state-dir elsewhere") from exc
    return SessionData(db_path, rated, loops, train, n_loops)


def load_taste(state_dir: Path) -> dict | None:
    """The taste map the daemon last wrote (store meta TASTE_META), or None (a critic that hears, or none yet)."""
    db = sqlite3.connect(f"file:{Path(state_dir).expanduser() / 'state.sqlite'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (TASTE_META,)).fetchone()
    finally:
        db.close()
    try:
        return json.loads(row[0]) if row else None
    except json.JSONDecodeError:
        print("skipped taste: the stored taste map is unreadable; rate once in `run` to rewrite it", file=sys.stderr)
        return None


def rolling_mean(values: list[float], window: int) -> list[float]:
    """Mean of the last `window` values at each position (shorter at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


# --- pictures -----------------------------------------------------------------------------------

def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=110, layout="constrained")


def plot_like_rate(data: SessionData, path: Path) -> Path:
    liked = [1.0 if r.liked else 0.0 for r in data.rated]
    n = len(liked)
    window = max(3, min(20, n // 4 or 3))
    x = list(range(1, n + 1))
    fig = _figure(8, 3.6)
    ax = fig.add_subplot()
    ax.plot(x, rolling_mean(liked, window), color=LIKE_COLOR, lw=2, label=f"like rate (last {window})")
    ax.plot(x, rolling_mean(liked, n), color="0.45", lw=1, ls="--", label="like rate (all so far)")
    ax.scatter(x, [1.04 if v else -0.04 for v in liked], s=10, marker="|",
               c=[LIKE_COLOR if v else DISLIKE_COLOR for v in liked], label="each rating")
    ax.set(xlabel="rating #", ylabel="fraction liked", ylim=(-0.1, 1.1), xlim=(0.5, n + 0.5),
           title=f"Like rate over the session ({n} ratings, {int(sum(liked))} liked)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.savefig(path)
    return path


def plot_p_like(data: SessionData, path: Path) -> Path:
    """Did the critic rank them right? P(like) at proposal time, split by the performer's verdict."""
    groups = [("liked", [r.p_like for r in data.rated if r.liked], LIKE_COLOR),
              ("disliked", [r.p_like for r in data.rated if not r.liked], DISLIKE_COLOR)]
    fig = _figure(8, 3.6)
    hist, strip = fig.subplots(1, 2, width_ratios=[2, 1])
    bins = [i / 20 for i in range(21)]
    for name, values, color in groups:
        if values:
            hist.hist(values, bins=bins, alpha=0.6, color=color, label=f"{name} ({len(values)})")
    hist.set(xlabel="critic P(like) when proposed", ylabel="loops", xlim=(0, 1),
             title="Critic's P(like) for liked vs disliked loops")
    hist.legend(fontsize=8)
    for i, (_name, values, color) in enumerate(groups):
        jitter = [i + 0.25 * (((k * 0.618) % 1.0) - 0.5) for k in range(len(values))]  # deterministic spread
        strip.scatter(jitter, values, s=12, color=color, alpha=0.8)
        if values:
            mean = sum(values) / len(values)
            strip.plot([i - 0.3, i + 0.3], [mean, mean], color="k", lw=1.5)
    strip.set(xticks=[0, 1], xticklabels=[g[0] for g in groups], ylim=(0, 1), xlim=(-0.6, 1.6),
              ylabel="P(like)", title="each loop (bar = mean)")
    for ax in (hist, strip):
        ax.grid(alpha=0.3)
    fig.savefig(path)
    return path


def plot_loss(data: SessionData, path: Path) -> Path:
    steps = [s for s, _ in data.train]
    losses = [v for _, v in data.train]
    fig = _figure(8, 3.6)
    ax = fig.add_subplot()
    ax.plot(steps, losses, color="0.6", lw=1, marker="." if len(steps) < 50 else None, label="loss")
    if len(losses) >= 5:
        ax.plot(steps, rolling_mean(losses, max(3, len(losses) // 10)), color="#3b6ea8", lw=2, label="smoothed")
    ax.set(xlabel="training step", ylabel="critic loss (BCE)", title=f"Critic training ({len(losses)} logged steps)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.savefig(path)
    return path


def plot_liked_grids(data: SessionData, path: Path) -> Path:
    import numpy as np
    from matplotlib.colors import ListedColormap

    liked = [data.loops[r.loop_id] for r in data.rated if r.liked and r.loop_id in data.loops][-MAX_GRIDS:]
    total = sum(1 for r in data.rated if r.liked)
    cols = min(3, len(liked))
    rows = -(-len(liked) // cols)
    fig = _figure(4.6 * cols, 1.45 * rows + 0.5)
    shown = f"the last {len(liked)} of {total}" if total > len(liked) else f"all {total}"
    fig.suptitle(f"Liked loops ({shown})")
    cmap = ListedColormap(["#f1f1f1", LIKE_COLOR])
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, loop in zip(axes.flat, liked):
        n_steps = max(len(s) for s in loop.steps)
        grid = np.array([[c == "x" for c in s.ljust(n_steps, ".")] for s in loop.steps], dtype=float)
        ax.imshow(grid, cmap=cmap, vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        ax.set_xticks([x - 0.5 for x in range(1, n_steps)], minor=True)
        ax.set_yticks([y - 0.5 for y in range(1, len(loop.steps))], minor=True)
        ax.grid(which="minor", color="white", lw=1)
        for beat in range(4, n_steps, 4):
            ax.axvline(beat - 0.5, color="0.35", lw=1)
        ax.set_xticks(range(0, n_steps, 4), [str(b + 1) for b in range(0, n_steps, 4)], fontsize=7)
        ax.set_yticks(range(len(loop.samples)), [s[-14:] for s in loop.samples], fontsize=7)
        ax.tick_params(which="both", length=0)
        ax.set_title(f"#{loop.id}  P(like) {loop.p_like:.2f}  {loop.mode}", fontsize=8)
    for ax in list(axes.flat)[len(liked):]:
        ax.axis("off")
    fig.savefig(path)
    return path


# --- the command -----------------------------------------------------------------------------------

def write_report(data: SessionData, out: Path) -> tuple[list[Path], list[str]]:
    """(written PNGs, one line per skipped picture saying why)."""
    out.mkdir(parents=True, exist_ok=True)
    written, skipped = [], []
    if data.rated:
        written.append(plot_like_rate(data, out / "report-like-rate.png"))
        written.append(plot_p_like(data, out / "report-p-like.png"))
    else:
        skipped.append("like rate and P(like): no ratings yet (rate loops in `run`: l/d keys or /dd/like)")
    if data.train:
        written.append(plot_loss(data, out / "report-loss.png"))
    else:
        skipped.append("training loss: the critic has not trained yet (it trains after each rating)")
    if any(r.liked for r in data.rated):
        written.append(plot_liked_grids(data, out / "report-liked-loops.png"))
    else:
        skipped.append("liked loops: none liked yet")
    return written, skipped


def cmd_report(args) -> int:
    state_dir = args.state_dir or default_state_dir()
    out = args.out or Path(state_dir).expanduser() / "report"
    import matplotlib

    matplotlib.use("Agg")  # never a window: the report runs over SSH and in CI
    from deepdrummer_live.cli import experiment_report

    if experiment_report.is_experiment(state_dir):  # an experiment's folder: the figures across participants
        written, summary = experiment_report.write_experiment_report(Path(state_dir), Path(out))
        print("\n".join(str(p) for p in written))
        for kind, s in summary.items():
            print(f"phase II {kind}: {s['liked']}/{s['rated']} liked ({s['rate']:.2f}, 95 % {s['ci95'][0]:.2f}-"
                  f"{s['ci95'][1]:.2f})")
        return 0
    profile = getattr(args, "profile", None)  # callers from before taste profiles pass no such flag
    data = load_session(state_dir, profile)
    if profile is not None and not data.rated:
        print(f"no rating in taste profile {profile!r} (see `deepdrummer-live profiles`)", file=sys.stderr)
    written, skipped = write_report(data, Path(out))
    for p in written:
        print(p)
    taste = load_taste(state_dir)
    if taste is not None:  # the critic that reads loops: what it prefers and avoids, and how sure
        path = Path(out) / "report-taste.txt"
        path.write_text(f"taste from {taste.get('ratings', 0)} ratings\n{taste_line(taste, 1000)}\n")
        print(path)
    for name in sorted({r.profile for r in data.rated}):  # which tastes the pictures hold (stdout: the files only)
        mine = [r for r in data.rated if r.profile == name]
        print(f"profile {name}: {len(mine)} ratings, {sum(r.liked for r in mine)} liked", file=sys.stderr)
    for why in skipped:
        print(f"skipped {why}", file=sys.stderr)
    return 0
