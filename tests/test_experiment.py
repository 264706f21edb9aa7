"""The paper's experiment end to end: simulated participants rate over real UDP OSC against the real
`deepdrummer-live experiment` daemon (phase I, then blind shuffled phase II), then `report` draws
the figures across participants and renders each one's best and worst loops."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
import soundfile as sf
from PIL import Image

from deepdrummer_live.experiment import BLIND_MODE, BLIND_P_LIKE, Plan
from deepdrummer_live.learn.simuser import make_user, parse_loop
from deepdrummer_live.storage.dataset import read_csv
from deepdrummer_live.storage.store import Store

from daemon import CLI, REPO, OscClient, free_udp_port, wait_for

PHASE1, PHASE2 = 6, 4


def wait_ready(proc: subprocess.Popen, client: OscClient, timeout: float = 90.0) -> None:
    def ready() -> bool:
        assert proc.poll() is None, "the experiment daemon exited during start-up"
        client.send("/dd/status")
        try:
            return client.expect("/dd/status", 0.5)[2] >= 0
        except TimeoutError:
            return False

    wait_for(ready, timeout, "the experiment daemon to answer /dd/status with a first loop", interval=0.1)


class ExperimentDaemon:
    """`deepdrummer-live experiment` for one participant, as a subprocess on a free port."""

    def __init__(self, root: Path, code: str, seed: int):
        self.port = free_udp_port()
        self.log = open(root.parent / f"{code}.log", "ab")
        self.proc = subprocess.Popen(
            [*CLI, "experiment", "--participant", code, "--state-dir", str(root), "--phase1", str(PHASE1),
             "--phase2", str(PHASE2), "--headless", "--osc-port", str(self.port), "--midi-backend", "none",
             "--audio", "none", "--seed", str(seed)], cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)
        self.client = OscClient(self.port)
        wait_ready(self.proc, self.client)
        self.client.drain()  # late answers to the readiness probes
        self.client.send("/dd/subscribe")

    def first_loop(self) -> list:
        """A loop announced after we subscribed (/dd/next brings one)."""
        self.client.send("/dd/status")
        last = self.client.expect("/dd/status")[2]
        self.client.send("/dd/next")
        loop = self.client.expect("/dd/loop", 60)
        while loop[0] <= last:
            loop = self.client.expect("/dd/loop", 60)
        return loop

    def stop(self) -> int:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def run_participant(root: Path, code: str, taste: str, seed: int, restart_in_phase2: bool = False) -> dict:
    """One participant's whole experiment over OSC; -> what the client saw."""
    user = make_user(taste)
    seen = {"phase2_p_like": [], "phase2_modes": [], "progress": [], "mode_refused": False, "resumed": None}
    daemon = ExperimentDaemon(root, code, seed)
    try:
        client = daemon.client
        client.send("/dd/experiment")
        assert client.expect("/dd/experiment") == [code, "1", 0, PHASE1]
        client.send("/dd/mode", "good")  # the plan chooses the loops: refused, nothing changes
        seen["mode_refused"] = "experiment" in client.expect("/dd/error")[0]
        loop = daemon.first_loop()
        phase = "1"
        while phase != "done":
            liked = user.judge(parse_loop(loop))
            client.send("/dd/like" if liked else "/dd/dislike", loop[0])
            assert client.expect("/dd/rated", 60)[0] == loop[0]
            progress = client.expect("/dd/experiment", 60)
            seen["progress"].append(progress[1:])
            phase = progress[1]
            rated_id = loop[0]
            loop = client.expect("/dd/loop", 120)
            assert loop[0] > rated_id
            if phase == "2" and restart_in_phase2 and progress[2] == 1 and seen["resumed"] is None:
                # Stop mid phase II and start again: the plan and its progress resume from the state dir.
                assert daemon.stop() == 0
                daemon = ExperimentDaemon(root, code, seed)
                client = daemon.client
                client.send("/dd/experiment")
                seen["resumed"] = client.expect("/dd/experiment")
                loop = daemon.first_loop()
            if phase == "2":
                seen["phase2_p_like"].append(loop[1])
                client.send("/dd/status")
                seen["phase2_modes"].append(client.expect("/dd/status")[3])
        assert daemon.stop() == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()
    return seen


