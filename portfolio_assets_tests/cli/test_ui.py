"""The Dagster UI as `portfolio-assets ui` serves it, and the DAGSTER_HOME it prepares.

Server tests (marked `ui`) start the real command, `portfolio-assets ui --host 127.0.0.1 --port <free>`
(= `dagster dev`: webserver + daemon) on a temporary DAGSTER_HOME, once per module, in the background
(as `portfolio-assets ui &` starts it: SIGINT ignored). The last of them stops it with one SIGTERM to
the command and fails if anything it started (dagster dev, webserver, daemon, code servers) is still
running after the deadline. They check:

- GraphQL (`POST /graphql`): the served lineage edges, groups, kinds, owners and descriptions equal
  the code's graph, the gate checks are blocking, no onboarding pop-up, every daemon is healthy;
- headless Chromium on the global lineage page (`/asset-groups`, the UI's "Lineage" entry, with
  every group expanded via `?expanded=`): a PNG of the requested size that is not blank, and a
  rendered DOM holding every asset node and no error or onboarding modal. Chromium must be
  installed (`apt-get install -y chromium`; `.ci/run` does it): without it these tests FAIL.

To refresh the README picture, run with `PA_LINEAGE_PNG=docs/lineage.png`: the screenshot test
then also saves a large (1800x1300 at device scale 2) lineage screenshot there.

The other tests need no server: DAGSTER_HOME generation/merging and the `dagster dev` command line.
"""

from __future__ import annotations

import contextlib
import html.parser
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import yaml

from portfolio_assets import backfills, cli
from portfolio_assets.definitions import defs
from portfolio_assets_tests.conftest import describe, run_cli

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_DEADLINE_S = 90.0  # typically 15-30 s on 2 shared cores (two code-location loads)
SHUTDOWN_DEADLINE_S = 40.0
WINDOW = (1600, 1000)
GATES = {"history_500d:health_gate", "target_weights:weights_sanity", "audit_ledger:ledger_integrity"}
ONBOARDING_OR_ERROR_TEXT = (
    "Join the Dagster community",  # the nux modal (shown on 127.0.0.1 unless `nux: enabled: false`)
    "Sign up for the Dagster newsletter",
    "An unexpected error",
    "failed to load",
    "Cycle detected",
)

LINEAGE_QUERY = """
query PortfolioLineage {
  shouldShowNux
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
    ... on PythonError { message }
  }
  assetNodes {
    assetKey { path }
    dependencyKeys { path }
    groupName
    description
    kinds
    isMaterializable
    owners { __typename ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }
    assetChecksOrError {
      __typename
      ... on AssetChecks { checks { name blocking } }
    }
  }
}
"""

WORKSPACE_QUERY = """
query { workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } ... on PythonError { message } } }
"""

DAEMON_QUERY = "query { instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never send 127.0.0.1 via a proxy


