"""Draws docs/images/architecture.png (run: .venv/bin/python docs/architecture_figure.py)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

BOXES = {
    "clients": (0.2, 5.2, 2.6, 1.2, "web page (phone),\nOSC: send, Pd, REAPER,\ncontroller app, tests", "#e8eef7"),
    "osc": (3.6, 5.2, 2.6, 1.2, "surfaces/osc.py, web.py\ntui.py: parse, validate", "#dfe9d8"),
    "table": (3.6, 6.9, 2.6, 0.8, "commands.py\nthe one command table", "#dfe9d8"),
    "session": (3.6, 3.2, 2.6, 1.4, "session.py\ncurrent loop, modes, locks,\nbar-synchronous switch\nemit() to surfaces", "#dfe9d8"),
    "worker": (3.6, 0.4, 2.6, 2.2, "worker.py (thread)\nsound > learn:\nrender > MFCC > critic\n> search (batched,\ntorch), library files", "#f6e7cf"),
    "sqlite": (0.2, 3.2, 2.6, 1.4, "state dir (storage/)\nSQLite WAL (ratings)\ncritic.pt (atomic)\nlibrary/ .mid .wav .sfz", "#eeeeee"),
    "player": (7.0, 3.2, 2.8, 2.4, "player/ process\n(own interpreter, own GIL)\nclock: internal / MIDI / Link\nMIDI out + in, controller\nswing, velocity, pyo audio", "#f3d9d9"),
    "daw": (7.0, 0.6, 2.8, 1.6, "DAW / synth / speakers\nchannel 10 GM drums\nMIDI clock, Link", "#e8eef7"),
}
ARROWS = [("clients", "osc", "UDP, WebSocket"), ("osc", "table", "run"), ("osc", "session", ""),
          ("session", "worker", "jobs"), ("session", "sqlite", "fsync"), ("session", "player", "pipe"),
          ("player", "daw", "MIDI / audio")]


def anchors(a, b):
    """Edge midpoints facing each other, so arrows never cross the boxes' text."""
    ax_, ay, aw, ah, *_ = BOXES[a]
    bx, by, bw, bh, *_ = BOXES[b]
    if bx >= ax_ + aw or ax_ >= bx + bw:  # side by side
        left, right = ((ax_ + aw, ay, ah), (bx, by, bh)) if bx >= ax_ + aw else ((bx + bw, by, bh), (ax_, ay, ah))
        y = (max(left[1], right[1]) + min(left[1] + left[2], right[1] + right[2])) / 2
        return (left[0] + 0.05, y), (right[0] - 0.05, y)
    top, bottom = ((ay, ax_, aw), (by + bh, bx, bw)) if ay > by else ((by, bx, bw), (ay + ah, ax_, aw))
    x = (max(top[1], bottom[1]) + min(top[1] + top[2], bottom[1] + bottom[2])) / 2
    return (x, top[0] - 0.05), (x, bottom[0] + 0.05)


def main(out=Path(__file__).parent / "images" / "architecture.png"):
    fig, ax = plt.subplots(figsize=(10, 7.8))
    for x, y, w, h, text, color in BOXES.values():
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", fc=color, ec="#444"))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9, family="monospace")
    for a, b, label in ARROWS:
        (x0, y0), (x1, y1) = anchors(a, b)
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=dict(arrowstyle="<->", color="#333"))
        ax.text((x0 + x1) / 2 + (0.08 if x0 == x1 else 0), (y0 + y1) / 2 + 0.06, label, fontsize=8, color="#333",
                ha="left" if x0 == x1 else "center", va="bottom")
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 7.8)
    ax.axis("off")
    ax.set_title("DeepDrummer Live: processes and threads", fontsize=12)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    print(out)


if __name__ == "__main__":
    main()
