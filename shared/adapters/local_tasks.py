"""TaskQueue in process: the embedded stand-in for Cloud Tasks.

It keeps the parts of Cloud Tasks' contract that the functions rely on:

- named tasks dedupe, and a name stays taken for a while after its task ran or was deleted (Cloud Tasks
  keeps such "tombstones" for about an hour on queues it manages);
- a task is not delivered before its schedule time;
- a failed attempt (anything but 2xx, or no response) is retried with the queue's ``retryConfig``
  arithmetic: ``min_backoff`` doubling ``max_doublings`` times, then growing linearly, capped at
  ``max_backoff``, until ``max_attempts`` and ``max_retry_duration`` are both used up;
- each queue has a limit on concurrent dispatches;
- delivery is a real HTTP POST to the same URL as in production, with the ``X-CloudTasks-*`` headers and
  an OIDC bearer token, so the functions cannot tell the difference.

Pending tasks and tombstones can be kept in a JSON state file (replaced atomically on every change), so
a restart of the local stack resumes where it stopped. Threads start on the first enqueue, or at
construction when the state file holds pending work, and ``close()`` stops them.
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import itertools
import json
import logging
import os
import queue as queue_module
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import requests

from shared.adapters.cloud_tasks import json_body, schedule_utc, task_id
from shared.errors import DependencyDown
from shared.ports import Task
from shared.topology import queue_name

log = logging.getLogger(__name__)

# Cloud Tasks: "another task with the same name can't be created for ~1 hour after the original task
# was deleted or executed" (queues created through the API, as ours are by Terraform).
DEFAULT_TOMBSTONE_SECONDS = 3600.0
STATE_VERSION = 1
_Key = tuple[str, str]  # (queue, task id)


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """A queue's retry configuration, with Cloud Tasks' meaning and defaults.

    Attributes:
        max_attempts: Attempts per task including the first; -1 for unlimited.
        min_backoff: Seconds before the first retry.
        max_backoff: Longest wait between attempts (the cap).
        max_doublings: How many times the wait doubles before it grows linearly.
        max_retry_duration: Seconds from the first attempt after which retries may stop; 0 for unlimited.
            Retries stop only once both this and ``max_attempts`` are used up, as in Cloud Tasks.
    """

    max_attempts: int = 100
    min_backoff: float = 0.1
    max_backoff: float = 3600.0
    max_doublings: int = 16
    max_retry_duration: float = 0.0

    def __post_init__(self) -> None:
        if self.max_attempts < -1 or self.max_attempts == 0:
            raise ValueError("max_attempts must be -1 (unlimited) or at least 1")
        if self.min_backoff < 0 or self.max_backoff < self.min_backoff:
            raise ValueError("need 0 <= min_backoff <= max_backoff")
        if self.max_doublings < 0 or self.max_retry_duration < 0:
            raise ValueError("max_doublings and max_retry_duration may not be negative")

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 is the first retry).

        With ``min_backoff=10``, ``max_backoff=300`` and ``max_doublings=3`` the waits are 10, 20, 40, 80,
        160, 240, 300, 300, ... (the example in Cloud Tasks' ``RetryConfig`` reference).
        """
        n = max(retry, 1) - 1
        if n < self.max_doublings:
            wait = self.min_backoff * 2.0 ** min(n, 1000)
        else:
            wait = self.min_backoff * 2.0 ** min(self.max_doublings, 1000) * (n - self.max_doublings + 1)
        return min(wait, self.max_backoff)

    def exhausted(self, attempts: int, first_attempt_at: float, now: float) -> bool:
        """Whether a task that has failed ``attempts`` times may not be tried again."""
        attempts_used = self.max_attempts != -1 and attempts >= self.max_attempts
        duration_used = self.max_retry_duration <= 0 or now - first_attempt_at >= self.max_retry_duration
        return attempts_used and duration_used


