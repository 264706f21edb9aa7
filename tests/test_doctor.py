"""`doctor`: each check alone, then the whole command as a user runs it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from deepdrummer_live.cli import doctor
from deepdrummer_live.cli.doctor import FAIL, OK, WARN, Check
from deepdrummer_live.loop import LoopRecord

EXE = Path(sys.executable).parent / "deepdrummer-live"


def statuses(checks: list[Check]) -> list[str]:
    return [c.status for c in checks]


def test_busy_osc_port_fails_the_whole_command(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        result = subprocess.run([str(EXE), "doctor", "--state-dir", str(tmp_path / "state"), "--osc-port",
                                 str(port), "--device", "cpu", "--seed", "1"],
                                capture_output=True, text=True, timeout=300)
    lines = result.stdout.splitlines()
    assert result.returncode == 1, result.stdout + result.stderr
    busy = next(i for i, ln in enumerate(lines) if ln.startswith("FAIL  OSC port"))
    assert f"127.0.0.1:{port} is busy" in lines[busy]
    assert lines[busy + 1].strip().startswith("fix:") and "--osc-port" in lines[busy + 1]
    for ln in lines:  # every line is a verdict, a fix, or the summary
        assert ln.split(" ", 1)[0] in ("ok", "warn", "FAIL", "") or ln.startswith("      fix: ") or \
            ln.endswith(" ok"), ln
    for name in ("python-rtmidi", "pyo", "torch device", "kit", "learner", "state dir", "disk"):
        assert any(f"  {name}: " in ln for ln in lines), name
    assert not (tmp_path / "state").exists()  # doctor looks, it does not create


def test_free_port_is_ok():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert statuses(doctor.check_osc_port(port)) == [OK]


def test_exit_status_follows_fails(monkeypatch, capsys):
    args = Namespace()
    monkeypatch.setattr(doctor, "run_checks", lambda a: [Check(OK, "a", "fine"), Check(WARN, "b", "meh", "do x")])
    assert doctor.cmd_doctor(args) == 0
    monkeypatch.setattr(doctor, "run_checks", lambda a: [Check(FAIL, "c", "broken", "do y")])
    assert doctor.cmd_doctor(args) == 1
    out = capsys.readouterr().out
    assert "warn  b: meh\n      fix: do x" in out and "FAIL  c: broken\n      fix: do y" in out


def test_state_dir_checks(tmp_path):
    assert "will be created" in doctor.check_state_dir(tmp_path / "new" / "dir")[0].detail
    d = tmp_path / "open"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    checks = doctor.check_state_dir(d)
    perm = next(c for c in checks if "permissions" in c.detail)
    assert perm.status == WARN and "0755" in perm.detail and f"chmod 700 {d}" in perm.fix
    os.chmod(d, 0o700)
    assert WARN not in statuses(doctor.check_state_dir(d))
    f = tmp_path / "file"
    f.write_text("x")
    assert statuses(doctor.check_state_dir(f)) == [FAIL]


NOBODY = 65534  # root writes anywhere: as root, the check runs as this user, for whom the dir is unwritable


def _unprivileged(fn):
    """(euid, fn()) run as NOBODY in a forked child when this is root (in this process otherwise).

    The child has the parent's imported modules, so it needs no access to the interpreter or the
    checkout (a root-only /root, say); fn's result comes back pickled through a pipe."""
    if os.geteuid() != 0:
        return os.geteuid(), fn()
    import pickle

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            data = pickle.dumps((True, (os.geteuid(), fn())))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the test
            data, code = pickle.dumps((False, repr(exc))), 1
        with os.fdopen(w, "wb") as out:
            out.write(data)
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as got:
        data = got.read()
    os.waitpid(pid, 0)
    ok, value = pickle.loads(data)
    assert ok, f"the unprivileged check failed: {value}"
    return value


