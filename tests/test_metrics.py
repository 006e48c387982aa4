"""The provider's metrics (``omni.*``) reach a StatsD server, with the counts a run really had.

The DAG runs in a subprocess with Airflow's StatsD turned on (Airflow configures ``Stats`` from the
configuration at first use, once per process), sending to a UDP listener of this test: what arrives
is what a StatsD server (or ``statsd_exporter``) of a user would get.  The send, the sensor and, on
the deferrable run, the trigger (run in line by ``dag.test()``) run against the sandbox, whose
personas fix the outcome by the number's last digit.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pendulum
import pytest

import airflow_provider_omni
from airflow_provider_omni import metrics
from tests import airflow_processes

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = Path(__file__).resolve().parent.parent
#: The package the tests import (the repository's, or a venv's installed wheel): the DAG runs on it.
PACKAGE_ROOT = Path(airflow_provider_omni.__file__).resolve().parent.parent
#: Every sandbox persona (last digits 0 to 9) and an e-mail address, which a Viber/SMS flow refuses.
DESTINATIONS = [f"4179302672{d}" for d in range(10)] + [{"to": {"emailAddress": "someone@example.com"}}]
#: The personas' outcomes; the refused e-mail address counts as failed.
EXPECTED_OUTCOMES = {"VIBER_DELIVERED": 6, "SMS_DELIVERED": 2, "FAILED": 3, "PENDING": 0}
OUTCOME_NAMES = {
    metrics.OUTCOME_VIBER_DELIVERED: "VIBER_DELIVERED",
    metrics.OUTCOME_SMS_DELIVERED: "SMS_DELIVERED",
    metrics.OUTCOME_FAILED: "FAILED",
    metrics.OUTCOME_PENDING_AT_TIMEOUT: "PENDING",
}
RUNNER = textwrap.dedent(
    """
    import json
    import sys

    from tests.airflow_compat import serialize_dag, xcom_value
    from tests.test_metrics import metrics_dag

    dag = metrics_dag(sys.argv[1], deferrable=sys.argv[2] == "deferrable")
    serialize_dag(dag)
    run = dag.test()
    result = {"state": str(run.state), "send": xcom_value(run, "send"), "wait": xcom_value(run, "wait")}
    print("RESULT " + json.dumps(result))
    """
)


def metrics_dag(dag_id: str, *, deferrable: bool) -> Any:
    """Scenario, send (11 destinations in bulks of 4) and wait: what the subprocess runs."""
    from airflow_provider_omni.operators.scenario import OmniCreateScenarioOperator
    from airflow_provider_omni.operators.send import OmniSendAdvancedMessageOperator
    from airflow_provider_omni.sensors.delivery_report import OmniDeliveryReportSensor
    from tests.airflow_compat import DAG

    with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False) as dag:
        scenario = OmniCreateScenarioOperator(
            task_id="scenario",
            name="metrics-tests",
            flow=[{"channel": "VIBER", "from": "InfoSMS"}, {"channel": "SMS", "from": "InfoSMS"}],
        )
        send = OmniSendAdvancedMessageOperator(
            task_id="send",
            scenario_key=scenario.output,
            destinations=DESTINATIONS,
            viber={"text": "Your parcel is on its way"},
            sms={"text": "Your parcel is on its way"},
            viber_validity=timedelta(seconds=35),
            sms_validity=timedelta(seconds=30),
            batch_size=4,
        )
        wait = OmniDeliveryReportSensor(
            task_id="wait", send_result=send.output, poke_interval=0.2, timeout=120, deferrable=deferrable
        )
        scenario >> send >> wait
    return dag


class StatsdListener:
    """A StatsD server stand-in: a UDP socket on the loopback and a thread keeping every line."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.port: int = self._socket.getsockname()[1]
        self.lines: list[str] = []
        self._last_at = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._socket.recv(65535)
            except TimeoutError:
                continue
            self.lines.extend(data.decode().splitlines())
            self._last_at = time.monotonic()

    def wait_quiet(self, seconds: float = 2.0, timeout: float = 20.0) -> None:
        """Wait until nothing has arrived for ``seconds`` (what was sent is in)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() - self._last_at < seconds and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()

    def samples(self, name: str, kind: str) -> list[float]:
        """The values received for ``airflow.<name>`` of type ``kind`` (``c``, ``ms``), in order."""
        prefix = f"airflow.{name}:"
        values = []
        for line in self.lines:
            if line.startswith(prefix) and line.endswith(f"|{kind}"):
                values.append(float(line[len(prefix) :].split("|")[0]))
        return values

    def counter(self, name: str) -> int:
        return int(sum(self.samples(name, "c")))


@pytest.fixture
def statsd() -> Iterator[StatsdListener]:
    import statsd  # noqa: F401  (the test extra installs it; without it Airflow sends nothing)

    listener = StatsdListener()
    try:
        yield listener
    finally:
        listener.close()


def run_dag_with_statsd(statsd: StatsdListener, dag_id: str, mode: str, tmp_path: Path) -> dict[str, Any]:
    """Run :func:`metrics_dag` with ``dag.test()`` in a Python subprocess sending metrics to ``statsd``.

    The subprocess imports the same provider package as this process (``PYTHONPATH``)."""
    script = tmp_path / "run_metrics_dag.py"
    script.write_text(RUNNER)
    env = airflow_processes.airflow_env(
        AIRFLOW__METRICS__STATSD_ON="True",
        AIRFLOW__METRICS__STATSD_HOST="127.0.0.1",
        AIRFLOW__METRICS__STATSD_PORT=str(statsd.port),
        PYTHONPATH=os.pathsep.join(
            filter(None, [str(PACKAGE_ROOT), str(REPO), os.environ.get("PYTHONPATH")])
        ),
        PYTHONWARNINGS="ignore",
    )
    process = subprocess.run(
        [sys.executable, str(script), dag_id, mode],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = process.stdout + process.stderr
    results = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
    assert process.returncode == 0 and results, output[-5000:]
    statsd.wait_quiet()
    return {**json.loads(results[-1].removeprefix("RESULT ")), "output": output}


def sandbox_requests(sandbox: Any, endpoint: str) -> int:
    return int(sandbox.admin.stats()["requests"].get(endpoint, 0))


def assert_outcomes_counted_once(statsd: StatsdListener, outcomes: dict[str, int]) -> None:
    """Every outcome counter arrived exactly once, with the summary's number (zeros too)."""
    for name, outcome in OUTCOME_NAMES.items():
        assert statsd.samples(name, "c") == [outcomes[outcome]], name


