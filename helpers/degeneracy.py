"""Degeneracy in the loss landscape and the interaction basis (Bushnaq et al., 2024).

Many parameters of a trained network do nothing: moving them along certain
directions leaves the loss unchanged. Bushnaq et al. name three sources of such
*free* directions, and this module finds each one numerically and checks it by
taking a large step along it:

1. **Activations in a proper subspace.** If the Gram matrix ``G = E[f f^T]`` of
   a layer's activations (with a constant 1 appended for the bias) has a null
   vector ``v``, then ``f . v = 0`` on every input, so adding ``v u^T`` to the
   weights that read the layer changes nothing (:func:`gram_null_space`,
   :func:`activation_free_direction`).
2. **Jacobians in a proper subspace.** If the Jacobian ``J(x)`` of the rest of
   the network with respect to a layer satisfies ``J(x) u = 0`` on every input,
   the weights that *write* the layer may move along ``u``
   (:func:`jacobian_null_space`, :func:`jacobian_free_direction`).
3. **Synchronised ReLUs.** Neurons that fire on exactly the same inputs form a
   layer that is linear on their common firing set, and their incoming and
   outgoing weights can be remixed (:func:`synchronised_groups`,
   :func:`synchronised_free_direction`).

:func:`step_test` moves the weights a given fraction of their norm along a
direction and along a random direction of the same norm, and reports both loss
changes. The **interaction basis** (:func:`interaction_basis`) is built from
the output backwards: Gram eigendecomposition and whitening, the Jacobian
second moment ``M`` in whitened coordinates, ``C = U D^(-1/2) V L^(1/2)``, with
plain centred PCA at the last layer; :func:`edge_weights` gives the graph of
mean squared Jacobian-times-activation products between consecutive layers and
:func:`edges_for_mass` its sparsity. The small model of the chapter is a ReLU
MLP (:class:`ReluMLP`) trained on two independent modular sums
(:func:`two_sums_data`), so the interaction graph has two natural modules
(:func:`graph_modules`).

Shapes follow the book's row-vector convention (``f @ W``); activations are
``[batch, d]`` and Jacobians ``[batch, d_out, d_in]``. Everything numerical runs
in float64.

>>> X, Y = two_sums_data(3)
>>> X.shape, Y.shape
(torch.Size([81, 12]), torch.Size([81, 2]))
>>> ev, null = gram_null_space(X.double())          # 4 one-hot groups, each sums to 1
>>> null.shape[1]
3

Used in chapter 7.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers._util import check_seed as _check_seed
from helpers.store import recipe, register_model_class
from helpers.training import accuracy, train

__all__ = [
    # the small model
    "ReluMLP", "two_sums_data", "two_sums_loss", "train_two_sums", "MLP_SEEDS", "mlp_name",
    # degeneracies
    "gram_null_space", "jacobian_null_space", "synchronised_groups", "flat_norm",
    "activation_free_direction", "jacobian_free_direction", "synchronised_free_direction",
    "random_direction", "StepResult", "step_test", "step_test_to", "rescaled_neurons", "free_parameter_count",
    # the canonical transformer
    "float64_copy", "modadd_loss", "token_position_onehots",
    # interaction basis
    "LayerBasis", "interaction_basis", "pca_basis", "neuron_basis", "layer_jacobians",
    "edge_weights", "edges_for_mass", "graph_modules",
    # singular learning theory
    "sublevel_volume",
]


# ---------------------------------------------------------------------------
# The small model: a ReLU MLP on two independent modular sums
# ---------------------------------------------------------------------------
def two_sums_data(p: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """Every input of the two-sums task: ``X [p^4, 4p]`` one-hot ``(a, b, c, d)``, ``Y [p^4, 2]``.

    The targets are ``(a + b) mod p`` and ``(c + d) mod p``: two tasks that
    share no input, so a network that solves them could be two modules.

    Used in chapter 7.
    """
    if isinstance(p, bool) or not isinstance(p, int) or p < 2:
        raise ValueError(f"p must be an int >= 2, got {p!r}")
    grid = torch.cartesian_prod(*[torch.arange(p)] * 4)
    X = F.one_hot(grid, p).reshape(len(grid), 4 * p).float()
    Y = torch.stack([(grid[:, 0] + grid[:, 1]) % p, (grid[:, 2] + grid[:, 3]) % p], dim=1)
    return X, Y


def two_sums_loss(logits: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the two heads; ``logits [batch, 2p]``, ``Y [batch, 2]``.

    Used in chapter 7.
    """
    if logits.ndim != 2 or logits.shape[1] % 2:
        raise ValueError(f"logits must be [batch, 2p], got shape {tuple(logits.shape)}")
    p = logits.shape[1] // 2
    return 0.5 * (F.cross_entropy(logits[:, :p], Y[:, 0]) + F.cross_entropy(logits[:, p:], Y[:, 1]))


