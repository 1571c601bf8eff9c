"""cloudbuild.yaml: the pipeline's steps, in order, and no shell variable mistaken for a substitution."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.deploy.hcl import ROOT

STEPS = ["install", "test-fast", "test-emulators", "build-bundles", "terraform-init", "terraform-plan",
         "terraform-apply", "migrate", "publish-frontend"]


@pytest.fixture(scope="module")
def build():
    return yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())


def _step(build, step_id):
    return next(s for s in build["steps"] if s["id"] == step_id)


def _script(step):
    return " ".join(step.get("args", []))


def test_steps_are_all_there_in_order(build):
    ids = [s["id"] for s in build["steps"]]
    assert [i for i in ids if i in STEPS] == STEPS


def test_what_each_step_runs(build):
    assert 'pytest -m "not emulator and not browser"' in _script(_step(build, "test-fast"))
    emulators = _step(build, "test-emulators")
    assert "make test" in _script(emulators) and "google-cloud-cli" in emulators["name"]
    assert "CI=true" in emulators["env"]
    assert "terraform/build_bundles.py --require-all" in _script(_step(build, "build-bundles"))
    for step_id in ("terraform-init", "terraform-plan", "terraform-apply"):
        step = _step(build, step_id)
        assert step["name"].startswith("hashicorp/terraform:") and step["dir"] == "terraform"
    assert _step(build, "terraform-apply")["args"][-1] == "tfplan"
    assert "-m functions migrate --production" in _script(_step(build, "migrate"))
    publish = _script(_step(build, "publish-frontend"))
    assert "config.json" in publish and "oauthClientId" in publish and "rsync frontend" in publish


def test_runs_on_the_private_pool_that_terraform_creates(build):
    assert build["options"]["pool"]["name"].endswith("/workerPools/leadvoice")
    assert 'resource "google_cloudbuild_worker_pool" "private"' in (ROOT / "terraform" / "database.tf").read_text()


def test_only_known_substitutions_are_used(build):
    # Cloud Build substitutes $NAME and ${NAME} everywhere; a bash variable must be written $$name.
    allowed = {"PROJECT_ID", "BUILD_ID", "COMMIT_SHA", *build.get("substitutions", {})}
    text = (ROOT / "cloudbuild.yaml").read_text()
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    used = set(re.findall(r"(?<!\$)\$\{?([A-Za-z_][A-Za-z0-9_]*)", body))
    assert used <= allowed, sorted(used - allowed)


def test_secret_env_is_declared(build):
    declared = {s["env"] for s in build["availableSecrets"]["secretManager"]}
    for step in build["steps"]:
        assert set(step.get("secretEnv", [])) <= declared
