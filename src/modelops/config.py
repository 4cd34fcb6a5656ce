"""params.yaml and the dataset declarations, loaded and validated in one place.

Every other module gets typed objects. Unknown keys, wrong types, out-of-range values and
inconsistencies between the two (a model on an undeclared dataset, an estimator that does not fit
its dataset's task, two datasets writing one file) fail here, before any work, with the file and
the dotted key path (``models.<model>.hyperparams.max_iter``) in the message.
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
from pydantic import (
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from modelops import stats, tasks
from modelops.declarations import (
    DECLARATION,
    Dataset,
    File,
    declaration_path,
    declared,
    parse_dataset,
    parse_text,
)
from modelops.errors import DeclarationError, ParamsError
from modelops.params_after import CanaryParams, MonitorParams, PolicyParams, Strict

PARAMS_FILE = "params.yaml"
MODEL_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
# The serving platforms an env can run on (docs/delivery.md#serving-platforms-seldon-or-kserve).
Platform = Literal["seldon", "kserve"]
PLATFORMS: tuple[str, ...] = ("seldon", "kserve")
DEFAULT_PLATFORM = "seldon"


class SplitParams(Strict):
    """Hash-based split: a row's side depends only on its id and the seed, so it never moves."""

    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    seed: int = Field(default=0, ge=0)


class DatasetParams(Strict):
    """How the pipeline treats one declared dataset (the contract itself is its declaration)."""

    split: SplitParams = SplitParams()


class EvaluateParams(Strict):
    """How much work evaluation does beyond the metrics themselves."""

    importance_rows: int = Field(default=5_000, ge=100)
    importance_repeats: int = Field(default=5, ge=1, le=50)
    latency_batch_rows: int = Field(default=1_000, ge=1)
    latency_repeats: int = Field(default=50, ge=1)


class GatePolicy(Strict):
    """Floors (ceilings for lower-is-better metrics), allowed regression against the champion, and
    what the champion comparison's bootstrap intervals decide.

    Every key left out (None) is inherited from the task's default; `significant_regression` is
    true at the task level unless params.yaml says otherwise.
    """

    minimum: dict[str, float] = Field(default_factory=dict)  # metric -> floor (rmse, log_loss: ceiling)
    max_regression: dict[str, float] = Field(default_factory=dict)  # metric -> allowed loss vs champion
    max_latency_ratio: float | None = Field(default=None, gt=0)  # candidate / champion predict time
    # A regression beyond max_regression fails only when its interval excludes 0 (not noise).
    significant_regression: bool | None = None
    # Metrics on which the candidate must be significantly better than the champion.
    require_improvement: list[str] | None = None

    @field_validator("minimum", "max_regression")
    @classmethod
    def _known_metrics(cls, value: dict[str, float]) -> dict[str, float]:
        for metric, bound in value.items():
            if metric not in tasks.ALL_METRICS:
                raise ValueError(f"unknown metric {metric!r} (known: {', '.join(tasks.ALL_METRICS)})")
            if bound < 0 and metric != "r2":
                raise ValueError(f"{metric}: must be >= 0, got {bound}")
        return value

    @field_validator("require_improvement")
    @classmethod
    def _known_metric_names(cls, value: list[str] | None) -> list[str] | None:
        for metric in value or []:
            if metric not in tasks.ALL_METRICS:
                raise ValueError(f"unknown metric {metric!r} (known: {', '.join(tasks.ALL_METRICS)})")
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"a metric is listed twice: {value}")
        return value

    @property
    def needs_significance(self) -> bool:
        """Whether a regression must be significant to fail (unset: yes, the task-level default)."""
        return self.significant_regression is not False

    def over(self, base: GatePolicy) -> GatePolicy:
        """This policy's keys on top of `base` (a model's overrides on its task's default).

        None inherits; an explicit `false` or `[]` overrides (so `or` would be wrong here).
        """
        return GatePolicy(
            minimum=base.minimum | self.minimum,
            max_regression=base.max_regression | self.max_regression,
            max_latency_ratio=self.max_latency_ratio or base.max_latency_ratio,
            significant_regression=base.significant_regression
            if self.significant_regression is None
            else self.significant_regression,
            require_improvement=base.require_improvement
            if self.require_improvement is None
            else self.require_improvement,
        )


