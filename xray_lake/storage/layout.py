"""Lake layout: table folders, escaped Hive partition folder names, and data/temp file names.

Partition values use Hive/Spark escaping: exactly the ASCII characters Spark escapes on Linux
(0x01-0x1F, ``"#%'*/:=?\\{[]^`` and DEL) plus NUL become ``%XX`` (upper-case hex); everything
else, including non-ASCII, is kept raw. DuckDB and polars decode ``%XX`` as UTF-8, while Spark
decodes each ``%XX`` to a single char, so only ASCII is ever percent-escaped: all three readers
then get the original label back. A folder written this way for an ordinary label is the same
folder Spark would write for it. Four labels need extra care:

* ``"."`` and ``".."`` are written as ``%2E`` and ``%2E%2E`` so a value is never a dot name.
* ``"__HIVE_DEFAULT_PARTITION__"`` (the Hive NULL marker) is written as
  ``%5F_HIVE_DEFAULT_PARTITION__``. DuckDB reads that back exactly, and so does Spark, which
  compares before decoding. polars 2.1 compares *after* decoding, so it reads the label as NULL
  whatever the escaping.
* ``""`` is written as ``label=`` (empty value). DuckDB and polars both read ``""`` back.
  Spark rejects empty partition values (``AssertionError: Empty partition column value``), so
  a table holding an empty label cannot be read by Spark. The alternative, the Hive NULL marker,
  would read back as NULL everywhere.

Long labels: a folder name holds at most 255 bytes (ext4 and most other filesystems), including
``label=``. An escaped label longer than ``MAX_LABEL_BYTES`` UTF-8 bytes is cut between escaped
characters to at most ``MAX_LABEL_BYTES`` bytes and followed by ``~`` and the first 32 hex digits
of the SHA-256 of the full label. This never fails. Whole values are at most ``MAX_LABEL_BYTES``
bytes and shortened ones are always longer, so the two kinds of value cannot collide, and two
shortened values collide only if their 128-bit hashes do. Readers then see the shortened value
(``unescape_label(escape_label(label))``), not the label. Use ``label_is_shortened`` to warn and to
keep the full label in the data.

Paths are plain ``/``-joined strings. They are *paths*, not URIs: pyarrow's
``FileSystem.from_uri`` and URI strings given to ``pq.write_table`` percent-decode them, which
would turn ``%2F`` back into ``/``. Resolve the root once (``fs, base = from_uri(root)``) and build
paths from ``base``. On case-insensitive filesystems (macOS and Windows defaults), labels that
differ only in case share a folder.

Unicode: a label is NFC-normalised before it is escaped, so a composed ``"é"`` (U+00E9) and a
decomposed one (``"e"`` + U+0301), which look the same, share one folder, and readers (who take
the label from the folder name) see the NFC form. Query the NFC form: Python string literals
and most keyboards give it; ``unicodedata.normalize("NFC", label)`` makes it from any other.
macOS filesystems may store names decomposed; readers there still decode the folder name.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
import unicodedata

# Temp names and their owners live in tempfiles.py; re-exported for the modules that name files.
from xray_lake.storage.tempfiles import host_tag as host_tag
from xray_lake.storage.tempfiles import is_temp_file as is_temp_file
from xray_lake.storage.tempfiles import temp_file_name as temp_file_name

TABLES: tuple[str, ...] = ("runs", "stages", "candidates")

_LABEL_KEY = "label="
_HASH_HEX_CHARS = 32
_SHORTENED_MARK = "~"

# A shortened value is at most MAX_LABEL_BYTES + 33 bytes: 6 + 233 = 239 <= 255 with 'label='.
MAX_LABEL_BYTES: int = 200
"""Longest escaped label (UTF-8 bytes) kept whole in a folder name; longer ones are shortened."""

_ESCAPED_CHARS = "".join(chr(c) for c in range(0x20)) + "\"#%'*/:=?\\{[]^\x7f"
_ESCAPE_TABLE: dict[int, str] = {ord(c): f"%{ord(c):02X}" for c in _ESCAPED_CHARS}

_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
_SPECIAL_VALUES: dict[str, str] = {
    ".": "%2E",
    "..": "%2E%2E",
    _HIVE_NULL: "%5F" + _HIVE_NULL[1:],
}

_PERCENT_RE = re.compile(r"%([0-9A-Fa-f]{2})")
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_WRITER_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def _utf8(text: str, what: str) -> bytes:
    """Encode to UTF-8, reporting lone surrogates (which no folder or Parquet string can hold)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{what} is not valid Unicode: lone surrogate at index {exc.start}"
        ) from exc


def _escape_whole(label: str) -> str:
    """Escape every character, without the length limit."""
    _utf8(label, "label")
    special = _SPECIAL_VALUES.get(label)
    if special is not None:
        return special
    return label.translate(_ESCAPE_TABLE)


def _shorten(label: str) -> str:
    """Cut at a character boundary to at most MAX_LABEL_BYTES, then add '~' and the label's hash."""
    parts: list[str] = []
    size = 0
    for char in label:
        token = _ESCAPE_TABLE.get(ord(char), char)
        token_bytes = len(token.encode("utf-8"))
        if size + token_bytes > MAX_LABEL_BYTES:
            break
        parts.append(token)
        size += token_bytes
    digest = hashlib.sha256(label.encode("utf-8")).hexdigest()[:_HASH_HEX_CHARS]
    return "".join(parts) + _SHORTENED_MARK + digest


