"""The warm start behind ``python -m stages``: a launcher (launcher.py) and the server it forks stages from (server.py).

Orchestration, not the lesson: nothing in ``nnpipe`` imports this package."""
