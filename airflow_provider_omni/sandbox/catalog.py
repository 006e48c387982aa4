"""Static data of the sandbox: Infobip statuses and errors, personas, prices, network codes.

Pure data, no I/O and no third-party imports, so that it can be read by tests and docs cheaply.
"""

from __future__ import annotations

from typing import Any

# -- statuses (``status`` of responses, reports and logs) ------------------------------------------

PENDING_ENROUTE: dict[str, Any] = {
    "groupId": 1,
    "groupName": "PENDING",
    "id": 7,
    "name": "PENDING_ENROUTE",
    "description": "Message sent to next instance",
}
DELIVERED_TO_OPERATOR: dict[str, Any] = {
    "groupId": 3,
    "groupName": "DELIVERED",
    "id": 2,
    "name": "DELIVERED_TO_OPERATOR",
    "description": "Message delivered to operator",
}
DELIVERED_TO_HANDSET: dict[str, Any] = {
    "groupId": 3,
    "groupName": "DELIVERED",
    "id": 5,
    "name": "DELIVERED_TO_HANDSET",
    "description": "Message delivered to handset",
}
UNDELIVERABLE_NOT_DELIVERED: dict[str, Any] = {
    "groupId": 2,
    "groupName": "UNDELIVERABLE",
    "id": 9,
    "name": "UNDELIVERABLE_NOT_DELIVERED",
    "description": "Message sent not delivered",
}
EXPIRED_EXPIRED: dict[str, Any] = {
    "groupId": 4,
    "groupName": "EXPIRED",
    "id": 15,
    "name": "EXPIRED_EXPIRED",
    "description": "Message expired",
}
#: The status of a message accepted by the Messages API (its send answer's example).
MESSAGE_ACCEPTED: dict[str, Any] = {
    "groupId": 1,
    "groupName": "PENDING",
    "id": 26,
    "name": "MESSAGE_ACCEPTED",
    "description": "Message sent to next instance",
}
REJECTED_DUPLICATE_MESSAGE_ID: dict[str, Any] = {
    "groupId": 5,
    "groupName": "REJECTED",
    "id": 23,
    "name": "REJECTED_DUPLICATE_MESSAGE_ID",
    "description": "Message rejected: the message id was already used",
    "action": "Use a new messageId",
}

# -- errors (``error`` of reports) ----------------------------------------------------------------

NO_ERROR: dict[str, Any] = {
    "groupId": 0,
    "groupName": "OK",
    "id": 0,
    "name": "NO_ERROR",
    "description": "No Error",
    "permanent": False,
}
EC_UNKNOWN_USER: dict[str, Any] = {
    "groupId": 1,
    "groupName": "HANDSET_ERRORS",
    "id": 7002,
    "name": "EC_UNKNOWN_USER",
    "description": "The user is not registered on the channel",
    "permanent": True,
}
EC_ABSENT_SUBSCRIBER: dict[str, Any] = {
    "groupId": 1,
    "groupName": "HANDSET_ERRORS",
    "id": 27,
    "name": "EC_ABSENT_SUBSCRIBER",
    "description": "Absent Subscriber",
    "permanent": False,
}
EC_VALIDITY_EXPIRED: dict[str, Any] = {
    "groupId": 2,
    "groupName": "USER_ERRORS",
    "id": 4101,
    "name": "EC_VALIDITY_EXPIRED",
    "description": "Validity expired",
    "permanent": False,
}
EC_DUPLICATE_MESSAGE: dict[str, Any] = {
    "groupId": 3,
    "groupName": "OPERATOR_ERRORS",
    "id": 5492,
    "name": "EC_DUPLICATE_MESSAGE",
    "description": "Duplicate message",
    "permanent": True,
}

# -- what a persona does on one channel step -------------------------------------------------------

#: The step is delivered to the handset after a short simulated delay.
DELIVER = "deliver"
#: The user is not on this channel (EC_UNKNOWN_USER); the flow moves on at once.
UNKNOWN_USER = "unknown_user"
#: The step is sent but the handset is absent (UNDELIVERABLE, EC_ABSENT_SUBSCRIBER).
ABSENT = "absent"
#: Nothing ever confirms: the step expires after its validity period (EXPIRED, EC_VALIDITY_EXPIRED).
SILENT = "silent"

BEHAVIOURS = (DELIVER, UNKNOWN_USER, ABSENT, SILENT)

#: ``(status, error)`` of a step that ends with this behaviour.
OUTCOMES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    DELIVER: (DELIVERED_TO_HANDSET, NO_ERROR),
    UNKNOWN_USER: (UNDELIVERABLE_NOT_DELIVERED, EC_UNKNOWN_USER),
    ABSENT: (UNDELIVERABLE_NOT_DELIVERED, EC_ABSENT_SUBSCRIBER),
    SILENT: (EXPIRED_EXPIRED, EC_VALIDITY_EXPIRED),
}

