"""The delivery sensor's tracker at scale: its memory and stored state at 10,000 .. 1,000,000 destinations.

Each N and each variant (the tracker, the naive baseline) runs in a fresh interpreter
(``python -m bench.tracker --child tracker|naive N``), under :mod:`tracemalloc` started after the imports
and a warm-up.  A fresh process, because what one size leaves behind (pydantic's validators built on
first use, free lists, the arenas of a million freed strings) would otherwise be counted in, or hidden
from, the next; tracemalloc, because it counts the Python objects allocated after it starts (the
tracker's), not the interpreter and Airflow imported before.

The reports are fed as the sensor feeds them: ``DeliveryReports.model_validate`` of one answer of
``GET /omni/1/reports`` (the reports of one bulk), then ``DeliveryTracker.ingest_many``; each batch is
dropped before the next, so what stays allocated is the tracker's.

Run ``python -m bench.tracker`` (10,000, 100,000, 1,000,000) or ``python -m bench.tracker --sizes 2000``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import resource
import subprocess
import sys
import time
import tracemalloc
from typing import TYPE_CHECKING, Any

from bench.common import PYTHON, REPO, RESULT_MARK, BenchError, cleanup_workdir, subprocess_env
from bench.report import Section, Table, Target, fmt_bytes, fmt_ratio, fmt_s
from bench.worker_tasks import rss_bytes

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

#: Destinations per bulk (the send operator's default and Infobip's maximum).
BULK = 1000
#: The sizes of a full run.
SIZES = (10_000, 100_000, 1_000_000)
#: The stages at which the tracker is measured.
STAGES = ("all unfinished", "half final", "all but 1 per bulk final", "all final")
#: The stage of the brief's worst case (every bulk unfinished, half of it final), and the true worst
#: case (every bulk one destination short of finished: the most keys held).
HALF, WORST = STAGES[1], STAGES[2]
#: Send time of the made-up send (epoch seconds).
SENT_AT = 1_767_268_800.0

_SCENARIO_KEY = "BENCHTRACKERKEY0"


# -- the made-up send and its reports (what the operator returns and the hook parses) ------------------


def _send_key() -> str:
    from airflow_provider_omni.operators import _ids

    return _ids.short_hash("bench-tracker", _ids.SEND_KEY_LENGTH)


def _bulk_sizes(n: int) -> list[int]:
    return [min(BULK, n - start) for start in range(0, n, BULK)]


def _members(bulk: int, size: int) -> list[tuple[str, str]]:
    """Return ``(to, message id)`` of the destinations of bulk number ``bulk`` (made again on demand)."""
    from airflow_provider_omni.operators import _ids

    key = _send_key()
    first = bulk * BULK
    out = []
    for i in range(first, first + size):
        to = f"4179{i:07d}"
        out.append((to, _ids.message_id(key, f"phone:{to}")))
    return out


def send_result(n: int) -> dict[str, Any]:
    """Return the send operator's XCom for ``n`` destinations in bulks of :data:`BULK`, all accepted.

    Built by :func:`~airflow_provider_omni.operators.send.build_send_result` from one accepted bulk
    record per bulk, with bulk ids made as the operator makes them (a hash of the members).
    """
    from airflow_provider_omni.operators import _ids
    from airflow_provider_omni.operators._send_ledger import ACCEPTED, BulkRecord
    from airflow_provider_omni.operators.send import Tally, build_send_result

    key = _send_key()
    label = _ids.label("bench_tracker", "send")
    records = []
    for number, size in enumerate(_bulk_sizes(n)):
        ids = [mid for _, mid in _members(number, size)]
        bulk_id = _ids.bulk_id(label, key, ids)
        records.append(BulkRecord(number + 1, bulk_id, ACCEPTED, SENT_AT, "", size, size, 0))
    return build_send_result(
        scenario_key=_SCENARIO_KEY,
        records=records,
        counts=Tally(n, n, 0, 0),
        message_ids=None,
        namespace="bench",
        send_key=key,
        sent_at=SENT_AT,
    )


def _report(bulk_id: str, to: str, message_id: str, channel: str, status: dict[str, Any], error: Any) -> dict:
    """One report as the sandbox and Infobip send it, without ``sentAt``/``doneAt``: the tracker never
    reads them, and parsing them (pendulum) was 60% of the feeding time."""
    from airflow_provider_omni.sandbox.catalog import CURRENCY

    return {
        "bulkId": bulk_id,
        "messageId": message_id,
        "to": to,
        "messageCount": 1,
        "mccMnc": "22801",
        "price": {"pricePerMessage": 0.01, "currency": CURRENCY},
        "status": status,
        "error": error,
        "channel": channel,
    }


def reports_of(bulk_id: str, members: Sequence[tuple[str, str]], first: int) -> list[dict[str, Any]]:
    """Return the report dicts (as ``GET /omni/1/reports`` answers) that make ``members`` final.

    The outcome of destination number ``i``: 1 in 50 fails on SMS after Viber failed, 1 in 5 is delivered
    by SMS after Viber failed, the others are delivered on Viber.  A destination that goes to SMS gets a
    Viber step report first (UNDELIVERABLE on a step that is not the last: not final, it counts for
    nothing), as Infobip sends one report per step.
    """
    from airflow_provider_omni.sandbox import catalog as c

    out = []
    for offset, (to, mid) in enumerate(members):
        i = first + offset
        if i % 50 == 0 or i % 5 == 1:
            out.append(_report(bulk_id, to, mid, "VIBER", c.UNDELIVERABLE_NOT_DELIVERED, c.EC_UNKNOWN_USER))
            if i % 50 == 0:
                out.append(
                    _report(bulk_id, to, mid, "SMS", c.UNDELIVERABLE_NOT_DELIVERED, c.EC_ABSENT_SUBSCRIBER)
                )
            else:
                out.append(_report(bulk_id, to, mid, "SMS", c.DELIVERED_TO_HANDSET, c.NO_ERROR))
        else:
            out.append(_report(bulk_id, to, mid, "VIBER", c.DELIVERED_TO_HANDSET, c.NO_ERROR))
    return out


def _batches(xcom: dict[str, Any], stage: int) -> Iterator[Any]:
    """Yield one parsed answer of ``GET /omni/1/reports`` per bulk: the reports of ``stage``.

    Stage 1 makes the first half of every bulk final, stage 2 all but the last destination of every
    bulk (every bulk is still unfinished: the most keys held), stage 3 the last one.
    """
    from airflow_provider_omni.models import DeliveryReports

    for number, bulk in enumerate(xcom["bulks"]):
        members = _members(number, int(bulk["accepted"]))
        cuts = (0, len(members) // 2, len(members) - 1, len(members))
        start, end = cuts[stage - 1], cuts[stage]
        first = number * BULK + start
        results = reports_of(bulk["bulk_id"], members[start:end], first)
        yield DeliveryReports.model_validate({"results": results})


# -- what the sensor and the trigger store ---------------------------------------------------------


class _Store:
    """A task state store in memory that keeps JSON text, as Airflow's table does (a Text column)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, key: str, default: Any = None) -> Any:
        text = self.values.get(key)
        return default if text is None else json.loads(text)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = json.dumps(value)


