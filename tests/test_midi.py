"""MIDI message bytes (golden) and backend checks; real-port tests live in test_player.py."""

import sys

import pytest

from deepdrummer_live.errors import UsageError
from deepdrummer_live.player import midi


def test_golden_bytes():
    assert midi.note_on(36) == [0x99, 36, 100]
    assert midi.note_on(42, 127) == [0x99, 42, 127]
    assert midi.note_off(38) == [0x89, 38, 0]
    assert midi.all_notes_off() == [0xB9, 123, 0]
    assert midi.song_position(0) == [0xF2, 0, 0]
    assert midi.song_position(16) == [0xF2, 16, 0]
    assert midi.song_position(200) == [0xF2, 200 & 0x7F, 1]
    assert midi.parse_song_position(midi.song_position(12345)) == 12345
    assert (midi.CLOCK, midi.START, midi.CONTINUE, midi.STOP) == (0xF8, 0xFA, 0xFB, 0xFC)


def test_golden_bytes_match_mido():
    import mido

    assert mido.Message("note_on", channel=9, note=36, velocity=100).bytes() == midi.note_on(36)
    assert mido.Message("note_off", channel=9, note=36, velocity=0).bytes() == midi.note_off(36)
    assert mido.Message("control_change", channel=9, control=123).bytes() == midi.all_notes_off()
    assert mido.Message("songpos", pos=200).bytes() == midi.song_position(200)


def test_song_position_range():
    with pytest.raises(ValueError, match="0..16383"):
        midi.song_position(1 << 14)


def test_default_backend_follows_the_machine(monkeypatch, tmp_path):
    if not sys.platform.startswith("linux"):
        assert midi.default_backend() in midi.BACKENDS
        return
    monkeypatch.setattr(midi, "ALSA_SEQ", str(tmp_path / "seq"))
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "dd-no-such-server")
    assert midi.default_backend() is None  # neither ALSA nor JACK: run without MIDI
    (tmp_path / "seq").touch()
    assert midi.default_backend() == "alsa"


def test_check_backend_messages():
    with pytest.raises(UsageError, match="--midi-backend midiman: unknown; use one of"):
        midi.check_backend("midiman")
    midi.check_backend("none")
    if sys.platform.startswith("linux"):
        with pytest.raises(UsageError, match="no coremidi support"):
            midi.check_backend("coremidi")


def test_alsa_without_sequencer(monkeypatch):
    if not sys.platform.startswith("linux"):
        pytest.skip("ALSA is Linux only")
    monkeypatch.setattr(midi, "Path", lambda p: type("P", (), {"exists": lambda self: False})())
    with pytest.raises(UsageError, match="/dev/snd/seq is missing"):
        midi.check_backend("alsa")


def test_jack_without_server(monkeypatch):
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "dd-no-such-server")
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    ports = midi.MidiPorts("jack", "DeepDrummer", None)
    with pytest.raises(UsageError, match="--midi-backend jack: no JACK server running; start jackd"):
        ports.open()


def test_none_backend_opens_nothing():
    ports = midi.MidiPorts("none", "DeepDrummer", "ctl")
    ports.open()
    ports.send(midi.note_on(36))  # a no-op, not an error
    assert ports.alive()
    assert ports.out_full_name is None
    ports.close()


VANISH_CHILD = """
import sys
from deepdrummer_live.player import midi
ports = midi.MidiPorts("jack", "DDout", "DDin")
ports.open()
assert ports.out_full_name == "DeepDrummer Live:DDout", ports.out_full_name
assert ports.alive()
print("open", flush=True)
sys.stdin.readline()  # the parent kills the server now
assert not ports.alive()
ports.close()  # must not crash although the server is gone
print("closed", flush=True)
"""


def test_jack_ports_open_and_vanish(private_jack_server):
    # In a child process: a JACK client whose server dies leaves libjack's per-process state
    # broken, and every later JACK client of this test process would crash.
    import subprocess

    name, kill, start_again = private_jack_server
    child = subprocess.Popen([sys.executable, "-c", VANISH_CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "open", child.stderr.read()
        kill()
        child.stdin.write("go\n")
        child.stdin.flush()
        out, err = child.communicate(timeout=30)
        assert child.returncode == 0 and "closed" in out, err
    finally:
        if child.poll() is None:
            child.kill()
