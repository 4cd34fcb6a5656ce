"""params.yaml, loaded and validated in one place: every other module gets typed objects.

Unknown keys, wrong types and out-of-range values fail here, before any work, with the
dotted key path (``models.credit-hgb.hyperparams.max_iter``) in the message.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from modelops.errors import ParamsError

PARAMS_FILE = "params.yaml"
MODEL_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(_Strict):
    """Where raw data comes from: the packaged credit dataset, a seeded generator, or a CSV file."""

    source: Literal["credit", "synthetic", "file"] = "credit"
    rows: int = Field(default=10_000, ge=100, le=50_000_000)
    seed: int = Field(default=0, ge=0)
    path: str | None = None

    @model_validator(mode="after")
    def _path_only_for_file(self) -> DataParams:
        if self.source == "file" and not self.path:
            raise ValueError("data.source 'file' needs data.path (a CSV under data/sources/)")
        if self.source != "file" and self.path:
            raise ValueError(f"data.path is only read when data.source is 'file', not {self.source!r}")
        if self.path and not self.path.startswith("data/sources/"):
            raise ValueError(
                f"data.path must be under data/sources/ (the stage's dependency), got {self.path!r}"
            )
        return self


class SplitParams(_Strict):
    """Hash-based split: a row's side depends only on its id and the seed, so it never moves."""

    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    seed: int = Field(default=0, ge=0)


class EvaluateParams(_Strict):
    """How much work evaluation does beyond the metrics themselves."""

    importance_rows: int = Field(default=5_000, ge=100)
    importance_repeats: int = Field(default=5, ge=1, le=50)
    latency_batch_rows: int = Field(default=1_000, ge=1)
    latency_repeats: int = Field(default=50, ge=1)


ESTIMATORS = {
    "hist_gradient_boosting": "sklearn.ensemble.HistGradientBoostingClassifier",
    "random_forest": "sklearn.ensemble.RandomForestClassifier",
    "logistic_regression": "sklearn.linear_model.LogisticRegression",
}


