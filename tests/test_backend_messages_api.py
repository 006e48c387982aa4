"""The Messages API backend (``/messages-api/1/...``) against the sandbox, as a demanding user sees it:
the request each bulk carries, ambiguous and refused answers, reports read once, the send operator's
checks before anything goes out, exactly once across retries, dry runs, the connection's extras, and
the delivery wait (poke mode with and without a task state store, deferrable, per-step reports).

Wrong 2xx answers come from the sandbox's ``answer`` faults on the ``messages`` endpoint.
"""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pendulum
import pytest
import requests
from requests.adapters import HTTPAdapter

from airflow_provider_omni import messages_api
from airflow_provider_omni.exceptions import (
    OmniAuthError,
    OmniSendUncertainError,
    OmniValidationError,
)
from airflow_provider_omni.hooks.omni import OmniHook
from airflow_provider_omni.messages_api import MessageTemplate, Senders
from airflow_provider_omni.models import AdvancedBulk, OmniAdvancedRequest, validate_destinations
from airflow_provider_omni.operators.send import OmniSendAdvancedMessageOperator
from airflow_provider_omni.sensors.delivery_report import OmniDeliveryReportSensor
from airflow_provider_omni.triggers.delivery_report import OmniDeliveryReportTrigger
from tests.airflow_compat import HAS_TASK_STATE_STORE, AirflowSensorTimeout, TaskDeferred

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_omni.sandbox.server import OmniSandbox

pytestmark = pytest.mark.timeout(120)

SENDERS = {"viber_sender": "ViberCo", "sms_sender": "InfoSMS"}
#: Last digit of the number -> persona: 0 Viber delivered, 6 SMS fallback delivered, 8 undeliverable,
#: 9 silent (expires on both steps).
VIBER_OK, SMS_OK, UNREACHABLE, SILENT = "41793026720", "41793026726", "41793026728", "41793026729"
VIBER = {
    "text": "Your parcel is on its way",
    "imageURL": "https://example.com/parcel.png",
    "buttonText": "Track it",
    "buttonURL": "https://example.com/track",
}
SMS = {"text": "Your parcel is on its way: https://example.com/track"}
MESSAGES = "/messages-api/1/messages"
VALIDATE = "/messages-api/1/messages/validate"
REPORTS = "/messages-api/1/reports"
BASE = "https://abc123.api.infobip.com"


# -- helpers ----------------------------------------------------------------------------------------


