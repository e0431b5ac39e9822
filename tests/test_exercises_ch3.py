"""Chapter 3 exercises: each check passes the reference solution and fails a plausible wrong attempt."""
from __future__ import annotations

import pytest
import torch

from helpers import circuits as C
from helpers.exercises import ch3
from helpers.transformer import HookedTransformer, TransformerConfig


def tiny_model(seed=0, n_layers=2, **kw):
    cfg = TransformerConfig(n_layers=n_layers, d_model=12, n_heads=3, d_head=4, d_mlp=0, d_vocab=9, n_ctx=10,
                            attn_only=True, seed=seed, **kw)
    return HookedTransformer(cfg)


def test_path_expansion(hand):
    tokens = C.repeated_tokens(3, 6, 32, seed=0).tokens
    paths = ch3.solution_path_expansion(hand, tokens)
    assert set(paths) == {"direct", "L0H0", "L1H0", "L0H0>L1H0"}
    assert torch.allclose(sum(paths.values()), hand(tokens).double(), atol=1e-3)
    # in the hand-built model only the induction head's own path reaches the logits
    for k in ("direct", "L0H0", "L0H0>L1H0"):
        assert float(paths[k].abs().max()) == 0.0
    assert ch3.check_path_expansion(ch3.solution_path_expansion)

    def missing_virtual(model, toks):
        out = ch3.solution_path_expansion(model, toks)
        out.pop("L0H0>L1H0")
        return out

    def no_positions(model, toks):  # x0 = W_E[tokens] only
        out = ch3.solution_path_expansion(model, toks)
        out["direct"] = out["direct"] - (model.W_pos[: toks.shape[1]] @ model.W_U).double()
        return out

    with pytest.raises(AssertionError, match="sum"):
        ch3.check_path_expansion(missing_virtual)
    with pytest.raises(AssertionError, match="W_pos"):
        ch3.check_path_expansion(no_positions)
    with pytest.raises(ValueError, match="attention-only"):
        ch3.solution_path_expansion(tiny_model(n_layers=1, normalization="LN"), tokens[:, :5])


def test_path_expansion_of_the_trained_model(trained, eval_data):
    tokens = eval_data.tokens[:4]
    paths = ch3.solution_path_expansion(trained, tokens)
    assert len(paths) == 1 + 8 + 16
    assert torch.allclose(sum(paths.values()), trained(tokens).double(), atol=1e-3)


def test_composition_scores(hand):
    assert ch3.check_composition_scores(ch3.solution_composition_scores)
    assert ch3.check_composition_scores(ch3.solution_composition_scores, hand)
    for k in "QKV":
        assert torch.allclose(ch3.solution_composition_scores(hand, k), C.composition_scores(hand, k).double())

    def k_not_transposed(model, kind):
        return ch3.solution_composition_scores(model, "Q" if kind == "K" else kind)

    def transposed(model, kind):
        return ch3.solution_composition_scores(model, kind).T

    with pytest.raises(AssertionError, match="K through W_QK transposed"):
        ch3.check_composition_scores(k_not_transposed)
    with pytest.raises(AssertionError, match="transposed; rows"):
        ch3.check_composition_scores(transposed)


def test_eigen_copying():
    m = tiny_model(seed=7)
    for l in range(2):
        for h in range(3):
            big, small = ch3.solution_eigen_copying(m, l, h)
            assert big == pytest.approx(small, abs=1e-6)
    assert ch3.check_eigen_copying(ch3.solution_eigen_copying)

    def wrong_cycle(model, l, h):  # W_E W_OV W_U -> W_U W_E W_OV is not a cyclic shift of the product's factors
        big = C.eigenvalue_copying_score(C.full_ov_circuit(model, l, h))
        return big, C.eigenvalue_copying_score(model.W_E.T @ model.W_U.T @ C.ov_matrix(model, l, h).T * -1)

    with pytest.raises(AssertionError, match="BACK"):
        ch3.check_eigen_copying(wrong_cycle)
    with pytest.raises(AssertionError):
        ch3.check_eigen_copying(lambda m, l, h: (1.0, 1.0))
    with pytest.raises(AssertionError, match="pair"):
        ch3.check_eigen_copying(lambda m, l, h: 1.0)


def test_find_induction_by_weights(trained):
    scores = C.head_scores(trained, C.repeated_tokens(300, 20, 48, seed=123))
    prev = int(scores["previous_token"][0].argmax())
    found = ch3.solution_find_induction_by_weights(trained)
    assert found[0] == (0, prev) and float(scores["induction"][found[1]]) >= 0.4
    assert ch3.check_find_induction_by_weights(ch3.solution_find_induction_by_weights, trained)

    def v_composition(model):  # the wrong kind of composition
        v = C.composition_scores(model, "V")
        h0, h1 = divmod(int(v.argmax()), v.shape[1])
        return (0, h0), (1, h1)

    wrong = v_composition if v_composition(trained) != found else (lambda m: ((0, (prev + 1) % 4), (1, 0)))
    with pytest.raises(AssertionError, match="K-composition"):
        ch3.check_find_induction_by_weights(wrong, trained)


def test_ablation_table(trained, eval_data):
    data = eval_data[:100]
    table = ch3.solution_ablation_table(trained, data)
    assert table.shape == (2, 4)
    assert float(table.max()) > 0.2  # some head matters
    assert ch3.check_ablation_table(ch3.solution_ablation_table, trained, data)
    with pytest.raises(AssertionError, match="largest difference"):
        ch3.check_ablation_table(lambda m, d: torch.zeros(2, 4), trained, data)
    with pytest.raises(AssertionError, match="opposite sign"):
        ch3.check_ablation_table(lambda m, d: -ch3.solution_ablation_table(m, d), trained, data)
