"""A stateful property test of sending (hypothesis ``RuleBasedStateMachine``) against the OMNI sandbox.

Random destination sets and orders, random bulk sizes, one bulk or three in flight at once, faults at
random positions (refused before
processing, processed then 5xx, dropped connections before and after processing, read timeouts,
answers that do not match the request, the worker dying before or after a POST), lagging logs,
retries with fresh operator instances with or without a task state store, clears and re-runs.
Plans of more than five destinations are spilled to disk and merged, as a million would be.

Invariant, checked after every step from the sandbox's own records: within each run, every destination
was accepted at most once; every run whose task succeeded reached every destination of its last list
exactly once; and its XCom agrees with what the sandbox received.

The same machine runs on both backends.  On the Messages API, which has no logs, a request in doubt is
never sent again (nothing can prove it absent): a run may then end failed, with
``OmniSendUncertainError`` naming the bulks in doubt, and only their destinations may be missing.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from airflow_provider_omni.exceptions import OmniSendUncertainError
from airflow_provider_omni.hooks.omni import OmniHook
from airflow_provider_omni.operators import _sorted_spill
from airflow_provider_omni.operators.send import OmniSendAdvancedMessageOperator

if TYPE_CHECKING:
    from datetime import timedelta

POOL = [f"4179{i:07d}" for i in range(40)]
# Wider than a loaded CI machine's (3 suites on 2 cores) usual stalls, and short, as the machine
# sleeps them many times: the horizon is 0.6 s beyond the logs' longest lag here, and a read
# timeout fault holds its answer 0.5 s longer than the client waits.
HORIZON = 1.2
READ_TIMEOUT = 0.8

FAULTS: dict[str, dict[str, Any] | None] = {
    "none": None,
    "refused_before_processing": {"status": 503},
    "processed_then_500": {"status": 500, "process": True},
    "dropped": {"drop": True},
    "processed_then_dropped": {"drop": True, "process": True},
    "read_timeout_after_processing": {"process": True, "latency": READ_TIMEOUT + 0.5},
    "answer_does_not_match": {"answer": "empty", "process": True},
    "crash_before_post": None,
    "crash_after_post": None,
}


class FakeStore:
    """The ``get``/``set`` of Airflow 3.3's task state store."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any, *, retention: timedelta | None = None) -> None:
        self.data[key] = value


class FakeTI:
    def __init__(self, run_id: str, try_number: int) -> None:
        self.dag_id, self.task_id, self.run_id = "prop_dag", "send", run_id
        self.map_index, self.try_number = -1, try_number


class WorkerDied(BaseException):
    """The worker process died: nothing in the operator catches it."""


@dataclass
class Run:
    run_id: str
    store: FakeStore | None
    destinations: list[str]
    batch_size: int
    in_flight: int = 1
    tries: int = 0
    given: set[str] = field(default_factory=set)
    result: dict[str, Any] | None = None
    #: the last try failed with these bulks in doubt (their count)
    in_doubt: int = 0


