"""The daemon end to end over real UDP OSC: the contract's addresses, errors, library, resume."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time

import mido
import pytest
import soundfile as sf
import torch

from deepdrummer_live import __version__
from deepdrummer_live.learn.search import resolve_device

from daemon import CLI, REPO, Daemon, OscClient, free_udp_port, start_with_client, wait_train_steps


@pytest.fixture
def daemon(tmp_path):
    client = OscClient(0)
    d = Daemon(tmp_path / "state", "--notify", f"127.0.0.1:{client.port}")
    client.target = ("127.0.0.1", d.port)
    d.start()
    client.drain()  # the readiness probe's /dd/status replies reach subscribers too
    yield d, client
    client.close()
    assert d.stop() == 0, d.output()


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory):
    """One daemon for the tests that must leave it unchanged anyway (saves a start per case)."""
    client = OscClient(0)
    d = Daemon(tmp_path_factory.mktemp("shared") / "state", "--notify", f"127.0.0.1:{client.port}")
    client.target = ("127.0.0.1", d.port)
    d.start()
    client.drain()
    yield d, client
    client.close()
    assert d.stop() == 0, d.output()


def run_cli(*args, timeout=120, env=None):
    return subprocess.run([*CLI, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env} if env else None)


def test_version():
    out = run_cli("--version")
    assert out.returncode == 0 and __version__ in out.stdout


def check_loop_message(args):
    loop_id, p_like, bpm, n_steps = args[:4]
    assert isinstance(loop_id, int) and 0.0 <= p_like <= 1.0 and bpm == 120.0 and n_steps == 16
    rows = [args[4 + 3 * r: 7 + 3 * r] for r in range(4)]
    assert len(args) == 4 + 3 * 4
    for name, note, steps in rows:
        assert isinstance(name, str) and 35 <= note <= 81 and len(steps) == 16 and set(steps) <= {"x", "."}
    return loop_id, rows


def test_rating_flow_over_osc(daemon):
    d, c = daemon
    c.send("/dd/ping")
    assert c.expect("/dd/pong") == []
    c.send("/dd/status")
    likes, dislikes, current, mode, device, steps = c.expect("/dd/status")
    # --device auto: whatever torch finds here (cuda on a GPU machine)
    assert (likes, dislikes, mode, device) == (0, 0, "explore", str(resolve_device("auto"))) and current >= 1
    c.send("/dd/like")
    assert c.expect("/dd/rated") == [current, "like", 1, 0]
    new_id, _ = check_loop_message(c.expect("/dd/loop"))
    assert new_id > current
    assert c.expect("/dd/saved")[0] == current  # liked loops land in the library
    c.send("/dd/dislike", float(new_id))  # Pd sends ints as floats
    assert c.expect("/dd/rated") == [new_id, "dislike", 1, 1]
    third, _ = check_loop_message(c.expect("/dd/loop"))
    c.send("/dd/like", new_id)  # re-rating replaces
    assert c.expect("/dd/rated") == [new_id, "like", 2, 0]
    c.send("/dd/undo")
    assert c.expect("/dd/undone") == [new_id, 1, 1]
    c.send("/dd/next")
    assert check_loop_message(c.expect("/dd/loop"))[0] > third


@pytest.mark.parametrize("address,args,types", [
    ("/dd/like", [1.5], "f"),
    ("/dd/like", [999999], "i"),
    ("/dd/like", ["3"], "s"),
    ("/dd/like", [1, 2], "ii"),
    ("/dd/tempo", [500.0], "f"),
    ("/dd/tempo", ["fast"], "s"),
    ("/dd/tempo", [], ""),
    ("/dd/mode", ["groovy"], "s"),
    ("/dd/mode", [1], "i"),
    ("/dd/fotf", [2], "i"),
    ("/dd/save", ["../escape"], "s"),
    ("/dd/save", ["a/b"], "s"),
    ("/dd/save", ["x" * 65], "s"),
    ("/dd/save", [""], "s"),
    ("/dd/subscribe", [70000], "i"),
    ("/dd/nope", [], ""),
])
def test_bad_messages_answer_error_and_change_nothing(shared_daemon, address, args, types):
    d, c = shared_daemon
    c.drain()
    c.send("/dd/status")
    before = c.expect("/dd/status")
    c.send(address, *args, types=types or None)
    message, offending = c.expect("/dd/error")
    assert offending == address and message
    c.send("/dd/status")
    assert c.expect("/dd/status") == before  # a barrier: sent after anything the bad message caused
    assert not [m for m in c.received() if m[0] in ("/dd/loop", "/dd/rated", "/dd/saved")]


def test_non_osc_datagrams_are_dropped_not_fatal(shared_daemon):
    d, c = shared_daemon
    for junk in (b"", b"hello", b"/dd/like\x00\x00\x00\x00,i\x00\x00", b"\xff" * 3000, b"#bundle\x00junk"):
        c.send_raw(junk)
    c.send("/dd/ping")
    assert c.expect("/dd/pong") == []


def test_sender_gets_its_replies_without_subscribing(daemon):
    """v1.1: /dd/pong, /dd/status, /dd/error, /dd/rated and /dd/saved reach the sender; /dd/loop does not."""
    d, c = daemon
    stranger = OscClient(d.port)
    try:
        stranger.send("/dd/ping")
        assert stranger.expect("/dd/pong") == []
        stranger.send("/dd/tempo", 10.0)
        assert stranger.expect("/dd/error")[1] == "/dd/tempo"
        stranger.send("/dd/like")
        rated = stranger.expect("/dd/rated")
        assert rated[1] == "like"
        stranger.send("/dd/save")
        # Library files wait behind the critic's first hearing pass: allow for a loaded machine.
        assert stranger.expect("/dd/saved", timeout=60)[0] == c.expect("/dd/saved", timeout=60)[0]
        # The subscriber saw the next loop; the stranger, not subscribed, did not (it would have come
        # before the status reply asked for afterwards, from the same socket).
        next_id = c.expect("/dd/loop")[0]
        assert next_id > rated[0]
        stranger.send("/dd/status")
        assert stranger.expect("/dd/status")[0] == rated[2]
        assert all(addr != "/dd/loop" for addr, _ in stranger.backlog)
        stranger.send("/dd/subscribe")
        stranger.send("/dd/next")
        assert stranger.expect("/dd/loop")[0] == c.expect("/dd/loop")[0]  # c keeps no stale loop for later tests
    finally:
        stranger.close()


def test_save_writes_midi_and_wav(daemon):
    d, c = daemon
    c.send("/dd/tempo", 100)  # int accepted where float expected
    c.send("/dd/next")
    loop = c.expect("/dd/loop")  # proposed after the tempo change
    assert loop[2] == pytest.approx(100.0)
    c.send("/dd/save", "my groove_1")
    loop_id, mid_path, wav_path = c.expect("/dd/saved")
    assert loop_id == loop[0]
    assert mid_path.endswith("my groove_1.mid") and "/library/" in mid_path
    mid = mido.MidiFile(mid_path)
    metas = {m.type: m for m in mid.tracks[0] if m.is_meta}
    assert metas["time_signature"].numerator == 4 and metas["time_signature"].denominator == 4
    assert mido.tempo2bpm(metas["set_tempo"].tempo) == pytest.approx(100.0, abs=0.01)
    notes = [m for m in mid.tracks[0] if m.type == "note_on"]
    assert notes and all(m.channel == 9 for m in notes)
    assert sum(m.time for m in mid.tracks[0]) == 4 * mid.ticks_per_beat  # exactly one bar
    info = sf.info(wav_path)
    assert info.samplerate == 44100 and info.frames > 0


def test_restart_resumes_ratings_and_ids(tmp_path):
    state = tmp_path / "state"
    client = OscClient(0)
    d = Daemon(state, "--notify", f"127.0.0.1:{client.port}")
    client.target = ("127.0.0.1", d.port)
    d.start()
    client.drain()
    ids = []
    for liked in (True, False, True):
        client.send("/dd/like" if liked else "/dd/dislike")
        ids.append(client.expect("/dd/rated")[0])
        client.expect("/dd/loop")
    assert d.stop() == 0
    d2 = Daemon(state, "--notify", f"127.0.0.1:{client.port}", port=d.port)
    d2.start()
    client.drain()
    try:
        client.send("/dd/status")
        likes, dislikes, current, *_ = client.expect("/dd/status")
        assert (likes, dislikes) == (2, 1) and current > max(ids)
        client.send("/dd/dislike", ids[0])  # an old loop can still be re-rated after restart
        assert client.expect("/dd/rated") == [ids[0], "dislike", 1, 2]
    finally:
        assert d2.stop() == 0
        client.close()
    db = sqlite3.connect(state / "state.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert (state.stat().st_mode & 0o777) == 0o700


def test_playing_switches_at_the_bar_line(daemon):
    """The rating's loop comes on a bar line (1 s apart at 240 BPM, from /dd/play), never mid-bar."""
    d, c = daemon
    c.send("/dd/tempo", 240.0)
    c.send("/dd/ping")
    c.expect("/dd/pong")  # the tempo is set
    t_play = time.monotonic()
    c.send("/dd/play")
    # the stimulus: rate in the middle of the first bar (a switch at once would come mid-bar too)
    time.sleep(max(0.0, t_play + 0.5 - time.monotonic()))
    c.send("/dd/like")
    c.expect("/dd/rated", timeout=30)
    c.expect("/dd/loop", timeout=30)
    bars = time.monotonic() - t_play
    assert bars >= 0.75 and abs(bars - round(bars)) < 0.25, f"new loop {bars:.2f} bars after play"
    c.send("/dd/stop")


