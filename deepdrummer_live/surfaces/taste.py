"""The taste map in words (the terminal, the report; the page gets the same words in its snapshot).

Plain data in, text out: no torch, so the terminal and `report` can show it cheaply.
"""

from __future__ import annotations

from deepdrummer_live.vocab import sureness


def taste_line(taste: dict | None, width: int = 120) -> str:
    """A taste map (learn/grid.taste_map) in one line: '+ snare/clap on weak beats (sure), ... | - ...'."""
    if not taste or not (taste.get("likes") or taste.get("avoids")):
        return "none yet: rate a few loops"
    likes = ", ".join(f"{name} ({sureness(z)})" for name, _, z, *_ in taste.get("likes", []))
    avoids = ", ".join(f"{name} ({sureness(z)})" for name, _, z, *_ in taste.get("avoids", []))
    return f"+ {likes or '-'}  | - {avoids or '-'}"[:width]
