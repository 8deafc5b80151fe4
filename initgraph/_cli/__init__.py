"""The ``initgraph`` command line (``main.main`` is the entry point).

Exit codes (``docs/cli.md``)::

    0    success
    1    a plugin failed (BootError, or another error a plugin caused)
    2    bad configuration or usage (ConfigError, PluginError, bad arguments, missing file)
    3    an internal error: a bug in initgraph
    130  interrupted (SIGINT, Ctrl-C)
    141  stdout was closed early (a pipe into ``head``)
    143  terminated (SIGTERM)
"""

from __future__ import annotations

PROG = "initgraph"
DEFAULT_CONFIG = "init.toml"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
EXIT_TERMINATED = 143
