"""Typed result helpers a stage may return instead of mapping fields on its candidates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Filtered(Generic[T]):
    """A filtering stage's verdict on one candidate, returned instead of mapped fields."""

    item: T
    passed: bool
    reason_label: str | None = None
    reason_text: str | None = None


@dataclass(frozen=True, slots=True)
class Scored(Generic[T]):
    """A scoring stage's score for one candidate, returned instead of a mapped `score` field."""

    item: T
    score: float | None


@dataclass(frozen=True, slots=True)
class Generated(Generic[T]):
    """A generated candidate with the reason it was generated."""

    item: T
    reason: str | None = None


RESULT_HELPERS = (Filtered, Scored, Generated)
