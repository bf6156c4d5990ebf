"""The synthetic market reproduces, bit for bit, the digests recorded before its module was split."""

from __future__ import annotations

import json

from portfolio_assets_tests.sources.synthetic_golden import GOLDEN, capture


def test_synthetic_market_matches_the_recorded_digests() -> None:
    expected = json.loads(GOLDEN.read_text())
    actual = capture()
    assert actual.keys() == expected.keys()
    for market, digests in expected.items():
        assert actual[market].keys() == digests.keys(), market
        changed = sorted(k for k in digests if actual[market][k] != digests[k])
        assert not changed, f"{market}: {len(changed)} of {len(digests)} digests changed, e.g. {changed[:5]}"
