"""TaskQueue on Cloud Tasks: HTTP-target tasks that carry an OIDC token for the target function.

Each task is a POST of a JSON body to ``url_for(target) + path``. Task names are deterministic, so the
same unit of work enqueued twice is refused by Cloud Tasks itself (``ALREADY_EXISTS``), which is how a
redelivered webhook or a retried step avoids doubling its next hop.

The client library is imported and the client built on first use, never at import or construction, so a
function that never enqueues pays nothing for it at cold start.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.errors import DependencyDown
from shared.ports import Task
from shared.topology import queue_name

log = logging.getLogger(__name__)

# https://cloud.google.com/tasks/docs/reference/rest/v2/projects.locations.queues.tasks#Task.FIELDS.name
# A task id may contain only letters, digits, hyphens and underscores, and be at most 500 characters.
MAX_TASK_ID = 500
_VALID_TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,%d}" % MAX_TASK_ID)
_INVALID_RUN = re.compile(r"[^A-Za-z0-9_-]+")
_DIGEST_CHARS = 32  # 128 bits of SHA-256: collisions are not a practical concern

# Enough parallel CreateTask calls for a 100-event webhook batch to finish in a few round trips,
# without opening hundreds of streams from one function instance.
DEFAULT_MAX_PARALLEL = 16


def task_id(name: str) -> str:
    """The Cloud Tasks task id for a logical task name: deterministic, valid and collision-resistant.

    A name that is already a valid id is used as is, so it stays readable in the console. Any other name
    keeps its readable characters (invalid runs become ``-``) followed by a hash of the whole original
    name, so two names that differ only in invalid characters, or beyond the length limit, still get
    different ids.

    Args:
        name: The logical name (``draft:wf-123``, a URL, anything).

    Returns:
        An id of at most 500 letters, digits, hyphens and underscores; the same for the same name.

    Raises:
        ValueError: ``name`` is empty.
    """
    if not name:
        raise ValueError("a task name may not be empty")
    if _VALID_TASK_ID.fullmatch(name):
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:_DIGEST_CHARS]
    readable = _INVALID_RUN.sub("-", name).strip("-")
    room = MAX_TASK_ID - len(digest) - 1
    return f"{readable[:room]}-{digest}" if readable else digest


def json_body(payload: dict[str, Any]) -> bytes:
    """The JSON request body of a task (compact, UTF-8; datetimes as ISO 8601)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=_json_default).encode("utf-8")


def _json_default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def schedule_utc(when: dt.datetime | None) -> dt.datetime | None:
    """Validate a schedule time: it must carry a timezone, since a naive one is ambiguous.

    Raises:
        ValueError: ``when`` is naive.
    """
    if when is None:
        return None
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("Task.schedule_at must be timezone-aware")
    return when.astimezone(dt.timezone.utc)


