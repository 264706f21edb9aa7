"""`report`: PNGs from a state dir; one from the real daemon rated over real OSC, others via Store."""

from __future__ import annotations

import re
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest
from PIL import Image

from deepdrummer_live.cli.main import main
from deepdrummer_live.cli.report import cmd_report, load_session, rolling_mean
from deepdrummer_live.errors import StateError
from deepdrummer_live.loop import LoopRecord
from deepdrummer_live.storage.store import Store

from daemon import Daemon, OscClient, wait_train_steps

EXE = Path(sys.executable).parent / "deepdrummer-live"
SAMPLES = ["kick_01", "snare_02", "closed_hat_01", "conga_01"]


def fill_store(state_dir: Path, n: int = 12, train: int = 20) -> Store:
    store = Store(state_dir)
    for i in range(n):
        steps = ["x...x...x...x...", "....x.......x...", "x.x.x.x.x.x.x.x.", ("x" if i % 2 else ".") * 16]
        loop_id = store.add_loop(LoopRecord.of(kit="dd-analog", samples=SAMPLES, notes=[36, 38, 42, 63],
                                 roles=["kick", "snare", "closed_hat", "conga"], steps=steps, p_like=i / n,
                                 mode="explore", tempo=120.0))
        store.add_rating(loop_id, i % 3 != 0, i / n)
    store.add_rating(1, True, 0.0)  # re-rating replaces: loop 1 ends liked
    store.undo_last()               # ...and undo takes that back: loop 1 is disliked again
    for step in range(train):
        store.log_train(step * 8, 0.7 / (1 + step))
    return store


def assert_png(path: Path) -> None:
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] > 300 and img.size[1] > 200


def test_load_session_uses_effective_ratings(tmp_path):
    fill_store(tmp_path).close()
    data = load_session(tmp_path)
    assert [r.loop_id for r in data.rated] == list(range(1, 13))
    assert [r.liked for r in data.rated] == [i % 3 != 0 for i in range(12)]
    assert data.rated[4].p_like == pytest.approx(4 / 12)
    assert data.loops[2].samples == SAMPLES and data.loops[2].steps[0] == "x...x...x...x..."
    assert len(data.train) == 20 and data.n_loops == 12


def test_report_writes_valid_pngs(tmp_path, capsys):
    fill_store(tmp_path / "state").close()
    assert cmd_report(Namespace(state_dir=tmp_path / "state", out=tmp_path / "out")) == 0
    printed = capsys.readouterr().out.split()
    names = sorted(Path(p).name for p in printed)
    assert names == ["report-like-rate.png", "report-liked-loops.png", "report-loss.png", "report-p-like.png"]
    for p in printed:
        assert_png(Path(p))


def test_report_default_out_is_inside_the_state_dir(tmp_path, capsys):
    fill_store(tmp_path, n=2, train=0).close()
    assert main(["report", "--state-dir", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert all(Path(p).parent == tmp_path / "report" for p in out.split())
    assert "training loss" in err  # skipped pictures say why


def test_empty_session_writes_nothing_and_says_why(tmp_path, capsys):
    Store(tmp_path).close()
    assert cmd_report(Namespace(state_dir=tmp_path, out=tmp_path / "out")) == 0
    out, err = capsys.readouterr()
    assert out == "" and "no ratings yet" in err


def test_missing_state_dir_is_one_clear_line(tmp_path, capsys):
    with pytest.raises(StateError):
        load_session(tmp_path / "nowhere")
    assert main(["report", "--state-dir", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "nowhere" in err and "state.sqlite" in err and "--state-dir" in err


def test_report_does_not_write_to_the_store(tmp_path):
    fill_store(tmp_path).close()
    before = (tmp_path / "state.sqlite").stat().st_mtime_ns
    cmd_report(Namespace(state_dir=tmp_path, out=tmp_path / "out"))
    assert (tmp_path / "state.sqlite").stat().st_mtime_ns == before


def test_rolling_mean():
    assert rolling_mean([1, 0, 1, 1], 2) == [1.0, 0.5, 0.5, 1.0]
    assert rolling_mean([], 3) == []


# --- from a real session -----------------------------------------------------------------------


def test_report_of_a_real_session_rated_over_osc(tmp_path):
    state = tmp_path / "state"
    client = OscClient(0)
    # the installed console script, subscribed from its start; ready once its first loop came
    daemon = Daemon(state, command=[str(EXE)], client=client).start(timeout=120)
    try:
        current = client.expect("/dd/loop", 0)[0]
        for verdict in ["/dd/like", "/dd/dislike", "/dd/like", "/dd/dislike"]:
            client.send(verdict, current)
            client.expect("/dd/rated", 60, where=lambda a, i=current: a[0] == i)
            # the next loop is current before the next rating
            current = client.expect("/dd/loop", 60, where=lambda a, i=current: a[0] > i)[0]
        wait_train_steps(client, above=0)  # the critic trained on them (its taste map is written with it)
    finally:
        client.close()
        code = daemon.stop()
    assert code == 0, daemon.output()
    out = tmp_path / "report"
    result = subprocess.run([str(EXE), "report", "--state-dir", str(state), "--out", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    paths = [Path(p) for p in result.stdout.split()]
    assert {p.name for p in paths} >= {"report-like-rate.png", "report-p-like.png", "report-liked-loops.png"}
    for p in paths:
        if p.suffix == ".png":
            assert_png(p)
    # the critic that reads loops leaves its taste map: what it learnt from these four ratings, in words
    taste = (out / "report-taste.txt").read_text()
    # (from the ratings the critic had taken in when it last trained: one of each at least)
    assert re.match(r"taste from [234] ratings\n\+ .*\| - ", taste), taste
    data = load_session(state)
    assert [r.liked for r in data.rated] == [True, False, True, False]
