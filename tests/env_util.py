"""The environment the test session was started with, before conftest pinned the math kernels.

pytest-xdist's workers inherit the pinned environment of the process that started them, so the
first process records the caller's environment in a variable its workers read back.
"""
from __future__ import annotations

import json
import os

_SAVED = "NNPIPE_TESTS_CALLER_ENV"
if _SAVED in os.environ:
    CALLER_ENV: dict[str, str] = json.loads(os.environ[_SAVED])
else:  # conftest imports this module before pinning
    CALLER_ENV = dict(os.environ)
    os.environ[_SAVED] = json.dumps(CALLER_ENV)
