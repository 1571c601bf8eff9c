"""Start and stop the whole system on one machine: embedded adapters, or production ones on emulators."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server

from shared import bootstrap
from shared.bootstrap import Container
from shared.config import EMBEDDED, GOOGLE, Settings
from shared.logs import setup_logging
from shared.migrate import migrate

log = logging.getLogger(__name__)


class LocalStack:
    """The local stack as an object: ``start()`` serves in a background thread, ``stop()`` ends everything
    it started (server, dispatcher threads, emulators, embedded Postgres) by PID."""

    def __init__(self, *, port: int = 8080, data_dir: Path | str = ".local", emulators: bool = False,
                 environ: Mapping[str, str] | None = None, host: str = "127.0.0.1", seed: bool = True,
                 **overrides: Any):
        self.port = port
        self.host = host
        self.data_dir = Path(data_dir).resolve()
        self.use_emulators = emulators
        self.environ = environ
        self.seed = seed
        self.overrides = overrides
        self._emulators: list[Any] = []
        self._relay = None  # the identity relay (emulator mode only)
        self._relayed_tasks = None
        self._server = None
        self._thread: threading.Thread | None = None
        self.container: Container | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def relay(self):
        """The identity relay the emulators deliver through (emulator mode only; None otherwise)."""
        return self._relay

    def start(self) -> LocalStack:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        values: dict[str, Any] = {"env": "local", "port": self.port, "data_dir": self.data_dir}
        if self.use_emulators:
            values.update(self._start_emulators())
        settings = Settings.from_env(self.environ, **values)
        setup_logging(settings.log_level, settings.project_id, secrets=bootstrap.secret_values(settings))
        ports = dict(self.overrides)
        if self.use_emulators:
            ports.update(self._embedded_where_no_emulator(settings))
            if "tasks" not in ports:
                ports["tasks"] = self._tasks_through_relay(settings)
        self.container = Container(settings, **ports)
        bootstrap.use(self.container)
        try:
            migrate(self.container.db, vector_index=(settings.embedding_model, settings.embedding_dim))
            if self.use_emulators:
                self._prepare_emulators(settings)
            self.container.tasks  # resumes deliveries saved by a previous run
            if self.seed:
                from functions.localstack.seed import seed

                seed(self.container)
            from functions.localstack.app import build_app

            self._server = make_server(self.host, self.port, build_app(self.container), threaded=True)
            self._thread = threading.Thread(target=self._server.serve_forever, name="local-stack", daemon=True)
            self._thread.start()
        except BaseException:
            self.stop()
            raise
        log.info("local stack serving", extra={"fields": {"url": self.url, "emulators": self.use_emulators}})
        return self

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self.container is not None:
            self.container.close()
            bootstrap.use(None)
        if self._relayed_tasks is not None:
            self._relayed_tasks.close()
            self._relayed_tasks = None
        if self._relay is not None:
            self._relay.stop()
            self._relay = None
        for emulator in reversed(self._emulators):
            emulator.stop()
        self._emulators.clear()

    # --- emulator mode ---------------------------------------------------------------------------

    def _start_emulators(self) -> dict[str, Any]:
        from functions.localstack.emulators.cloud_tasks import CloudTasksEmulator
        from functions.localstack.emulators.firestore import FirestoreEmulator
        from functions.localstack.emulators.gcs import GcsEmulator
        from functions.localstack.emulators.pubsub import PubSubEmulator

        logs = self.data_dir / "emulators"
        firestore = self._track(FirestoreEmulator(log_path=logs / "firestore.log"))
        pubsub = self._track(PubSubEmulator(log_path=logs / "pubsub.log"))
        tasks = self._track(CloudTasksEmulator(log_path=logs / "cloud-tasks.log"))
        gcs = self._track(GcsEmulator(log_dir=logs))
        # Started side by side: the JVM emulators take seconds each.
        with ThreadPoolExecutor(max_workers=4) as pool:
            for future in [pool.submit(e.start) for e in (firestore, pubsub, tasks, gcs)]:
                future.result()
        return {"adapters": GOOGLE, "firestore_emulator_host": firestore.host,
                "pubsub_emulator_host": pubsub.host, "tasks_emulator_host": tasks.host,
                "storage_emulator_host": gcs.url}

    def _track(self, emulator):
        self._emulators.append(emulator)
        return emulator

    def _embedded_where_no_emulator(self, settings: Settings) -> dict[str, Any]:
        """Secret Manager has no emulator and Vertex AI needs the internet: those stay embedded."""
        embedded = Container(Settings.from_env(self.environ, **{**_values_of(settings), "adapters": EMBEDDED}))
        return {"secrets": embedded.secrets, "embedder": embedded.embedder}

    def _start_relay(self, settings: Settings):
        """The identity relay: the emulators deliver without the OIDC token Google attaches in production,
        so in emulator mode they deliver through this local stand-in, which signs one with the stack's
        signer and forwards to the function. The functions keep verifying every delivery."""
        if self._relay is None:
            from functions.localstack.relay import IdentityRelay
            from shared.topology import FUNCTIONS

            def sign(audience: str, email: str) -> str:
                assert self.container is not None, "deliveries arrive only after the stack has started"
                return self.container.signer.service_token(audience, email)

            self._relay = IdentityRelay(
                target_for=settings.function_url, audience_for=settings.audience_for,
                accounts={"tasks": settings.tasks_service_account, "pubsub": settings.pubsub_service_account},
                sign=sign, functions=FUNCTIONS).start()
        return self._relay

    def _tasks_through_relay(self, settings: Settings):
        """The production Cloud Tasks adapter on the emulator, with task URLs at the relay."""
        from shared.adapters.cloud_tasks import CloudTasksQueue

        relay = self._start_relay(settings)
        self._relayed_tasks = CloudTasksQueue(
            project=settings.project_id, location=settings.region, url_for=relay.url_for("tasks"),
            audience_for=settings.audience_for, service_account_email=settings.tasks_service_account,
            emulator_host=settings.tasks_emulator_host or None)
        return self._relayed_tasks

    def _prepare_emulators(self, settings: Settings) -> None:
        from shared.topology import FUNCTIONS, SUBSCRIPTIONS

        assert self.container is not None
        self.container.tasks.ensure_queues(FUNCTIONS)
        # Push endpoints at the relay too, for the same reason as the task URLs (see _start_relay).
        self.container.events.ensure_topology(SUBSCRIPTIONS, self._start_relay(settings).url_for("pubsub"))
        for emulator in self._emulators:
            if hasattr(emulator, "create_bucket"):
                emulator.create_bucket(settings.uploads_bucket)


def _values_of(settings: Settings) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
