"""What the example plugins share: a document of the corpus.

The hook contexts are initgraph's own: ``initgraph.InitContext`` and ``initgraph.CommitContext``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Document"]


@dataclass(frozen=True)
class Document:
    """One Markdown file of the corpus: its path relative to the corpus root, title and text."""

    path: str
    title: str
    text: str