@dataclasses.dataclass
class _Entry:
    queue: str
    task_id: str
    target: str
    path: str
    body: str  # the JSON body, encoded once at enqueue so later changes to the payload cannot leak in
    eta: float  # epoch seconds of the next attempt (Cloud Tasks' schedule_time, updated on retries)
    named: bool
    attempts: int = 0  # dispatches so far
    responses: int = 0  # handler responses that were not 5xx (X-CloudTasks-TaskExecutionCount)
    first_attempt: float | None = None
    previous_status: int | None = None
    generation: int = 0  # bumped on every reschedule; heap entries of older generations are stale
    inflight: bool = False

    @property
    def key(self) -> _Key:
        return (self.queue, self.task_id)

    def to_json(self) -> dict[str, Any]:
        return {"queue": self.queue, "task_id": self.task_id, "target": self.target, "path": self.path,
                "body": self.body, "eta": self.eta, "named": self.named, "attempts": self.attempts,
                "responses": self.responses, "first_attempt": self.first_attempt,
                "previous_status": self.previous_status}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> _Entry:
        return cls(queue=data["queue"], task_id=data["task_id"], target=data["target"], path=data["path"],
                   body=data["body"], eta=float(data["eta"]), named=bool(data["named"]),
                   attempts=int(data.get("attempts", 0)), responses=int(data.get("responses", 0)),
                   first_attempt=data.get("first_attempt"), previous_status=data.get("previous_status"))


@dataclasses.dataclass(frozen=True)
class _Attempt:
    entry: _Entry
    generation: int
    headers: dict[str, str]


