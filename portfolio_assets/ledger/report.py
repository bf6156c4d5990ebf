"""Verification results: the named checks, `CheckResult`, `VerificationReport` and `format_report`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

# --------------------------------------------------------------------------- verification

CheckStatus = Literal["ok", "FAIL", "skip"]
CHECK_NAMES: Final = (
    "parse",
    "schema",
    "sequence",
    "genesis",
    "chain",
    "hashes",
    "pairing",
    "artifacts",
    "signatures",
    "binding",
    "seals",
    "anchor",
)


@dataclass(frozen=True)
class CheckResult:
    """One verification check: ``status`` is ``ok``, ``FAIL`` or ``skip`` (not applicable)."""

    name: str
    status: CheckStatus
    detail: str
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class VerificationReport:
    """Result of :func:`verify_ledger`: one row per check, in a fixed order."""

    path: Path
    n_records: int
    checks: tuple[CheckResult, ...]
    signed: int = 0  # records carrying a signature
    key_checked: bool = False  # signatures were verified with a key

    @property
    def signatures_unchecked(self) -> bool:
        """True if records are signed but no key verified them: a forger who re-chains the file
        consistently passes every other check (docs/ledger.md)."""
        return self.signed > 0 and not self.key_checked

    @property
    def ok(self) -> bool:
        """True if no check failed (skipped checks do not fail the report)."""
        return all(c.status != "FAIL" for c in self.checks)

    @property
    def errors(self) -> list[str]:
        """Every error message, check by check."""
        return [e for c in self.checks for e in c.errors]

    def check(self, name: str) -> CheckResult:
        """The row of check `name`."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check named {name!r}; checks are {[c.name for c in self.checks]}")


def _result(name: str, errors: list[str], ok_detail: str) -> CheckResult:
    if errors:
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        return CheckResult(name, "FAIL", errors[0] + more, tuple(errors))
    return CheckResult(name, "ok", ok_detail)


def format_report(report: VerificationReport, *, max_errors: int = 20) -> str:
    """Readable, aligned text table of a report; failing checks list up to `max_errors` lines each."""
    failed = sum(c.status == "FAIL" for c in report.checks)
    verdict = "PASS" if report.ok else f"FAIL ({failed} of {len(report.checks)} checks failed)"
    rows: list[tuple[str, str, str]] = []
    for c in report.checks:
        messages = list(c.errors) or [c.detail]
        shown = messages[:max_errors]
        if len(messages) > max_errors:
            shown.append(f"... and {len(messages) - max_errors} more")
        rows.append((c.name, c.status, shown[0]))
        rows.extend(("", "", msg) for msg in shown[1:])
    w_name = max(len("check"), *(len(r[0]) for r in rows))
    w_status = max(len("status"), *(len(r[1]) for r in rows))
    out = [
        f"ledger   {report.path}",
        f"records  {report.n_records}",
        f"result   {verdict}",
        "",
        f"{'check':<{w_name}}  {'status':<{w_status}}  detail",
        f"{'-' * w_name}  {'-' * w_status}  {'-' * 6}",
    ]
    out += [f"{name:<{w_name}}  {status:<{w_status}}  {detail}".rstrip() for name, status, detail in rows]
    return "\n".join(out) + "\n"
