"""One loop record (deepdrummer_live/loop.py) and its text forms: OSC, the store, ratings.csv, the player,
the public client; and a state dir from before levels, shapes and profiles still loads."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest

from deepdrummer_live.cli.report import load_session
from deepdrummer_live.client import Levels, Loop, Shape
from deepdrummer_live.learn.simuser import parse_loop
from deepdrummer_live.loop import LoopRecord, LoopRow
from deepdrummer_live.player.protocol import parse_rows
from deepdrummer_live.sound.dynamics import velocity
from deepdrummer_live.storage.dataset import Rating, read_csv, read_ratings, write_csv
from deepdrummer_live.storage.store import Store

ROLES = ["kick", "snare", "closed_hat", "open_hat", "clap", "tom_low", "ride", "perc"]


def five_four() -> LoopRecord:
    """1 row, 1 bar of 5/4 (20 steps)."""
    levels = "9...5...7...3...1..2"
    return LoopRecord.of(id=3, kit="dd-analog", samples=["kick 01|a,b"], notes=[36], roles=["kick"], levels=[levels],
                         tempo=97.5, p_like=0.25, mode="explore", meter="5/4")


def seven_eight() -> LoopRecord:
    """8 rows, 2 bars of 7/8 (28 steps)."""
    levels = ["".join(str(1 + (r + k) % 9) if (r * 3 + k) % (r + 2) == 0 else "." for k in range(28))
              for r in range(8)]
    return LoopRecord.of(id=41, kit="dd-digital", samples=[f"s{r}" for r in range(8)],
                         notes=[36, 38, 42, 46, 39, 45, 51, 76], roles=ROLES, levels=levels, tempo=140.0,
                         p_like=0.8125, mode="good", meter="7/8")


LOOPS = [five_four, seven_eight]


def heard(rec: LoopRecord) -> LoopRecord:
    """What the OSC messages carry of a record: no kit, mode or roles."""
    return replace(rec, kit="", mode="", rows=tuple(replace(r, role="") for r in rec.rows))


@pytest.mark.parametrize("make", LOOPS)
def test_shape_and_rows(make):
    rec = make()
    n_rows, n_steps, bars = {"5/4": (1, 20, 1), "7/8": (8, 28, 2)}[rec.meter]
    assert (len(rec.rows), rec.n_steps, rec.bars, rec.steps_per_bar) == (n_rows, n_steps, bars, n_steps // bars)
    assert rec.shape_problem() is None
    assert rec.steps == ["".join("." if c == "." else "x" for c in lv) for lv in rec.levels]
    assert rec.rows[0].level_values == [0 if c == "." else int(c) for c in rec.levels[0]]


@pytest.mark.parametrize("make", LOOPS)
def test_osc_round_trip(make):
    rec = make()
    loop, levels, shape = rec.loop_args(), rec.levels_args(), rec.shape_args()
    assert loop[:4] == [rec.id, rec.p_like, rec.tempo, rec.n_steps] and len(loop) == 4 + 3 * len(rec.rows)
    assert levels == [rec.id, *rec.levels] and shape == [rec.id, rec.steps_per_bar, rec.bars, rec.meter]
    back = LoopRecord.from_osc(loop, levels, shape)
    assert back == heard(rec)
    assert (back.loop_args(), back.levels_args(), back.shape_args()) == (loop, levels, shape)
    # a simulated user reads the same messages, with its own idea of each row's role
    assert parse_loop(loop, levels, shape).levels == rec.levels
    # the public client decodes them with the same codec
    view = Loop.from_args(loop).with_levels(Levels.from_args(levels)).with_shape(Shape.from_args(shape))
    assert view.record() == back and view.steps_per_bar == rec.steps_per_bar
    # without /dd/levels: every hit at the default level
    assert set("".join(LoopRecord.from_osc(loop).levels)) <= {".", "7"}


def test_osc_messages_that_do_not_fit_are_refused():
    rec = seven_eight()
    with pytest.raises(ValueError, match="3 per row"):
        LoopRecord.from_osc(rec.loop_args()[:-1])
    with pytest.raises(ValueError, match="not for /dd/loop 41"):
        LoopRecord.from_osc(rec.loop_args(), [42, *rec.levels])
    with pytest.raises(ValueError, match="not for /dd/loop 41"):
        LoopRecord.from_osc(rec.loop_args(), rec.levels_args(), [40, 14, 2, "7/8"])
    with pytest.raises(ValueError, match="match steps"):
        LoopRecord.from_osc(rec.loop_args(), [41, *["9" * 28] * 8])


@pytest.mark.parametrize("make", LOOPS)
def test_store_round_trip(make, tmp_path):
    rec = make()
    store = Store(tmp_path)
    try:
        loop_id = store.add_loop(replace(rec, swing=0.25))
        assert loop_id == 1
        assert store.loop(loop_id) == replace(rec, id=loop_id)  # the swing is not stored
        store.add_rating(loop_id, True, 0.5)
        assert store.rated_loops() == [(replace(rec, id=loop_id), 1)]
    finally:
        store.close()


@pytest.mark.parametrize("make", LOOPS)
def test_csv_round_trip(make, tmp_path):
    rec = make()
    rating = Rating(rec, "like", 1234.5, participant="ann", phase="1", profile="verse")
    cells = rating.as_csv()
    assert (cells["tempo"], cells["n_steps"], cells["meter"], cells["bars"]) == (
        f"{rec.tempo:g}", rec.n_steps, rec.meter, rec.bars)
    write_csv([rating], tmp_path / "ratings.csv")
    assert read_csv(tmp_path) == [rating]


def test_state_dir_to_csv_and_back(tmp_path):
    store = Store(tmp_path / "state")
    for i, make in enumerate(LOOPS):
        store.add_rating(store.add_loop(make()), i == 0, 0.5)
    store.close()
    ratings, _ = read_ratings(tmp_path / "state")
    assert [r.loop for r in ratings] == [replace(make(), id=i + 1) for i, make in enumerate(LOOPS)]
    write_csv(ratings, tmp_path / "ratings.csv")
    back = read_csv(tmp_path / "ratings.csv")
    assert [(r.loop, r.label, r.profile) for r in back] == [(r.loop, r.label, r.profile) for r in ratings]
    assert [r.ts for r in back] == pytest.approx([r.ts for r in ratings], abs=1e-3)  # written to the millisecond


@pytest.mark.parametrize("make", LOOPS)
def test_player_rows(make):
    rec = make()
    rows = rec.player_rows()
    assert rows == [{"note": r.note, "steps": r.steps, "levels": r.levels} for r in rec.rows]
    parsed = parse_rows(rows)
    assert [p[0] for p in parsed] == rec.notes
    assert [list(p[2]) for p in parsed] == [[velocity(v) if v else 0 for v in r.level_values] for r in rec.rows]


def test_a_record_needs_one_of_each_per_row():
    with pytest.raises(ValueError, match="one of each per row"):
        LoopRecord.of(samples=["a", "b"], notes=[36], steps=["x...", "x..."])
    with pytest.raises(ValueError, match="match steps"):
        LoopRecord.of(samples=["a"], steps=["x..."], levels=["..9."])
    rec = LoopRecord.of(samples=["a"], steps=["x.x."])
    assert rec.rows == (LoopRow("a", "", 0, "x.x.", "7.7."),)


OLD_SCHEMA = """
CREATE TABLE loops(id INTEGER PRIMARY KEY, created REAL, kit TEXT, samples TEXT,
                   notes TEXT, roles TEXT, grid TEXT, p_like REAL, mode TEXT, bpm REAL);