# ---------------------------------------------------------------------------------------------
# the server
# ---------------------------------------------------------------------------------------------
@dataclass
class UiServer:
    url: str
    proc: subprocess.Popen
    log: Path
    home: Path
    startup_s: float = 0.0

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:]) if self.log.exists() else ""

    def graphql(self, query: str, variables: dict[str, Any] | None = None, timeout: float = 30.0) -> dict[str, Any]:
        req = urllib.request.Request(
            f"{self.url}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"}, method="POST",
        )
        with NO_PROXY.open(req, timeout=timeout) as resp:
            body = json.loads(resp.read())
        assert not body.get("errors"), f"GraphQL errors: {body['errors']}"
        return body["data"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _workspace_state(server: UiServer) -> str | None:
    """'loaded', an error message, or None while the server or the code location is still starting."""
    try:
        with NO_PROXY.open(f"{server.url}/server_info", timeout=2) as resp:
            json.loads(resp.read())
        data = server.graphql(WORKSPACE_QUERY, timeout=5)
    except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
        return None
    ws = data["workspaceOrError"]
    if ws["__typename"] != "Workspace":
        return f"workspace error: {ws.get('message')}"
    entries = ws["locationEntries"]
    if not entries or any(e["loadStatus"] != "LOADED" for e in entries):
        return None
    errors = [e["locationOrLoadError"].get("message") for e in entries
              if e["locationOrLoadError"]["__typename"] != "RepositoryLocation"]
    return f"code location failed to load: {errors}" if errors else "loaded"


def _stop(proc: subprocess.Popen) -> tuple[float, list[str]]:
    """Stop a background `portfolio-assets ui` (SIGINT ignored) as its user would: one SIGTERM to
    the command. Wait for it and every process it started (dagster dev, webserver, daemon, code
    servers) to exit, SIGKILL what is left after the deadline. Returns the seconds it took and the
    processes that had to be killed."""
    t0 = time.monotonic()
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=SHUTDOWN_DEADLINE_S)  # reaps our direct child
    _, alive = psutil.wait_procs(family, timeout=max(0.1, SHUTDOWN_DEADLINE_S - (time.monotonic() - t0)))
    killed = []
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            killed.append(" ".join(p.cmdline()[:4]))
            p.kill()
    psutil.wait_procs(alive, timeout=10)
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)
    return time.monotonic() - t0, killed


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def ui_env(home: Path) -> dict[str, str]:
    """The environment of the UI server on `home`: a CLI command run with it uses the same
    Dagster instance and lakehouse (the `development` profile)."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("PA_")}, "DAGSTER_HOME": str(home),
            "PA_PROFILE": "development", "PA_LAKEHOUSE": str(home.parent / "lakehouse"),
            "PA_EXECUTOR__KIND": "in_process"}


def start_ui(home: Path, log: Path) -> tuple[UiServer, str | None]:
    """Start `portfolio-assets ui` on a free port in the background (as `portfolio-assets ui &` from
    a script starts it: SIGINT ignored); poll (deadline loop) until its code location is loaded.
    Returns the server and 'loaded', an error, or None (deadline passed / process exited). The
    process is stopped before any exception (including Ctrl-C of pytest) leaves this function."""
    port = free_port()
    env = {**ui_env(home), "PYTHONUNBUFFERED": "1"}
    t0 = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "portfolio_assets.cli", "ui", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_ignore_sigint,
        )
    server = UiServer(url=f"http://127.0.0.1:{port}", proc=proc, log=log, home=home)
    try:
        state = None
        while state is None and proc.poll() is None and time.monotonic() - t0 < STARTUP_DEADLINE_S:
            state = _workspace_state(server)
            if state is None:
                time.sleep(0.25)
    except BaseException:
        _stop(proc)
        raise
    server.startup_s = time.monotonic() - t0
    return server, state


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory) -> Iterator[UiServer]:
    """One `portfolio-assets ui` (dagster dev) for the module, on a free 127.0.0.1 port, started in
    the background (SIGINT ignored, as `portfolio-assets ui &` is): the module's last server test
    stops it with one SIGTERM (`test_one_sigterm_stops_a_background_ui_and_everything_it_started`)."""
    home = tmp_path_factory.mktemp("dagster_home")
    for attempt in range(3):  # a free port can be taken between probing and binding: retry then
        server, state = start_ui(home, home.parent / f"ui-server-{attempt}.log")
        if state == "loaded":
            break
        exited = server.proc.poll() is not None
        _stop(server.proc)
        log = server.log_tail()
        if exited and "address already in use" in log.lower():
            continue
        if state is None and not exited:
            pytest.fail(f"`portfolio-assets ui` not ready within {STARTUP_DEADLINE_S:.0f} s:\n{log}")
        pytest.fail(f"`portfolio-assets ui` did not come up ({state or 'exited'}):\n{log}")
    else:
        pytest.fail(f"`portfolio-assets ui` could not bind a free port in 3 attempts:\n{server.log_tail()}")
    try:
        yield server
    finally:
        # Normally already stopped by the SIGTERM test; if a failure came first, stop it the same
        # way here: a `dagster dev` slow to stop is only reported, then killed, never left running.
        shutdown_s, killed = _stop(server.proc)
        print(f"\nui server: startup {server.startup_s:.1f} s, shutdown {shutdown_s:.1f} s, "
              f"exit code {server.proc.returncode}, killed after the deadline: {killed}")


def code_graph() -> dict[str, dict[str, Any]]:
    graph = defs.resolve_asset_graph()
    out = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        out[key.to_user_string()] = {
            "deps": {k.to_user_string() for k in node.parent_keys},
            "group": node.group_name,
            "kinds": set(node.kinds),
            "owners": set(node.owners),
            "description": node.description,
        }
    checks = {ck.to_user_string(): bool(graph.get(ck).blocking) for ck in graph.asset_check_keys}
    return {"assets": out, "checks": checks}


# ---------------------------------------------------------------------------------------------
# GraphQL
# ---------------------------------------------------------------------------------------------
@pytest.mark.ui
def test_graphql_lineage_equals_code_graph(ui_server: UiServer):
    t0 = time.monotonic()
    data = ui_server.graphql(LINEAGE_QUERY)
    expected = code_graph()

    assert data["shouldShowNux"] is False, "the onboarding pop-up would show: nux not disabled in dagster.yaml"
    entries = data["workspaceOrError"]["locationEntries"]
    location = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["dagster"]["code_location_name"]
    assert [e["name"] for e in entries] == [location]

    nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    assert set(nodes) == set(expected["assets"]), "served asset keys differ from the code's"
    served_edges = {("/".join(d["path"]), k) for k, n in nodes.items() for d in n["dependencyKeys"]}
    code_edges = {(d, k) for k, a in expected["assets"].items() for d in a["deps"]}
    assert served_edges == code_edges, (
        f"lineage differs: only served {sorted(served_edges - code_edges)}, only in code {sorted(code_edges - served_edges)}"
    )
    for key, node in nodes.items():
        want = expected["assets"][key]
        assert node["isMaterializable"], f"{key} is served as a non-materializable (stub/external) asset"
        assert node["groupName"] == want["group"], key
        assert set(node["kinds"]) == want["kinds"], key
        owners = {f"team:{o['team']}" if o["__typename"] == "TeamAssetOwner" else o["email"] for o in node["owners"]}
        assert owners == want["owners"] and owners, key
        assert node["description"] and node["description"] == want["description"], key

    served_checks = {}
    for key, node in nodes.items():
        checks = node["assetChecksOrError"]
        assert checks["__typename"] == "AssetChecks", f"{key}: {checks}"
        served_checks.update({f"{key}:{c['name']}": c["blocking"] for c in checks["checks"]})
    assert served_checks == expected["checks"]
    assert all(served_checks[g] is True for g in GATES), {g: served_checks.get(g) for g in GATES}

    # `dagster dev` runs the daemon too (schedules, sensors, UI backfills): every daemon heartbeats.
    deadline = time.monotonic() + 30
    while True:
        statuses = ui_server.graphql(DAEMON_QUERY)["instance"]["daemonHealth"]["allDaemonStatuses"]
        unhealthy = [s["daemonType"] for s in statuses if s["required"] and not s["healthy"]]
        if statuses and not unhealthy:
            break
        assert time.monotonic() < deadline, f"daemons not healthy: {unhealthy}\n{ui_server.log_tail()}"
        time.sleep(0.5)
    assert {"SCHEDULER", "SENSOR", "BACKFILL", "QUEUED_RUN_COORDINATOR"} <= {s["daemonType"] for s in statuses}
    print(f"\ngraphql checks: {time.monotonic() - t0:.1f} s (server startup {ui_server.startup_s:.1f} s)")


GRAPH_PAGE_QUERY = """
query GraphPage {
  assetNodes {
    assetKey { path }
    dependencyKeys { path }
    groupName
    isPartitioned
    partitionDefinition { description }
    partitionStats { numMaterialized numMaterializing numPartitions numFailed }
  }
}
"""

# The mutation `portfolio-assets backfill` sends (the UI's "Launch backfill" sends the same one).
LAUNCH_BACKFILL = backfills.LAUNCH_BACKFILL

BACKFILL_STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions partitionNames assetBackfillData {
      assetBackfillStatuses { ... on AssetPartitionsStatusCounts { assetKey { path } numPartitionsTargeted
        numPartitionsMaterialized numPartitionsFailed } } } }
  }
}
"""


