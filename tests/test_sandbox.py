"""The OMNI sandbox over HTTP: it must behave like Infobip's API as the OpenAPI document describes it.

Every JSON answer of an OMNI operation is validated against the document's response schema.
"""

from __future__ import annotations

import base64
import re
import time
from typing import TYPE_CHECKING, Any

import pytest
import requests

from tests.openapi import validate_response

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.timeout(120)

VIBER_SMS = [{"from": "ViberSender", "channel": "VIBER"}, {"from": "InfoSMS", "channel": "SMS"}]


class Omni:
    """A tiny OMNI client that checks every answer against the OpenAPI document."""

    def __init__(self, url: str, authorization: str | None) -> None:
        self.url = url
        self.session = requests.Session()
        if authorization:
            self.session.headers["Authorization"] = authorization

    def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = self.session.request(method, self.url + path, timeout=kwargs.pop("timeout", 10), **kwargs)
        assert response.status_code == expect, response.text
        body = response.json()
        validate_response(path, method, response.status_code, body)
        return body

    def scenario(self, flow: list[dict[str, str]] = VIBER_SMS, **extra: Any) -> str:
        return self.call("POST", "/omni/1/scenarios", 201, json={"name": "test", "flow": flow, **extra})[
            "key"
        ]

    def send(self, key: str | None, numbers: list[str], expect: int = 200, **body: Any) -> Any:
        payload: dict[str, Any] = {
            "destinations": [{"to": {"phoneNumber": n}} for n in numbers],
            "viber": {"text": "Hello on Viber"},
            "sms": {"text": "Hello by SMS"},
            **body,
        }
        if key is not None:
            payload["scenarioKey"] = key
        return self.call("POST", "/omni/1/advanced", expect, json=payload)

    def reports(self, expect: int = 200, **params: Any) -> list[dict[str, Any]]:
        return self.call("GET", "/omni/1/reports", expect, params=params).get("results")

    def logs(self, expect: int = 200, **params: Any) -> Any:
        return self.call("GET", "/omni/1/logs", expect, params=params)


@pytest.fixture
def omni(omni_sandbox: Any) -> Omni:
    return Omni(omni_sandbox.url, f"App {omni_sandbox.api_key}")


@pytest.fixture
def key(omni: Omni) -> str:
    return omni.scenario()


def finish(omni_sandbox: Any, hours: float = 3) -> None:
    """Let simulated messages reach their final state (not those of silent numbers with default
    validities: 72 h, beyond the 48 h for which reports and logs are kept)."""
    omni_sandbox.admin.advance(hours=hours)


def error_of(body: dict[str, Any]) -> dict[str, Any]:
    return body["requestError"]["serviceException"]


# -- scenarios -------------------------------------------------------------------------------------


def test_scenario_lifecycle(omni: Omni) -> None:
    created = omni.call("POST", "/omni/1/scenarios", 201, json={"name": "first", "flow": VIBER_SMS})
    assert re.fullmatch(r"[0-9A-F]{32}", created["key"])
    assert created["default"] is True  # the first scenario of an account becomes its default
    other = omni.call(
        "POST",
        "/omni/1/scenarios",
        201,
        json={"name": "sms only", "flow": [{"from": "Info", "channel": "SMS"}]},
    )
    assert other["default"] is False and other["key"] != created["key"]

    assert omni.call("GET", f"/omni/1/scenarios/{created['key']}") == created
    listed = omni.call("GET", "/omni/1/scenarios")["scenarios"]
    assert [s["key"] for s in listed] == [created["key"], other["key"]]
    assert [
        s["key"] for s in omni.call("GET", "/omni/1/scenarios", params={"isDefault": "true"})["scenarios"]
    ] == [created["key"]]
    page = omni.call("GET", "/omni/1/scenarios", params={"limit": 1, "page": 1})["scenarios"]
    assert [s["key"] for s in page] == [other["key"]]

    updated = omni.call(
        "PUT",
        f"/omni/1/scenarios/{other['key']}",
        json={"name": "renamed", "flow": VIBER_SMS, "default": True},
    )
    assert (updated["name"], updated["default"], updated["flow"]) == ("renamed", True, VIBER_SMS)
    assert omni.call("GET", f"/omni/1/scenarios/{created['key']}")["default"] is False


@pytest.mark.parametrize(
    ("method", "path_suffix", "body", "status", "field"),
    [
        ("POST", "", {"name": "x"}, 400, "flow"),
        ("POST", "", {"name": "x", "flow": [{"channel": "TELEGRAM"}]}, 400, "flow[0].channel"),
        ("POST", "", {"name": "x", "flow": [{"channel": "SMS"}, {"channel": "SMS"}]}, 400, "flow"),
        ("PUT", "/0123456789ABCDEF0123456789ABCDEF", {"flow": VIBER_SMS}, 404, None),
        ("GET", "/0123456789ABCDEF0123456789ABCDEF", None, 404, None),
    ],
    ids=["missing-flow", "unknown-channel", "repeated-channel", "update-unknown", "get-unknown"],
)
def test_scenario_errors(
    omni: Omni, method: str, path_suffix: str, body: Any, status: int, field: str | None
) -> None:
    answer = omni.call(method, f"/omni/1/scenarios{path_suffix}", status, json=body)
    assert error_of(answer)["messageId"] == ("BAD_REQUEST" if status == 400 else "NOT_FOUND")
    if field:
        assert field in error_of(answer)["validationErrors"]


# -- sending ---------------------------------------------------------------------------------------


def test_send_accepts_each_destination_as_pending(omni: Omni, key: str) -> None:
    answer = omni.send(key, ["41793026727", "+41793026731"])
    assert answer["bulkId"]  # generated for several destinations
    assert [m["to"]["phoneNumber"] for m in answer["messages"]] == ["41793026727", "41793026731"]
    for message in answer["messages"]:
        assert (message["status"]["groupName"], message["status"]["id"], message["status"]["name"]) == (
            "PENDING",
            7,
            "PENDING_ENROUTE",
        )
    assert len({m["messageId"] for m in answer["messages"]}) == 2


