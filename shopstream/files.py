"""Small file operations shared by the layers' writers."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path


def write_json_atomically(target: Path, content: dict, indent: int | None = 2) -> None:
    """Replaces `target` with `content` in one rename: readers see the old file or the new one,
    never a half-written one (publication pointers, sink markers and seals, the order-status table)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    staged.write_text(json.dumps(content, indent=indent) + "\n")
    os.replace(staged, target)


def text_output_lines(folder: Path) -> list[str]:
    """The lines of a Spark text output folder (`saveAsTextFile`): its part files in order."""
    return [line for part in sorted(folder.glob("part-*")) for line in part.read_text().splitlines()]
