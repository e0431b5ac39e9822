"""Tests of helpers.inversion (chapter 6)."""
from __future__ import annotations

import pytest
import torch

from helpers import inversion as I
from helpers import store
from helpers.transformer import HookedTransformer, act_name


@pytest.fixture(scope="module")
def add_model():
    return HookedTransformer(I.addition_config(seed=3))


@pytest.fixture(scope="module")
def count_model():
    return HookedTransformer(I.counting_config(seed=3))


def test_distance_properties():
    g = torch.Generator().manual_seed(0)
    z, q = torch.randn(5, 7, generator=g), torch.randn(7, generator=g)
    d = I.distance(z, q)
    assert d.shape == (5,)
    assert I.distance(q, q).item() == 0.0
    # relative: scaling both by c leaves D unchanged; it is measured in units of ||z_q||
    assert torch.allclose(I.distance(3 * z, 3 * q), d, atol=1e-6)
    assert torch.allclose(d * q.norm(), (z - q).norm(dim=-1), atol=1e-6)
    # not symmetric
    assert abs(I.distance(z[0], z[1]) - I.distance(z[1], z[0])) > 1e-4
    with pytest.raises(ValueError, match="zero norm"):
        I.distance(z, torch.zeros(7))
    with pytest.raises(ValueError, match="last dimension"):
        I.distance(z, torch.ones(3))


def test_counting_data_format():
    tokens, colon, answer = I.make_counting_data(300, seed=1)
    for row, c, a in zip(tokens.tolist(), colon.tolist(), answer.tolist()):
        bar = row.index(26)
        string, query = row[1:bar], row[bar + 1]
        assert row[0] == I.COUNTING.bos and row[c] == 27 and c == bar + 2
        assert len(set(string)) == 3 and all(1 <= string.count(x) <= 9 for x in set(string))
        assert query in string and a == 28 + string.count(query) - 1 and row[c + 1] == a
    assert I.input_class(tokens[:1], "counting")[0][1] == string.count(query) if False else True
    with pytest.raises(ValueError, match="n must be"):
        I.make_counting_data(0)


def test_addition_tokens_spell_the_sum():
    a, b = I.make_addition_data(200, seed=2)
    t = I.addition_tokens(a, b)
    digits = lambda cols: sum(t[:, c] * 10 ** i for i, c in enumerate(cols))  # noqa: E731
    assert torch.equal(digits([3, 2, 1]), a) and torch.equal(digits([7, 6, 5]), b)
    assert torch.equal(digits([9, 10, 11, 12]), a + b)            # least significant digit first
    assert len(set((I.make_addition_data(seed=0)[0] * 1000 + I.make_addition_data(seed=0)[1]).tolist())) == 10 ** 6
    with pytest.raises(ValueError, match="0, 999"):
        I.addition_tokens(1000, 3)


def test_min_distances_is_brute_force(add_model):
    tokens = I.task_inputs("addition", 400, seed=5)
    sites = [act_name("resid_post", 0), (act_name("z", 1), 2)]
    acts = I.site_activations(add_model, tokens, sites)
    queries = [(sites[0], acts[0][7, 8]), (sites[1], acts[1][11, 10])]
    md = I.min_distances(add_model, tokens, queries, I.ADDITION, batch_size=128)
    for q, (s, zq) in enumerate(queries):
        manual = I.distance(acts[q], zq).min(1).values
        assert torch.allclose(md[q], manual, atol=1e-6)
    assert md[0, 7] < 1e-6 and md[1, 11] < 1e-6          # each query lies in its own preimage
    mask = I.preimage_mask(add_model, tokens, queries, I.ADDITION)
    assert torch.equal(mask, md <= I.EPS)


