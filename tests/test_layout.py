"""Behaviour of the lake layout: label escaping, partition paths, file names and globs."""

from __future__ import annotations

import os
import tempfile
import unicodedata
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xray_lake.storage.layout import (
    MAX_LABEL_BYTES,
    TABLES,
    data_file_name,
    escape_label,
    is_temp_file,
    label_is_shortened,
    partition_dir,
    table_glob,
    temp_file_name,
    unescape_label,
)

DATE = "2026-01-02"
LONG_LABEL = "".join(chr(ord("a") + i % 26) for i in range(300))

# Any valid Unicode text, including NUL and other control characters; no lone surrogates.
labels = st.text(alphabet=st.characters(blacklist_categories=["Cs"]))
# Biased towards the characters that need escaping.
nasty_labels = st.text(
    alphabet=st.sampled_from([*"%/\\=.:*?\"'#[]{}^~ \x00\t\n\r\x7fü日-_aZ09", "\U0001f600"])
)

ROUND_TRIP_LABELS = [
    "42",
    "0017",
    "a/../b c/ü%",
    "x=y",
    "50%",
    "tab\there",
    "new\nline",
    "日本語 ü",
    "",
    ".",
    "..",
    "../../etc",
    "/abs",
    "nul\x00byte",
    "%41 %2F already-escaped",
    "*?[]{}^#:'\"\\\x7f\r",
    "null",
    "~tilde~",
]


# --- plain readers: deliberately no xray_lake code below this line until the tests ---------------


def write_tiny_parquet(directory: str, x: int) -> None:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "part-0.parquet"), "wb") as sink:
        pq.write_table(pa.table({"x": [x]}), sink)


def read_duckdb(root: str) -> list[tuple[object, ...]]:
    con = duckdb.connect()
    try:
        rows = con.execute(
            "SELECT x, label, date FROM read_parquet(?, hive_partitioning=true, "
            "hive_types={'label': 'VARCHAR', 'date': 'VARCHAR'}) ORDER BY x",
            [f"{root}/stages/*/*/*.parquet"],
        ).fetchall()
    finally:
        con.close()
    return [tuple(row) for row in rows]


def read_polars(root: str) -> list[tuple[object, ...]]:
    frame = (
        pl.scan_parquet(
            f"{root}/stages/*/*/*.parquet",
            hive_partitioning=True,
            hive_schema={"label": pl.String, "date": pl.String},
        )
        .select("x", "label", "date")
        .sort("x")
        .collect()
    )
    return frame.rows()


# --- escaping ------------------------------------------------------------------------------------


@given(labels)
def test_unescape_inverts_escape_for_any_label_kept_whole(label: str) -> None:
    if not label_is_shortened(label):  # labels are stored NFC-normalised (docs/security.md)
        assert unescape_label(escape_label(label)) == unicodedata.normalize("NFC", label)


@given(nasty_labels)
def test_unescape_inverts_escape_for_labels_full_of_special_characters(label: str) -> None:
    if not label_is_shortened(label):
        assert unescape_label(escape_label(label)) == unicodedata.normalize("NFC", label)


@given(st.one_of(labels, nasty_labels, st.builds(lambda s: s * 80, nasty_labels)))
def test_escaped_value_is_one_safe_path_component_that_fits_a_folder_name(label: str) -> None:
    value = escape_label(label)
    assert "/" not in value
    assert "\\" not in value
    assert "\x00" not in value
    assert value not in (".", "..")
    assert all(ord(c) >= 0x20 and ord(c) != 0x7F for c in value)
    assert len(f"label={value}".encode()) <= 255


@given(st.one_of(labels, nasty_labels), st.one_of(labels, nasty_labels))
def test_different_labels_never_share_a_folder(a: str, b: str) -> None:
    if a != b:
        assert escape_label(a) != escape_label(b)


@given(nasty_labels, nasty_labels)
def test_different_long_labels_with_a_common_prefix_never_share_a_folder(a: str, b: str) -> None:
    prefix = "p" * MAX_LABEL_BYTES
    if a != b:
        assert escape_label(prefix + a) != escape_label(prefix + b)


def test_only_ascii_characters_are_percent_escaped_so_spark_decodes_them_too() -> None:
    assert escape_label("a/b c=d%ü日") == "a%2Fb c%3Dd%25ü日"
    assert escape_label("tab\there\n") == "tab%09here%0A"
    assert escape_label("x\x00\x7f") == "x%00%7F"


def test_labels_spark_writes_unchanged_stay_unchanged() -> None:
    for label in ["42", "0017", "a b", "a+b", "a~b", "a,b;c&d", "a}b", "a<b>|c", "ü日本"]:
        assert escape_label(label) == label


def test_dot_names_and_the_hive_null_marker_are_escaped() -> None:
    assert escape_label(".") == "%2E"
    assert escape_label("..") == "%2E%2E"
    assert escape_label("__HIVE_DEFAULT_PARTITION__") == "%5F_HIVE_DEFAULT_PARTITION__"
    assert escape_label("...") == "..."


