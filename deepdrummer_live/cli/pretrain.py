"""`deepdrummer-live pretrain --likes DIR --out critic.pt`: a critic that starts from the performer's music.

Loops or tracks they like (any tempo) are beat-tracked, cut into bars and stretched to the
reference tempo (sound/bars.py); those bars are the likes, random loops of the generator with the
kit the dislikes (learn/taste_start.py). The checkpoint starts a session: `run --critic critic.pt`.
"""

from __future__ import annotations

from pathlib import Path

from deepdrummer_live.cli.flags import flag_errors
from deepdrummer_live.errors import UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("pretrain", help="a critic from music the performer likes (for `run --critic`)")
    p.add_argument("--likes", type=Path, required=True, help="folder of loops or tracks (wav/flac/aiff/ogg/mp3)")
    p.add_argument("--out", type=Path, default=Path("critic.pt"), help="checkpoint to write [critic.pt]")
    p.add_argument("--kit", default=None, help="the kit the session will use [built-in default kit]")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-bars", type=int, default=32, help="bars taken from each file at most [32]")
    p.add_argument("--negatives", type=int, default=None, help="random loops as dislikes [as many as bars]")
    p.add_argument("--critic-kind", default="lean-hearing", choices=("lean-hearing", "grid"),
                   help="lean-hearing: a critic that hears the mix learns from the bars as they sound (default: "
                        "music has no grid); grid: a hearing critic transcribes each bar into the loop it hears "
                        "and the critic that reads loops learns from those (needs a kit the hearing critic knows "
                        "well: a built-in kit, or one with a hearing critic of its own)")


def cmd(args) -> int:
    import numpy as np
    import torch

    from deepdrummer_live.learn import taste_start
    from deepdrummer_live.learn.search import resolve_device
    from deepdrummer_live.sound.bars import load_likes
    from deepdrummer_live.sound.kit import load_kit

    if args.max_bars < 1:
        raise UsageError(f"--max-bars {args.max_bars}: use 1 or more")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    with flag_errors("--kit"):
        kit = load_kit(args.kit)
    with flag_errors("--device"):
        device = resolve_device(args.device)
    sr = taste_start.critic_sr()
    with flag_errors("--likes"):
        found = load_likes(args.likes, sr, taste_start.reference_bar_samples(), args.max_bars)
    for f in found:
        print(f"{f.path}: {len(f.bars)} bars at {f.bpm:.1f} BPM")
    bars = np.concatenate([f.bars for f in found])
    learner = taste_start.critic_from_music(kit, bars, device, seed=args.seed, negatives=args.negatives,
                                            kind=args.critic_kind)
    taste_start.write_critic(learner, args.out)
    print(f"{args.out}: critic pretrained on {len(bars)} liked bars from {len(found)} file(s) against "
          f"{args.negatives or len(bars)} random loops of kit {kit.name}; start with "
          f"`deepdrummer-live run --kit {args.kit or kit.name} --critic {args.out}`")
    return 0
