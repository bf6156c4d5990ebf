"""A lakehouse on object storage (`PA_LAKEHOUSE=s3://bucket/prefix`): each host works in a local
working copy that is kept in step with the bucket, which is the shared truth.

The lakehouse is written with POSIX means (`lakehouse.atomic_write`'s rename, `publish_dir`'s
symbolic-link swap, `flock`), and its readers are pandas, pyarrow and DuckDB on local files. An
object store has none of the three means, so instead of rewriting ~40 readers for it, every host
keeps a working copy under `<PA_CACHE_DIR>/lakes/<sha256 of the URL>/` and this module moves the
changes both ways at the moments they matter:

* **Write**: `atomic_write` uploads the finished temporary file to the object's key *before* it
  renames it into place locally, so a write that returned is in the bucket (S3's PUT replaces an
  object whole: readers see the old or the new bytes).
* **Publish a folder** (`publish_dir`): the new version's files are uploaded, then a pointer object
  `<folder>.__link__` holding the version's relative path (what the local symbolic link holds), then
  the old versions are deleted. A host that reads the new pointer finds the complete folder.
* **Read**: opening a `Lakehouse` on the URL pulls: one listing of the profile's prefix, and only
  the objects whose ETag differs from the one this host last synced are downloaded (temporary file
  and rename, so a local reader keeps the file it opened). Pointers become local links. A file
  this host synced, did not change since, and the bucket no longer holds (an old folder version, a
  compacted price part) is removed.
* **Critical sections** (the ledger's appends and archive, alert delivery): the lock also takes a
  *lease* object `<file>.__lease__`, created with `If-None-Match: *` so that one host at a time
  holds it; on entry the folder is pulled exactly (a file the bucket no longer holds is removed), on
  exit the folder's changes (uploads and deletions) are pushed, then the lease is deleted. Two hosts
  appending to one partition's ledger therefore extend one chain; they never fork it. A lease
  whose holder died expires (`expires` in its body) and is taken over with `If-Match: <its ETag>`,
  so two waiting hosts cannot both take it. These folders (`ledger/`, `alerts/`) are synced only
  under their lease, never by the pull of an opening lakehouse.
* **Values between ops** (`_intermediate/<run id>/`) are pulled by the IO manager for the run that
  reads them, not by the pull of an opening lakehouse.

What each host last synced (key, ETag, size and modification time of the local file) is in
`<working copy>/.mirror/index.sqlite`. Only `s3://` is supported: the leases need S3's
conditional writes (`If-None-Match`, `If-Match`; AWS since 2024, MinIO, moto). Credentials and the
endpoint come from the standard AWS variables (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`, ...), read by
s3fs (extra `s3`). Per-host flock still serializes the processes of one host; the partition writer
lock of CLI commands (`cli.partition_lock`) is per host, and across hosts Dagster's instance
(shared, e.g. Postgres) refuses a command beside a run of the same partition.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

LINK_SUFFIX = ".__link__"
LEASE_SUFFIX = ".__lease__"
URL_FILE = "url"
META_DIR = ".mirror"
LEASED_FOLDERS = ("ledger", "alerts")
"""Top-level folders of a profile that are synced only under their lease (module docstring)."""
ON_DEMAND_FOLDERS = ("_intermediate",)
"""Top-level folders the profile-wide pull leaves alone: the values a run's ops pass each other,
`_intermediate/<run id>/`, pulled by the IO manager for the run that reads them (every past run's
would otherwise travel to every new host)."""
LEASE_WAIT_S = 60.0
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class MirrorError(RuntimeError):
    """The object store refused or could not serve what the working copy needs."""


class LeaseBusy(MirrorError):
    """Another host kept a lease for longer than the wait."""


def parse_s3_url(text: str) -> tuple[str, str]:
    """(bucket, prefix) of `s3://bucket[/prefix]`; `ValueError` naming the problem otherwise."""
    parts = urlsplit(text)
    if parts.scheme.lower() != "s3":
        raise ValueError(f"{text!r} is not an s3:// URL")
    if parts.query or parts.fragment or parts.username or parts.port:
        raise ValueError(f"{text!r}: an s3:// lakehouse URL is s3://bucket/prefix, without query, fragment, "
                         "user or port (the endpoint and credentials come from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID...)")
    bucket, prefix = parts.netloc, parts.path.strip("/")
    if not BUCKET_RE.fullmatch(bucket):
        raise ValueError(f"{text!r}: {bucket!r} is not an S3 bucket name (3-63 lower-case letters, digits, '.', '-')")
    if any(p in ("", ".", "..") for p in prefix.split("/")) and prefix:
        raise ValueError(f"{text!r}: the prefix {prefix!r} has an empty, '.' or '..' part")
    return bucket, prefix


def canonical_url(text: str) -> str:
    """`s3://bucket/prefix` without a trailing slash (so `…/lake` and `…/lake/` name one working copy)."""
    bucket, prefix = parse_s3_url(text)
    return f"s3://{bucket}" + (f"/{prefix}" if prefix else "")


def working_copy(url: str) -> Path:
    """This host's working copy of the lakehouse at `url` (created, with the URL recorded in it)."""
    from portfolio_assets.session_tables import cache_dir

    url = canonical_url(url)
    path = (cache_dir() / "lakes" / hashlib.sha256(url.encode()).hexdigest()[:16]).resolve()
    meta = path / META_DIR
    if not (meta / URL_FILE).exists():
        meta.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=meta, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(url + "\n")
        os.replace(tmp, meta / URL_FILE)
    return path


