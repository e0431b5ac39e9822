"""Chapter 1 exercises: each check passes the reference solution and fails a plausible wrong attempt."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import notation as N
from helpers.exercises import ch1


def test_read_diagram():
    ans = ch1.solution_read_diagram()
    assert ch1.check_read_diagram(ans) and ch1.check_read_diagram(ch1.solution_read_diagram)
    assert ch1.check_read_diagram("zi,ij,zj->z")  # any lettering
    spec = N.CHAPTER_DIAGRAMS["read_exercise"]
    assert N.diagram(ans, *spec["shapes"]).expr == N.chapter_diagram("read_exercise").expr
    for wrong, hint in (("bi,ij,bj->", "sums over the batch"), ("bi,ij,bj->bj", "one open leg"),
                        ("bi,ij,bi->b", "wrong values"), ("not an einsum", "cannot evaluate")):
        with pytest.raises(AssertionError, match=hint):
            ch1.check_read_diagram(wrong)


def test_cyclic_trace():
    assert ch1.check_cyclic_trace(ch1.solution_cyclic_trace)
    rng = np.random.default_rng(3)
    t = ch1.solution_cyclic_trace(*(rng.standard_normal((5, 5)) for _ in range(3)))
    assert abs(t["ABC"] - t["BCA"]) < 1e-10 and abs(t["ABC"] - t["CAB"]) < 1e-10
    assert abs(t["ABC"] - t["ACB"]) > 1e-3

    def all_equal(A, B, C):  # assumes the trace is symmetric too
        v = float(np.trace(A @ B @ C))
        return {"ABC": v, "BCA": v, "CAB": v, "ACB": v}

    with pytest.raises(AssertionError, match="compute it, do not assume"):
        ch1.check_cyclic_trace(all_equal)


def test_contract_in_order():
    assert ch1.check_contract_in_order(ch1.solution_contract_in_order)

    def half_flops(expr, operands, path):  # counts a multiply-add once
        out, flops = ch1.solution_contract_in_order(expr, operands, path)
        return out, flops // 2

    def only_summed(expr, operands, path):  # costs only the summed indices' sizes (plus kept ones of one term)
        out, _ = ch1.solution_contract_in_order(expr, operands, path)
        return out, 2 * sum(int(np.prod(np.shape(o))) for o in operands)

    def result_in_front(expr, operands, path):  # puts the intermediate first, not last
        inputs, output = expr.split("->")
        subs, terms = inputs.split(","), list(operands)
        for i, j in path:
            i, j = sorted((i, j))
            rest = "".join(s for k, s in enumerate(subs) if k not in (i, j)) + output
            keep = "".join(c for c in sorted(set(subs[i] + subs[j])) if c in rest)
            new = np.einsum(f"{subs[i]},{subs[j]}->{keep}", terms[i], terms[j])
            for k in (j, i):
                del subs[k], terms[k]
            subs.insert(0, keep)
            terms.insert(0, new)
        return np.einsum(f"{subs[0]}->{output}", terms[0]), 0

    with pytest.raises(AssertionError, match="half of"):
        ch1.check_contract_in_order(half_flops)
    with pytest.raises(AssertionError, match="ALL indices"):
        ch1.check_contract_in_order(only_summed)
    with pytest.raises(AssertionError, match="END of the list|FLOPs"):
        ch1.check_contract_in_order(result_in_front)


def test_contract_in_order_matches_the_library():
    for seed in range(10):
        expr, shapes = N.random_expression(seed)
        if len(shapes) < 2:
            continue
        cost = N.contraction_cost(expr, *shapes)
        pairwise = all(len(step) == 2 for step in cost.optimal_path)
        if not pairwise:
            continue
        ops = [np.random.default_rng(seed).standard_normal(s) for s in shapes]
        out, flops = ch1.solution_contract_in_order(expr, ops, cost.optimal_path)
        assert np.allclose(out, np.einsum(expr, *ops)) and flops == cost.optimal_flops


def test_qk_order():
    assert ch1.check_qk_order(ch1.solution_qk_order)
    for n_pos, d_model, d_head in [(64, 512, 64), (8, 16, 4), (1000, 64, 16)]:
        c = ch1.solution_qk_order(n_pos, d_model, d_head)
        assert c["queries_keys"] == 2 * (n_pos * d_model * d_head) * 2 + 2 * n_pos * n_pos * d_head
        assert c["qk_matrix"] == 2 * d_model ** 2 * d_head + 2 * n_pos * d_model ** 2 + 2 * n_pos ** 2 * d_model
        assert c["best"] <= min(c["queries_keys"], c["qk_matrix"])

    def multiply_adds(n, m, h):
        return {k: v // 2 for k, v in ch1.solution_qk_order(n, m, h).items()}

    def matrix_for_free(n, m, h):
        return {"queries_keys": 4 * n * m * h + 2 * n * n * h, "qk_matrix": 2 * n * m * m + 2 * n * n * m}

    with pytest.raises(AssertionError, match="half of"):
        ch1.check_qk_order(multiply_adds)
    with pytest.raises(AssertionError, match="left out forming"):
        ch1.check_qk_order(matrix_for_free)


def test_projector():
    assert ch1.check_projector(ch1.solution_projector)
    s = ch1.solution_projector(N.random_isometry(7, 3, seed=2))
    assert s["idempotence"] < 1e-12 and s["symmetry"] < 1e-12 and abs(s["trace"] - 3) < 1e-12
    U = N.random_isometry(7, 3, seed=2)
    assert np.allclose(N.diagram("ij,ik->jk", U, U).contract(), np.eye(3), atol=1e-12)
    with pytest.raises(ValueError, match="r <= n"):
        N.random_isometry(2, 3)

    def assumes_isometry(U):
        return {"idempotence": 0.0, "symmetry": 0.0, "trace": float(U.shape[1])}

    def trace_is_n(U):
        return {**ch1.solution_projector(U), "trace": float(U.shape[0])}

    with pytest.raises(AssertionError, match="NOT an isometry"):
        ch1.check_projector(assumes_isometry)
    with pytest.raises(AssertionError, match="tr P should be"):
        ch1.check_projector(trace_is_n)


def test_bad_order():
    assert ch1.check_bad_order(ch1.solution_bad_order_formula)
    s = ch1.solution_bad_order((4, 6, 8, 10), phys=2, bond=3)
    # ket-first: phys**(n-1) * bond entries; zipper: constant
    assert s["ket_first_largest"] == [2 ** (n - 1) * 3 for n in (4, 6, 8, 10)]
    assert len(set(s["zipper_largest"])) == 1
    ratios = np.array(s["ket_first_flops"]) / np.array(s["zipper_flops"])
    assert np.all(np.diff(np.log(ratios)) > 0.5)
    assert s["optimal_flops"] <= s["zipper_flops"]

    def bond_always(n, d, chi):  # right when chi >= d only
        return d ** (n - 1) * chi, chi ** 2 * d

    def one_bond(n, d, chi):
        return d ** (n - 1) * max(d, chi), chi * d

    with pytest.raises(AssertionError, match="d > chi"):
        ch1.check_bad_order(bond_always)
    with pytest.raises(AssertionError, match="two bond legs"):
        ch1.check_bad_order(one_bond)
