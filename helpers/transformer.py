"""One small hooked transformer for every chapter.

A decoder-only transformer with TransformerLens parameter and hook names, built
from a :class:`TransformerConfig`. Every variant the book needs is a field of the
config, not a copy of the class: attention-only models (chapter 3), constant
uniform attention for "pizza" models (chapters 4-5), no positional embedding,
LayerNorm / RMSNorm / none, biases on or off, and a seam where chapter 8 plugs
in quantized linear maps (:func:`register_weight_transform`).

Conventions (row vectors, ``x @ W``)::

    embed.W_E            [d_vocab, d_model]
    pos_embed.W_pos      [n_ctx, d_model]
    blocks.{l}.attn.W_Q  [n_heads, d_model, d_head]   (also W_K, W_V)
    blocks.{l}.attn.W_O  [n_heads, d_head, d_model]
    blocks.{l}.mlp.W_in  [d_model, d_mlp]
    blocks.{l}.mlp.W_out [d_mlp, d_model]
    unembed.W_U          [d_model, d_vocab_out]

Hook points (each an identity module a hook function can read, patch or zero)::

    hook_embed, hook_pos_embed
    blocks.{l}.hook_resid_pre, blocks.{l}.hook_resid_mid, blocks.{l}.hook_resid_post
    blocks.{l}.attn.hook_q / hook_k / hook_v      [batch, pos, n_heads, d_head]
    blocks.{l}.attn.hook_attn_scores / hook_pattern [batch, n_heads, query_pos, key_pos]
    blocks.{l}.attn.hook_z                        [batch, pos, n_heads, d_head]
    blocks.{l}.hook_attn_out, blocks.{l}.hook_mlp_out   [batch, pos, d_model]
    blocks.{l}.mlp.hook_pre / hook_post           [batch, pos, d_mlp]
    blocks.{l}.ln1.hook_normalized, blocks.{l}.ln2.hook_normalized,
    ln_final.hook_normalized                      (only when normalization is on)

When ``read_positions`` is given, the *last* block computes queries, the MLP and
everything after it only at those positions (keys and values still see every
position), so its hooks from ``hook_q`` onwards have ``len(read_positions)``
positions. This roughly halves a training step for tasks read at one position.

Speed without changing a number: Q, K and V are one matrix product, biases are
added inside the products (``addmm``), a hook point with no hook attached is
skipped, residual additions and the ReLU write into the fresh sublayer outputs
when no hook could hold them, and a forward pass with gradients off and no hook
runs in slices of the batch (4M activations each; on one torch thread). None of these changes a bit:
a run with a no-op hook on every point, a cached run and a plain run agree
exactly (tests/test_transformer.py), which activation patching relies on; for
the same reason attention is always the explicit ``softmax(q k^T / sqrt(d_head))
v`` (a fused kernel would round differently). ``benchmarks/vs_transformer_lens.py``
compares the speed with TransformerLens.

Used in every chapter; defined in chapter 3 ("the transformer in tensor notation").

>>> cfg = TransformerConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32,
...                         d_vocab=10, n_ctx=4, seed=0)
>>> model = HookedTransformer(cfg)
>>> tokens = torch.tensor([[1, 2, 3, 4]])
>>> model(tokens).shape
torch.Size([1, 4, 10])
>>> logits, cache = model.run_with_cache(tokens)
>>> cache["blocks.0.attn.hook_pattern"].shape
torch.Size([1, 2, 4, 4])
>>> cache["pattern", 0].shape          # TransformerLens-style short key
torch.Size([1, 2, 4, 4])
>>> torch.allclose(model(tokens, read_positions=[-1]), logits[:, [-1]], atol=1e-6)
True
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers._factored import FactoredMatrix
from helpers._util import check_hooks

__all__ = [
    "TransformerConfig",
    "HookedTransformer",
    "HookPoint",
    "ActivationCache",
    "HookHandle",
    "register_weight_transform",
    "weight_transforms",
    "weight_transform_module",
    "act_name",
    "FactoredMatrix",
]

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "silu": F.silu,
    "identity": lambda x: x,
}
NORMALIZATIONS = (None, "LN", "RMS")
ATTENTION_MODES = ("normal", "constant")
CONSTANT_ATTENTION = ("mean", "sum")
POSITIONAL = ("learned", "none")
DTYPES = {"float32": torch.float32, "float64": torch.float64}

# ---------------------------------------------------------------------------
# The seam for quantized linear maps (chapter 8).
# ---------------------------------------------------------------------------
_WEIGHT_TRANSFORMS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "none": lambda w: w,
}


def register_weight_transform(name: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Register a map applied to every hidden linear weight before use.

    A config with ``weight_transform=name`` applies ``fn`` to ``W_Q, W_K, W_V,
    W_O, W_in, W_out`` on every forward pass (embedding and unembedding stay
    full precision). ``fn`` should implement its own straight-through gradient,
    e.g. ``w + (quantize(w) - w).detach()``. Not used by a page; the hook for chapter 8's quantized weights.

    >>> register_weight_transform("sign_ste", lambda w: w + (torch.sign(w) - w).detach())
    >>> "sign_ste" in weight_transforms()
    True
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, got {name!r}")
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if name == "none":
        raise ValueError("name 'none' is the identity every model uses by default; register under another name")
    _WEIGHT_TRANSFORMS[name] = fn


def weight_transforms() -> list[str]:
    """Names accepted by ``TransformerConfig.weight_transform``."""
    return sorted(_WEIGHT_TRANSFORMS)


def weight_transform_module(name: str) -> str:
    """The module that registered weight transform ``name`` (recorded by :mod:`helpers.store`
    so that loading a checkpoint imports it first).

    >>> weight_transform_module("none")
    'helpers.transformer'
    """
    if name not in _WEIGHT_TRANSFORMS:
        raise ValueError(f"weight transform {name!r} is not registered; known: {weight_transforms()}")
    return getattr(_WEIGHT_TRANSFORMS[name], "__module__", None) or __name__


# ---------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------
@dataclass
class TransformerConfig:
    """Everything that defines a model's architecture and initialisation.

    Parameters
    ----------
    n_layers, d_model, n_heads, d_head, d_mlp : int
        Sizes. ``n_layers=0`` is the bigram model ``W_E W_U``; ``d_mlp`` is
        ignored (may be 0) when ``attn_only``.
    d_vocab : int
        Input vocabulary size.
    n_ctx : int
        Maximum sequence length.
    d_vocab_out : int or None
        Output vocabulary size; ``None`` means ``d_vocab``.
    act_fn : {"relu", "gelu", "silu", "identity"}
    normalization : {None, "LN", "RMS"}
        Pre-norm before attention and MLP.
    final_normalization : {None, "LN", "RMS", "same"}
        Before the unembedding; ``"same"`` copies ``normalization``.
    attn_only : bool
        No MLPs (chapter 3).
    attention_mode : {"normal", "constant"}
        ``"constant"``: every query attends uniformly to itself and all earlier
        positions, with no ``W_Q``/``W_K``: the "pizza" setting of Zhong et al.
        The weight each position gets is set by ``constant_attention``.
    constant_attention : {"mean", "sum"}
        With ``attention_mode="constant"``: ``"mean"`` (default, every shipped
        model) gives each allowed position weight ``1/(i+1)``, averaging the
        value vectors; ``"sum"`` gives each weight 1, adding them, as Zhong et
        al.'s code does. Training under either finds equivalent solutions, but
        weights trained under one convention are read *wrong* under the other
        (the attention output is scaled by ``i+1``; the MLP after it is not
        linear). Ignored for normal attention.
    positional_embedding : {"learned", "none"}
    attn_bias, mlp_bias, unembed_bias : bool
        Biases ``b_Q, b_K, b_V, b_O``; ``b_in, b_out``; ``b_U``.
    weight_transform : str
        Name registered with :func:`register_weight_transform` ("none" = full
        precision).
    init_std : float or None
        Standard deviation of every weight at initialisation; ``None`` means
        ``1/sqrt(d_model)`` (and ``1/sqrt(d_vocab_out)`` for ``W_U``), the
        initialisation of Nanda et al.'s grokking code.
    seed : int
        Seed of the initialisation.
    dtype : {"float32", "float64"}
    """

    n_layers: int | None = None
    d_model: int | None = None
    n_heads: int | None = None
    d_head: int | None = None
    d_mlp: int | None = None
    d_vocab: int | None = None
    n_ctx: int | None = None
    d_vocab_out: int | None = None
    act_fn: str = "relu"
    normalization: str | None = None
    final_normalization: str | None = "same"
    attn_only: bool = False
    attention_mode: str = "normal"
    constant_attention: str = "mean"
    positional_embedding: str = "learned"
    attn_bias: bool = False
    mlp_bias: bool = True
    unembed_bias: bool = False
    weight_transform: str = "none"
    init_std: float | None = None
    seed: int = 0
    dtype: str = "float32"
    use_attn_result: bool = False
    # TransformerLens's names, accepted as aliases (not stored twice)
    normalization_type: dataclasses.InitVar[str | None] = "unset"
    positional_embedding_type: dataclasses.InitVar[str | None] = "unset"

    def __post_init__(self, normalization_type="unset", positional_embedding_type="unset") -> None:
        if normalization_type != "unset":
            if self.normalization is not None and self.normalization != normalization_type:
                raise ValueError("give normalization or its TransformerLens alias normalization_type, not both")
            self.normalization = normalization_type
        if positional_embedding_type != "unset":
            tl = {"standard": "learned", None: "none", "none": "none"}
            if positional_embedding_type not in tl:
                raise ValueError(
                    f"positional_embedding_type {positional_embedding_type!r} is not supported; "
                    "this model has 'standard' (learned) positions or none"
                )
            self.positional_embedding = tl[positional_embedding_type]
        missing = [n for n in ("n_layers", "d_model", "n_heads", "d_vocab", "n_ctx") if getattr(self, n) is None]
        if missing:
            raise TypeError(
                f"TransformerConfig needs {missing} (sizes have no defaults: no chapter's model is the default)"
            )
        if self.d_head is None and isinstance(self.d_model, int) and isinstance(self.n_heads, int) and self.n_heads > 0:
            self.d_head = self.d_model // self.n_heads
        if self.d_mlp is None:
            self.d_mlp = 0 if self.attn_only else 4 * self.d_model
        if self.d_vocab_out is None:
            self.d_vocab_out = self.d_vocab
        if self.final_normalization == "same":
            self.final_normalization = self.normalization
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError``/``TypeError`` naming the first bad field."""
        sizes = ["n_layers", "d_model", "n_heads", "d_head", "d_vocab", "n_ctx", "d_vocab_out"]
        if not self.attn_only:
            sizes.append("d_mlp")
        for name in sizes + ["d_mlp", "seed"]:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"TransformerConfig.{name} must be an int, got {value!r}")
        if not 0 <= self.seed <= 2**63 - 1:
            raise ValueError(f"TransformerConfig.seed must lie in [0, 2**63 - 1] (what torch.manual_seed takes), "
                             f"got {self.seed}")
        if self.n_layers < 0:
            raise ValueError(f"TransformerConfig.n_layers must be >= 0, got {self.n_layers}")
        for name in sizes[1:]:
            if getattr(self, name) <= 0:
                raise ValueError(f"TransformerConfig.{name} must be positive, got {getattr(self, name)}")
        if self.attn_only and self.d_mlp < 0:
            raise ValueError(f"TransformerConfig.d_mlp must be >= 0, got {self.d_mlp}")
        choices = {
            "act_fn": tuple(ACTIVATIONS),
            "normalization": NORMALIZATIONS,
            "final_normalization": NORMALIZATIONS,
            "attention_mode": ATTENTION_MODES,
            "constant_attention": CONSTANT_ATTENTION,
            "positional_embedding": POSITIONAL,
            "dtype": tuple(DTYPES),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"TransformerConfig.{name} must be one of {list(allowed)}, got {getattr(self, name)!r}"
                )
        for name in ("attn_only", "attn_bias", "mlp_bias", "unembed_bias", "use_attn_result"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"TransformerConfig.{name} must be a bool, got {getattr(self, name)!r}")
        if self.weight_transform not in _WEIGHT_TRANSFORMS:
            raise ValueError(
                f"TransformerConfig.weight_transform {self.weight_transform!r} is not registered; "
                f"known: {weight_transforms()} (chapter 8's helpers.quantized registers 'binary' and "
                "'ternary' when imported)"
            )
        if self.init_std is not None and not (isinstance(self.init_std, (int, float)) and not isinstance(
                self.init_std, bool) and math.isfinite(self.init_std) and self.init_std > 0):
            raise ValueError(f"TransformerConfig.init_std must be a finite positive number or None, got {self.init_std!r}")

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (used by :mod:`helpers.store`)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TransformerConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error that lists them."""
        if not isinstance(d, dict):
            raise TypeError(f"config must be a dict, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TransformerConfig fields: {unknown}")
        return cls(**d)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


# TransformerLens's field names, readable on a config (set after the dataclass is
# built, so that they do not replace the aliases' defaults in ``__init__``).
TransformerConfig.normalization_type = property(lambda self: self.normalization,
                                                doc="TransformerLens's name for ``normalization``.")
TransformerConfig.positional_embedding_type = property(
    lambda self: "standard" if self.positional_embedding == "learned" else "none",
    doc="TransformerLens's name for ``positional_embedding`` ('standard' = learned).")


# ---------------------------------------------------------------------------
# Hooks
# ---------------------------------------------------------------------------
HookFn = Callable[[torch.Tensor, "HookPoint"], "torch.Tensor | None"]


class HookHandle:
    """Returned by :meth:`HookPoint.add` / :meth:`HookedTransformer.add_hook`; ``remove()`` undoes it."""

    def __init__(self, point: HookPoint, fn: HookFn, direction: str) -> None:
        self.point, self.fn, self.direction = point, fn, direction

    def remove(self) -> None:
        fns = self.point._fns if self.direction == "fwd" else self.point._bwd_fns
        if self.fn in fns:
            fns.remove(self.fn)

    def __repr__(self) -> str:
        return f"HookHandle({self.point.name!r}, {self.direction})"


class HookPoint(nn.Module):
    """An identity module whose hooks may read or replace the tensor passing through.

    As in TransformerLens, a hook is called as ``fn(tensor, hook=hook_point)``
    and returns ``None`` (keep the activation) or a tensor of the same shape
    (patching, ablation). A backward hook (``dir="bwd"``) is called the same
    way with the gradient of the loss with respect to the activation.
    """

    def __init__(self) -> None:
        super().__init__()
        self.name: str = ""
        self._fns: list[HookFn] = []
        self._bwd_fns: list[HookFn] = []

    def add(self, fn: HookFn, dir: str = "fwd") -> HookHandle:  # noqa: A002 - TransformerLens's argument name
        if not callable(fn):
            raise TypeError(f"hook for {self.name!r} must be callable, got {type(fn).__name__}")
        if dir not in ("fwd", "bwd"):
            raise ValueError(f"dir must be 'fwd' or 'bwd', got {dir!r}")
        (self._fns if dir == "fwd" else self._bwd_fns).append(fn)
        return HookHandle(self, fn, dir)

    def clear(self) -> None:
        self._fns.clear()
        self._bwd_fns.clear()

    def _checked(self, out, like: torch.Tensor, what: str) -> torch.Tensor:
        if not isinstance(out, torch.Tensor) or out.shape != like.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"{what} on {self.name!r} must return None or a tensor of shape {tuple(like.shape)}, got {got}")
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for fn in list(self._fns):
            out = fn(x, hook=self)
            if out is not None:
                x = self._checked(out, x, "hook")
        if self._bwd_fns and x.requires_grad:
            fns = list(self._bwd_fns)

            def backward(grad: torch.Tensor) -> torch.Tensor:
                for fn in fns:
                    out = fn(grad, hook=self)
                    if out is not None:
                        grad = self._checked(out, grad, "backward hook")
                return grad

            x.register_hook(backward)
        return x

    @property
    def active(self) -> bool:
        """Whether any forward or backward hook is attached (else the point is skipped)."""
        return bool(self._fns or self._bwd_fns)

    def extra_repr(self) -> str:
        return self.name


def _hook(point: HookPoint, x: torch.Tensor) -> torch.Tensor:
    """``point(x)``, skipping the module call when no hook is attached (the usual case)."""
    return point(x) if (point._fns or point._bwd_fns) else x


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ w (+ b)`` over the last axis as one matrix product, the bias added inside it.

    The result is reshaped with ``_unsafe_view`` (as ``torch.matmul`` does), so autograd sees a
    fresh tensor, not a view of the product: the caller may add into it in place without autograd
    replaying the view in the backward pass (a copy of the whole activation). This is safe because
    no backward formula keeps the product itself (``addmm``/``mm`` keep their inputs)."""
    x2 = x.reshape(-1, x.shape[-1])
    out = torch.addmm(b, x2, w) if b is not None else torch.mm(x2, w)
    return torch.ops.aten._unsafe_view(out, (*x.shape[:-1], w.shape[-1]))


