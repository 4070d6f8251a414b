"""The builder's hand-listed columns (query/builder.py) against the Arrow schemas (records/schema.py).

The typed namespaces `run`, `stage` and `candidate` list each column by hand, as an annotation,
so that mypy knows its type; this test keeps that list and the schema one list: every stored
column is there, annotated with the class its kind gets at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from xray_lake.query import builder
from xray_lake.query.nodes import Table
from xray_lake.records.schema import table_schema

BUILDER = Path(builder.__file__)
NAMESPACES = {"RunColumns": (Table.RUN, builder.run), "StageColumns": (Table.STAGE, builder.stage),
              "CandidateColumns": (Table.CANDIDATE, builder.candidate)}


def _listed(class_name: str) -> dict[str, str]:
    """column -> annotated class, from the `name: T` lines of the class body and of the
    builder's classes it derives from (`_Span`), but not `_Columns.table`."""
    classes = {node.name: node for node in ast.parse(BUILDER.read_text()).body
               if isinstance(node, ast.ClassDef)}
    found: dict[str, str] = {}
    for base in classes[class_name].bases:
        if isinstance(base, ast.Name) and base.id in classes and base.id != "_Columns":
            found |= _listed(base.id)
    return found | {stmt.target.id: ast.unparse(stmt.annotation)
                    for stmt in classes[class_name].body
                    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)}


@pytest.mark.parametrize("class_name", sorted(NAMESPACES))
def test_every_stored_column_is_listed(class_name: str) -> None:
    table, _ = NAMESPACES[class_name]
    listed = set(_listed(class_name))
    stored = set(table_schema(table.view).names)
    assert sorted(stored - listed) == [], "stored but missing from the builder"
    assert sorted(listed - stored) == [], "listed in the builder but not stored"


@pytest.mark.parametrize("class_name", sorted(NAMESPACES))
def test_each_listed_column_is_annotated_with_the_class_it_gets(class_name: str) -> None:
    _, namespace = NAMESPACES[class_name]
    wrong = {attr: (annotated, type(getattr(namespace, attr)).__name__)
             for attr, annotated in _listed(class_name).items()
             if type(getattr(namespace, attr)).__name__ != annotated}
    assert wrong == {}, "attribute: (annotation, class at run time)"