def test_causal_prefix_lies_in_the_preimage(add_model):
    # The activation at position p depends on tokens 0..p only: any input with the same
    # prefix is in its preimage, at distance exactly 0.
    a = torch.tensor([123, 123, 124, 987])
    b = torch.tensor([456, 999, 456, 456])
    tokens = I.addition_tokens(a, b)
    z = I.site_activations(add_model, tokens, [act_name("resid_post", 1)])[0]
    assert torch.allclose(z[0, :5], z[1, :5], atol=1e-6)      # '123+' shared
    md = I.min_distances(add_model, tokens, [(act_name("resid_post", 1), z[0, 4])], I.ADDITION)[0]
    assert md[0] < 1e-6 and md[1] < 1e-6 and md[3] > 1e-3


def test_padding_is_ignored(count_model):
    tokens = I.task_inputs("counting", 50, seed=0)
    valid = I.valid_positions(tokens, I.COUNTING)
    eos_pos = (tokens == I.COUNTING.eos).long().argmax(1)
    assert torch.equal(valid.sum(1), eos_pos + 1)
    z_pad = I.site_activations(count_model, tokens[:1], [act_name("resid_post", 1)])[0][0, -1]
    md = I.min_distances(count_model, tokens[:1], [(act_name("resid_post", 1), z_pad)], I.COUNTING)
    assert md[0, 0] > 0           # the query came from a padding position, which is not searched


def test_precision_recall():
    inside = torch.tensor([True, True, False, True])
    p, r = I.precision_recall(inside, [(1, 2), (1, 3), (5, 5), None], [(1, 2), (1, 3), (1, 4), (1, 5)])
    assert p == 0.75 and r == 0.5
    assert I.precision_recall(inside, [None] * 4, [])[1] != I.precision_recall(inside, [None] * 4, [])[1]  # NaN
    with pytest.raises(ValueError, match="entries"):
        I.precision_recall(inside, [None], [])


def test_input_class():
    t = I.counting_tokens("abcab", "a")
    assert I.input_class(t, "counting") == [(0, 2)]
    t2 = I.addition_tokens(torch.tensor([123]), torch.tensor([456]))
    assert I.input_class(t2, "addition") == [(5, 7, 9)]
    bad = t2.clone()
    bad[0, 2] = 10
    assert I.input_class(bad, "addition") == [None]


def test_preimage_token_contrast_addition():
    a, b = I.make_addition_data(500, seed=4)
    pool = I.addition_tokens(a, b)
    q = pool[0]
    inside = pool[:, 3] == q[3]          # a "preimage" that pins the units digit of a
    c = I.preimage_token_contrast(q, pool, inside, "addition")
    base = (pool[:, 3] == q[3]).float().mean()
    assert c[3].item() == pytest.approx(1 - base.item(), abs=1e-6)
    assert c[0] == 0 and c[3] == c.max()


def test_preimage_token_contrast_counting():
    pool = torch.cat([I.counting_tokens("aab", "a"), I.counting_tokens("aab", "b"), I.counting_tokens("abb", "a")])
    c = I.preimage_token_contrast(pool[0], pool, torch.tensor([True, True, False]), "counting")
    # letter 'a' held twice in both members, in 1/3... 2/3 of the pool -> 1 - 2/3
    assert c[1].item() == pytest.approx(1 / 3, abs=1e-6)
    assert c[0] == 0


def test_colour_html_escapes_and_checks():
    h = I.colour_tokens_html(["<s>", "a"], [0.5, -0.2], title="x")
    assert "&lt;s&gt;" in h and "rgba(220,40,40,0.50)" in h and "rgba(40,90,220,0.20)" in h
    with pytest.raises(ValueError, match="same length"):
        I.colour_tokens_html(["a"], [0.1, 0.2])


