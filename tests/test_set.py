"""The performer's set (contract v1.2, issue 22): taste profiles, recency, /dd/vary, /dd/fill, /dd/recall.

In process first (a real learner and store, the recording playback of test_session.py), then over
OSC on a running daemon (with a kill -9 in between).
"""

from __future__ import annotations

import csv
import http.client
import json
import logging
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest
import torch
from playwright.sync_api import expect
from test_session import Harness
from test_web import PageDaemon, browser, loop_element, page  # noqa: F401  (fixtures: a real browser)

from deepdrummer_live import commands
from deepdrummer_live.errors import CommandError
from deepdrummer_live.learn.critic import LEAN_CONFIG, Trainer, with_overrides
from deepdrummer_live.loop import LoopRecord
from deepdrummer_live.player.controller import program_event
from deepdrummer_live.sound import pattern
from deepdrummer_live.storage import dataset
from deepdrummer_live.storage.store import Store

from daemon import CLI, REPO, start_with_client, wait_for


@pytest.fixture
def harness(kit, tmp_path):
    h = Harness(kit, tmp_path / "state").start()
    yield h
    h.close()


def cells_changed(a: list[str], b: list[str]) -> int:
    return sum(x != y for ra, rb in zip(a, b) for x, y in zip(ra, rb))


# --- store -------------------------------------------------------------------------------------------

OLD_SCHEMA = """
CREATE TABLE loops(id INTEGER PRIMARY KEY, created REAL, kit TEXT, samples TEXT,
                   notes TEXT, roles TEXT, grid TEXT, p_like REAL, mode TEXT, bpm REAL);
CREATE TABLE ratings(seq INTEGER PRIMARY KEY AUTOINCREMENT, loop_id INTEGER, rating INTEGER,
                     ts REAL, p_like REAL, undone INTEGER DEFAULT 0);
CREATE TABLE train_log(step INTEGER, ts REAL, loss REAL);
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
"""


def old_state_dir(path, kit):
    """A state dir as a release before profiles (and before levels) wrote it: 2 likes, 1 dislike."""
    path.mkdir(parents=True)
    db = sqlite3.connect(path / "state.sqlite")
    db.executescript(OLD_SCHEMA)
    samples = [s.name for s in kit.samples[:4]]
    for i, rating in [(1, 1), (2, 0), (3, 1)]:
        db.execute("INSERT INTO loops VALUES (?,?,?,?,?,?,?,?,?,?)",
                   (i, 0.0, kit.name, json.dumps(samples), json.dumps([36, 38, 42, 46]),
                    json.dumps(["kick", "snare", "closed_hat", "open_hat"]), "|".join(["x..." * 4] * 4), 0.5,
                    "explore", 120.0))
        db.execute("INSERT INTO ratings(loop_id, rating, ts, p_like) VALUES (?,?,?,?)", (i, rating, 1.0 + i, 0.5))
    db.commit()
    db.close()
    return path


def test_an_old_state_dir_opens_with_its_ratings_in_the_default_profile(kit, tmp_path):
    state = old_state_dir(tmp_path / "old", kit)
    rows, _ = dataset.read_ratings(state)  # read-only, before any migration
    assert [r.profile for r in rows] == ["default"] * 3
    store = Store(state)
    try:
        assert store.totals() == (2, 1) and store.profiles() == [("default", 3)]
        assert store.add_rating(2, True, 0.5, "verse") == (1, 0)  # another profile's rating of the same loop
        assert store.totals("default") == (2, 1) and store.effective_rating(2, "default") == 0
        store.add_profile("verse")
        assert store.profiles() == [("default", 3), ("verse", 1)]
        assert store.undo_last("default") == (3, 1)  # the profile's own last rating, not verse's
        assert store.totals("verse") == (1, 0) and store.totals("default") == (1, 1)
    finally:
        store.close()
    rows, _ = dataset.read_ratings(state)
    assert sorted((r.loop.id, r.profile, r.label) for r in rows) == [(1, "default", "like"), (2, "default", "dislike"),
                                                                     (2, "verse", "like")]