@pytest.mark.dag
@pytest.mark.timeout(300)
def test_a_poking_wait_sends_the_counters_of_the_send_and_of_the_outcome(
    statsd: StatsdListener, omni_sandbox: Any, omni_connection: str, airflow_db: None, tmp_path: Path
) -> None:
    # the first bulk is taken, but its answer is a 500: the send finds it in the logs 1 s later
    omni_sandbox.admin.add_fault(endpoint="advanced", times=1, status=500, process=True)

    result = run_dag_with_statsd(statsd, "omni_metrics_poke", "poke", tmp_path)

    assert result["state"] == "success", result["output"][-5000:]
    send, summary = result["send"], result["wait"]
    assert (send["total"], send["accepted"], send["rejected"]) == (11, 10, 1)
    assert statsd.counter(metrics.SEND_BULKS) == 3
    assert statsd.counter(metrics.SEND_DESTINATIONS_SENT) == 11
    assert statsd.counter(metrics.SEND_DESTINATIONS_ACCEPTED) == send["accepted"] == 10
    assert statsd.counter(metrics.SEND_DESTINATIONS_REJECTED) == send["rejected"] == 1
    assert statsd.counter(metrics.SEND_AMBIGUOUS) == 1
    durations = statsd.samples(metrics.SEND_DURATION, "ms")
    assert len(durations) == 1 and durations[0] >= 1000  # the look-up in the logs waited 1 s
    assert summary["outcomes"] == EXPECTED_OUTCOMES
    assert_outcomes_counted_once(statsd, summary["outcomes"])
    assert statsd.counter(metrics.REPORTS_POLLS) >= sandbox_requests(omni_sandbox, "reports") > 0


@pytest.mark.dag
@pytest.mark.timeout(300)
def test_a_deferred_wait_counts_its_outcome_once_and_every_poll_of_the_trigger(
    statsd: StatsdListener, omni_sandbox: Any, omni_connection: str, airflow_db: None, tmp_path: Path
) -> None:
    omni_sandbox.admin.configure(time_scale=10)  # the silent persona needs ~6.5 s: the wait really defers

    result = run_dag_with_statsd(statsd, "omni_metrics_deferred", "deferrable", tmp_path)

    assert result["state"] == "success", result["output"][-5000:]
    assert "running trigger in line" in result["output"]
    assert statsd.counter(metrics.SEND_DESTINATIONS_SENT) == 11
    assert statsd.counter(metrics.SEND_DESTINATIONS_ACCEPTED) == 10
    assert statsd.samples(metrics.SEND_AMBIGUOUS, "c") == []
    assert result["wait"]["outcomes"] == EXPECTED_OUTCOMES
    # the trigger polls too, but only the sensor's execute_complete counts the outcome
    assert_outcomes_counted_once(statsd, result["wait"]["outcomes"])
    # one poll per request for reports or logs, by the sensor before deferring and by the trigger
    polls = sandbox_requests(omni_sandbox, "reports") + sandbox_requests(omni_sandbox, "logs")
    assert statsd.counter(metrics.REPORTS_POLLS) == polls > 0


# -- in process: a recording (or broken) Stats in place of Airflow's ------------------------------------


