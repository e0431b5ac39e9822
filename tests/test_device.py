"""Every model follows its input's device: CPU always, CUDA when one is present.

A reader who opens a chapter on Colab with a GPU runtime runs this code on CUDA:
forward, the cache, hooks, patching, training, saving on the GPU and loading on
the CPU must all work there. The CUDA cases are skipped on a machine without one.
"""
from __future__ import annotations

import pytest
import torch

from helpers import store
from helpers.training import last_position_loss, train
from helpers.transformer import HookedTransformer, TransformerConfig

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))]


def _config(**over):
    base = dict(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, d_vocab=11, n_ctx=6, seed=0)
    base.update(over)
    return TransformerConfig(**base)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("attention", ["normal", "constant"])
def test_forward_cache_hooks_and_patching_follow_the_device(device, attention):
    model = HookedTransformer(_config(attention_mode=attention), device=device)
    cpu = HookedTransformer(_config(attention_mode=attention))
    tokens = torch.randint(0, 11, (4, 6), generator=torch.Generator().manual_seed(0))
    logits, cache = model.run_with_cache(tokens)               # CPU tokens are moved to the model
    assert logits.device.type == device and cache["pattern", 1].device.type == device
    assert torch.allclose(logits.cpu(), cpu(tokens), atol=1e-5)
    # logits at selected positions only
    assert torch.allclose(model(tokens.to(device), read_positions=[-1, 2]).cpu(), cpu(tokens)[:, [-1, 2]], atol=1e-5)
    # patch one activation from another run: the result follows the device too
    other = torch.randint(0, 11, (4, 6), generator=torch.Generator().manual_seed(1))
    _, other_cache = model.run_with_cache(other, names_filter="blocks.0.hook_resid_post")

    def patch(x, hook):
        return other_cache[hook.name]

    patched = model.run_with_hooks(tokens, [("blocks.0.hook_resid_post", patch)])
    _, cpu_other = cpu.run_with_cache(other, names_filter="blocks.0.hook_resid_post")
    expect = cpu.run_with_hooks(tokens, [("blocks.0.hook_resid_post", lambda x, hook: cpu_other[hook.name])])
    assert patched.device.type == device and torch.allclose(patched.cpu(), expect, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_training_saving_on_the_device_and_loading_on_the_cpu(device, tmp_path):
    model = HookedTransformer(_config(), device=device)
    tokens = torch.randint(0, 11, (64, 6), generator=torch.Generator().manual_seed(2))
    targets = tokens[:, 0]                                     # copy the first token
    before = last_position_loss(model, (tokens.to(device), targets.to(device))).item()
    result = train(model, (tokens, targets), last_position_loss, steps=30, lr=1e-2, log_every=10,
                   progress=False, threads=1)
    assert result.history["train_loss"][-1] < before
    assert next(model.parameters()).device.type == device
    store.save("device_test", model, history=result.history, root=tmp_path)
    loaded = store.load("device_test", root=tmp_path)           # CPU by default
    assert loaded.model.device.type == "cpu"
    assert torch.allclose(loaded.model(tokens), model(tokens).cpu(), atol=1e-5)
    again = store.load("device_test", root=tmp_path, device=device)
    assert again.model.device.type == device
    assert torch.equal(again.model.W_E, model.W_E)