@pytest.mark.ui
def test_asset_graph_with_every_session_since_1995_loads_quickly(ui_server: UiServer):
    """The asset graph page's data (every node with its partition statistics) over the ~8,000
    partitions of the default calendar, timed; the number is in docs/ARCHITECTURE.md."""
    t0 = time.monotonic()
    ui_server.graphql(GRAPH_PAGE_QUERY)  # the first page view (cold caches)
    cold = time.monotonic() - t0
    t0 = time.monotonic()
    nodes = ui_server.graphql(GRAPH_PAGE_QUERY)["assetNodes"]
    seconds = time.monotonic() - t0
    stats = {"/".join(n["assetKey"]["path"]): n["partitionStats"] for n in nodes}
    assert all(n["isPartitioned"] for n in nodes)
    assert min(s["numPartitions"] for s in stats.values()) > 8000
    print(f"\nasset graph page data: {len(nodes)} assets x {stats['run_manifest']['numPartitions']} partitions "
          f"in {seconds:.2f} s (first view {cold:.2f} s)")
    assert max(seconds, cold) < 20, f"the asset graph's data took {cold:.1f} s, then {seconds:.1f} s"


def _launch(server: UiServer, mutation: str, variables: dict[str, Any], field: str) -> str:
    answer = server.graphql(mutation, variables, timeout=60)[field]
    assert answer["__typename"] == "LaunchBackfillSuccess", answer
    return answer["backfillId"]