class Wire:
    """Every request the provider's sync HTTP client put on the wire: method, path and JSON body."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any]] = []
        self._lock = threading.Lock()

    def bodies(self, path: str = MESSAGES) -> list[dict[str, Any]]:
        """The JSON bodies POSTed to ``path``, in order."""
        return [body for method, where, body in self.sent if method == "POST" and where == path]

    def numbers_sent(self) -> dict[str, int]:
        """Phone number -> how many Messages API sends carried it."""
        counts: dict[str, int] = {}
        for body in self.bodies():
            for message in body["messages"]:
                for destination in message["destinations"]:
                    number = destination["byChannel"][0]["to"]
                    counts[number] = counts.get(number, 0) + 1
        return counts


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Wire:
    """Record what goes out through ``requests`` (the hook's sync client), then let it go out."""
    seen = Wire()
    real_send = HTTPAdapter.send

    def recording_send(self: HTTPAdapter, request: requests.PreparedRequest, *args: Any, **kw: Any) -> Any:
        body = request.body
        try:
            parsed = json.loads(body) if body else None
        except (ValueError, UnicodeDecodeError):
            parsed = body
        with seen._lock:
            seen.sent.append((str(request.method), urlsplit(str(request.url)).path, parsed))
        return real_send(self, request, *args, **kw)

    monkeypatch.setattr(HTTPAdapter, "send", recording_send)
    return seen


@pytest.fixture
def sandbox(omni_sandbox: OmniSandbox) -> OmniSandbox:
    """The reset sandbox with its clock stopped (it moves only by ``advance``)."""
    omni_sandbox.admin.configure(time_scale=0)
    return omni_sandbox


@pytest.fixture
def ma_connection(sandbox: OmniSandbox, monkeypatch: pytest.MonkeyPatch) -> str:
    """``omni_default`` on the sandbox, saying backend ``messages_api`` with both senders."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_OMNI_DEFAULT", sandbox.airflow_connection_json(backend="messages_api", **SENDERS)
    )
    return "omni_default"


def use_connection(monkeypatch: pytest.MonkeyPatch, sandbox: OmniSandbox, **extra: Any) -> None:
    """Point ``omni_default`` at the sandbox with these extras."""
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_DEFAULT", sandbox.airflow_connection_json(**extra))


def ma_stats(sandbox: OmniSandbox) -> dict[str, Any]:
    """The sandbox's Messages API counters plus its request counts per endpoint."""
    stats = sandbox.admin.stats()
    return {
        **stats["messages_api"],
        "requests": stats["requests"],
        "omni_destinations": stats["destinations"],
    }


def pull_reports(sandbox: OmniSandbox, **params: Any) -> list[dict[str, Any]]:
    """Take Messages API reports with a plain client (for checks at the end of a test)."""
    answer = requests.get(
        f"{sandbox.url}{REPORTS}",
        params={"limit": 1000, **params},
        headers={"Authorization": f"App {sandbox.api_key}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return list(answer.json()["results"])


def accepted_per_number(sandbox: OmniSandbox, hours: float = 3) -> dict[str, int]:
    """Phone number -> how many messages the sandbox accepted for it: one final report each, once
    the clock is past every validity (``hours``, within the 48 h reports are kept; consumes the
    reports: call it last)."""
    sandbox.admin.advance(hours=hours)
    counts: dict[str, int] = {}
    for report in pull_reports(sandbox):  # final reports only: no request here asks for per-step ones
        counts[report["destination"]] = counts.get(report["destination"], 0) + 1
    assert sum(counts.values()) == ma_stats(sandbox)["destinations"]
    return counts


def bulk_of(bulk_id: str, numbers: list[str], **fields: Any) -> tuple[AdvancedBulk, dict[str, Any]]:
    """An OMNI bulk (validated by the OMNI models, as the operator plans it) and its request fields."""
    body: dict[str, Any] = {
        "bulkId": bulk_id,
        "destinations": [
            {"messageId": f"{bulk_id}.{i}", "to": {"phoneNumber": n}} for i, n in enumerate(numbers)
        ],
        "viber": {**VIBER},
        "sms": {**SMS},
        **fields,
    }
    request_fields = AdvancedBulk.fields_of(OmniAdvancedRequest.model_validate(body))
    return AdvancedBulk.build(request_fields, bulk_id, validate_destinations(body["destinations"])), (
        request_fields
    )


def template_of(fields: dict[str, Any], viber: str = "ViberCo", sms: str = "InfoSMS") -> MessageTemplate:
    return messages_api.message_template(fields, Senders(viber=viber, sms=sms))


def sandbox_time(sandbox: OmniSandbox, ahead: timedelta = timedelta(0)) -> str:
    """The sandbox's simulated now (plus ``ahead``) in Infobip's format."""
    now = datetime.fromtimestamp(float(sandbox.admin.clock()["epoch"]), tz=UTC) + ahead
    return now.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


class FakeTI:
    def __init__(self, try_number: int, task_id: str = "send") -> None:
        self.dag_id, self.task_id, self.run_id = "ma_dag", task_id, "manual__ma"
        self.map_index, self.try_number = -1, try_number


class FakeStore:
    """The ``get``/``set``/``delete`` of Airflow 3.3's task state store, JSON round-tripped."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(self.data[key]) if key in self.data else default

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        self.data[key] = json.dumps(value)

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


def context(try_number: int = 1, store: FakeStore | None = None, task_id: str = "send") -> Any:
    """A task context with what the operators use: ``ti`` (identity, try number) and the store."""
    ctx: dict[str, Any] = {"ti": FakeTI(try_number, task_id), "run_id": "manual__ma"}
    if store is not None:
        ctx["task_state_store"] = store
    return ctx


def make_send(destinations: Any, **kwargs: Any) -> OmniSendAdvancedMessageOperator:
    kwargs.setdefault("viber", dict(VIBER))
    kwargs.setdefault("sms", dict(SMS))
    kwargs.setdefault("viber_validity", timedelta(minutes=30))
    kwargs.setdefault("sms_validity", timedelta(minutes=30))
    op = OmniSendAdvancedMessageOperator(task_id="send", destinations=destinations, **kwargs)
    op.confirm_delays = (0.0,)
    return op


def make_sensor(**kwargs: Any) -> OmniDeliveryReportSensor:
    kwargs.setdefault("task_id", "wait")
    kwargs.setdefault("poke_interval", 0.05)
    kwargs.setdefault("timeout", 30)
    kwargs.setdefault("mode", "poke")
    kwargs.setdefault("deferrable", False)
    return OmniDeliveryReportSensor(**kwargs)


def send_now(destinations: list[str], **kwargs: Any) -> dict[str, Any]:
    """Send with the operator (a first try with a store); return its XCom."""
    result: dict[str, Any] = make_send(destinations, **kwargs).execute(context(1, FakeStore()))
    return result


async def first_event(trigger: OmniDeliveryReportTrigger) -> Any:
    async for event in trigger.run():
        return event
    raise AssertionError("the trigger ended without an event")


def outcomes(summary: dict[str, Any]) -> dict[str, int]:
    return {k: v for k, v in summary["outcomes"].items() if v}


# -- 1. the hook ----------------------------------------------------------------------------------


def test_a_bulk_reaches_the_sandbox_as_a_viber_bm_message_with_an_sms_failover(
    sandbox: OmniSandbox, ma_connection: str, wire: Wire
) -> None:
    """The body on the wire: VIBER_BM first (image, caption, button, its validity), SMS in ``failover``
    with its own validity and sender, ``byChannel`` destinations keeping the message ids, the bulk id and
    ``sendAt`` in ``options.schedule``, ``callbackData`` and the delivery URL in ``webhooks``."""
    send_at = sandbox_time(sandbox, timedelta(hours=1))
    bulk, fields = bulk_of(
        "ma.hook.1",
        [VIBER_OK, SMS_OK],
        viber={**VIBER, "validityPeriod": 2, "validityPeriodTimeUnit": "HOURS"},
        sms={**SMS, "validityPeriod": 30, "validityPeriodTimeUnit": "MINUTES"},
        sendAt=send_at,
        notifyUrl="https://hooks.example.com/dlr",
        callbackData="dag=parcels",
    )

    acceptance = OmniHook(ma_connection).send_messages_api_bulk(bulk, template_of(fields))

    (body,) = wire.bodies()
    assert body == {
        "messages": [
            {
                "channel": "VIBER_BM",
                "sender": "ViberCo",
                "content": {
                    "body": {"type": "IMAGE", "url": VIBER["imageURL"], "text": VIBER["text"]},
                    "buttons": [{"type": "OPEN_URL", "text": "Track it", "url": VIBER["buttonURL"]}],
                },
                "options": {"validityPeriod": {"amount": 2, "timeUnit": "HOURS"}},
                "webhooks": {
                    "delivery": {"url": "https://hooks.example.com/dlr"},
                    "callbackData": "dag=parcels",
                },
                "failover": [
                    {
                        "channel": "SMS",
                        "sender": "InfoSMS",
                        "content": {"body": {"type": "TEXT", "text": SMS["text"]}},
                        "validityPeriod": {"amount": 30, "timeUnit": "MINUTES"},
                    }
                ],
                "destinations": [
                    {
                        "messageId": f"ma.hook.1.{i}",
                        "byChannel": [{"channel": "VIBER_BM", "to": n}, {"channel": "SMS", "to": n}],
                    }
                    for i, n in enumerate([VIBER_OK, SMS_OK])
                ],
            }
        ],
        "options": {"schedule": {"bulkId": "ma.hook.1", "sendAt": send_at}},
    }
    assert acceptance.bulk_id == "ma.hook.1"
    assert (acceptance.messages, acceptance.refused) == (2, [])
    assert acceptance.message_ids == {"ma.hook.1.0", "ma.hook.1.1"}
    stats = ma_stats(sandbox)
    assert (stats["accepted_requests"], stats["destinations"], stats["omni_destinations"]) == (1, 2, 0)

    # the sandbox took it as written: nothing before sendAt, then each step with its own sender
    sandbox.admin.advance(minutes=50)
    assert pull_reports(sandbox, bulkId="ma.hook.1") == []
    sandbox.admin.advance(hours=3)
    reports = {r["destination"]: r for r in pull_reports(sandbox, bulkId="ma.hook.1")}
    assert {n: (r["channel"], r["sender"]) for n, r in reports.items()} == {
        VIBER_OK: ("VIBER_BM", "ViberCo"),
        SMS_OK: ("SMS", "InfoSMS"),
    }
    assert {r["callbackData"] for r in reports.values()} == {"dag=parcels"}
    assert all(r["sentAt"] >= send_at for r in reports.values())


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"status": 500, "process": True}, id="processed-then-500"),
        pytest.param({"drop": True, "process": True}, id="processed-then-dropped"),
        pytest.param({"status": 503}, id="503-not-processed"),
    ],
)
def test_an_ambiguous_answer_to_a_send_is_uncertain_and_not_retried(
    sandbox: OmniSandbox, ma_connection: str, wire: Wire, fault: dict[str, Any]
) -> None:
    """A 5xx or a dropped connection may follow a processed send: OmniSendUncertainError with the bulk
    id, one POST only, and advice that does not send the user to OMNI's logs."""
    sandbox.admin.add_fault(endpoint="messages", times=1, **fault)
    bulk, fields = bulk_of("ma.doubt.1", [VIBER_OK, SMS_OK])

    with pytest.raises(OmniSendUncertainError) as caught:
        OmniHook(ma_connection).send_messages_api_bulk(bulk, template_of(fields))

    error = caught.value
    assert error.bulk_id == "ma.doubt.1"
    assert "ma.doubt.1" in str(error)
    assert "MAY have been sent" in str(error)
    assert "/omni/1/logs" not in str(error)
    assert "no logs" in str(error)
    assert len(wire.bodies()) == 1  # never sent again by the hook
    assert ma_stats(sandbox)["destinations"] == (2 if fault.get("process") else 0)


@pytest.mark.parametrize("process", [True, False], ids=["processed", "not-processed"])
@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("empty", "empty body"),
        ("empty_object", "bulkId"),
        ("request_error", "bulkId"),
        ("missing_messages", "1 message(s) for 2"),
        ("wrong_bulk_id", "bulkId is"),
    ],
)
def test_a_2xx_answer_that_does_not_match_the_bulk_is_uncertain(
    sandbox: OmniSandbox, ma_connection: str, kind: str, reason: str, process: bool
) -> None:
    sandbox.admin.add_fault(endpoint="messages", answer=kind, process=process, times=1)
    bulk, fields = bulk_of("ma.wrong", [VIBER_OK, SMS_OK])

    with pytest.raises(OmniSendUncertainError) as caught:
        OmniHook(ma_connection).send_messages_api_bulk(bulk, template_of(fields))

    assert caught.value.bulk_id == "ma.wrong"
    assert reason in str(caught.value)
    assert "/omni/1/logs" not in str(caught.value)
    stats = ma_stats(sandbox)
    assert stats["requests"] == {"messages": 1}  # never retried
    assert stats["destinations"] == (2 if process else 0)


def test_a_400_with_violations_names_the_field(sandbox: OmniSandbox, ma_connection: str) -> None:
    """Something the OMNI models let through but the Messages API refuses (a blank Viber text)."""
    bulk, fields = bulk_of("ma.bad.1", [VIBER_OK], viber={"text": "   "})

    with pytest.raises(OmniValidationError) as caught:
        OmniHook(ma_connection).send_messages_api_bulk(bulk, template_of(fields))

    error = caught.value
    assert error.status_code == 400
    assert "messages[0].content.body.text" in error.validation_errors
    assert "messages[0].content.body.text" in str(error)
    assert "must not be blank" in str(error)
    assert ma_stats(sandbox)["destinations"] == 0


@pytest.mark.parametrize(
    "call",
    [
        pytest.param("send", id="send"),
        pytest.param("validate", id="validate"),
        pytest.param("reports", id="reports"),
    ],
)
def test_a_key_without_the_messages_api_scope_gets_an_auth_error_naming_it(
    sandbox: OmniSandbox, ma_connection: str, call: str
) -> None:
    sandbox.admin.configure(api_key_scopes=["omni-failover:message:send", "omni-failover:manage"])
    hook = OmniHook(ma_connection)
    bulk, fields = bulk_of("ma.scope.1", [VIBER_OK])
    calls: dict[str, Callable[[], Any]] = {
        "send": lambda: hook.send_messages_api_bulk(bulk, template_of(fields)),
        "validate": lambda: hook.validate_messages_api(template_of(fields), bulk),
        "reports": lambda: hook.get_messages_api_reports(bulk_id="ma.scope.1"),
    }

    with pytest.raises(OmniAuthError) as caught:
        calls[call]()

    assert caught.value.status_code == 403
    assert "messages-api:message:send" in str(caught.value)
    assert "omni-failover" not in str(caught.value).split("lack the scope", 1)[-1]
    assert ma_stats(sandbox)["destinations"] == 0


def test_reports_are_read_back_as_omni_reports_and_handed_out_once(
    sandbox: OmniSandbox, ma_connection: str
) -> None:
    hook = OmniHook(ma_connection)
    bulk, fields = bulk_of("ma.rep.1", [VIBER_OK, SMS_OK, UNREACHABLE], callbackData="cb-1")
    hook.send_messages_api_bulk(bulk, template_of(fields))
    sandbox.admin.advance(hours=1)

    reports = hook.get_messages_api_reports(bulk_id="ma.rep.1")

    by_number = {r.to: r for r in reports}
    assert set(by_number) == {VIBER_OK, SMS_OK, UNREACHABLE}
    assert by_number[VIBER_OK].channel == "VIBER"
    assert by_number[SMS_OK].channel == "SMS"
    assert by_number[UNREACHABLE].channel == "SMS"
    status = by_number[UNREACHABLE].status
    assert status is not None and status.group_name == "UNDELIVERABLE"
    assert {r.message_id for r in reports} == {"ma.rep.1.0", "ma.rep.1.1", "ma.rep.1.2"}
    assert {r.callback_data for r in reports} == {"cb-1"}
    assert {r.bulk_id for r in reports} == {"ma.rep.1"}
    # consumed: neither the sync nor the async read gets them again
    assert hook.get_messages_api_reports(bulk_id="ma.rep.1") == []
    assert asyncio.run(hook.aget_messages_api_reports(bulk_id="ma.rep.1")) == []
    assert ma_stats(sandbox)["reports_handed_out"] == 3


def test_the_async_read_maps_reports_the_same_way(sandbox: OmniSandbox, ma_connection: str) -> None:
    hook = OmniHook(ma_connection)
    bulk, fields = bulk_of("ma.arep.1", [VIBER_OK, SMS_OK])
    hook.send_messages_api_bulk(bulk, template_of(fields))
    sandbox.admin.advance(hours=1)

    reports = asyncio.run(hook.aget_messages_api_reports(message_id="ma.arep.1.1"))

    assert [(r.to, r.channel, r.message_id) for r in reports] == [(SMS_OK, "SMS", "ma.arep.1.1")]
    assert [r.to for r in hook.get_messages_api_reports(bulk_id="ma.arep.1")] == [VIBER_OK]


# -- 2. the send operator -------------------------------------------------------------------------


def nothing_went_out(sandbox: OmniSandbox) -> None:
    stats = ma_stats(sandbox)
    assert stats["requests"].get("messages", 0) == 0, stats
    assert stats["requests"].get("messages.validate", 0) == 0, stats
    assert stats["requests"].get("advanced", 0) == 0, stats
    assert stats["destinations"] == stats["omni_destinations"] == 0, stats


@pytest.mark.parametrize(
    ("task", "extra", "field"),
    [
        pytest.param({"viber_validity": timedelta(hours=49)}, {}, "viber.validityPeriod", id="viber-49h"),
        pytest.param(
            {"viber_validity": None},
            {"default_viber_validity_minutes": 14 * 24 * 60},
            "viber.validityPeriod",
            id="omni-default-14-days-from-the-connection",
        ),
        pytest.param(
            {
                "viber_validity": None,
                "viber": {**VIBER, "validityPeriod": 3, "validityPeriodTimeUnit": "DAYS"},
            },
            {},
            "viber.validityPeriod",
            id="viber-3-days-in-the-block",
        ),
    ],
)
def test_a_validity_above_48_hours_is_refused_before_anything_is_sent(
    sandbox: OmniSandbox,
    monkeypatch: pytest.MonkeyPatch,
    task: dict[str, Any],
    extra: dict[str, Any],
    field: str,
) -> None:
    use_connection(monkeypatch, sandbox, backend="messages_api", **SENDERS, **extra)
    op = make_send([VIBER_OK, SMS_OK], **task)

    with pytest.raises(OmniValidationError) as caught:
        op.execute(context(1, FakeStore()))

    message = str(caught.value)
    assert field in message and field in caught.value.validation_errors
    assert "10 seconds to 48 hours" in message
    assert "nothing was sent" in message
    nothing_went_out(sandbox)


def test_exactly_48_hours_is_sent_as_it_is(sandbox: OmniSandbox, ma_connection: str, wire: Wire) -> None:
    make_send([VIBER_OK], viber_validity=timedelta(hours=48), sms_validity=timedelta(seconds=30)).execute(
        context(1, FakeStore())
    )
    (body,) = wire.bodies()
    (message,) = body["messages"]
    assert message["options"]["validityPeriod"] == {"amount": 48, "timeUnit": "HOURS"}
    assert message["failover"][0]["validityPeriod"] == {"amount": 30, "timeUnit": "SECONDS"}


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        pytest.param({}, "viber_sender", id="none"),
        pytest.param({"viber_sender": "ViberCo"}, "sms_sender", id="no-sms-sender"),
        pytest.param({"sms_sender": "InfoSMS"}, "viber_sender", id="no-viber-sender"),
    ],
)
def test_a_missing_sender_is_named_before_anything_is_sent(
    sandbox: OmniSandbox, monkeypatch: pytest.MonkeyPatch, given: dict[str, str], missing: str
) -> None:
    use_connection(monkeypatch, sandbox, backend="messages_api")
    with pytest.raises(OmniValidationError) as caught:
        make_send([VIBER_OK], **given).execute(context(1, FakeStore()))
    assert missing in str(caught.value)
    assert missing in caught.value.validation_errors
    nothing_went_out(sandbox)


