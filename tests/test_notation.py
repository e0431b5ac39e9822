"""Tests for helpers.notation (chapter 1: einsum <-> tensor diagrams)."""
from __future__ import annotations

import itertools
from collections import Counter

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import opt_einsum  # noqa: E402
import pytest  # noqa: E402
import tensornetwork as tn  # noqa: E402
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from helpers import notation as N  # noqa: E402

# ---------------------------------------------------------------------------
# Random valid einsum expressions
# ---------------------------------------------------------------------------

LETTERS = "abcdefgxyzABQ"


@st.composite
def einsum_cases(draw, min_ops=2, max_ops=5):
    """(expr, shapes) with 2-5 operands, traces, outer products and hyper-indices."""
    n_ops = draw(st.integers(min_ops, max_ops))
    n_letters = draw(st.integers(1, 6))
    letters = draw(st.permutations(LETTERS))[:n_letters]
    dims = {c: draw(st.integers(1, 3)) for c in letters}
    subs = []
    for _ in range(n_ops):
        rank = draw(st.integers(0, 4))
        subs.append("".join(draw(st.lists(st.sampled_from(letters), min_size=rank, max_size=rank))))
    present = sorted(set("".join(subs)))
    perm = draw(st.permutations(present)) if present else []
    n_out = draw(st.integers(0, len(present)))
    out = "".join(perm[:n_out])
    ends = Counter("".join(subs) + out)
    assume(max(ends.values(), default=0) <= 6)  # copy tensors are built densely
    expr = ",".join(subs) + "->" + out
    shapes = [tuple(dims[c] for c in s) for s in subs]
    return expr, shapes


def expected_structure(expr):
    """The graph an expression should give, computed straight from the rule."""
    lhs, out = expr.split("->")
    subs = lhs.split(",")
    occ = {}
    for k, s in enumerate(subs):
        for ax, c in enumerate(s):
            occ.setdefault(c, []).append((k, ax))
    bonds, loops, copies, copy_edges, dangling = Counter(), Counter(), {}, {}, []
    for c, where in occ.items():
        ends = len(where) + (c in out)
        if ends == 2 and c not in out:
            (k1, a1), (k2, a2) = where
            if k1 == k2:
                loops[(c, k1, frozenset((a1, a2)))] += 1
            else:
                bonds[(c, frozenset(where))] += 1
        elif ends != 2:
            copies[c] = ends
            copy_edges[c] = sorted(where)
    for c in out:
        ends = len(occ[c]) + 1
        dangling.append((c, ("copy", c) if ends != 2 else occ[c][0]))
    return dict(n_tensors=len(subs), bonds=bonds, loops=loops, copies=copies,
                copy_edges=copy_edges, dangling=dangling)


def actual_structure(d):
    copy_letter = {n.id: n.legs[0] for n in d.copy_nodes}
    bonds, loops, copy_edges = Counter(), Counter(), {}
    for e in d.edges:
        if e.b[0] in copy_letter:
            assert e.a[0] not in copy_letter
            copy_edges.setdefault(copy_letter[e.b[0]], []).append(e.a)
        elif e.is_self_loop:
            loops[(e.index, e.a[0], frozenset((e.a[1], e.b[1])))] += 1
        else:
            bonds[(e.index, frozenset((e.a, e.b)))] += 1
    dangling = [(g.index, ("copy", copy_letter[g.end[0]]) if g.end[0] in copy_letter else g.end)
                for g in d.dangling]
    return dict(n_tensors=len(d.tensor_nodes), bonds=bonds, loops=loops,
                copies={copy_letter[n.id]: n.rank for n in d.copy_nodes},
                copy_edges={c: sorted(v) for c, v in copy_edges.items()}, dangling=dangling)


def rel_err(got, want):
    got, want = np.asarray(got, float), np.asarray(want, float)
    assert got.shape == want.shape
    scale = np.linalg.norm(want)
    return np.linalg.norm(got - want) / scale if scale > 0 else np.linalg.norm(got)