_MIRRORS: dict[Path, Mirror] = {}


def attach(base: Path) -> Mirror | None:
    """The mirror whose working copy is `base` (None for a plain local lakehouse)."""
    base = Path(base)
    if base in _MIRRORS:
        return _MIRRORS[base]
    marker = base / META_DIR / URL_FILE
    if not marker.exists():
        return None
    mirror = _MIRRORS.setdefault(base, Mirror(marker.read_text().strip(), base))
    return mirror


def mirror_of(path: Path | str) -> tuple[Mirror, str] | None:
    """(mirror, key) when `path` lies in a working copy, the key relative to it; else None.
    The path is taken as named (links not followed): a published folder's files are keyed
    under its version folder either way, since writers write into the version folder."""
    for mirror in list(_MIRRORS.values()):
        with contextlib.suppress(MirrorError):
            return mirror, mirror.key(path)
    text = os.path.abspath(path)
    # a working copy not opened in this process yet: look for its marker upwards
    for parent in Path(text).parents:
        if (parent / META_DIR / URL_FILE).exists():
            found = attach(parent)
            if found is not None:
                return found, Path(text).relative_to(parent).as_posix()
        if parent.name == "lakes":
            break
    return None


def removed(path: Path | str) -> None:
    """Tell the object store that the lakehouse file `path` was deleted (no-op for a local lakehouse)."""
    found = mirror_of(path)
    if found is not None and not _private(found[1]):
        found[0].delete(found[1])


def _stamp(path: Path) -> str | None:
    """What identifies a local file's version without reading it: inode, size and modification
    time (a rename brings a new inode, an append a new size; the time alone is too coarse: two
    writes a millisecond apart can share it). None when it does not exist."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def _prune_version(folder: Path) -> None:
    """Remove `folder` and its parents while empty, up to the `.<name>.versions` folder of a
    published folder (an old version whose files were removed); nothing outside one."""
    parents = [folder, *folder.parents]
    top = next((i for i, p in enumerate(parents) if p.name.startswith(".") and p.name.endswith(".versions")), None)
    if top is None:
        return
    for path in parents[:top]:
        try:
            path.rmdir()
        except OSError:
            return


def _private(key: str) -> bool:
    """Keys never synced: this host's locks, temporary files, the index, the DuckDB catalog."""
    name = key.rsplit("/", 1)[-1]
    return (key.startswith(META_DIR + "/") or name.endswith((".lock", ".tmp", LEASE_SUFFIX))
            or name == "catalog.duckdb" or ".link-" in name)


