"""Markdown building blocks, a small Markdown-to-HTML renderer, and the data-health report."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping

import pandas as pd


def fmt(value: object, spec: str = ".4f") -> str:
    """One table cell: floats with `spec` (NaN -> blank), other values as text with `|` escaped."""
    if isinstance(value, float):
        return "" if math.isnan(value) else format(value, spec)
    return "" if value is None else str(value).replace("|", "\\|")


def md_table(
    df: pd.DataFrame,
    floatfmt: str = ".4f",
    index: bool = False,
    formats: Mapping[str, str] | None = None,
) -> str:
    """A GitHub-flavoured Markdown table of `df` (every row).

    `formats` maps a column name to its float format spec (e.g. `{"cagr": ".2%"}`); other float
    columns use `floatfmt`.
    """
    frame = df.reset_index() if index else df
    cols = [str(c) for c in frame.columns]
    specs = [(formats or {}).get(c, floatfmt) for c in cols]
    lines = ["| " + " | ".join(fmt(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(fmt(v, spec) for v, spec in zip(row, specs, strict=True)) + " |")
    return "\n".join(lines)


def tidy_cells(df: pd.DataFrame) -> pd.DataFrame:
    """A display copy of `df` for `md_table`: missing values (NaN, NA, NaT, None) in non-float
    columns become blank, timestamps at midnight become `YYYY-MM-DD`, other timestamps ISO text.

    Float columns are left as floats so that `md_table` formats them (NaN prints blank there).
    """
    out = df.copy()
    for col in out.columns:
        series = out[col]
        if pd.api.types.is_float_dtype(series.dtype):
            continue
        out[col] = [_tidy_value(v) for v in series.tolist()]
    return out


def _tidy_value(value: object) -> object:
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d") if value == value.normalize() else value.isoformat()
    if value is None or (not isinstance(value, str | bool) and pd.api.types.is_scalar(value) and pd.isna(value)):
        return ""
    return value


def md_link(text: str, target: str) -> str:
    """`[text](target)`, with `[`/`]` in the text escaped; `target` is a relative path or URL."""
    label = text.replace("[", "\\[").replace("]", "\\]")
    return f"[{label}]({target.replace(' ', '%20')})"


def md_image(alt: str, target: str) -> str:
    """`![alt](target)`: an image embedded by relative path."""
    return "!" + md_link(alt, target)


# -- Markdown (the subset the reports emit) -> HTML ------------------------------------------------

HTML_STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#1f2328;line-height:1.45}
h1{border-bottom:2px solid #d0d7de;padding-bottom:.3em}h2{border-bottom:1px solid #d0d7de;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em;display:block;overflow-x:auto}
th,td{border:1px solid #d0d7de;padding:3px 8px}th{background:#f6f8fa}td.num{text-align:right;
font-variant-numeric:tabular-nums}tr:nth-child(even) td{background:#fbfbfc}
img{max-width:100%;border:1px solid #d0d7de;margin:.4em 0}code{background:#f6f8fa;padding:0 .25em}
a{color:#0969da}
blockquote{margin:.8em 0;padding:.5em 1em;border-left:5px solid #bf8700;background:#fff8c5}
blockquote.warn{border-left-color:#cf222e;background:#ffebe9}
"""

_HEADING_RE = re.compile(r"^(#{1,6})\s+(.*)$")
_CELL_SPLIT_RE = re.compile(r"(?<!\\)\|")
_NUMERIC_RE = re.compile(r"^[-+]?(\d[\d,]*\.?\d*|\.\d+)(e[-+]?\d+)?%?$", re.IGNORECASE)
_INLINE_RE = re.compile(
    r"`(?P<code>[^`]+)`"
    r"|!\[(?P<alt>(?:\\.|[^\]\\])*)\]\((?P<src>[^)\s]+)\)"
    r"|\[(?P<text>(?:\\.|[^\]\\])*)\]\((?P<href>[^)\s]+)\)"
    r"|\*\*(?P<bold>.+?)\*\*"
)


def _unescape_md(text: str) -> str:
    return re.sub(r"\\([\\`*_\[\]|])", r"\1", text)