def test_a_copied_profile_learns_from_its_source_up_to_the_copy(tmp_path):
    store = Store(tmp_path / "s")
    try:
        for _ in range(3):
            store.add_loop(LoopRecord.of(kit="k", samples=["a"], notes=[36], roles=["kick"], steps=["x" * 16],
                                         p_like=0.5, mode="explore", tempo=120.0))
        store.add_rating(1, True, 0.5)
        store.add_rating(2, False, 0.5)
        store.add_profile("chorus", "default")
        store.add_rating(3, True, 0.5)  # default's, after the copy: not chorus's
        store.add_rating(2, True, 0.5, "chorus")  # chorus changed its mind about loop 2
        assert store.training_ratings("chorus") == [(1, 1), (2, 1)]
        assert store.training_ratings("default") == [(1, 1), (2, 0), (3, 1)]
        assert store.profiles() == [("default", 3), ("chorus", 1)]
    finally:
        store.close()


# --- profiles in a session -----------------------------------------------------------------------------

def test_profiles_keep_their_own_ratings_totals_undo_and_taste(harness):
    s, h = harness.session, harness
    assert commands.execute(s, "profile") == ("default", 0)
    first = s.current.id
    commands.execute(s, "like", (), origin="a")
    wait_for(lambda: s.current.id != first, what="the next loop")
    commands.execute(s, "dislike")
    wait_for(lambda: s.learner.trainer.ready() and not s.worker.jobs, what="default learnt both")
    with pytest.raises(CommandError, match="not allowed"):
        commands.execute(s, "profile", ("../etc",))
    with pytest.raises(CommandError, match="does not exist"):
        commands.execute(s, "profile", ("verse", "nope"))
    assert s.profile == "default"
    assert commands.execute(s, "profile", ("verse",), origin="b") == ("verse", 0)
    assert h.messages("/dd/profile")[-1] == (("verse", 0), "b")
    assert (s.likes, s.dislikes) == (0, 0) and s.status_args()[:2] == [0, 0]
    assert h.store.get_meta("profile") == "verse"  # durable before acknowledged
    first = s.current.id
    s.next()
    wait_for(lambda: s.current.id != first, what="a loop from the verse's critic")
    assert s.current.proposal.profile == "verse"
    assert abs(s.current.record.p_like - 0.5) < 1e-6  # an untrained taste: P(like) 0.5 for every loop
    assert s.learner.trainer.examples == {}
    commands.execute(s, "like")
    assert h.messages("/dd/rated")[-1][0][2:] == (1, 0)
    commands.execute(s, "undo")
    with pytest.raises(CommandError, match="nothing to undo"):
        commands.execute(s, "undo")  # the default profile's ratings are not the verse's to undo
    assert (s.likes, s.dislikes) == (0, 0)
    assert h.store.totals("default") == (1, 1)  # verse's undo left default alone
    assert commands.execute(s, "profile", ("chorus", "default")) == ("chorus", 0)
    wait_for(lambda: s.learner.profile == "chorus", what="the chorus critic in use")
    assert len(s.learner.trainer.examples) == 2  # a copy of default's taste and what it learnt from
    assert commands.execute(s, "profile_select", (0,)) == ("default", 2)
    assert commands.execute(s, "profile_next") == ("verse", 0)
    assert [n for n, _ in h.store.profiles()] == ["default", "verse", "chorus"]


def test_profiles_survive_a_restart(kit, tmp_path):
    h = Harness(kit, tmp_path / "state").start()
    commands.execute(h.session, "like")
    commands.execute(h.session, "profile", ("verse",))
    s = h.session
    s.next()
    wait_for(lambda: s.current.proposal.profile == "verse", what="a verse loop")
    verse = s.current.id
    commands.execute(s, "dislike")
    wait_for(lambda: s.current.id != verse, what="the next verse loop")
    commands.execute(s, "like")
    wait_for(lambda: s.learner.trainer.steps > 0, what="the verse's critic trained")
    h.close()
    assert (tmp_path / "state" / "profiles" / "verse" / "critic.pt").exists()
    assert (tmp_path / "state" / "critic.pt").exists()
    h = Harness(kit, tmp_path / "state").start()
    try:
        assert h.session.profile == "verse" and (h.session.likes, h.session.dislikes) == (1, 1)
        assert h.learner.profile == "verse" and len(h.learner.trainer.examples) == 2
        assert len(h.learner._tastes["default"]["examples"]) == 1
    finally:
        h.close()


