"""Fault injection around the project's own ports, for the reliability suite and ``bench/bench_soak.py``.

Every wrapper takes the real adapter and a ``FaultPlan``, forwards each call, and on the plan's say-so
fails it the way the outside system does through the production adapter: HubSpot's 429 and 5xx become
``RateLimited`` / ``DependencyDown``, Gmail's 500 and timeouts ``DependencyDown``, Vertex's 503
``DependencyDown``. The wrappers also count what reached the real adapter, so a test can tell a real
duplicate (a second Gmail send, a second HubSpot create) from a deduplicated retry.

``stack_with_faults`` builds a ``LocalStack`` whose task queue and event bus retry fast and deliver a
share of every task and event twice (Cloud Tasks and Pub/Sub promise at least once, not exactly once).
"""

from __future__ import annotations

import os

import collections
import contextlib
import datetime as dt
import random
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from shared.errors import DependencyDown, RateLimited
from shared.ports import Task


class FaultPlan:
    """Which calls fail: each named point fails with its own probability, from one seeded generator.

    ``max_streak`` bounds consecutive failures of one point, so every retried step can eventually pass
    within the attempt limits (a lead may still end FAILED, and then its cause must be recorded).
    """

    def __init__(self, rates: Mapping[str, float], *, seed: int = 7, max_streak: int = 2):
        self.rates = dict(rates)
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._streak: collections.Counter[str] = collections.Counter()
        self.max_streak = max_streak
        self.injected: collections.Counter[str] = collections.Counter()
        self.calls: collections.Counter[str] = collections.Counter()
        self.active = True  # off while a stack starts: migrations and the demo seed are not under test

    def hit(self, point: str) -> bool:
        if not self.active:
            return False
        with self._lock:
            self.calls[point] += 1
            rate = self.rates.get(point, 0.0)
            if rate <= 0 or self._streak[point] >= self.max_streak or self._random.random() >= rate:
                self._streak[point] = 0
                return False
            self._streak[point] += 1
            self.injected[point] += 1
            return True

    def choice(self, options: list[Any]) -> Any:
        with self._lock:
            return self._random.choice(options)

    def uniform(self, low: float, high: float) -> float:
        with self._lock:
            return self._random.uniform(low, high)


class _Forwarding:
    """Anything not overridden goes to the wrapped adapter unchanged."""

    def __init__(self, inner: Any, plan: FaultPlan):
        self.inner = inner
        self.plan = plan

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


# --- HubSpot ---------------------------------------------------------------------------------------


class FlakyCrm(_Forwarding):
    """The CRM port with HubSpot's 429 and 500 on reads and writes (point ``crm``).

    ``creates`` counts, per idempotency key, the creates that reached the backend; ``repeats`` counts
    those whose key the backend already knew. The sandbox answers a known key with its first record,
    but HubSpot takes no idempotency key: each repeat is a duplicate task or note in production.
    """

    _READS = ("contact", "find_contact_by_email", "company_of_contact", "find_company_by_domain", "owner",
              "search", "get", "engagements", "engagement_counts")

    def __init__(self, inner: Any, plan: FaultPlan):
        super().__init__(inner, plan)
        self._lock = threading.Lock()
        self.creates: collections.Counter[str] = collections.Counter()
        self.repeats: collections.Counter[str] = collections.Counter()

    def _maybe_fail(self) -> None:
        if self.plan.hit("crm"):
            if self.plan.choice([True, False]):
                raise RateLimited("HubSpot answered 429 (injected).")
            raise DependencyDown("HubSpot answered 500 (injected).")

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if name not in self._READS:
            return target

        def read(*args: Any, **kwargs: Any) -> Any:
            self._maybe_fail()
            return target(*args, **kwargs)

        return read

    def _create(self, method: str, key: str, *args: Any) -> str:
        self._maybe_fail()
        known = self.inner.find_by_idempotency_key(key)
        with self._lock:
            self.creates[key] += 1
            if known is not None:
                self.repeats[key] += 1
        return getattr(self.inner, method)(*args, key)

    def create_task(self, contact_id, owner_id, subject, body, due_at, idempotency_key):
        return self._create("create_task", idempotency_key, contact_id, owner_id, subject, body, due_at)

    def create_note(self, contact_id, body_html, timestamp, idempotency_key):
        return self._create("create_note", idempotency_key, contact_id, body_html, timestamp)