def test_a_destination_without_a_phone_number_is_refused_before_the_first_bulk(
    sandbox: OmniSandbox, ma_connection: str
) -> None:
    """An e-mail-only destination in the third bulk: nothing of the first two goes out either."""
    people: list[Any] = [f"417930{i:05d}" for i in range(10)]
    people.insert(8, {"to": {"emailAddress": "someone@example.com"}})
    with pytest.raises(OmniValidationError) as caught:
        make_send(people, batch_size=3, max_in_flight=1).execute(context(1, FakeStore()))
    assert "phoneNumber" in str(caught.value)
    assert "[8]" in str(caught.value)  # which destination
    nothing_went_out(sandbox)


def test_a_scenario_key_is_not_used_on_the_messages_api_and_says_so(
    sandbox: OmniSandbox, ma_connection: str, wire: Wire, logs: Callable[[], str]
) -> None:
    result = make_send([VIBER_OK], scenario_key="my-omni-scenario").execute(context(1, FakeStore()))

    assert "scenario_key my-omni-scenario is not used" in logs()
    (body,) = wire.bodies()
    assert "scenarioKey" not in json.dumps(body)
    assert all(not path.startswith("/omni/") for _, path, _ in wire.sent)
    assert result["backend"] == "messages_api" and result["flow"] == ["VIBER", "SMS"]


