"""Tests of the audit ledger core: canonical hashing, the chain, signing, tamper detection."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import multiprocessing
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from portfolio_assets.ledger import (
    CHECK_NAMES,
    GENESIS_PREV_HASH,
    Ed25519Signer,
    HmacSigner,
    Ledger,
    LedgerError,
    LedgerLocked,
    Signer,
    canonical_json,
    file_hash,
    format_report,
    frame_hash,
    output_entry,
    record_hash,
    signer_from_env,
    verify_ledger,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
PARTITION = "2025-01-02"
RUN = "run-1"
HMAC_KEY = bytes(range(32))
ED25519_SEED = bytes(range(100, 132))
POOL_REL = "universe/raw_pool/2025-01-02.parquet"
WEIGHTS_REL = "allocation/target_weights/2025-01-02.parquet"

# Executed both here and in a fresh interpreter: the frame must hash identically in both.
FRAME_CODE = """
import numpy as np
import pandas as pd
frame = pd.DataFrame(
    {
        "AMEX:SPY": [470.25, np.nan, 472.5, 471.0],
        "NASDAQ:QQQ": [400.0, 401.5, 399.75, 402.0],
        "direction": ["long", "short", None, "long"],
        "n_bars": np.array([60, 59, 60, 58], dtype="int64"),
        "bucket": pd.Categorical(["a", "b", "a", "c"]),
    },
    index=pd.DatetimeIndex(["2025-01-02", "2025-01-03", "2025-01-06", "2025-01-07"], name="session"),
)
"""


def _sample_frame() -> pd.DataFrame:
    namespace: dict[str, Any] = {}
    exec(FRAME_CODE, namespace)
    return namespace["frame"]


# --------------------------------------------------------------------------- helpers


def _write_parquet(root: Path, rel: str, df: pd.DataFrame, compression: str = "snappy") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(path, compression=compression)
    return path


def _pool_frame() -> pd.DataFrame:
    return pd.DataFrame({"symbol": ["AMEX:SPY", "NASDAQ:QQQ"], "score": [0.9, 0.7]})


def _weights_frame() -> pd.DataFrame:
    return pd.DataFrame({"weight": [0.6, 0.4]}, index=pd.Index(["AMEX:SPY", "NASDAQ:QQQ"], name="symbol"))


def _build_ledger(tmp_path: Path, signer: Signer | None = None) -> tuple[Ledger, Path]:
    """A six-line ledger: genesis, intent/outcome raw_pool, intent/outcome target_weights, close."""
    root = tmp_path / "lake"
    pool = _write_parquet(root, POOL_REL, _pool_frame())
    weights = _write_parquet(root, WEIGHTS_REL, _weights_frame())
    ledger = Ledger(root / "ledger" / PARTITION / "audit.jsonl", PARTITION, signer)
    ledger.start(RUN, {"profile": "demo", "manifest_hash": "sha256:" + "ab" * 32})
    ledger.intent(RUN, "raw_pool", {"params": {"class_cap": 30}})
    ledger.outcome(RUN, "raw_pool", {"status": "ok", "outputs": {"table": output_entry(root, pool)}})
    ledger.intent(RUN, "target_weights", {"params": {"engine": "hrp"}})
    ledger.outcome(
        RUN, "target_weights", {"status": "ok", "outputs": {"weights": output_entry(root, weights)}, "n": 2}
    )
    ledger.close(RUN, {"assets": 2})
    return ledger, root


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _write_records(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_bytes(b"".join(canonical_json(r) + b"\n" for r in records))


def _rewrite_chain(
    path: Path, mutate: Callable[[list[dict[str, Any]]], None], *, strip_sigs: bool = False
) -> None:
    """What an attacker without the key can do: edit records, then recompute every hash and link."""
    records = [json.loads(line) for line in _lines(path)]
    mutate(records)
    prev = GENESIS_PREV_HASH
    for seq, rec in enumerate(records):
        if strip_sigs:
            for field in ("sig", "sig_alg", "key_id"):
                rec.pop(field, None)
        rec["seq"] = seq
        rec["prev_hash"] = prev
        rec["hash"] = hashlib.sha256(
            json.dumps(
                {k: v for k, v in rec.items() if k not in ("hash", "sig")},
                sort_keys=True,
                separators=(",", ":"),
                ensure_ascii=False,
            ).encode()
        ).hexdigest()
        prev = rec["hash"]
    _write_records(path, records)


def _set_class_cap(records: list[dict[str, Any]]) -> None:
    records[1]["payload"]["params"]["class_cap"] = 99


# --------------------------------------------------------------------------- canonical JSON


def test_canonical_json_is_sorted_compact_utf8_with_iso_dates_and_python_scalars() -> None:
    obj = {
        "b": (1, np.int64(2)),
        "a": {"é": np.float64(0.5), "flag": np.bool_(True)},
        "ts": datetime(2025, 1, 2, 21, 0, tzinfo=UTC),
        "day": date(2025, 1, 2),
        "session": pd.Timestamp("2025-01-03"),
        "f32": np.float32(0.25),
    }
    assert (
        canonical_json(obj)
        == (
            '{"a":{"flag":true,"é":0.5},"b":[1,2],"day":"2025-01-02","f32":0.25,'
            '"session":"2025-01-03T00:00:00","ts":"2025-01-02T21:00:00+00:00"}'
        ).encode()
    )


def test_canonical_json_rejects_nan_naming_the_key_path() -> None:
    with pytest.raises(ValueError, match=re.escape("non-finite number nan at $.payload.metrics[1].sharpe")):
        canonical_json({"payload": {"metrics": [{"sharpe": 1.0}, {"sharpe": float("nan")}]}})
    with pytest.raises(ValueError, match=re.escape("non-finite number inf at $.cvar")):
        canonical_json({"cvar": np.float64("inf")})
    with pytest.raises(ValueError, match=re.escape("NaT at $.asof")):
        canonical_json({"asof": pd.NaT})


def test_canonical_json_rejects_non_string_keys_and_sets() -> None:
    with pytest.raises(TypeError, match=re.escape("key 1 at $.buckets is int, keys must be str")):
        canonical_json({"buckets": {1: "a"}})
    with pytest.raises(TypeError, match=re.escape("unordered set at $.symbols; pass a sorted list")):
        canonical_json({"symbols": {"AMEX:SPY"}})


# --------------------------------------------------------------------------- data hashes


def test_frame_hash_is_identical_in_another_process() -> None:
    script = FRAME_CODE + "from portfolio_assets.ledger import frame_hash\nprint(frame_hash(frame))\n"
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO_ROOT, env=env
    )
    expected = frame_hash(_sample_frame())
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", expected)
    assert out.stdout.strip() == expected


def test_frame_hash_changes_with_any_value_name_dtype_or_row_order_change() -> None:
    base = _sample_frame()
    reference = frame_hash(base)

    value = base.copy()
    value.iloc[2, 0] = 472.50000001
    swapped_rows = base.iloc[[1, 0, 2, 3]]
    swapped_values = base.copy()
    swapped_values["AMEX:SPY"] = base["AMEX:SPY"].to_numpy()[[1, 0, 2, 3]]
    renamed = base.rename(columns={"NASDAQ:QQQ": "NASDAQ:QQQM"})
    retyped = base.astype({"n_bars": "float64"})
    reordered_columns = base[list(reversed(base.columns))]
    index_renamed = base.rename_axis("date")

    variants = [value, swapped_rows, swapped_values, renamed, retyped, reordered_columns, index_renamed]
    hashes = [frame_hash(v) for v in variants]
    assert reference not in hashes
    assert len(set(hashes)) == len(variants)


def test_frame_hash_ignores_pandas_metadata() -> None:
    base = _sample_frame()
    decorated = base.copy()
    decorated.attrs["synthetic_long"] = True
    decorated.columns.name = "symbol"
    with_freq = pd.DataFrame({"x": [1.0, 2.0, 3.0]}, index=pd.date_range("2025-01-01", periods=3, freq="D"))
    without_freq = with_freq.copy()
    without_freq.index = pd.DatetimeIndex(list(with_freq.index))
    assert with_freq.index.freq is not None and without_freq.index.freq is None
    assert frame_hash(decorated) == frame_hash(base)
    assert frame_hash(with_freq) == frame_hash(without_freq)


def test_frame_hash_rejects_names_without_a_lossless_arrow_form() -> None:
    with pytest.raises(ValueError, match=re.escape("frame_hash: column names must be strings, got [0, 1]")):
        frame_hash(pd.DataFrame([[1, 2]]))
    with pytest.raises(ValueError, match=re.escape("frame_hash: duplicate column names ['a']")):
        frame_hash(pd.DataFrame([[1, 2]], columns=["a", "a"]))
    with pytest.raises(TypeError, match="expected a pandas DataFrame, got Series"):
        frame_hash(pd.Series([1.0]))  # type: ignore[arg-type]


def test_file_hash_of_parquet_is_content_not_writer_bytes(tmp_path: Path) -> None:
    df = _sample_frame()
    snappy = _write_parquet(tmp_path, "a.parquet", df, "snappy")
    gzip = _write_parquet(tmp_path, "b.parquet", df, "gzip")
    assert snappy.read_bytes() != gzip.read_bytes()
    assert file_hash(snappy) == file_hash(gzip) == frame_hash(df)

    text = tmp_path / "report.md"
    text.write_text("# report\n", encoding="utf-8")
    assert file_hash(text) == "sha256:" + hashlib.sha256(b"# report\n").hexdigest()
    with pytest.raises(FileNotFoundError, match="missing.parquet does not exist"):
        file_hash(tmp_path / "missing.parquet")


# --------------------------------------------------------------------------- signers


def test_hmac_signer_matches_stdlib_and_never_shows_the_key() -> None:
    signer = HmacSigner(HMAC_KEY)
    assert isinstance(signer, Signer) and isinstance(Ed25519Signer(ED25519_SEED), Signer)
    assert signer.sign(b"data") == hmac.new(HMAC_KEY, b"data", hashlib.sha256).hexdigest()
    assert signer.verify(b"data", signer.sign(b"data"))
    assert not signer.verify(b"data!", signer.sign(b"data"))
    assert not signer.verify(b"data", "zz")
    for text in (repr(signer), str(signer), signer.key_id):
        assert HMAC_KEY.hex() not in text and str(HMAC_KEY) not in text
    assert repr(signer) == f"HmacSigner(key_id={signer.key_id!r})"
    with pytest.raises(ValueError, match=r"^HMAC key too short: 5 bytes, need at least 16$"):
        HmacSigner(b"short")


def test_ed25519_verify_only_signer_checks_but_cannot_sign() -> None:
    signer = Ed25519Signer(ED25519_SEED)
    verifier = Ed25519Signer(public_key=bytes.fromhex(signer.public_key_hex))
    sig = signer.sign(b"data")
    assert verifier.key_id == signer.key_id and verifier.verify(b"data", sig)
    assert not verifier.verify(b"other", sig)
    assert not verifier.can_sign
    with pytest.raises(ValueError, match="is verify-only"):
        verifier.sign(b"data")
    with pytest.raises(ValueError, match="is verify-only and cannot sign ledger records"):
        Ledger(Path("unused.jsonl"), PARTITION, verifier)
    assert ED25519_SEED.hex() not in repr(signer) + str(signer)
    assert repr(verifier) == f"Ed25519Signer(key_id={signer.key_id!r}, mode='verify-only')"


def test_signer_from_env_reads_keys_and_keeps_secrets_out_of_errors() -> None:
    assert signer_from_env({}) is None
    assert signer_from_env({"PA_LEDGER_HMAC_KEY": ""}) is None

    from_hex = signer_from_env({"PA_LEDGER_HMAC_KEY": HMAC_KEY.hex()})
    assert isinstance(from_hex, HmacSigner) and from_hex.key_id == HmacSigner(HMAC_KEY).key_id
    raw = "correct horse battery staple"
    from_raw = signer_from_env({"PA_LEDGER_HMAC_KEY": raw})
    assert isinstance(from_raw, HmacSigner) and from_raw.key_id == HmacSigner(raw.encode()).key_id

    ed = signer_from_env({"PA_LEDGER_ED25519_KEY": ED25519_SEED.hex()})
    assert isinstance(ed, Ed25519Signer) and ed.can_sign
    assert ed.key_id == Ed25519Signer(ED25519_SEED).key_id
    public_only = signer_from_env({"PA_LEDGER_ED25519_PUBLIC_KEY": ed.public_key_hex})
    assert isinstance(public_only, Ed25519Signer) and not public_only.can_sign
    assert public_only.key_id == ed.key_id

    secret = "tiny-secret"
    with pytest.raises(ValueError) as short:
        signer_from_env({"PA_LEDGER_HMAC_KEY": secret})
    assert str(short.value) == "PA_LEDGER_HMAC_KEY too short: 11 bytes, need at least 16"
    bad_seed = "ab" * 31
    with pytest.raises(ValueError) as malformed:
        signer_from_env({"PA_LEDGER_ED25519_KEY": bad_seed})
    assert str(malformed.value) == (
        "PA_LEDGER_ED25519_KEY must be 64 hex characters (a 32-byte Ed25519 seed); got 62 characters"
    )
    with pytest.raises(ValueError, match="set only one ledger key"):
        signer_from_env({"PA_LEDGER_HMAC_KEY": HMAC_KEY.hex(), "PA_LEDGER_ED25519_KEY": ED25519_SEED.hex()})
    with pytest.raises(ValueError, match="public key does not belong to the private key"):
        signer_from_env(
            {"PA_LEDGER_ED25519_KEY": ED25519_SEED.hex(), "PA_LEDGER_ED25519_PUBLIC_KEY": "00" * 32}
        )


# --------------------------------------------------------------------------- writing the chain


def test_records_follow_the_format_and_hash_independently(tmp_path: Path) -> None:
    signer = HmacSigner(HMAC_KEY)
    ledger, root = _build_ledger(tmp_path, signer)
    records = ledger.records()
    assert [r["kind"] for r in records] == ["genesis", "intent", "outcome", "intent", "outcome", "close"]
    assert [r["seq"] for r in records] == list(range(6))
    assert records[0]["prev_hash"] == GENESIS_PREV_HASH
    for prev, rec in zip(records, records[1:], strict=False):
        assert rec["prev_hash"] == prev["hash"]
    for rec in records:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", rec["ts"])
        assert rec["partition"] == PARTITION and rec["run_id"] == RUN
        body = {k: v for k, v in rec.items() if k not in ("hash", "sig")}
        independent = hashlib.sha256(
            json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        ).hexdigest()
        assert rec["hash"] == independent == record_hash(rec)
        assert rec["sig"] == hmac.new(HMAC_KEY, bytes.fromhex(rec["hash"]), hashlib.sha256).hexdigest()
        assert (rec["sig_alg"], rec["key_id"]) == ("hmac-sha256", signer.key_id)
    assert records[2]["payload"]["outputs"]["table"] == {"path": POOL_REL, "hash": frame_hash(_pool_frame())}
    assert HMAC_KEY.hex() not in ledger.path.read_text()


def test_clean_ledger_passes_every_check_and_formats_aligned(tmp_path: Path) -> None:
    signer = HmacSigner(HMAC_KEY)
    ledger, root = _build_ledger(tmp_path, signer)
    report = verify_ledger(ledger.path, root=root, signer=signer)
    assert report.ok and report.errors == [] and report.n_records == 6
    assert [c.name for c in report.checks] == list(CHECK_NAMES)
    assert {c.status for c in report.checks if c.name != "anchor"} == {"ok"}
    assert report.check("anchor").status == "skip"  # no anchor given: tests/ledger/test_tamper_cases.py
    assert report.check("pairing").detail == "2 intent/outcome pairs (0 failed, 0 abandoned)"
    assert report.check("artifacts").detail == "2 artifacts match"

    text = format_report(report)
    lines = text.splitlines()
    assert lines[:3] == [f"ledger   {ledger.path}", "records  6", "result   PASS"]
    assert lines[4] == "check       status  detail"
    assert lines[6] == "parse       ok      6 lines"
    assert lines[-4] == f"signatures  ok      6 signatures valid (key {signer.key_id!r})"


def test_unsigned_verification_skips_signatures_and_unrooted_skips_artifacts(tmp_path: Path) -> None:
    ledger, _ = _build_ledger(tmp_path)
    report = verify_ledger(ledger.path)
    assert report.ok
    assert report.check("signatures").status == "skip"
    assert report.check("artifacts").detail == "not checked: no root given (2 outputs recorded)"
    required = verify_ledger(ledger.path, require_signatures=True)
    assert required.errors == ["signatures are required but no verification key is configured"]


@contextlib.contextmanager
def _lock_held_by_another_process(path: Path) -> Iterator[None]:
    """A subprocess holds the ledger's exclusive append lock (a run stopped inside an append) until
    the block ends; then it exits, and its lock goes with it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys\n"
         f"fd = os.open({str(path) + '.lock'!r}, os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX)\n"
         "print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait()


