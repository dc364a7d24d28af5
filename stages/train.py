"""train: one model of the registry, as its params section train_<model> says.

dvc.yaml's ``train`` stage runs this once per model (``--name NAME``) on the processed splits
of the model's data set; ``backend`` picks the code that trains it (nnpipe.training). Its
curves go through DVCLive (``--curves DIR``: ``plots/metrics/<figure>.tsv`` per figure, step =
epoch, every ``log_every`` epochs and the kept one; ``metrics.json``: the last logged figures
and ``kept``, the kept epoch's), with no timestamp and no dvc.yaml of its own, logged into a
temp directory and swapped in whole when training succeeds.
"""
from __future__ import annotations

import contextlib
import logging
import tempfile

from nnpipe import models, preprocess, training
from nnpipe.core import files

PARAMS = ("train_{name}", "seed")
LOG = "train_{name}"


def add_arguments(parser) -> None:
    parser.add_argument("--name", required=True, help="the model's name: models/NAME, "
                        "params section train_NAME")
    parser.add_argument("--train", required=True, help="processed train split (.npz)")
    parser.add_argument("--val", required=True, help="processed val split (.npz)")
    parser.add_argument("--state", required=True, help="the splits' preprocessing state (JSON)")
    parser.add_argument("--model-dir", required=True, help="output model directory")
    parser.add_argument("--curves", required=True, help="output directory of DVCLive's curves")


def run(args, p) -> str:
    hp = p[f"train_{args.name}"]
    state = preprocess.load(args.state)
    data = training.load_train_data(args.train, args.val, state)
    fitted = training.fit(args.name, hp, state, data, p.seed)
    models.save(args.model_dir, fitted.spec, fitted.weights, state)
    kept = fitted.history.kept_row()
    with tempfile.TemporaryDirectory() as tmp:
        log_curves(tmp, fitted.history.logged(hp.log_every), kept)
        files.replace_dir(tmp, args.curves)
    return (f"hidden_dims {list(fitted.spec.hidden_dims)}, kept epoch {int(kept['epoch'])}, last "
            f"{int(fitted.history.rows[-1][0])} (val_loss {kept['val_loss']:.4f}, val_acc "
            f"{kept['val_acc']:.4f}) -> {args.model_dir}")


def log_curves(directory: str, rows: list[dict[str, float]], kept: dict[str, float]) -> None:
    """Log ``rows`` with DVCLive into ``directory``, step = epoch; ``kept`` in its summary."""
    from dvclive import Live

    logging.getLogger("dvclive").setLevel(logging.WARNING)  # its "Logging to experiment" line
    # From the (temporary) directory, outside the repository: DVCLive then finds no git or DVC
    # repository to inspect (one with no commit yet would fail it, a git one without DVC it
    # would `dvc init`) and writes its files only.
    with contextlib.chdir(directory), \
            Live(dir=".", save_dvc_exp=False, dvcyaml=False, report=None) as live:
        for row in rows:
            live.step = int(row["epoch"])
            for name in models.CURVES:
                live.log_metric(name, row[name], timestamp=False)
            live.next_step()
        live.summary["kept"] = kept

