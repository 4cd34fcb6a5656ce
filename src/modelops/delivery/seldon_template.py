"""The manifests of one model, as `modelops new model` writes them: a Seldon Core v1 base and the
unpromoted JSON6902 patch of each env (see gitops/README.md for why patches, and what promote edits).

Kept as text, not built from dicts, so the comments that tell a reviewer what each part is stay in
the files. `$model` is the model's name, `$env` the env's; the sizing block comes from the env's own
convention (`delivery.scaffold.env_sizing`).
"""

from __future__ import annotations

from string import Template

from modelops.delivery import pod_template

BASE = Template(
    """\
# The $model model as Seldon Core v1 runs it: one predictor `main` whose graph node and
# container are both named $model (a custom server: our image, no prepackaged runtime).
# Seldon's storage initializer downloads graph.modelUri into /mnt/models before the container
# starts; the server then refuses the model unless its tree hash is MODELOPS_EXPECTED_HASH.
# Clients need a bearer token from Secret modelops-serving-tokens (Seldon's executor passes the
# request's Authorization header on to the container).
#
# The values below are the "unpromoted" state: valid manifests that name no model (the
# placeholder URI cannot be fetched and the all-zero hash matches no directory). The env
# overlays replace them; `modelops promote` edits only the overlays. Keep the order of
# `predictors[0]`, `componentSpecs[0]`, `containers[0]` and `env[0..2]`: the overlays address
# them by index and guard every index with a JSON-patch `test`, so a reorder fails the build.
apiVersion: machinelearning.seldon.io/v1
kind: SeldonDeployment
metadata:
  name: $model
  # The release of the main predictor; the overlays replace this whole map.
  annotations:
    modelops.dev/model: $model
    modelops.dev/version: unpromoted
    modelops.dev/content-hash: "0000000000000000000000000000000000000000000000000000000000000000"
    modelops.dev/git-commit: unpromoted
    modelops.dev/mlflow-run: unpromoted
    modelops.dev/source-pr: unpromoted
spec:
  name: $model
  protocol: seldon
  predictors:
    - name: main
      replicas: 1
      traffic: 100
      graph:
        name: $model
        type: MODEL
        # Content-addressed: <store>/<model>/<sha256>/. Nothing at such a path is ever overwritten.
        modelUri: unpromoted://$model/
        # Storage credentials for the initializer (created out of band, never in git).
        envSecretRefName: modelops-model-store
        children: []
      componentSpecs:
        - spec:
"""
    + pod_template.pod(12, container="$model", port_name="http")
)

# Everything of an env patch but the sizing: the release of the main predictor, unpromoted.
PATCH = Template(
    """\
# $model in $env. `modelops promote` edits the `value:` of these operations in place
# (and appends or removes the canary / shadow blocks); everything else comes from gitops/base.
# Each `test` guards the index the next operation writes to: if the base is reordered the
# render fails instead of patching the wrong field.

# --- release of the main predictor -----------------------------------------------------------
- op: replace
  path: /metadata/annotations
  value:
    modelops.dev/model: $model
    modelops.dev/version: unpromoted
    modelops.dev/content-hash: "0000000000000000000000000000000000000000000000000000000000000000"
    modelops.dev/git-commit: unpromoted
    modelops.dev/mlflow-run: unpromoted
    modelops.dev/source-pr: unpromoted
- op: test
  path: /spec/predictors/0/name
  value: main
- op: replace
  path: /spec/predictors/0/graph/modelUri
  value: unpromoted://$model/
- op: test
  path: /spec/predictors/0/componentSpecs/0/spec/containers/0/env/1/name
  value: MODELOPS_MODEL_VERSION
- op: replace
  path: /spec/predictors/0/componentSpecs/0/spec/containers/0/env/1/value
  value: unpromoted
- op: test
  path: /spec/predictors/0/componentSpecs/0/spec/containers/0/env/2/name
  value: MODELOPS_EXPECTED_HASH
- op: replace
  path: /spec/predictors/0/componentSpecs/0/spec/containers/0/env/2/value
  value: "0000000000000000000000000000000000000000000000000000000000000000"

"""
)

SIZING = Template(
    """\
- op: replace
  path: /spec/predictors/0/replicas
  value: $replicas
- op: replace
  path: /spec/predictors/0/componentSpecs/0/spec/containers/0/resources
$resources\
- op: replace
  path: /spec/predictors/0/traffic
  value: 100
"""
)
