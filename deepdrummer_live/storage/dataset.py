"""A session's ratings as a dataset: rows read from a state dir, `ratings.csv` written and read back.

Pure data, no audio and no torch: `cli/dataset.py` renders the audio and writes the files. One
row per rating in effect (a loop's latest rating that was not undone; undone ones are left out),
in the order they were given. Per-row columns (`samples`, `notes`, `roles`, `steps`, `levels`)
are JSON lists with one entry per loop row, so sample names with spaces, commas or `|` survive.
"""

from __future__ import annotations

import csv
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from deepdrummer_live.errors import StateError
from deepdrummer_live.loop import LoopRecord
from deepdrummer_live.storage.store import effective_ratings, loop_rows, open_readonly, profile_column
from deepdrummer_live.vocab import DEFAULT_PROFILE

# Order of the CSV columns; the data card (cli/dataset.py) describes each. The loop's are LoopRecord.csv_cells'.
COLUMNS = ("loop_id", "label", "time", "ts", "kit", "tempo", "n_steps", "meter", "bars", "samples", "notes", "roles",
           "steps", "levels", "p_like", "mode", "participant", "phase", "profile")
LABELS = {1: "like", 0: "dislike"}
KIT_PATH_META = "kit_path"  # meta key where `run` records the kit folder it used


@dataclass
class Rating:
    """One rated loop: what was heard (the loop: rebuildable from its kit, samples, levels, tempo) and the verdict."""

    loop: LoopRecord  # its p_like is the critic's P(like) when the loop was proposed
    label: str  # like | dislike
    ts: float  # unix seconds of the rating
    participant: str = ""
    phase: str = ""  # an experiment's phase the rating belongs to ("1", "2"); empty in a normal session
    profile: str = DEFAULT_PROFILE  # the taste profile that was current when it was rated

    @property
    def liked(self) -> bool:
        return self.label == "like"

    @property
    def time(self) -> str:
        return datetime.fromtimestamp(self.ts, UTC).isoformat(timespec="milliseconds")

    def as_csv(self) -> dict:
        return {**self.loop.csv_cells(), "label": self.label, "time": self.time, "ts": f"{self.ts:.3f}",
                "participant": self.participant, "phase": self.phase, "profile": self.profile}


def read_ratings(state_dir: Path, participant: str = "") -> tuple[list[Rating], dict[str, str]]:
    """(ratings in effect in the order given, the store's meta) from a state dir, read-only:
    a running daemon may hold it open."""
    db = open_readonly(state_dir)
    try:
        effective = effective_ratings(profile_column(db))
        rows = loop_rows(db.execute(f"SELECT e.rating AS rating, e.ts AS ts, e.p_like AS rated_p_like, "
                                    f"e.profile AS profile, l.* FROM ({effective}) e "
                                    f"JOIN loops l ON l.id = e.loop_id ORDER BY e.seq"))
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.Error as exc:
        raise StateError(f"{state_dir}/state.sqlite: cannot read it ({exc}); is it a deepdrummer-live "
                         f"state dir? copy it aside and retry") from exc
    finally:
        db.close()
    out = []
    for row in rows:
        if row["p_like"] is None:  # a loop stored without it: the P(like) the rating recorded
            row["p_like"] = row["rated_p_like"]
        out.append(Rating(LoopRecord.from_store(row), LABELS[int(row["rating"])], float(row["ts"]), participant,
                          profile=str(row["profile"])))
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
                label = row["label"]
                if label not in LABELS.values():
                    raise ValueError(f"label {label!r} is not like|dislike")
                out.append(Rating(LoopRecord.from_csv_cells(row), label, float(row.get("ts") or 0.0),
                                  row.get("participant", ""), row.get("phase", ""),
                                  row.get("profile") or DEFAULT_PROFILE))
            except (ValueError, KeyError, TypeError) as exc:
                raise StateError(f"{path}, line {line}: {exc}; fix or remove that line") from exc
    return out
