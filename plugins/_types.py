"""Types the example plugins share: a document of the corpus and the hook contexts they use."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["CommitContext", "Document", "InitContext"]


@dataclass(frozen=True)
class Document:
    """One Markdown file of the corpus: its path relative to the corpus root, title and text."""

    path: str
    title: str
    text: str


class InitContext(Protocol):
    """What ``initgraph_init`` is given: the plugin's identity, its config and its inputs."""

    @property
    def name(self) -> str: ...

    @property
    def cookie(self) -> int: ...

    @property
    def domain(self) -> str: ...

    @property
    def config(self) -> Mapping[str, Any]: ...

    @property
    def results(self) -> Mapping[str, Any]: ...

    @property
    def log(self) -> logging.Logger: ...

    def synchronize(self, timeout: float | None = None) -> None: ...

    def publish(self, key: str, value: Any) -> None: ...


class CommitContext(InitContext, Protocol):
    """What ``initgraph_commit`` is given: an init context plus the boot's registry."""

    @property
    def registry(self) -> Mapping[str, Any]: ...