# ---------------------------------------------------------------------------
# The property test
# ---------------------------------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(case=einsum_cases(), seed=st.integers(0, 2**16))
def test_random_expressions_contract_and_match_graph(case, seed):
    expr, shapes = case
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s) for s in shapes]
    d = N.diagram(expr, *arrays)
    # graph structure
    assert actual_structure(d) == expected_structure(expr)
    # every node axis is used exactly once (by an edge or a dangling leg)
    ends = Counter()
    for e in d.edges:
        ends[e.a] += 1
        ends[e.b] += 1
    for g in d.dangling:
        ends[g.end] += 1
    assert all(v == 1 for v in ends.values())
    assert set(ends) == {(n.id, ax) for n in d.nodes for ax in range(n.rank)}
    # the tensornetwork network: same nodes, copy nodes as tn.CopyNode
    nodes, out_edges = d.to_network()
    assert len(nodes) == len(d.nodes)
    assert sum(isinstance(x, tn.CopyNode) for x in nodes) == len(d.copy_nodes)
    assert [e.name for e in out_edges] == list(d.output)
    # contraction agrees with numpy.einsum
    got = d.contract()
    want = np.einsum(expr, *arrays)
    assert rel_err(got, want) <= 1e-10
    # the layout of any expression is deterministic and keeps tensor nodes apart
    lay = d.layout()
    assert np.array_equal(lay.coordinates(), N.diagram(expr, *shapes).layout().coordinates())
    boxes = [lay.label_boxes()[("node", n.id)] for n in d.tensor_nodes]
    for a, b in itertools.combinations(boxes, 2):
        assert not N._boxes_overlap(a, b)


@pytest.mark.parametrize(
    "expr",
    [
        "ij,jk->ik",      # plain edge
        "ii->",           # trace
        "iij,jk->k",      # trace inside a product
        "i,j->ij",        # outer product
        "i,j,k->kji",     # outer product of three, reordered
        "i,i->i",         # copy tensor: elementwise
        "bij,bjk->bik",   # batch leg as copy tensor
        "ij,jk,jl->ikl",  # hyper-index in three operands
        "ij->i",          # rank-1 copy tensor (sum)
        "ii->i",          # diagonal
        "iii->",          # hyper-trace
        "ij,ij->",        # parallel edges
        "ij,ji->",        # parallel, crossed
        "i,->i",          # a scalar operand
        "ba,cb",          # implicit mode
    ],
)
def test_named_features(expr, seed=0):
    inputs, output = N.parse_einsum(expr)
    explicit = ",".join(inputs) + "->" + output
    sizes = {c: 2 + k for k, c in enumerate(sorted(set(expr) - set(",->")))}
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal([sizes[c] for c in s]) for s in inputs]
    d = N.diagram(expr, *arrays)
    assert actual_structure(d) == expected_structure(explicit)
    assert rel_err(d.contract(), np.einsum(expr, *arrays)) <= 1e-10


def test_feature_examples_have_the_expected_parts():
    assert len(N.diagram("ii->", (3, 3)).self_loops) == 1
    assert [c.rank for c in N.diagram("i,i->i", (3,), (3,)).copy_nodes] == [3]
    assert [c.rank for c in N.diagram("ij->i", (2, 3)).copy_nodes] == [1]
    d = N.diagram("bqhd,bkhd->bhqk", (2, 5, 3, 4), (2, 5, 3, 4))
    assert sorted(c.legs[0] for c in d.copy_nodes) == ["b", "h"]
    assert [e.index for e in d.bonds if d.nodes[e.b[0]].kind == "tensor"] == ["d"]
    assert len(N.diagram("i,j->ij", (2,), (3,)).edges) == 0


def test_torch_operands():
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    b = torch.randn(2, 4, 5, generator=g, dtype=torch.float64)
    out = N.diagram("bij,bjk->bik", a, b).contract()
    assert isinstance(out, torch.Tensor)
    assert torch.allclose(out, torch.einsum("bij,bjk->bik", a, b), rtol=1e-12, atol=1e-12)


def test_diagram_cost_matches_contraction_cost():
    d = N.chapter_diagram("qk_circuit")
    spec = N.CHAPTER_DIAGRAMS["qk_circuit"]
    assert d.cost().optimal_flops == N.contraction_cost(spec["expr"], *spec["shapes"]).optimal_flops
    with pytest.raises(ValueError, match="no sizes"):
        N.diagram("ij,jk->ik").cost()


