"""A toy task that exercises the whole pipeline: copy the first token.

Each sequence holds ``n_ctx`` random tokens; the model must output, at the last
position, the token it saw at position 0. One attention head solves it by
attending from the last position to the first, which makes the task a good
first look at an attention pattern. The ``smoke`` checkpoint is a tiny model
trained on it; the "how to use this book" page and the store's tests use it.

>>> tokens, targets = first_token_data(4, n_ctx=5, d_vocab=7, seed=0)
>>> tokens.shape, bool((targets == tokens[:, 0]).all())
(torch.Size([4, 5]), True)

Used on the "how to use this book" page.
"""
from __future__ import annotations

import torch

from helpers._util import attention_patterns as _patterns
from helpers._util import check_int as _check_int
from helpers._util import check_positive_int
from helpers._util import check_seed as _check_seed
from helpers.store import recipe
from helpers.training import accuracy, cross_entropy, last_position_loss, train
from helpers.transformer import HookedTransformer, TransformerConfig

__all__ = ["first_token_data", "smoke_config", "train_smoke", "last_position_loss", "attention_to_first"]


def first_token_data(n: int, n_ctx: int = 6, d_vocab: int = 12, seed: int = 0):
    """``n`` random sequences ``[n, n_ctx]`` and their targets ``[n]`` (the first token)."""
    for name, v in (("n", n), ("n_ctx", n_ctx), ("d_vocab", d_vocab)):
        check_positive_int(v, name)
    gen = torch.Generator().manual_seed(_check_seed(seed))
    tokens = torch.randint(0, d_vocab, (n, n_ctx), generator=gen)
    return tokens, tokens[:, 0].clone()


def smoke_config(seed: int = 0) -> TransformerConfig:
    """A one-layer, one-head attention-only model: 12 tokens, 6 positions."""
    return TransformerConfig(
        n_layers=1, d_model=32, n_heads=1, d_head=16, d_mlp=0, d_vocab=12, n_ctx=6,
        attn_only=True, seed=seed,
    )


@recipe("smoke", "tiny attention-only model that copies the first token (pipeline check)")
def train_smoke(seed: int = 0, steps: int = 400, n_train: int = 2048, progress: bool | None = False):
    """Train the smoke model; returns ``(model, TrainResult)``. About 2 s on a laptop CPU.

    Runs on one torch thread, so a rerun on the same machine is bit-identical
    whatever the machine's thread setting; on another CPU it agrees with the
    shipped checkpoint within rounding (tests check both).
    """
    cfg = smoke_config(seed)
    model = HookedTransformer(cfg)
    train_data = first_token_data(n_train, cfg.n_ctx, cfg.d_vocab, seed=seed)
    test_tokens, test_targets = first_token_data(1024, cfg.n_ctx, cfg.d_vocab, seed=seed + 10_000)

    def metrics(m):
        logits = m(test_tokens, read_positions=[-1])[:, 0]
        return {"test_loss": cross_entropy(logits, test_targets).item(), "test_acc": accuracy(logits, test_targets)}

    result = train(
        model, train_data, last_position_loss, steps=steps, lr=3e-3, weight_decay=0.01,
        warmup_steps=20, batch_size=256, seed=seed, log_every=20, metrics_fn=metrics,
        snapshot_steps=[0, steps // 4, steps], progress=progress, description="smoke model", threads=1,
    )
    return model, result


def attention_to_first(model, tokens: torch.Tensor, layer: int = 0, head: int = 0) -> float:
    """Mean attention paid by the last position to position 0 (exercise solution).

    tokens: [batch, pos]. For a model that has learned the task this is close
    to 1; for uniform attention it is ``1 / pos``.

    >>> cfg = smoke_config()
    >>> from dataclasses import replace
    >>> uniform = HookedTransformer(replace(cfg, attention_mode="constant"))
    >>> tokens, _ = first_token_data(8, cfg.n_ctx, cfg.d_vocab)
    >>> round(attention_to_first(uniform, tokens), 6) == round(1 / cfg.n_ctx, 6)
    True
    """
    _check_int(layer, "layer")
    _check_int(head, "head")
    return _patterns(model, tokens, layer)[:, head, -1, 0].mean().item()
