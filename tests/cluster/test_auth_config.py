"""The cluster configs run Ray with token auth, and what they copy to the nodes leaves secrets behind: cluster.yaml
read as the launcher reads it (its start commands, file mounts and rsync filters through Ray's own rsync arguments),
the KubeRay manifests read as the operator reads them. No cloud and no cluster; in-process, plus rsync where it is
installed (`ray up` copies with it)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = yaml.safe_load((ROOT / "cluster.yaml").read_text())
KUBERAY = {
    name: yaml.safe_load((ROOT / "cluster" / "kuberay" / name).read_text())
    for name in ("raycluster.yaml", "rayjob.yaml")
}
POLICY = yaml.safe_load((ROOT / "cluster" / "kuberay" / "network-policy.yaml").read_text())
KEPT = ["pyproject.toml", "README.md", "densenet_ray/__init__.py", "densenet_ray/cli/train.py", "jobs/recipe.yaml"]
# Strays a checkout may hold, each of which must stay on this machine.
SECRETS = [
    ".env",
    ".env.production",
    "deploy.pem",
    "auth_token",
    "densenet_ray/auth_token",
    ".aws/credentials",
    "jobs/.ssh/id_ed25519",
    "service.key",
]
LEFT_OUT = [*SECRETS, ".git/config", ".venv/bin/python", "densenet_ray/__pycache__/train.cpython-311.pyc"]


def _ray_starts(commands: list[str]) -> list[tuple[dict[str, str], list[str]]]:
    """(environment, arguments) of every `ray start` in the shell ``commands``, as the shell runs them."""
    starts = []
    for command in commands:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True  # words split at blanks and at ; & |, as the shell splits them
        words = list(lexer)
        segments, current = [], []
        for word in words:
            if word in (";", "&&", "||", "|", "&"):
                segments.append(current)
                current = []
            else:
                current.append(word)
        for segment in [*segments, current]:
            env = {}
            while segment and "=" in segment[0] and segment[0].split("=", 1)[0].isidentifier():
                name, value = segment.pop(0).split("=", 1)
                env[name] = value
            if segment[:2] == ["ray", "start"]:
                starts.append((env, segment[2:]))
    return starts


def test_every_node_starts_ray_with_token_auth_and_the_token_where_ray_reads_it() -> None:
    from ray._private.authentication.authentication_token_setup import _get_default_token_path

    head = _ray_starts(CLUSTER["head_start_ray_commands"])
    workers = _ray_starts(CLUSTER["worker_start_ray_commands"])
    assert [("--head" in arguments) for _, arguments in head] == [True] and len(workers) == 1
    for env, arguments in head + workers:
        assert env.get("RAY_AUTH_MODE") == "token", arguments
        assert not {"RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"} & env.keys()  # so Ray reads its default file
    # The token goes to Ray's default path on every node, from the same path here (`ray get-auth-token --generate`).
    default = "~/" + _get_default_token_path().relative_to(Path.home()).as_posix()
    assert CLUSTER["file_mounts"][default] == default


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A checkout with the repository's ignore files, the package's files and every kind of stray secret."""
    root = tmp_path / "checkout"
    for name in (".gitignore", ".rayignore"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, root / name)
    for name in KEPT + LEFT_OUT:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"contents of {name}\n")
    return root