# -- exactly once across tries ------------------------------------------------------------------------

PEOPLE = [f"417930{i:04d}0" for i in range(6)]  # all Viber users; 3 bulks of 2


def test_an_ambiguous_bulk_fails_the_task_and_is_not_sent_again_unless_asked(
    sandbox: OmniSandbox, ma_connection: str, wire: Wire
) -> None:
    """Simulated retries with one task state store: try 1's first bulk is processed, then answered 500,
    and the try stops there.  Try 2 sends the other bulks, not that one, and fails naming it; so does
    try 3, sending nothing; try 4 with ``resend_unconfirmed`` sends it (a duplicate for its people)."""
    store = FakeStore()
    sandbox.admin.add_fault(endpoint="messages", status=500, process=True, times=1)

    with pytest.raises(OmniSendUncertainError) as first:
        make_send(PEOPLE, batch_size=2, max_in_flight=1).execute(context(1, store))
    doubtful = first.value.bulk_id
    assert doubtful is not None and doubtful in str(first.value)
    assert "1 bulk(s) may or may not have gone out" in str(first.value)
    assert "/omni/1/logs" not in str(first.value)
    assert [b["options"]["schedule"]["bulkId"] for b in wire.bodies()] == [doubtful]

    with pytest.raises(OmniSendUncertainError) as second:
        make_send(PEOPLE, batch_size=2, max_in_flight=1).execute(context(2, store))
    assert doubtful in str(second.value)
    bulk_ids = [b["options"]["schedule"]["bulkId"] for b in wire.bodies()]
    assert len(bulk_ids) == 3 and bulk_ids.count(doubtful) == 1
    assert wire.numbers_sent() == dict.fromkeys(PEOPLE, 1)

    with pytest.raises(OmniSendUncertainError):
        make_send(PEOPLE, batch_size=2).execute(context(3, store))
    assert len(wire.bodies()) == 3  # nothing again
    assert all(not path.startswith("/omni/") for _, path, _ in wire.sent)  # no OMNI logs look-up

    result = make_send(PEOPLE, batch_size=2, resend_unconfirmed=True).execute(context(4, store))
    (again,) = wire.bodies()[3:]
    assert again["options"]["schedule"]["bulkId"].startswith(doubtful)
    assert result["accepted"] == 6
    resent = {d["byChannel"][0]["to"] for d in again["messages"][0]["destinations"]}
    assert len(resent) == 2
    assert accepted_per_number(sandbox) == {n: 2 if n in resent else 1 for n in PEOPLE}


