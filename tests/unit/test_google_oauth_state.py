"""The connect flow's state: signed, expiring, bound to its rep."""

from __future__ import annotations

import datetime as dt

import pytest

from shared.accounts_google.oauth import StateRefused, read_state, sign_state

NOW = dt.datetime(2025, 1, 13, 10, 0, tzinfo=dt.timezone.utc)
KEY = b"k" * 32


def test_a_state_reads_back_with_its_key():
    state = sign_state(KEY, {"rep": "r1", "nonce": "n", "exp": int(NOW.timestamp()) + 60})
    assert read_state(KEY, state, NOW)["rep"] == "r1"


@pytest.mark.parametrize("mangle", [
    lambda s: s[:-2] + ("AA" if not s.endswith("AA") else "BB"),  # another MAC
    lambda s: s.split(".")[0],  # no MAC
    lambda s: "",  # nothing
])
def test_a_mangled_state_is_refused(mangle):
    state = sign_state(KEY, {"rep": "r1", "nonce": "n", "exp": int(NOW.timestamp()) + 60})
    with pytest.raises(StateRefused):
        read_state(KEY, mangle(state), NOW)


def test_a_state_signed_with_another_key_or_expired_is_refused():
    state = sign_state(KEY, {"rep": "r1", "nonce": "n", "exp": int(NOW.timestamp()) + 60})
    with pytest.raises(StateRefused):
        read_state(b"other-key" * 4, state, NOW)
    with pytest.raises(StateRefused, match="expired"):
        read_state(KEY, state, NOW + dt.timedelta(minutes=2))