def test_decoder_conditions_on_z_and_round_trips(tmp_path):
    dec = I.ConditionalDecoder(14, 14, 8, 3, d_model=32, n_layers=1, n_heads=2, seed=0)
    tok = I.task_inputs("addition", 6)
    z = torch.randn(6, 8)
    site = torch.tensor([0, 1, 2, 0, 1, 2])
    out = dec(tok, z, site)
    assert out.shape == (6, 14, 14)
    assert not torch.allclose(out, dec(tok, 2 * z + 1, site))     # the slot is used
    # causal: the logits at position p do not depend on later tokens
    tok2 = tok.clone()
    tok2[:, 10:] = 0
    assert torch.allclose(dec(tok2, z, site)[:, :10], out[:, :10], atol=1e-5)
    store.save("dec_test", dec, root=tmp_path)
    back = store.load("dec_test", root=tmp_path).model
    assert torch.allclose(back(tok, z, site), out, atol=1e-6)
    s = I.sample_inputs(dec, "addition", z[0], 0, n=5, seed=1)
    assert s.shape == (5, 14) and (s[:, 0] == I.ADDITION.bos).all() and int(s.max()) < 14


def test_cond_add_reaches_every_position_and_round_trips(tmp_path):
    kw = dict(d_model=32, n_layers=1, n_heads=2, seed=0)
    slot, added = I.ConditionalDecoder(14, 14, 8, 2, **kw), I.ConditionalDecoder(14, 14, 8, 2, cond_add=True, **kw)
    assert added.cfg["cond_add"] and not slot.cfg["cond_add"]
    tok = I.task_inputs("addition", 4)
    z, site = torch.randn(4, 8), torch.tensor([0, 1, 0, 1])
    # same weights, so the two differ only by the added conditioning vector
    assert not torch.allclose(slot(tok, z, site), added(tok, z, site))
    store.save("dec_add", added, root=tmp_path)
    back = store.load("dec_add", root=tmp_path).model
    assert back.cfg["cond_add"] and torch.allclose(back(tok, z, site), added(tok, z, site), atol=1e-6)


def test_addition_queries_order_and_values(add_model):
    sites = I.SITES["addition"]
    queries, meta = I.addition_queries(add_model, [(275, 468), (3, 999)], positions=(8, 11))
    assert len(queries) == len(meta) == 2 * len(sites) * 2
    acts = I.site_activations(add_model, I.addition_tokens(torch.tensor([3]), torch.tensor([999])), sites)
    k = meta.index((1, 2, 11))
    assert queries[k][0] == sites[2] and torch.allclose(queries[k][1], acts[2][0, 11])


def test_score_decoder_against_brute_force(add_model):
    # A decoder's precision is checked by re-running the probed model: the reported precision
    # must equal the share of samples within eps, and recall is over the preimage's classes.
    dec = I.ConditionalDecoder(14, 14, 32, len(I.SITES["addition"]), d_model=32, n_layers=1, n_heads=2, seed=0)
    a, b = I.make_addition_data(3000, seed=2)
    pool = I.addition_tokens(a, b)
    queries, meta = I.addition_queries(add_model, [(int(a[0]), int(b[0]))], positions=(8,))
    inside = I.min_distances(add_model, pool, queries, I.ADDITION) <= I.EPS
    sc = I.score_decoder(add_model, dec, "addition", queries, [m[1] for m in meta], pool, inside, n_samples=8)
    assert sc.shape == (len(queries), 3)
    assert ((sc[:, :2] >= 0) & (sc[:, :2] <= 1)).all()
    assert (sc[:, 2] >= 1).all()                      # the query itself is in its preimage
    s0, z0 = queries[0]
    smp = I.sample_inputs(dec, "addition", z0, meta[0][1], 8, seed=0)
    share = (I.min_distances(add_model, smp, [(s0, z0)], I.ADDITION)[0] <= I.EPS).float().mean().item()
    assert sc[0, 0].item() == pytest.approx(share)
    with pytest.raises(ValueError, match="must match"):
        I.score_decoder(add_model, dec, "addition", queries, [0], pool, inside)


def test_load_result_names():
    with pytest.raises(ValueError, match="one of"):
        I.load_result("nope")
    cnt = I.load_result("counting_attempt")
    assert cnt["final_step"] == cnt["curve"]["step"][-1] and 0 <= cnt["final_test_acc"] <= 1


