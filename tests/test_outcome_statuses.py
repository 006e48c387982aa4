"""Every Infobip status group and status the wait knows, classified on the last step and on an earlier one.

Source of the statuses: Infobip's response status documentation,
https://www.infobip.com/docs/essentials/response-status-and-error-codes.  Failover to the next step
happens when a step is UNDELIVERABLE or EXPIRED; a REJECTED status means the platform refused the
message (routing, credits, sender, blocklist, duplicate id): no failover follows, so it is final on any
step.  DELIVERED_TO_OPERATOR is intermediate (a handset report may follow).
"""

from __future__ import annotations

import pytest

from airflow_provider_omni.models import DeliveryReport, Status
from airflow_provider_omni.outcome import DeliveryTracker, Outcome, classify, is_final_status

FLOW = ("VIBER", "SMS")

# (group id, group name, status id, status name)
ACCEPTED = [(0, "ACCEPTED", 0, "ACCEPTED")]
PENDING = [
    (1, "PENDING", 3, "PENDING_WAITING_DELIVERY"),
    (1, "PENDING", 7, "PENDING_ENROUTE"),
    (1, "PENDING", 26, "PENDING_ACCEPTED"),
]
UNDELIVERABLE = [
    (2, "UNDELIVERABLE", 4, "UNDELIVERABLE_REJECTED_OPERATOR"),
    (2, "UNDELIVERABLE", 9, "UNDELIVERABLE_NOT_DELIVERED"),
    (2, "UNDELIVERABLE", 31, "UNDELIVERABLE_NOT_SENT"),
    (2, "UNDELIVERABLE", 96, "NO_ANSWER"),
    (2, "UNDELIVERABLE", 97, "BUSY"),
    (2, "UNDELIVERABLE", 98, "CANCELLED"),
]
DELIVERED_TO_OPERATOR = [(3, "DELIVERED", 2, "DELIVERED_TO_OPERATOR")]
DELIVERED_TO_HANDSET = [(3, "DELIVERED", 5, "DELIVERED_TO_HANDSET")]
EXPIRED = [(4, "EXPIRED", 15, "EXPIRED_EXPIRED"), (4, "EXPIRED", 29, "EXPIRED_DLR_UNKNOWN")]
REJECTED = [
    (5, "REJECTED", 6, "REJECTED_NETWORK"),
    (5, "REJECTED", 8, "REJECTED_PREFIX_MISSING"),
    (5, "REJECTED", 10, "REJECTED_DND"),
    (5, "REJECTED", 11, "REJECTED_SOURCE"),
    (5, "REJECTED", 12, "REJECTED_NOT_ENOUGH_CREDITS"),
    (5, "REJECTED", 13, "REJECTED_SENDER"),
    (5, "REJECTED", 14, "REJECTED_DESTINATION_BLOCKLISTED"),
    (5, "REJECTED", 18, "REJECTED_DESTINATION_NOT_REGISTERED"),
    (5, "REJECTED", 19, "REJECTED_ROUTE_NOT_AVAILABLE"),
    (5, "REJECTED", 20, "REJECTED_FLOODING_FILTER"),
    (5, "REJECTED", 21, "REJECTED_SYSTEM_ERROR"),
    (5, "REJECTED", 23, "REJECTED_DUPLICATE_MESSAGE_ID"),
    (5, "REJECTED", 25, "REJECTED_MESSAGE_TOO_LONG"),
    (5, "REJECTED", 51, "MISSING_TO"),
    (5, "REJECTED", 52, "REJECTED_DESTINATION"),
]

P, F = Outcome.PENDING, Outcome.FAILED
# status -> (outcome on the last step SMS, outcome on the non-last step VIBER)
TABLE = [
    *[(s, P, P) for s in ACCEPTED + PENDING + DELIVERED_TO_OPERATOR],
    *[(s, F, P) for s in UNDELIVERABLE + EXPIRED],  # a later step may still deliver
    *[(s, F, F) for s in REJECTED],  # refused by the platform: no failover follows
    *[(s, Outcome.SMS_DELIVERED, Outcome.VIBER_DELIVERED) for s in DELIVERED_TO_HANDSET],
]


def status(group_id: int, group_name: str, status_id: int, name: str) -> dict[str, object]:
    return {"groupId": group_id, "groupName": group_name, "id": status_id, "name": name}


@pytest.mark.parametrize(("code", "last_step", "earlier_step"), TABLE, ids=[row[0][3] for row in TABLE])
def test_every_status_is_classified_on_the_last_and_on_an_earlier_step(code, last_step, earlier_step):
    as_dict = status(*code)
    as_model = Status.model_validate(as_dict)
    for value in (as_dict, as_model):
        assert classify("SMS", value, FLOW) is last_step
        assert classify("VIBER", value, FLOW) is earlier_step
    # the group alone (a status whose id is unknown to us) gives the same answer, except DELIVERED,
    # where only the id tells handset from operator
    if code[1] != "DELIVERED":
        group_only = {"groupId": code[0], "groupName": code[1]}
        assert classify("SMS", group_only, FLOW) is last_step
        assert classify("VIBER", group_only, FLOW) is earlier_step
    assert is_final_status(as_dict) is (last_step is not P)


@pytest.mark.parametrize("code", REJECTED, ids=[r[3] for r in REJECTED])
def test_a_rejected_viber_step_ends_the_wait_for_that_destination(code):
    tracker = DeliveryTracker({"b1": 1})
    report = DeliveryReport.model_validate(
        {"bulkId": "b1", "messageId": "m1", "to": "41790000000", "channel": "VIBER", "status": status(*code)}
    )
    assert tracker.ingest(report) is Outcome.FAILED
    assert tracker.all_final
    assert tracker.summary()["failed"][0]["status"] == code[3]
