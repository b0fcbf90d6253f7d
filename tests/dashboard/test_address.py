"""The dashboard's cluster lookup child (``python -m densenet_ray.dashboard.address``): what the user can act on comes
back as one line, a Python error in the child comes back as a bug with its file and line. Real child processes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from densenet_ray.dashboard.address import answer_of, main
from densenet_ray.dashboard.client import ClusterError


def _child(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)


BROKEN_LOOKUP = """
import sys
import densenet_ray.dashboard.address as lookup
def broken(address):
    return {}["gcs"]
lookup._local_cluster = broken
sys.exit(lookup.main([""]))
"""


def test_a_python_error_in_the_child_is_a_bug_with_its_file_and_line() -> None:
    done = _child(BROKEN_LOOKUP)
    answer = json.loads(done.stdout.splitlines()[-1])
    assert done.returncode == 1 and set(answer) == {"bug", "traceback"}
    assert answer["bug"] == "<string>:5: KeyError: 'gcs'" and "Traceback (most recent call last)" in answer["traceback"]
    with pytest.raises(RuntimeError, match=r"lookup failed: <string>:5: KeyError: 'gcs'") as raised:
        answer_of(done, None)
    assert not isinstance(raised.value, ClusterError) and 'File "<string>", line 5, in broken' in str(raised.value)


def test_a_child_that_dies_with_a_traceback_is_a_bug() -> None:
    done = _child("import densenet_ray.dashboard.address\nraise ImportError('no module named ray._raylet')")
    with pytest.raises(RuntimeError, match=r"died with a Python error:\n") as raised:
        answer_of(done, None)
    assert str(raised.value).endswith("ImportError: no module named ray._raylet")


def test_what_the_user_can_act_on_is_one_line(capsys) -> None:
    assert main(["host:port:port"]) == 0  # not an address Ray can parse: no Ray client, no cluster needed
    answer = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert answer == {
        "error": "--address host:port:port is not a Ray address; give HOST:PORT of the head's GCS, or the dashboard's "
        "URL, e.g. http://HEAD:8265"
    }
    done = _child("import sys; print('a C++ abort, no traceback', file=sys.stderr); sys.exit(134)")
    with pytest.raises(ClusterError, match=r"^cannot find the Ray dashboard for the local cluster: a C\+\+ abort"):
        answer_of(done, None)