def test_bulk_id_is_echoed_when_given_or_several_destinations(omni: Omni, key: str) -> None:
    single = omni.send(key, ["41793026727"])
    assert "bulkId" not in single
    chosen = omni.call(
        "POST",
        "/omni/1/advanced",
        json={
            "scenarioKey": key,
            "bulkId": "my-bulk",
            "destinations": [{"messageId": "my-message", "to": {"phoneNumber": "41793026727"}}],
            "sms": {"text": "hi"},
        },
    )
    assert chosen["bulkId"] == "my-bulk"
    assert chosen["messages"][0]["messageId"] == "my-message"


def test_send_without_scenario_key_uses_the_default(omni: Omni, omni_sandbox: Any) -> None:
    no_default = omni.send(None, ["41793026720"], expect=400)
    assert "scenarioKey" in error_of(no_default)["validationErrors"]
    omni.scenario()
    omni.send(None, ["41793026720"])
    finish(omni_sandbox)
    assert [r["channel"] for r in omni.reports()] == ["VIBER"]


def _long(n: int) -> str:
    return "x" * n


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"destinations": []}, "destinations"),
        ({"scenarioKey": "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"}, "scenarioKey"),
        ({"viber": {"text": _long(1001)}}, "viber.text"),
        ({"destinations": [{"to": {"phoneNumber": "0041 79 302"}}]}, "destinations[0].to.phoneNumber"),
        ({"viber": {"text": "hi", "validityPeriod": 20, "validityPeriodTimeUnit": "SECONDS"}}, "viber"),
        ({"sms": {"text": "hi", "validityPeriod": 3, "validityPeriodTimeUnit": "DAYS"}}, "sms"),
        ({"viber": {"text": "hi", "buttonText": "Open"}}, "viber"),
        ({"viber": None, "sms": None}, "request"),
        ({"telegram": {"text": "hi"}}, "telegram"),
    ],
    ids=[
        "no-destinations",
        "unknown-scenario",
        "viber-text-too-long",
        "bad-phone-number",
        "viber-validity-too-short",
        "sms-validity-too-long",
        "button-without-url",
        "no-content",
        "unknown-field",
    ],
)
def test_rejected_sends_get_infobips_400(omni: Omni, key: str, change: dict[str, Any], field: str) -> None:
    payload = {
        "scenarioKey": key,
        "destinations": [{"to": {"phoneNumber": "41793026727"}}],
        "viber": {"text": "hi"},
        "sms": {"text": "hi"},
        **change,
    }
    payload = {k: v for k, v in payload.items() if v is not None}
    answer = omni.call("POST", "/omni/1/advanced", 400, json=payload)
    assert error_of(answer)["messageId"] == "BAD_REQUEST"
    assert field in error_of(answer)["validationErrors"], error_of(answer)


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2]"], ids=["malformed", "empty", "not-an-object"])
def test_bad_json_is_a_400_not_a_500(omni: Omni, body: bytes) -> None:
    answer = omni.call(
        "POST", "/omni/1/advanced", 400, data=body, headers={"Content-Type": "application/json"}
    )
    assert error_of(answer)["messageId"] == "BAD_REQUEST"


# -- personas --------------------------------------------------------------------------------------

PERSONA_OUTCOMES = {
    "0": ("VIBER", "DELIVERED_TO_HANDSET", "NO_ERROR"),
    "5": ("VIBER", "DELIVERED_TO_HANDSET", "NO_ERROR"),
    "6": ("SMS", "DELIVERED_TO_HANDSET", "NO_ERROR"),
    "7": ("SMS", "DELIVERED_TO_HANDSET", "NO_ERROR"),
    "8": ("SMS", "UNDELIVERABLE_NOT_DELIVERED", "EC_ABSENT_SUBSCRIBER"),
    "9": ("SMS", "EXPIRED_EXPIRED", "EC_VALIDITY_EXPIRED"),
}


def test_each_persona_ends_on_its_channel_with_its_status(omni: Omni, omni_sandbox: Any, key: str) -> None:
    numbers = [f"4179302672{digit}" for digit in "0123456789"]
    hour = {"validityPeriod": 1, "validityPeriodTimeUnit": "HOURS"}
    omni.send(key, numbers, viber={"text": "hi", **hour}, sms={"text": "hi", **hour})
    finish(omni_sandbox)
    reports = {r["to"][-1]: r for r in omni.reports(limit=100)}
    assert sorted(reports) == list("0123456789")
    for digit, (channel, status, error) in PERSONA_OUTCOMES.items():
        report = reports[digit]
        assert (report["channel"], report["status"]["name"], report["error"]["name"]) == (
            channel,
            status,
            error,
        )
    for digit in "1234":
        assert reports[digit]["channel"] == "VIBER"
    assert reports["0"]["status"]["groupId"] == 3 and reports["0"]["status"]["id"] == 5
    assert reports["0"]["price"] == {"pricePerMessage": 0.005, "currency": "EUR"}
    assert reports["6"]["price"] == {"pricePerMessage": 0.01, "currency": "EUR"}
    assert reports["0"]["mccMnc"] == "22801" and reports["0"]["messageCount"] == 1


def test_persona_of_a_silent_number_waits_for_both_default_validities(
    omni: Omni, omni_sandbox: Any, key: str
) -> None:
    omni_sandbox.admin.configure(time_scale=0)
    omni.send(key, ["41793026729"])
    omni_sandbox.admin.advance(hours=71)  # Viber 24 h + SMS 48 h = 72 h
    assert omni.reports() == []
    omni_sandbox.admin.advance(hours=2)
    assert [r["status"]["name"] for r in omni.reports()] == ["EXPIRED_EXPIRED"]


def test_personas_can_be_overridden_per_number_and_per_digit(omni: Omni, omni_sandbox: Any, key: str) -> None:
    listed = omni_sandbox.admin.personas()
    assert listed["by_last_digit"]["9"] == "silent" and "viber_user" in listed["definitions"]
    omni_sandbox.admin.set_personas({"41793026720": "unreachable", "1": "no_viber"})
    omni.send(key, ["41793026720", "41793026721", "41793026730"])
    finish(omni_sandbox)
    outcome = {r["to"]: (r["channel"], r["status"]["groupName"]) for r in omni.reports()}
    assert outcome == {
        "41793026720": ("SMS", "UNDELIVERABLE"),
        "41793026721": ("SMS", "DELIVERED"),
        "41793026730": ("VIBER", "DELIVERED"),
    }