CREATE TABLE ratings(seq INTEGER PRIMARY KEY AUTOINCREMENT, loop_id INTEGER, rating INTEGER,
                     ts REAL, p_like REAL, undone INTEGER DEFAULT 0);
CREATE TABLE train_log(step INTEGER, ts REAL, loss REAL);
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
"""


def test_an_old_state_dir_loads_read_only_and_migrated(tmp_path):
    """A state dir from before levels, shapes and profiles: the dataset and the report read it as it is
    (read-only, unmigrated), the store migrates it; all read its loops as every hit at the default
    level, one bar of 4/4, its ratings as the default profile's."""
    db = sqlite3.connect(tmp_path / "state.sqlite")
    db.executescript(OLD_SCHEMA)
    grid = "|".join(["x...x...x...x...", "....x.......x..."])
    for i in (1, 2):
        db.execute("INSERT INTO loops VALUES (?, 0, 'dd-analog', '[\"k\",\"s\"]', '[36,38]', '[\"kick\",\"snare\"]', "
                   "?, 0.5, 'explore', 120.0)", (i, grid))
        db.execute("INSERT INTO ratings(loop_id, rating, ts, p_like) VALUES (?, ?, ?, 0.5)", (i, i % 2, float(i)))
    db.commit()
    db.close()
    expected = [LoopRecord.of(id=i, kit="dd-analog", samples=["k", "s"], notes=[36, 38], roles=["kick", "snare"],
                              levels=["7...7...7...7...", "....7.......7..."], tempo=120.0, p_like=0.5,
                              mode="explore") for i in (1, 2)]
    ratings, _ = read_ratings(tmp_path)
    assert [r.loop for r in ratings] == expected and [r.profile for r in ratings] == ["default"] * 2
    data = load_session(tmp_path)
    assert [r.loop_id for r in data.rated] == [1, 2] and list(data.loops.values()) == expected
    assert {c[1] for c in sqlite3.connect(tmp_path / "state.sqlite").execute("PRAGMA table_info(loops)")} == {
        "id", "created", "kit", "samples", "notes", "roles", "grid", "p_like", "mode", "bpm"}  # not migrated
    store = Store(tmp_path)
    try:
        assert [store.loop(i) for i in (1, 2)] == expected
        assert store.rated_loops() == [(expected[0], 1), (expected[1], 0)] and store.totals() == (1, 1)
        assert store.add_loop(expected[0]) == 3
    finally:
        store.close()
