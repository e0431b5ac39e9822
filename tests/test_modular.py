"""Tests for helpers.modular (chapter 4): data, Fourier tools, progress measures, clock/pizza metrics."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from helpers import modular as M
from helpers import store
from helpers.transformer import HookedTransformer, TransformerConfig, act_name

P = 11


def _grid(p):
    return np.ogrid[:p, :p, :p]


# ---------------------------------------------------------------------------
# Data and configs
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("layout, n_ctx", [("equals", 3), ("pair", 2)])
def test_all_pairs_layouts(layout, n_ctx):
    tokens, labels = M.all_pairs(P, layout)
    assert tokens.shape == (P * P, n_ctx)
    a, b = tokens[:, 0], tokens[:, 1]
    assert torch.equal(labels, (a + b) % P)
    assert torch.equal(a * P + b, torch.arange(P * P))
    if layout == "equals":
        assert (tokens[:, 2] == P).all()


def test_split_is_seeded_disjoint_and_sized():
    d1, d2, d3 = M.make_data(P, 0.3, seed=0), M.make_data(P, 0.3, seed=0), M.make_data(P, 0.3, seed=1)
    assert torch.equal(d1.train_idx, d2.train_idx)
    assert not torch.equal(d1.train_idx, d3.train_idx)
    assert len(d1.train_idx) == round(0.3 * P * P)
    both = torch.cat([d1.train_idx, d1.test_idx]).sort().values
    assert torch.equal(both, torch.arange(P * P))
    assert d1.train_mask.sum() == len(d1.train_idx)
    x, y = d1.train
    assert torch.equal(y, (x[:, 0] + x[:, 1]) % P)


@pytest.mark.parametrize("kwargs, match", [
    (dict(p=15), "odd prime"),
    (dict(p=2), "odd prime"),
    (dict(p=11, frac_train=1.0), "frac_train"),
    (dict(p=11, frac_train=0), "frac_train"),
    (dict(p=11, frac_train=0.001), "empty"),
    (dict(p=11, layout="abc"), "layout"),
])
def test_make_data_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        M.make_data(**kwargs)


def test_make_data_type_error():
    with pytest.raises(TypeError, match="p must be an int"):
        M.make_data(p=11.0)


def test_is_prime():
    assert [n for n in range(30) if M.is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
    assert M.is_prime(113) and not M.is_prime(True) and not M.is_prime(113.0)


def test_canonical_config_is_the_paper_model():
    cfg = M.canonical_config()
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp) == (1, 128, 4, 32, 512)
    assert (cfg.d_vocab, cfg.d_vocab_out, cfg.n_ctx) == (114, 113, 3)
    assert cfg.act_fn == "relu" and cfg.normalization is None and not cfg.attn_bias and not cfg.unembed_bias
    model = HookedTransformer(cfg)
    # positional embedding initialised like every weight, std 1/sqrt(d_model) (not 1/sqrt(3))
    assert abs(model.W_pos.std().item() - 1 / math.sqrt(128)) < 0.02
    cp = M.clock_pizza_config("constant")
    assert (cp.d_vocab, cp.n_ctx, cp.attention_mode) == (59, 2, "constant")
    with pytest.raises(ValueError, match="attention"):
        M.clock_pizza_config("uniform")


def test_task_of_both_layouts_and_errors():
    assert M.task_of(M.canonical_config(p=7)) == (7, "equals")
    assert M.task_of(M.canonical_config(p=7, layout="pair")) == (7, "pair")
    odd = TransformerConfig(n_layers=1, d_model=8, n_heads=1, d_head=8, d_mlp=8, d_vocab=20, d_vocab_out=7, n_ctx=3)
    with pytest.raises(ValueError, match="cannot tell the layout"):
        M.task_of(odd)
    assert M.task_of(odd, layout="equals") == (7, "equals")
    with pytest.raises(ValueError, match="needs d_vocab"):
        M.task_of(M.canonical_config(p=7, layout="pair"), layout="equals")
    with pytest.raises(TypeError):
        M.task_of("model")


# ---------------------------------------------------------------------------
# Fourier tools on synthetic inputs with known answers
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("p", [2, 5, 8, 113])
def test_fourier_basis_orthonormal(p):
    B = M.fourier_basis(p)
    assert torch.allclose(B @ B.T, torch.eye(p, dtype=torch.float64), atol=1e-12)
    assert len(M.fourier_basis_names(p)) == p


@pytest.mark.parametrize("k", [1, 3, 7, 28, 56])
@pytest.mark.parametrize("phase", [0.0, 1.1])
def test_pure_cosine_is_found_as_its_frequency(k, phase):
    p = 113
    x = 2.5 * np.cos(2 * np.pi * k * np.arange(p) / p + phase)
    norms = M.fourier_norms(x)
    assert int(np.argmax(norms)) == k
    assert np.isclose(norms[k], np.linalg.norm(x))  # all the energy is at k (Parseval)
    assert np.allclose(np.delete(norms, k), 0, atol=1e-9)


def test_embedding_from_known_frequencies_gives_exactly_those():
    p, d = 113, 128
    keys = [14, 35, 41, 42, 52]
    B = M.fourier_basis(p).numpy()
    rows = [r for k in keys for r in (2 * k - 1, 2 * k)]
    rng = np.random.default_rng(0)
    scales = np.repeat(rng.uniform(0.5, 2.0, size=len(keys)), 2)[:, None]  # unequal key frequencies
    W_E = B[rows].T @ (scales * rng.normal(size=(len(rows), d)))
    W_E = np.vstack([W_E + 1e-4 * rng.normal(size=(p, d)), rng.normal(size=(1, d))])  # an extra '=' row
    assert M.key_freqs_embedding(W_E, p=p) == keys
    assert M.key_freqs_embedding(W_E, p=p, threshold=0.2) == keys
    spectrum = M.embedding_spectrum(W_E, p)
    assert spectrum.shape == ((p - 1) // 2 + 1,)
    model = HookedTransformer(M.canonical_config(p=p))
    with torch.no_grad():
        model.embed.W_E.copy_(torch.from_numpy(W_E))
    assert M.key_frequencies(model, "embedding") == keys


def test_fourier_2d_parseval_and_sum_terms():
    p = 13
    rng = np.random.default_rng(1)
    x = rng.normal(size=(p, p, 4))
    C = M.fourier_2d(x)
    assert np.allclose((C ** 2).sum((0, 1)), (x ** 2).sum((0, 1)))
    a, b = np.ogrid[:p, :p]
    C = M.fourier_2d(np.sin(2 * np.pi * 5 * (a + b) / p))  # = sin a cos b + cos a sin b
    nz = {tuple(int(i) for i in ij) for ij in zip(*np.nonzero(np.abs(C) > 1e-9))}
    assert nz == {(10, 9), (9, 10)}


def test_fourier_2d_freq_norms_of_a_tuned_neuron():
    p = 13
    acts = _synthetic_neurons(p, [4, 6])
    N = M.fourier_2d_freq_norms(acts)
    assert N.shape == (7, 7, 2)
    C = M.fourier_2d(acts)
    assert np.allclose((N ** 2).sum((0, 1)), (C ** 2).sum((0, 1)))  # nothing lost in the gathering
    for n, k in enumerate([4, 6]):
        mass = N[..., n] ** 2
        on = mass[k, 0] + mass[0, k] + mass[k, k]
        off = mass.sum() - mass[0, 0] - on
        assert off < 0.2 * on


def _synthetic_neurons(p, freqs_per_neuron, seed=0):
    rng = np.random.default_rng(seed)
    a, b = np.ogrid[:p, :p]
    cols = []
    for k in freqs_per_neuron:
        phi = rng.uniform(0, 2 * np.pi)
        cols.append(np.maximum(0, np.cos(2 * np.pi * k * a / p + phi) + np.cos(2 * np.pi * k * b / p + phi)))
    return np.stack(cols, -1)


def test_neuron_fve_and_clusters_on_synthetic_neurons():
    p = 31
    freqs = [3] * 5 + [7] * 3 + [12] * 2
    acts = _synthetic_neurons(p, freqs)
    mixed = acts[..., 0] + acts[..., 5]  # a neuron with two frequencies
    dead = np.zeros((p, p))
    acts = np.concatenate([acts, mixed[..., None], dead[..., None]], -1)
    fve = M.neuron_frequency_fve(acts)
    assert fve.shape == (12, (p - 1) // 2 + 1)
    assert (fve.sum(1)[:10] <= 1 + 1e-9).all()
    nc = M.neuron_clusters(acts, threshold=0.85)
    assert nc.freq[:10].tolist() == freqs
    assert (nc.fve[:10] > 0.85).all() and nc.fve[10] < 0.85
    assert nc.freq[11] == -1 and nc.n_dead == 1
    assert nc.clusters == {3: [0, 1, 2, 3, 4], 7: [5, 6, 7], 12: [8, 9]}
    assert math.isclose(nc.share_explained, 10 / 12)
    assert M.key_freqs_neurons(acts, min_neurons=3) == [3, 7]
    assert M.key_freqs_neurons(acts) == [3, 7, 12]
    with pytest.raises(ValueError, match="threshold"):
        M.neuron_clusters(acts, threshold=1.5)


def test_key_freqs_logit_map_on_a_built_unembedding():
    p, keys = 17, [2, 6]
    model = HookedTransformer(M.canonical_config(p=p, d_model=16, n_heads=2, d_head=8, d_mlp=24))
    B = M.fourier_basis(p)
    rows = [r for k in keys for r in (2 * k - 1, 2 * k)]
    with torch.no_grad():
        model.unembed.W_U.copy_((torch.randn(16, len(rows), dtype=torch.float64) @ B[rows]).float())
    assert M.key_freqs_logit_map(model) == keys
    assert M.key_frequencies(model, "logit_map", threshold=0.1) == keys
    with pytest.raises(ValueError, match="rule"):
        M.key_frequencies(model, "svd")


def test_gini_properties():
    assert M.gini([3, 3, 3]) == 0.0
    assert math.isclose(M.gini([0] * 9 + [1]), 0.9)
    x = np.random.default_rng(0).uniform(size=50)
    assert math.isclose(M.gini(x), M.gini(7 * x))
    with pytest.raises(ValueError):
        M.gini([-1, 2])


# ---------------------------------------------------------------------------
# Restricted and excluded loss
# ---------------------------------------------------------------------------
def _brute_force_projection(L, freqs, constant):
    """Least squares of each (a, b)-slice L[:, :, c] on explicit cos/sin w_k(a+b) vectors."""
    p = L.shape[0]
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    cols = [np.ones(p * p)] if constant else []
    for k in freqs:
        cols += [np.cos(2 * np.pi * k * (a + b) / p).ravel(), np.sin(2 * np.pi * k * (a + b) / p).ravel()]
    X = np.stack(cols, 1)
    coef, *_ = np.linalg.lstsq(X, L.reshape(p * p, p), rcond=None)
    return (X @ coef).reshape(p, p, p)


def test_projection_matches_brute_force_least_squares():
    L = np.random.default_rng(0).normal(size=(P, P, P))
    for constant in (True, False):
        fast = M._sum_projection(L, [2, 5], constant)
        assert np.allclose(fast, _brute_force_projection(L, [2, 5], constant), atol=1e-10)


def test_restricted_and_excluded_on_known_logits():
    p = 23
    a, b, c = _grid(p)
    keys = [4, 9]
    L = 40 * M.ideal_logits(p, keys) + 0.5 * np.cos(a * b * 0.37 + c)  # the algorithm + noise
    full = M._ce_subset(L, None)
    assert M.restricted_loss(L, keys) < full < M.excluded_loss(L, keys)
    assert M.restricted_loss(L, keys) < 1e-4
    assert M.excluded_loss(L, keys) > math.log(p) * 0.8
    assert M.restricted_loss(L, [1, 2]) > 1.0  # the wrong frequencies explain nothing
    assert math.isclose(M.excluded_loss(L, []), full, rel_tol=1e-12)  # removing nothing changes nothing
    with pytest.raises(ValueError, match="key_freqs"):
        M.restricted_loss(L, [12])
    with pytest.raises(ValueError, match="definition"):
        M.restricted_loss(L, keys, definition="neurons")
    with pytest.raises(ValueError, match=r"\[p, p, p\]"):
        M.restricted_loss(L[:, :, :3], keys)


def test_mlp_definition_on_a_model():
    model = HookedTransformer(M.canonical_config(p=P, d_model=16, n_heads=2, d_head=8, d_mlp=32, seed=1))
    data = M.make_data(P, 0.5, seed=0)
    L = M.logit_tensor(model)
    plain = M._ce_subset(L, data.train_idx)
    assert math.isclose(M.excluded_loss(model, [], data.train_idx, definition="mlp"), plain, rel_tol=1e-5)
    # keeping every frequency of the neurons keeps exactly their (a+b)-part
    r = M.restricted_loss(model, list(range(1, (P - 1) // 2 + 1)), definition="mlp")
    assert np.isfinite(r)
    with pytest.raises(TypeError, match="needs a model"):
        M.restricted_loss(L, [1], definition="mlp")
    pm = M.progress_measures(model, [1, 2], data)
    assert math.isclose(pm["train_loss"], plain, rel_tol=1e-9)
    assert set(pm) == {"train_loss", "test_loss", "restricted_loss", "excluded_loss"}


def test_cos_logit_fit_and_ideal_logits():
    p = 17
    L = M.ideal_logits(p, [3, 8], [2.0, -0.5]) + 5.0  # a constant shift is ignored (centred)
    alpha, fve = M.cos_logit_fit(L, [3, 8])
    assert np.allclose(alpha, [2.0, -0.5]) and math.isclose(fve, 1.0)
    with pytest.raises(ValueError, match="weights"):
        M.ideal_logits(p, [3], [1.0, 2.0])


# ---------------------------------------------------------------------------
# Clock / pizza metrics on hand-built logit functions
# ---------------------------------------------------------------------------
def test_distance_irrelevance_hand_built():
    p = 31
    a, b, c = _grid(p)
    k = 5
    w = 2 * np.pi * k / p
    sum_only = np.cos(w * (a + b - c)) + np.cos(2 * np.pi * 3 * (a + b) / p) + 0 * c  # correct logit: f(a+b)
    pizza = np.abs(np.cos(w * (a - b) / 2)) * np.cos(w * (a + b - c))                # correct logit: g(a-b)
    clock = np.cos(w * (a + b - c)) + 0.3 * np.sin(a * 1.7 + b * 1.7) * np.cos(w * (a + b - c))
    assert math.isclose(M.distance_irrelevance(sum_only), 1.0)
    assert M.distance_irrelevance(pizza) < 1e-12
    assert M.distance_irrelevance(clock) > 0.6
    D = M.correct_logit_by_sum_diff(pizza)
    assert np.allclose(D, D[:1])  # constant along a+b for each a-b
    with pytest.raises(ValueError, match="constant"):
        M.distance_irrelevance(np.cos(w * (a + b - c)) + 0 * a)


def test_gradient_symmetricity_hand_built_functions():
    p = 13
    w = 2 * np.pi * 3 / p
    E = torch.tensor([[np.cos(w * x), np.sin(w * x)] for x in range(p)])
    C, S = E[:, 0], E[:, 1]

    def clock(xa, xb):  # cos w(a+b-c) as a bilinear function of the two embeddings
        re = xa[:, :1] * xb[:, :1] - xa[:, 1:] * xb[:, 1:]
        im = xa[:, 1:] * xb[:, :1] + xa[:, :1] * xb[:, 1:]
        return re * C + im * S

    def pizza(xa, xb):  # a function of E(a) + E(b) only
        return torch.relu(xa + xb).pow(2) @ E.T + (xa + xb) @ E.T

    def sum_only(xa, xb):  # the exact logits of a+b, computed from E(a)+E(b)... through a product: a clock
        return clock(xa, xb) ** 3

    assert abs(M.gradient_symmetricity(clock, embeddings=E)) < 1e-9  # cos w(a-b) averages to 0
    assert math.isclose(M.gradient_symmetricity(pizza, embeddings=E), 1.0, rel_tol=1e-9)
    assert M.gradient_symmetricity(sum_only, embeddings=E) < 0.5
    sampled = M.gradient_symmetricity(pizza, n_triples=100, embeddings=E)
    assert math.isclose(sampled, 1.0, rel_tol=1e-9)
    with pytest.raises(ValueError, match="embeddings"):
        M.gradient_symmetricity(clock)
    with pytest.raises(ValueError, match="n_triples"):
        M.gradient_symmetricity(clock, n_triples=0, embeddings=E)
    with pytest.raises(TypeError):
        M.gradient_symmetricity("model")


def _split_subspace_model(w_o_zero=False, seed=0):
    """A model whose logits depend on E(a) and E(b) only through their sum (or, with W_O = 0, on b only).

    Constant attention in the [a, b, =] layout, read at '=': the read position's
    residual is E(=) + W_O W_V (E(a) + E(b) + E(=)) / 3, symmetric in a and b. With
    W_O = 0 and the [a, b] layout the logits see only b (through the residual).
    """
    p, d = 7, 16
    cfg = M.canonical_config(p=p, layout="pair" if w_o_zero else "equals", d_model=d, n_heads=1, d_head=8,
                             d_mlp=24, seed=seed, attention_mode="constant", positional_embedding="none")
    model = HookedTransformer(cfg)
    with torch.no_grad():
        model.blocks[0].mlp.b_in.fill_(0.1)
        if w_o_zero:
            model.blocks[0].attn.W_O.zero_()
    return model


def test_gradient_symmetricity_on_built_models():
    pizza = _split_subspace_model()
    exact = M.gradient_symmetricity(pizza)
    assert math.isclose(exact, 1.0, rel_tol=1e-6)
    only_b = _split_subspace_model(w_o_zero=True)  # grad wrt E(a) is 0: cosine 0
    assert abs(M.gradient_symmetricity(only_b)) < 1e-9
    assert math.isclose(M.gradient_symmetricity(pizza, n_triples=50, seed=3), exact, rel_tol=1e-6)


def test_metrics_accept_both_layouts():
    for layout in ("equals", "pair"):
        model = HookedTransformer(M.canonical_config(p=P, layout=layout, d_model=16, n_heads=2, d_head=8, d_mlp=16))
        assert M.logit_tensor(model).shape == (P, P, P)
        assert M.neuron_activations(model).shape == (P, P, 16)
        assert 0 <= M.distance_irrelevance(model) <= 1.5
        assert -1 <= M.gradient_symmetricity(model, n_triples=40) <= 1
        assert len(M.key_frequencies(model, "embedding")) >= 1


# ---------------------------------------------------------------------------
# Weights from elsewhere
# ---------------------------------------------------------------------------
def test_model_from_weights_round_trip_and_inference():
    src = HookedTransformer(M.clock_pizza_config("constant", p=7, d_model=16, n_heads=2, d_head=8, d_mlp=32))
    arrays = {k: v.numpy() for k, v in src.state_dict().items()}
    arrays["blocks.0.attn.IGNORE"] = np.array(-1e5)     # TransformerLens buffers are dropped
    arrays["blocks.0.attn.mask"] = np.ones((2, 2))
    model = M.model_from_weights(arrays)
    assert model.cfg.attention_mode == "constant" and model.cfg.d_mlp == 32 and M.task_of(model) == (7, "pair")
    tokens = M.all_pairs(7, "pair")[0]
    assert torch.equal(model(tokens), src(tokens))
    short = {("W_E" if k == "embed.W_E" else k): v for k, v in arrays.items()}
    assert torch.equal(M.model_from_weights(short).W_E, src.W_E)


def test_model_from_weights_errors_list_mismatches():
    src = HookedTransformer(M.canonical_config(p=7, d_model=16, n_heads=2, d_head=8, d_mlp=32))
    arrays = {k: v.numpy() for k, v in src.state_dict().items()}
    bad = dict(arrays)
    bad["blocks.0.mlp.W_out"] = np.zeros((32, 15))
    bad["blocks.0.attn.W_extra"] = np.zeros(3)
    with pytest.raises(ValueError) as err:
        M.model_from_weights(bad)
    assert "blocks.0.mlp.W_out" in str(err.value) and "W_extra" in str(err.value)
    missing = {k: v for k, v in arrays.items() if k != "embed.W_E"}
    with pytest.raises(ValueError, match="embed.W_E"):
        M.model_from_weights(missing)
    pair = HookedTransformer(M.canonical_config(p=7, layout="pair", d_model=16, n_heads=2, d_head=8, d_mlp=32))
    with pytest.raises(ValueError, match="layout 'equals' needs"):
        M.model_from_weights({k: v.numpy() for k, v in pair.state_dict().items()}, layout="equals")
    with pytest.raises(TypeError):
        M.model_from_weights([1, 2])


def test_model_from_weights_pizza_with_zero_qk():
    """A constant-attention model stored with ~0 W_Q/W_K (as Zhong et al.'s code keeps them)."""
    src = HookedTransformer(M.clock_pizza_config("constant", p=7, d_model=16, n_heads=2, d_head=8, d_mlp=32))
    arrays = {k: v.numpy() for k, v in src.state_dict().items()}
    zero = np.zeros((2, 16, 8), dtype=np.float32)
    arrays.update({"blocks.0.attn.W_Q": zero, "blocks.0.attn.W_K": zero})
    tokens = M.all_pairs(7, "pair")[0]
    # read as normal attention: uniform softmax = the mean convention, and a warning says so
    with pytest.warns(UserWarning, match="~0"):
        normal = M.model_from_weights(arrays)
    assert normal.cfg.attention_mode == "normal"
    assert torch.allclose(normal(tokens), src(tokens), atol=1e-6)
    # the override drops Q/K instead of refusing them; "sum" doubles the attention output at b
    summed = M.model_from_weights(arrays, attention_mode="constant", constant_attention="sum")
    assert summed.cfg.constant_attention == "sum" and not hasattr(summed.blocks[0].attn, "W_Q")
    assert not torch.allclose(summed(tokens), src(tokens), atol=1e-3)
    halved = dict(arrays, **{"blocks.0.attn.W_V": arrays["blocks.0.attn.W_V"] / 2})
    converted = M.model_from_weights(halved, attention_mode="constant", constant_attention="sum")
    assert torch.allclose(converted(tokens)[:, -1], src(tokens)[:, -1], atol=1e-5)  # exact at the read position
    # Q/K that are not ~0 are dropped with a warning when constant attention is asked for
    loud = dict(arrays, **{"blocks.0.attn.W_Q": np.ones((2, 16, 8), dtype=np.float32)})
    with pytest.warns(UserWarning, match="not ~0"):
        M.model_from_weights(loud, attention_mode="constant")


# ---------------------------------------------------------------------------
# Training, phases, recipes
# ---------------------------------------------------------------------------
def test_grokking_phases():
    h = {"step": [0, 100, 200, 300, 400, 500], "train_acc": [0, 0.5, 1, 1, 1, 1],
         "test_acc": [0, 0, 0.01, 0.02, 0.7, 1.0], "test_loss": [4.6, 6, 9, 8, 0.5, 0.005]}
    ph = M.grokking_phases(h)
    assert ph == {"memorized": 200, "circuits": 200, "generalized": 400, "test_loss_low": 500, "cleaned_up": None,
                  "ratio": 2.0}
    h["sum_sq_weights"] = [10, 30, 30, 28, 20, 10.1]
    assert M.grokking_phases(h)["cleaned_up"] == 500
    with pytest.raises(ValueError, match="test_acc"):
        M.grokking_phases({"step": [0], "train_acc": [0], "test_loss": [1]})


def test_train_modular_small_run_logs_everything():
    p = 23
    model = HookedTransformer(M.clock_pizza_config("constant", p=p, d_model=32, n_heads=2, d_head=16, d_mlp=64))
    data = M.make_data(p, 0.8, seed=0, layout="pair")
    res = M.train_modular(model, data, steps=300, lr=3e-3, weight_decay=1.0, log_every=50, n_snapshots=3,
                          clock_pizza_metrics=True, progress=False)
    h = res.history
    keys = {"step", "train_loss", "train_acc", "test_loss", "test_acc", "gini_embed", "sum_sq_weights",
            "restricted_loss", "excluded_loss", "distance_irrelevance", "grad_symmetricity"}
    assert keys <= set(h)
    assert len({len(v) for v in h.values()}) == 1
    assert h["step"] == [0, 50, 100, 150, 200, 250, 300]
    assert len(res.snapshots) == 3 and 0 in res.snapshots and 300 in res.snapshots
    assert h["train_acc"][-1] > 0.9 and h["train_loss"][-1] < h["train_loss"][0]
    assert np.isfinite(h["grad_symmetricity"][-1]) and all(math.isnan(v) for v in h["grad_symmetricity"][:-1])
    # the logged restricted loss at the end equals a recomputation from the model with the same key rule
    keysf = M.key_frequencies(model, "logit_map")
    assert math.isclose(h["restricted_loss"][-1], M.restricted_loss(model, keysf), rel_tol=1e-6)
    assert math.isclose(h["excluded_loss"][-1], M.excluded_loss(model, keysf, data.train_idx), rel_tol=1e-6)
    with pytest.raises(ValueError, match="layout"):
        M.train_modular(model, M.make_data(p, 0.8, layout="equals"), steps=1)
    with pytest.raises(TypeError, match="ModularData"):
        M.train_modular(model, data.train, steps=1)


def test_recipe_functions_run_tiny():
    model, res = M.train_canonical(p=11, steps=20, log_every=10, n_snapshots=2)
    assert res.history["step"] == [0, 10, 20] and len(res.snapshots) == 2
    assert M.task_of(model) == (11, "equals")
    model, res = M.train_clock_pizza("constant", p=11, steps=20, log_every=10)
    assert M.task_of(model) == (11, "pair") and "grad_symmetricity" in res.history
    start, _ = M.train_clock_pizza("constant", p=11, steps=0)  # Zhong et al.'s W_in: std 1/sqrt(d_mlp)
    default = HookedTransformer(M.clock_pizza_config("constant", p=11))
    assert torch.allclose(start.blocks[0].mlp.W_in, default.blocks[0].mlp.W_in / 2)
    assert torch.equal(start.W_E, default.W_E)
    with pytest.raises(ValueError, match="init"):
        M.train_clock_pizza("constant", p=11, steps=1, init="xavier")
    with pytest.raises(ValueError, match="attention"):
        M.clock_pizza_name("uniform", 0)


def test_recipes_registered():
    names = set(store.recipes())
    assert "modadd_p113" in names
    for att in ("normal", "constant"):
        for s in M.CLOCK_PIZZA_SEEDS:
            assert M.clock_pizza_name(att, s) in names


def test_plots_and_widget_build():
    import matplotlib.pyplot as plt

    model = HookedTransformer(M.canonical_config(p=P, d_model=16, n_heads=2, d_head=8, d_mlp=16))
    ax = M.plot_logit_pattern(model, title="t")
    assert ax.get_xlabel().startswith("a + b")
    M.plot_embedding_spectrum(model, key_freqs=[1, 2])
    h = {"step": [0, 10, 20], "train_loss": [4, 1, 0.1], "test_loss": [4, 5, 0.5],
         "train_acc": [0, 1, 1], "test_acc": [0, 0, 0.9]}
    M.plot_grokking(h)
    snaps = {0: model.state_dict(), 10: model.state_dict()}
    fig = M.snapshot_explorer_static(model.cfg, snaps, neuron=3)
    assert len(fig.axes) == 4
    explorer = M.snapshot_explorer(model.cfg, snaps)
    assert explorer.widget.children and explorer.values["step"] == max(snaps)
    explorer.controls["neuron"].value = 1  # the redraw path runs without a kernel
    assert "<img" in explorer._repr_mimebundle_()["text/html"]
    plt.close("all")
    with pytest.raises(ValueError, match="empty"):
        M.snapshot_explorer_static(model.cfg, {})


# ---------------------------------------------------------------------------
# The shipped checkpoints reproduce the chapter's claims
# ---------------------------------------------------------------------------
needs_canonical = pytest.mark.skipif(not store.exists("modadd_p113"), reason="canonical checkpoint not built")


@needs_canonical
def test_shipped_canonical_model_groks_and_uses_few_frequencies():
    loaded = store.load("modadd_p113")
    model, h = loaded.model, loaded.history
    assert loaded.metrics["train_acc"] == 1.0
    assert loaded.metrics["test_acc"] >= 0.995 and loaded.metrics["test_loss"] <= 0.01
    ph = M.grokking_phases(h)
    assert ph["generalized"] >= 3 * ph["memorized"]
    keys_emb = M.key_frequencies(model, "embedding")
    keys = M.key_frequencies(model, "neurons")
    assert 3 <= len(keys_emb) <= 7
    assert keys == M.key_frequencies(model, "logit_map") and set(keys) <= set(keys_emb)
    nc = M.neuron_clusters(model)
    assert nc.share_explained >= 0.8
    assert h["excluded_loss"][-1] > 100 * h["test_loss"][-1]
    assert h["restricted_loss"][-1] < 3 * h["test_loss"][-1] + 0.01
    snaps = store.load("modadd_p113", snapshots=True).snapshots
    assert [h["step"][i] for i in M._pick_snapshot_steps(h, len(snaps))] == sorted(snaps)


@pytest.mark.skipif(not all(store.exists(M.clock_pizza_name(a, s)) for a in ("normal", "constant")
                            for s in M.CLOCK_PIZZA_SEEDS), reason="clock/pizza checkpoints not built")
def test_shipped_clock_pizza_models():
    gs_normal, di_normal = [], []
    for s in M.CLOCK_PIZZA_SEEDS:
        m = store.load(M.clock_pizza_name("constant", s)).metrics
        assert m["test_acc"] >= 0.99
        assert m["grad_symmetricity"] >= 0.95 and m["distance_irrelevance"] <= 0.35, (s, m)
        n = store.load(M.clock_pizza_name("normal", s)).metrics
        gs_normal.append(n["grad_symmetricity"])
        di_normal.append(n["distance_irrelevance"])
    assert any(g <= 0.7 and d >= 0.6 for g, d in zip(gs_normal, di_normal)), (gs_normal, di_normal)


# ---------------------------------------------------------------------------
# Circularity, logit fits, where the multiplication happens, long runs
# ---------------------------------------------------------------------------
def test_circularity_waves_and_noise():
    p = 13
    t = np.arange(p)
    waves = np.stack([3 * np.cos(2 * np.pi * 2 * t / p), 2 * np.sin(2 * np.pi * 2 * t / p)], 1)
    assert np.allclose(M.circularity(waves, n_components=2), 1.0)
    noise = np.random.default_rng(0).normal(size=(p, 8))
    assert M.circularity(noise).mean() < 0.7            # a random function spreads over frequencies
    with pytest.raises(ValueError, match="n_components"):
        M.circularity(waves, n_components=3)


def test_formula_fits_on_ideal_circles():
    p, k = 13, 3
    a, b, c = np.ogrid[:p, :p, :p]
    clock = np.broadcast_to(np.cos(2 * np.pi * k * (a + b - c) / p), (p, p, p))
    pizza = np.broadcast_to(M._pizza_term(p, k), (p, p, p))
    fc, fp = M._formula_fve(5 * clock + 2.0, k), M._formula_fve(3 * pizza, k)
    assert fc["clock"] == pytest.approx(1, abs=1e-12) and fp["pizza"] == pytest.approx(1, abs=1e-12)
    assert fc["pizza"] < 0.9 and fp["clock"] < 0.9            # the formulas overlap, but neither is the other
    assert fc["pizza"] == pytest.approx(fp["clock"], abs=1e-12)  # one correlation, squared, both ways


def test_clock_pizza_logit_fit_on_a_model():
    p = 13
    model = HookedTransformer(M.clock_pizza_config("constant", p=p, d_model=16, n_heads=2, d_head=8, d_mlp=32))
    fit = M.clock_pizza_logit_fit(model, [2, 5])
    assert fit["freqs"] == [2, 5] and fit["weight"].sum() == pytest.approx(1.0)
    assert ((0 <= fit["clock"]) & (fit["clock"] <= 1)).all() and ((0 <= fit["pizza"]) & (fit["pizza"] <= 1)).all()
    # the first circle by hand: isolate frequency 2 in the embedding and fit
    B = M.fourier_basis(p).float()[[0, 3, 4]]
    probe = HookedTransformer(model.cfg)
    probe.load_state_dict(model.state_dict())
    with torch.no_grad():
        probe.embed.W_E[:p] = B.T @ (B @ model.W_E[:p])
    assert fit["clock"][0] == pytest.approx(M._formula_fve(M.logit_tensor(probe), 2)["clock"], rel=1e-9)
    # constant attention: the pattern does not depend on the input, so freezing it changes nothing
    plain = M.clock_pizza_logit_fit(model, [2, 5], freeze_attention=False)
    assert np.allclose(plain["clock"], fit["clock"], atol=1e-9) and np.allclose(plain["pizza_own"], fit["pizza_own"])
    assert ((0 <= fit["own"]) & (fit["own"] <= 1 + 1e-9)).all()
    with pytest.raises(TypeError, match="HookedTransformer"):
        M.clock_pizza_logit_fit(np.zeros((p, p, p)), [2])
    with pytest.raises(TypeError, match="freeze_attention"):
        M.clock_pizza_logit_fit(model, [2], freeze_attention="yes")


def test_logit_fit_freezes_softmax_attention():
    p = 11
    model = HookedTransformer(M.clock_pizza_config("normal", p=p, d_model=16, n_heads=2, d_head=8, d_mlp=32, seed=1))
    frozen, plain = (M.clock_pizza_logit_fit(model, [3], freeze_attention=f) for f in (True, False))
    # by hand: the isolated circle run with the full model's attention pattern patched in
    name = act_name("pattern", 0)
    _, tokens = M._all_tokens(model)
    _, cache = model.run_with_cache(tokens, names_filter=name, read_positions=[-1])
    B = M.fourier_basis(p).float()[[0, 5, 6]]
    probe = HookedTransformer(model.cfg)
    probe.load_state_dict(model.state_dict())
    with torch.no_grad():
        probe.embed.W_E[:p] = B.T @ (B @ model.W_E[:p])
    with probe.hooks([(name, lambda x, hook: cache[name])]):
        L = M.logit_tensor(probe)
    assert frozen["clock"][0] == pytest.approx(M._formula_fve(L, 3)["clock"], rel=1e-9)
    assert not np.isclose(frozen["clock"][0], plain["clock"][0], rtol=1e-6)   # softmax attention moves


def test_own_frequency_part_of_the_logits():
    p, k = 13, 4
    a, b, c = np.ogrid[:p, :p, :p]
    clock = np.broadcast_to(np.cos(2 * np.pi * k * (a + b - c) / p), (p, p, p))
    leak = np.broadcast_to(np.cos(2 * np.pi * 5 * c / p) * np.cos(2 * np.pi * k * a / p), (p, p, p))
    kept = M._keep_output_freqs(clock + leak, {k, M._fold_freq(3 * k, p)})
    assert np.allclose(kept, clock, atol=1e-12)                  # the other output frequency is dropped
    assert M._fold_freq(3 * k, p) == 1 and M._fold_freq(-2, p) == 2
    pizza = np.broadcast_to(M._pizza_term(p, k), (p, p, p))
    own = M._keep_output_freqs(pizza, {k, M._fold_freq(3 * k, p)})
    centred = pizza - pizza.mean(-1, keepdims=True)
    assert (own ** 2).sum() / (centred ** 2).sum() > 0.99        # the pizza formula lives at k and 3k


def test_attention_to_inputs_and_neuron_terms():
    p = 11
    model = HookedTransformer(M.canonical_config(p=p, d_model=16, n_heads=2, d_head=8, d_mlp=32))
    att = M.attention_to_inputs(model)
    assert att.shape == (p, p, 2, 3) and np.allclose(att.sum(-1), 1)
    const = HookedTransformer(M.clock_pizza_config("constant", p=p, d_model=16, n_heads=2, d_head=8, d_mlp=32))
    assert np.allclose(M.attention_to_inputs(const), 0.5)
    a = np.arange(p)[:, None]
    b = np.arange(p)[None, :]
    w = 2 * np.pi * 4 / p
    lin = np.cos(w * a) + 0.5 * np.sin(w * b)
    prod = np.cos(w * a) * np.cos(w * b)
    other = np.cos(2 * np.pi * 1 * a / p) + 0 * b
    fve = M.neuron_term_fve(np.stack([lin, prod, lin + prod, other], -1), [4, 4, 4, 4])
    assert np.allclose(fve[:3], [[1, 0], [0, 1], [0.5 * 1.25 / (0.5 * 1.25 + 0.25), 0.25 / (0.5 * 1.25 + 0.25)]])
    assert np.allclose(fve[3], 0)          # all of its variance is at another frequency
    assert np.isnan(M.neuron_term_fve(lin[..., None], [-1])).all()
    with pytest.raises(ValueError, match="one entry per neuron"):
        M.neuron_term_fve(np.stack([lin, prod], -1), [4])


def test_unembed_by_cluster_and_fourier_ablations():
    p = 11
    model = HookedTransformer(M.clock_pizza_config("normal", p=p, d_model=16, n_heads=2, d_head=8, d_mlp=32))
    cl = M.neuron_clusters(model, threshold=0.01)
    freqs, shares = M.unembed_fourier_by_cluster(model, cl)
    assert freqs == sorted(cl.clusters) and np.allclose(shares.sum(1), 1)
    ab = M.fourier_ablation_losses(model, [1, 2])
    assert set(ab) == {"full"} | {(w, m) for w in ("embedding", "neurons", "logits") for m in ("keep", "remove")}
    L = M.logit_tensor(model)
    assert ab["logits", "keep"] == pytest.approx(M.restricted_loss(L, [1, 2]))
    # keeping every frequency of the embedding changes nothing; removing every one leaves only the constant
    everything = list(range(1, (p - 1) // 2 + 1))
    full = M.fourier_ablation_losses(model, everything)
    assert full["embedding", "keep"] == pytest.approx(full["full"], abs=1e-5)
    spec = M.unembedding_spectrum(model)
    assert spec.shape == ((p - 1) // 2 + 1,)
    assert np.allclose((spec ** 2).sum(), (model.W_U.detach().double().numpy() ** 2).sum())


def test_long_run_names_and_recipes():
    assert M.clock_pizza_long_name("normal", 1) == "modadd_p59_normal_long_s1"
    assert M.LONG_RUN_STEPS == M.LONG_RUN_STAGES[-1] and list(M.LONG_RUN_STAGES) == sorted(M.LONG_RUN_STAGES)
    last = M.clock_pizza_long_name("constant", 0, M.LONG_RUN_STEPS)
    assert last == f"modadd_p59_constant_long{M.LONG_RUN_STEPS}_s0" and len(M.LONG_RUN_STAGES) > 1
    for att in ("normal", "constant"):
        for s in M.LONG_RUN_SEEDS:
            for steps in M.LONG_RUN_STAGES:
                assert M.clock_pizza_long_name(att, s, steps) in store.recipes()
    with pytest.raises(ValueError, match="exceed"):
        M.train_clock_pizza_long("constant", seed=0, steps=100)
    with pytest.raises(ValueError, match="one of"):
        M.clock_pizza_long_name("normal", 0, 7000)


def _shipped(steps):
    return all(store.exists(M.clock_pizza_long_name(a, s, steps)) for a in ("normal", "constant")
               for s in M.LONG_RUN_SEEDS)


@pytest.mark.parametrize("stage", range(len(M.LONG_RUN_STAGES)))
def test_shipped_long_runs_continue_the_previous_histories(stage):
    steps = M.LONG_RUN_STAGES[stage]
    if not _shipped(steps):
        pytest.skip(f"long clock/pizza checkpoints to {steps} steps not built")
    for att in ("normal", "constant"):
        for s in M.LONG_RUN_SEEDS:
            ck = store.load(M.clock_pizza_long_name(att, s, steps))
            prev = M.clock_pizza_name(att, s) if stage == 0 else M.clock_pizza_long_name(att, s, M.LONG_RUN_STAGES[stage - 1])
            base = store.load(prev)
            h = ck.history
            assert ck.manifest["steps"] == steps and h["step"][-1] == steps
            n = len(base.history["step"])
            assert h["step"][:n] == base.history["step"] and h["test_loss"][:n] == base.history["test_loss"]
            assert all(np.diff(h["step"]) > 0) and ck.metrics["test_acc"] == 1.0
            assert not np.isnan(h["grad_symmetricity"][n:]).any()     # logged at every continuation row
