"""One small module per DVC stage, run by ``python -m stages <stage> ...`` (the runner,
stages/__main__.py; see dvc.yaml)."""