def test_empty_label_is_an_empty_partition_value() -> None:
    assert escape_label("") == ""
    assert unescape_label("") == ""


def test_unescape_decodes_like_duckdb_and_polars() -> None:
    assert unescape_label("%C3%BC%2f") == "ü/"
    assert unescape_label("a%zz%") == "a%zz%"
    assert unescape_label("a+b") == "a+b"
    assert unescape_label("%2541") == "%41"


def test_unescape_rejects_values_that_do_not_decode_to_utf8() -> None:
    with pytest.raises(ValueError, match="UTF-8"):
        unescape_label("%C3")


def test_labels_with_lone_surrogates_are_rejected() -> None:
    with pytest.raises(ValueError, match="surrogate"):
        escape_label("bad\ud800")


def test_label_is_kept_whole_up_to_max_bytes_and_shortened_beyond() -> None:
    at_limit = "a" * MAX_LABEL_BYTES
    assert not label_is_shortened(at_limit)
    assert escape_label(at_limit) == at_limit
    over = at_limit + "b"
    assert label_is_shortened(over)
    assert len(escape_label(over).encode()) > MAX_LABEL_BYTES
    # Escaping counts: 67 '/' escape to 201 bytes.
    assert label_is_shortened("/" * 67)
    assert not label_is_shortened("/" * 66)


def test_shortened_label_keeps_a_prefix_and_ends_with_tilde_and_hash() -> None:
    value = escape_label(LONG_LABEL)
    prefix, _, digest = value.rpartition("~")
    assert LONG_LABEL.startswith(prefix)
    assert len(prefix) == MAX_LABEL_BYTES
    assert len(digest) == 32
    assert int(digest, 16) >= 0


def test_shortening_never_splits_an_escape_or_a_character() -> None:
    for label in ["/" * 300, "ü" * 300, "\U0001f600" * 300, "a" + "/" * 300]:
        value = escape_label(label)
        prefix = value.rpartition("~")[0]
        assert unescape_label(prefix) == label[: len(unescape_label(prefix))]


def test_a_label_that_looks_like_a_shortened_value_gets_its_own_folder() -> None:
    shortened = escape_label(LONG_LABEL)
    assert escape_label(shortened) != shortened


# --- paths ---------------------------------------------------------------------------------------


def test_partition_dir_layout() -> None:
    assert (
        partition_dir("/lake", "stages", "a/b", DATE) == "/lake/stages/label=a%2Fb/date=2026-01-02"
    )
    assert partition_dir("/lake/", "runs", "x", DATE) == "/lake/runs/label=x/date=2026-01-02"
    assert partition_dir("/", "runs", "x", DATE) == "/runs/label=x/date=2026-01-02"


def test_partition_dir_accepts_an_s3_prefix() -> None:
    assert (
        partition_dir("s3://bucket/prefix/", "candidates", "50%", DATE)
        == "s3://bucket/prefix/candidates/label=50%25/date=2026-01-02"
    )
    assert (
        partition_dir("s3://bucket", "runs", "", DATE) == "s3://bucket/runs/label=/date=2026-01-02"
    )


@pytest.mark.parametrize("table", ["", "Stages", "stages/..", "../runs", "other"])
def test_partition_dir_rejects_unknown_tables(table: str) -> None:
    with pytest.raises(ValueError, match="unknown table"):
        partition_dir("/lake", table, "x", DATE)


@pytest.mark.parametrize(
    "date", ["", "2026-1-2", "20260102", "2026-13-01", "2026-02-30", "2026-01-02/..", "٢٠٢٦-01-02"]
)
def test_partition_dir_rejects_anything_but_a_real_yyyy_mm_dd_date(date: str) -> None:
    with pytest.raises(ValueError, match="date"):
        partition_dir("/lake", "stages", "x", date)


@pytest.mark.parametrize("root", ["", "s3://"])
def test_partition_dir_rejects_an_empty_root(root: str) -> None:
    with pytest.raises(ValueError, match="root"):
        partition_dir(root, "stages", "x", DATE)


@pytest.mark.parametrize(
    "label", ["../../etc", "/abs", "a/../b c/ü%", "..", ".", "\\..\\..", "\x00", "x" * 1000]
)
def test_partition_folder_stays_inside_its_table_folder(tmp_path: Path, label: str) -> None:
    folder = partition_dir(str(tmp_path), "stages", label, DATE)
    os.makedirs(folder)
    real = Path(os.path.realpath(folder))
    assert real.parent.parent == tmp_path.resolve() / "stages"
    assert real.parent.name == "label=" + escape_label(label)
    assert real.name == f"date={DATE}"


def test_table_glob() -> None:
    assert table_glob("/lake", "stages") == "/lake/stages/*/*/*.parquet"
    assert table_glob("s3://b/p/", "runs") == "s3://b/p/runs/*/*/*.parquet"
    assert [table_glob("r", t) for t in TABLES] == [
        "r/runs/*/*/*.parquet",
        "r/stages/*/*/*.parquet",
        "r/candidates/*/*/*.parquet",
    ]
    with pytest.raises(ValueError, match="unknown table"):
        table_glob("/lake", "nope")


