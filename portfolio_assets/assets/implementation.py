"""Implementation: the book, orders from it to the production target (only after every gate), and
what was executed (`portfolio-assets accept`)."""

# No `from __future__ import annotations`: Dagster reads the `ExecutionsConfig` annotation at runtime.
import pandas as pd
from dagster import (
    AssetIn,
    AssetKey,
    AssetMaterialization,
    BackfillPolicy,
    Config,
    Failure,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
)

from portfolio_assets.assets._previous import PRIORITY_TAG, reread, wait_for_writer
from portfolio_assets.assets._step import Step, emit_range, ledger_for, previous_sessions, range_steps
from portfolio_assets.assets.common import OWNERS, after, attrs
from portfolio_assets.assets.gates import gate_summary, implementation_clearance
from portfolio_assets.holdings import EXECUTION_COLUMNS, book_after, empty_book
from portfolio_assets.ledger import LedgerError, file_hash
from portfolio_assets.quant.orders import ORDER_COLUMNS, build_orders
from portfolio_assets.resources import PortfolioSettings

ORDER_FLOATS = ("current_net_weight", "target_weight", "target_net_weight", "delta_net_weight", "size")


def refused_orders() -> pd.DataFrame:
    """The orders table of a refused partition: no order at all (the refusal's reason is in the
    materialization's `refused` metadata and in the ledger)."""
    return pd.DataFrame({c: pd.Series(dtype=float if c in ORDER_FLOATS else object) for c in ORDER_COLUMNS})


def withdraw_orders(context, settings: PortfolioSettings, reason: str) -> bool:
    """A gate failed: replace the partition's stored orders (from an earlier run) by the refused
    table, so no surface (`sql`, `status`, the UI, `accept`) shows them as current. Recorded as an
    intent/outcome pair of `implementation_orders` in the ledger (when it can still be appended to)
    and as a materialization with `refused` metadata in Dagster. False if there was nothing to
    withdraw."""
    lake = settings.lakehouse()
    partition = context.partition_key
    run_id = context.run.run_id  # a check's context has no `run_id` of its own
    if not lake.has_table("implementation", "implementation_orders", partition):
        return False
    if lake.read_table("implementation", "implementation_orders", partition).empty:
        return False
    path = lake.write_table("implementation", "implementation_orders", partition, refused_orders())
    try:
        ledger = ledger_for(settings, partition)
        if ledger is not None and ledger.path.exists():
            ledger.intent(run_id, "implementation_orders", {"withdraw": reason})
            ledger.outcome(run_id, "implementation_orders", {
                "status": "refused", "reason": reason[:2000],
                "outputs": {"implementation_orders": {"path": lake.relative(path), "hash": file_hash(path)}}})
    except (LedgerError, ValueError) as exc:
        context.log.warning(f"orders of {partition} withdrawn, but the ledger could not record it: {exc}")
    context.instance.report_runless_asset_event(AssetMaterialization(
        asset_key="implementation_orders", partition=partition,
        metadata={"refused": reason[:2000], "orders": 0, "withdrawn_by_run": run_id}))
    context.log.warning(f"implementation_orders of {partition} withdrawn: {reason}")
    return True


def _refuse(context, settings: PortfolioSettings, problems: list[str]):
    """Store the refused orders table (a materialization with the reason), then fail the step."""
    reason = "refusing to implement: " + "; ".join(problems)
    unrecorded = None
    step = Step(context, settings)
    try:
        step.__enter__()
    except LedgerError as exc:  # a ledger that cannot even be appended to: refuse without it
        step.ledger, unrecorded = None, str(exc)
    try:
        step.params.update(refused=problems, gates=gate_summary(context.instance, step.partition))
        yield from step.emit(refused_orders(), metrics={"orders": 0}, extra={
            "refused": reason[:2000], "gate_problems": MetadataValue.json(problems)})
        if unrecorded:
            reason += f" (the refusal is not in the ledger: {unrecorded})"
        raise Failure(description=reason, metadata={"gate_problems": MetadataValue.json(problems)})
    except BaseException as exc:
        step.__exit__(type(exc), exc, exc.__traceback__)
        raise

