"""A session's ratings as a dataset: rows read from a state dir, `ratings.csv` written and read back.

Pure data, no audio and no torch: `cli/dataset.py` renders the audio and writes the files. One
row per rating in effect (a loop's latest rating that was not undone; undone ones are left out),
in the order they were given. Per-row columns (`samples`, `notes`, `roles`, `steps`, `levels`)
are JSON lists with one entry per loop row, so sample names with spaces, commas or `|` survive.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from deepdrummer_live.errors import StateError
from deepdrummer_live.sound.dynamics import check_levels, default_levels
from deepdrummer_live.vocab import DEFAULT_METER, DEFAULT_PROFILE, shape_problem, steps_per_bar

# Order of the CSV columns; the data card (cli/dataset.py) describes each.
COLUMNS = ("loop_id", "label", "time", "ts", "kit", "tempo", "n_steps", "meter", "bars", "samples", "notes", "roles",
           "steps", "levels", "p_like", "mode", "participant", "phase", "profile")
LIST_COLUMNS = ("samples", "notes", "roles", "steps", "levels")
LABELS = {1: "like", 0: "dislike"}
KIT_PATH_META = "kit_path"  # meta key where `run` records the kit folder it used

# The ratings in effect (per profile: a loop may be rated in several), in the order they were given;
# loop columns beside them. `{profile}` is the ratings' profile column, or a constant for an old state dir
# (read-only here: no migration).
EFFECTIVE = """
SELECT r.loop_id, r.rating, r.ts, r.p_like, {profile}, l.*
FROM ratings r
JOIN (SELECT loop_id, {profile} AS p, MAX(seq) AS seq FROM ratings WHERE undone = 0 GROUP BY loop_id, p) last
  ON r.seq = last.seq
JOIN loops l ON l.id = r.loop_id
ORDER BY r.seq
"""


@dataclass
class Rating:
    """One rated loop: what was heard (rebuildable from kit, samples, steps, levels, tempo) and the verdict."""

    loop_id: int
    label: str  # like | dislike
    ts: float  # unix seconds of the rating
    kit: str
    tempo: float
    samples: list[str]
    notes: list[int]
    roles: list[str]
    steps: list[str]
    levels: list[str]
    p_like: float  # the critic's P(like) when the loop was proposed
    mode: str
    participant: str = ""
    phase: str = ""  # an experiment's phase the rating belongs to ("1", "2"); empty in a normal session
    meter: str = DEFAULT_METER  # steps run over every bar of this meter (older datasets: one bar of 4/4)
    profile: str = DEFAULT_PROFILE  # the taste profile that was current when it was rated

    @property
    def bars(self) -> int:
        return max(1, (len(self.steps[0]) if self.steps else 0) // steps_per_bar(self.meter))

    @property
    def liked(self) -> bool:
        return self.label == "like"

    @property
    def time(self) -> str:
        return datetime.fromtimestamp(self.ts, UTC).isoformat(timespec="milliseconds")

    def as_csv(self) -> dict:
        row = {"loop_id": self.loop_id, "label": self.label, "time": self.time, "ts": f"{self.ts:.3f}",
               "kit": self.kit, "tempo": f"{self.tempo:g}", "n_steps": len(self.steps[0]) if self.steps else 0,
               "meter": self.meter, "bars": self.bars,
               "p_like": f"{self.p_like:.4f}", "mode": self.mode, "participant": self.participant,
               "phase": self.phase, "profile": self.profile}
        for col in LIST_COLUMNS:
            row[col] = json.dumps(getattr(self, col))
        return row


def _parse_levels(value, steps: list[str]) -> list[str]:
    """The store's `levels` cell (rows joined by `|`); a loop stored before levels: every hit at the default."""
    return str(value).split("|") if value else default_levels(steps)