def test_a_short_validity_expires_at_a_high_time_scale(omni: Omni, omni_sandbox: Any, key: str) -> None:
    """Viber 1 min then SMS 1 min: at 6000x the message expires in about 20 ms of real time."""
    omni_sandbox.admin.configure(time_scale=6000)
    omni.send(
        key,
        ["41793026729", "41793026739"],
        viber={"text": "hi", "validityPeriod": 1},
        sms={"text": "hi", "validityPeriod": 1},
    )
    reports: list[dict[str, Any]] = []
    for _ in range(500):
        reports += omni.reports()
        if len(reports) == 2:
            break
    assert sorted(r["status"]["name"] for r in reports) == ["EXPIRED_EXPIRED", "EXPIRED_EXPIRED"]
    report = reports[0]
    sent, done = (_epoch(report[k]) for k in ("sentAt", "doneAt"))
    assert done - sent == pytest.approx(120, abs=1)  # two simulated minutes


def test_viber_expiry_falls_back_to_sms(omni: Omni, omni_sandbox: Any, key: str) -> None:
    omni_sandbox.admin.configure(time_scale=0)
    omni_sandbox.admin.set_personas({"41793026721": "viber_silent"})
    omni.send(key, ["41793026721"], viber={"text": "hi", "validityPeriod": 2})
    omni_sandbox.admin.advance(minutes=1)
    assert omni.reports() == []
    omni_sandbox.admin.advance(minutes=2)
    (report,) = omni.reports()
    assert (report["channel"], report["status"]["name"]) == ("SMS", "DELIVERED_TO_HANDSET")


def _epoch(text: str) -> float:
    from airflow_provider_omni.models import parse_infobip_datetime

    parsed = parse_infobip_datetime(text)
    assert parsed is not None
    return parsed.timestamp()


def test_a_scenario_with_only_sms_or_a_request_without_viber_content(
    omni: Omni, omni_sandbox: Any, key: str
) -> None:
    sms_only = omni.scenario([{"from": "InfoSMS", "channel": "SMS"}])
    omni.send(sms_only, ["41793026720"])
    omni.call(
        "POST",
        "/omni/1/advanced",
        json={
            "scenarioKey": key,
            "destinations": [{"to": {"phoneNumber": "41793026731"}}],
            "sms": {"text": "x"},
        },
    )
    viber_only = omni.scenario([{"from": "ViberSender", "channel": "VIBER"}])
    omni.send(viber_only, ["41793026736"])
    finish(omni_sandbox)
    outcome = {r["to"]: (r["channel"], r["status"]["name"]) for r in omni.reports()}
    assert outcome == {
        "41793026720": ("SMS", "DELIVERED_TO_HANDSET"),
        "41793026731": ("SMS", "DELIVERED_TO_HANDSET"),  # no viber block: the Viber step is skipped
        "41793026736": ("VIBER", "UNDELIVERABLE_NOT_DELIVERED"),  # no Viber and no further step
    }


# -- reports ---------------------------------------------------------------------------------------


def test_reports_are_handed_out_once(omni: Omni, omni_sandbox: Any, key: str) -> None:
    omni_sandbox.admin.configure(time_scale=0)  # a frozen clock: only advance() moves it
    omni.send(key, ["41793026720", "41793026726"])
    assert omni.reports() == []  # nothing final yet: the simulated clock has not moved enough
    finish(omni_sandbox)
    first = omni.reports()
    assert len(first) == 2
    assert omni.reports() == []
    assert omni_sandbox.admin.stats()["messages_with_pending_reports"] == 0


def test_a_filtered_read_leaves_other_reports_for_other_consumers(
    omni: Omni, omni_sandbox: Any, key: str
) -> None:
    a = omni.send(key, ["41793026720", "41793026721"], bulkId="bulk-a")
    omni.send(key, ["41793026722", "41793026726"], bulkId="bulk-b")
    finish(omni_sandbox)

    assert {r["bulkId"] for r in omni.reports(bulkId="bulk-a")} == {"bulk-a"}
    assert omni.reports(bulkId="bulk-a") == []
    one_id = a["messages"][0]["messageId"]
    assert omni.reports(messageId=one_id) == []  # already taken with its bulk

    sms = omni.reports(channel="SMS")
    assert [(r["bulkId"], r["to"]) for r in sms] == [("bulk-b", "41793026726")]
    rest = omni.reports(limit=1)
    assert [(r["bulkId"], r["to"]) for r in rest] == [("bulk-b", "41793026722")]
    assert omni.reports() == []


def test_reports_by_message_id_and_limit_bounds(omni: Omni, omni_sandbox: Any, key: str) -> None:
    sent = omni.send(key, [f"4179302672{d}" for d in "012"])
    finish(omni_sandbox)
    wanted = sent["messages"][1]["messageId"]
    assert [r["messageId"] for r in omni.reports(messageId=wanted)] == [wanted]
    assert len(omni.reports(limit=1)) == 1
    for bad in ("1001", "-1", "many"):
        answer = omni.call("GET", "/omni/1/reports", 400, params={"limit": bad})
        assert "limit" in error_of(answer)["validationErrors"]
    assert (
        "channel"
        in error_of(omni.call("GET", "/omni/1/reports", 400, params={"channel": "FAX"}))["validationErrors"]
    )
    assert len(omni.reports()) == 1


def test_callback_data_comes_back_in_the_report(omni: Omni, omni_sandbox: Any, key: str) -> None:
    omni.send(key, ["41793026720"], callbackData="order-17")
    finish(omni_sandbox)
    assert omni.reports()[0]["callbackData"] == "order-17"


# -- report styles ---------------------------------------------------------------------------------


