"""How the functions are chained: deployed names, Pub/Sub topics and who subscribes to them.

Terraform, the local stack and the emulator setup all read this one table.
"""

from __future__ import annotations

# Deployed function names (the Python package of `token-refresh` is `functions/token_refresh`).
FUNCTIONS: tuple[str, ...] = (
    "webhook", "ingest", "extract", "embed", "draft", "gate", "send", "token-refresh", "admin",
)

# topic -> push subscribers as (function, path). Gmail push arrives on `gmail-push`.
SUBSCRIPTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "draft-created": (("gate", ""),),
    "voice-updated": (),
    "workflow-finished": (),
    "gmail-push": (("webhook", "/gmail"),),
}

TOPICS: tuple[str, ...] = tuple(SUBSCRIPTIONS)


def module_name(function: str) -> str:
    """Python package of a deployed function."""
    return function.replace("-", "_")


def queue_name(target: str) -> str:
    """Each Cloud Tasks target has its own queue, so rates and retries are set per hop."""
    return f"{target}-queue"