@pytest.mark.parametrize("flags,needle", [
    (["--tempo", "500"], "--tempo"),
    (["--tempo", "fast"], "--tempo"),
    (["--kit", "/no/such/kit"], "/no/such/kit"),
    (["--device", "cuda"], "--device"),
    (["--device", "tpu"], "tpu"),
    (["--midi-backend", "oss"], "--midi-backend"),
    (["--notify", "nowhere"], "--notify"),
    (["--osc-allow", "10.0.0.0/33"], "--osc-allow"),
    (["--notify", "nosuchhost.invalid:9001"], "--notify nosuchhost.invalid:9001"),
    (["--clock", "midi"], "--midi-in"),
    (["--swing", "0.7"], "--swing 0.7 out of range; use 0-0.5"),
    (["--note-map", "nope"], "--note-map: note map nope: no such map"),
    (["--note-map", "/no/such/map.toml"], "cannot read it"),
])
def test_bad_flags_exit_2_with_one_line(tmp_path, flags, needle):
    # --device cuda where torch sees no GPU: on a machine with one, the daemon is shown none
    env = {"CUDA_VISIBLE_DEVICES": ""} if flags == ["--device", "cuda"] else None
    out = run_cli("run", "--headless", "--state-dir", str(tmp_path), "--osc-port", str(free_udp_port()),
                  "--midi-backend", "none", "--audio", "none", "--web-port", "0", *flags, env=env)
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], out.stderr


