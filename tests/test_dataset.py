"""`dataset export` from a real daemon's session rated over real OSC; `dataset import` (pretrain, merge,
replay) and `pretrain --likes` on datasets and audio made here."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from deepdrummer_live.cli.main import main
from deepdrummer_live.learn import checkpoint
from deepdrummer_live.learn.learner import Learner
from deepdrummer_live.learn.simuser import make_user, parse_loop
from deepdrummer_live.loop import LoopRecord
from deepdrummer_live.sound import pattern
from deepdrummer_live.sound.kit import load_kit
from deepdrummer_live.sound.render import render_bar_numpy, step_length
from deepdrummer_live.storage.dataset import COLUMNS, read_csv
from deepdrummer_live.storage.store import Store

from daemon import EXTERNAL_KIT, REPO, Daemon, OscClient

EXE = Path(sys.executable).parent / "deepdrummer-live"


def rate_over_osc(state_dir: Path, verdicts: list[bool]) -> dict[int, tuple[bool, list, list]]:
    """Rate the current loop with each verdict over OSC, undo the last;
    -> loop_id: (liked, /dd/loop args, levels from /dd/levels)."""
    with Daemon(state_dir) as daemon:
        client = OscClient(daemon.port)
        client.send("/dd/subscribe")
        client.send("/dd/status")
        current = client.expect("/dd/status")[2]
        client.send("/dd/next")

        def next_loop() -> tuple[list, list]:
            loop, levels = client.expect("/dd/loop", 30), client.expect("/dd/levels", 30)
            assert levels[0] == loop[0]
            return loop, levels[1:]

        loop, levels = next_loop()
        while loop[0] <= current:  # one announced before we subscribed may still be on its way
            loop, levels = next_loop()
        rated: dict[int, tuple[bool, list, list]] = {}
        for liked in verdicts:
            loop_id = loop[0]
            client.send("/dd/like" if liked else "/dd/dislike", loop_id)
            assert client.expect("/dd/rated", 30)[:2] == [loop_id, "like" if liked else "dislike"]
            rated[loop_id] = (liked, loop, levels)
            loop, levels = next_loop()
        client.send("/dd/undo")
        undone = client.expect("/dd/undone", 30)[0]
        del rated[undone]
        client.close()
        assert daemon.stop() == 0
    return rated


def test_export_writes_the_ratings_in_effect_their_audio_and_a_data_card(tmp_path):
    rated = rate_over_osc(tmp_path / "state", [True, False, True, True, False])
    out = tmp_path / "dataset"
    done = subprocess.run([str(EXE), "dataset", "export", "--state-dir", str(tmp_path / "state"), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with open(out / "ratings.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        assert list(reader.fieldnames) == list(COLUMNS)
        rows = list(reader)
    assert [int(r["loop_id"]) for r in rows] == sorted(rated)  # the undone rating is left out
    kit = load_kit(None)
    for row in rows:
        liked, loop, levels = rated[int(row["loop_id"])]
        msg = parse_loop(loop)
        assert row["label"] == ("like" if liked else "dislike")
        steps = json.loads(row["steps"])
        assert steps == msg.steps
        assert json.loads(row["samples"]) == msg.samples
        assert json.loads(row["notes"]) == msg.notes
        assert json.loads(row["levels"]) == levels
        assert float(row["tempo"]) == pytest.approx(msg.tempo) and row["kit"] == kit.name
        # The wav is the loop through the one mix: the numpy reference renderer agrees.
        audio, sr = sf.read(out / "audio" / f"{row['loop_id']}.wav", dtype="float32")
        samples = [kit.audio_at(sr)[kit.index_of(n)] for n in json.loads(row["samples"])]
        expected = render_bar_numpy(levels, samples, step_length(float(row["tempo"]), sr))
        assert audio.shape == expected.shape
        assert np.abs(audio - expected).max() < 2e-4  # 24-bit quantisation
    assert sorted(p.name for p in (out / "audio").iterdir()) == sorted(f"{i}.wav" for i in rated)
    card = (out / "README.md").read_text()
    for needle in ["## How it was collected", "## License", "## How to load", *(f"`{c}`" for c in COLUMNS)]:
        assert needle in card
    assert read_csv(out)[0].loop.steps == json.loads(rows[0]["steps"])


def test_export_refuses_a_folder_that_is_not_an_export(tmp_path, capsys):
    Store(tmp_path / "state").close()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("keep me")
    assert main(["dataset", "export", "--state-dir", str(tmp_path / "state"), "--out", str(tmp_path / "busy")]) == 2
    err = capsys.readouterr().err
    assert "busy" in err and "new folder" in err and err.count("\n") == 1
    assert (tmp_path / "busy" / "thesis.tex").read_text() == "keep me"
    assert main(["dataset", "export", "--state-dir", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2


def simulated_session(state_dir: Path, user: str, n: int, seed: int) -> Store:
    """A state dir holding `n` random loops of the built-in kit rated by a simulated user."""
    kit = load_kit(None)
    rng = random.Random(seed)
    judge = make_user(user)
    store = Store(state_dir)
    for _ in range(n):
        ids = [rng.randrange(len(kit)) for _ in range(4)]
        steps = ["".join("x" if rng.random() < 0.5 else "." for _ in range(16)) for _ in ids]
        if judge.name == "fotf" and rng.random() < 0.4:  # enough likes to learn from
            steps[0] = "x...x...x...x..."
            ids[0] = kit.ids_with_role("kick")[0]
        samples = [kit.samples[i] for i in ids]
        loop_id = store.add_loop(LoopRecord.of(kit=kit.name, samples=[s.name for s in samples],
                                               notes=[s.note for s in samples], roles=[s.role for s in samples],
                                               steps=steps, p_like=0.5, mode="explore", tempo=120.0))
        args: list = [loop_id, 0.5, 120.0, 16]
        for s, st in zip(samples, steps):
            args += [s.name, s.note, st]
        store.add_rating(loop_id, judge.judge(parse_loop(args)), 0.5)
    return store


def test_import_merges_participants_into_a_critic_and_replays_one(tmp_path, capsys):
    torch.set_num_threads(1)
    for name, seed in (("ann", 1), ("bob", 2)):
        simulated_session(tmp_path / name, "fotf", 40, seed).close()
        assert main(["dataset", "export", "--state-dir", str(tmp_path / name), "--out", str(tmp_path / f"ds-{name}"),
                     "--participant", name]) == 0
    critic = tmp_path / "critic.pt"
    assert main(["dataset", "import", str(tmp_path / "ds-ann"), str(tmp_path / "ds-bob"), "--out", str(critic),
                 "--replay", "--json"]) == 0
    printed = capsys.readouterr().out
    replay = json.loads(printed.strip().splitlines()[-2] if "critic pretrained" in printed.splitlines()[-1]
                        else printed.strip().splitlines()[-1])
    assert replay["ratings"] == 80 and replay["skipped"] == 0 and replay["curve"]
    assert "80 ratings of 2 participant(s) (ann, bob)" in printed
    # The checkpoint loads like a session's own, and the critic learnt the merged ratings.
    kit = load_kit(None)
    store = Store(tmp_path / "resume")
    store.checkpoint_path.write_bytes(critic.read_bytes())
    learner = Learner(kit, torch.device("cpu"), seed=5)
    assert checkpoint.load(learner, store) and not learner.needs_hearing()
    ratings = read_csv(tmp_path / "ds-ann") + read_csv(tmp_path / "ds-bob")
    p = [float(learner.scorer.score(learner.model, learner.loops_from_record(r.loop))[0]) for r in ratings]
    liked = [pi for pi, r in zip(p, ratings) if r.liked]
    disliked = [pi for pi, r in zip(p, ratings) if not r.liked]
    assert liked and disliked and np.mean(liked) > np.mean(disliked) + 0.1
    # A new session starts from it: `run --critic` (its training steps show at once).
    with Daemon(tmp_path / "fresh", "--critic", str(critic)) as daemon:
        client = OscClient(daemon.port)
        client.send("/dd/status")
        assert client.expect("/dd/status")[5] == int(torch.load(critic, weights_only=True)["train_steps"]) > 0
        client.close()
        assert daemon.stop() == 0
        assert f"critic from {critic}" in daemon.output()
    # The learning bench replays one participant the same way.
    bench = subprocess.run([sys.executable, str(REPO / "bench" / "learning.py"), "--replay", str(tmp_path / "ds-ann"),
                            "--json"], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert bench.returncode == 0, bench.stderr
    result = json.loads(bench.stdout.strip().splitlines()[-1])[str(tmp_path / "ds-ann")]
    assert result["ratings"] == 40 and result["predicted"] >= 30
    # the accuracy is over every prediction: the two halves' accuracies weighted by their sizes
    half = result["predicted"] // 2
    assert result["accuracy"] == pytest.approx(
        (result["first_half"] * half + result["second_half"] * (result["predicted"] - half)) / result["predicted"])


def render_tiled(kit, steps: list[str], names: list[str], bpm: float, bars: int, sr: int = 44100) -> np.ndarray:
    samples = [kit.audio_at(sr)[kit.index_of(n)] for n in names]
    return np.tile(render_bar_numpy(steps, samples, step_length(bpm, sr)), bars)


@pytest.mark.usefixtures("paper_kit")  # fails, never skips, where the kit is missing
def test_pretrain_from_loops_at_other_tempos(tmp_path):
    torch.set_num_threads(1)
    kit = load_kit(EXTERNAL_KIT)
    kick = next(s.name for s in kit.samples if s.role == "kick")
    snare = next(s.name for s in kit.samples if s.role == "snare")
    hat = next(s.name for s in kit.samples if s.role == "closed_hat")
    groove = (["x.....x...x.....", "....x.......x...", "x.x.x.x.x.x.x.x.", "x.......x......."],
              [kick, snare, hat, kick])
    likes = tmp_path / "likes"
    likes.mkdir()
    for bpm in (100, 140):
        sf.write(likes / f"groove-{bpm}.wav", render_tiled(kit, *groove, bpm, bars=8), 44100)
    (likes / "notes.txt").write_text("not audio: skipped")
    out = tmp_path / "critic.pt"
    done = subprocess.run([str(EXE), "pretrain", "--likes", str(likes), "--kit", str(EXTERNAL_KIT), "--out", str(out),
                           "--max-bars", "4", "--negatives", "32"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    found = {Path(line.split(":")[0]).name: float(line.split(" at ")[1].split()[0])
             for line in done.stdout.splitlines() if " BPM" in line}
    assert found["groove-100.wav"] == pytest.approx(100, abs=3)
    assert found["groove-140.wav"] == pytest.approx(140, abs=4)
    store = Store(tmp_path / "state")
    store.checkpoint_path.write_bytes(out.read_bytes())
    learner = Learner(kit, torch.device("cpu"), seed=3, kind="lean-hearing")  # pretrain --likes: a critic that hears
    assert checkpoint.load(learner, store)
    liked = learner.loops_from_record(LoopRecord.of(kit=kit.name, samples=groove[1], steps=groove[0]))
    randoms = pattern.random_loops(64, len(kit), torch.Generator().manual_seed(9), "cpu")
    p_groove = float(learner.scorer.score(learner.model, liked)[0])
    p_random = learner.scorer.score(learner.model, randoms)
    # The groove (heard at the reference tempo, rendered by the kit) ranks above most random loops.
    assert p_groove > float(p_random.quantile(0.75)), (p_groove, p_random.tolist())


def test_pretrain_without_audio_says_what_to_give(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["pretrain", "--likes", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "no bars found" in err and err.count("\n") == 1
