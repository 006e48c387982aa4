"""Identity of a send: the send key, a message id per destination, bulk ids, and readable error paths.

The unit of exactly-once is *(this send, this destination)*:

* the **send key** is a hash of the connection's namespace, the task instance (dag, task, run, map
  index) and the optional ``resend_key``: the same on every try of a task instance, different for
  any other run, DAG, deployment (namespace) or deliberate re-send;
* a destination's **message id** is ``{send key}-{hash of (send key, address)}``: it does not
  depend on the destination's position in the list, so a retry recognises every destination whatever
  the order, and it tells nothing about the number to anyone without the send key;
* a **bulk** is a transport container: destinations go out sorted by message id, so a bulk's
  members depend only on the set of destinations, and its id is a hash of its members (with a
  readable label in front).

Infobip's limits hold: ``bulkId`` at most 100 characters, ``messageId`` at most 200.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import TYPE_CHECKING, Any

from pydantic.alias_generators import to_camel

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from pydantic import ValidationError

BULK_ID_MAX = 100
#: Version of the id scheme, part of every send key (a new scheme never matches an old send).
ID_SCHEME = "omni-send/2"
#: Hex digits of the send key.
SEND_KEY_LENGTH = 16
#: Hex digits of a destination's part of its message id (80 bits: no collision among millions).
DESTINATION_HASH_LENGTH = 20
#: Hex digits of a bulk's member hash.
BULK_HASH_LENGTH = 12
#: Longest readable label kept in front of a bulk id.
LABEL_MAX = 40
#: Bytes of the compact member key kept in the task state store per destination.
MEMBER_KEY_BYTES = 8
_SEPARATOR = "\x1f"


def short_hash(text: str, length: int = 10) -> str:
    """Return the first ``length`` hex digits of the SHA-256 of ``text``."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def _shorten(text: str, max_len: int) -> str:
    """Return ``text`` unchanged when short enough, else its start plus a hash of the whole."""
    if len(text) <= max_len:
        return text
    return f"{text[: max_len - 9]}~{short_hash(text, 8)}"


def send_key(
    *,
    namespace: str,
    dag_id: str,
    task_id: str,
    run_id: str,
    map_index: int | None,
    resend_key: str | None = None,
) -> str:
    """Return the key of one send: the same on every try of a task instance, unique otherwise.

    :param namespace: the connection's namespace (one per deployment sharing an Infobip account).
    :param dag_id: the DAG id.
    :param task_id: the task id (with its task group prefix).
    :param run_id: the DAG run id.
    :param map_index: the map index, -1 (or None) for a task that is not mapped.
    :param resend_key: set to send the same task instance's message again, deliberately.
    """
    index = -1 if map_index is None else map_index
    parts = [ID_SCHEME, namespace, dag_id, task_id, run_id, str(index), resend_key or ""]
    return short_hash(_SEPARATOR.join(parts), SEND_KEY_LENGTH)


def message_id(key: str, address: str) -> str:
    """Return the message id of the destination ``address`` (kind-prefixed, see :func:`address_key`)."""
    return f"{key}-{short_hash(key + _SEPARATOR + address, DESTINATION_HASH_LENGTH)}"


def phone_message_ids(key: str, numbers: Iterable[str]) -> list[str]:
    """Return :func:`message_id` of each phone number (normalized digits), in one quick pass."""
    prefix = f"{key}{_SEPARATOR}phone:"
    sha256 = hashlib.sha256
    return [
        f"{key}-{sha256((prefix + number).encode()).hexdigest()[:DESTINATION_HASH_LENGTH]}"
        for number in numbers
    ]


def address_key(to: dict[str, Any] | Any) -> str:
    """Return the identity of a destination's address: ``phone:41793026727``, ``email:a@b.c``, ...

    Phone numbers arrive normalized by the model (digits only); e-mail addresses are compared
    case-insensitively.
    """
    if to.get("phoneNumber"):
        return f"phone:{to['phoneNumber']}"
    if to.get("emailAddress"):
        return f"email:{str(to['emailAddress']).strip().lower()}"
    if to.get("pushRegistrationId"):
        return f"push:{to['pushRegistrationId']}"
    return f"whatsapp:{to.get('whatsAppUserId') or ''}"


def label(dag_id: str, task_id: str, custom: str | None = None) -> str:
    """Return the readable start of the bulk ids: ``{dag_id}.{task_id}`` or ``custom``, shortened.

    It only helps people find a send in Infobip's portal: it is not part of the identity.
    """
    text = str(custom) if custom else f"{dag_id}.{task_id}"
    return _shorten(text, LABEL_MAX)


def bulk_id(bulk_label: str, key: str, member_ids: Iterable[str], suffix: str = "") -> str:
    """Return the id of the bulk holding ``member_ids``: a function of the member set only.

    :param bulk_label: from :func:`label`.
    :param key: the send key.
    :param member_ids: the message ids of the bulk's destinations.
    :param suffix: appended when the same members go out in a second request (e.g. ``r2``).
    """
    digest = hashlib.sha256()
    for member in sorted(member_ids):
        digest.update(member.encode("utf-8") + b"\n")
    text = f"{bulk_label}.{key}.{digest.hexdigest()[:BULK_HASH_LENGTH]}"
    return f"{text}.{suffix}" if suffix else text


def send_key_of(bulk: str) -> str | None:
    """Return the send key inside a bulk id made by :func:`bulk_id` (``{label}.{key}.{hash}``, then
    ``.r{n}`` when the same members went out again), or None when ``bulk`` has no such shape."""
    parts = bulk.split(".")
    if len(parts) >= 4 and re.fullmatch(r"r\d+", parts[-1]):
        parts.pop()
    return parts[-2] if len(parts) >= 3 else None


def member_key(message: str) -> bytes:
    """Return the compact key (8 bytes) of a message id, as kept in the task state store."""
    return hashlib.blake2b(message.encode("utf-8"), digest_size=MEMBER_KEY_BYTES).digest()


def pack_members(message_ids: Iterable[str]) -> str:
    """Return the member keys of ``message_ids`` as one base64 text (8 bytes each)."""
    return pack_keys(member_key(m) for m in message_ids)


def pack_keys(keys: Iterable[bytes]) -> str:
    """Return member keys (from :func:`member_key`) as one base64 text."""
    return base64.b64encode(b"".join(keys)).decode("ascii")


def unpack_members(packed: str) -> set[bytes]:
    """Return the member keys packed by :func:`pack_members`."""
    raw = base64.b64decode(packed)
    return {raw[i : i + MEMBER_KEY_BYTES] for i in range(0, len(raw), MEMBER_KEY_BYTES)}


# -- readable validation errors ---------------------------------------------------------------------


def error_path(loc: Sequence[Any], prefix: str = "") -> str:
    """Turn a pydantic error location into Infobip's field path: ``destinations[3].to.phoneNumber``."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            name = part if part in ("imageURL", "buttonURL") else to_camel(str(part))
            path = f"{path}.{name}" if path else name
    return path


def error_lines(exc: ValidationError, prefix: str = "") -> list[str]:
    """Return one ``path: message`` line per error of ``exc`` (pydantic's "Value error, " dropped)."""
    lines = []
    for error in exc.errors():
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        path = error_path(error.get("loc", ()), prefix)
        lines.append(f"{path}: {message}" if path else message)
    return lines