def test_program_change_selects_the_nth_profile(harness, caplog):
    s = harness.session
    commands.execute(s, "profile", ("verse",))
    commands.execute(s, "profile", ("default",))
    assert program_event([0xC5, 1]) == {"type": "program", "number": 1}  # any channel
    assert program_event([0x95, 1, 100]) is None
    s.on_player_event(program_event([0xC0, 1]))
    assert s.profile == "verse"
    errors = len(harness.messages("/dd/error"))
    with caplog.at_level(logging.WARNING):
        s.on_player_event(program_event([0xC0, 7]))
    assert s.profile == "verse" and "Program Change 7" in caplog.text
    assert len(harness.messages("/dd/error")) == errors  # ignored and logged, not an error to anyone


# --- vary, fill, recall --------------------------------------------------------------------------------

def test_variations_stay_within_the_bounds(kit):
    gen = torch.Generator().manual_seed(3)
    source = pattern.random_loops(1, len(kit), gen, "cpu")
    out = pattern.variations(source, 200, len(kit), gen)
    assert pattern.within_variation(source, out).all()
    changed = (out.grid != source.grid).sum(dim=(1, 2))
    assert changed.min() >= 1 and changed.max() <= 16  # a quarter of 4 x 16
    assert ((out.sample_ids == source.sample_ids).sum(dim=1) >= 2).all()
    fills = pattern.fills(source, 50, gen)
    assert torch.equal(fills.levels[:, :, :12], source.levels[:, :, :12].expand(50, -1, -1))
    assert torch.equal(fills.sample_ids, source.sample_ids.expand(50, -1))


def test_vary_makes_the_next_loop_a_variation(harness):
    s = harness.session
    before = s.current.record
    commands.execute(s, "vary")
    wait_for(lambda: s.current.id != before.id, what="the variation")
    after = s.current.record
    assert len(after.steps) == len(before.steps) and len(after.steps[0]) == len(before.steps[0])
    assert sum(a == b for a, b in zip(after.samples, before.samples)) >= len(before.samples) / 2
    assert 1 <= cells_changed(after.steps, before.steps) <= len(before.steps) * len(before.steps[0]) // 4
    assert s.vary_of is None  # one variation; the loops after it are searched again
    s.next()
    wait_for(lambda: s.current.id != after.id, what="a searched loop")
    assert s.current.proposal.vary_of is None


def test_a_fill_plays_one_bar_then_the_loop_goes_on(harness):
    s, t = harness.session, harness.playback
    with pytest.raises(CommandError, match="stopped"):
        commands.execute(s, "fill")
    commands.execute(s, "play")
    loop = s.current
    commands.execute(s, "fill")
    with pytest.raises(CommandError, match="on its way"):
        commands.execute(s, "fill")
    fill = wait_for(lambda: s.fill_loop, what="the fill sent for the bar line")
    assert t.loops[-1] == (fill.id, True) and s.current is loop
    assert fill.record.steps[0][:12] == loop.record.steps[0][:12] and fill.record.samples == loop.record.samples
    t.bar_line()  # the fill plays
    filled = harness.messages("/dd/filled")
    assert filled and filled[-1][0][:2] == (fill.id, loop.id)
    assert t.loops[-1] == (loop.id, True)  # the loop is sent again for the bar line after
    t.bar_line()
    assert s.current is loop and s.fill_loop is None