def test_the_uncertain_error_does_not_claim_that_unsent_bulks_went_out(
    sandbox: OmniSandbox, ma_connection: str, wire: Wire
) -> None:
    sandbox.admin.add_fault(endpoint="messages", status=500, process=True, times=1)
    with pytest.raises(OmniSendUncertainError) as caught:
        make_send(PEOPLE, batch_size=2, max_in_flight=1).execute(context(1, FakeStore()))
    assert len(wire.bodies()) == 1  # bulks 2 and 3 (4 people) were not sent in this try
    assert "Everything else is sent" not in str(caught.value)


def test_a_retry_without_a_task_state_store_sends_nothing_by_default(
    sandbox: OmniSandbox, ma_connection: str, wire: Wire
) -> None:
    """Airflow before 3.3 (or a cleared store): the retry cannot know what try 1 sent (no logs), so it
    sends nothing unless ``resend_unconfirmed``, which sends to everyone."""
    sandbox.admin.add_fault(endpoint="messages", status=500, process=True, times=1)
    with pytest.raises(OmniSendUncertainError):
        make_send(PEOPLE, batch_size=2, max_in_flight=1).execute(context(1, None))
    assert len(wire.bodies()) == 1

    with pytest.raises(OmniSendUncertainError, match="resend_unconfirmed") as caught:
        make_send(PEOPLE, batch_size=2).execute(context(2, None))
    assert "Nothing was sent" in str(caught.value)
    assert len(wire.bodies()) == 1

    make_send(PEOPLE, batch_size=2, resend_unconfirmed=True).execute(context(3, None))
    first = {d["byChannel"][0]["to"] for d in wire.bodies()[0]["messages"][0]["destinations"]}
    assert accepted_per_number(sandbox) == {n: 2 if n in first else 1 for n in PEOPLE}


@pytest.mark.dag
@pytest.mark.skipif(not HAS_TASK_STATE_STORE, reason="needs Airflow 3.3's task state store")
def test_a_real_airflow_retry_does_not_send_an_ambiguous_bulk_again(
    sandbox: OmniSandbox, ma_connection: str, run_dag: Any, task_states: Any, wire: Wire
) -> None:
    from tests.airflow_compat import DAG

    sandbox.admin.add_fault(endpoint="messages", status=500, process=True, times=1)
    with DAG("ma_retry", schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False) as dag:
        make_send(PEOPLE, batch_size=2, max_in_flight=1, retries=1, retry_delay=timedelta(0))

    dr = run_dag(dag)

    assert task_states(dr)["send"] == "failed"  # try 2 still fails, naming the bulk in doubt
    # try 1 stopped after the bulk in doubt; try 2 sent the two others, not that one again
    assert len(wire.bodies()) == 3
    assert wire.numbers_sent() == dict.fromkeys(PEOPLE, 1)
    assert accepted_per_number(sandbox) == dict.fromkeys(PEOPLE, 1)


# -- dry run, the connection's extras, the backend switch -----------------------------------------


def test_a_dry_run_asks_validate_once_and_sends_nothing(
    sandbox: OmniSandbox, ma_connection: str, wire: Wire
) -> None:
    result = make_send(PEOPLE, batch_size=2, dry_run=True).execute(context(1, FakeStore()))

    assert result["dry_run"] is True and result["flow"] == ["VIBER", "SMS"]
    assert len(result["bulks"]) == 3
    stats = ma_stats(sandbox)
    assert stats["requests"].get("messages.validate") == 1
    assert stats["requests"].get("messages", 0) == 0
    assert stats["destinations"] == 0
    (checked,) = wire.bodies(VALIDATE)
    assert checked["messages"][0]["channel"] == "VIBER_BM"
    assert checked["messages"][0]["failover"][0]["channel"] == "SMS"
    sandbox.admin.advance(hours=3)
    assert pull_reports(sandbox) == []


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "send"])
def test_a_request_the_messages_api_refuses_fails_with_its_violation(
    sandbox: OmniSandbox, ma_connection: str, dry_run: bool
) -> None:
    """A blank Viber text passes the OMNI models; Infobip refuses it, naming the field: the dry run
    through ``/messages/validate``, the send with a 400 (nothing accepted, and a fixed retry sends)."""
    store = FakeStore()
    with pytest.raises(OmniValidationError) as caught:
        make_send(PEOPLE, viber={"text": "   "}, dry_run=dry_run).execute(context(1, store))
    assert "messages[0].content.body.text" in str(caught.value)
    assert "must not be blank" in str(caught.value)
    stats = ma_stats(sandbox)
    assert stats["requests"].get("messages.validate", 0) == (1 if dry_run else 0)
    assert stats["requests"].get("messages", 0) == (0 if dry_run else 1)
    assert stats["destinations"] == 0
    if not dry_run:  # refused before processing: the corrected retry sends everyone, once
        make_send(PEOPLE).execute(context(2, store))
        assert accepted_per_number(sandbox) == dict.fromkeys(PEOPLE, 1)


def test_the_connection_extras_choose_the_backend_and_the_senders(
    sandbox: OmniSandbox, ma_connection: str, wire: Wire
) -> None:
    hook = OmniHook(ma_connection)
    assert hook.backend == "messages_api"
    assert hook.senders() == Senders(viber="ViberCo", sms="InfoSMS")
    assert hook.senders(sms="Other") == Senders(viber="ViberCo", sms="Other")

    result = make_send([VIBER_OK, SMS_OK]).execute(context(1, FakeStore()))

    assert result["backend"] == "messages_api" and result["accepted"] == 2
    (body,) = wire.bodies()
    message = body["messages"][0]
    assert (message["sender"], message["failover"][0]["sender"]) == ("ViberCo", "InfoSMS")
    stats = ma_stats(sandbox)
    assert (stats["destinations"], stats["omni_destinations"]) == (2, 0)


def test_the_tasks_senders_win_over_the_connections(
    sandbox: OmniSandbox, ma_connection: str, wire: Wire
) -> None:
    make_send([VIBER_OK], viber_sender="TaskViber", sms_sender="TaskSMS").execute(context(1, FakeStore()))
    message = wire.bodies()[0]["messages"][0]
    assert (message["sender"], message["failover"][0]["sender"]) == ("TaskViber", "TaskSMS")