class BootstrapParams(Strict):
    """The paired bootstrap behind every champion-vs-challenger interval (`modelops.stats`)."""

    rounds: int = Field(default=stats.ROUNDS, ge=100, le=100_000)  # resamples of the test rows
    seed: int = Field(default=stats.SEED, ge=0)  # the same seed and rows give the same report bytes
    level: float = Field(default=stats.LEVEL, ge=0.5, lt=1.0)  # 0.95: a 95% interval (not an alpha)


class GateParams(Strict):
    """The default gate of each task; a model's `gate:` overrides it key by key."""

    max_latency_ratio: float = Field(default=2.0, gt=0)
    bootstrap: BootstrapParams = BootstrapParams()
    binary: GatePolicy = GatePolicy()
    multiclass: GatePolicy = GatePolicy()
    regression: GatePolicy = GatePolicy()


class ModelParams(Strict):
    """One model: the dataset it learns, an estimator, its hyper-parameters, its seed."""

    dataset: str
    estimator: str
    hyperparams: dict[str, Any] = Field(default_factory=dict)
    seed: int = Field(default=0, ge=0)
    threads: int = Field(default=2, ge=1, le=64)
    gate: GatePolicy = GatePolicy()

    @field_validator("estimator")
    @classmethod
    def _known_estimator(cls, value: str) -> str:
        if value not in tasks.ESTIMATORS:
            raise ValueError(f"unknown estimator {value!r} (known: {', '.join(tasks.ESTIMATORS)})")
        return value

    @field_validator("hyperparams")
    @classmethod
    def _no_seed_in_hyperparams(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in ("random_state", "n_jobs"):
            if key in value:
                raise ValueError(f"set {key!r} through the model's 'seed'/'threads', not hyperparams")
        return value


class MlflowParams(Strict):
    """The experiment every pipeline run is logged to."""

    experiment: str = Field(default="modelops", min_length=1)


class Params(Strict):
    """The whole params.yaml, with the declaration of every dataset it lists."""

    datasets: dict[str, DatasetParams]
    evaluate: EvaluateParams = EvaluateParams()
    mlflow: MlflowParams = MlflowParams()
    gate: GateParams = GateParams()
    monitor: MonitorParams = MonitorParams()
    canary: CanaryParams = CanaryParams()
    policy: PolicyParams = PolicyParams()
    # env -> serving platform; an env not listed runs on DEFAULT_PLATFORM (Seldon Core v1).
    platforms: dict[str, Platform] = Field(default_factory=dict)
    models: dict[str, ModelParams]
    _declarations: dict[str, Dataset] = PrivateAttr(default_factory=dict)

    @field_validator("datasets", "models")
    @classmethod
    def _names(cls, value: dict[str, Any], info: Any) -> dict[str, Any]:
        what = info.field_name[:-1]
        if not value:
            raise ValueError(f"at least one {what} is needed")
        for name in value:
            if not MODEL_NAME.match(name):
                raise ValueError(f"{what} name {name!r} must match {MODEL_NAME.pattern}")
        return value

    def model(self, name: str) -> ModelParams:
        """The params of one model, or a clear error naming the known ones."""
        if name not in self.models:
            known = ", ".join(sorted(self.models))
            raise ParamsError(f"{PARAMS_FILE}: no model {name!r} under 'models' (known: {known})")
        return self.models[name]

    def platform(self, env: str) -> str:
        """The serving platform of an env: `platforms.<env>` of params.yaml, else seldon."""
        return self.platforms.get(env, DEFAULT_PLATFORM)

    def dataset(self, name: str) -> Dataset:
        """The declaration of a dataset listed under `datasets:`."""
        if name not in self._declarations:
            known = ", ".join(sorted(self.datasets))
            raise ParamsError(f"{PARAMS_FILE}: no dataset {name!r} under 'datasets' (known: {known})")
        return self._declarations[name]

    def dataset_of(self, model: str) -> Dataset:
        """The declaration of the dataset a model learns."""
        return self.dataset(self.model(model).dataset)

    def models_of(self, dataset: str) -> list[str]:
        """The models that learn a dataset, in params order."""
        return [m for m, p in self.models.items() if p.dataset == dataset]

    def split(self, dataset: str) -> SplitParams:
        """The split settings of a dataset."""
        return self.datasets[dataset].split

    def gate_policy(self, model: str) -> GatePolicy:
        """The gate a model must pass: its task's default with the model's overrides on top."""
        task = self.dataset_of(model).task
        top = GatePolicy(max_latency_ratio=self.gate.max_latency_ratio, significant_regression=True)
        base = getattr(self.gate, task).over(top)
        return self.model(model).gate.over(base)


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def parse_params(
    raw: Any, source: str = PARAMS_FILE, root: Path = Path(), declarations: dict[str, Any] | None = None
) -> Params:
    """Validate a parsed params mapping and the declarations it names, then their consistency.

    `declarations` (dataset -> parsed YAML) replaces reading data/<d>/dataset.yaml under `root`.
    """
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        problems = [f"  {_where(err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ParamsError(f"{source}: invalid params\n" + "\n".join(problems)) from None
    params._declarations.update(_declarations(params, root, declarations, source))
    _check_consistency(params, source, root)
    _check_all_hyperparams(params, source)
    return params


def _declarations(
    params: Params, root: Path, given: dict[str, Any] | None, source: str
) -> dict[str, Dataset]:
    out: dict[str, Dataset] = {}
    if given is None:
        for name in declared(root):
            if name not in params.datasets:
                raise DeclarationError(
                    f"{declaration_path(name, root)}: dataset {name!r} is declared but not listed under "
                    f"'datasets' in {source} (dvc.yaml expands its stages over that list)"
                )
    for name in params.datasets:
        path = declaration_path(name, root)
        if given is not None:
            if name not in given:
                raise DeclarationError(f"{path}: not found: dataset {name!r} has no declaration")
            out[name] = parse_dataset(name, given[name], str(path))
            continue
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise DeclarationError(
                f"{source}: datasets.{name}: no declaration at {path} "
                "(write one, or `modelops new dataset NAME --from CSV --target COLUMN`)"
            ) from None
        out[name] = parse_text(name, str(path), text)
    return out


def _check_header(ds: Dataset, root: Path) -> None:
    """A file source's header must hold the declared columns: cheap to read, so checked up front."""
    import csv

    if not isinstance(ds.source, File) or not (root / ds.source.path).is_file():
        return  # not checked out (a DVC-tracked file before `dvc pull`): ingest reports it
    with (root / ds.source.path).open(newline="", encoding="utf-8", errors="replace") as fh:
        header = next(csv.reader(fh), [])
    for key, col in (("id", ds.id), ("target", ds.target), *((f"features.{c}", c) for c in ds.features)):
        if col not in header:
            raise DeclarationError(
                f"{ds.declaration_file}: {key}: {col!r} is not a column of {ds.source.path} "
                f"(its columns: {', '.join(header)})"
            )


def _check_consistency(params: Params, source: str, root: Path = Path()) -> None:
    """What neither file can check alone."""
    writers: dict[str, str] = {}
    for name, ds in params._declarations.items():
        _check_header(ds, root)
        for path in (ds.raw_file, ds.suite_file, ds.validation_file, ds.prepared_dir):
            other = writers.setdefault(str(path), name)
            if other != name:
                raise DeclarationError(
                    f"{ds.declaration_file}: raw: datasets {other!r} and {name!r} both write {path}"
                )
    for name, model in params.models.items():
        key = f"{source}: models.{name}"
        if model.dataset not in params.datasets:
            known = ", ".join(sorted(params.datasets))
            raise ParamsError(f"{key}.dataset: unknown dataset {model.dataset!r} (known: {known})")
        task = params._declarations[model.dataset].task
        if tasks.family(task) not in tasks.ESTIMATORS[model.estimator]:
            raise ParamsError(
                f"{key}.estimator: {model.estimator!r} does not fit dataset {model.dataset!r}, a "
                f"{task} task (fitting: {', '.join(tasks.fitting(task))})"
            )
        for part in ("minimum", "max_regression", "require_improvement"):
            for metric in getattr(model.gate, part) or ():
                if metric not in tasks.METRICS[task]:
                    raise ParamsError(
                        f"{key}.gate.{part}.{metric}: not a {task} metric "
                        f"(known: {', '.join(tasks.METRICS[task])})"
                    )
    for task in tasks.TASKS:
        for part in ("minimum", "max_regression", "require_improvement"):
            for metric in getattr(getattr(params.gate, task), part) or ():
                if metric not in tasks.METRICS[task]:
                    raise ParamsError(
                        f"{source}: gate.{task}.{part}.{metric}: not a {task} metric "
                        f"(known: {', '.join(tasks.METRICS[task])})"
                    )


# A passed hyper-parameter check is remembered per machine user. Importing scikit-learn to ask it
# costs about 2 s per process; every DVC stage and CLI verb is a process, most never touch a model,
# and every CI job or test repository is a fresh checkout. The verdict depends only on the models
# section, the tasks, scikit-learn's version and this checking code, all in the key, not on the
# repository, so one checkout's verdict holds in every other.
CACHE_ENV = "MODELOPS_CACHE_DIR"


def cache_root() -> Path:
    """$MODELOPS_CACHE_DIR, else $XDG_CACHE_HOME/modelops (~/.cache/modelops): what one machine user
    may share between checkouts."""
    if root := os.environ.get(CACHE_ENV):
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modelops"


def verdicts_dir() -> Path:
    """cache_root()/params-ok/."""
    return cache_root() / "params-ok"


def _check_all_hyperparams(params: Params, source: str) -> None:
    """Check every model's hyper-parameters once per key (see verdicts_dir); a failure is never kept."""
    from importlib.metadata import version

    models = {name: [m.model_dump(), params.dataset_of(name).task] for name, m in params.models.items()}
    checker = hashlib.sha256(Path(__file__).read_bytes() + Path(tasks.__file__).read_bytes()).hexdigest()
    blob = json.dumps([models, version("scikit-learn"), checker], sort_keys=True, default=str)
    marker = verdicts_dir() / hashlib.sha256(blob.encode()).hexdigest()
    if marker.exists():
        return
    for name, model in params.models.items():
        check_hyperparams(name, model, params.dataset_of(name).task, source)
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:  # a read-only home: only a cache, the check simply runs again next time
        pass


def check_hyperparams(name: str, model: ModelParams, task: str, source: str = PARAMS_FILE) -> None:
    """Ask scikit-learn itself whether the hyper-parameters exist and are valid."""
    from sklearn.utils._param_validation import InvalidParameterError

    key = f"models.{name}.hyperparams"
    valid = tasks.estimator_class(model.estimator, task)().get_params(deep=False)
    for hp in model.hyperparams:
        if hp not in valid:
            raise ParamsError(
                f"{source}: {key}.{hp}: unknown hyper-parameter for {model.estimator} "
                f"(valid: {', '.join(sorted(valid))})"
            )
    try:
        tasks.make_estimator(
            model.estimator, task, model.hyperparams, model.seed, model.threads
        )._validate_params()
    except (InvalidParameterError, TypeError, ValueError) as exc:
        raise ParamsError(f"{source}: {key}: {exc}") from None


@cache
def _load_cached(path: str, text: str, root: str, declarations: tuple[tuple[str, str], ...]) -> Params:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    return parse_params(raw, path, Path(root))


def load_params(path: str | os.PathLike[str] = PARAMS_FILE) -> Params:
    """Load and validate params.yaml and the declarations beside it (cached per content)."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ParamsError(f"{p}: not found (run from the repository root)") from None
    root = p.parent
    # Keyed by content, not mtime: a relative path names another file after a chdir, and a
    # rewrite within one timestamp tick (or a copy that keeps mtimes) must not return stale params.
    decls = tuple((name, (root / "data" / name / DECLARATION).read_text()) for name in declared(root))
    return _load_cached(str(p), text, str(root), decls)


def env_platforms(path: str | os.PathLike[str] = PARAMS_FILE) -> dict[str, str]:
    """Only the `platforms:` section of params.yaml, validated the same way, for the manifest check
    (which runs on every commit and need not load the declarations): env -> platform."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ParamsError(f"{p}: {exc}") from None
    section = raw.get("platforms", {}) if isinstance(raw, dict) else {}
    try:
        return dict(_PLATFORMS.validate_python(section))
    except ValidationError as exc:
        problems = [f"  platforms.{_where(err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ParamsError(f"{p}: invalid params\n" + "\n".join(problems)) from None


_PLATFORMS = TypeAdapter(dict[str, Platform])