def test_a_writer_stuck_inside_an_append_is_reported_not_waited_for(tmp_path: Path, monkeypatch) -> None:
    """A process holding the ledger's append lock (a run stopped or hung mid-append) makes readers
    report it after READ_LOCK_WAIT_S instead of waiting for ever; released, the ledger reads again."""
    from portfolio_assets.ledger import lock

    ledger, root = _build_ledger(tmp_path)
    monkeypatch.setattr(lock, "READ_LOCK_WAIT_S", 0.3)
    with _lock_held_by_another_process(ledger.path):
        message = (f"{ledger.path}: a writer has held the ledger's lock for over 0.3 s (a run writing it is "
                   "stopped or hung; `portfolio-assets status` lists the runs)")
        report = verify_ledger(ledger.path, root=root)
        assert not report.ok and report.errors == [message]
        with pytest.raises(LedgerLocked, match=f"^{re.escape(message)}$"):
            ledger.records()
    assert verify_ledger(ledger.path, root=root).ok and len(ledger.records()) == 6


def test_a_writer_behind_a_stuck_append_fails_after_the_wait_and_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    """A second writer does not hang behind a process holding the append lock: after
    WRITE_LOCK_WAIT_S its append raises LedgerLocked (the step fails with it) and the file is
    unchanged; released, the same append goes through and the chain verifies."""
    from portfolio_assets.ledger import lock

    ledger, root = _build_ledger(tmp_path)
    before = ledger.path.read_bytes()
    monkeypatch.setattr(lock, "WRITE_LOCK_WAIT_S", 0.3)
    with _lock_held_by_another_process(ledger.path):
        message = (f"{ledger.path}: a writer has held the ledger's lock for over 0.3 s (a run writing it is "
                   "stopped or hung; `portfolio-assets status` lists the runs)")
        with pytest.raises(LedgerLocked, match=f"^{re.escape(message)}$"):
            ledger.intent("run-2", "history_500d", {"params": {}})
        assert ledger.path.read_bytes() == before
    ledger.intent("run-2", "history_500d", {"params": {}})
    assert [r["kind"] for r in ledger.records()][-1] == "intent"
    report = verify_ledger(ledger.path, root=root)  # the intent is left open on purpose: only the chain is asked
    assert all(report.check(n).status == "ok" for n in ("parse", "schema", "sequence", "genesis", "chain", "hashes"))
    assert len(ledger.records()) == 7


