#!/usr/bin/env python
"""The comparison suite: ``python benchmarks/run.py [--quick | --smoke] [--json FILE]``.

The same as ``python -m benchmarks``; the code is in ``benchmarks/_suite.py`` and what each row
means is in ``benchmarks/README.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _suite import main

if __name__ == "__main__":
    sys.exit(main())
