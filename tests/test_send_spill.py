"""A send holds a few bulks in memory, not its destinations: the plan is sorted on disk and read back.

These tests make the disk path run at tiny sizes (a few records per run, two runs merged at once)
and check what a user would notice: the same bulks and bodies as a plan kept in memory, duplicates
found wherever they are, in input order, files removed after the task, and retries that count and
skip by what earlier tries did.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import pytest
from test_send_exactly_once import (
    FLOW,
    FakeStore,
    assert_each_received_once,
    context,
    crash,
    make_operator,
    numbers,
)

from airflow_provider_omni.exceptions import OmniValidationError
from airflow_provider_omni.hooks.omni import OmniHook
from airflow_provider_omni.operators import _ids, _sorted_spill
from airflow_provider_omni.operators._member_index import MemberIndex
from airflow_provider_omni.operators._sorted_spill import SortedSpill

if TYPE_CHECKING:
    from pathlib import Path

    from airflow_provider_omni.operators._send_ledger import BulkRecord


@pytest.fixture
def scenario_key(omni_sandbox: Any, omni_connection: str) -> str:
    return OmniHook(omni_connection).create_scenario("spill", FLOW).key


@pytest.fixture
def tiny_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Runs of 7 records, blocks of 3, two runs merged at once, in a folder of the test's own."""
    monkeypatch.setattr(_sorted_spill, "RUN_SIZE", 7)
    monkeypatch.setattr(_sorted_spill, "BLOCK", 3)
    monkeypatch.setattr(_sorted_spill, "MAX_FAN_IN", 2)
    folder = tmp_path / "spill"
    folder.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(folder))
    return folder


def files_in(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


# -- the sorted spill and the record files ----------------------------------------------------------


def test_the_spill_gives_records_back_sorted_from_disk_as_often_as_asked(tiny_runs: Path) -> None:
    rng = random.Random(7)
    records = [(f"id-{rng.randrange(10**6):06d}", i, {"to": {"phoneNumber": str(i)}}) for i in range(500)]
    with SortedSpill() as spill:
        for record in records:
            spill.add(record)
        assert len(files_in(tiny_runs)) > 2  # it did go to disk, in many runs

        first, second = list(spill.sorted()), list(spill.sorted())

        assert first == sorted(records) == second
        assert len(files_in(tiny_runs)) == 2  # runs merged into longer ones leave no file behind
    assert files_in(tiny_runs) == []  # closed: nothing left behind


def test_a_small_spill_stays_in_memory(tiny_runs: Path) -> None:
    with SortedSpill(run_size=100) as spill:
        for i in (3, 1, 2):
            spill.add((i, "x"))
        assert list(spill.sorted()) == [(1, "x"), (2, "x"), (3, "x")]
        assert files_in(tiny_runs) == []


def test_a_record_file_keeps_order_in_memory_and_on_disk(tiny_runs: Path) -> None:
    with SortedSpill() as spill:
        small, large = spill.new_file(keep_in_memory=5), spill.new_file(keep_in_memory=5)
        small.extend((i,) for i in range(5))
        large.extend((i,) for i in range(50))
        small.finish(), large.finish()

        assert list(small) == [(i,) for i in range(5)] and len(small) == 5
        assert list(large) == list(large) == [(i,) for i in range(50)] and len(large) == 50
        assert len(files_in(tiny_runs)) == 1  # only the large one went to disk


# -- the member index -------------------------------------------------------------------------------


def test_the_member_index_knows_exactly_the_keys_it_was_given() -> None:
    taken = [_ids.member_key(f"m{i}") for i in range(3000)]
    others = [_ids.member_key(f"other{i}") for i in range(3000)]
    index = MemberIndex()
    index.add_packed(_ids.pack_keys(taken[:2000]))
    index.add_packed(_ids.pack_keys(taken[1500:]))  # overlaps: counted once
    index.add_packed("")

    assert len(index) == 3000
    assert all(key in index for key in taken)
    assert not any(key in index for key in others)
    assert b"short" not in index
    with pytest.raises(RuntimeError):
        index.add_raw(others[0])


# -- plans through the disk -------------------------------------------------------------------------


def bulks_of(op: Any, **ctx: Any) -> list[tuple[str, bytes]]:
    return [(bulk.bulk_id, bulk.request.body) for bulk in op.build_bulks(context(1, None, **ctx))]


def test_a_plan_through_the_disk_makes_the_same_bulks_as_one_in_memory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, scenario_key: str
) -> None:
    people: list[Any] = numbers(230)
    people[5] = {"to": {"phoneNumber": people[5], "emailAddress": "vip@example.com"}}
    people[17] = {"to": people[17], "messageId": "given-17"}
    in_memory = bulks_of(make_operator(scenario_key, people, batch_size=40))

    monkeypatch.setattr(_sorted_spill, "RUN_SIZE", 7)
    monkeypatch.setattr(_sorted_spill, "BLOCK", 3)
    monkeypatch.setattr(_sorted_spill, "MAX_FAN_IN", 2)
    random.Random(1).shuffle(people)
    through_disk = bulks_of(make_operator(scenario_key, people, batch_size=40))

    assert through_disk == in_memory
    assert len(in_memory) == 6


