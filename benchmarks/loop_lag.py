"""How long the event loop stalls while ``initgraph.aboot`` boots the example application.

A ticker task sleeps 1 ms at a time and records how late each wake-up is; the figure is the
largest lag over the boot (and the boot's wall time). Run from the repository's root::

    python benchmarks/loop_lag.py [init.toml] [--runs N] [--json]

``python -m benchmarks --only looplag`` runs it once per boot in a fresh process and judges the
worst stall against its target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import initgraph


async def one_boot(config: str) -> tuple[float, float, float]:
    """(max lag, 99th percentile lag, boot wall time), in seconds."""
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - before - 0.001)

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)  # the ticker is running
    started = time.perf_counter()
    async with initgraph.lifespan(config):
        wall = time.perf_counter() - started
    stop.set()
    await tick
    lags.sort()
    return lags[-1], lags[int(len(lags) * 0.99)], wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", nargs="?", default="init.toml")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="one boot; its figures as JSON")
    args = parser.parse_args()
    if args.json:
        worst, p99, wall = asyncio.run(one_boot(args.config))
        figures = {"max_lag_ms": worst * 1e3, "p99_lag_ms": p99 * 1e3, "wall_ms": wall * 1e3}
        print(json.dumps(figures))
        return
    results = [asyncio.run(one_boot(args.config)) for _ in range(args.runs)]
    for worst, p99, wall in results:
        print(f"max lag {worst * 1e3:6.2f} ms  p99 {p99 * 1e3:5.2f} ms  boot {wall * 1e3:7.1f} ms")
    print(f"median of max lag: {statistics.median(r[0] for r in results) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
