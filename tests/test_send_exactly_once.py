"""Exactly once by destination, against the OMNI sandbox: retries, reordered and changed lists,
namespaces, deliberate re-sends, ambiguous failures and lagging logs.

Two forms of "retry" are exercised, and each test says which:

* **simulated retry**: ``execute`` of a *new* operator instance (as a new worker process would have)
  with the same task instance identity (dag, task, run, map index), a higher ``try_number`` and the
  same task state store (a dict stand-in with the ``get``/``set`` of Airflow 3.3's
  ``context["task_state_store"]``), or no store at all (older Airflow: only the logs look-up helps);
* **real retry**: a DAG with ``retries=1, retry_delay=0`` run by ``dag.test()`` (``run_dag``), where
  Airflow itself runs try 2 in-process with its real task state store.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pendulum
import pytest

from airflow_provider_omni.exceptions import OmniError, OmniSendUncertainError, OmniValidationError
from airflow_provider_omni.hooks.omni import OmniHook
from airflow_provider_omni.models import is_refused_at_send
from airflow_provider_omni.operators.send import OmniSendAdvancedMessageOperator

FLOW = [{"channel": "VIBER", "from": "InfoSMS"}, {"channel": "SMS", "from": "InfoSMS"}]
TOTAL, BATCH = 50, 10  # 5 bulks


def numbers(count: int, start: int = 0) -> list[str]:
    return [f"4179{start + i:07d}" for i in range(count)]


class FakeTI:
    def __init__(self, try_number: int, run_id: str = "manual__retry") -> None:
        self.dag_id, self.task_id, self.run_id = "send_dag", "send", run_id
        self.map_index, self.try_number = -1, try_number


class FakeStore:
    """The ``get``/``set`` of Airflow 3.3's task state store, kept in a dict across "tries"."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any, *, retention: timedelta | None = None) -> None:
        assert value is not None
        self.data[key] = value


def context(try_number: int, store: FakeStore | None, run_id: str = "manual__retry") -> dict[str, Any]:
    ctx: dict[str, Any] = {"ti": FakeTI(try_number, run_id), "run_id": run_id}
    if store is not None:
        ctx["task_state_store"] = store
    return ctx


@pytest.fixture
def scenario_key(omni_sandbox: Any, omni_connection: str) -> str:
    return OmniHook(omni_connection).create_scenario("retry", FLOW).key


def make_operator(
    scenario_key: str, destinations: Any = None, **kwargs: Any
) -> OmniSendAdvancedMessageOperator:
    kwargs.setdefault("batch_size", BATCH)
    op = OmniSendAdvancedMessageOperator(
        task_id="send",
        scenario_key=scenario_key,
        destinations=numbers(TOTAL) if destinations is None else destinations,
        sms="Hi",
        **kwargs,
    )
    op.confirm_delays = (0.0, 0.0)
    return op


class CrashOnCall:
    """Wrap ``OmniHook.send_advanced_bulk``: on call ``n``, the worker dies before or after the POST.

    The death is a ``SystemExit`` (not an ``OmniError``): nothing the operator catches, as when a
    worker is killed.
    """

    def __init__(self, real: Any, n: int, after_post: bool) -> None:
        self.real, self.n, self.after_post, self.calls = real, n, after_post, 0
        self._lock = threading.Lock()

    def __call__(self, *args: Any) -> Any:
        with self._lock:  # bulks go out from several threads: each call keeps its own number
            self.calls += 1
            number = self.calls
        if number == self.n and not self.after_post:
            raise SystemExit("simulated: the worker died before this POST")
        response = self.real(*args)
        if number == self.n:
            raise SystemExit("simulated: the worker died right after this POST, before recording it")
        return response


def received(sandbox: Any) -> dict[str, int]:
    """Destination number -> how many times the sandbox accepted it (from its own records)."""
    counts: dict[str, int] = {}
    for request in sandbox.admin.requests():
        if request.get("endpoint") == "advanced":
            for destination in request["body"]["destinations"]:
                number = destination["to"]["phoneNumber"]
                counts[number] = counts.get(number, 0) + 1
    return counts


