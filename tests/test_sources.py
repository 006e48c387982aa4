"""Reading destinations from a file (``destinations_path``): CSV and JSON lines, gzip, object storage.

Every row comes with its line in the file; a row that cannot be read stops the reading with an error
naming its line; and memory does not grow with the number of rows.
"""

from __future__ import annotations

import gzip
import json
import tracemalloc
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_omni.exceptions import OmniValidationError
from airflow_provider_omni.operators._sources import DestinationFile, iter_rows, open_text
from airflow_provider_omni.version_compat import AIRFLOW_V_3_0_PLUS, object_storage_path

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def rows(path: Path | str, **kwargs: Any) -> list[tuple[int, Any]]:
    return list(iter_rows(DestinationFile(str(path), **kwargs)))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    data = text.encode()
    path.write_bytes(gzip.compress(data) if name.lower().endswith(".gz") else data)
    return path


def error_of(path: Path | str, **kwargs: Any) -> OmniValidationError:
    with pytest.raises(OmniValidationError) as caught:
        rows(path, **kwargs)
    return caught.value


def phone(number: str, **extra: str) -> str | dict[str, Any]:
    """A CSV row as read: the bare number, or a destination when the row has a message id."""
    return {"to": {"phoneNumber": number}, **extra} if extra else number


# -- CSV -----------------------------------------------------------------------------------------------


def test_csv_named_column(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "name,mobile,city\nAna,41793026727,Bern\nBo, 41793026728 ,Zug\n")

    assert rows(path, column="mobile") == [(2, phone("41793026727")), (3, phone("41793026728"))]


def test_csv_named_column_matches_any_case(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "Name,Mobile\nAna,41793026727\n")

    assert rows(path, column="mobile") == [(2, phone("41793026727"))]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("name,phoneNumber", "b"),
        ("name,phone_number", "b"),
        ("name,Phone", "b"),
        ("name,TO", "b"),
        ("name,msisdn", "b"),
        # the first known name of the list wins, wherever it is in the header
        ("to,phone", "b"),
        ("msisdn,to", "b"),
    ],
)
def test_csv_default_column(tmp_path: Path, header: str, expected: str) -> None:
    path = write(tmp_path, "d.csv", f"{header}\na,b\n")

    assert rows(path) == [(2, phone(expected))]


@pytest.mark.parametrize("column", ["messageId", "message_id", "MessageID"])
def test_csv_message_id_column(tmp_path: Path, column: str) -> None:
    path = write(tmp_path, "d.csv", f"phone,{column}\n41793026727, m-1 \n41793026728,\n41793026729\n")

    assert rows(path) == [
        (2, phone("41793026727", messageId="m-1")),
        (3, phone("41793026728")),
        (4, phone("41793026729")),
    ]


def test_csv_blank_lines_are_skipped_but_counted(tmp_path: Path) -> None:
    text = "\nphone,name\n41793026727,a\n\n   \n,\n41793026728,b\r\n\r\n41793026729,c"
    path = write(tmp_path, "d.csv", text)

    assert rows(path) == [(3, phone("41793026727")), (7, phone("41793026728")), (9, phone("41793026729"))]


def test_csv_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes("phone,name\n41793026727,Zoë\n".encode("utf-8-sig"))

    assert rows(path) == [(2, phone("41793026727"))]


def test_csv_quoted_fields(tmp_path: Path) -> None:
    text = (
        'name,phone,note\n"Doe, Jane",41793026727,"a ""quoted"", note"\n'
        '"multi\nline",41793026728,x\nB,41793026729,y\n'
    )
    path = write(tmp_path, "d.csv", text)

    # a record spanning two lines is numbered by its first; the next one by its own
    assert rows(path) == [(2, phone("41793026727")), (3, phone("41793026728")), (5, phone("41793026729"))]


def test_csv_empty_phone_cell_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "name,phone\na,41793026727\nb,  \nc,41793026728\n")

    error = error_of(path)

    assert str(error) == "destinations_path line 3: column 'phone' is empty; nothing was sent"
    assert error.validation_errors == {"destinations_path": ["line 3: column 'phone' is empty"]}


def test_csv_short_row_has_an_empty_phone_cell(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "name,phone\na\n")

    assert "line 2: column 'phone' is empty" in str(error_of(path))


def test_csv_unknown_column_lists_the_header(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "name,mobile\na,41793026727\n")

    error = error_of(path, column="cell")

    assert "no column 'cell' in the header (line 1): 'name', 'mobile'" in str(error)
    assert list(error.validation_errors) == ["destinations_path"]


def test_csv_no_known_phone_column_lists_the_header(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "name,mobile\na,41793026727\n")

    message = str(error_of(path))

    assert "no phone number column in the header (line 1): 'name', 'mobile'" in message
    assert "phoneNumber, phone_number, phone, to, msisdn" in message


def test_csv_long_header_is_shortened(tmp_path: Path) -> None:
    header = ",".join(f"c{i}" for i in range(50))
    path = write(tmp_path, "d.csv", f"{header}\n")

    message = str(error_of(path))

    assert "'c19', ... (50 columns)" in message
    assert "'c20'" not in message