def test_shapes_only_diagram_cannot_contract():
    d = N.diagram("ij,jk->ik", (2, 3), (3, 4))
    assert d.shape == (2, 4)
    with pytest.raises(ValueError, match="built from shapes"):
        d.contract()
    assert N.diagram("ij,jk->ik").dims == {"i": None, "j": None, "k": None}


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr, operands, names, must_mention",
    [
        ("ij,jk->ik", [(2, 3)], None, ["2 operand subscripts", "1 operand"]),
        ("ij,jk->ik", [(2, 3), (3, 4), (4, 5)], None, ["2 operand subscripts", "3 operands"]),
        ("ij,jk->ik", [(2, 3), (4, 5)], ["A", "B"], ["'j'", "3", "4", "'A'", "'B'"]),
        ("ii->", [(2, 3)], None, ["'i'", "2", "3"]),
        ("ij,jk->iz", [(2, 3), (3, 4)], None, ["'z'", "no input"]),
        ("ij,jk->ii", [(2, 3), (3, 4)], None, ["'i'", "twice"]),
        ("...ij,jk->ik", [(2, 3), (3, 4)], None, ["ellipsis"]),
        ("ij,jk->ik", [(2, 3, 1), (3, 4)], ["A", "B"], ["operand 0", "'A'", "3 axes", "'ij'"]),
        ("ij,jk", [(2, 3), (3,)], None, ["operand 1", "1 axes", "'jk'"]),
        ("i1,1k->ik", [(2, 3), (3, 4)], None, ["'1'", "letters"]),
        ("ij->i->j", [(2, 3)], None, ["'->'"]),
        ("ij,jk->ik", [(2, 3), (3, 4)], ["A"], ["names", "2"]),
        ("i,i->i", [(3,), (1,)], None, ["'i'", "3", "1"]),
    ],
)
def test_bad_input_raises_naming_the_culprit(expr, operands, names, must_mention):
    calls = [lambda: N.diagram(expr, *operands, names=names)]
    if names is None:  # contraction_cost validates the same way
        calls.append(lambda: N.contraction_cost(expr, *operands))
    for call in calls:
        with pytest.raises(ValueError) as info:
            call()
        msg = str(info.value)
        for part in must_mention:
            assert part in msg, (part, msg)


def test_bad_types():
    with pytest.raises(TypeError, match="expr"):
        N.diagram(["ij"], (2, 3))
    with pytest.raises(TypeError, match="operand 0"):
        N.diagram("ij->ij", "not a shape")
    with pytest.raises(ValueError, match="size 0"):
        N.diagram("ij->ij", (0, 3))


def test_bad_paths():
    with pytest.raises(ValueError, match="term 3"):
        N.contraction_cost("ij,jk,kl->il", (2, 2), (2, 2), (2, 2), path=[(0, 3), (0, 1)])
    with pytest.raises(ValueError, match="uncontracted"):
        N.contraction_cost("ij,jk,kl->il", (2, 2), (2, 2), (2, 2), path=[(0, 1)])
    with pytest.raises(ValueError, match="distinct"):
        N.contraction_cost("ij,jk->ik", (2, 2), (2, 2), path=[(0, 0)])


# ---------------------------------------------------------------------------
# Contraction cost
# ---------------------------------------------------------------------------


@st.composite
def cost_cases(draw):
    expr, shapes = draw(einsum_cases())
    n = len(shapes)
    path, m = [], n
    while m > 1:
        k = draw(st.integers(2, min(3, m)))
        pos = tuple(sorted(draw(st.permutations(range(m)))[:k]))
        path.append(pos)
        m -= k - 1
    return expr, shapes, path


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(case=cost_cases())
def test_contraction_cost_agrees_with_opt_einsum(case):
    expr, shapes, path = case
    ours = N.contraction_cost(expr, *shapes, path=path)
    _, info = opt_einsum.contract_path(expr, *shapes, shapes=True, optimize=path)
    assert ours.flops == int(info.opt_cost)
    assert ours.largest_intermediate == int(info.largest_intermediate)
    best_path, best = opt_einsum.contract_path(expr, *shapes, shapes=True, optimize="optimal")
    assert ours.optimal_flops == int(best.opt_cost)
    assert [tuple(p) for p in best_path] == ours.optimal_path
    # our count for opt_einsum's own best order is opt_einsum's count
    assert N.contraction_cost(expr, *shapes).flops == ours.optimal_flops
    # the counting rule the page teaches, step by step: the product of the sizes of
    # all indices involved, times (terms - 1, at least 1) + 1 if an index is summed
    size = {ch: n for sub, shp in zip(expr.split("->")[0].split(","), shapes) for ch, n in zip(sub, shp)}
    terms = expr.split("->")[0].split(",")
    for step in ours.steps:
        ins, result = step.subscripts.split("->")
        chosen = ins.split(",")
        assert chosen == [terms[p] for p in step.positions]
        rest = [t for q, t in enumerate(terms) if q not in step.positions]
        involved = set("".join(chosen))
        summed = involved - set(result)
        assert summed == involved - set(expr.split("->")[1]) - set("".join(rest))
        loops = int(np.prod([size[ch] for ch in involved]))
        assert step.flops == loops * (max(1, len(chosen) - 1) + bool(summed))
        assert step.size == int(np.prod([size[ch] for ch in result]))
        terms = rest + [result]
    assert sum(step.flops for step in ours.steps) == ours.flops
    assert max(step.size for step in ours.steps) == ours.largest_intermediate


