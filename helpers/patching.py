"""Activation patching from first principles, on :class:`~helpers.transformer.HookedTransformer`.

Run the model on a *source* input and keep one activation; run it again on a
*target* input, but overwrite that activation (at one hook point, optionally
one head and one position) with the source's copy. If the output moves towards
the source's answer, the patched activation carries information the model
uses for that answer. Effects are measured with a metric on the logits, most
often the logit difference between the source's and the target's answers:

    recovered = (metric(patched) - metric(target)) / (metric(source) - metric(target))

which is 0 when patching changes nothing and 1 when it turns the target run
into the source run.

Sites are hook names (build them with :func:`helpers.transformer.act_name`):
activations ``[batch, pos, ...]`` such as ``hook_resid_post``, ``hook_attn_out``,
``hook_mlp_out`` or ``attn.hook_z`` (``[batch, pos, n_heads, d_head]``, so one
head is patched with ``head=h``); ``attn.hook_pattern`` is ``[batch, n_heads,
query_pos, key_pos]`` and is patched by head and query position as well.

>>> import torch
>>> from helpers.transformer import TransformerConfig, HookedTransformer, act_name
>>> model = HookedTransformer(TransformerConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32,
...                                             d_vocab=7, n_ctx=4))
>>> src, tgt = torch.tensor([[1, 2, 3, 4]]), torch.tensor([[1, 2, 5, 4]])
>>> full = patch(model, tgt, src, act_name("resid_post", 0))      # every position: the source run
>>> torch.allclose(full, model(src), atol=1e-6)
True

Used in chapter 6; shared with chapter 3 (a shared module: it imports only
torch and :mod:`helpers.transformer`).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from helpers.transformer import HookedTransformer

__all__ = [
    "logit_diff",
    "patch",
    "patching_effect",
    "patch_sweep",
    "PatchResult",
]

_HEAD_AXIS_PATTERN = ("hook_pattern", "hook_attn_scores")
_HEAD_AXIS_BPH = ("hook_q", "hook_k", "hook_v", "hook_z", "hook_result")


def _check_model(model) -> None:
    if not isinstance(model, HookedTransformer):
        raise TypeError(f"model must be a HookedTransformer, got {type(model).__name__}")


def _check_site(model: HookedTransformer, site) -> str:
    if not isinstance(site, str):
        raise TypeError(f"site must be a hook name (str), e.g. act_name('resid_post', 0), got {type(site).__name__}")
    if site not in model.hook_dict:
        near = [n for n in model.hook_dict if site.split(".")[-1] in n][:6]
        raise ValueError(f"unknown site {site!r}" + (f"; hook points of this kind: {near}" if near else ""))
    return site


def _as_batch(tokens, name: str) -> torch.Tensor:
    t = torch.as_tensor(tokens)
    if t.ndim == 1:
        t = t[None]
    if t.ndim != 2:
        raise ValueError(f"{name} must be tokens [batch, pos], got shape {tuple(t.shape)}")
    return t


def _index(site: str, shape: torch.Size, pos, head) -> tuple:
    """The index of ``activation[index]`` that patching replaces."""
    leaf = site.split(".")[-1]
    idx: list = [slice(None)] * len(shape)
    if leaf in _HEAD_AXIS_PATTERN:      # [batch, n_heads, query_pos, key_pos]
        head_axis, pos_axis = 1, 2
    else:                               # [batch, pos, ...]
        head_axis, pos_axis = (2 if leaf in _HEAD_AXIS_BPH else None), 1
    if head is not None:
        if head_axis is None:
            raise ValueError(f"site {site!r} has no head axis; head= needs attn.hook_z/q/k/v or hook_pattern")
        if isinstance(head, bool) or not isinstance(head, int) or not -shape[head_axis] <= head < shape[head_axis]:
            raise ValueError(f"head must be an int in [0, {shape[head_axis]}), got {head!r}")
        idx[head_axis] = head
    if pos is not None:
        if isinstance(pos, bool) or not isinstance(pos, (int, list, tuple, torch.Tensor)):
            raise ValueError(f"pos must be None, an int, a list of ints or a LongTensor [batch], got {pos!r}")
        p = torch.as_tensor(pos).long().reshape(-1)
        if p.numel() == 0 or int(p.max()) >= shape[pos_axis] or int(p.min()) < -shape[pos_axis]:
            raise ValueError(f"pos {pos!r} out of range for {shape[pos_axis]} positions at {site!r}")
        idx[pos_axis] = p.tolist() if p.numel() > 1 else int(p)
    return tuple(idx)


def patch(
    model: HookedTransformer,
    target_tokens,
    source_tokens=None,
    site: str | Sequence[str] = "",
    *,
    pos=None,
    head: int | None = None,
    source_cache: dict | None = None,
    **forward_kwargs,
) -> torch.Tensor:
    """Logits of the target run with one activation copied in from the source run.

    Parameters
    ----------
    model : HookedTransformer
    target_tokens, source_tokens : LongTensor [batch, pos]
        Same shape (or a source batch of 1, broadcast). ``source_tokens`` may be
        None when ``source_cache`` is given.
    site : str or list of str
        Hook name(s) to patch.
    pos : None, int, list of int, or LongTensor [batch]
        Positions to patch (None: every position). A ``[batch]`` tensor patches
        position ``pos[i]`` in row ``i`` (for inputs whose read position varies).
    head : int, optional
        Patch only this head (sites with a head axis).
    source_cache : dict, optional
        Activations of the source run (from ``run_with_cache``) to reuse.
    forward_kwargs
        Passed to the model (e.g. ``read_positions``).

    Returns
    -------
    logits : Tensor [batch, pos, d_vocab_out]

    Used in chapter 6.
    """
    _check_model(model)
    sites = [site] if isinstance(site, str) else list(site)
    if not sites or sites == [""]:
        raise ValueError("site must name at least one hook point, e.g. act_name('attn_out', 1)")
    sites = [_check_site(model, s) for s in sites]
    target = _as_batch(target_tokens, "target_tokens")
    if source_cache is None:
        if source_tokens is None:
            raise ValueError("give source_tokens or source_cache")
        source = _as_batch(source_tokens, "source_tokens")
        if source.shape[1] != target.shape[1] or source.shape[0] not in (1, target.shape[0]):
            raise ValueError(f"source_tokens {tuple(source.shape)} must match target_tokens {tuple(target.shape)} "
                             "(or have a batch of 1)")
        with torch.no_grad():
            _, source_cache = model.run_with_cache(source, names_filter=sites)
    missing = [s for s in sites if s not in source_cache]
    if missing:
        raise ValueError(f"source_cache lacks {missing}")

    def patch_hook(x, hook):
        src = source_cache[hook.name].to(x.device, x.dtype)
        if src.shape[1:] != x.shape[1:]:
            raise ValueError(f"source activation at {hook.name!r} has shape {tuple(src.shape)}, target {tuple(x.shape)}")
        src = src.expand_as(x) if src.shape[0] == 1 else src
        if src.shape[0] != x.shape[0]:
            raise ValueError(f"source batch {src.shape[0]} does not match target batch {x.shape[0]} at {hook.name!r}")
        out = x.clone()
        if isinstance(pos, torch.Tensor) and pos.ndim == 1 and pos.numel() == x.shape[0] and x.shape[0] > 1:
            rows = torch.arange(x.shape[0], device=x.device)
            p = pos.to(x.device).long()
            leaf = hook.name.split(".")[-1]
            if leaf in _HEAD_AXIS_PATTERN:
                if head is None:
                    out[rows, :, p] = src[rows, :, p]
                else:
                    out[rows, head, p] = src[rows, head, p]
            elif head is None:
                out[rows, p] = src[rows, p]
            else:
                _index(hook.name, x.shape, None, head)  # validates the head
                out[rows, p, head] = src[rows, p, head]
            return out
        idx = _index(hook.name, x.shape, pos, head)
        out[idx] = src[idx]
        return out

    with torch.no_grad():
        return model.run_with_hooks(target, [(s, patch_hook) for s in sites], **forward_kwargs)


def logit_diff(logits: torch.Tensor, pos, good, bad) -> torch.Tensor:
    """Logit of ``good`` minus logit of ``bad`` at position ``pos``, per batch row.

    Parameters
    ----------
    logits : Tensor [batch, pos, d_vocab_out]
    pos : int or LongTensor [batch]
    good, bad : int or LongTensor [batch]
        Token ids.

    Returns
    -------
    Tensor [batch]

    Not named on chapter 6's page: a building block of the functions, recipes or checks behind it.
    """
    if logits.ndim != 3:
        raise ValueError(f"logits must be [batch, pos, d_vocab_out], got shape {tuple(logits.shape)}")
    rows = torch.arange(logits.shape[0], device=logits.device)
    p = torch.as_tensor(pos, device=logits.device).long().expand(logits.shape[0])
    g = torch.as_tensor(good, device=logits.device).long().expand(logits.shape[0])
    b = torch.as_tensor(bad, device=logits.device).long().expand(logits.shape[0])
    at = logits[rows, p]
    return at[rows, g] - at[rows, b]


class PatchResult(dict):
    """What :func:`patching_effect` returns: a dict with the keys below (all floats or Tensors [batch]).

    ``target``, ``source``, ``patched``: the metric on each run (mean over the
    batch); ``recovered``: (patched - target) / (source - target) of the means;
    ``per_example``: the metric of the patched run per row; ``flip_rate``:
    share of rows whose argmax at ``read_pos`` becomes the source's answer.
    """


def patching_effect(
    model: HookedTransformer,
    target_tokens,
    source_tokens,
    site,
    read_pos,
    target_answer,
    source_answer,
    *,
    pos=None,
    head: int | None = None,
) -> PatchResult:
    """Patch ``site`` from source into target and measure how far the answer moves.

    The metric is the logit difference ``logit[source_answer] -
    logit[target_answer]`` at ``read_pos``: negative on the target run, positive
    on the source run. ``recovered`` is 0 (no effect) to 1 (the patched run is
    as confident in the source's answer as the source run).

    Parameters
    ----------
    target_tokens, source_tokens : LongTensor [batch, pos]
    site, pos, head : as in :func:`patch`
    read_pos : int or LongTensor [batch]
        Where the answer is read.
    target_answer, source_answer : int or LongTensor [batch]

    Returns
    -------
    PatchResult

    Used in chapter 6.
    """
    _check_model(model)
    target = _as_batch(target_tokens, "target_tokens").to(model.device)
    source = _as_batch(source_tokens, "source_tokens").to(model.device)
    sites = [site] if isinstance(site, str) else list(site)
    with torch.no_grad():
        t_logits = model(target)
        s_logits, cache = model.run_with_cache(source, names_filter=[_check_site(model, s) for s in sites])
    p_logits = patch(model, target, None, site, pos=pos, head=head, source_cache=cache)

    def metric(lg):
        return logit_diff(lg, read_pos, source_answer, target_answer)

    m_t, m_s, m_p = metric(t_logits).mean().item(), metric(s_logits).mean().item(), metric(p_logits)
    denom = m_s - m_t
    rows = torch.arange(target.shape[0], device=model.device)
    rp = torch.as_tensor(read_pos, device=model.device).long().expand(target.shape[0])
    sa = torch.as_tensor(source_answer, device=model.device).long().expand(target.shape[0])
    flips = (p_logits[rows, rp].argmax(-1) == sa).float().mean().item()
    return PatchResult(
        target=m_t, source=m_s, patched=m_p.mean().item(),
        recovered=(m_p.mean().item() - m_t) / denom if abs(denom) > 1e-12 else float("nan"),
        per_example=m_p, flip_rate=flips,
    )


def patch_sweep(
    model: HookedTransformer,
    target_tokens,
    source_tokens,
    sites: Sequence[str],
    read_pos,
    target_answer,
    source_answer,
    *,
    positions: Sequence[int] | None = None,
    heads: Sequence[int | None] = (None,),
    key: str = "recovered",
) -> torch.Tensor:
    """``patching_effect(...)[key]`` for every site x head x position: Tensor [n_sites, n_heads, n_pos].

    ``positions=None`` patches all positions at once (one column). Not named on chapter 6's page: a building block of the functions, recipes or checks behind it.
    """
    cols = [None] if positions is None else list(positions)
    out = torch.full((len(sites), len(heads), len(cols)), float("nan"))
    for i, s in enumerate(sites):
        for j, h in enumerate(heads):
            for k, p in enumerate(cols):
                r = patching_effect(model, target_tokens, source_tokens, s, read_pos, target_answer, source_answer,
                                    pos=p, head=h)
                out[i, j, k] = float(r[key])
    return out