def test_csv_empty_file_or_header_only_has_no_rows(tmp_path: Path) -> None:
    assert rows(write(tmp_path, "empty.csv", "")) == []
    assert rows(write(tmp_path, "header.csv", "phone\n\n")) == []


def test_csv_field_too_large_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", f"phone,note\n41793026727,{'x' * 200_000}\n")

    assert "destinations_path line 2: cannot read the CSV row" in str(error_of(path))


def test_not_utf8_text(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"phone\n41793026727\n\xff\xfe\n")

    assert "destinations_path: not UTF-8 text" in str(error_of(path))


def test_gzip_file_not_named_gz_gets_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(gzip.compress(b"phone\n41793026727\n"))

    assert "a gzip-compressed file must end in .gz" in str(error_of(path))


# -- JSON lines ------------------------------------------------------------------------------------


def test_jsonl_strings_numbers_and_objects(tmp_path: Path) -> None:
    destination = {"to": {"phoneNumber": "41793026729"}, "messageId": "m-3"}
    lines = ['"41793026727"', "41793026728", "", "  ", json.dumps(destination), '" 41793026730 "']
    path = write(tmp_path, "d.jsonl", "\n".join(lines) + "\n")

    assert rows(path) == [
        (1, "41793026727"),
        (2, "41793026728"),
        (5, destination),
        (6, "41793026730"),
    ]


def test_jsonl_objects_are_returned_as_is(tmp_path: Path) -> None:
    destination = {"to": "41793026727", "placeholders": {"name": "Ana"}}
    path = write(tmp_path, "d.ndjson", json.dumps(destination) + "\r\n")

    assert rows(path) == [(1, destination)]


def test_jsonl_malformed_line_names_line_and_error(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", '"41793026727"\n\n{"to": "41793026728",}\n')

    error = error_of(path)

    assert str(error).startswith("destinations_path line 3: not valid JSON (")
    assert "column" in str(error)
    assert str(error).endswith("; nothing was sent")
    assert error.validation_errors["destinations_path"][0].startswith("line 3: not valid JSON")


@pytest.mark.parametrize(
    ("line", "kind"),
    [("[1, 2]", "an array"), ("true", "true or false"), ("null", "null")],
)
def test_jsonl_other_json_values_are_refused(tmp_path: Path, line: str, kind: str) -> None:
    path = write(tmp_path, "d.jsonl", f'"41793026727"\n{line}\n')

    assert f"destinations_path line 2: {kind} is not a destination" in str(error_of(path))


@pytest.mark.parametrize("line", ["4.1793026727e10", "41793026727.0"])
def test_jsonl_fractional_numbers_are_refused(tmp_path: Path, line: str) -> None:
    path = write(tmp_path, "d.jsonl", f"{line}\n")

    assert "destinations_path line 1: a number with a fraction or exponent" in str(error_of(path))


def test_jsonl_empty_string_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", '"41793026727"\n" "\n')

    assert "destinations_path line 2: the phone number is empty" in str(error_of(path))


# -- gzip and formats ------------------------------------------------------------------------------


def test_gzip_csv(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv.gz", "phone\n41793026727\n\n41793026728\n")

    assert rows(path) == [(2, phone("41793026727")), (4, phone("41793026728"))]


@pytest.mark.parametrize("name", ["d.jsonl.gz", "d.ndjson.gz", "D.JSONL.GZ"])
def test_gzip_jsonl(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, '"41793026727"\n{"to": {"phoneNumber": "41793026728"}}\n')

    assert rows(path) == [(1, "41793026727"), (2, {"to": {"phoneNumber": "41793026728"}})]


def test_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "d.csv.gz"
    path.write_bytes(gzip.compress(b"phone\n" + b"41793026727\n" * 10_000)[:-20])

    assert "destinations_path: not a readable gzip file" in str(error_of(path))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("d.csv", [(2, phone("41793026727"))]),
        ("d.CSV", [(2, phone("41793026727"))]),
        ("export.2026.csv", [(2, phone("41793026727"))]),
        ("d.jsonl", None),
        ("d.ndjson", None),
    ],
)
def test_format_from_suffix(tmp_path: Path, name: str, expected: Any) -> None:
    text = "phone\n41793026727\n" if expected else '"41793026727"\n'
    path = write(tmp_path, name, text)

    assert rows(path) == (expected or [(1, "41793026727")])


def test_explicit_format_wins_over_the_name(tmp_path: Path) -> None:
    csv_file = write(tmp_path, "d.txt", "phone\n41793026727\n")
    jsonl_file = write(tmp_path, "d.csv", '"41793026727"\n')
    gzipped = write(tmp_path, "d.gz", '"41793026727"\n')

    assert rows(csv_file, format="csv") == [(2, phone("41793026727"))]
    assert rows(jsonl_file, format="JSONL") == [(1, "41793026727")]
    assert rows(gzipped, format="ndjson") == [(1, "41793026727")]


