"""Exactly-once sending across Airflow retries and ambiguous HTTP failures, against the OMNI sandbox.

Two forms of "retry" are exercised, and each test says which:

* **simulated retry**: ``execute`` is called a second time with the same task instance identity
  (dag, task, run, map index), ``try_number`` 2 and the same task state store (a dict stand-in with
  the ``get``/``set`` of Airflow 3.3's ``context["task_state_store"]``), or no store at all (older
  Airflow: only the logs look-up protects);
* **real retry**: a DAG with ``retries=1, retry_delay=0`` run by ``dag.test()`` (``run_dag``), where
  Airflow itself runs try 2 in-process with its real task state store.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
import pytest

from airflow_provider_omni.exceptions import OmniError, OmniSendUncertainError
from airflow_provider_omni.hooks.omni import OmniHook
from airflow_provider_omni.operators.send import OmniSendAdvancedMessageOperator

FLOW = [{"channel": "VIBER", "from": "InfoSMS"}, {"channel": "SMS", "from": "InfoSMS"}]
TOTAL, BATCH = 50, 10  # 5 bulks


def numbers(count: int) -> list[str]:
    return [f"4179{i:07d}" for i in range(count)]


class FakeTI:
    def __init__(self, try_number: int) -> None:
        self.dag_id, self.task_id, self.run_id = "send_dag", "send", "manual__retry"
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


def context(try_number: int, store: FakeStore | None) -> dict[str, Any]:
    ctx: dict[str, Any] = {"ti": FakeTI(try_number), "run_id": "manual__retry"}
    if store is not None:
        ctx["task_state_store"] = store
    return ctx


@pytest.fixture
def scenario_key(omni_sandbox: Any, omni_connection: str) -> str:
    return OmniHook(omni_connection).create_scenario("retry", FLOW).key


def make_operator(scenario_key: str) -> OmniSendAdvancedMessageOperator:
    op = OmniSendAdvancedMessageOperator(
        task_id="send", scenario_key=scenario_key, destinations=numbers(TOTAL), sms="Hi", batch_size=BATCH
    )
    op.confirm_delays = (0.0, 0.0)
    return op


class CrashOnCall:
    """Wrap ``OmniHook.send_advanced_bulk``: on call ``n``, fail before or after the real POST."""

    def __init__(self, real: Any, n: int, after_post: bool) -> None:
        self.real, self.n, self.after_post, self.calls = real, n, after_post, 0

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        if self.calls == self.n and not self.after_post:
            raise OmniError("simulated: the worker died before this POST")
        response = self.real(*args)
        if self.calls == self.n:
            raise RuntimeError("simulated: the worker died right after this POST, before recording it")
        return response


def assert_each_destination_received_once(sandbox: Any) -> dict[str, Any]:
    stats = sandbox.admin.stats()
    assert stats["duplicate_message_ids"] == {}
    assert stats["destinations"] == stats["distinct_message_ids"] == TOTAL
    assert sorted(stats["bulks"].values()) == [BATCH] * (TOTAL // BATCH)
    return stats


# -- simulated retries ----------------------------------------------------------------------------


@pytest.mark.parametrize("with_store", [True, False], ids=["task-state-store", "logs-only"])
@pytest.mark.parametrize("after_post", [False, True], ids=["died-before-post-3", "died-after-post-3"])
def test_second_try_sends_only_what_did_not_go_out(
    omni_sandbox: Any, scenario_key: str, with_store: bool, after_post: bool
) -> None:
    """Simulated retry: try 1 stops at bulk 3 of 5, try 2 (same identity, same store) finishes."""
    store = FakeStore() if with_store else None
    first = make_operator(scenario_key)
    first.hook.send_advanced_bulk = CrashOnCall(first.hook.send_advanced_bulk, 3, after_post)  # type: ignore[method-assign]
    with pytest.raises((OmniError, RuntimeError)):
        first.execute(context(1, store))
    sent_in_try_1 = 3 if after_post else 2
    assert omni_sandbox.admin.stats()["destinations"] == sent_in_try_1 * BATCH
    logs_before = omni_sandbox.admin.stats()["requests"].get("logs", 0)
    assert logs_before == 0  # a first try never needs to look anything up

    result = make_operator(scenario_key).execute(context(2, store))

    stats = assert_each_destination_received_once(omni_sandbox)
    assert stats["requests"]["advanced"] == 5  # 2 or 3 in try 1, the rest in try 2; none twice
    assert (result["total"], result["accepted"]) == (TOTAL, TOTAL)
    assert len(result["bulks"]) == 5
    looked_up = stats["requests"].get("logs", 0) - logs_before
    if with_store:
        # bulks 1-2 come from the store; bulk 3 (not recorded) is looked up in the logs, and when it
        # is found there (sent, then the worker died), bulk 4 too
        assert looked_up == (2 if after_post else 1)
        assert len(store.data) == 5  # type: ignore[union-attr]
    else:
        # without a store every bulk up to the first one never sent is looked up
        assert looked_up == sent_in_try_1 + 1


def test_a_third_try_after_success_sends_nothing(omni_sandbox: Any, scenario_key: str) -> None:
    """Simulated retry: a finished task instance run again (e.g. cleared) sends nothing again."""
    store = FakeStore()
    first = make_operator(scenario_key).execute(context(1, store))

    again = make_operator(scenario_key).execute(context(3, store))
    without_store = make_operator(scenario_key).execute(context(4, None))

    assert_each_destination_received_once(omni_sandbox)
    assert omni_sandbox.admin.stats()["requests"]["advanced"] == 5
    assert again["bulks"] == first["bulks"] == without_store["bulks"]


# -- ambiguous POST failures ----------------------------------------------------------------------


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

    stats = assert_each_destination_received_once(omni_sandbox)
    assert stats["faults_fired"].get("advanced") == 1
    assert stats["requests"]["advanced"] == 5  # the failed one counted once, never resent
    assert stats["requests"]["logs"] >= 1
    assert (result["accepted"], result["rejected"]) == (TOTAL, 0)


@pytest.mark.parametrize(
    "fault", [{"status": 500}, {"status": 503}, {"drop": True}], ids=["500", "503", "dropped"]
)
def test_failed_without_processing_is_sent_again_exactly_once(
    omni_sandbox: Any, scenario_key: str, fault: dict[str, Any]
) -> None:
    omni_sandbox.admin.add_fault(endpoint="advanced", times=1, **fault)

    result = make_operator(scenario_key).execute(context(1, FakeStore()))

    stats = assert_each_destination_received_once(omni_sandbox)
    assert stats["requests"]["advanced"] == 6  # the lost one and its one re-send
    assert result["accepted"] == TOTAL


def test_still_uncertain_after_one_resend_fails_clearly_and_the_retry_finishes(
    omni_sandbox: Any, scenario_key: str
) -> None:
    """Simulated retry after two ambiguous failures of bulk 1."""
    store = FakeStore()
    omni_sandbox.admin.add_fault(endpoint="advanced", times=2, status=500)

    with pytest.raises(OmniSendUncertainError, match="failed ambiguously twice") as err:
        make_operator(scenario_key).execute(context(1, store))

    assert err.value.bulk_id is not None and err.value.bulk_id.endswith(".b1")
    assert omni_sandbox.admin.stats()["destinations"] == 0
    make_operator(scenario_key).execute(context(2, store))
    assert_each_destination_received_once(omni_sandbox)


# -- real retries in a DAG run --------------------------------------------------------------------


@pytest.mark.dag
@pytest.mark.parametrize("after_post", [False, True], ids=["died-before-post-2", "died-after-post-2"])
def test_airflow_retry_in_a_dag_run_does_not_send_twice(
    run_dag: Any, omni_sandbox: Any, scenario_key: str, monkeypatch: pytest.MonkeyPatch, after_post: bool
) -> None:
    """Real retry: dag.test() runs try 2 of the task in-process, with Airflow's task state store."""
    from airflow.sdk import DAG

    crash = CrashOnCall(OmniHook.send_advanced_bulk, 2, after_post)

    def send_advanced_bulk(hook: OmniHook, request: Any) -> Any:
        return crash(hook, request)

    monkeypatch.setattr(OmniHook, "send_advanced_bulk", send_advanced_bulk)

    with DAG("send_retry", schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
        OmniSendAdvancedMessageOperator(
            task_id="send",
            scenario_key=scenario_key,
            destinations=numbers(TOTAL),
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
    stats = assert_each_destination_received_once(omni_sandbox)
    assert stats["requests"]["advanced"] == 5
    # bulk 1 came from Airflow's task state store, not from the logs: only bulk 2 (and bulk 3 when
    # bulk 2 was found there) was looked up
    assert stats["requests"]["logs"] == (2 if after_post else 1)
