"""Records kept on disk in blocks, and an external sort of them: a send's memory does not grow with it.

A send of a million destinations must validate every one before the first request, refuse
duplicates across the whole input, and send in message-id order, while holding only a few bulks in
memory.  :class:`SortedSpill` takes records (tuples) in any order and gives them back sorted: up to
``run_size`` records are sorted in memory, more are written as sorted runs to a private temporary
folder and merged when read (at most :data:`MAX_FAN_IN` runs at once).  :class:`RecordFile` is one
such sequence of records, in memory while small, else in a file read back in blocks.

Records are written with :mod:`marshal` (fast, C-level, for the str / int / bytes / dict / tuple
values of a plan), in blocks, each after its length; the files live only as long as the task's try
and are removed by :meth:`close`.
"""

from __future__ import annotations

import heapq
import marshal
import os
import shutil
import tempfile
from itertools import islice
from typing import IO, TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

#: Records sorted in memory before a run goes to disk (about 1 MB of plan records).
RUN_SIZE = 4096
#: Records per block written or read at once.
BLOCK = 128
#: Runs merged at once; more are first merged into longer runs (open files stay few).
MAX_FAN_IN = 64

Record = tuple[Any, ...]
_T = TypeVar("_T")


class _Folder:
    """A private temporary folder, made when the first file is needed and removed by :meth:`close`."""

    def __init__(self) -> None:
        self._path: str | None = None
        self._count = 0

    def new_file(self) -> str:
        if self._path is None:
            self._path = tempfile.mkdtemp(prefix="omni-send-")
        self._count += 1
        return f"{self._path}/{self._count}.bin"

    def close(self) -> None:
        if self._path is not None:
            shutil.rmtree(self._path, ignore_errors=True)
            self._path = None


class RecordFile:
    """Records appended in order and read back in that order, as often as wanted.

    Up to ``keep_in_memory`` records stay in a list; past that they go to a file in blocks.

    :param folder: where its file goes (shared with the spill it belongs to).
    :param keep_in_memory: records kept as a list before the first block is written.
    """

    def __init__(self, folder: _Folder, keep_in_memory: int = 0) -> None:
        self._folder = folder
        self._keep = keep_in_memory
        self._block: list[Record] = []
        self._path: str | None = None
        self._out: IO[bytes] | None = None
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def append(self, record: Record) -> None:
        """Add ``record`` at the end."""
        self._block.append(record)
        self._count += 1
        if len(self._block) >= BLOCK and (self._path is not None or len(self._block) > self._keep):
            self._write_block()

    def extend(self, records: Iterable[Record]) -> None:
        """Add every record of ``records`` at the end (a block at a time, as :meth:`append` would)."""
        for block in chunks(records, BLOCK):
            self._block += block
            self._count += len(block)
            if len(self._block) >= BLOCK and (self._path is not None or len(self._block) > self._keep):
                self._write_block()

    def finish(self) -> RecordFile:
        """Write what is still buffered (when the records already went to a file); return self."""
        if self._out is not None:
            if self._block:
                self._write_block()
            self._out.close()
            self._out = None
        return self

    def __iter__(self) -> Iterator[Record]:
        if self._path is None:
            return iter(self._block)
        self.finish()
        return self._read(self._path)

    def remove(self) -> None:
        """Forget the records and remove the file."""
        self.finish()
        self._block = []
        self._count = 0
        if self._path is not None:
            os.remove(self._path)
            self._path = None

    def _write_block(self) -> None:
        if self._out is None:
            self._path = self._folder.new_file()
            self._out = open(self._path, "wb")  # noqa: SIM115 - closed by finish()
        for start in range(0, len(self._block), BLOCK):  # what was kept in memory goes in blocks too
            data = marshal.dumps(self._block[start : start + BLOCK])
            self._out.write(len(data).to_bytes(4, "little") + data)
        self._block = []

    @staticmethod
    def _read(path: str) -> Iterator[Record]:
        # whole blocks through marshal.loads: marshal.load on a file reads it in tiny pieces
        with open(path, "rb") as fh:
            while size := fh.read(4):
                yield from marshal.loads(fh.read(int.from_bytes(size, "little")))


class SortedSpill:
    """Records added in any order, read back sorted (tuples compare field by field).

    :param run_size: records sorted in memory at once (default :data:`RUN_SIZE`); a spill never
        holds more in memory than that (plus the last :meth:`add_many`'s records), plus one block per
        run while merging.
    """

    def __init__(self, run_size: int | None = None) -> None:
        self.run_size = run_size or RUN_SIZE
        self._folder = _Folder()
        self._buffer: list[Record] = []
        self._runs: list[RecordFile] = []
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __enter__(self) -> SortedSpill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, record: Record) -> None:
        """Add one record."""
        self._buffer.append(record)
        self._count += 1
        if len(self._buffer) >= self.run_size:
            self._spill()

    def add_many(self, records: Iterable[Record]) -> None:
        """Add every record of ``records`` (the buffer may pass ``run_size`` by as many before a run
        goes to disk)."""
        count = len(self._buffer)
        self._buffer += records
        self._count += len(self._buffer) - count
        if len(self._buffer) >= self.run_size:
            self._spill()

    def sorted(self) -> Iterator[Record]:
        """Every record, in sorted order (reads the runs again on each call)."""
        if not self._runs:
            return iter(sorted(self._buffer))
        if self._buffer:
            self._spill()
        while len(self._runs) > MAX_FAN_IN:
            first, rest = self._runs[:MAX_FAN_IN], self._runs[MAX_FAN_IN:]
            merged = self.new_file()
            merged.extend(heapq.merge(*first))
            for run in first:  # merged into one: their disk is given back at once
                run.remove()
            self._runs = [*rest, merged.finish()]
        return heapq.merge(*self._runs)

    def new_file(self, keep_in_memory: int = 0) -> RecordFile:
        """A :class:`RecordFile` in this spill's folder (removed with it)."""
        return RecordFile(self._folder, keep_in_memory)

    def drop_runs(self) -> None:
        """Remove the sorted runs (once the records were read from them for good)."""
        for run in self._runs:
            run.remove()
        self._runs = []
        self._buffer = []

    def close(self) -> None:
        """Remove every file of the spill (and of the record files made by :meth:`new_file`)."""
        self._buffer = []
        self._runs = []
        self._folder.close()

    def _spill(self) -> None:
        self._buffer.sort()
        run = self.new_file()
        run.extend(self._buffer)
        self._runs.append(run.finish())
        self._buffer = []


def chunks(records: Iterable[_T], size: int) -> Iterator[list[_T]]:
    """Cut ``records`` into lists of at most ``size``."""
    iterator = iter(records)
    while chunk := list(islice(iterator, size)):
        yield chunk
