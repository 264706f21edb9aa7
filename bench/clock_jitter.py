"""MIDI clock and notes at a real JACK port, in JACK's frames, while torch trains in this process.

Starts a private jackd (dummy driver, 48 kHz, --period frames, realtime unless --no-jack-realtime),
the player process (--clock internal, a loop with a note on every step, swing) with the MIDI writer
asked for (`--writer frames`: each message at its frame, player/jackmidi.py; `--writer rtmidi`:
python-rtmidi, at the start of a period), and a recorder client of its own process
(jackd.FrameRecorder) connected to the player's output: it stamps every message with its exact frame
in JACK's cycle, so neither this process's GIL nor the torch load biases the figures. Meanwhile the
main thread runs a torch training loop (matmul + backward, as the daemon's worker does).

Prints one JSON line: clock interval jitter p99 / max (|interval - nominal|), rate error of a
least-squares fit, clocks lost, notes' error against the swung grid p99 / max, jackd's missed cycles.
Targets (issue 23): jitter and note error p99 <= 0.1 ms, |rate| <= 0.01 %, no clock lost.

    .venv/bin/python bench/clock_jitter.py --period 1024 --writer frames --seconds 20
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np

from deepdrummer_live.player.handle import PlayerHandle
from deepdrummer_live.player.jackd import SAMPLE_RATE, FrameRecorder, start_jack_server
from deepdrummer_live.player.protocol import PlayerConfig

CLOCK, START, STOP = 0xF8, 0xFA, 0xFC
ALL_NOTES_OFF = bytes([0xB9, 123, 0])
ROWS = [{"note": 36, "steps": "x..." * 4}, {"note": 38, "steps": "..x." * 4},
        {"note": 42, "steps": "x" * 16}, {"note": 46, "steps": ".x.x" * 4}]


def torch_load(stop: threading.Event, counter: list[int], threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(1024, 2048), torch.nn.ReLU(),
                                torch.nn.Linear(2048, 1024))
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    x = torch.randn(512, 1024)
    while not stop.is_set():
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        counter[0] += 1


def p99(xs) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(0.99 * len(xs)))]


def figures(msgs: list[tuple[int, bytes]], bpm: float, swing: float) -> dict:
    """Clock and note figures of what the recorder heard between Start and Stop (frames -> ms)."""
    nominal = SAMPLE_RATE * 60.0 / (bpm * 24)
    i0 = next(i for i, (_, d) in enumerate(msgs) if d == bytes([START]))
    i1 = next(i for i, (_, d) in enumerate(msgs) if d == bytes([STOP]))
    played, start = msgs[i0:i1], msgs[i0][0]
    clocks = np.array([f for f, d in played if d == bytes([CLOCK])], dtype=float)
    intervals = np.diff(clocks)
    index = np.concatenate([[0], np.cumsum(np.maximum(1, np.round(intervals / nominal)))])
    kept = [abs(iv - nominal) for iv in intervals if round(iv / nominal) <= 1]  # bunched ones too, not lost ones
    slope = np.polyfit(index, clocks, 1)[0]
    step = 6 * nominal
    errors = []
    for f, d in played:
        if d[0] == 0x99 and d[2] > 0:
            x = (f - start) / step
            k = int(x + 0.25)  # a swung step is at most half a step late
            errors.append(abs(x - (k + (swing if k % 2 else 0.0))) * step)
    ms = 1000.0 / SAMPLE_RATE
    return {"clocks": len(clocks), "clocks_lost": int(index[-1] + 1 - len(clocks)),
            "rate_error_pct": round(float(slope / nominal - 1.0) * 100, 5),
            "jitter_p99_ms": round(p99(kept) * ms, 4), "jitter_max_ms": round(max(kept) * ms, 4),
            "notes": len(errors), "note_error_p99_ms": round(p99(errors) * ms, 4),
            "note_error_max_ms": round(max(errors) * ms, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--bpm", type=float, default=120.0)
    ap.add_argument("--swing", type=float, default=1 / 3)
    ap.add_argument("--period", type=int, default=64, help="JACK period in frames (64, 256, 1024...)")
    ap.add_argument("--writer", choices=("frames", "rtmidi"), default="frames",
                    help="frames: each message at its frame (JACK-Client); rtmidi: python-rtmidi's JACK ports")
    ap.add_argument("--no-load", action="store_true", help="skip the torch training load")
    ap.add_argument("--torch-threads", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                    help="torch intra-op threads for the load (default: all cores but one)")
    ap.add_argument("--no-jack-realtime", action="store_true", help="run the private jackd with --no-realtime")
    args = ap.parse_args()

    if shutil.which("jackd") is None:
        sys.exit("jackd is not installed (apt-get install jackd2)")
    server = start_jack_server(realtime=not args.no_jack_realtime, period=args.period)
    os.environ["JACK_DEFAULT_SERVER"] = server
    recorder = FrameRecorder(server)
    handle = PlayerHandle(PlayerConfig(midi_backend="jack", audio="none", midi_out="ddbench", tempo=args.bpm,
                                       jack_frames=args.writer == "frames"), lambda e: None)
    stop = threading.Event()
    steps = [0]
    load = None
    try:
        ready = handle.start()
        subprocess.run([shutil.which("jack_connect") or "jack_connect", "DeepDrummer Live:ddbench", recorder.port],
                       check=True, timeout=10)
        server.wait_connected("ddbench", recorder.port)
        if not args.no_load:
            load = threading.Thread(target=torch_load, args=(stop, steps, args.torch_threads), daemon=True)
            load.start()
        handle.set_loop(1, ROWS, None, False, swing=args.swing)
        xruns_before = server.xruns()
        handle.play()
        time.sleep(args.seconds)  # the measured run: as long as asked, whatever happens in it
        handle.stop()
        msgs = recorder.wait_for(lambda ms: any(d == ALL_NOTES_OFF for _, d in ms), timeout=15)
        xruns = server.xruns() - xruns_before
    finally:
        stop.set()
        if load is not None:
            load.join()
        handle.close()
        recorder.stop()
        server.stop()
    print(json.dumps({
        "period_frames": args.period, "period_ms": round(args.period / SAMPLE_RATE * 1000, 3),
        "writer": ready.get("midi_writer"), "bpm": args.bpm, "swing": args.swing, "seconds": args.seconds,
        **figures(msgs, args.bpm, args.swing),
        "load": "none" if args.no_load else "torch-train", "train_steps": steps[0],
        "torch_threads": None if args.no_load else args.torch_threads,
        "player_priority": ready.get("priority"), "jack_realtime": server.realtime, "jack_xruns": xruns,
        "load_avg_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
        "targets": {"rate_error_pct": 0.01, "jitter_p99_ms": 0.1, "note_error_p99_ms": 0.1},
    }))


if __name__ == "__main__":
    main()