def test_decoder_rebuild_record_is_about_the_shipped_decoder():
    # tools/ch6_decoder_check.py rebuild retrains the decoder into a scratch store and records
    # the page's figures for both; the record must describe the decoder shipped now.
    rec = I.load_result("decoder")["rebuild"]
    shipped = store.load("inv_decoder_addition")
    assert rec["shipped_weights_digest"] == store.weights_digest(shipped.model)  # same tensors, whatever the file
    assert rec["within_tolerance"]
    assert abs(rec["difference"]["precision"]) <= rec["tolerance"]["precision"]
    assert abs(rec["difference"]["recall"]) <= rec["tolerance"]["recall"]


@pytest.mark.slow
def test_decoder_recipe_is_deterministic_and_learns():
    # Two short runs of the recipe's training loop give the same weights (seeded data, sites,
    # positions and minibatches), and the loss falls.
    runs = [I._train_decoder("addition", 1500, 40, 64, 3e-3, 32, 1, True, 0) for _ in range(2)]
    (d1, r1), (d2, _) = runs
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(d1.state_dict().values(), d2.state_dict().values()))
    assert r1.history["test_loss"][-1] < r1.history["test_loss"][0] - 0.5
    assert r1.history["lr"][-1] < 0.01 * 3e-3          # the cosine decay ends near 0


@pytest.mark.slow
def test_decoder_learns_to_copy_its_condition():
    # The activation is the one-hot of the first digit; after a short run the decoder
    # predicts that digit from z alone (it cannot from the BOS token).
    torch.manual_seed(0)
    a, b = I.make_addition_data(2000, seed=6)
    tok = I.addition_tokens(a, b)
    z = torch.nn.functional.one_hot(tok[:, 1], 10).float() + 0.1
    site = torch.zeros(2000, dtype=torch.long)
    dec = I.ConditionalDecoder(14, 14, 10, 1, d_model=32, n_layers=1, n_heads=2, n_cond_blocks=1, seed=0)
    from helpers.training import train
    train(dec, (tok, z, site), lambda m, bt: I.decoder_loss(m, bt, -1), steps=150, lr=3e-3, batch_size=128,
          progress=False, threads=1)
    with torch.no_grad():
        pred = dec(tok[:200, :1], z[:200], site[:200])[:, 0].argmax(-1)
    assert (pred == tok[:200, 1]).float().mean() > 0.9


@pytest.mark.parametrize("name,task,threshold", [("inv_addition", "addition", 0.97)])
def test_shipped_models_accuracy(name, task, threshold):
    model = store.load(name).model
    if task == "counting":
        tokens, colon, _ = I.make_counting_data(2000, seed=777)
        read = colon[:, None]
    else:
        a, b = I.make_addition_data(seed=0)
        a, b = a[-2000:], b[-2000:]     # never seen in training (the recipe trains on the first pairs)
        tokens = I.addition_tokens(a, b)
        read = I.ADD_ANSWER_POS.expand(2000, -1).clone()
    assert I.answer_accuracy(model, tokens, read) >= threshold


def test_shipped_decoder_samples_land_in_the_preimage():
    # For the residual stream at '=' (which pins the two units digits), a good share of the
    # shipped decoder's samples must reproduce the query activation within eps; random
    # inputs almost never do (about 1 in 100 share both units digits).
    model = store.load("inv_addition").model
    dec = store.load("inv_decoder_addition").model
    site = act_name("resid_post", 0)
    si = I.SITES["addition"].index(site)
    q = I.addition_tokens(torch.tensor([275, 703]), torch.tensor([468, 196]))
    z = I.site_activations(model, q, [site])[0][:, 8]
    shares = []
    for k in range(2):
        samples = I.sample_inputs(dec, "addition", z[k], si, 48, seed=k)
        shares.append((I.min_distances(model, samples, [(site, z[k])], I.ADDITION)[0] <= I.EPS).float().mean())
    rand = I.task_inputs("addition", 2000, seed=9)
    base = (I.min_distances(model, rand, [(site, z[0])], I.ADDITION)[0] <= I.EPS).float().mean()
    assert min(shares) > 0.2 > base
