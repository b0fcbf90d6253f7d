"""No secret in any file: MLflow's tracking URI is stored only with ``--log mlflow`` and never with its password,
which reaches MLflow only through the environment on rank 0; and a whole run (the suite's ``modern_run``, whose
environment holds distinctive secrets) leaves none in its storage, its checkpoints, its private Ray instance's files
and logs, or its output."""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from densenet_ray.errors import UserError
from densenet_ray.train.config.options import TrainConfig
from densenet_ray.train.config.resolved import anchored, derive, resolve
from densenet_ray.train.config.tracking_uri import connection_uri, without_password

PASSWORD = "pw-5ecret-Zq81"
ENV_URI = f"postgresql://tracker:{PASSWORD}@db.example:5432/mlflow"
STORED = "postgresql://tracker:***@db.example:5432/mlflow"


@pytest.fixture(autouse=True)
def mlflow_environment(monkeypatch) -> None:
    """No MLflow variable of this process's, and whatever a test's code sets in the environment undone after it
    (a name set first is restored; one only deleted while absent would not be)."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def _everything_stored(config) -> str:
    """What a run stores of its config: config.yaml and every checkpoint's ``config`` (the document), Ray's
    ``train_loop_config`` and worker environment, MLflow's parameters and W&B's config (the flat options)."""
    from densenet_ray.train.launcher import _trainer

    trainer = _trainer(config, ())
    stored = [config.to_document(), trainer.train_loop_config, trainer.run_config.worker_runtime_env, config.flat()]
    return yaml.safe_dump(stored) + json.dumps(stored, default=str) + repr(config)


def test_the_environments_tracking_uri_is_stored_only_with_mlflow_and_without_its_password(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", ENV_URI)
    without = resolve(TrainConfig(storage=str(tmp_path), name="plain"), False)
    assert without.options.tracking_uri == "" and PASSWORD not in _everything_stored(without)
    config = resolve(TrainConfig(storage=str(tmp_path), name="tracked", log="mlflow"), False)
    assert config.options.tracking_uri == STORED
    assert PASSWORD not in _everything_stored(config)
    assert connection_uri(config.options.tracking_uri) == ENV_URI  # rank 0 connects with the password


def test_mlflow_gets_the_password_as_its_uri_and_never_as_a_parameter(tmp_path, monkeypatch) -> None:
    import ray.air.integrations.mlflow

    from densenet_ray.train.progress.tracking import _MLflow

    given_to_mlflow: dict = {}
    monkeypatch.setattr(ray.air.integrations.mlflow, "setup_mlflow", lambda *a, **kw: given_to_mlflow.update(kw, a=a))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", ENV_URI)
    _MLflow(resolve(TrainConfig(storage=str(tmp_path), name="r", log="mlflow"), False))
    assert given_to_mlflow["tracking_uri"] == ENV_URI
    assert PASSWORD not in repr({**given_to_mlflow, "tracking_uri": ""})  # the parameters, tags and names
    assert given_to_mlflow["a"][0]["tracking_uri"] == STORED


def test_a_password_in_tracking_uri_goes_on_only_in_the_environment_sweeps_included(tmp_path) -> None:
    options = TrainConfig(storage=str(tmp_path), log="mlflow", tracking_uri=ENV_URI)
    config = resolve(options, False)
    assert config.options.tracking_uri == STORED and PASSWORD not in _everything_stored(config)
    assert os.environ["MLFLOW_TRACKING_URI"] == options.tracking_uri  # what a Ray instance started here inherits
    base = anchored(options, config)  # a sweep's base options, saved in Tune's state
    assert PASSWORD not in repr(base)
    trial = derive(base, {"lr": 0.05}, str(tmp_path / "trials"), "train-1")
    assert trial.options.tracking_uri == config.options.tracking_uri and PASSWORD not in _everything_stored(trial)
    assert connection_uri(trial.options.tracking_uri) == options.tracking_uri


def test_an_http_servers_password_goes_to_mlflows_own_variables_not_its_uri(monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://me%40team:p%3Ass@mlflow.example:8443/root")
    # MLflow prints its URI in its "View run at" lines (a worker's log) and its errors: none with the password.
    assert connection_uri("https://me%40team:***@mlflow.example:8443/root") == "https://mlflow.example:8443/root"
    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == ("me@team", "p:ss")


def test_a_worker_without_the_password_is_one_line_naming_where_it_goes(monkeypatch) -> None:
    message = r"^the MLflow tracking URI postgresql://tracker:\*\*\*@db\.example:5432/mlflow needs its password, .*"
    with pytest.raises(UserError, match=message + "set MLFLOW_TRACKING_URI to the whole URI in the environment"):
        connection_uri(STORED)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://tracker:other@elsewhere/mlflow")
    with pytest.raises(UserError, match=message):
        connection_uri(STORED)
    assert connection_uri("sqlite:////runs/mlflow.db") == "sqlite:////runs/mlflow.db"  # no password: as stored


@pytest.mark.parametrize(
    ("uri", "stored"),
    [
        (f"postgresql+psycopg2://u:{PASSWORD}@h:5432/db", "postgresql+psycopg2://u:***@h:5432/db"),
        ("mysql://u:pa/ss@h/db", "mysql://u:***@h/db"),  # SQLAlchemy reads a raw / into the password
        ("https://u:p@ss:w@mlflow.example/x", "https://u:***@mlflow.example/x"),  # HTTP: the host after the last @
        ("redis://:p@h:1", "redis://:***@h:1"),
        (
            "postgresql://h/db?sslmode=require&password=p&user=u",
            "postgresql://h/db?sslmode=require&password=***&user=u",
        ),
        ("https://mlflow.example/?access_token=t", "https://mlflow.example/?access_token=***"),
        # Left as they are: no password.
        ("sqlite:////runs/mlflow.db", "sqlite:////runs/mlflow.db"),
        ("http://mlflow:5000/x?mail=a@b", "http://mlflow:5000/x?mail=a@b"),
        ("https://user@mlflow.example", "https://user@mlflow.example"),
        ("databricks://scope:prefix", "databricks://scope:prefix"),
        ("/runs/mlflow", "/runs/mlflow"),
    ],
)
def test_without_password_masks_userinfo_and_password_parameters_only(uri, stored) -> None:
    assert without_password(uri) == stored
    assert without_password(stored) == stored


SCHEMES = st.sampled_from(["postgresql", "mysql+pymysql", "https", "http", "mssql"])
NAMES = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=8)


@given(scheme=SCHEMES, user=NAMES, password=st.text(min_size=1, max_size=30), host=NAMES)
def test_any_password_of_a_well_formed_uri_is_masked(scheme, user, password, host) -> None:
    uri = f"{scheme}://{user}:{quote(password, safe='')}@{host}.example:5432/db?sslmode=require"
    assert without_password(uri) == f"{scheme}://{user}:***@{host}.example:5432/db?sslmode=require"


def _files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file() and not path.is_symlink()]


@pytest.mark.integration
@pytest.mark.slow
def test_a_run_leaves_no_secret_in_its_files_checkpoints_ray_logs_or_output(modern_run) -> None:
    storage, completed = modern_run["run"].parent, modern_run["completed"]
    files = _files(storage) + _files(modern_run["ray_tmpdir"])
    names = {path.name for path in files}
    # What the scan covers: the run's checkpoints, the MLflow database, W&B's offline run, Ray's session logs.
    assert {"state.pt", "config.yaml", "mlflow.db", "metrics.jsonl"} <= names
    assert any(path.suffix == ".wandb" for path in files)
    assert any(path.parent.name == "logs" and path.name.startswith("raylet") for path in files)
    for secret in modern_run["secrets"]:
        assert secret not in completed.stdout + completed.stderr
        leaked = [str(path) for path in files if secret.encode() in path.read_bytes()]
        assert not leaked, f"{secret[:12]}... is in {leaked}"