def _apart(key: str, prefix: str) -> bool:
    """Whether a pull of `prefix` (outside a lease) leaves `key` alone: a leased folder, or an
    on-demand one the prefix does not name."""
    parts = key.split("/")
    if len(parts) < 3:
        return False
    return parts[1] in LEASED_FOLDERS or (parts[1] in ON_DEMAND_FOLDERS and not prefix.startswith(f"{parts[0]}/{parts[1]}/"))


class Mirror:
    """One object-store lakehouse and this host's working copy of it."""

    def __init__(self, url: str, local: Path):
        self.url = canonical_url(url)
        bucket, prefix = parse_s3_url(self.url)
        self.remote = f"{bucket}/{prefix}".rstrip("/")
        self.local = Path(local)
        self._fs: Any = None
        self._fs_pid = 0
        self._index_ready = False

    # ---- plumbing ------------------------------------------------------------------------------
    @property
    def fs(self) -> Any:
        """The s3fs file system (created on first use in each process: s3fs refuses to be used
        after a fork, as a celery pool or a forking executor would; no listing cache)."""
        if self._fs is None or self._fs_pid != os.getpid():
            try:
                import s3fs
            except ImportError as exc:
                raise MirrorError(f"PA_LAKEHOUSE={self.url} needs s3fs: pip install 'portfolio_assets[s3]'") from exc
            self._fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False, config_kwargs={
                "connect_timeout": 10, "read_timeout": 60, "retries": {"max_attempts": 4, "mode": "standard"}})
            self._fs_pid = os.getpid()
        return self._fs

    def check(self) -> None:
        """Refuse, with the reason, a bucket this host cannot list (missing, no credentials, no
        endpoint): what a command checks before any work."""
        bucket = self.remote.split("/", 1)[0]
        try:
            self.fs.ls(bucket, refresh=True)
        except FileNotFoundError:
            raise MirrorError(f"{self.url}: the bucket {bucket!r} does not exist (or this host may not see it)") from None
        except Exception as exc:  # botocore's errors: no credentials, endpoint unreachable, access denied
            raise MirrorError(f"{self.url}: cannot list the bucket ({type(exc).__name__}: {exc}); check "
                              "AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and AWS_DEFAULT_REGION") from None

    def _db(self) -> sqlite3.Connection:
        path = self.local / META_DIR / "index.sqlite"
        con = sqlite3.connect(path, timeout=60, isolation_level=None)
        if not self._index_ready:
            con.execute("PRAGMA journal_mode=WAL")  # a cache of what was synced: a lost entry costs a download
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute("CREATE TABLE IF NOT EXISTS synced (key TEXT PRIMARY KEY, etag TEXT, stamp TEXT)")
            self._index_ready = True
        return con

    def _index(self, prefix: str) -> dict[str, tuple[str, str]]:
        """{key: (ETag, stamp of the local file)} of the keys synced under `prefix`."""
        with contextlib.closing(self._db()) as con:
            rows = con.execute("SELECT key, etag, stamp FROM synced WHERE key >= ? AND key < ?",
                               (prefix, prefix + "\uffff")).fetchall()
        return {k: (e, st) for k, e, st in rows}

    def record(self, key: str, etag: str | None, stamp: str | None = None) -> None:
        """Index `key` as synced at `etag`: the local file equals that object (its stamp is kept;
        `stamp` for a pointer: its target). Without an ETag or a local file, drop the entry."""
        path = self.local / key
        with contextlib.closing(self._db()) as con:
            if etag is None or (stamp is None and not path.is_file()):
                con.execute("DELETE FROM synced WHERE key = ?", (key,))
            else:
                con.execute("INSERT OR REPLACE INTO synced VALUES (?, ?, ?)", (key, etag, stamp or _stamp(path)))

    def _remote(self, key: str) -> str:
        return f"{self.remote}/{key}"

    def _listing(self, prefix: str) -> dict[str, dict[str, Any]]:
        """Remote objects under `prefix` (a key folder): {key: info} (ETag, size)."""
        base = self._remote(prefix).rstrip("/")
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return {}
        start = len(self.remote) + 1
        return {name[start:]: info for name, info in found.items() if info.get("type", "file") == "file"}

    # ---- one file ------------------------------------------------------------------------------
    def _put(self, key: str, data: bytes) -> str:
        """Put `data` at `key` (one PUT replaces an object whole); returns the object's ETag."""
        try:
            response = self.fs.pipe_file(self._remote(key), data)
        except OSError as exc:
            raise MirrorError(f"could not upload {key} to {self.url}: {exc}") from exc
        etag = response.get("ETag") if isinstance(response, dict) else None  # a multipart upload has none
        return etag or self.fs.info(self._remote(key))["ETag"]

    def upload(self, source: Path | str, key: str) -> str:
        """Put the bytes of the file `source` at `key`; returns the object's ETag."""
        return self._put(key, Path(source).read_bytes())

    def key(self, path: Path | str) -> str:
        """The key of `path` (in the working copy, taken as named: links not followed)."""
        text = os.path.abspath(path)
        for root in dict.fromkeys((str(self.local), os.path.realpath(self.local))):
            if text.startswith(root + os.sep):
                return Path(text[len(root) + 1:]).as_posix()
        raise MirrorError(f"{path} is outside the working copy {self.local} of {self.url}")

    def delete(self, key: str) -> None:
        """Delete the object `key` and its index entry (the local file is the caller's)."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._remote(key))
        self.record(key, None)

    def _download(self, key: str, etag: str | None) -> bool:
        """Fetch `key` into the working copy (temp file + rename); False when it vanished meanwhile."""
        try:
            data = self.fs.cat_file(self._remote(key))
        except FileNotFoundError:
            return False
        path = self.local / key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        self.record(key, etag)
        return True

    @staticmethod
    def _same(mine: tuple[str, str] | None, etag: str | None, path: Path) -> bool:
        """Whether the local `path` is the object of ETag `etag` as synced (and unchanged since)."""
        return mine is not None and mine[0] == etag and _stamp(path) == mine[1]

    def _place_link(self, key: str, etag: str | None, mine: tuple[str, str] | None) -> None:
        """Make the local link of the pointer object `key` point where the object says (read only
        when its ETag changed since this host synced it, or the link is not what it was)."""
        link = self.local / key[: -len(LINK_SUFFIX)]
        if mine is not None and mine[0] == etag and link.is_symlink() and os.readlink(link) == mine[1]:
            return
        try:
            target = self.fs.cat_file(self._remote(key)).decode().strip()
        except FileNotFoundError:
            return  # deleted meanwhile: the next pull sees it gone
        if Path(target).is_absolute() or ".." in Path(target).parts:
            raise MirrorError(f"{self.url}: pointer {key} names {target!r}, outside its folder")
        if link.is_symlink() and os.readlink(link) == target:
            self.record(key, etag, target)
            return
        if link.exists() and not link.is_symlink():
            raise MirrorError(f"{link} is a folder where {self.url} has a pointer ({key}); remove the working copy "
                              f"{self.local} to rebuild it")
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(f".{link.name}.link-pull-{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(target, tmp)
        os.replace(tmp, link)
        self.record(key, etag, target)

    # ---- folders -------------------------------------------------------------------------------
    def pull(self, prefix: str, *, exact: bool = False) -> int:
        """Bring the working copy's `prefix` folder up to date; returns the objects downloaded.

        Without `exact` the leased folders are left to their lease and the on-demand ones to their
        readers (unless `prefix` names one), and a file is removed only when this host synced it,
        has not changed it since and the bucket no longer holds it. With `exact` (under the folder's
        lease) every synced file the bucket no longer holds is removed."""
        listing = self._listing(prefix)
        known = self._index(prefix)
        got = 0
        links = []
        for key, info in sorted(listing.items()):
            if key.startswith("/") or ".." in key.split("/"):
                raise MirrorError(f"{self.url}: the object {key!r} would land outside the working copy {self.local}")
            if _private(key) or (not exact and _apart(key, prefix)):
                continue
            if key.endswith(LINK_SUFFIX):
                links.append((key, info.get("ETag")))
                continue
            etag = info.get("ETag")
            if not self._same(known.get(key), etag, self.local / key):
                got += self._download(key, etag)
        for key, etag in links:
            self._place_link(key, etag, known.get(key))
        gone = [key for key in known if key not in listing and (exact or not _apart(key, prefix))]
        parts = [key for key in gone if "/prices/parts/" in key]
        if parts:  # compacted away elsewhere: removed here only while no local reader holds the store
            from portfolio_assets.price_store import PriceStore

            first = self.local / parts[0]
            with PriceStore(first.parent.parent).exclusive(blocking=False) as held:
                if held:
                    self._remove(parts, known, exact)
        self._remove([key for key in gone if key not in parts], known, exact)
        return got

    def _remove(self, keys: list[str], known: dict[str, tuple[str, str]], exact: bool) -> None:
        """Remove the local files of synced `keys` the bucket no longer holds (unless changed here
        since, outside a lease) and their index entries."""
        for key in keys:
            path = self.local / key
            with contextlib.suppress(FileNotFoundError):
                if exact or _stamp(path) == known[key][1]:
                    path.unlink()
                    _prune_version(path.parent)
            self.record(key, None)

    def push_tree(self, folder: Path) -> int:
        """Upload the files of `folder` that changed since they were synced, delete the objects of
        synced files it no longer holds, and write a pointer for each link in it; returns the uploads."""
        prefix = self.key(folder) + "/"
        known = self._index(prefix)
        sent, seen = 0, set()
        links = []
        if folder.is_dir():
            for dirpath, dirnames, filenames in os.walk(folder):
                for name in dirnames + filenames:
                    path = Path(dirpath) / name
                    key = path.relative_to(self.local).as_posix()
                    if _private(key):
                        continue
                    if path.is_symlink():
                        links.append((key, path))
                    elif path.is_file():
                        seen.add(key)
                        if key not in known or known[key][1] != _stamp(path):
                            self.record(key, self.upload(path, key))
                            sent += 1
        for _, path in links:
            self.put_link(path)
        for key in known:
            if key not in seen and not key.endswith(LINK_SUFFIX):
                self.delete(key)
        return sent

    def put_link(self, link: Path, target: str | None = None) -> None:
        """Write the pointer object of the symbolic link `link`: `target` (default: where it points now)."""
        key = self.key(link) + LINK_SUFFIX
        target = target or os.readlink(link)
        self.record(key, self._put(key, target.encode()), target)

    # ---- leases --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lease(self, key: str, *, hold_s: float, wait_s: float = LEASE_WAIT_S) -> Iterator[None]:
        """Hold the lease object `<key>.__lease__` (module docstring): one host at a time. `hold_s` is
        how long a holder may keep it before others may take it over (it died); `LeaseBusy` after
        `wait_s` of waiting for a live holder."""
        remote = self._remote(key + LEASE_SUFFIX)
        me = {"host": socket.gethostname(), "pid": os.getpid()}
        deadline = time.monotonic() + wait_s
        pause = 0.02
        while True:
            body = json.dumps({**me, "expires": time.time() + hold_s}).encode()
            try:
                self.fs.pipe_file(remote, body, mode="create")
                break
            except FileExistsError:
                pass
            try:
                info = self.fs.info(remote)
                holder = json.loads(self.fs.cat_file(remote))
            except FileNotFoundError:
                continue  # released meanwhile: try again at once
            except ValueError:
                holder = {"expires": 0}
            if float(holder.get("expires", 0)) < time.time():
                with contextlib.suppress(OSError):  # a stale ETag: another waiter took it first
                    self.fs.pipe_file(remote, body, IfMatch=info["ETag"])
                    break
            if time.monotonic() > deadline:
                raise LeaseBusy(f"{self.url}/{key}: held by {holder.get('host')} pid {holder.get('pid')} for over "
                                f"{wait_s:g} s (it expires {time.strftime('%H:%M:%S', time.gmtime(float(holder.get('expires', 0))))} UTC)")
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(remote)

    @contextlib.contextmanager
    def critical(self, path: Path, *, hold_s: float, write: bool = True) -> Iterator[None]:
        """The lease of `path`, with its folder pulled exactly on entry and (when `write`) pushed on exit."""
        folder = Path(path).parent
        with self.lease(self.key(path), hold_s=hold_s):
            self.pull(self.key(folder) + "/", exact=True)
            yield
            if write:
                self.push_tree(folder)
