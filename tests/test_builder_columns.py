"""The builder's hand-listed columns (query/builder.py) against the Arrow schemas (records/schema.py).

The typed namespaces `run`, `stage` and `candidate` list each column by hand so that mypy
knows its type; this test keeps that list and the schema one list: every stored column is
there, under its own name, annotated with the class its kind gets at run time.
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


def _listed(class_name: str) -> dict[str, tuple[str, str]]:
    """attribute -> (annotated class, column name read), from `self.x: T = _col(c, "x")`."""
    tree = ast.parse(BUILDER.read_text())
    cls = next(node for node in tree.body
               if isinstance(node, ast.ClassDef) and node.name == class_name)
    init = next(node for node in cls.body
                if isinstance(node, ast.FunctionDef) and node.name == "__init__")
    found: dict[str, tuple[str, str]] = {}
    for stmt in init.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Attribute):
            call = stmt.value
            assert isinstance(call, ast.Call) and isinstance(call.args[1], ast.Constant)
            found[stmt.target.attr] = (ast.unparse(stmt.annotation), str(call.args[1].value))
    return found


@pytest.mark.parametrize("class_name", sorted(NAMESPACES))
def test_every_stored_column_is_listed_under_its_own_name(class_name: str) -> None:
    table, _ = NAMESPACES[class_name]
    listed = _listed(class_name)
    assert {attr: column for attr, (_, column) in listed.items() if attr != column} == {}
    stored = set(table_schema(table.view).names)
    assert sorted(stored - set(listed)) == [], "stored but missing from the builder"
    assert sorted(set(listed) - stored) == [], "listed in the builder but not stored"


@pytest.mark.parametrize("class_name", sorted(NAMESPACES))
def test_each_listed_column_is_annotated_with_the_class_it_gets(class_name: str) -> None:
    _, namespace = NAMESPACES[class_name]
    wrong = {attr: (annotated, type(getattr(namespace, attr)).__name__)
             for attr, (annotated, _) in _listed(class_name).items()
             if type(getattr(namespace, attr)).__name__ != annotated}
    assert wrong == {}, "attribute: (annotation, class at run time)"
