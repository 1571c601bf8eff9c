"""terraform/ agrees with the code: functions, settings, topics, queues, and who may call what."""

from __future__ import annotations

import re

import pytest
import yaml

from shared import config, quotas
from shared.adapters.pubsub import subscription_id
from shared.topology import FUNCTIONS, SUBSCRIPTIONS, TOPICS, module_name, queue_name
from tests.deploy.hcl import (ROOT, TERRAFORM, load, load_dir, locals_, module_call, resource, resources,
                              tf_files, variable)

PUBLIC = {"webhook", "ingest", "admin", "token-refresh"}
PRIVATE = set(FUNCTIONS) - PUBLIC
CALLERS = {"tasks", "pubsub", "scheduler"}


@pytest.fixture(scope="module")
def root():
    return load_dir(TERRAFORM)


@pytest.fixture(scope="module")
def fn_module():
    return load_dir(TERRAFORM / "modules" / "function")


@pytest.fixture(scope="module")
def specs(root):
    return variable(root, "functions")["default"]


@pytest.fixture(scope="module")
def env_keys(root):
    """Environment variable names each function gets: plain and from secrets."""
    loc = locals_(root)
    call = module_call(root, "function")
    extra = set(re.findall(r"\b([A-Z][A-Z0-9_]+)\s*=", call["environment"]))
    plain = set(loc["common_environment"]) | extra
    return plain, set(loc["secret_environment"])


def test_every_tf_file_parses():
    files = tf_files()
    assert len(files) >= 10
    for path in files:
        assert isinstance(load(path), dict), path


def test_one_spec_per_function_with_entry_point_and_runtime(root, specs):
    assert set(specs) == set(FUNCTIONS)
    runtime_type = variable(root, "functions")["type"]
    assert 'runtime = optional(string, "python311")' in runtime_type
    for name, spec in specs.items():
        assert spec["entry_point"] == module_name(name)
        assert spec.get("runtime", "python311") == "python311"


def test_every_function_folder_is_deployed(specs):
    folders = {p.parent.name for p in (ROOT / "functions").glob("*/main.py")}
    assert folders <= {module_name(name) for name in specs}


def test_the_module_is_instantiated_once_over_the_map(root):
    call = module_call(root, "function")
    assert call["source"] == "./modules/function"
    assert call["for_each"] == "${var.functions}"
    assert call["entry_point"] == "${each.value.entry_point}"
    assert call["runtime"] == "${each.value.runtime}"
    assert 'replace(each.key, "-", "_")' in call["bundle_path"]


def test_module_deploys_gen2_from_a_content_addressed_object(fn_module):
    obj = resource(fn_module, "google_storage_bucket_object", "source")
    assert "bundle_sha256" in obj["name"]
    assert "filesha256(var.bundle_path)" in locals_(fn_module)["bundle_sha256"]
    function = resource(fn_module, "google_cloudfunctions2_function", "this")
    build = function["build_config"][0]
    assert build["runtime"] == "${var.runtime}" and build["entry_point"] == "${var.entry_point}"
    assert "google_storage_bucket_object.source.name" in build["source"][0]["storage_source"][0]["object"]
    service = function["service_config"][0]
    assert service["environment_variables"] == "${var.environment}"
    assert "secret_environment_variables" in str(service)


def test_production_settings_are_all_set(env_keys):
    plain, secret = env_keys
    required = {f.env for f in config.FIELDS if f.production is None and f.required} | {"DB_INSTANCE"}
    missing = required - plain - secret
    assert not missing, f"settings required in production but not deployed: {sorted(missing)}"


def test_deployed_settings_exist_in_config(env_keys):
    plain, secret = env_keys
    known = {f.env for f in config.FIELDS}
    assert (plain | secret) <= known, sorted((plain | secret) - known)


def test_secrets_come_from_secret_manager_not_plain_environment(root, env_keys):
    plain, secret = env_keys
    secret_fields = {f.env for f in config.FIELDS if f.secret and f.required}
    assert secret_fields <= secret
    assert not (secret_fields & plain)
    declared = set(locals_(root)["secrets"])
    for ref in locals_(root)["secret_environment"].values():
        assert re.search(r'google_secret_manager_secret\.app\["([^"]+)"\]', ref).group(1) in declared


def test_function_url_template_is_cloud_runs_deterministic_form(root):
    template = locals_(root)["function_url_template"]
    assert template == "https://{name}-${data.google_project.this.number}.${var.region}.run.app"
    assert locals_(root)["common_environment"]["FUNCTION_URL_TEMPLATE"] == "${local.function_url_template}"


def test_public_functions_are_exactly_the_four(specs):
    assert {name for name, s in specs.items() if s.get("public", False)} == PUBLIC
    for name in PRIVATE:
        assert specs[name].get("invokers"), name
        assert set(specs[name]["invokers"]) <= CALLERS
    for name in ("extract", "embed", "draft", "send"):
        assert "tasks" in specs[name]["invokers"]
    assert "pubsub" in specs["gate"]["invokers"]


