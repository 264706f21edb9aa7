"""The live audio of a loop: what the player process plays beside the MIDI, rendered through the one
mix the critic hears (render.render_bars). Kept apart from the learner, which renders nothing for
the player; the session asks for a loop's audio when it hands the loop to the playback."""

from __future__ import annotations

import numpy as np
import torch

from deepdrummer_live.sound.kit import Kit
from deepdrummer_live.sound.pattern import Loops
from deepdrummer_live.sound.render import delayed, render_bars, sample_bank, step_length, swing_delay, swing_split


class LiveAudio:
    """Renders loops of one kit; the sample bank of the last loop and tempo is kept (the next bar of
    the same loop, e.g. a swing change, costs only the mix)."""

    def __init__(self, kit: Kit):
        self.kit = kit
        self._cache: dict = {}

    def render(self, loops: Loops, tempo: float, sr: int, swing: float = 0.0) -> np.ndarray:
        """The whole loop (every bar) at `tempo` and `sr`, odd steps late by `swing` x one step, through
        the one mix (render_bars) -> float32 `[n_steps * step_length(tempo, sr)]`."""
        ids = loops.sample_ids[0].tolist()
        n_steps = loops.levels.shape[-1]
        step_len = step_length(tempo, sr)
        delay = swing_delay(step_len, swing)
        key = (sr, round(tempo, 3), tuple(ids), delay, n_steps)
        if key not in self._cache:
            audio = [self.kit.audio_at(sr)[i] for i in ids]
            if delay:  # the odd steps' rows play these delayed copies (see render.swing_split)
                audio += [delayed(a, delay) for a in audio]
            # One entry: the loop and the tempo change together, so older banks are garbage.
            self._cache = {key: sample_bank(audio, step_len, n_steps, "cpu")}
        cells, row_ids = loops.levels[:1].cpu(), torch.arange(len(ids))[None]
        if delay:
            cells, row_ids = swing_split(cells, row_ids, len(ids))
        return render_bars(cells, row_ids, self._cache[key])[0].numpy()
