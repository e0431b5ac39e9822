"""Tests for helpers.degeneracy (chapter 7): the three degeneracies and the interaction basis."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import degeneracy as D
from helpers import modular as M
from helpers import store


def _mlp(sizes=(12, 10, 8, 6), seed=0):
    m = D.ReluMLP(list(sizes), seed=seed, dtype="float64")
    return m.eval()


def _acts_fns(m, X):
    with torch.no_grad():
        _, acts = m(X.double(), return_acts=True)
    fns = [(lambda l: (lambda v: m.layer(l, v)))(l) for l in range(m.n_layers)]
    return acts, fns


@pytest.fixture(scope="module")
def small():
    X, Y = D.two_sums_data(3)
    m = _mlp((12, 10, 8, 6), seed=1)
    acts, fns = _acts_fns(m, X)
    return m, X, Y, acts, fns


@pytest.fixture(scope="module")
def trained():
    m = store.load(D.mlp_name(0)).model.to_float64()
    X, Y = D.two_sums_data(7)
    return m, X.double(), Y


# ---------------------------------------------------------------------------
# data, model, checks
# ---------------------------------------------------------------------------
def test_two_sums_data_targets():
    X, Y = D.two_sums_data(5)
    digits = X.reshape(-1, 4, 5).argmax(-1)
    assert torch.equal(Y[:, 0], (digits[:, 0] + digits[:, 1]) % 5)
    assert torch.equal(Y[:, 1], (digits[:, 2] + digits[:, 3]) % 5)
    assert len(torch.unique(digits, dim=0)) == 5 ** 4


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="p must be"):
        D.two_sums_data(1)
    with pytest.raises(ValueError, match="sizes"):
        D.ReluMLP([3])
    with pytest.raises(TypeError, match="acts"):
        D.gram_null_space(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="rtol"):
        D.gram_null_space(torch.zeros(3, 2), rtol=2.0)
    with pytest.raises(ValueError, match="mass"):
        D.edges_for_mass(np.ones(3), 0)
    m = _mlp()
    with pytest.raises(ValueError, match="unknown parameters"):
        D.step_test(m, lambda mm: mm(torch.zeros(1, 12, dtype=torch.float64)).sum(), {"nope": torch.zeros(1)})


def test_trained_mlp_solves_task(trained):
    m, X, Y = trained
    logits = m(X)
    assert (logits[:, :7].argmax(1) == Y[:, 0]).all() and (logits[:, 7:].argmax(1) == Y[:, 1]).all()
    assert D.two_sums_loss(logits, Y).item() < 1e-3


# ---------------------------------------------------------------------------
# The three degeneracies
# ---------------------------------------------------------------------------
def test_gram_null_vectors_annihilate_activations(small):
    m, X, Y, acts, fns = small
    ev, null = D.gram_null_space(acts[0], bias=True)
    assert null.shape[1] == 4            # four one-hot groups, each summing to the constant
    aug = torch.cat([acts[0], torch.ones(len(X), 1, dtype=torch.float64)], 1)
    assert (aug @ null).abs().max() < 1e-12
    assert torch.allclose(null.T @ null, torch.eye(4, dtype=torch.float64), atol=1e-12)


def _loss_fn(X, Y):
    return lambda mm: D.two_sums_loss(mm(X), Y)


def test_activation_direction_is_free_and_random_is_not(trained):
    m, X, Y = trained
    ev, null = D.gram_null_space(X, bias=True)
    d = D.activation_free_direction(null, "W.0", m.W[0].shape, "b.0", seed=0)
    r = D.step_test(m, _loss_fn(X, Y), d, rel_step=0.2)
    assert r.rel_step >= 0.1 - 1e-12
    assert r.rel_free <= 1e-6
    assert r.rel_random > 1e-2


def test_jacobian_direction_is_free(trained):
    m, X, Y = trained
    with torch.no_grad():
        logits = m(X)

    def logprobs(z):
        return torch.cat([torch.log_softmax(z[:7], -1), torch.log_softmax(z[7:], -1)])

    J = D.layer_jacobians(logprobs, logits[:200])
    ev, null = D.jacobian_null_space(J)
    assert null.shape[1] == 2              # one constant shift per softmax head
    assert (J @ null).abs().max() < 1e-12
    d = D.jacobian_free_direction(null, "W.2", m.W[2].shape, "b.2", seed=0)
    r = D.step_test(m, _loss_fn(X, Y), d, rel_step=0.1)
    assert r.rel_free <= 1e-6 and r.rel_random > 1e-2


def test_synchronised_groups_and_direction():
    torch.manual_seed(0)
    x = torch.randn(200, 3, dtype=torch.float64)
    W_in = torch.randn(3, 4, dtype=torch.float64)
    W_in[:, 1] = 2.0 * W_in[:, 0]          # neuron 1 fires exactly where neuron 0 does
    b_in = torch.zeros(4, dtype=torch.float64)
    groups = D.synchronised_groups(x @ W_in + b_in)
    assert groups == [[0, 1]]
    W_out = torch.randn(4, 2, dtype=torch.float64)
    d = D.synchronised_free_direction(groups, W_in, b_in, W_out, ("a", "b", "c"))
    f = lambda Wi, bi, Wo: torch.relu(x @ Wi + bi) @ Wo  # noqa: E731
    for t in (0.5, 10.0):
        assert torch.allclose(f(W_in + t * d["a"], b_in + t * d["b"], W_out + t * d["c"]), f(W_in, b_in, W_out),
                              atol=1e-9)


def test_rescaling_is_free_on_trained_mlp(trained):
    m, X, Y = trained
    new = D.rescaled_neurons(m.W[0], m.b[0], m.W[1], ("W.0", "b.0", "W.1"), min_rel_change=0.1,
                             total_norm=D._weight_norm(dict(m.named_parameters())))
    r = D.step_test_to(m, _loss_fn(X, Y), new)
    assert r.rel_step >= 0.1 and r.rel_free <= 1e-6 and r.rel_random > 1e-2


def test_free_parameter_count_adds_up():
    c = D.free_parameter_count(2, 5, 1, 4, [3, 2])
    assert c == {"activations": 10, "jacobians": 4, "synchronised": 8, "total": 22}


@pytest.mark.slow
def test_canonical_transformer_input_and_jacobian_degeneracy():
    model = D.float64_copy(store.load("modadd_p113").model)
    tokens, labels = M.all_pairs(113)
    idx = torch.arange(0, len(tokens), 7)      # a subset keeps the test fast; the identities are exact
    loss_fn = D.modadd_loss(tokens[idx], labels[idx])
    oh = D.token_position_onehots(tokens, model.cfg.d_vocab, model.cfg.n_ctx)
    ev, null = D.gram_null_space(oh)
    assert null.shape[1] == 2
    d = D.activation_free_direction(null, "W", (oh.shape[1], model.cfg.d_model))["W"]
    d = {"embed.W_E": d[:model.cfg.d_vocab], "pos_embed.W_pos": d[model.cfg.d_vocab:]}
    r = D.step_test(model, loss_fn, d, rel_step=0.1)
    assert r.rel_free <= 1e-6 and r.rel_random > 1e-3


# ---------------------------------------------------------------------------
# The interaction basis
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("bias", [False, True])
def test_whitened_gram_is_identity_and_reconstruction(small, bias):
    m, X, Y, acts, fns = small
    B = D.interaction_basis(acts, fns, bias=bias)
    for l, b in enumerate(B[:-1]):
        f = acts[l].double()
        if bias:
            f = torch.cat([f, torch.ones(len(f), 1, dtype=torch.float64)], 1)
        y = f @ (b.U_kept / b.D_kept.sqrt())
        assert torch.allclose(y.T @ y / len(y), torch.eye(y.shape[1], dtype=torch.float64), atol=1e-6)
        # coordinates reproduce the activations' projection onto the kept subspace; with nothing
        # dropped by M (the input layer here) that is the activations themselves
        coords = b.coords(acts[l])
        rec = b.reconstruct(coords)
        assert torch.allclose(b.coords(rec), coords, atol=1e-6)
        if b.C.shape[1] == b.U_kept.shape[1]:
            assert torch.allclose(rec, acts[l].double(), atol=1e-6)
    # the last layer is centred PCA: coordinates have zero mean and rebuild the outputs
    last = B[-1]
    assert last.coords(acts[-1]).mean(0).abs().max() < 1e-10
    assert torch.allclose(last.reconstruct(last.coords(acts[-1])), acts[-1], atol=1e-6)


def test_input_layer_reconstructed_exactly(small):
    m, X, Y, acts, fns = small
    B = D.interaction_basis(acts, fns)
    assert B[0].size == 12 - 3           # 3 one-hot dependencies dropped, nothing else
    assert torch.allclose(B[0].reconstruct(B[0].coords(acts[0])), acts[0].double(), atol=1e-6)


def test_M_is_diagonal_in_interaction_coordinates(small):
    m, X, Y, acts, fns = small
    B = D.interaction_basis(acts, fns)
    for l in range(len(fns)):
        b, nxt = B[l], B[l + 1]
        J = D.layer_jacobians(lambda c: nxt.coords(fns[l](b.reconstruct(c))), b.coords(acts[l]))
        M = torch.einsum("boi,boj->ij", J, J) / len(J)
        # in interaction coordinates E[J^T J] = identity (the L^(1/2) factor undoes L)
        assert torch.allclose(M, torch.eye(M.shape[0], dtype=torch.float64), atol=1e-6)


def _align(A, B):
    """Max |A - B| after matching each column's sign."""
    s = torch.sign((A * B).sum(0))
    s[s == 0] = 1
    return (A - B * s).abs().max().item()