def test_two_orders_of_a_chain():
    n = 50
    shapes = [(n, n), (n, n), (n,)]
    mat_first = N.contraction_cost("ij,jk,k->i", *shapes, path=[(0, 1), (0, 1)])
    vec_first = N.contraction_cost("ij,jk,k->i", *shapes, path=[(1, 2), (0, 1)])
    assert mat_first.flops == 2 * n**3 + 2 * n**2
    assert vec_first.flops == 4 * n**2 == vec_first.optimal_flops


def test_mps_bad_order_is_exponential():
    # (the orders' costs are tested with the exercise, tests/test_exercises_ch1.py)
    # the networks contract to the right number: <psi|psi> of a random MPS
    net = N.mps_norm_network(4, 2, 3)
    rng = np.random.default_rng(1)
    ket = [rng.standard_normal(s) for s in net["shapes"][:4]]
    d = N.diagram(net["expr"], *ket, *ket)
    psi = np.einsum("ad,dbe,ecf,fg->abcg", *ket)
    assert rel_err(d.contract(), np.sum(psi**2)) <= 1e-10


def test_random_expression_is_valid_and_seeded():
    for seed in range(30):
        expr, shapes = N.random_expression(seed)
        assert (expr, shapes) == N.random_expression(seed)
        arrays = [np.random.default_rng(seed).standard_normal(s) for s in shapes]
        assert rel_err(N.diagram(expr, *arrays).contract(), np.einsum(expr, *arrays)) <= 1e-10


def test_sequential_path():
    assert N.sequential_path([0, 1, 2]) == [(0, 1), (0, 1)]
    with pytest.raises(ValueError, match="permutation"):
        N.sequential_path([0, 0, 1])


# ---------------------------------------------------------------------------
# Drawing: determinism and readable labels
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(N.CHAPTER_DIAGRAMS))
def test_chapter_diagram_layout_is_deterministic_and_readable(name):
    a = N.chapter_diagram(name).layout()
    b = N.chapter_diagram(name).layout()
    assert np.array_equal(a.coordinates(), b.coordinates())
    drawing = N.chapter_diagram(name).draw(title=name)
    try:
        boxes = drawing.label_boxes()
        x0, x1 = drawing.ax.get_xlim()
        y0, y1 = drawing.ax.get_ylim()
        keys = sorted(boxes, key=str)
        # no two labels (node names, leg labels, title) overlap
        for k1, k2 in itertools.combinations(keys, 2):
            assert not N._boxes_overlap(boxes[k1], boxes[k2], tol=0.005), (name, k1, k2)
        # nothing is clipped by the figure edge
        for k, (bx0, by0, bx1, by1) in boxes.items():
            assert x0 - 1e-6 <= bx0 and bx1 <= x1 + 1e-6 and y0 - 1e-6 <= by0 and by1 <= y1 + 1e-6, (name, k)
        # leg labels stay off the node shapes
        lay = drawing.layout
        for k, (nx, ny) in lay.node_xy.items():
            w, h = lay.node_wh[k]
            shape = (nx - w / 2, ny - h / 2, nx + w / 2, ny + h / 2)
            for key, box in boxes.items():
                if key[0] in ("edge", "leg", "copy"):
                    assert not N._boxes_overlap(shape, box, tol=0.005), (name, k, key)
        # the rendered boxes match the estimates used for the layout
        est = lay.label_boxes()
        for key, box in boxes.items():
            if key in est:
                assert abs((box[2] - box[0]) - (est[key][2] - est[key][0])) < 0.12, (name, key)
    finally:
        plt.close(drawing.fig)


def test_drawing_twice_gives_the_same_picture():
    d1 = N.chapter_diagram("multihead_output").draw()
    d2 = N.chapter_diagram("multihead_output").draw()
    try:
        assert d1.label_boxes() == d2.label_boxes()
        assert d1.fig.get_size_inches().tolist() == d2.fig.get_size_inches().tolist()
    finally:
        plt.close(d1.fig)
        plt.close(d2.fig)