def _style_run(omni: Omni, omni_sandbox: Any, key: str, style: Any, number: str) -> tuple[Any, list[Any]]:
    omni_sandbox.admin.configure(report_style=style)
    sent = omni.send(key, [number, "41793026700"], bulkId="styled")
    finish(omni_sandbox)
    reports = [r for r in omni.reports(limit=100) if r["to"] == number]
    return sent["messages"][0]["messageId"], reports


def test_style_per_step_reports_the_failed_viber_step_first(omni: Omni, omni_sandbox: Any, key: str) -> None:
    message_id, reports = _style_run(omni, omni_sandbox, key, "per_step", "41793026726")
    steps = [(r["channel"], r["status"]["name"], r["error"]["name"], r["messageId"]) for r in reports]
    assert steps == [
        ("VIBER", "UNDELIVERABLE_NOT_DELIVERED", "EC_UNKNOWN_USER", message_id),
        ("SMS", "DELIVERED_TO_HANDSET", "NO_ERROR", message_id),
    ]


def test_style_fallback_new_message_id(omni: Omni, omni_sandbox: Any, key: str) -> None:
    message_id, reports = _style_run(omni, omni_sandbox, key, "fallback_new_message_id", "41793026726")
    (report,) = reports
    assert report["channel"] == "SMS" and report["messageId"] != message_id
    assert (report["bulkId"], report["to"]) == ("styled", "41793026726")


def test_styles_combine(omni: Omni, omni_sandbox: Any, key: str) -> None:
    message_id, reports = _style_run(
        omni, omni_sandbox, key, ["per_step", "fallback_new_message_id"], "41793026728"
    )
    assert [(r["channel"], r["messageId"] == message_id) for r in reports] == [
        ("VIBER", True),
        ("SMS", False),
    ]


def test_style_intermediate_sends_non_final_reports_first(omni: Omni, omni_sandbox: Any, key: str) -> None:
    _, reports = _style_run(omni, omni_sandbox, key, "intermediate", "41793026727")
    names = [r["status"]["name"] for r in reports]
    assert names[0] == "PENDING_ENROUTE" and names[-1] == "DELIVERED_TO_HANDSET"
    assert "DELIVERED_TO_OPERATOR" in names
    assert reports[-1]["channel"] == "SMS"


def test_unknown_report_style_is_refused(omni_sandbox: Any) -> None:
    with pytest.raises(ValueError, match="unknown report style"):
        omni_sandbox.admin.configure(report_style="everything")


# -- logs ------------------------------------------------------------------------------------------


def test_logs_are_re_readable_and_evolve_from_pending_to_final(
    omni: Omni, omni_sandbox: Any, key: str
) -> None:
    omni_sandbox.admin.configure(time_scale=0)
    sent = omni.send(key, ["41793026720", "41793026728"], bulkId="logged")
    pending = omni.logs(bulkId="logged")["results"]
    assert {row["status"]["groupName"] for row in pending} == {"PENDING"}
    finish(omni_sandbox)
    first = omni.logs(bulkId="logged")["results"]
    assert first == omni.logs(bulkId="logged")["results"]
    by_to = {row["to"]: row for row in first}
    assert (by_to["41793026720"]["channel"], by_to["41793026720"]["status"]["name"]) == (
        "VIBER",
        "DELIVERED_TO_HANDSET",
    )
    assert (by_to["41793026728"]["channel"], by_to["41793026728"]["from"]) == ("SMS", "InfoSMS")
    assert by_to["41793026728"]["text"] == "Hello by SMS"
    assert all("error" not in row for row in first)
    assert {row["messageId"] for row in first} == {m["messageId"] for m in sent["messages"]}
    assert omni.reports(bulkId="logged")  # logs did not consume the reports


def test_log_filters(omni: Omni, omni_sandbox: Any, key: str) -> None:
    a = omni.send(key, ["41793026720", "41793026726"], bulkId="a")
    omni.send(key, ["41793026721"], bulkId="b")
    omni.send(key, ["491701234560"], bulkId="c")
    finish(omni_sandbox)

    def tos(**params: Any) -> list[str]:
        return sorted(row["to"] for row in omni.logs(**params)["results"])

    assert tos(bulkId=["a", "b"]) == tos(bulkId="a,b") == ["41793026720", "41793026721", "41793026726"]
    ids = [m["messageId"] for m in a["messages"]]
    assert tos(messageId=ids) == tos(messageId=",".join(ids)) == ["41793026720", "41793026726"]
    assert tos(bulkId="a", messageId=ids[0]) == ["41793026720"]
    assert tos(channel="SMS") == ["41793026726"]
    assert tos(generalStatus="DELIVERED", **{"from": "InfoSMS"}) == ["41793026726"]
    assert tos(to="+41793026721") == ["41793026721"]
    assert tos(mcc="262", mnc="01") == ["491701234560"]
    assert len(omni.logs(limit=2)["results"]) == 2
    assert len(omni.logs()["results"]) == 4
    newest = omni.logs(limit=1)["results"][0]
    assert newest["to"] == "491701234560"
    since = newest["sentAt"]
    assert tos(sentSince=since) == ["491701234560"]
    assert "491701234560" not in tos(sentUntil="2000-01-01T00:00:00.000+0000")
    bad: list[tuple[dict[str, Any], str]] = [
        ({"generalStatus": "LOST"}, "generalStatus"),
        ({"sentSince": "yesterday"}, "sentSince"),
        ({"limit": 5000}, "limit"),
    ]
    for params, field in bad:
        assert field in error_of(omni.logs(expect=400, **params))["validationErrors"]


def test_logs_are_kept_for_the_retention_only(omni: Omni, omni_sandbox: Any, key: str) -> None:
    omni_sandbox.admin.configure(log_retention_hours=1, time_scale=0)
    omni.send(key, ["41793026720"])
    omni_sandbox.admin.advance(minutes=30)
    assert len(omni.logs()["results"]) == 1
    omni_sandbox.admin.advance(hours=2)
    assert omni.logs()["results"] == []
    assert omni_sandbox.admin.stats()["messages_logged"] == 0


# -- auth ------------------------------------------------------------------------------------------


