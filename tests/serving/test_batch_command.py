"""`modelops batch MODEL (--env ENV | --local)`: the model chosen as online serving chooses it, then
the engine in process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from modelops.delivery.signing import Signer
from modelops.pipeline.outputs import CARD_HASH
from tests.conftest import ROOT, VENV_BIN, project_files, run
from tests.gitops.test_manifests import promote_text
from tests.serving.batch_inputs import expected, read, rows, write
from tests.serving.conftest import Packaged

MODEL = "credit-hgb"  # a model with manifests in gitops/ and an entry in params.yaml


def modelops(cwd: Path, *args: str):
    return run([str(VENV_BIN / "modelops"), *args], cwd, check=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """params.yaml, the declarations and gitops/, as in a clone."""
    root = tmp_path / "project"
    project_files(root)
    shutil.copytree(ROOT / "gitops", root / "gitops")
    return root


def test_env_scores_with_what_the_env_serves(packaged: Packaged, project: Path, tmp_path: Path) -> None:
    store = tmp_path / "store" / MODEL / packaged.content_hash
    shutil.copytree(packaged.path, store)
    uri = store.as_uri() + "/"
    overlay = project / "gitops" / "envs" / "staging" / f"{MODEL}.yaml"
    overlay.write_text(promote_text(overlay.read_text(), uri=uri, digest=packaged.content_hash, version="v9"))
    frame = rows(500)
    source = write(frame, tmp_path / "in.csv")
    # staging requires signed models (the session's key stands in for the keyless policy here)
    proc = modelops(
        project, "batch", MODEL, "--env", "staging", "--input", str(source), "--output", "out.parquet"
    )
    assert proc.returncode == 4 and f"model {uri} REFUSED: unsigned" in proc.stderr, proc.stderr
    assert not (project / "out.parquet").exists()
    Signer.from_env().sign(store, store.with_name(store.name + ".sig"))
    proc = modelops(
        project, "batch", MODEL, "--env", "staging", "--input", str(source), "--output", "out.parquet"
    )
    assert proc.returncode == 0, proc.stderr
    assert f"500 rows of {source} scored by {MODEL} v9 ({packaged.content_hash[:12]}, " in proc.stdout
    assert "from gitops/envs/staging (main predictor)" in proc.stdout
    assert "signature: verified before loading (signatures made with the private key of" in proc.stdout
    out = read(project / "out.parquet")
    assert set(out["model_version"]) == {"v9"} and set(out["content_hash"]) == {packaged.content_hash}
    np.testing.assert_allclose(out[["p_good", "p_bad"]].to_numpy(), expected(packaged, frame), rtol=1e-9)
    manifest = json.loads((project / "out.parquet.success.json").read_text())
    assert manifest["model"]["uri"] == uri and manifest["model"]["version"] == "v9"

    # the production overlay is still unpromoted: nothing to score with
    proc = modelops(
        project, "batch", MODEL, "--env", "production", "--input", str(source), "--output", "x.csv"
    )
    assert proc.returncode == 4 and f"{MODEL} is not promoted yet" in proc.stderr
    proc = modelops(project, "batch", "nope", "--env", "staging", "--input", str(source), "--output", "x.csv")
    assert proc.returncode == 4 and "no SeldonDeployment 'nope'" in proc.stderr


def test_a_served_copy_that_differs_from_the_manifest_is_refused(
    packaged: Packaged, project: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store" / MODEL / packaged.content_hash
    shutil.copytree(packaged.path, store)
    (store / "reference.json").write_text("{}")  # the stored copy changed after promotion
    overlay = project / "gitops" / "envs" / "staging" / f"{MODEL}.yaml"
    overlay.write_text(
        promote_text(overlay.read_text(), uri=store.as_uri() + "/", digest=packaged.content_hash)
    )
    source = write(rows(10), tmp_path / "in.csv")
    proc = modelops(project, "batch", MODEL, "--env", "staging", "--input", str(source), "--output", "o.csv")
    assert proc.returncode == 4 and "content hash mismatch" in proc.stderr
    assert not (project / "o.csv").exists()


def local_model(packaged: Packaged, project: Path, stated: str) -> None:
    """models/MODEL/model and a card stating `stated` as its hash, as the package stage leaves them."""
    shutil.copytree(packaged.path, project / "models" / MODEL / "model")
    card = f"# Model card: {MODEL}\n\n- **Model content hash** (sha256 of `model/`): `{stated}`\n"
    (project / "models" / MODEL / "MODEL_CARD.md").write_text(card)


def test_local_scores_with_the_work_trees_model(packaged: Packaged, project: Path, tmp_path: Path) -> None:
    local_model(packaged, project, packaged.content_hash)
    frame = rows(300)
    frame.loc[5, "home"] = "castle"
    source = write(frame, tmp_path / "in.parquet")
    args = [
        "--input",
        str(source),
        "--output",
        "s/{date}.csv",
        "--on-bad",
        "reject",
        "--metrics-file",
        "b.prom",
    ]
    proc = modelops(project, "batch", MODEL, "--local", *args)
    assert proc.returncode == 0, proc.stderr
    assert "299 rows of" in proc.stdout and "rejects: 1 rows in s/" in proc.stdout
    (scores,) = (p for p in (project / "s").glob("*.csv") if not p.name.endswith(".rejects.csv"))
    assert (project / "s" / scores.name.replace(".csv", ".rejects.csv")).exists()
    assert set(read(scores)["model_version"]) == {"local"}
    assert (project / "b.prom").read_text().count("modelops_batch_rows{") == 1


def test_local_refuses_a_model_its_card_does_not_describe(
    packaged: Packaged, project: Path, tmp_path: Path
) -> None:
    local_model(packaged, project, "f" * 64)
    source = write(rows(10), tmp_path / "in.csv")
    proc = modelops(project, "batch", MODEL, "--local", "--input", str(source), "--output", "o.csv")
    assert proc.returncode == 4
    assert (
        f"hashes to {packaged.content_hash}, but models/{MODEL}/MODEL_CARD.md states {'f' * 64}"
        in proc.stderr
    )
    proc = modelops(project, "batch", "ghost", "--local", "--input", str(source), "--output", "o.csv")
    assert proc.returncode == 2 and "ghost" in proc.stderr  # not a model of params.yaml
    proc = modelops(project, "batch", MODEL, "--input", str(source), "--output", "o.csv")
    assert proc.returncode == 2 and "--env ENV" in proc.stderr and "--local" in proc.stderr
    proc = modelops(
        project, "batch", MODEL, "--local", "--input", str(source), "--output", "o.csv", "--shards", "2"
    )
    assert proc.returncode == 2 and "JOB_COMPLETION_INDEX" in proc.stderr


def test_the_card_pattern_matches_the_package_stages_cards() -> None:
    cards = sorted(ROOT.glob("models/*/MODEL_CARD.md"))
    assert cards
    for card in cards:
        assert CARD_HASH.search(card.read_text()), card
