"""The pod of a model server, shared by the platforms' templates (`seldon_template`, `kserve_template`).

Seldon puts it under `predictors[].componentSpecs[].spec`, KServe inline in `spec.predictor`; the
text is the same (security contexts, volumes, the container's env, probes, resources), indented to
where each platform wants it. `$container` is the container's name, `$port_name` its port's
(Knative accepts only `http1` or `h2c`), `$platform_env` extra env entries (KServe's STORAGE_URI and
PROTOCOL) after the common ones, so `env[0..2]` stay where the overlays' `test` guards expect them.
`$model` is left for the platform template to fill.
"""

from __future__ import annotations

import textwrap
from string import Template

POD = Template(
    """\
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
  - name: $container
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
$platform_env    ports:
      - name: $port_name
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


def pod(indent: int, container: str, port_name: str, platform_env: str = "") -> str:
    """The pod text indented by `indent` spaces, `$model` still to be substituted."""
    text = POD.safe_substitute(container=container, port_name=port_name, platform_env=platform_env)
    return textwrap.indent(text, " " * indent)
