"""The TaskQueue port: Cloud Tasks (on gcloud-tasks-emulator) and the embedded queue, one suite.

Tasks are delivered over real HTTP to a loopback receiver standing where the functions would be. The
first section runs against both adapters. The emulator does not back off, does not refuse duplicate
names, ignores OIDC tokens and has no DeleteTask, so the sections after it exercise those parts of the
contract on the embedded queue, and the production adapter's request shape and error mapping against a
small in-process gRPC service that answers like Cloud Tasks.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures

import pytest

from shared.adapters.cloud_tasks import CloudTasksQueue, task_id
from shared.adapters.local_tasks import LocalTaskQueue, RetryPolicy
from shared.ports import Task, TaskQueue

PROJECT = "test-project"
LOCATION = "us-central1"
SERVICE_ACCOUNT = "tasks-invoker@test-project.iam.gserviceaccount.com"
TARGETS = ("draft", "send")
# Small backoffs keep the retry tests fast; the arithmetic is the same at Cloud Tasks' scale.
FAST = RetryPolicy(min_backoff=0.02, max_backoff=0.1, max_attempts=20)


def audience(name: str) -> str:
    return f"https://{name}.functions.test"


def utc_in(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)


@dataclasses.dataclass
class Harness:
    queue: TaskQueue
    queue_for: Callable[[str], str]


@pytest.fixture(params=["embedded", pytest.param("cloud-tasks", marks=pytest.mark.emulator)])
def harness(request, receiver) -> Iterator[Harness]:
    # Queues of their own per test, so nothing one test leaves behind reaches another's receiver.
    suffix = uuid.uuid4().hex[:8]

    def queue_for(target: str) -> str:
        return f"{target}-{suffix}"

    def url_for(name: str) -> str:
        return f"{receiver.url}/{name}"

    if request.param == "embedded":
        queue = LocalTaskQueue(url_for, audience_for=audience, queue_for=queue_for, retry=FAST)
    else:
        emulator = request.getfixturevalue("cloud_tasks_emulator")
        queue = CloudTasksQueue(project=PROJECT, location=LOCATION, url_for=url_for, audience_for=audience,
                                service_account_email=SERVICE_ACCOUNT, queue_for=queue_for,
                                emulator_host=emulator.host)
        queue.ensure_queues(TARGETS)
    yield Harness(queue, queue_for)
    queue.close()


# --- both adapters -------------------------------------------------------------------------------


def test_implements_the_port(harness):
    assert isinstance(harness.queue, TaskQueue)


def test_a_task_reaches_its_function_with_its_body_and_headers(harness, receiver):
    assert harness.queue.enqueue(Task("draft", {"workflow_id": "wf-1", "step": "draft"}, name="wf-1",
                                      path="/run")) is True

    [got] = receiver.wait_for(1, path="/draft/run")
    assert got.method == "POST"
    assert got.json() == {"workflow_id": "wf-1", "step": "draft"}
    assert got.header("Content-Type") == "application/json"
    # Cloud Tasks sends the queue id; the emulator sends the full queue path. Both end in the id.
    assert got.header("X-CloudTasks-QueueName").rsplit("/", 1)[-1] == harness.queue_for("draft")
    assert got.header("X-CloudTasks-TaskName") == task_id("wf-1")
    assert got.header("X-CloudTasks-TaskRetryCount") == "0"
    assert got.header("X-CloudTasks-TaskExecutionCount") == "0"


def test_a_task_is_not_delivered_before_its_schedule_time(harness, receiver):
    when = utc_in(1.0)
    assert harness.queue.enqueue(Task("send", {"n": 1}, name="later", schedule_at=when)) is True

    [got] = receiver.wait_for(1, path="/send", timeout=10)
    assert got.at >= when.timestamp()
    assert float(got.header("X-CloudTasks-TaskETA")) == pytest.approx(when.timestamp(), abs=1e-3)


def test_enqueue_many_delivers_a_hundred_tasks(harness, receiver):
    tasks = [Task("draft", {"i": i}, name=f"batch-{i}") for i in range(100)]

    assert harness.queue.enqueue_many(tasks) == [True] * 100

    got = receiver.wait_for(100, path="/draft", timeout=30)
    assert sorted(r.json()["i"] for r in got) == list(range(100))


def test_a_naive_schedule_time_is_refused(harness):
    with pytest.raises(ValueError):
        harness.queue.enqueue(Task("send", {}, schedule_at=dt.datetime.now() + dt.timedelta(seconds=5)))


# --- the embedded queue: what the emulator cannot show -------------------------------------------


@pytest.fixture
def local(receiver, tmp_path) -> Iterator[Callable[..., LocalTaskQueue]]:
    """Build embedded queues delivering to the receiver; every one is closed after the test."""
    built: list[LocalTaskQueue] = []

    def build(**kwargs) -> LocalTaskQueue:
        kwargs.setdefault("audience_for", audience)
        kwargs.setdefault("retry", FAST)
        queue = LocalTaskQueue(lambda name: f"{receiver.url}/{name}", **kwargs)
        built.append(queue)
        return queue

    yield build
    for queue in built:
        queue.close()


def test_cancel_of_a_scheduled_task_prevents_its_delivery(local, receiver):
    # Embedded only: gcloud-tasks-emulator answers UNIMPLEMENTED to DeleteTask.
    queue = local(queue_concurrency={"send-queue": 1})
    assert queue.enqueue(Task("send", {"which": "cancelled"}, name="to-cancel", schedule_at=utc_in(0.3)))
    # A later task on the same one-at-a-time queue: once it arrives, the cancelled one was due long ago.
    assert queue.enqueue(Task("send", {"which": "sentinel"}, name="sentinel", schedule_at=utc_in(0.5)))

    assert queue.cancel("send", "to-cancel") is True
    assert queue.cancel("send", "to-cancel") is False
    assert queue.cancel("send", "never-existed") is False

    receiver.wait_for(1, path="/send")
    assert queue.wait_idle(5)
    assert [r.json()["which"] for r in receiver.received()] == ["sentinel"]
    assert queue.enqueue(Task("send", {}, name="to-cancel")) is False  # a cancelled name stays taken


def test_a_name_is_refused_while_pending_and_after_delivery_until_its_tombstone_expires(local, receiver):
    # Embedded only: gcloud-tasks-emulator does not refuse duplicate task names.
    queue = local(tombstone_seconds=0.3)
    assert queue.enqueue(Task("draft", {"n": 1}, name="wf-7")) is True
    assert queue.enqueue(Task("draft", {"n": 2}, name="wf-7")) is False
    assert queue.enqueue_many([Task("draft", {"n": 3}, name="twin"), Task("draft", {"n": 4}, name="twin")]) \
        == [True, False]
    receiver.wait_for(2, path="/draft")
    assert queue.wait_idle(5)

    assert queue.enqueue(Task("draft", {"n": 5}, name="wf-7")) is False  # ran, but the name is still taken
    assert queue.enqueue(Task("send", {"n": 6}, name="wf-7")) is True  # names are per queue
    time.sleep(0.35)  # the behaviour under test is the passing of the tombstone period itself
    assert queue.enqueue(Task("draft", {"n": 7}, name="wf-7")) is True

    receiver.wait_for(3, path="/draft")
    assert queue.wait_idle(5)
    assert sorted(r.json()["n"] for r in receiver.received("/draft")) == [1, 3, 7]


def test_failed_attempts_are_retried_with_exponential_backoff(local, receiver):
    # Embedded only: gcloud-tasks-emulator retries at once, without backoff.
    queue = local(retry=RetryPolicy(min_backoff=0.1, max_backoff=10, max_doublings=16, max_attempts=10))
    receiver.respond("/draft", 500, 503, 404)  # then 200

    assert queue.enqueue(Task("draft", {"n": 1}, name="flaky"))

    got = receiver.wait_for(4, path="/draft", timeout=10)
    assert [r.status for r in got] == [500, 503, 404, 200]
    gaps = [b.at - a.at for a, b in zip(got, got[1:])]
    # Never earlier than the backoff: 0.1 s, then doubled, then doubled again.
    for gap, backoff in zip(gaps, [0.1, 0.2, 0.4]):
        assert gap >= backoff - 0.005, gaps
    assert [r.header("X-CloudTasks-TaskRetryCount") for r in got] == ["0", "1", "2", "3"]
    # Only answers that were not 5xx count as executions.
    assert [r.header("X-CloudTasks-TaskExecutionCount") for r in got] == ["0", "0", "0", "1"]
    assert [r.header("X-CloudTasks-TaskPreviousResponse") for r in got] == [None, "500", "503", "404"]
    assert queue.wait_idle(5)
    assert len(receiver.received("/draft")) == 4


def test_a_task_stops_after_max_attempts_and_waits_stay_under_the_cap(local, receiver):
    # Embedded only: the emulator neither backs off nor caps the wait.
    queue = local(retry=RetryPolicy(min_backoff=0.05, max_backoff=0.1, max_doublings=16, max_attempts=6))
    receiver.always(500)

    assert queue.enqueue(Task("draft", {}, name="doomed"))

    got = receiver.wait_for(6, path="/draft", timeout=10)
    assert queue.wait_idle(5)
    assert queue.pending() == 0
    assert len(receiver.received("/draft")) == 6
    gaps = [b.at - a.at for a, b in zip(got, got[1:])]
    assert all(gap >= 0.045 for gap in gaps), gaps
    # Uncapped, the last wait would be 0.8 s; capped it is 0.1 s. The margin absorbs a slow machine.
    assert gaps[-1] < 0.5, gaps


def test_pending_tasks_survive_a_restart_through_the_state_file(local, receiver, tmp_path):
    # Embedded only: the state file is the embedded queue's own.
    state = tmp_path / "tasks.json"
    first = local(state_path=state, retry=RetryPolicy(min_backoff=1.0, max_backoff=1.0))
    receiver.respond("/draft", 500)
    assert first.enqueue(Task("draft", {"which": "retried"}, name="retried"))
    assert first.enqueue(Task("send", {"which": "scheduled"}, name="scheduled", schedule_at=utc_in(1.0)))
    [failed] = receiver.wait_for(1, path="/draft")
    first.close()
    assert len(receiver.received()) == 1  # closed before the retry and the scheduled task were due

    second = local(state_path=state)  # resumes without a new enqueue
    got = receiver.wait_for(3, timeout=10)
    assert second.wait_idle(5)
    retried = [r for r in got if r.path == "/draft"][-1]
    scheduled = [r for r in got if r.path == "/send"][0]
    assert retried.json() == {"which": "retried"}
    assert retried.header("X-CloudTasks-TaskRetryCount") == "1"  # the first attempt was remembered
    assert retried.at >= failed.at + 1.0 - 0.005
    assert scheduled.json() == {"which": "scheduled"}
    # Names stay taken across the restart too.
    assert second.enqueue(Task("draft", {}, name="retried")) is False
    second.close()
    assert local(state_path=state).enqueue(Task("send", {}, name="scheduled")) is False


def test_deliveries_carry_a_bearer_token_for_the_target_audience(local, receiver):
    # Embedded only: gcloud-tasks-emulator ignores the OIDC token of a task.
    minted: list[str] = []

    def token_source(aud: str) -> str:
        minted.append(aud)
        return f"token-for-{aud}"

    queue = local(token_source=token_source)
    assert queue.enqueue(Task("draft", {}, name="authed"))

    [got] = receiver.wait_for(1, path="/draft")
    assert got.header("Authorization") == f"Bearer token-for-{audience('draft')}"
    assert minted == [audience("draft")]


def test_a_queue_never_exceeds_its_concurrency_limit(local, receiver):
    queue = local(queue_concurrency={"draft-queue": 2})
    receiver.hold("/draft", 0.2)

    assert queue.enqueue_many([Task("draft", {"i": i}) for i in range(6)]) == [True] * 6

    receiver.wait_for(6, path="/draft", timeout=10)
    assert receiver.max_concurrent == 2


def test_retry_policy_follows_the_cloud_tasks_arithmetic():
    # RetryConfig reference: min 10 s, max 300 s, 3 doublings → 10, 20, 40, 80, 160, 240, 300, 300.
    policy = RetryPolicy(min_backoff=10, max_backoff=300, max_doublings=3, max_attempts=-1)
    assert [policy.delay(n) for n in range(1, 9)] == [10, 20, 40, 80, 160, 240, 300, 300]
    assert not policy.exhausted(10_000, first_attempt_at=0, now=1e9)  # -1: unlimited attempts

    both = RetryPolicy(max_attempts=3, max_retry_duration=60)
    assert not both.exhausted(3, first_attempt_at=0, now=30)  # attempts used, duration not yet
    assert not both.exhausted(2, first_attempt_at=0, now=90)  # duration used, attempts not yet
    assert both.exhausted(3, first_attempt_at=0, now=90)


# --- the production adapter: request shape and error mapping --------------------------------------


@pytest.fixture
def tasks_service():
    """An in-process gRPC server on Cloud Tasks' own method paths that records requests and answers
    ALREADY_EXISTS for a taken name and NOT_FOUND for a missing one, as the real service does."""
    grpc = pytest.importorskip("grpc")
    stubs = pytest.importorskip("gcloud_tasks_emulator.cloudtasks_pb2_grpc")
    from google.protobuf import empty_pb2

    class Service(stubs.CloudTasksServicer):
        def __init__(self):
            self.requests: list = []
            self.names: set[str] = set()

        def CreateTask(self, request, context):  # noqa: N802 (gRPC method name)
            self.requests.append(request)
            if request.task.name in self.names:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, "task exists")
            self.names.add(request.task.name)
            return request.task

        def DeleteTask(self, request, context):  # noqa: N802
            if request.name not in self.names:
                context.abort(grpc.StatusCode.NOT_FOUND, "no such task")
            self.names.discard(request.name)
            return empty_pb2.Empty()

    service = Service()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    stubs.add_CloudTasksServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    service.host = f"127.0.0.1:{port}"
    yield service
    server.stop(grace=None)


def test_cloud_tasks_requests_carry_url_oidc_token_schedule_and_name(tasks_service):
    queue = CloudTasksQueue(project=PROJECT, location=LOCATION, url_for=lambda n: f"https://fn.test/{n}",
                            audience_for=audience, service_account_email=SERVICE_ACCOUNT,
                            emulator_host=tasks_service.host)
    when = utc_in(3600)
    try:
        assert queue.enqueue(Task("send", {"k": "v"}, name="send:wf-1", path="/now", schedule_at=when)) is True
        assert queue.enqueue(Task("send", {"k": "v"}, name="send:wf-1")) is False
        assert queue.enqueue_many([Task("draft", {"i": i}, name=f"d{i}") for i in range(20)]
                                  + [Task("send", {}, name="send:wf-1")]) == [True] * 20 + [False]
        assert queue.cancel("send", "send:wf-1") is True
        assert queue.cancel("send", "send:wf-1") is False
    finally:
        queue.close()

    parent = f"projects/{PROJECT}/locations/{LOCATION}/queues"
    request = tasks_service.requests[0]
    assert request.parent == f"{parent}/send-queue"
    http = request.task.http_request
    assert request.task.name == f"{parent}/send-queue/tasks/{task_id('send:wf-1')}"
    assert http.url == "https://fn.test/send/now"
    assert http.http_method.name == "POST"
    assert http.headers["Content-Type"] == "application/json"
    assert http.body == b'{"k":"v"}'
    assert http.oidc_token.service_account_email == SERVICE_ACCOUNT
    assert http.oidc_token.audience == audience("send")
    assert request.task.schedule_time.timestamp() == pytest.approx(when.timestamp(), abs=1e-3)