@pytest.mark.parametrize("layer", [1, 2])
def test_invariance_to_orthogonal_change_of_neuron_basis(small, layer):
    m, X, Y, acts, fns = small
    B = D.interaction_basis(acts, fns)
    d = acts[layer].shape[1]
    Q, _ = torch.linalg.qr(torch.randn(d, d, dtype=torch.float64, generator=torch.Generator().manual_seed(3)))
    acts2 = list(acts)
    acts2[layer] = acts[layer] @ Q
    fns2 = list(fns)
    fns2[layer - 1] = (lambda g: (lambda v: g(v) @ Q))(fns[layer - 1])
    fns2[layer] = (lambda g: (lambda v: g(v @ Q.T)))(fns[layer])
    B2 = D.interaction_basis(acts2, fns2)
    for l in range(len(acts)):
        assert B[l].size == B2[l].size
        assert _align(B[l].coords(acts[l]), B2[l].coords(acts2[l])) < 1e-6, l
    E, E2 = D.edge_weights(acts, fns, B), D.edge_weights(acts2, fns2, B2)
    for e, e2 in zip(E, E2):
        assert np.allclose(e, e2, atol=1e-8 * e.max())
    # the neuron basis is not invariant: its edges change
    N = D.edge_weights(acts, fns, [D.neuron_basis(a) for a in acts])
    N2 = D.edge_weights(acts2, fns2, [D.neuron_basis(a) for a in acts2])
    assert not np.allclose(N[layer - 1], N2[layer - 1], rtol=1e-3)