def inline_html(text: str) -> str:
    """Markdown inline markup -> HTML: `code`, images, links, **bold**; everything else escaped."""
    out: list[str] = []
    pos = 0
    for m in _INLINE_RE.finditer(text):
        out.append(html.escape(_unescape_md(text[pos : m.start()])))
        if m.group("code") is not None:
            out.append(f"<code>{html.escape(m.group('code'))}</code>")
        elif m.group("src") is not None:
            alt = html.escape(_unescape_md(m.group("alt")))
            out.append(f'<img src="{html.escape(m.group("src"))}" alt="{alt}">')
        elif m.group("href") is not None:
            out.append(f'<a href="{html.escape(m.group("href"))}">{inline_html(m.group("text"))}</a>')
        else:
            out.append(f"<strong>{inline_html(m.group('bold'))}</strong>")
        pos = m.end()
    out.append(html.escape(_unescape_md(text[pos:])))
    return "".join(out)


def _table_cells(line: str) -> list[str]:
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return [cell.strip() for cell in _CELL_SPLIT_RE.split(body)]


def _table_html(lines: list[str]) -> str:
    header = _table_cells(lines[0])
    rows = [_table_cells(line) for line in lines[2:]]
    parts = ["<table>", "<thead><tr>" + "".join(f"<th>{inline_html(c)}</th>" for c in header) + "</tr></thead>",
             "<tbody>"]
    for row in rows:
        cells = []
        for cell in row:
            cls = ' class="num"' if _NUMERIC_RE.match(cell) else ""
            cells.append(f"<td{cls}>{inline_html(cell)}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table>")
    return "\n".join(parts)


def markdown_to_html(markdown: str) -> str:
    """Render the Markdown subset the reports use as an HTML fragment.

    Supported: ATX headings (`#`..`######`), pipe tables (header + `|---|` separator row), `- `
    bullet lists, `> ` block quotes (the reports' banners; a quote starting with `**WARNING` gets
    the class `warn`), paragraphs (blank-line separated), and inline `code`, `![img](src)`,
    `[link](href)`, `**bold**`. All other text is HTML-escaped, so a cell can never inject markup.
    """
    blocks: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            i += 1
            continue
        heading = _HEADING_RE.match(stripped)
        if heading:
            level = len(heading.group(1))
            blocks.append(f"<h{level}>{inline_html(heading.group(2))}</h{level}>")
            i += 1
        elif stripped.startswith("|") and i + 1 < len(lines) and re.match(r"^\|?\s*:?-{3,}", lines[i + 1].strip()):
            j = i
            while j < len(lines) and lines[j].strip().startswith("|"):
                j += 1
            blocks.append(_table_html([ln.strip() for ln in lines[i:j]]))
            i = j
        elif stripped.startswith("- "):
            items = []
            while i < len(lines) and lines[i].strip().startswith("- "):
                items.append(f"<li>{inline_html(lines[i].strip()[2:])}</li>")
                i += 1
            blocks.append("<ul>\n" + "\n".join(items) + "\n</ul>")
        elif stripped.startswith("> ") or stripped == ">":
            quote = []
            while i < len(lines) and (lines[i].strip().startswith("> ") or lines[i].strip() == ">"):
                quote.append(lines[i].strip()[2:])
                i += 1
            cls = ' class="warn"' if quote[0].startswith("**WARNING") else ""
            blocks.append(f"<blockquote{cls}><p>" + "<br>\n".join(inline_html(q) for q in quote) + "</p></blockquote>")
        else:
            para = []
            while i < len(lines):
                s = lines[i].strip()
                if not s or _HEADING_RE.match(s) or s.startswith(("- ", "|", "> ")):
                    break
                para.append(inline_html(s))
                i += 1
            blocks.append("<p>" + "<br>\n".join(para) + "</p>")
    return "\n".join(blocks)


def html_page(title: str, body_html: str) -> str:
    """A self-contained HTML document: inline CSS, no scripts, no external assets."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{HTML_STYLE}</style>\n</head>\n<body>\n"
        f"{body_html}\n</body>\n</html>\n"
    )


def health_markdown(health: pd.DataFrame, partition: str, strict: bool) -> str:
    """`data_health.md`: status per symbol before and after recovery."""
    before = health["status_before"].value_counts().to_dict()
    after = health["status"].value_counts().to_dict()
    cols = ["symbol", "calendar", "status_before", "status", "attempts", "n_sessions", "first_bar", "last_bar", "issues"]
    order = health.assign(_ok=health["status"] == "OK").sort_values(["_ok", "symbol"])
    return "\n\n".join([
        f"# Data health — {partition}",
        f"Mode: {'strict (any unhealthy symbol blocks the run)' if strict else 'non-strict (unhealthy symbols are dropped)'}.",
        f"Before recovery: {before}. After recovery: {after}.",
        md_table(order[[c for c in cols if c in order.columns]]),
    ]) + "\n"