def _stored_sizes(sensor: Any, tracker: Any) -> dict[str, Any]:
    """Measure what the sensor stores (its own ``_save_tracker``), the trigger kwargs it defers with
    (its own ``_defer``), the full ``to_state`` and the summary (the XCom)."""
    from airflow_provider_omni.sensors.delivery_report import STATE_KEY

    t0 = time.perf_counter()
    state_json = json.dumps(tracker.to_state())
    to_state_wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    restored = _restore(state_json)
    from_state_wall = time.perf_counter() - t0
    if restored.counts() != tracker.counts():
        raise BenchError("the tracker restored from its state counts differently")
    del restored
    store = _Store()
    context = {"task_state_store": store}
    t0 = time.perf_counter()
    sensor._save_tracker(context, tracker)
    save_wall = time.perf_counter() - t0
    header = len(store.values[STATE_KEY].encode())
    stored = sum(len(v.encode()) for v in store.values.values())
    trigger = None
    try:
        sensor._defer(context, tracker)
    except BaseException as deferred:  # TaskDeferred (a BaseException) carries the trigger
        trigger = getattr(deferred, "trigger", None)
        if trigger is None:
            raise
    if trigger is None:
        raise BenchError("the sensor did not defer")
    kwargs = trigger.serialize()[1]
    return {
        "state_bytes": len(state_json.encode()),
        "stored_bytes": stored,
        "stored_header_bytes": header,
        "stored_keys": len(store.values),
        "trigger_kwargs_bytes": len(json.dumps(kwargs).encode()),
        "summary_bytes": len(json.dumps(tracker.summary()).encode()),
        "to_state_wall": to_state_wall,
        "from_state_wall": from_state_wall,
        "save_wall": save_wall,
    }


