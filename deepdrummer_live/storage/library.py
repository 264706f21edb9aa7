"""The loop library: each liked or saved loop as a Standard MIDI File, a WAV of the same bar, and
its own kit (the one-shots it plays plus an SFZ mapping them to the loop's notes).

Under `<state-dir>/library/`, for a loop `<stem>` = `<loop_id>-<name>`:

    <stem>.mid            the loop (every bar of its phrase, its meter's time signature), channel 10,
                          velocity = round(127 x level / 9), odd steps swung
    <stem>.wav            that loop rendered (24-bit), looped: tails wrap to its start
    <stem>.sfz            one region per row: key = the row's note, its one-shot, velocity -> gain
    <stem>-samples/*.wav  the one-shots (32-bit float, the .wav's rate)

The .mid and the .wav are made from one list of hits in ticks, so the .mid played through the
.sfz gives the .wav (`sfz.render_midi`). Every file is written atomically (temp file, fsync,
rename); the .mid and .wav come last, so a loop with both has its kit too. Names are validated so
they can never leave the library.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import mido
import numpy as np
import soundfile as sf

from deepdrummer_live.errors import CommandError, StateError
from deepdrummer_live.loop import LoopRecord
from deepdrummer_live.sound.dynamics import MAX_LEVEL, velocity
from deepdrummer_live.sound.render import level_gain, mix_one, sum_events
from deepdrummer_live.storage import sfz
from deepdrummer_live.storage.store import atomic_write
from deepdrummer_live.vocab import DRUM_CHANNEL, STEPS_PER_BEAT

NAME_RE = re.compile(r"[A-Za-z0-9 _-]{1,64}")
TICKS_PER_BEAT = 960  # a common DAW resolution: swing lands within 1/240 of a step
STEP_TICKS = TICKS_PER_BEAT // STEPS_PER_BEAT
NOTE_TICKS = STEP_TICKS // 2
SAMPLE_NAME_RE = re.compile(r"[^A-Za-z0-9_-]+")


def check_name(name: str) -> str:
    """A library name: 1-64 letters, digits, space, '-', '_' (so no '..', separators or absolute paths)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise CommandError(f"save name {name!r} is invalid: use 1-64 letters, digits, spaces, '-' or '_'")
    return name


def swing_ticks(swing: float) -> int:
    """How many ticks an odd step is late: swing x one step, on the file's tick grid."""
    return int(round(swing * STEP_TICKS))


def hit_ticks(n_steps: int, swing: float) -> list[int]:
    """The tick of every step's onset in the bar, odd steps swung."""
    late = swing_ticks(swing)
    return [k * STEP_TICKS + (late if k % 2 else 0) for k in range(n_steps)]


def tick_sample(tick: int, tempo_us: int, sr: int) -> int:
    """The sample a tick falls on at `tempo_us` microseconds per beat, rounded half up, exactly
    (integer arithmetic, so a sampler that reads the .mid finds the same sample as the .wav)."""
    scale = TICKS_PER_BEAT * 1_000_000
    return (2 * tick * tempo_us * sr + scale) // (2 * scale)


def midi_file(loop: LoopRecord) -> mido.MidiFile:
    """The loop (every bar of its phrase) -> type-0 SMF with its tempo and its meter's time signature
    meta events; velocity round(127 x level / 9); odd steps late by its swing x one step. The file is
    as long as the phrase."""
    events = []  # (absolute tick, order, message): note-offs sort before note-ons on the same tick
    ticks = hit_ticks(loop.n_steps, loop.swing)
    for row in loop.rows:
        for k, level in enumerate(row.level_values):
            if level:
                on = ticks[k]
                events.append((on, 1, mido.Message("note_on", channel=DRUM_CHANNEL, note=row.note,
                                                   velocity=velocity(level))))
                events.append((on + NOTE_TICKS, 0, mido.Message("note_off", channel=DRUM_CHANNEL, note=row.note,
                                                                velocity=0)))
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name="DeepDrummer", time=0))
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(loop.tempo), time=0))
    numerator, denominator = (int(v) for v in loop.meter.split("/"))
    track.append(mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator, time=0))
    now = 0
    for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1], e[2].note)):
        track.append(msg.copy(time=tick - now))
        now = tick
    loop_ticks = loop.n_steps * STEP_TICKS if loop.rows else 4 * TICKS_PER_BEAT
    track.append(mido.MetaMessage("end_of_track", time=loop_ticks - now))
    mid = mido.MidiFile(type=0, ticks_per_beat=TICKS_PER_BEAT)
    mid.tracks.append(track)
    return mid


