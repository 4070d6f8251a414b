"""Which output candidate is which input: pure functions over ids and object identities.

A stage's rows join its two lists: each returned candidate gets the position it had in the
input (`in_position`), each input the position it came back at (`out_position`). Ids are
compared as text and matched one to one, in order, so duplicate ids pair up copy by copy;
candidates without an id fall back to being the very same object.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Sequence
from typing import cast

from xray_lake.records.pending import only_text
from xray_lake.records.results import unwrap


def id_strings(ids: Sequence[object]) -> list[str | None]:
    """Ids as stored (text): strings as they are, None as no id, anything else by str()."""
    if only_text(ids):
        return cast("list[str | None]", list(ids))
    return [x if type(x) is str else (None if x is None else str(x)) for x in ids]


def first_index(keys: Sequence[Hashable | None]) -> dict[Hashable, int]:
    """Each key's first position (None is no key); built from the end in C, so the first wins."""
    n = len(keys)
    index: dict[Hashable, int] = dict(zip(reversed(keys), range(n - 1, -1, -1), strict=True))
    index.pop(None, None)
    return index


def match_in_order(keys: Sequence[str | None], targets: Sequence[str | None]) -> list[int | None]:
    """For each key, the position of its next unused occurrence in `targets` (None if none is left).

    One-to-one: with duplicate ids the k-th copy of an id in `keys` is matched to its k-th copy
    in `targets`, so no target position is claimed twice.
    """
    index = first_index(targets)
    pos: list[int | None] = list(map(index.get, keys))  # a None key finds nothing
    claimed = [p for p in pos if p is not None]
    if len(set(claimed)) == len(claimed):  # no id repeats among the matches: already in order
        return pos
    free: dict[str, deque[int]] = {}
    for i, key in enumerate(targets):
        if key is not None:
            free.setdefault(key, deque()).append(i)
    result: list[int | None] = []
    for key in keys:
        queue = free.get(key) if key is not None else None
        result.append(queue.popleft() if queue else None)
    return result


def match_by_identity(ids: Sequence[str | None], in_pos: Sequence[int | None],
                      outputs: Sequence[object], inputs: Sequence[object]) -> list[int | None]:
    """`in_pos` completed for outputs without an id: the input that is the very same object
    (unwrapped from result helpers), if no other output has claimed it."""
    result = list(in_pos)
    claimed = {p for p in result if p is not None}
    by_identity: dict[int, int] = {}
    for i, item in enumerate(inputs):
        by_identity.setdefault(id(unwrap(item)), i)
    for j, key in enumerate(ids):
        if key is None and result[j] is None:
            match = by_identity.get(id(unwrap(outputs[j])))
            if match is not None and match not in claimed:
                result[j] = match
                claimed.add(match)
    return result


def survivors_by_identity(inputs: Sequence[object], survivors: Sequence[object]) -> list[int | None]:
    """For each input of a filtering stage that returns its survivors, the position of the
    very same object among them (None: not returned as itself)."""
    by_identity = {id(obj): j for j, obj in enumerate(survivors)}
    return list(map(by_identity.get, map(id, inputs)))


def match_rest_by_id(out_pos: Sequence[int | None], in_ids: Sequence[str | None],
                     survivor_ids: Sequence[str | None]) -> list[int | None]:
    """`out_pos` completed by id for the inputs no survivor was by identity: each takes the
    next survivor with its id that no input has claimed (survivors that are new objects)."""
    result = list(out_pos)
    taken = {j for j in result if j is not None}
    free = [j for j in range(len(survivor_ids)) if j not in taken]
    todo = [i for i, j in enumerate(result) if j is None and i < len(in_ids)]
    picks = match_in_order([in_ids[i] for i in todo], [survivor_ids[j] for j in free])
    for i, k in zip(todo, picks, strict=True):
        if k is not None:
            result[i] = free[k]
    return result
