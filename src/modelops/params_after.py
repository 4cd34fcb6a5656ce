"""params.yaml's settings for what happens after a deploy: monitoring, canary analysis and the
promotion policy. Split from `modelops.config` by size only: `config.load_params` still reads and
validates the whole file in one place.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Strict(BaseModel):
    """A params.yaml section: unknown keys are errors, values are frozen once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class MonitorParams(Strict):
    """When `modelops monitor` calls a difference drift (inputs) or concept drift (outcomes):
    significant (Bonferroni) and material."""

    min_rows: int = Field(default=100, ge=10)  # fewer rows per model version: insufficient data
    alpha: float = Field(default=0.05, gt=0, lt=1)  # chance a healthy window raises any alarm
    psi: float = Field(default=0.2, gt=0)  # a feature's or the score's PSI at least this
    max_class_shift: float = Field(default=0.1, gt=0, le=1)  # predicted-class share change
    max_missing_increase: float = Field(default=0.05, gt=0, le=1)  # absolute missing-rate rise
    # Concept drift, from ground-truth feedback: a version's headline metric online is significantly
    # worse than on its test split (its interval wholly on the worse side, Bonferroni over the
    # versions judged) AND worse by at least max_metric_drop (absolute: the headline metrics,
    # ROC AUC, accuracy and R², are all on a 0-1 scale).
    min_outcomes: int = Field(default=100, ge=10)  # fewer outcomes of a version: insufficient data
    max_metric_drop: float = Field(default=0.05, gt=0, le=1)


class CanaryMargins(Strict):
    """How much worse than main a canary must be before the analysis must catch it (per check).

    Absolute shares, except the regression loss: relative to main's own mean absolute error.
    """

    error_rate: float = Field(default=0.01, gt=0, lt=1)  # 5xx share
    slow_rate: float = Field(default=0.05, gt=0, lt=1)  # share slower than main's p95 bucket bound
    online_error: float = Field(default=0.05, gt=0, lt=1)  # misclassified share (classifiers)
    online_abs_error_ratio: float = Field(default=0.1, gt=0)  # mean absolute error / main's - 1


class CanaryParams(Strict):
    """How `modelops analyze` answers promote, abort or wait for a canary or shadow, and what an abort does.

    The statistical rule itself is written in docs/delivery.md and in `monitoring.rule`.
    """

    alpha: float = Field(default=0.05, gt=0, lt=0.5)  # bound on aborting a healthy canary
    beta: float = Field(default=0.1, gt=0, lt=0.5)  # bound on promoting one worse by a margin
    min_samples: int = Field(default=200, ge=10)  # per predictor, before any answer but wait
    on_abort: Literal["commit", "pr"] = "commit"  # canary.yml: commit the abort to main, or open a PR
    margins: CanaryMargins = CanaryMargins()


class CanaryShare(Strict):
    """The share of an env's traffic a canary may take, in percent, both bounds included."""

    min: int = Field(default=1, ge=1, le=99)
    max: int = Field(default=50, ge=1, le=99)

    @model_validator(mode="after")
    def _ordered(self) -> CanaryShare:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is more than max ({self.max})")
        return self


class PolicyParams(Strict):
    """The promotion policy `modelops policy check` enforces on pull requests that touch gitops/."""

    # Each env may only receive a content hash the env before it has served (main or canary).
    order: list[str] = Field(default_factory=lambda: ["staging", "production"], min_length=2)
    canary_share: CanaryShare = CanaryShare()

    @field_validator("order")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"an env is listed twice: {value}")
        return value
