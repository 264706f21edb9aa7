"""Nothing acknowledged is lost from the library (contract v1.1, "Library files").

A like acknowledged with /dd/rated, or a /dd/save, then an immediate SIGINT: the clean shutdown
writes the files first. A like acknowledged, then kill -9: the next run writes the missing files.
Real daemon subprocesses over real UDP.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

from daemon import Daemon, OscClient, wait_for


def start(state: Path) -> tuple[Daemon, OscClient]:
    client = OscClient(0)
    d = Daemon(state, "--notify", f"127.0.0.1:{client.port}")
    client.target = ("127.0.0.1", d.port)
    d.start()
    return d, client


def library_ids(state: Path) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for f in (state / "library").glob("*-*.*"):
        if not f.name.startswith("."):
            out.setdefault(int(f.name.split("-")[0]), set()).add(f.suffix)
    return out



def test_sigint_right_after_like_and_save_writes_their_files(tmp_path):
    d, c = start(tmp_path)
    try:
        liked = c.expect("/dd/loop")[0]
        c.send("/dd/like")
        assert c.expect("/dd/rated")[:2] == [liked, "like"]
        saved = c.expect("/dd/loop")[0]
        c.send("/dd/save", "keep me")
        c.send("/dd/ping")  # one OSC thread handles messages in order: the pong means the save is queued
        c.expect("/dd/pong")
        # SIGINT at once: the like's and the save's files are still queued, not written.
        assert d.stop(signal.SIGINT) == 0
    finally:
        d.kill9()
        c.close()
    files = library_ids(tmp_path)
    assert {".mid", ".wav"} <= files.get(liked, set()), files
    assert {".mid", ".wav"} <= files.get(saved, set()), files
    assert list((tmp_path / "library").glob(f"{saved:06d}-keep me.*")), "the save keeps its name"


def test_kill9_after_acknowledged_likes_then_restart_writes_the_missing_files(tmp_path):
    d, c = start(tmp_path)
    acked = []
    try:
        for _ in range(3):
            loop_id = c.expect("/dd/loop")[0]
            c.send("/dd/like", loop_id)
            assert c.expect("/dd/rated")[:2] == [loop_id, "like"]
            acked.append(loop_id)
        d.kill9()  # files of the last likes may not be written yet
    finally:
        d.kill9()
        c.close()
    for f in list((tmp_path / "library").glob("*")):  # the worst case: none was written
        shutil.rmtree(f) if f.is_dir() else f.unlink()  # a loop's SFZ samples are a folder
    d, c = start(tmp_path)
    try:
        wait_for(lambda: all({".mid", ".wav"} <= library_ids(tmp_path).get(i, set()) for i in acked),
                 what=f"library files of the acknowledged likes {acked}")
        # Each is written once, not once per restart.
        assert d.stop(signal.SIGINT) == 0
    finally:
        d.kill9()
        c.close()
    before = sorted(p.name for p in (tmp_path / "library").iterdir())
    d, c = start(tmp_path)
    try:
        c.expect("/dd/loop")
        assert d.stop(signal.SIGINT) == 0
    finally:
        d.kill9()
        c.close()
    assert sorted(p.name for p in (tmp_path / "library").iterdir()) == before
