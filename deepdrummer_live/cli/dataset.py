"""`deepdrummer-live dataset export|import`: a session's ratings as a dataset, and back into a critic.

`export` writes `OUT/ratings.csv` (storage/dataset.py), `OUT/audio/<loop_id>.wav` for every line
(the project's one mix, `render_bars`, at the loop's tempo) and `OUT/README.md` (the data card).
`import` pretrains a critic from one or more exported datasets (participants merged), or replays
one participant's ratings through a fresh critic and prints how well it predicted each next one.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from deepdrummer_live.cli.flags import flag_errors
from deepdrummer_live.errors import KitError, StateError, UsageError
from deepdrummer_live.storage.dataset import COLUMNS, KIT_PATH_META, Rating, read_csv, read_ratings, write_csv

if TYPE_CHECKING:  # numpy only for a type: every `deepdrummer-live` call (e.g. `send`) builds this parser
    import numpy as np

WAV_SR = 44100


def add_parser(sub) -> None:
    """Register `dataset export` and `dataset import` (called by cli/main.py)."""
    ds = sub.add_parser("dataset", help="export a session's ratings as a dataset; import datasets into a critic")
    ds_sub = ds.add_subparsers(dest="dataset_command", parser_class=type(ds))
    exp = ds_sub.add_parser("export", help="ratings.csv + audio/<loop_id>.wav + README.md (a data card)")
    exp.add_argument("--state-dir", type=Path, default=None, help="the session to export [the default state dir]")
    exp.add_argument("--out", type=Path, required=True, help="folder to write (new, or an earlier export)")
    exp.add_argument("--kit", default=None, help="kit to render the audio with [the one the session used]")
    exp.add_argument("--participant", default="", help="a name or code for the person who rated (no real names)")
    imp = ds_sub.add_parser("import", help="pretrain a critic from datasets, or replay one participant's ratings")
    imp.add_argument("datasets", nargs="+", type=Path, help="folders written by `dataset export`")
    imp.add_argument("--out", type=Path, default=None, help="write the pretrained critic here (for `run --critic`)")
    imp.add_argument("--replay", action="store_true",
                     help="replay the ratings in order: predict each one before learning from it")
    imp.add_argument("--kit", default=None, help="kit the loops are rebuilt with [the dataset's kit]")
    imp.add_argument("--device", default="cpu")
    imp.add_argument("--seed", type=int, default=1)
    imp.add_argument("--json", action="store_true", help="replay: last stdout line is one JSON object")
    imp.add_argument("--profile", default=None, metavar="NAME",
                     help="only the ratings of this taste profile (the `profile` column) [every rating]")


def cmd(args) -> int:
    if args.dataset_command == "export":
        return cmd_export(args)
    if args.dataset_command == "import":
        return cmd_import(args)
    raise UsageError("dataset: give a subcommand: `deepdrummer-live dataset export` or `dataset import`")


# --- export -----------------------------------------------------------------------------------------

def resolve_session_kit(kit_arg: str | None, meta: dict[str, str], kit_names: set[str]):
    """The kit to render with: --kit, else the folder `run` recorded, else the kit's name under kits/."""
    from deepdrummer_live.sound.kit import load_kit

    if kit_arg is not None:
        with flag_errors("--kit"):
            return load_kit(kit_arg)
    tried = []
    for candidate in [meta.get(KIT_PATH_META)] + sorted(kit_names):
        if not candidate:
            continue
        try:
            return load_kit(candidate)
        except KitError as exc:
            tried.append(str(exc))
    raise KitError(f"the kit the session used ({', '.join(sorted(kit_names)) or 'unknown'}) cannot be found "
                   f"({'; '.join(tried) or 'no kit recorded'}); pass --kit with its folder")


def render_rating(kit, rating: Rating, sr: int = WAV_SR) -> np.ndarray:
    """One bar of a rated loop at its tempo through the one mix -> float32 `[samples]`."""
    import torch

    from deepdrummer_live.sound import pattern
    from deepdrummer_live.sound.render import render_bars, sample_bank, step_length

    audio = kit.audio_at(sr)
    loop = rating.loop
    ids = [kit.index_of(name) for name in loop.samples]
    bank = sample_bank([audio[i] for i in ids], step_length(loop.tempo, sr), loop.n_steps, "cpu")
    levels = pattern.strings_to_levels(loop.levels)[None]
    return render_bars(levels, torch.arange(len(ids))[None], bank)[0].numpy()


def mark_experiment(ratings: list[Rating], state_dir: Path) -> None:
    """An experiment participant's state dir: each rating's phase, and the participant's code."""
    from deepdrummer_live.experiment import PLAN_FILE, Plan

    if not (state_dir.expanduser() / PLAN_FILE).exists():
        return
    plan = Plan.load(state_dir.expanduser() / PLAN_FILE)
    phase2 = {loop_id for loop_id, _ in plan.items}
    for r in ratings:
        r.phase = "2" if r.loop.id in phase2 else "1"
        r.participant = r.participant or plan.participant


