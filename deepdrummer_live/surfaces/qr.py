"""A QR code as text, for the terminal surface: a phone scans it to open the rating page.

The code itself comes from segno (a well-kept, dependency-free QR encoder); here it is only drawn,
two modules per character cell with half blocks, so a 37-module code takes 19 lines.
"""

from __future__ import annotations

import segno

QUIET_ZONE = 2  # modules of light border; scanners need some, the standard's 4 costs lines a terminal lacks

# (upper is light, lower is light) -> cell. Light modules are drawn as blocks: on the dark background of
# most terminals that gives dark-on-light, the polarity every scanner reads.
HALF_BLOCKS = {(True, True): "█", (True, False): "▀", (False, True): "▄", (False, False): " "}


def qr_lines(text: str) -> list[str]:
    """`text` as a QR code: one string per two module rows, every string as wide as the code."""
    code = segno.make(text, error="l", micro=False)  # 'l': the smallest code; a screen is not a worn label
    rows = [[not bool(dark) for dark in row] for row in code.matrix_iter(scale=1, border=QUIET_ZONE)]
    if len(rows) % 2:
        rows.append([True] * len(rows[0]))  # more quiet zone below
    return ["".join(HALF_BLOCKS[(up, down)] for up, down in zip(rows[i], rows[i + 1]))
            for i in range(0, len(rows), 2)]