class SendingMachine(RuleBasedStateMachine):
    """Runs of one send task against the sandbox, with faults, retries, clears and changed lists."""

    sandbox: Any = None
    scenario_key: str = ""
    backend: str = "omni"

    def __init__(self) -> None:
        super().__init__()
        self.sandbox.admin.clear_faults()
        self.sandbox.admin.configure(logs_lag=0)
        self.runs: list[Run] = []
        self.lag = 0.0
        self.hook = OmniHook("omni_truth")  # the ground truth, read with no short timeout

    # -- rules ----------------------------------------------------------------------------------------

    @initialize(lag=st.sampled_from([0.0, 0.6, 0.6]))
    def logs_lag(self, lag: float) -> None:
        """Infobip's logs may lag behind a send (always less than the horizon here)."""
        self.lag = lag
        self.sandbox.admin.configure(logs_lag=lag)

    @precondition(lambda self: len(self.runs) < 3)
    @rule(
        people=st.lists(st.sampled_from(POOL), min_size=1, max_size=25, unique=True),
        batch_size=st.integers(min_value=2, max_value=9),
        with_store=st.booleans(),
        fault=st.sampled_from(sorted(FAULTS)),
        position=st.integers(min_value=1, max_value=3),
        in_flight=st.sampled_from([1, 3]),
    )
    def start_run(
        self, people: list[str], batch_size: int, with_store: bool, fault: str, position: int, in_flight: int
    ) -> None:
        """The first try of a new run (a new DAG run of the send task), its bulks one or three at once."""
        # a retry on the Messages API without a store cannot know what went out, and refuses (tested
        # apart): the machine gives its runs a store there
        store = FakeStore() if with_store or self.backend == "messages_api" else None
        run = Run(f"run_{len(self.runs)}", store, people, batch_size, in_flight)
        self.runs.append(run)
        self._attempt(run, fault, position)

    @precondition(lambda self: bool(self.runs))
    @rule(
        data=st.data(),
        fault=st.sampled_from(sorted(FAULTS)),
        position=st.integers(min_value=1, max_value=3),
        change=st.sampled_from(["same", "reordered", "added", "removed"]),
    )
    def retry_or_rerun(self, data: Any, fault: str, position: int, change: str) -> None:
        """Another try of a run (a retry, or a clear and re-run of a finished one)."""
        run = data.draw(st.sampled_from(self.runs))
        if change == "reordered":
            run.destinations = list(reversed(run.destinations))
        elif change == "added":
            extra = [n for n in POOL if n not in run.destinations][:3]
            run.destinations = run.destinations + extra
        elif change == "removed" and len(run.destinations) > 3:
            run.destinations = run.destinations[2:]
        self._attempt(run, fault, position)

    @precondition(lambda self: any(run.result is None for run in self.runs))
    @rule()
    def retry_at_once(self) -> None:
        """Airflow retries the last failed run right away (retry_delay 0), without a fault."""
        run = [run for run in self.runs if run.result is None][-1]
        self._attempt(run, "none", 0)

    @rule()
    def time_passes(self) -> None:
        """Wait past the horizon: requests in doubt can then be settled by the next try."""
        time.sleep(HORIZON + 0.05)

    # -- invariants -----------------------------------------------------------------------------------

    @invariant()
    def each_destination_accepted_at_most_once_and_xcom_is_true(self) -> None:
        if not self.runs:
            return
        truth = self._accepted_per_run()
        for run in self.runs:
            counts = truth.get(self._send_key(run), {})
            twice = {n: c for n, c in counts.items() if c > 1}
            assert not twice, f"{run.run_id}: sent more than once: {twice}"
            assert set(counts) <= run.given, f"{run.run_id}: sent to someone never given"
            if run.result is None:
                continue
            assert set(run.destinations) <= set(counts), f"{run.run_id}: succeeded but skipped someone"
            result = run.result
            assert result["total"] == len(run.destinations)
            assert result["accepted"] + result["rejected"] == result["total"]
            assert sum(b["accepted"] + b["rejected"] for b in result["bulks"]) == len(counts)
            assert result["removed"] == len(set(counts) - set(run.destinations))

    def teardown(self) -> None:
        """Let time pass, then every unfinished run must finish on one more try, exactly once."""
        self.sandbox.admin.clear_faults()
        self.sandbox.admin.configure(logs_lag=0)
        time.sleep(HORIZON + 0.05)
        for run in self.runs:
            if run.result is None:
                self._attempt(run, "none", 0)
                if self.backend == "messages_api" and run.in_doubt:
                    # in doubt for good (never sent again, named in the error): only their people may miss
                    missing = set(run.destinations) - set(
                        self._accepted_per_run().get(self._send_key(run), {})
                    )
                    assert len(missing) <= run.in_doubt * run.batch_size, f"{run.run_id}: lost {missing}"
                    continue
                assert run.result is not None, f"{run.run_id}: did not finish without faults"
        self.each_destination_accepted_at_most_once_and_xcom_is_true()

    # -- helpers --------------------------------------------------------------------------------------

    def _attempt(self, run: Run, fault: str, position: int) -> None:
        if run.store is None and run.tries:
            # without a task state store the logs are the only memory: the documented assumption is a
            # retry_delay longer than the logs' lag
            time.sleep(self.lag + 0.05)
        run.tries += 1
        run.given |= set(run.destinations)
        run.result = None  # the run's latest try decides whether it succeeded
        op = OmniSendAdvancedMessageOperator(
            task_id="send",
            scenario_key=self.scenario_key or None,
            destinations=list(run.destinations),
            sms="Hi",
            batch_size=run.batch_size,
            uncertain_horizon=HORIZON,
            max_in_flight=run.in_flight,
            backend=self.backend,
            sms_sender="Brand",
        )
        op.confirm_delays = (0.0, 0.05)
        self._inject(op, fault, position)
        context: dict[str, Any] = {"ti": FakeTI(run.run_id, run.tries), "run_id": run.run_id}
        if run.store is not None:
            context["task_state_store"] = run.store
        run.in_doubt = 0
        try:
            result = op.execute(context)
        except OmniSendUncertainError as err:
            run.in_doubt = int(str(err).split(" bulk(s)", 1)[0]) if " bulk(s) may" in str(err) else 0
            return
        except WorkerDied:
            return
        finally:
            self.sandbox.admin.clear_faults()
        run.result = result

    def _inject(self, op: OmniSendAdvancedMessageOperator, fault: str, position: int) -> None:
        if fault == "none":
            return
        on_messages_api = self.backend == "messages_api"
        name = "send_messages_api_bulk" if on_messages_api else "send_advanced_bulk"
        real = getattr(op.hook, name)
        admin = self.sandbox.admin
        calls = {"n": 0}
        lock = threading.Lock()

        def send_bulk(bulk: Any, *args: Any) -> Any:
            with lock:  # several threads send: each call keeps its own number
                calls["n"] += 1
                number = calls["n"]
            if number != position:
                return real(bulk, *args)
            if fault == "crash_before_post":
                raise WorkerDied
            if fault == "crash_after_post":
                real(bulk, *args)
                raise WorkerDied
            endpoint = "messages" if on_messages_api else "advanced"
            admin.add_fault(endpoint=endpoint, times=1, **(FAULTS[fault] or {}))
            return real(bulk, *args)

        setattr(op.hook, name, send_bulk)

    def _send_key(self, run: Run) -> str:
        from airflow_provider_omni.operators import _ids

        return _ids.send_key(
            namespace=self.hook.namespace, dag_id="prop_dag", task_id="send", run_id=run.run_id, map_index=-1
        )

    def _accepted_per_run(self) -> dict[str, dict[str, int]]:
        """Send key -> destination -> times the sandbox accepted it (from its logs, lag switched off; on
        the Messages API from its record of accepted message ids)."""
        if self.backend == "messages_api":
            truth: dict[str, dict[str, int]] = {}
            for item in self.sandbox.admin.messages_api_accepted():
                per_run = truth.setdefault(item["messageId"].split("-", 1)[0], {})
                per_run[item["destination"]] = per_run.get(item["destination"], 0) + item["times"]
            return truth
        lag = self.sandbox.admin.config().get("logs_lag", 0)
        self.sandbox.admin.configure(logs_lag=0)
        try:
            rows = self.hook.get_logs(limit=1000)
        finally:
            self.sandbox.admin.configure(logs_lag=lag)
        truth = {}
        for row in rows:
            key = (row.message_id or "").split("-", 1)[0]
            per_run = truth.setdefault(key, {})
            per_run[row.to or ""] = per_run.get(row.to or "", 0) + 1
        return truth


