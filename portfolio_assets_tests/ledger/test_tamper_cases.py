"""Issue 17, "what the ledger proves": truncation at every position, cross-date replay, forged
re-chained records with and without the key, price data changed after the seal.

Each case builds a sealed ledger in the lakehouse layout (`<root>/<profile>/ledger/<date>/`) and
verifies it as `verify-ledger` does: bound to the partition and profile its path names, against
the anchor (`HEAD.json`). A few cases go through the CLI for the exit code and message.
"""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from portfolio_assets.ledger import (
    Ed25519Signer,
    HmacSigner,
    Ledger,
    canonical_json,
    output_entry,
    price_fingerprint,
    read_anchor,
    record_hash,
    verify_ledger,
)
from portfolio_assets.price_store import PriceStore, price_ref
from portfolio_assets_tests.conftest import describe, run_cli

PROFILE = "demo"
DATE = "2026-11-25"
OTHER_DATE = "2026-11-24"
RUN = "run-1"
HMAC_KEY = bytes(range(32))
ED25519_SEED = bytes(range(100, 132))
PRICE_REL = "prices/NASDAQ_AAPL.parquet"


def _bars() -> pd.DataFrame:
    times = pd.date_range("2026-11-20 21:00", periods=8, freq="D", tz="UTC")  # up to 2026-11-27
    return pd.DataFrame({"time": times, "open": 1.0, "high": 2.0, "low": 0.5, "close": [1.0 + i for i in range(8)],
                         "volume": 10.0, "source": "synthetic", "fetched_at": pd.Timestamp("2026-11-28", tz="UTC")})


def build(base: Path, signer=None, partition: str = DATE) -> Ledger:
    """A sealed ledger: genesis, two steps, the seal (with the price data), then orders after it."""
    root = base / PROFILE
    prices = root / PRICE_REL
    if not prices.exists():
        prices.parent.mkdir(parents=True)
        _bars().to_parquet(prices)
    table = root / "allocation" / "target_weights" / f"{partition}.parquet"
    table.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"symbol": ["A", "B"], "weight": [0.4, 0.6]}).to_parquet(table)
    ledger = Ledger(root / "ledger" / partition / "audit.jsonl", partition, signer)
    ledger.genesis(RUN, {"profile": PROFILE})
    for asset in ("market_bars", "target_weights"):
        ledger.intent(RUN, asset, {"params": {}})
        ledger.outcome(RUN, asset, {"status": "ok", "outputs": {asset: output_entry(root, table)}})
    ledger.seal(RUN, PROFILE, {PRICE_REL: price_fingerprint(prices, partition)})
    ledger.intent(RUN, "implementation_orders", {"params": {}})
    ledger.outcome(RUN, "implementation_orders", {"status": "ok"})
    return ledger


def verify(ledger: Ledger, signer=None, partition: str = DATE, **kw):
    anchor = kw.pop("anchor", read_anchor(ledger.path))
    return verify_ledger(ledger.path, root=ledger.path.parents[2], signer=signer, partition=partition, profile=PROFILE,
                         anchor=anchor, require_anchor=True, **kw)


def rechain(lines: list[dict], signer=None) -> bytes:
    """Re-link and re-hash every record as a forger who knows the scheme would (re-signed only
    with `signer`; without it the forger copies the old signatures, which no longer verify)."""
    prev = "0" * 64
    out = []
    for rec in lines:
        rec = {k: v for k, v in rec.items() if k not in ("hash",)}
        rec["prev_hash"] = prev
        rec["hash"] = record_hash(rec)
        if signer is not None:
            rec["sig"] = signer.sign(bytes.fromhex(rec["hash"]))
        prev = rec["hash"]
        out.append(canonical_json(rec) + b"\n")
    return b"".join(out)


SIGNERS = {"unsigned": None, "hmac": HmacSigner(HMAC_KEY), "ed25519": Ed25519Signer(ED25519_SEED)}