class LocalTaskQueue:
    """The embedded TaskQueue: an in-process dispatcher with Cloud Tasks' contract.

    Args:
        url_for: Base URL of a function (``draft`` → ``http://127.0.0.1:8080/draft``).
        audience_for: Audience of the bearer token for a function; defaults to ``url_for``.
        token_source: Mints a bearer token for an audience; no ``Authorization`` header when None.
        state_path: JSON file that keeps pending tasks and tombstones across restarts; memory only when None.
        retry: Retry configuration of every queue.
        queue_retry: Per-queue overrides of ``retry``, by queue id.
        max_concurrent: Concurrent dispatches per queue (Cloud Tasks' ``maxConcurrentDispatches``).
        queue_concurrency: Per-queue overrides of ``max_concurrent``, by queue id.
        queue_for: Queue id of a target when a task names none.
        tombstone_seconds: How long a name stays taken after its task ran, gave up or was cancelled.
        dispatch_deadline: Seconds a handler may take to answer before the attempt counts as failed.
        workers: Delivery threads shared by all queues.
    """

    def __init__(self, url_for: Callable[[str], str], *, audience_for: Callable[[str], str] | None = None,
                 token_source: Callable[[str], str] | None = None, state_path: str | os.PathLike | None = None,
                 retry: RetryPolicy = RetryPolicy(), queue_retry: Mapping[str, RetryPolicy] | None = None,
                 max_concurrent: int = 8, queue_concurrency: Mapping[str, int] | None = None,
                 queue_for: Callable[[str], str] = queue_name,
                 tombstone_seconds: float = DEFAULT_TOMBSTONE_SECONDS, dispatch_deadline: float = 600.0,
                 workers: int = 16):
        if max_concurrent < 1 or workers < 1:
            raise ValueError("max_concurrent and workers must be at least 1")
        self._url_for = url_for
        self._audience_for = audience_for or url_for
        self._token_source = token_source
        self._state_path = Path(state_path) if state_path else None
        self._retry = retry
        self._queue_retry = dict(queue_retry or {})
        self._max_concurrent = max_concurrent
        self._queue_concurrency = dict(queue_concurrency or {})
        self._queue_for = queue_for
        self._tombstone_seconds = tombstone_seconds
        self._dispatch_deadline = dispatch_deadline
        self._worker_count = workers

        self._cv = threading.Condition()
        self._tasks: dict[_Key, _Entry] = {}
        self._tombstones: dict[_Key, float] = {}
        self._heap: list[tuple[float, int, _Key, int]] = []
        self._seq = itertools.count()
        self._inflight: collections.Counter[str] = collections.Counter()
        self._blocked: dict[str, collections.deque[_Key]] = collections.defaultdict(collections.deque)
        self._ready: queue_module.SimpleQueue[_Attempt | None] = queue_module.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._sessions = threading.local()
        self._started = False
        self._closed = False

        if self._state_path is not None:
            self._load()
        if self._tasks:
            log.info("resuming pending tasks", extra={"pending": len(self._tasks)})
            self.start()

    # --- the port --------------------------------------------------------------------------------

    def enqueue(self, task: Task) -> bool:
        """Queue one task.

        Returns:
            False when a task of that name is pending or ran within the tombstone period.

        Raises:
            ValueError: the schedule time has no timezone.
            TypeError: the payload is not JSON-serializable.
            RuntimeError: the queue is closed.
        """
        return self.enqueue_many([task])[0]

    def enqueue_many(self, tasks: Sequence[Task]) -> list[bool]:
        """Queue several tasks at once (one state-file write for the batch).

        Returns:
            One flag per task, in order: True queued, False duplicate (also within the batch).
        """
        entries = [self._entry(task) for task in tasks]
        results: list[bool] = []
        with self._cv:
            if self._closed:
                raise RuntimeError("the local task queue is closed")
            now = time.time()
            self._prune_tombstones(now)
            for entry in entries:
                if entry.key in self._tasks or self._tombstones.get(entry.key, 0.0) > now:
                    results.append(False)
                    continue
                self._tasks[entry.key] = entry
                self._push(entry)
                results.append(True)
            if any(results):
                self._save()
                self._cv.notify_all()
        if any(results):
            self.start()
        return results

    def cancel(self, target: str, name: str, queue: str | None = None) -> bool:
        """Delete a pending task; its name stays taken for the tombstone period.

        Returns:
            Whether a pending task was deleted. An attempt already in flight still reaches the handler,
            as with Cloud Tasks, but is not retried.
        """
        key = (queue or self._queue_for(target), task_id(name))
        with self._cv:
            entry = self._tasks.pop(key, None)
            if entry is None:
                return False
            self._tombstones[key] = time.time() + self._tombstone_seconds
            self._save()
            self._cv.notify_all()
        log.info("task cancelled", extra={"queue": key[0], "task": key[1]})
        return True

    def health(self) -> None:
        """Raise DependencyDown once the queue is closed."""
        if self._closed:
            raise DependencyDown("the local task queue is closed")

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the dispatcher and delivery threads (idempotent; enqueue calls it)."""
        with self._cv:
            if self._started or self._closed:
                return
            self._started = True
            self._threads.append(threading.Thread(target=self._dispatch_loop, name="local-tasks-dispatch",
                                                  daemon=True))
            for i in range(self._worker_count):
                self._threads.append(threading.Thread(target=self._worker_loop, name=f"local-tasks-{i}",
                                                      daemon=True))
            for thread in self._threads:
                thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the threads. Pending tasks stay in the state file; an attempt still in flight after
        ``timeout`` is left to finish on its own and, not being recorded as done, runs again on restart."""
        with self._cv:
            if self._closed:
                return
            self._closed = True
            self._save()
            self._cv.notify_all()
        for _ in range(self._worker_count):
            self._ready.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is in flight, due, or waiting to be retried (for tests and demos).

        Tasks scheduled for later that have not been attempted yet do not count.

        Returns:
            True when idle, False if ``timeout`` seconds passed first.
        """
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                now = time.time()
                if all(not e.inflight and e.attempts == 0 and e.eta > now for e in self._tasks.values()):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cv.wait(remaining)

    def pending(self) -> int:
        """How many tasks are pending (scheduled, due, in flight or waiting to be retried)."""
        with self._cv:
            return len(self._tasks)

    def __enter__(self) -> LocalTaskQueue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- dispatch --------------------------------------------------------------------------------

    def _entry(self, task: Task) -> _Entry:
        when = schedule_utc(task.schedule_at)
        eta = when.timestamp() if when is not None else time.time()
        return _Entry(queue=task.queue or self._queue_for(task.target),
                      task_id=task_id(task.name) if task.name else uuid.uuid4().hex,
                      target=task.target, path=task.path, body=json_body(task.payload).decode("utf-8"),
                      eta=eta, named=bool(task.name))

    def _push(self, entry: _Entry) -> None:
        heapq.heappush(self._heap, (entry.eta, next(self._seq), entry.key, entry.generation))

    def _limit(self, queue: str) -> int:
        return self._queue_concurrency.get(queue, self._max_concurrent)

    def _policy(self, queue: str) -> RetryPolicy:
        return self._queue_retry.get(queue, self._retry)

    def _dispatch_loop(self) -> None:
        with self._cv:
            while not self._closed:
                now = time.time()
                dispatched = False
                while self._heap and self._heap[0][0] <= now:
                    _, _, key, generation = heapq.heappop(self._heap)
                    entry = self._tasks.get(key)
                    if entry is None or entry.generation != generation or entry.inflight:
                        continue
                    if self._inflight[entry.queue] >= self._limit(entry.queue):
                        self._blocked[entry.queue].append(key)
                        continue
                    self._ready.put(self._begin(entry, now))
                    dispatched = True
                if dispatched:
                    self._cv.notify_all()
                self._cv.wait(self._heap[0][0] - now if self._heap else None)

    def _begin(self, entry: _Entry, now: float) -> _Attempt:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Google-Cloud-Tasks",
            "X-CloudTasks-QueueName": entry.queue,
            "X-CloudTasks-TaskName": entry.task_id,
            "X-CloudTasks-TaskRetryCount": str(entry.attempts),
            "X-CloudTasks-TaskExecutionCount": str(entry.responses),
            "X-CloudTasks-TaskETA": f"{entry.eta:.6f}",
        }
        if entry.previous_status is not None:
            headers["X-CloudTasks-TaskPreviousResponse"] = str(entry.previous_status)
        entry.attempts += 1
        entry.first_attempt = entry.first_attempt or now
        entry.inflight = True
        self._inflight[entry.queue] += 1
        return _Attempt(entry=entry, generation=entry.generation, headers=headers)

    def _worker_loop(self) -> None:
        try:
            while True:
                attempt = self._ready.get()
                if attempt is None:
                    return
                status, retry_after = self._deliver(attempt)
                self._finish(attempt, status, retry_after)
        finally:
            session = getattr(self._sessions, "session", None)
            if session is not None:
                session.close()

    def _deliver(self, attempt: _Attempt) -> tuple[int | None, float | None]:
        entry = attempt.entry
        headers = dict(attempt.headers)
        try:
            url = self._url_for(entry.target).rstrip("/") + entry.path
            if self._token_source is not None:
                headers["Authorization"] = "Bearer " + self._token_source(self._audience_for(entry.target))
            session = getattr(self._sessions, "session", None)
            if session is None:
                session = self._sessions.session = requests.Session()
            response = session.post(url, data=entry.body.encode("utf-8"), headers=headers,
                                    timeout=(5.0, self._dispatch_deadline), allow_redirects=False)
            response.close()
        except requests.RequestException as exc:
            log.warning("task delivery failed", extra={"queue": entry.queue, "task": entry.task_id,
                                                       "error": type(exc).__name__})
            return None, None
        except Exception:  # a delivery thread must outlive any bug in url_for or token_source
            log.exception("task delivery raised", extra={"queue": entry.queue, "task": entry.task_id})
            return None, None
        return response.status_code, _retry_after(response)

    def _finish(self, attempt: _Attempt, status: int | None, retry_after: float | None) -> None:
        entry = attempt.entry
        with self._cv:
            entry.inflight = False
            self._inflight[entry.queue] -= 1
            self._release_blocked(entry.queue)
            if self._tasks.get(entry.key) is not entry:
                self._cv.notify_all()  # cancelled while in flight: nothing to record
                return
            now = time.time()
            if status is not None and 200 <= status < 300:
                self._retire(entry, now)
                log.debug("task done", extra={"queue": entry.queue, "task": entry.task_id, "status": status})
            else:
                if status is not None and status < 500:
                    entry.responses += 1
                entry.previous_status = status
                policy = self._policy(entry.queue)
                if policy.exhausted(entry.attempts, entry.first_attempt or now, now):
                    self._retire(entry, now)
                    log.error("task gave up after its last attempt",
                              extra={"queue": entry.queue, "task": entry.task_id, "attempts": entry.attempts,
                                     "status": status})
                else:
                    delay = policy.delay(entry.attempts)
                    if retry_after is not None and status in (429, 503):
                        # Cloud Tasks considers Retry-After on these two codes; it never exceeds the cap.
                        delay = min(max(delay, retry_after), policy.max_backoff)
                    entry.eta = now + delay
                    entry.generation += 1
                    self._push(entry)
                    log.info("task will be retried", extra={"queue": entry.queue, "task": entry.task_id,
                                                            "attempts": entry.attempts, "status": status,
                                                            "delay": round(delay, 3)})
            try:
                self._save()
            except OSError:
                log.exception("could not write the task state file")
            self._cv.notify_all()

    def _retire(self, entry: _Entry, now: float) -> None:
        del self._tasks[entry.key]
        if entry.named:
            self._tombstones[entry.key] = now + self._tombstone_seconds

    def _release_blocked(self, queue: str) -> None:
        blocked = self._blocked.get(queue)
        while blocked:
            key = blocked.popleft()
            entry = self._tasks.get(key)
            if entry is not None and not entry.inflight:
                self._push(entry)  # already due: the dispatcher takes it on its next pass
                return

    def _prune_tombstones(self, now: float) -> None:
        expired = [key for key, until in self._tombstones.items() if until <= now]
        for key in expired:
            del self._tombstones[key]

    # --- state file ------------------------------------------------------------------------------

    def _save(self) -> None:
        if self._state_path is None:
            return
        self._prune_tombstones(time.time())
        state = {
            "version": STATE_VERSION,
            "tasks": [entry.to_json() for entry in self._tasks.values()],
            "tombstones": [[q, name, until] for (q, name), until in self._tombstones.items()],
        }
        self._state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._state_path.with_name(f"{self._state_path.name}.{os.getpid()}.tmp")
        # No fsync: the file guards against a stopped or crashed process, not a power cut, and an fsync
        # per delivered task would make a 100-task batch wait on the disk.
        tmp.write_text(json.dumps(state, separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, self._state_path)

    def _load(self) -> None:
        assert self._state_path is not None
        try:
            state = json.loads(self._state_path.read_text(encoding="utf-8"))
            if state.get("version") != STATE_VERSION:
                raise ValueError(f"unknown state version {state.get('version')!r}")
            entries = [_Entry.from_json(item) for item in state.get("tasks", [])]
            tombstones = {(q, name): float(until) for q, name, until in state.get("tombstones", [])}
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            aside = self._state_path.with_name(self._state_path.name + ".unreadable")
            log.error("task state file is unreadable; starting empty and keeping it aside",
                      extra={"path": str(self._state_path), "aside": str(aside), "error": str(exc)})
            os.replace(self._state_path, aside)
            return
        for entry in entries:
            self._tasks[entry.key] = entry
            self._push(entry)
        self._tombstones = tombstones
        self._prune_tombstones(time.time())


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # the HTTP-date form is not worth parsing for a local stand-in
