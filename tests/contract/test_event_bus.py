"""The EventBus port: Pub/Sub (on the gcloud emulator, push subscriptions) and the embedded bus, one suite.

Subscribers are a loopback receiver standing where the functions would be. Both adapters must produce the
same push requests, which functions-framework turns into the same CloudEvent. The embedded bus's backoff
and token are checked on it alone: the emulator applies its own redelivery timing and sends no token.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterator

import pytest

from shared.adapters.local_events import LocalEventBus, PushRetryPolicy
from shared.adapters.pubsub import PubSubBus, subscription_id
from shared.errors import DependencyDown
from shared.ports import EventBus

PROJECT = "test-project"
MESSAGE_FIELDS = {"attributes", "data", "messageId", "message_id", "publishTime", "publish_time"}
FAST = PushRetryPolicy(min_backoff=0.05, max_backoff=0.2, max_attempts=20)


@dataclasses.dataclass
class Harness:
    bus: EventBus
    topic: str


def topology(topic: str) -> dict[str, tuple[tuple[str, str], ...]]:
    """Two subscribers, one at a function's root and one at a sub-path, like ``draft-created`` and Gmail."""
    return {topic: (("gate", ""), ("webhook", "/gmail"))}


@pytest.fixture(params=["embedded", pytest.param("pubsub", marks=pytest.mark.emulator)])
def harness(request, receiver) -> Iterator[Harness]:
    topic = f"events-{uuid.uuid4().hex[:8]}"  # a topic per test: no test sees another's messages

    def url_for(name: str) -> str:
        return f"{receiver.url}/{name}"

    if request.param == "embedded":
        bus = LocalEventBus(url_for, project=PROJECT, subscriptions=topology(topic), retry=FAST)
    else:
        emulator = request.getfixturevalue("pubsub_emulator")
        bus = PubSubBus(project=PROJECT, emulator_host=emulator.host)
        bus.ensure_topology(topology(topic), url_for, min_backoff=0.05, max_backoff=0.2)
    yield Harness(bus, topic)
    bus.close()


def test_implements_the_port(harness):
    assert isinstance(harness.bus, EventBus)


def test_an_event_reaches_every_subscriber_in_the_push_format(harness, receiver):
    message_id = harness.bus.publish(harness.topic, {"workflow_id": "wf-1", "score": 0.5},
                                     attributes={"workflow_id": "wf-1", "kind": "draft"})
    assert isinstance(message_id, str) and message_id

    [to_gate] = receiver.wait_for(1, path="/gate")
    [to_webhook] = receiver.wait_for(1, path="/webhook/gmail")
    for got, function in ((to_gate, "gate"), (to_webhook, "webhook")):
        assert got.method == "POST"
        assert got.header("Content-Type").startswith("application/json")
        body = got.json()
        assert set(body) == {"message", "subscription"}
        assert body["subscription"] == f"projects/{PROJECT}/subscriptions/{subscription_id(harness.topic, function)}"
        message = body["message"]
        assert set(message) == MESSAGE_FIELDS
        assert json.loads(base64.b64decode(message["data"])) == {"workflow_id": "wf-1", "score": 0.5}
        assert message["attributes"] == {"workflow_id": "wf-1", "kind": "draft"}
        assert message["messageId"] == message["message_id"] == message_id
        assert message["publishTime"] == message["publish_time"]
        published = dt.datetime.fromisoformat(message["publishTime"])
        assert message["publishTime"].endswith("Z") and published.tzinfo is not None


def test_an_event_without_attributes_still_carries_an_empty_map(harness, receiver):
    harness.bus.publish(harness.topic, {"n": 1})

    [got] = receiver.wait_for(1, path="/gate")
    assert got.json()["message"]["attributes"] == {}