def test_recall_brings_back_an_earlier_loop_with_its_own_id(harness, kit):
    s = harness.session
    first = s.current
    commands.execute(s, "dislike")
    wait_for(lambda: s.current.id != first.id, what="the next loop")
    commands.execute(s, "recall", (first.id,))
    last = harness.messages("/dd/loop")[-1][0]
    assert last[0] == first.id and s.current.id == first.id
    assert [last[4 + 3 * r + 2] for r in range(4)] == first.record.steps
    assert harness.messages("/dd/levels")[-1][0] == (first.id, *first.record.levels)
    with pytest.raises(CommandError, match="never proposed"):
        commands.execute(s, "recall", (999_999,))
    foreign = harness.store.add_loop(LoopRecord.of(kit=kit.name, samples=["no-such-sample"] * 4, notes=[36] * 4,
                                                   roles=["kick"] * 4, steps=["x" * 16] * 4, p_like=0.5,
                                                   mode="explore", tempo=120.0))
    with pytest.raises(CommandError, match="no-such-sample"):
        commands.execute(s, "recall", (foreign,))
    assert s.current.id == first.id
    commands.execute(s, "play")
    commands.execute(s, "recall", (foreign - 1,))  # while playing: at the next bar line
    assert s.current.id == first.id and s.pending.id == foreign - 1
    harness.playback.bar_line()
    assert s.current.id == foreign - 1


# --- recency ---------------------------------------------------------------------------------------------

def test_recent_ratings_weigh_more_with_a_half_life():
    model = torch.nn.Linear(1, 2)
    flat = Trainer(with_overrides(LEAN_CONFIG, half_life=0), model, None, torch.Generator())
    halving = Trainer(with_overrides(LEAN_CONFIG, half_life=10), model, None, torch.Generator())
    assert torch.equal(flat.recency(5), torch.ones(5))
    w = halving.recency(21)
    assert w[-1] == 1.0 and abs(float(w[-11]) - 0.5) < 1e-6 and abs(float(w[0]) - 0.25) < 1e-6
    halving.set_example(1, torch.zeros(1), 1)
    halving.set_example(2, torch.zeros(1), 0)
    halving.set_example(1, torch.zeros(1), 0)  # a re-rating is the newest
    assert list(halving.examples) == [2, 1]


class _OneFeatureCritic(torch.nn.Module):
    """A like head on one number: just enough of a critic for Trainer.fit_head."""

    def __init__(self):
        super().__init__()
        self.mlp = torch.nn.Sequential(torch.nn.Linear(1, 2))

    def head_input(self, feats):
        return feats

    def forward(self, feats):
        return torch.log_softmax(self.mlp(feats), dim=1)


def test_a_half_life_follows_a_change_of_mind():
    """30 ratings liking x = +1 and disliking x = -1, then 10 the other way round: without recency the
    old majority wins; with a half-life of 5 ratings the critic follows the performer's new mind."""
    liked_at = {}
    for half_life in (0, 5):
        model = _OneFeatureCritic()
        trainer = Trainer(with_overrides(LEAN_CONFIG, half_life=half_life), model, None, torch.Generator())
        for i in range(40):
            x = 1.0 if i % 2 else -1.0
            trainer.set_example(i, torch.tensor([x]), int((x > 0) == (i < 30)))
        trainer.train()
        with torch.no_grad():
            liked_at[half_life] = model(torch.tensor([[1.0], [-1.0]]))[:, 1].exp().tolist()
    assert liked_at[0][0] > 0.5 > liked_at[0][1]  # still the old taste
    assert liked_at[5][1] > 0.5 > liked_at[5][0]  # the new one


# --- over OSC, with a restart and a kill -9 ----------------------------------------------------------------

