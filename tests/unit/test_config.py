"""Settings: local defaults, fail-fast production validation, and the README table kept in step."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from shared.config import FIELDS, Settings, SettingsError, markdown_table

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION = {
    "GOOGLE_CLOUD_PROJECT": "acme-prod",
    "PUBLIC_BASE_URL": "https://hooks.acme.test",
    "FUNCTION_URL_TEMPLATE": "https://{name}-123.us-central1.run.app",
    "ALLOWED_DOMAINS": "acme.test",
    "OPS_EMAILS": "ops@acme.test",
    "HUBSPOT_CLIENT_SECRET": "s3cret",
    "HUBSPOT_ACCESS_TOKEN": "pat-na1-test",
    "GOOGLE_OAUTH_CLIENT_SECRET": "oauth-secret",
    "GOOGLE_OAUTH_CLIENT_ID": "cid.apps.googleusercontent.com",
    "TASKS_SERVICE_ACCOUNT": "tasks@acme-prod.iam.gserviceaccount.com",
    "PUBSUB_SERVICE_ACCOUNT": "push@acme-prod.iam.gserviceaccount.com",
    "SCHEDULER_SERVICE_ACCOUNT": "sched@acme-prod.iam.gserviceaccount.com",
    "DB_INSTANCE": "acme-prod:us-central1:main",
    "DB_USER": "fn-draft@acme-prod.iam",
    "UPLOADS_BUCKET": "acme-uploads",
}


def test_local_defaults_match_the_design():
    s = Settings.from_env({"ENV": "local"})
    assert s.is_local and s.adapters == "embedded"
    assert s.allowed_domains == ("example.com",)
    assert s.ops_emails == ("ops@example.com",)
    assert s.hubspot_client_secret == "local-hubspot-secret"
    assert s.public_base_url == "http://127.0.0.1:8080"
    assert s.function_url("token-refresh") == "http://127.0.0.1:8080/token-refresh"


def test_local_port_moves_the_public_url_and_environment_overrides_win():
    s = Settings.from_env({"ENV": "local", "PORT": "9123", "OPS_EMAILS": "Boss@Example.com, ops2@example.com"})
    assert s.public_base_url == "http://127.0.0.1:9123"
    assert s.ops_emails == ("boss@example.com", "ops2@example.com")


def test_production_fails_fast_naming_every_missing_setting():
    with pytest.raises(SettingsError) as info:
        Settings.from_env({})
    message = str(info.value)
    for name in ("GOOGLE_CLOUD_PROJECT", "PUBLIC_BASE_URL", "HUBSPOT_CLIENT_SECRET", "GOOGLE_OAUTH_CLIENT_ID",
                 "DB_INSTANCE"):
        assert name in message


def test_production_settings_parse():
    s = Settings.from_env(PRODUCTION)
    assert not s.is_local and s.adapters == "google"
    assert s.function_url("draft") == "https://draft-123.us-central1.run.app"
    assert s.audience_for("draft") == "https://draft-123.us-central1.run.app"
    assert s.embedding_model == "text-embedding-005" and s.embedding_dim == 768


def test_malformed_values_are_named():
    with pytest.raises(SettingsError, match="PORT"):
        Settings.from_env({"ENV": "local", "PORT": "eighty"})
    with pytest.raises(SettingsError, match="ADAPTERS"):
        Settings.from_env({"ENV": "local", "ADAPTERS": "mocks"})


def test_secrets_are_masked_in_the_redacted_view():
    s = Settings.from_env(PRODUCTION)
    shown = s.redacted()
    assert shown["hubspot_client_secret"] == "***"
    assert "s3cret" not in repr(shown)


def test_every_field_is_a_settings_attribute_and_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    assert markdown_table() in readme, "README's configuration table is stale: run `python -m functions settings`"
    for field in FIELDS:
        assert hasattr(Settings, "__dataclass_fields__") and field.name in Settings.__dataclass_fields__


def test_only_config_reads_the_environment():
    offenders = []
    for path in list((ROOT / "shared").rglob("*.py")) + list((ROOT / "functions").glob("*/main.py")):
        if path.name == "config.py" and path.parent.name == "shared":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os"
                    and node.attr in {"environ", "getenv", "putenv", "environb"}):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