def render_bar(loop: LoopRecord, audio: list[np.ndarray], sr: int) -> np.ndarray:
    """The loop of the .mid (same ticks, same tempo) before the mix, each row playing its one-shot of
    `audio` (float32 mono at `sr`, unit gain) -> float64 `[loop samples]`."""
    tempo_us = mido.bpm2tempo(loop.tempo)
    ticks = hit_ticks(loop.n_steps, loop.swing)
    events = []
    for index, row in enumerate(loop.rows):
        events += [(tick_sample(ticks[k], tempo_us, sr), index, level_gain(level))
                   for k, level in enumerate(row.level_values) if level]
    bar_len = tick_sample(loop.n_steps * STEP_TICKS, tempo_us, sr)
    return sum_events(events, list(audio), bar_len)


def _wav_bytes(audio: np.ndarray, sr: int, subtype: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.asarray(audio, dtype=np.float32), sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def _write(path: Path, data: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(data))


def sample_file_name(index: int, sample: str) -> str:
    """The file of a row's one-shot: its row and the kit name made safe ("808/kick 1" -> "r0-808_kick_1.wav")."""
    return f"r{index}-{SAMPLE_NAME_RE.sub('_', sample).strip('_') or 'sample'}.wav"


def write_loop(library: Path, loop: LoopRecord, name: str, audio: list[np.ndarray], sr: int) -> tuple[Path, Path]:
    """Write the loop's kit (one-shots + .sfz), then `.mid` and `.wav`, at its tempo and swing; `audio`:
    each row's one-shot (float32 mono at `sr`, unit gain). Returns the .mid and .wav paths."""
    stem = f"{loop.id:06d}-{check_name(name)}"
    mid_path = library / f"{stem}.mid"
    wav_path = library / f"{stem}.wav"
    summed = render_bar(loop, audio, sr)
    wav = mix_one(summed)
    samples_dir = library / f"{stem}-samples"
    try:
        samples_dir.mkdir(exist_ok=True)
    except OSError as exc:  # the library folder gone, or a file now: answered with /dd/error, as a failed write
        raise StateError(f"cannot write {samples_dir} ({exc.strerror or exc}); make {library} a writable "
                         f"folder again") from exc
    files = [sample_file_name(i, row.sample) for i, row in enumerate(loop.rows)]
    for file, one_shot in zip(files, audio):
        _write(samples_dir / file, _wav_bytes(one_shot, sr, "FLOAT"))  # float: the .sfz plays them exactly
    # The mix scales a loop as a whole (one gain per loop): that gain is the SFZ's volume.
    gain = float(np.dot(wav, summed) / max(np.dot(summed, summed), 1e-30))
    text = sfz.sfz_text([(row.note, file) for row, file in zip(loop.rows, files)], f"{stem}-samples/", gain,
                        [level_gain(level) for level in range(1, MAX_LEVEL + 1)],
                        title=f"DeepDrummer Live loop {loop.id} ({name}) at {loop.tempo:g} BPM, swing {loop.swing:g}")
    _write(library / f"{stem}.sfz", text.encode())
    mid = io.BytesIO()
    midi_file(loop).save(file=mid)
    _write(mid_path, mid.getvalue())
    _write(wav_path, _wav_bytes(wav, sr, "PCM_24"))
    return mid_path, wav_path


def has_files(library: Path, loop_id: int) -> bool:
    """Both files of a loop are in the library (under any name)."""
    stem = f"{loop_id:06d}-"
    return any(library.glob(f"{stem}*.mid")) and any(library.glob(f"{stem}*.wav"))