def test_second_genesis_is_refused(tmp_path: Path) -> None:
    ledger, _ = _build_ledger(tmp_path)
    with pytest.raises(
        LedgerError, match=re.escape("ledger already has 6 record(s); refusing a second genesis")
    ):
        ledger.genesis("run-2", {"profile": "demo"})
    with pytest.raises(LedgerError, match=re.escape("refusing a second genesis")):
        ledger.append("genesis", "run-2")
    assert len(ledger.records()) == 6


def test_resume_continues_the_chain_without_a_new_genesis(tmp_path: Path) -> None:
    ledger, root = _build_ledger(tmp_path)
    last = ledger.records()[-1]
    resumed = Ledger(ledger.path, PARTITION).start("run-2", {"start_step": 11})
    assert resumed["kind"] == "resume" and resumed["seq"] == last["seq"] + 1
    assert resumed["prev_hash"] == last["hash"]
    assert resumed["payload"] == {"start_step": 11}  # nothing was left open
    assert [r["kind"] for r in ledger.records()].count("genesis") == 1
    assert verify_ledger(ledger.path, root=root).ok


def test_resume_records_a_killed_step_as_abandoned(tmp_path: Path) -> None:
    ledger, root = _build_ledger(tmp_path)
    ledger.intent(RUN, "tournament", {})  # the step is killed: no outcome
    open_report = verify_ledger(ledger.path, root=root)
    assert open_report.errors == ["line 7: intent for asset 'tournament' (run 'run-1') has no outcome"]

    resumed = ledger.start("run-2", {"start_step": 12})
    assert resumed["payload"]["abandoned_intents"] == [{"seq": 6, "run_id": RUN, "asset": "tournament"}]
    ledger.intent("run-2", "tournament", {})
    ledger.outcome("run-2", "tournament", {"status": "failed", "error": "solver did not converge"})
    report = verify_ledger(ledger.path, root=root)
    assert report.ok, format_report(report)
    assert report.check("pairing").detail == "3 intent/outcome pairs (1 failed, 1 abandoned)"


