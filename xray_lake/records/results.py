"""Typed result helpers a stage may return instead of mapping fields on its candidates.

Each helper belongs to one kind of stage. For type checkers, each also declares a private
`__sizeof__` return type (under TYPE_CHECKING only: nothing changes at run time) so that the
`*Item` protocols below accept every candidate type except another stage's helper: mypy and
pyright then reject `@xr.scoring_stage` on a function returning `list[xr.Filtered[...]]`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeAlias, TypeVar

T = TypeVar("T")


class FilteredBelongsToFilteringStages:
    """Type-checker marker: `xr.Filtered` is the result of a filtering stage only."""


class ScoredBelongsToScoringOrRankingStages:
    """Type-checker marker: `xr.Scored` is the result of a scoring or ranking stage only."""


class GeneratedBelongsToGenerationOrRetrievalStages:
    """Type-checker marker: `xr.Generated` is the result of a generation or retrieval stage."""


@dataclass(frozen=True, slots=True)
class Filtered(Generic[T]):
    """A filtering stage's verdict on one candidate, returned instead of mapped fields."""

    item: T
    passed: bool
    reason_label: str | None = None
    reason_text: str | None = None

    if TYPE_CHECKING:
        def __sizeof__(self) -> FilteredBelongsToFilteringStages: ...  # type: ignore[override]


@dataclass(frozen=True, slots=True)
class Scored(Generic[T]):
    """A scoring stage's score for one candidate, returned instead of a mapped `score` field."""

    item: T
    score: float | None

    if TYPE_CHECKING:
        def __sizeof__(self) -> ScoredBelongsToScoringOrRankingStages: ...  # type: ignore[override]


@dataclass(frozen=True, slots=True)
class Generated(Generic[T]):
    """A generated candidate with the reason it was generated."""

    item: T
    reason: str | None = None

    if TYPE_CHECKING:
        def __sizeof__(self) -> GeneratedBelongsToGenerationOrRetrievalStages: ...  # type: ignore[override]


RESULT_HELPERS = (Filtered, Scored, Generated)


def unwrap(value: object) -> object:
    """The candidate a result helper wraps, or the value itself."""
    return value.item if isinstance(value, RESULT_HELPERS) else value


# The helper each built-in stage type may return (raw stages return anything).
HELPER_OF: dict[str, type] = {
    "filtering": Filtered,
    "scoring": Scored,
    "ranking": Scored,
    "generation": Generated,
    "retrieval": Generated,
}


class FilteringItem(Protocol):
    """A candidate a filtering stage may return: any value, or `xr.Filtered`."""

    def __sizeof__(self) -> int | FilteredBelongsToFilteringStages: ...  # type: ignore[override]


class ScoringItem(Protocol):
    """A candidate a scoring or ranking stage may return: any value, or `xr.Scored`."""

    def __sizeof__(self) -> int | ScoredBelongsToScoringOrRankingStages: ...  # type: ignore[override]


class GenerationItem(Protocol):
    """A candidate a generation or retrieval stage may return: any value, or `xr.Generated`."""

    def __sizeof__(self) -> int | GeneratedBelongsToGenerationOrRetrievalStages: ...  # type: ignore[override]


# What a list stage's function may return: a sequence (sync or awaited), or items yielded
# by a generator / async generator.
FilteringResult: TypeAlias = (Sequence[FilteringItem] | Iterator[FilteringItem]
                              | AsyncIterator[FilteringItem]
                              | Coroutine[Any, Any, Sequence[FilteringItem]])
ScoringResult: TypeAlias = (Sequence[ScoringItem] | Iterator[ScoringItem]
                            | AsyncIterator[ScoringItem]
                            | Coroutine[Any, Any, Sequence[ScoringItem]])
GenerationResult: TypeAlias = (Sequence[GenerationItem] | Iterator[GenerationItem]
                               | AsyncIterator[GenerationItem]
                               | Coroutine[Any, Any, Sequence[GenerationItem]])