def test_api_key_basic_and_bearer_are_accepted(omni_sandbox: Any, key: str) -> None:
    basic = base64.b64encode(f"sandbox:{omni_sandbox.api_key}".encode()).decode()
    token = requests.post(
        omni_sandbox.url + "/auth/1/oauth2/token",
        data={
            "client_id": "sandbox",
            "client_secret": omni_sandbox.api_key,
            "grant_type": "client_credentials",
        },
        timeout=10,
    )
    assert token.status_code == 200
    assert token.json()["token_type"] == "Bearer" and token.json()["expires_in"] == 3600
    for authorization in (
        f"App {omni_sandbox.api_key}",
        f"Basic {basic}",
        f"Bearer {token.json()['access_token']}",
    ):
        Omni(omni_sandbox.url, authorization).call("GET", f"/omni/1/scenarios/{key}")


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "App wrong-key",
        "Basic " + base64.b64encode(b"sandbox:wrong").decode(),
        "Basic !!!",
        "Bearer not-a-token",
        "IBSSO 2f9b4d31",
        "sandbox-key",
    ],
    ids=["none", "bad-key", "bad-password", "bad-base64", "unknown-token", "ibsso", "no-scheme"],
)
def test_bad_credentials_get_401_with_infobips_body(omni_sandbox: Any, authorization: str | None) -> None:
    for method, path in [("GET", "/omni/1/scenarios"), ("POST", "/omni/1/advanced"), ("GET", "/omni/1/logs")]:
        answer = Omni(omni_sandbox.url, authorization).call(method, path, 401, json={})
        assert answer == {
            "requestError": {
                "serviceException": {"messageId": "UNAUTHORIZED", "text": "Invalid login details"}
            }
        }


def test_token_endpoint_checks_the_client_and_tokens_expire(omni_sandbox: Any) -> None:
    url = omni_sandbox.url + "/auth/1/oauth2/token"
    wrong = requests.post(
        url,
        data={"client_id": "sandbox", "client_secret": "nope", "grant_type": "client_credentials"},
        timeout=10,
    )
    assert wrong.status_code == 401 and error_of(wrong.json())["messageId"] == "UNAUTHORIZED"
    grant = requests.post(
        url,
        data={"client_id": "sandbox", "client_secret": omni_sandbox.api_key, "grant_type": "password"},
        timeout=10,
    )
    assert grant.status_code == 400
    omni_sandbox.admin.configure(token_ttl=0)
    token = requests.post(
        url,
        data={
            "client_id": "sandbox",
            "client_secret": omni_sandbox.api_key,
            "grant_type": "client_credentials",
        },
        timeout=10,
    ).json()
    assert token["expires_in"] == 0
    Omni(omni_sandbox.url, f"Bearer {token['access_token']}").call("GET", "/omni/1/scenarios", 401)


# -- faults ----------------------------------------------------------------------------------------


def test_fault_429_with_retry_after_for_the_next_calls_only(omni: Omni, omni_sandbox: Any) -> None:
    omni_sandbox.admin.add_fault(endpoint="scenarios.list", status=429, times=2, retry_after=7)
    for _ in range(2):
        response = omni.session.get(omni.url + "/omni/1/scenarios", timeout=10)
        assert response.status_code == 429 and response.headers["Retry-After"] == "7"
        validate_response("/omni/1/scenarios/{scenarioKey}", "put", 429, response.json())
        assert error_of(response.json())["messageId"] == "TOO_MANY_REQUESTS"
    omni.call("GET", "/omni/1/scenarios")
    stats = omni_sandbox.admin.stats()
    assert stats["requests"]["scenarios.list"] == 3 and stats["faults_fired"]["scenarios.list"] == 2
    assert omni_sandbox.admin.faults() == []


@pytest.mark.parametrize("status", [500, 503])
def test_fault_server_errors(omni: Omni, omni_sandbox: Any, key: str, status: int) -> None:
    omni_sandbox.admin.add_fault(endpoint="advanced", status=status, times=1)
    answer = omni.session.post(
        omni.url + "/omni/1/advanced",
        json={
            "scenarioKey": key,
            "destinations": [{"to": {"phoneNumber": "41793026720"}}],
            "sms": {"text": "x"},
        },
        timeout=10,
    )
    assert answer.status_code == status
    assert error_of(answer.json())["messageId"] in {"GENERAL_ERROR", "SERVICE_UNAVAILABLE"}
    assert omni_sandbox.admin.stats()["destinations"] == 0  # not processed