# --- file names ----------------------------------------------------------------------------------


def test_data_file_name() -> None:
    assert data_file_name("w1", 7) == "part-v1-w1-00000007.parquet"
    assert data_file_name("w1", 7, 2) == "part-v2-w1-00000007.parquet"
    assert (
        data_file_name("3f2b-c0de_host.1", 123456789) == "part-v1-3f2b-c0de_host.1-123456789.parquet"
    )


@pytest.mark.parametrize("writer_id", ["", ".hidden", "_x", "a/b", "a b", "ü", "x" * 129])
def test_data_file_name_rejects_writer_ids_that_are_not_plain_names(writer_id: str) -> None:
    with pytest.raises(ValueError, match="writer_id"):
        data_file_name(writer_id, 0)


@pytest.mark.parametrize("seq", [-1, True])
def test_data_file_name_rejects_bad_sequence_numbers(seq: int) -> None:
    with pytest.raises(ValueError, match="seq"):
        data_file_name("w", seq)


def test_temp_file_names_are_hidden_and_never_match_parquet_globs() -> None:
    final = data_file_name("w1", 1)
    temp = temp_file_name(final)
    assert temp == ".part-v1-w1-00000001.parquet.tmp"
    assert temp.startswith(".")
    assert not temp.endswith(".parquet")
    assert is_temp_file(temp)
    assert is_temp_file(f"s3://b/stages/label=x/date={DATE}/{temp}")
    assert not is_temp_file(final)
    assert not is_temp_file(".tmp")
    assert not is_temp_file("x.tmp")


@pytest.mark.parametrize("name", ["", "a/b", "a\\b", ".", ".."])
def test_temp_file_name_rejects_non_names(name: str) -> None:
    with pytest.raises(ValueError, match="final_name"):
        temp_file_name(name)


def test_plain_readers_ignore_temp_files(tmp_path: Path) -> None:
    folder = partition_dir(str(tmp_path), "stages", "x", DATE)
    write_tiny_parquet(folder, 1)
    with open(os.path.join(folder, temp_file_name("part-w-00000002.parquet")), "wb") as sink:
        pq.write_table(pa.table({"x": [2]}), sink)
    assert read_duckdb(str(tmp_path)) == [(1, "x", DATE)]
    assert read_polars(str(tmp_path)) == [(1, "x", DATE)]


# --- the contract: plain DuckDB and polars read the original label back --------------------------


@pytest.mark.parametrize("label", ROUND_TRIP_LABELS, ids=repr)
def test_plain_duckdb_and_polars_read_the_original_label(tmp_path: Path, label: str) -> None:
    write_tiny_parquet(partition_dir(str(tmp_path), "stages", label, DATE), 1)
    assert read_duckdb(str(tmp_path)) == [(1, label, DATE)]
    assert read_polars(str(tmp_path)) == [(1, label, DATE)]


def test_plain_readers_read_all_labels_of_one_table_together(tmp_path: Path) -> None:
    expected = [(i, label, DATE) for i, label in enumerate(ROUND_TRIP_LABELS)]
    for i, label, date in expected:
        write_tiny_parquet(partition_dir(str(tmp_path), "stages", label, date), i)
    assert read_duckdb(str(tmp_path)) == expected
    assert read_polars(str(tmp_path)) == expected


@pytest.mark.parametrize("label", [LONG_LABEL, "日" * 400, "/" * 300, "é" * 1024], ids=len)
def test_plain_readers_read_a_shortened_label_as_its_unescaped_folder_value(
    tmp_path: Path, label: str
) -> None:
    assert label_is_shortened(label)
    seen = unescape_label(escape_label(label))
    write_tiny_parquet(partition_dir(str(tmp_path), "stages", label, DATE), 1)
    assert read_duckdb(str(tmp_path)) == [(1, seen, DATE)]
    assert read_polars(str(tmp_path)) == [(1, seen, DATE)]


def test_literal_hive_null_label_is_exact_in_duckdb_but_null_in_polars(tmp_path: Path) -> None:
    label = "__HIVE_DEFAULT_PARTITION__"
    write_tiny_parquet(partition_dir(str(tmp_path), "stages", label, DATE), 1)
    assert read_duckdb(str(tmp_path)) == [(1, label, DATE)]
    # polars decodes %5F before comparing with the Hive NULL marker; nothing can avoid that.
    assert read_polars(str(tmp_path)) == [(1, None, DATE)]


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(st.one_of(labels, nasty_labels))
def test_plain_readers_read_any_label_kept_whole(label: str) -> None:
    if label_is_shortened(label) or label == "__HIVE_DEFAULT_PARTITION__":
        return
    with tempfile.TemporaryDirectory() as root:
        write_tiny_parquet(partition_dir(root, "stages", label, DATE), 1)
        assert read_duckdb(root) == [(1, label, DATE)]
        assert read_polars(root) == [(1, label, DATE)]
