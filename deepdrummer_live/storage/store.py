"""The state dir's durable store: loops and ratings in SQLite, critic checkpoints on disk.

Ratings are committed (WAL, synchronous=FULL: the commit is fsynced) before anyone hears
about them, so an acknowledged rating survives `kill -9` and a power cut. Checkpoints are
written to a temp file, fsynced and renamed over the old one, so a crash leaves either the
old or the new checkpoint, never half of one.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

from deepdrummer_live.errors import StateError
from deepdrummer_live.loop import STORE_COLUMNS, LoopRecord
from deepdrummer_live.vocab import DEFAULT_PROFILE

# loops.grid holds the rows' steps (its name since the first state dirs); loop.LoopRecord reads and writes a row
SCHEMA = """
CREATE TABLE IF NOT EXISTS loops(id INTEGER PRIMARY KEY, created REAL, kit TEXT, samples TEXT,
                                 notes TEXT, roles TEXT, grid TEXT, p_like REAL, mode TEXT, bpm REAL);
CREATE TABLE IF NOT EXISTS ratings(seq INTEGER PRIMARY KEY AUTOINCREMENT, loop_id INTEGER, rating INTEGER,
                                   ts REAL, p_like REAL, undone INTEGER DEFAULT 0);
CREATE TABLE IF NOT EXISTS train_log(step INTEGER, ts REAL, loss REAL);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE INDEX IF NOT EXISTS ratings_loop ON ratings(loop_id);
CREATE TABLE IF NOT EXISTS profiles(name TEXT PRIMARY KEY, created REAL, base TEXT, base_seq INTEGER);
"""
TASTE_META = "taste"  # meta key: the latest taste map (learn/grid.taste_map) as JSON, for `report`
LOOP_COLUMNS = ", ".join(STORE_COLUMNS)


def effective_ratings(profile: str = "profile") -> str:
    """SQL of the ratings in effect, one row per loop and profile: (seq, loop_id, rating, ts, p_like, profile).

    A loop's effective rating in a profile is its latest rating there that was not undone (re-rating
    replaces); profiles are apart: a loop may be liked in one and disliked in another. `profile` is the
    ratings' profile column, or a constant for a state dir from before profiles that is read without
    being migrated (`dataset export`, `report`: read-only)."""
    return f"""
SELECT r.seq, r.loop_id, r.rating, r.ts, r.p_like, {profile} AS profile FROM ratings r
JOIN (SELECT loop_id, {profile} AS p, MAX(seq) AS seq FROM ratings WHERE undone = 0 GROUP BY loop_id, p) last
  ON r.seq = last.seq
"""


EFFECTIVE = effective_ratings()


def loop_rows(cursor: sqlite3.Cursor) -> list[dict]:
    """The rows of a query as dicts by column name (a `loops` row for LoopRecord.from_store)."""
    names = [c[0] for c in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def open_readonly(state_dir: Path) -> sqlite3.Connection:
    """A state dir's database, read-only and unmigrated: a running daemon may hold it open."""
    db_path = Path(state_dir).expanduser() / "state.sqlite"
    if not db_path.exists():
        raise StateError(f"--state-dir {str(state_dir)!r} has no state.sqlite (no session there); "
                         f"pass the folder `deepdrummer-live run --state-dir` used")
    try:
        return sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StateError(f"{db_path}: cannot open it read-only ({exc}); copy the state dir aside and retry") from exc


def profile_column(db: sqlite3.Connection) -> str:
    """What effective_ratings() takes for this database: its profile column, or `default` before profiles."""
    profiled = "profile" in {c[1] for c in db.execute("PRAGMA table_info(ratings)")}
    return "profile" if profiled else f"'{DEFAULT_PROFILE}'"


