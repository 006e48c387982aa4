"""Models: every example of the OpenAPI document and of Infobip's Viber guide parses; each client-side
rule fails naming the field in Infobip's camelCase, and the edge values just inside pass."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pendulum
import pytest
from pydantic import BaseModel, ValidationError

from airflow_provider_omni.hooks.omni import validation_error_from_pydantic
from airflow_provider_omni.models import (
    ApiError,
    CreateOrUpdateScenarioRequest,
    DeliveryReport,
    DeliveryReports,
    OmniAdvancedRequest,
    OmniChannel,
    OmniLogsResponse,
    OmniResponse,
    Scenario,
    ScenariosResponse,
    to_payload,
)
from tests.openapi import response_examples, validate_request

if TYPE_CHECKING:
    from airflow_provider_omni.exceptions import OmniValidationError

GUIDE = json.loads((Path(__file__).parent / "data" / "guide_examples.json").read_text(encoding="utf-8"))

SUCCESS_MODELS: dict[tuple[str, str], type[BaseModel]] = {
    ("/omni/1/scenarios", "get"): ScenariosResponse,
    ("/omni/1/scenarios", "post"): Scenario,
    ("/omni/1/scenarios/{scenarioKey}", "get"): Scenario,
    ("/omni/1/scenarios/{scenarioKey}", "put"): Scenario,
    ("/omni/1/advanced", "post"): OmniResponse,
    ("/omni/1/reports", "get"): DeliveryReports,
    ("/omni/1/logs", "get"): OmniLogsResponse,
}

EXAMPLES = list(response_examples())

#: Known artefact of the document: the 201 examples of POST /omni/1/scenarios are copies of the
#: request examples, without the (read-only) ``key`` a real answer carries.
KEYLESS_201 = {(p, m, s) for p, m, s, _, v in EXAMPLES if (p, m, s) == ("/omni/1/scenarios", "post", "201")}


def test_the_document_has_examples_for_every_operation() -> None:
    assert {(path, method) for path, method, *_ in EXAMPLES} == set(SUCCESS_MODELS)
    assert len(EXAMPLES) >= 30


@pytest.mark.parametrize(
    ("path", "method", "status", "name", "value"),
    EXAMPLES,
    ids=[f"{m.upper()} {p} {s} {n}" for p, m, s, n, _ in EXAMPLES],
)
def test_every_openapi_response_example_parses(
    path: str, method: str, status: str, name: str, value: Any
) -> None:
    if (path, method, status) in KEYLESS_201 and "key" not in value:
        assert to_payload(CreateOrUpdateScenarioRequest.model_validate(value)) == value
        with pytest.raises(ValidationError, match="key"):
            Scenario.model_validate(value)
        value = {"key": "AD9E01A5DC7BEE2C2B828D208182A611", **value}
    if status.startswith("2"):
        model = SUCCESS_MODELS[(path, method)].model_validate(value)
        assert model.model_dump(exclude_none=True)
        for report in getattr(model, "results", []):
            for stamp in (report.sent_at, report.done_at):
                assert stamp is None or stamp.tzinfo is not None
    else:
        error = ApiError.model_validate(value)
        assert error.code or error.text


def test_guide_scenario_examples() -> None:
    request = CreateOrUpdateScenarioRequest.model_validate(GUIDE["create_scenario_request"])
    assert to_payload(request) == GUIDE["create_scenario_request"]
    validate_request("/omni/1/scenarios", "post", to_payload(request))
    scenario = Scenario.model_validate(GUIDE["create_scenario_response"])
    assert scenario.key == "CC9F01A5DC7BEE2C2B829D203482A654"
    assert scenario.has_flow(request.flow)
    assert not scenario.has_flow(request.flow[::-1])


@pytest.mark.parametrize("name", ["send_advanced_request", "send_rich_viber_request"])
def test_guide_send_examples_round_trip(name: str) -> None:
    request = OmniAdvancedRequest.model_validate(GUIDE[name])
    assert to_payload(request) == GUIDE[name]
    validate_request("/omni/1/advanced", "post", to_payload(request))


def test_guide_response_and_reports() -> None:
    response = OmniResponse.model_validate(GUIDE["send_advanced_response"])
    assert response.messages[0].status.name == "MESSAGE_ACCEPTED"  # type: ignore[union-attr]
    reports = DeliveryReports.model_validate(GUIDE["reports_response"]).results
    assert [r.channel for r in reports] == [OmniChannel.VIBER, OmniChannel.SMS]
    assert reports[0].error.name == "EC_ABSENT_SUBSCRIBER_SM"  # type: ignore[union-attr]
    assert reports[1].status.id == 5  # type: ignore[union-attr]
    assert reports[0].price.price_per_message == 0.0104  # type: ignore[union-attr]


def test_infobip_dates_parse_to_aware_datetimes() -> None:
    report = DeliveryReport.model_validate(
        {"sentAt": "2016-02-23T17:41:11.833+0100", "doneAt": "2016-02-23T16:41:11.843+0000"}
    )
    assert isinstance(report.sent_at, datetime)
    assert report.sent_at.utcoffset() == timedelta(hours=1)
    assert report.sent_at.microsecond == 833000
    assert report.done_at - report.sent_at == timedelta(milliseconds=10)  # type: ignore[operator]


def test_unknown_incoming_fields_are_kept() -> None:
    report = DeliveryReport.model_validate({"messageId": "m", "channel": "RCS", "brandNewField": {"a": 1}})
    assert report.model_extra == {"brandNewField": {"a": 1}}
    assert report.channel == "RCS"


def test_int_scenario_key_becomes_text() -> None:
    assert Scenario.model_validate({"key": 1234567890123}).key == "1234567890123"


# -- client-side rules --------------------------------------------------------------------------


def _message(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "scenarioKey": "K",
        "destinations": [{"to": {"phoneNumber": "41793026727"}}],
        "viber": {"text": "hello"},
        "sms": {"text": "hello"},
    }
    body.update(overrides)
    return body


def _error(body: dict[str, Any]) -> OmniValidationError:
    with pytest.raises(ValidationError) as caught:
        OmniAdvancedRequest.model_validate(body)
    return validation_error_from_pydantic(caught.value, "The OMNI message")


def _seconds(amount: int) -> dict[str, Any]:
    return {"validityPeriod": amount, "validityPeriodTimeUnit": "SECONDS"}


RULES = [
    pytest.param(_message(viber={"text": "x" * 1001}), "viber.text", id="viber-text-1001"),
    pytest.param(
        _message(viber={"text": "t", "buttonText": "b" * 31, "buttonURL": "https://e.com"}),
        "viber.buttonText",
        id="button-text-31",
    ),
    pytest.param(
        _message(viber={"text": "t", "buttonText": "Go"}), "viber.buttonText", id="button-without-url"
    ),
    pytest.param(
        _message(viber={"imageURL": "https://e.com/i.png", "buttonText": "Go", "buttonURL": "https://e.com"}),
        "viber",
        id="image-button-without-text",
    ),
    pytest.param(_message(viber={"text": "t", **_seconds(34)}), "viber.validityPeriod", id="viber-34s"),
    pytest.param(
        _message(viber={"text": "t", "validityPeriod": 15, "validityPeriodTimeUnit": "DAYS"}),
        "viber.validityPeriod",
        id="viber-15-days",
    ),
    pytest.param(_message(sms={"text": "t", **_seconds(29)}), "sms.validityPeriod", id="sms-29s"),
    pytest.param(
        _message(sms={"text": "t", "validityPeriod": 49, "validityPeriodTimeUnit": "HOURS"}),
        "sms.validityPeriod",
        id="sms-49h",
    ),
    pytest.param(_message(callbackData="c" * 4001), "callbackData", id="callback-4001"),
    pytest.param(_message(sendAt=pendulum.now("UTC").add(days=181)), "sendAt", id="send-at-181-days"),
    pytest.param(
        _message(destinations=[{"to": {"phoneNumber": "0123"}}]), "destinations[0].to.phoneNumber", id="0123"
    ),
    pytest.param(
        _message(destinations=["41793026727", {"to": {"phoneNumber": "+41 79 302 67 27"}}]),
        "destinations[1].to.phoneNumber",
        id="spaces",
    ),
    pytest.param(
        _message(destinations=[{"to": {"phoneNumber": "12345"}}]),
        "destinations[0].to.phoneNumber",
        id="short",
    ),
    pytest.param(
        _message(destinations=[{"to": {"phoneNumber": "4179302672712345"}}]),
        "destinations[0].to.phoneNumber",
        id="long",
    ),
    pytest.param(
        _message(destinations=[{"to": {"phoneNumber": "41-79-302"}}]),
        "destinations[0].to.phoneNumber",
        id="dashes",
    ),
]


@pytest.mark.parametrize(("body", "field"), RULES)
def test_each_rule_fails_naming_the_field(body: dict[str, Any], field: str) -> None:
    error = _error(body)
    assert field in error.validation_errors, error.validation_errors
    assert field in str(error)


def test_image_with_button_without_text_says_why() -> None:
    error = _error(
        _message(viber={"imageURL": "https://e.com/i.png", "buttonText": "Go", "buttonURL": "https://e.com"})
    )
    assert "needs viber.text" in str(error)


EDGES = [
    pytest.param(_message(viber={"text": "x" * 1000}), id="viber-text-1000"),
    pytest.param(
        _message(viber={"text": "t", "buttonText": "b" * 30, "buttonURL": "https://e.com"}), id="button-30"
    ),
    pytest.param(_message(viber={"imageURL": "https://e.com/i.png"}), id="image-only"),
    pytest.param(
        _message(
            viber={"text": "t", "imageURL": "https://e.com/i.png", "buttonText": "Go", "buttonURL": "tel:+41"}
        ),
        id="text-image-button",
    ),
    pytest.param(_message(viber={"text": "t", **_seconds(35)}), id="viber-35s"),
    pytest.param(
        _message(viber={"text": "t", "validityPeriod": 14, "validityPeriodTimeUnit": "DAYS"}), id="viber-14d"
    ),
    pytest.param(_message(viber={"text": "t", "validityPeriod": 1}), id="viber-1-minute-default-unit"),
    pytest.param(_message(sms={"text": "t", **_seconds(30)}), id="sms-30s"),
    pytest.param(
        _message(sms={"text": "t", "validityPeriod": 48, "validityPeriodTimeUnit": "HOURS"}), id="sms-48h"
    ),
    pytest.param(_message(sms={"text": "t", "validityPeriod": 2880}), id="sms-2880-minutes"),
    pytest.param(_message(callbackData="c" * 4000), id="callback-4000"),
    pytest.param(_message(sendAt=pendulum.now("UTC").add(days=179)), id="send-at-179-days"),
    pytest.param(_message(destinations=["+41793026727", "1234567", "123456789012345"]), id="numbers"),
]


@pytest.mark.parametrize("body", EDGES)
def test_edge_values_pass_and_match_the_document(body: dict[str, Any]) -> None:
    request = OmniAdvancedRequest.model_validate(body)
    payload = to_payload(request)
    validate_request("/omni/1/advanced", "post", payload)
    assert all("+" not in d["to"]["phoneNumber"] for d in payload["destinations"])


def test_send_at_must_be_aware() -> None:
    error = _error(_message(sendAt=datetime(2030, 1, 1)))
    assert "sendAt" in error.validation_errors


def test_pydantic_names_become_infobip_names() -> None:
    error = _error(_message(viber={"text": "t", "button_text": "Go", "image_url": "https://e.com/i.png"}))
    assert "viber.buttonText" in str(error)
    error = _error(_message(destinations=[{"message_id": "", "to": {"phone_number": "41793026727"}}]))
    assert "destinations[0].messageId" in error.validation_errors


def test_many_errors_are_summarised() -> None:
    destinations = [{"to": {"phoneNumber": "0"}} for _ in range(30)]
    error = _error(_message(destinations=destinations))
    assert len(error.validation_errors) == 30
    assert "and 10 more" in str(error)
    assert str(error).count("\n") == 21


# -- the wire shapes agree with the models ----------------------------------------------------------

DESTINATION_INPUTS = [
    "41793026727",
    "+41793026727",
    "0041793026727",
    "4179 302 67 27",
    "",
    41793026727,
    None,
    True,
    [],
    {"to": {"phoneNumber": "41793026727"}},
    {"to": {"phone_number": "+41793026727"}, "message_id": "m-1"},
    {"to": {"phoneNumber": "41793026727"}, "messageId": "m" * 200},
    {"to": {"phoneNumber": "41793026727"}, "messageId": "m" * 201},
    {"to": {"phoneNumber": "41793026727"}, "messageId": ""},
    {"to": {"phoneNumber": "41793026727"}, "messageId": None},
    {"to": {"phoneNumber": "41793026727"}, "messageId": 7},
    {"to": {"phoneNumber": "41793026727", "emailAddress": None}},
    {"to": {"emailAddress": "someone@example.com"}},
    {"to": {"whatsAppUserId": "w" * 150}},
    {"to": {"whatsAppUserId": "w" * 151}},
    {"to": {"pushRegistrationId": "p-1", "phoneNumber": None}},
    {"to": {}},
    {"to": {"phoneNumber": None}},
    {"to": {"emailAddress": ""}},
    {"to": {"phoneNumber": 41793026727}},
    {"to": {"phoneNumber": "41793026727", "fax": "1"}},
    {"to": "41793026727"},
    {"to": None},
    {"messageId": "m"},
    {"to": {"phoneNumber": "41793026727"}, "text": "extra"},
    {},
]


def _by_model(item: Any) -> tuple[bool, Any]:
    from airflow_provider_omni.models import Destination
    from airflow_provider_omni.operators._ids import error_path

    try:
        return True, to_payload(Destination.model_validate(item))
    except ValidationError as err:
        return False, sorted({error_path(e["loc"]) for e in err.errors()})


def _by_shape(item: Any) -> tuple[bool, Any]:
    from airflow_provider_omni.models import validate_destinations
    from airflow_provider_omni.operators._ids import error_path

    try:
        (shape,) = validate_destinations([item])
        return True, {k: v for k, v in shape.items() if v is not None}
    except ValidationError as err:
        return False, sorted({error_path(e["loc"][1:]) for e in err.errors()})


@pytest.mark.parametrize("item", DESTINATION_INPUTS, ids=lambda v: repr(v)[:40])
def test_destination_shape_and_model_accept_and_refuse_the_same(item: Any) -> None:
    """Same verdict, same payload when valid, errors on the same fields when not.

    (A field given in both spellings is refused by both; which spelling is named may differ.)
    """
    assert _by_shape(item) == _by_model(item)


def test_destination_shapes_agree_with_the_model_on_generated_inputs() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    texts = st.one_of(
        st.sampled_from(["41793026727", "+41793026727", "0417", "", "a@b.c", "x" * 151]),
        st.text(max_size=20),
        st.integers(),
        st.none(),
    )
    addresses = st.dictionaries(
        st.sampled_from(
            ["phoneNumber", "phone_number", "emailAddress", "whatsAppUserId", "pushRegistrationId", "fax"]
        ),
        texts,
        max_size=3,
    )
    destinations = st.one_of(
        texts,
        st.dictionaries(
            st.sampled_from(["to", "messageId", "message_id", "other"]),
            st.one_of(texts, addresses),
            max_size=3,
        ),
    )

    @settings(max_examples=300, deadline=None)
    @given(destinations)
    def agree(item: Any) -> None:
        assert _by_shape(item) == _by_model(item)

    agree()


def test_bulk_body_is_what_the_model_would_send() -> None:
    from airflow_provider_omni.models import AdvancedBulk, validate_destinations

    body = GUIDE["send_advanced_request"]
    request = OmniAdvancedRequest.model_validate(body)
    destinations = validate_destinations(body["destinations"])
    bulk = AdvancedBulk.build(AdvancedBulk.fields_of(request), "bulk-1", destinations)

    sent = json.loads(bulk.body)

    assert sent == {**to_payload(request), "bulkId": "bulk-1"}
    assert (bulk.size, bulk.destinations()) == (len(destinations), sent["destinations"])
    validate_request("/omni/1/advanced", "post", sent)


def test_bulk_acceptance_reads_the_documented_answers() -> None:
    from airflow_provider_omni.models import BulkAcceptance

    answers = [
        v for p, m, s, _, v in EXAMPLES if (p, m) == ("/omni/1/advanced", "post") and s.startswith("2")
    ]
    answers.append(GUIDE["send_advanced_response"])
    refused_entry = {
        "to": {"phoneNumber": "41793026727"},
        "messageId": "m2",
        "status": {"groupName": "REJECTED"},
    }
    answers.append(
        {
            "bulkId": "b",
            "messages": [{"messageId": "m1", "status": {"groupName": "PENDING"}}, refused_entry],
            "new": 1,
        }
    )

    for answer in answers:
        acceptance = BulkAcceptance.from_json(json.dumps(answer).encode())
        model = OmniResponse.model_validate(answer)
        assert acceptance.bulk_id == model.bulk_id
        assert acceptance.messages == len(model.messages)
        assert [m["messageId"] for m in acceptance.refused] == [
            m.message_id
            for m in model.messages
            if m.status and m.status.group_name in ("REJECTED", "UNDELIVERABLE")
        ]
    assert acceptance.refused == [refused_entry]


def test_bulk_acceptance_is_compact_and_refuses_what_is_not_an_answer() -> None:
    from pydantic import ValidationError as PydanticValidationError

    from airflow_provider_omni.models import BulkAcceptance

    refused = {"messageId": "m2", "to": {"phoneNumber": "41793026727"}, "status": {"groupName": "REJECTED"}}
    pending = {"messageId": "m1", "to": {"phoneNumber": "41793026728"}, "status": {"groupName": "PENDING"}}
    acceptance = BulkAcceptance.from_json(
        json.dumps({"bulkId": "b", "messages": [pending, refused]}).encode()
    )

    assert (acceptance.bulk_id, acceptance.messages, acceptance.refused) == ("b", 2, [refused])
    assert acceptance.message_ids == {"m1", "m2"}
    assert "41793026728" not in repr(acceptance)  # only refused entries are kept whole
    assert BulkAcceptance.from_json(b'{"requestError": {"serviceException": {}}}').request_error
    for content in (b"", b"[]", b"null", b"<html>"):
        with pytest.raises(PydanticValidationError):
            BulkAcceptance.from_json(content)