def escape_label(label: str) -> str:
    """Return the partition value for ``label`` as it goes in the folder name after ``label=``.

    The result never contains ``/``, ``\\``, NUL or control characters and is never ``.``/``..``,
    so it cannot leave its folder. Different labels never give the same value (see the module
    docstring about long labels), except canonically equivalent ones: the label is
    NFC-normalised first.
    """
    label = nfc(label)
    whole = _escape_whole(label)
    if len(whole.encode("utf-8")) <= MAX_LABEL_BYTES:
        return whole
    return _shorten(label)


def label_is_shortened(label: str) -> bool:
    """Tell whether readers will see a shortened value, so the caller can warn and keep the label."""
    return len(_escape_whole(nfc(label)).encode("utf-8")) > MAX_LABEL_BYTES


def nfc(label: str) -> str:
    """The label's NFC form, the one its folder holds."""
    return unicodedata.normalize("NFC", label)


def unescape_label(value: str) -> str:
    """Decode a folder's partition value the way DuckDB and polars do (``%XX`` as UTF-8 bytes).

    This is the inverse of ``escape_label`` for labels that were not shortened. Code that lists
    folders itself needs it. A ``%`` not followed by two hex digits stays literal, and
    ``__HIVE_DEFAULT_PARTITION__`` is returned as it is (escape_label never writes it raw).
    """
    raw = bytearray()
    pos = 0
    for match in _PERCENT_RE.finditer(value):
        raw += _utf8(value[pos : match.start()], "partition value")
        raw.append(int(match.group(1), 16))
        pos = match.end()
    raw += _utf8(value[pos:], "partition value")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"partition value {value!r} does not decode to valid UTF-8") from exc


def _check_table(table: str) -> None:
    """Reject unknown tables early, so a typo cannot create a stray top-level folder."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}: expected one of {', '.join(TABLES)}")


def _check_date(date: str) -> None:
    """Require a real calendar date as YYYY-MM-DD, the only form readers will sort and filter."""
    if not isinstance(date, str) or _DATE_RE.fullmatch(date) is None:
        raise ValueError(f"date must be a 'YYYY-MM-DD' string, got {date!r}")
    try:
        _dt.date.fromisoformat(date)
    except ValueError as exc:
        raise ValueError(f"date {date!r} is not a valid calendar date") from exc


def _base(root: str) -> str:
    """Strip trailing '/' so joining never doubles it; the root '/' becomes '' (joins as '/...')."""
    if not root:
        raise ValueError("root must be a non-empty local path or URI prefix such as 's3://bucket'")
    if root.endswith("://"):
        raise ValueError(f"root {root!r} has a scheme but no bucket or path")
    return root.rstrip("/")


def partition_dir(root: str, table: str, label: str, date: str) -> str:
    """Return ``<root>/<table>/label=<escaped label>/date=<date>``, joined with '/'.

    ``root`` may be a local path or an ``s3://bucket/prefix``-style prefix. ``table`` and
    ``date`` are validated (ValueError) because they go into the path unescaped.
    """
    return f"{_base(root)}/{partition_rel(table, label, date)}"


def partition_rel(table: str, label: str, date: str) -> str:
    """Return ``<table>/label=<escaped label>/date=<date>``, the partition's path under a root."""
    _check_table(table)
    _check_date(date)
    return f"{table}/{_LABEL_KEY}{escape_label(label)}/date={date}"


def data_file_name(writer_id: str, seq: int, schema_version: int | str = 1,
                   fields_tag: str = "") -> str:
    """Return ``part-v<schema>-<writer_id>-<seq:08d>.parquet``, unique per writer.

    ``writer_id`` must be 1-128 of ``[A-Za-z0-9_.-]`` starting with a letter or digit, so the
    name is a single path component that no reader treats as hidden. A candidates file with
    promoted fields has ``fields_tag`` (10 hex digits naming its extra columns) in its version
    token, ``part-v1p<tag>-…``, so that one glob per token covers files of one schema.
    ``schema_version`` may also be a whole token as ``version_token`` returns it.
    """
    if _WRITER_ID_RE.fullmatch(writer_id) is None:
        raise ValueError(
            f"writer_id must be 1-128 chars of [A-Za-z0-9_.-] starting with a letter or digit, "
            f"got {writer_id!r}"
        )
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise ValueError(f"seq must be a non-negative int, got {seq!r}")
    token = version_token(schema_version, fields_tag)
    return f"part-v{token}-{writer_id}-{seq:08d}.parquet"


FIELDS_DIR = "_fields"
"""Folder under the root holding one empty file per promoted-fields tag ever published."""

VERSION_TOKEN = r"[0-9]+(?:p[0-9a-f]{10})?"
"""Regex of the version token of a data file name (`part-v<token>-…`)."""
_TOKEN_RE = re.compile(VERSION_TOKEN)


def version_token(schema_version: int | str, fields_tag: str = "") -> str:
    """``1`` or ``1p<tag>``: the schema version and, for promoted fields, their tag."""
    token = f"{schema_version}p{fields_tag}" if fields_tag else str(schema_version)
    if _TOKEN_RE.fullmatch(token) is None:
        raise ValueError(f"not a schema version token: {token!r}")
    return token


def version_glob(root: str, table: str, schema_version: int | str) -> str:
    """The files of one schema version token of a table (`1` does not match `1p<tag>`)."""
    return table_glob(root, table).removesuffix("*.parquet") + f"part-v{schema_version}-*.parquet"


def table_glob(root: str, table: str) -> str:
    """Return ``<root>/<table>/*/*/*.parquet``, the glob plain DuckDB/polars readers use."""
    _check_table(table)
    return f"{_base(root)}/{table}/*/*/*.parquet"