def test_edges_for_mass_counts():
    assert D.edges_for_mass([np.array([[5.0, 0.0]]), np.array([[3.0, 2.0]])], 0.8) == 2
    assert D.edges_for_mass(np.zeros((2, 2))) == 0
    assert D.edges_for_mass(np.ones((3, 3)), 1.0) == 9


def test_interaction_graph_of_trained_mlp_is_sparser_than_neurons(trained):
    m, X, Y = trained
    acts, fns = _acts_fns(m, X)
    E_ib = D.edge_weights(acts, fns, D.interaction_basis(acts, fns))
    E_n = D.edge_weights(acts, fns, [D.neuron_basis(a) for a in acts])
    assert sum(D.edges_for_mass(e) for e in E_ib) < sum(D.edges_for_mass(e) for e in E_n)


def test_graph_modules_split_two_disconnected_blocks():
    E = [np.kron(np.eye(2), np.ones((3, 3))), np.kron(np.eye(2), np.ones((3, 2)))]
    G, comms = D.graph_modules(E, mass=1.0)
    assert len(comms) == 2
    assert {(0, 0), (1, 0), (2, 0)} <= comms[0] or {(0, 0), (1, 0), (2, 0)} <= comms[1]


def test_sublevel_volume_exponent():
    eps = [1e-2, 1e-4]
    v_reg = D.sublevel_volume(lambda w: (w ** 2).sum(1), eps)
    v_deg = D.sublevel_volume(lambda w: w[:, 0] ** 2, eps)
    slope = lambda v: np.log(v[0] / v[1]) / np.log(eps[0] / eps[1])  # noqa: E731
    assert abs(slope(v_reg) - 1.0) < 0.1 and abs(slope(v_deg) - 0.5) < 0.1
