"""policy.yml under act: the required check refuses a production PR for a version staging never served.

The pull request puts one content hash into staging and production at once: staging's own commit
in the PR has served nothing, so only a check that reads "served" from the base's history (the
PR's base SHA, as the workflow passes it) refuses it. (tests/integration/test_policy.py tries every
rule in-process.)
"""

from __future__ import annotations

import pytest

from modelops.runtime.forge import Forge
from tests.gitops_models import write_release

pytestmark = pytest.mark.slow

WORKFLOW = ".github/workflows/policy.yml"
MODEL = "credit-hgb"
SERVED, NEVER = "a" * 64, "b" * 64


def test_the_check_refuses_a_production_pr_for_a_version_staging_never_served(forge: Forge) -> None:
    write_release(forge.work, "staging", MODEL, SERVED, "v1")
    forge.commit("promote(staging): credit-hgb v1")
    forge.push("main")
    write_release(forge.work, "staging", MODEL, NEVER, "v2")
    write_release(forge.work, "production", MODEL, NEVER, "v2")
    event = forge.open_pr(f"promote/production/{MODEL}", title="promote(production): credit-hgb v2")

    result = forge.run_workflow(WORKFLOW, "pull_request", event, timeout=240)

    assert result.returncode != 0
    log = " ".join(result.log.split())  # act wraps long lines
    assert (
        f"[staging-first] {MODEL} in production (gitops/envs/production/{MODEL}.yaml): the main predictor "
        f"would serve content hash {NEVER} (v2), which staging never served" in log
    ), result.log
    assert f"To fix: promote it to staging first (`modelops promote {MODEL} --env staging`" in log
    assert "exit status 22" in result.log  # 22: refused (23 would be: cannot judge)
    assert "Job succeeded" in result.log  # the gate job passed; the check job is what failed
