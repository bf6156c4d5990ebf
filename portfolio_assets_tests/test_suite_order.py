"""The suite's own scheduling: `make test` hands the modules out in `conftest.LONGEST_FIRST` order.

pytest-xdist 3.x's `loadscope` sorts the modules by test count unless `--no-loadscope-reorder` is
given, which silently undid the order until 2026-12-04 (docs/benchmarks.md, fourteenth sitting).
"""

from __future__ import annotations

import re

import pytest

from portfolio_assets_tests.conftest import LONGEST_FIRST, PROJECT_ROOT, pytest_collection_modifyitems

TESTS = PROJECT_ROOT / "portfolio_assets_tests"


def test_make_test_keeps_the_collection_order_of_modules():
    recipe = (PROJECT_ROOT / "Makefile").read_text().split("\ntest: install\n", 1)[1].split("\n\n", 1)[0]
    assert re.search(r"--dist loadscope\b", recipe), recipe
    assert "--no-loadscope-reorder" in recipe, recipe


@pytest.mark.parametrize("module", LONGEST_FIRST)
def test_every_longest_first_entry_is_a_test_module(module):
    path = TESTS / module
    assert path.is_file() and path.name.startswith("test_"), f"LONGEST_FIRST names {module}, which is not a test module"


def test_the_listed_modules_come_first_in_their_listed_order_and_the_rest_keep_theirs():
    class Item:
        def __init__(self, nodeid: str) -> None:
            self.nodeid = nodeid

    names = ["quant/test_a.py", LONGEST_FIRST[2], "test_b.py", LONGEST_FIRST[0], "quant/test_a.py"]
    items = [Item(f"portfolio_assets_tests/{name}::t{i}") for i, name in enumerate(names)]
    pytest_collection_modifyitems(None, items)  # type: ignore[arg-type]
    assert [it.nodeid for it in items] == [
        f"portfolio_assets_tests/{LONGEST_FIRST[0]}::t3",
        f"portfolio_assets_tests/{LONGEST_FIRST[2]}::t1",
        "portfolio_assets_tests/quant/test_a.py::t0",
        "portfolio_assets_tests/test_b.py::t2",
        "portfolio_assets_tests/quant/test_a.py::t4",
    ]
