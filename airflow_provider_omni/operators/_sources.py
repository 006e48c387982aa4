"""Read a campaign's destinations from a file (CSV or JSON lines, gzip or not), one row at a time.

The send operator's ``destinations_path``: the file may be local or in any object storage Airflow's
``ObjectStoragePath`` reads.  Rows are streamed, so memory stays the same for a thousand rows or a
million; each comes with its line in the file, and a row that cannot be read stops the reading with
an :class:`~airflow_provider_omni.exceptions.OmniValidationError` naming that line.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import zlib
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

from airflow_provider_omni.exceptions import OmniValidationError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

#: The operator argument the errors are about.
ARGUMENT = "destinations_path"
#: CSV columns taken for the phone number when none is named, first present wins (any case).
PHONE_COLUMNS = ("phoneNumber", "phone_number", "phone", "to", "msisdn")
#: CSV columns that give a destination's own message id (any case).
MESSAGE_ID_COLUMNS = ("messageId", "message_id")
#: File name endings and the format they mean (each may be followed by ``.gz``).
SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
#: Formats that may be given explicitly, and the reader each means.
FORMATS = {"csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl"}
#: Header cells listed in full in an error before "... (N columns)".
MAX_LISTED_COLUMNS = 20
_ENCODING = "utf-8-sig"
_JSON_KINDS = {list: "an array", bool: "true or false", type(None): "null"}


@dataclass(frozen=True)
class DestinationFile:
    """A file of destinations.

    :param path: a local path, a ``file://`` URL, or any URL Airflow's ``ObjectStoragePath`` reads
        (``s3://``, ``gs://``, ...).
    :param column: for CSV, the column with the phone number; by default the first of
        :data:`PHONE_COLUMNS` the header has (any case).
    :param format: ``"csv"`` or ``"jsonl"``; by default from the name (``.csv``, ``.jsonl``,
        ``.ndjson``, each optionally followed by ``.gz`` for a gzip-compressed file).
    :param conn_id: the Airflow connection of the object storage (``ObjectStoragePath``'s ``conn_id``).
    """

    path: str
    column: str | None = None
    format: str | None = None
    conn_id: str | None = None


def iter_rows(source: DestinationFile) -> Iterator[tuple[int, Any]]:
    """Yield each destination of the file with its line in the file (1-based).

    For CSV the header is line 1, so the first destination is line 2; blank lines are skipped but
    counted.  A CSV row becomes its phone number as text, or ``{"to": {"phoneNumber": ...},
    "messageId": ...}`` when the file has that column and the row a value; a JSON line is a phone
    number (a string or a whole number, given as text) or a destination object, returned as is.

    :raises OmniValidationError: the file does not exist, its format is unknown, or a row cannot be
        read (naming its line).
    """
    with open_text(source) as handle:
        lines = _lines(handle)
        if _format_of(source) == "csv":
            yield from _csv_rows(lines, source.column)
        else:
            yield from _jsonl_rows(lines)


@contextmanager
def open_text(source: DestinationFile) -> Iterator[TextIO]:
    """Open the file as UTF-8 text (a BOM is dropped), unzipping it as it is read when it ends in ``.gz``.

    A plain path is opened with :func:`open`; a URL (``scheme://...``) through ``ObjectStoragePath``.

    :raises OmniValidationError: there is no such file, or it is a directory.
    """
    with ExitStack() as stack:
        raw = _open_binary(source)
        stack.callback(raw.close)
        binary: IO[bytes] | gzip.GzipFile = raw
        if _is_gzip(source.path):
            binary = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))
        yield stack.enter_context(io.TextIOWrapper(binary, encoding=_ENCODING, newline=""))


# -- opening -----------------------------------------------------------------------------------------


def _open_binary(source: DestinationFile) -> IO[bytes]:
    if not _is_url(source.path):
        _check_local_file(source.path)
        return _missing_as_error(source.path, lambda: open(source.path, "rb"))
    from airflow_provider_omni.version_compat import object_storage_path

    path = object_storage_path(source.path, source.conn_id)
    if not path.exists():
        raise _error(f"no such file: {source.path}")
    if path.is_dir():
        raise _error(f"not a file: {source.path}")
    return _missing_as_error(source.path, lambda: path.open("rb"))


def _check_local_file(path: str) -> None:
    if not os.path.exists(path):
        raise _error(f"no such file: {path}")
    if os.path.isdir(path):
        raise _error(f"not a file: {path}")


def _missing_as_error(path: str, opener: Callable[[], IO[bytes]]) -> IO[bytes]:
    """Open the file; if it went away since it was looked up, say so as for a missing file."""
    try:
        return opener()
    except FileNotFoundError as err:
        raise _error(f"no such file: {path}") from err
    except IsADirectoryError as err:
        raise _error(f"not a file: {path}") from err


def _is_url(path: str) -> bool:
    return "://" in path


def _file_name(path: str) -> str:
    """The path's name in lower case, without a URL's query or fragment."""
    if _is_url(path):
        path = urlsplit(path).path
    return path.rstrip("/").rsplit("/", 1)[-1].lower()


def _is_gzip(path: str) -> bool:
    return _file_name(path).endswith(".gz")


def _format_of(source: DestinationFile) -> str:
    """``"csv"`` or ``"jsonl"``: the one given, else the one the file name ends in."""
    if source.format is not None:
        given = FORMATS.get(source.format.strip().lower())
        if given is None:
            raise _error(f"format must be 'csv' or 'jsonl', got {source.format!r}")
        return given
    name = _file_name(source.path)
    stem = name.removesuffix(".gz")
    found = SUFFIX_FORMATS.get(os.path.splitext(stem)[1])
    if found is None:
        raise _error(
            f"cannot tell the format of {name!r} from its name: give format='csv' or format='jsonl', "
            "or name the file .csv, .jsonl or .ndjson (optionally followed by .gz)"
        )
    return found


def _lines(handle: TextIO) -> Iterator[str]:
    """The file's lines; bytes that are not UTF-8, or a broken gzip stream, raise an error."""
    number = 0
    while True:
        try:
            line = handle.readline()
        except UnicodeDecodeError as err:
            hint = " (a gzip-compressed file must end in .gz)" if err.object[:2] == b"\x1f\x8b" else ""
            raise _error(f"not UTF-8 text after line {number}: {err.reason}{hint}") from err
        except (gzip.BadGzipFile, EOFError, zlib.error) as err:
            raise _error(f"not a readable gzip file after line {number}: {err}") from err
        if not line:
            return
        number += 1
        yield line


# -- CSV ---------------------------------------------------------------------------------------------


def _csv_rows(lines: Iterable[str], column: str | None) -> Iterator[tuple[int, str | dict[str, Any]]]:
    """Yield ``(line, destination)`` for each row under the header; nothing for an empty file."""
    reader = csv.reader(lines)
    header: list[str] | None = None
    phone = message_id = -1
    line = 0
    for cells in _csv_records(reader):
        start, line = line + 1, reader.line_num
        if _is_blank(cells):
            continue
        if header is None:
            header = [cell.strip() for cell in cells]
            phone = _phone_column(header, column, start)
            message_id = _first_column(header, MESSAGE_ID_COLUMNS)
            continue
        yield start, _csv_destination(cells, header, phone, message_id, start)


def _csv_records(reader: Any) -> Iterator[list[str]]:
    """The reader's records; one it cannot parse (e.g. a field over the size limit) names its line."""
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise _error(f"cannot read the CSV row ({err})", line=reader.line_num) from err
        yield cells


def _is_blank(cells: list[str]) -> bool:
    return not "".join(cells).strip()


def _phone_column(header: Sequence[str], column: str | None, line: int) -> int:
    """The index of the phone number column: the one named, else the first known name present."""
    if column is not None:
        index = _first_column(header, (column.strip(),))
        if index < 0:
            raise _error(f"no column {column!r} in the header (line {line}): {_listed(header)}")
        return index
    index = _first_column(header, PHONE_COLUMNS)
    if index < 0:
        raise _error(
            f"no phone number column in the header (line {line}): {_listed(header)}; "
            f"name it with column=..., or call it one of {', '.join(PHONE_COLUMNS)}"
        )
    return index


def _first_column(header: Sequence[str], names: Sequence[str]) -> int:
    """The index of the first of ``names`` in the header, exact case first, else any case; or -1."""
    folded = [cell.casefold() for cell in header]
    for name in names:
        if name in header:
            return header.index(name)
        if name.casefold() in folded:
            return folded.index(name.casefold())
    return -1


def _listed(header: Sequence[str]) -> str:
    shown = ", ".join(repr(cell) for cell in header[:MAX_LISTED_COLUMNS])
    return shown if len(header) <= MAX_LISTED_COLUMNS else f"{shown}, ... ({len(header)} columns)"


def _csv_destination(
    cells: Sequence[str], header: Sequence[str], phone: int, message_id: int, line: int
) -> str | dict[str, Any]:
    """The row's phone number, or a destination with it and the row's message id (no dict per row
    for the usual campaign file: numbers only)."""
    number = _cell(cells, phone)
    if not number:
        raise _error(f"column {header[phone]!r} is empty", line=line)
    if message_id >= 0 and (value := _cell(cells, message_id)):
        return {"to": {"phoneNumber": number}, "messageId": value}
    return number


def _cell(cells: Sequence[str], index: int) -> str:
    return cells[index].strip() if index < len(cells) else ""


# -- JSON lines --------------------------------------------------------------------------------------


def _jsonl_rows(lines: Iterable[str]) -> Iterator[tuple[int, Any]]:
    """Yield ``(line, destination)`` for each non-blank line."""
    for number, text in enumerate(lines, start=1):
        if text.strip():
            yield number, _json_destination(text, number)


def _json_destination(text: str, line: int) -> Any:
    """A phone number (as text) or a destination object, from one JSON line."""
    try:
        value = json.loads(text)
    except ValueError as err:
        reason = f"{err.msg}, column {err.colno}" if isinstance(err, json.JSONDecodeError) else str(err)
        raise _error(f"not valid JSON ({reason})", line=line) from err
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, str):
        raise _error("the phone number is empty", line=line)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        raise _error("a number with a fraction or exponent is not a phone number: write digits", line=line)
    kind = _JSON_KINDS.get(type(value), type(value).__name__)
    raise _error(f"{kind} is not a destination: give a phone number or a destination object", line=line)


# -- errors ------------------------------------------------------------------------------------------


def _error(problem: str, *, line: int | None = None) -> OmniValidationError:
    """``destinations_path[ line N]: <problem>; nothing was sent``, with the problem as the field's error."""
    detail = problem if line is None else f"line {line}: {problem}"
    title = f"{ARGUMENT}: {problem}" if line is None else f"{ARGUMENT} {detail}"
    return OmniValidationError(f"{title}; nothing was sent", validation_errors={ARGUMENT: [detail]})
