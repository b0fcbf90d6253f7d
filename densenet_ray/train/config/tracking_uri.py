"""MLflow's tracking URI as a run keeps it: only when ``--log`` names MLflow, and never with its password.

A URI's password (``postgresql://user:PASSWORD@host/db``, ``https://user:PASSWORD@mlflow``, or a query parameter
named like one, ``?password=...``) is stored as ``***``: ``config.yaml``, the checkpoints, Ray's loop configuration
and the trackers' parameters hold the URI without it. The password reaches MLflow only through the environment, at
the moment rank 0 connects: :func:`connection_uri` takes ``$MLFLOW_TRACKING_URI`` when that is the stored URI with
its password. A ``--tracking-uri`` given with a password is put into this process's environment for that
(:func:`tracking_options`), so a Ray instance this process starts passes it on to its workers; the workers of a
running cluster need ``MLFLOW_TRACKING_URI`` in their own environment, as they need their other credentials.
"""

from __future__ import annotations

import importlib.util
import os
import re
from typing import TYPE_CHECKING, TypedDict
from urllib.parse import unquote, urlsplit, urlunsplit

from densenet_ray.errors import UserError
from densenet_ray.paths import absolute_location
from densenet_ray.train.config.values import trackers

if TYPE_CHECKING:
    from densenet_ray.train.config.options import TrainConfig

ENVIRONMENT = "MLFLOW_TRACKING_URI"
MASK = "***"
# A URL's userinfo password as HTTP clients read it: the authority ends at the first / ? #, its host after its last @.
URL_PASSWORD = re.compile(r"^([A-Za-z][\w+.-]*://[^:/?#@]*:)([^/?#]*)@(?=[^/?#@]*(?:[/?#]|$))")
# A database URL's as SQLAlchemy reads it (its password may hold a raw "/", ending at the first @).
DATABASE_PASSWORD = re.compile(r"^((?:postgres(?:ql)?|mysql|mariadb|mssql|oracle)(?:\+\w+)?://[^:/@]*:)([^@]*)@")
QUERY_SECRET = re.compile(
    r"([?&;][^=&#]*(?:password|passwd|secret|token|credential|api[-_]?key|access[-_]?key)[^=&#]*=)([^&#]*)",
    re.IGNORECASE,
)
MASKED = ((DATABASE_PASSWORD, rf"\1{MASK}@"), (URL_PASSWORD, rf"\1{MASK}@"), (QUERY_SECRET, rf"\1{MASK}"))


def without_password(uri: str) -> str:
    """``uri`` with its userinfo password and the values of password-like query parameters replaced by ``***``;
    a URI without them is returned as it is (so the result of this is its own result)."""
    for pattern, masked in MASKED:
        uri = pattern.sub(masked, uri)
    return uri


class TrackingOptions(TypedDict):
    """The two options :func:`tracking_options` fills in."""

    log: str
    tracking_uri: str


def tracking_options(options: TrainConfig, root: str) -> TrackingOptions:
    """``log`` and ``tracking_uri`` of a resolved config: the tracking services, each checked to be installed, and,
    only when MLflow is one, its tracking URI without its password: ``--tracking-uri``, else
    ``$MLFLOW_TRACKING_URI``, else a SQLite database in a local storage ``root`` (MLflow 3 keeps its plain-file
    store in maintenance mode, refusing it unless ``MLFLOW_ALLOW_FILE_STORE`` is set, and recommends a database)."""
    services = trackers(options.log)
    for service in services:
        if importlib.util.find_spec(service) is None:
            raise UserError(f"--log {service} needs the {service} package: pip install 'densenet-ray[{service}]'")
    log = ",".join(services)
    if "mlflow" not in services:
        return {"log": log, "tracking_uri": ""}
    given = options.tracking_uri or ""
    uri = given or os.environ.get(ENVIRONMENT, "")
    if not uri:
        if "://" in root:
            raise UserError(
                f"--log mlflow with --storage {root} needs --tracking-uri (an MLflow server or database) or "
                f"{ENVIRONMENT}; a local database is made only for local storage"
            )
        uri = f"sqlite:///{os.path.join(root, 'mlflow.db')}"
    elif ":" not in uri:  # a plain path: absolute, since workers run elsewhere
        uri = absolute_location(uri)
    stored = without_password(uri)
    if given and stored != given:  # the password goes on in the environment only (a Ray instance started here)
        os.environ[ENVIRONMENT] = given
    return {"log": log, "tracking_uri": stored}


def connection_uri(stored: str) -> str:
    """The URI MLflow connects with on rank 0: ``$MLFLOW_TRACKING_URI`` when it is ``stored`` with its password,
    else ``stored``. A stored URI whose password was removed and an environment without it are one line. An HTTP
    server's user and password go to MLflow's own ``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD`` in
    this process's environment instead of the URI, which MLflow prints in its run links and errors."""
    real = os.environ.get(ENVIRONMENT, "")
    if real and without_password(real) == stored:
        return _credentials_apart(real)
    if any(pattern.search(stored) for pattern, _ in MASKED):  # stored without its password: it held one
        raise UserError(
            f"the MLflow tracking URI {stored} needs its password, which a run never stores: set {ENVIRONMENT} "
            "to the whole URI in the environment of the Ray workers"
        )
    return stored


def _credentials_apart(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or parts.password is None:
        return uri  # a database's driver reads them from the URI (and leaves them out of its messages)
    os.environ["MLFLOW_TRACKING_USERNAME"] = unquote(parts.username or "")
    os.environ["MLFLOW_TRACKING_PASSWORD"] = unquote(parts.password)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
