"""What every part of the manifest shares: project paths, the `PA_*` variables that are not settings,
`ManifestError`, the frozen section base and the bounds several sections use."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Final
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from portfolio_assets.constants import (
    ENGINE_NAMES,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # portfolio_assets/manifest/base.py -> the project
DEFAULT_MANIFEST = PROJECT_ROOT / "configs" / "manifest.json"
DEFAULT_SCHEMA = PROJECT_ROOT / "configs" / "manifest.schema.json"
DEFAULT_LAKEHOUSE = PROJECT_ROOT / "lakehouse"
PROFILE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
ENV_PREFIX = "PA_"
NON_OVERRIDE_ENV: Final[Mapping[str, str]] = MappingProxyType({
    "PA_PROFILE": "the profile when --profile is not given",
    "PA_MANIFEST": "the manifest file (default configs/manifest.json)",
    "PA_LAKEHOUSE": "the lakehouse root: a path, a file:// URL or s3://bucket/prefix (default <project>/lakehouse)",
    "PA_CLI_OVERRIDES": "the CLI's --set overrides as JSON, for the step processes (set by the CLI)",
    "PA_CACHE_DIR": "where exchange-calendar session tables are cached (session_tables.py)",
    "PA_NUMERICS": "native lifts the pin of the floating-point kernels (numerics.py)",
    "PA_LOG_LEVEL": "DEBUG or INFO streams Dagster's log to the terminal",
    "PA_LEDGER_HMAC_KEY": "ledger signing: the HMAC-SHA256 secret (ledger/signing.py)",
    "PA_LEDGER_ED25519_KEY": "ledger signing: the Ed25519 private seed, 64 hex characters",
    "PA_LEDGER_ED25519_PUBLIC_KEY": "ledger verification: the Ed25519 public key, 64 hex characters",
    "PA_TV_SCANNER_BASE": "TradingView: scanner URL, wins over source.settings.scanner_base",
    "PA_TV_WS_URL": "TradingView: chart websocket URL, wins over source.settings.ws_url",
    "PA_GIST_TOKEN": "reports.gist.token_env's default: the GitHub token for gists",
    "PA_ALERT_WEBHOOK_URL": "the production profile's webhook sink (alerts.sinks[].url_env)",
    "PA_UPDATE_SNAPSHOT": "tests: 1 rewrites the asset-graph snapshot",
    "PA_LINEAGE_PNG": "tests: where the UI test saves the lineage screenshot",
})
"""The `PA_*` environment variables that are not settings. Besides these, any variable a `*_env`
setting names (in the manifest file or the resolved config) is allowed; every other `PA_*` name
must be an override `PA_<SECTION>__<KEY>` of a known setting, or resolution refuses it."""


class ManifestError(ValueError):
    """A manifest problem: `file`, JSON `path` (e.g. `$.profiles.demo.selection.top_n`), `problem`."""

    def __init__(self, file: Path | str, path: str, problem: str):
        self.file, self.path, self.problem = str(file), path, problem
        super().__init__(f"{file}: {path}: {problem}")


URL_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def lakehouse_base_path(text: str | None) -> Path:
    """The lakehouse root named by `text` (`PA_LAKEHOUSE` or a resource's `lakehouse_root`), resolved:
    a local path or a `file://` URL; unset or empty is `<project>/lakehouse`. An `s3://bucket/prefix`
    URL names this host's working copy of that object-store lakehouse (`lake_mirror`), which the
    `Lakehouse` keeps in step with the bucket.

    Any other URL (`gs://`, `http://`, ...) is refused with a `ValueError` rather than taken for a
    relative folder named `gs:`: the object-store layer needs S3's conditional writes for its
    leases. Several hosts share a lakehouse through `s3://` or by mounting the same file system at
    the same path (docs/deployment.md)."""
    if not text:
        return DEFAULT_LAKEHOUSE.resolve()
    scheme = URL_SCHEME_RE.match(text)
    if scheme is None:
        return Path(text).expanduser().resolve()
    if is_object_store(text):
        from portfolio_assets.lake_mirror import working_copy

        return working_copy(text)
    if scheme.group(1).lower() != "file":
        raise ValueError(
            f"{text!r} is a {scheme.group(1)}:// URL; the lakehouse root must be a local path, a file:// URL or an "
            "s3:// URL (the object-store layer relies on S3's conditional writes), or mount the storage at the same "
            "path on every host (docs/deployment.md)")
    parts = urlsplit(text)
    if parts.netloc not in ("", "localhost") or parts.query or parts.fragment or not parts.path:
        raise ValueError(f"{text!r} is not a local file:// URL (file:///absolute/path)")
    return Path(unquote(parts.path)).resolve()


def is_object_store(text: str | None) -> bool:
    """Whether `text` (`PA_LAKEHOUSE`) names an object-store lakehouse (`s3://...`)."""
    scheme = URL_SCHEME_RE.match(text or "")
    return scheme is not None and scheme.group(1).lower() == "s3"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# Upper bounds shared by several sections (so a typo of a few zeros is refused before any work).
MAX_WINDOW = 10_000  # sessions (~40 years)
MAX_SYMBOLS = 100_000  # symbols in one list, pool or universe
MAX_CLUSTERS = 10_000
MAX_VOL_ANN = 5.0  # annualized volatility, 500 %/yr
MAX_VOL_RATIO = 50.0  # vol_ann / vol_ref
MAX_RECOVERY_WAIT_S = 120.0  # backoff waits of one repair range
MAX_SINK_WAIT_S = 120.0  # one alert at one sink: attempts x timeout + backoff waits
ENV_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
EngineName = Annotated[str, Field(json_schema_extra={"enum": list(ENGINE_NAMES)})]
"""An engine of the registry (`constants.ENGINE_NAMES`): the schema lists them; the validators of
`OptimizationConfig` refuse any other with the list."""
