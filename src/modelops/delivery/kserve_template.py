"""The manifests of one model on KServe, as `modelops new model` writes them for an env whose
platform is `kserve` (params.yaml `platforms:`): a base InferenceService and the env's unpromoted
JSON6902 patch. The pod is the Seldon predictor's (`pod_template`), inline in `spec.predictor`.

Kept as text like `seldon_template`, so the comments stay in the files. `$model` is the model's
name, `$env` the env's.
"""

from __future__ import annotations

from string import Template

from modelops.delivery import pod_template

CONTAINER = "kserve-container"

# KServe's storage initializer downloads a custom container's STORAGE_URI into /mnt/models (the
# image's MODELOPS_MODEL_URI); PROTOCOL=v2 tells KServe the container speaks the Open Inference
# Protocol. Both only where KServe looks: the container named kserve-container.
_PLATFORM_ENV = """\
      # Content-addressed: <store>/<model>/<sha256>/. Nothing at such a path is ever overwritten.
      - name: STORAGE_URI
        value: unpromoted://$model/
      - name: PROTOCOL
        value: v2
"""

# The object's annotations before the first promotion: the mode and main's (empty) release.
_UNPROMOTED = """\
    serving.kserve.io/deploymentMode: Serverless
    modelops.dev/model: $model
    modelops.dev/version: unpromoted
    modelops.dev/content-hash: "0000000000000000000000000000000000000000000000000000000000000000"
    modelops.dev/storage-uri: unpromoted://$model/
    modelops.dev/git-commit: unpromoted
    modelops.dev/mlflow-run: unpromoted
    modelops.dev/source-pr: unpromoted
"""

BASE = Template(
    """\
# The $model model as KServe runs it: an InferenceService whose predictor is our image as a
# custom container (named kserve-container, as KServe requires) speaking the Open Inference
# Protocol (PROTOCOL=v2). KServe's storage initializer downloads the container's STORAGE_URI into
# /mnt/models before it starts; the server then refuses the model unless its tree hash is
# MODELOPS_EXPECTED_HASH. Clients need a bearer token from Secret modelops-serving-tokens.
# Knative must allow the pod security context and the emptyDir (its feature flags
# kubernetes.podspec-securitycontext and kubernetes.podspec-volumes-emptydir: docs/delivery.md).
#
# The values below are the "unpromoted" state: valid manifests that name no model. The env
# overlays replace them; `modelops promote` edits only the overlays. Keep the order of
# `containers[0]` and its `env`: the overlays address them by index and guard every index with a
# JSON-patch `test`, so a reorder fails the build.
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: $model
  # The release of the main (last fully rolled-out) model; the overlays replace this whole map.
  annotations:
    # canaryTrafficPercent splits traffic between Knative revisions: Knative mode only ("Serverless"
    # is its name in every KServe release; the newest also call it "Knative").
"""
    + _UNPROMOTED
    + """\
spec:
  predictor:
    minReplicas: 1
    maxReplicas: 1
    # Storage credentials for the initializer: a ServiceAccount whose Secret carries KServe's
    # storage annotations (created out of band, never in git).
    serviceAccountName: modelops-model-store
    # The server never calls the Kubernetes API. KServe's webhook defaults this to false too:
    # stating it keeps Argo CD's diff empty.
    automountServiceAccountToken: false
"""
    + pod_template.pod(4, container=CONTAINER, port_name="http1", platform_env=_PLATFORM_ENV)
)

# Everything of an env patch but the sizing: the release of the main model, unpromoted.
PATCH = Template(
    """\
# $model in $env (KServe). `modelops promote` edits the `value:` of these operations in place
# (and appends or removes the canary block); everything else comes from gitops/base/kserve.
# Each `test` guards the index the next operation writes to: if the base is reordered the
# render fails instead of patching the wrong field.

# --- release of the main model -----------------------------------------------------------------
- op: replace
  path: /metadata/annotations
  value:
"""
    + _UNPROMOTED
    + """\
- op: test
  path: /spec/predictor/containers/0/name
  value: kserve-container
- op: test
  path: /spec/predictor/containers/0/env/1/name
  value: MODELOPS_MODEL_VERSION
- op: replace
  path: /spec/predictor/containers/0/env/1/value
  value: unpromoted
- op: test
  path: /spec/predictor/containers/0/env/2/name
  value: MODELOPS_EXPECTED_HASH
- op: replace
  path: /spec/predictor/containers/0/env/2/value
  value: "0000000000000000000000000000000000000000000000000000000000000000"
- op: test
  path: /spec/predictor/containers/0/env/5/name
  value: STORAGE_URI
- op: replace
  path: /spec/predictor/containers/0/env/5/value
  value: unpromoted://$model/

"""
)

SIZING = Template(
    """\
- op: replace
  path: /spec/predictor/minReplicas
  value: $replicas
- op: replace
  path: /spec/predictor/maxReplicas
  value: $replicas
- op: replace
  path: /spec/predictor/containers/0/resources
$resources\
"""
)