def _restore(state_json: str) -> Any:
    from airflow_provider_omni.outcome import DeliveryTracker

    return DeliveryTracker.from_state(json.loads(state_json))


def _final_sets_bytes(tracker: Any) -> tuple[int, int]:
    """Return the bytes of the per-bulk keys of final destinations (their sorted arrays), and how many
    keys they hold."""
    total = keys = 0
    for bucket in tracker._buckets.values():
        total += sys.getsizeof(bucket.final._keys)
        keys += len(bucket.final)
    return total, keys


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def _warm_up(sensor: Any = None) -> None:
    """Import what is imported on first use and build the validators and caches once (the sensor's
    process has them from its first poke), so that none of it is counted as the tracker's.

    :param sensor: also save and defer once with this sensor (imports the trigger and its base).
    """
    from airflow_provider_omni.outcome import DeliveryTracker

    xcom = send_result(10)
    tracker = DeliveryTracker.from_send_result(xcom, flow=("VIBER", "SMS"))
    for stage in range(len(STAGES)):
        if stage:
            for batch in _batches(xcom, stage):
                tracker.ingest_many(batch.results)
        _restore(json.dumps(tracker.to_state())).summary()
        if sensor is not None:
            _stored_sizes(sensor, tracker)


def _feed(stage: int, xcom: dict[str, Any], take: Callable[[Any], object]) -> tuple[int, float]:
    t0 = time.perf_counter()
    count = 0
    for batch in _batches(xcom, stage):
        take(batch.results)
        count += len(batch.results)
        del batch
    return count, time.perf_counter() - t0


def child_tracker(n: int) -> Iterator[dict[str, Any]]:
    """Measure the tracker of a send of ``n`` destinations at each stage (run in a fresh process).

    Yields a header, one record per stage, then the process's peak RSS growth; each record is handed
    out (and dropped) before the next measurement, so the records are not counted in.
    """
    from airflow_provider_omni.outcome import DeliveryTracker
    from airflow_provider_omni.sensors.delivery_report import OmniDeliveryReportSensor

    xcom = send_result(n)
    sensor = OmniDeliveryReportSensor(
        task_id="wait", send_result=xcom, flow=["VIBER", "SMS"], deferrable=True, poke_interval=30
    )
    sensor._target_fingerprint()
    sensor._deadline = time.time() + 3600
    _warm_up(sensor)
    yield {"n": n, "bulks": len(xcom["bulks"]), "xcom_bytes": len(json.dumps(xcom).encode())}
    rss0 = rss_bytes()
    gc.collect()
    tracemalloc.start()
    base = _traced()

    t0 = time.perf_counter()
    tracker = DeliveryTracker.from_send_result(xcom, flow=("VIBER", "SMS"))
    wall = time.perf_counter() - t0
    reports = 0
    for stage, name in enumerate(STAGES):
        if stage:
            tracemalloc.reset_peak()
            fed, wall = _feed(stage, xcom, tracker.ingest_many)
            reports += fed
        current, peak = _traced() - base, tracemalloc.get_traced_memory()[1] - base
        final_bytes, final_keys = _final_sets_bytes(tracker)
        row = {
            "stage": name,
            "reports": reports,
            "tracker_bytes": current,
            "peak_bytes": peak,
            "feed_wall": wall,
            "final_set_bytes": final_bytes,
            "final_keys": final_keys,
            "unfinished_bulks": len(tracker.unfinished()),
            "outcomes": tracker.counts(),
        }
        before = _traced()
        restored = _restore(json.dumps(tracker.to_state()))
        row["restored_bytes"] = _traced() - before
        del restored
        row.update(_stored_sizes(sensor, tracker))
        yield row
        del row
    before = _traced()
    batch = next(_batches(xcom, 1))
    batch_bytes = tracemalloc.get_traced_memory()[0] - before
    del batch
    tracemalloc.stop()
    yield {
        "rss_growth": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0,
        "batch_bytes": batch_bytes,
    }