def run_cli(*args):
    return subprocess.run([*CLI, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_the_set_over_osc_survives_kill_9(tmp_path):
    state = tmp_path / "state"
    d, c = start_with_client(state)
    try:
        c.send("/dd/profile")
        assert c.expect("/dd/profile") == ["default", 0]
        c.send("/dd/status")
        first = c.expect("/dd/status")[2]
        c.send("/dd/like")
        assert c.expect("/dd/rated") == [first, "like", 1, 0]
        second = c.expect("/dd/loop")[0]
        for bad in (["a b"], ["x" * 33], ["verse", "nope"], [3]):
            c.send("/dd/profile", *bad)
            assert c.expect("/dd/error")[1] == "/dd/profile"
        c.send("/dd/profile", "verse")
        assert c.expect("/dd/profile") == ["verse", 0]
        c.send("/dd/dislike")
        assert c.expect("/dd/rated") == [second, "dislike", 0, 1]  # the verse's totals
        third = c.expect("/dd/loop")
        c.send("/dd/status")
        assert c.expect("/dd/status")[:2] == [0, 1]
        c.send("/dd/vary")
        varied = c.expect("/dd/loop")
        assert varied[0] > third[0] and varied[3] == third[3] and len(varied) == len(third)
        rows = [(third[4 + 3 * r], third[6 + 3 * r]) for r in range(4)]
        new_rows = [(varied[4 + 3 * r], varied[6 + 3 * r]) for r in range(4)]
        assert sum(a[0] == b[0] for a, b in zip(rows, new_rows)) >= 2
        assert 1 <= cells_changed([r[1] for r in rows], [r[1] for r in new_rows]) <= 16
        c.send("/dd/recall", first)
        recalled = c.expect("/dd/loop")
        assert recalled[0] == first
        while c.expect("/dd/levels")[0] != first:  # earlier loops' levels come first
            pass
        c.send("/dd/recall", 999_999)
        assert c.expect("/dd/error")[1] == "/dd/recall"
        c.send("/dd/fill")  # stopped: a fill needs a bar line to come
        assert "stopped" in c.expect("/dd/error")[0]
    except BaseException:
        print(d.output())
        raise
    finally:
        d.kill9()
        c.close()
    listed = run_cli("profiles", "--state-dir", str(state))
    assert listed.returncode == 0 and listed.stdout.splitlines() == ["0 default 1", "1 verse 1"]
    d, c = start_with_client(state)
    try:
        c.send("/dd/profile")
        assert c.expect("/dd/profile") == ["verse", 1]
        c.send("/dd/undo")
        assert c.expect("/dd/undone")[1:] == [0, 0]
        c.send("/dd/profile", "default")
        assert c.expect("/dd/profile") == ["default", 1]
    finally:
        assert d.stop() == 0, d.output()
        c.close()
    out = tmp_path / "export"
    exported = run_cli("dataset", "export", "--state-dir", str(state), "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(open(out / "ratings.csv", newline="")))
    assert [(int(r["loop_id"]), r["profile"]) for r in rows] == [(first, "default")]


def test_a_fill_over_osc_plays_one_bar(tmp_path):
    d, c = start_with_client(tmp_path / "state", "--autoplay", "--tempo", "240")
    try:
        c.send("/dd/status")
        current = c.expect("/dd/status")[2]
        c.send("/dd/fill")
        filled = c.expect("/dd/filled", timeout=30)
        assert filled[0] > current and filled[1] == current and len(filled) == 2 + 4
        c.send("/dd/ping")
        c.expect("/dd/pong")
        assert not [m for m in c.received() if m[0] == "/dd/loop"]  # the loop goes on: no new loop
        c.send("/dd/status")
        assert c.expect("/dd/status")[2] == current
    finally:
        assert d.stop() == 0, d.output()
        c.close()


def test_run_rejects_a_bad_profile_and_half_life(tmp_path):
    for flags, word in ((["--profile", "a/b"], "--profile"), (["--half-life", "-3"], "--half-life")):
        out = subprocess.run([*CLI, "run", "--headless", "--state-dir", str(tmp_path / "s"), *flags], cwd=REPO,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and word in out.stderr and len(out.stderr.strip().splitlines()) == 1


# --- the page: profile selector, Vary and Fill buttons, the library with recall and downloads -----------------

def http_get(host: str, port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


TRAVERSALS = ("/library/../state.sqlite", "/library/..%2fstate.sqlite", "/library/%2e%2e/web-token",
              "/library/%2e%2e%2fstate.sqlite", "/library//etc/passwd", "/library/%2fetc%2fpasswd",
              "/library/000001-liked.mid/../../state.sqlite", "/library/000001-x.txt", "/library/daemon.log",
              "/library/..%5cstate.sqlite")


def test_the_page_has_profiles_vary_fill_and_the_library(tmp_path, page):
    d = PageDaemon(tmp_path / "state").start()
    c = d.osc
    try:
        page.goto(d.url)
        expect(page.locator("#conn")).to_have_text("connected")
        first = d.status()[2]
        expect(page.get_by_role("combobox", name="profile", exact=True)).to_have_value("default")
        page.get_by_role("button", name="Like", exact=True).click()
        assert c.expect("/dd/saved", timeout=30)[0] == first
        entry = page.locator(f'[data-library-loop-id="{first}"]')
        expect(entry).to_be_visible()
        href = entry.get_by_label(f"loop #{first} .mid").get_attribute("href")
        status, body = http_get("127.0.0.1", d.web_port, href)
        assert status == 200 and body.startswith(b"MThd")
        for ext, magic in (("wav", b"RIFF"), ("sfz", b"//")):
            status, body = http_get("127.0.0.1", d.web_port, entry.get_by_label(f"loop #{first} .{ext}")
                                    .get_attribute("href"))
            assert status == 200 and body.startswith(magic), (ext, body[:20])
        for path in TRAVERSALS:  # never a file outside the library
            status, body = http_get("127.0.0.1", d.web_port, path)
            assert status in (400, 403, 404) and b"SQLite" not in body and b"root:" not in body, (path, status)

        entry.get_by_role("button", name=f"Recall loop #{first}").click()
        assert c.expect("/dd/loop")[0] > first  # the loop after the like came first
        while c.expect("/dd/loop")[0] != first:
            pass
        expect(loop_element(page)).to_have_attribute("data-loop-id", str(first))

        page.get_by_label("new profile name").fill("verse")
        page.get_by_role("button", name="New profile").click()
        assert c.expect("/dd/profile") == ["verse", 0]
        expect(page.get_by_role("combobox", name="profile", exact=True)).to_have_value("verse")
        page.get_by_role("combobox", name="profile", exact=True).select_option("default")
        assert c.expect("/dd/profile") == ["default", 1]

        page.get_by_role("button", name="Vary", exact=True).click()
        varied = c.expect("/dd/loop")
        assert varied[0] > first
        expect(loop_element(page)).to_have_attribute("data-loop-id", str(varied[0]))
        page.get_by_role("button", name="Fill", exact=True).click()  # stopped: the page shows why not
        expect(page.locator("#error")).to_contain_text("stopped")
        page.get_by_role("button", name="Play", exact=True).click()
        expect(page.locator("#transport")).to_have_text("playing")
        page.get_by_role("button", name="Fill", exact=True).click()
        assert c.expect("/dd/filled", timeout=30)[1] == varied[0]
    finally:
        c.close()
        d.stop()


def test_library_downloads_need_the_token_off_loopback(tmp_path):
    d = PageDaemon(tmp_path / "state", "--web-host", "0.0.0.0").start()
    try:
        token = re.search(r"token=([\w-]+)", d.printed_url()).group(1)
        d.osc.send("/dd/save", "keep")
        loop_id, mid, _ = d.osc.expect("/dd/saved", timeout=30)
        name = Path(mid).name
        assert http_get("127.0.0.1", d.web_port, "/library")[0] == 403
        assert http_get("127.0.0.1", d.web_port, f"/library/{name}")[0] == 403
        assert http_get("127.0.0.1", d.web_port, f"/library/{name}?token=wrong")[0] == 403
        status, body = http_get("127.0.0.1", d.web_port, f"/library?token={token}")
        assert status == 200 and json.loads(body)["loops"][0]["loop_id"] == loop_id
        status, body = http_get("127.0.0.1", d.web_port, f"/library/{name}?token={token}")
        assert status == 200 and body.startswith(b"MThd")
        for path in TRAVERSALS:
            status, body = http_get("127.0.0.1", d.web_port, f"{path}?token={token}")
            assert status in (400, 403, 404) and b"SQLite" not in body, (path, status)
    finally:
        d.osc.close()
        d.stop()