@pytest.mark.parametrize("mode", list(SIGNERS))
def test_a_sealed_ledger_verifies_in_every_mode(tmp_path: Path, mode: str) -> None:
    signer = SIGNERS[mode]
    ledger = build(tmp_path, signer)
    report = verify(ledger, signer)
    assert report.ok, report.errors
    assert report.check("anchor").detail == "seq 7 matches the anchor (0 record(s) after it), seal at seq 5"
    assert report.check("seals").detail == "1 seal(s), latest at line 6; 1 price file(s) checked"
    anchor = read_anchor(ledger.path)
    assert (anchor["seq"], anchor["records"], anchor["partition"], anchor["profile"]) == (7, 8, DATE, PROFILE)
    assert (anchor["seal_seq"], anchor["seal_hash"]) == (5, ledger.records()[5]["hash"])
    assert anchor["key_id"] == (signer.key_id if signer else None)
    assert ("sig" in anchor) == (signer is not None)
    seal = ledger.records()[5]
    assert seal["kind"] == "close" and seal["payload"]["seal"]["records"] == 5
    assert seal["payload"]["seal"]["head_hash"] == ledger.records()[4]["hash"] == seal["prev_hash"]


@pytest.mark.parametrize("mode", list(SIGNERS))
def test_truncation_at_every_position_is_detected(tmp_path: Path, mode: str) -> None:
    """Case 7: cutting the file after any record (down to the genesis alone) fails in every mode:
    the anchor names the last record written, and the latest seal."""
    signer = SIGNERS[mode]
    ledger = build(tmp_path, signer)
    whole = ledger.path.read_bytes().splitlines(keepends=True)
    for keep in range(1, len(whole)):
        ledger.path.write_bytes(b"".join(whole[:keep]))
        report = verify(ledger, signer)
        assert not report.ok, f"cut to {keep} of {len(whole)} lines verified"
        errors = report.check("anchor").errors
        assert errors[0] == (f"the chain ends at seq {keep - 1}, but the anchor names seq 7: {8 - keep} record(s) "
                             "are missing from the end (truncated)")
        if keep <= 5:  # the seal (seq 5, line 6) is gone too
            assert errors[1] == "the anchor's seal (seq 5) is not in the chain (truncated, re-written or replaced)"


def test_truncation_with_the_anchor_removed_or_rewritten(tmp_path: Path) -> None:
    """Removing HEAD.json is detected; re-writing it onto the cut chain is detected with the key
    (the anchor is signed). Without a key, a forger who re-writes both files consistently passes
    the file-only verification: the pipeline's clearance checks Dagster's copy (docs/ledger.md)."""
    for mode in ("unsigned", "hmac"):
        signer = SIGNERS[mode]
        ledger = build(tmp_path / mode, signer)
        whole = ledger.path.read_bytes().splitlines(keepends=True)
        ledger.path.write_bytes(b"".join(whole[:3]))
        head = ledger.path.with_name("HEAD.json")
        original = json.loads(head.read_text())
        head.unlink()
        assert verify(ledger, signer, anchor=None).check("anchor").errors == (
            "no anchor (HEAD.json): the end of the chain is not anchored, so records cut off the end cannot be "
            "ruled out",)
        last = json.loads(whole[2])
        forged = {**original, "seq": 2, "hash": last["hash"], "records": 3, "seal_seq": None, "seal_hash": None}
        report = verify(ledger, signer, anchor=forged)
        if signer is None:
            assert report.ok  # the documented limit of an unsigned file on its own
        else:
            assert report.check("anchor").errors == (f"the anchor's signature does not verify (key {signer.key_id!r})",)


def test_another_dates_ledger_copied_into_this_date_fails(tmp_path: Path) -> None:
    """Case 8: the records (and the anchor) name their own partition; the path names this one."""
    signer = SIGNERS["hmac"]
    other = build(tmp_path, signer, partition=OTHER_DATE)
    target = other.path.parents[1] / DATE
    shutil.copytree(other.path.parent, target)
    copied = Ledger(target / "audit.jsonl", DATE, signer)
    report = verify(copied, signer)
    assert not report.ok
    assert report.check("schema").errors[0] == f"line 1: partition '{OTHER_DATE}', expected '{DATE}'"
    assert report.check("anchor").errors[0] == f"anchor is of partition '{OTHER_DATE}', not '{DATE}'"
    assert copied.verify().ok is False