def test_fault_latency_beyond_the_read_timeout(omni: Omni, omni_sandbox: Any) -> None:
    omni_sandbox.admin.add_fault(endpoint="reports", latency=1.0, times=1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        omni.session.get(omni.url + "/omni/1/reports", timeout=0.2)
    omni.reports()


def test_a_reset_forgets_a_request_still_waiting_on_latency(omni: Omni, omni_sandbox: Any) -> None:
    """The delayed request of a finished test must not consume the reports of the next one."""
    omni_sandbox.admin.add_fault(endpoint="reports", latency=0.5, times=1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        omni.session.get(omni.url + "/omni/1/reports", timeout=0.1)
    omni_sandbox.admin.reset()
    omni_sandbox.admin.configure(time_scale=0)
    omni.send(omni.scenario(), ["41793026720"])
    finish(omni_sandbox)
    time.sleep(1.0)  # the delayed request wakes up meanwhile
    assert len(omni.reports()) == 1


def test_fault_dropped_connection_is_a_connection_error(omni: Omni, omni_sandbox: Any) -> None:
    omni_sandbox.admin.add_fault(endpoint="logs", drop=True, times=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(omni.url + "/omni/1/logs", headers=dict(omni.session.headers), timeout=5)
    omni.logs()


def test_fault_rate_is_seeded_and_partial(omni: Omni, omni_sandbox: Any) -> None:
    def statuses() -> list[int]:
        omni_sandbox.admin.reset()
        omni_sandbox.admin.add_fault(endpoint="*", status=500, rate=0.5)
        return [omni.session.get(omni.url + "/omni/1/scenarios", timeout=10).status_code for _ in range(30)]

    first = statuses()
    assert set(first) == {200, 500}
    assert first == statuses()  # same seed, same faults


@pytest.mark.parametrize(
    "fault",
    [{"status": 500}, {"status": 503}, {"drop": True}, {"latency": 1.0}],
    ids=["then-500", "then-503", "then-dropped", "then-too-late"],
)
def test_process_then_fail_accepts_the_message(
    omni: Omni, omni_sandbox: Any, key: str, fault: dict[str, Any]
) -> None:
    omni_sandbox.admin.add_fault(endpoint="advanced", times=1, process=True, **fault)
    body = {
        "scenarioKey": key,
        "bulkId": "ambiguous",
        "destinations": [{"messageId": "m-1", "to": {"phoneNumber": "41793026720"}}],
        "sms": {"text": "x"},
    }
    try:
        answer = requests.post(
            omni.url + "/omni/1/advanced",
            json=body,
            headers=dict(omni.session.headers),
            timeout=0.5 if "latency" in fault else 10,  # only the latency fault is meant to time out
        )
    except (requests.exceptions.ConnectionError, requests.exceptions.ReadTimeout):
        assert "drop" in fault or "latency" in fault
    else:
        assert answer.status_code == fault["status"]
    rows = omni.logs(bulkId="ambiguous")["results"]
    assert [row["messageId"] for row in rows] == ["m-1"]  # the send went through all the same
    assert omni_sandbox.admin.stats()["bulks"] == {"ambiguous": 1}


def test_bad_faults_are_refused(omni_sandbox: Any) -> None:
    for bad in ({"endpoint": "nowhere", "status": 500}, {"endpoint": "advanced"}, {"status": 200}):
        with pytest.raises(ValueError):
            omni_sandbox.admin.add_fault(**bad)


# -- rate limits -----------------------------------------------------------------------------------


def test_scenario_creation_is_rate_limited(omni: Omni, omni_sandbox: Any) -> None:
    for _ in range(20):
        omni.scenario()
    answer = omni.session.post(omni.url + "/omni/1/scenarios", json={"flow": VIBER_SMS}, timeout=10)
    assert answer.status_code == 429 and int(answer.headers["Retry-After"]) > 0
    validate_response("/omni/1/scenarios", "post", 429, answer.json())
    assert omni_sandbox.admin.stats()["rate_limited"] == {"scenarios.create": 1}


def test_rate_limit_windows_are_configurable_and_can_be_disabled(
    omni: Omni, omni_sandbox: Any, key: str
) -> None:
    omni_sandbox.admin.configure(rate_limits={"logs": [2, 600], "scenarios.update": [1, 600]})
    omni.logs()
    omni.logs()
    assert omni.logs(expect=429)
    omni.call("PUT", f"/omni/1/scenarios/{key}", json={"flow": VIBER_SMS})
    omni.call("PUT", f"/omni/1/scenarios/{key}", 429, json={"flow": VIBER_SMS})
    omni_sandbox.admin.configure(rate_limits=False)
    omni.logs()
    omni.call("PUT", f"/omni/1/scenarios/{key}", json={"flow": VIBER_SMS})


# -- scale, stats, reset ---------------------------------------------------------------------------


def test_a_thousand_destinations_in_one_request(omni: Omni, omni_sandbox: Any, key: str) -> None:
    numbers = [f"4179{i:06d}{i % 9}" for i in range(1000)]  # no silent number (last digit 9)
    answer = omni.send(key, numbers, bulkId="big")
    assert len(answer["messages"]) == len({m["messageId"] for m in answer["messages"]}) == 1000
    finish(omni_sandbox)
    reports = omni.reports(bulkId="big", limit=1000)
    assert len(reports) == 1000
    stats = omni_sandbox.admin.stats()
    assert (stats["destinations"], stats["bulks"], stats["messages_with_pending_reports"]) == (
        1000,
        {"big": 1000},
        0,
    )
    assert stats["messages_logged"] == 1000
    too_many = omni.send(key, [*numbers, "41791000000"], expect=400)
    assert "destinations" in error_of(too_many)["validationErrors"]


def test_stats_count_duplicate_message_ids(omni: Omni, omni_sandbox: Any, key: str) -> None:
    body = {
        "scenarioKey": key,
        "destinations": [
            {"messageId": "same", "to": {"phoneNumber": "41793026720"}},
            {"messageId": "other", "to": {"phoneNumber": "41793026721"}},
        ],
        "sms": {"text": "x"},
    }
    omni.call("POST", "/omni/1/advanced", json={**body, "bulkId": "b1"})
    omni.call("POST", "/omni/1/advanced", json={**body, "bulkId": "b2"})
    stats = omni_sandbox.admin.stats()
    assert stats["destinations"] == 4 and stats["distinct_message_ids"] == 2
    assert stats["duplicate_message_ids"] == {"same": 2, "other": 2}
    assert stats["bulks"] == {"b1": 2, "b2": 2}
    assert [r["body"]["bulkId"] for r in omni_sandbox.admin.requests()] == ["b1", "b2"]


def test_duplicate_message_ids_can_be_rejected_like_infobip(omni: Omni, omni_sandbox: Any, key: str) -> None:
    omni_sandbox.admin.configure(reject_duplicate_message_ids=True)
    body = {"scenarioKey": key, "destinations": [{"messageId": "dup", "to": {"phoneNumber": "41793026720"}}]}
    omni.call("POST", "/omni/1/advanced", json={**body, "sms": {"text": "x"}})
    again = omni.call("POST", "/omni/1/advanced", json={**body, "sms": {"text": "x"}})
    assert again["messages"][0]["status"]["name"] == "REJECTED_DUPLICATE_MESSAGE_ID"
    finish(omni_sandbox)
    assert sorted(r["status"]["groupName"] for r in omni.reports()) == ["DELIVERED", "REJECTED"]


def test_reset_forgets_everything_and_restores_the_configuration(
    omni: Omni, omni_sandbox: Any, key: str
) -> None:
    omni_sandbox.admin.configure(report_style="per_step", time_scale=1)
    omni_sandbox.admin.add_fault(endpoint="reports", status=500)
    omni.send(key, ["41793026720"])
    omni_sandbox.admin.reset()
    stats = omni_sandbox.admin.stats()
    assert (stats["scenarios"], stats["destinations"], stats["requests"]) == (0, 0, {})
    assert omni_sandbox.admin.faults() == []
    config = omni_sandbox.admin.config()
    assert (config["report_style"], config["time_scale"]) == (["final"], 600.0)
    assert "api_key" not in config and "password" not in str(config)


def test_unknown_paths_answer_in_infobips_shape(omni: Omni) -> None:
    response = omni.session.get(omni.url + "/omni/1/nothing", timeout=10)
    assert response.status_code == 404 and error_of(response.json())["messageId"] == "NOT_FOUND"


# -- non-finite numbers ----------------------------------------------------------------------------

#: Non-finite values as JSON numbers (``NaN``, ``Infinity``, ``1e999``) and as text.
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", '"nan"', '"inf"', '"-inf"']


def admin_raw(omni_sandbox: Any, method: str, path: str, raw: str) -> requests.Response:
    """Send a raw JSON text to the admin API (the admin client cannot send NaN)."""
    return requests.request(
        method,
        f"{omni_sandbox.url}/_sandbox/{path}",
        data=raw.encode(),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )


def assert_refused_naming(response: requests.Response, field: str) -> None:
    assert response.status_code == 400, response.text
    details = error_of(response.json())
    assert details["messageId"] == "BAD_REQUEST"
    assert field in details["validationErrors"], details
    assert field in details["text"]


def assert_still_sends(omni: Omni, omni_sandbox: Any) -> None:
    """The sandbox still accepts a send, reports and logs it."""
    omni.send(omni.scenario(), ["41793026720"], bulkId="after")
    finish(omni_sandbox)
    assert [r["bulkId"] for r in omni.reports()] == ["after"]
    assert [r["bulkId"] for r in omni.logs()["results"]] == ["after"]


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize("field", ["seconds", "minutes", "hours"])
def test_a_non_finite_clock_advance_is_refused_and_moves_nothing(
    omni: Omni, omni_sandbox: Any, field: str, value: str
) -> None:
    omni_sandbox.admin.configure(time_scale=0)
    before = omni_sandbox.admin.clock()
    assert_refused_naming(admin_raw(omni_sandbox, "POST", "clock/advance", f'{{"{field}": {value}}}'), field)
    assert omni_sandbox.admin.clock() == before
    assert_still_sends(omni, omni_sandbox)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"hours": 1, "seconds": NaN}', "seconds"),
        ('{"hours": 1e300}', "hours"),
        ('{"seconds": true}', "seconds"),
        ('{"days": 1}', "days"),
    ],
    ids=["valid-part-with-nan", "past-year-9999", "boolean", "unknown-unit"],
)
def test_a_bad_clock_advance_changes_nothing(omni: Omni, omni_sandbox: Any, body: str, field: str) -> None:
    omni_sandbox.admin.configure(time_scale=0)
    before = omni_sandbox.admin.clock()
    assert_refused_naming(admin_raw(omni_sandbox, "POST", "clock/advance", body), field)
    assert omni_sandbox.admin.clock() == before
    assert_still_sends(omni, omni_sandbox)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"time_scale": NaN}', "time_scale"),
        ('{"time_scale": "inf"}', "time_scale"),
        ('{"token_ttl": Infinity}', "token_ttl"),
        ('{"log_retention_hours": "nan"}', "log_retention_hours"),
        ('{"logs_lag": "inf"}', "logs_lag"),
        ('{"seed": 1e999}', "seed"),
        ('{"max_logs": NaN}', "max_logs"),
        ('{"delivery_delay": [1, Infinity]}', "delivery_delay[1]"),
        ('{"delivery_delay": "nan"}', "delivery_delay"),
        ('{"prices": {"SMS": -Infinity}}', "prices.SMS"),
        ('{"default_validity": {"VIBER": NaN}}', "default_validity.VIBER"),
        ('{"rate_limits": {"logs": [NaN, 60]}}', "rate_limits.logs[0]"),
        ('{"rate_limits": {"logs": [10, "inf"]}}', "rate_limits.logs[1]"),
        ('{"rate_limit_window_scale": "nan"}', "rate_limit_window_scale"),
        ('{"report_style": "per_step", "time_scale": 1, "prices": {"SMS": NaN}}', "prices.SMS"),
        (
            '{"time_scale": 1, "faults": [{"endpoint": "logs", "status": 500},'
            ' {"endpoint": "logs", "latency": NaN}]}',
            "latency",
        ),
    ],
)
def test_a_non_finite_setting_is_refused_naming_it_and_changes_nothing(
    omni: Omni, omni_sandbox: Any, body: str, field: str
) -> None:
    before = omni_sandbox.admin.config()
    assert_refused_naming(admin_raw(omni_sandbox, "POST", "config", body), field)
    assert omni_sandbox.admin.config() == before
    assert omni_sandbox.admin.faults() == []
    assert_still_sends(omni, omni_sandbox)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"endpoint": "reports", "latency": NaN}', "latency"),
        ('{"endpoint": "reports", "latency": "inf"}', "latency"),
        ('{"endpoint": "reports", "status": 500, "rate": "nan"}', "rate"),
        ('{"endpoint": "reports", "status": 429, "retry_after": Infinity}', "retry_after"),
        ('{"endpoint": "reports", "status": 500, "times": 1e999}', "times"),
        ('{"endpoint": "reports", "status": NaN}', "status"),
    ],
    ids=["latency-nan", "latency-inf", "rate-nan", "retry-after-inf", "times-1e999", "status-nan"],
)
def test_a_non_finite_fault_option_is_refused_naming_it(
    omni: Omni, omni_sandbox: Any, body: str, field: str
) -> None:
    assert_refused_naming(admin_raw(omni_sandbox, "POST", "faults", body), field)
    assert omni_sandbox.admin.faults() == []
    assert_still_sends(omni, omni_sandbox)


