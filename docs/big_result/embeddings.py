"""A plugin with a big result: a 100 MiB matrix of float64, as a model's embeddings might be."""

import numpy as np

from initgraph import hookimpl


@hookimpl
def initgraph_init(ctx):
    rows = ctx.config.get("rows", 12_800)  # 12 800 rows of 1 024 float64: 100 MiB
    return np.random.default_rng(0).standard_normal((rows, 1024))
