"""One lead through the whole local stack, as `python -m functions demo` shows it: webhook → draft → gate →
send → outbox and HubSpot, over real HTTP with real task and event deliveries between the functions."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from functions.localstack import demo
from functions.localstack.emulators.base import free_port
from functions.localstack.stack import LocalStack

pytestmark = [pytest.mark.emulator, pytest.mark.slow]
OPS = {"X-Dev-User": "ops@example.com"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = LocalStack(port=free_port(), data_dir=tmp_path_factory.mktemp("lead-stack")).start()
    yield stack
    stack.stop()


def _demo(stack, **flags) -> list[str]:
    lines: list[str] = []
    code = demo.run(url=stack.url, data_dir=stack.data_dir, out=lines.append, timeout=120, **flags)
    assert code == 0, "\n".join(lines)
    return lines


def _final(lines: list[str]) -> str:
    return [line for line in lines if line.startswith("final state:")][0].split(":", 1)[1].strip()


def _outbox(stack, folder: str) -> list[Path]:
    return sorted((stack.data_dir / "outbox" / folder).glob("*.eml"))


def test_draft_only_leaves_a_gmail_draft_and_logs_hubspot(stack):
    before = len(_outbox(stack, "drafts"))
    lines = _demo(stack, mode="DRAFT_ONLY", kill_switch=False)
    assert _final(lines) == "DRAFT_SAVED"
    assert any("Send mode is DRAFT_ONLY" in line for line in lines)
    assert len(_outbox(stack, "drafts")) == before + 1
    assert any(line.startswith("HubSpot task:") for line in lines)
    assert any(line.startswith("HubSpot note:") for line in lines)
    assert any("'accepted': 0, 'duplicates': 1" in line for line in lines)


def test_send_allowed_sends_exactly_one_email(stack):
    before = len(_outbox(stack, "sent"))
    lines = _demo(stack, mode="SEND_ALLOWED", kill_switch=False)
    final = _final(lines)
    # A draft whose voice match is low is still left for review even when sending is allowed.
    assert final in ("SENT", "DRAFT_SAVED")
    if final == "SENT":
        assert len(_outbox(stack, "sent")) == before + 1
        message = _outbox(stack, "sent")[-1].read_text()
        assert "Message-ID: <wf-" in message and "From: Alex Rivera <alex@example.com>" in message


def test_the_kill_switch_blocks_and_nothing_is_sent(stack):
    sent, drafts = len(_outbox(stack, "sent")), len(_outbox(stack, "drafts"))
    lines = _demo(stack, mode="SEND_ALLOWED", kill_switch=True)
    assert _final(lines) == "BLOCKED"
    assert any("kill switch is on" in line for line in lines)
    assert (len(_outbox(stack, "sent")), len(_outbox(stack, "drafts"))) == (sent, drafts)
    requests.put(stack.url + "/admin/flags", json={"kill_switch": False}, headers=OPS, timeout=30).raise_for_status()


def test_every_workflow_of_the_run_ended_terminal_with_a_timeline(stack):
    rows = requests.get(stack.url + "/admin/workflows", params={"limit": 50}, headers=OPS, timeout=30).json()
    assert rows["workflows"], rows
    for row in rows["workflows"]:
        assert row["state"] in demo.TERMINAL
        detail = requests.get(f"{stack.url}/admin/workflows/{row['id']}", headers=OPS, timeout=30).json()
        assert detail["timeline"]["events"][0]["to_state"] == "RECEIVED"
        assert detail["timeline"]["events"][-1]["to_state"] == row["state"]
