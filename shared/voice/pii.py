"""Personal data in text: scrubbing it from training samples, and finding what must block a draft.

Training samples are the rep's own writing, but they carry other people's addresses, phone numbers
and, now and then, payment details. Those are replaced by placeholders (``[email]``, ``[phone]``,
``[card]``, ``[ssn]``, ``[iban]``) before anything is stored or embedded. The rep's own address stays:
it is theirs, and it is part of how they sign.

Numbers are only called PII when their shape and, where one exists, their checksum say so: a card
number must pass the Luhn check, an IBAN the ISO 13616 mod-97 check. Dates, times, prices, years,
UUIDs and numbers introduced as order, invoice or ticket numbers are left alone.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

KINDS = ("email", "phone", "card", "ssn", "iban")
BLOCKING_KINDS = ("card", "ssn", "iban")
PLACEHOLDERS = {kind: f"[{kind}]" for kind in KINDS}

# IBAN lengths per country, from the SWIFT IBAN registry; a country missing here is checked for the
# general 15..34 length and the checksum only.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24,
    "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21,
    "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27,
    "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24,
    "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TN": 24, "TR": 26, "UA": 29,
    "VA": 22, "VG": 24, "XK": 20,
}

# Every pattern starts with a negative lookbehind for the characters it could itself consume, so a match
# can only begin at the start of a run. Without that, a long run of digits or address characters would
# be retried from every position inside it, which is quadratic.
_EMAIL = re.compile(
    r"(?<![\w.%+-])[\w.%+-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}(?![\w-])")
# IBANs are written unbroken or in groups of four with a shorter last group (ISO 13616 print format).
_IBAN = re.compile(
    r"(?<![\w])[A-Z]{2}\d{2}(?:[A-Z0-9]{11,30}|(?:[ ][A-Z0-9]{4}){2,7}(?:[ ][A-Z0-9]{1,3})?)(?![\w])", re.I)
_CARD = re.compile(r"(?<![\w.,/:-])\d(?:[ -]?\d){12,18}(?![\w-]|[.,/:]\d)")
_SSN = re.compile(r"(?<![\w.,/:-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\w-]|[.,/:]\d)")
_SSN_BARE = re.compile(r"(?i)\b(?:ssn|social security(?: number| no\.?)?)\s*(?:#|no\.?|number)?\s*[:=]?\s*(\d{9})\b")
_PHONE = re.compile(
    r"(?<![\w+.,/:-])"
    r"(?:"
    r"\+\d{7,15}"  # E.164 written unbroken: +14155550132
    r"|\+\d{1,3}(?:[ .-]?\(\d{1,4}\)[ .-]?\d{1,5})?(?:[ .-]\d{1,8}){1,6}"  # +44 20 7946 0958, +1 (415) 555-0132
    r"|(?:1[ .-]?)?\(\d{3}\)[ .-]?\d{3}[ .-]?\d{4}"  # US: (415) 555-0132
    r"|(?:1[ .-])?\d{3}[.-]\d{3}[.-]\d{4}"  # US: 415-555-0132, 415.555.0132
    r"|(?:1 )?\d{3} \d{3} \d{4}"  # US: 415 555 0132
    r"|\(?0\d{1,4}\)?(?:[ /.-]\d{2,8}){1,4}"  # national with trunk 0: 030 1234567, 06 12 34 56 78
    r")"
    r"(?:[ ]?(?:x|ext\.?|extension)[ ]?\d{1,6})?"
    r"(?![\w-]|[.,/:]\d)",
    re.I)
_PHONE_CONTEXT_BARE = re.compile(
    r"(?i)\b(?:phone|tel|telephone|mobile|cell|call(?: me)?(?: at| on)?|whatsapp|text(?: me)?(?: at| on)?|fax)"
    r"\s*[:.#]?\s*(\d{10,12})\b")
_DATE_SHAPE = re.compile(r"^\(?(?:\d{4}[./-]\d{1,2}[./-]\d{1,2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4})\)?$")
_NOT_A_PHONE_BEFORE = re.compile(
    r"(?i)(?:\b(?:order|invoice|inv|po|ref|reference|ticket|case|tracking|account|acct|serial|sku|confirmation)"
    r"\s*(?:no\.?|number|#|id)?\s*[:.#]?|#|[$€£¥]|\b(?:usd|eur|gbp))\s*$")
_NOT_A_PHONE_AFTER = re.compile(r"(?i)^\s*(?:[$€£¥%]|usd|eur|gbp|dollars|euros|units|km|kg|mb|gb)\b")


@dataclasses.dataclass(frozen=True)
class Scrubbed:
    """Text with personal data replaced, and how many of each kind were replaced."""

    text: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def scrub(text: str, *, keep_names: Iterable[str] = (), keep_emails: Iterable[str] = ()) -> Scrubbed:
    """Replace third-party email addresses, phone numbers, card numbers, SSNs and IBANs with placeholders.

    Names are not detected (that needs a language model, not a pattern); ``keep_names`` instead lets an
    address of the rep's own domain built from their name (``alex.rivera@``, ``arivera@``) stay, like
    the addresses in ``keep_emails``. Scrubbing is idempotent: scrubbing scrubbed text changes nothing.

    Args:
        text: The text to scrub.
        keep_names: The rep's names, e.g. ``("Alex Rivera",)``.
        keep_emails: The rep's own addresses; compared without regard to case.

    Returns:
        The scrubbed text and a count per kind (every kind in ``KINDS`` is present).
    """
    keep = _Keep(keep_names, keep_emails)
    counts = dict.fromkeys(KINDS, 0)
    # Replacing can join what a placeholder used to separate; repeat until nothing more is found so the
    # result is a fixed point. Every round removes digits or an "@", so this ends.
    while True:
        spans = _find(text, keep)
        if not spans:
            break
        pieces, cursor = [], 0
        for start, end, kind in spans:
            pieces.append(text[cursor:start])
            pieces.append(PLACEHOLDERS[kind])
            counts[kind] += 1
            cursor = end
        pieces.append(text[cursor:])
        text = "".join(pieces)
    return Scrubbed(text=text, counts=counts)


def find_blocking_pii(text: str) -> list[str]:
    """The kinds of personal data in ``text`` that must stop a draft from being sent.

    Args:
        text: A draft's subject and body.

    Returns:
        The kinds found among ``BLOCKING_KINDS`` (``card`` passing Luhn, ``ssn``, ``iban`` passing
        mod-97), in that order; empty when there are none.
    """
    found = {kind for _, _, kind in _find(text, _Keep((), ())) if kind in BLOCKING_KINDS}
    return [kind for kind in BLOCKING_KINDS if kind in found]


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn check (ISO/IEC 7812-1 Annex B)."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """Whether ``candidate`` (spaces allowed) is an IBAN with a valid length and ISO 13616 check digits."""
    iban = candidate.replace(" ", "").upper()
    if not (15 <= len(iban) <= 34) or not iban[:2].isalpha() or not iban[2:4].isdigit() or not iban.isalnum():
        return False
    expected = _IBAN_LENGTHS.get(iban[:2])
    if expected is not None and len(iban) != expected:
        return False
    rearranged = iban[4:] + iban[:4]
    number = "".join(str(int(char, 36)) for char in rearranged)
    return int(number) % 97 == 1


class _Keep:
    def __init__(self, names: Iterable[str], emails: Iterable[str]):
        self.emails = {email.strip().lower() for email in emails if email and "@" in email}
        self.domains = {email.rsplit("@", 1)[1] for email in self.emails}
        self.aliases: set[str] = set()
        for name in names:
            parts = [part for part in re.split(r"[^\w]+", name.lower()) if part]
            if not parts:
                continue
            first, last = parts[0], parts[-1]
            self.aliases.update({first, last, first + last, first[0] + last, first + last[0]} if len(parts) > 1
                                else {first})

    def email(self, address: str) -> bool:
        address = address.lower()
        if address in self.emails:
            return True
        local, _, domain = address.rpartition("@")
        return domain in self.domains and re.sub(r"[._-]", "", local) in self.aliases


def _find(text: str, keep: _Keep) -> list[tuple[int, int, str]]:
    """Non-overlapping spans of personal data, most specific kind first, in text order."""
    taken: list[tuple[int, int, str]] = []

    def claim(start: int, end: int, kind: str) -> None:
        if all(end <= s or start >= e for s, e, _ in taken):
            taken.append((start, end, kind))

    for match in _EMAIL.finditer(text):
        if not keep.email(match.group()):
            claim(match.start(), match.end(), "email")
    for match in _IBAN.finditer(text):
        # A four-letter word after a grouped IBAN reads as one more group; drop trailing groups until
        # the checksum holds.
        groups = match.group().split(" ")
        for count in range(len(groups), 0, -1):
            candidate = " ".join(groups[:count])
            if iban_valid(candidate):
                claim(match.start(), match.start() + len(candidate), "iban")
                break
    for match in _CARD.finditer(text):
        if _is_card(match.group()):
            claim(match.start(), match.end(), "card")
    for match in _SSN.finditer(text):
        area, group, serial = match.group(1), match.group(3), match.group(4)
        # SSA rules: no area 000, 666 or 9xx, no group 00, no serial 0000.
        if area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000":
            claim(match.start(), match.end(), "ssn")
    for match in _SSN_BARE.finditer(text):
        claim(match.start(1), match.end(1), "ssn")
    for match in _PHONE.finditer(text):
        if _is_phone(text, match):
            claim(match.start(), match.end(), "phone")
    for match in _PHONE_CONTEXT_BARE.finditer(text):
        claim(match.start(1), match.end(1), "phone")
    taken.sort()
    return taken


def _is_card(candidate: str) -> bool:
    digits = re.sub(r"\D", "", candidate)
    if not 13 <= len(digits) <= 19 or not luhn_valid(digits):
        return False
    groups = re.split(r"[ -]", candidate)
    # Separators, when present, split the number the way cards are printed (4-4-4-4, 4-6-5, ...), not at
    # random, and a number of one repeated digit is a placeholder, not a card.
    if len(groups) > 1 and (len(set(re.findall(r"[ -]", candidate))) > 1 or min(map(len, groups)) < 3):
        return False
    return len(set(digits)) > 1 and digits[0] in "23456"


def _is_phone(text: str, match: re.Match[str]) -> bool:
    candidate = match.group()
    digits = re.sub(r"\D", "", candidate)
    if not 8 <= len(digits) <= 15:  # ITU-T E.164 allows at most 15 digits; 8 is the shortest in common use
        return False
    if _DATE_SHAPE.match(candidate.strip()):
        return False
    if not candidate.startswith("+") and not re.search(r"[ ().\-/]", candidate):
        return False  # an unbroken run of digits is an id or an amount as often as a number to dial
    if _NOT_A_PHONE_BEFORE.search(text[max(0, match.start() - 24):match.start()]):
        return False
    return not _NOT_A_PHONE_AFTER.match(text[match.end():match.end() + 12])
