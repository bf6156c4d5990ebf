"""The golden bundle: the ~32 most important report files, copied with a hash manifest and an index.

Selection priority (`select_golden`), highest first; within a tier the order shown, then by path:

0. the index: `index.md`, `index.html`;
1. comparison reports: `engine_comparison_report.md`, `backtest_comparison.md`;
2. audits: `alpha_isolation_audit.md`, `slippage_decay_audit.md`, `selection_audit.md`, any other
   `*_audit.md`;
3. the production engine's tear-sheets (`tearsheets/<production>__*`): Markdown before HTML, the
   realized simulator before the others;
4. images: `equity_curves.png`, `images/regime.png`, `images/dendrogram.png`,
   `images/clustermap.png`, any other image;
5. data health: `data_health.md`;
6. the other top-level Markdown reports: `weights.md`, `regime.md`, `buckets.md`, others;
7. the other tear-sheets: Markdown before HTML, realized before the others;
8. everything else.

Files inside a previous `golden/` folder are never selected. The bundle keeps the files' relative
layout, so the index's links still work inside `golden/`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from portfolio_assets.lakehouse import atomic_write_bytes
from portfolio_assets.ledger import file_hash
from portfolio_assets.reports.markdown import md_link, md_table

GOLDEN_DIR = "golden"
MANIFEST_NAME = "golden_manifest.json"
README_NAME = "README.md"
DEFAULT_LIMIT = 32

_ORDERED_TIERS: tuple[tuple[str, ...], ...] = (
    ("index.md", "index.html"),
    ("engine_comparison_report.md", "backtest_comparison.md"),
    ("alpha_isolation_audit.md", "slippage_decay_audit.md", "selection_audit.md"),
    (),
    ("equity_curves.png", "images/regime.png", "images/dendrogram.png", "images/clustermap.png"),
    ("data_health.md",),
    ("weights.md", "regime.md", "buckets.md"),
)
_IMAGE_SUFFIXES = (".png", ".svg", ".jpg", ".jpeg")


def _relative(path: Path, root: Path) -> Path:
    try:
        return path.resolve().relative_to(root.resolve())
    except ValueError:
        raise ValueError(f"{path} is not inside the reports root {root}") from None


def _tearsheet_key(rel: Path) -> tuple[int, int]:
    return (0 if rel.suffix == ".md" else 1, 0 if rel.stem.endswith("__realized") else 1)


def golden_priority(rel: Path, production_engine: str | None = None) -> tuple[int, int, int, int, str]:
    """Sort key of a file (path relative to the reports root): `(tier, position, ...)`, see the
    module docstring. Lower sorts first."""
    name = rel.as_posix()
    for tier, names in enumerate(_ORDERED_TIERS):
        if name in names:
            return (tier, names.index(name), 0, 0, name)
    is_tearsheet = len(rel.parts) == 2 and rel.parts[0] == "tearsheets"
    if is_tearsheet and production_engine and rel.stem.startswith(f"{production_engine}__"):
        return (3, 0, *_tearsheet_key(rel), name)
    if len(rel.parts) == 1 and name.endswith("_audit.md"):
        return (2, 99, 0, 0, name)
    if rel.suffix.lower() in _IMAGE_SUFFIXES:
        return (4, 99, 0, 0, name)
    if len(rel.parts) == 1 and rel.suffix == ".md":
        return (6, 99, 0, 0, name)
    if is_tearsheet:
        return (7, 0, *_tearsheet_key(rel), name)
    return (8, 0, 0, 0, name)


def select_golden(
    files: Iterable[Path],
    root: Path,
    limit: int = DEFAULT_LIMIT,
    production_engine: str | None = None,
) -> list[Path]:
    """The at most `limit` most important of `files` (all inside `root`), in priority order.

    Duplicates and anything under `root/golden/` are ignored; a path outside `root` or not an
    existing file raises `ValueError`.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    root = Path(root)
    ranked: dict[Path, tuple[int, int, int, int, str]] = {}
    for f in files:
        path = Path(f)
        rel = _relative(path, root)
        if not path.is_file():
            raise ValueError(f"{path} is not an existing file")
        if rel.parts[0] == GOLDEN_DIR:
            continue
        ranked.setdefault(root / rel, golden_priority(rel, production_engine))
    return sorted(ranked, key=ranked.__getitem__)[:limit]


def write_golden(out_dir: Path, selected: Iterable[Path], root: Path) -> Path:
    """Copy `selected` (inside `root`) to `out_dir/golden/` with `golden_manifest.json` and `README.md`.

    The manifest lists, per file: `name` (path inside `golden/`), `source` (path relative to
    `root`), `sha256` (`ledger.file_hash` of the source, verified on the copy) and `size` (bytes).
    The folder is built beside the old one and swapped in, so a failed run leaves the previous
    bundle whole and a re-run replaces it. Returns the `golden/` path.
    """
    out_dir, root = Path(out_dir), Path(root)
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / GOLDEN_DIR
    staging = Path(tempfile.mkdtemp(prefix=f".{GOLDEN_DIR}.", dir=out_dir))
    try:
        entries = []
        for src in selected:
            src = Path(src)
            rel = _relative(src, root)
            if not src.is_file():
                raise ValueError(f"{src} is not an existing file")
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
            digest = file_hash(src)
            if file_hash(target) != digest:
                raise OSError(f"copy of {rel.as_posix()} does not match its source (hash differs)")
            entries.append({"name": rel.as_posix(), "source": rel.as_posix(), "sha256": digest,
                            "size": target.stat().st_size})
        manifest = {"count": len(entries), "files": entries}
        atomic_write_bytes(staging / MANIFEST_NAME, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
        atomic_write_bytes(staging / README_NAME, _readme(entries).encode("utf-8"))
        trash = None
        if dest.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{GOLDEN_DIR}.old.", dir=out_dir))
            dest.rename(trash / GOLDEN_DIR)
        staging.rename(dest)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return dest


def _readme(entries: list[dict[str, object]]) -> str:
    rows = pd.DataFrame({
        "file": [md_link(str(e["name"]), str(e["name"])) for e in entries],
        "size (bytes)": [e["size"] for e in entries],
        "sha256": [str(e["sha256"]) for e in entries],
    })
    return "\n\n".join([
        "# Golden artifacts",
        f"The {len(entries)} most important files of this partition's reports, in priority order "
        f"(index, comparison reports, audits, production tear-sheets, images, data health, ...). "
        f"Hashes and sizes are in `{MANIFEST_NAME}`.",
        md_table(rows),
    ]) + "\n"
