"""The Examples sections of the public docstrings run as doctests, so they cannot go stale.

As polars does for `pl`, every example gets `xr` and `capture_records` without importing them.
The examples of `Lake` methods read `lake`: a lake holding run "r-1" of the `in_stock` stage
shown in `xr.filtering_stage`'s example (built here the same way).
"""

from __future__ import annotations

import doctest
from collections.abc import Callable
from typing import Any

import pytest

import xray_lake as xr
from xray_lake.testing import capture_records

DOCUMENTED: list[Callable[..., Any]] = [
    xr.configure,
    xr.pipeline,
    xr.retrieval_stage,
    xr.generation_stage,
    xr.filtering_stage,
    xr.scoring_stage,
    xr.ranking_stage,
    xr.Sample,
    xr.Lake.find,
    xr.Lake.query,
    xr.Lake.journey,
]


def _lake_with_one_run() -> xr.Lake:
    @xr.filtering_stage("in_stock", passed="ok", reason_label="why")
    def in_stock(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [dict(i, ok=i["stock"] > 0) for i in items]

    with xr.run("shop", run_id="r-1"):
        in_stock([{"id": "a", "stock": 2}, {"id": "b", "stock": 0, "why": "sold out"}])
    assert xr.flush(30)
    return xr.Lake()


@pytest.mark.parametrize("documented", DOCUMENTED, ids=lambda d: d.__qualname__)
def test_docstring_examples_run(documented: Callable[..., Any]) -> None:
    globs: dict[str, Any] = {"xr": xr, "capture_records": capture_records}
    if documented.__qualname__.startswith("Lake."):
        globs["lake"] = _lake_with_one_run()
    tests = doctest.DocTestFinder(recurse=False).find(documented, documented.__qualname__,
                                                       globs=globs)
    assert tests and tests[0].examples, f"{documented.__qualname__} has no Examples section"
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    if "lake" in globs:
        globs["lake"].close()
    assert runner.summarize(verbose=False).failed == 0, "".join(report)