def test_a_ledger_of_another_profile_fails_the_binding(tmp_path: Path) -> None:
    ledger = build(tmp_path)
    report = verify_ledger(ledger.path, partition=DATE, profile="development", anchor=read_anchor(ledger.path))
    assert report.check("binding").errors == ("line 1: genesis of profile 'demo', but the ledger is in profile 'development'",)


@pytest.mark.parametrize("mode", ["hmac", "ed25519"])
def test_forged_rechained_records_fail_with_the_key(tmp_path: Path, mode: str) -> None:
    """Case 9 with the key: a changed record, re-linked and re-hashed, keeps its old signature."""
    signer = SIGNERS[mode]
    ledger = build(tmp_path, signer)
    records = ledger.records()
    records[3]["payload"]["status"] = "forged"
    ledger.path.write_bytes(rechain(records))
    report = verify(ledger, signer)
    assert "line 4: signature does not verify" in report.check("signatures").errors[0]
    assert report.check("anchor").status == "FAIL"  # the seal's hash changed too


def test_changed_price_data_fails_but_bars_after_the_date_do_not(tmp_path: Path) -> None:
    """Case 10: the cached bars the partition read are fingerprinted in the seal."""
    ledger = build(tmp_path)
    prices = ledger.path.parents[2] / PRICE_REL
    bars = pd.read_parquet(prices)
    later = bars.copy()
    later.loc[later["time"].dt.date > pd.Timestamp(DATE).date(), "close"] = 99.0  # after D: not read by D
    later["fetched_at"] = pd.Timestamp("2026-12-01", tz="UTC")
    later.to_parquet(prices)
    assert verify(ledger).ok
    bars.loc[2, "close"] = 42.0  # 2026-11-22 <= D
    bars.to_parquet(prices)
    assert verify(ledger).check("seals").errors == (
        f"line 6: price data {PRICE_REL} changed since the seal (bars <= {DATE})",)


def _store_ledger(base: Path) -> tuple[Ledger, str, PriceStore]:
    """A sealed ledger whose price data is a range of the columnar price store (two parts)."""
    root = base / PROFILE
    store = PriceStore(root / "prices")
    bars = _bars().drop(columns=["source", "fetched_at"])
    store.write({"NASDAQ:AAPL": bars.iloc[:4]}, "synthetic", pd.Timestamp("2026-11-28", tz="UTC"))
    store.write({"NASDAQ:AAPL": bars.iloc[4:], "AMEX:SPY": bars}, "synthetic", pd.Timestamp("2026-11-28", tz="UTC"))
    rel = price_ref("NASDAQ:AAPL", date(2026, 11, 20), date.fromisoformat(DATE))
    ledger = Ledger(root / "ledger" / DATE / "audit.jsonl", DATE)
    ledger.genesis(RUN, {"profile": PROFILE})
    ledger.seal(RUN, PROFILE, {rel: price_fingerprint(root / rel, DATE)})
    return ledger, rel, store


def _edit_part_rows(store: PriceStore, symbol: str, day: date, close: float) -> None:
    """Overwrite the close of `symbol` on `day` in every part holding it (what a forger edits)."""
    for part in store.part_paths():
        table = pq.read_table(part)
        frame = table.to_pandas()
        hit = (frame["symbol"] == symbol) & (frame["time"].dt.date == day)
        if hit.any():
            frame.loc[hit, "close"] = close
            pq.write_table(pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False), part)


def test_changed_bars_in_the_price_store_fail_but_bars_after_the_date_or_of_other_symbols_do_not(
        tmp_path: Path) -> None:
    """Case 10 on the columnar store: the seal names a (symbol, range) and hashes its bars' content."""
    ledger, rel, store = _store_ledger(tmp_path)
    assert verify(ledger).ok
    _edit_part_rows(store, "NASDAQ:AAPL", date(2026, 11, 27), 99.0)  # after D: not read by D
    _edit_part_rows(store, "AMEX:SPY", date(2026, 11, 22), 99.0)  # another symbol
    store.write({"AMEX:SPY": _bars().drop(columns=["source", "fetched_at"])}, "synthetic",
                pd.Timestamp("2026-11-29", tz="UTC"))  # the same bars again: reads do not change
    assert verify(ledger).ok
    _edit_part_rows(store, "NASDAQ:AAPL", date(2026, 11, 22), 42.0)  # <= D, inside the sealed range
    assert verify(ledger).check("seals").errors == (
        f"line 2: price data {rel} changed since the seal (bars <= {DATE})",)


