"""The warm start behind ``python -m stages``: the launcher (launcher.py), the server it forks stages from (server.py), and what they share (protocol.py).

Orchestration, not the lesson: nothing in ``nnpipe`` imports this package (docs/warm-start.md)."""
