"""Plugin ``corpus``: read every Markdown file under a folder into documents, sorted by path.

Publishes ``corpus.paths`` kernel style, from inside its init: it reads first, then synchronizes,
then publishes, so the paths land after every earlier plugin's publications in its domain.
"""

from __future__ import annotations

from pathlib import Path

from initgraph import InitContext, hookimpl

from ._config import check_keys, get_str
from ._text import title
from ._types import Document

__all__ = ["initgraph_init", "read_corpus"]


def read_corpus(root: Path, *, pattern: str = "*.md") -> tuple[Document, ...]:
    """Read every file matching ``pattern`` under ``root``, skipping hidden files and folders.

    Paths are relative to ``root``, with forward slashes; the documents come sorted by path.
    """
    if not root.is_dir():
        msg = f"corpus root {str(root)!r} is not a folder"
        raise FileNotFoundError(msg)
    documents = []
    for file in root.rglob(pattern):
        relative = file.relative_to(root)
        if not file.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        text = file.read_text(encoding="utf-8")
        documents.append(Document(relative.as_posix(), title(text, relative.stem), text))
    return tuple(sorted(documents, key=lambda d: d.path))


@hookimpl
def initgraph_init(ctx: InitContext) -> tuple[Document, ...]:
    check_keys(ctx.config, ("root", "pattern"), plugin=ctx.name)
    # A relative root is taken from the current directory, as on the command line.
    root = Path(get_str(ctx.config, "root", "docs", plugin=ctx.name)).resolve()
    documents = read_corpus(root, pattern=get_str(ctx.config, "pattern", "*.md", plugin=ctx.name))
    ctx.log.info("read %d documents under %s", len(documents), root)
    ctx.synchronize()
    ctx.publish("corpus.paths", tuple(d.path for d in documents))
    return documents