@pytest.mark.slow
def test_experiment_with_simulated_participants_then_report(tmp_path):
    root = tmp_path / "study"
    people = {"p01": ("backbeat", 1), "p02": ("sparse", 2), "p03": ("fotf", 3)}
    for code, (taste, seed) in people.items():
        seen = run_participant(root, code, taste, seed, restart_in_phase2=code == "p01")
        if code == "p01":
            assert seen["resumed"] == [code, "2", 1, PHASE2]
        assert seen["mode_refused"]
        # Progress: phase I counts up to PHASE1, then phase II counts its blind loops to PHASE2.
        assert seen["progress"][:PHASE1] == [["1", i, PHASE1] for i in range(1, PHASE1)] + [["2", 0, PHASE2]]
        assert seen["progress"][-1] == ["done", PHASE2, PHASE2] and len(seen["progress"]) == PHASE1 + PHASE2
        # Blind: phase II loops show no P(like) and no mode.
        assert seen["phase2_p_like"] and all(p == pytest.approx(BLIND_P_LIKE) for p in seen["phase2_p_like"])
        assert set(seen["phase2_modes"]) == {BLIND_MODE}
        plan = Plan.load(root / "participants" / code / "experiment.json")
        assert plan.phase == "done" and sorted(plan.kinds) == ["good"] * (PHASE2 // 2) + ["random"] * (PHASE2 // 2)
        # Each phase II loop was made the way the plan said, in the plan's shuffled order; the store knows.
        store = Store(root / "participants" / code)
        assert [store.loop(i).mode for i, _ in plan.items] == [k for _, k in plan.items]
        # ...and the participant rated them in that order: the modes of the loops the store's ratings
        # name, in the order the ratings were given, are the plan's kinds
        phase2 = {i for i, _ in plan.items}
        with store.lock:
            order = [r[0] for r in store.db.execute("SELECT loop_id FROM ratings WHERE undone = 0 ORDER BY seq")]
        assert [store.loop(i).mode for i in order if i in phase2] == plan.kinds
        store.close()
    plans = [Plan.load(root / "participants" / c / "experiment.json").kinds for c in people]
    assert len({tuple(k) for k in plans}) > 1 or PHASE2 == 2  # seeded shuffles differ between participants

    out = tmp_path / "report"
    done = subprocess.run([*CLI, "report", "--state-dir", str(root), "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for name in ("experiment-phase1-like-rate.png", "experiment-phase2-good-vs-random.png"):
        with Image.open(out / name) as img:
            assert img.format == "PNG" and img.size[0] > 600
    pooled = {line.split()[2].rstrip(":"): line for line in done.stdout.splitlines() if line.startswith("phase II")}
    assert set(pooled) == {"good", "random"}
    assert f"/{len(people) * PHASE2 // 2} liked" in pooled["good"]
    listing = (out / "experiment-loops.md").read_text()
    wavs = [Path(w.strip("`")) for w in listing.split() if w.endswith(".wav`")]
    assert wavs and all(w.exists() for w in wavs)
    for code in people:
        assert f"## {code}" in listing and f"| {code} | " in listing
    audio, sr = sf.read(wavs[0])
    assert sr == 44100 and len(audio) > sr and abs(audio).max() > 0.01
    # A participant's dataset says which phase each rating belongs to.
    ds = tmp_path / "p01-dataset"
    done = subprocess.run([*CLI, "dataset", "export", "--state-dir", str(root / "participants" / "p01"), "--out",
                           str(ds)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = read_csv(ds)
    assert [r.phase for r in rows] == ["1"] * PHASE1 + ["2"] * PHASE2 and {r.participant for r in rows} == {"p01"}
    assert sorted(r.loop.mode for r in rows if r.phase == "2") == ["good"] * (PHASE2 // 2) + ["random"] * (PHASE2 // 2)