def test_empty_ledger_needs_a_genesis_and_archive_starts_a_fresh_chain(tmp_path: Path) -> None:
    path = tmp_path / "ledger" / PARTITION / "audit.jsonl"
    ledger = Ledger(path, PARTITION)
    with pytest.raises(LedgerError, match="has no genesis; call start\\(\\) or genesis\\(\\) first"):
        ledger.intent(RUN, "raw_pool", {})
    assert ledger.records() == [] and ledger.archive() is None
    assert ledger.start(RUN, {})["kind"] == "genesis"
    ledger.note(RUN, {"fallback": "none"})
    archived = ledger.archive()
    assert archived is not None and not path.exists()
    assert archived.parent == path.parent / "archive"
    assert re.fullmatch(r"audit-\d{8}T\d{12}Z\.jsonl", archived.name)
    assert [r["kind"] for r in json.loads("[" + ",".join(archived.read_text().splitlines()) + "]")] == [
        "genesis",
        "note",
    ]
    fresh = ledger.start("run-2", {})
    assert (fresh["kind"], fresh["seq"], fresh["prev_hash"]) == ("genesis", 0, GENESIS_PREV_HASH)


def test_append_validates_its_input(tmp_path: Path) -> None:
    ledger, root = _build_ledger(tmp_path)
    with pytest.raises(ValueError, match=re.escape("record kind must be one of")):
        ledger.append("decision", RUN)
    with pytest.raises(ValueError, match="intent record needs an asset name, got None"):
        ledger.append("intent", RUN)
    with pytest.raises(ValueError, match=re.escape("non-finite number nan at $.metrics.sharpe")):
        ledger.outcome(RUN, "x", {"metrics": {"sharpe": float("nan")}})
    with pytest.raises(ValueError, match=re.escape("output path '../secrets.parquet' must be relative")):
        ledger.outcome(
            RUN, "x", {"outputs": {"t": {"path": "../secrets.parquet", "hash": "sha256:" + "0" * 64}}}
        )
    with pytest.raises(ValueError, match="is not inside the root"):
        output_entry(root / "universe", root / WEIGHTS_REL)
    with pytest.raises(LedgerError, match="ledger belongs to partition '2025-01-02', not '2025-01-03'"):
        Ledger(ledger.path, "2025-01-03").note(RUN, {})
    assert len(ledger.records()) == 6


