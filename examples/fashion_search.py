"""Fashion search demo: record an instrumented fashion search engine into a lake, then query it.

The pipelines themselves live in the package, `xray_lake/demo/` (so that the installed
`xray-lake demo` command works from any folder): read `fashion_search.py` and
`similar_items.py` there for the annotated pipeline code. This script runs them and asks
the lake the product's headline question: in which runs did a filtering stage eliminate
more than 90% of its candidates?

    python examples/fashion_search.py [--runs N] [--root PATH] [--seed N]

Without --root the lake is $XRAY_LAKE_ROOT, else data/lake under the current folder.
"""

from __future__ import annotations

import argparse

import polars as pl

import xray_lake as xr
from xray_lake.demo.fashion_search import run_demo

HEADLINE_SQL = """
select run_id, label, name as stage, n_in, n_out, round(fail_ratio, 3) as fail_ratio
from stages
where type = 'filtering' and fail_ratio > 0.9
order by fail_ratio desc
limit 10
"""


def main() -> None:
    parser = argparse.ArgumentParser(description="Record the fashion search demo into a lake.")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--root", default=None, help="lake root (default: $XRAY_LAKE_ROOT "
                        "or data/lake)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    summary = run_demo(args.runs, args.root, args.seed)
    print(f"recorded {summary.runs} runs {summary.by_label} ({summary.failures} failed) "
          f"into {summary.root} in {summary.seconds:.1f}s")

    with xr.Lake(summary.root) as lake, pl.Config(tbl_rows=10, tbl_width_chars=120):
        print(lake.sql(HEADLINE_SQL))
        print(lake.sql("select label, status, error_code, count(*) as runs "
                       "from runs group by all order by all"))


if __name__ == "__main__":
    main()