def test_the_tasks_backend_omni_wins_over_a_connection_saying_messages_api(
    sandbox: OmniSandbox, ma_connection: str, wire: Wire
) -> None:
    key = (
        OmniHook(ma_connection)
        .create_scenario(
            "ma-tests", [{"channel": "VIBER", "from": "ViberCo"}, {"channel": "SMS", "from": "InfoSMS"}]
        )
        .key
    )

    result = make_send([VIBER_OK, SMS_OK], backend="omni", scenario_key=key).execute(context(1, FakeStore()))

    assert result.get("backend", "omni") == "omni" and result["accepted"] == 2
    assert wire.bodies() == []
    assert [path for method, path, _ in wire.sent if method == "POST"][-1] == "/omni/1/advanced"
    stats = ma_stats(sandbox)
    assert (stats["destinations"], stats["omni_destinations"]) == (0, 2)


@pytest.mark.parametrize("name", ["messages", "sms", "OMNI-v2"])
def test_a_bad_backend_name_is_refused_naming_the_rule(
    sandbox: OmniSandbox, ma_connection: str, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    with pytest.raises(OmniValidationError) as caught:
        make_send([VIBER_OK], backend=name).execute(context(1, FakeStore()))
    assert "'omni' or 'messages_api'" in str(caught.value)
    assert repr(name) in str(caught.value)
    nothing_went_out(sandbox)

    use_connection(monkeypatch, sandbox, backend=name, **SENDERS)  # the same in the connection
    with pytest.raises(Exception, match="'omni' or 'messages_api'"):
        make_send([VIBER_OK]).execute(context(1, FakeStore()))
    nothing_went_out(sandbox)


# -- 3. the delivery wait -------------------------------------------------------------------------

#: Final outcome of each persona on VIBER_BM then SMS.
PERSONA_OUTCOME = {"0": "VIBER_DELIVERED", "1": "VIBER_DELIVERED", "6": "SMS_DELIVERED", "8": "FAILED"}
TWO_BULKS = [VIBER_OK, SMS_OK, UNREACHABLE, "41793026721"]


class DieOnCall:
    """Wrap ``get_messages_api_reports``: call ``n`` raises ``error`` before its request (a worker killed,
    or an error that cannot heal); keeps what the earlier calls returned."""

    def __init__(self, real: Callable[..., Any], n: int, error: BaseException) -> None:
        self.real, self.n, self.error, self.calls = real, n, error, 0
        self.returned: list[Any] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == self.n:
            raise self.error
        reports = self.real(*args, **kwargs)
        self.returned += reports
        return reports


def expected_outcomes(numbers: list[str], pending: frozenset[str] | set[str] = frozenset()) -> dict[str, int]:
    counts: dict[str, int] = {}
    for number in numbers:
        outcome = "PENDING" if number in pending else PERSONA_OUTCOME[number[-1]]
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def first_poke_dies(result: dict[str, Any], ctx: Any, error: BaseException) -> set[str]:
    """A sensor whose worker dies at its second report request (the first bulk's reports consumed);
    return the numbers whose reports it consumed."""
    sensor = make_sensor(send_result=result)
    dying = DieOnCall(sensor.hook.get_messages_api_reports, 2, error)
    sensor.hook.get_messages_api_reports = dying  # type: ignore[method-assign]
    with pytest.raises(type(error)):
        sensor.execute(ctx)
    assert dying.calls == 2
    consumed = {r.to for r in dying.returned}
    assert len(consumed) == 2  # one bulk's worth
    return consumed


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(SystemExit("simulated: the worker was killed"), id="worker-killed"),
        pytest.param(OmniAuthError("simulated 403", status_code=403), id="non-transient-error"),
    ],
)
def test_reports_consumed_before_a_worker_dies_are_kept_in_the_task_state_store(
    sandbox: OmniSandbox, ma_connection: str, error: BaseException
) -> None:
    result = send_now(TWO_BULKS, batch_size=2)
    assert len(result["bulks"]) == 2
    sandbox.admin.advance(hours=3)  # every report is due
    store = FakeStore()

    consumed = first_poke_dies(result, context(1, store, "wait"), error)
    assert ma_stats(sandbox)["reports_handed_out"] == 2

    summary = make_sensor(send_result=result, timeout=5).execute(context(2, store, "wait"))

    assert summary["outcomes"] == {"PENDING": 0, **expected_outcomes(TWO_BULKS)}, consumed
    assert summary["all_final"] and not summary["timed_out"]
    assert [f["channel"] for f in summary["failed"]] == ["SMS"]
    assert ma_stats(sandbox)["reports_handed_out"] == 4  # nothing asked twice, nothing lost


def test_without_a_task_state_store_consumed_reports_are_lost_and_stay_pending(
    sandbox: OmniSandbox, ma_connection: str, logs: Callable[[], str]
) -> None:
    """Before Airflow 3.3: what the dead worker consumed is gone (no logs to rebuild from); the next
    run says so and leaves those destinations PENDING, neither delivered nor failed."""
    result = send_now(TWO_BULKS, batch_size=2)
    sandbox.admin.advance(hours=3)
    consumed = first_poke_dies(result, context(1, None, "wait"), SystemExit("killed"))

    summary = make_sensor(send_result=result, timeout=0.5, succeed_on_timeout=True).execute(
        context(2, None, "wait")
    )

    assert summary["outcomes"] == {
        "VIBER_DELIVERED": 0,
        "SMS_DELIVERED": 0,
        "FAILED": 0,
        **expected_outcomes(TWO_BULKS, pending=consumed),
    }
    assert summary["timed_out"] is True and summary["all_final"] is False
    assert "reports an earlier run consumed are lost" in logs()

    with pytest.raises(AirflowSensorTimeout, match="4 destination\\(s\\) still pending"):
        make_sensor(send_result=result, timeout=0.3).execute(context(3, None, "wait"))


def test_a_deferrable_wait_consumes_nothing_before_deferring_and_the_trigger_gets_everything(
    sandbox: OmniSandbox, ma_connection: str
) -> None:
    numbers = [VIBER_OK, SMS_OK, UNREACHABLE]
    result = send_now(numbers)
    sandbox.admin.advance(hours=3)  # every report is due already
    store = FakeStore()
    sensor = make_sensor(send_result=result, deferrable=True, timeout=60)

    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context(1, store, "wait"))

    assert ma_stats(sandbox)["reports_handed_out"] == 0
    assert ma_stats(sandbox)["requests"].get("messages.reports", 0) == 0
    trigger = deferred.value.trigger
    assert isinstance(trigger, OmniDeliveryReportTrigger)
    # the triggerer rebuilds the trigger from its serialized form
    classpath, kwargs = trigger.serialize()
    assert classpath.endswith("OmniDeliveryReportTrigger") and kwargs["backend"] == "messages_api"
    event = asyncio.run(first_event(OmniDeliveryReportTrigger(**kwargs)))

    assert event.payload["status"] == "success"
    assert outcomes(event.payload["summary"]) == expected_outcomes(numbers)
    summary = make_sensor(send_result=result, deferrable=True).execute_complete(
        context(1, store, "wait"), event.payload
    )
    assert outcomes(summary) == expected_outcomes(numbers)
    assert [f["channel"] for f in summary["failed"]] == ["SMS"]
    assert ma_stats(sandbox)["reports_handed_out"] == 3