def test_unknown_suffix(tmp_path: Path) -> None:
    path = write(tmp_path, "d.txt", "phone\n41793026727\n")

    message = str(error_of(path))

    assert "destinations_path: cannot tell the format of 'd.txt' from its name" in message
    assert "format='csv'" in message


def test_unknown_explicit_format(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "phone\n41793026727\n")

    assert "format must be 'csv' or 'jsonl', got 'xml'" in str(error_of(path, format="xml"))


def test_missing_file_before_anything_else(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"

    error = error_of(missing, format="xml")

    assert str(error) == f"destinations_path: no such file: {missing}; nothing was sent"
    assert error.validation_errors == {"destinations_path": [f"no such file: {missing}"]}


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    folder = tmp_path / "d.csv"
    folder.mkdir()

    assert "destinations_path: not a file:" in str(error_of(folder))


def test_open_text_reads_text_and_closes(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv.gz", "phone\n41793026727\n")

    with open_text(DestinationFile(str(path))) as handle:
        assert handle.read() == "phone\n41793026727\n"

    assert handle.closed


def test_stopping_early_closes_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "phone\n41793026727\n41793026728\n")
    reading = iter_rows(DestinationFile(str(path)))

    assert next(reading) == (2, phone("41793026727"))
    reading.close()  # the operator stops at its first error: the file is closed, not leaked


# -- object storage ----------------------------------------------------------------------------------


@pytest.fixture
def memory_store() -> Iterator[Any]:
    """fsspec's memory filesystem attached to Airflow's object storage as ``memory://``.

    Airflow registers ``file://`` and the installed providers' schemes only: another fsspec filesystem
    is used through ``attach`` (on 2.11 ``airflow.io.store.attach``, from 3.0 ``airflow.sdk.io.attach``).
    """
    from fsspec.implementations.memory import MemoryFileSystem

    if AIRFLOW_V_3_0_PLUS:
        from airflow.sdk.io import store
    else:
        from airflow.io import store  # type: ignore[no-redef]

    filesystem = MemoryFileSystem()
    store.attach("memory", fs=filesystem)
    folder = f"/omni-{uuid.uuid4().hex}"
    yield filesystem, folder
    if filesystem.exists(folder):
        filesystem.rm(folder, recursive=True)
    store._STORE_CACHE.pop("memory", None)


def test_object_storage_path_class() -> None:
    path = object_storage_path("file:///tmp/d.csv", None)

    module = "airflow.sdk.io.path" if AIRFLOW_V_3_0_PLUS else "airflow.io.path"
    assert type(path).__module__ == module
    assert type(path).__name__ == "ObjectStoragePath"


def test_memory_url(memory_store: Any) -> None:
    filesystem, folder = memory_store
    filesystem.pipe(f"{folder}/d.csv", b"phone,messageId\n41793026727,m-1\n41793026728,\n")

    assert rows(f"memory://{folder}/d.csv") == [
        (2, phone("41793026727", messageId="m-1")),
        (3, phone("41793026728")),
    ]


def test_memory_url_gzip_jsonl(memory_store: Any) -> None:
    filesystem, folder = memory_store
    filesystem.pipe(f"{folder}/d.jsonl.gz", gzip.compress(b'"41793026727"\n\n41793026728\n'))

    assert rows(f"memory://{folder}/d.jsonl.gz") == [(1, "41793026727"), (3, "41793026728")]


def test_memory_url_missing_file(memory_store: Any) -> None:
    _, folder = memory_store
    url = f"memory://{folder}/nope.txt"

    assert str(error_of(url)) == f"destinations_path: no such file: {url}; nothing was sent"


def test_memory_url_directory_is_not_a_file(memory_store: Any) -> None:
    filesystem, folder = memory_store
    filesystem.pipe(f"{folder}/sub/d.csv", b"phone\n")

    assert "destinations_path: not a file:" in str(error_of(f"memory://{folder}/sub"))


def test_file_url(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "phone\n41793026727\n")

    assert rows(path.as_uri()) == [(2, phone("41793026727"))]


def test_file_url_missing_file(tmp_path: Path) -> None:
    url = (tmp_path / "nope.csv").as_uri()

    assert str(error_of(url)) == f"destinations_path: no such file: {url}; nothing was sent"


# -- memory ------------------------------------------------------------------------------------------


def write_big(path: Path, rows: int) -> None:
    """Write ``rows`` destinations, one line at a time (the test's own memory stays small too)."""
    opener: Any = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8", newline="") as out:
        if ".csv" in path.name:
            out.write("name,phone,messageId\n")
        for number in range(rows):
            if ".csv" in path.name:
                out.write(f"customer {number},4179{number:07d},m-{number}\n")
            else:
                out.write(f'{{"to": {{"phoneNumber": "4179{number:07d}"}}, "messageId": "m-{number}"}}\n')


@pytest.mark.parametrize("name", ["big.csv", "big.csv.gz", "big.jsonl"])
def test_memory_stays_constant(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    write_big(path, 200_000)

    count = 0
    tracemalloc.start()
    try:
        for _ in iter_rows(DestinationFile(str(path))):
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert count == 200_000
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes while reading 200,000 rows"