def open_readonly(state_dir: Path) -> sqlite3.Connection:
    db_path = Path(state_dir).expanduser() / "state.sqlite"
    if not db_path.exists():
        raise StateError(f"--state-dir {str(state_dir)!r} has no state.sqlite (no session there); "
                         f"pass the folder `deepdrummer-live run --state-dir` used")
    try:
        return sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StateError(f"{db_path}: cannot open it read-only ({exc}); copy the state dir aside and retry") from exc


def read_ratings(state_dir: Path, participant: str = "") -> tuple[list[Rating], dict[str, str]]:
    """(ratings in effect in the order given, the store's meta) from a state dir, read-only:
    a running daemon may hold it open."""
    db = open_readonly(state_dir)
    try:
        columns = [c[1] for c in db.execute("PRAGMA table_info(loops)")]
        profiled = "profile" in {c[1] for c in db.execute("PRAGMA table_info(ratings)")}
        rows = db.execute(EFFECTIVE.format(profile="profile" if profiled else f"'{DEFAULT_PROFILE}'")).fetchall()
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.Error as exc:
        raise StateError(f"{state_dir}/state.sqlite: cannot read it ({exc}); is it a deepdrummer-live "
                         f"state dir? copy it aside and retry") from exc
    finally:
        db.close()
    out = []
    for loop_id, rating, ts, rated_p, profile, *loop in rows:
        rec = dict(zip(columns, loop))
        steps = rec["grid"].split("|")
        p = rec.get("p_like")
        out.append(Rating(int(loop_id), LABELS[int(rating)], float(ts), rec["kit"], float(rec["bpm"]),
                          json.loads(rec["samples"]), [int(n) for n in json.loads(rec["notes"])],
                          json.loads(rec["roles"]), steps, _parse_levels(rec.get("levels"), steps),
                          float(p if p is not None else rated_p or 0.0), rec["mode"] or "", participant,
                          meter=rec.get("meter") or DEFAULT_METER, profile=str(profile)))
    return out, meta


def write_csv(ratings: list[Rating], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for r in ratings:
            writer.writerow(r.as_csv())


def read_csv(path: Path) -> list[Rating]:
    """A `ratings.csv` written by `dataset export` -> ratings (StateError naming the bad line)."""
    path = Path(path)
    if path.is_dir():
        path = path / "ratings.csv"
    if not path.exists():
        raise StateError(f"{path}: no such file; give a folder written by `deepdrummer-live dataset export`")
    out = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"loop_id", "label", "samples", "steps"} - set(reader.fieldnames or ())
        if missing:
            raise StateError(f"{path}: columns {sorted(missing)} missing; it was not written by `dataset export`")
        for line, row in enumerate(reader, start=2):
            try:
                steps = json.loads(row["steps"])
                label = row["label"]
                if label not in LABELS.values():
                    raise ValueError(f"label {label!r} is not like|dislike")
                samples = json.loads(row["samples"])
                levels = json.loads(row["levels"]) if row.get("levels") else default_levels(steps)
                check_levels(steps, levels)
                meter = row.get("meter") or DEFAULT_METER
                problem = shape_problem(meter=meter)
                if problem:
                    raise ValueError(problem)
                if len({len(s) for s in steps}) != 1 or len(steps[0]) % steps_per_bar(meter):
                    raise ValueError(f"steps {steps!r} are not whole bars of {meter} ({steps_per_bar(meter)} steps)")
                out.append(Rating(
                    int(row["loop_id"]), label, float(row.get("ts") or 0.0), row.get("kit", ""),
                    float(row.get("tempo") or 120.0), samples,
                    [int(n) for n in json.loads(row.get("notes") or "[]")],
                    json.loads(row.get("roles") or "[]"), steps,
                    levels,
                    float(row.get("p_like") or 0.0), row.get("mode", ""), row.get("participant", ""),
                    row.get("phase", ""), meter, row.get("profile") or DEFAULT_PROFILE))
            except (ValueError, KeyError, TypeError) as exc:
                raise StateError(f"{path}, line {line}: {exc}; fix or remove that line") from exc
    return out