def test_unwritable_state_dir_fails():
    """A state dir the user may read but not write: FAIL, "not writable". As root it runs as nobody
    (root writes anywhere); the same dir made writable for that user then passes (the harness itself
    does not fail the check)."""
    import shutil
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="dd-doctor-"))  # under /tmp: a path nobody can reach (pytest's is 0700)
    try:
        os.chmod(top, 0o755)
        d = top / "ro"
        d.mkdir()
        os.chmod(d, 0o555)  # readable and searchable by everyone, writable by no one but root
        euid, checks = _unprivileged(lambda: doctor.check_state_dir(d))
        assert euid != 0
        assert checks[0].status == FAIL and "not writable" in checks[0].detail, checks
        assert not list(d.iterdir())  # and it left nothing behind
        os.chmod(d, 0o777)
        euid, checks = _unprivileged(lambda: doctor.check_state_dir(d))
        assert euid != 0 and checks[0].status == OK and "is writable" in checks[0].detail, checks
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_state_dir_with_a_session_is_described(tmp_path):
    from deepdrummer_live.storage.store import Store

    store = Store(tmp_path)
    loop_id = store.add_loop(LoopRecord.of(kit="k", samples=["a"] * 4, notes=[36] * 4, roles=["kick"] * 4,
                             steps=["x" * 16] * 4, p_like=0.5, mode="explore", tempo=120.0))
    store.add_rating(loop_id, True, 0.5)
    store.close()
    session = next(c for c in doctor.check_state_dir(tmp_path) if c.what == "session")
    assert session.status == OK and "1 loops, 1 ratings" in session.detail


def test_kit_checks(tmp_path):
    checks, kit = doctor.check_kit(str(tmp_path))  # an empty folder
    assert kit is None and statuses(checks) == [FAIL] and str(tmp_path) in checks[0].detail
    t = np.arange(4800) / 48000
    sf.write(tmp_path / "kick_01.wav", (np.sin(2 * np.pi * 60 * t) * np.exp(-t * 30)).astype(np.float32), 48000)
    (tmp_path / "notes.txt").write_text("not audio")
    checks, kit = doctor.check_kit(str(tmp_path))
    assert kit is not None and checks[0].status == OK and "1 samples; kick x1" in checks[0].detail
    assert any(c.status == WARN and "notes.txt" in c.detail for c in checks)
    assert any(c.status == WARN and "only 1 samples" in c.detail for c in checks)


def test_device_checks():
    checks, device = doctor.check_device("cpu")
    assert statuses(checks) == [OK] and str(device) == "cpu"
    checks, device = doctor.check_device("tpu")
    assert device is None and statuses(checks) == [FAIL] and "'tpu'" in checks[0].detail


def test_platform_midi_advice():
    win = doctor.check_midi_systems("win32")
    assert statuses(win) == [WARN] and "loopMIDI" in win[0].fix
    assert statuses(doctor.check_midi_systems("darwin")) == [OK]


def test_rtmidi_apis_are_listed():
    import rtmidi

    check = doctor.check_rtmidi("linux")[0]
    for api in rtmidi.get_compiled_api():
        assert rtmidi.get_api_name(api) in check.detail


def test_jack_midi_writer_is_named(monkeypatch):
    from deepdrummer_live.player import jackmidi

    check = doctor.check_jack_midi_writer()[0]
    assert check.status == OK and "at its frame" in check.detail  # JACK-Client is a dependency
    monkeypatch.setattr(jackmidi, "unavailable", lambda: "JACK-Client is not usable (test)")
    check = doctor.check_jack_midi_writer()[0]
    assert check.status == WARN and "python-rtmidi" in check.detail and "JACK-Client" in check.fix


def test_default_run_prediction():
    # (midi_backend, jack_files, jack_running, pyo_ok, portaudio_ok) -> statuses
    assert statuses(doctor.check_default_run(None, False, False, True, True)) == [OK, OK]
    assert statuses(doctor.check_default_run("alsa", False, False, True, True)) == [OK, OK]
    assert statuses(doctor.check_default_run("jack", True, True, True, False)) == [OK, OK]
    no_card = doctor.check_default_run("alsa", False, False, True, False)
    assert statuses(no_card) == [OK, WARN] and "PortAudio" in no_card[1].detail
    assert statuses(doctor.check_default_run("alsa", True, False, True, True))[1] == WARN  # stale: pyo on JACK
    assert statuses(doctor.check_default_run(None, False, False, False, False)) == [OK, WARN]
    stale = doctor.check_default_run("jack", True, False, True, True)
    assert statuses(stale) == [FAIL] and "/dev/shm/jack*" in stale[0].fix


def test_jack_detection_with_a_real_server(jack_server):
    if doctor.shutil.which("jack_lsp") is None:
        pytest.skip("jack_lsp is not installed (apt-get install jackd2; make test installs it as root)")
    running, how = doctor.ask_jack_server()
    assert running and jack_server in how


def test_jack_detection_without_a_server(monkeypatch):
    if doctor.shutil.which("jack_lsp") is None:
        pytest.skip("jack_lsp is not installed (apt-get install jackd2; make test installs it as root)")
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "ddnoserver-doctor-test")
    running, how = doctor.ask_jack_server()
    assert running is False and "not running" in how