@pytest.mark.timeout(600)
@pytest.mark.parametrize("backend", ["omni", "messages_api"])
def test_sending_is_exactly_once_under_faults_retries_and_changed_lists(
    omni_sandbox: Any, omni_connection: str, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_OMNI_DEFAULT",
        omni_sandbox.airflow_connection_json(read_timeout=READ_TIMEOUT, max_retries=0),
    )
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_TRUTH", omni_sandbox.airflow_connection_json())
    omni_sandbox.admin.configure(rate_limits_enabled=False)
    # plans of more than 5 destinations go through the disk: sorted runs, merged two at a time
    monkeypatch.setattr(_sorted_spill, "RUN_SIZE", 5)
    monkeypatch.setattr(_sorted_spill, "BLOCK", 2)
    monkeypatch.setattr(_sorted_spill, "MAX_FAN_IN", 2)
    flow = [{"channel": "VIBER", "from": "Brand"}, {"channel": "SMS", "from": "Brand"}]

    class Machine(SendingMachine):
        sandbox = omni_sandbox

        def __init__(self) -> None:
            omni_sandbox.admin.reset(keep_config=True)  # each example starts from an empty account
            if backend == "omni":
                type(self).scenario_key = OmniHook("omni_default").create_scenario("prop", flow).key
            super().__init__()

    Machine.backend = backend

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=12,
            stateful_step_count=8,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        ),
    )
