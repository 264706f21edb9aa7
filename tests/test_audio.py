"""audio.py against a real pyo: offline renders compared sample by sample, and a JACK dummy server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid

import numpy as np
import pytest
import soundfile as sf

from deepdrummer_live.errors import UsageError
from deepdrummer_live.player.audio import OFFLINE_LEAD_IN, LoopAudio, offline_bar_starts, render_offline

SR = 48000
# pyo's master gain settles at 1 - 8e-7 (float ramp) and the file is float32: nothing else differs.
ATOL = 1e-5


def _bar(steps: list[str], bpm: float, seed: int) -> np.ndarray:
    """One mixed bar from the project's own mix (render.py), else a synthetic stand-in."""
    step_len = int(round(SR * 60.0 / bpm / 4))
    try:
        from deepdrummer_live.sound.render import render_bar_numpy
        from deepdrummer_live.sound.synth import hat, kick, snare
    except ImportError:  # render/synth not built yet: impulses and a decaying sine do the same job
        t = np.arange(step_len * len(steps[0])) / SR
        bar = 0.5 * np.sin(2 * np.pi * 220 * t) * np.exp(-t * 3)
        bar[:: step_len * 4] = 0.9
        return bar.astype(np.float32)
    rng = np.random.default_rng(seed)
    samples = [kick(rng), snare(rng), hat(rng), hat(rng, decay=0.2)]
    return render_bar_numpy(steps, samples, step_len)


@pytest.fixture(scope="module")
def bars():
    a = _bar(["x...x...x...x...", "....x.......x...", "x.x.x.x.x.x.x.x.", "..............x."], 120, 1)
    b = _bar(["x..x..x...x.....", "....x..x....x...", "xxxxxxxxxxxxxxxx", "......x.......x."], 120, 2)
    c = _bar(["x.....x.x.......", "....x.......x..x", ".x.x.x.x.x.x.x.x", "................"], 127, 3)
    assert len(c) % 64 != 0, "the tempo-change bar should not be a whole number of pyo blocks"
    return a, b, c


def _read(path) -> np.ndarray:
    audio, sr = sf.read(path, dtype="float32", always_2d=False)
    assert sr == SR and audio.ndim == 1
    return audio


def _assert_layout(audio: np.ndarray, played: list[np.ndarray]) -> None:
    """The fixed offline layout: OFFLINE_LEAD_IN zeros, the bars back to back, then zeros."""
    src = np.concatenate(played)
    end = OFFLINE_LEAD_IN + len(src)
    assert len(audio) >= end
    assert not np.any(audio[:OFFLINE_LEAD_IN]), "the lead-in (pyo's fade-in time) must be silent"
    err = np.abs(audio[OFFLINE_LEAD_IN:end] - src)
    worst = int(np.argmax(err))
    assert err[worst] <= ATOL, f"sample {worst} differs by {err[worst]}"
    assert not np.any(audio[end:]), "nothing may play after the last bar"
    starts = offline_bar_starts(played)
    for bar, start in zip(played, starts):
        np.testing.assert_allclose(audio[start:start + len(bar)], bar, atol=ATOL)


def test_render_offline_is_sample_exact(tmp_path, bars):
    a, b, c = bars
    played = [a, b, a, c, a]  # a repeat, and a bar line that falls inside a pyo block (c)
    path = render_offline(played, SR, tmp_path / "out.wav")
    _assert_layout(_read(path), played)
    assert sf.info(str(path)).subtype == "FLOAT"


def test_offline_backend_switches_at_bar_lines(tmp_path, bars):
    a, b, _ = bars
    audio = LoopAudio("offline", sr=SR, out_path=tmp_path / "live.wav")
    audio.start()
    audio.bar_line()  # nothing queued yet: silence, nothing recorded
    audio.queue_bar(a)
    audio.bar_line()
    audio.bar_line()  # a again
    audio.queue_bar(b)
    audio.queue_bar(a)  # replaces the queued b before the bar line
    audio.bar_line()
    audio.queue_bar(b)
    audio.bar_line()
    audio.stop_transport()
    audio.close()
    audio.close()  # idempotent
    _assert_layout(_read(tmp_path / "live.wav"), [a, a, a, b])


