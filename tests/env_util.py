"""The environment the test session was started with, before conftest pinned the math kernels."""
from __future__ import annotations

import os

CALLER_ENV: dict[str, str] = dict(os.environ)  # conftest imports this module before pinning
