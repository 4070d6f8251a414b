"""Promoted fields: `fields=` stores candidate fields as typed `f_<name>` columns of `candidates`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import duckdb
import pydantic
import pytest
from typer.testing import CliRunner

import xray_lake as xr
from xray_lake.cli.app import app
from xray_lake.query import candidate, stage
from xray_lake.records import promoted_columns as promoted_module
from xray_lake.records.schema import SCHEMA_VERSION
from xray_lake.storage.catalog import attach_views

Lake = Callable[[], xr.Lake]
Item = dict[str, Any]

PRODUCTS: list[Item] = [
    {"id": "a", "price": 250.0, "brand": "acme", "stock": 3, "ok": True},
    {"id": "b", "price": 99.5, "brand": "zeta", "stock": 0, "ok": False},
    {"id": "c", "price": 120, "brand": "acme", "stock": 7, "ok": True},
]


def _types(db: xr.Lake) -> dict[str, str]:
    rows = db.connection.execute(
        "SELECT column_name, column_type FROM (DESCRIBE candidates)").fetchall()
    return {str(name): str(kind) for name, kind in rows if str(name).startswith("f_")}


def _column(db: xr.Lake, column: str, stage_name: str) -> dict[str, Any]:
    rows = db.sql(f"select candidate_id, {column} as v from candidates "
                  f"where stage_name = ? order by candidate_id", [stage_name]).to_dicts()
    return {r["candidate_id"]: r["v"] for r in rows}


def _stage_row(db: xr.Lake, name: str) -> Item:
    rows = db.sql("select * from stages where name = ?", [name]).to_dicts()
    assert len(rows) == 1
    return rows[0]


def _record(name: str, items: list[Item], fields: Any, **options: Any) -> None:
    """One run with one filtering stage (pass flag `ok`) that returns its input."""
    with xr.run("p") as run, run.stage(name, type="filtering", passed="ok", fields=fields,
                                       **options) as st:
        st.input(items)
        st.output(items)


# --- what is stored ---------------------------------------------------------------------------


def test_dict_fields_become_typed_columns_next_to_the_fixed_ones(lake: Lake) -> None:
    @xr.filtering_stage("price-filter", passed="ok", fields={"price": "price", "brand": "brand"})
    def price_filter(products: Annotated[list[Item], xr.Candidates()]) -> list[Item]:
        return products

    with xr.run("shop"):
        price_filter(PRODUCTS)
    db = lake()
    assert _types(db) == {"f_price": "DOUBLE", "f_brand": "VARCHAR"}  # 250.0 and 120: float64
    assert _column(db, "f_price", "price-filter") == {"a": 250.0, "b": 99.5, "c": 120.0}
    assert _column(db, "f_brand", "price-filter") == {"a": "acme", "b": "zeta", "c": "acme"}
    columns = db.sql("select * from candidates limit 1").columns
    assert columns.index("payload") < columns.index("f_brand")  # after the fixed columns


@dataclasses.dataclass
class Product:
    id: str
    price: float
    brand: str
    ok: bool = True


class Offer(pydantic.BaseModel):
    id: str
    price: Decimal
    brand: str
    ok: bool = True
    seen: dt.datetime


class Plain:
    def __init__(self, id: str, price: int, brand: str) -> None:
        self.id, self.price, self.brand, self.ok = id, price, brand, True


def test_dataclass_pydantic_and_plain_object_candidates_are_promoted(lake: Lake) -> None:
    @xr.filtering_stage("dc", passed="ok", fields={"price": "price", "brand": "brand"})
    def dc(products: Annotated[list[Product], xr.Candidates()]) -> list[Product]:
        return products

    # a Decimal is frozen as its JSON text: declare float to store a number
    @xr.filtering_stage("model", passed="ok",
                        fields={"price": xr.Field("price", float), "seen": "seen"})
    def model(offers: Annotated[list[Offer], xr.Candidates()]) -> list[Offer]:
        return offers

    @xr.filtering_stage("obj", passed="ok", fields={"price": "price"})
    def obj(items: Annotated[list[Plain], xr.Candidates()]) -> list[Plain]:
        return items

    when = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)
    with xr.run("shop"):
        dc([Product("a", 10.5, "acme"), Product("b", 20.0, "zeta")])
        model([Offer(id="a", price=Decimal("19.99"), brand="x", seen=when)])
        obj([Plain("a", 7, "acme")])
    db = lake()
    assert _column(db, "f_price", "dc") == {"a": 10.5, "b": 20.0}
    assert _column(db, "f_brand", "dc") == {"a": "acme", "b": "zeta"}
    assert _column(db, "f_price", "model") == {"a": 19.99}
    assert _column(db, "f_seen", "model") == {"a": "2024-05-01T12:00:00Z"}  # its JSON form
    # 7 alone is an int64, 10.5 a float64: one flush, one file, one column of doubles
    assert _column(db, "f_price", "obj") == {"a": 7.0}


def test_promoted_values_are_the_frozen_ones_read_on_the_writer_thread(
        lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[str] = []
    extract = promoted_module.extract

    def spy(*args: Any, **kwargs: Any) -> promoted_module.Extracted:
        threads.append(threading.current_thread().name)
        return extract(*args, **kwargs)

    monkeypatch.setattr("xray_lake.records.candidates.extract", spy)

    @xr.scoring_stage("score", fields={"price": "price"})
    def score(products: Annotated[list[Item], xr.Candidates()]) -> list[Item]:
        return [{**p, "score": 1.0} for p in products]

    with xr.run("shop"):
        out = score([dict(p) for p in PRODUCTS])
        for p in out:
            p["price"] = -1  # mutated after the stage returned: not what was recorded
    db = lake()
    assert _column(db, "f_price", "score") == {"a": 250.0, "b": 99.5, "c": 120.0}
    assert threads and threading.current_thread().name not in threads


def test_declared_types_win_and_unfit_values_are_stored_null_and_counted(lake: Lake) -> None:
    items = [
        {"id": "a", "ok": True, "stock": True, "qty": "42", "price": "19.5", "code": 7},
        {"id": "b", "ok": True, "stock": 1, "qty": 3.0, "price": "cheap", "code": "x7"},
        {"id": "c", "ok": True, "stock": None, "qty": 2.5, "price": 5, "code": None},
    ]
    fields = {"in_stock": xr.Field("stock", bool), "qty": xr.Field(type=int),
              "price": xr.Field("price", float), "code": xr.Field("code", str)}
    _record("typed", items, fields)
    db = lake()
    assert _types(db) == {"f_in_stock": "BOOLEAN", "f_qty": "BIGINT", "f_price": "DOUBLE",
                          "f_code": "VARCHAR"}
    assert _column(db, "f_in_stock", "typed") == {"a": True, "b": None, "c": None}
    assert _column(db, "f_qty", "typed") == {"a": 42, "b": 3, "c": None}
    assert _column(db, "f_price", "typed") == {"a": 19.5, "b": None, "c": 5.0}
    assert _column(db, "f_code", "typed") == {"a": "7", "b": "x7", "c": None}
    row = _stage_row(db, "typed")
    assert row["n_truncated"] == 3  # stock=1, qty=2.5, price='cheap' (a null is not counted)
    assert "1 of 3 values of promoted field f_price do not fit float64" in row["validation_error"]
    assert row["n_candidates_stored"] == 3


def test_inferred_types_follow_the_values_of_each_call(lake: Lake) -> None:
    items = [
        {"id": "a", "ok": True, "n": 1, "x": 1, "flag": True, "tags": ["s"], "mix": 1, "gone": None},
        {"id": "b", "ok": True, "n": 2, "x": 2.5, "flag": False, "tags": [], "mix": "one"},
    ]
    fields = {k: k for k in ("n", "x", "flag", "tags", "mix", "gone")}
    _record("inferred", items, fields)
    db = lake()
    # an all-null field adds no column; lists and mixes are stored as (JSON) text
    assert _types(db) == {"f_n": "BIGINT", "f_x": "DOUBLE", "f_flag": "BOOLEAN",
                          "f_tags": "VARCHAR", "f_mix": "VARCHAR"}
    assert _column(db, "f_tags", "inferred") == {"a": '["s"]', "b": "[]"}
    assert _column(db, "f_mix", "inferred") == {"a": "1", "b": "one"}
    assert _stage_row(db, "inferred")["n_truncated"] == 0


def test_long_promoted_strings_are_cut_to_the_payload_cap(lake: Lake) -> None:
    items = [{"id": "a", "ok": True, "blurb": "x" * 300}]
    _record("long", items, {"blurb": "blurb"}, caps=xr.Caps(payload_bytes=100))
    db = lake()
    assert _column(db, "f_blurb", "long")["a"] == "x" * 100 + "…[+200 chars]"
    assert _stage_row(db, "long")["n_truncated"] == 2  # the payload and the promoted string


# --- type rule across files -------------------------------------------------------------------


@pytest.mark.parametrize(("first", "second", "sql_type", "expected"), [
    (1, 2.5, "DOUBLE", {"r1": 1.0, "r2": 2.5}),
    (1, "x", "VARCHAR", {"r1": "1", "r2": "x"}),
    (True, 3, "VARCHAR", {"r1": "true", "r2": "3"}),  # not DuckDB's own BIGINT
    (True, 2.5, "VARCHAR", {"r1": "true", "r2": "2.5"}),
])
def test_a_field_promoted_as_different_types_is_read_by_one_rule(
        lake: Lake, first: object, second: object, sql_type: str,
        expected: dict[str, object]) -> None:
    for run_id, value in (("r1", first), ("r2", second)):
        with xr.run("p", run_id=run_id) as run, run.stage("s", type="retrieval",
                                                          fields={"v": "v"}) as st:
            st.output([{"id": run_id, "v": value}])
        assert xr.flush(5)  # one file per run: the two files disagree on f_v's type
    db = lake()
    assert _types(db) == {"f_v": sql_type}
    rows = db.sql("select run_id, f_v from candidates order by run_id").to_dicts()
    assert {r["run_id"]: r["f_v"] for r in rows} == expected


def test_views_over_explicit_file_lists_apply_the_rule_too(
        lake: Lake, isolated_lake: str) -> None:
    """While a compaction runs, the views read explicit file lists instead of globs."""
    for run_id, value in (("r1", True), ("r2", 2.5)):
        with xr.run("p", run_id=run_id) as run, run.stage("s", type="retrieval",
                                                          fields={"v": "v"}) as st:
            st.output([{"id": run_id, "v": value}])
        assert xr.flush(5)
    con = duckdb.connect()
    views = attach_views(con, isolated_lake, explicit=True)
    assert views.explicit and len(views.tags) == 2
    assert con.execute("select f_v from candidates order by 1").fetchall() == [("2.5",),
                                                                               ("true",)]


def test_type_conflicts_within_one_flush_follow_the_same_rule(lake: Lake) -> None:
    _record("ints", [{"id": "a", "ok": True, "v": 1}], {"v": "v"})
    _record("floats", [{"id": "b", "ok": True, "v": 2.5}], {"v": "v"})
    _record("texts", [{"id": "c", "ok": True, "w": "x"}], {"w": "w"})
    _record("bools", [{"id": "d", "ok": True, "w": False}], {"w": "w"})
    _record("plain", [{"id": "e", "ok": True}], None)
    db = lake()
    assert _types(db) == {"f_v": "DOUBLE", "f_w": "VARCHAR"}
    rows = db.sql("select candidate_id, f_v, f_w from candidates order by 1").rows()
    assert rows == [("a", 1.0, None), ("b", 2.5, None), ("c", None, "x"), ("d", None, "false"),
                    ("e", None, None)]


def test_queries_work_over_files_with_and_without_promoted_columns(lake: Lake) -> None:
    _record("before", [{"id": "old", "ok": True, "price": 500}], None)
    assert xr.flush(5)
    _record("after", [{"id": "new", "ok": True, "price": 500}], {"price": "price"})
    db = lake()
    rows = db.sql("select candidate_id, f_price from candidates order by 1").rows()
    assert rows == [("new", 500), ("old", None)]


# --- querying -------------------------------------------------------------------------------


@pytest.fixture
def shop(lake: Lake) -> xr.Lake:
    """Two runs: r-cheap (every price < 100) and r-dear (one product at 250)."""
    for run_id, prices in (("r-cheap", [10, 20.5]), ("r-dear", [250.0, 30])):
        items = [{"id": f"{run_id}-{i}", "price": p, "brand": "acme", "ok": p < 100,
                  "stock": i == 0} for i, p in enumerate(prices)]
        with xr.run("shop", run_id=run_id) as run, run.stage(
                "price-filter", type="filtering", passed="ok",
                fields={"price": xr.Field("price", float), "brand": "brand",
                        "in_stock": xr.Field("stock", bool)}) as st:
            st.input(items)
            st.output(items)
    return lake()


def test_the_json_language_reads_promoted_fields(shop: xr.Lake) -> None:
    found = shop.find({"candidate": {"price": {"$gt": 100}}})
    assert found["run_id"].to_list() == ["r-dear"]
    assert shop.find({"candidate": {"f_price": {"$gt": 100}}})["run_id"].to_list() == ["r-dear"]
    both = shop.find({"candidate": {"brand": "acme", "in_stock": True, "price": {"$lt": 15}}})
    assert both["run_id"].to_list() == ["r-cheap"]


def test_the_json_language_rejects_unknown_or_mistyped_promoted_fields(shop: xr.Lake) -> None:
    with pytest.raises(xr.QueryError, match="Did you mean 'price'") as caught:
        shop.find({"candidate": {"prise": {"$gt": 100}}})
    assert "candidate_id" in str(caught.value) and "brand" in str(caught.value)
    with pytest.raises(xr.QueryError, match="number column"):
        shop.find({"candidate": {"price": "cheap"}})
    with pytest.raises(xr.QueryError, match="unknown column"):
        shop.find({"stage": {"price": 3}})  # promoted fields belong to candidates


def test_the_builder_reads_promoted_fields_typed(shop: xr.Lake) -> None:
    price = candidate.field("price", float)
    dear = shop.query().where(price > 100).select(stage.run_id).to_polars()
    assert dear["run_id"].to_list() == ["r-dear"]
    per_run = shop.query().where(candidate.field("brand", str) == "acme",
                                 candidate.field("in_stock", bool).is_true(),
                                 price.between(10, 30)).per_run().to_polars()
    assert per_run["run_id"].to_list() == ["r-cheap"]
    with pytest.raises(xr.QueryError, match="Did you mean 'price'"):
        shop.query().where(candidate.field("prices", float) > 1).to_polars()
    with pytest.raises(xr.QueryError, match=r"candidate.field\('price', float\)"):
        shop.query().where(candidate.field("price", str) == "x").to_polars()
    with pytest.raises(xr.QueryError, match="one of int, float, bool, str"):
        candidate.field("price", list)  # type: ignore[call-overload]


def test_sql_reads_promoted_columns(shop: xr.Lake) -> None:
    rows = shop.sql("select candidate_id from candidates where f_price > ? and f_in_stock",
                    [100]).rows()
    assert rows == [("r-dear-0",)]


def test_cli_query_where_filters_on_a_promoted_field(shop: xr.Lake, isolated_lake: str) -> None:
    where = '{"candidate": {"price": {"$gt": 100}}}'
    result = CliRunner().invoke(app, ["query", "--where", where, "--per", "run",
                                      "--format", "csv", "--root", isolated_lake])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "r-dear" in result.stdout and "r-cheap" not in result.stdout
    bad = CliRunner().invoke(app, ["query", "--where", '{"candidate": {"prise": 1}}',
                                   "--root", isolated_lake])
    assert bad.exit_code == 2 and "Did you mean 'price'" in bad.stderr


def test_a_lake_opened_before_a_field_was_first_promoted_sees_its_rows(lake: Lake) -> None:
    _record("plain", [{"id": "a", "ok": True, "price": 1}], None)
    db = lake()
    assert db.sql("select count(*) from candidates").item() == 1
    _record("promoted", [{"id": "b", "ok": True, "price": 200}], {"price": "price"})
    assert xr.flush(5)
    rows = db.sql("select candidate_id, f_price from candidates order by 1").rows()
    assert rows == [("a", None), ("b", 200)]  # no refresh(): the new tag rebuilt the views
    assert db.find({"candidate": {"price": {"$gt": 100}}})["name"].to_list() == ["promoted"]
    assert len(db.query().where(candidate.field("price", float) > 100).to_polars()) == 1


# --- with the other scale controls ------------------------------------------------------------


def test_sampled_rows_keep_their_promoted_values_and_counts_cover_every_candidate(
        lake: Lake) -> None:
    items = [{"id": f"c{i}", "ok": i < 2, "price": "n/a" if i % 2 else 10 * i}
             for i in range(20)]
    _record("sampled", items, {"price": xr.Field("price", float)},
            sample=xr.Sample(max_failed=3))
    db = lake()
    row = _stage_row(db, "sampled")
    assert row["sampled"] and row["n_candidates_stored"] == 5
    assert row["n_truncated"] == 10  # every 'n/a' counted, stored or not
    stored = _column(db, "f_price", "sampled")
    for candidate_id, price in stored.items():
        i = int(candidate_id[1:])
        assert price == (None if i % 2 else 10.0 * i)


def test_compaction_merges_files_of_one_promoted_schema(lake: Lake, isolated_lake: str) -> None:
    for i in range(3):
        _record("s", [{"id": f"c{i}", "ok": True, "price": i}], {"price": "price"})
        assert xr.flush(5)
    _record("s", [{"id": "plain", "ok": True}], None)
    assert xr.flush(5)
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    report = xr.compact(isolated_lake, before=tomorrow.isoformat())
    assert report.errors == ()
    files = sorted(p.name for p in Path(isolated_lake, "candidates").rglob("*.parquet"))
    assert len(files) == 2 and any(name.startswith(f"part-v{SCHEMA_VERSION}p") for name in files)
    db = lake()
    rows = db.sql("select candidate_id, f_price from candidates order by 1").rows()
    assert rows == [("c0", 0), ("c1", 1), ("c2", 2), ("plain", None)]


# --- mistakes -----------------------------------------------------------------------------


def _decoration_error(**options: Any) -> str:
    def rank(products: list[Product]) -> list[Product]:
        return products

    with pytest.raises(xr.DecorationError) as caught:
        xr.ranking_stage("r", **options)(rank)
    message = str(caught.value)
    assert "rank" in message and "test_promoted_fields.py:" in message and "Fix:" in message
    return message


@pytest.mark.parametrize(("fields", "problem"), [
    (["price"], "is not a mapping"),
    ({"price tag": "price"}, "is not a column name"),
    ({"1st": "price"}, "is not a column name"),
    ({"price": 3}, "names no candidate field"),
    ({"price": ""}, "names no candidate field"),
    ({"price": xr.Field("price", list)}, "declares type"),
    ({"Price": "price", "price": "price"}, "differ only in case"),
    ({"price": "prise"}, "did you mean 'price'"),  # Product declares its fields
])
def test_bad_fields_raise_at_decoration_with_the_fix(fields: Any, problem: str) -> None:
    assert problem in _decoration_error(fields=fields)


def test_bad_fields_raise_in_stage_blocks() -> None:
    with pytest.raises(xr.DecorationError, match=r"fields key '' .* in stage 'f'.* Fix: use"):
        xr.stage("f", type="filtering", fields={"": "x"})
    with pytest.raises(xr.DecorationError, match="raw stage"):
        xr.stage("r", type="raw", fields={"x": "x"})


def test_capture_records_holds_promoted_columns_of_every_flush() -> None:
    from xray_lake.testing import capture_records

    with capture_records() as records:
        for value in (1, "x"):
            with xr.run("p") as run, run.stage("s", type="retrieval", fields={"v": "v"}) as st:
                st.output([{"id": str(value), "v": value}])
            assert xr.flush(5)
        assert records.candidates["f_v"].to_list() == ["1", "x"]
