"""Bars out of music at any tempo: beat-track, cut 4-beat bars, time-stretch each to a reference bar.

What the critic hears is one bar at `REFERENCE_BPM`; a performer's loops and tracks come at any
tempo. `bars_from_audio` finds the beats (librosa), folds the tempo estimate into one octave
(a beat tracker often answers half or double), cuts consecutive 4-beat bars and stretches each
to exactly one reference bar without changing its pitch. Pure functions on numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepdrummer_live.errors import UsageError

BEATS_PER_BAR = 4
TEMPO_OCTAVE = (80.0, 160.0)  # beat rates outside are taken as half or double the felt tempo
MIN_TRACK_SECONDS = 12.0  # a one-bar loop is tiled to this length so the beat tracker has enough to hear
AUDIO_SUFFIXES = (".wav", ".flac", ".aif", ".aiff", ".ogg", ".mp3")


@dataclass
class Bars:
    path: Path
    bpm: float  # the tempo found (folded into TEMPO_OCTAVE)
    bars: np.ndarray  # float32 `[n_bars, bar_samples]`, each one bar at the reference tempo


def fold_beats(beats: np.ndarray, sr: int) -> np.ndarray:
    """Beat positions (samples at `sr`, increasing) -> the same grid at a beat rate inside TEMPO_OCTAVE."""
    beats = np.asarray(beats, dtype=np.float64)
    while len(beats) >= 2:
        bpm = 60.0 * sr / np.median(np.diff(beats))
        if bpm < TEMPO_OCTAVE[0]:  # half-time: put a beat between each pair
            mids = (beats[:-1] + beats[1:]) / 2
            beats = np.sort(np.concatenate([beats, mids]))
        elif bpm >= TEMPO_OCTAVE[1]:  # double-time: every other beat
            beats = beats[::2]
        else:
            break
    return beats


def stretch_to(segment: np.ndarray, length: int) -> np.ndarray:
    """Time-stretch (pitch kept) `[samples]` to exactly `length` samples."""
    import librosa

    rate = len(segment) / length
    if abs(rate - 1.0) > 1e-3:
        segment = librosa.effects.time_stretch(segment, rate=rate)
    return librosa.util.fix_length(segment, size=length).astype(np.float32)


def bars_from_audio(y: np.ndarray, sr: int, bar_samples: int, max_bars: int = 32) -> tuple[float, np.ndarray]:
    """Mono audio `[samples]` at `sr` -> (tempo found, bars `[n, bar_samples]` at sr / bar_samples)."""
    import librosa

    y = np.asarray(y, dtype=np.float32)
    if len(y) < MIN_TRACK_SECONDS * sr:  # a short loop: it loops, so tile it
        y = np.tile(y, int(np.ceil(MIN_TRACK_SECONDS * sr / max(len(y), 1))))
    _, frames = librosa.beat.beat_track(y=y, sr=sr, start_bpm=120.0, units="frames")
    beats = fold_beats(librosa.frames_to_samples(frames), sr)
    if len(beats) <= BEATS_PER_BAR:
        return 0.0, np.zeros((0, bar_samples), dtype=np.float32)
    bpm = float(60.0 * sr * (len(beats) - 1) / (beats[-1] - beats[0]))  # mean beat: finer than one frame
    starts = range(0, len(beats) - BEATS_PER_BAR, BEATS_PER_BAR)
    bars = [stretch_to(y[int(beats[i]):int(beats[i + BEATS_PER_BAR])], bar_samples) for i in starts][:max_bars]
    return bpm, np.stack(bars)


def load_likes(folder: Path, sr: int, bar_samples: int, max_bars_per_file: int = 32) -> list[Bars]:
    """Every audio file under `folder` -> its bars; UsageError when there is none to learn from."""
    import librosa

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UsageError(f"{str(folder)!r} is not a folder; give a folder of loops or tracks you like")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    out = []
    for path in files:
        y, _ = librosa.load(str(path), sr=sr, mono=True)
        bpm, bars = bars_from_audio(y, sr, bar_samples, max_bars_per_file)
        if len(bars):
            out.append(Bars(path, bpm, bars))
    if not out:
        raise UsageError(f"{str(folder)!r}: no bars found in {len(files)} audio file(s) "
                         f"({', '.join(AUDIO_SUFFIXES)}); give loops or tracks with a beat, at least 2 s long")
    return out