def _finished_backfill(server: UiServer, backfill_id: str) -> dict[str, Any]:
    """Poll the backfill until the daemon has finished it (no deadline: a backfill that fails ends by itself)."""
    while True:
        backfill = server.graphql(BACKFILL_STATUS, {"id": backfill_id}, timeout=60)["partitionBackfillOrError"]
        if backfill["status"] != "REQUESTED":
            return backfill
        time.sleep(2)


def _counts(backfill: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
    return {"/".join(c["assetKey"]["path"]): (c["numPartitionsTargeted"], c["numPartitionsMaterialized"],
                                              c["numPartitionsFailed"])
            for c in backfill["assetBackfillData"]["assetBackfillStatuses"]}


@pytest.mark.ui
def test_a_backfill_launched_through_graphql_runs_with_the_daemon(ui_server: UiServer):
    """What the UI's "Materialize" > backfill dialog sends: `launchPartitionBackfill`; the daemon
    of `portfolio-assets ui` runs it to completion and the backfill page reports it."""
    params = {"partitionNames": ["2026-11-24", "2026-11-25"], "assetSelection": [{"path": ["run_manifest"]}],
              "title": "ui test"}
    backfill = _finished_backfill(ui_server, _launch(ui_server, LAUNCH_BACKFILL, {"params": params},
                                                     "launchPartitionBackfill"))
    assert backfill["status"] == "COMPLETED_SUCCESS", f"{backfill}\n{ui_server.log_tail()}"
    (counts,) = backfill["assetBackfillData"]["assetBackfillStatuses"]
    assert (counts["numPartitionsTargeted"], counts["numPartitionsMaterialized"], counts["numPartitionsFailed"]) == (2, 2, 0)
    lake = ui_server.home.parent / "lakehouse" / "development" / "run" / "run_manifest"
    assert sorted(p.name for p in lake.glob("*.parquet")) == ["2026-11-24.parquet", "2026-11-25.parquet"]


RETRY_BACKFILL = """
mutation Retry($params: ReexecutionParams!) {
  reexecutePartitionBackfill(reexecutionParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}
"""


@pytest.mark.ui
def test_a_failed_backfill_partition_is_retried_from_the_ui(ui_server: UiServer):
    """The backfills page's "Re-execute failed" (`reexecutePartitionBackfill`, FROM_FAILURE): a
    partition whose upstream table was unreadable fails; once the upstream is re-materialized, the
    retry is a new backfill of exactly that partition, and it succeeds.

    The upstream is stored, and later repaired, by `portfolio-assets run --select` in the server's
    instance (what a user does from a terminal), not by two more backfills: each of those waits for
    the daemon's 30-s iterations (about a minute apiece) and tests nothing this test is about."""
    days = ["2026-11-19", "2026-11-20"]
    env = ui_env(ui_server.home)
    for day in days:
        stored = run_cli(["run", "--date", day, "--select",
                          "key:run_manifest or group:discovery"], env)
        assert stored.returncode == 0, describe(stored)
    lake = ui_server.home.parent / "lakehouse" / "development"
    (broken,) = lake.glob(f"*/equity_scan/{days[1]}.parquet")
    broken.write_bytes(b"not a parquet file")  # the damage: the second date's scan is unreadable

    pool = [{"path": ["raw_pool"]}, {"path": ["raw_pool__audit"]}]
    first = _launch(ui_server, LAUNCH_BACKFILL, {"params": {"partitionNames": days, "assetSelection": pool}},
                    "launchPartitionBackfill")
    failed = _finished_backfill(ui_server, first)
    assert failed["status"] in ("COMPLETED_FAILED", "FAILED"), failed
    assert _counts(failed)["raw_pool"] == (2, 1, 1), failed
    (good,) = lake.glob(f"*/raw_pool/{days[0]}.parquet")
    assert not list(lake.glob(f"*/raw_pool/{days[1]}.parquet"))

    fix = run_cli(["run", "--date", days[1], "--select", "equity_scan"], env)
    assert fix.returncode == 0, describe(fix)
    good_bytes = good.read_bytes()

    retry = _launch(ui_server, RETRY_BACKFILL, {"params": {"parentRunId": first, "strategy": "FROM_FAILURE"}},
                    "reexecutePartitionBackfill")
    assert retry != first
    retried = _finished_backfill(ui_server, retry)
    assert retried["status"] == "COMPLETED_SUCCESS", f"{retried}\n{ui_server.log_tail()}"
    assert retried["partitionNames"] == [days[1]], retried  # only the failed partition is run again
    assert _counts(retried)["raw_pool"] == (1, 1, 0), retried
    assert [p.name for p in sorted(lake.glob("*/raw_pool/*.parquet"))] == [f"{d}.parquet" for d in days]
    assert good.read_bytes() == good_bytes  # the partition that had succeeded was not re-materialized


# ---------------------------------------------------------------------------------------------
# headless Chromium
# ---------------------------------------------------------------------------------------------
class _Text(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[str] = []

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.chunks.append(data.strip())


def rendered_names(dom: str, names: set[str]) -> set[str]:
    """Asset names shown in the page; a node label may be middle-truncated ("implementa…_orders")."""
    parser = _Text()
    parser.feed(dom)
    texts = set(parser.chunks)
    found = set()
    for name in names:
        for t in texts:
            head, dots, tail = t.partition("…")
            if t == name or (dots and head and tail and len(head) + len(tail) < len(name)
                             and name.startswith(head) and name.endswith(tail)):
                found.add(name)
                break
    return found


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("headless Chromium is required for the UI screenshot test: `apt-get install -y chromium` "
                "(.ci/run installs it)")


DOM_ATTEMPTS = 3


def run_chromium(binary: str, profile: Path, url: str, *mode: str, window=WINDOW, extra=()) -> subprocess.CompletedProcess:
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
           f"--window-size={window[0]},{window[1]}", "--virtual-time-budget=20000", *extra, *mode, url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}"
    return proc


def lineage_url(server: UiServer) -> str:
    """The global lineage page with every group expanded (group ids as the 1.13 UI builds them,
    with and without per-code-location grouping), so each asset node is rendered."""
    location = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["dagster"]["code_location_name"]
    groups = sorted({a["group"] for a in code_graph()["assets"].values()})
    ids = [f"global@global:{g}" for g in groups] + [f"__repository__@{location}:{g}" for g in groups]
    return f"{server.url}/asset-groups?" + urllib.parse.urlencode({"expanded": ",".join(ids)}, safe="@:,")


def assert_not_blank_png(path: Path, size: tuple[int, int]) -> None:
    from PIL import Image

    assert path.exists() and path.stat().st_size > 0, f"no screenshot at {path}"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == size, (im.format, im.size)
        rgb = np.asarray(im.convert("RGB"))
    gray = rgb.mean(axis=2)
    assert gray.std() > 5, f"screenshot is (nearly) one colour: std {gray.std():.2f}"
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 50, "screenshot has too few colours to be a rendered page"
    h, w = gray.shape  # the graph canvas (right of the side bars, below the toolbar) has dark strokes/text
    canvas = gray[int(h * 0.12):int(h * 0.95), int(w * 0.36):int(w * 0.97)]
    assert canvas.std() > 3 and (canvas < 160).mean() > 0.0005, "the lineage canvas is empty"


def group_url(server: UiServer, group: str) -> str:
    location = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["dagster"]["code_location_name"]
    return f"{server.url}/locations/{location}/asset-groups/{group}"


@pytest.mark.ui
def test_lineage_page_renders_every_asset(ui_server: UiServer, tmp_path: Path):
    """The global lineage page renders (a screenshot that is not blank, no error or onboarding
    text); every group's page renders each of its asset nodes (the global page of ~36 nodes lays
    them out taller than a window, and the UI draws only the nodes in view)."""
    binary = chromium_binary()
    url = lineage_url(ui_server)
    graph = code_graph()["assets"]

    t0 = time.monotonic()
    # As for the group pages below: on a loaded machine the virtual-time budget can end before the
    # UI's GraphQL answer arrives (the page's frame, an empty canvas); such a screenshot is taken
    # again, up to DOM_ATTEMPTS times, and one with an empty canvas every time fails.
    for attempt in range(DOM_ATTEMPTS):
        png = tmp_path / f"lineage-{attempt}.png"
        run_chromium(binary, tmp_path / f"profile-shot-{attempt}", url, f"--screenshot={png}")
        try:
            assert_not_blank_png(png, WINDOW)
            break
        except AssertionError as exc:
            if "the lineage canvas is empty" not in str(exc) or attempt == DOM_ATTEMPTS - 1:
                raise
    t_shot = time.monotonic() - t0
    dom = run_chromium(binary, tmp_path / "profile-dom", url, "--dump-dom").stdout
    assert "Global asset lineage" in dom, f"not the lineage page: {dom[:500]}"
    for text in ONBOARDING_OR_ERROR_TEXT:
        assert text not in dom, f"the lineage page shows {text!r}"
    groups = {a["group"] for a in graph.values()}
    assert not groups - rendered_names(dom, groups), "group names missing from the page"

    t0 = time.monotonic()
    for group in sorted(groups):
        names = {name for name, a in graph.items() if a["group"] == group}
        # On a loaded machine Chromium's virtual-time budget can end before the UI's GraphQL answer
        # arrives (a page with the group's frame and no node): such a page is loaded again, up to
        # DOM_ATTEMPTS times; a node missing from every attempt fails.
        for attempt in range(DOM_ATTEMPTS):
            page = run_chromium(binary, tmp_path / f"profile-{group}-{attempt}", group_url(ui_server, group),
                                "--dump-dom", window=(1600, 4000)).stdout
            for text in ONBOARDING_OR_ERROR_TEXT:
                assert text not in page, f"the {group} page shows {text!r}"
            missing = names - rendered_names(page, names)
            if not missing:
                break
        assert not missing, (f"asset nodes not rendered on {group_url(ui_server, group)} "
                             f"in {DOM_ATTEMPTS} loads: {sorted(missing)}")
    t_groups = time.monotonic() - t0

    target = os.environ.get("PA_LINEAGE_PNG")
    if target:  # refresh the README picture (large, crisp; same page and flags)
        out = (REPO_ROOT / target) if not Path(target).is_absolute() else Path(target)
        run_chromium(binary, tmp_path / "profile-readme", url, f"--screenshot={out}", window=(1800, 1300),
                     extra=("--force-device-scale-factor=2", "--hide-scrollbars"))
        assert_not_blank_png(out, (3600, 2600))
    print(f"\nchromium: screenshot {t_shot:.1f} s, {len(groups)} group pages {t_groups:.1f} s")


def test_missing_chromium_fails_not_skips(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium"):
        chromium_binary()


def test_rendered_names_handles_truncated_labels():
    dom = "<div><span>raw_pool</span><div>implementa…_orders</div><p>tar…</p></div>"
    names = {"raw_pool", "implementation_orders", "target_weights", "raw_pool_history"}
    # "tar…" has no tail, so it does not count as target_weights; raw_pool does not imply raw_pool_history.
    assert rendered_names(dom, names) == {"raw_pool", "implementation_orders"}


def test_blank_png_is_rejected(tmp_path: Path):
    from PIL import Image

    path = tmp_path / "blank.png"
    Image.new("RGB", WINDOW, (255, 255, 255)).save(path)
    with pytest.raises(AssertionError, match="one colour"):
        assert_not_blank_png(path, WINDOW)
    with pytest.raises(AssertionError):
        assert_not_blank_png(path, (800, 600))


# ---------------------------------------------------------------------------------------------
# DAGSTER_HOME and the `ui` command line (no server)
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def clean_env(monkeypatch):
    """cli functions export DAGSTER_HOME / PA_PROFILE / PA_CLI_OVERRIDES: restore them afterwards."""
    for var in ("DAGSTER_HOME", "PA_PROFILE", "PA_CLI_OVERRIDES"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def instance_flags(home: Path) -> tuple[bool, bool]:
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        return instance.telemetry_enabled, instance.nux_enabled


def test_dagster_home_defaults_to_project_dir_with_template(clean_env, tmp_path: Path):
    clean_env.setattr(cli.common, "PROJECT_ROOT", tmp_path)  # the module whose dagster_home() reads it
    home = cli.dagster_home()
    assert home == tmp_path / ".dagster_home"
    assert os.environ["DAGSTER_HOME"] == str(home)
    # a verbatim copy of the template (comments included), valid for Dagster, telemetry and nux off
    assert (home / "dagster.yaml").read_text() == cli.DAGSTER_YAML.read_text()
    assert instance_flags(home) == (False, False)
    assert ".dagster_home/" in (REPO_ROOT / ".gitignore").read_text().splitlines()


def test_dagster_home_merges_missing_settings_into_existing_yaml(clean_env, tmp_path: Path, capsys):
    home = tmp_path / "home"
    home.mkdir()
    stale = "# hand-written\ntelemetry:\n  enabled: true\nrun_monitoring:\n  enabled: true\n  poll_interval_seconds: 30\n"
    (home / "dagster.yaml").write_text(stale)
    clean_env.setenv("DAGSTER_HOME", str(home))

    assert cli.dagster_home() == home
    config = yaml.safe_load((home / "dagster.yaml").read_text())
    assert config["telemetry"] == {"enabled": False} and config["nux"] == {"enabled": False}
    assert config["run_monitoring"] == {"enabled": True, "poll_interval_seconds": 30}  # user settings kept
    err = capsys.readouterr().err
    assert "telemetry.enabled, nux.enabled" in err and str(home / "dagster.yaml") in err
    assert instance_flags(home) == (False, False)
    assert not list(home.glob(".dagster.yaml.*.tmp"))

    # already right: left byte-for-byte alone, nothing reported
    before = (home / "dagster.yaml").read_bytes()
    cli.dagster_home()
    assert (home / "dagster.yaml").read_bytes() == before
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("text, message", [
    ("- a\n- list\n", "must be a mapping"),
    ("telemetry: [unclosed\n", "not valid YAML"),
], ids=["not-a-mapping", "invalid-yaml"])
def test_unusable_dagster_yaml_is_bad_input(clean_env, tmp_path: Path, capsys, text: str, message: str):
    (tmp_path / "dagster.yaml").write_text(text)
    clean_env.setenv("DAGSTER_HOME", str(tmp_path))
    started = []
    clean_env.setattr(subprocess, "Popen", lambda *a, **k: started.append(a))
    assert cli.main(["ui"]) == cli.EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
    assert not started
    assert (tmp_path / "dagster.yaml").read_text() == text  # never overwritten


class FakePopen:
    """Records how `cmd_ui` starts `dagster dev`; `script` says what each wait() does: return a code,
    raise an exception, or call a function first (e.g. to deliver a signal to this process)."""

    instances: list[FakePopen] = []
    script: list[Any] = []
    killpg: list[tuple[int, int]] = []
    pid = 999_999_999  # never a real process: os.killpg is replaced by a recorder in these tests

    def __init__(self, cmd, **kwargs):
        self.cmd, self.kwargs = cmd, kwargs
        self.waits: list[Any] = list(FakePopen.script)
        self.signals: list[int] = []
        FakePopen.instances.append(self)

    def wait(self, timeout=None):
        step = self.waits.pop(0) if self.waits else 0
        if callable(step):
            step = step()
        if isinstance(step, BaseException):
            raise step
        return step

    def send_signal(self, sig):
        self.signals.append(sig)


@pytest.fixture
def fake_popen(clean_env, tmp_path: Path):
    FakePopen.instances = []
    FakePopen.script = []
    FakePopen.killpg = []
    clean_env.setattr(subprocess, "Popen", FakePopen)
    clean_env.setattr(os, "killpg", lambda pid, sig: FakePopen.killpg.append((pid, sig)))
    clean_env.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    return FakePopen


def test_ui_starts_dagster_dev_on_loopback_with_the_persistent_home(fake_popen, tmp_path: Path, capsys):
    assert cli.main(["ui"]) == cli.EXIT_OK
    (proc,) = fake_popen.instances
    python, flag, launcher, exe, *args = proc.cmd
    assert (python, flag, launcher) == (sys.executable, "-c", cli.DAGSTER_DEV_LAUNCHER)
    assert Path(exe).name == "dagster" and Path(exe).exists()
    assert args == ["dev", "-h", "127.0.0.1", "-p", "3000", "-w", str(cli.PROJECT_ROOT / "workspace.yaml")]
    assert (cli.PROJECT_ROOT / "workspace.yaml").exists()
    assert proc.kwargs["cwd"] == cli.PROJECT_ROOT
    assert proc.kwargs["start_new_session"] is True  # only cmd_ui forwards the stop signal
    home = tmp_path / "home"
    profile = cli.resolve(None).profile  # the instance of the profile it serves (one per profile)
    assert proc.kwargs["env"]["DAGSTER_HOME"] == str(home / "profiles" / profile)
    assert yaml.safe_load((home / "dagster.yaml").read_text())["nux"] == {"enabled": False}
    assert (home / "profiles" / profile / "dagster.yaml").read_bytes() == (home / "dagster.yaml").read_bytes()
    assert "http://127.0.0.1:3000" in capsys.readouterr().out
    assert proc.signals == [] and fake_popen.killpg == []


def test_ui_ctrl_c_forwards_one_sigint_and_waits(fake_popen):
    fake_popen.script = [KeyboardInterrupt(), 0]
    assert cli.main(["ui", "--port", "3111"]) == 0
    (proc,) = fake_popen.instances
    assert "3111" in proc.cmd
    assert proc.signals == [signal.SIGINT] and fake_popen.killpg == []


def test_ui_sigterm_stops_like_ctrl_c_and_handler_is_restored(fake_popen):
    def guard(signum, frame):  # what a SIGTERM does here if cmd_ui did not handle it itself
        raise RuntimeError("SIGTERM reached the test's handler: cmd_ui does not map it to a stop")

    original = signal.signal(signal.SIGTERM, guard)
    try:
        fake_popen.script = [lambda: os.kill(os.getpid(), signal.SIGTERM) or 0, 0]
        assert cli.main(["ui"]) == 0
        assert fake_popen.instances[0].signals == [signal.SIGINT]
        assert signal.getsignal(signal.SIGTERM) is guard  # restored after the command
    finally:
        signal.signal(signal.SIGTERM, original)


@pytest.mark.ui
def test_one_sigterm_stops_a_background_ui_and_everything_it_started(ui_server: UiServer):
    """`portfolio-assets ui &` (SIGINT ignored, inherited by every child) stops on ONE SIGTERM to
    the CLI process alone: dagster dev, the webserver, the daemon and the code servers all exit,
    after the module's backfills and page loads. The module's server is stopped here, so this test
    stays the last one of the module that uses it. The deadline only detects a hang (it was: the
    forwarded SIGINT stayed ignored in dagster dev)."""
    assert ui_server.proc.poll() is None, f"the UI exited before the SIGTERM:\n{ui_server.log_tail()}"
    root = psutil.Process(ui_server.proc.pid)
    family = [root, *root.children(recursive=True)]
    assert any("dagster" in " ".join(p.cmdline()) for p in family[1:]), family
    os.kill(ui_server.proc.pid, signal.SIGTERM)  # one signal, to the CLI process only
    _, alive = psutil.wait_procs(family, timeout=180)
    still = [" ".join(p.cmdline()[:4]) for p in alive]
    assert still == [], f"still running after one SIGTERM: {still}\n{ui_server.log_tail()}"
    ui_server.proc.wait(timeout=10)  # reaped: the fixture's teardown finds it stopped
    log = ui_server.log.read_text(errors="replace")
    assert "stopping the Dagster webserver and daemon" in log
    assert "SupersessionWarning" not in log, log


def test_ui_second_ctrl_c_kills_the_dagster_dev_group(fake_popen):
    fake_popen.script = [KeyboardInterrupt(), KeyboardInterrupt(), -9]
    assert cli.main(["ui"]) == -9
    assert fake_popen.instances[0].signals == [signal.SIGINT]
    assert fake_popen.killpg == [(FakePopen.pid, signal.SIGKILL)]


def test_ui_warns_when_not_bound_to_loopback(fake_popen, capsys):
    assert cli.main(["ui", "--host", "0.0.0.0"]) == 0
    assert "exposes the UI" in capsys.readouterr().err
