import os
import sys
from pathlib import Path

import pytest

# tests/ helpers (deps.py) importable as plain modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import env_util  # noqa: E402,F401  (records the caller's environment before pinning)

# Portable math, as params.yaml's default: before any test module loads numpy or torch, so
# stages called in-process compute with the same kernels as the stage commands.
from nnpipe.core import portable  # noqa: E402

portable.pin(True)

import emulation  # noqa: E402
from warm_util import stop_servers  # noqa: E402


def pytest_collection_finish(session):
    """The emulated-CPU runs take minutes: start them now if a selected test needs them."""
    if any(item.get_closest_marker("emulated") for item in session.items):
        emulation.start()


def pytest_sessionfinish(session, exitstatus):
    emulation.stop()


@pytest.fixture(scope="session", autouse=True)
def warm_servers(tmp_path_factory):
    """Stage commands the tests run use this session's own warm servers, stopped at the end."""
    warm_dir = tmp_path_factory.mktemp("warm")
    os.environ["NNPIPE_WARM_DIR"] = str(warm_dir)
    os.environ["NNPIPE_WARM_IDLE"] = "300"
    yield warm_dir
    stop_servers(warm_dir)
