"""PII scrubbing: each kind replaced, checksums respected, the rep's own identity kept, no false alarms."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.voice import pii
from shared.voice.pii import find_blocking_pii, iban_valid, luhn_valid, scrub
from shared.voice.sandbox import run_limited

REP = {"keep_names": ("Alex Rivera",), "keep_emails": ("alex.rivera@example.com",)}


@pytest.mark.parametrize(("text", "expected", "kind"), [
    ("Write to jordan.lee@acme.io today.", "Write to [email] today.", "email"),
    ("mailto:ops+sales@sub.acme.co.uk", "mailto:[email]", "email"),
    ("Call +44 20 7946 0958 now", "Call [phone] now", "phone"),
    ("Call +14155550132 now", "Call [phone] now", "phone"),
    ("Call (415) 555-0132 now", "Call [phone] now", "phone"),
    ("Call 415-555-0132 ext. 12", "Call [phone]", "phone"),
    ("Call 415.555.0132.", "Call [phone].", "phone"),
    ("Call 1 800 555 0199", "Call [phone]", "phone"),
    ("Ruf an: 030 1234567", "Ruf an: [phone]", "phone"),
    ("Appelle le 06 12 34 56 78", "Appelle le [phone]", "phone"),
    ("Call +49 (0)30 1234567", "Call [phone]", "phone"),
    ("my number: 415-555-0132", "my number: [phone]", "phone"),
    ("mobile 4155550132", "mobile [phone]", "phone"),
    ("Card 4111 1111 1111 1111 exp 12/27", "Card [card] exp 12/27", "card"),
    ("Card 4111-1111-1111-1111", "Card [card]", "card"),
    ("Card 5555555555554444", "Card [card]", "card"),
    ("Amex 3782 822463 10005", "Amex [card]", "card"),
    ("SSN 123-45-6789", "SSN [ssn]", "ssn"),
    ("ssn: 123456789", "ssn: [ssn]", "ssn"),
    ("IBAN DE89 3704 0044 0532 0130 00 please", "IBAN [iban] please", "iban"),
    ("IBAN GB82WEST12345698765432.", "IBAN [iban].", "iban"),
    ("IBAN BE68 5390 0754 7034 will do", "IBAN [iban] will do", "iban"),
])
def test_each_kind_is_replaced_and_counted(text, expected, kind):
    result = scrub(text)
    assert result.text == expected
    assert result.counts[kind] == 1
    assert result.total == 1


@pytest.mark.parametrize("text", [
    "Card 4111 1111 1111 1112",  # Luhn fails
    "Ref 79927398710",  # Luhn fails, too short for a card anyway
    "IBAN DE89 3704 0044 0532 0130 01",  # mod-97 fails
    "IBAN DE89370400440532013",  # German IBANs have 22 characters
    "SSN 000-12-3456",  # area 000 is never issued
    "SSN 666-12-3456",
    "SSN 123-00-6789",
])
def test_checksums_and_issuing_rules_are_respected(text):
    result = scrub(text)
    assert result.counts["card"] == result.counts["iban"] == result.counts["ssn"] == 0
    assert find_blocking_pii(text) == []


def test_checksum_helpers():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and iban_valid("de89370400440532013000")
    assert not iban_valid("GB82 WEST 1234 5698 7654 33")


def test_the_reps_own_address_and_name_stay():
    text = ("Alex Rivera here. Reach me at Alex.Rivera@Example.com or arivera@example.com; "
            "Jordan is at jordan@acme.io, and alex@acme.io is someone else.")
    result = scrub(text, **REP)
    assert result.text == ("Alex Rivera here. Reach me at Alex.Rivera@Example.com or arivera@example.com; "
                           "Jordan is at [email], and [email] is someone else.")
    assert result.counts["email"] == 2


@pytest.mark.parametrize("text", [
    "We met on 2024-05-06 at 10:30, and again 06/05/2024 and 05.06.2024.",
    "The call runs 09:00-17:00 CET on 12 March 2024.",
    "Pricing: $1,299.00 per seat, or €1.299,00, or 1 299,00 EUR; 12.5% off.",
    "Fiscal years 2023 and 2024, Q3 2024, the 1990s.",
    "Order #123-456-7890 shipped; invoice no. 415-555-0132; order 4155550132.",
    "Request id 550e8400-e29b-41d4-a716-446655440000 failed.",
    "Version 1.2.3, build 20240506, ZIP 94107, room 1204.",
    "Scores 3-1, 2-0, and 10-12 in the final; 45 people; 3,500 leads.",
    "Tracking 1Z999AA10123456784 is on its way.",
])
def test_no_false_positives_on_ordinary_numbers(text):
    result = scrub(text)
    assert result.text == text, result.counts


def test_find_blocking_pii_reports_card_ssn_and_iban_but_not_contact_details():
    text = ("Pay with 4111 1111 1111 1111, SSN 123-45-6789, IBAN GB82 WEST 1234 5698 7654 32, "
            "call 415-555-0132 or write to jordan@acme.io")
    assert find_blocking_pii(text) == ["card", "ssn", "iban"]
    assert find_blocking_pii("Call 415-555-0132 or write to jordan@acme.io") == []


def test_every_kind_is_always_counted():
    assert scrub("nothing here").counts == dict.fromkeys(pii.KINDS, 0)


def test_pathological_inputs_finish():
    # A pattern that backtracks would take minutes on these; the sandbox turns that into a failure.
    inputs = ["1" * 200_000, "a." * 100_000, "+1 " * 50_000, "DE89 " * 40_000, ("x" * 70 + "@") * 3_000]
    results = run_limited(lambda: [scrub(text).total for text in inputs], timeout_s=20, memory_mb=256)
    assert len(results) == len(inputs)


PII_PIECES = st.sampled_from([
    "jordan@acme.io", "alex.rivera@example.com", "+44 20 7946 0958", "(415) 555-0132", "4111 1111 1111 1111",
    "123-45-6789", "DE89 3704 0044 0532 0130 00", "2024-05-06", "10:30", "$1,299.00", "order #123",
    " ", "-", ".", "@", "+", "(", ")", "0", "1", "4", "9", "\n", "[phone]", "x",
])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.lists(PII_PIECES, max_size=40).map("".join)))
def test_scrub_never_raises_and_is_idempotent(text):
    once = scrub(text, **REP)
    twice = scrub(once.text, **REP)
    assert twice.text == once.text
    assert twice.total == 0
    assert set(once.counts) == set(pii.KINDS)


@settings(max_examples=200, deadline=None)
@given(st.lists(PII_PIECES, max_size=40).map("".join))
def test_no_blocking_pii_survives_scrubbing(text):
    assert find_blocking_pii(scrub(text).text) == []
