"""Every shape of the contract plays on a real JACK port: notes, velocities and swing on the grid of
/dd/loop (contract v1.2: 1-8 rows, phrases of 1, 2 or 4 bars, meters), switching at the phrase's end."""

from __future__ import annotations

import pytest

from daemon import Daemon, OscClient
from jack_midi import ALL_NOTES_OFF, clocks_after_start, collect_until, jack_port, note_ons_by_clock

SWING = 0.25  # an odd step 1.5 of its 6 MIDI clocks late: between its 2nd and 3rd clock, never on one
TEMPO = 240.0


@pytest.mark.slow
@pytest.mark.parametrize("rows,bars,meter", [(8, 2, "7/8"), (3, 4, "6/8"), (1, 1, "5/4")])
def test_a_shape_plays_on_the_grid_of_its_loop(tmp_path, jack_server, rows, bars, meter):
    client = OscClient(0)
    d = Daemon(tmp_path / "state", "--notify", f"127.0.0.1:{client.port}", "--tempo", str(TEMPO), "--swing",
               str(SWING), "--rows", str(rows), "--bars", str(bars), "--meter", meter, midi="jack", audio="none")
    client.target = ("127.0.0.1", d.port)
    d.start()
    try:
        client.drain()
        with jack_port(jack_server, "in", "DeepDrummer") as probe:
            client.send("/dd/next")
            loop = client.expect("/dd/loop", timeout=60)
            levels = client.expect("/dd/levels")
            shape = client.expect("/dd/shape")
            n_steps = loop[3]
            assert shape[0] == loop[0] and shape[1] * shape[2] == n_steps and shape[3] == meter
            client.send("/dd/play")
            # the whole phrase twice: 6 MIDI clocks a step
            msgs = collect_until(probe, clocks_after_start(2 * n_steps * 6 + 1), timeout=60)
            client.send("/dd/stop")
            collect_until(probe, lambda data: data == ALL_NOTES_OFF, timeout=15, into=msgs)
    finally:
        client.close()
        assert d.stop() == 0, d.output()
    want = set()
    for r in range(rows):
        note, steps, lv = loop[5 + 3 * r], loop[6 + 3 * r], levels[1 + r]
        want |= {(k, note, round(127 * int(lv[k]) / 9)) for k, c in enumerate(steps) if c == "x"}
    notes = note_ons_by_clock(msgs)
    assert notes, "no note-on between Start and Stop"
    got = set()
    for tick, note, velocity in notes:
        step, off = divmod(tick, 6)
        # A straight step's note is due with its own clock (the same frame: it may come just before or just
        # after it); an odd step's, 1.5 clocks later, between the next clock and the one after
        # (the frame-exact timing itself is tests/test_jack_timing.py's)
        if off == 0 or (off == 1 and step % 2 == 0):
            assert step % 2 == 0, f"note {note} at clock {tick}: odd step {step} not swung"
        else:
            assert step % 2 == 1 and off in (1, 2), f"note {note} at clock {tick} (step {step}): off the grid"
        got.add((step % n_steps, note, velocity))
    assert got == want, f"played {sorted(got - want)[:5]} not announced; missing {sorted(want - got)[:5]}"
