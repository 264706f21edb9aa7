"""The wheel runs anywhere: built from the repo, installed non-editable, run from another folder.

The install is `pip install --no-deps --target DIR`; the venv's dependencies come from PYTHONPATH,
and `python -S` keeps the venv's editable install (a .pth hook) out, so only DIR's copy is imported.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import urllib.request
import zipfile
from pathlib import Path

import pytest

from daemon import REPO, Daemon, OscClient

pytestmark = pytest.mark.slow

SHIPPED = ["deepdrummer_live/data/kits/dd-analog/kit.toml", "deepdrummer_live/data/kits/dd-analog/kick_01.wav",
           "deepdrummer_live/data/kits/dd-digital/kit.toml", "deepdrummer_live/data/controllers/akai-mpd218.toml",
           "deepdrummer_live/data/puredata/deepdrummer.pd", "deepdrummer_live/data/web/index.html",
           "deepdrummer_live/data/web/app.js", "deepdrummer_live/data/web/style.css"]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def pip(*args: str, cwd: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"pip {args[0]} failed: {proc.stdout[-2000:]} {proc.stderr[-2000:]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built from a copy of the repo's sources, installed into a folder of its own."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    shutil.copy(REPO / "pyproject.toml", src)
    shutil.copytree(REPO / "deepdrummer_live", src / "deepdrummer_live",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # the build backend is the venv's setuptools: no index, no network
    pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp / "dist"), str(src), cwd=tmp)
    wheels = list((tmp / "dist").glob("deepdrummer_live-*.whl"))
    assert len(wheels) == 1, wheels
    names = set(zipfile.ZipFile(wheels[0]).namelist())
    assert set(SHIPPED) <= names, f"missing from the wheel: {sorted(set(SHIPPED) - names)}"
    site = tmp / "site"
    pip("install", "--no-deps", "--no-index", "--target", str(site), str(wheels[0]), cwd=tmp)
    return site


def env_for(site: Path, home: Path) -> dict[str, str]:
    deps = sysconfig.get_paths()["purelib"]
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), deps]), "HOME": str(home),
            "XDG_DATA_HOME": str(home / "data"), "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_CACHE_HOME": str(home / "cache"),
            # the install's bytecode was compiled by pip; a rewrite would not be ours, and would
            # hide a real write under the snapshot below
            "PYTHONDONTWRITEBYTECODE": "1"}


def python(site: Path, home: Path, code: str, cwd: Path) -> str:
    proc = subprocess.run([sys.executable, "-S", "-c", code], env=env_for(site, home), cwd=cwd,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip()


def test_installed_wheel_runs_from_another_folder(installed, tmp_path):
    site, home, elsewhere = installed, tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    before = snapshot(site)
    imported = python(site, home, "import deepdrummer_live; print(deepdrummer_live.__file__)", elsewhere)
    assert Path(imported).is_relative_to(site), f"imported {imported}, not the installed copy"
    mapping = python(site, home, "from deepdrummer_live.player.controller import load_mapping; "
                     "m = load_mapping('akai-mpd218'); print(m.path, len(m.bindings))", elsewhere)
    path, n_bindings = mapping.rsplit(" ", 1)
    assert Path(path).is_relative_to(site) and int(n_bindings) > 0

    client = OscClient(0)
    state = tmp_path / "state"
    script = site / "bin" / "deepdrummer-live"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        web_port = s.getsockname()[1]
    daemon = Daemon(state, "--web-port", str(web_port), command=[sys.executable, "-S", str(script)],
                    env=env_for(site, home), cwd=elsewhere, log_path=tmp_path / "daemon.log", client=client)
    try:
        daemon.start(timeout=120)  # ready once its first /dd/loop reached the --notify client
        loop = client.expect("/dd/loop", 0)
        kit_toml = (site / "deepdrummer_live/data/kits/dd-analog/kit.toml").read_text()
        assert all(f'file = "{name}.wav"' in kit_toml for name in loop[4::3]), loop  # the built-in kit
        for path, needle in (("/", b">Like<"), ("/app.js", b"WebSocket")):  # the rating page's package data
            with urllib.request.urlopen(f"http://127.0.0.1:{web_port}{path}", timeout=30) as page:
                assert page.status == 200 and needle in page.read(), path
    finally:
        client.close()
        code = daemon.stop(timeout=60)
    assert code == 0, daemon.output()
    assert (state / "state.sqlite").is_file()
    assert snapshot(site) == before, "something was written into the install"
    assert list(elsewhere.iterdir()) == [], "the daemon wrote into its working folder"