def test_a_newer_part_with_other_bars_and_removed_parts_are_detected(tmp_path: Path) -> None:
    ledger, rel, store = _store_ledger(tmp_path)
    changed = _bars().drop(columns=["source", "fetched_at"]).assign(close=7.0)
    added = store.write({"NASDAQ:AAPL": changed}, "synthetic", pd.Timestamp("2026-12-01", tz="UTC"))
    assert verify(ledger).check("seals").errors == (
        f"line 2: price data {rel} changed since the seal (bars <= {DATE})",)
    assert added is not None
    added.unlink()
    assert verify(ledger).ok
    for part in store.part_paths():
        part.unlink()
    assert verify(ledger).check("seals").errors == (
        f"line 2: price data {rel} is missing",)


# ---- the CLI: exit codes and messages ------------------------------------------------------------
def _cli_env(**extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("PA_")}
    return {**env, **extra}


def test_verify_ledger_cli_exit_codes(tmp_path: Path) -> None:
    """Case 9: a signed ledger verified without its key exits 4 ("signatures not checked"), also
    for a consistent forgery; `--no-signatures` accepts it; the key detects the forgery (exit 1).
    Case 7/8 through the CLI: truncation and a copied ledger exit 1."""
    signer = SIGNERS["hmac"]
    ledger = build(tmp_path, signer)
    path = str(ledger.path)
    with_key = _cli_env(PA_LEDGER_HMAC_KEY=HMAC_KEY.hex())
    ok = run_cli(["verify-ledger", path], with_key)
    assert ok.returncode == 0 and "result   PASS" in ok.stdout, describe(ok)
    unchecked = run_cli(["verify-ledger", path], _cli_env())
    assert unchecked.returncode == 4, describe(unchecked)
    assert "signatures not checked: 8 of 8 record(s) are signed but no key is configured" in unchecked.stderr

    records = ledger.records()
    records[3]["payload"]["status"] = "forged"
    seal = records[5]["payload"]["seal"]
    forged = rechain(records)
    ledger.path.write_bytes(forged)
    new = [json.loads(line) for line in forged.splitlines()]
    seal["head_hash"] = new[4]["hash"]  # a forger who also re-writes the seal and the anchor
    new[5]["payload"]["seal"] = seal
    forged = rechain(new)
    ledger.path.write_bytes(forged)
    rewritten = [json.loads(line) for line in forged.splitlines()]
    anchor = read_anchor(ledger.path)
    ledger.path.with_name("HEAD.json").write_text(json.dumps(
        {**anchor, "hash": rewritten[7]["hash"], "seal_hash": rewritten[5]["hash"]}))
    no_key = run_cli(["verify-ledger", path], _cli_env())
    assert no_key.returncode == 4, describe(no_key)  # never a silent pass
    accepted = run_cli(["verify-ledger", path, "--no-signatures"], _cli_env())
    assert accepted.returncode == 0, describe(accepted)
    detected = run_cli(["verify-ledger", path], with_key)
    assert detected.returncode == 1 and "line 4: signature does not verify" in detected.stdout, describe(detected)

    fresh = build(tmp_path / "b", signer)
    fresh.path.write_bytes(b"".join(fresh.path.read_bytes().splitlines(keepends=True)[:1]))
    cut = run_cli(["verify-ledger", str(fresh.path)], with_key)
    assert cut.returncode == 1 and "7 record(s) are missing from the end (truncated)" in cut.stdout, describe(cut)

    other = build(tmp_path / "c", signer, partition=OTHER_DATE)
    shutil.copytree(other.path.parent, other.path.parents[1] / DATE)
    copied = run_cli(["verify-ledger", str(other.path.parents[1] / DATE)], with_key)
    assert copied.returncode == 1 and f"partition '{OTHER_DATE}', expected '{DATE}'" in copied.stdout, describe(copied)