@register_model_class
class ReluMLP(nn.Module):
    """A ReLU MLP ``x -> relu(x W_0 + b_0) -> ... -> x W_L + b_L`` (row vectors).

    Parameters
    ----------
    sizes : sequence of int
        ``[d_in, d_hidden_1, ..., d_out]``.
    seed : int
        Seeds the initialisation (PyTorch's default uniform rule).
    dtype : {"float32", "float64"}

    ``forward(x, return_acts=True)`` also returns ``[x, h_1, ..., logits]``.

    Not named on chapter 7's page: a building block of the functions, recipes or checks behind it.
    """

    def __init__(self, sizes: Sequence[int], seed: int = 0, dtype: str = "float32") -> None:
        super().__init__()
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must list at least two positive ints, got {sizes!r}")
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        self.sizes, self.seed, self.dtype = sizes, int(seed), dtype
        dt = getattr(torch, dtype)
        gen = torch.Generator().manual_seed(self.seed)
        self.W = nn.ParameterList()
        self.b = nn.ParameterList()
        for d_a, d_b in zip(sizes[:-1], sizes[1:]):
            bound = 1 / math.sqrt(d_a)
            self.W.append(nn.Parameter(((torch.rand(d_a, d_b, generator=gen, dtype=torch.float64) * 2 - 1) * bound).to(dt)))
            self.b.append(nn.Parameter(((torch.rand(d_b, generator=gen, dtype=torch.float64) * 2 - 1) * bound).to(dt)))

    @property
    def n_layers(self) -> int:
        return len(self.W)

    def layer(self, l: int, f: torch.Tensor) -> torch.Tensor:
        """Map layer ``l`` activations to layer ``l + 1`` (ReLU except at the output)."""
        z = f @ self.W[l] + self.b[l]
        return z if l == self.n_layers - 1 else torch.relu(z)

    def forward(self, x: torch.Tensor, return_acts: bool = False):
        acts = [x]
        for l in range(self.n_layers):
            acts.append(self.layer(l, acts[-1]))
        return (acts[-1], acts) if return_acts else acts[-1]

    def config_dict(self) -> dict:
        return {"sizes": list(self.sizes), "seed": self.seed, "dtype": self.dtype}

    @classmethod
    def from_config_dict(cls, d: dict) -> ReluMLP:
        return cls(**d)

    def to_float64(self) -> ReluMLP:
        """A float64 copy with the same weights."""
        other = ReluMLP(self.sizes, self.seed, "float64")
        other.load_state_dict({k: v.double() for k, v in self.state_dict().items()})
        return other.to(self.W[0].device).eval()


MLP_SEEDS = tuple(range(6))
MLP_TRAINING = dict(p=7, hidden=(48, 48), steps=2000, lr=3e-3, weight_decay=1e-2)


def mlp_name(seed: int) -> str:
    """Checkpoint name of the chapter's MLP for ``seed``, e.g. ``degeneracy_mlp_s0``. Used in chapter 7."""
    return f"degeneracy_mlp_s{_check_seed(seed)}"


def train_two_sums(seed: int = 0, p: int = 7, hidden: Sequence[int] = (48, 48), steps: int = 2000,
                   lr: float = 3e-3, weight_decay: float = 1e-2, progress: bool | None = False):
    """Train a :class:`ReluMLP` on every input of :func:`two_sums_data`; returns ``(model, TrainResult)``.

    Full batch, AdamW, one torch thread (a few seconds).

    Not named on chapter 7's page: a building block of the functions, recipes or checks behind it.
    """
    X, Y = two_sums_data(p)
    model = ReluMLP([4 * p, *hidden, 2 * p], seed=seed)

    def loss_fn(m, batch):
        return two_sums_loss(m(batch[0]), batch[1])

    def metrics(m):
        logits = m(X)
        return {"loss": two_sums_loss(logits, Y).item(),
                "acc": 0.5 * (accuracy(logits[:, :p], Y[:, 0]) + accuracy(logits[:, p:], Y[:, 1]))}

    result = train(model, (X, Y), loss_fn, steps=steps, lr=lr, weight_decay=weight_decay, seed=seed,
                   log_every=100, metrics_fn=metrics, progress=progress, description=f"two sums MLP s{seed}",
                   threads=1)
    return model, result


def _mlp_recipe(s: int):
    def fn(seed: int = s, p: int = 7, hidden: Sequence[int] = (48, 48), steps: int = 2000, lr: float = 3e-3,
           weight_decay: float = 1e-2, progress: bool | None = False):
        return train_two_sums(seed=seed, p=p, hidden=hidden, steps=steps, lr=lr, weight_decay=weight_decay,
                              progress=progress)

    fn.__doc__ = f"ReLU MLP 28-48-48-14 on two modular sums mod 7, seed {s} (chapter 7)."
    fn.__name__ = fn.__qualname__ = f"train_{mlp_name(s)}"
    return fn


