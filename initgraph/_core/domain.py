"""Synchronization domains."""

from __future__ import annotations

from dataclasses import dataclass

from .._defs import DEFAULT_DOMAIN
from .._errors import ConfigError

__all__ = ["DEFAULT_DOMAIN", "Domain", "domain_name"]


@dataclass(frozen=True)
class Domain:
    """A named synchronization scope.

    A *registered* domain (the default) is covered by ``synchronize_full()`` with no domain; an
    *exclusive* one only by waits that name it, like the kernel's ``ASYNC_DOMAIN_EXCLUSIVE``.
    Wherever a domain is taken, its name (``str``) is accepted too.
    """

    __module__ = "initgraph"

    name: str
    exclusive: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            msg = f"domain name must be a non-empty str, got {self.name!r}"
            raise ConfigError(msg, key="domain")
        exclusive: object = self.exclusive  # typed bool, but callers pass anything
        if not isinstance(exclusive, bool):
            msg = f"exclusive of domain {self.name!r} must be True or False, got "
            msg += f"{exclusive!r} ({type(exclusive).__name__})"
            raise ConfigError(msg, key="exclusive")
        if len(self.name.encode()) > 120:
            msg = f"domain name {self.name!r} is too long; use at most 120 bytes"
            raise ConfigError(msg, key="domain")


def domain_name(domain: object) -> tuple[str, bool | None]:
    """The name of ``domain`` and whether it asks to be exclusive (None: as already declared)."""
    if domain is None:
        return DEFAULT_DOMAIN, None
    if isinstance(domain, Domain):
        return domain.name, domain.exclusive
    if isinstance(domain, str):
        Domain(domain)  # validates the name
        return domain, None
    msg = f"domain must be a Domain, a str or None, got {domain!r} ({type(domain).__name__})"
    raise ConfigError(msg, key="domain")