def _files(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync, which `ray up` copies files with, is not installed")
def test_ray_up_copies_the_checkout_without_secrets_and_the_token_and_ssh_key_whole(checkout, tmp_path) -> None:
    from ray.autoscaler._private.command_runner import SSHCommandRunner

    # Ray's own rsync arguments for this config (every file mount and `ray up`'s own files get them).
    options = {"rsync_exclude": CLUSTER.get("rsync_exclude"), "rsync_filter": CLUSTER.get("rsync_filter")}
    filters = SSHCommandRunner._create_rsync_filter_args(object.__new__(SSHCommandRunner), options)
    copy = tmp_path / "node"
    (source,) = [local for remote, local in CLUSTER["file_mounts"].items() if local == "."]
    assert source == "."
    subprocess.run(["rsync", "-a", *filters, f"{checkout}/", f"{copy}/"], check=True)
    assert _files(copy) == {*KEPT, ".gitignore", ".rayignore"}
    # Single files `ray up` copies: the token and the head's SSH key keep names a pattern like `*.pem` would hit.
    home = tmp_path / "home"
    for name in (".ray/auth_token", ".ssh/ray-autoscaler_us-west-2.pem"):
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_text("secret\n")
        subprocess.run(["rsync", "-a", *filters, str(home / name), str(tmp_path / Path(name).name)], check=True)
        assert (tmp_path / Path(name).name).read_text() == "secret\n", name


def test_a_job_upload_leaves_the_same_secrets_behind(checkout) -> None:
    from ray._private.runtime_env.packaging import _dir_travel

    uploaded: list[str] = []
    # What `ray job submit --working-dir .` zips: Ray's walk over the directory with .gitignore and .rayignore.
    _dir_travel(checkout, [], lambda path: uploaded.append(path.relative_to(checkout).as_posix()), True)
    assert set(uploaded) & set(LEFT_OUT) == set() and set(KEPT) <= set(uploaded)


def test_no_file_the_package_installs_from_is_left_out() -> None:
    from ray._private.runtime_env.packaging import _get_ignore_file

    ignored = _get_ignore_file(ROOT, ".rayignore")
    needed = [
        ROOT / "pyproject.toml",
        ROOT / "README.md",
        *(ROOT / "densenet_ray").rglob("*.py"),
        *(ROOT / "jobs").iterdir(),
    ]
    assert len(needed) > 50 and not [path for path in needed if ignored(path)]


def _ray_containers(manifest: dict) -> list[dict]:
    spec = manifest["spec"].get("rayClusterSpec", manifest["spec"])
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [container for group in groups for container in group["template"]["spec"]["containers"]]


@pytest.mark.parametrize("name", sorted(KUBERAY))
def test_kuberay_runs_ray_with_the_token_from_the_secret(name: str) -> None:
    manifest = KUBERAY[name]
    spec = manifest["spec"].get("rayClusterSpec", manifest["spec"])
    version = tuple(int(part) for part in spec["rayVersion"].split("."))
    assert spec["authOptions"]["mode"] == "token" and version >= (2, 52)  # the operator's minimum for token auth
    secret = spec["authOptions"]["secretName"]
    for container in _ray_containers(manifest):
        env = {variable["name"]: variable for variable in container["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token", container["name"]
        # The Secret's key KubeRay reads (auth_token), in the variable Ray reads.
        assert env["RAY_AUTH_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": secret, "key": "auth_token"}}


@pytest.mark.parametrize("name", sorted(KUBERAY))
def test_kuberay_keeps_the_dashboard_on_loopback_or_behind_the_network_policy(name: str) -> None:
    spec = KUBERAY[name]["spec"].get("rayClusterSpec", KUBERAY[name]["spec"])
    selected = POLICY["spec"]["podSelector"]["matchLabels"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    assert all(group["template"]["metadata"]["labels"].items() >= selected.items() for group in groups)
    host = spec["headGroupSpec"]["rayStartParams"].get("dashboard-host", "0.0.0.0")  # KubeRay's default
    assert host == "127.0.0.1" or name == "rayjob.yaml"  # the RayJob's operator and submitter call it over the network


def test_the_network_policy_admits_only_the_ray_pods_and_the_operator_and_submitter_to_the_dashboard() -> None:
    spec = POLICY["spec"]
    assert POLICY["kind"] == "NetworkPolicy" and spec["policyTypes"] == ["Ingress"]
    own, dashboard = spec["ingress"]
    assert own == {"from": [{"podSelector": {"matchLabels": spec["podSelector"]["matchLabels"]}}]}
    assert dashboard["ports"] == [{"port": 8265, "protocol": "TCP"}]
    assert all(source.get("podSelector", {}).get("matchLabels") for source in dashboard["from"])  # no open "from"
    submitter = {"batch.kubernetes.io/job-name": KUBERAY["rayjob.yaml"]["metadata"]["name"]}
    assert {"podSelector": {"matchLabels": submitter}} in dashboard["from"]
