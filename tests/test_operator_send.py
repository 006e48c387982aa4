"""OmniSendAdvancedMessageOperator: validation before sending, batching, ids, XCom, templating, mapping.

Most tests run the operator's ``execute`` against the OMNI sandbox (a real HTTP server) with a
small stand-in task context; the DAG tests run real Airflow (``dag.test()`` through ``run_dag``).
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pendulum
import pytest

from airflow_provider_omni.exceptions import OmniError, OmniValidationError
from airflow_provider_omni.hooks.omni import OmniHook
from airflow_provider_omni.models import Destination, SmsData, ViberData
from airflow_provider_omni.operators._ids import BULK_ID_MAX, bulk_id, label, send_key_of
from airflow_provider_omni.operators.send import (
    OmniSendAdvancedMessageOperator,
    build_send_result,
    coerce_destinations,
)

if TYPE_CHECKING:
    from collections.abc import Callable

FLOW = [{"channel": "VIBER", "from": "InfoSMS"}, {"channel": "SMS", "from": "InfoSMS"}]


def numbers(count: int, start: int = 0, last_digit: int | None = None) -> list[str]:
    """``count`` distinct valid numbers; with ``last_digit`` all end in it (sandbox persona)."""
    if last_digit is None:
        return [f"4179{start + i:07d}" for i in range(count)]
    return [f"4179{start + i:06d}{last_digit}" for i in range(count)]


class FakeTI:
    def __init__(
        self,
        *,
        dag_id: str = "send_dag",
        task_id: str = "send",
        run_id: str = "manual__1",
        map_index: int = -1,
        try_number: int = 1,
    ) -> None:
        self.dag_id, self.task_id, self.run_id = dag_id, task_id, run_id
        self.map_index, self.try_number = map_index, try_number


def make_context(**ti_kwargs: Any) -> dict[str, Any]:
    ti = FakeTI(**ti_kwargs)
    return {"ti": ti, "run_id": ti.run_id}


def make_operator(**kwargs: Any) -> OmniSendAdvancedMessageOperator:
    kwargs.setdefault("task_id", "send")
    kwargs.setdefault("viber", {"text": "Your parcel arrives today"})
    kwargs.setdefault("sms", "Your parcel arrives today")
    op = OmniSendAdvancedMessageOperator(**kwargs)
    op.confirm_delays = (0.0,)
    return op


@pytest.fixture
def scenario_key(omni_sandbox: Any, omni_connection: str) -> str:
    return OmniHook(omni_connection).create_scenario("parcels", FLOW).key


def requests_made(sandbox: Any) -> dict[str, int]:
    return {k: v for k, v in sandbox.admin.stats()["requests"].items() if v}


# -- validation: the whole request is checked before the first POST -------------------------------

LATE_BAD = [*numbers(7342), "4179abc", *numbers(10, start=9000)]

BAD_INPUTS = [
    pytest.param({"destinations": LATE_BAD}, "destinations[7342].to.phoneNumber", id="bad-phone-late"),
    pytest.param({"viber": {"text": "x" * 1001}}, "viber.text", id="viber-text-too-long"),
    pytest.param(
        {"viber": {"text": "Hi", "buttonText": "Open"}},
        "buttonURL must be given together",
        id="button-no-url",
    ),
    pytest.param(
        {"viber_validity": timedelta(days=15)}, "viber.validityPeriod", id="viber-validity-too-long"
    ),
    pytest.param({"sms_validity": timedelta(seconds=10)}, "sms.validityPeriod", id="sms-validity-too-short"),
    pytest.param({"callback_data": "c" * 4001}, "callbackData", id="callback-data-too-long"),
    pytest.param({"send_at": pendulum.now("UTC").add(days=200).isoformat()}, "sendAt", id="send-at-too-far"),
    pytest.param({"batch_size": 0}, "batch_size", id="batch-size-0"),
    pytest.param({"batch_size": 1001}, "batch_size", id="batch-size-1001"),
    pytest.param({"destinations": []}, "destinations", id="empty-destinations"),
    pytest.param({"notify_url": "ftp://example.com/hook"}, "notifyUrl", id="notify-url-not-http"),
    pytest.param(
        {"destinations": [{"to": "41790000001", "messageId": "m"}, {"to": "41790000002", "messageId": "m"}]},
        "destinations[1].messageId",
        id="duplicate-message-id",
    ),
    pytest.param(
        {"destinations": ["41790000001", "41790000002", "+41790000001"]},
        "destinations[2].to: +4179****001 is already destinations[0]",
        id="same-number-twice",
    ),
    pytest.param({"viber": None, "sms": None}, "no channel content", id="no-content"),
    pytest.param({"viber": None, "viber_validity": 60}, "viber_validity", id="validity-without-viber"),
]


@pytest.mark.parametrize(("overrides", "expected"), BAD_INPUTS)
def test_invalid_input_fails_before_anything_is_sent(
    omni_sandbox: Any, scenario_key: str, overrides: dict[str, Any], expected: str
) -> None:
    before = requests_made(omni_sandbox)
    kwargs: dict[str, Any] = {"scenario_key": scenario_key, "destinations": numbers(3), **overrides}
    op = make_operator(**kwargs)

    with pytest.raises(OmniValidationError) as err:
        op.execute(make_context())

    assert expected in str(err.value)
    assert requests_made(omni_sandbox) == before  # not one request: no POST, no logs, no scenario
    assert omni_sandbox.admin.stats()["destinations"] == 0


def test_many_bad_destinations_are_counted_and_the_first_ten_listed(
    omni_sandbox: Any, scenario_key: str
) -> None:
    bad = ["0041790000001"] * 25
    op = make_operator(scenario_key=scenario_key, destinations=[*numbers(5), *bad])

    with pytest.raises(OmniValidationError) as err:
        op.execute(make_context())

    text = str(err.value)
    assert "25 of 30 destinations" in text
    assert "destinations[5].to.phoneNumber" in text
    assert "destinations[14].to.phoneNumber" in text
    assert "destinations[15]" not in text
    assert "and 15 more" in text
    assert omni_sandbox.admin.stats()["destinations"] == 0


def test_validation_message_shortens_the_bad_number(omni_sandbox: Any, scenario_key: str) -> None:
    op = make_operator(
        scenario_key=scenario_key, destinations=["417930267270000000"], show_full_numbers=False
    )

    with pytest.raises(OmniValidationError) as err:
        op.execute(make_context())

    assert "417930267270000000" not in str(err.value)
    assert "+4179" in str(err.value)


# -- batching and ids ----------------------------------------------------------------------------


def test_2500_destinations_go_out_in_3_bulks_with_ids_that_do_not_depend_on_positions(
    omni_sandbox: Any, scenario_key: str
) -> None:
    destinations = numbers(2500)
    op = make_operator(scenario_key=scenario_key, destinations=destinations, batch_size=1000)
    context = make_context()
    planned = op.build_bulks(context)

    result = op.execute(context)

    stats = omni_sandbox.admin.stats()
    assert stats["requests"]["advanced"] == 3
    expected_ids = [bulk.bulk_id for bulk in planned]
    assert stats["bulks"] == dict(zip(expected_ids, [1000, 1000, 500], strict=True))
    assert [b["bulk_id"] for b in result["bulks"]] == expected_ids
    assert all(b.startswith(f"send_dag.send.{result['send_key']}.") for b in expected_ids)
    assert (result["total"], result["accepted"], result["rejected"]) == (2500, 2500, 0)
    assert stats["destinations"] == stats["distinct_message_ids"] == 2500
    # Same task instance, any order -> the same bulks and message ids
    reordered = make_operator(scenario_key=scenario_key, destinations=destinations[::-1], batch_size=1000)
    again = reordered.build_bulks(make_context(try_number=2))
    assert [b.bulk_id for b in again] == expected_ids
    assert [b.request.message_ids for b in again] == [b.request.message_ids for b in planned]
    # a message id is the send key and a hash of the address: no position, no phone number in it
    first_id = planned[0].request.message_ids[0]
    assert first_id.startswith(result["send_key"] + "-")
    assert not any(n in mid for b in planned for mid in b.request.message_ids for n in destinations[:5])
    # ... and another run or map index gets other ids
    other_run = op.build_bulks(make_context(run_id="manual__2"))[0].request.message_ids
    other_index = op.build_bulks(make_context(map_index=3))[0].request.message_ids
    assert not set(other_run) & set(planned[0].request.message_ids)
    assert not set(other_index) & set(planned[0].request.message_ids)
    assert result["message_ids"] is None
    assert result["to_by_message_id_truncated"] is True


def test_user_given_message_ids_are_kept(omni_sandbox: Any, scenario_key: str) -> None:
    destinations = [{"to": {"phoneNumber": n}, "messageId": f"order-{i}"} for i, n in enumerate(numbers(3))]
    op = make_operator(scenario_key=scenario_key, destinations=destinations)

    result = op.execute(make_context())

    assert result["message_ids"] == {f"order-{i}": f"+4179****00{i}" for i in range(3)}
    assert result["to_by_message_id_truncated"] is False


def test_bulk_ids_stay_within_100_characters() -> None:
    long_label = label("d" * 250, "group." + "t" * 240)
    assert len(bulk_id(long_label, "f" * 16, ["a", "b"], suffix="r99")) <= BULK_ID_MAX
    # shortened labels still tell different long ids apart
    assert long_label != label("d" * 249 + "x", "group." + "t" * 240)
    assert len(bulk_id(label("", "", "p" * 500), "f" * 16, ["a"])) <= BULK_ID_MAX


@pytest.mark.parametrize("suffix", ["", "r2", "r10"])
@pytest.mark.parametrize(
    "bulk_label", [label("dag", "task"), label("dag", "group.task"), "campaign", label("d" * 250, "t" * 240)]
)
def test_the_send_key_is_read_back_from_any_bulk_id(bulk_label: str, suffix: str) -> None:
    # a bulk sent again carries ".r2": the e2e run's truth missed such a bulk when it read the key
    # as the second part from the end
    made = bulk_id(bulk_label, "0123456789abcdef", ["m1", "m2"], suffix=suffix)

    assert send_key_of(made) == "0123456789abcdef"


def test_a_bulk_id_of_another_shape_has_no_send_key() -> None:
    assert send_key_of("my-own-bulk") is None
    assert send_key_of("a.b") is None


# -- forms of input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("41793026727, +41793026728\n41793026729", ["41793026727", "+41793026728", "41793026729"]),
        ('["41793026727", "41793026728"]', ["41793026727", "41793026728"]),
        ("['41793026727']", ["41793026727"]),
        (41793026727, [41793026727]),
        ({"to": "41793026727"}, [{"to": "41793026727"}]),
        (("41793026727",), ["41793026727"]),
    ],
)
def test_destinations_given_in_many_forms(given: Any, expected: list[Any]) -> None:
    assert coerce_destinations(given) == expected


def test_every_destination_form_reaches_infobip_as_a_phone_number(
    omni_sandbox: Any, scenario_key: str
) -> None:
    destinations = [
        "41790000001",
        "+41790000002",
        41790000003,
        {"to": "41790000004"},
        {"to": {"phoneNumber": "41790000005"}},
        {"phoneNumber": "41790000006", "messageId": "six"},
        Destination.model_validate("41790000007"),
    ]
    op = make_operator(scenario_key=scenario_key, destinations=destinations, show_full_numbers=True)

    result = op.execute(make_context())

    assert sorted(result["message_ids"].values()) == [f"4179000000{i}" for i in range(1, 8)]
    assert "six" in result["message_ids"]
    (body,) = [r["body"] for r in omni_sandbox.admin.requests() if r.get("endpoint") == "advanced"]
    sent = sorted(d["to"]["phoneNumber"] for d in body["destinations"])
    assert sent == [f"4179000000{i}" for i in range(1, 8)]


def test_channel_blocks_models_text_shorthand_and_validity(omni_connection: str) -> None:
    op = make_operator(
        scenario_key="KEY",
        destinations=["41793026727"],
        viber=ViberData(text="Hi", button_text="Track", button_url="https://example.com/t"),
        sms="Hi by SMS",
        viber_validity=timedelta(seconds=90),
        sms_validity=120,
        callback_data="order-42",
    )

    body = json.loads(op.build_bulks(make_context())[0].request.body)

    assert body["viber"] == {
        "text": "Hi",
        "buttonText": "Track",
        "buttonURL": "https://example.com/t",
        "validityPeriod": 90,
        "validityPeriodTimeUnit": "SECONDS",
    }
    assert body["sms"] == {"text": "Hi by SMS", "validityPeriod": 120, "validityPeriodTimeUnit": "MINUTES"}
    assert body["callbackData"] == "order-42"
    assert body["scenarioKey"] == "KEY"
    assert isinstance(SmsData.model_validate(body["sms"]), SmsData)


def test_validity_given_twice_is_refused() -> None:
    op = make_operator(destinations=["41793026727"], sms={"text": "x", "validityPeriod": 5}, sms_validity=10)
    with pytest.raises(OmniValidationError, match="sms_validity"):
        op.build_bulks(make_context())


def test_plain_text_skips_jinja_but_templates_still_render() -> None:
    op = make_operator(destinations=[])
    given = [*numbers(1000), "{{ params.extra }}", {"to": "{{ params.extra }}"}, "a {# note #}b"]

    rendered = op.render_template(given, {"params": {"extra": "41793026727"}})  # type: ignore[arg-type]

    assert rendered[:1000] == numbers(1000)
    assert rendered[1000:] == ["41793026727", {"to": "41793026727"}, "a b"]


def test_importing_the_operator_in_a_dag_file_stays_light() -> None:
    """A DAG file importing the operator does not pay for requests, the hook or the pydantic models."""
    import subprocess
    import sys

    code = (
        "import sys; from airflow.providers.common.compat.sdk import DAG; before = set(sys.modules); "
        "import airflow_provider_omni.operators.send; print(sorted(set(sys.modules) - before))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout

    for heavy in ("'requests'", "airflow_provider_omni.hooks.omni", "airflow_provider_omni.models"):
        assert heavy not in loaded, loaded
    assert "airflow_provider_omni.operators.send" in loaded


def test_batch_size_limit_is_infobips() -> None:
    from airflow_provider_omni.models import MAX_DESTINATIONS_PER_REQUEST
    from airflow_provider_omni.operators.send import MAX_BATCH_SIZE

    assert MAX_BATCH_SIZE == MAX_DESTINATIONS_PER_REQUEST


def test_init_does_no_io(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_OMNI_DEFAULT", raising=False)
    op = OmniSendAdvancedMessageOperator(
        task_id="t", destinations="{{ params.x }}", sms="hi", omni_conn_id="none"
    )
    assert "hook" not in op.__dict__


# -- rejected destinations --------------------------------------------------------------------------


@pytest.mark.parametrize("fail", [False, True])
def test_rejected_destinations_are_reported_after_every_bulk_went_out(
    omni_sandbox: Any, scenario_key: str, fail: bool, logs: Callable[[], str]
) -> None:
    # An e-mail address cannot be reached by a VIBER -> SMS flow: the sandbox refuses it at send.
    destinations = [*numbers(4), {"to": {"emailAddress": "someone@example.com"}}, *numbers(4, start=10)]
    op = make_operator(
        scenario_key=scenario_key, destinations=destinations, batch_size=3, fail_on_rejected=fail
    )

    if fail:
        with pytest.raises(OmniError, match="1 of 9 destinations were refused"):
            op.execute(make_context())
        result = None
    else:
        result = op.execute(make_context())

    stats = omni_sandbox.admin.stats()
    assert stats["requests"]["advanced"] == 3  # the bulks after the rejection still went out
    assert stats["destinations"] == 9
    if result is not None:
        assert (result["accepted"], result["rejected"]) == (8, 1)
        assert result["bulks"][1]["rejected"] == 1
        assert result["rejected_destinations"][0]["status"].startswith("REJECTED")
        assert result["rejected_destinations"][0]["to"] == "so***"  # an e-mail address, masked
    assert "1 of 9 destinations were refused at send" in logs()


def test_rejected_numbers_are_shortened_in_log_and_xcom(
    omni_sandbox: Any, scenario_key: str, logs: Callable[[], str]
) -> None:
    omni_sandbox.admin.configure(reject_duplicate_message_ids=True)
    destinations = [{"to": "41793026727", "messageId": "dup"}]
    make_operator(scenario_key=scenario_key, destinations=destinations, bulk_id_prefix="first").execute(
        make_context()
    )

    result = make_operator(
        scenario_key=scenario_key, destinations=destinations, bulk_id_prefix="second", show_full_numbers=False
    ).execute(make_context())

    assert result["rejected"] == 1
    assert result["rejected_destinations"][0]["to"] == "+4179****727"
    output = logs()
    refused = output[output.index("refused at send") :]
    assert "+4179****727 (dup): REJECTED_DUPLICATE_MESSAGE_ID" in refused
    assert "41793026727" not in output


# -- XCom size ------------------------------------------------------------------------------------


def test_xcom_of_100k_destinations_stays_under_64kb(omni_sandbox: Any, scenario_key: str) -> None:
    omni_sandbox.admin.configure(rate_limits_enabled=False)
    op = make_operator(scenario_key=scenario_key, destinations=numbers(100_000), batch_size=1000)

    started = time.monotonic()
    result = op.execute(
        make_context(dag_id="a_rather_long_dag_id_for_notifications", task_id="send_everyone")
    )
    elapsed = time.monotonic() - started

    size = len(json.dumps(result))
    print(f"100k destinations: {elapsed:.1f} s, XCom {size} bytes")
    assert size < 64 * 1024
    assert len(result["bulks"]) == 100
    assert result["total"] == result["accepted"] == 100_000
    assert omni_sandbox.admin.stats()["distinct_message_ids"] == 100_000


def test_xcom_builder_bounds_rejections_and_message_map() -> None:
    from airflow_provider_omni.operators._send_ledger import BulkRecord
    from airflow_provider_omni.operators.send import Tally

    rejected = [{"to": "+4179****727", "message_id": f"m{i}", "status": "REJECTED_X"} for i in range(150)]
    records = [BulkRecord(i + 1, f"b{i}", "accepted", 0.0, "", 1000, 850, 150, rejected) for i in range(100)]

    xcom = build_send_result(
        scenario_key="KEY", records=records, counts=Tally(100_000, 85_000, 15_000, 0), message_ids=None
    )

    assert len(xcom["rejected_destinations"]) == 100
    assert xcom["rejected"] == 15_000
    assert len(xcom["bulks"]) == 100
    assert len(json.dumps(xcom)) < 64 * 1024


# -- real DAG runs: templating and mapping --------------------------------------------------------

COLLECTED: list[Any] = []


@pytest.mark.dag
def test_templated_destinations_and_texts_in_a_dag_run(
    run_dag: Any, task_states: Any, omni_sandbox: Any, scenario_key: str
) -> None:
    from tests.airflow_compat import DAG, task

    COLLECTED.clear()
    with DAG(
        "send_templated",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1),
        params={"numbers": ["41793026720", "41793026721"], "name": "Ana", "key": scenario_key},
    ) as dag:

        @task
        def from_table() -> list[dict[str, str]]:
            return [{"to": "41793026722", "messageId": "row-1"}]

        templated = OmniSendAdvancedMessageOperator(
            task_id="templated",
            scenario_key="{{ params.key }}",
            destinations="{{ params.numbers }}",
            viber={"text": "Hello {{ params.name }}"},
            sms="Hello {{ params.name }} (SMS)",
            callback_data="{{ dag.dag_id }}",
        )
        from_xcom = OmniSendAdvancedMessageOperator(
            task_id="from_xcom", scenario_key=scenario_key, destinations=from_table(), sms="Hi"
        )

        @task
        def collect(a: dict[str, Any], b: dict[str, Any]) -> None:
            COLLECTED.extend([a, b])

        collect(templated.output, from_xcom.output)

    dr = run_dag(dag)

    assert dr.state == "success", task_states(dr)
    templated_result, xcom_result = COLLECTED
    assert sorted(templated_result["message_ids"].values()) == ["+4179****720", "+4179****721"]
    assert xcom_result["message_ids"] == {"row-1": "+4179****722"}
    bodies = [r["body"] for r in omni_sandbox.admin.requests() if r.get("endpoint") == "advanced"]
    templated_body = next(b for b in bodies if b.get("callbackData") == "send_templated")
    assert templated_body["viber"]["text"] == "Hello Ana"
    assert templated_body["sms"]["text"] == "Hello Ana (SMS)"


@pytest.mark.dag
def test_mapped_sends_put_the_map_index_in_the_ids(
    run_dag: Any, task_states: Any, omni_sandbox: Any, scenario_key: str
) -> None:
    from tests.airflow_compat import DAG, task

    COLLECTED.clear()
    with DAG("send_mapped", schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
        sends = OmniSendAdvancedMessageOperator.partial(
            task_id="send", scenario_key=scenario_key, sms="Hi", batch_size=2
        ).expand(destinations=[numbers(3), numbers(2, start=100)])

        @task
        def collect(results: list[dict[str, Any]]) -> None:
            COLLECTED.extend(results)

        collect(sends.output)

    dr = run_dag(dag)

    assert dr.state == "success"
    bulk_ids = sorted(b["bulk_id"] for r in COLLECTED for b in r["bulks"])
    assert len(set(bulk_ids)) == 3
    # each map index is its own send: its own send key, in its bulk ids and message ids
    keys = {r["send_key"] for r in COLLECTED}
    assert len(keys) == 2
    assert all(any(f".{key}." in bid for key in keys) for bid in bulk_ids)
    stats = omni_sandbox.admin.stats()
    assert stats["destinations"] == stats["distinct_message_ids"] == 5


# -- dry run --------------------------------------------------------------------------------------


def test_a_dry_run_sends_nothing_and_names_the_bulks_a_send_would_use(
    omni_sandbox: Any, scenario_key: str, logs: Callable[[], str]
) -> None:
    destinations = numbers(5)
    dry = make_operator(scenario_key=scenario_key, destinations=destinations, batch_size=2, dry_run=True)

    preview = dry.execute(make_context())

    assert omni_sandbox.admin.stats()["requests"].get("advanced", 0) == 0
    assert preview["dry_run"] is True and preview["flow"] == ["VIBER", "SMS"]
    assert (preview["total"], preview["accepted"], preview["rejected"]) == (5, 0, 0)
    assert [b["destinations"] for b in preview["bulks"]] == [2, 2, 1]
    output = logs()
    assert "Dry run: 5 destination(s) in 3 bulk(s)" in output and "Nothing was sent" in output
    assert destinations[0] not in output
    # the real send of the same task instance uses exactly the bulks and message ids shown
    sent = make_operator(scenario_key=scenario_key, destinations=destinations, batch_size=2).execute(
        make_context()
    )
    assert [b["bulk_id"] for b in sent["bulks"]] == [b["bulk_id"] for b in preview["bulks"]]
    assert sent["message_ids"] == preview["message_ids"]
    assert set(preview) - set(sent) == {"dry_run", "flow"}


def test_a_dry_run_still_refuses_bad_input_before_anything(omni_sandbox: Any, scenario_key: str) -> None:
    op = make_operator(scenario_key=scenario_key, destinations=["41793026727", "12"], dry_run=True)
    with pytest.raises(OmniValidationError, match=r"destinations\[1\]"):
        op.execute(make_context())
    with pytest.raises(OmniValidationError, match="dry_run: 'maybe' is not true or false"):
        make_operator(scenario_key=scenario_key, destinations=["41793026727"], dry_run="maybe").execute(
            make_context()
        )
    assert omni_sandbox.admin.stats()["requests"].get("advanced", 0) == 0


def test_the_sensor_and_the_branch_after_a_dry_run(omni_sandbox: Any, scenario_key: str) -> None:
    from airflow_provider_omni.operators.branch import OmniDeliveryBranchOperator
    from airflow_provider_omni.sensors.delivery_report import OmniDeliveryReportSensor

    preview = make_operator(scenario_key=scenario_key, destinations=numbers(3), dry_run="True").execute(
        make_context()
    )
    summary = OmniDeliveryReportSensor(task_id="wait", send_result=preview, deferrable=True).execute({})
    assert summary["dry_run"] is True and summary["total"] == 3 and summary["all_final"] is True
    assert omni_sandbox.admin.stats()["requests"].get("reports", 0) == 0
    branch = OmniDeliveryBranchOperator(
        task_id="route",
        summary=summary,
        viber_task_ids=["v"],
        sms_fallback_task_ids=["s"],
        failed_task_ids=["f"],
    )
    assert branch.choose_branch({}) == []