def test_the_wait_follows_the_sends_backend_whatever_the_connection_says(
    sandbox: OmniSandbox, omni_connection: str
) -> None:
    """The connection says nothing (OMNI); the send used ``backend="messages_api"``: its XCom tells."""
    result = send_now([VIBER_OK, SMS_OK], backend="messages_api", **SENDERS)
    sandbox.admin.advance(hours=1)
    summary = make_sensor(send_result=result).execute(context(1, FakeStore(), "wait"))
    assert outcomes(summary) == {"VIBER_DELIVERED": 1, "SMS_DELIVERED": 1}
    assert sandbox.admin.stats()["requests"].get("reports", 0) == 0  # never OMNI's reports


def test_detail_path_is_refused_on_the_messages_api(
    sandbox: OmniSandbox, ma_connection: str, tmp_path: Any
) -> None:
    result = send_now([VIBER_OK])
    sandbox.admin.advance(hours=1)
    sensor = make_sensor(send_result=result, detail_path=str(tmp_path / "detail.jsonl"))
    with pytest.raises(OmniValidationError, match="detail_path") as caught:
        sensor.execute(context(1, FakeStore(), "wait"))
    assert "logs" in str(caught.value)
    assert ma_stats(sandbox)["reports_handed_out"] == 0  # refused before consuming anything


def test_bare_bulk_ids_are_refused_but_sizes_work(sandbox: OmniSandbox, ma_connection: str) -> None:
    hook = OmniHook(ma_connection)
    bulk, fields = bulk_of("ma.ids.1", [VIBER_OK, SMS_OK])
    hook.send_messages_api_bulk(bulk, template_of(fields))
    sandbox.admin.advance(hours=1)

    with pytest.raises(OmniValidationError, match="bulk_ids") as caught:
        make_sensor(bulk_ids=["ma.ids.1"], backend="messages_api").execute(context(1, FakeStore(), "wait"))
    assert "{bulk_id: number of destinations}" in str(caught.value)
    assert ma_stats(sandbox)["reports_handed_out"] == 0

    # no backend argument: the connection's extra says messages_api
    summary = make_sensor(bulk_ids={"ma.ids.1": 2}).execute(context(1, FakeStore(), "wait"))
    assert outcomes(summary) == {"VIBER_DELIVERED": 1, "SMS_DELIVERED": 1}
    assert sandbox.admin.stats()["requests"].get("reports", 0) == 0


# -- per-step reports (receiveTriggeredFailoverReports) ---------------------------------------------


def send_with_per_step_reports(sandbox: OmniSandbox, bulk_id: str, numbers: list[str]) -> None:
    """A direct send asking for a report of every failover step (the operator has no switch for it),
    an hour of validity on each step."""
    hours = {"validityPeriod": 1, "validityPeriodTimeUnit": "HOURS"}
    bulk, fields = bulk_of(bulk_id, numbers, viber={**VIBER, **hours}, sms={**SMS, **hours})
    template = template_of(fields)
    webhooks = {"delivery": {"receiveTriggeredFailoverReports": True}}
    OmniHook().send_messages_api_bulk(
        bulk, MessageTemplate({**template.message, "webhooks": webhooks}, template.channels)
    )


def test_per_step_reports_end_on_the_sms_step_never_failed_on_viber(
    sandbox: OmniSandbox, ma_connection: str
) -> None:
    numbers = [VIBER_OK, SMS_OK, UNREACHABLE, SILENT]
    send_with_per_step_reports(sandbox, "ma.steps.1", numbers)
    store = FakeStore()
    sensor = make_sensor(bulk_ids={"ma.steps.1": 4}, backend="messages_api")

    sandbox.admin.advance(minutes=5)  # Viber failed for 6 and 8 (a report each), their SMS ended
    assert not sensor.poke(context(1, store, "wait")).is_done
    assert sensor._tracker is not None
    assert outcomes({"outcomes": sensor._tracker.counts()}) == {
        "VIBER_DELIVERED": 1,
        "SMS_DELIVERED": 1,
        "FAILED": 1,
        "PENDING": 1,
    }

    sandbox.admin.advance(minutes=85)  # the silent one's Viber step expired (a report); SMS goes on
    assert not sensor.poke(context(1, store, "wait")).is_done
    assert sensor._tracker.counts()["FAILED"] == 1 and sensor._tracker.counts()["PENDING"] == 1
    taken = ma_stats(sandbox)["reports_handed_out"]
    assert taken == 6  # 0: 1 report; 6, 8: 2 each; 9: its Viber step

    sandbox.admin.advance(hours=1)  # its SMS expired too
    done = make_sensor(bulk_ids={"ma.steps.1": 4}, backend="messages_api").poke(context(1, store, "wait"))
    assert done.is_done
    summary = done.xcom_value
    assert summary is not None
    assert outcomes(summary) == {"VIBER_DELIVERED": 1, "SMS_DELIVERED": 1, "FAILED": 2}
    assert sorted(f["channel"] for f in summary["failed"]) == ["SMS", "SMS"]


def test_the_trigger_reads_per_step_reports_to_the_sms_step(sandbox: OmniSandbox, ma_connection: str) -> None:
    """Every step's report due at once (the Viber failure and the SMS outcome in one answer); then
    a wait that times out while the SMS step is still running counts it PENDING, not FAILED."""
    send_with_per_step_reports(sandbox, "ma.steps.2", [VIBER_OK, SMS_OK, UNREACHABLE])
    send_with_per_step_reports(sandbox, "ma.steps.3", [SILENT])
    sandbox.admin.advance(minutes=90)  # 9: Viber expired, SMS still running

    def trigger(buckets: dict[str, int], seconds: float) -> OmniDeliveryReportTrigger:
        return OmniDeliveryReportTrigger(
            buckets=buckets,
            omni_conn_id=ma_connection,
            poll_interval=0.05,
            end_time=pendulum.now().timestamp() + seconds,
            backend="messages_api",
        )

    done = asyncio.run(first_event(trigger({"ma.steps.2": 3}, 30)))
    assert done.payload["status"] == "success"
    assert outcomes(done.payload["summary"]) == {"VIBER_DELIVERED": 1, "SMS_DELIVERED": 1, "FAILED": 1}
    assert [f["channel"] for f in done.payload["summary"]["failed"]] == ["SMS"]

    waiting = asyncio.run(first_event(trigger({"ma.steps.3": 1}, 0.3)))
    assert waiting.payload["status"] == "timeout"
    assert outcomes(waiting.payload["summary"]) == {"PENDING": 1}


