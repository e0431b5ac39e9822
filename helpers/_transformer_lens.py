"""Converters between :class:`helpers.transformer.HookedTransformer` and TransformerLens.

TransformerLens is an optional dependency: nothing here imports it until a
converter is called (``pip install transformer_lens==3.9.0``, the last release
with ``transformer_lens.HookedTransformer``; 4.x replaced it by
``TransformerBridge``, which wraps Hugging Face models and is not a target).

Our model and TransformerLens's share parameter names (``embed.W_E``,
``blocks.0.attn.W_Q``, ...), hook names and conventions (row vectors, attention
scores divided by ``sqrt(d_head)``, causal mask applied before
``hook_attn_scores``, LayerNorm ``eps=1e-5``), so a conversion is a copy of the
weights: every hook both models have then agrees to float rounding. The copy
goes straight into the parameters, never through TransformerLens's
``load_and_process_state_dict`` (whose default ``fold_ln``,
``center_writing_weights`` and ``center_unembed`` would change the weights and
several hooks' values).

What does not carry over, and why:

* TransformerLens has every bias (``b_Q, b_K, b_V, b_O, b_in, b_out, b_U``)
  whether or not a model uses it; ours has them only when the config says so.
  Going to TransformerLens, a missing bias becomes zeros; coming back, a bias
  group is kept when any of its entries is non-zero (override with
  ``attn_bias=``, ``mlp_bias=``, ``unembed_bias=``).
* Constant ("pizza") attention and models without a positional embedding have
  no TransformerLens equivalent: there attention is always ``softmax(q k / sqrt
  d_head)`` and ``positional_embedding_type`` is "standard", "rotary",
  "shortformer" or "alibi". They are refused unless ``emulate=True``, which
  writes ``W_Q = W_K = 0`` (every allowed score is 0, so the softmax is exactly
  ``1/(i+1)``) or ``W_pos = 0``: the same numbers, but a model that training
  would move away from constant attention, with extra hooks (``hook_q``,
  ``hook_k``, ``hook_attn_scores``, ``hook_pos_embed``) that ours lacks.
* A registered weight transform (chapter 8's quantized weights), the
  ``"identity"`` activation and a final norm that differs from the blocks'
  norm are refused.
* The config's ``seed`` and ``init_std`` only choose an initialisation and are
  not carried (TransformerLens's ``seed`` would reseed every global generator).
* ``read_positions`` is a forward-pass option of ours with no TransformerLens
  counterpart; convert, then index the logits.
* TransformerLens's ``default_prepend_bos`` and tokenizer only matter for
  string input: the converted model gets no tokenizer and
  ``default_prepend_bos=False``; pass it token ids.

Not used by a chapter page; tested in ``tests/test_transformer_lens.py``.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from .transformer import HookedTransformer, TransformerConfig

__all__ = ["to_transformer_lens", "from_transformer_lens", "TL_VERSION"]

TL_VERSION = "3.9.0"
_INSTALL = f"pip install transformer_lens=={TL_VERSION}"
# TransformerLens's activation names that are the same function as ours
_ACT_FNS = ("relu", "gelu", "silu")


def _import_tl():
    """TransformerLens's ``HookedTransformer`` and ``HookedTransformerConfig``, or a clear ImportError."""
    try:
        import transformer_lens as tl
    except ImportError as exc:
        raise ImportError(
            f"converting to or from TransformerLens needs it installed: {_INSTALL} "
            "(an optional dependency of this book)"
        ) from exc
    if not hasattr(tl, "HookedTransformer") or not hasattr(tl, "HookedTransformerConfig"):
        version = getattr(tl, "__version__", "unknown")
        raise ImportError(
            f"transformer_lens {version} has no HookedTransformer (4.x replaced it by TransformerBridge); "
            f"{_INSTALL}"
        )
    return tl.HookedTransformer, tl.HookedTransformerConfig


