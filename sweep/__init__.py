"""``python -m sweep``: a grid of DVC experiments fanned out as Ray tasks.

    python -m sweep -S 'train_torch_mlp.lr=0.001,0.01' [-S ...] [--jobs N]
        [--address ADDR] [--git-remote REMOTE] [--dvc-remote NAME] [--metric MODEL.SPLIT.NAME]

``-S`` takes DVC's own override syntax; comma lists make a grid, expanded by the same code as
``dvc exp run --queue -S``. Each trial is one Ray task (trial.py) that clones the git remote
at this commit, runs ``dvc exp run --pull --allow-missing -n NAME -S ...`` and pushes the
experiment's outputs to the DVC remote, then its ref to the git remote; the driver (driver.py)
then pulls every trial with ``dvc exp pull`` and prints a leaderboard. A trial is done when its
ref is on the git remote and all its outputs are on the DVC remote: a re-run skips those and
runs the others again. Before any trial runs, the driver checks both remotes (remotes.py) and
the Ray address (cluster.py). Without ``--address`` (or RAY_ADDRESS) a local Ray with
``--jobs`` CPUs is started and stopped; with it, the sweep joins that cluster.

Exit 0 when every trial succeeded, 1 when one failed, 2 (one line) when the sweep cannot
start, 130 on Ctrl-C. Ray is imported by this package only, never by a stage.
"""
