"""Summarize a py-spy `--format raw` profile (collapsed stacks) into the hot functions."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>.*?)(?::\d+)?\)$")
_TOP = 20


def summarize(path: Path, top: int = _TOP) -> dict[str, Any]:
    """Own time and inclusive time per function, as shares of the active samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return {"samples": 0, "own": [], "inclusive": []}
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_name(frame) for frame in stack.split(";") if frame]
        # The first frames are the process and thread labels py-spy adds.
        frames = [f for f in frames if f is not None]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    return {
        "samples": total,
        "own": _shares(own, total, top),
        "inclusive": _shares(inclusive, total, top),
    }


def _name(frame: str) -> str | None:
    match = _FRAME.match(frame.strip())
    if match is None:
        return None
    file = match.group("file")
    short = "/".join(file.split("/")[-2:])
    return f"{match.group('function')} ({short})"


def _shares(counter: Counter[str], total: int, top: int) -> list[dict[str, Any]]:
    return [
        {"function": name, "share": round(count / total, 3)}
        for name, count in counter.most_common(top)
        if total
    ]
