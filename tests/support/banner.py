"""Reading what `dvp-gateway serve` prints at start: its banner lines, matched by pattern."""

from __future__ import annotations

import re
import subprocess
import time


def read_banner(process: subprocess.Popen[str], patterns: dict[str, re.Pattern[str]], deadline: float,
                seen: list[str] | None = None) -> dict[str, str]:
    """``key -> first group`` of each pattern, read line by line until all have matched
    (every line read is appended to ``seen``); fails if the process ends or time runs out."""
    assert process.stdout is not None
    found: dict[str, str] = {}
    while len(found) < len(patterns):
        assert time.monotonic() < deadline, f"the gateway did not print its whole banner; got {found}"
        line = process.stdout.readline()
        assert line, f"the gateway exited early with {process.poll()}"
        if seen is not None:
            seen.append(line)
        for key, pattern in patterns.items():
            if match := pattern.search(line.strip()):
                found[key] = match.group(1)
    return found
