"""`bench`: hands over to the benchmark harness."""

from __future__ import annotations

import argparse


def cmd_bench(args: argparse.Namespace) -> int:
    from portfolio_assets.bench import main as bench_main

    return bench_main(args)
