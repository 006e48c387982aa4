"""Personal data in logs: phone numbers are shortened unless the user asks otherwise."""

from __future__ import annotations

import re

#: 7 to 15 digits, optionally after ``+``, not part of a longer word, id, time or URL.
_PHONE_NUMBER_RE = re.compile(r"(?<![\w.:/+-])\+?\d{7,15}(?![\w.:/-])")


def shorten_phone_number(number: str | None, *, full: bool = False) -> str:
    """Return ``number`` shortened for logs: ``41793026727`` becomes ``+4179****727``.

    :param number: the phone number (international digits, ``+`` optional).
    :param full: return the number unchanged (the connection's ``show_full_numbers``).
    """
    if number is None:
        return "<none>"
    if full:
        return number
    digits = number.lstrip("+")
    if len(digits) <= 7:
        return "+" + "*" * len(digits)
    return f"+{digits[:4]}{'*' * (len(digits) - 7)}{digits[-3:]}"


def shorten_numbers(text: str) -> str:
    """Shorten everything in ``text`` that looks like a phone number (``+4179****727``)."""
    return _PHONE_NUMBER_RE.sub(lambda match: shorten_phone_number(match.group()), text)
