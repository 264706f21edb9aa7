"""The REAPER actions (package data `data/reaper/`), run by Debian's Lua with a stand-in for REAPER's
`reaper` table whose ExecProcess really runs the command, against a real daemon over UDP."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deepdrummer_live import paths

from daemon import Daemon, OscClient, free_udp_port

LUA = shutil.which("lua5.4")
STANDIN = Path(__file__).parent / "reaper" / "standin.lua"
ACTIONS = ["Like", "Dislike", "Next", "Undo", "Save"] + [f"{verb} row {r}" for verb in ("Lock", "Unlock")
                                                            for r in range(1, 5)]

pytestmark = pytest.mark.skipif(LUA is None, reason="needs Lua 5.4 (apt-get install lua5.4)")


def installed_scripts(tmp_path: Path, port: int) -> Path:
    """The scripts copied the way a user installs them, with the daemon's port set at the top of
    deepdrummer.lua as the README says (the program itself is left for the script to find)."""
    folder = tmp_path / "REAPER" / "Scripts" / "DeepDrummer"
    shutil.copytree(paths.data_path("reaper"), folder)
    lib = folder / "deepdrummer.lua"
    text, n = re.subn(r"^M\.PORT = \d+", f"M.PORT = {port}", lib.read_text(), flags=re.M)
    assert n == 1, "deepdrummer.lua has no `M.PORT = ...` setting line"
    lib.write_text(text)
    return folder


def user_home(tmp_path: Path) -> Path:
    """A home whose ~/.local/bin has deepdrummer-live (where pipx and pip --user put it)."""
    home = tmp_path / "home"
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".local" / "bin" / "deepdrummer-live").symlink_to(Path(sys.executable).parent / "deepdrummer-live")
    return home


def run_action(folder: Path, name: str, home: Path, *mode_val: int) -> subprocess.CompletedProcess:
    # PATH without the venv: REAPER started from a desktop has no idea of it; the script must search
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    return subprocess.run([LUA, str(STANDIN), str(folder / f"DeepDrummer - {name}.lua"), *map(str, mode_val)],
                          capture_output=True, text=True, timeout=60, env=env)


def test_every_action_is_shipped():
    shipped = {p.name for p in paths.data_path("reaper").glob("*.lua")}
    assert shipped == {"deepdrummer.lua"} | {f"DeepDrummer - {a}.lua" for a in ACTIONS}


def test_actions_rate_skip_undo_save_and_lock_on_a_real_daemon(tmp_path):
    client = OscClient(0)
    d = Daemon(tmp_path / "state", "--notify", f"127.0.0.1:{client.port}")
    client.target = ("127.0.0.1", d.port)
    d.start()
    folder, home = installed_scripts(tmp_path, d.port), user_home(tmp_path)
    try:
        client.drain()  # the start-up probe's /dd/status and the first /dd/loop went to subscribers too
        client.send("/dd/status")
        current = client.expect("/dd/status")[2]

        done = run_action(folder, "Like", home)
        assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr
        assert f'"{home}/.local/bin/deepdrummer-live" send' in done.stderr  # found without PATH
        assert client.expect("/dd/rated") == [current, "like", 1, 0]
        liked_next = client.expect("/dd/loop")[0]

        assert run_action(folder, "Dislike", home).returncode == 0
        assert client.expect("/dd/rated") == [liked_next, "dislike", 1, 1]
        skipped_from = client.expect("/dd/loop")[0]

        assert run_action(folder, "Next", home).returncode == 0
        assert client.expect("/dd/loop")[0] > skipped_from

        assert run_action(folder, "Undo", home).returncode == 0
        assert client.expect("/dd/undone")[1:] == [1, 0]

        assert run_action(folder, "Save", home).returncode == 0
        loop_id, mid, wav = client.expect("/dd/saved")
        assert Path(mid).is_file() and Path(wav).is_file()

        lock = run_action(folder, "Lock row 2", home)
        assert lock.returncode == 0 and lock.stdout == "", lock.stdout
        client.drain()
        client.send("/dd/next")
        locked = client.expect("/dd/loop")
        for _ in range(3):
            client.send("/dd/next")
            following = client.expect("/dd/loop")
            assert following[7:10] == locked[7:10]  # row 2: sample, note, steps
        assert run_action(folder, "Unlock row 2", home).returncode == 0
    finally:
        client.close()
        assert d.stop() == 0, d.output()


def test_failures_are_explained_in_the_console_and_a_cc_release_does_nothing(tmp_path):
    folder, home = installed_scripts(tmp_path, free_udp_port()), user_home(tmp_path)  # no daemon there
    done = run_action(folder, "Like", home)
    assert "DeepDrummer: /dd/like failed (no answer: is deepdrummer-live run going, on port" in done.stdout

    released = run_action(folder, "Like", home, 0, 0)  # a CC button's release: value 0
    assert released.stdout == "" and "ExecProcess" not in released.stderr

    nowhere = run_action(folder, "Like", tmp_path / "empty-home")
    assert "deepdrummer-live not found" in nowhere.stdout