def test_functions_framework_reads_the_push_body_as_a_cloud_event(harness, receiver, tmp_path):
    functions_framework = pytest.importorskip("functions_framework")
    out = tmp_path / "event.json"
    source = tmp_path / "main.py"
    source.write_text(
        "import json, pathlib\n"
        "import functions_framework\n\n"
        "@functions_framework.cloud_event\n"
        "def handle(event):\n"
        f"    pathlib.Path({str(out)!r}).write_text(json.dumps("
        "{'type': event['type'], 'id': event['id'], 'data': event.data}))\n")
    message_id = harness.bus.publish(harness.topic, {"n": 2}, attributes={"a": "b"})
    [got] = receiver.wait_for(1, path="/gate")

    app = functions_framework.create_app("handle", str(source), "cloudevent")
    response = app.test_client().post("/", data=got.body, headers={"Content-Type": "application/json"})

    assert response.status_code == 200, response.data
    event = json.loads(out.read_text())
    assert event["type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert event["id"] == message_id
    assert json.loads(base64.b64decode(event["data"]["message"]["data"])) == {"n": 2}
    assert event["data"]["message"]["attributes"] == {"a": "b"}


def test_a_subscriber_answering_500_gets_the_message_again(harness, receiver):
    receiver.respond("/gate", 500)

    message_id = harness.bus.publish(harness.topic, {"n": 3})

    first, second = receiver.wait_for(2, path="/gate", timeout=30)[:2]
    assert [first.status, second.status] == [500, 200]
    assert first.json()["message"]["messageId"] == second.json()["message"]["messageId"] == message_id
    assert second.json()["message"]["data"] == first.json()["message"]["data"]
    assert [r.status for r in receiver.received("/webhook/gmail")] == [200]


def test_publishing_to_an_unknown_topic_is_a_dependency_failure(harness):
    with pytest.raises(DependencyDown):
        harness.bus.publish(f"missing-{uuid.uuid4().hex[:8]}", {"n": 7})


def test_attributes_must_be_strings(harness):
    with pytest.raises(TypeError):
        harness.bus.publish(harness.topic, {"n": 8}, attributes={"count": 3})


# --- the embedded bus alone ----------------------------------------------------------------------


@pytest.fixture
def local(receiver) -> Iterator[Callable[..., LocalEventBus]]:
    built: list[LocalEventBus] = []

    def build(**kwargs) -> LocalEventBus:
        kwargs.setdefault("subscriptions", topology("events"))
        kwargs.setdefault("project", PROJECT)
        bus = LocalEventBus(lambda name: f"{receiver.url}/{name}", **kwargs)
        built.append(bus)
        return bus

    yield build
    for bus in built:
        bus.close()


def test_redelivery_backs_off_exponentially_up_to_the_cap_then_stops(local, receiver):
    # Embedded only: the emulator applies its own redelivery timing, whatever the retry policy says.
    bus = local(retry=PushRetryPolicy(min_backoff=0.05, max_backoff=0.1, max_attempts=7))
    receiver.respond("/gate", *[500] * 50)

    bus.publish("events", {"n": 4})

    got = receiver.wait_for(7, path="/gate", timeout=10)
    assert bus.wait_idle(5)
    assert len(receiver.received("/gate")) == 7  # the attempt cap: dropped after the seventh
    gaps = [b.at - a.at for a, b in zip(got, got[1:])]
    for gap, backoff in zip(gaps, [0.05, 0.1, 0.1, 0.1, 0.1, 0.1]):
        assert gap >= backoff - 0.005, gaps
    # Uncapped, the sixth wait would be 1.6 s; capped it is 0.1 s. The margin absorbs a slow machine.
    assert gaps[-1] < 0.8, gaps


def test_push_backoff_arithmetic():
    policy = PushRetryPolicy(min_backoff=10, max_backoff=600, max_attempts=100)
    assert [policy.delay(n) for n in range(1, 9)] == [10, 20, 40, 80, 160, 320, 600, 600]


def test_pushes_carry_a_bearer_token_for_the_subscriber_audience(local, receiver):
    # Embedded only: the emulator sends no OIDC token with its pushes.
    bus = local(token_source=lambda aud: f"token-for-{aud}", audience_for=lambda name: f"https://{name}.test")

    bus.publish("events", {"n": 5})

    [got] = receiver.wait_for(1, path="/gate")
    assert got.header("Authorization") == "Bearer token-for-https://gate.test"
    assert receiver.wait_for(1, path="/webhook/gmail")[0].header("Authorization") == \
        "Bearer token-for-https://webhook.test"


def test_a_topic_without_subscribers_accepts_events(local, receiver):
    bus = local(subscriptions={"events": (), "lonely": ()})

    assert bus.publish("lonely", {"n": 6})
    assert bus.wait_idle(1)
    assert receiver.received() == []


# --- the production adapter's emulator setup -----------------------------------------------------


@pytest.mark.emulator
def test_ensure_topology_is_idempotent_and_moves_push_endpoints(pubsub_emulator, receiver):
    topic = f"events-{uuid.uuid4().hex[:8]}"
    bus = PubSubBus(project=PROJECT, emulator_host=pubsub_emulator.host)
    try:
        first = bus.ensure_topology(topology(topic), lambda name: f"{receiver.url}/old/{name}")
        # Run again with the local stack on another address: same subscriptions, new endpoints.
        second = bus.ensure_topology(topology(topic), lambda name: f"{receiver.url}/new/{name}")
        assert first == second == [bus.subscription_path(topic, "gate"), bus.subscription_path(topic, "webhook")]

        bus.publish(topic, {"n": 9})

        receiver.wait_for(2, timeout=15)
        assert sorted(r.path for r in receiver.received()) == ["/new/gate", "/new/webhook/gmail"]
    finally:
        bus.close()