# --- Gmail -----------------------------------------------------------------------------------------


class FlakyMailer(_Forwarding):
    """The Mailer port with Gmail's failures (point ``mail``): a 500 before anything is stored, a
    timeout, or a failure *after* the message was stored (the answer lost, or the function dying before
    it records the ids).

    ``deliveries`` counts per Message-ID the sends and drafts that reached the mailbox; ``repeats`` those
    whose message the mailbox already held (a second email in production, where Gmail would not dedupe).
    """

    def __init__(self, inner: Any, plan: FaultPlan, *, timeout_seconds: float = 0.05):
        super().__init__(inner, plan)
        self._lock = threading.Lock()
        self.timeout_seconds = timeout_seconds
        self.deliveries: collections.Counter[str] = collections.Counter()
        self.repeats: collections.Counter[str] = collections.Counter()
        self.after_effect: collections.Counter[str] = collections.Counter()

    def find_by_message_id(self, rep, message_id):
        if self.plan.hit("mail_lookup"):
            raise DependencyDown("Gmail answered 500 (injected).")
        return self.inner.find_by_message_id(rep, message_id)

    def send(self, rep, raw):
        return self._deliver("send", rep, raw)

    def create_draft(self, rep, raw):
        return self._deliver("create_draft", rep, raw)

    def _deliver(self, method: str, rep: Any, raw: str) -> Any:
        from shared.mail.message import from_raw

        message_id = str(from_raw(raw).get("Message-ID") or "").strip()
        fault = self.plan.choice(["500", "timeout", "after"]) if self.plan.hit("mail") else None
        if fault == "500":
            raise DependencyDown("Gmail answered 500 (injected).")
        if fault == "timeout":
            time.sleep(self.timeout_seconds)
            raise DependencyDown("Gmail did not answer in time (injected).")
        already = self.inner.find_by_message_id(rep, message_id) is not None
        with self._lock:
            self.deliveries[message_id] += 1
            if already:
                self.repeats[message_id] += 1
        ref = getattr(self.inner, method)(rep, raw)
        if fault == "after":
            with self._lock:
                self.after_effect[message_id] += 1
            raise DependencyDown("Gmail stored the message but the answer was lost (injected).")
        return ref


# --- Vertex AI -------------------------------------------------------------------------------------


class FlakyGenerator(_Forwarding):
    """The text generator with Vertex AI's 503 (point ``generate``)."""

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        if self.plan.hit("generate"):
            raise DependencyDown("Vertex AI answered 503 (injected).")
        return self.inner.generate(*args, **kwargs)


class FlakyEmbedder(_Forwarding):
    """The embedder with Vertex AI's 503 (point ``embed``); ``model`` and ``dimension`` pass through."""

    def embed(self, texts):
        if self.plan.hit("embed"):
            raise DependencyDown("Vertex AI embeddings answered 503 (injected).")
        return self.inner.embed(texts)


class FlakyBlobs(_Forwarding):
    """The blob store with Cloud Storage's 503 on reads (point ``blob_get``): the extract step's input."""

    def get(self, key):
        if self.plan.hit("blob_get"):
            raise DependencyDown("Cloud Storage answered 503 (injected).")
        return self.inner.get(key)


# --- Postgres --------------------------------------------------------------------------------------