class ModelParams(_Strict):
    """One model: an estimator, its hyper-parameters, and the seed it trains with."""

    estimator: Literal["hist_gradient_boosting", "random_forest", "logistic_regression"]
    hyperparams: dict[str, Any] = Field(default_factory=dict)
    seed: int = Field(default=0, ge=0)
    threads: int = Field(default=2, ge=1, le=64)

    @field_validator("hyperparams")
    @classmethod
    def _no_seed_in_hyperparams(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in ("random_state", "n_jobs"):
            if key in value:
                raise ValueError(f"set {key!r} through the model's 'seed'/'threads', not hyperparams")
        return value


class MlflowParams(_Strict):
    """The experiment every pipeline run is logged to."""

    experiment: str = Field(default="modelops", min_length=1)


QUALITY = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
LOWER_IS_BETTER = frozenset({"log_loss"})


class GateParams(_Strict):
    """The quality gate a candidate must pass to be promoted (read by `modelops gate`)."""

    minimum: dict[str, float] = Field(default_factory=dict)  # metric -> floor (log_loss: ceiling)
    max_regression: dict[str, float] = Field(default_factory=dict)  # metric -> allowed loss vs champion
    max_latency_ratio: float = Field(default=2.0, gt=0)  # candidate / champion predict time

    @field_validator("minimum", "max_regression")
    @classmethod
    def _known_metrics(cls, value: dict[str, float]) -> dict[str, float]:
        for metric, bound in value.items():
            if metric not in QUALITY:
                raise ValueError(f"unknown metric {metric!r} (known: {', '.join(QUALITY)})")
            if bound < 0:
                raise ValueError(f"{metric}: must be >= 0, got {bound}")
        return value


class MonitorParams(_Strict):
    """When `modelops monitor` calls a difference drift: significant (Bonferroni) and material."""

    min_rows: int = Field(default=100, ge=10)  # fewer rows per model version: insufficient data
    alpha: float = Field(default=0.05, gt=0, lt=1)  # chance a healthy window raises any alarm
    psi: float = Field(default=0.2, gt=0)  # a feature's or the score's PSI at least this
    max_class_shift: float = Field(default=0.1, gt=0, le=1)  # predicted-class share change
    max_missing_increase: float = Field(default=0.05, gt=0, le=1)  # absolute missing-rate rise


class Params(_Strict):
    """The whole params.yaml."""

    data: DataParams = DataParams()
    split: SplitParams = SplitParams()
    evaluate: EvaluateParams = EvaluateParams()
    mlflow: MlflowParams = MlflowParams()
    gate: GateParams = GateParams()
    monitor: MonitorParams = MonitorParams()
    models: dict[str, ModelParams]

    @field_validator("models")
    @classmethod
    def _model_names(cls, value: dict[str, ModelParams]) -> dict[str, ModelParams]:
        if not value:
            raise ValueError("at least one model is needed")
        for name in value:
            if not MODEL_NAME.match(name):
                raise ValueError(f"model name {name!r} must match {MODEL_NAME.pattern}")
        return value

    def model(self, name: str) -> ModelParams:
        """The params of one model, or a clear error naming the known ones."""
        if name not in self.models:
            known = ", ".join(sorted(self.models))
            raise ParamsError(f"{PARAMS_FILE}: no model {name!r} under 'models' (known: {known})")
        return self.models[name]


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def parse_params(raw: Any, source: str = PARAMS_FILE) -> Params:
    """Validate a parsed params mapping, including each estimator's hyper-parameters."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        problems = [f"  {_where(err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ParamsError(f"{source}: invalid params\n" + "\n".join(problems)) from None
    _check_all_hyperparams(params, source)
    return params


# Where a passed hyper-parameter check is remembered. Importing scikit-learn to ask it costs about
# 1.5 s per process; every DVC stage is a process, and most stages never touch a model.
VERDICTS = Path(".dvc/tmp/modelops-params-ok")


def _check_all_hyperparams(params: Params, source: str) -> None:
    """Check every model's hyper-parameters once per (models section, scikit-learn version)."""
    from importlib.metadata import version

    models = {name: m.model_dump() for name, m in params.models.items()}
    blob = json.dumps([models, version("scikit-learn")], sort_keys=True, default=str)
    marker = VERDICTS / hashlib.sha256(blob.encode()).hexdigest()
    if marker.exists():
        return
    for name, model in params.models.items():
        check_hyperparams(name, model, source)
    if VERDICTS.parent.is_dir():  # only inside a DVC repository; never create .dvc/ elsewhere
        VERDICTS.mkdir(exist_ok=True)
        marker.touch()


def check_hyperparams(name: str, model: ModelParams, source: str = PARAMS_FILE) -> None:
    """Ask scikit-learn itself whether the hyper-parameters exist and are valid."""
    from sklearn.utils._param_validation import InvalidParameterError

    from modelops.pipeline.train import estimator_class, make_estimator

    key = f"models.{name}.hyperparams"
    valid = estimator_class(model.estimator)().get_params(deep=False)
    for hp in model.hyperparams:
        if hp not in valid:
            raise ParamsError(
                f"{source}: {key}.{hp}: unknown hyper-parameter for {model.estimator} "
                f"(valid: {', '.join(sorted(valid))})"
            )
    try:
        make_estimator(model)._validate_params()
    except InvalidParameterError as exc:
        raise ParamsError(f"{source}: {key}: {exc}") from None


@cache
def _load_cached(path: str, text: str) -> Params:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    return parse_params(raw, path)


def load_params(path: str | os.PathLike[str] = PARAMS_FILE) -> Params:
    """Load and validate params.yaml (cached per file content)."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ParamsError(f"{p}: not found (run from the repository root)") from None
    # Keyed by content, not mtime: a relative path names another file after a chdir, and a
    # rewrite within one timestamp tick (or a copy that keeps mtimes) must not return stale params.
    return _load_cached(str(p), text)
