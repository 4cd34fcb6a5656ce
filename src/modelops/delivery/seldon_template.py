"""The manifests of one model, as `modelops new model` writes them: a Seldon Core v1 base and the
unpromoted JSON6902 patch of each env (see gitops/README.md for why patches, and what promote edits).

Kept as text, not built from dicts, so the comments that tell a reviewer what each part is stay in
the files. `$model` is the model's name, `$env` the env's; the sizing block comes from the env's own
convention (`delivery.scaffold.env_sizing`).
"""

from __future__ import annotations

from string import Template

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
            securityContext:
              runAsNonRoot: true
              runAsUser: 10001
              runAsGroup: 10001
              fsGroup: 10001
              seccompProfile:
                type: RuntimeDefault
            volumes:
              # The one writable path of a read-only root: HOME, TMPDIR and the model cache.
              - name: tmp
                emptyDir:
                  sizeLimit: 1Gi
              # The bearer tokens clients must send (one a line; docs/serving.md#authentication).
              # The Secret is created out of band, never in git; the pod does not start without it.
              # Mounted as a directory (no subPath): the kubelet then updates the file in place on
              # a rotation, and the server re-reads it.
              - name: serving-tokens
                secret:
                  secretName: modelops-serving-tokens
                  defaultMode: 288  # 0440: readable by the pod's fsGroup only
            containers:
              - name: $model
                image: modelops-serving
                env:
                  - name: MODELOPS_MODEL_NAME
                    value: $model
                  - name: MODELOPS_MODEL_VERSION
                    value: unpromoted
                  - name: MODELOPS_EXPECTED_HASH
                    value: "0000000000000000000000000000000000000000000000000000000000000000"
                  - name: MODELOPS_LOG_LEVEL
                    value: info
                  # Prediction, feedback and metadata need `Authorization: Bearer <token>`; probes
                  # and /metrics stay open. A missing or empty file stops the server from starting.
                  - name: MODELOPS_AUTH_TOKENS_FILE
                    value: /etc/modelops/serving-tokens/tokens
                ports:
                  - name: http
                    containerPort: 9000
                    protocol: TCP
                # Ready only once the model loaded and its hash matched; a refused model stays
                # unready (visible) instead of crash-looping.
                readinessProbe:
                  httpGet:
                    path: /v2/health/ready
                    port: 9000
                  initialDelaySeconds: 5
                  periodSeconds: 5
                  timeoutSeconds: 2
                  failureThreshold: 3
                livenessProbe:
                  httpGet:
                    path: /v2/health/live
                    port: 9000
                  initialDelaySeconds: 15
                  periodSeconds: 10
                  timeoutSeconds: 2
                  failureThreshold: 3
                resources:
                  requests:
                    cpu: 250m
                    memory: 512Mi
                  limits:
                    cpu: "1"
                    memory: 1Gi
                securityContext:
                  runAsNonRoot: true
                  runAsUser: 10001
                  runAsGroup: 10001
                  readOnlyRootFilesystem: true
                  allowPrivilegeEscalation: false
                  capabilities:
                    drop: ["ALL"]
                  seccompProfile:
                    type: RuntimeDefault
                volumeMounts:
                  - name: tmp
                    mountPath: /tmp
                  - name: serving-tokens
                    mountPath: /etc/modelops/serving-tokens
                    readOnly: true
"""
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
