"""A plugin that reads the matrix and reduces it with the numpy method its config names."""

from initgraph import hookimpl


@hookimpl
def initgraph_init(ctx):
    matrix = ctx.results["embeddings"]  # read-only, mapped from shared memory: not a copy
    return float(getattr(matrix, ctx.config["reduce"])())