def test_a_retry_after_a_trigger_error_keeps_what_that_trigger_consumed(
    sandbox: OmniSandbox, ma_connection: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.exceptions import AirflowException

    result = send_now(TWO_BULKS, batch_size=2)
    sandbox.admin.advance(hours=3)
    store = FakeStore()
    with pytest.raises(TaskDeferred) as first:
        make_sensor(send_result=result, deferrable=True, timeout=60).execute(context(1, store, "wait"))
    real = OmniHook.aget_messages_api_reports
    calls: list[int] = []

    async def second_call_refused(self: OmniHook, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:  # e.g. the API key was rotated mid-wait
            raise OmniAuthError("simulated 401", status_code=401)
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(OmniHook, "aget_messages_api_reports", second_call_refused)
    event = asyncio.run(first_event(first.value.trigger))
    assert event.payload["status"] == "error"
    assert (
        sum(event.payload["summary"]["outcomes"].values()) - event.payload["summary"]["outcomes"]["PENDING"]
        == 2
    )  # one bulk's outcomes were consumed
    with pytest.raises(AirflowException):
        make_sensor(send_result=result, deferrable=True, timeout=60).execute_complete(
            context(1, store, "wait"), event.payload
        )
    monkeypatch.setattr(OmniHook, "aget_messages_api_reports", real)

    with pytest.raises(TaskDeferred) as retry:  # try 2, the key fixed
        make_sensor(send_result=result, deferrable=True, timeout=60).execute(context(2, store, "wait"))
    again = asyncio.run(first_event(retry.value.trigger))

    assert outcomes(again.payload["summary"]) == expected_outcomes(TWO_BULKS)


@pytest.mark.parametrize(
    ("channels", "expected"),
    [
        pytest.param({"viber": {"text": "Hi"}}, {"VIBER_DELIVERED": 1, "FAILED": 2}, id="viber-only"),
        pytest.param({"sms": {"text": "Hi"}}, {"SMS_DELIVERED": 2, "FAILED": 1}, id="sms-only"),
    ],
)
def test_a_one_channel_flow_ends_on_that_channel(
    sandbox: OmniSandbox, ma_connection: str, wire: Wire, channels: dict[str, Any], expected: dict[str, int]
) -> None:
    """Without a failover step a Viber failure is final; an SMS-only send has SMS as its main channel."""
    channel = "VIBER_BM" if "viber" in channels else "SMS"
    result = send_now(
        [VIBER_OK, SMS_OK, UNREACHABLE],
        viber=channels.get("viber"),
        sms=channels.get("sms"),
        viber_validity=None,
        sms_validity=None,
    )
    (body,) = wire.bodies()
    message = body["messages"][0]
    assert message["channel"] == channel and "failover" not in message
    assert sorted(d["byChannel"][0]["to"] for d in message["destinations"]) == [VIBER_OK, SMS_OK, UNREACHABLE]
    assert all([c["channel"] for c in d["byChannel"]] == [channel] for d in message["destinations"])
    sandbox.admin.advance(hours=3)

    summary = make_sensor(send_result=result).execute(context(1, FakeStore(), "wait"))

    assert outcomes(summary) == expected
    assert {f["channel"] for f in summary["failed"]} == {"VIBER" if channel == "VIBER_BM" else "SMS"}


def test_a_bad_key_on_the_messages_api_is_not_pointed_at_omni_scopes(
    sandbox: OmniSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_OMNI_DEFAULT",
        json.dumps(
            {**sandbox.airflow_connection(backend="messages_api"), "password": "wrong-key-" + "x" * 10}
        ),
    )
    with pytest.raises(OmniAuthError) as caught:
        OmniHook().get_messages_api_reports(bulk_id="any")
    assert caught.value.status_code == 401
    assert "omni-failover" not in str(caught.value)


# -- answers the sandbox never gives (its answers always carry the bulk id) -------------------------------


def test_an_answer_without_a_bulk_id_is_matched_by_its_message_ids(
    monkeypatch: pytest.MonkeyPatch, requests_mock: Any
) -> None:
    """``bulkId`` is optional in the send answer of Infobip's document (it may be left out for one
    destination): the message ids alone then prove the answer is this bulk's."""
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_MA", json.dumps({"host": BASE, "password": "k" * 20}))
    bulk, fields = bulk_of("ma.nobulk", [VIBER_OK])
    accepted = {"messageId": bulk.message_ids[0], "destination": VIBER_OK, "status": {"groupName": "PENDING"}}
    requests_mock.post(f"{BASE}{MESSAGES}", json={"messages": [accepted]})

    acceptance = OmniHook("omni_ma").send_messages_api_bulk(bulk, template_of(fields))

    assert (acceptance.bulk_id, acceptance.messages, acceptance.refused) == ("ma.nobulk", 1, [])
    requests_mock.post(f"{BASE}{MESSAGES}", json={"messages": [{**accepted, "messageId": "someone-else"}]})
    with pytest.raises(OmniSendUncertainError, match="not in it"):
        OmniHook("omni_ma").send_messages_api_bulk(bulk, template_of(fields))


def test_a_report_without_a_bulk_id_counts_for_the_bulk_it_was_asked_for(
    monkeypatch: pytest.MonkeyPatch, requests_mock: Any
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_MA", json.dumps({"host": BASE, "password": "k" * 20}))
    report = {
        "event": "DELIVERY",
        "channel": "VIBER_BM",
        "sender": "ViberCo",
        "destination": VIBER_OK,
        "sentAt": "2026-11-29T10:00:00.000+0000",
        "doneAt": "2026-11-29T10:00:05.000+0000",
        "messageId": "m-1",
        "messageCount": 1,
        "mccMnc": 22801,
        "status": {"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET"},
        "error": {"id": 0, "name": "NO_ERROR", "permanent": False},
    }
    requests_mock.get(f"{BASE}{REPORTS}", json={"results": [report]})

    (read,) = OmniHook("omni_ma").get_messages_api_reports(bulk_id="b-1")

    assert (read.bulk_id, read.to, read.channel, read.mcc_mnc) == ("b-1", VIBER_OK, "VIBER", "22801")
    assert requests_mock.last_request.qs == {"bulkid": ["b-1"], "limit": ["1000"]}
