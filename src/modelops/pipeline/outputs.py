"""Where each model's stage outputs live, and nothing else.

Verbs that only read these files (promote, report, summary, batch, monitor) import this module, not
the stages that write them: those import scikit-learn, and with it scipy.stats, about 2 s of CPU in
every short-lived process that needs only a path.
"""

from __future__ import annotations

import re
from pathlib import Path

# The content hash a model card states (package.render_card writes it, batch --local reads it).
CARD_HASH = re.compile(r"\*\*Model content hash\*\* \(sha256 of `model/`\): `(?P<hash>[0-9a-f]{64})`")


def model_dir(name: str) -> Path:
    """Where everything a model produces lives."""
    return Path("models") / name


def pipeline_file(name: str) -> Path:
    """The trained pipeline, as the train stage leaves it for evaluate and package."""
    return model_dir(name) / "pipeline.pkl"


def metrics_file(name: str) -> Path:
    """Deterministic quality metrics of a model."""
    return model_dir(name) / "metrics.json"


def latency_file(name: str) -> Path:
    """Predict latency of a packaged model: varies between runs, so git-ignored, not a DVC output."""
    return model_dir(name) / "latency.json"


def plots_dir(name: str) -> Path:
    """DVC plot data and PNGs of a model."""
    return model_dir(name) / "plots"


def package_dir(name: str) -> Path:
    """The MLflow model directory: what gets published and served."""
    return model_dir(name) / "model"


def card_file(name: str) -> Path:
    """The generated model card, beside (not inside) the hashed model directory."""
    return model_dir(name) / "MODEL_CARD.md"


def card_hash(card: str) -> str | None:
    """The content hash a model card (package.render_card's text) states, or None."""
    found = CARD_HASH.search(card)
    return found["hash"] if found else None
