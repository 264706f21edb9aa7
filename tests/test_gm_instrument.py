"""The MIDI output plays a real General MIDI drum instrument: FluidSynth with Debian's GM SoundFont,
a JACK client of its own, connected to the daemon's JACK MIDI port.

FluidSynth's own log says it heard the announced loop hit by hit, all on channel 10 (its percussion
channel). Its audio, recorded by `jack_rec`, is checked step by step against FluidSynth's offline
rendering of the announced steps: every step sounds the same, on the grid within a few ms."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from deepdrummer_live.player.jackd import start_jack_server

from daemon import Daemon, OscClient, wait_for

FLUIDSYNTH = shutil.which("fluidsynth")
JACK_REC = shutil.which("jack_rec")
JACK_LSP = shutil.which("jack_lsp")
JACK_CONNECT = shutil.which("jack_connect")
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")  # Debian: fluid-soundfont-gm
FLUID_ID = "dd-gm-fluid"
BPM = 120.0
BARS = 2  # checked, at 120 BPM: 4 s
# Twice the bars checked (a second chance when the first two bars were disturbed, below), plus the
# time jack_rec and the transport take to start (a busy machine: seconds)
RECORD_S = 13
GRID_TOLERANCE_S = 0.004  # JACK's MIDI period and FluidSynth's block (1.3 ms each), plus one more
SEARCH_S = 0.020  # how far from its grid time a hit is looked for
# No reverb and no chorus, live and in the reference: FluidSynth is the client that missed JACK's
# 1.3 ms cycles on a 2-core VM (jackd's log: "client = dd-gm-fluid was not finished"), and they
# are most of its work per cycle; the drum hits themselves are what is checked
LIGHT = ("-R", "0", "-C", "0")
MATCH = 0.5  # normalised correlation of a step window with the reference (earlier hits still ring in it)

pytestmark = pytest.mark.skipif(
    not (FLUIDSYNTH and JACK_REC and JACK_LSP and JACK_CONNECT and SOUNDFONT.exists()),
    reason="needs fluidsynth, fluid-soundfont-gm and jackd2's jack_rec/jack_lsp/jack_connect "
           "(apt-get install fluidsynth fluid-soundfont-gm jackd2)")


def jack_ports() -> list[str]:
    return subprocess.run([JACK_LSP], capture_output=True, text=True, timeout=10).stdout.splitlines()


@pytest.fixture
def realtime_jack(monkeypatch):
    """A JACK server of this test's own, realtime where allowed: a GM synth's audio timeline is only
    on the wall-clock grid when the server keeps up (docs/timing.md: a non-realtime one overruns)."""
    server = start_jack_server()
    monkeypatch.setenv("JACK_DEFAULT_SERVER", server)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fluidsynth(realtime_jack, tmp_path):
    """FluidSynth as a JACK client (MIDI in, stereo audio out), verbose: it logs each event it plays."""
    log_path = tmp_path / "fluidsynth.log"
    log = open(log_path, "w")
    # stdin stays an open pipe: FluidSynth's shell reads it and would quit at end-of-file
    proc = subprocess.Popen(
        [FLUIDSYNTH, "-v", *LIGHT, "-a", "jack", "-m", "jack", "-r", "48000", "-o", f"audio.jack.id={FLUID_ID}",
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


def fluid_note_ons(log_text: str) -> list[tuple[int, int, int]]:
    """(0-based channel, key, velocity) of every note-on FluidSynth's verbose log reports, in order.

    It logs one line per voice it starts (a stereo drum sample is two), with the note's id. Its
    shell's prompt ("> ", no newline) lands in front of whichever line comes next; when the shell
    started late on a busy machine, that was a mono sample's only line in the middle of the loop.
    """
    out, seen = [], set()
    line = r"^(?:> )*fluidsynth: (?:> )*noteon\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)"
    for ch, key, vel, note_id in re.findall(line, log_text, re.M):
        if note_id not in seen:
            seen.add(note_id)
            out.append((int(ch), int(key), int(vel)))
    return out


def announced_hits(rows, bars: int) -> list[tuple[int, int]]:
    """(song step, GM note) of every hit of `bars` bars of a /dd/loop's rows, in the order a
    player sends them: by step, then by row."""
    n = len(rows[0][2])
    return [(bar * n + k, note) for bar in range(bars) for k in range(n) for _, note, steps in rows
            if steps[k] == "x"]


def render_reference(hits, velocities, tmp_path: Path, sr: int) -> np.ndarray:
    """FluidSynth's offline rendering (`-F`) of a Standard MIDI File with `hits` at their steps
    (channel 10, the player's half-step note length): what the live instrument should sound like."""
    import mido
    import soundfile as sf

    ticks_per_step = 120  # 480 per quarter note
    events = []
    for (step, note), vel in zip(hits, velocities):
        events.append((step * ticks_per_step + ticks_per_step // 2, 0, mido.Message("note_off", channel=9, note=note)))
        events.append((step * ticks_per_step, 1, mido.Message("note_on", channel=9, note=note, velocity=vel)))
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(BPM), time=0)])
    now = 0
    for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(msg.copy(time=tick - now))
        now = tick
    mid = mido.MidiFile(ticks_per_beat=480)
    mid.tracks.append(track)
    mid.save(tmp_path / "reference.mid")
    out = tmp_path / "reference.wav"
    subprocess.run([FLUIDSYNTH, "-ni", "-q", *LIGHT, "-r", str(sr), "-F", str(out), str(SOUNDFONT),
                    str(tmp_path / "reference.mid")], check=True, capture_output=True, timeout=60)
    audio, _ = sf.read(out)
    return audio.mean(axis=1)[: int(now / 480 * 60 / BPM * sr) + sr]  # the notes and 1 s of their tails


