"""Implementation: orders from the accepted holdings to the production target — only after every gate."""

from __future__ import annotations

import pandas as pd
from dagster import Failure, MetadataValue, asset

from portfolio_assets.assets._step import Step, ledger_for
from portfolio_assets.assets.common import OWNERS, PARTITIONS
from portfolio_assets.assets.gates import gate_problems
from portfolio_assets.holdings import current_holdings
from portfolio_assets.quant.orders import build_orders
from portfolio_assets.resources import PortfolioSettings


@asset(
    group_name="implementation",
    partitions_def=PARTITIONS,
    deps=["audit_ledger", "target_weights"],
    kinds={"python", "parquet"},
    owners=OWNERS,
    description=(
        "Orders from the last accepted holdings (`portfolio-assets accept --date D`) to the production "
        "engine's target: BUY / SELL / HOLD on signed net weights, size, target weight; changes under 1% "
        "are HOLD as dust with feat_partial_rebalance. Runs only when every blocking check passed in "
        "this run; in a later run it refuses when the latest gate evaluation failed, is missing or "
        "predates the stored data."
    ),
)
def implementation_orders(context, settings: PortfolioSettings):
    problems = gate_problems(settings, context.partition_key)
    if problems:
        ledger = ledger_for(settings, context.partition_key)
        if ledger is not None:
            ledger.note(context.run_id, {"refused": problems}, asset="implementation_orders")
        raise Failure(
            description="refusing to implement: " + "; ".join(problems),
            metadata={"gate_problems": MetadataValue.json(problems)},
        )
    with Step(context, settings, "implementation_orders", "implementation") as step:
        weights = step.read("allocation", "target_weights")
        prod = weights[weights["is_production"]]
        holdings = current_holdings(step.lake)
        current = holdings.set_index("symbol")["net_weight"] if holdings is not None else pd.Series(dtype=float)
        directions = pd.concat([prod.set_index("symbol")["direction"],
                                holdings.set_index("symbol")["direction"] if holdings is not None else pd.Series(dtype=str)])
        directions = directions[~directions.index.duplicated()]
        orders = build_orders(current, prod.set_index("symbol")["net_weight"], directions,
                              partial_rebalance=step.cfg.features.feat_partial_rebalance)
        step.params.update(production_engine=step.cfg.optimization.production_engine,
                           holdings_from=holdings.attrs.get("accepted_from") if holdings is not None else "empty book")
        step.write(orders)
        counts = orders["action"].value_counts().to_dict()
        return step.result(
            metrics={"orders": counts, "dust_skipped": int(orders["reason"].str.startswith("dust").sum()),
                     "gross_traded": float(orders["size"].sum()),
                     "holdings_from": holdings.attrs.get("accepted_from") if holdings is not None else "empty book"},
            preview=orders.sort_values("size", ascending=False),
        )
