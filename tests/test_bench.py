"""`deepdrummer-live bench --json`: its last stdout line has the contract's keys with sane values.

Not a timing test: how fast is the bench's job (docs/performance.md), not this file's.
"""

from __future__ import annotations

import json
import math
import subprocess

import pytest

from daemon import CLI, REPO

CONTRACT_KEYS = ("candidates_per_s", "baseline_candidates_per_s", "rating_to_next_ms_p50", "rating_to_next_ms_p95",
                 "train_step_ms", "peak_rss_mb")  # numbers; plus "device" (protocol.md, "bench --json keys")


@pytest.mark.slow
def test_bench_json_has_the_contract_keys():
    proc = subprocess.run([*CLI, "bench", "--json", "--seconds", "0.3", "--ratings", "3"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])  # the last line is the JSON
    for key in CONTRACT_KEYS:
        value = result[key]
        assert isinstance(value, (int, float)) and not isinstance(value, bool), (key, value)
        assert math.isfinite(value) and value > 0, (key, value)
    # the ratio is of the two figures measured in this run (not a number kept from elsewhere)
    # of the unrounded figures: within what rounding the two to 0.1 can hide (the paper's path is a few /s)
    batched, baseline = result["candidates_per_s"], result["baseline_candidates_per_s"]
    lowest, highest = (batched - 0.05) / (baseline + 0.05), (batched + 0.05) / (baseline - 0.05)
    assert lowest - 0.01 <= result["speedup"] <= highest + 0.01, result
    assert result["critic"] == "grid"
    for shape in ("8x2", "8x4"):  # contract v1.2's bigger loops, measured beside the default 4x1
        for key in (f"candidates_per_s_{shape}", f"rating_to_next_ms_p95_{shape}"):
            assert math.isfinite(result[key]) and result[key] > 0, (key, result)
    assert isinstance(result["device"], str) and result["device"].split(":")[0] in ("cpu", "cuda", "mps")
    assert result["ratings"] == 3