def test_platform_verifies_invoker_exactly_on_the_private_functions(root, specs):
    env = module_call(root, "function")["environment"]
    match = re.search(r'PLATFORM_VERIFIES_INVOKER = each\.value\.public \? "false" : "true"', env)
    assert match, env
    assert "PLATFORM_VERIFIES_INVOKER" not in locals_(root)["common_environment"]
    verified = {name for name, s in specs.items() if not s.get("public", False)}
    assert verified == PRIVATE


def test_invoker_bindings_are_per_function(fn_module):
    binding = resource(fn_module, "google_cloud_run_v2_service_iam_member", "invoker")
    assert binding["role"] == "roles/run.invoker"
    assert binding["name"] == "${google_cloudfunctions2_function.this.name}"
    assert binding["for_each"] == '${toset(var.public ? ["allUsers"] : var.invoker_members)}'


def test_no_project_wide_invoker_or_broad_role(root):
    for rtype, name, body in resources(root):
        if rtype.startswith("google_project_iam"):
            role = str(body.get("role", ""))
            assert "invoker" not in role, f"{rtype}.{name}: {role}"
            assert role not in {"roles/owner", "roles/editor"}, f"{rtype}.{name}"
            if role == "roles/secretmanager.admin":
                assert body.get("condition"), f"{rtype}.{name} must be conditioned on a name prefix"
    for roles in locals_(root)["function_project_roles"].values():
        for role in roles:
            assert "invoker" not in role and not role.endswith((".admin", "/owner", "/editor")), role


def test_only_the_website_bucket_and_function_module_grant_all_users(root, fn_module):
    public = [(t, n) for t, n, body in resources(root) if "allUsers" in str(body.get("member", ""))
              or "allAuthenticatedUsers" in str(body.get("member", ""))]
    assert public == [("google_storage_bucket_iam_member", "website_public")]


def test_each_function_account_has_its_roles_with_reasons(root):
    roles = locals_(root)["function_project_roles"]
    assert set(roles) == set(FUNCTIONS)
    for name, listed in roles.items():
        assert listed and len(listed) == len(set(listed)), name
    text = (TERRAFORM / "functions.tf").read_text()
    block = text[text.index("function_project_roles = {"):text.index("resource \"google_project_iam_member\" \"function\"")]
    role_lines = [line for line in block.splitlines() if '"roles/' in line]
    assert role_lines and all("#" in line for line in role_lines), "every role needs a comment saying why"
    assert set(roles["draft"]) >= {"roles/aiplatform.user", "roles/cloudsql.client", "roles/cloudsql.instanceUser"}
    assert "roles/aiplatform.user" in roles["embed"]


def test_topics_and_push_subscriptions_follow_topology(root):
    loc = locals_(root)
    assert set(loc["topics"]) == set(TOPICS)
    expected = {subscription_id(topic, fn): {"topic": topic, "function": fn, "path": path}
                for topic, subs in SUBSCRIPTIONS.items() for fn, path in subs}
    assert loc["push_subscriptions"] == expected
    push = resource(root, "google_pubsub_subscription", "push")
    assert push["push_config"][0]["oidc_token"][0]["service_account_email"] == \
        '${google_service_account.caller["pubsub"].email}'
    assert push["dead_letter_policy"][0]["dead_letter_topic"] == "${google_pubsub_topic.dead_letter[each.key].id}"
    agent_grants = {(t, n) for t, n, b in resources(root) if "local.pubsub_service_agent" in str(b.get("member"))}
    assert ("google_pubsub_topic_iam_member", "dead_letter_publisher") in agent_grants
    assert ("google_pubsub_subscription_iam_member", "dead_letter_subscriber") in agent_grants


def test_gmail_can_publish_to_its_topic(root):
    grant = resource(root, "google_pubsub_topic_iam_member", "gmail_push")
    assert grant["member"] == "serviceAccount:gmail-api-push@system.gserviceaccount.com"
    assert grant["role"] == "roles/pubsub.publisher"
    assert 'google_pubsub_topic.main["gmail-push"]' in grant["topic"]


def test_queues_follow_topology_and_send_is_slow(root):
    loc = locals_(root)
    queue = resource(root, "google_cloud_tasks_queue", "main")
    assert queue["name"] == "${each.key}-queue"
    assert {queue_name(t) for t in loc["queues"]} == {"draft-queue", "extract-queue", "embed-queue", "send-queue"}
    targets = {t for ts in loc["enqueuers"].values() for t in ts}
    assert targets <= set(loc["queues"]) and targets <= set(FUNCTIONS)
    assert loc["queues"]["send"]["dispatches_per_second"] == "${var.send_dispatches_per_second}"
    assert variable(root, "send_dispatches_per_second")["default"] <= 1
    assert loc["queues"]["send"]["concurrent"] <= 5
    acts_as = resource(root, "google_service_account_iam_member", "enqueuer_acts_as_tasks_invoker")
    assert acts_as["role"] == "roles/iam.serviceAccountUser"


