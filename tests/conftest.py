import os
import shutil
import signal
import sys
import tempfile
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

# Ctrl-C tests send SIGINT to the processes they start: a suite started where SIGINT is
# ignored (a background job of a non-interactive shell) would pass that on to every child.
signal.signal(signal.SIGINT, signal.default_int_handler)

import emulation  # noqa: E402
from warm_util import stop_servers  # noqa: E402


def pytest_collection_finish(session):
    """The emulated-CPU runs take minutes: start them now if a selected test needs them, so
    they overlap the rest of the suite. Under pytest-xdist every worker collects every test,
    so there the worker that runs tests/test_portable.py starts them when it needs them (the
    other workers keep the cores busy meanwhile)."""
    if "PYTEST_XDIST_WORKER" in os.environ:
        return
    if any(item.get_closest_marker("emulated") for item in session.items):
        emulation.start()


# The files that take longest (`--durations`; tests/test_portable.py waits for the emulated-CPU
# runs; tests/test_stages.py and tests/test_reliability.py are the longest of the quick loop)
# start first, so the short files fill the workers' time at the end instead of one worker
# finishing a long file alone.
LONGEST_FIRST = ("test_experiments.py", "test_portable.py", "test_stages.py", "test_reliability.py",
                 "test_e2e.py", "test_sweep.py", "test_own_data.py", "test_warm_contract.py",
                 "test_recovery.py", "test_warm.py")


def pytest_collection_modifyitems(session, config, items):
    def rank(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each file's tests keep their order


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


@pytest.fixture
def own_dir():
    """A warm directory of the test's own (not made yet), at a short path: a socket path over
    100 bytes runs every stage cold (warmstart.key), and tmp_path's can be longer."""
    parent = tempfile.mkdtemp(prefix="nnw", dir="/tmp")
    warm_dir = Path(parent) / "w"
    yield warm_dir
    stop_servers(warm_dir)
    shutil.rmtree(parent, ignore_errors=True)