_ATTN_HOOKS = frozenset({"q", "k", "v", "z", "pattern", "attn_scores", "result"})
_MLP_HOOKS = frozenset({"pre", "post"})
_TOP_HOOKS = frozenset({"embed", "pos_embed"})
_BLOCK_HOOKS = frozenset({"resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"})


def act_name(name: str, layer: int | None = None) -> str:
    """The full hook name of a short activation name, as TransformerLens's ``get_act_name``.

    >>> act_name("pattern", 1)
    'blocks.1.attn.hook_pattern'
    >>> act_name("pre", 0), act_name("resid_post", 2), act_name("embed")
    ('blocks.0.mlp.hook_pre', 'blocks.2.hook_resid_post', 'hook_embed')

    The library builds every hook name with it; no page uses it yet.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string such as 'pattern' or 'resid_post', got {type(name).__name__}")
    short = name[5:] if name.startswith("hook_") else name
    if short in _TOP_HOOKS:
        if layer is not None:
            raise ValueError(f"{name!r} is not per layer; call act_name({name!r}) without a layer")
        return f"hook_{short}"
    known = sorted(_ATTN_HOOKS | _MLP_HOOKS | _BLOCK_HOOKS | _TOP_HOOKS)
    if short not in _ATTN_HOOKS | _MLP_HOOKS | _BLOCK_HOOKS:
        raise ValueError(f"unknown activation name {name!r}; expected one of {known}")
    if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
        raise ValueError(f"{name!r} needs a layer (an int >= 0), got {layer!r}")
    if short in _ATTN_HOOKS:
        return f"blocks.{layer}.attn.hook_{short}"
    if short in _MLP_HOOKS:
        return f"blocks.{layer}.mlp.hook_{short}"
    return f"blocks.{layer}.hook_{short}"


class ActivationCache(dict):
    """Dict of hook name -> activation, also indexable TransformerLens-style.

    ``cache["pattern", 1]`` is ``cache["blocks.1.attn.hook_pattern"]``;
    ``cache["resid_post", 0]`` is ``cache["blocks.0.hook_resid_post"]``.
    """

    def __getitem__(self, key):
        if isinstance(key, tuple):
            if len(key) != 2:
                raise KeyError(f"use cache[name] or cache[name, layer], got {key!r}")
            try:
                key = act_name(*key)
            except (TypeError, ValueError) as exc:
                raise KeyError(str(exc)) from None
        if not dict.__contains__(self, key):
            near = sorted(k for k in self if str(key).split(".")[-1] in k)[:5]
            raise KeyError(f"no activation {key!r} in the cache" + (f"; similar: {near}" if near else ""))
        return dict.__getitem__(self, key)


# ---------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------
class Norm(nn.Module):
    """LayerNorm (``w``, ``b``) or RMSNorm (``w``), with ``hook_normalized``."""

    def __init__(self, kind: str, d_model: int, dtype: torch.dtype, eps: float = 1e-5) -> None:
        super().__init__()
        self.kind = kind
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d_model, dtype=dtype))
        if kind == "LN":
            self.b = nn.Parameter(torch.zeros(d_model, dtype=dtype))
        self.hook_normalized = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "LN":
            x = x - x.mean(-1, keepdim=True)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        x = self.hook_normalized(x) * self.w
        return x + self.b if self.kind == "LN" else x


class Attention(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        H, D, E, dt = cfg.n_heads, cfg.d_model, cfg.d_head, cfg.torch_dtype
        if cfg.attention_mode == "normal":
            self.W_Q = nn.Parameter(torch.empty(H, D, E, dtype=dt))
            self.W_K = nn.Parameter(torch.empty(H, D, E, dtype=dt))
        self.W_V = nn.Parameter(torch.empty(H, D, E, dtype=dt))
        self.W_O = nn.Parameter(torch.empty(H, E, D, dtype=dt))
        if cfg.attn_bias:
            if cfg.attention_mode == "normal":
                self.b_Q = nn.Parameter(torch.zeros(H, E, dtype=dt))
                self.b_K = nn.Parameter(torch.zeros(H, E, dtype=dt))
            self.b_V = nn.Parameter(torch.zeros(H, E, dtype=dt))
            self.b_O = nn.Parameter(torch.zeros(D, dtype=dt))
        # allowed[q, k]: query q may read key k (k <= q). A non-persistent buffer, so
        # it follows the model to its device and is not part of the checkpoint.
        self.register_buffer("causal_mask", torch.ones(cfg.n_ctx, cfg.n_ctx, dtype=torch.bool).tril(),
                             persistent=False)
        names = ["hook_v", "hook_pattern", "hook_z"]
        if cfg.use_attn_result:  # per-head outputs [batch, pos, n_heads, d_model], as in TransformerLens
            names.append("hook_result")
        if cfg.attention_mode == "normal":  # only hook points that fire exist
            names += ["hook_q", "hook_k", "hook_attn_scores"]
        for name in names:
            setattr(self, name, HookPoint())

    def _proj(self, x: torch.Tensor, names: str, wt) -> list[torch.Tensor]:
        """Project ``x [batch, pos, d_model]`` by ``W_{n}`` for each letter ``n`` of ``names`` in ONE
        matrix product; returns one ``[batch, pos, n_heads, d_head]`` view per letter."""
        cfg = self.cfg
        H, E = cfg.n_heads, cfg.d_head
        ws = [wt(getattr(self, "W_" + n)).permute(1, 0, 2).reshape(cfg.d_model, H * E) for n in names]
        w = ws[0] if len(ws) == 1 else torch.cat(ws, dim=1)
        b = None
        if cfg.attn_bias:
            bs = [getattr(self, "b_" + n).reshape(H * E) for n in names]
            b = bs[0] if len(bs) == 1 else torch.cat(bs)
        out = _linear(x, w, b)
        return list(out.view(*x.shape[:-1], len(names), H, E).unbind(-3))

    def forward(self, x: torch.Tensor, query_idx: torch.Tensor | None = None) -> torch.Tensor:
        """x: [batch, pos, d_model] -> [batch, query_pos, d_model]."""
        cfg, wt = self.cfg, _WEIGHT_TRANSFORMS[self.cfg.weight_transform]
        n_pos = x.shape[1]
        allowed = self.causal_mask[:n_pos, :n_pos] if query_idx is None else self.causal_mask[query_idx, :n_pos]
        if cfg.attention_mode == "normal":
            if query_idx is None:
                q, k, v = self._proj(x, "QKV", wt)
            else:
                k, v = self._proj(x, "KV", wt)
                (q,) = self._proj(x[:, query_idx], "Q", wt)
        else:
            (v,) = self._proj(x, "V", wt)
        # The explicit softmax(q k^T / sqrt(d_head)) v whether or not hooks are attached (a fused
        # kernel such as scaled_dot_product_attention rounds differently, and a run with a no-op
        # hook must reproduce a run without it bit for bit: activation patching relies on it).
        v = _hook(self.hook_v, v)
        if cfg.attention_mode == "normal":
            q = _hook(self.hook_q, q)
            k = _hook(self.hook_k, k)
            # [batch, head, query, key]; the product is fresh, so scaled and masked in place
            scores = (q.transpose(1, 2) @ k.permute(0, 2, 3, 1)).div_(math.sqrt(cfg.d_head))
            scores = scores.masked_fill_(~allowed, float("-inf"))  # keys in the future
            scores = _hook(self.hook_attn_scores, scores)
            pattern = torch.softmax(scores, dim=-1)
        else:
            allowed = allowed.to(x.dtype)
            if cfg.constant_attention == "mean":
                allowed = allowed / allowed.sum(-1, keepdim=True)
            pattern = allowed.expand(x.shape[0], cfg.n_heads, -1, -1)
        pattern = _hook(self.hook_pattern, pattern)
        z = _hook(self.hook_z, (pattern @ v.transpose(1, 2)).transpose(1, 2))  # [batch, query, head, d_head]
        if cfg.use_attn_result:
            out = self.hook_result(torch.einsum("bqhe,hed->bqhd", z, wt(self.W_O))).sum(2)
            return out + self.b_O if cfg.attn_bias else out
        z = z.reshape(*z.shape[:2], cfg.n_heads * cfg.d_head)
        return _linear(z, wt(self.W_O).reshape(cfg.n_heads * cfg.d_head, cfg.d_model),
                       self.b_O if cfg.attn_bias else None)


class MLP(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dt = cfg.torch_dtype
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, cfg.d_mlp, dtype=dt))
        self.W_out = nn.Parameter(torch.empty(cfg.d_mlp, cfg.d_model, dtype=dt))
        if cfg.mlp_bias:
            self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp, dtype=dt))
            self.b_out = nn.Parameter(torch.zeros(cfg.d_model, dtype=dt))
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()
        self.act = ACTIVATIONS[cfg.act_fn]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        wt = _WEIGHT_TRANSFORMS[cfg.weight_transform]
        pre = _linear(x, wt(self.W_in), self.b_in if cfg.mlp_bias else None)
        if cfg.act_fn == "relu" and not (self.hook_pre.active or self.hook_post.active):
            post = pre.relu_()  # pre is a fresh product nobody else holds (ReLU's backward needs only its output)
        else:
            post = _hook(self.hook_post, self.act(_hook(self.hook_pre, pre)))
        return _linear(post, wt(self.W_out), self.b_out if cfg.mlp_bias else None)


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.normalization:
            self.ln1 = Norm(cfg.normalization, cfg.d_model, cfg.torch_dtype)
        self.attn = Attention(cfg)
        if not cfg.attn_only:
            if cfg.normalization:
                self.ln2 = Norm(cfg.normalization, cfg.d_model, cfg.torch_dtype)
            self.mlp = MLP(cfg)
        names = ["hook_resid_pre", "hook_attn_out", "hook_resid_post"]
        if not cfg.attn_only:
            names += ["hook_resid_mid", "hook_mlp_out"]
        for name in names:
            setattr(self, name, HookPoint())

    def forward(self, resid: torch.Tensor, query_idx: torch.Tensor | None = None) -> torch.Tensor:
        resid = _hook(self.hook_resid_pre, resid)
        attn_in = self.ln1(resid) if self.cfg.normalization else resid
        attn_out = self.attn(attn_in, query_idx)
        if query_idx is not None:
            resid = resid[:, query_idx]
        resid = _residual_add(resid, attn_out, self.hook_attn_out)
        if self.cfg.attn_only:
            return _hook(self.hook_resid_post, resid)
        resid = _hook(self.hook_resid_mid, resid)
        mlp_in = self.ln2(resid) if self.cfg.normalization else resid
        resid = _residual_add(resid, self.mlp(mlp_in), self.hook_mlp_out)
        return _hook(self.hook_resid_post, resid)


def _residual_add(resid: torch.Tensor, out: torch.Tensor, point: HookPoint) -> torch.Tensor:
    """``resid + point(out)``; with no hook on ``point``, added in place into ``out`` (a fresh
    sublayer output that no one else holds and whose gradient function does not need it)."""
    if point.active:
        return resid + point(out)
    return out.add_(resid)


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------
class _Holder(nn.Module):
    """A named container so parameter names read ``embed.W_E``, ``unembed.W_U``."""


class HookedTransformer(nn.Module):
    """A config-driven transformer with TransformerLens names and hook points.

    Parameters
    ----------
    cfg : TransformerConfig
    device : str or torch.device, optional
        Default CPU.

    Notes
    -----
    ``forward(tokens)`` takes ``tokens [batch, pos]`` (or ``[pos]``, treated as
    a batch of one) of integer ids below ``d_vocab`` and returns logits
    ``[batch, pos, d_vocab_out]`` — or ``[batch, len(read_positions),
    d_vocab_out]`` when ``read_positions`` is given.
    """

    def __init__(self, cfg: TransformerConfig, device: str | torch.device | None = None) -> None:
        super().__init__()
        if not isinstance(cfg, TransformerConfig):
            raise TypeError(f"cfg must be a TransformerConfig, got {type(cfg).__name__}")
        cfg.validate()
        self.cfg = cfg
        dt = cfg.torch_dtype
        self.embed = _Holder()
        self.embed.W_E = nn.Parameter(torch.empty(cfg.d_vocab, cfg.d_model, dtype=dt))
        self.hook_embed = HookPoint()
        if cfg.positional_embedding == "learned":
            self.pos_embed = _Holder()
            self.pos_embed.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model, dtype=dt))
            self.hook_pos_embed = HookPoint()
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        if cfg.final_normalization:
            self.ln_final = Norm(cfg.final_normalization, cfg.d_model, dt)
        self.unembed = _Holder()
        self.unembed.W_U = nn.Parameter(torch.empty(cfg.d_model, cfg.d_vocab_out, dtype=dt))
        if cfg.unembed_bias:
            self.unembed.b_U = nn.Parameter(torch.zeros(cfg.d_vocab_out, dtype=dt))
        self.hook_dict: dict[str, HookPoint] = {}
        for name, mod in self.named_modules():
            if isinstance(mod, HookPoint):
                mod.name = name
                self.hook_dict[name] = mod
        self.init_weights(cfg.seed)
        if device is not None:
            self.to(device)

    # -- construction ------------------------------------------------------
    def init_weights(self, seed: int | None = None) -> None:
        """Re-draw every weight from N(0, std^2) with a private generator; biases 0, norms 1."""
        cfg = self.cfg
        gen = torch.Generator().manual_seed(cfg.seed if seed is None else seed)
        std = cfg.init_std if cfg.init_std is not None else 1 / math.sqrt(cfg.d_model)
        std_u = cfg.init_std if cfg.init_std is not None else 1 / math.sqrt(cfg.d_vocab_out)
        with torch.no_grad():
            for name, p in self.named_parameters():
                leaf = name.split(".")[-1]
                if leaf.startswith("W_"):
                    s = std_u if leaf == "W_U" else std
                    p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype) * s)
                elif leaf == "w":
                    p.fill_(1.0)
                else:
                    p.zero_()

    def config_dict(self) -> dict:
        """The config as a JSON-serialisable dict (for :mod:`helpers.store`)."""
        return self.cfg.to_dict()

    @classmethod
    def from_config_dict(cls, d: dict) -> HookedTransformer:
        """Build an (initialised, untrained) model from :meth:`config_dict`'s output."""
        return cls(TransformerConfig.from_dict(d))

    @classmethod
    def from_weights(cls, cfg: TransformerConfig, weights: dict) -> HookedTransformer:
        """Build a model from a config and a dict of TransformerLens-named arrays.

        Accepts numpy arrays or tensors keyed ``embed.W_E`` (or the short
        aliases ``W_E``, ``W_pos``, ``W_U``, ``b_U``), ``blocks.0.attn.W_Q``, ...
        Missing, unexpected and mis-shaped entries are reported together.
        """
        model = cls(cfg)
        model.load_weights(weights)
        return model

    def load_weights(self, weights: dict) -> None:
        """Copy a dict of arrays into the parameters, with a clear error listing every mismatch."""
        if not isinstance(weights, dict):
            raise TypeError(f"weights must be a dict of name -> array, got {type(weights).__name__}")
        alias = {"W_E": "embed.W_E", "W_pos": "pos_embed.W_pos", "W_U": "unembed.W_U", "b_U": "unembed.b_U"}
        own = dict(self.named_parameters())
        given = {alias.get(k, k): v for k, v in weights.items()}
        missing = sorted(set(own) - set(given))
        unexpected = sorted(set(given) - set(own))
        bad_shape = []
        for k in sorted(set(own) & set(given)):
            shape = tuple(getattr(given[k], "shape", ()))
            if shape != tuple(own[k].shape):
                bad_shape.append(f"{k}: expected {tuple(own[k].shape)}, got {shape}")
        if missing or unexpected or bad_shape:
            parts = []
            if missing:
                parts.append(f"missing {missing}")
            if unexpected:
                parts.append(f"unexpected {unexpected}")
            if bad_shape:
                parts.append("wrong shapes: " + "; ".join(bad_shape))
            raise ValueError("weights do not match the config: " + " | ".join(parts))
        # Every tensor is checked before any is assigned: a bad one leaves the model untouched.
        checked = {}
        for k, p in own.items():
            v = given[k]
            try:
                v = v if isinstance(v, torch.Tensor) else torch.as_tensor(v)
            except (TypeError, ValueError, RuntimeError) as exc:
                raise TypeError(f"weights[{k!r}] is not an array of numbers ({exc})") from None
            if v.is_complex() or v.dtype == torch.bool or not (v.is_floating_point() or v.dtype.is_signed
                                                                or v.dtype == torch.uint8):
                raise TypeError(f"weights[{k!r}] must be real numbers, got dtype {v.dtype}")
            if not torch.isfinite(v).all():
                raise ValueError(f"weights[{k!r}] contains NaN or inf")
            checked[k] = v
        with torch.no_grad():
            for k, p in own.items():
                p.copy_(checked[k].to(dtype=p.dtype, device=p.device))

    # -- convenience views (TransformerLens style) --------------------------
    @property
    def W_E(self) -> torch.Tensor:
        return self.embed.W_E

    @property
    def W_pos(self) -> torch.Tensor:
        if self.cfg.positional_embedding != "learned":
            raise ValueError("this model has no positional embedding (positional_embedding='none')")
        return self.pos_embed.W_pos

    @property
    def W_U(self) -> torch.Tensor:
        return self.unembed.W_U

    def _stack(self, name: str, sub: str = "attn") -> torch.Tensor:
        wt = _WEIGHT_TRANSFORMS[self.cfg.weight_transform]
        return torch.stack([wt(getattr(getattr(b, sub), name)) for b in self.blocks])

    @property
    def W_Q(self) -> torch.Tensor:
        """[n_layers, n_heads, d_model, d_head], as used in the forward pass."""
        if self.cfg.attention_mode != "normal":
            raise ValueError("constant attention has no W_Q / W_K")
        return self._stack("W_Q")

    @property
    def W_K(self) -> torch.Tensor:
        if self.cfg.attention_mode != "normal":
            raise ValueError("constant attention has no W_Q / W_K")
        return self._stack("W_K")

    @property
    def W_V(self) -> torch.Tensor:
        return self._stack("W_V")

    @property
    def W_O(self) -> torch.Tensor:
        return self._stack("W_O")

    @property
    def W_in(self) -> torch.Tensor:
        return self._stack("W_in", "mlp")

    @property
    def W_out(self) -> torch.Tensor:
        return self._stack("W_out", "mlp")

    @property
    def QK(self) -> FactoredMatrix:
        """QK circuits ``W_Q W_K^T`` of every head, ``[n_layers, n_heads, d_model, d_model]``, factored.

        Read through the weight transform, as the forward pass uses them; the
        score of query residual ``x_q`` on key residual ``x_k`` is
        ``x_q W_QK x_k^T / sqrt(d_head)`` (plus bias terms). ``model.QK[l, h].AB``
        is one head's matrix; ``.svd()`` and ``.eigenvalues`` never form it.
        """
        return FactoredMatrix(self.W_Q, self.W_K.transpose(-1, -2))

    @property
    def OV(self) -> FactoredMatrix:
        """OV circuits ``W_V W_O`` of every head, ``[n_layers, n_heads, d_model, d_model]``, factored.

        A residual vector ``x`` attended to writes ``x W_OV`` (row-vector
        convention); read through the weight transform like :attr:`QK`.
        """
        return FactoredMatrix(self.W_V, self.W_O)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def device(self) -> torch.device:
        return self.embed.W_E.device

    # -- input checks -------------------------------------------------------
    def _check_tokens(self, tokens) -> torch.Tensor:
        if not isinstance(tokens, torch.Tensor):
            try:
                tokens = torch.as_tensor(tokens)
            except Exception as exc:  # noqa: BLE001 - turn into a clear message
                raise TypeError(f"tokens must be an integer tensor [batch, pos], got {type(tokens).__name__}") from exc
        if tokens.dtype.is_floating_point or tokens.dtype == torch.bool or tokens.is_complex():
            raise TypeError(f"tokens must be an integer tensor, got dtype {tokens.dtype}")
        if tokens.ndim == 1:
            tokens = tokens[None]
        if tokens.ndim != 2:
            raise ValueError(f"tokens must have shape [batch, pos], got {tuple(tokens.shape)}")
        if tokens.shape[1] == 0 or tokens.shape[0] == 0:
            raise ValueError(f"tokens must be non-empty, got shape {tuple(tokens.shape)}")
        if tokens.shape[1] > self.cfg.n_ctx:
            raise ValueError(f"tokens have {tokens.shape[1]} positions but n_ctx is {self.cfg.n_ctx}")
        lo, hi = (int(t) for t in torch.aminmax(tokens))
        if lo < 0 or hi >= self.cfg.d_vocab:
            bad = lo if lo < 0 else hi
            raise ValueError(f"token id {bad} out of range: tokens must lie in [0, d_vocab={self.cfg.d_vocab})")
        if tokens.dtype not in (torch.int64, torch.int32):  # uint8, int16, ...: the embedding takes only these two
            tokens = tokens.long()
        return tokens.to(self.device)

    def _check_positions(self, read_positions, n_pos: int) -> torch.Tensor | None:
        if read_positions is None:
            return None
        if isinstance(read_positions, int):
            read_positions = [read_positions]
        idx = torch.as_tensor(read_positions)
        if idx.dtype.is_floating_point or idx.ndim != 1 or idx.numel() == 0:
            raise ValueError(f"read_positions must be an int or a non-empty 1-D list of ints, got {read_positions!r}")
        if int(idx.min()) < -n_pos or int(idx.max()) >= n_pos:
            raise ValueError(f"read_positions {idx.tolist()} out of range for {n_pos} positions")
        return (idx % n_pos).to(self.device)

    # -- forward ---------------------------------------------------------------
    def forward(self, tokens, read_positions=None, return_type: str = "logits"):
        """Logits ``[batch, pos, d_vocab_out]`` (or at ``read_positions`` only).

        ``return_type="resid"`` returns the final residual stream (after the
        final norm, before the unembedding) instead.
        """
        if return_type not in ("logits", "resid"):
            raise ValueError(f"return_type must be 'logits' or 'resid', got {return_type!r}")
        tokens = self._check_tokens(tokens)
        n_pos = tokens.shape[1]
        idx = self._check_positions(read_positions, n_pos)
        rows = self._chunk_rows(tokens)
        if rows < tokens.shape[0]:
            # No gradient and no hook: the same work in slices of the batch whose activations stay
            # small (cache-sized, reused by the allocator instead of freshly mapped pages each time).
            return torch.cat([self._forward(t, idx, return_type) for t in tokens.split(rows)])
        return self._forward(tokens, idx, return_type)

    _CHUNK_ELEMENTS = 1 << 22
    """Widest activation of one slice of a no-gradient, no-hook forward pass (16 MB in float32, under
    glibc's largest threshold for returning freed memory to the system)."""

    def _chunk_rows(self, tokens: torch.Tensor) -> int:
        """Rows per slice of the batch (the whole batch unless gradients are off, no hook is attached and
        torch runs one thread)."""
        # one thread only: with several, every slice's products add thread barriers, which a busy
        # machine turns into stalls (measured 1.8x slower on 2 shared cores)
        if torch.is_grad_enabled() or torch.get_num_threads() > 1 or any(
                h._fns or h._bwd_fns for h in self.hook_dict.values()):
            return tokens.shape[0]
        c = self.cfg
        widest = tokens.shape[1] * max(3 * c.n_heads * c.d_head, c.d_model, c.d_vocab_out,
                                       0 if c.attn_only else c.d_mlp)
        return max(1, self._CHUNK_ELEMENTS // widest)

    def _forward(self, tokens: torch.Tensor, idx: torch.Tensor | None, return_type: str) -> torch.Tensor:
        n_pos = tokens.shape[1]
        # index_select, not F.embedding: the same lookup, and its backward (index_add) is several
        # times faster on CPU than embedding's dense backward
        W_E = self.embed.W_E
        rows = W_E.index_select(0, tokens.reshape(-1))  # (its backward keeps only the ids: see _linear)
        resid = _hook(self.hook_embed, torch.ops.aten._unsafe_view(rows, (*tokens.shape, W_E.shape[1])))
        if self.cfg.positional_embedding == "learned":
            if self.hook_embed.active or self.hook_pos_embed.active:
                # [batch, pos, d_model] as in TransformerLens, so a hook written for it edits the right axis
                pos = self.hook_pos_embed(self.pos_embed.W_pos[:n_pos].expand(tokens.shape[0], -1, -1))
                resid = resid + pos
            else:  # the lookup is fresh and its backward needs only the token ids
                resid = resid.add_(self.pos_embed.W_pos[:n_pos])
        last = len(self.blocks) - 1
        for layer, block in enumerate(self.blocks):
            resid = block(resid, idx if layer == last else None)
        if self.cfg.n_layers == 0 and idx is not None:
            resid = resid[:, idx]
        if self.cfg.final_normalization:
            resid = self.ln_final(resid)
        if return_type == "resid":
            return resid
        return _linear(resid, self.unembed.W_U, self.unembed.b_U if self.cfg.unembed_bias else None)

    # -- hooks ---------------------------------------------------------------
    def _resolve(self, name) -> list[HookPoint]:
        if callable(name) and not isinstance(name, str):
            return [h for n, h in self.hook_dict.items() if name(n)]
        if name not in self.hook_dict:
            near = [n for n in self.hook_dict if str(name).split(".")[-1] in n][:6]
            raise ValueError(f"unknown hook point {name!r}" + (f"; did you mean one of {near}?" if near else ""))
        return [self.hook_dict[name]]

    def add_hook(self, name, fn: HookFn, dir: str = "fwd") -> HookHandle | list[HookHandle]:  # noqa: A002
        """Add a hook that stays until removed: ``handle.remove()`` or :meth:`reset_hooks`.

        ``name`` is a hook name or a predicate on names (then every matching
        point gets the hook and a list of handles is returned); ``dir="bwd"``
        hooks the gradient instead.
        """
        handles = [hp.add(fn, dir) for hp in self._resolve(name)]
        return handles if callable(name) and not isinstance(name, str) else handles[0]

    def reset_hooks(self) -> None:
        """Remove every hook, forward and backward."""
        for h in self.hook_dict.values():
            h.clear()

    @contextlib.contextmanager
    def hooks(self, fwd_hooks: Iterable[tuple] = (), bwd_hooks: Iterable[tuple] = ()) -> Iterator[HookedTransformer]:
        """Context manager: add ``[(name_or_filter, fn), ...]`` forward and backward hooks, remove them after.

        Backward hooks fire during a ``.backward()`` called inside the block.
        """
        fwd_hooks, bwd_hooks = check_hooks(fwd_hooks, "fwd_hooks"), check_hooks(bwd_hooks, "bwd_hooks")
        handles: list[HookHandle] = []
        try:
            for direction, pairs in (("fwd", fwd_hooks), ("bwd", bwd_hooks)):
                for name, fn in pairs:
                    handles += [hp.add(fn, direction) for hp in self._resolve(name)]
            yield self
        finally:
            for h in handles:
                h.remove()

    def run_with_hooks(self, tokens, fwd_hooks: Sequence[tuple] = (), **kwargs):
        """Forward pass with temporary hooks, e.g. to patch or ablate an activation.

        >>> cfg = TransformerConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, d_mlp=16, d_vocab=5, n_ctx=3)
        >>> model = HookedTransformer(cfg)
        >>> zero = lambda x, hook: torch.zeros_like(x)
        >>> a = model.run_with_hooks([[0, 1, 2]], [("blocks.0.hook_mlp_out", zero), ("blocks.0.hook_attn_out", zero)])
        >>> b = (model.W_E[[0, 1, 2]] + model.W_pos) @ model.W_U   # only the direct path is left
        >>> torch.allclose(a[0], b, atol=1e-6)
        True
        """
        with self.hooks(fwd_hooks):
            return self(tokens, **kwargs)

    def run_with_cache(self, tokens, names_filter=None, fwd_hooks: Sequence[tuple] = (), **kwargs):
        """Forward pass that also returns every (or every selected) hook activation.

        ``names_filter`` is a hook name, a list of names, or a predicate on names.
        Activations are stored after any patching hooks in ``fwd_hooks``.
        Returns ``(logits, ActivationCache)``.
        """
        if names_filter is None:
            names = list(self.hook_dict)
        elif isinstance(names_filter, str):
            names = [h.name for h in self._resolve(names_filter)]
        elif callable(names_filter):
            names = [n for n in self.hook_dict if names_filter(n)]
        else:
            names = [h.name for n in names_filter for h in self._resolve(n)]
        fwd_hooks = check_hooks(fwd_hooks)
        cache = ActivationCache()

        def save(x, hook):
            cache[hook.name] = x.detach()

        with self.hooks(list(fwd_hooks) + [(n, save) for n in names]):
            out = self(tokens, **kwargs)
        return out, cache

    def __repr__(self) -> str:
        c = self.cfg
        kind = "attn-only " if c.attn_only else ""
        return (
            f"HookedTransformer({kind}{c.n_layers} layer(s), d_model={c.d_model}, {c.n_heads}x{c.d_head} heads, "
            f"d_mlp={c.d_mlp if not c.attn_only else 0}, vocab {c.d_vocab}->{c.d_vocab_out}, n_ctx={c.n_ctx}, "
            f"attention={c.attention_mode}, {self.n_params:,} params)"
        )

    # -- TransformerLens ----------------------------------------------------------
    def to_transformer_lens(self, *, emulate: bool = False):
        """This model as a ``transformer_lens.HookedTransformer`` (3.9); see :mod:`helpers._transformer_lens`."""
        from ._transformer_lens import to_transformer_lens

        return to_transformer_lens(self, emulate=emulate)

    @classmethod
    def from_transformer_lens(cls, tl_model, **bias_flags) -> HookedTransformer:
        """Ours from a ``transformer_lens.HookedTransformer`` (3.9); see :mod:`helpers._transformer_lens`."""
        from ._transformer_lens import from_transformer_lens

        return from_transformer_lens(tl_model, cls=cls, **bias_flags)