def test_bad_arguments_name_the_value_and_fix(tmp_path):
    with pytest.raises(UsageError, match="'alsa'.*jack, portaudio, offline"):
        LoopAudio("alsa")
    with pytest.raises(UsageError, match="out_path"):
        LoopAudio("offline")
    audio = LoopAudio("offline", out_path=tmp_path / "x.wav")
    with pytest.raises(RuntimeError, match="start"):
        audio.bar_line()
    audio.start()
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        audio.queue_bar(np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        audio.queue_bar(np.array([0.0, np.nan], dtype=np.float32))
    audio.close()
    assert not (tmp_path / "x.wav").exists(), "no bar played: no file"
    with pytest.raises(ValueError, match="empty"):
        render_offline([], SR, tmp_path / "y.wav")


# -- JACK -------------------------------------------------------------------------------------
# Each JACK scenario runs in a child process: a crash inside pyo's C code must fail one test, not
# take down the session (and its shared jack_server fixture) with it.

_JACK_SCENARIO = r"""
import json, os, subprocess, sys, time
import numpy as np
from deepdrummer_live.player.audio import LoopAudio
from deepdrummer_live.errors import UsageError

def ports():
    return subprocess.run(["jack_lsp"], capture_output=True, text=True, timeout=10).stdout.split()

client, sr = sys.argv[1], int(sys.argv[2])
audio = LoopAudio("jack", sr=sr, jack_client_name=client)
try:
    audio.start()
except UsageError as exc:
    print(json.dumps({"usage_error": str(exc)}))
    sys.exit(0)
try:
    opened = ports()
    rng = np.random.default_rng(0)
    for i in range(20):  # fresh tables every time: old ones must be freed safely
        audio.queue_bar(rng.uniform(-0.5, 0.5, 2000 + 64 * i).astype(np.float32))
        audio.bar_line()
        time.sleep(0.01)
        if i % 5 == 4:
            audio.stop_transport()
            audio.bar_line()
    desc = audio.description
finally:
    audio.close()
print(json.dumps({"opened": opened, "after_close": ports(), "description": desc}))
"""


def _jack_scenario(client: str, sr: int, env: dict | None = None) -> dict:
    proc = subprocess.run([sys.executable, "-c", _JACK_SCENARIO, client, str(sr)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, f"child exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def jack_name(jack_server):
    """conftest's session JACK dummy server (48 kHz); its name is also in JACK_DEFAULT_SERVER."""
    if shutil.which("jack_lsp") is None:
        pytest.skip("jack_lsp is not installed (Debian: apt install jackd2)")
    return jack_server


def test_jack_backend_opens_ports_and_plays(jack_name):
    client = f"DDtest{uuid.uuid4().hex[:6]}"
    result = _jack_scenario(client, SR, {"JACK_DEFAULT_SERVER": jack_name})
    assert {f"{client}:output_1", f"{client}:output_2"} <= set(result["opened"]), result
    assert jack_name in result["description"]
    assert not any(p.startswith(client + ":") for p in result["after_close"]), "close() leaves no ports"


def test_jack_rate_mismatch_is_a_usage_error(jack_name):
    result = _jack_scenario(f"DDtest{uuid.uuid4().hex[:6]}", 44100, {"JACK_DEFAULT_SERVER": jack_name})
    assert "48000 Hz but bars are rendered at 44100 Hz" in result["usage_error"]


def test_jack_without_server_is_a_usage_error():
    absent = f"absent-{uuid.uuid4().hex[:8]}"
    result = _jack_scenario("DDtest", SR, {"JACK_DEFAULT_SERVER": absent, "JACK_NO_START_SERVER": "1"})
    assert result["usage_error"].startswith(f"audio backend 'jack': cannot connect to JACK server '{absent}'")


_JACK_DIES = r"""
import sys
import numpy as np
from deepdrummer_live.player.audio import AudioLost, LoopAudio

audio = LoopAudio("jack", sr=48000, jack_client_name="DDtestLost")
audio.start()
audio.queue_bar(np.zeros(4800, dtype=np.float32))
audio.bar_line()
print("ready", flush=True)
sys.stdin.readline()  # the test stops jackd here
from deepdrummer_live.testing import wait_for
wait_for(lambda: not audio.alive, 10, "pyo to see its JACK server gone (audio.alive false)", interval=0.05)
try:
    audio.bar_line()
    print("no error")
except AudioLost as exc:
    print("lost:", exc)
finally:
    audio.close()
print("closed")
"""


def test_jack_going_away_is_reported_not_fatal(private_jack_server):
    name, kill, _start_again = private_jack_server
    child = subprocess.Popen([sys.executable, "-c", _JACK_DIES], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "JACK_DEFAULT_SERVER": name})
    try:
        assert child.stdout.readline().strip() == "ready", child.stderr.read()[-2000:]
        kill()
        out, err = child.communicate("go\n", timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
    assert child.returncode == 0, err[-2000:]
    assert f"lost: audio backend 'jack' went away (jack client 'DDtestLost' on server '{name}'" in out, out
    assert out.strip().endswith("closed")