#: Built-in personas: channel (or ``"*"`` for any other channel) to behaviour.
PERSONAS: dict[str, dict[str, str]] = {
    "viber_user": {"VIBER": DELIVER, "SMS": DELIVER, "*": DELIVER},
    "no_viber": {"VIBER": UNKNOWN_USER, "SMS": DELIVER, "*": DELIVER},
    "unreachable": {"VIBER": UNKNOWN_USER, "SMS": ABSENT, "*": ABSENT},
    "silent": {"VIBER": SILENT, "SMS": SILENT, "*": SILENT},
    "viber_silent": {"VIBER": SILENT, "SMS": DELIVER, "*": DELIVER},
}

PERSONA_DESCRIPTIONS: dict[str, str] = {
    "viber_user": "Viber user: delivered on VIBER (DELIVERED_TO_HANDSET)",
    "no_viber": "no Viber (EC_UNKNOWN_USER on the Viber step): falls back to SMS, delivered on SMS",
    "unreachable": "no Viber, and the SMS is undeliverable (UNDELIVERABLE_NOT_DELIVERED, "
    "EC_ABSENT_SUBSCRIBER)",
    "silent": "nothing ever confirms: each step expires after its validity, the message ends EXPIRED",
    "viber_silent": "Viber never confirms: the Viber validity runs out, then the SMS is delivered",
}

#: Persona of each last digit of the phone number.
DEFAULT_BY_LAST_DIGIT: dict[str, str] = {
    **dict.fromkeys("012345", "viber_user"),
    **dict.fromkeys("67", "no_viber"),
    "8": "unreachable",
    "9": "silent",
}

# -- money and networks ----------------------------------------------------------------------------

CURRENCY = "EUR"
DEFAULT_PRICES: dict[str, float] = {"VIBER": 0.005, "SMS": 0.01, "*": 0.01}

#: Country calling code prefix to an illustrative MCC+MNC; others get the ITU test network 00101.
MCC_MNC_BY_PREFIX: tuple[tuple[str, str], ...] = (
    ("385", "21901"),
    ("381", "22001"),
    ("41", "22801"),
    ("44", "23410"),
    ("49", "26201"),
    ("33", "20801"),
    ("39", "22201"),
    ("34", "21401"),
    ("1", "310260"),
)
TEST_MCC_MNC = "00101"


def mcc_mnc_for(number: str) -> str:
    """Return an illustrative ``mccMnc`` for an international phone number (digits only)."""
    for prefix, code in MCC_MNC_BY_PREFIX:
        if number.startswith(prefix):
            return code
    return TEST_MCC_MNC


# -- channels --------------------------------------------------------------------------------------

#: Messages API channel to the persona channel whose behaviour it follows (a persona may also name
#: the Messages API channel itself, which then wins).
PERSONA_CHANNEL: dict[str, str] = {"VIBER_BM": "VIBER", "VIBER_BOT": "VIBER"}


def behaviour_of(persona: dict[str, str], channel: str) -> str:
    """Return what ``persona`` does on ``channel`` (an OMNI or a Messages API channel)."""
    alias = PERSONA_CHANNEL.get(channel, channel)
    return persona.get(channel) or persona.get(alias) or persona.get("*", DELIVER)


#: Channel to the request field that carries its content.
CONTENT_FIELD: dict[str, str] = {
    "SMS": "sms",
    "VIBER": "viber",
    "WHATSAPP": "whatsApp",
    "VOICE": "voice",
    "EMAIL": "email",
    "PUSH": "push",
    "LINE": "line",
    "KAKAO_CHINGU": "kakaoChingu",
    "KAKAO_ALIM": "kakaoAlim",
    "VKONTAKTE": "vKontakte",
}

#: Channel to the ``to`` fields that can address it (the first one present is used).
ADDRESS_FIELDS: dict[str, tuple[str, ...]] = {
    "EMAIL": ("emailAddress",),
    "PUSH": ("pushRegistrationId",),
    "WHATSAPP": ("phoneNumber", "whatsAppUserId"),
}
PHONE_ONLY: tuple[str, ...] = ("phoneNumber",)

#: Default validity of a step when the request gives none (Infobip's guide: Viber 24 h, SMS 48 h).
DEFAULT_VALIDITY_SECONDS: dict[str, float] = {"VIBER": 24 * 3600.0, "SMS": 48 * 3600.0, "*": 48 * 3600.0}

REPORT_STYLES = ("final", "per_step", "fallback_new_message_id", "intermediate")
