"""Deterministic bulk and message ids, and readable validation paths, for the send operator.

A send is made findable again (task state store, ``/omni/1/logs?bulkId=``) by giving every bulk an
id that depends only on the task instance (dag, task, run, map index) and on the bulk's number, never
on the try or the clock.  The ids stay within Infobip's limits: ``bulkId`` at most 100 characters,
``messageId`` at most 200.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from pydantic.alias_generators import to_camel

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pydantic import ValidationError

BULK_ID_MAX = 100
#: Room kept for ``.b<number>`` at the end of a bulk id (up to a million bulks).
_BULK_SUFFIX_ROOM = len(".b1000000")
#: Longest dag id / task id kept as is when the whole id would not fit.
_PART_MAX = 32


def short_hash(text: str, length: int = 10) -> str:
    """Return the first ``length`` hex digits of the SHA-256 of ``text``."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def _shorten(text: str, max_len: int) -> str:
    """Return ``text`` unchanged when short enough, else its start plus a hash of the whole."""
    if len(text) <= max_len:
        return text
    return f"{text[: max_len - 9]}~{short_hash(text, 8)}"


def bulk_id_prefix(dag_id: str, task_id: str, run_id: str, map_index: int | None) -> str:
    """Return the part of the bulk ids shared by every bulk of one task instance.

    ``{dag_id}.{task_id}.{hash of run_id}.{map_index}``; the dag and task ids are shortened (with a
    hash, so they stay distinct) only when the bulk id would be longer than 100 characters.

    :param dag_id: the DAG id.
    :param task_id: the task id (with its task group prefix).
    :param run_id: the DAG run id; only a hash of it is kept.
    :param map_index: the map index of a mapped task, -1 (or None) for a task that is not mapped.
    """
    index = -1 if map_index is None else map_index
    prefix = f"{dag_id}.{task_id}.{short_hash(run_id)}.{index}"
    if len(prefix) + _BULK_SUFFIX_ROOM > BULK_ID_MAX:
        prefix = f"{_shorten(dag_id, _PART_MAX)}.{_shorten(task_id, _PART_MAX)}.{short_hash(run_id)}.{index}"
    return prefix


def custom_prefix(prefix: str) -> str:
    """Return a user-given bulk id prefix, shortened (with a hash) to leave room for the bulk number."""
    return _shorten(prefix, BULK_ID_MAX - _BULK_SUFFIX_ROOM)


def bulk_id(prefix: str, number: int) -> str:
    """Return the id of bulk ``number`` (1-based) of the task instance whose prefix is ``prefix``."""
    return f"{prefix}.b{number}"


def message_id(bulk: str, position: int) -> str:
    """Return the id of the destination at ``position`` (0-based, in the task's whole list).

    A bulk id (at most 100 characters), a dot and the position: always within Infobip's 200, so an id
    given after validation keeps the destination valid.
    """
    return f"{bulk}.{position}"


def split(count: int, size: int) -> list[range]:
    """Return the index ranges of consecutive chunks of at most ``size`` out of ``count`` items."""
    return [range(start, min(start + size, count)) for start in range(0, count, size)]


# -- readable validation errors ---------------------------------------------------------------------


def error_path(loc: Sequence[Any], prefix: str = "") -> str:
    """Turn a pydantic error location into Infobip's field path: ``destinations[3].to.phoneNumber``."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            name = part if part in ("imageURL", "buttonURL") else to_camel(str(part))
            path = f"{path}.{name}" if path else name
    return path


def error_lines(exc: ValidationError, prefix: str = "") -> list[str]:
    """Return one ``path: message`` line per error of ``exc`` (pydantic's "Value error, " dropped)."""
    lines = []
    for error in exc.errors():
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        path = error_path(error.get("loc", ()), prefix)
        lines.append(f"{path}: {message}" if path else message)
    return lines