def test_duplicates_far_apart_are_found_and_listed_in_input_order(tiny_runs: Path, scenario_key: str) -> None:
    people: list[Any] = numbers(300)
    people[250] = "+" + people[3]  # the same number, written differently, far apart
    people[120] = {"to": people[9], "messageId": "mine"}  # a given id at a number already listed
    people[200] = {"to": "41790009999", "messageId": "mine"}  # the same given id twice
    people[40] = {"to": people[41], "messageId": "x"}
    people[41] = {"to": "41790008888", "messageId": _ids.message_id(_ids.short_hash("z"), "a")}
    op = make_operator(scenario_key, people)

    with pytest.raises(OmniValidationError) as err:
        op.execute(context(1, None))

    text = str(err.value)
    assert "(3 errors)" in text
    lines = [line.strip() for line in text.splitlines()[1:]]
    assert lines == [
        "destinations[120].to: +4179****009 is already destinations[9]; it would get the message twice",
        "destinations[200].messageId: 'mine' is already used by destinations[120]",
        "destinations[250].to: +4179****003 is already destinations[3]; it would get the message twice",
    ]
    assert files_in(tiny_runs) == []


def test_more_duplicates_than_listed_are_counted_and_the_first_in_the_input_shown(
    tiny_runs: Path, scenario_key: str
) -> None:
    people = numbers(40)
    people += list(reversed(people[:25]))  # 25 numbers twice

    with pytest.raises(OmniValidationError) as err:
        make_operator(scenario_key, people).execute(context(1, None))

    text = str(err.value)
    assert "(25 errors)" in text and "... and 15 more" in text
    assert "destinations[40].to: +4179****024 is already destinations[24]" in text
    assert "destinations[49].to" in text and "destinations[50].to" not in text


def test_a_destination_giving_its_own_derived_id_is_not_a_duplicate(scenario_key: str) -> None:
    people: list[Any] = numbers(3)
    plain = make_operator(scenario_key, people).build_bulks(context(1, None))[0].request.message_ids
    own_id = make_operator(scenario_key, people[2:]).build_bulks(context(1, None))[0].request.message_ids[0]
    people[2] = {"to": people[2], "messageId": own_id}

    given = make_operator(scenario_key, people).build_bulks(context(1, None))[0].request.message_ids

    assert sorted(given) == sorted(plain)


# -- sending through the disk -----------------------------------------------------------------------


def test_a_send_and_its_retries_through_the_disk_reach_everyone_once(
    omni_sandbox: Any, tiny_runs: Path, scenario_key: str
) -> None:
    people = numbers(90)
    store = FakeStore()
    first = make_operator(scenario_key, people, batch_size=10, max_in_flight=1)
    crash(first, 3, after_post=True)  # the worker dies right after the third POST

    with pytest.raises(SystemExit):
        first.execute(context(1, store))
    people.reverse()
    result = make_operator(scenario_key, people, batch_size=10).execute(context(2, store))

    assert_each_received_once(omni_sandbox, people)
    assert (result["total"], result["accepted"], result["rejected"], result["removed"]) == (90, 90, 0, 0)
    assert files_in(tiny_runs) == []


def test_records_keep_no_member_keys_in_memory_once_written(omni_sandbox: Any, scenario_key: str) -> None:
    store = FakeStore()
    op = make_operator(scenario_key, numbers(30), batch_size=10)
    seen: list[BulkRecord] = []
    original = op._record_answer

    def spy(run: Any, bulk: Any, record: BulkRecord, ledger: Any) -> None:
        original(run, bulk, record, ledger)
        seen.append(record)

    op._record_answer = spy  # type: ignore[method-assign]
    op.execute(context(1, store))

    assert len(seen) == 3 and all(r.released and r.members == "" for r in seen)
    stored = [v for k, v in store.data.items() if k.count(":") == 2]
    assert all(len(_ids.unpack_members(v["members"])) == 10 for v in stored)  # the store has them all
    with pytest.raises(RuntimeError, match="released"):
        seen[0].as_state()


# -- the quick path of bare phone numbers --------------------------------------------------------------