class DroppingDatabase(_Forwarding):
    """The Database port whose connection is cut mid-transaction (point ``db_drop``).

    The socket under pg8000 is shut down after the transaction's statements ran and before its COMMIT,
    so the server rolls the whole transaction back and the pool sees a dead connection, as when Cloud
    SQL restarts or a proxy drops an idle link.
    """

    def __init__(self, inner: Any, plan: FaultPlan):
        super().__init__(inner, plan)
        self.dropped = 0

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        with self.inner.transaction() as cur:
            yield cur
            if self.plan.hit("db_drop"):
                self.dropped += 1
                _cut(cur)

    def query(self, sql, params=None):
        from shared.adapters.postgres import rows_as_dicts

        with self.transaction() as cur:
            cur.execute(sql, params or ())
            return rows_as_dicts(cur)


def _cut(cursor: Any) -> None:
    # pg8000 keeps the raw socket as ``_usock`` on the connection the DB-API cursor holds as ``_c``.
    sock = getattr(getattr(cursor, "_c", None), "_usock", None)
    if sock is None:
        raise AssertionError("pg8000 internals changed: cannot find the connection's socket to cut")
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


# --- at-least-once delivery ------------------------------------------------------------------------


class DuplicatingTasks(_Forwarding):
    """A TaskQueue that delivers a share of tasks twice (point ``dup_task``).

    The copy gets another name (a same-name enqueue would be deduplicated by design) and is due a
    little later or at once, so some duplicates race the original and some arrive after it finished.
    """

    def __init__(self, inner: Any, plan: FaultPlan, *, max_delay: float = 1.0):
        super().__init__(inner, plan)
        self.max_delay = max_delay
        self.duplicated = 0

    def enqueue(self, task: Task) -> bool:
        return self.enqueue_many([task])[0]

    def enqueue_many(self, tasks):
        results = self.inner.enqueue_many(list(tasks))
        copies = [self._copy(t) for t, fresh in zip(tasks, results) if fresh and self.plan.hit("dup_task")]
        if copies:
            self.inner.enqueue_many(copies)
            self.duplicated += len(copies)
        return results

    def _copy(self, task: Task) -> Task:
        base = task.schedule_at or dt.datetime.now(dt.timezone.utc)
        later = base + dt.timedelta(seconds=self.plan.uniform(0.0, self.max_delay))
        name = f"{task.name}-again" if task.name else None
        return Task(target=task.target, payload=dict(task.payload), name=name, path=task.path, schedule_at=later,
                    queue=task.queue)


class DuplicatingEvents(_Forwarding):
    """An EventBus that publishes a share of events twice (point ``dup_event``), as Pub/Sub may."""

    def __init__(self, inner: Any, plan: FaultPlan):
        super().__init__(inner, plan)
        self.duplicated = 0

    def publish(self, topic, data, *, attributes=None):
        message_id = self.inner.publish(topic, data, attributes=attributes)
        if self.plan.hit("dup_event"):
            self.inner.publish(topic, data, attributes=attributes)
            self.duplicated += 1
        return message_id


# --- the stack -------------------------------------------------------------------------------------

# Steps give up after 5 (draft, extract, embed) or 8 (send) attempts; the queue allows more so the
# steps, not the queue, decide, and backoffs are tens of milliseconds so a soak takes seconds.
# Fast retries, but a retry window (45 s) longer than the send lease (30 s below): as with the real send
# queue, whose backoff outlasts SEND_LEASE_SECONDS, a lease left by a dead delivery lapses while the task
# is still being retried, so the workflow finishes instead of waiting for a task that gave up.
FAST_TASKS = dict(max_attempts=12, min_backoff=0.05, max_backoff=0.4, max_doublings=3, max_retry_duration=45.0)
SEND_LEASE_SECONDS = "30"
FAST_EVENTS = dict(min_backoff=0.05, max_backoff=0.4, max_attempts=30)


