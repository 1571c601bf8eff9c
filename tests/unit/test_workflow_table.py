"""The one transition table: every state covered, terminal states closed, illegal moves refused."""

from __future__ import annotations

import pytest

from shared.leads import workflow as wf


def test_every_state_has_a_row_and_targets_are_states():
    assert set(wf.TRANSITIONS) == set(wf.STATES)
    for targets in wf.TRANSITIONS.values():
        assert targets <= set(wf.STATES)


def test_the_happy_path_is_legal():
    path = [wf.RECEIVED, wf.DRAFTING, wf.DRAFTED, wf.GATED, wf.SENDING, wf.SENT, wf.REPLIED]
    for a, b in zip(path, path[1:]):
        wf.check(a, b)


@pytest.mark.parametrize("terminal", [wf.BLOCKED, wf.FAILED, wf.REPLIED])
def test_closed_states_go_nowhere(terminal):
    for target in wf.STATES:
        with pytest.raises(wf.IllegalTransition):
            wf.check(terminal, target)


@pytest.mark.parametrize("a,b", [(wf.RECEIVED, wf.SENT), (wf.DRAFTED, wf.SENDING), (wf.SENT, wf.FAILED),
                                 (wf.DRAFT_SAVED, wf.SENT), (wf.GATED, wf.DRAFTING)])
def test_skipping_or_going_back_is_illegal(a, b):
    with pytest.raises(wf.IllegalTransition) as info:
        wf.check(a, b)
    assert info.value.status == 409


def test_every_working_state_can_fail_or_be_blocked():
    for state in (wf.RECEIVED, wf.DRAFTING, wf.DRAFTED, wf.GATED, wf.SENDING):
        wf.check(state, wf.FAILED)
        wf.check(state, wf.BLOCKED)