PHONE_LIKE: list[Any] = [
    "41793026727",
    "+41793026727",
    "4179302672\n",
    "041793026727",
    "123456",
    "1234567890123456",
    "+",
    "",
    "4179 302 6727",
    "٤١٧٩٣٠٢٦٧٢٧",  # Arabic-Indic digits
    "41793026727 ",
    41793026727,
]


@pytest.mark.parametrize("item", PHONE_LIKE)
def test_the_quick_read_of_phone_numbers_has_the_models_rule(item: Any) -> None:
    from pydantic import ValidationError

    from airflow_provider_omni.models import bare_phone_numbers, validate_destinations

    try:
        expected = [validate_destinations([item])[0]["to"]["phoneNumber"]]
    except ValidationError:
        expected = None
    quick = bare_phone_numbers([item])
    assert bare_phone_numbers([{"to": {"phoneNumber": item}}]) == quick  # a CSV row reads the same

    assert quick == expected or (quick is None and expected is not None and not expected[0].isascii())


def test_a_bulk_of_phone_numbers_has_the_body_the_serializer_writes() -> None:
    import json

    from airflow_provider_omni.models import AdvancedBulk

    fields = {"scenarioKey": "K", "sms": {"text": 'Hi "you"\n'}, "notify": True}
    numbers_ = ["41793026727", "385912345678"]
    ids = _ids.phone_message_ids("abc", numbers_)
    quick = AdvancedBulk.build_for_phones(fields, "b.1", numbers_, ids)
    slow = AdvancedBulk.build(
        fields,
        "b.1",
        [{"to": {"phoneNumber": n}, "messageId": m} for n, m in zip(numbers_, ids, strict=True)],
    )

    assert json.loads(quick.body) == json.loads(slow.body)
    assert (quick.size, quick.message_ids) == (slow.size, slow.message_ids)
    assert ids == [_ids.message_id("abc", f"phone:{n}") for n in numbers_]


# -- the compact logs look-up ---------------------------------------------------------------------------


def test_the_compact_logs_look_up_tells_what_get_logs_tells(omni_sandbox: Any, scenario_key: str) -> None:
    from airflow_provider_omni.models import is_refused_at_send, status_name

    omni_sandbox.admin.configure(reject_duplicate_message_ids=True)
    people: list[Any] = numbers(6)
    people[3] = {"to": people[3], "messageId": "dup"}
    people[4] = {"to": people[4], "messageId": "dup-2"}
    make_operator(scenario_key, people[:5], batch_size=10).execute(context(1, None))
    make_operator(scenario_key, [{"to": people[5], "messageId": "dup"}], batch_size=10).execute(
        context(1, None, run_id="other")
    )
    hook = OmniHook("omni_default")
    omni_sandbox.admin.configure(time_scale=0)  # both reads see one moment: no status moves between them

    full = hook.get_logs(limit=1000)
    compact = hook.get_logged_messages(bulk_id=sorted({row.bulk_id for row in full if row.bulk_id}))

    def view(rows: Any, name: Any) -> list[tuple[Any, ...]]:
        return sorted(
            (r.message_id, r.bulk_id, r.to, name(r.status), is_refused_at_send(r.status)) for r in rows
        )

    assert view(compact, status_name) == view(full, status_name)
    assert any(is_refused_at_send(r.status) for r in compact)  # the second "dup" was refused at send


@pytest.mark.parametrize("answer", [b"<html>busy</html>", b"{}", b'{"results": [{"messageId": {"a": 1}}]}'])
def test_an_unreadable_logs_answer_is_an_error_not_an_empty_look_up(answer: bytes) -> None:
    from airflow_provider_omni.hooks._http import BadAnswer
    from airflow_provider_omni.hooks.omni import _logged_messages

    with pytest.raises(BadAnswer):
        _logged_messages(answer)
    assert _logged_messages(b'{"results": []}') == []


def test_the_disk_a_plan_uses_per_destination(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, scenario_key: str
) -> None:
    """What the README says of the temporary disk: about 130 bytes a destination while merging (the
    runs and the plan file), about 67 after, and nothing once the task is done."""
    folder = tmp_path / "spill"
    folder.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(folder))
    while_merging: list[int] = []
    drop_runs = SortedSpill.drop_runs

    def measured(spill: SortedSpill) -> None:
        while_merging.append(sum(path.stat().st_size for path in files_in(folder)))
        drop_runs(spill)

    monkeypatch.setattr(SortedSpill, "drop_runs", measured)
    n = 20_000
    op = make_operator(scenario_key, numbers(n))
    plan = op.plan(context(1, None))
    after = sum(path.stat().st_size for path in files_in(folder))
    plan.close()

    assert 100 <= while_merging[0] / n <= 160
    assert 50 <= after / n <= 80
    assert files_in(folder) == []
