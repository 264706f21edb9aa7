"""How loud a loop is: integrated loudness (LUFS, ITU-R BS.1770-4 via pyloudnorm) and peak (dBFS).

A loop plays forever, so its loudness is that of the bar repeated (BS.1770 gates 400 ms blocks:
one short bar alone would be measured on too few of them). Pure functions of a float bar.
"""

from __future__ import annotations

import numpy as np
import pyloudnorm

LOOP_PASSES = 4  # bars measured: 8 s at 120 BPM, enough blocks for the gating to settle
SILENCE_LUFS = -70.0  # BS.1770's absolute gate: quieter is reported as this


def loop_lufs(bar: np.ndarray, sr: int) -> float:
    """Integrated loudness of `bar` (float `[samples]`, mono) looped LOOP_PASSES times, in LUFS."""
    audio = np.tile(np.asarray(bar, dtype=np.float64), LOOP_PASSES)
    value = pyloudnorm.Meter(sr).integrated_loudness(audio)
    return float(max(value, SILENCE_LUFS)) if np.isfinite(value) else SILENCE_LUFS


def peak_dbfs(bar: np.ndarray) -> float:
    """The sample peak of `bar` in dBFS (-inf for silence)."""
    peak = float(np.abs(np.asarray(bar)).max(initial=0.0))
    return 20.0 * np.log10(peak) if peak > 0 else float("-inf")
