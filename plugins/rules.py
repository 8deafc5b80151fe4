"""Plugin ``rules``: compile lint and redaction rules from config and scan the corpus with them.

Rules come from two tables: ``patterns`` (rule name -> regular expression) and ``prefer`` (a
discouraged word or phrase -> the preferred one, matched as whole words, case-insensitively).
Rules named in ``redact`` guard secrets: their findings never carry the matched text. Publishes
``lint.rules`` and ``lint.findings`` kernel style: scan first, then synchronize, then publish.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from initgraph import InitContext, hookimpl

from ._config import check_keys, get_str_table, get_strs
from ._types import Document

__all__ = ["Finding", "Lint", "Rule", "compile_rules", "initgraph_init", "lint", "scan"]

REDACTED = "[redacted]"


@dataclass(frozen=True)
class Rule:
    """A named regular expression; ``redact``: its findings hide what matched."""

    name: str
    pattern: re.Pattern[str]
    redact: bool = False


@dataclass(frozen=True)
class Finding:
    """A match of a rule: where it is (1-based line and column) and what matched."""

    path: str
    line: int
    column: int
    rule: str
    text: str


@dataclass(frozen=True)
class Lint:
    """The rules' sources, by name, and every finding sorted by place, then rule."""

    rules: tuple[tuple[str, str], ...]
    findings: tuple[Finding, ...]


def _compile(name: str, source: str, flags: int = 0) -> re.Pattern[str]:
    try:
        pattern = re.compile(source, flags)
    except re.error as exc:
        msg = f"rule {name!r}: bad regular expression {source!r}: {exc}"
        raise ValueError(msg) from None
    if pattern.search("") is not None:
        msg = f"rule {name!r}: {source!r} matches the empty string; every line would be a finding"
        raise ValueError(msg)
    return pattern


def compile_rules(
    patterns: Mapping[str, str],
    prefer: Mapping[str, str] | None = None,
    *,
    redact: Collection[str] = (),
) -> tuple[Rule, ...]:
    """Compile every rule; refuse bad expressions, duplicate names and unknown ``redact`` names."""
    rules = [Rule(name, _compile(name, src), name in redact) for name, src in patterns.items()]
    for word, better in (prefer or {}).items():
        name = f"prefer:{word}->{better}"
        source = r"\b" + r"\s+".join(re.escape(w) for w in word.split()) + r"\b"
        rules.append(Rule(name, _compile(name, source, re.IGNORECASE)))
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        msg = f"rule {duplicate!r} is defined twice"
        raise ValueError(msg)
    if unknown := sorted(set(redact) - set(patterns)):
        msg = f"redact names {unknown[0]!r}, which is not a rule of 'patterns'"
        raise ValueError(msg)
    return tuple(rules)


def scan(documents: Sequence[Document], rules: Sequence[Rule]) -> tuple[Finding, ...]:
    """Every match of every rule on every line of every document, in reading order."""
    findings = []
    for document in documents:
        for number, line in enumerate(document.text.splitlines(), start=1):
            for rule in rules:
                for match in rule.pattern.finditer(line):
                    text = REDACTED if rule.redact else match.group(0)
                    column = match.start() + 1
                    findings.append(Finding(document.path, number, column, rule.name, text))
    findings.sort(key=lambda f: (f.path, f.line, f.column, f.rule))
    return tuple(findings)


def lint(documents: Sequence[Document], rules: Sequence[Rule]) -> Lint:
    """Scan the documents and keep the rules' sources alongside the findings."""
    return Lint(tuple((r.name, r.pattern.pattern) for r in rules), scan(documents, rules))


@hookimpl
def initgraph_init(ctx: InitContext) -> Lint:
    check_keys(ctx.config, ("patterns", "prefer", "redact"), plugin=ctx.name)
    rules = compile_rules(
        get_str_table(ctx.config, "patterns", plugin=ctx.name),
        get_str_table(ctx.config, "prefer", plugin=ctx.name),
        redact=get_strs(ctx.config, "redact", (), plugin=ctx.name),
    )
    result = lint(ctx.results["corpus"], rules)
    ctx.log.info("%d rules, %d findings", len(rules), len(result.findings))
    ctx.synchronize()
    ctx.publish("lint.rules", result.rules)
    ctx.publish("lint.findings", result.findings)
    return result
