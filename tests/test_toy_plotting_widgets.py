"""Tests of the shared figures, the widgets and their static twins, and the toy task."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import torch

from helpers import store
from helpers.plotting import attention_heatmap, pattern_grid, training_curves
from helpers.toy import attention_to_first, first_token_data, last_position_loss, smoke_config
from helpers.widgets import interactive_figure, pattern_explorer, pattern_explorer_static


@pytest.fixture(scope="module")
def smoke():
    return store.load("smoke").model


def test_first_token_data_and_bad_input():
    toks, tgt = first_token_data(50, n_ctx=4, d_vocab=9, seed=2)
    assert toks.shape == (50, 4) and toks.max() < 9 and torch.equal(tgt, toks[:, 0])
    assert torch.equal(first_token_data(50, 4, 9, seed=2)[0], toks)
    for bad in (dict(n=0), dict(n=3, n_ctx=-1), dict(n=3, d_vocab=2.0)):
        with pytest.raises(ValueError):
            first_token_data(**bad)


def test_shipped_smoke_model_solves_the_task_by_attending_to_the_first_token(smoke):
    toks, tgt = first_token_data(512, smoke.cfg.n_ctx, smoke.cfg.d_vocab, seed=99)
    acc = (smoke(toks, read_positions=[-1])[:, 0].argmax(-1) == tgt).float().mean().item()
    assert acc > 0.99
    assert last_position_loss(smoke, (toks, tgt)).item() < 0.05
    share = attention_to_first(smoke, toks)
    assert share > 0.8 > 1 / smoke.cfg.n_ctx
    # ablating that attention (uniform pattern) destroys the accuracy
    uniform = lambda p, hook: torch.ones_like(p) / p.shape[-1]  # the last query row sees every key
    ablated = smoke.run_with_hooks(toks, [("blocks.0.attn.hook_pattern", uniform)], read_positions=[-1])
    assert (ablated[:, 0].argmax(-1) == tgt).float().mean().item() < 0.5


def test_plots_draw_and_reject_bad_shapes():
    ax = training_curves({"step": [0, 10, 20], "a": [3, 2, 1], "b": [1, 1, 1]}, ["a", "b"], logx=True, logy=True,
                         title="t")
    assert [l.get_label() for l in ax.get_lines()] == ["a", "b"] and ax.get_xscale() == "log"
    with pytest.raises(ValueError, match="history has no"):
        training_curves({"step": [0]}, ["nope"])
    with pytest.raises(ValueError, match="'step'"):
        training_curves({"a": [0]}, ["a"])
    ax = attention_heatmap(torch.eye(3), tokens=["x", "y", "z"], title="eye")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", "y", "z"]
    with pytest.raises(ValueError, match="query_pos, key_pos"):
        attention_heatmap(torch.ones(2, 2, 2))
    fig = pattern_grid(torch.rand(5, 4, 4), titles=list("abcde"), ncols=3)
    assert len(fig.axes) == 6 and not fig.axes[-1].axison
    with pytest.raises(ValueError, match="n, query_pos, key_pos"):
        pattern_grid(torch.rand(4, 4))
    plt.close("all")


def test_widget_and_its_static_twin_show_the_same_patterns(smoke):
    toks, _ = first_token_data(3, smoke.cfg.n_ctx, smoke.cfg.d_vocab, seed=1)
    w = pattern_explorer(smoke, toks)
    seq_slider, head = w.widget.children[0].children
    assert seq_slider.max == 2 and list(head.options) == [0]
    seq_slider.value = 2  # redraw path runs without a kernel
    live = w.figure().axes[0].images[0].get_array()  # the live figure shows the chosen sequence
    assert torch.allclose(torch.as_tensor(live.data), smoke.run_with_cache(toks)[1]["pattern", 0][2, 0], atol=1e-6)
    assert len([ax for ax in w.static_figure().axes if ax.images]) == 3  # the static twin: every sequence
    fig = pattern_explorer_static(smoke, toks, n=3)
    images = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    _, cache = smoke.run_with_cache(toks)
    for i, img in enumerate(images):
        assert torch.allclose(torch.as_tensor(img.data), cache["pattern", 0][i, 0], atol=1e-6)
    with pytest.raises(ValueError, match="batch, pos"):
        pattern_explorer(smoke, toks[0])
    plt.close("all")


def test_smoke_config_is_valid():
    cfg = smoke_config(3)
    assert cfg.seed == 3 and cfg.attn_only and cfg.n_heads == 1


def test_setup_page_sets_threads_style_and_refuses_bad_input():
    import matplotlib.pyplot as plt
    import torch

    from helpers.plotting import setup_page

    timer = setup_page(threads=1, style={"font.size": 13})
    assert torch.get_num_threads() == 1 and plt.rcParams["font.size"] == 13 and timer.seconds >= 0
    with pytest.raises(ValueError, match="threads"):
        setup_page(threads=0)
    with pytest.raises(TypeError, match="style"):
        setup_page(style=[1])


def test_interactive_figure_carries_the_widget_and_its_static_twin():
    calls = []

    def draw(fig, k, name):
        calls.append((k, name))
        fig.subplots().plot(range(4), [x ** k for x in range(4)], label=name)

    f = interactive_figure(draw, {"k": range(1, 4), "name": ["a", ("bee", "b")]},
                           static_values=[{"k": 1}, {"k": 3, "name": "b"}], ncols=2)
    assert f.values == {"k": 1, "name": "a"} and calls == []  # nothing drawn until shown
    grid = f.static_figure()
    assert calls == [(1, "a"), (3, "b")] and len(grid.subfigs) == 2
    bundle = f._repr_mimebundle_()
    # Jupyter renders the widget view; the HTML book ranks it below text/html, a static image + caption
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/html"].count("<img") == 1 and "Jupyter" in bundle["text/html"]
    f.controls["k"].value = 2
    assert calls[-1] == (2, "a")
    with pytest.raises(ValueError, match="not controls"):
        interactive_figure(draw, {"k": range(3)}, static_values=[{"j": 1}])
    with pytest.raises(TypeError, match="controls"):
        interactive_figure(draw, {"k": 3})
    with pytest.raises(TypeError, match="draw must be callable"):
        interactive_figure(None, {"k": range(3)})
    plt.close("all")