# ---------------------------------------------------------------------------
# Our config -> TransformerLens config (a plain dict: testable without TL)
# ---------------------------------------------------------------------------
def tl_config_kwargs(cfg: TransformerConfig, *, emulate: bool = False) -> dict[str, Any]:
    """Keyword arguments of ``transformer_lens.HookedTransformerConfig`` for ``cfg``.

    Raises ``ValueError`` naming the field TransformerLens cannot express
    (see the module docstring; ``emulate=True`` allows constant attention and
    no positional embedding).
    """
    if not isinstance(cfg, TransformerConfig):
        raise TypeError(f"cfg must be a TransformerConfig, got {type(cfg).__name__}")
    if cfg.weight_transform != "none":
        raise ValueError(
            f"weight_transform={cfg.weight_transform!r} has no TransformerLens equivalent "
            "(TransformerLens uses its weights as they are); convert a full-precision model"
        )
    if cfg.attention_mode == "constant" and not emulate:
        raise ValueError(
            "attention_mode='constant' (uniform causal attention, no W_Q/W_K) has no TransformerLens "
            "equivalent: its attention is always softmax(q.k / sqrt(d_head)). Pass emulate=True to write "
            "W_Q = W_K = 0, which gives the same numbers but a model that training would move away from "
            "constant attention"
        )
    if cfg.positional_embedding == "none" and not emulate:
        raise ValueError(
            "positional_embedding='none' has no TransformerLens equivalent (its positional_embedding_type "
            "is 'standard', 'rotary', 'shortformer' or 'alibi'). Pass emulate=True to write W_pos = 0"
        )
    if cfg.final_normalization != cfg.normalization:
        raise ValueError(
            f"final_normalization={cfg.final_normalization!r} differs from normalization={cfg.normalization!r}; "
            "TransformerLens uses one normalization_type for every norm"
        )
    if not cfg.attn_only and cfg.act_fn not in _ACT_FNS:
        raise ValueError(f"act_fn={cfg.act_fn!r} has no TransformerLens equivalent; expected one of {list(_ACT_FNS)}")
    return dict(
        n_layers=cfg.n_layers,
        d_model=cfg.d_model,
        n_ctx=cfg.n_ctx,
        d_head=cfg.d_head,
        n_heads=cfg.n_heads,
        d_mlp=None if cfg.attn_only else cfg.d_mlp,
        d_vocab=cfg.d_vocab,
        d_vocab_out=cfg.d_vocab_out,
        act_fn=None if cfg.attn_only else cfg.act_fn,
        attn_only=cfg.attn_only,
        normalization_type=cfg.normalization,
        positional_embedding_type="standard",
        use_attn_result=cfg.use_attn_result,
        eps=1e-5,
        dtype=cfg.torch_dtype,
        default_prepend_bos=False,
        seed=None,
        init_weights=False,
    )


# ---------------------------------------------------------------------------
# TransformerLens config -> our config (reads attributes: testable with a namespace)
# ---------------------------------------------------------------------------
_TL_NORMS = {None: None, "LN": "LN", "LNPre": "LN", "RMS": "RMS", "RMSPre": "RMS"}
_DTYPES = {torch.float32: "float32", torch.float64: "float64"}


