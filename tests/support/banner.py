"""A `dvp-gateway serve` started by a test: what it prints at start (its banner lines,
matched by pattern), and its graceful stop."""

from __future__ import annotations

import re
import signal
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


def stop_gracefully(process: subprocess.Popen[str], timeout: float) -> bool:
    """SIGTERM (if still running) and wait; SIGKILL after ``timeout``. Whether it stopped
    by itself in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False
    return True