def test_audio_asked_for_by_flag_but_unusable_exits_2_with_one_line(tmp_path):
    """The default audio falls back to none with a warning on a machine without any; audio named by a
    flag is a promise, so when it cannot open, `run` ends as for any unusable device."""
    out = run_cli("run", "--headless", "--state-dir", str(tmp_path), "--osc-port", str(free_udp_port()),
                  "--midi-backend", "none", "--audio", "pyo", "--audio-backend", "jack", "--web-port", "0",
                  env={"JACK_DEFAULT_SERVER": "dd-no-such-server", "JACK_NO_START_SERVER": "1"})
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--audio pyo" in lines[0] and "dd-no-such-server" in lines[0], out.stderr


def test_busy_port_exit_2(tmp_path):
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        out = run_cli("run", "--headless", "--state-dir", str(tmp_path), "--osc-port", str(port),
                      "--midi-backend", "none", "--audio", "none", "--web-port", "0")
    assert out.returncode == 2
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(port) in lines[0]


def test_sigint_is_a_clean_shutdown(tmp_path):
    d = Daemon(tmp_path / "s").start()
    assert d.stop(signal.SIGINT) == 0


def test_unusable_midi_system_exit_2_with_one_line(tmp_path):
    import os

    env = {**os.environ, "JACK_DEFAULT_SERVER": "dd-no-such-server", "JACK_NO_START_SERVER": "1"}
    out = subprocess.run([*CLI, "run", "--headless", "--state-dir", str(tmp_path), "--osc-port",
                          str(free_udp_port()), "--midi-backend", "jack", "--audio", "none", "--web-port", "0"],
                         cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 2
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--midi-backend jack" in lines[0], out.stderr


FOTF_KICK = "x...x...x...x..."


def _session_settings(state, *flags: str):
    """Start a daemon on `state`, read mode and train_steps from /dd/status and bpm and the kick row
    from the next /dd/loop, then stop it cleanly."""
    d, client = start_with_client(state, *flags)
    try:
        client.send("/dd/status")
        _, _, _, mode, _, steps = client.expect("/dd/status")
        client.send("/dd/next")
        loop = client.expect("/dd/loop")
    finally:
        client.close()
        assert d.stop() == 0, d.output()
    return mode, steps, loop[2], (loop[5], loop[6])


@pytest.mark.slow
def test_clean_restart_resumes_critic_mode_tempo_and_fotf(tmp_path):
    state = tmp_path / "state"
    d, client = start_with_client(state)
    try:
        for liked in (True, False, True, False, True, False):
            client.send("/dd/like" if liked else "/dd/dislike")
            client.expect("/dd/rated", timeout=30)
            client.expect("/dd/loop", timeout=30)  # the next rating is for the next loop
        client.send("/dd/mode", "good")
        client.send("/dd/tempo", 133.0)
        client.send("/dd/fotf", 1)
        wait_train_steps(client, 0)
        assert not [m for m in client.received() if m[0] == "/dd/error"]
    finally:
        client.close()
        assert d.stop() == 0, d.output()
    trained = torch.load(state / "critic.pt", weights_only=True)["train_steps"]  # the final checkpoint
    mode, steps, bpm, kick_row = _session_settings(state)
    assert mode == "good"
    assert steps >= trained > 0  # the critic came back, not a fresh one retrained on the resumed ratings
    assert bpm == pytest.approx(133.0)
    assert kick_row == (36, FOTF_KICK)


@pytest.mark.slow
def test_locked_rows_stay_locked_after_a_restart(tmp_path):
    """A lock is a setting: the next run on the state dir plays the same rows (sample, note, steps, levels)."""
    state = tmp_path / "state"

    def rows(loop, levels):
        return [(loop[4 + 3 * r], loop[5 + 3 * r], loop[6 + 3 * r], levels[1 + r]) for r in range((len(loop) - 4) // 3)]

    def next_loop(client):
        """/dd/next, then the loop it makes current (not a start-up one arriving late)."""
        client.send("/dd/status")
        current = client.expect("/dd/status")[2]
        client.send("/dd/next")
        loop = client.expect("/dd/loop", timeout=30)
        while loop[0] <= current:
            loop = client.expect("/dd/loop", timeout=30)
        levels = client.expect("/dd/levels", timeout=30)
        while levels[0] != loop[0]:
            levels = client.expect("/dd/levels", timeout=30)
        return rows(loop, levels)

    d, client = start_with_client(state)
    try:
        locked = next_loop(client)
        client.send("/dd/lock", 1, 1)
        client.send("/dd/lock", 3, 1)
        client.send("/dd/lock", 3, 0)  # unlocked again: not kept
        client.send("/dd/lock", 2, 1)
        client.send("/dd/ping")
        client.expect("/dd/pong")  # the locks before it are taken (one socket, in order)
        assert not [m for m in client.received() if m[0] == "/dd/error"]
    finally:
        client.close()
        assert d.stop() == 0, d.output()

    d, client = start_with_client(state)
    try:
        for _ in range(3):
            now = next_loop(client)
            assert [now[1], now[2]] == [locked[1], locked[2]], (locked, now)
        client.send("/dd/lock", 1, 0)
        client.send("/dd/lock", 2, 0)
        client.send("/dd/ping")
        client.expect("/dd/pong")
    finally:
        client.close()
        assert d.stop() == 0, d.output()

    d, client = start_with_client(state)  # unlocked is kept too: the rows vary again
    try:
        assert any(next_loop(client)[1:3] != locked[1:3] for _ in range(4))
    finally:
        client.close()
        assert d.stop() == 0, d.output()


@pytest.mark.slow
def test_explicit_tempo_overrides_the_resumed_one(tmp_path):
    state = tmp_path / "state"
    assert _session_settings(state, "--tempo", "133")[2] == pytest.approx(133.0)
    assert _session_settings(state)[2] == pytest.approx(133.0)  # resumed
    assert _session_settings(state, "--tempo", "120")[2] == pytest.approx(120.0)  # the flag wins


@pytest.mark.slow
def test_paper_path_end_to_end(tmp_path):
    """--paper: the paper's critic rates, learns and checkpoints through the same OSC flow."""
    state = tmp_path / "state"
    d, client = start_with_client(state, "--paper")
    try:
        ids = []
        for liked in (True, False):  # both classes: the paper's trainer can start
            client.send("/dd/like" if liked else "/dd/dislike")
            ids.append(client.expect("/dd/rated", timeout=120)[0])
            check_loop_message(client.expect("/dd/loop", timeout=120))
        assert ids[1] > ids[0]
        steps = wait_train_steps(client, 0)
    finally:
        client.close()
        assert d.stop() == 0, d.output()
    ckpt = torch.load(state / "critic.pt", weights_only=True)
    assert ckpt["config"] == "paper" and ckpt["train_steps"] >= steps
    assert "critic paper" in d.output()
