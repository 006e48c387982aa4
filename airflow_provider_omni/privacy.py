"""Personal data in logs: phone numbers are shortened unless the user asks otherwise."""

from __future__ import annotations


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
