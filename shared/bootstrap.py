"""The one place adapters are built.

``container()`` returns the process's ``Container``; each adapter is created on first use and then
reused for the life of the instance, so a cold start imports and connects only what that function
touches. ``Settings.adapters`` picks the production adapters (client libraries, pointed at Google or
at emulators) or the embedded ones. Tests build a ``Container`` with overrides of the project's own
ports, or install one with ``use()``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from shared.config import EMBEDDED, Settings

_lock = threading.Lock()
_container: Container | None = None


class Container:
    """Lazily built adapters for one ``Settings``."""

    _PORTS = ("db", "store", "tasks", "events", "blobs", "secrets", "embedder", "generator", "fetcher", "transcripts",
              "drive", "crm", "mailer", "verifier", "signer")

    def __init__(self, settings: Settings, **overrides: Any):
        unknown = set(overrides) - set(self._PORTS)
        if unknown:
            raise TypeError(f"unknown ports: {sorted(unknown)}")
        self.settings = settings
        self._built: dict[str, Any] = dict(overrides)
        self._lock = threading.RLock()
        self._closers: list[Callable[[], None]] = []

    def _get(self, name: str, build: Callable[[], Any]) -> Any:
        try:
            return self._built[name]
        except KeyError:
            pass
        with self._lock:
            if name not in self._built:
                self._built[name] = build()
            return self._built[name]

    @property
    def embedded(self) -> bool:
        return self.settings.adapters == EMBEDDED

    def built(self) -> dict[str, Any]:
        """The adapters created so far (for /healthz: it reports without forcing cold ones to start)."""
        return dict(self._built)

    # --- SQL -------------------------------------------------------------------------------------

    @property
    def db(self):
        return self._get("db", self._build_db)

    def _build_db(self):
        from shared.adapters.postgres import PgDatabase, cloud_sql_connector, dsn_connector

        s = self.settings
        if s.database_url:
            connect = dsn_connector(s.database_url)
        elif self.embedded or s.is_local:
            from shared.adapters.embedded_postgres import EmbeddedPostgres

            server = EmbeddedPostgres(s.data_dir / "postgres", s.db_name).start()
            self._closers.append(server.stop)  # closed after the pool below (closers run in reverse)
            connect = server.connector()
        else:
            connect = cloud_sql_connector(s.db_instance, s.db_user, s.db_name, s.db_password)
        db = PgDatabase(connect, pool_size=s.db_pool_size)
        self._closers.append(db.close)
        return db

    # --- Documents -------------------------------------------------------------------------------

    @property
    def store(self):
        return self._get("store", self._build_store)

    def _build_store(self):
        s = self.settings
        if self.embedded:
            from shared.adapters.local_store import LocalStore

            return LocalStore(s.data_dir)
        from shared.adapters.firestore_store import FirestoreStore

        return FirestoreStore(project=s.project_id, database=s.firestore_database,
                              emulator_host=s.firestore_emulator_host or None)

    # --- Tasks and events ------------------------------------------------------------------------

    def _token_source(self) -> Callable[[str], str] | None:
        """Locally, deliveries carry OIDC tokens from the local signer, verified like Google's."""
        if not self.settings.is_local:
            return None
        signer = self.signer
        return lambda audience: signer.service_token(audience, self.settings.tasks_service_account)

    @property
    def tasks(self):
        return self._get("tasks", self._build_tasks)

    def _build_tasks(self):
        s = self.settings
        if self.embedded:
            from shared.adapters.local_tasks import LocalTaskQueue

            queue = LocalTaskQueue(url_for=s.function_url, token_source=self._token_source(),
                                   audience_for=s.audience_for, state_path=s.data_dir / "tasks.json")
            self._closers.append(queue.close)
            return queue
        from shared.adapters.cloud_tasks import CloudTasksQueue

        return CloudTasksQueue(project=s.project_id, location=s.region, url_for=s.function_url,
                               audience_for=s.audience_for, service_account_email=s.tasks_service_account,
                               emulator_host=s.tasks_emulator_host or None)

    @property
    def events(self):
        return self._get("events", self._build_events)

    def _build_events(self):
        s = self.settings
        if self.embedded:
            from shared.adapters.local_events import LocalEventBus

            bus = LocalEventBus(project=s.project_id, url_for=s.function_url,
                                token_source=self._pubsub_token_source(), audience_for=s.audience_for)
            self._closers.append(bus.close)
            return bus
        from shared.adapters.pubsub import PubSubBus

        return PubSubBus(project=s.project_id, emulator_host=s.pubsub_emulator_host or None)

    def _pubsub_token_source(self) -> Callable[[str], str] | None:
        if not self.settings.is_local:
            return None
        signer = self.signer
        return lambda audience: signer.service_token(audience, self.settings.pubsub_service_account)

    # --- Blobs and secrets -----------------------------------------------------------------------

    @property
    def blobs(self):
        return self._get("blobs", self._build_blobs)

    def _build_blobs(self):
        s = self.settings
        if self.embedded:
            from shared.adapters.local_blobs import LocalBlobStore

            return LocalBlobStore(s.data_dir / "blobs" / s.uploads_bucket)
        from shared.adapters.gcs import GcsBlobStore

        return GcsBlobStore(bucket=s.uploads_bucket, project=s.project_id,
                            endpoint=s.storage_emulator_host or None)

    @property
    def secrets(self):
        return self._get("secrets", self._build_secrets)

    def _build_secrets(self):
        s = self.settings
        if self.embedded:
            from shared.adapters.local_secrets import LocalSecretStore

            return LocalSecretStore(s.data_dir / "secrets")
        from shared.adapters.secret_manager import SecretManagerStore

        return SecretManagerStore(project=s.project_id, endpoint=s.secrets_endpoint or None)

    # --- Embeddings ------------------------------------------------------------------------------

    @property
    def embedder(self):
        return self._get("embedder", self._build_embedder)

    def _build_embedder(self):
        s = self.settings
        if self.embedded:
            from shared.adapters.local_embeddings import LocalEmbedder

            return LocalEmbedder()
        from shared.adapters.vertex_embeddings import VertexEmbedder

        return VertexEmbedder(project=s.project_id, location=s.region, model=s.embedding_model,
                              dimension=s.embedding_dim, base_url=s.vertex_base_url or None)

    # --- Text generation -----------------------------------------------------------------------

    @property
    def generator(self):
        return self._get("generator", self._build_generator)

    def _build_generator(self):
        s = self.settings
        if s.generation_model == "offline-drafter":
            from shared.adapters.offline_drafter import OfflineDrafter

            return OfflineDrafter()
        from shared.adapters.vertex_text import GeminiGenerator

        return GeminiGenerator(project=s.project_id, location=s.region, model=s.generation_model,
                               base_url=s.vertex_base_url or None)

    # --- Share links ---------------------------------------------------------------------------

    @property
    def fetcher(self):
        """The SSRF-safe client for links people paste (the same in every mode: it is the guard)."""
        return self._get("fetcher", self._build_fetcher)

    def _build_fetcher(self):
        from shared.adapters.web_fetch import SafeFetcher

        return SafeFetcher(max_bytes=self.settings.max_upload_bytes)

    # --- Sources of voice material and CRM --------------------------------------------------------

    @property
    def transcripts(self):
        """YouTube captions: the same adapter everywhere (it needs the internet and says so offline)."""
        return self._get("transcripts", self._build_transcripts)

    def _build_transcripts(self):
        from shared.adapters.youtube import YouTubeTranscripts

        return YouTubeTranscripts()

    @property
    def drive(self):
        return self._get("drive", self._build_drive)

    def _build_drive(self):
        s = self.settings
        if self.embedded or not s.oauth_client_secret:
            from shared.adapters.google_drive import UnavailableDrive

            return UnavailableDrive()
        from shared.adapters.google_drive import GoogleDrive

        return GoogleDrive(self.secrets, client_id=s.oauth_client_id, client_secret=s.oauth_client_secret,
                           token_uri=s.google_token_uri, api_base_url=s.google_api_base_url,
                           max_bytes=s.max_upload_bytes)

    @property
    def crm(self):
        return self._get("crm", self._build_crm)

    def _build_crm(self):
        s = self.settings
        if self.embedded or not s.hubspot_access_token:
            from shared.adapters.hubspot_crm import SandboxCrm

            return SandboxCrm(s.data_dir)
        from shared.adapters.hubspot_crm import HubSpotCrm

        return HubSpotCrm(s.hubspot_access_token, host=s.hubspot_base_url or None)

    # --- Mail ----------------------------------------------------------------------------------

    @property
    def mailer(self):
        """Gmail with the rep's own token in production; the local outbox of .eml files otherwise."""
        return self._get("mailer", self._build_mailer)

    def _build_mailer(self):
        from shared.adapters.gmail import build_mailer

        return build_mailer(self.settings, self.secrets)

    # --- Identity --------------------------------------------------------------------------------

    @property
    def signer(self):
        """The local OIDC signer; exists only under ENV=local (production tokens come from Google)."""
        return self._get("signer", self._build_signer)

    def _build_signer(self):
        if not self.settings.is_local:
            raise RuntimeError("the local signer exists only under ENV=local")
        from shared.auth import LocalSigner

        return LocalSigner(self.settings.data_dir / "keys")

    @property
    def verifier(self):
        return self._get("verifier", self._build_verifier)

    def _build_verifier(self):
        from shared.auth import TokenVerifier, google_certs

        if self.settings.is_local:
            return TokenVerifier(self.signer.certs)
        return TokenVerifier(google_certs(), accept_platform_verified=self.settings.platform_verifies_invoker)

    def close(self) -> None:
        for close in reversed(self._closers):
            close()
        self._closers.clear()


def container() -> Container:
    """The process-wide container, built from the environment on first use."""
    global _container
    if _container is None:
        with _lock:
            if _container is None:
                from shared.logs import setup_logging

                built = Container(Settings.from_env())
                setup_logging(built.settings.log_level, built.settings.project_id,
                              secrets=secret_values(built.settings))
                _container = built
    return _container


def secret_values(settings: Settings) -> list[str]:
    """Values of secret settings, registered with the log redactor so they never reach a log line."""
    from shared.config import FIELDS

    return [str(getattr(settings, f.name)) for f in FIELDS if f.secret and getattr(settings, f.name)]


def settings() -> Settings:
    return container().settings


def use(new: Container | None) -> Container | None:
    """Install a container (the local stack and tests); returns the previous one."""
    global _container
    with _lock:
        previous, _container = _container, new
    return previous