@pytest.mark.parametrize("keep_config", [False, True])
def test_reset_recovers_a_broken_clock(omni: Omni, omni_sandbox: Any, keep_config: bool) -> None:
    omni_sandbox.state.clock.advance(float("nan"))  # as if a bad value had got through
    assert requests.get(f"{omni_sandbox.url}/_sandbox/clock", timeout=10).status_code != 200
    omni_sandbox.admin.reset(keep_config=keep_config)
    assert abs(omni_sandbox.admin.clock()["epoch"] - time.time()) < 3600
    assert_still_sends(omni, omni_sandbox)


# -- deeply nested JSON ----------------------------------------------------------------------------

DEEP_ARRAYS = "[" * 100_000 + "]" * 100_000
DEEP_OBJECTS = '{"a":' * 100_000 + "1" + "}" * 100_000
DEEP_INSIDE = '{"destinations": ' + "[" * 500 + "]" * 500 + ', "sms": {"text": "x"}}'
DEEP_BODIES = {"arrays": DEEP_ARRAYS, "objects": DEEP_OBJECTS, "inside-a-body": DEEP_INSIDE}


@pytest.mark.parametrize("body", list(DEEP_BODIES.values()), ids=list(DEEP_BODIES))
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/omni/1/advanced"), ("POST", "/omni/1/scenarios"), ("PUT", "/omni/1/scenarios/{key}")],
    ids=["advanced", "create-scenario", "update-scenario"],
)
def test_deeply_nested_json_to_omni_gets_infobips_400(
    omni: Omni, key: str, method: str, path: str, body: str
) -> None:
    headers = {"Content-Type": "application/json"}
    answer = omni.call(method, path.format(key=key), 400, data=body.encode(), headers=headers)
    assert error_of(answer)["messageId"] == "BAD_REQUEST"
    assert omni.call("GET", f"/omni/1/scenarios/{key}")["key"] == key  # the server is fine


