"""The loop library: liked and saved loops as a Standard MIDI File plus a WAV of the same bar.

Files are `<loop_id>-<name>.mid` / `.wav` under `<state-dir>/library/`, written atomically
(temp file, fsync, rename). Names are validated so they can never leave the library.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import mido
import numpy as np
import soundfile as sf

from deepdrummer_live.errors import CommandError
from deepdrummer_live.storage.store import atomic_write

NAME_RE = re.compile(r"[A-Za-z0-9 _-]{1,64}")
TICKS_PER_BEAT = 480
DRUM_CHANNEL = 9  # MIDI channel 10
STEP_TICKS = TICKS_PER_BEAT // 4
NOTE_TICKS = STEP_TICKS // 2
VELOCITY = 100


def check_name(name: str) -> str:
    """A library name: 1-64 letters, digits, space, '-', '_' (so no '..', separators or absolute paths)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise CommandError(f"save name {name!r} is invalid: use 1-64 letters, digits, spaces, '-' or '_'")
    return name


def midi_file(rows: list[tuple[int, str]], bpm: float) -> mido.MidiFile:
    """One bar: rows of (GM note, 'x'/'.' steps) -> type-0 SMF with tempo and 4/4 meta events."""
    events = []  # (absolute tick, order, message): note-offs sort before note-ons on the same tick
    for note, steps in rows:
        for k, cell in enumerate(steps):
            if cell == "x":
                on = k * STEP_TICKS
                events.append((on, 1, mido.Message("note_on", channel=DRUM_CHANNEL, note=note, velocity=VELOCITY)))
                events.append((on + NOTE_TICKS, 0, mido.Message("note_off", channel=DRUM_CHANNEL, note=note,
                                                                velocity=0)))
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name="DeepDrummer", time=0))
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    track.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0))
    now = 0
    for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1], e[2].note)):
        track.append(msg.copy(time=tick - now))
        now = tick
    bar_ticks = 16 * STEP_TICKS
    track.append(mido.MetaMessage("end_of_track", time=bar_ticks - now))
    mid = mido.MidiFile(type=0, ticks_per_beat=TICKS_PER_BEAT)
    mid.tracks.append(track)
    return mid


def write_loop(library: Path, loop_id: int, name: str, rows: list[tuple[int, str]], bpm: float,
               audio: np.ndarray, sr: int) -> tuple[Path, Path]:
    """Write `<loop_id>-<name>.mid` and `.wav` (24-bit) atomically; returns their paths."""
    stem = f"{loop_id:06d}-{check_name(name)}"
    mid_path = library / f"{stem}.mid"
    wav_path = library / f"{stem}.wav"
    buf = io.BytesIO()
    midi_file(rows, bpm).save(file=buf)
    atomic_write(mid_path, lambda fh: fh.write(buf.getvalue()))
    wav = io.BytesIO()
    sf.write(wav, np.asarray(audio, dtype=np.float32), sr, format="WAV", subtype="PCM_24")
    atomic_write(wav_path, lambda fh: fh.write(wav.getvalue()))
    return mid_path, wav_path


def has_files(library: Path, loop_id: int) -> bool:
    """Both files of a loop are in the library (under any name)."""
    stem = f"{loop_id:06d}-"
    return any(library.glob(f"{stem}*.mid")) and any(library.glob(f"{stem}*.wav"))