def prepare_out(out: Path) -> Path:
    """OUT and OUT/audio; an earlier export is replaced, any other non-empty folder is refused."""
    out = out.expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file; give a folder to write the dataset into")
    if out.is_dir() and any(out.iterdir()) and not (out / "ratings.csv").exists():
        raise UsageError(f"--out {str(out)!r} is not empty and holds no earlier export; give a new folder")
    try:
        (out / "audio").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(f"--out {str(out)!r}: cannot create it ({exc.strerror}); give a writable folder") from exc
    return out


def cmd_export(args) -> int:
    import soundfile as sf

    from deepdrummer_live.paths import default_state_dir

    state_dir = args.state_dir or default_state_dir()
    ratings, meta = read_ratings(state_dir, args.participant)
    mark_experiment(ratings, Path(state_dir))
    kit = resolve_session_kit(args.kit, meta, {r.loop.kit for r in ratings}) if ratings else None
    out = prepare_out(args.out)
    wanted = set()
    for r in ratings:
        wav = out / "audio" / f"{r.loop.id}.wav"
        sf.write(wav, render_rating(kit, r), WAV_SR, subtype="PCM_24")
        wanted.add(wav.name)
    for stale in (out / "audio").glob("*.wav"):  # from an earlier export of ratings since undone
        if stale.name not in wanted:
            stale.unlink()
    write_csv(ratings, out / "ratings.csv")
    (out / "README.md").write_text(data_card(ratings, kit.name if kit else "", Path(state_dir)), encoding="utf-8")
    likes = sum(r.liked for r in ratings)
    print(f"{out}: {len(ratings)} ratings ({likes} like, {len(ratings) - likes} dislike), "
          f"{len(ratings)} wav files, README.md")
    return 0


COLUMN_DOCS = {
    "loop_id": "the loop's id in its session (unique and increasing there; the wav is `audio/<loop_id>.wav`)",
    "label": "`like` or `dislike`: the rating in effect (a re-rating replaces, an undo takes back)",
    "time": "when the rating was given, ISO 8601 UTC",
    "ts": "the same as Unix seconds",
    "kit": "the kit's name (a built-in kit under `kits/`, or the folder the performer pointed `--kit` at)",
    "tempo": "BPM the loop played at (the wav is rendered at it)",
    "n_steps": "steps per row: bars x the meter's 16ths per bar (16: one 4/4 bar of 16ths)",
    "meter": "the loop's meter: 4/4, 3/4, 6/8, 5/4 or 7/8 (16, 12, 12, 20, 14 steps a bar)",
    "bars": "bars in the loop (a phrase of 1, 2 or 4 bars, one after the other in `steps`)",
    "samples": "JSON list, one per row: the kit sample the row plays (path in the kit, no suffix)",
    "notes": "JSON list, one per row: the General MIDI drum note it was sent on (channel 10)",
    "roles": "JSON list, one per row: the drum role (kick, snare, closed_hat, ...)",
    "steps": "JSON list, one per row: one character per step, `x` a hit, `.` a rest",
    "levels": "JSON list, one per row: `.` a rest, `1`-`9` a hit's level (velocity round(127 x level / 9), "
              "2.5 dB a level); loops stored before levels existed show the default level `7` on every hit",
    "p_like": "the critic's P(like) when the loop was proposed (before this rating)",
    "mode": "how the loop was chosen: explore, good, bad or random (the paper's generate, sample good/bad, random)",
    "participant": "a code for the person who rated (`dataset export --participant`, or the experiment's code)",
    "phase": "in an experiment (`deepdrummer-live experiment`): 1 (rated while the critic learnt) or 2 (blind "
             "evaluation; `mode` says good or random); empty for a normal session",
    "profile": "the taste profile that was current when the loop was rated (`--profile`, `/dd/profile`; "
               "`default` for a session without profiles); a loop rated in two profiles has a line in each",
}


