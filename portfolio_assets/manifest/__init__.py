"""Typed manifest and profile resolution.

`configs/manifest.json` holds `default_profile`, a `defaults` block shared by every profile, and
`profiles` (each a delta over `defaults`, optionally `extends` another profile, or a string alias
of another profile). Resolution, highest first:

    CLI overrides  >  PA_<SECTION>__<KEY>=<json> environment  >  profile (and what it extends)
    >  defaults  >  the code defaults of the models below.

`source.settings` merge per kind: a layer's settings belong to the `source.kind` in force at that
layer (its own, else the one below), and the resolved settings are those of the final kind only
(key by key over the layers that gave settings for it; a CLI/environment `source.settings=...`
replaces them). So `--set source.kind=files --set source.settings.path=DIR` drops the profile's
synthetic settings. They are validated against the kind's model (`sources.settings`).

The file is checked against `configs/manifest.schema.json` (generated from these models by
`portfolio-assets manifest-schema`), so an error names the file, the JSON path and the problem.

Nonsense is refused before any work starts: every number is finite and bounded (windows >= 1,
fractions in range, counts, backoffs and timeouts with upper limits), engine names come from
`constants.ENGINE_NAMES`; the file may not hold `NaN`/`Infinity` or a duplicate key, and any read
or decode error names it; an override that fails names its origin (`--set x.y=...` or
`PA_<SECTION>__<KEY>=...`); a `PA_*` variable that is neither a setting nor in `NON_OVERRIDE_ENV` (nor named by
a `*_env` setting) is refused with the nearest valid name; a webhook URL that cannot work is refused.
The strict readers live in `manifest_input`.

The package is cut at its seams: ``base`` (paths, :class:`ManifestError`, shared bounds), ``models``
(every section model and its defaults -- the one home of each default -- and the JSON schema),
``overrides`` (``--set`` and ``PA_<SECTION>__<KEY>``) and ``resolution`` (:func:`resolve`). Every
public name is re-exported here: import from ``portfolio_assets.manifest``.
"""

from __future__ import annotations

from portfolio_assets.manifest.base import (
    DEFAULT_MANIFEST,
    DEFAULT_SCHEMA,
    ENV_NAME_RE,
    ENV_PREFIX,
    MAX_CLUSTERS,
    MAX_RECOVERY_WAIT_S,
    MAX_SINK_WAIT_S,
    MAX_SYMBOLS,
    MAX_VOL_ANN,
    MAX_VOL_RATIO,
    MAX_WINDOW,
    NON_OVERRIDE_ENV,
    PROFILE_RE,
    PROJECT_ROOT,
    EngineName,
    ManifestError,
)
from portfolio_assets.manifest.models import (
    SECTIONS,
    AlertsConfig,
    AlertSink,
    BacktestConfig,
    CalendarConfig,
    CeleryConfig,
    Config,
    DataConfig,
    DiscoveryConfig,
    ExecutorConfig,
    FeaturesConfig,
    GistConfig,
    LedgerConfig,
    Linkage,
    ManifestFile,
    OptimizationConfig,
    ProfileDelta,
    RegimeConfig,
    ReportsConfig,
    ResolvedManifest,
    RiskConfig,
    ScannerFamily,
    ScannerPreset,
    SelectionConfig,
    json_schema,
)
from portfolio_assets.manifest.overrides import env_name, env_overrides
from portfolio_assets.manifest.resolution import load_manifest_file, parse_cli_overrides, resolve

__all__ = [
    "AlertSink",
    "AlertsConfig",
    "BacktestConfig",
    "CalendarConfig",
    "CeleryConfig",
    "Config",
    "DEFAULT_MANIFEST",
    "DEFAULT_SCHEMA",
    "DataConfig",
    "DiscoveryConfig",
    "ENV_NAME_RE",
    "ENV_PREFIX",
    "EngineName",
    "ExecutorConfig",
    "FeaturesConfig",
    "GistConfig",
    "LedgerConfig",
    "Linkage",
    "MAX_CLUSTERS",
    "MAX_RECOVERY_WAIT_S",
    "MAX_SINK_WAIT_S",
    "MAX_SYMBOLS",
    "MAX_VOL_ANN",
    "MAX_VOL_RATIO",
    "MAX_WINDOW",
    "ManifestError",
    "ManifestFile",
    "NON_OVERRIDE_ENV",
    "OptimizationConfig",
    "PROFILE_RE",
    "PROJECT_ROOT",
    "ProfileDelta",
    "RegimeConfig",
    "ReportsConfig",
    "ResolvedManifest",
    "RiskConfig",
    "SECTIONS",
    "ScannerFamily",
    "ScannerPreset",
    "SelectionConfig",
    "env_name",
    "env_overrides",
    "json_schema",
    "load_manifest_file",
    "parse_cli_overrides",
    "resolve",
]