def test_scheduler_calls_token_refresh_with_oidc(root):
    job = resource(root, "google_cloud_scheduler_job", "token_refresh")
    target = job["http_target"][0]
    assert target["uri"] == '${local.function_url["token-refresh"]}'
    assert target["oidc_token"][0]["service_account_email"] == '${google_service_account.caller["scheduler"].email}'


def test_cloud_sql_is_private_encrypted_and_recoverable(root):
    db = resource(root, "google_sql_database_instance", "main")
    assert db["database_version"] in {"POSTGRES_16", "POSTGRES_17"}
    assert db["deletion_protection"] is True
    settings = db["settings"][0]
    assert settings["deletion_protection_enabled"] is True
    ip = settings["ip_configuration"][0]
    assert ip["ipv4_enabled"] is False and ip["ssl_mode"] == "ENCRYPTED_ONLY"
    backup = settings["backup_configuration"][0]
    assert backup["enabled"] is True and backup["point_in_time_recovery_enabled"] is True
    flags = {f["name"]: f["value"] for f in settings["database_flags"]}
    for name in ("log_connections", "log_disconnections", "log_checkpoints", "log_lock_waits",
                 "cloudsql.iam_authentication"):
        assert flags.get(name) == "on", name
    assert "log_min_duration_statement" in flags
    users = resource(root, "google_sql_user", "function")
    assert users["type"] == "CLOUD_IAM_SERVICE_ACCOUNT" and users["for_each"] == "${var.functions}"


def test_firestore_ttl_covers_the_quota_collections(root):
    ttl = resource(root, "google_firestore_field", "quota_ttl")
    assert ttl["field"] == "expires_at"
    assert ttl["for_each"] == '${toset(["%s", "%s", "%s"])}' % (quotas.SLOTS, quotas.HOLDS, quotas.RESERVATIONS)
    db = resource(root, "google_firestore_database", "main")
    assert db["point_in_time_recovery_enablement"] == "POINT_IN_TIME_RECOVERY_ENABLED"


def test_private_buckets_stay_private(root):
    for name in ("uploads", "sources"):
        bucket = resource(root, "google_storage_bucket", name)
        assert bucket["public_access_prevention"] == "enforced", name
        assert bucket["uniform_bucket_level_access"] is True, name
        assert bucket["versioning"][0]["enabled"] is True, name
    uploads = resource(root, "google_storage_bucket", "uploads")
    assert any(rule["action"][0]["type"] == "Delete" for rule in uploads["lifecycle_rule"])


def test_token_refresh_administers_only_prefixed_secrets(root):
    grant = resource(root, "google_project_iam_member", "token_refresh_rep_secrets")
    assert grant["role"] == "roles/secretmanager.admin"
    assert 'google_service_account.function["token-refresh"]' in grant["member"]
    assert "var.rep_token_secret_prefix" in grant["condition"][0]["expression"]
    assert "startsWith" in grant["condition"][0]["expression"]


def test_alerts_read_metrics_that_exist(root):
    metrics = {name for t, name, _ in resources(root) if t == "google_logging_metric"}
    for t, name, body in resources(root):
        if t != "google_monitoring_alert_policy":
            continue
        for ref in re.findall(r"google_logging_metric\.(\w+)", str(body)):
            assert ref in metrics, f"{name} reads missing metric {ref}"
    filters = " ".join(str(b["filter"]) for t, _, b in resources(root) if t == "google_logging_metric")
    for message in ("circuit opened", "kill switch changed", "send failed", "draft created"):
        assert f'jsonPayload.message=\\"{message}\\"' in filters or f'jsonPayload.message="{message}"' in filters


def test_every_checkov_skip_has_a_reason():
    text = (TERRAFORM / ".checkov.yaml").read_text()
    skips = yaml.safe_load(text)["skip-check"]
    assert skips
    lines = text.splitlines()
    for check in skips:
        index = next(i for i, line in enumerate(lines) if line.strip() == f"- {check}")
        above = lines[index - 1].strip()
        assert above.startswith("#") or lines[index - 1].strip().startswith("- CKV"), check
    # Consecutive skips share the reason above the first of them; the first one must have it.
    first = next(i for i, line in enumerate(lines) if line.strip().startswith("- CKV"))
    assert lines[first - 1].strip().startswith("#")


def test_the_code_logs_every_message_an_alert_matches():
    """Each log-based metric's message is logged somewhere in shared/ with the fields the metric reads."""
    sources = "\n".join(p.read_text() for p in (TERRAFORM.parent / "shared").rglob("*.py"))
    for message, field in (("circuit opened", "service"), ("kill switch changed", "kill_switch"),
                           ("send failed", "reason"), ("draft created", "lead_to_draft_seconds")):
        calls = re.findall(r'log\.\w+\(\s*"' + re.escape(message) + r'"[^\n]*(?:\n[^\n]*){0,3}', sources)
        assert calls, f"nothing logs {message!r}"
        assert any(f'"{field}"' in call for call in calls), f"{message!r} is logged without its {field!r} field"