def assert_each_received_once(sandbox: Any, destinations: list[str]) -> None:
    counts = received(sandbox)
    twice = {n: c for n, c in counts.items() if c > 1}
    assert twice == {}, f"sent more than once: {twice}"
    assert sorted(counts) == sorted(destinations), "some destinations never got the message"
    assert sandbox.admin.stats()["duplicate_message_ids"] == {}


def crash(op: OmniSendAdvancedMessageOperator, n: int, after_post: bool) -> None:
    op.hook.send_advanced_bulk = CrashOnCall(op.hook.send_advanced_bulk, n, after_post)  # type: ignore[method-assign]


# -- item 1: identity is the destination, not its position -----------------------------------------


@pytest.mark.parametrize("with_store", [True, False], ids=["task-state-store", "logs-only"])
def test_a_reordered_list_on_retry_sends_each_destination_once(
    omni_sandbox: Any, scenario_key: str, with_store: bool
) -> None:
    """Seen: 20 numbers as a set, bulk 2 died on try 1, try 2 in a new process got them in another
    order: 5 people got the message twice, 5 never, and the XCom said 20 accepted."""
    people = numbers(20)
    store = FakeStore() if with_store else None
    first = make_operator(scenario_key, people, batch_size=5)
    crash(first, 2, after_post=True)
    with pytest.raises(SystemExit):
        first.execute(context(1, store))

    result = make_operator(scenario_key, people[::-1], batch_size=5).execute(context(2, store))

    assert_each_received_once(omni_sandbox, people)
    assert (result["total"], result["accepted"], result["removed"]) == (20, 20, 0)
    assert sum(b["accepted"] for b in result["bulks"]) == 20


def test_destinations_added_between_tries_are_sent_once_and_removed_ones_reported(
    omni_sandbox: Any, scenario_key: str
) -> None:
    """Simulated retry with changed data: try 1 sent 2 of 4 bulks; try 2's list drops 3 people who
    were sent and adds 4 new ones."""
    store = FakeStore()
    first_list = numbers(20)
    first = make_operator(scenario_key, first_list, batch_size=5, max_in_flight=1)  # bulks 1 and 2 out
    crash(first, 3, after_post=False)
    with pytest.raises(SystemExit):
        first.execute(context(1, store))
    sent_in_try_1 = set(received(omni_sandbox))
    assert len(sent_in_try_1) == 10
    dropped = sorted(sent_in_try_1)[:3]
    second_list = [n for n in first_list if n not in dropped] + numbers(4, start=500)

    # the bulk in flight when the worker died is in doubt until the horizon (0 here) has passed
    retry = make_operator(scenario_key, second_list, batch_size=5, uncertain_horizon=0)
    result = retry.execute(context(2, store))

    assert_each_received_once(omni_sandbox, sorted(set(first_list) | set(second_list)))
    assert result["total"] == len(second_list) == 21
    assert (result["accepted"], result["rejected"], result["removed"]) == (21, 0, 3)
    # the sensor waits on every bulk that went out, the dropped people's included
    assert sum(b["accepted"] for b in result["bulks"]) == 24


# -- item 2: ids that cannot collide; sending again on purpose -------------------------------------


def test_bulk_id_prefix_with_the_try_number_sends_nothing_twice(omni_sandbox: Any, scenario_key: str) -> None:
    """Seen: the README advised ``{{ ti.try_number }}`` in bulk_id_prefix; a try that failed at bulk 2
    then sent bulk 1 again (30 messages for 20 people).  The prefix is now only a label."""
    people = numbers(20)
    store = FakeStore()
    first = make_operator(scenario_key, people, batch_size=10, bulk_id_prefix="alert-try-1")
    crash(first, 2, after_post=False)
    with pytest.raises(SystemExit):
        first.execute(context(1, store))

    retry = make_operator(
        scenario_key, people, batch_size=10, bulk_id_prefix="alert-try-2", uncertain_horizon=0
    )
    retry.execute(context(2, store))

    assert_each_received_once(omni_sandbox, people)


def test_a_fixed_prefix_does_not_make_the_next_run_skip(omni_sandbox: Any, scenario_key: str) -> None:
    """Seen: a fixed prefix (``daily-alert``) made the next day's run find the previous day's bulk in
    the logs and send nothing while reporting success."""
    people = numbers(5)
    make_operator(scenario_key, people, bulk_id_prefix="daily-alert").execute(
        context(1, None, run_id="scheduled__2026-11-27")
    )
    # the next day's run is retried (try 2, no store): it must not take yesterday's bulk for its own
    result = make_operator(scenario_key, people, bulk_id_prefix="daily-alert").execute(
        context(2, None, run_id="scheduled__2026-11-28")
    )

    assert all(count == 2 for count in received(omni_sandbox).values())  # once per day
    assert result["accepted"] == 5