def _unsupported(tc) -> list[str]:
    """Each TransformerLens config setting our model cannot reproduce, as 'name=value (why)'."""
    bad = []

    def flag(name, value, ok, why):
        if not ok:
            bad.append(f"{name}={value!r} ({why})")

    g = lambda name, default=None: getattr(tc, name, default)  # noqa: E731 - short attribute reader
    flag("positional_embedding_type", g("positional_embedding_type"), g("positional_embedding_type") == "standard",
         "only learned absolute positions")
    flag("normalization_type", g("normalization_type"), g("normalization_type") in _TL_NORMS,
         "only LN, LNPre, RMS, RMSPre or None")
    flag("attention_dir", g("attention_dir", "causal"), g("attention_dir", "causal") == "causal", "causal only")
    if not g("attn_only", False):
        flag("act_fn", g("act_fn"), g("act_fn") in _ACT_FNS, f"one of {list(_ACT_FNS)}")
    flag("gated_mlp", g("gated_mlp", False), not g("gated_mlp", False), "plain MLP only")
    flag("num_experts", g("num_experts"), g("num_experts") is None, "no mixture of experts")
    flag("n_key_value_heads", g("n_key_value_heads"), g("n_key_value_heads") is None, "no grouped-query attention")
    flag("use_attn_scale", g("use_attn_scale", True), g("use_attn_scale", True), "scores are divided by sqrt(d_head)")
    d_head = g("d_head")
    scale = g("attn_scale", math.sqrt(d_head) if isinstance(d_head, int) else None)
    flag("attn_scale", scale, isinstance(d_head, int) and scale == math.sqrt(d_head), "must be sqrt(d_head)")
    flag("scale_attn_by_inverse_layer_idx", g("scale_attn_by_inverse_layer_idx", False),
         not g("scale_attn_by_inverse_layer_idx", False), "one attention scale for every layer")
    flag("attn_types", g("attn_types"), g("attn_types") is None, "global attention only")
    flag("parallel_attn_mlp", g("parallel_attn_mlp", False), not g("parallel_attn_mlp", False),
         "attention then MLP")
    flag("use_normalization_before_and_after", g("use_normalization_before_and_after", False),
         not g("use_normalization_before_and_after", False), "pre-norm only")
    flag("final_rms", g("final_rms", False), not g("final_rms", False), "one norm type")
    flag("post_embedding_ln", g("post_embedding_ln", False), not g("post_embedding_ln", False), "no embedding norm")
    flag("use_qk_norm", g("use_qk_norm", False), not g("use_qk_norm", False), "no query/key norm")
    for cap in ("attn_scores_soft_cap", "output_logits_soft_cap"):
        value = g(cap, -1.0)
        flag(cap, value, value is None or value <= 0, "no soft cap")
    flag("use_local_attn", g("use_local_attn", False), not g("use_local_attn", False), "global attention only")
    flag("use_logn_attn", g("use_logn_attn", False), not g("use_logn_attn", False), "no length scaling")
    flag("use_attention_sinks", g("use_attention_sinks", False), not g("use_attention_sinks", False),
         "no attention sinks")
    flag("clip_qkv", g("clip_qkv"), g("clip_qkv") is None, "no clamping of q, k, v")
    flag("load_in_4bit", g("load_in_4bit", False), not g("load_in_4bit", False), "full-precision weights")
    arch = g("original_architecture")
    flag("original_architecture", arch, not (isinstance(arch, str) and arch.startswith("Olmo")),
         "OLMo's query/key norms")
    flag("eps", g("eps", 1e-5), g("eps", 1e-5) == 1e-5, "norms use eps=1e-5")
    flag("dtype", g("dtype", torch.float32), g("dtype", torch.float32) in _DTYPES, "float32 or float64")
    return bad


def config_from_tl(tc, *, attn_bias: bool = False, mlp_bias: bool = True,
                   unembed_bias: bool = False) -> TransformerConfig:
    """Our :class:`TransformerConfig` for a TransformerLens ``HookedTransformerConfig``.

    Raises ``ValueError`` listing every setting our model cannot reproduce.
    """
    bad = _unsupported(tc)
    if bad:
        raise ValueError("this TransformerLens model cannot be converted: " + "; ".join(bad))
    norm = _TL_NORMS[tc.normalization_type]
    return TransformerConfig(
        n_layers=tc.n_layers,
        d_model=tc.d_model,
        n_heads=tc.n_heads,
        d_head=tc.d_head,
        d_mlp=0 if tc.attn_only else tc.d_mlp,
        d_vocab=tc.d_vocab,
        n_ctx=tc.n_ctx,
        d_vocab_out=tc.d_vocab_out,
        act_fn="relu" if tc.attn_only else tc.act_fn,
        normalization=norm,
        final_normalization=norm,
        attn_only=bool(tc.attn_only),
        attention_mode="normal",
        positional_embedding="learned",
        attn_bias=attn_bias,
        mlp_bias=mlp_bias,
        unembed_bias=unembed_bias,
        use_attn_result=bool(getattr(tc, "use_attn_result", False)),
        dtype=_DTYPES[getattr(tc, "dtype", torch.float32)],
    )