def test_dangling_legs_point_outward():
    lay = N.diagram("ij,jk->ik", (2, 3), (3, 4)).layout()
    paths = dict(lay.paths)
    (s0, e0), (s1, e1) = paths[("leg", 0)], paths[("leg", 1)]
    assert e0[0] < s0[0] and e1[0] > s1[0]  # i leaves to the left, k to the right
    lay = N.diagram("bij,bjk->bik", (2, 2, 3), (2, 3, 4)).layout()
    s, e = dict(lay.paths)[("leg", 0)]  # b, from the copy node below the line
    assert e[1] < s[1] < 0


def test_colours_names_and_network_drawing():
    d = N.diagram("ij,kj->ik", (6, 2), (6, 2), names=["U", "U"])
    assert d.colors[0] == d.colors[1]
    d = N.diagram("ij,jk->ik", (2, 3), (3, 4), names=["W_Q", "x"], colors=["red", "blue"])
    assert d.colors == {0: "red", 1: "blue"}
    assert N._tex_name("W_Q") == "$W_{Q}$" and N._tex_name("sigma") == r"$\sigma$"
    # draw an existing tensornetwork network
    a = tn.Node(np.ones((2, 3)), name="A")
    b = tn.Node(np.ones((3, 4)), name="B")
    c = tn.CopyNode(3, 4, name="delta")
    a[1] ^ b[0]
    b[1] ^ c[0]
    c[1] ^ tn.Node(np.ones(4), name="v")[0]
    nd = N.network_diagram([a, b, c])
    assert [n.kind for n in nd.nodes] == ["tensor", "tensor", "copy"]
    assert len(nd.bonds) == 2 and len(nd.dangling) == 3  # a, and the copy legs (one goes to v, outside)
    drawing = N.draw_network([a, b, c])
    plt.close(drawing.fig)
    # a diagram's own network round-trips
    rng = np.random.default_rng(0)
    d = N.diagram("bij,bjk->bik", rng.standard_normal((2, 2, 3)), rng.standard_normal((2, 3, 4)))
    nodes, _ = d.to_network()
    back = N.network_diagram(nodes)
    assert len(back.copy_nodes) == 1 and len(back.bonds) == len(d.bonds) and len(back.dangling) == 3


def test_equation_and_gallery():
    drawing = N.draw_equation(N.chapter_diagram("isometry_UtU"), "=", N.identity_wire("j", "k", 2))
    try:
        boxes = drawing.label_boxes()
        for k1, k2 in itertools.combinations(sorted(boxes, key=str), 2):
            assert not N._boxes_overlap(boxes[k1], boxes[k2], tol=0.005), (k1, k2)
    finally:
        plt.close(drawing.fig)
    fig = N.gallery([N.chapter_diagram("matmul"), N.chapter_diagram("trace")], ncols=2)
    assert len(fig.axes) == 2
    plt.close(fig)


def test_explorer_text_and_widget():
    d, info = N.explore("bij,bjk->bik", "b=2 i=3", 4)
    assert d.shape == (2, 3, 4) and "FLOPs" in info
    with pytest.raises(ValueError, match="sizes"):
        N.explore("ij->i", "i:3")
    pytest.importorskip("ipywidgets")
    explorer = N.einsum_explorer("ij,jk->ik")
    assert list(explorer.controls) == ["expr", "dims", "default"] and len(explorer.widget.children) == 2
    explorer.controls["expr"].value = "ii->i,"  # an error is shown, not raised
    fig = explorer.figure()
    assert any("Error" in t.get_text() for ax in fig.axes for t in ax.texts)
    plt.close("all")


def test_bias_augment():
    rng = np.random.default_rng(0)
    x, W, b = rng.standard_normal((5, 3)), rng.standard_normal((3, 2)), rng.standard_normal(2)
    x1, Wb = N.bias_augment(x, W, b)
    assert np.allclose(N.diagram("bI,Ij->bj", x1, Wb).contract(), x @ W + b)
    with pytest.raises(ValueError, match="d_out"):
        N.bias_augment(x, W, np.ones(3))


# --- nonlinear steps held fixed: roles, and merging copy dots -----------------


