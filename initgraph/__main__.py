"""``python -m initgraph``: the same command line as ``initgraph``."""

from ._cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