def best_lag(a: np.ndarray, b: np.ndarray, lo: int, hi: int) -> tuple[int, float]:
    """The lag in [lo, hi] where b[lag:lag+len(a)] looks most like a, and the normalised correlation there."""
    best = (lo, -1.0)
    na = np.linalg.norm(a)
    for lag in range(lo, hi + 1):
        seg = b[lag:lag + len(a)]
        if len(seg) < len(a):
            break
        c = float(a @ seg) / (na * np.linalg.norm(seg) + 1e-12)
        if c > best[1]:
            best = (lag, c)
    return best


def first_match(a: np.ndarray, b: np.ndarray, threshold: float) -> tuple[int, float]:
    """The first lag where b[lag:lag+len(a)] looks like a (normalised correlation >= threshold),
    refined to the best lag within 10 ms after it; (best lag, its correlation) when none is."""
    dots = np.correlate(b, a, mode="valid")
    energy = np.concatenate([[0.0], np.cumsum(b * b)])
    norms = np.sqrt(energy[len(a):] - energy[:-len(a)]) * np.linalg.norm(a) + 1e-12
    corr = dots / norms
    above = np.flatnonzero(corr >= threshold)
    if not len(above):
        return int(np.argmax(corr)), float(corr.max())
    lo = int(above[0])
    window = corr[lo: lo + int(0.01 * len(a) / 0.05)]  # a is 50 ms long
    return lo + int(np.argmax(window)), float(window.max())


def check_hits(rec: np.ndarray, ref: np.ndarray, steps: list[int], sr: int, onsets: set[int]) -> list[str]:
    """Problems with the live recording against the reference, step by step.

    The reference's first 50 ms (step 0's hits) are found in the recording, where they first
    sound: the transport started at an unknown point of it (and the loop repeats after the bars
    checked). Then each step's 50 ms of the reference, its attack included, is
    looked for within SEARCH_S of its grid time in the recording: found, and, for a step in
    `onsets` (one that starts a hit), within GRID_TOLERANCE_S. A rest step holds only the
    ringing of earlier hits, which can match itself one pitch period away (a tom: about 12 ms),
    so there only the sound is checked, not the lag.
    """
    step_len = int(round(sr * 60.0 / BPM / 4))
    window, search, tol = int(0.05 * sr), int(SEARCH_S * sr), int(GRID_TOLERANCE_S * sr)
    origin, corr = first_match(ref[:window], rec, 0.9)
    if corr < 0.9:
        return [f"the loop's first hits are not in the recording (best match {corr:.2f})"]
    problems = []
    for k in steps:
        start = max(0, k * step_len - tol)
        piece, expected = ref[start: start + window], origin + start
        if expected + window + search > len(rec):
            return problems + [f"the recording ended at step {k}"]
        lag, corr = best_lag(piece, rec, expected - search, expected + search)
        if corr < MATCH:
            problems.append(f"step {k}: the recording does not sound like the announced hits (match {corr:.2f})")
        elif k in onsets and abs(lag - expected) > tol:
            problems.append(f"step {k}: {1000 * (lag - expected) / sr:+.1f} ms off the grid")
    return problems


