"""The MIDI output plays a real General MIDI drum instrument: FluidSynth with Debian's GM SoundFont,
a JACK client of its own. Its audio, recorded by `jack_rec`, has drum hits on the steps `/dd/loop`
announced, and FluidSynth heard every note on channel 10 (its percussion channel)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import start_jack_server, stop_jack_server
from daemon import Daemon, OscClient

FLUIDSYNTH = shutil.which("fluidsynth")
JACK_REC = shutil.which("jack_rec")
JACK_LSP = shutil.which("jack_lsp")
JACK_CONNECT = shutil.which("jack_connect")
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")  # Debian: fluid-soundfont-gm
FLUID_ID = "dd-gm-fluid"
BPM = 120.0
RECORD_S = 4  # two bars at 120 BPM
GRID_TOLERANCE_S = 0.015  # onset detection resolution (5 ms hops) plus JACK's MIDI period quantisation

pytestmark = pytest.mark.skipif(
    not (FLUIDSYNTH and JACK_REC and JACK_LSP and JACK_CONNECT and SOUNDFONT.exists()),
    reason="needs fluidsynth, fluid-soundfont-gm and jackd2's jack_rec/jack_lsp/jack_connect "
           "(apt-get install fluidsynth fluid-soundfont-gm jackd2)")


def jack_ports() -> list[str]:
    return subprocess.run([JACK_LSP], capture_output=True, text=True, timeout=10).stdout.splitlines()


def xruns(jackd: subprocess.Popen) -> int:
    jackd.log.seek(0)
    return jackd.log.read().count("XRun")


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def realtime_jack(monkeypatch):
    """A realtime JACK server of this test's own: a GM synth's audio timeline is only on the
    wall-clock grid when the server keeps up (docs/timing.md: the non-realtime one overruns)."""
    name, proc = start_jack_server(realtime=True)
    monkeypatch.setenv("JACK_DEFAULT_SERVER", name)
    try:
        yield proc
    finally:
        stop_jack_server(proc)


@pytest.fixture
def fluidsynth(realtime_jack, tmp_path):
    """FluidSynth as a JACK client (MIDI in, stereo audio out), verbose: it logs each event it plays."""
    log_path = tmp_path / "fluidsynth.log"
    log = open(log_path, "w")
    # stdin stays an open pipe: FluidSynth's shell reads it and would quit at end-of-file
    proc = subprocess.Popen(
        [FLUIDSYNTH, "-v", "-a", "jack", "-m", "jack", "-r", "48000", "-o", f"audio.jack.id={FLUID_ID}",
         "-o", f"midi.jack.id={FLUID_ID}", "-o", "audio.jack.autoconnect=0", str(SOUNDFONT)],
        stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT)
    proc.log_path = log_path
    try:
        wait_for(lambda: f"{FLUID_ID}:left" in jack_ports() or proc.poll() is not None, 30,
                 "FluidSynth's JACK ports")
        assert proc.poll() is None, log_path.read_text()
        yield proc
    finally:
        proc.stdin.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def fluid_note_ons(log_text: str) -> list[tuple[int, int]]:
    """(0-based channel, key) of every note-on FluidSynth's verbose log reports."""
    return [(int(ch), int(key)) for ch, key in re.findall(r"^fluidsynth: noteon\s+(\d+)\s+(\d+)\s", log_text, re.M)]


def onsets(audio: np.ndarray, sr: int) -> np.ndarray:
    """Onset times (s) of a recording: peaks of librosa's spectral-flux onset strength."""
    import librosa

    mono = audio.mean(axis=1).astype(np.float32) if audio.ndim == 2 else audio.astype(np.float32)
    return librosa.onset.onset_detect(y=mono, sr=sr, hop_length=256, units="time", backtrack=False)


