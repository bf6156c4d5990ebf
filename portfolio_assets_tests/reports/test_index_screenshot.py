"""The reports index renders in headless Chromium: a page that is not blank, with its banners in
their colours, the decision first and no missing glyph.

Chromium is required (as for the UI screenshot test in `cli/test_ui.py`): without it this FAILS.
`docs/report_index.png` was taken the same way from a real-data run (`docs/reports.md`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from portfolio_assets.reports.builder import build_reports
from portfolio_assets_tests.cli.test_ui import chromium_binary, run_chromium
from portfolio_assets_tests.reports.test_reports import make_report_inputs

WINDOW = (1400, 1800)
YELLOW, RED = (0xFF, 0xF8, 0xC5), (0xFF, 0xEB, 0xE9)  # the banners' backgrounds (markdown.HTML_STYLE)


@pytest.fixture(scope="module")
def index_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("index_shot")
    build_reports(make_report_inputs(out, source_kind="synthetic", pit_fidelity=False), out)
    return out / "index.html"


def test_index_screenshot_shows_the_banners_and_is_a_rendered_page(index_html: Path, tmp_path: Path):
    from PIL import Image

    png = tmp_path / "index.png"
    run_chromium(chromium_binary(), tmp_path / "profile", index_html.as_uri(), f"--screenshot={png}", window=WINDOW)
    with Image.open(png) as im:
        assert im.size == WINDOW
        rgb = np.asarray(im.convert("RGB"))
    assert rgb.mean(axis=2).std() > 5 and len(np.unique(rgb.reshape(-1, 3), axis=0)) > 50, "blank screenshot"
    top = rgb[: WINDOW[1] // 4]
    for name, colour in (("synthetic-data", YELLOW), ("look-ahead", RED)):
        share = (np.abs(top.astype(int) - colour).max(axis=2) <= 2).mean()
        assert share > 0.01, f"the {name} banner is not visible at the top of the index ({share:.4f})"


def test_index_dom_opens_with_the_decision_and_has_no_missing_glyph(index_html: Path, tmp_path: Path):
    dom = run_chromium(chromium_binary(), tmp_path / "profile", index_html.as_uri(), "--dump-dom").stdout
    assert "\ufffd" not in dom and "\ufe6a" not in dom
    headings = [dom.index(h) for h in ("<h1>Portfolio report", "SYNTHETIC DATA.", "WARNING: look-ahead.",
                                       "<h2>Decision</h2>", "<h2>Today's proposed orders</h2>",
                                       "<h2>Change since the previous session</h2>", "<h2>1. Universe funnel</h2>")]
    assert headings == sorted(headings)