def child_naive(n: int) -> Iterator[dict[str, Any]]:
    """The baseline: a dict ``message id -> status name`` of the same reports (run in a fresh process).

    The status names are interned (one string for all), so the dict holds only what it must: one entry
    and one message id string per destination.  Yields one record per stage.
    """
    _warm_up()
    xcom = send_result(n)
    gc.collect()
    tracemalloc.start()
    base = _traced()
    naive: dict[str, str] = {}

    def take(reports: Sequence[Any]) -> None:
        for report in reports:
            naive[report.message_id] = sys.intern(report.status.name)

    for stage, name in enumerate(STAGES):
        wall = 0.0
        if stage:
            _, wall = _feed(stage, xcom, take)
        yield {"stage": name, "naive_bytes": _traced() - base, "entries": len(naive), "wall": wall}
    tracemalloc.stop()


# -- the parent: fresh processes, table, targets -----------------------------------------------------


def _run_child(kind: str, n: int, timeout: float) -> list[dict[str, Any]]:
    """Run ``python -m bench.tracker --child KIND N`` in a fresh interpreter; return its records."""
    cmd = [PYTHON, "-m", "bench.tracker", "--child", kind, str(n)]
    proc = subprocess.run(
        cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    records = [
        json.loads(line[len(RESULT_MARK) :])
        for line in proc.stdout.splitlines()
        if line.startswith(RESULT_MARK)
    ]
    if proc.returncode != 0 or not records:
        tail = "\n".join((proc.stderr or proc.stdout).splitlines()[-25:])
        raise BenchError(f"bench.tracker --child {kind} {n} failed (rc={proc.returncode}):\n{tail}")
    return records


def measure(n_values: Sequence[int], *, timeout: float = 1800) -> list[dict[str, Any]]:
    """Measure the tracker and the naive baseline for each N, each in a fresh process, one after the other.

    :return: one row per N and stage: ``n``, ``bulks``, ``stage``, ``reports``, ``tracker_bytes``,
        ``peak_bytes``, ``restored_bytes``, ``final_set_bytes``, ``final_keys``, ``state_bytes``,
        ``stored_bytes``, ``stored_keys``, ``trigger_kwargs_bytes``, ``summary_bytes``, ``naive_bytes``,
        ``naive_entries``, the walls, ``xcom_bytes`` and ``rss_growth``.
    """
    rows = []
    for n in n_values:
        header, *stages, tail = _run_child("tracker", n, timeout)
        naive = _run_child("naive", n, timeout)
        for mine, base in zip(stages, naive, strict=True):
            rows.append(
                {
                    **header,
                    **tail,
                    **mine,
                    "naive_bytes": base["naive_bytes"],
                    "naive_entries": base["entries"],
                    "naive_wall": base["wall"],
                }
            )
    return rows


def table(rows: Sequence[dict[str, Any]]) -> Table:
    """Return the table of :func:`measure`'s rows."""
    out = Table(
        "The delivery sensor's tracker versus N and stage (tracemalloc; baseline: a dict message id -> "
        "status of the same reports)",
        [
            "N",
            "Bulks",
            "Stage",
            "Reports fed",
            "Tracker memory",
            "per bulk",
            "per destination",
            "Peak while feeding",
            "Naive dict",
            "Naive / tracker",
            "Stored state (sensor)",
            "Stored per bulk",
            "Trigger kwargs",
            "Summary (XCom)",
            "Feed wall (tracker / naive)",
            "to_state / from_state / sensor save (traced)",
        ],
    )
    for r in rows:
        tracker, naive = r["tracker_bytes"], r["naive_bytes"]
        out.add(
            f"{r['n']:,}",
            f"{r['bulks']:,}",
            r["stage"],
            f"{r['reports']:,}",
            fmt_bytes(tracker),
            fmt_bytes(tracker / r["bulks"]),
            f"{tracker / r['n']:,.1f} B",
            fmt_bytes(r["peak_bytes"]) if r["reports"] else "n/a",
            fmt_bytes(naive),
            fmt_ratio(naive / tracker) if tracker > 0 else "n/a",
            f"{fmt_bytes(r['stored_bytes'])} in {r['stored_keys']:,} key(s)",
            fmt_bytes(r["stored_bytes"] / r["bulks"]),
            fmt_bytes(r["trigger_kwargs_bytes"]),
            fmt_bytes(r["summary_bytes"]),
            f"{fmt_s(r['feed_wall'])} / {fmt_s(r['naive_wall'])}" if r["reports"] else "n/a",
            f"{fmt_s(r['to_state_wall'])} / {fmt_s(r['from_state_wall'])} / {fmt_s(r['save_wall'])}",
        )
    return out


def _at(rows: Sequence[dict[str, Any]], n: int, stage: str) -> dict[str, Any]:
    return next(r for r in rows if r["n"] == n and r["stage"] == stage)


def per_added_bulk(rows: Sequence[dict[str, Any]], stage: str, key: str) -> float:
    """Return what ``key`` grows by per added bulk at ``stage``, from the smallest N to the largest
    (the constant part, e.g. the 100 failed destinations kept in full, cancels out); with one N, per bulk.
    """
    sizes = sorted({r["n"] for r in rows})
    small, big = _at(rows, sizes[0], stage), _at(rows, sizes[-1], stage)
    if small is big:
        return float(big[key]) / big["bulks"]
    return float(big[key] - small[key]) / (big["bulks"] - small["bulks"])


def targets(rows: Sequence[dict[str, Any]]) -> list[Target]:
    """Return the targets: the tracker and its state grow with bulks, not people, once bulks finish;
    the worst case (every bulk unfinished) against the docstring's figure and the naive dict."""
    big = max(r["n"] for r in rows)
    done, worst = _at(rows, big, "all final"), _at(rows, big, WORST)
    memory = per_added_bulk(rows, "all final", "tracker_bytes")
    stored = per_added_bulk(rows, "all final", "stored_bytes")
    kwargs = per_added_bulk(rows, WORST, "trigger_kwargs_bytes")
    stored_worst = per_added_bulk(rows, WORST, "stored_bytes")
    return [
        Target(
            "Tracker memory once every bulk finished grows with bulks, not destinations (per added bulk "
            "of 1,000)",
            f"{memory:,.0f} B/bulk ({memory / BULK:.2f} B per destination); "
            f"{fmt_bytes(done['tracker_bytes'])} at N={big:,}",
            memory < 2048,
        ),
        Target(
            "Stored state (sensor) once every bulk finished grows with bulks (per added bulk)",
            f"{stored:,.0f} B/bulk; {fmt_bytes(done['stored_bytes'])} at N={big:,}",
            stored < 512,
        ),
        Target(
            "Trigger kwargs grow with bulks, not destinations (per added bulk)",
            f"{kwargs:,.0f} B/bulk; {fmt_bytes(worst['trigger_kwargs_bytes'])} at N={big:,}",
            kwargs < 512,
        ),
        Target(
            "Stored state in the worst case (every bulk 999 of 1,000 final): at most about 11 kB per "
            "unfinished bulk of 1,000 (DeliveryTracker's docstring; per added bulk)",
            f"{stored_worst:,.0f} B/bulk; {fmt_bytes(worst['stored_bytes'])} in "
            f"{worst['stored_keys']:,} keys at N={big:,}",
            stored_worst <= 11_000,
        ),
        Target(
            f"Tracker memory in the worst case at N={big:,} smaller than the naive dict",
            f"{fmt_bytes(worst['tracker_bytes'])} ({worst['tracker_bytes'] / worst['bulks'] / 1024:,.1f} "
            f"KiB/bulk, {worst['tracker_bytes'] / max(worst['final_keys'], 1):,.0f} B per final "
            f"destination) vs {fmt_bytes(worst['naive_bytes'])} "
            f"({fmt_ratio(worst['naive_bytes'] / worst['tracker_bytes'])})",
            worst["tracker_bytes"] < worst["naive_bytes"],
        ),
    ]


def notes(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Return the notes: where the memory of an unfinished bulk goes, and what else the figures hold."""
    out = []
    big = max(r["n"] for r in rows)
    for stage in (HALF, WORST):
        r = _at(rows, big, stage)
        per_key = r["final_set_bytes"] / max(r["final_keys"], 1)
        out.append(
            f"N={big:,}, {stage}: the {r['final_keys']:,} destination keys held in the per-bulk `final` "
            f"arrays take {fmt_bytes(r['final_set_bytes'])} (sys.getsizeof of the sorted arrays of "
            f"64-bit keys: {per_key:,.1f} B per key) of the tracker's "
            f"{fmt_bytes(r['tracker_bytes'])}; stored packed (8 bytes, base64), the same keys take "
            f"{fmt_bytes(r['stored_bytes'])}. A tracker restored from that state (reschedule mode: every "
            f"poke) takes {fmt_bytes(r['restored_bytes'])}."
        )
    done = _at(rows, big, "all final")
    out.append(
        f"Once every bulk finished, what stays beyond the bulks' counts is bounded: the 100 failed "
        f"destinations kept in full (`failed_cap`), the error counts and the prices; the summary (XCom) is "
        f"{fmt_bytes(done['summary_bytes'])} at N={big:,}."
    )
    out.append(
        f"The peak while feeding includes one parsed answer of the reports of half a bulk "
        f"({fmt_bytes(done['batch_bytes'])}). The peak RSS growth of the process at N={big:,}, "
        f"{fmt_bytes(done['rss_growth'])}, is not a figure of the sensor: it also holds a second tracker "
        "restored from the state while measuring, the JSON texts, the send XCom and tracemalloc's own "
        "bookkeeping (the walls, too, are under tracemalloc)."
    )
    return out


def run(quick: bool) -> Section:
    """Measure the tracker (N=2,000 when ``quick``) and return it as a benchmark section."""
    rows = measure([2_000] if quick else list(SIZES))
    section = Section(
        "tracker",
        "7. The delivery sensor's tracker at a million",
        method=[
            "For each N, a send XCom of N/1000 bulks (`build_send_result`, bulk ids as the operator makes "
            "them) builds the tracker (`DeliveryTracker.from_send_result`); it is then fed the reports of "
            "every bulk, one parsed `GET /omni/1/reports` answer (`DeliveryReports`) per bulk, dropped "
            "after `ingest_many`: first the first half of every bulk, then all but one destination of "
            "every bulk (the worst case: every bulk unfinished, holding one key per final destination), "
            "then the last one.",
            "Each N runs in a fresh interpreter under tracemalloc, started after the imports and a "
            "warm-up; memory is tracemalloc's current bytes after a `gc.collect()`, the input dropped. "
            "The peak while feeding includes one parsed answer of up to 1,000 reports.",
            "Stored state: what the sensor's own `_save_tracker` writes to a task state store (JSON "
            "text); trigger kwargs: the serialized trigger of the sensor's own `_defer`.",
            "Baseline, in a fresh process of its own: a dict message id -> status name of the same "
            "reports (status names interned).",
        ],
    )
    section.tables.append(table(rows))
    section.targets.extend(targets(rows))
    section.notes.extend(notes(rows))
    return section


def main(argv: list[str] | None = None) -> int:
    """``--child tracker|naive N``: one measurement (JSON on stdout); else measure and print Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "N"))
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES))
    parser.add_argument("--json", metavar="PATH", help="also write the rows to PATH (JSON)")
    args = parser.parse_args(argv)
    if args.child:
        kind, n = args.child[0], int(args.child[1])
        for record in {"tracker": child_tracker, "naive": child_naive}[kind](n):
            print(RESULT_MARK + json.dumps(record), flush=True)
        return 0
    try:
        rows = measure(args.sizes)
    finally:
        cleanup_workdir()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=1)
    print(table(rows).markdown())
    print()
    targets_table = Table("Targets", ["Target", "Measured", "Result"])
    for t in targets(rows):
        targets_table.add(t.name, t.measured, t.verdict)
    print(targets_table.markdown())
    print()
    print("\n".join(f"- {note}" for note in notes(rows)))
    print(f"\nBulks of {BULK}: {[math.ceil(n / BULK) for n in args.sizes]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