for _s in MLP_SEEDS:
    recipe(mlp_name(_s), _mlp_recipe(_s).__doc__)(_mlp_recipe(_s))


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------
def _as_2d(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D [batch, d], got shape {tuple(x.shape)}")
    return x.double()


def _check_rtol(rtol) -> float:
    if not isinstance(rtol, (int, float)) or isinstance(rtol, bool) or not 0 < rtol < 1:
        raise ValueError(f"rtol must be a number in (0, 1), got {rtol!r}")
    return float(rtol)


def _sym_eigh(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (descending) and eigenvectors of a symmetric matrix, signs fixed."""
    ev, vecs = torch.linalg.eigh(0.5 * (A + A.T))
    ev, vecs = ev.flip(0), vecs.flip(1)
    # sign convention: the largest-magnitude entry of each eigenvector is positive
    idx = vecs.abs().argmax(0)
    signs = torch.sign(vecs[idx, torch.arange(vecs.shape[1], device=A.device)])
    signs[signs == 0] = 1
    return ev, vecs * signs


# ---------------------------------------------------------------------------
# The three degeneracies
# ---------------------------------------------------------------------------
def gram_null_space(acts: torch.Tensor, rtol: float = 1e-10, bias: bool = False):
    """Spectrum and null space of the Gram matrix ``G = E[f f^T]`` (degeneracy 1).

    Parameters
    ----------
    acts : Tensor [batch, d]
    rtol : float
        Eigenvalues below ``rtol * max`` count as zero.
    bias : bool
        Append a constant 1 to every activation (so a null vector ``(v, c)``
        means ``f . v + c = 0``: the reading layer's bias can absorb it).

    Returns
    -------
    eigenvalues : Tensor [d (+1)], descending
    null : Tensor [d (+1), k], orthonormal null vectors

    Used in chapter 7.
    """
    f = _as_2d(acts, "acts")
    rtol = _check_rtol(rtol)
    if bias:
        f = torch.cat([f, torch.ones(len(f), 1, dtype=f.dtype, device=f.device)], dim=1)
    ev, vecs = _sym_eigh(f.T @ f / len(f))
    null = ev <= rtol * ev[0].clamp_min(torch.finfo(ev.dtype).tiny)
    return ev, vecs[:, null]


def jacobian_null_space(jac: torch.Tensor, rtol: float = 1e-10):
    """Spectrum and null space of ``M = E[J^T J]`` for Jacobians ``J [batch, d_out, d]`` (degeneracy 2).

    A null vector ``u`` satisfies ``J(x) u = 0`` on every input: the rest of
    the network ignores that direction of the layer.

    Returns ``(eigenvalues [d] descending, null [d, k])``. Used in chapter 7.
    """
    if not isinstance(jac, torch.Tensor) or jac.ndim != 3:
        raise ValueError(f"jac must be a Tensor [batch, d_out, d_in], got {getattr(jac, 'shape', type(jac))}")
    rtol = _check_rtol(rtol)
    J = jac.double()
    M = torch.einsum("boi,boj->ij", J, J) / len(J)
    ev, vecs = _sym_eigh(M)
    null = ev <= rtol * ev[0].clamp_min(torch.finfo(ev.dtype).tiny)
    return ev, vecs[:, null]


def synchronised_groups(pre: torch.Tensor, min_size: int = 2) -> list[list[int]]:
    """Groups of neurons that fire (pre-activation > 0) on exactly the same inputs (degeneracy 3).

    Neurons that never fire are left out (they belong to degeneracy 1).
    ``pre [batch, d_mlp]``. Returns lists of neuron indices, largest group first.

    Used in chapter 7.
    """
    z = _as_2d(pre, "pre")
    fire = (z > 0).cpu().numpy()
    groups: dict[bytes, list[int]] = {}
    for j in range(fire.shape[1]):
        if fire[:, j].any():
            groups.setdefault(np.packbits(fire[:, j]).tobytes(), []).append(j)
    out = [g for g in groups.values() if len(g) >= min_size]
    return sorted(out, key=lambda g: (-len(g), g[0]))


def flat_norm(direction: dict) -> float:
    """Euclidean norm of a direction given as ``{parameter name: tensor}``. Not named on chapter 7's page: a building block of the functions, recipes or checks behind it."""
    return float(torch.sqrt(sum((v.detach().double() ** 2).sum() for v in direction.values())))


def activation_free_direction(null: torch.Tensor, W_name: str, W_shape: Sequence[int], b_name: str | None = None,
                              seed: int = 0, device=None) -> dict:
    """A free direction of degeneracy 1: ``W += N R`` (and ``b += n R`` for the bias row).

    ``null [d_in (+1), k]`` from :func:`gram_null_space` (with ``bias=True``
    when ``b_name`` is given); ``W [d_in, d_out]`` reads the layer. ``R [k,
    d_out]`` is a seeded Gaussian matrix, so the step mixes every null vector.

    Used in chapter 7.
    """
    d_in, d_out = (int(s) for s in W_shape)
    if null.shape[0] != d_in + (b_name is not None):
        raise ValueError(f"null has {null.shape[0]} rows; expected d_in={d_in}" + (" + 1 (bias)" if b_name else ""))
    if null.shape[1] == 0:
        raise ValueError("null is empty: this layer has no activation degeneracy at this tolerance")
    gen = torch.Generator().manual_seed(_check_seed(seed))
    R = torch.randn(null.shape[1], d_out, generator=gen, dtype=torch.float64).to(null.device)
    step = null @ R
    out = {W_name: step[:d_in]}
    if b_name is not None:
        out[b_name] = step[d_in]
    return {k: (v.to(device) if device is not None else v) for k, v in out.items()}


def jacobian_free_direction(null: torch.Tensor, W_name: str, W_shape: Sequence[int], b_name: str | None = None,
                            seed: int = 0) -> dict:
    """A free direction of degeneracy 2: ``W += R N^T`` for the weights ``W [d_in, d]`` that write the layer.

    ``null [d, k]`` from :func:`jacobian_null_space`; ``R [d_in, k]`` and the
    bias step ``r N^T`` are seeded Gaussians.

    Used in chapter 7.
    """
    d_in, d = (int(s) for s in W_shape)
    if null.shape[0] != d:
        raise ValueError(f"null has {null.shape[0]} rows; expected the layer width {d}")
    if null.shape[1] == 0:
        raise ValueError("null is empty: this layer has no Jacobian degeneracy at this tolerance")
    gen = torch.Generator().manual_seed(_check_seed(seed))
    R = torch.randn(d_in + 1, null.shape[1], generator=gen, dtype=torch.float64).to(null.device)
    step = R @ null.T
    out = {W_name: step[:d_in]}
    if b_name is not None:
        out[b_name] = step[d_in]
    return out


def synchronised_free_direction(groups: list[list[int]], W_in: torch.Tensor, b_in: torch.Tensor,
                                W_out: torch.Tensor, names: Sequence[str], seed: int = 0) -> dict:
    """A free direction of degeneracy 3 that remixes each group of synchronised neurons.

    In each group one neuron ``i`` (the first) absorbs a non-negative mix of
    the others' inputs and they give up the matching part of their outputs::

        W_in[:, i] += sum_j c_j W_in[:, j],  b_in[i] += sum_j c_j b_in[j],
        W_out[j]   -= c_j W_out[i]                      (c_j >= 0, j != i)

    On the common firing set the layer is linear and the output is unchanged;
    off it every neuron of the group stays silent. The change is exact for any
    non-negative step (the mixing matrix squares to zero), so a large step is
    allowed. ``W_in [d_model, d_mlp]``, ``b_in [d_mlp]``, ``W_out [d_mlp,
    d_model]``; ``names`` = their three parameter names.

    Used in chapter 7.
    """
    if len(names) != 3:
        raise ValueError(f"names must give the names of (W_in, b_in, W_out), got {names!r}")
    if not groups:
        raise ValueError("groups is empty: no synchronised neurons")
    gen = torch.Generator().manual_seed(_check_seed(seed))
    dW_in, db_in, dW_out = (torch.zeros_like(t, dtype=torch.float64) for t in (W_in, b_in, W_out))
    for g in groups:
        i, others = g[0], list(g[1:])
        c = torch.rand(len(others), generator=gen, dtype=torch.float64).to(W_in.device) + 0.5
        dW_in[:, i] += W_in.double()[:, others] @ c
        db_in[i] += b_in.double()[others] @ c
        dW_out[others] -= c[:, None] * W_out.double()[i][None, :]
    return dict(zip(names, (dW_in, db_in, dW_out)))


def random_direction(like: dict, seed: int = 0) -> dict:
    """A Gaussian direction on the same parameters (and shapes) as ``like``. Not named on chapter 7's page: a building block of the functions, recipes or checks behind it."""
    gen = torch.Generator().manual_seed(_check_seed(seed))
    return {k: torch.randn(v.shape, generator=gen, dtype=torch.float64).to(v.device) for k, v in like.items()}


@dataclass
class StepResult:
    """Loss at the weights, after a step along a free direction and after a random step of the same norm."""

    loss: float
    loss_free: float
    loss_random: float
    step_norm: float
    weight_norm: float
    n_free: int = 0

    @property
    def rel_free(self) -> float:
        """Relative loss change along the free direction."""
        return abs(self.loss_free - self.loss) / abs(self.loss)

    @property
    def rel_random(self) -> float:
        """Relative loss change along the random direction."""
        return abs(self.loss_random - self.loss) / abs(self.loss)

    @property
    def rel_step(self) -> float:
        """Step norm as a fraction of the weights' norm."""
        return self.step_norm / self.weight_norm


def _weight_norm(params: dict) -> float:
    return float(torch.sqrt(sum((p.detach().double() ** 2).sum() for p in params.values())))


def _check_direction(params: dict, direction: dict, what: str = "direction") -> None:
    bad = [k for k in direction if k not in params]
    if bad:
        raise ValueError(f"{what} names unknown parameters {bad}; the model has {sorted(params)}")
    for k, v in direction.items():
        if tuple(v.shape) != tuple(params[k].shape):
            raise ValueError(f"{what}[{k!r}] has shape {tuple(v.shape)}, parameter has {tuple(params[k].shape)}")


def step_test_to(model: nn.Module, loss_fn: Callable[[nn.Module], torch.Tensor], new_values: dict,
                 seed: int = 0, n_free: int = 0) -> StepResult:
    """Loss at ``model``'s weights, at ``new_values`` (some parameters replaced) and after a random
    step of the same norm on the same parameters. The model is restored afterwards.

    Used in chapter 7 (moves along a curve, e.g. the rescaling of ReLU neurons).
    """
    params = dict(model.named_parameters())
    _check_direction(params, new_values, "new_values")
    saved = {k: params[k].detach().clone() for k in new_values}
    delta = {k: new_values[k].double() - saved[k].double() for k in new_values}
    step = flat_norm(delta)
    if step == 0:
        raise ValueError("new_values equal the current weights: the step is zero")
    rand = random_direction(delta, seed=seed)
    rscale = step / flat_norm(rand)

    def loss_at(values):
        with torch.no_grad():
            for k, v in values.items():
                params[k].copy_(v.to(saved[k].dtype))
            out = float(loss_fn(model))
            for k in values:
                params[k].copy_(saved[k])
        return out

    with torch.no_grad():
        loss0 = float(loss_fn(model))
    return StepResult(loss0, loss_at(new_values),
                      loss_at({k: saved[k].double() + rscale * rand[k] for k in rand}),
                      step, _weight_norm(params), n_free)


def step_test(model: nn.Module, loss_fn: Callable[[nn.Module], torch.Tensor], direction: dict,
              rel_step: float = 0.1, seed: int = 0, n_free: int = 0) -> StepResult:
    """Move ``model``'s weights along ``direction`` and along a random direction of the same norm.

    The step's norm is ``rel_step`` times the norm of *all* the model's
    parameters. The model is restored afterwards.

    Parameters
    ----------
    model : nn.Module (float64 recommended)
    loss_fn : callable ``model -> scalar tensor``
    direction : dict ``{parameter name: tensor of that parameter's shape}``
    rel_step : float
    n_free : int
        The number of free dimensions the direction was drawn from (reported).

    Used in chapter 7.
    """
    params = dict(model.named_parameters())
    _check_direction(params, direction)
    if not (isinstance(rel_step, (int, float)) and rel_step > 0):
        raise ValueError(f"rel_step must be a positive number, got {rel_step!r}")
    dnorm = flat_norm(direction)
    if dnorm == 0:
        raise ValueError("direction is zero")
    scale = rel_step * _weight_norm(params) / dnorm
    new = {k: params[k].detach().double() + scale * v.double() for k, v in direction.items()}
    return step_test_to(model, loss_fn, new, seed=seed, n_free=n_free)


def rescaled_neurons(W_in: torch.Tensor, b_in: torch.Tensor, W_out: torch.Tensor, names: Sequence[str],
                     min_rel_change: float = 0.1, total_norm: float | None = None, seed: int = 0) -> dict:
    """New values for a ReLU layer with every neuron rescaled: ``W_in[:, i] c_i, b_in[i] c_i, W_out[i] / c_i``.

    ``relu(c z) = c relu(z)`` for ``c > 0``: the one-neuron case of degeneracy
    3 (a group of ``k`` synchronised neurons has ``k^2`` free directions, of
    which these ``k`` rescalings exist for every neuron). The factors are
    ``c_i = exp(+-a)`` with seeded signs and ``a`` grown until the change has
    norm at least ``min_rel_change * total_norm`` (default: the norm of the
    three tensors).

    Used in chapter 7.
    """
    gen = torch.Generator().manual_seed(_check_seed(seed))
    signs = (torch.randint(0, 2, (W_in.shape[1],), generator=gen) * 2 - 1).double().to(W_in.device)
    ref = total_norm if total_norm is not None else flat_norm({"a": W_in, "b": b_in, "c": W_out})
    Wi, bi, Wo = W_in.double(), b_in.double(), W_out.double()
    for a in np.linspace(0.05, 3.0, 60):
        c = torch.exp(float(a) * signs)
        new = {names[0]: Wi * c, names[1]: bi * c, names[2]: Wo / c[:, None]}
        if flat_norm({k: new[k] - old for k, old in zip(names, (Wi, bi, Wo))}) >= min_rel_change * ref:
            return new
    raise ValueError("could not reach the requested change; lower min_rel_change")


def free_parameter_count(n_gram_null: int, d_out: int, n_jac_null: int = 0, d_in: int = 0,
                         group_sizes: Sequence[int] = ()) -> dict:
    """Count the free directions of the three kinds for one weight matrix.

    ``n_gram_null * d_out`` (degeneracy 1: any output for each null input
    direction), ``n_jac_null * d_in`` (degeneracy 2: any input for each ignored
    output direction; ``d_in`` counts the bias row) and ``sum k (k - 1)``
    over synchronised groups (degeneracy 3: the off-diagonal remixings of a
    group of ``k``, beyond the per-neuron rescalings every ReLU has).

    >>> free_parameter_count(3, 48, 2, 49, [3])["total"]
    248

    Not named on chapter 7's page: a building block of the functions, recipes or checks behind it.
    """
    c = {"activations": int(n_gram_null) * int(d_out), "jacobians": int(n_jac_null) * int(d_in),
         "synchronised": int(sum(k * (k - 1) for k in group_sizes))}
    c["total"] = sum(c.values())
    return c


# ---------------------------------------------------------------------------
# The canonical modular-addition transformer (chapter 4's model)
# ---------------------------------------------------------------------------
def float64_copy(model):
    """A float64 copy of a :class:`~helpers.transformer.HookedTransformer` (same weights, eval mode).

    Used in chapter 7: loss changes of 1e-6 relative need float64.
    """
    from helpers.transformer import HookedTransformer

    if not isinstance(model, HookedTransformer):
        raise TypeError(f"model must be a HookedTransformer, got {type(model).__name__}")
    cfg = dataclasses.replace(model.cfg, dtype="float64")
    out = HookedTransformer(cfg, device=next(model.parameters()).device)
    out.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
    return out.eval()


def modadd_loss(tokens: torch.Tensor, labels: torch.Tensor) -> Callable:
    """``model -> mean cross-entropy`` at the last position over ``tokens [batch, pos]``. Used in chapter 7."""

    def loss_fn(model):
        logits = model(tokens.to(next(model.parameters()).device), read_positions=[-1])[:, 0]
        return F.cross_entropy(logits.double(), labels.to(logits.device))

    return loss_fn


def token_position_onehots(tokens: torch.Tensor, d_vocab: int, n_ctx: int) -> torch.Tensor:
    """The transformer's true input layer: ``[one-hot token, one-hot position]`` for every position.

    ``tokens [batch, pos]`` -> ``[batch * pos, d_vocab + n_ctx]`` (float64);
    ``W_E`` and ``W_pos`` stacked are the weights that read it.

    Used in chapter 7.
    """
    for _name, _value in (("d_vocab", d_vocab), ("n_ctx", n_ctx)):
        if isinstance(_value, bool) or not isinstance(_value, int) or _value < 1:
            raise TypeError(f"{_name} must be a positive int, got {_value!r}")
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"tokens must be a tensor [batch, pos] of token ids, got {type(tokens).__name__}")
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [batch, pos], got shape {tuple(tokens.shape)}")
    pos = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)
    oh = torch.cat([F.one_hot(tokens, d_vocab), F.one_hot(pos, n_ctx)], dim=-1)
    return oh.reshape(-1, d_vocab + n_ctx).double()


# ---------------------------------------------------------------------------
# The interaction basis
# ---------------------------------------------------------------------------
@dataclass
class LayerBasis:
    """A basis of one layer: coordinates are ``(f - offset) @ C``; ``f ≈ coords @ C_pinv + offset``.

    Attributes
    ----------
    C : Tensor [d, d_hat]
    C_pinv : Tensor [d_hat, d]
    offset : Tensor [d] (zero except for centred PCA)
    gram_eigenvalues : Tensor (the Gram / covariance spectrum, descending)
    M_eigenvalues : Tensor or None (the kept eigenvalues of M, descending)
    U_kept, D_kept : the kept Gram eigenvectors and eigenvalues (for tests)
    """

    C: torch.Tensor
    C_pinv: torch.Tensor
    offset: torch.Tensor
    gram_eigenvalues: torch.Tensor
    M_eigenvalues: torch.Tensor | None = None
    U_kept: torch.Tensor | None = None
    D_kept: torch.Tensor | None = None
    bias: bool = False

    @property
    def size(self) -> int:
        return self.C.shape[1]

    def coords(self, f: torch.Tensor) -> torch.Tensor:
        """Coordinates ``[..., d_hat]`` of activations ``f [..., d]`` (a constant 1 appended if ``bias``)."""
        f = f.double()
        if self.bias:
            f = torch.cat([f, torch.ones(*f.shape[:-1], 1, dtype=f.dtype, device=f.device)], dim=-1)
        return (f - self.offset) @ self.C

    def reconstruct(self, coords: torch.Tensor) -> torch.Tensor:
        """Activations ``[..., d]`` rebuilt from coordinates (the projection of ``f`` on the kept subspace)."""
        f = coords @ self.C_pinv + self.offset
        return f[..., :-1] if self.bias else f


def pca_basis(acts: torch.Tensor, rtol: float = 1e-10) -> LayerBasis:
    """Plain centred PCA: ``C`` = covariance eigenvectors with eigenvalue > ``rtol * max``.

    ``acts [batch, d]``. Used in chapter 7 (the last layer of the interaction
    basis, and the PCA baseline at every layer).
    """
    f = _as_2d(acts, "acts")
    rtol = _check_rtol(rtol)
    mu = f.mean(0)
    ev, vecs = _sym_eigh((f - mu).T @ (f - mu) / len(f))
    keep = ev > rtol * ev[0].clamp_min(torch.finfo(ev.dtype).tiny)
    C = vecs[:, keep]
    return LayerBasis(C, C.T.clone(), mu, ev, None, C, ev[keep])


def neuron_basis(acts: torch.Tensor) -> LayerBasis:
    """The identity basis (raw neurons), for comparison. Used in chapter 7."""
    f = _as_2d(acts, "acts")
    eye = torch.eye(f.shape[1], dtype=torch.float64, device=f.device)
    return LayerBasis(eye, eye.clone(), torch.zeros(f.shape[1], dtype=torch.float64, device=f.device),
                      torch.linalg.eigvalsh(f.T @ f / len(f)).flip(0))


def layer_jacobians(layer_fn: Callable[[torch.Tensor], torch.Tensor], f: torch.Tensor) -> torch.Tensor:
    """Per-example Jacobians ``[batch, d_out, d_in]`` of ``layer_fn`` (one example -> one example).

    Used in chapter 7.
    """
    from torch.func import jacrev, vmap

    return vmap(jacrev(layer_fn))(f.double()).detach()


def interaction_basis(acts: Sequence[torch.Tensor], layer_fns: Sequence[Callable], rtol: float = 1e-10,
                      bias: bool = False) -> list[LayerBasis]:
    """The interaction basis of every layer, computed from the output backwards.

    Parameters
    ----------
    acts : list of Tensor ``[batch, d_l]``, one per layer ``l = 0 .. L``
        (``acts[0]`` the input, ``acts[L]`` the output).
    layer_fns : list of ``L`` callables; ``layer_fns[l]`` maps one example's
        layer-``l`` activations to layer ``l + 1`` (``acts[l + 1] ==
        layer_fns[l](acts[l])`` row by row).
    rtol : float
        Relative threshold for dropping Gram and ``M`` eigenvalues.
    bias : bool
        Append a constant 1 to the activations of layers ``0 .. L-1`` (the
        paper's treatment of biases); the constant then has a coordinate too.

    Returns
    -------
    list of :class:`LayerBasis`, one per layer.

    Notes
    -----
    Layer ``L``: centred PCA of the outputs. Layer ``l < L``:

    1. ``G = E[f f^T] = U D U^T``; keep ``D > rtol * max``; whiten ``y = f U D^(-1/2)``
       (so ``E[y^T y] = I`` on the kept subspace).
    2. ``J(x)``: the Jacobian of layer ``l + 1``'s interaction coordinates with
       respect to ``y``; ``M = E[J^T J] = V L V^T``; keep ``L > rtol * max``.
    3. ``C = U D^(-1/2) V L^(1/2)``: coordinates ``f C``.

    An invertible change of basis of any layer's activations (absorbed by the
    adjacent layer functions) leaves every coordinate unchanged up to sign,
    when the eigenvalues of ``M`` are distinct.

    Used in chapter 7.
    """
    L = len(layer_fns)
    if len(acts) != L + 1:
        raise ValueError(f"acts must have one entry per layer ({L + 1} for {L} layer_fns), got {len(acts)}")
    rtol = _check_rtol(rtol)
    acts = [_as_2d(a, f"acts[{i}]") for i, a in enumerate(acts)]
    bases: list[LayerBasis] = [None] * (L + 1)  # type: ignore[list-item]
    bases[L] = pca_basis(acts[L], rtol)
    for l in range(L - 1, -1, -1):
        f = acts[l]
        fn = layer_fns[l]
        if bias:
            f = torch.cat([f, torch.ones(len(f), 1, dtype=f.dtype, device=f.device)], dim=1)
            fn = (lambda g: (lambda v: g(v[:-1])))(layer_fns[l])
        ev, U = _sym_eigh(f.T @ f / len(f))
        keep = ev > rtol * ev[0].clamp_min(torch.finfo(ev.dtype).tiny)
        U_k, D_k = U[:, keep], ev[keep]
        nxt = bases[l + 1]
        # Jacobian of the next layer's coordinates w.r.t. this layer's activations, then whitened
        J_f = layer_jacobians(lambda v: nxt.coords(fn(v)), f)                     # [batch, d_hat_next, d]
        J_y = J_f @ (U_k * D_k.sqrt())                                              # [batch, d_hat_next, k]
        M = torch.einsum("boi,boj->ij", J_y, J_y) / len(J_y)
        lam, V = _sym_eigh(M)
        keep_m = lam > rtol * lam[0].clamp_min(torch.finfo(lam.dtype).tiny)
        V_k, lam_k = V[:, keep_m], lam[keep_m]
        C = (U_k / D_k.sqrt()) @ V_k * lam_k.sqrt()                                 # [d, d_hat]
        C_pinv = (V_k / lam_k.sqrt()).T @ (U_k * D_k.sqrt()).T                      # [d_hat, d]
        zero = torch.zeros(f.shape[1], dtype=torch.float64, device=f.device)
        bases[l] = LayerBasis(C, C_pinv, zero, ev, lam_k, U_k, D_k, bias=bias)
    return bases


def edge_weights(acts: Sequence[torch.Tensor], layer_fns: Sequence[Callable], bases: Sequence[LayerBasis]
                 ) -> list[np.ndarray]:
    """The interaction graph: ``E_l[i, j] = mean_x (d fhat_{l+1, j} / d fhat_{l, i} * fhat_{l, i})^2``.

    ``fhat`` are the coordinates in ``bases`` (interaction, PCA or neuron);
    the Jacobian is taken through the reconstruction ``f = fhat @ C_pinv +
    offset``. Returns one array ``[d_hat_l, d_hat_{l+1}]`` per pair of layers.

    Used in chapter 7.
    """
    L = len(layer_fns)
    if len(acts) != L + 1 or len(bases) != L + 1:
        raise ValueError(f"need L + 1 = {L + 1} acts and bases for {L} layer_fns, got {len(acts)} and {len(bases)}")
    out = []
    for l in range(L):
        B, nxt, fn = bases[l], bases[l + 1], layer_fns[l]
        coords = B.coords(acts[l])

        def through(c, B=B, nxt=nxt, fn=fn):
            return nxt.coords(fn(B.reconstruct(c)))

        J = layer_jacobians(through, coords)                                     # [batch, d_hat_next, d_hat]
        E = ((J * coords[:, None, :]) ** 2).mean(0).T                             # [d_hat, d_hat_next]
        out.append(E.cpu().numpy())
    return out


def edges_for_mass(E, mass: float = 0.9) -> int:
    """The smallest number of edges that carry ``mass`` of the total edge weight.

    ``E``: one array or a list of arrays (their edges pooled).

    >>> edges_for_mass(np.array([[8.0, 1.0], [1.0, 0.0]]), 0.8)
    1

    Used in chapter 7.
    """
    if not (isinstance(mass, (int, float)) and 0 < mass <= 1):
        raise ValueError(f"mass must be in (0, 1], got {mass!r}")
    w = np.concatenate([np.asarray(e, dtype=float).ravel() for e in (E if isinstance(E, (list, tuple)) else [E])])
    if (w < 0).any():
        raise ValueError("edge weights must be non-negative")
    w = np.sort(w)[::-1]
    total = w.sum()
    if total == 0:
        return 0
    return int(np.searchsorted(np.cumsum(w), mass * total * (1 - 1e-12)) + 1)


def graph_modules(E: Sequence[np.ndarray], seed: int = 0, mass: float = 0.9):
    """Cluster the interaction graph with networkx's Louvain method.

    Nodes are ``(layer, index)``; the undirected edge weights are the square
    roots of ``E`` (root-mean-square interaction strengths); in each
    layer-to-layer graph only the strongest edges carrying ``mass`` of that
    graph's weight are kept (layers differ in scale, so a pooled cut would
    keep one layer only).

    Returns ``(graph, communities)``, communities as a list of sets of nodes,
    largest first.

    Used in chapter 7.
    """
    import networkx as nx

    G = nx.Graph()
    for l, e in enumerate(E):
        G.add_nodes_from((l, i) for i in range(e.shape[0]))
        G.add_nodes_from((l + 1, j) for j in range(e.shape[1]))
    for l, e in enumerate(E):
        e = np.asarray(e)
        k = edges_for_mass(e, mass)
        cut = np.sort(e.ravel())[::-1][k - 1] if k > 0 else np.inf
        for i, j in zip(*np.nonzero(e >= cut)):
            G.add_edge((l, int(i)), (l + 1, int(j)), weight=float(np.sqrt(e[i, j])))
    comms = nx.community.louvain_communities(G, weight="weight", seed=seed)
    comms = sorted((set(c) for c in comms), key=lambda c: (-len(c), min(c)))
    return G, comms


# ---------------------------------------------------------------------------
# Singular learning theory: how the volume of near-optimal weights scales
# ---------------------------------------------------------------------------
def sublevel_volume(loss_fn: Callable[[np.ndarray], np.ndarray], eps: Sequence[float], dim: int = 2,
                    n: int = 200_000, radius: float = 1.0, seed: int = 0) -> np.ndarray:
    """Monte-Carlo volume of ``{w in [-radius, radius]^dim : loss(w) < eps}`` for each ``eps``.

    Near a minimum the volume scales as ``eps^lambda`` (times powers of
    ``log eps``): ``lambda`` is the learning coefficient, ``d/2`` for a regular
    minimum and smaller when directions are free.

    >>> v = sublevel_volume(lambda w: (w ** 2).sum(1), [1e-2, 1e-4])
    >>> bool(0.8 < np.log(v[0] / v[1]) / np.log(100) < 1.2)
    True

    Used in chapter 7.
    """
    rng = np.random.default_rng(_check_seed(seed))
    w = rng.uniform(-radius, radius, size=(int(n), int(dim)))
    vals = np.asarray(loss_fn(w))
    box = (2 * radius) ** dim
    return np.array([box * np.mean(vals < e) for e in eps])
