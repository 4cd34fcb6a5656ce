"""The manifests of one model's batch job, as `modelops new batch` writes them: a kustomize Component
under gitops/base/batch/<model>/ (the CronJob the same in every env, and its image taken from the
model's SeldonDeployment) and the env's opt-in patch gitops/envs/<env>/batch/<model>.yaml.

Kept as text, like `seldon_template`, so the comments that tell a reviewer what each field is for stay
in the files. Why a Component and a strategic-merge patch: see gitops/README.md (Batch jobs).
"""

from __future__ import annotations

import json
from string import Template

import yaml

# Everything a component needs: the CronJob, and the image of the model's main predictor copied
# into it, so batch and online run the same build (the one the env's `images:` pins).
COMPONENT = Template(
    """\
# $model's batch job, for the envs that opt in: their kustomization lists this directory under
# `components:` and patches the CronJob with batch/$model.yaml (schedule, input, output, shards,
# release). Nothing here renders on its own.
apiVersion: kustomize.config.k8s.io/v1alpha1
kind: Component
resources:
  - cronjob.yaml
# The same image as the online predictor, whatever the env's kustomization.yaml `images:` makes of it.
replacements:
  - source:
      kind: SeldonDeployment
      name: $model
      fieldPath: spec.predictors.[name=main].componentSpecs.0.spec.containers.[name=$model].image
    targets:
      - select:
          kind: CronJob
          name: $model-batch
        fieldPaths:
          - spec.jobTemplate.spec.template.spec.containers.[name=batch].image
"""
)

CRONJOB = Template(
    """\
# $model scored in batch: the serving image's `modelops-batch` reads the input, scores every row
# with the model the main predictor serves, and writes the output beside its target, renamed at
# the end, with a success manifest written last. Each run is an Indexed Job: pod i of N scores
# shard i (`--shards N` reads JOB_COMPLETION_INDEX), so Kubernetes spreads the work.
#
# What is the same in every env, suspended and unpromoted. An env opts in with the Component in
# this directory; its batch/$model.yaml sets the schedule, input, output, shards and the release
# (the main predictor's: `modelops promote` edits both in one commit). The pod is hardened like
# the predictor: same user, seccomp, read-only root, /tmp the only writable path.
apiVersion: batch/v1
kind: CronJob
metadata:
  name: $model-batch
  labels:
    app.kubernetes.io/part-of: modelops
    app.kubernetes.io/component: batch
    modelops.dev/model: $model
spec:
  schedule: "0 2 * * *"
  # Schedules are read in UTC, the zone of the run's {date} in the input and output URLs.
  timeZone: Etc/UTC
  # A run still going at the next tick: skip that tick (two runs would write the same output).
  concurrencyPolicy: Forbid
  # Missed by more than an hour (controller down, upgrade): skip it rather than run late.
  startingDeadlineSeconds: 3600
  successfulJobsHistoryLimit: 3
  failedJobsHistoryLimit: 3
  # Nothing to score with until the first promotion, which sets the env's `suspend: false`.
  suspend: true
  jobTemplate:
    metadata:
      labels:
        app.kubernetes.io/part-of: modelops
        app.kubernetes.io/component: batch
        modelops.dev/model: $model
    spec:
      # Pod i scores shard i of N; the env sets completions = parallelism = N = `--shards N`.
      completionMode: Indexed
      completions: 1
      parallelism: 1
      # Retries per shard: one flaky shard does not use up the others' retries.
      backoffLimitPerIndex: 2
      # A run past six hours is stuck: fail it; the next tick starts afresh.
      activeDeadlineSeconds: 21600
      podFailurePolicy:
        rules:
          # An evicted or preempted pod did nothing wrong: retry it without counting a failure.
          - action: Ignore
            onPodConditions:
              - type: DisruptionTarget
                status: "True"
          # The engine's usage (2), bad input (3) and refused model (4) give the same answer on a
          # retry: fail that shard at once. I/O errors (5) and crashes are retried.
          - action: FailIndex
            onExitCodes:
              containerName: batch
              operator: In
              values: [2, 3, 4]
      template:
        metadata:
          labels:
            app.kubernetes.io/part-of: modelops
            app.kubernetes.io/component: batch
            modelops.dev/model: $model
        spec:
          restartPolicy: Never
          # The job never calls the Kubernetes API.
          automountServiceAccountToken: false
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
          containers:
            - name: batch
              # Replaced by the predictor's image (kustomization.yaml in this directory).
              image: modelops-serving
              command: ["modelops-batch"]
              # args (--input, --output, --shards N, ...) come from the env's patch.
              env:
                - name: MODELOPS_MODEL_NAME
                  value: $model
                # The release, as the main predictor's: its modelUri, version and content hash.
                - name: MODELOPS_MODEL_URI
                  value: unpromoted://$model/
                - name: MODELOPS_MODEL_VERSION
                  value: unpromoted
                - name: MODELOPS_EXPECTED_HASH
                  value: "0000000000000000000000000000000000000000000000000000000000000000"
              # The model store's credentials: the Secret the predictor's storage initializer uses.
              envFrom:
                - secretRef:
                    name: modelops-model-store
              resources:
                requests:
                  cpu: "1"
                  memory: 1Gi
                limits:
                  cpu: "1"
                  memory: 2Gi
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
"""
)

# The env's opt-in: a strategic-merge patch of the CronJob (a core kind merges containers and env
# by name, so no index guards are needed, unlike the SeldonDeployment's JSON6902 patches).
ENV_PATCH = Template(
    """\
# The batch job of $model in $env: when it runs, what it reads and writes, in how many shards,
# and the release it scores with. `modelops promote` edits the release (the three values under
# `env:`, and `suspend` on the first promotion) in the same commit as ../$model.yaml: batch
# scores with what the main predictor serves, never with a canary or a shadow.
apiVersion: batch/v1
kind: CronJob
metadata:
  name: $model-batch
spec:
  schedule: $schedule
  suspend: $suspend
  jobTemplate:
    spec:
      # N shards: completions = parallelism = `--shards N`.
      completions: $shards
      parallelism: $shards
      template:
        spec:
          containers:
            - name: batch
              # {date}: the run's UTC date (YYYY-MM-DD); {shard}: the shard index, zero-padded.
              args:
$args
              env:
                - name: MODELOPS_MODEL_URI
                  value: $uri
                - name: MODELOPS_MODEL_VERSION
                  value: $version
                - name: MODELOPS_EXPECTED_HASH
                  value: "$content_hash"
"""
)


def quote(value: str) -> str:
    """A YAML scalar that reads back as this string: plain when it can be, else double-quoted."""
    try:
        plain = yaml.safe_load(value) == value and value.strip() == value
    except yaml.YAMLError:
        plain = False
    return value if plain else json.dumps(value)


def cronjob(model: str) -> str:
    """The base CronJob of a model's batch job."""
    return CRONJOB.substitute(model=model)


def env_patch(
    model: str,
    env: str,
    *,
    schedule: str,
    args: list[str],
    shards: int,
    uri: str,
    version: str,
    content_hash: str,
    suspend: bool,
) -> str:
    """The env's batch patch: schedule, shards, the container's args, and the release it scores with."""
    return ENV_PATCH.substitute(
        model=model,
        env=env,
        schedule=json.dumps(schedule),
        suspend="true" if suspend else "false",
        shards=shards,
        args="\n".join(f"                - {quote(a)}" for a in args),
        uri=quote(uri),
        version=quote(version),
        content_hash=content_hash,
    )
