"""EventBus in process: the embedded stand-in for Pub/Sub push subscriptions.

``publish`` fans an event out to the subscribers listed in ``shared.topology.SUBSCRIPTIONS`` and POSTs
it to each one's URL in Pub/Sub's push wire format, so a push route parses it exactly as in production
and functions-framework turns it into the same CloudEvent for a ``@cloud_event`` function. A delivery that
is not acknowledged (a non-success status or no answer) is redelivered with exponential backoff between
``min_backoff`` and ``max_backoff`` (the subscription retry policy), up to a cap of attempts after which
the message is dropped with an error log, where Pub/Sub would dead-letter it.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import heapq
import itertools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import requests

from shared.adapters.pubsub import check_attributes, event_bytes, subscription_id
from shared.errors import DependencyDown
from shared.topology import SUBSCRIPTIONS

log = logging.getLogger(__name__)

# https://cloud.google.com/pubsub/docs/push: these statuses acknowledge a push; any other is a nack.
ACK_STATUSES = frozenset({102, 200, 201, 202, 204})
# What Pub/Sub's push requests identify themselves as.
PUSH_USER_AGENT = "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)"


@dataclasses.dataclass(frozen=True)
class PushRetryPolicy:
    """A push subscription's retry policy, plus the attempt cap of a dead-letter policy.

    Attributes:
        min_backoff: Seconds before the first redelivery (Pub/Sub's default is 10).
        max_backoff: Longest wait between redeliveries, the cap (Pub/Sub's default is 600).
        max_attempts: Deliveries before the message is dropped (a dead-letter policy allows 5 to 100).
    """

    min_backoff: float = 10.0
    max_backoff: float = 600.0
    max_attempts: int = 100

    def __post_init__(self) -> None:
        if self.min_backoff < 0 or self.max_backoff < self.min_backoff:
            raise ValueError("need 0 <= min_backoff <= max_backoff")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed delivery: doubling from the minimum, capped."""
        return min(self.min_backoff * 2.0 ** min(max(attempts, 1) - 1, 1000), self.max_backoff)


@dataclasses.dataclass
class _Delivery:
    topic: str
    function: str
    path: str
    subscription: str
    message_id: str
    body: bytes
    attempts: int = 0


def rfc3339_now() -> str:
    """Now in UTC as Pub/Sub writes ``publishTime`` (RFC 3339, ``Z``, milliseconds)."""
    now = dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def push_body(*, data: bytes, attributes: Mapping[str, str], message_id: str, publish_time: str,
              subscription: str) -> dict[str, Any]:
    """A Pub/Sub push request body.

    Pub/Sub writes the message's fields both in camelCase and in snake_case, and ``attributes`` even when
    empty; all are kept so that code written against either form (functions-framework reads camelCase)
    works unchanged.
    """
    message: dict[str, Any] = {
        "attributes": dict(attributes),
        "data": base64.b64encode(data).decode("ascii"),
        "messageId": message_id,
        "message_id": message_id,
        "publishTime": publish_time,
        "publish_time": publish_time,
    }
    return {"message": message, "subscription": subscription}


class LocalEventBus:
    """The embedded EventBus: in-process fan-out over real HTTP push.

    Args:
        url_for: Base URL of a function; a subscriber's endpoint is that URL + its path.
        project: Project in the ``subscription`` field of push bodies.
        subscriptions: topic → ((function, path), ...); ``shared.topology.SUBSCRIPTIONS`` by default.
        audience_for: Audience of the push OIDC token per function; defaults to ``url_for``.
        token_source: Mints a bearer token for an audience; no ``Authorization`` header when None.
        retry: Redelivery backoff and attempt cap.
        workers: Delivery threads.
        push_deadline: Seconds an endpoint has to answer (Pub/Sub's acknowledgement deadline).
    """

    def __init__(self, url_for: Callable[[str], str], *, project: str = "local-project",
                 subscriptions: Mapping[str, tuple[tuple[str, str], ...]] = SUBSCRIPTIONS,
                 audience_for: Callable[[str], str] | None = None,
                 token_source: Callable[[str], str] | None = None, retry: PushRetryPolicy = PushRetryPolicy(),
                 workers: int = 8, push_deadline: float = 600.0):
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.project = project
        self._url_for = url_for
        self._subscriptions = {topic: tuple(subs) for topic, subs in subscriptions.items()}
        self._audience_for = audience_for or url_for
        self._token_source = token_source
        self._retry = retry
        self._worker_count = workers
        self._push_deadline = push_deadline

        self._cv = threading.Condition()
        self._heap: list[tuple[float, int, _Delivery]] = []
        self._seq = itertools.count()
        self._inflight = 0
        self._threads: list[threading.Thread] = []
        self._started = False
        self._closed = False

    # --- the port --------------------------------------------------------------------------------

    def publish(self, topic: str, data: dict[str, Any], *, attributes: dict[str, str] | None = None) -> str:
        """Publish one JSON event to every subscriber of ``topic``.

        Returns:
            The message id (a decimal string, like Pub/Sub's).

        Raises:
            DependencyDown: the topic does not exist (as Pub/Sub answers NOT_FOUND), or the bus is closed.
            TypeError: ``data`` is not JSON-serializable or an attribute is not a string.
        """
        if topic not in self._subscriptions:
            raise DependencyDown(f"topic {topic} does not exist")
        payload = event_bytes(data)
        attrs = check_attributes(attributes)
        message_id = str(uuid.uuid4().int >> 66)
        publish_time = rfc3339_now()
        subscribers = self._subscriptions[topic]
        with self._cv:
            if self._closed:
                raise DependencyDown("the local event bus is closed")
            now = time.time()
            for function, path in subscribers:
                name = f"projects/{self.project}/subscriptions/{subscription_id(topic, function)}"
                body = push_body(data=payload, attributes=attrs, message_id=message_id,
                                 publish_time=publish_time, subscription=name)
                delivery = _Delivery(topic=topic, function=function, path=path, subscription=name,
                                     message_id=message_id, body=json.dumps(body).encode("utf-8"))
                heapq.heappush(self._heap, (now, next(self._seq), delivery))
            self._cv.notify_all()
        if subscribers:
            self._start()
        log.debug("event published", extra={"topic": topic, "message_id": message_id,
                                            "subscribers": len(subscribers)})
        return message_id

    def health(self) -> None:
        """Raise DependencyDown once the bus is closed."""
        if self._closed:
            raise DependencyDown("the local event bus is closed")

    # --- lifecycle -------------------------------------------------------------------------------

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no delivery is queued, in flight or waiting for a redelivery.

        Returns:
            True when idle, False if ``timeout`` seconds passed first.
        """
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._heap or self._inflight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cv.wait(remaining)
            return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop the delivery threads; undelivered messages are dropped (Pub/Sub keeps them, we do not)."""
        with self._cv:
            if self._closed:
                return
            self._closed = True
            if self._heap:
                log.warning("closing with undelivered events", extra={"undelivered": len(self._heap)})
            self._cv.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> LocalEventBus:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- delivery --------------------------------------------------------------------------------

    def _start(self) -> None:
        with self._cv:
            if self._started or self._closed:
                return
            self._started = True
            for i in range(self._worker_count):
                thread = threading.Thread(target=self._worker_loop, name=f"local-events-{i}", daemon=True)
                self._threads.append(thread)
                thread.start()

    def _next(self) -> _Delivery | None:
        with self._cv:
            while not self._closed:
                now = time.time()
                if self._heap and self._heap[0][0] <= now:
                    _, _, delivery = heapq.heappop(self._heap)
                    self._inflight += 1
                    return delivery
                self._cv.wait(self._heap[0][0] - now if self._heap else None)
            return None

    def _worker_loop(self) -> None:
        with requests.Session() as session:
            while True:
                delivery = self._next()
                if delivery is None:
                    return
                status = self._deliver(session, delivery)
                self._settle(delivery, status)

    def _deliver(self, session: requests.Session, delivery: _Delivery) -> int | None:
        headers = {"Content-Type": "application/json", "User-Agent": PUSH_USER_AGENT}
        try:
            url = self._url_for(delivery.function).rstrip("/") + delivery.path
            if self._token_source is not None:
                headers["Authorization"] = "Bearer " + self._token_source(self._audience_for(delivery.function))
            response = session.post(url, data=delivery.body, headers=headers,
                                    timeout=(5.0, self._push_deadline), allow_redirects=False)
            response.close()
            return response.status_code
        except requests.RequestException as exc:
            log.warning("push delivery failed", extra={"subscription": delivery.subscription,
                                                       "error": type(exc).__name__})
            return None
        except Exception:  # a delivery thread must outlive any bug in url_for or token_source
            log.exception("push delivery raised", extra={"subscription": delivery.subscription})
            return None

    def _settle(self, delivery: _Delivery, status: int | None) -> None:
        with self._cv:
            self._inflight -= 1
            delivery.attempts += 1
            if status in ACK_STATUSES:
                pass
            elif delivery.attempts >= self._retry.max_attempts:
                log.error("event dropped after its last delivery attempt",
                          extra={"subscription": delivery.subscription, "message_id": delivery.message_id,
                                 "attempts": delivery.attempts, "status": status})
            else:
                delay = self._retry.delay(delivery.attempts)
                heapq.heappush(self._heap, (time.time() + delay, next(self._seq), delivery))
                log.info("event will be redelivered", extra={"subscription": delivery.subscription,
                                                             "attempts": delivery.attempts, "status": status,
                                                             "delay": round(delay, 3)})
            self._cv.notify_all()