def test_append_refuses_a_truncated_last_line(tmp_path: Path) -> None:
    ledger, _ = _build_ledger(tmp_path)
    data = ledger.path.read_bytes()
    ledger.path.write_bytes(data[:-20])
    with pytest.raises(LedgerError, match=re.escape("last line is truncated (no trailing newline)")):
        ledger.note(RUN, {})
    with pytest.raises(LedgerError, match=re.escape("line 6: truncated (no trailing newline)")):
        ledger.records()


def _append_worker(path: str, worker: int, pairs: int, barrier: Any) -> None:
    ledger = Ledger(Path(path), PARTITION, HmacSigner(HMAC_KEY))
    barrier.wait()
    run_id = f"run-w{worker}"
    ledger.start(run_id, {"worker": worker})
    for i in range(pairs):
        ledger.intent(run_id, f"asset_{i}", {"i": i})
        ledger.outcome(run_id, f"asset_{i}", {"status": "ok", "i": i})


def test_concurrent_appends_from_four_processes_keep_a_valid_chain(tmp_path: Path) -> None:
    signer = HmacSigner(HMAC_KEY)
    ledger = Ledger(tmp_path / "audit.jsonl", PARTITION, signer)
    ledger.genesis("run-0", {})
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(4)
    workers = [ctx.Process(target=_append_worker, args=(str(ledger.path), w, 25, barrier)) for w in range(4)]
    for proc in workers:
        proc.start()
    for proc in workers:
        proc.join(timeout=60)
    assert [proc.exitcode for proc in workers] == [0, 0, 0, 0]

    records = ledger.records()
    assert len(records) == 1 + 4 * 51
    assert [r["seq"] for r in records] == list(range(len(records)))
    by_run = pd.Series([r["run_id"] for r in records]).value_counts().to_dict()
    assert by_run == {"run-0": 1, "run-w0": 51, "run-w1": 51, "run-w2": 51, "run-w3": 51}
    report = verify_ledger(ledger.path, signer=signer)
    assert report.ok, format_report(report)
    assert report.check("pairing").detail.startswith("100 intent/outcome pairs (0 failed")


