"""Tests for helpers.circuits (chapter 3): every score against a case with a known answer,
the hand-built induction head, and the shipped trained models."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import circuits as C
from helpers import store
from helpers.transformer import HookedTransformer, TransformerConfig


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_scores(trained, eval_data):
    return C.head_scores(trained, eval_data[:300])


def tiny_model(seed=0, n_layers=2, **kw):
    cfg = TransformerConfig(n_layers=n_layers, d_model=12, n_heads=3, d_head=4, d_mlp=0, d_vocab=9, n_ctx=10,
                            attn_only=True, seed=seed, **kw)
    return HookedTransformer(cfg)


def causal_uniform(n):
    a = torch.tril(torch.ones(n, n))
    return a / a.sum(1, keepdim=True)


# ---------------------------------------------------------------------------
# Circuit matrices
# ---------------------------------------------------------------------------
def test_qk_and_ov_are_products_of_the_weights_and_low_rank():
    m = tiny_model()
    for l in range(2):
        for h in range(3):
            qk, ov = C.qk_matrix(m, l, h), C.ov_matrix(m, l, h)
            assert torch.allclose(qk, m.W_Q[l, h] @ m.W_K[l, h].T)
            assert torch.allclose(ov, m.W_V[l, h] @ m.W_O[l, h])
            assert qk.shape == ov.shape == (12, 12)
            assert int(torch.linalg.matrix_rank(qk)) == 4 and int(torch.linalg.matrix_rank(ov)) == 4
        assert torch.allclose(C.qk_matrix(m, l), torch.stack([C.qk_matrix(m, l, h) for h in range(3)]))


def test_layer0_scores_are_the_full_qk_circuits():
    """In layer 0 of a model without LayerNorm, score[q, k] * sqrt(d_head) is the sum of the
    four embedding-embedding, embedding-position, ... full QK circuits."""
    m = tiny_model(seed=3)
    tokens = torch.tensor([[1, 4, 2, 8, 5, 0, 3]])
    _, cache = m.run_with_cache(tokens)
    scores = cache["attn_scores", 0][0]  # [head, q, k]
    n = tokens.shape[1]
    t = tokens[0]
    for h in range(3):
        parts = (C.full_qk_circuit(m, 0, h, "embed", "embed")[t][:, t]
                 + C.full_qk_circuit(m, 0, h, "embed", "pos")[t][:, :n]
                 + C.full_qk_circuit(m, 0, h, "pos", "embed")[:n][:, t]
                 + C.full_qk_circuit(m, 0, h, "pos", "pos")[:n, :n])
        mask = torch.tril(torch.ones(n, n, dtype=torch.bool))
        assert torch.allclose(scores[h][mask] * math.sqrt(4), parts[mask], atol=1e-5)


def test_full_ov_and_k_composition_circuits(hand):
    m = tiny_model(seed=1)
    assert torch.allclose(C.full_ov_circuit(m, 1, 2), m.W_E @ m.W_V[1, 2] @ m.W_O[1, 2] @ m.W_U, atol=1e-6)
    kc = C.k_composition_circuit(m, (0, 1), (1, 2))
    ref = m.W_E @ C.qk_matrix(m, 1, 2) @ (m.W_E @ C.ov_matrix(m, 0, 1)).T
    assert torch.allclose(kc, ref, atol=1e-5)
    # the hand-built head: query token a attends to keys whose previous token is a
    kc = C.k_composition_circuit(hand, (0, 0), (1, 0))[1:, 1:]
    assert torch.equal(kc.argmax(1), torch.arange(31))
    with pytest.raises(ValueError, match="earlier layer"):
        C.k_composition_circuit(m, (1, 0), (1, 2))
    with pytest.raises(TypeError, match="head0"):
        C.k_composition_circuit(m, 0, (1, 2))


def test_previous_token_head_is_a_stripe_in_the_positional_circuit(hand):
    pp = C.full_qk_circuit(hand, 0, 0, "pos", "pos")
    assert torch.equal(pp[1:].argmax(1), torch.arange(63))
    pat = C.positional_pattern(hand, 0, 0)
    assert pat.shape == (64, 64) and torch.allclose(pat.sum(1), torch.ones(64, dtype=torch.float64))
    assert float(C.previous_token_score(pat)) == pytest.approx(1.0, abs=1e-6)
    assert torch.all(pat.triu(1) == 0)
    assert C.positional_pattern(hand, 0, 0, n_pos=10).shape == (10, 10)
    with pytest.raises(ValueError, match="n_pos"):
        C.positional_pattern(hand, 0, 0, n_pos=65)


def test_circuit_input_errors():
    m = tiny_model()
    with pytest.raises(ValueError, match="layer"):
        C.qk_matrix(m, 2, 0)
    with pytest.raises(ValueError, match="head"):
        C.ov_matrix(m, 0, 3)
    with pytest.raises(TypeError, match="layer must be an int"):
        C.ov_matrix(m, 0.5, 0)
    with pytest.raises(TypeError, match="HookedTransformer"):
        C.qk_matrix(torch.nn.Linear(2, 2), 0, 0)
    with pytest.raises(ValueError, match="query"):
        C.full_qk_circuit(m, 0, 0, query="tokens")
    constant = HookedTransformer(replace(m.cfg, attention_mode="constant"))
    with pytest.raises(ValueError, match="no W_Q/W_K"):
        C.qk_matrix(constant, 0, 0)
    assert C.ov_matrix(constant, 0, 0).shape == (12, 12)  # OV still exists


# ---------------------------------------------------------------------------
# Composition scores
# ---------------------------------------------------------------------------
def test_composition_score_known_answers():
    P = torch.diag(torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0]))
    Q = torch.diag(torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0, 0.0]))
    assert float(C.composition_score(P, Q)) == 0.0  # orthogonal subspaces
    e = torch.zeros(6, 6)
    e[0, 0] = 1.0
    assert float(C.composition_score(e, e)) == pytest.approx(1.0)  # aligned rank one
    for r in (1, 2, 3, 6):
        Pr = torch.diag((torch.arange(6) < r).double())
        assert float(C.composition_score(Pr, Pr)) == pytest.approx(1 / math.sqrt(r))
    g = torch.Generator().manual_seed(0)
    A, B = torch.randn(6, 6, generator=g), torch.randn(6, 6, generator=g)
    assert float(C.composition_score(3 * A, -0.5 * B)) == pytest.approx(float(C.composition_score(A, B)))
    assert 0 <= float(C.composition_score(A, B)) <= 1
    assert float(C.composition_score(torch.zeros(3, 3), A[:3, :3])) == 0.0
    batch = C.composition_score(torch.stack([A, e]), B)
    assert batch.shape == (2,) and float(batch[0]) == pytest.approx(float(C.composition_score(A, B)))
    assert float(C.composition_score(A.numpy(), B.numpy())) == pytest.approx(float(C.composition_score(A, B)))
    with pytest.raises(ValueError, match="share m"):
        C.composition_score(torch.ones(3, 4), torch.ones(3, 4))
    with pytest.raises(ValueError, match="at least 2"):
        C.composition_score(torch.ones(3), torch.ones(3, 3))
    with pytest.raises(TypeError):
        C.composition_score([[1.0]], torch.ones(1, 1))


def test_composition_scores_definitions_and_hand_built_only_k_composes(hand):
    m = tiny_model(seed=2)
    for kind in "QKV":
        s = C.composition_scores(m, kind)
        assert s.shape == (3, 3)
    A = C.ov_matrix(m, 0, 1)
    assert float(C.composition_scores(m, "Q")[1, 2]) == pytest.approx(float(C.composition_score(A, C.qk_matrix(m, 1, 2))))
    assert float(C.composition_scores(m, "K")[1, 2]) == pytest.approx(float(C.composition_score(A, C.qk_matrix(m, 1, 2).T)))
    assert float(C.composition_scores(m, "V")[1, 2]) == pytest.approx(float(C.composition_score(A, C.ov_matrix(m, 1, 2))))
    # The hand-built model writes the previous token into a block that only the layer-1 keys read.
    scores = C.all_composition_scores(hand)
    assert float(scores["Q"][0, 0]) == 0.0 and float(scores["V"][0, 0]) == 0.0
    assert float(scores["K"][0, 0]) > 0.1
    with pytest.raises(ValueError, match="kind"):
        C.composition_scores(m, "X")
    with pytest.raises(ValueError, match="before"):
        C.composition_scores(m, "K", 1, 0)


def test_composition_scores_are_basis_independent():
    onehot = C.induction_head_model(10, 12, dtype="float64")
    rotated = C.induction_head_model(10, 12, basis="random", seed=4, dtype="float64")
    assert not torch.allclose(onehot.W_E, rotated.W_E)
    for kind in "QKV":
        assert torch.allclose(C.composition_scores(onehot, kind), C.composition_scores(rotated, kind), atol=1e-9)


def test_composition_baseline():
    b = C.composition_baseline(64, 16, n_samples=2000, seed=0)
    assert abs(b.mean - 1 / 8) < 0.01  # close to 1/sqrt(d_model)
    assert b.value > b.mean and b.percentile == 99.0 and b.samples.shape == (2000,)
    assert float((b.samples > b.value).double().mean()) == pytest.approx(0.01, abs=0.003)
    again = C.composition_baseline(64, 16, n_samples=2000, seed=0)
    assert torch.equal(b.samples, again.samples)
    assert not torch.equal(b.samples, C.composition_baseline(64, 16, n_samples=2000, seed=1).samples)
    assert b.exceeds(b.value + 1e-6) and not b.exceeds(b.mean)
    with pytest.raises(ValueError, match="percentile"):
        C.composition_baseline(8, 2, percentile=100)
    with pytest.raises(ValueError, match="n_samples"):
        C.composition_baseline(8, 2, n_samples=3)
    with pytest.raises(ValueError, match="d_head"):
        C.composition_baseline(8, 0)


def test_rotated_baseline_keeps_spectra_and_randomises_alignment():
    e = torch.zeros(64, 64)
    e[0, 0] = 1.0
    b = C.rotated_baseline(e, e, n_samples=400, seed=0)
    assert b.value < 0.5 < float(C.composition_score(e, e))
    # for rank one, the score of (e R, e) is |R[0, 0]|, one coordinate of a random unit vector:
    # its mean is about sqrt(2 / (pi d))
    assert abs(b.mean - math.sqrt(2 / (math.pi * 64))) < 0.02
    with pytest.raises(ValueError, match="square"):
        C.rotated_baseline(torch.ones(3, 4), torch.ones(4, 3))


# ---------------------------------------------------------------------------
# Attention-pattern scores
# ---------------------------------------------------------------------------
def ideal_pattern(n, kind, start=1, n_pos=None):
    n_pos = n_pos or start + 2 * n
    a = torch.zeros(n_pos, n_pos)
    a[:, 0] = 1.0
    for q in range(start + n, start + 2 * n):
        a[q] = 0
        a[q, q - n + 1 if kind == "induction" else q - n] = 1.0
    return a


def test_pattern_scores_known_answers():
    n = 5
    assert float(C.induction_score(ideal_pattern(n, "induction"), n)) == 1.0
    assert float(C.duplicate_token_score(ideal_pattern(n, "induction"), n)) == 0.0
    assert float(C.duplicate_token_score(ideal_pattern(n, "duplicate"), n)) == 1.0
    assert float(C.induction_score(ideal_pattern(n, "duplicate"), n)) == 0.0
    prev = torch.zeros(11, 11)
    prev[0, 0] = 1
    prev[torch.arange(1, 11), torch.arange(10)] = 1
    assert float(C.previous_token_score(prev)) == 1.0
    assert float(C.induction_score(prev, n)) == 0.0
    assert float(C.induction_score(prev, 2)) == 1.0  # with len(r) = 2 the induction target *is* q - 1
    u = causal_uniform(11)
    assert float(C.previous_token_score(u)) == pytest.approx(np.mean([1 / (q + 1) for q in range(1, 11)]))
    assert float(C.induction_score(u, n)) == pytest.approx(np.mean([1 / (q + 1) for q in range(6, 11)]))
    # shapes: leading dimensions are kept
    stack = torch.stack([ideal_pattern(n, "induction"), u])[None].expand(4, 2, 11, 11)
    assert C.induction_score(stack, n).shape == (4, 2)


def test_pattern_scores_with_per_sequence_offsets():
    pats, starts, lens = [], [], []
    for start, n in [(1, 3), (4, 2), (2, 4)]:
        pats.append(ideal_pattern(n, "induction", start=start, n_pos=12))
        starts.append(start)
        lens.append(n)
    p = torch.stack(pats)[:, None]  # [batch, head, q, k]
    s = C.induction_score(p, torch.tensor(lens), torch.tensor(starts))
    assert s.shape == (3, 1) and torch.all(s == 1.0)
    d = C.duplicate_token_score(p, torch.tensor(lens), torch.tensor(starts))
    assert torch.all(d == 0.0)
    # the same as scoring each sequence alone
    for i in range(3):
        assert float(C.induction_score(pats[i], lens[i], starts[i])) == float(s[i, 0])


def test_pattern_score_errors():
    with pytest.raises(ValueError, match="square"):
        C.induction_score(torch.ones(3, 4), 1)
    with pytest.raises(ValueError, match="start \\+ 2\\*seq_len"):
        C.induction_score(torch.ones(5, 5), 3)
    with pytest.raises(ValueError, match="seq_len must be >= 1"):
        C.duplicate_token_score(torch.ones(5, 5), 0)
    with pytest.raises(ValueError, match="batch"):
        C.induction_score(torch.ones(2, 7, 7), torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match="pattern"):
        C.previous_token_score([[1.0]])


def test_head_scores_of_hand_set_heads(hand):
    """A head hand-set to attend to the previous token has previous-token score 1.0."""
    s = C.head_scores(hand, C.repeated_tokens(50, 20, 32, seed=0))
    assert float(s["previous_token"][0, 0]) == pytest.approx(1.0, abs=1e-6)
    assert float(s["induction"][1, 0]) == pytest.approx(1.0, abs=1e-4)
    assert float(s["duplicate_token"][1, 0]) == pytest.approx(0.0, abs=1e-6)
    assert float(s["induction"][0, 0]) == pytest.approx(0.0, abs=1e-6)
    # default data: [BOS] r r with len(r) = 20 (needs n_ctx >= 41)
    assert C.head_scores(hand)["induction"].shape == (2, 1)
    with pytest.raises(TypeError, match="RepeatData"):
        C.head_scores(hand, torch.zeros(2, 5, dtype=torch.long))


# ---------------------------------------------------------------------------
# Copying scores
# ---------------------------------------------------------------------------
def test_copying_scores_known_answers():
    eye = torch.eye(7)
    assert C.copying_score(eye) == 1.0 and C.eigenvalue_copying_score(eye) == pytest.approx(1.0)
    assert C.copying_score(-eye + 0.5) == 0.0
    assert C.eigenvalue_copying_score(-eye) == pytest.approx(-1.0)
    cycle = eye.roll(1, dims=1)  # a permutation with no fixed point: eigenvalues are the 7th roots of unity
    assert C.copying_score(cycle) == 0.0
    assert C.eigenvalue_copying_score(cycle) == pytest.approx(0.0, abs=1e-12)
    assert C.eigenvalue_copying_score(torch.zeros(3, 3)) == 0.0
    d = torch.diag(torch.tensor([3.0, 1.0, -1.0]))
    assert C.eigenvalue_copying_score(d) == pytest.approx(3 / 5)
    assert C.copying_score(d) == pytest.approx(2 / 3)  # row 2's largest entry (0) is off the diagonal
    g = torch.Generator().manual_seed(0)
    R = torch.randn(7, 7, generator=g)
    assert C.eigenvalue_copying_score(R @ (2 * eye) @ torch.linalg.inv(R)) == pytest.approx(1.0)  # similarity-invariant
    with pytest.raises(ValueError, match="square"):
        C.copying_score(torch.ones(2, 3))
    with pytest.raises(ValueError, match="square"):
        C.eigenvalue_copying_score(torch.ones(2, 2, 2))


def test_hand_built_induction_head_copies(hand):
    s = C.ov_copying_scores(hand, exclude=[0])
    assert float(s["argmax"][1, 0]) == 1.0 and float(s["eigenvalue"][1, 0]) == pytest.approx(1.0)
    # the layer-0 head writes into a block W_U does not read: its full OV circuit is zero
    assert float(C.full_ov_circuit(hand, 0, 0).abs().max()) == 0.0


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------
def test_repeated_tokens_structure():
    d = C.repeated_tokens(200, 12, 20, seed=1)
    t = d.tokens
    assert t.shape == (200, 25) and t.dtype == torch.long
    assert torch.all(t[:, 0] == 0) and torch.all(t[:, 1:] != 0)
    assert torch.equal(t[:, 1:13], t[:, 13:])
    assert all(len(set(row[1:13].tolist())) == 12 for row in t)  # distinct tokens in r
    assert torch.all(d.first.sum(1) == 11) and torch.all(d.second.sum(1) == 11)
    assert torch.all(d.second[:, 14:]) and not d.second[:, :14].any()
    assert torch.all(d.start == 1) and torch.all(d.seq_len == 12)
    assert torch.equal(C.repeated_tokens(200, 12, 20, seed=1).tokens, t)
    assert not torch.equal(C.repeated_tokens(200, 12, 20, seed=2).tokens, t)
    assert len(d) == 200 and len(d[:10]) == 10
    nd = C.repeated_tokens(300, 12, 20, seed=1, distinct=False)
    assert any(len(set(row[1:13].tolist())) < 12 for row in nd.tokens)
    other_bos = C.repeated_tokens(5, 3, 6, bos=5)
    assert torch.all(other_bos.tokens[:, 0] == 5) and torch.all(other_bos.tokens[:, 1:] != 5)


@pytest.mark.parametrize("distinct", [False, True])
def test_repeat_data_random_offsets(distinct):
    d = C.repeat_data(2000, 40, 30, seq_len=(5, 12), distinct=distinct, seed=3)
    t = d.tokens
    assert t.shape == (2000, 40) and torch.all(t[:, 0] == 0)
    assert set(d.seq_len.tolist()) == set(range(5, 13))
    assert int(d.start.min()) == 1 and int(d.start.max()) >= 25  # the repeat starts anywhere
    for i in range(0, 2000, 97):
        s, n = int(d.start[i]), int(d.seq_len[i])
        assert torch.equal(t[i, s:s + n], t[i, s + n:s + 2 * n])
        assert d.second[i].nonzero().flatten().tolist() == list(range(s + n + 1, s + 2 * n))
        assert d.first[i].nonzero().flatten().tolist() == list(range(s + 1, s + n))
        if distinct:
            r = set(t[i, s:s + n].tolist())
            assert len(r) == n
            filler = torch.cat([t[i, 1:s], t[i, s + 2 * n:]]).tolist()
            assert not r & set(filler)
    assert not torch.any(t[:, 1:] == 0)


def test_repeat_data_fixed_offset_and_errors():
    d = C.repeat_data(50, 30, 30, seq_len=8, random_offset=False)
    assert torch.all(d.start == 1)
    with pytest.raises(ValueError, match="too short"):
        C.repeat_data(5, 20, 30, seq_len=10)
    with pytest.raises(ValueError, match="distinct"):
        C.repeat_data(5, 60, 20, seq_len=19, distinct=True)
    with pytest.raises(ValueError, match="lo <= hi"):
        C.repeat_data(5, 60, 20, seq_len=(9, 4))
    with pytest.raises(ValueError, match="seq_len"):
        C.repeat_data(5, 60, 20, seq_len=(1, 2, 3))
    with pytest.raises(ValueError, match="bos"):
        C.repeated_tokens(5, 3, 6, bos=6)
    with pytest.raises(TypeError, match="n_seq"):
        C.repeated_tokens(5.0, 3, 6)
    v = C.varied_eval_data(300, 20, 48, seed=0)
    assert v.tokens.shape == (300, 41) and int(v.seq_len.min()) == 10 and int(v.start.max()) > 10


# ---------------------------------------------------------------------------
# Losses and ablation
# ---------------------------------------------------------------------------
def test_per_position_loss_matches_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, 9, generator=g)
    tokens = torch.randint(0, 9, (3, 6), generator=g)
    got = C.per_position_loss(logits, tokens)
    ref = F.cross_entropy(logits[:, :-1].reshape(-1, 9).double(), tokens[:, 1:].reshape(-1), reduction="none")
    assert torch.allclose(got.reshape(-1), ref)
    assert torch.allclose(C.per_position_loss(torch.zeros(2, 4, 9), tokens[:2, :4]), torch.full((2, 3), math.log(9),
                                                                                               dtype=torch.float64))
    assert C.lm_loss(tiny_model(), (tokens,)).ndim == 0
    with pytest.raises(ValueError, match="tokens"):
        C.per_position_loss(logits, tokens[:, :5])
    with pytest.raises(ValueError, match="logits"):
        C.per_position_loss(logits[0], tokens)


def test_zero_and_mean_ablation_hooks():
    m = tiny_model(seed=5)
    tokens = torch.randint(0, 9, (6, 10), generator=torch.Generator().manual_seed(1))
    clean, cache = m.run_with_cache(tokens)
    hooks = C.ablation_hooks(m, [(0, 1), (1, 2)], "zero")
    _, ab = m.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_z"), fwd_hooks=hooks)
    assert torch.all(ab["z", 0][:, :, 1] == 0) and torch.all(ab["z", 1][:, :, 2] == 0)
    assert torch.equal(ab["z", 0][:, :, 0], cache["z", 0][:, :, 0])  # layer 0, other heads untouched
    # zero-ablating a head removes exactly its contribution: attn_out drops by z W_O for that head
    logits0 = C.run_ablated(m, tokens, (1, 0))
    contrib = torch.einsum("bpe,ed->bpd", cache["z", 1][:, :, 0], m.W_O[1, 0])
    assert torch.allclose(clean - logits0, contrib @ m.W_U, atol=1e-5)
    assert torch.equal(m(tokens), clean)  # hooks were removed
    mean_hooks = C.ablation_hooks(m, (0, 2), "mean", reference=tokens)
    _, mab = m.run_with_cache(tokens, names_filter="blocks.0.attn.hook_z", fwd_hooks=mean_hooks)
    expect = cache["z", 0][:, :, 2].mean((0, 1))
    assert torch.allclose(mab["z", 0][:, :, 2], expect.expand(6, 10, 4))
    assert torch.allclose(C.run_ablated(m, tokens, (0, 2), "mean"), m.run_with_hooks(tokens, mean_hooks))
    with pytest.raises(ValueError, match="reference"):
        C.ablation_hooks(m, (0, 0), "mean")
    with pytest.raises(ValueError, match="kind"):
        C.ablation_hooks(m, (0, 0), "resample")
    with pytest.raises(TypeError, match="heads"):
        C.ablation_hooks(m, [], "zero")
    with pytest.raises(ValueError, match="head"):
        C.ablation_hooks(m, (0, 3))


# ---------------------------------------------------------------------------
# The hand-built induction head
# ---------------------------------------------------------------------------
def test_hand_built_layout_and_weights():
    lay = C.induction_head_layout(10, 7)
    assert [lay[k].stop - lay[k].start for k in ("token", "position", "previous", "output")] == [10, 7, 10, 10]
    cfg, w = C.induction_head_weights(10, 7)
    assert cfg.d_model == 37 and cfg.d_head == 10 and cfg.n_heads == 1 and cfg.n_layers == 2
    # W_OV of layer 0 maps the token block to the previous-token block, identically
    ov0 = w["blocks.0.attn.W_V"][0] @ w["blocks.0.attn.W_O"][0]
    assert torch.equal(ov0[lay["token"], lay["previous"]], torch.eye(10, dtype=torch.float64))
    assert float(ov0.abs().sum()) == 10.0
    with pytest.raises(ValueError, match="attn_strength"):
        C.induction_head_model(10, 7, attn_strength=0)
    with pytest.raises(ValueError, match="basis"):
        C.induction_head_model(10, 7, basis="fourier")
    with pytest.raises(ValueError, match="d_vocab"):
        C.induction_head_model(1, 7)
    with pytest.raises(ValueError, match="dtype"):
        C.induction_head_model(10, 7, dtype="float16")


def test_hand_built_model_acceptance(hand):
    """>= 99% top-1 on the second copy of [BOS] r r, len(r) = 20, vocab 32, 1,000 sequences."""
    data = C.repeated_tokens(1000, 20, 32, seed=11)
    m = C.repeat_metrics(hand, data)
    assert m["second_acc"] >= 0.99, m
    assert m["second_loss"] < 1e-4
    assert m["first_loss"] == pytest.approx(math.log(32), abs=1e-3)  # rests on BOS: a uniform guess


def test_hand_built_model_after_a_random_prefix(hand):
    data = C.repeat_data(1000, 64, 32, seq_len=(20, 25), distinct=True, seed=12)
    assert int(data.start.max()) > 10
    m = C.repeat_metrics(hand, data)
    assert m["second_acc"] >= 0.99, m


def test_hand_built_model_in_a_random_basis_computes_the_same_function():
    a = C.induction_head_model(16, 20, dtype="float64")
    b = C.induction_head_model(16, 20, basis="random", seed=9, dtype="float64")
    tokens = C.repeat_data(20, 20, 16, seq_len=(3, 8), seed=0).tokens
    assert torch.allclose(a(tokens), b(tokens), atol=1e-8)


def test_hand_built_model_ablations(hand):
    data = C.repeated_tokens(200, 20, 32, seed=13)
    for head in [(0, 0), (1, 0)]:
        assert C.repeat_metrics(hand, data, C.ablation_hooks(hand, head))["second_acc"] < 0.1


# ---------------------------------------------------------------------------
# The trained models (shipped checkpoints)
# ---------------------------------------------------------------------------
def test_checkpoints_are_small_and_registered():
    names = ("induction_2l", "induction_1l", "induction_1l_fixed")
    assert set(names) <= set(store.recipes())
    for name in names:
        manifest = store.load(name).manifest
        assert sum(f["bytes"] for f in manifest["files"].values()) < 400_000
        assert manifest["recipe_kwargs"]["seed"] == 0


def test_trained_model_has_induction_and_previous_token_heads(trained_scores):
    assert float(trained_scores["induction"][1].max()) >= 0.4
    assert float(trained_scores["previous_token"][0].max()) >= 0.4
    assert float(trained_scores["induction"][0].max()) < 0.2  # layer 0 cannot do induction


def test_trained_model_k_composition_beats_the_baseline(trained, trained_scores):
    prev = int(trained_scores["previous_token"][0].argmax())
    ind = int(trained_scores["induction"][1].argmax())
    k = C.composition_scores(trained, "K")
    base = C.composition_baseline(trained.cfg.d_model, trained.cfg.d_head, n_samples=2000, seed=0)
    assert float(k[prev, ind]) > base.value
    assert float(k[prev, ind]) > C.rotated_baseline(C.ov_matrix(trained, 0, prev), C.qk_matrix(trained, 1, ind).T,
                                                    n_samples=300).value


def test_trained_model_accuracy_and_ablation(trained, trained_scores, eval_data):
    m = C.repeat_metrics(trained, eval_data)
    chance = 1 / 47
    assert m["second_acc"] >= 0.9, m
    assert m["first_acc"] < 2 * chance, m  # near chance
    heads = [(1, h) for h in range(trained.cfg.n_heads) if float(trained_scores["induction"][1, h]) >= 0.4]
    ablated = C.repeat_metrics(trained, eval_data, C.ablation_hooks(trained, heads, "zero"))
    assert ablated["second_acc"] <= m["second_acc"] / 2, (heads, ablated)
    prev = int(trained_scores["previous_token"][0].argmax())
    no_prev = C.repeat_metrics(trained, eval_data, C.ablation_hooks(trained, (0, prev), "zero"))
    assert no_prev["second_acc"] < 0.8 * m["second_acc"]  # the induction heads' keys need it
    varied = C.repeat_metrics(trained, C.varied_eval_data(500, 20, 48, seed=7))
    assert varied["second_acc"] >= 0.9


def test_one_layer_models_and_the_fixed_offset_trap(trained, eval_data):
    two = C.repeat_metrics(trained, eval_data)["second_acc"]
    one = C.repeat_metrics(store.load("induction_1l").model, eval_data)["second_acc"]
    assert one < 0.2 and one < two / 3
    fixed = store.load("induction_1l_fixed").model
    varied = C.varied_eval_data(500, 20, 48, seed=7)
    assert C.repeat_metrics(fixed, eval_data)["second_acc"] >= 0.9  # solves [BOS] r r with fixed len(r)...
    assert C.repeat_metrics(fixed, varied)["second_acc"] < 0.4  # ...by position, not by content
    # the induction score is fooled too on fixed-length data, and not on varied data
    assert float(C.head_scores(fixed, eval_data[:200])["induction"].max()) >= 0.4
    assert float(C.head_scores(fixed, varied[:200])["induction"].max()) < 0.4


def test_head_pattern_explorer_and_its_static_twin(hand):
    import matplotlib.pyplot as plt

    data = C.repeated_tokens(3, 6, 32, seed=5)
    explorer = C.head_pattern_explorer(hand, data, static_heads=[(0, 0), (1, 0)], static_seq=2)
    assert [o[1] for o in explorer.controls["head"].options] == [(0, 0), (1, 0)]
    pats = C.attention_patterns(hand, data.tokens)
    grid = explorer.static_figure()  # the two chosen heads on sequence 2
    shown = [ax.images[0].get_array().data for ax in grid.axes if ax.images]
    assert len(shown) == 2 and all(np.allclose(s, pats[2, l, 0].numpy(), atol=1e-6) for s, l in zip(shown, (0, 1)))
    explorer.controls["seq"].value = 1  # the live redraw runs without a kernel
    with pytest.raises(TypeError, match="RepeatData"):
        C.head_pattern_explorer(hand, data.tokens)
    with pytest.raises(ValueError, match="static_seq"):
        C.head_pattern_explorer(hand, data, static_seq=3)
    plt.close("all")

# ---------------------------------------------------------------------------
# Activation patching, score decomposition, path patching, in-context learning
# ---------------------------------------------------------------------------
def test_corrupt_first_copy_keeps_the_second_copy_and_removes_its_source(eval_data):
    d = eval_data[:50]
    c = C.corrupt_first_copy(d, 48, seed=0)
    assert torch.equal(c.tokens[:, 21:], d.tokens[:, 21:]) and torch.equal(c.tokens[:, 0], d.tokens[:, 0])
    for i in range(len(d)):
        fresh = c.tokens[i, 1:21].tolist()
        assert len(set(fresh)) == 20 and not set(fresh) & set(d.tokens[i, 21:].tolist()) and 0 not in fresh
    with pytest.raises(ValueError, match="unused tokens"):
        C.corrupt_first_copy(C.repeated_tokens(2, 12, 22), 22)
    with pytest.raises(ValueError, match="d_vocab"):
        C.corrupt_first_copy(d, 10)


def test_activation_patching_of_everything_recovers_the_clean_run_exactly(trained, eval_data):
    d = eval_data[:100]
    c = C.corrupt_first_copy(d, 48, seed=1)
    clean, corr = C.second_copy_loss(trained(d.tokens), d), C.second_copy_loss(trained(c.tokens), d)
    assert corr > clean + 2  # the corruption removes what the second copy is predicted from
    for name in (C.act_name("embed"), C.act_name("resid_pre", 1)):
        assert C.normalised_metric(C.second_copy_loss(C.activation_patch(trained, d, c, name), d), clean, corr) == 1.0
    # patching nothing (positions=[]) leaves the corrupted run
    none = C.activation_patch(trained, d, c, C.act_name("z", 1), positions=[])
    assert torch.equal(none, trained(c.tokens))
    # all four heads of layer 1 at once carry the clean prediction (no MLP, no later layer)
    z1 = C.activation_patch(trained, d, c, C.act_name("z", 1))
    assert abs(C.normalised_metric(C.second_copy_loss(z1, d), clean, corr) - 1) < 0.01
    table = C.head_patching_table(trained, d, c)
    assert table.shape == (2, 4) and float(table[1].min()) > 0.1 and float(table[0].max()) < 0.05
    with pytest.raises(ValueError, match="head="):
        C.activation_patch(trained, d, c, C.act_name("resid_pre", 1), head=0)
    with pytest.raises(ValueError, match="same shape"):
        C.activation_patch(trained, d, c[:5], C.act_name("z", 0))
    with pytest.raises(ValueError, match="must differ"):
        C.normalised_metric(1.0, 2.0, 2.0)


def test_score_decomposition_sums_to_the_scores(trained, eval_data):
    m64 = HookedTransformer.from_weights(trained.cfg, trained.state_dict()).double().requires_grad_(False)
    tokens = eval_data.tokens[:20]
    names, parts = C.residual_components(m64, tokens, 1)
    assert names == ["embed", "pos", "L0H0", "L0H1", "L0H2", "L0H3"]
    _, cache = m64.run_with_cache(tokens, names_filter=[C.act_name("resid_pre", 1), C.act_name("attn_scores", 1)])
    assert float((parts.sum(0) - cache["resid_pre", 1]).abs().max()) < 1e-10
    allowed = torch.ones(41, 41, dtype=torch.bool).tril()
    for h in range(4):
        names, terms = C.decompose_attention_scores(m64, tokens, 1, h)
        assert terms.shape == (6, 6, 20, 41, 41)
        assert float((terms.sum((0, 1)) - cache["attn_scores", 1][:, h])[:, allowed].abs().max()) < 1e-10
    # float32 model: to 1e-5 as well
    _, terms32 = C.decompose_attention_scores(trained, tokens, 1, 0)
    _, c32 = trained.run_with_cache(tokens, names_filter=[C.act_name("attn_scores", 1)])
    assert float((terms32.sum((0, 1)) - c32["attn_scores", 1][:, 0])[:, allowed].abs().max()) < 1e-4
    # layer 0 has only the embeddings
    assert C.residual_components(m64, tokens, 0)[0] == ["embed", "pos"]


def test_hand_built_scores_come_from_token_query_against_previous_key(hand):
    d = C.repeated_tokens(10, 15, 32, seed=0)
    names, terms = C.decompose_attention_scores(hand, d, 1, 0)
    q, k = torch.arange(16, 31), torch.arange(16, 31) - 14
    at_target = terms[:, :, :, q, k].mean((2, 3))
    i, j = divmod(int(at_target.argmax()), len(names))
    assert (names[i], names[j]) == ("embed", "L0H0")


def test_path_patching_identities(trained, eval_data):
    m64 = HookedTransformer.from_weights(trained.cfg, trained.state_dict()).double().requires_grad_(False)
    d, other = eval_data[:30], C.repeated_tokens(30, 20, 48, seed=99)
    plain = m64(d.tokens)
    # replacement == the run itself: nothing changes
    assert float((C.path_patch(m64, d, d, (0, 1), [(1, h) for h in range(4)], "qkv") - plain).abs().max()) < 1e-12
    # every path of the sender = its q, k, v paths into layer 1 + its direct path to the logits
    for sender in [(0, 1), (0, 3)]:
        _, cr = m64.run_with_cache(other.tokens, names_filter=[C.act_name("z", 0)])
        _, cc = m64.run_with_cache(d.tokens, names_filter=[C.act_name("z", 0)])
        delta = (cr["z", 0][:, :, sender[1]] - cc["z", 0][:, :, sender[1]]) @ m64.W_O[0, sender[1]]
        via_layer1 = C.path_patch(m64, d, other, sender, [(1, h) for h in range(4)], "qkv")
        full = C.activation_patch(m64, other, d, C.act_name("z", 0), head=sender[1])
        assert float((via_layer1 + delta @ m64.W_U - full).abs().max()) < 1e-10
    with pytest.raises(ValueError, match="later layer"):
        C.path_patch(m64, d, other, (1, 0), (1, 1))
    with pytest.raises(ValueError, match="inputs"):
        C.path_patch(m64, d, other, (0, 0), (1, 1), "x")


def test_hand_built_previous_token_head_acts_through_keys_only(hand):
    d, other = C.repeated_tokens(100, 15, 32, seed=0), C.repeated_tokens(100, 15, 32, seed=1)
    clean = C.second_copy_loss(hand(d.tokens), d)
    for inp in ("q", "v"):  # the hand-built queries and values do not read the previous-token block
        assert C.second_copy_loss(C.path_patch(hand, d, other, (0, 0), (1, 0), inp), d) == pytest.approx(clean, abs=1e-6)
    assert C.second_copy_loss(C.path_patch(hand, d, other, (0, 0), (1, 0), "k"), d) > clean + 2


def test_keys_only_patching_tracks_k_composition(trained, eval_data):
    d, other = eval_data[:200], C.repeated_tokens(200, 20, 48, seed=7)
    ind = [(1, h) for h in range(4)]
    scores = C.head_scores(trained, d)
    prev = int(scores["previous_token"][0].argmax())
    k_comp = C.composition_scores(trained, "K").mean(1)  # each layer-0 head against the layer-1 heads
    weakest = int(k_comp.argmin())
    clean = C.second_copy_loss(trained(d.tokens), d)
    rise = {h: C.second_copy_loss(C.path_patch(trained, d, other, (0, h), ind, "k"), d) - clean for h in range(4)}
    assert rise[prev] > 2 and rise[weakest] < 0.1 * rise[prev]
    # the previous-token head acts through the keys, hardly through queries or values
    for inp in ("q", "v"):
        assert abs(C.second_copy_loss(C.path_patch(trained, d, other, (0, prev), ind, inp), d) - clean) < 0.05 * rise[prev]


def test_in_context_learning_score(hand):
    d = C.repeated_tokens(200, 15, 32, seed=0)
    # token 20 is in the second copy (predicted perfectly), token 5 in the first (log 32 exactly)
    assert C.in_context_learning_score(hand, d, 5, 20) == pytest.approx(-math.log(32), abs=1e-3)
    assert C.in_context_learning_score(hand, d, 3, 10) == pytest.approx(0, abs=1e-3)
    with pytest.raises(ValueError, match="late"):
        C.in_context_learning_score(hand, d, 10, 5)
    with pytest.raises(ValueError, match="early"):
        C.in_context_learning_score(hand, d, 0, 5)