class CloudTasksQueue:
    """The production TaskQueue (``google-cloud-tasks``).

    Args:
        project: Google Cloud project id.
        location: Region of the queues.
        url_for: Base URL of a deployed function (``draft`` → ``https://.../draft``).
        audience_for: Audience of the OIDC token Cloud Tasks mints to call a function.
        service_account_email: Service account whose OIDC token Cloud Tasks attaches.
        queue_for: Queue id of a target when a task names none.
        client: A ``tasks_v2.CloudTasksClient`` to use instead of building one.
        emulator_host: ``host:port`` of an emulator: a plaintext gRPC channel, no credentials.
        max_parallel: Most CreateTask calls in flight at once in ``enqueue_many``.
        timeout: Seconds allowed per RPC.
    """

    def __init__(self, *, project: str, location: str, url_for: Callable[[str], str],
                 audience_for: Callable[[str], str], service_account_email: str,
                 queue_for: Callable[[str], str] = queue_name, client: Any = None,
                 emulator_host: str | None = None, max_parallel: int = DEFAULT_MAX_PARALLEL,
                 timeout: float = 10.0):
        if not project or not location:
            raise ValueError("project and location are required")
        self.project = project
        self.location = location
        self._url_for = url_for
        self._audience_for = audience_for
        self._service_account_email = service_account_email
        self._queue_for = queue_for
        self._client_obj = client
        self._owns_client = client is None
        self._emulator_host = emulator_host
        self._max_parallel = max(1, max_parallel)
        self._timeout = timeout
        self._lock = threading.Lock()

    # --- client ----------------------------------------------------------------------------------

    def _client(self) -> Any:
        client = self._client_obj
        if client is not None:
            return client
        with self._lock:
            if self._client_obj is None:
                self._client_obj = self._build_client()
            return self._client_obj

    def _build_client(self) -> Any:
        from google.cloud import tasks_v2

        if not self._emulator_host:
            return tasks_v2.CloudTasksClient()
        import grpc
        from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

        # A channel handed to the transport carries no credentials: emulators speak plaintext and
        # accept anonymous calls.
        channel = grpc.insecure_channel(self._emulator_host)
        return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))

    # --- names -----------------------------------------------------------------------------------

    def queue_path(self, queue: str) -> str:
        """``projects/P/locations/L/queues/Q`` of queue id ``queue``."""
        return f"projects/{self.project}/locations/{self.location}/queues/{queue}"

    def task_path(self, queue: str, name: str) -> str:
        """The full task name Cloud Tasks dedupes on, for logical name ``name`` in ``queue``."""
        return f"{self.queue_path(queue)}/tasks/{task_id(name)}"

    def _queue_of(self, target: str, queue: str | None) -> str:
        return queue or self._queue_for(target)

    # --- the port --------------------------------------------------------------------------------

    def enqueue(self, task: Task) -> bool:
        """Create one HTTP task.

        Returns:
            True when created, False when a task of that name already exists (a duplicate).

        Raises:
            DependencyDown: Cloud Tasks refused or could not be reached; the caller should retry.
            ValueError: the schedule time has no timezone.
        """
        from google.api_core import exceptions as gexc

        queue = self._queue_of(task.target, task.queue)
        request = {"parent": self.queue_path(queue), "task": self._task_message(task, queue)}
        try:
            self._client().create_task(request=request, timeout=self._timeout)
        except gexc.AlreadyExists:
            log.info("task already exists", extra={"queue": queue, "task": task_id(task.name) if task.name else None})
            return False
        except gexc.GoogleAPIError as exc:
            raise DependencyDown(f"Cloud Tasks could not create a task on {queue}: {type(exc).__name__}") from exc
        return True

    def enqueue_many(self, tasks: Sequence[Task]) -> list[bool]:
        """Create several tasks concurrently on a bounded pool.

        Every creation is attempted even when one fails, so a retry of the whole batch only has to
        redo the failed ones (the rest are refused as duplicates by name).

        Returns:
            One flag per task, in order: True created, False duplicate.

        Raises:
            DependencyDown: at least one creation failed (the first failure is raised).
        """
        if not tasks:
            return []
        if len(tasks) == 1:
            return [self.enqueue(tasks[0])]
        self._client()  # build once here rather than racing for the lock in every worker
        with ThreadPoolExecutor(max_workers=min(self._max_parallel, len(tasks)),
                                thread_name_prefix="cloud-tasks") as pool:
            futures = [pool.submit(self.enqueue, task) for task in tasks]
        results: list[bool] = []
        first_error: BaseException | None = None
        for future in futures:
            error = future.exception()
            if error is not None:
                first_error = first_error or error
                results.append(False)
            else:
                results.append(future.result())
        if first_error is not None:
            raise first_error
        return results

    def cancel(self, target: str, name: str, queue: str | None = None) -> bool:
        """Delete a task that has not run yet.

        Returns:
            True when a task was deleted; False when none of that name exists (ran, deleted, never made).

        Raises:
            DependencyDown: Cloud Tasks refused or could not be reached.
        """
        from google.api_core import exceptions as gexc

        path = self.task_path(self._queue_of(target, queue), name)
        try:
            self._client().delete_task(request={"name": path}, timeout=self._timeout)
        except gexc.NotFound:
            return False
        except gexc.GoogleAPIError as exc:
            raise DependencyDown(f"Cloud Tasks could not delete a task: {type(exc).__name__}") from exc
        return True

    def health(self) -> None:
        """Raise DependencyDown unless Cloud Tasks answers.

        A function's service account may hold only the enqueuer role, so a permission error still counts
        as an answer: the service is reachable, which is what health means here.
        """
        from google.api_core import exceptions as gexc

        try:
            self._client().list_queues(
                request={"parent": f"projects/{self.project}/locations/{self.location}", "page_size": 1},
                timeout=min(self._timeout, 5.0))
        except gexc.PermissionDenied:
            return
        except gexc.GoogleAPIError as exc:
            raise DependencyDown(f"Cloud Tasks is not answering: {type(exc).__name__}") from exc

    # --- setup for emulators and tests -----------------------------------------------------------

    def ensure_queues(self, targets: Iterable[str]) -> list[str]:
        """Create the queue of each target if it does not exist (emulators; Terraform owns real queues).

        Returns:
            The full queue paths.
        """
        from google.api_core import exceptions as gexc

        parent = f"projects/{self.project}/locations/{self.location}"
        paths = []
        for target in targets:
            path = self.queue_path(self._queue_for(target))
            try:
                self._client().create_queue(request={"parent": parent, "queue": {"name": path}},
                                            timeout=self._timeout)
            except gexc.AlreadyExists:
                pass
            paths.append(path)
        return paths

    def close(self) -> None:
        """Close the client's channel if this adapter built it (an injected client is the caller's)."""
        if not self._owns_client:
            return
        with self._lock:
            client, self._client_obj = self._client_obj, None
        transport = getattr(client, "transport", None)
        if transport is not None:
            transport.close()

    # --- helpers ---------------------------------------------------------------------------------

    def _task_message(self, task: Task, queue: str) -> dict[str, Any]:
        message: dict[str, Any] = {
            "http_request": {
                "http_method": "POST",
                "url": self._url_for(task.target).rstrip("/") + task.path,
                "headers": {"Content-Type": "application/json"},
                "body": json_body(task.payload),
                "oidc_token": {
                    "service_account_email": self._service_account_email,
                    "audience": self._audience_for(task.target),
                },
            },
        }
        if task.name:
            message["name"] = self.task_path(queue, task.name)
        when = schedule_utc(task.schedule_at)
        if when is not None:
            message["schedule_time"] = when
        return message