class FaultyStack:
    """A started ``LocalStack`` with every fault wrapper installed, and handles on each wrapper."""

    def __init__(self, stack: Any, plan: FaultPlan, *, db: DroppingDatabase, crm: FlakyCrm, mailer: FlakyMailer,
                 generator: FlakyGenerator, embedder: FlakyEmbedder, blobs: FlakyBlobs, tasks: DuplicatingTasks,
                 events: DuplicatingEvents, real_db: Any, owned: list[Any]):
        self.stack, self.plan = stack, plan
        self.db, self.crm, self.mailer, self.generator = db, crm, mailer, generator
        self.embedder, self.blobs, self.tasks, self.events = embedder, blobs, tasks, events
        self.real_db = real_db  # the suite's own reads: never faulted
        self._owned = owned

    @property
    def url(self) -> str:
        return self.stack.url

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = max(0.1, deadline - time.monotonic())
            if self.tasks.inner.wait_idle(timeout=min(left, 5)) and self.events.inner.wait_idle(timeout=min(left, 5)):
                if self.tasks.inner.wait_idle(timeout=0.1):
                    return True
        return False

    def stop(self) -> None:
        self.stack.stop()
        # The container closes only what it built; these were built by stack_with_faults.
        for close in self._owned:
            close()
        self._owned.clear()


def stack_with_faults(data_dir: Path, plan: FaultPlan, *, port: int | None = None,
                      environ: Mapping[str, str] | None = None, seed: bool = True) -> FaultyStack:
    """Start a LocalStack on 127.0.0.1 whose ports are wrapped by the fault injectors above."""
    from functions.localstack.emulators.base import free_port
    from functions.localstack.stack import LocalStack
    from shared.adapters.embedded_postgres import EmbeddedPostgres
    from shared.adapters.hubspot_crm import SandboxCrm
    from shared.adapters.local_blobs import LocalBlobStore
    from shared.adapters.local_embeddings import LocalEmbedder
    from shared.adapters.local_events import LocalEventBus, PushRetryPolicy
    from shared.adapters.local_tasks import LocalTaskQueue, RetryPolicy
    from shared.adapters.offline_drafter import OfflineDrafter
    from shared.adapters.outbox import OutboxMailer
    from shared.adapters.postgres import PgDatabase
    from shared.auth import LocalSigner
    from shared.config import Settings

    port = port or free_port()
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    environ = dict(os.environ if environ is None else environ)
    environ.setdefault("SEND_LEASE_SECONDS", SEND_LEASE_SECONDS)
    settings = Settings.from_env(environ, env="local", port=port, data_dir=data_dir)
    signer = LocalSigner(data_dir / "keys")
    server = EmbeddedPostgres(data_dir / "postgres", settings.db_name).start()
    real_db = PgDatabase(server.connector(), pool_size=max(settings.db_pool_size, 8))
    queue = LocalTaskQueue(
        url_for=settings.function_url, audience_for=settings.audience_for, state_path=data_dir / "tasks.json",
        token_source=lambda aud: signer.service_token(aud, settings.tasks_service_account),
        retry=RetryPolicy(**FAST_TASKS), tombstone_seconds=3600.0)
    bus = LocalEventBus(
        url_for=settings.function_url, project=settings.project_id, audience_for=settings.audience_for,
        token_source=lambda aud: signer.service_token(aud, settings.pubsub_service_account),
        retry=PushRetryPolicy(**FAST_EVENTS))
    wrapped = dict(
        db=DroppingDatabase(real_db, plan), crm=FlakyCrm(SandboxCrm(data_dir), plan),
        mailer=FlakyMailer(OutboxMailer(data_dir), plan), generator=FlakyGenerator(OfflineDrafter(), plan),
        embedder=FlakyEmbedder(LocalEmbedder(), plan),
        blobs=FlakyBlobs(LocalBlobStore(data_dir / "blobs" / settings.uploads_bucket), plan),
        tasks=DuplicatingTasks(queue, plan), events=DuplicatingEvents(bus, plan))
    owned = [queue.close, bus.close, real_db.close, server.stop]
    stack = LocalStack(port=port, data_dir=data_dir, environ=environ, seed=seed, signer=signer, **wrapped)
    plan.active = False
    try:
        stack.start()
    except BaseException:
        for close in owned:
            close()
        raise
    plan.active = True
    return FaultyStack(stack, plan, real_db=real_db, owned=owned, **wrapped)
