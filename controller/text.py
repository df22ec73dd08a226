"""Small pure helpers on text, shared across layers: no IO, no state.

Part of the vocabulary: imports nothing of ours, and any module may import it.
"""
from __future__ import annotations


def first_line(text: str | bytes, limit: int | None = None, *, sep: str | None = None) -> str:
    """The first non-blank line of `text`, stripped, cut to `limit` characters.

    Bytes (a command's stdout or stderr) are decoded as UTF-8, bad bytes
    replaced. Lines end at every boundary str.splitlines() knows, or only at
    `sep` when it is given.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = text.splitlines() if sep is None else text.split(sep)
    line = next((ln.strip() for ln in lines if ln.strip()), "")
    return line if limit is None else line[:limit]