def check_twice(rec: np.ndarray, ref: np.ndarray, steps: list[int], sr: int, onsets: set[int]) -> list[str]:
    """check_hits, with a second chance on the next BARS bars, where the loop came round again:
    problems only when both are off. Once, under two learning benchmarks beside `make test` on 2
    cores, two steps sounded 12.4 ms late with no overrun logged; a fault of the schedule or of the
    note mapping is in every repeat, and still fails."""
    first = check_hits(rec, ref, steps, sr, onsets)
    if not first:
        return []
    start, _ = first_match(ref[:int(0.05 * sr)], rec, 0.9)
    again = start + int(round(BARS * 4 * 60.0 / BPM * sr)) - int(0.1 * sr)  # 100 ms before the repeat
    second = check_hits(rec[again:], ref, steps, sr, onsets)
    if not second:
        return []
    return [f"bars 1-{BARS}: {p}" for p in first] + [f"bars {BARS + 1}-{2 * BARS}: {p}" for p in second]


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
        client.drain()  # the /dd/loop of the start-up loop: the loop that plays is the last one announced
        client.send("/dd/fotf", 1)  # a kick on every beat: the first onset is step 0 of the loop
        loop = None
        while loop is None or not any(steps[0] == "x" for steps in loop[6::3]):
            client.send("/dd/next")
            loop = client.expect("/dd/loop")
        rows = [loop[4 + 3 * r: 7 + 3 * r] for r in range((len(loop) - 4) // 3)]
        xruns_before = realtime_jack.xruns()
        # A ring buffer for the whole recording: jack_rec's disk thread is not realtime, and on a busy
        # machine its default 16384 frames (0.34 s) overflowed, dropping audio from the recording
        ring = 48000 * (RECORD_S + 2)
        rec = subprocess.Popen([JACK_REC, "-f", str(wav), "-d", str(RECORD_S), "-B", str(ring), f"{FLUID_ID}:left",
                                f"{FLUID_ID}:right"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: any(p.startswith("jackrec:") for p in jack_ports()) or rec.poll() is not None, 10,
                 "jack_rec's ports")
        client.send("/dd/play")
        rec_out, _ = rec.communicate(timeout=RECORD_S + 20)  # it stops by itself after RECORD_S
        client.send("/dd/stop")
        assert rec.returncode == 0, rec_out
        assert "overrun" not in rec_out.lower(), rec_out  # frames dropped: the recording is not what played
        overruns = realtime_jack.xruns() - xruns_before
    finally:
        client.close()
        assert d.stop() == 0, d.output()

    fluidsynth.terminate()  # its log is block-buffered: complete once it has exited
    fluidsynth.wait(10)
    heard = fluid_note_ons(fluidsynth.log_path.read_text())
    assert heard, "FluidSynth played no note"
    assert {ch for ch, _, _ in heard} == {9}, f"note-ons outside channel 10: {heard[:10]}"
    expected = announced_hits(rows, bars=BARS)
    played = [(note, vel) for _, note, vel in heard]
    # what the instrument heard is the announced loop, hit by hit (it plays on while we stop it)
    assert len(played) >= len(expected), f"{len(played)} notes played, {len(expected)} in the recorded bars"
    played = played[:len(expected)]
    diff = next((i for i, ((n, _), (_, m)) in enumerate(zip(played, expected)) if n != m), None)
    around = slice(max(0, (diff or 0) - 4), (diff or 0) + 4)
    assert diff is None, (f"note-on {diff} (step {expected[diff][0]}): FluidSynth played {played[around]}, "
                          f"the loop announced {expected[around]} (step, note)")

    audio, sr = sf.read(wav)
    rec = audio.mean(axis=1)
    assert sr == 48000 and np.abs(rec).max() > 0.02, "the GM instrument's audio is silent"
    ref = render_reference(expected, [vel for _, vel in played], tmp_path, sr)
    steps, onsets = list(range(expected[-1][0] + 1)), {step for step, _ in expected}
    problems = check_hits(rec, ref, steps, sr, onsets) if overruns else check_twice(rec, ref, steps, sr, onsets)
    if problems and overruns:
        # An overrun shifts the audio timeline against the wall clock the daemon sends on,
        # so hits can't be placed on the grid (see docs/timing.md).
        # a timing check fails, never skips (the second chance above was the allowance for a busy machine)
        pytest.fail(f"jackd missed {overruns} cycles during the recording (machine overloaded): {problems[:3]}; "
                    f"jackd: {realtime_jack.xrun_lines()[-4:]}")
    assert not problems, problems


def test_the_grid_check_finds_the_first_bar_and_a_hit_off_the_grid():
    """check_hits on made-up audio: the loop found where it first sounds (not a later repeat), a hit
    6 ms late named, a missing hit named."""
    sr = 48000
    step_len = int(round(sr * 60.0 / BPM / 4))
    rng = np.random.default_rng(3)
    bursts = [rng.standard_normal(int(0.03 * sr)) * np.exp(-np.arange(int(0.03 * sr)) / 300) for _ in range(4)]

    def bars(n_bars: int, late_step: int | None = None, missing: int | None = None) -> np.ndarray:
        out = np.zeros(n_bars * 16 * step_len + sr)
        for k in range(n_bars * 16):
            if k == missing:
                continue
            at = k * step_len + (int(0.006 * sr) if k == late_step else 0)
            out[at: at + len(bursts[0])] += bursts[k % 4]
        return out

    ref = bars(2)
    silence = np.zeros(int(0.7 * sr))
    good = np.concatenate([silence, bars(4)])  # plays on after the two bars checked
    every = set(range(32))
    assert check_hits(good, ref, list(range(32)), sr, every) == []
    late = np.concatenate([silence, bars(4, late_step=5)])
    assert check_hits(late, ref, list(range(32)), sr, every) == ["step 5: +6.0 ms off the grid"]
    # a rest step's lag is not timing (only earlier hits ring there): its sound is checked, not its lag
    assert check_hits(late, ref, list(range(32)), sr, every - {5}) == []
    gone = np.concatenate([silence, bars(4, missing=9)])
    assert [p.split(":")[0] for p in check_hits(gone, ref, list(range(32)), sr, every)] == ["step 9"]
    # a second chance on the next two bars: one disturbed pass is forgiven, a fault in every repeat is not
    assert check_twice(np.concatenate([silence, bars(2, late_step=5), bars(2)]), ref, list(range(32)), sr, every) == []
    assert check_twice(np.concatenate([silence, bars(2, late_step=5), bars(2, late_step=21)]), ref,
                       list(range(32)), sr, every) == ["bars 1-2: step 5: +6.0 ms off the grid",
                                                       "bars 3-4: step 21: +6.0 ms off the grid"]


def test_note_ons_are_read_with_the_shell_prompt_in_front():
    """FluidSynth's log: a stereo sample is two lines of one note, and the shell's prompt may come
    before any line (here the mono clap's only one)."""
    log = ("fluidsynth: noteon\t9\t36\t99\t00000\t1.0\t1.0\t0.0\t0\n"
           "fluidsynth: noteon\t9\t36\t99\t00000\t1.0\t1.0\t0.0\t0\n"
           "> fluidsynth: noteon\t9\t39\t71\t00001\t1.1\t1.1\t0.0\t0\n"
           "fluidsynth: noteoff\t9\t36\t0\t00000\t1.2\t0\n"
           "fluidsynth: > noteon\t9\t42\t14\t00002\t1.3\t1.3\t0.0\t0\n")
    assert fluid_note_ons(log) == [(9, 36, 99), (9, 39, 71), (9, 42, 14)]