# ---------------------------------------------------------------------------
# The converters
# ---------------------------------------------------------------------------
def to_transformer_lens(model: HookedTransformer, *, emulate: bool = False):
    """A ``transformer_lens.HookedTransformer`` (3.9) computing the same function as ``model``.

    Parameters
    ----------
    model : HookedTransformer
        Ours; left unchanged.
    emulate : bool
        Allow constant attention (written as ``W_Q = W_K = 0``) and no
        positional embedding (``W_pos = 0``), which TransformerLens cannot
        express as such.

    Returns
    -------
    transformer_lens.HookedTransformer
        On ``model``'s device, in ``model``'s train/eval mode, with no
        tokenizer; every hook the two models share agrees to float rounding.
    """
    if not isinstance(model, HookedTransformer):
        raise TypeError(f"model must be a helpers.transformer.HookedTransformer, got {type(model).__name__}")
    kwargs = tl_config_kwargs(model.cfg, emulate=emulate)
    TLModel, TLConfig = _import_tl()
    kwargs["device"] = str(model.device)
    with warnings.catch_warnings():  # 3.9 announces 4.x's TransformerBridge on every construction
        warnings.filterwarnings("ignore", message="HookedTransformer is deprecated", category=DeprecationWarning)
        tl_model = TLModel(TLConfig(**kwargs))
    ours = dict(model.named_parameters())
    theirs = dict(tl_model.named_parameters())
    extra = sorted(set(ours) - set(theirs))
    if extra:  # a guard against a TransformerLens release that renames parameters
        raise ValueError(f"TransformerLens's model has no parameters {extra}; is transformer_lens=={TL_VERSION}?")
    with torch.no_grad():
        for name, p in theirs.items():
            if name in ours:
                p.copy_(ours[name].detach())
            elif name.endswith((".W_Q", ".W_K", "W_pos")) or ".b_" in name or name.endswith("b_U"):
                p.zero_()  # a bias ours does not have, or an emulated W_Q/W_K/W_pos
            else:
                raise ValueError(f"no value for TransformerLens parameter {name!r}")
    tl_model.train(model.training)
    return tl_model


def _any_nonzero(params: dict[str, torch.Tensor], suffixes: tuple[str, ...]) -> bool:
    return any(bool((p != 0).any()) for n, p in params.items() if n.endswith(suffixes))


def from_transformer_lens(tl_model, *, attn_bias: bool | None = None, mlp_bias: bool | None = None,
                          unembed_bias: bool | None = None, cls: type = HookedTransformer) -> HookedTransformer:
    """Our :class:`HookedTransformer` computing the same function as a TransformerLens 3.9 model.

    Parameters
    ----------
    tl_model : transformer_lens.HookedTransformer
        Left unchanged. ``LNPre``/``RMSPre`` norms (what ``fold_ln`` leaves)
        become ``LN``/``RMS`` with unit weight and zero bias.
    attn_bias, mlp_bias, unembed_bias : bool or None
        Keep ``b_Q, b_K, b_V, b_O`` / ``b_in, b_out`` / ``b_U``. ``None``: keep a
        group when any of its entries is non-zero. A dropped group must be zero.
    cls : type
        The class to build (a subclass of ours).

    Returns
    -------
    HookedTransformer
        On ``tl_model``'s device, in its train/eval mode.
    """
    TLModel, _ = _import_tl()
    if not isinstance(tl_model, TLModel):
        raise TypeError(
            f"tl_model must be a transformer_lens.HookedTransformer, got {type(tl_model).__name__}"
            + (" (TransformerLens 4's TransformerBridge is not supported)" if "Bridge" in type(tl_model).__name__
               else "")
        )
    tc = tl_model.cfg
    theirs = {n: p.detach() for n, p in tl_model.named_parameters()}
    groups = {
        "attn_bias": (attn_bias, (".b_Q", ".b_K", ".b_V", ".b_O")),
        "mlp_bias": (mlp_bias, (".b_in", ".b_out")),
        "unembed_bias": (unembed_bias, ("b_U",)),
    }
    chosen = {}
    for arg, (value, suffixes) in groups.items():
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"{arg} must be True, False or None, got {value!r}")
        nonzero = _any_nonzero(theirs, suffixes)
        if value is False and nonzero:
            raise ValueError(f"{arg}=False but tl_model's {'/'.join(s.strip('.') for s in suffixes)} are not all zero")
        chosen[arg] = nonzero if value is None else value
    if tc.attn_only:
        chosen["mlp_bias"] = True if mlp_bias is None else mlp_bias  # no MLP: our config's default
    cfg = config_from_tl(tc, **chosen)
    model = cls(cfg)
    own = dict(model.named_parameters())
    with torch.no_grad():
        for name, p in own.items():
            if name in theirs:
                p.copy_(theirs[name])
            elif name.endswith(".w"):  # LNPre / RMSPre: unit weight
                p.fill_(1.0)
            elif name.endswith(".b"):
                p.zero_()
            else:
                raise ValueError(f"tl_model has no parameter {name!r}")
    device = theirs["embed.W_E"].device
    model.to(device)
    model.train(tl_model.training)
    return model
