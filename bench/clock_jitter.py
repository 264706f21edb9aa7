"""MIDI clock rate error and jitter at a real JACK port while torch trains in this process.

Starts a private jackd (dummy driver, 48 kHz, 64-frame period) unless --jack-server names a
running one, starts the player process (--clock internal) on it, connects a JACK MIDI input
to its output and timestamps every clock on the JACK side (rtmidi delta times, taken in
JACK's process cycle, so this process's GIL and the torch load cannot bias them).
Meanwhile the main thread runs a torch training loop (matmul + backward) as the daemon does.

Prints one JSON line: rate_error_pct (mean clock interval vs nominal), jitter_p99_ms and
jitter_max_ms (|interval - nominal|), plus the load that ran. Targets: |rate| <= 0.2 %,
p99 <= 2 ms. The dummy driver delivers MIDI in 64-frame periods, so up to 1.33 ms of
the jitter is the period quantisation of the measurement itself.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time

from deepdrummer_live.player.handle import PlayerHandle
from deepdrummer_live.player.jackd import PERIOD_FRAMES, SAMPLE_RATE, start_jack_server
from deepdrummer_live.player.protocol import PlayerConfig

RATE = SAMPLE_RATE


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--bpm", type=float, default=120.0)
    ap.add_argument("--no-load", action="store_true", help="skip the torch training load")
    ap.add_argument("--torch-threads", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                    help="torch intra-op threads for the load (default: all cores but one)")
    ap.add_argument("--jack-realtime", action="store_true",
                    help="run the private jackd with --realtime (SCHED_FIFO), as on a stage machine")
    ap.add_argument("--jack-server", help="use this running JACK server instead of a private one")
    args = ap.parse_args()

    server = None
    if args.jack_server:
        os.environ["JACK_DEFAULT_SERVER"] = args.jack_server
    else:
        if shutil.which("jackd") is None:
            sys.exit("jackd is not installed (apt-get install jackd2)")
        server = start_jack_server(realtime=args.jack_realtime)
        os.environ["JACK_DEFAULT_SERVER"] = server
    import rtmidi

    stats: dict = {}
    got_stats = threading.Event()

    def on_event(event: dict) -> None:
        if event.get("type") == "stats":
            stats.update(event)
            got_stats.set()

    handle = PlayerHandle(PlayerConfig(midi_backend="jack", audio="none", midi_out="ddbench",
                                       tempo=args.bpm), on_event)
    ready = handle.start()
    probe = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, "dd-bench-probe", queue_size_limit=1 << 16)
    probe.ignore_types(sysex=True, timing=False, active_sense=True)
    ports = probe.get_ports()
    probe.open_port(next(i for i, p in enumerate(ports) if "ddbench" in p))
    stop = threading.Event()
    steps = [0]
    clock_times: list[float] = []

    def collect() -> None:
        t = 0.0
        while not stop.is_set() or True:
            m = probe.get_message()
            if m is None:
                if stop.is_set():
                    return
                time.sleep(0.02)
                continue
            t += m[1]
            if m[0] == [0xF8]:
                clock_times.append(t)

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    handle.play()
    load = None
    if not args.no_load:
        load = threading.Thread(target=torch_load, args=(stop, steps, args.torch_threads), daemon=True)
        load.start()
    time.sleep(args.seconds)
    handle.request_stats()
    got_stats.wait(5)
    stop.set()
    if load is not None:
        load.join()
    handle.stop()
    time.sleep(0.2)
    collector.join()
    handle.close()
    probe.close_port()
    xruns = None
    if server is not None:
        xruns = server.xruns()  # dummy-driver cycles that ran late: MIDI can be lost there
        server.stop()

    nominal = 60.0 / (args.bpm * 24)
    times = clock_times[24:]  # skip the first beat: the probe connects mid-stream
    intervals = [b - a for a, b in zip(times, times[1:])]
    # A clock dropped in a JACK xrun shows as a double interval; index clocks by rounding so
    # the rate fit is not biased by losses, which are reported separately.
    index = [0]
    for iv in intervals:
        index.append(index[-1] + max(1, round(iv / nominal)))
    n = len(times)
    mi, mt = sum(index) / n, sum(times) / n
    slope = (sum((i - mi) * (t - mt) for i, t in zip(index, times))
             / sum((i - mi) ** 2 for i in index))
    lost = index[-1] + 1 - n
    kept = sorted(abs(iv - nominal) for iv in intervals if round(iv / nominal) <= 1)
    every = sorted(abs(iv / max(1, round(iv / nominal)) - nominal) for iv in intervals)

    def p99(xs):
        return xs[min(len(xs) - 1, int(0.99 * len(xs)))]

    print(json.dumps({
        "bpm": args.bpm, "seconds": args.seconds, "clocks": n, "clocks_lost": lost,
        "rate_error_pct": round((slope / nominal - 1.0) * 100.0, 4),
        "jitter_p99_ms": round(p99(kept) * 1000, 3), "jitter_max_ms": round(kept[-1] * 1000, 3),
        "jitter_median_ms": round(kept[len(kept) // 2] * 1000, 3),
        "jitter_p99_ms_incl_lost": round(p99(every) * 1000, 3),
        "load": "none" if args.no_load else "torch-train", "train_steps": steps[0],
        "torch_threads": None if args.no_load else args.torch_threads,
        "player_priority": ready.get("priority"), "jack_realtime": args.jack_realtime,
        "send_tick_late_ms_p99": stats.get("tick_late_ms_p99"),
        "send_tick_late_ms_max": stats.get("tick_late_ms_max"),
        "jack_period_ms": round(PERIOD_FRAMES / RATE * 1000, 3), "jack_xruns": xruns,
        "load_avg_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
        "targets": {"rate_error_pct": 0.2, "jitter_p99_ms": 2.0},
    }))


if __name__ == "__main__":
    main()