# --------------------------------------------------------------------------- tamper suite


def test_changed_value_is_detected(tmp_path: Path) -> None:
    ledger, root = _build_ledger(tmp_path)
    records = ledger.records()
    records[2]["payload"]["status"] = "failed"
    _write_records(ledger.path, records)
    report = verify_ledger(ledger.path, root=root)
    assert report.errors == ["line 3: hash mismatch (record content changed)"]
    assert report.check("hashes").status == "FAIL"


def test_deleted_line_is_detected(tmp_path: Path) -> None:
    ledger, root = _build_ledger(tmp_path)
    lines = _lines(ledger.path)
    ledger.path.write_bytes(b"".join(lines[:2] + lines[3:]))
    report = verify_ledger(ledger.path, root=root)
    assert report.errors == [
        "line 3: seq 3 follows seq 1 (1 record(s) missing)",
        "line 3: prev_hash does not match hash of line 2",
        "line 2: intent for asset 'raw_pool' (run 'run-1') has no outcome",
    ]


def test_swapped_lines_are_detected(tmp_path: Path) -> None:
    ledger, root = _build_ledger(tmp_path)
    lines = _lines(ledger.path)
    lines[2], lines[3] = lines[3], lines[2]
    ledger.path.write_bytes(b"".join(lines))
    report = verify_ledger(ledger.path, root=root)
    assert report.check("sequence").errors == (
        "line 3: seq 3 follows seq 1 (1 record(s) missing)",
        "line 4: seq 2 is not after seq 3 (reordered or duplicated)",
        "line 5: seq 4 follows seq 2 (1 record(s) missing)",
    )
    assert report.check("chain").errors == (
        "line 3: prev_hash does not match hash of line 2",
        "line 4: prev_hash does not match hash of line 3",
        "line 5: prev_hash does not match hash of line 4",
    )
    assert report.check("hashes").status == "ok"