PREVIOUS_SESSION = TimeWindowPartitionMapping(start_offset=-1, end_offset=-1, allow_nonexistent_upstream_partitions=True)


def missing_book(stored: list[str], partition: str, previous: str | None) -> str | None:
    """Why the book of `partition` cannot be built when the previous session's holdings are not
    stored: None when no earlier book exists at all (the first book is empty), else the reason."""
    earlier = [p for p in stored if p < partition]
    if not earlier:
        return None
    return (f"holdings of the previous session {previous} are not stored (the latest book is {earlier[-1]}): "
            f"materialize them first, e.g. portfolio-assets backfill --from {earlier[-1]} --to {previous} "
            f"--select holdings")


HOLDINGS_KEY = AssetKey("holdings")


@asset(
    **attrs("holdings", 11),
    ins={"previous": AssetIn("holdings", partition_mapping=PREVIOUS_SESSION, metadata={"by_partition": True}),
         "executions": AssetIn("executions", partition_mapping=PREVIOUS_SESSION, metadata={"by_partition": True}),
         **after("run_manifest")},
    backfill_policy=BackfillPolicy.single_run(),
    # Last among the steps ready in a run (it reads nothing else of its own date): in a run beside
    # the previous date's, it waits for that date's book only once its own upstream is computed.
    op_tags={PRIORITY_TAG: "-1"},
    kinds={"python", "parquet"},
    owners=OWNERS,
    description=(
        "The book at the close of the session: the previous session's book plus what was executed of "
        "the previous session's orders (`executions`, recorded by `portfolio-assets accept`); nothing "
        "accepted means nothing traded. Signed `net_weight`, `weight` = |net_weight|. The first book is "
        "empty; a gap in the chain is refused with the range to materialize. A backfill computes the "
        "whole range's chain in one run (single-run backfill policy), one ledger record pair per date."
    ),
)
def holdings(context, settings: PortfolioSettings, previous: dict, executions: dict):
    """Chain the book through the range: each session's book is the previous one plus the previous
    session's accepted `executions`; waits for a previous book being written (`_previous`), refuses a
    gap in the chain."""
    sessions = previous_sessions(context, "previous")
    partitions = list(sessions)
    first, before = partitions[0], sessions[partitions[0]]
    lake = settings.lakehouse()
    # Consecutive dates run at once (a backfill's runs, two commands): wait for the previous book.
    writer, waited = wait_for_writer(context, lake, HOLDINGS_KEY, before) if before is not None else (None, 0.0)
    if waited and writer is None:
        reread(lake, "implementation", HOLDINGS_KEY, before, previous)
        reread(lake, "implementation", AssetKey("executions"), before, executions)
    with range_steps(context, settings, sessions, shifted=("previous", "executions"), computed=partitions) as steps:
        if writer is not None:
            raise ValueError(
                f"the book of {first} starts from the previous session's, and {before} is still being "
                f"written ({writer}) after {waited:.0f} s: run {first} again once that has finished")
        start = previous.get(before) if before is not None else None
        if start is None and before is not None:
            problem = missing_book(lake.stored_partitions("implementation", "holdings"), first, before)
            if problem:
                raise ValueError(problem)
        books, book = {}, start
        for partition, prev_session in sessions.items():
            step, done = steps[partition], executions.get(prev_session) if prev_session else None
            if book is None:
                step.event("first_book", reason=f"no book before {partition}: starting from an empty book")
            book = book_after(book if book is not None else empty_book(), done, traded_on=prev_session or "")
            books[partition] = book
            step.params.update(previous_session=prev_session,
                               executions="none accepted (nothing traded)" if done is None else f"{len(done)} row(s)")
            step.metrics = {"positions": len(book), "gross": float(book["weight"].sum()),
                            "net": float(book["net_weight"].sum())}
        yield from emit_range(context, steps, books)


