"""OmniHook: a send's 2xx answer must match what was sent, and no full phone number is logged or
raised unless the connection's ``show_full_numbers`` is set.

The sandbox's ``answer`` fault gives the wrong 2xx answers (with the send processed or not);
requests-mock gives the ones it has no kind for (other, duplicated or extra message ids).
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from airflow_provider_omni.exceptions import OmniSendUncertainError, OmniServerError, OmniValidationError
from airflow_provider_omni.hooks import omni as omni_module
from airflow_provider_omni.hooks.omni import OmniHook
from airflow_provider_omni.models import (
    AdvancedBulk,
    BulkAcceptance,
    OmniAdvancedRequest,
    send_answer_mismatch,
    validate_destinations,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_omni.sandbox.server import OmniSandbox

NUMBERS = ["41793026720", "41793026721", "41793026722"]
BASE = "https://abc123.api.infobip.com"


def _body(bulk_id: str, numbers: list[str] = NUMBERS, with_ids: bool = True) -> dict[str, Any]:
    destinations: list[dict[str, Any]] = [{"to": {"phoneNumber": n}} for n in numbers]
    if with_ids:
        for index, destination in enumerate(destinations):
            destination["messageId"] = f"{bulk_id}.{index}"
    return {"bulkId": bulk_id, "destinations": destinations, "viber": {"text": "hi"}, "sms": {"text": "hi"}}


def _bulk(bulk_id: str, numbers: list[str] = NUMBERS) -> AdvancedBulk:
    body = _body(bulk_id, numbers)
    fields = AdvancedBulk.fields_of(OmniAdvancedRequest.model_validate(body))
    return AdvancedBulk.build(fields, bulk_id, validate_destinations(body["destinations"]))


SENDS: dict[str, Callable[[OmniHook, str], Any]] = {
    "send_advanced": lambda hook, bulk_id: hook.send_advanced(_body(bulk_id)),
    "send_advanced_bulk": lambda hook, bulk_id: hook.send_advanced_bulk(_bulk(bulk_id)),
}


@pytest.fixture
def sandbox_hook(omni_sandbox: OmniSandbox, omni_connection: str) -> OmniHook:
    """A hook on the sandbox, which has a default Viber-then-SMS scenario."""
    hook = OmniHook(omni_connection)
    hook.create_scenario("Viber then SMS", [{"channel": "VIBER", "from": "V"}, {"channel": "SMS"}], True)
    return hook


def _advanced_requests(sandbox: OmniSandbox) -> int:
    return int(sandbox.admin.stats()["requests"].get("advanced", 0))


# -- wrong 2xx answers from the sandbox -------------------------------------------------------------

WRONG_ANSWERS = [
    pytest.param("empty", ["it is an empty body"], id="empty"),
    pytest.param("empty_object", ["bulkId is none", "it lists 0 message(s) for 3 destination(s)"], id="{}"),
    pytest.param("request_error", ["error body (requestError)"], id="request-error"),
    pytest.param("no_messages", ["it lists 0 message(s) for 3 destination(s)"], id="no-messages"),
    pytest.param("wrong_bulk_id", ["its bulkId is '"], id="wrong-bulk-id"),
    pytest.param(
        "missing_messages",
        ["it lists 2 message(s) for 3 destination(s)", "1 of the 3 message id(s) sent are not in it"],
        id="missing-messages",
    ),
    pytest.param("html", ["it is a body that is not JSON"], id="html"),
]


@pytest.mark.parametrize(("kind", "reasons"), WRONG_ANSWERS)
@pytest.mark.parametrize("process", [True, False], ids=["processed", "not-processed"])
@pytest.mark.parametrize("send", list(SENDS))
def test_a_2xx_that_does_not_match_the_send_is_uncertain_never_success(
    omni_sandbox: OmniSandbox,
    sandbox_hook: OmniHook,
    logs: Callable[[], str],
    kind: str,
    reasons: list[str],
    process: bool,
    send: str,
) -> None:
    bulk_id = f"ans-{kind}-{process}"
    omni_sandbox.admin.add_fault(endpoint="advanced", answer=kind, process=process, times=1)

    with pytest.raises(OmniSendUncertainError) as caught:
        SENDS[send](sandbox_hook, bulk_id)

    error = caught.value
    assert error.bulk_id == bulk_id
    assert _advanced_requests(omni_sandbox) == 1  # never retried: it may have gone out
    message = str(error)
    for reason in reasons:
        assert reason in message
    assert "MAY have been sent" in message and "/omni/1/logs" in message and repr(bulk_id) in message
    assert not any(number in message for number in NUMBERS)
    assert "accepted" not in logs().split("Sending OMNI message")[-1]  # no "accepted 3 of 3"
    # What the caller does next (look the bulk up) tells the two cases apart.
    assert bool(sandbox_hook.get_logs(bulk_id=bulk_id)) is process


@pytest.mark.parametrize("send", list(SENDS))
def test_a_matching_answer_is_an_acceptance(
    omni_sandbox: OmniSandbox, sandbox_hook: OmniHook, logs: Callable[[], str], send: str
) -> None:
    result = SENDS[send](sandbox_hook, "ans-ok")
    if isinstance(result, BulkAcceptance):
        assert (result.bulk_id, result.messages, result.refused) == ("ans-ok", 3, [])
        assert result.message_ids == {"ans-ok.0", "ans-ok.1", "ans-ok.2"}
    else:
        assert [m.message_id for m in result.messages] == ["ans-ok.0", "ans-ok.1", "ans-ok.2"]
        assert "Infobip accepted 3 of 3 destination(s) (bulkId ans-ok)" in logs()


def test_refused_destinations_of_a_matching_answer_are_kept(
    omni_sandbox: OmniSandbox, sandbox_hook: OmniHook
) -> None:
    omni_sandbox.admin.configure(reject_duplicate_message_ids=True)
    sandbox_hook.send_advanced_bulk(_bulk("ans-dup"))
    acceptance = sandbox_hook.send_advanced_bulk(_bulk("ans-dup"))  # the same message ids again
    assert acceptance.messages == 3
    assert sorted(m["messageId"] for m in acceptance.refused) == ["ans-dup.0", "ans-dup.1", "ans-dup.2"]


# -- answers with other message ids (requests-mock: the sandbox has no such kind) --------------------


def _answer(bulk_id: str, ids: list[str | None]) -> dict[str, Any]:
    return {
        "bulkId": bulk_id,
        "messages": [
            {"to": {"phoneNumber": NUMBERS[0]}, "status": {"groupName": "PENDING"}, "messageId": i}
            for i in ids
        ],
    }


@pytest.mark.parametrize(
    ("ids", "reasons"),
    [
        pytest.param(["b.0", "b.1", "other"], ["1 of the 3 message id(s) sent are not in it"], id="other-id"),
        pytest.param(["b.0", "b.1", "b.1"], ["1 of the 3 message id(s) sent are not in it"], id="duplicate"),
        pytest.param(
            ["b.0", "b.1", "b.2", "b.3"],
            ["it lists 4 message(s) for 3", "it lists 1 message id(s) that were not sent"],
            id="one-more",
        ),
        pytest.param(["b.0", "b.1", None], ["1 of the 3 message id(s) sent are not in it"], id="no-id"),
        pytest.param(["x", "y", "z"], ["3 of the 3 message id(s) sent are not in it"], id="all-other"),
    ],
)
@pytest.mark.parametrize("send", list(SENDS))
def test_an_answer_with_other_message_ids_is_uncertain(
    monkeypatch: pytest.MonkeyPatch, requests_mock: Any, ids: list[str | None], reasons: list[str], send: str
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_ANSWER", json.dumps({"host": BASE, "password": "k" * 20}))
    requests_mock.post(f"{BASE}/omni/1/advanced", json=_answer("b", ids))
    with pytest.raises(OmniSendUncertainError) as caught:
        SENDS[send](OmniHook("omni_answer"), "b")
    for reason in reasons:
        assert reason in str(caught.value)
    assert requests_mock.call_count == 1


def test_message_ids_are_not_compared_when_the_request_gave_none(
    monkeypatch: pytest.MonkeyPatch, requests_mock: Any
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_ANSWER", json.dumps({"host": BASE, "password": "k" * 20}))
    requests_mock.post(f"{BASE}/omni/1/advanced", json=_answer("b", ["gen-1", "gen-2", "gen-3"]))
    response = OmniHook("omni_answer").send_advanced(_body("b", with_ids=False))
    assert [m.message_id for m in response.messages] == ["gen-1", "gen-2", "gen-3"]


def test_send_answer_mismatch_counts_and_never_quotes_addresses() -> None:
    assert (
        send_answer_mismatch(
            sent_bulk_id="b",
            sent_size=2,
            sent_message_ids=["b.0", ""],
            bulk_id="b",
            count=2,
            message_ids=["b.0"],
        )
        is None
    )
    assert send_answer_mismatch(
        sent_bulk_id="b", sent_size=2, sent_message_ids=["b.0", "b.1"], bulk_id=None, count=0, message_ids=[]
    ) == (
        "its bulkId is none, not 'b'; it lists 0 message(s) for 2 destination(s) sent; "
        "2 of the 2 message id(s) sent are not in it"
    )


# -- phone numbers ---------------------------------------------------------------------------------


def test_a_send_with_show_full_numbers_off_logs_no_full_number(
    omni_sandbox: OmniSandbox, sandbox_hook: OmniHook, logs: Callable[[], str]
) -> None:
    omni_sandbox.admin.configure(reject_duplicate_message_ids=True)
    sandbox_hook.send_advanced(_body("pn-1"))
    sandbox_hook.send_advanced(_body("pn-1"))  # refused: the hook lists the refused destinations
    sandbox_hook.send_advanced_bulk(_bulk("pn-2"))
    sandbox_hook.get_reports(bulk_id="pn-1")
    omni_sandbox.admin.add_fault(endpoint="advanced", status=500, times=1)
    with pytest.raises(OmniSendUncertainError):
        sandbox_hook.send_advanced(_body("pn-3"))

    text = logs()
    assert "rejected: +4179****720" in text  # the log capture works, numbers are shortened
    assert not any(number in text for number in NUMBERS)


INFOBIP_400 = {
    "requestError": {
        "serviceException": {
            "messageId": "BAD_REQUEST",
            "text": f"Invalid destination +{NUMBERS[1]}",
            "validationErrors": {"destinations[1].to.phoneNumber": [f"{NUMBERS[1]} is not a valid number"]},
        }
    }
}


@pytest.mark.parametrize("full", [False, True], ids=["shortened", "full"])
def test_infobip_400_quoting_a_number_is_shortened_unless_full_numbers(
    monkeypatch: pytest.MonkeyPatch, requests_mock: Any, logs: Callable[[], str], full: bool
) -> None:
    conn = {"host": BASE, "password": "k" * 20, "extra": {"show_full_numbers": full}}
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_PN", json.dumps(conn))
    requests_mock.post(f"{BASE}/omni/1/advanced", status_code=400, json=INFOBIP_400)
    hook = OmniHook("omni_pn")

    with pytest.raises(OmniValidationError) as caught:
        hook.send_advanced(_body("pn-400"))

    error = caught.value
    shown = [str(error), json.dumps(error.validation_errors), logs()]
    if full:
        assert NUMBERS[1] in str(error)
    else:
        assert "+4179****721" in str(error)
        assert error.validation_errors == {
            "destinations[1].to.phoneNumber": ["+4179****721 is not a valid number"]
        }
        assert not any(n in text for n in NUMBERS for text in shown)


def test_server_errors_quoting_a_number_are_shortened_on_both_paths(
    monkeypatch: pytest.MonkeyPatch, requests_mock: Any
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_PN", json.dumps({"host": BASE, "password": "k" * 20}))
    monkeypatch.setattr(omni_module, "_sleep", lambda seconds: None)

    async def no_wait(seconds: float) -> None:
        return None

    monkeypatch.setattr(omni_module, "_asleep", no_wait)
    echo = f"upstream failed for to={NUMBERS[0]}"
    requests_mock.post(f"{BASE}/omni/1/advanced", status_code=502, text=echo)
    hook = OmniHook("omni_pn")
    hook._async_transport = httpx.MockTransport(lambda request: httpx.Response(503, text=echo))

    with pytest.raises(OmniSendUncertainError) as send_error:
        hook.send_advanced_bulk(_bulk("pn-5xx"))
    with pytest.raises(OmniServerError) as get_error:
        asyncio.run(hook.aget_logs(bulk_id="pn-5xx"))
    for error in (send_error.value, get_error.value):
        assert NUMBERS[0] not in str(error)
        assert "+4179****720" in str(error)


def test_client_side_error_quoting_an_invalid_number_shortens_it(
    monkeypatch: pytest.MonkeyPatch, requests_mock: Any
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_OMNI_PN", json.dumps({"host": BASE, "password": "k" * 20}))
    body = _body("pn-bad")
    body["destinations"][0]["to"]["phoneNumber"] = "0041793026720"
    with pytest.raises(OmniValidationError) as caught:
        OmniHook("omni_pn").send_advanced(body)
    assert "0041793026720" not in str(caught.value)
    assert "destinations[0].to.phoneNumber: '+0041******720' is not a phone number" in str(caught.value)
    assert requests_mock.call_count == 0