@pytest.mark.parametrize("body", [DEEP_ARRAYS, DEEP_OBJECTS], ids=["arrays", "objects"])
@pytest.mark.parametrize("path", ["config", "faults", "personas", "clock/advance", "reset"])
def test_deeply_nested_json_to_the_admin_api_gets_a_400(omni_sandbox: Any, path: str, body: str) -> None:
    answer = admin_raw(omni_sandbox, "POST", path, body)
    assert answer.status_code == 400, answer.text[:200]
    assert error_of(answer.json())["messageId"] == "BAD_REQUEST"
    assert omni_sandbox.admin.health()["status"] == "ok"


# -- logs lag --------------------------------------------------------------------------------------


def test_logs_lag_shows_a_message_in_the_logs_only_that_many_real_seconds_later(
    omni: Omni, omni_sandbox: Any, key: str
) -> None:
    config = omni_sandbox.admin.configure(logs_lag=3.0, time_scale=0, rate_limits=False)
    assert config["logs_lag"] == 3.0
    before_send = time.monotonic()
    sent = omni.send(key, ["41793026720"], bulkId="lagged")
    accepted = time.monotonic()
    finish(omni_sandbox)  # hours of simulated time: the lag is in real time
    assert omni.logs()["results"] == []
    assert omni.logs(bulkId="lagged")["results"] == []
    assert [r["bulkId"] for r in omni.reports()] == ["lagged"]  # reports are not delayed
    rows: list[dict[str, Any]] = []
    while not rows and time.monotonic() < accepted + 15:
        time.sleep(0.05)
        rows = omni.logs(bulkId="lagged")["results"]
        seen = time.monotonic()
    assert [row["messageId"] for row in rows] == [sent["messages"][0]["messageId"]]
    assert 3.0 <= seen - before_send < 10.0


def test_logs_lag_is_a_start_up_option(tmp_path: Any) -> None:
    from airflow_provider_omni.sandbox import OmniSandbox

    with OmniSandbox(logs_lag=0.5) as sandbox:
        assert sandbox.admin.config()["logs_lag"] == 0.5
        sandbox.admin.reset()
        assert sandbox.admin.config()["logs_lag"] == 0.5  # a reset returns to the start-up value
    path = tmp_path / "sandbox.yaml"
    path.write_text("logs_lag: 12\n")
    with OmniSandbox(config=path) as sandbox:
        assert sandbox.admin.config()["logs_lag"] == 12.0
    with pytest.raises(ValueError, match="logs_lag"):
        OmniSandbox(logs_lag=float("inf"))
    with pytest.raises(ValueError, match="logs_lag"):
        OmniSandbox(logs_lag=-1)


# -- the pytest plugin -----------------------------------------------------------------------------


def test_omni_connection_points_airflow_at_the_sandbox(omni_connection: str, omni_sandbox: Any) -> None:
    import json
    import os

    assert omni_connection == "omni_default"
    conn = json.loads(os.environ["AIRFLOW_CONN_OMNI_DEFAULT"])
    assert (conn["conn_type"], conn["host"], conn["password"]) == (
        "infobip_omni",
        omni_sandbox.url,
        "sandbox-key",
    )
    assert conn["extra"]["auth_type"] == "api_key"


@pytest.fixture
def sandbox_with_config_file(tmp_path: Any) -> Iterator[Any]:
    from airflow_provider_omni.sandbox import OmniSandbox

    path = tmp_path / "sandbox.yaml"
    path.write_text(
        "report_style: [per_step]\npersonas:\n  '41793026720': silent\nfaults:\n"
        "  - {endpoint: logs, status: 503, times: 1}\n"
    )
    with OmniSandbox(api_key="k", time_scale=60, config=path, rate_limits=False) as sandbox:
        yield sandbox


def test_in_process_sandbox_with_a_config_file(sandbox_with_config_file: Any) -> None:
    sb = sandbox_with_config_file
    config = sb.admin.config()
    assert config["report_style"] == ["per_step"] and config["rate_limits_enabled"] is False
    assert config["personas"]["by_number"] == {"41793026720": "silent"}
    omni = Omni(sb.url, "App k")
    assert omni.session.get(sb.url + "/omni/1/logs", timeout=10).status_code == 503
    omni.logs()