def check_grid(times: np.ndarray, hit_steps: set[int], step_s: float, n_steps: int) -> list[str]:
    """Problems with onsets against a loop whose step 0 sounds at times[0]: each onset must fall on a
    step that has a hit, and each hit step of every whole bar recorded must have an onset."""
    problems, matched = [], set()
    t0 = times[0]
    for t in times:
        k = int(round((t - t0) / step_s))
        err = (t - t0) - k * step_s
        if abs(err) > GRID_TOLERANCE_S:
            problems.append(f"onset at {t - t0:.3f} s is {err * 1000:+.1f} ms off the step grid")
        elif k % n_steps not in hit_steps:
            problems.append(f"onset at {t - t0:.3f} s sounds on step {k % n_steps}, a rest in every row")
        matched.add(k)
    whole_bars = int((times[-1] - t0 + step_s) // (n_steps * step_s))
    for k in range(whole_bars * n_steps):
        if k % n_steps in hit_steps and k not in matched:
            problems.append(f"no onset at step {k % n_steps} of bar {k // n_steps} ({k * step_s:.3f} s)")
    return problems


def test_midi_out_plays_a_general_midi_drum_kit_on_the_grid(tmp_path, realtime_jack, fluidsynth):
    import soundfile as sf

    client = OscClient(0)
    d = Daemon(tmp_path / "state", "--notify", f"127.0.0.1:{client.port}", "--tempo", str(BPM),
               "--midi-out", "gm", midi="jack", audio="none")
    client.target = ("127.0.0.1", d.port)
    d.start()
    wav = tmp_path / "fluidsynth.wav"
    try:
        out_port = wait_for(lambda: next((p for p in jack_ports() if p.startswith("DeepDrummer") and "gm" in p), None),
                            10, "the daemon's JACK MIDI output")
        subprocess.run([JACK_CONNECT, out_port, f"{FLUID_ID}:midi_00"], check=True, timeout=10)
        client.send("/dd/fotf", 1)  # a kick on every beat: the first onset is step 0 of the loop
        loop = None
        while loop is None or not any(steps[0] == "x" for steps in loop[6::3]):
            client.send("/dd/next")
            loop = client.expect("/dd/loop")
        rows = [loop[4 + 3 * r: 7 + 3 * r] for r in range((len(loop) - 4) // 3)]
        xruns_before = xruns(realtime_jack)
        rec = subprocess.Popen([JACK_REC, "-f", str(wav), "-d", str(RECORD_S), f"{FLUID_ID}:left",
                                f"{FLUID_ID}:right"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: any(p.startswith("jackrec:") for p in jack_ports()) or rec.poll() is not None, 10,
                 "jack_rec's ports")
        client.send("/dd/play")
        rec_out, _ = rec.communicate(timeout=RECORD_S + 20)  # it stops by itself after RECORD_S
        client.send("/dd/stop")
        assert rec.returncode == 0, rec_out
        overruns = xruns(realtime_jack) - xruns_before
    finally:
        client.close()
        assert d.stop() == 0, d.output()

    heard = fluid_note_ons(fluidsynth.log_path.read_text())
    notes = {note for _, note, steps in rows if "x" in steps}
    assert heard, "FluidSynth played no note"
    assert {ch for ch, _ in heard} == {9}, f"note-ons outside channel 10: {heard[:10]}"
    assert {key for _, key in heard} == notes

    audio, sr = sf.read(wav)
    assert sr == 48000 and np.abs(audio).max() > 0.02, "the GM instrument's audio is silent"
    hit_steps = {k for _, _, steps in rows for k, c in enumerate(steps) if c == "x"}
    times = onsets(audio, sr)
    assert len(times) >= 8, f"only {len(times)} onsets in {RECORD_S} s"
    problems = check_grid(times, hit_steps, 60.0 / BPM / 4, len(rows[0][2]))
    if problems and overruns:
        # An overrun shifts the audio timeline against the wall clock the daemon sends on,
        # so onsets can't be placed on the grid (see docs/timing.md).
        pytest.skip(f"jackd missed {overruns} cycles during the recording (machine overloaded): {problems[:3]}")
    assert not problems, problems