@asset(
    **attrs("implementation_orders", 15),
    ins=after("audit_ledger"),
    kinds={"python", "parquet"},
    owners=OWNERS,
    description=(
        "Orders from the book (`holdings`) to the production engine's target: BUY / SELL / HOLD on "
        "signed net weights, size, target weight; changes under 1% are HOLD as dust with "
        "feat_partial_rebalance. Runs only under `implementation_clearance`: every gate's latest "
        "evaluation passed on the data stored now, and the ledger, re-verified now, is sealed and "
        "anchored. A refusal stores an empty orders table with the reason (`refused` metadata) and "
        "fails the step: no earlier orders stay readable."
    ),
)
def implementation_orders(context, settings: PortfolioSettings, target_weights: pd.DataFrame, holdings: pd.DataFrame):
    """Orders from the book to the production target (`quant.orders.build_orders`) when
    `implementation_clearance` finds no problem; otherwise stores the empty refused table and fails."""
    problems = implementation_clearance(context.instance, settings, context.partition_key)
    if problems:
        yield from _refuse(context, settings, problems)
        return
    with Step(context, settings) as step:
        step.params.update(clearance="every gate passed; ledger verified, sealed and anchored",
                           gates=gate_summary(context.instance, step.partition))
        prod = target_weights[target_weights["is_production"]].set_index("symbol")
        book = holdings.set_index("symbol")
        directions = pd.concat([prod["direction"], book["direction"]])
        directions = directions[~directions.index.duplicated()]
        orders = build_orders(book["net_weight"], prod["net_weight"], directions,
                              partial_rebalance=step.cfg.features.feat_partial_rebalance)
        step.params.update(production_engine=step.cfg.optimization.production_engine, book_positions=len(book))
        yield from step.emit(orders, metrics={
            "orders": orders["action"].value_counts().to_dict(),
            "dust_skipped": int(orders["reason"].str.startswith("dust").sum()),
            "gross_traded": float(orders["size"].sum()), "book_positions": len(book),
        }, preview=orders.sort_values("size", ascending=False))


class Trade(Config):
    """One executed order (`holdings.EXECUTION_COLUMNS`)."""

    symbol: str
    direction: str
    action: str
    ordered_delta_net_weight: float
    delta_net_weight: float
    source: str


class ExecutionsConfig(Config):
    """What was executed of the partition's orders; `portfolio-assets accept` fills it in from the
    stored orders (minus what was not traded) or a fills file. No default: executions are facts
    an operator states, never something a whole-graph run invents."""

    trades: list[Trade]
    orders_version: str  # data version of the implementation_orders partition they execute


@asset(
    **attrs("executions", 16),
    kinds={"python", "parquet"},
    owners=OWNERS,
    description=(
        "What was executed of the partition's orders, stated by `portfolio-assets accept --date D` "
        "(never by the daily job): the orders as proposed minus `--not-traded`, or a fills file, with "
        "the data version of the orders they execute. A fact from the broker, so a root asset: the "
        "next session's `holdings` adds it to the book. Refused unless every gate passed."
    ),
)
def executions(context, config: ExecutionsConfig, settings: PortfolioSettings):
    """Store the trades an operator states in `ExecutionsConfig` (`portfolio-assets accept`); raises
    a Failure unless `implementation_clearance` finds no problem."""
    problems = implementation_clearance(context.instance, settings, context.partition_key)
    if problems:
        raise Failure(description="refusing to accept: " + "; ".join(problems),
                      metadata={"gate_problems": MetadataValue.json(problems)})
    with Step(context, settings, params={"orders_version": config.orders_version,
                                         "gates": gate_summary(context.instance, context.partition_key)}) as step:
        done = pd.DataFrame([t.model_dump() for t in config.trades], columns=list(EXECUTION_COLUMNS))
        done = done.astype({"ordered_delta_net_weight": float, "delta_net_weight": float})
        yield from step.emit(done, metrics={"executed": int((done["delta_net_weight"] != 0).sum()),
                                            "not_traded": int((done["delta_net_weight"] == 0).sum()),
                                            "orders_version": config.orders_version}, preview=done)
