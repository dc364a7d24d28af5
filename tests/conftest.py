import os
import sys
from pathlib import Path

import pytest

# tests/ helpers (deps.py) importable as plain modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from warm_util import stop_servers  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def warm_servers(tmp_path_factory):
    """Stage commands the tests run use this session's own warm servers, stopped at the end."""
    warm_dir = tmp_path_factory.mktemp("warm")
    os.environ["NNPIPE_WARM_DIR"] = str(warm_dir)
    os.environ["NNPIPE_WARM_IDLE"] = "300"
    yield warm_dir
    stop_servers(warm_dir)
