"""The pytest plugin as a developer gets it: only the wheel (and pytest) installed, the example test file
(docs/examples/test_example.py) copied into an empty folder outside the repository, `pytest` run there.

As in tests/test_wheel.py, the wheel is installed with `pip install --no-deps --target DIR` (no network)
and the environment's dependencies come from PYTHONPATH; `python -S` keeps the environment's editable
install of the repo out, so the plugin can only come from DIR's copy, found by its entry point.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from daemon import REPO

pytestmark = pytest.mark.slow

ENTRY_POINT = "deepdrummer_live.pytest_plugin = deepdrummer_live.pytest_plugin"


def pip(*args: str, cwd: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"pip {args[0]} failed: {proc.stdout[-2000:]} {proc.stderr[-2000:]}"


def test_the_example_passes_with_only_the_wheel_installed(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(REPO / "pyproject.toml", src)
    shutil.copytree(REPO / "deepdrummer_live", src / "deepdrummer_live",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp_path / "dist"), str(src),
        cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("deepdrummer_live-*.whl")
    with zipfile.ZipFile(wheel) as z:
        entry_points = next(z.read(n).decode() for n in z.namelist() if n.endswith(".dist-info/entry_points.txt"))
    assert "[pytest11]" in entry_points and ENTRY_POINT in entry_points, entry_points
    site = tmp_path / "site"
    pip("install", "--no-deps", "--no-index", "--target", str(site), str(wheel), cwd=tmp_path)

    here = tmp_path / "my-tests"  # an empty folder: no conftest, no pytest.ini, no repo above it
    here.mkdir()
    shutil.copy(REPO / "docs" / "examples" / "test_example.py", here)
    home = tmp_path / "home"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), sysconfig.get_paths()["purelib"]]),
           "HOME": str(home), "XDG_DATA_HOME": str(home / "data"), "XDG_CONFIG_HOME": str(home / "config"),
           "XDG_CACHE_HOME": str(home / "cache"), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_PLUGINS", None)  # the plugin must come from the wheel's entry point, nothing else
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    proc = subprocess.run([sys.executable, "-S", "-m", "pytest", "-v", "-p", "no:cacheprovider", "--trace-config",
                           "test_example.py"], cwd=here, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    # registered by its entry point, from the installed copy (pytest --trace-config lists each plugin's file)
    registered = [line for line in proc.stdout.splitlines() if "deepdrummer_live.pytest_plugin" in line]
    assert registered and all(str(site) in line for line in registered), registered
    assert " passed" in proc.stdout.splitlines()[-1] and "failed" not in proc.stdout.splitlines()[-1]
    assert sorted(p.name for p in here.iterdir()) == ["test_example.py"], "the daemons wrote into the test folder"