def data_card(ratings: list[Rating], kit: str, state_dir: Path) -> str:
    likes = sum(r.liked for r in ratings)
    modes = Counter(r.loop.mode for r in ratings)
    span = (f"from {ratings[0].time} to {ratings[-1].time}" if ratings else "none yet")
    columns = "\n".join(f"| `{c}` | {COLUMN_DOCS[c]} |" for c in COLUMNS)
    return f"""# DeepDrummer Live ratings ({state_dir.name or 'session'})

## What

{len(ratings)} one-bar drum loops rated by one performer in a DeepDrummer Live session: {likes} liked,
{len(ratings) - likes} disliked; ratings {span}. Kit: `{kit or 'none'}`. How the loops were chosen:
{', '.join(f'{m or "unknown"} {n}' for m, n in modes.most_common()) or 'none'}.

Each line of `ratings.csv` is one loop and the performer's verdict on it; `audio/<loop_id>.wav` is
that loop as the performer heard it: one bar at its tempo, 44.1 kHz, 24-bit mono, rendered by the
project's one mix (every hit at its level's gain, rows summed, times 0.5, the loop turned down to
peak at -1 dBFS if it would go above; a sample's tail past the bar end wraps to its start, as a
looping bar sounds). The wavs are straight: swing (`/dd/swing`) is how a loop was played, not
part of the loop, and is not stored per loop; the critic too hears the straight bar.

## How it was collected

`deepdrummer-live run` proposed loops (the DeepDrummer generator: 4 kit samples, 16 steps; searched
with a critic that learns from the ratings as they come, Alain et al., ISMIR 2020) and played them
over MIDI and audio. The performer rated them with like/dislike (OSC, MIDI controller, terminal or web
page). Only the ratings in effect are here: a loop rated twice keeps its last rating, an undone rating
is left out. Loops that were skipped without a rating are not included. Exported with
`deepdrummer-live dataset export`.

## Columns (`ratings.csv`, UTF-8, with a header)

| column | meaning |
|---|---|
{columns}

## How to load

```python
import csv, json
import soundfile as sf

rows = list(csv.DictReader(open("ratings.csv", newline="", encoding="utf-8")))
for row in rows:
    steps = json.loads(row["steps"])          # e.g. ["x...x...x...x...", ...]
    liked = row["label"] == "like"
    audio, sr = sf.read(f"audio/{{row['loop_id']}}.wav")
```

With pandas: `df = pd.read_csv("ratings.csv", converters={{c: json.loads for c in
["samples", "notes", "roles", "steps", "levels"]}})`. To pretrain a critic from it (several datasets
merge into one): `deepdrummer-live dataset import DIR [DIR...] --out critic.pt`, then
`deepdrummer-live run --critic critic.pt`. To replay the ratings through a fresh critic:
`deepdrummer-live dataset import DIR --replay`.

## License

The ratings and loop descriptions are released by the performer under CC BY 4.0 (attribution: the
participant code above, or "a DeepDrummer Live performer"). The audio files are renders of the kit's
samples: with a built-in kit (`dd-analog`, `dd-digital`, synthesized by the project) they are under the
project's MIT license; with any other kit the samples' own license applies, so check it before
publishing the `audio/` folder (the CSV alone rebuilds every loop from the kit).

## Limits

One performer, one session, one kit; ratings of loops the critic chose (not a uniform sample of
loops: see `mode`); a like means "I liked this loop in this session", not a lasting judgement.
"""


# --- import -----------------------------------------------------------------------------------------

def load_datasets(paths: list[Path]) -> list[Rating]:
    """Every dataset's ratings, merged; loop ids are renumbered per dataset so they stay unique."""
    merged: list[Rating] = []
    for k, path in enumerate(paths):
        rows = read_csv(path)
        name = path.expanduser().resolve().name
        for r in rows:
            r.participant = r.participant or name
            if len(paths) > 1:
                r.loop = replace(r.loop, id=(k + 1) * 1_000_000 + r.loop.id)
        merged += rows
    return merged


def cmd_import(args) -> int:
    import torch

    from deepdrummer_live.learn import taste_start
    from deepdrummer_live.learn.search import resolve_device
    from deepdrummer_live.sound.kit import load_kit

    torch.set_num_threads(min(2, torch.get_num_threads()))
    if args.out is None and not args.replay:
        raise UsageError("dataset import: say what to do: --out critic.pt (pretrain) and/or --replay")
    ratings = load_datasets(args.datasets)
    if args.profile is not None:  # one taste: ratings of different songs' profiles would contradict each other
        found = sorted({r.profile for r in ratings})
        ratings = [r for r in ratings if r.profile == args.profile]
        if not ratings:
            raise UsageError(f"--profile {args.profile!r}: no rating of that profile in the dataset(s); "
                             f"use one of {', '.join(found) or 'none'}")
    if not ratings:
        raise StateError(f"{', '.join(map(str, args.datasets))}: no ratings to import; export a session with ratings")
    with flag_errors("--kit"):
        kit = load_kit(args.kit) if args.kit else resolve_session_kit(None, {}, {r.loop.kit for r in ratings})
    with flag_errors("--device"):
        device = resolve_device(args.device)
    if args.replay:
        result = taste_start.replay(kit, ratings, device, args.seed)
        for k, acc in result["curve"]:
            print(f"after {k:4d} ratings: predicted the next ones {acc:.2f}")
        print(f"accuracy predicting each next rating: first half {result['first_half']:.2f}, "
              f"second half {result['second_half']:.2f} ({result['ratings']} ratings, "
              f"{result['skipped']} not rebuildable with kit {kit.name})")
        if args.json:
            print(json.dumps(result))
    if args.out is not None:
        learner, used = taste_start.critic_from_ratings(kit, ratings, device, args.seed)
        taste_start.write_critic(learner, args.out)
        participants = sorted({r.participant for r in ratings})
        print(f"{args.out}: critic pretrained on {used} ratings of {len(participants)} participant(s) "
              f"({', '.join(participants)}); start a session with `deepdrummer-live run --critic {args.out}`")
    return 0