def test_two_deployments_sharing_an_account_never_skip_each_other(
    omni_sandbox: Any, scenario_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen: staging and production run the same DAG with the same scheduled run ids on one Infobip
    account; production's retry found staging's bulks in the logs and skipped its own sends."""
    people = numbers(20)
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_STAGING", omni_sandbox.airflow_connection_json(namespace="staging"))
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_PROD", omni_sandbox.airflow_connection_json(namespace="prod"))
    run_id = "scheduled__2026-11-28T00:00:00+00:00"
    staging = make_operator(scenario_key, people, omni_conn_id="omni_staging").execute(
        context(1, None, run_id)
    )
    prod = make_operator(scenario_key, people, omni_conn_id="omni_prod")
    crash(prod, 2, after_post=False)  # production's bulk 2 never left; staging's did
    with pytest.raises(SystemExit):
        prod.execute(context(1, None, run_id))

    result = make_operator(scenario_key, people, omni_conn_id="omni_prod").execute(context(2, None, run_id))

    assert all(count == 2 for count in received(omni_sandbox).values())  # once per deployment
    assert sorted(received(omni_sandbox)) == sorted(people)
    assert result["accepted"] == 20 and result["namespace"] == "prod"
    assert staging["send_key"] != result["send_key"]


def test_resend_key_sends_again_once_and_cannot_change_mid_send(omni_sandbox: Any, scenario_key: str) -> None:
    people = numbers(20)
    store = FakeStore()
    make_operator(scenario_key, people).execute(context(1, store))
    # cleared and re-run: the same send, nothing again
    make_operator(scenario_key, people).execute(context(2, store))
    assert all(count == 1 for count in received(omni_sandbox).values())

    again = make_operator(scenario_key, people, resend_key="correction-1")
    crash(again, 2, after_post=True)
    with pytest.raises(SystemExit):
        again.execute(context(3, store))
    # changing the identity while that re-send is incomplete would give some people a third message
    with pytest.raises(OmniValidationError, match="changed between tries"):
        make_operator(scenario_key, people, resend_key="correction-2").execute(context(4, store))
    make_operator(scenario_key, people, resend_key="correction-1").execute(context(5, store))

    assert all(count == 2 for count in received(omni_sandbox).values())
    assert len(received(omni_sandbox)) == 20


# -- the task state store and the logs ------------------------------------------------------------


@pytest.mark.parametrize("with_store", [True, False], ids=["task-state-store", "logs-only"])
@pytest.mark.parametrize("after_post", [False, True], ids=["died-before-post-3", "died-after-post-3"])
def test_second_try_sends_only_what_did_not_go_out(
    omni_sandbox: Any, scenario_key: str, with_store: bool, after_post: bool
) -> None:
    """Simulated retry: try 1 dies at bulk 3 of 5, try 2 (same identity, same store) finishes."""
    store = FakeStore() if with_store else None
    first = make_operator(scenario_key)
    crash(first, 3, after_post)
    with pytest.raises(SystemExit):
        first.execute(context(1, store))
    assert omni_sandbox.admin.stats()["requests"].get("logs", 0) == 0  # a first try looks nothing up

    # the bulk in flight when the worker died is in doubt: a retry settles it in the logs; with the
    # horizon passed, a bulk absent from the logs is known not to have gone out
    result = make_operator(scenario_key, uncertain_horizon=0).execute(context(2, store))

    assert_each_received_once(omni_sandbox, numbers(TOTAL))
    assert (result["total"], result["accepted"]) == (TOTAL, TOTAL)
    assert sum(b["accepted"] for b in result["bulks"]) == TOTAL
    logs = omni_sandbox.admin.stats()["requests"].get("logs", 0)
    if with_store:
        assert logs == 1  # only the bulk that was in flight
    else:
        assert logs >= 3  # bulks 1-2 (3) by id, then the first bulk never sent


def test_a_retry_within_the_horizon_does_not_send_a_bulk_in_doubt(
    omni_sandbox: Any, scenario_key: str
) -> None:
    """A worker died during POST 3 (before the request left): the retry cannot know, so inside the
    horizon it sends everything else and fails naming the bulk; after the horizon it sends it."""
    store = FakeStore()
    first = make_operator(scenario_key)
    crash(first, 3, after_post=False)
    with pytest.raises(SystemExit):
        first.execute(context(1, store))

    with pytest.raises(OmniSendUncertainError, match="1 bulk\\(s\\) may or may not have gone out") as err:
        make_operator(scenario_key, uncertain_horizon=timedelta(minutes=5)).execute(context(2, store))

    assert err.value.bulk_id is not None and err.value.bulk_id.startswith("send_dag.send.")
    assert len(received(omni_sandbox)) == TOTAL - BATCH  # all but the bulk in doubt
    result = make_operator(scenario_key, uncertain_horizon=0).execute(context(3, store))
    assert_each_received_once(omni_sandbox, numbers(TOTAL))
    assert result["accepted"] == TOTAL


def test_a_third_try_after_success_sends_nothing(omni_sandbox: Any, scenario_key: str) -> None:
    """Simulated retry: a finished task instance run again (e.g. cleared) sends nothing again."""
    store = FakeStore()
    first = make_operator(scenario_key).execute(context(1, store))

    again = make_operator(scenario_key).execute(context(3, store))
    without_store = make_operator(scenario_key).execute(context(4, None))

    assert_each_received_once(omni_sandbox, numbers(TOTAL))
    assert omni_sandbox.admin.stats()["requests"]["advanced"] == 5
    assert again["bulks"] == first["bulks"] == without_store["bulks"]


# -- item 3: ambiguous POST failures --------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [{"status": 500, "process": True}, {"drop": True, "process": True}],
    ids=["processed-then-500", "processed-then-dropped"],
)
def test_processed_then_failed_post_is_found_in_logs_and_not_resent(
    omni_sandbox: Any, scenario_key: str, fault: dict[str, Any]
) -> None:
    omni_sandbox.admin.add_fault(endpoint="advanced", times=1, **fault)

    result = make_operator(scenario_key).execute(context(1, FakeStore()))

    assert_each_received_once(omni_sandbox, numbers(TOTAL))
    stats = omni_sandbox.admin.stats()
    assert stats["faults_fired"].get("advanced") == 1
    assert stats["requests"]["advanced"] == 5  # the failed one counted once, never resent
    assert (result["accepted"], result["rejected"]) == (TOTAL, 0)


@pytest.mark.parametrize("fault", [{"status": 503}, {"drop": True}], ids=["503", "dropped"])
def test_not_in_the_logs_is_not_proof_the_task_fails_and_the_retry_settles_it(
    omni_sandbox: Any, scenario_key: str, fault: dict[str, Any]
) -> None:
    """The default never resends without proof: the bulk stays uncertain, nothing after it is sent,
    and a retry past the horizon (absent from the logs) sends it once."""
    store = FakeStore()
    omni_sandbox.admin.add_fault(endpoint="advanced", times=1, **fault)

    with pytest.raises(OmniSendUncertainError) as err:
        make_operator(scenario_key, max_in_flight=1).execute(context(1, store))

    assert omni_sandbox.admin.stats()["requests"]["advanced"] == 1  # stopped at the bulk in doubt
    assert err.value.bulk_id in str(err.value)
    result = make_operator(scenario_key, uncertain_horizon=0).execute(context(2, store))
    assert_each_received_once(omni_sandbox, numbers(TOTAL))
    assert result["accepted"] == TOTAL


@pytest.mark.parametrize("in_flight", [1, 4])
def test_a_bulk_in_doubt_whose_logs_cannot_be_read_is_never_taken_for_not_sent(
    omni_sandbox: Any, scenario_key: str, in_flight: int
) -> None:
    """The POST was processed, its answer lost, and then the logs refused us (403): the bulk may have
    gone out, so the retry must look it up, never send it blindly."""
    store = FakeStore()
    omni_sandbox.admin.add_fault(endpoint="advanced", times=1, status=500, process=True)
    omni_sandbox.admin.add_fault(endpoint="logs", times=1, status=403)

    with pytest.raises(OmniError):
        make_operator(scenario_key, max_in_flight=in_flight).execute(context(1, store))

    result = make_operator(scenario_key, max_in_flight=in_flight).execute(context(2, store))
    assert_each_received_once(omni_sandbox, numbers(TOTAL))
    assert result["accepted"] == TOTAL


@pytest.mark.parametrize("with_store", [True, False], ids=["task-state-store", "logs-only"])
def test_with_bulks_in_flight_a_bulk_in_doubt_stops_new_ones_and_the_retry_sends_the_rest_once(
    omni_sandbox: Any, scenario_key: str, with_store: bool
) -> None:
    """Four bulks in flight, the second one dropped: nothing new is sent after it, the bulks already
    in flight are recorded, and the retry (past the horizon) sends exactly what is missing."""
    store = FakeStore() if with_store else None
    omni_sandbox.admin.add_fault(endpoint="advanced", times=1, drop=True)

    with pytest.raises(OmniSendUncertainError):
        make_operator(scenario_key, batch_size=2, max_in_flight=4).execute(context(1, store))

    first_try = omni_sandbox.admin.stats()["requests"]["advanced"]
    assert first_try < TOTAL // 2  # of 25 bulks: the send stopped soon after the doubt
    result = make_operator(scenario_key, batch_size=2, max_in_flight=4, uncertain_horizon=0).execute(
        context(2, store)
    )
    assert_each_received_once(omni_sandbox, numbers(TOTAL))
    assert (result["total"], result["accepted"]) == (TOTAL, TOTAL)


def test_resend_unconfirmed_is_an_explicit_opt_in(omni_sandbox: Any, scenario_key: str) -> None:
    omni_sandbox.admin.add_fault(endpoint="advanced", times=1, status=503)

    result = make_operator(scenario_key, resend_unconfirmed=True).execute(context(1, FakeStore()))

    assert_each_received_once(omni_sandbox, numbers(TOTAL))
    assert omni_sandbox.admin.stats()["requests"]["advanced"] == 6  # the lost one and its re-send
    assert result["accepted"] == TOTAL


def test_lagging_logs_never_cause_a_duplicate(omni_sandbox: Any, scenario_key: str) -> None:
    """Seen: logs lagging 12 s behind a read timeout: the bulk was sent again, 5 duplicates."""
    omni_sandbox.admin.configure(logs_lag=600)  # lifted below, rather than outwaited: no race with it
    omni_sandbox.admin.add_fault(endpoint="advanced", times=1, status=500, process=True)
    store = FakeStore()

    with pytest.raises(OmniSendUncertainError):
        make_operator(scenario_key).execute(context(1, store))
    # retried at once: still not in the logs, still within the horizon -> not sent again
    with pytest.raises(OmniSendUncertainError):
        make_operator(scenario_key).execute(context(2, store))
    assert omni_sandbox.admin.stats()["duplicate_message_ids"] == {}
    omni_sandbox.admin.configure(logs_lag=0)  # the logs catch up
    result = make_operator(scenario_key).execute(context(3, store))

    assert_each_received_once(omni_sandbox, numbers(TOTAL))
    assert result["accepted"] == TOTAL


# -- item 4: an answer that does not match is not an acceptance -----------------------------------


@pytest.mark.parametrize("answer", ["empty", "empty_object", "request_error", "no_messages", "wrong_bulk_id"])
@pytest.mark.parametrize("processed", [True, False], ids=["processed", "not-processed"])
def test_a_2xx_that_does_not_match_the_request_is_not_success(
    omni_sandbox: Any, scenario_key: str, answer: str, processed: bool
) -> None:
    """Seen: ``{}``, a 200 with ``requestError``, or ``messages: []`` gave "accepted 3 of 3"."""
    people = numbers(3)
    store = FakeStore()
    omni_sandbox.admin.add_fault(endpoint="advanced", times=1, answer=answer, process=processed)

    if processed:  # found in the logs: accepted, once
        result = make_operator(scenario_key, people).execute(context(1, store))
        assert result["accepted"] == 3
        assert_each_received_once(omni_sandbox, people)
    else:  # not in the logs: never reported as sent
        with pytest.raises(OmniSendUncertainError):
            make_operator(scenario_key, people).execute(context(1, store))
        assert received(omni_sandbox) == {}


# -- item 5: one rule for "refused at send" -------------------------------------------------------


def test_refused_at_send_is_one_rule_on_every_path(omni_sandbox: Any, scenario_key: str) -> None:
    """Try 1 learns the refusals from the send answer, a retry without a store from the logs (where a
    later UNDELIVERABLE is a delivery outcome, not a refusal): the XCom is the same."""
    assert is_refused_at_send({"groupName": "REJECTED", "groupId": 5})
    assert not is_refused_at_send({"groupName": "UNDELIVERABLE", "groupId": 2})
    omni_sandbox.admin.configure(reject_duplicate_message_ids=True)
    people = [{"to": n, "messageId": f"m-{n}"} for n in [*numbers(3), "41790000008"]]  # ...8: undeliverable
    make_operator(scenario_key, people[:1], bulk_id_prefix="earlier").execute(context(1, None, "other_run"))

    first = make_operator(scenario_key, people).execute(context(1, None))
    omni_sandbox.admin.advance(hours=3)  # the undeliverable one is final (UNDELIVERABLE) by now
    retried = make_operator(scenario_key, people).execute(context(2, None))

    assert (first["accepted"], first["rejected"]) == (3, 1)
    keys = ("total", "accepted", "rejected", "bulks")
    assert {k: retried[k] for k in keys} == {k: first[k] for k in keys}
    assert [r["status"] for r in retried["rejected_destinations"]] == ["REJECTED_DUPLICATE_MESSAGE_ID"]


# -- real retries in a DAG run --------------------------------------------------------------------


@pytest.mark.dag
def test_airflow_retry_in_a_dag_run_does_not_send_twice(
    run_dag: Any, omni_sandbox: Any, scenario_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real retry: dag.test() runs try 2 of the task in-process, with Airflow's task state store."""
    from tests.airflow_compat import DAG

    calls = {"n": 0}
    lock = threading.Lock()
    real = OmniHook.send_advanced_bulk

    def send_advanced_bulk(hook: OmniHook, request: Any) -> Any:
        with lock:  # bulks go out from several threads: each call keeps its own number
            calls["n"] += 1
            number = calls["n"]
        response = real(hook, request)
        if number == 2:
            raise RuntimeError("simulated: the worker failed right after Infobip took bulk 2")
        return response

    monkeypatch.setattr(OmniHook, "send_advanced_bulk", send_advanced_bulk)

    with DAG("send_retry", schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
        OmniSendAdvancedMessageOperator(
            task_id="send",
            scenario_key=scenario_key,
            destinations=numbers(TOTAL)[::-1],
            sms="Hi",
            batch_size=BATCH,
            retries=1,
            retry_delay=timedelta(0),
        )

    dr = run_dag(dag)

    assert dr.state == "success"
    from airflow.utils.session import create_session

    with create_session() as session:
        (ti,) = dr.get_task_instances(session=session)
        assert ti.try_number == 2
    assert_each_received_once(omni_sandbox, numbers(TOTAL))


def test_undeliverable_in_a_send_answer_is_not_a_refusal(
    omni_sandbox: Any, scenario_key: str, requests_mock: Any
) -> None:
    """Seen: the first try counted UNDELIVERABLE in the send answer as refused, a retry (from the
    logs) only REJECTED: the XCom differed between tries.  The sandbox never answers UNDELIVERABLE
    at send, so this answer is mocked."""
    import json

    requests_mock.real_http = True  # everything but the send goes to the sandbox

    def answer(request: Any, context: Any) -> dict[str, Any]:
        body = json.loads(request.body)
        status = {"groupId": 2, "groupName": "UNDELIVERABLE", "id": 9, "name": "UNDELIVERABLE_NOT_DELIVERED"}
        pending = {"groupId": 1, "groupName": "PENDING", "id": 7, "name": "PENDING_ENROUTE"}
        return {
            "bulkId": body["bulkId"],
            "messages": [
                {"to": d["to"], "messageId": d["messageId"], "status": status if i == 0 else pending}
                for i, d in enumerate(body["destinations"])
            ],
        }

    requests_mock.post(f"{omni_sandbox.url}/omni/1/advanced", json=answer)

    result = make_operator(scenario_key, numbers(3)).execute(context(1, FakeStore()))

    assert (result["accepted"], result["rejected"]) == (3, 0)
    assert result["rejected_destinations"] == []
