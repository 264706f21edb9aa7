"""Where pyo's live bar starts against the bar's first MIDI note, on one JACK server, in frames.

Starts a private realtime jackd (dummy driver, 48 kHz, --period frames), the player with
--midi-backend jack (each message at its frame) and pyo on the same server, plays a loop whose
bar audio is a click on its first sample and whose MIDI has a kick on step 0, and records both at
JACK ports: MIDI with jackd.FrameRecorder, audio with jackd.AudioOnsets (the frame of the first
sample over a threshold). Prints one JSON line: the offset (audio - MIDI) of
each bar, in frames and ms.

    .venv/bin/python bench/audio_offset.py --period 1024 --bars 8
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess

import numpy as np

from deepdrummer_live.player.handle import PlayerHandle
from deepdrummer_live.player.jackd import SAMPLE_RATE, AudioOnsets, FrameRecorder, start_jack_server
from deepdrummer_live.player.protocol import PlayerConfig

ROWS = [{"note": 36, "steps": "x" + "." * 15}]
ALL_NOTES_OFF = bytes([0xB9, 123, 0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--period", type=int, default=1024)
    ap.add_argument("--bars", type=int, default=8)
    ap.add_argument("--bpm", type=float, default=120.0)
    args = ap.parse_args()
    server = start_jack_server(realtime=True, period=args.period)
    os.environ["JACK_DEFAULT_SERVER"] = server
    recorder = FrameRecorder(server)
    handle = PlayerHandle(PlayerConfig(midi_backend="jack", midi_out="ddaudio", audio="pyo", audio_backend="jack",
                                       audio_sr=SAMPLE_RATE, tempo=args.bpm), lambda e: None)
    onsets = None
    try:
        ready = handle.start()
        subprocess.run([shutil.which("jack_connect") or "jack_connect", "DeepDrummer Live:ddaudio", recorder.port],
                       check=True, timeout=10)
        server.wait_connected("ddaudio", recorder.port)
        onsets = AudioOnsets("DeepDrummer:")
        bar = np.zeros(round(SAMPLE_RATE * 240 / args.bpm), dtype=np.float32)
        bar[:48] = 0.9  # a 1 ms click on the bar's first sample
        handle.set_loop(1, ROWS, bar, False, swing=0.0)
        handle.play()
        recorder.wait_for(lambda ms: sum(1 for _, d in ms if d[0] == 0x99) >= args.bars, timeout=60)
        handle.stop()
        msgs = recorder.wait_for(lambda ms: any(d == ALL_NOTES_OFF for _, d in ms), timeout=15)
    finally:
        if onsets is not None:
            onsets.close()
        handle.close()
        recorder.stop()
        server.stop()
    notes = [f for f, d in msgs if d[0] == 0x99 and d[2] > 0]
    offsets = [min(onsets.onsets, key=lambda a, n=n: abs(a - n)) - n for n in notes] if onsets.onsets else []
    print(json.dumps({"period_frames": args.period, "audio": ready.get("audio"), "writer": ready.get("midi_writer"),
                      "bars": len(notes), "offset_frames": offsets,
                      "offset_ms": [round(o / SAMPLE_RATE * 1000, 3) for o in offsets],
                      "jack_xruns": server.xruns()}))


if __name__ == "__main__":
    main()