def test_truncated_file_is_detected(tmp_path: Path) -> None:
    ledger, root = _build_ledger(tmp_path)
    data = ledger.path.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    ledger.path.write_bytes(data[: last_start + (len(data) - last_start) // 2])
    report = verify_ledger(ledger.path, root=root)
    assert report.errors == ["line 6: truncated or invalid JSON"]
    assert report.n_records == 5
    assert "parse       FAIL    line 6: truncated or invalid JSON" in format_report(report)


def test_edited_whitespace_and_injected_second_genesis_are_detected(tmp_path: Path) -> None:
    ledger, root = _build_ledger(tmp_path)
    lines = _lines(ledger.path)
    lines[1] = lines[1].replace(b'"kind":"intent"', b'"kind": "intent"')
    ledger.path.write_bytes(b"".join(lines))
    assert verify_ledger(ledger.path, root=root).errors == [
        "line 2: not in canonical JSON form (line edited)"
    ]

    ledger, root = _build_ledger(tmp_path / "second")
    genesis = ledger.records()[0]
    _rewrite_chain(ledger.path, lambda records: records.insert(3, dict(genesis)))
    report = verify_ledger(ledger.path, root=root)
    assert report.errors == ["line 4: second genesis record (a resumed run must write 'resume')"]


@pytest.mark.parametrize("make_signer", [lambda: HmacSigner(HMAC_KEY), lambda: Ed25519Signer(ED25519_SEED)])
def test_consistently_rewritten_chain_needs_the_signing_key(
    tmp_path: Path, make_signer: Callable[[], HmacSigner | Ed25519Signer]
) -> None:
    signer = make_signer()
    ledger, root = _build_ledger(tmp_path, signer)
    _rewrite_chain(ledger.path, _set_class_cap)
    assert ledger.records()[1]["payload"]["params"]["class_cap"] == 99

    unsigned_view = verify_ledger(ledger.path, root=root)
    assert unsigned_view.ok  # without a key a full rewrite is undetectable: this is why we sign

    verifier = signer.verify_only() if isinstance(signer, Ed25519Signer) else signer
    report = verify_ledger(ledger.path, root=root, signer=verifier)
    assert report.errors == [
        f"line {n}: signature does not verify (key {signer.key_id!r})" for n in range(2, 7)
    ]  # line 1 is untouched; the edit of line 2 changes every later hash through prev_hash


def test_rewritten_chain_with_signatures_stripped_or_foreign_key_fails(tmp_path: Path) -> None:
    signer = HmacSigner(HMAC_KEY)
    ledger, root = _build_ledger(tmp_path, signer)
    _rewrite_chain(ledger.path, _set_class_cap, strip_sigs=True)
    stripped = verify_ledger(ledger.path, root=root, signer=signer)
    assert stripped.errors == [f"line {n}: missing signature" for n in range(1, 7)]

    forger = HmacSigner(b"attacker-key-0123456789")
    forged, forged_root = _build_ledger(tmp_path / "forged", forger)
    report = verify_ledger(forged.path, root=forged_root, signer=signer)
    assert report.check("signatures").errors[0] == (
        f"line 1: signed by key {forger.key_id!r}, expected {signer.key_id!r}"
    )


def test_artifact_changed_on_disk_is_detected_but_a_rewrite_of_equal_content_is_not(tmp_path: Path) -> None:
    ledger, root = _build_ledger(tmp_path)
    _write_parquet(root, POOL_REL, _pool_frame(), compression="gzip")  # same table, other bytes
    assert verify_ledger(ledger.path, root=root).ok

    changed = _pool_frame()
    changed.loc[1, "score"] = 0.71
    _write_parquet(root, POOL_REL, changed)
    report = verify_ledger(ledger.path, root=root)
    assert report.errors == [f"line 3: artifact {POOL_REL} changed since it was recorded"]


def test_missing_artifact_is_detected(tmp_path: Path) -> None:
    ledger, root = _build_ledger(tmp_path)
    (root / WEIGHTS_REL).unlink()
    report = verify_ledger(ledger.path, root=root)
    assert report.errors == [f"line 5: artifact {WEIGHTS_REL} is missing"]


def test_rematerialized_artifact_is_checked_against_its_latest_record(tmp_path: Path) -> None:
    ledger, root = _build_ledger(tmp_path)
    new_weights = _weights_frame() * 0.5 + 0.2
    path = _write_parquet(root, WEIGHTS_REL, new_weights)
    assert verify_ledger(ledger.path, root=root).errors == [
        f"line 5: artifact {WEIGHTS_REL} changed since it was recorded"
    ]
    ledger.start("run-backfill", {})
    ledger.intent("run-backfill", "target_weights", {})
    ledger.outcome(
        "run-backfill", "target_weights", {"status": "ok", "outputs": {"w": output_entry(root, path)}}
    )
    assert verify_ledger(ledger.path, root=root).ok


def test_intent_without_outcome_and_outcome_without_intent_are_detected(tmp_path: Path) -> None:
    ledger, root = _build_ledger(tmp_path)
    ledger.intent(RUN, "market_regime", {})
    ledger.outcome(RUN, "risk_buckets", {"status": "ok"})
    report = verify_ledger(ledger.path, root=root)
    assert report.errors == [
        "line 8: outcome for asset 'risk_buckets' (run 'run-1') without a preceding intent",
        "line 7: intent for asset 'market_regime' (run 'run-1') has no outcome",
    ]


def test_missing_or_empty_ledger_fails_verification(tmp_path: Path) -> None:
    missing = verify_ledger(tmp_path / "nope.jsonl")
    assert not missing.ok and missing.errors == [f"ledger file not found: {tmp_path / 'nope.jsonl'}"]
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert verify_ledger(empty).errors == ["ledger is empty", "no genesis record (ledger is empty)"]
