"""EventBus on Pub/Sub: JSON events with string attributes, pushed to the subscribing functions.

The publisher client is imported and built on first use. Its batching is tuned for a function that
publishes one or two events per request and then answers: a batch is sent after a few milliseconds
instead of waiting to fill up, because the caller blocks on the message id.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from shared.errors import DependencyDown
from shared.topology import SUBSCRIPTIONS

log = logging.getLogger(__name__)

# Sent after at most 5 ms or 100 messages: a function publishes a handful of events per request and
# waits for their ids, so latency matters and throughput does not.
BATCH_MAX_LATENCY = 0.005
BATCH_MAX_MESSAGES = 100

# https://cloud.google.com/pubsub/docs/handling-failures: the push retry policy's own defaults.
DEFAULT_MIN_BACKOFF = 10.0
DEFAULT_MAX_BACKOFF = 600.0


def subscription_id(topic: str, function: str) -> str:
    """The id of the push subscription that delivers ``topic`` to ``function`` (one per pair).

    Ids must start with a letter and may contain letters, digits and ``-_.~+%``; ``--`` keeps the topic
    and the function apart at a glance.
    """
    return f"{topic}--{function}"


def event_bytes(data: Mapping[str, Any]) -> bytes:
    """The message data of an event: compact UTF-8 JSON (datetimes as ISO 8601)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=_json_default).encode("utf-8")


def _json_default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def check_attributes(attributes: Mapping[str, str] | None) -> dict[str, str]:
    """Pub/Sub attributes are string to string; refuse anything else before it reaches the wire.

    Raises:
        TypeError: a key or value is not a string.
    """
    attributes = dict(attributes or {})
    for key, value in attributes.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError("Pub/Sub attributes must map strings to strings")
    return attributes