def test_roles_mark_boxes_without_moving_them():
    plain = N.diagram("pk,km,mh,hn->pn", (5, 5), (5, 8), (8, 4), (4, 8), names=["A", "x", "W_V", "W_O"])
    frozen = N.chapter_diagram("frozen_head")
    assert frozen.roles == {0: "frozen"} and plain.roles == {}
    assert np.array_equal(frozen.layout().coordinates(), plain.layout().coordinates())
    assert frozen.layout().node_role == {0: "frozen"}
    assert N.chapter_diagram("relu_mask").roles == {2: "mask"}
    assert N.diagram("i,i->", (2,), (2,), roles={1: "mask"}).roles == {1: "mask"}
    with pytest.raises(ValueError, match="roles"):
        N.diagram("i,i->", (2,), (2,), roles={"A": "frozen"})
    with pytest.raises(ValueError, match="roles"):
        N.diagram("i,i->", (2,), (2,), roles={0: "hot"})
    with pytest.raises(TypeError, match="roles"):
        N.diagram("i,i->", (2,), (2,), roles=["frozen"])


def test_roles_are_drawn_dashed():
    dr = N.chapter_diagram("relu_mask").draw()
    boxes = [p for p in dr.ax.patches if hasattr(p, "get_boxstyle")]
    styles = [(p.get_linestyle(), p.get_hatch()) for p in boxes]
    assert sum(ls != "-" for ls, _ in styles) == 1 and sum(h is not None for _, h in styles) == 1
    plt.close(dr.fig)


def test_relu_at_fixed_input_is_a_mask_on_a_copy_dot():
    rng = np.random.default_rng(3)
    W_in, b_in, W_out = rng.standard_normal((8, 16)), rng.standard_normal(16), rng.standard_normal((16, 8))
    for _ in range(5):
        x = rng.standard_normal(8)
        s = (x @ W_in + b_in > 0).astype(float)
        x1, Wb = N.bias_augment(x, W_in, b_in)
        got = N.chapter_diagram("relu_mask", x1, Wb, s, W_out).contract()
        assert np.max(np.abs(got - np.maximum(x @ W_in + b_in, 0) @ W_out)) < 1e-10


def _chain_of_copies(rng, n_tensors, dim=3):
    """Vectors u_0..u_{n-1} on a chain of joined 3-legged copy nodes, one dangling leg at the end."""
    vecs = [rng.standard_normal(dim) for _ in range(n_tensors)]
    nodes = [tn.Node(v, name=f"u{k}") for k, v in enumerate(vecs)]
    copies = [tn.CopyNode(3, dim, name=f"c{k}") for k in range(n_tensors - 1)]
    tn.connect(nodes[0][0], copies[0][0])
    for k in range(1, n_tensors):
        tn.connect(nodes[k][0], copies[k - 1][1])
        if k < n_tensors - 1:
            tn.connect(copies[k - 1][2], copies[k][0])
    return vecs, nodes, copies


@pytest.mark.parametrize("n", [2, 3, 5])
def test_merge_copies_fuses_a_chain_of_dots_into_one(n):
    rng = np.random.default_rng(n)
    vecs, nodes, copies = _chain_of_copies(rng, n)
    d = N.network_diagram(nodes + copies)
    assert len(d.copy_nodes) == n - 1
    merged = N.merge_copies(d, *vecs)
    assert len(merged.copy_nodes) == 1 and merged.copy_nodes[0].rank == n + 1
    assert np.max(np.abs(merged.contract() - np.prod(vecs, axis=0))) < 1e-12
    assert N.merge_copies(merged).expr == merged.expr  # nothing left to merge


def test_merge_copies_keeps_ordinary_edges_and_rejects_what_it_cannot_write():
    rng = np.random.default_rng(0)
    A, u, v = rng.standard_normal((3, 4)), rng.standard_normal(3), rng.standard_normal(3)
    nA, nu, nv = tn.Node(A, name="A"), tn.Node(u, name="u"), tn.Node(v, name="v")
    c1, c2 = tn.CopyNode(2, 3, name="c1"), tn.CopyNode(3, 3, name="c2")
    tn.connect(nu[0], c1[0]), tn.connect(c1[1], c2[0]), tn.connect(nv[0], c2[1]), tn.connect(nA[0], c2[2])
    merged = N.merge_copies(N.network_diagram([nA, nu, nv, c1, c2]), A, u, v)
    assert np.max(np.abs(merged.contract() - (u * v) @ A)) < 1e-12
    with pytest.raises(TypeError, match="Diagram"):
        N.merge_copies("ij->ij")
    c3, c4 = tn.CopyNode(3, 2, name="c3"), tn.CopyNode(3, 2, name="c4")
    w = tn.Node(np.ones(2), name="w")
    tn.connect(c3[0], c4[0]), tn.connect(w[0], c3[1])
    with pytest.raises(ValueError, match="two output legs"):
        N.merge_copies(N.network_diagram([w, c3, c4]))
