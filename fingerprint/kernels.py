"""The kernels of the fingerprint: every input built from integers (the same everywhere), every
kernel at the shapes of the default pipeline (SHAPES), each hash stored under its own key."""
from __future__ import annotations

import hashlib
from typing import Any, Callable

from nnpipe.core import portable

SHAPES = (("spiral", 1050, 2, 100, 3), ("overfit", 105, 2, 302, 3))


def _exact(rng: Any, *shape: int, scale: float = 2 ** 18) -> Any:
    """float32 values k / 2**18 for integers |k| < 2**20: exact on every machine."""
    import numpy as np

    return (rng.integers(-2 ** 20, 2 ** 20, size=shape) / scale).astype(np.float32)


def digest(value: Any) -> str:
    """16 hex digits of the sha256 of an array's (or tensor's, or bytes') contents."""
    import numpy as np

    if isinstance(value, bytes):
        return hashlib.sha256(value).hexdigest()[:16]
    if hasattr(value, "detach"):
        value = value.detach().numpy()
    return hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()[:16]


def torch_kernels(out: dict[str, str]) -> None:
    """The torch ops of the training stages, per shape (keys as in the reference files)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    for tag, n, d, hid, c in SHAPES:
        t = lambda *shape: torch.from_numpy(_exact(rng, *shape))  # noqa: E731
        x, w1, b1, w2, b2 = t(n, d), t(hid, d), t(hid), t(c, hid), t(c)
        y = torch.from_numpy(rng.integers(0, c, size=n))
        weight = t(c).abs() + 0.5
        # each op on exact inputs of its own, so a difference points at that op alone
        a1, z2, z1 = torch.relu(t(n, hid)), t(n, c), t(n, hid)
        out[f"{tag}.linear1(addmm K={d})"] = digest(F.linear(x, w1, b1))
        out[f"{tag}.linear2(addmm K={hid})"] = digest(F.linear(a1, w2, b2))
        out[f"{tag}.mm(N,H)x(H,C)"] = digest(a1 @ w2.T)
        out[f"{tag}.relu"] = digest(torch.relu(z1))
        out[f"{tag}.log_softmax"] = digest(F.log_softmax(z2, dim=1))
        out[f"{tag}.exp"] = digest(torch.exp(z2))
        out[f"{tag}.log"] = digest(torch.log(z2.abs() + 1))
        out[f"{tag}.sum(dim0)"] = digest(z1.sum(0))
        out[f"{tag}.mean"] = digest(z1.mean())
        out[f"{tag}.cross_entropy(weighted)"] = digest(F.cross_entropy(z2, y, weight=weight))
        zg = z2.clone().requires_grad_(True)
        F.cross_entropy(zg, y, weight=weight).backward()
        out[f"{tag}.cross_entropy.backward"] = digest(zg.grad)
        rg = z1.clone().requires_grad_(True)
        torch.relu(rg).backward(t(n, hid))
        out[f"{tag}.relu.backward"] = digest(rg.grad)
        # backward through the same two layers, as autograd does it
        p = [v.clone().requires_grad_(True) for v in (w1, b1, w2, b2)]
        F.cross_entropy(F.linear(torch.relu(F.linear(x, p[0], p[1])), p[2], p[3]), y,
                        weight=weight).backward()
        for name, v in zip(("dW1", "db1", "dW2", "db2"), p):
            out[f"{tag}.grad.{name}"] = digest(v.grad)
        dz = t(n, c)
        out[f"{tag}.mm dz.T@a1 (C,N)x(N,H)"] = digest(dz.T @ a1)
        out[f"{tag}.mm dz@W2 (N,C)x(C,H)"] = digest(dz @ w2)
        dh = t(n, hid)
        out[f"{tag}.mm dh.T@x (H,N)x(N,D)"] = digest(dh.T @ x)
        # Adam: 5 steps of torch.optim.Adam on fixed gradients, each implementation
        grads = [[t(*v.shape) for v in (w1, b1, w2, b2)] for _ in range(5)]
        for variant, kw in (("adam5", {}), ("adam5.foreach", {"foreach": True}),
                            ("adam5.fused", {"fused": True})):
            q = [v.clone().requires_grad_(True) for v in (w1, b1, w2, b2)]
            opt = torch.optim.Adam(q, lr=0.01, **kw)
            for g in grads:
                for v, gv in zip(q, g):
                    v.grad = gv.clone()
                opt.step()
            out[f"{tag}.{variant}"] = digest(torch.cat([v.detach().flatten() for v in q]))
        out[f"{tag}.sqrt(float32, n={n * hid})"] = digest(torch.sqrt(z1.abs() + 0.1))
        # init, as nn.Linear and xavier_normal_ draw it
        torch.manual_seed(1234)
        lin = torch.nn.Linear(d, hid)
        out[f"{tag}.init.kaiming_uniform"] = digest(lin.weight)
        torch.nn.init.xavier_normal_(lin.weight, gain=torch.nn.init.calculate_gain("relu"))
        out[f"{tag}.init.xavier_normal"] = digest(lin.weight)
        # numpy, as the NumPy MLP computes
        xn, w1n, w2n = (v.numpy().astype(np.float64) for v in (x, w1.T, w2.T))
        hn = np.maximum(0, xn @ w1n)
        out[f"{tag}.np.matmul K={d}"] = digest(hn)
        sn = hn @ w2n
        out[f"{tag}.np.matmul K={hid}"] = digest(sn)
        out[f"{tag}.np.exp"] = digest(np.exp(sn - sn.max(axis=1, keepdims=True)))
        out[f"{tag}.np.log"] = digest(np.log(np.abs(sn) + 1))
        out[f"{tag}.np.sum"] = digest(sn.sum(axis=0))
        out[f"{tag}.np.matmul backward"] = digest(hn.T @ sn)


def training_kernels(out: dict[str, str]) -> None:
    """The remaining torch ops a training run calls (fingerprint.record lists them by profiling
    training), at the pipeline's shapes."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(1)
    for tag, n, d, hid, c in SHAPES:
        t = lambda *shape: torch.from_numpy(_exact(rng, *shape))  # noqa: E731
        z1, z2 = t(n, hid), t(n, c)
        y = torch.from_numpy(rng.integers(0, c, size=n))
        weight = t(c).abs() + 0.5
        doubles = rng.integers(-2 ** 40, 2 ** 40, size=(n, d)) / 2 ** 37  # float64 > float32
        out[f"{tag}.as_float32"] = digest(torch.as_tensor(doubles, dtype=torch.float32))
        out[f"{tag}.to_float64"] = digest(z1.T.numpy().astype(np.float64))
        torch.manual_seed(1234)
        out[f"{tag}.dropout(p=0.1)"] = digest(F.dropout(z1, 0.1, training=True))
        gen = torch.Generator().manual_seed(1234)
        out[f"{tag}.randperm"] = digest(torch.randperm(n, generator=gen))
        out[f"{tag}.index_rows"] = digest(z1[torch.randperm(n, generator=gen)[:n // 2]])
        out[f"{tag}.argmax"] = digest(z2.argmax(dim=1))
        out[f"{tag}.accuracy"] = digest((z2.argmax(dim=1) == y).float().mean())
        out[f"{tag}.nll_loss(weighted)"] = digest(F.nll_loss(F.log_softmax(z2, dim=1), y,
                                                             weight=weight))
        dropped = z1.clone().requires_grad_(True)
        torch.manual_seed(1234)
        F.dropout(dropped, 0.1, training=True).backward(t(n, hid))
        out[f"{tag}.dropout.backward"] = digest(dropped.grad)
        for name, count in (("xavier_normal(H,H)", hid), ):
            torch.manual_seed(1234)
            square = torch.empty(count, count)
            torch.nn.init.xavier_normal_(square, gain=torch.nn.init.calculate_gain("relu"))
            out[f"{tag}.init.{name}"] = digest(square)


def numpy_kernels(out: dict[str, str]) -> None:
    """NumPy and scikit-learn, as fetch, split, scale_encode, the NumPy MLP, evaluate and
    predict compute (float64)."""
    import numpy as np

    rng = np.random.default_rng(2)
    f64 = lambda *shape: rng.integers(-2 ** 40, 2 ** 40, size=shape) / 2 ** 38  # noqa: E731
    legacy = np.random.RandomState(1234)
    out["fetch.randn"] = digest(legacy.randn(1500))
    out["fetch.linspace"] = digest(np.linspace(4.0, 8.0, 500))
    angles = f64(1500)
    out["fetch.sin"] = digest(np.sin(angles))
    out["fetch.cos"] = digest(np.cos(angles))
    out["overfit.rand"] = digest(legacy.rand(150, 2))
    out["numpy_mlp.permutation"] = digest(legacy.permutation(1050))
    out["plot.choice"] = digest(legacy.choice(1500, 1000, replace=False))
    out["plot.tanh"] = digest(np.tanh(f64(100)))
    out["plot.exp(-x)"] = digest(1.0 / (1.0 + np.exp(-f64(100))))
    for tag, n, d, hid, c in SHAPES:
        x, w1, w2, dout = f64(n, d), f64(d, hid), f64(hid, c), f64(n, c)
        out[f"{tag}.np.matmul dout@W2.T K={c}"] = digest(dout @ w2.T)
        out[f"{tag}.np.matmul x.T@dh K={n}"] = digest(x.T @ f64(n, hid))
        scores = np.maximum(x @ w1, 0.0) @ w2
        shifted = scores - scores.max(axis=1, keepdims=True)
        probs = np.exp(shifted)
        out[f"{tag}.np.softmax"] = digest(probs / probs.sum(axis=1, keepdims=True))
        out[f"{tag}.np.log_softmax"] = digest(shifted - np.log(probs.sum(axis=1, keepdims=True)))
        out[f"{tag}.np.weighted_mean"] = digest((f64(n) * f64(n)).sum() / f64(n).sum())
        out[f"{tag}.np.argmax"] = digest(scores.argmax(axis=1))
        out[f"{tag}.np.update"] = digest(w1 - 1.0 * f64(d, hid))
    _sklearn_kernels(out, f64)


def _sklearn_kernels(out: dict[str, str], f64: Callable[..., Any]) -> None:
    import numpy as np
    from sklearn.metrics import precision_recall_fscore_support
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X = f64(1050, 2) * 100.0 + 3.0
    scaler = StandardScaler().fit(X)
    out["scale_encode.scaler.mean"] = digest(scaler.mean_)
    out["scale_encode.scaler.scale"] = digest(scaler.scale_)
    out["scale_encode.transform"] = digest(scaler.transform(f64(1500, 2)))
    labels = np.repeat(np.array(["c1", "c2", "c3"]), 500)
    train, rest = train_test_split(np.arange(1500), train_size=0.7, stratify=labels,
                                   random_state=1234, shuffle=True)
    out["split.train_test_split"] = digest(np.concatenate([train, rest]))
    truth = np.repeat(np.arange(3), 75)
    guess = (truth + (np.arange(225) % 7 == 0)) % 3
    out["evaluate.prf(weighted)"] = digest(np.array(precision_recall_fscore_support(
        truth, guess, average="weighted", zero_division=0)[:3]))


def plot_kernels(out: dict[str, str]) -> None:
    """A decision-boundary panel (meshgrid, contourf, scatter) rendered to PNG, as plot_model."""
    import io

    import numpy as np
    from matplotlib.figure import Figure

    rng = np.random.default_rng(3)
    xx, yy = np.meshgrid(np.linspace(-1.1, 1.1, 101), np.linspace(-1.1, 1.1, 101))
    regions = (np.floor(np.arctan2(yy, xx) * 3) % 3).astype(int)
    fig = Figure(figsize=(4, 4))
    ax = fig.add_subplot()
    ax.contourf(xx, yy, regions, cmap="Spectral", alpha=0.8)
    points = rng.integers(-2 ** 20, 2 ** 20, size=(200, 2)) / 2 ** 20
    ax.scatter(points[:, 0], points[:, 1], c=np.arange(200) % 3, s=40, cmap="RdYlBu",
               edgecolors="k", linewidths=0.3)
    ax.set_title("fingerprint")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=50, metadata={"Software": None})
    out["plot.meshgrid_arctan2"] = digest(regions)
    out["plot.png"] = digest(buffer.getvalue())


KERNELS = (torch_kernels, training_kernels, numpy_kernels, plot_kernels)


def compute(out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every kernel's hash, plus ``_kernels``: the code paths in effect (see nnpipe.core.portable)."""
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    out = {} if out is None else out
    out["_kernels"] = portable.in_effect(load_torch=True)
    for kernels in KERNELS:
        kernels(out)
    return out