class PubSubBus:
    """The production EventBus (``google-cloud-pubsub``).

    Args:
        project: Google Cloud project id of the topics.
        publisher: A ``pubsub_v1.PublisherClient`` to use instead of building one.
        emulator_host: ``host:port`` of the Pub/Sub emulator: a plaintext gRPC channel, no credentials.
        timeout: Seconds to wait for a publish to be acknowledged.
    """

    def __init__(self, *, project: str, publisher: Any = None, emulator_host: str | None = None,
                 timeout: float = 30.0):
        if not project:
            raise ValueError("project is required")
        self.project = project
        self._publisher_obj = publisher
        self._owns_publisher = publisher is None
        self._emulator_host = emulator_host
        self._timeout = timeout
        self._lock = threading.Lock()

    def topic_path(self, topic: str) -> str:
        """``projects/P/topics/T``."""
        return f"projects/{self.project}/topics/{topic}"

    def subscription_path(self, topic: str, function: str) -> str:
        """``projects/P/subscriptions/S`` of the push subscription delivering ``topic`` to ``function``."""
        return f"projects/{self.project}/subscriptions/{subscription_id(topic, function)}"

    # --- clients ---------------------------------------------------------------------------------

    def _publisher(self) -> Any:
        publisher = self._publisher_obj
        if publisher is not None:
            return publisher
        with self._lock:
            if self._publisher_obj is None:
                self._publisher_obj = self._build_publisher()
            return self._publisher_obj

    def _build_publisher(self) -> Any:
        from google.cloud import pubsub_v1

        batching = pubsub_v1.types.BatchSettings(max_latency=BATCH_MAX_LATENCY, max_messages=BATCH_MAX_MESSAGES)
        if not self._emulator_host:
            return pubsub_v1.PublisherClient(batch_settings=batching)
        import grpc
        from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

        # A channel handed to the transport carries no credentials: the emulator speaks plaintext.
        transport = PublisherGrpcTransport(channel=grpc.insecure_channel(self._emulator_host))
        return pubsub_v1.PublisherClient(batch_settings=batching, transport=transport)

    def _build_subscriber(self) -> Any:
        from google.cloud import pubsub_v1

        if not self._emulator_host:
            return pubsub_v1.SubscriberClient()
        import grpc
        from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

        return pubsub_v1.SubscriberClient(
            transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(self._emulator_host)))

    # --- the port --------------------------------------------------------------------------------

    def publish(self, topic: str, data: dict[str, Any], *, attributes: dict[str, str] | None = None) -> str:
        """Publish one JSON event and wait until Pub/Sub has it.

        Returns:
            The message id.

        Raises:
            DependencyDown: Pub/Sub refused, timed out, or the topic does not exist.
            TypeError: ``data`` is not JSON-serializable or an attribute is not a string.
        """
        from google.api_core import exceptions as gexc

        payload = event_bytes(data)
        attrs = check_attributes(attributes)
        try:
            future = self._publisher().publish(self.topic_path(topic), payload, **attrs)
            message_id = future.result(timeout=self._timeout)
        except (gexc.GoogleAPIError, concurrent.futures.TimeoutError) as exc:
            raise DependencyDown(f"Pub/Sub could not publish to {topic}: {type(exc).__name__}") from exc
        log.debug("event published", extra={"topic": topic, "message_id": message_id})
        return message_id

    def health(self) -> None:
        """Raise DependencyDown unless Pub/Sub answers (a permission error is an answer)."""
        from google.api_core import exceptions as gexc

        try:
            self._publisher().list_topics(request={"project": f"projects/{self.project}", "page_size": 1},
                                          timeout=min(self._timeout, 5.0))
        except gexc.PermissionDenied:
            return
        except gexc.GoogleAPIError as exc:
            raise DependencyDown(f"Pub/Sub is not answering: {type(exc).__name__}") from exc

    def close(self) -> None:
        """Send what is batched and stop the publisher if this adapter built it."""
        if not self._owns_publisher:
            return
        with self._lock:
            publisher, self._publisher_obj = self._publisher_obj, None
        if publisher is not None:
            publisher.stop()
            publisher.transport.close()

    # --- setup for emulators and tests -----------------------------------------------------------

    def ensure_topology(self, subscriptions: Mapping[str, tuple[tuple[str, str], ...]] = SUBSCRIPTIONS,
                        push_url_for: Callable[[str], str] | None = None, *,
                        service_account_email: str | None = None,
                        audience_for: Callable[[str], str] | None = None,
                        min_backoff: float = DEFAULT_MIN_BACKOFF, max_backoff: float = DEFAULT_MAX_BACKOFF,
                        ack_deadline: int = 60) -> list[str]:
        """Create the topics and push subscriptions of ``subscriptions``, idempotently.

        An existing subscription gets its push endpoint updated, so the same emulator can serve a local
        stack that moved to another port. Terraform owns the real topology; this is for emulators.

        Args:
            subscriptions: topic → ((function, path), ...), as ``shared.topology.SUBSCRIPTIONS``.
            push_url_for: Base URL of a function; the endpoint is that URL + path. Required when any
                topic has subscribers.
            service_account_email: Service account whose OIDC token push requests carry, if any.
            audience_for: Audience of that token per function (default: the push endpoint).
            min_backoff: Seconds before the first redelivery of a nacked message.
            max_backoff: Longest wait between redeliveries.
            ack_deadline: Seconds a push endpoint has to answer.

        Returns:
            The subscription paths, in order.
        """
        from google.api_core import exceptions as gexc

        publisher = self._publisher()
        subscriber = self._build_subscriber()
        paths: list[str] = []
        try:
            for topic, subscribers in subscriptions.items():
                try:
                    publisher.create_topic(request={"name": self.topic_path(topic)}, timeout=self._timeout)
                except gexc.AlreadyExists:
                    pass
                for function, path in subscribers:
                    if push_url_for is None:
                        raise ValueError("push_url_for is required for push subscriptions")
                    endpoint = push_url_for(function).rstrip("/") + path
                    push_config: dict[str, Any] = {"push_endpoint": endpoint}
                    if service_account_email:
                        push_config["oidc_token"] = {
                            "service_account_email": service_account_email,
                            "audience": audience_for(function) if audience_for else endpoint,
                        }
                    name = self.subscription_path(topic, function)
                    try:
                        subscriber.create_subscription(request={
                            "name": name,
                            "topic": self.topic_path(topic),
                            "push_config": push_config,
                            "ack_deadline_seconds": ack_deadline,
                            "retry_policy": {"minimum_backoff": dt.timedelta(seconds=min_backoff),
                                             "maximum_backoff": dt.timedelta(seconds=max_backoff)},
                        }, timeout=self._timeout)
                    except gexc.AlreadyExists:
                        subscriber.modify_push_config(request={"subscription": name, "push_config": push_config},
                                                      timeout=self._timeout)
                    paths.append(name)
        finally:
            subscriber.close()
        return paths
