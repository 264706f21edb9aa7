"""Every shape of the contract plays on a real JACK port: notes, velocities and swing on the grid of
/dd/loop (contract v1.2: 1-8 rows, phrases of 1, 2 or 4 bars, meters), switching at the phrase's end."""

from __future__ import annotations

import pytest

from deepdrummer_live.player.jackd import SAMPLE_RATE, FrameRecorder

from daemon import Daemon, OscClient
from jack_frames import connect_when_listed

SWING = 0.25  # an odd step a quarter of a step late: 750 frames at 240 BPM, 48 kHz
TEMPO = 240.0
STEP_FRAMES = SAMPLE_RATE * 60 / (TEMPO * 4)  # 3000
START, CLOCK, NOTE_ON = 0xFA, 0xF8, 0x99
ALL_NOTES_OFF = bytes([0xB9, 123, 0])
OUT_PORT = "DeepDrummer Live:DeepDrummer"


def _clocks_after_start(n: int):
    def pred(msgs) -> bool:
        starts = [i for i, (_, d) in enumerate(msgs) if d == bytes([START])]
        return bool(starts) and sum(1 for _, d in msgs[starts[-1]:] if d == bytes([CLOCK])) >= n
    return pred


@pytest.mark.slow
@pytest.mark.parametrize("rows,bars,meter", [(8, 2, "7/8"), (3, 4, "6/8"), (1, 1, "5/4")])
def test_a_shape_plays_on_the_grid_of_its_loop(tmp_path, jack_server, rows, bars, meter):
    client = OscClient(0)
    d = Daemon(tmp_path / "state", "--notify", f"127.0.0.1:{client.port}", "--tempo", str(TEMPO), "--swing",
               str(SWING), "--rows", str(rows), "--bars", str(bars), "--meter", meter, midi="jack", audio="none")
    client.target = ("127.0.0.1", d.port)
    # What the daemon plays, heard with its frames by a JACK client of its own process: notes are placed on
    # the grid by frame, so a cycle a loaded machine loses (an xrun) costs that cycle's messages, never a
    # shift of everything after it (as counting MIDI clocks would)
    dump = FrameRecorder(jack_server, name="dd-shape")
    d.start()
    try:
        client.drain()
        connect_when_listed(jack_server, OUT_PORT, dump.port)
        client.send("/dd/next")
        loop = client.expect("/dd/loop", timeout=60)
        levels = client.expect("/dd/levels")
        shape = client.expect("/dd/shape")
        n_steps = loop[3]
        assert shape[0] == loop[0] and shape[1] * shape[2] == n_steps and shape[3] == meter
        client.send("/dd/play")
        # the whole phrase twice: 6 MIDI clocks a step
        dump.wait_for(_clocks_after_start(2 * n_steps * 6 + 1), timeout=60)
        client.send("/dd/stop")
        msgs = dump.wait_for(lambda m: any(data == ALL_NOTES_OFF for _, data in m), timeout=15)
    finally:
        client.close()
        dump.stop()
        assert d.stop() == 0, d.output()
    want = set()
    for r in range(rows):
        note, steps, lv = loop[5 + 3 * r], loop[6 + 3 * r], levels[1 + r]
        want |= {(k, note, round(127 * int(lv[k]) / 9)) for k, c in enumerate(steps) if c == "x"}
    start = next(f for f, data in msgs if data == bytes([START]))
    notes = [(f - start, data[1], data[2]) for f, data in msgs
             if f >= start and data[0] == NOTE_ON and data[2] > 0]
    assert notes, "no note-on between Start and Stop"
    got = set()
    swing = SWING * STEP_FRAMES
    for frames, note, velocity in notes:
        # the nearest grid point, straight or swung: an even step's note on its step, an odd step's a quarter
        # step later (the frame-exact timing itself is tests/test_jack_timing.py's)
        step = int((frames + swing / 2) // STEP_FRAMES)
        early = frames - step * STEP_FRAMES
        if early < swing / 2:
            assert step % 2 == 0, f"note {note} {frames} frames after Start: odd step {step} not swung"
        else:
            assert step % 2 == 1 and abs(early - swing) < swing / 2, \
                f"note {note} {frames} frames after Start (step {step}): off the grid"
        got.add((step % n_steps, note, velocity))
    assert got == want, f"played {sorted(got - want)[:5]} not announced; missing {sorted(want - got)[:5]}"
