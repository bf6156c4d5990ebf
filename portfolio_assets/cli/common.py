"""What every command shares: exit codes, the profile's Dagster instance (`dagster_home`), resolving the
profile into the environment, date checks and the partition lock that keeps two writers apart."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

from portfolio_assets.constants import WRITER_LOCK  # noqa: F401 (re-exported by cli)
from portfolio_assets.manifest import PROJECT_ROOT, parse_cli_overrides, resolve
from portfolio_assets.manifest.base import is_object_store, lakehouse_base_path

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_IN_PROGRESS, EXIT_SIGNATURES_UNCHECKED = 0, 1, 2, 3, 4
DAGSTER_YAML = PROJECT_ROOT / "configs" / "dagster.yaml"
PROFILE_TAG = "portfolio_assets/profile"


def _err(msg: str) -> None:
    print(f"portfolio-assets: {msg}", file=sys.stderr)


def dagster_home(profile: str | None = None) -> Path:
    """The persistent Dagster instance of `profile` (default: the profile in `PA_PROFILE`): `<base>/profiles/<profile>`,
    base = DAGSTER_HOME (env, else `<project>/.dagster_home`), so the UI, `status` and every run of a
    profile see only that profile's runs and materializations (one instance per profile; the asset
    keys stay those of the one code location). Without `PA_PROFILE`, the base itself.

    The base's dagster.yaml (a missing one is copied from `configs/dagster.yaml`; an existing one keeps
    its settings, but `telemetry: enabled: false` and `nux: enabled: false` (no onboarding pop-up) are
    merged into it when missing or different, and the change is reported on stderr) is the settings
    file of every profile's instance (copied into it when different).
    """
    given = Path(os.environ.get("DAGSTER_HOME") or PROJECT_ROOT / ".dagster_home").resolve()
    # A process that already chose its profile's instance (or a child of one) names the base's child.
    base = given.parent.parent if given.parent.name == PROFILES_DIR else given
    _prepare_home(base)
    profile = profile or os.environ.get("PA_PROFILE")
    home = base
    if profile:
        from portfolio_assets.manifest import PROFILE_RE

        if not PROFILE_RE.fullmatch(profile):
            raise ValueError(f"invalid profile name {profile!r}")
        home = base / PROFILES_DIR / profile
        home.mkdir(parents=True, exist_ok=True)
        settings = (base / "dagster.yaml").read_bytes()
        target = home / "dagster.yaml"
        if not target.exists() or target.read_bytes() != settings:
            tmp = target.with_name(f".dagster.yaml.{os.getpid()}.tmp")
            tmp.write_bytes(settings)
            os.replace(tmp, target)
    os.environ["DAGSTER_HOME"] = str(home)
    # `telemetry: enabled: false` does not stop the daemon's upload thread (it reads this variable):
    # every daemon, webserver and code server this command starts inherits it.
    os.environ["DAGSTER_DISABLE_TELEMETRY"] = "1"
    _init_instance_storage(home)
    return home


PROFILES_DIR = "profiles"


def _prepare_home(home: Path) -> None:
    """`home`/dagster.yaml: created from the template, telemetry and nux merged in (reported)."""
    import yaml

    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    tmp = target.with_name(f".dagster.yaml.{os.getpid()}.tmp")  # write-then-rename: readers never see half a file
    if not target.exists():
        shutil.copyfile(DAGSTER_YAML, tmp)
        os.replace(tmp, target)
    try:
        config = yaml.safe_load(target.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{target} is not valid YAML: {exc}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{target} must be a mapping of Dagster instance settings, not a {type(config).__name__}")
    fixed = []
    for section in ("telemetry", "nux"):
        value = config.get(section)
        current = value if isinstance(value, dict) else {}
        if current.get("enabled") is not False:
            config[section] = {**current, "enabled": False}
            fixed.append(f"{section}.enabled")
    if fixed:
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
        os.replace(tmp, target)
        _err(f"updated {target}: set {', '.join(fixed)} to false (telemetry off, no onboarding pop-up)")


def _init_instance_storage(home: Path) -> None:
    """Create the instance's SQLite storages once, under a file lock: two commands starting at the
    same moment on a fresh DAGSTER_HOME could otherwise both stamp the schema (two alembic heads,
    an unusable instance; dagster-io/dagster#27390)."""
    from dagster import DagsterInstance

    from portfolio_assets.lakehouse import file_lock

    marker = home / ".storage-initialized"
    if marker.exists():
        return
    with file_lock(marker):
        if not marker.exists():
            with DagsterInstance.get():
                pass
            marker.touch()


def _pin_relative_source_paths(settings: Any, overrides: dict[str, Any]) -> dict[str, Any] | None:
    """`overrides` with each relative path of the source's settings (`path`, `stored_scans`) made
    absolute against this command's working directory, where it was checked; None when there is
    none. The processes a command starts (a backfill's code server and daemon, the UI's) run in the
    project folder, so a relative `--set source.settings.path=data` (or `PA_SOURCE__SETTINGS__PATH`)
    named another folder there, and their code location failed to load."""
    relative = {name: value for name in ("path", "stored_scans")
                if isinstance(value := getattr(settings, name, None), Path) and not value.expanduser().is_absolute()}
    if not relative:
        return None
    pinned = {k: v for k, v in overrides.items() if k.removeprefix("source.settings.") not in relative}
    # applied last, after a whole `source.settings={...}` given on the command line
    pinned.update({f"source.settings.{name}": str(Path.cwd() / value.expanduser()) for name, value in relative.items()})
    return pinned


def _setup_env(args: argparse.Namespace) -> Any:
    """Resolve the profile once (clear errors before any Dagster work) and export it to steps."""
    overrides = parse_cli_overrides(getattr(args, "set", None) or [])
    resolved = resolve(args.profile, cli_overrides=overrides)
    pinned = _pin_relative_source_paths(resolved.config.source.settings, overrides)
    if pinned is not None:
        overrides = pinned
        resolved = resolve(args.profile, cli_overrides=overrides)
    os.environ["PA_PROFILE"] = resolved.profile
    os.environ["PA_CLI_OVERRIDES"] = json.dumps(overrides, sort_keys=True)
    # the processes a command starts (a backfill's code server and daemon, the UI's) run in the
    # project folder: a relative PA_LAKEHOUSE=lake made their runs write <project>/lake while this
    # command locked and read ./lake; a relative PA_MANIFEST named another file there
    if os.environ.get("PA_LAKEHOUSE") and not is_object_store(os.environ["PA_LAKEHOUSE"]):
        os.environ["PA_LAKEHOUSE"] = str(lakehouse_base_path(os.environ["PA_LAKEHOUSE"]))
    elif is_object_store(os.environ.get("PA_LAKEHOUSE")):  # reachable, before any work
        from portfolio_assets.lake_mirror import MirrorError, attach

        mirror = attach(lakehouse_base_path(os.environ["PA_LAKEHOUSE"]))
        try:
            assert mirror is not None
            mirror.check()
        except MirrorError as exc:
            raise ValueError(f"PA_LAKEHOUSE: {exc}; nothing was run") from None
    for name in ("PA_MANIFEST", "PA_CACHE_DIR"):
        if os.environ.get(name):
            os.environ[name] = str(Path(os.environ[name]).expanduser().resolve())
    dagster_home()
    return resolved


def _partition_date(text: str | None) -> str:
    from portfolio_assets.partitions import latest_closed_session, validate_partition_date

    if text is None:
        return latest_closed_session().isoformat()
    return validate_partition_date(text).isoformat()


def check_history(partition: str) -> None:
    """Refuse, before any run, a date the source cannot serve with enough history: the baseline's
    bars must cover the 500-session history window (+1 session for the first return). The regime's
    warm-up before that window is read as far as the source has it (`market_regime` records how many
    baseline sessions it used; a short warm-up leaves the 3-year reference undefined, not wrong).

    With the `files` source, whose bars never grow after the export, the baseline's newest bar must
    also be at most `source.settings.max_staleness_days` before the date: an export that ends earlier
    lists every symbol as delisted on it (a run without --date on last month's export used to fail
    at `raw_pool` with "every scan is empty"). A shorter lag is the health gate's to judge
    (`data.staleness_sessions`). Live sources are not held to this check: a bar a day late is the
    gate's to judge and their repair fetches' to heal."""
    from portfolio_assets.fetch import window_bounds
    from portfolio_assets.partitions import sessions_window
    from portfolio_assets.resources import PortfolioSettings
    from portfolio_assets.sources.base import SourceError
    from portfolio_assets.sources.settings import FilesSettings
    from portfolio_assets.timestamps import utc_times

    settings = PortfolioSettings()
    cfg = settings.resolved().config
    sessions = cfg.data.lookback_history + 1
    window = sessions_window(partition, sessions)
    start, end = window_bounds(window)
    baseline = cfg.selection.baseline
    try:
        source = settings.source()  # opening it checks what it can up front (the files source: its layout)
    except SourceError as exc:
        raise ValueError(f"the {cfg.source.kind} source: {exc}") from None
    try:
        bars = source.bars(baseline, start, end)
    except SourceError as exc:
        raise ValueError(f"partition {partition}: the source cannot serve the baseline {baseline}: {exc}") from None
    first = _first_day(bars)
    if first is None or first > window[0].date():
        raise ValueError(
            f"partition {partition} needs {sessions} sessions of history from {window[0].date()}; the source "
            f"({cfg.source.kind}) serves {baseline} from {first or 'no date at all'}")
    if isinstance(cfg.source.settings, FilesSettings):
        days = cfg.source.settings.max_staleness_days
        last = utc_times(bars["time"]).max().date()
        if (dt.date.fromisoformat(partition) - last).days > days:
            raise ValueError(
                f"partition {partition}: the files source's bars of {baseline} end on {last}, more than {days} days "
                f"before it (source.settings.max_staleness_days), so every symbol of the export would count as "
                f"delisted: pick a --date on or before {last + dt.timedelta(days=days)}, or export newer bars")


def _first_day(bars: Any) -> dt.date | None:
    from portfolio_assets.timestamps import utc_times

    if bars is None or len(bars) == 0:
        return None
    return utc_times(bars["time"]).min().date()


def _date_range(date_from: str, date_to: str) -> list[str]:
    """The trading dates D1..D2 (both validated; D1 <= D2)."""
    from portfolio_assets.partitions import master_sessions

    d1, d2 = _partition_date(date_from), _partition_date(date_to)
    if d1 > d2:
        raise ValueError(f"--from {d1} is after --to {d2}")
    return [d.date().isoformat() for d in master_sessions(d1, d2)]


def _log_path(kind: str) -> Path:
    """A log file under `DAGSTER_HOME/cli-logs/` (not `logs/`: Dagster's daemon treats that folder
    as its telemetry outbox and moves it away)."""
    path = dagster_home() / "cli-logs" / f"{kind}-{dt.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def check_preconditions(resolved: Any) -> None:
    """What a run needs before anything is touched (archived, cleared, written): a signing key when
    the profile signs its ledger (`ledger.signing`), well-formed key variables."""
    from portfolio_assets.ledger import signer_from_env

    signer = signer_from_env()  # a malformed key variable is refused here, naming the variable
    signing = resolved.config.ledger.signing
    if resolved.config.features.feat_audit_ledger and signing != "none" and signer is None:
        raise ValueError(f"profile {resolved.profile!r} signs its ledger ({signing}) but no key is set: export "
                         "PA_LEDGER_HMAC_KEY or PA_LEDGER_ED25519_KEY (nothing was run, archived or changed)")


def _running_runs(partition: str) -> list[str]:
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    if not os.environ.get("DAGSTER_HOME"):  # every command sets it (dagster_home()) before locking
        return []
    with DagsterInstance.get() as instance:
        records = instance.get_run_records(RunsFilter(
            tags={"dagster/partition": partition},
            statuses=[DagsterRunStatus.STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.QUEUED]), limit=5)
    return [r.dagster_run.run_id for r in records]


def _active_runs(partitions: set[str]) -> dict[str, list[str]]:
    """`{partition: [run id, ...]}` of the instance's starting, running or cancelling runs of any of
    `partitions` (one query), except runs of a CLI process that is gone."""
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    from portfolio_assets.backfills import run_partitions
    from portfolio_assets.cli.execution import launcher_gone

    if not os.environ.get("DAGSTER_HOME"):
        return {}
    with DagsterInstance.get() as instance:
        records = instance.get_run_records(RunsFilter(statuses=[
            DagsterRunStatus.STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.CANCELING]))
    busy: dict[str, list[str]] = {}
    for record in records:
        run = record.dagster_run
        if launcher_gone(run) is not None:
            continue
        for partition in run_partitions(run.tags, sorted(partitions)):  # a ranged run: each date of its range
            busy.setdefault(partition, []).append(run.run_id)
    return busy


class partition_lock:  # noqa: N801 (a context manager used like a function)
    """One writer per partition: an exclusive `fcntl` lock on `<profile>/ledger/<date>/writer.lock`
    for every partition a command materializes, taken before anything is run and held until the
    command ends (the kernel releases it if the process dies, kill -9 included). A second `run`,
    `backfill`, `accept` or `audit` of a locked partition is refused up front, naming the holder
    and its Dagster runs; nothing is archived or changed."""

    def __init__(self, partitions: list[str], command: str):
        from portfolio_assets.lakehouse import Lakehouse

        self.lake = Lakehouse(profile=os.environ["PA_PROFILE"])
        self.partitions = partitions
        self.command = command
        self.fds: list[int] = []

    def __enter__(self) -> partition_lock:
        import fcntl
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = len(self.partitions) + 512  # one descriptor per locked partition, and room for the run
        if soft != resource.RLIM_INFINITY and soft < wanted:
            if hard != resource.RLIM_INFINITY and hard < wanted:
                raise ValueError(f"locking {len(self.partitions)} partitions needs {wanted} open files, the limit is "
                                 f"{hard}: split the range")
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        try:
            for partition in self.partitions:
                path = self.lake.writer_lock_path(partition)
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown"
                    os.close(fd)
                    runs = _running_runs(partition)
                    raise ValueError(
                        f"partition {partition} of profile {self.lake.profile} is being written by another command "
                        f"({holder}){'; its run(s): ' + ', '.join(runs) if runs else ''}: wait for it to finish "
                        f"(`portfolio-assets status --date {partition}`); nothing was run, archived or changed"
                    ) from None
                self.fds.append(fd)
                info = json.dumps({"pid": os.getpid(), "command": self.command,
                                   "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                                   "host": socket.gethostname()})
                os.ftruncate(fd, 0)
                os.pwrite(fd, info.encode(), 0)
            # Runs launched from the UI, the schedule or a daemon backfill do not take this lock;
            # Dagster's queue keeps them one per partition, and a command does not start beside one.
            busy = _active_runs(set(self.partitions))
            if busy:
                partition = min(busy)
                raise ValueError(
                    f"partition {partition} of profile {self.lake.profile} has a Dagster run in progress (launched "
                    f"from the UI, the schedule or a backfill): {', '.join(busy[partition])}: wait for it to finish "
                    f"(`portfolio-assets status --date {partition}`); nothing was run, archived or changed")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        for fd in self.fds:
            os.close(fd)  # closing the descriptor releases the lock
        self.fds = []
