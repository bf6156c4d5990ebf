"""The lakehouse on object storage: the `make run`-equivalent CLI run on an `s3://` lakehouse
against the same run on a local folder (part of the `run` section, full runs only).

The bucket is served by moto's S3 server on localhost (conditional writes included), started in
this process for the row; the CLI works in a fresh working copy (`PA_CACHE_DIR`), as a new host
would (`portfolio_assets/lake_mirror.py`). The reference is the `run` section's CLI run on a fresh
local lakehouse, just before. The row also says whether the tables left in the bucket are that
run's (content hashes; a fresh working copy pulls them back) and counts the requests moto served
by kind. Localhost has no network latency: on a real bucket each request costs a round trip more.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from benchmarks.graph import GraphRun, cli, cli_env, last_lines
from benchmarks.table import Recorder, Row
from portfolio_assets_tests.graph_helpers import environment, table_hashes

STAGE = "CLI run on an s3:// lakehouse (moto S3 on localhost) vs on a local folder"


@contextlib.contextmanager
def moto_s3(bucket: str) -> Iterator[tuple[dict[str, str], Counter[str]]]:
    """moto's S3 server on a free port with `bucket` created; yields the AWS_* variables that point
    at it and a counter of the requests it serves (by method and listing/object)."""
    from moto.server import ThreadedMotoServer
    from werkzeug.serving import WSGIRequestHandler

    requests: Counter[str] = Counter()
    handle = WSGIRequestHandler.log_request

    def count(self, code="-", size="-"):  # werkzeug's access log line, counted instead of printed
        kind = "LIST" if "list-type=" in self.path else self.command
        requests[kind] += 1

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    WSGIRequestHandler.log_request = count  # type: ignore[method-assign]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        aws = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
        with environment(**aws):
            import s3fs

            s3fs.S3FileSystem(skip_instance_cache=True).mkdir(bucket)
            requests.clear()
            yield aws, requests
    finally:
        server.stop()
        WSGIRequestHandler.log_request = handle  # type: ignore[method-assign]


def s3_run_row(rec: Recorder, run: GraphRun, root: Path, local_wall: float | None, local_lakehouse: Path) -> None:
    """The row (module docstring); `local_wall` and `local_lakehouse` are the `run` section's CLI run."""
    try:
        import moto  # noqa: F401
        import s3fs  # noqa: F401
    except ImportError as exc:
        rec.add(Row("run", STAGE, run.partition, note=f"not run: {exc.name} is not installed (extras test, s3)"))
        return
    url = "s3://pa-bench/lake"
    with moto_s3("pa-bench") as (aws, requests):
        env = {**cli_env(root / "unused", root / "cli_home", run.profile), **aws,
               "PA_LAKEHOUSE": url, "PA_CACHE_DIR": str(root / "host-run")}
        code, wall = cli(["run", "--profile", run.profile, "--date", run.partition], env, root / "cli_run.log")
        served = dict(requests)
        if code != 0:
            rec.add(Row("run", STAGE, run.partition, seconds=wall,
                        note=f"FAILED exit {code}: {last_lines(root / 'cli_run.log', 2)}"))
            return
        from portfolio_assets.lakehouse import Lakehouse

        with environment(PA_CACHE_DIR=str(root / "host-reader")):
            stored = Lakehouse(url, run.profile)  # a fresh working copy: what the bucket holds
            ours = table_hashes(stored.root, run.partition)
    ref = table_hashes(local_lakehouse / run.profile, run.partition)
    differ = sorted(k for k in ours.keys() | ref.keys() if ours.get(k) != ref.get(k))
    same = f"the same {len(ref)} tables as the local run" if not differ else f"FAILED tables differ: {differ}"
    asked = ", ".join(f"{n} {kind}" for kind, n in sorted(served.items()))
    rec.add(Row("run", STAGE, run.partition, seconds=wall, ref_seconds=local_wall,
                note=f"{same}; requests: {asked}; ref = the CLI run above on a local folder"))