class RecordingStats:
    """What the provider calls of Airflow's ``Stats``, recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any, dict[str, str]]] = []

    def incr(self, name: str, count: int = 1, rate: float = 1, *, tags: dict[str, str]) -> None:
        self.calls.append(("incr", name, count, tags))

    def timing(self, name: str, dt: timedelta, *, tags: dict[str, str]) -> None:
        self.calls.append(("timing", name, dt, tags))

    def counts(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for kind, name, value, _ in self.calls:
            if kind == "incr":
                counts[name] += value
        return counts


class BrokenStats:
    """A metrics backend that fails on every call."""

    def __getattr__(self, name: str) -> Any:
        raise OSError("the metrics backend is down")


def use_stats(monkeypatch: pytest.MonkeyPatch, stats: Any) -> None:
    from airflow_provider_omni import version_compat

    monkeypatch.setattr(version_compat, "load_stats", lambda: stats)


def send_operator(scenario_key: str, **kwargs: Any) -> Any:
    from airflow_provider_omni.operators.send import OmniSendAdvancedMessageOperator

    operator = OmniSendAdvancedMessageOperator(
        task_id="send", scenario_key=scenario_key, viber="Hello", sms="Hello", **kwargs
    )
    operator.confirm_delays = (0.0,)
    return operator


def send_context() -> dict[str, Any]:
    class TI:
        dag_id, task_id, run_id, map_index, try_number = "metrics_dag", "send", "manual__1", -1, 1

    return {"ti": TI(), "run_id": TI.run_id}


@pytest.fixture
def scenario_key(omni_sandbox: Any, omni_connection: str) -> str:
    from airflow_provider_omni.hooks.omni import OmniHook

    flow = [{"channel": "VIBER", "from": "InfoSMS"}, {"channel": "SMS", "from": "InfoSMS"}]
    return OmniHook(omni_connection).create_scenario("metrics", flow).key


def test_a_send_counts_per_bulk_with_the_dag_and_task_tags(
    monkeypatch: pytest.MonkeyPatch, scenario_key: str
) -> None:
    stats = RecordingStats()
    use_stats(monkeypatch, stats)

    send_operator(scenario_key, destinations=DESTINATIONS, batch_size=4).execute(send_context())

    assert stats.counts() == {
        metrics.SEND_BULKS: 3,
        metrics.SEND_DESTINATIONS_SENT: 11,
        metrics.SEND_DESTINATIONS_ACCEPTED: 10,
        metrics.SEND_DESTINATIONS_REJECTED: 1,
    }
    assert [call[1] for call in stats.calls if call[0] == "timing"] == [metrics.SEND_DURATION]
    # an operator outside a DAG has Airflow's "adhoc_<owner>" dag id: the tags follow the task
    assert {tuple(sorted(call[3])) for call in stats.calls} == {("dag_id", "task_id")}
    assert {call[3]["task_id"] for call in stats.calls} == {"send"}


def test_a_dry_run_sends_no_metric(monkeypatch: pytest.MonkeyPatch, scenario_key: str) -> None:
    stats = RecordingStats()
    use_stats(monkeypatch, stats)

    preview = send_operator(scenario_key, destinations=DESTINATIONS, dry_run=True).execute(send_context())

    assert preview["dry_run"] is True
    assert stats.calls == []


def test_a_broken_metrics_backend_never_fails_the_send(
    monkeypatch: pytest.MonkeyPatch, scenario_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    use_stats(monkeypatch, BrokenStats())
    caplog.set_level("DEBUG", logger="airflow_provider_omni.metrics")

    result = send_operator(scenario_key, destinations=DESTINATIONS[:3]).execute(send_context())

    assert result["accepted"] == 3
    assert "Could not send the metric omni.send.bulks" in caplog.text
    assert "the metrics backend is down" in caplog.text


@pytest.mark.parametrize("succeed_on_timeout", [False, True], ids=["fails", "succeeds"])
def test_a_timed_out_wait_counts_what_it_left_pending_once(
    monkeypatch: pytest.MonkeyPatch,
    omni_sandbox: Any,
    omni_connection: str,
    succeed_on_timeout: bool,
) -> None:
    from test_sensor import FakeStateStore, make_sensor, send

    from airflow_provider_omni.hooks.omni import OmniHook
    from tests.airflow_compat import AirflowSensorTimeout

    stats = RecordingStats()
    use_stats(monkeypatch, stats)
    # a Viber user, and the silent persona, whose SMS stays pending for an hour
    result = send(OmniHook(), ["41793026720", "41793026729"], viber_validity=3600, sms_validity=3600)
    sensor = make_sensor(send_result=result, timeout=0.3, succeed_on_timeout=succeed_on_timeout)

    if succeed_on_timeout:
        sensor.execute({"task_state_store": FakeStateStore()})
    else:
        with pytest.raises(AirflowSensorTimeout):
            sensor.execute({"task_state_store": FakeStateStore()})

    outcomes = [(name, count) for kind, name, count, _ in stats.calls if name.startswith("omni.outcome.")]
    assert sorted(outcomes) == sorted(
        {
            metrics.OUTCOME_VIBER_DELIVERED: 1,
            metrics.OUTCOME_SMS_DELIVERED: 0,
            metrics.OUTCOME_FAILED: 0,
            metrics.OUTCOME_PENDING_AT_TIMEOUT: 1,
        }.items()
    )
    assert stats.counts()[metrics.REPORTS_POLLS] >= 1