def _migrate(db: sqlite3.Connection) -> None:
    """Bring an older state dir's tables up to this version (idempotent)."""
    columns = {r[1] for r in db.execute("PRAGMA table_info(loops)")}
    if "levels" not in columns:  # before dynamics: NULL reads as every hit at the default level
        db.execute("ALTER TABLE loops ADD COLUMN levels TEXT")
    if "meter" not in columns:  # before loop shapes: NULL reads as 4/4
        db.execute("ALTER TABLE loops ADD COLUMN meter TEXT")

    columns = {r[1] for r in db.execute("PRAGMA table_info(ratings)")}
    if "profile" not in columns:  # before taste profiles: every rating was the one taste's, now `default`'s
        db.execute(f"ALTER TABLE ratings ADD COLUMN profile TEXT NOT NULL DEFAULT '{DEFAULT_PROFILE}'")
    db.execute("INSERT OR IGNORE INTO profiles(name, created, base, base_seq) VALUES (?, 0, NULL, NULL)",
               (DEFAULT_PROFILE,))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write) -> None:
    """Call write(file) on a temp file beside `path`, fsync it, rename it over `path`, fsync the dir."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:  # disk full, read-only, gone: the old file (if any) stays whole
        try:
            tmp.unlink()
        except OSError:
            pass
        raise StateError(f"cannot write {path} ({exc.strerror or exc}); free disk space or make "
                         f"{path.parent} writable") from exc


class _DbLock:
    """The store's lock. A SQLite failure under it (disk full, read-only dir, I/O error) becomes a
    StateError, so callers answer /dd/error instead of dying, and nothing is acknowledged."""

    def __init__(self):
        self._lock = threading.Lock()

    def __enter__(self):
        self._lock.acquire()
        return self

    def __exit__(self, typ, exc, tb):
        self._lock.release()
        if isinstance(exc, sqlite3.Error):
            raise StateError(f"the state database cannot be written ({exc}); free disk space or make "
                             f"the state dir writable") from exc
        return False


class Store:
    def __init__(self, state_dir: Path):
        self.dir = Path(state_dir).expanduser()
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.dir, 0o700)
            (self.dir / "library").mkdir(exist_ok=True, mode=0o700)
            self.db = sqlite3.connect(self.dir / "state.sqlite", check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
            _migrate(self.db)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"--state-dir {str(self.dir)!r}: cannot use it ({exc}); "
                             f"give a writable folder") from exc
        self.lock = _DbLock()
        self._next_id = (self.db.execute("SELECT MAX(id) FROM loops").fetchone()[0] or 0) + 1

    @property
    def library(self) -> Path:
        return self.dir / "library"

    @property
    def checkpoint_path(self) -> Path:
        return self.dir / "critic.pt"  # the hearing and the `default` profile's taste

    def profile_checkpoint_path(self, profile: str) -> Path:
        """A profile's critic (its taste over the shared hearing); `default`'s is critic.pt."""
        return self.checkpoint_path if profile == DEFAULT_PROFILE else self.dir / "profiles" / profile / "critic.pt"

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def _write(self, sql: str, args=()) -> sqlite3.Cursor:
        with self.lock:
            return self.db.execute(sql, args)

    def add_loop(self, loop: LoopRecord) -> int:
        """Store a loop that is about to become current (its id is not read); returns its new id
        (increasing forever)."""
        values = loop.store_values()
        with self.lock:
            loop_id = self._next_id
            self.db.execute(f"INSERT INTO loops({LOOP_COLUMNS}) VALUES ({', '.join('?' * len(STORE_COLUMNS))})",
                            (loop_id, time.time(), *(values[c] for c in STORE_COLUMNS[2:])))
            self._next_id += 1
        return loop_id

    def loop(self, loop_id: int) -> LoopRecord | None:
        with self.lock:
            rows = loop_rows(self.db.execute(f"SELECT {LOOP_COLUMNS} FROM loops WHERE id = ?", (loop_id,)))
        return LoopRecord.from_store(rows[0]) if rows else None

    def add_rating(self, loop_id: int, liked: bool, p_like: float,
                   profile: str = DEFAULT_PROFILE) -> tuple[int, int]:
        """Commit a rating durably, in `profile`; returns that profile's (total_likes, total_dislikes)."""
        with self.lock:
            self.db.execute("INSERT INTO ratings(loop_id, rating, ts, p_like, profile) VALUES (?,?,?,?,?)",
                            (loop_id, int(liked), time.time(), float(p_like), profile))
        return self.totals(profile)

    def undo_last(self, profile: str = DEFAULT_PROFILE) -> tuple[int, int] | None:
        """Mark the latest rating of `profile` undone; returns (loop_id, rating) or None when none is left."""
        with self.lock:
            row = self.db.execute("SELECT seq, loop_id, rating FROM ratings WHERE undone = 0 AND profile = ? "
                                  "ORDER BY seq DESC LIMIT 1", (profile,)).fetchone()
            if row is None:
                return None
            self.db.execute("UPDATE ratings SET undone = 1 WHERE seq = ?", (row[0],))
        return row[1], row[2]

    def effective_rating(self, loop_id: int, profile: str | None = None) -> int | None:
        """The loop's rating in effect in `profile` (None: in any profile, the latest)."""
        sql, args = f"SELECT rating FROM ({EFFECTIVE}) WHERE loop_id = ?", [loop_id]
        if profile is not None:
            sql, args = sql + " AND profile = ?", args + [profile]
        with self.lock:
            row = self.db.execute(sql + " ORDER BY seq DESC LIMIT 1", args).fetchone()
        return None if row is None else row[0]

    def totals(self, profile: str = DEFAULT_PROFILE) -> tuple[int, int]:
        """(likes, dislikes) in effect in `profile`."""
        with self.lock:
            rows = self.db.execute(f"SELECT rating, COUNT(*) FROM ({EFFECTIVE}) WHERE profile = ? GROUP BY rating",
                                   (profile,)).fetchall()
        counts = dict(rows)
        return counts.get(1, 0), counts.get(0, 0)

    def rated_loops(self) -> list[tuple[LoopRecord, int]]:
        """Every rated loop with its rating in effect (the latest over all profiles), by loop id."""
        with self.lock:
            cols = ", ".join(f"l.{c}" for c in STORE_COLUMNS)
            rows = loop_rows(self.db.execute(f"SELECT {cols}, e.rating AS rating FROM loops l JOIN ({EFFECTIVE}) e "
                                             "ON e.loop_id = l.id ORDER BY l.id, e.seq"))
        latest = {r["id"]: (LoopRecord.from_store(r), r["rating"]) for r in rows}  # by seq: the last one wins
        return list(latest.values())

    # --- taste profiles ------------------------------------------------------------------------------

    def profiles(self) -> list[tuple[str, int]]:
        """(name, ratings in effect) of every profile, in the order they were made (`default` first):
        the order `deepdrummer-live profiles` lists and MIDI Program Change numbers."""
        with self.lock:
            names = [r[0] for r in self.db.execute("SELECT name FROM profiles ORDER BY created, rowid")]
            counts = dict(self.db.execute(f"SELECT profile, COUNT(*) FROM ({EFFECTIVE}) GROUP BY profile"))
        return [(n, counts.get(n, 0)) for n in names]

    def has_profile(self, name: str) -> bool:
        with self.lock:
            return self.db.execute("SELECT 1 FROM profiles WHERE name = ?", (name,)).fetchone() is not None

    def add_profile(self, name: str, base: str | None = None) -> None:
        """Make profile `name` (durable, idempotent). With `base`, it learns from `base`'s ratings in
        effect now as well as from its own (a copy of that taste, which then goes its own way)."""
        with self.lock:
            seq = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM ratings").fetchone()[0] if base else None
            self.db.execute("INSERT OR IGNORE INTO profiles(name, created, base, base_seq) VALUES (?,?,?,?)",
                            (name, time.time(), base, seq))

    def training_ratings(self, profile: str, upto: int | None = None) -> list[tuple[int, int]]:
        """(loop_id, rating) a profile's critic learns from: those of the profile it was copied from
        (in effect when it was copied, recursively), then its own, which win for the same loop."""
        with self.lock:
            row = self.db.execute("SELECT base, base_seq FROM profiles WHERE name = ?", (profile,)).fetchone()
            sql, args = f"SELECT loop_id, rating FROM ({EFFECTIVE}) WHERE profile = ?", [profile]
            if upto is not None:
                sql, args = sql + " AND seq <= ?", args + [upto]
            own = self.db.execute(sql + " ORDER BY seq", args).fetchall()
        merged: dict[int, int] = {}
        if row is not None and row[0] and row[0] != profile:
            base_upto = row[1] if upto is None else min(row[1], upto)
            merged.update(self.training_ratings(row[0], base_upto))
        for loop_id, rating in own:
            merged.pop(loop_id, None)  # re-rated here: its place is now (recency weighting reads the order)
            merged[loop_id] = rating
        return list(merged.items())

    def log_train(self, step: int, loss: float) -> None:
        # Losses are diagnostics: a crash may lose the last few, so no fsync is forced here.
        self._write("INSERT INTO train_log VALUES (?,?,?)", (step, time.time(), float(loss)))

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        with self.lock:
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        self._write("INSERT INTO meta VALUES (?,?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, value))
