"""InversionView: what an activation knows, read off its exact epsilon-preimage.

Huang, Panwar, Goyal and Hahn (arXiv 2405.17653) ask what information an
activation ``z_q`` holds by looking at the inputs that give (nearly) the same
activation: the epsilon-preimage

    { x : min over positions of D(z(x), z_q) <= eps },
    D(z, z_q) = ||z - z_q|| / ||z_q||,

with ``eps = 0.1``. They sample the preimage with a trained conditional
decoder. The input spaces of their small tasks are small enough that this
module can also compute the preimage *exactly* by brute force, and so measure
the decoder's precision and recall against ground truth.

Contents:

* the two probed tasks of the paper (:func:`make_counting_data`,
  :func:`make_addition_data`, token vocabularies, configs); the addition model
  ships as recipe ``inv_addition`` (the counting model needs a day or two of
  our CPU, see :func:`train_counting`);
* the distance (:func:`distance`) and brute-force preimages
  (:func:`site_activations`, :func:`min_distances`, :func:`preimage_mask`);
* the conditional decoder (:class:`ConditionalDecoder`, recipe
  ``inv_decoder_addition``), sampling (:func:`sample_inputs`), precision and
  recall (:func:`precision_recall`), for many queries at once
  (:func:`addition_queries`, :func:`score_decoder`);
* measured results too slow for the page (:data:`RESULTS`, :func:`load_result`),
  written by ``tools/ch6_counting_attempt.py`` and ``tools/ch6_decoder_check.py``;
* reading a preimage (:func:`addition_features`, :func:`preimage_agreement`)
  and token colouring, exact (:func:`preimage_token_contrast`) or from the
  decoder (:func:`token_contrast`), rendered by :func:`colour_tokens_html`.

Used in chapter 6.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers._util import check_seed as _check_seed
from helpers.store import CHECKPOINT_DIR, recipe, register_model_class
from helpers.training import cross_entropy, train
from helpers.transformer import HookedTransformer, TransformerConfig, act_name

__all__ = [
    "EPS",
    "COUNT_LETTERS", "COUNT_VOCAB", "ADD_VOCAB", "Task", "COUNTING", "ADDITION",
    "make_counting_data", "make_addition_data", "addition_tokens", "counting_tokens",
    "decode", "counting_config", "addition_config", "answer_loss", "answer_accuracy",
    "distance", "site_activations", "min_distances", "preimage_mask",
    "ConditionalDecoder", "decoder_training_batch", "sample_inputs",
    "precision_recall", "addition_queries", "score_decoder", "token_contrast", "colour_tokens_html",
    "SITES", "site_name", "valid_positions", "task_inputs", "pad_act", "decoder_loss", "input_class",
    "ADD_ANSWER_POS", "addition_features", "counting_features", "preimage_agreement", "preimage_token_contrast",
    "RESULTS", "load_result", "train_addition", "train_counting", "train_decoder_addition",
]

EPS = 0.1  # the paper's threshold

# ---------------------------------------------------------------------------
# Vocabularies
# ---------------------------------------------------------------------------
COUNT_LETTERS = "abcdefghijklmnopqrstuvwxyz"
# counting: 26 letters, '|', ':', the counts '1'..'9', BOS, EOS, PAD
COUNT_VOCAB = list(COUNT_LETTERS) + ["|", ":"] + [str(k) for k in range(1, 10)] + ["<s>", "</s>", "_"]
# addition: digits, '+', '=', BOS, EOS
ADD_VOCAB = [str(d) for d in range(10)] + ["+", "=", "<s>", "</s>"]


@dataclass(frozen=True)
class Task:
    """Vocabulary and layout of a probed task.

    Attributes
    ----------
    name : str
    vocab : list of str
        ``vocab[i]`` is the text of token ``i``.
    n_ctx : int
        Sequence length (sequences are right-padded to it).
    bos, eos, pad : int
        Special token ids (``pad`` is ``eos`` for addition, which has no padding).
    """

    name: str
    vocab: tuple
    n_ctx: int
    bos: int
    eos: int
    pad: int

    @property
    def d_vocab(self) -> int:
        return len(self.vocab)


COUNTING = Task("counting", tuple(COUNT_VOCAB), n_ctx=33, bos=37, eos=38, pad=39)
ADDITION = Task("addition", tuple(ADD_VOCAB), n_ctx=14, bos=12, eos=13, pad=13)
_BAR, _COLON, _ONE = 26, 27, 28        # counting tokens '|', ':', '1'
_PLUS, _EQ = 10, 11                    # addition tokens


def _check_n(n, name="n"):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"{name} must be a positive int, got {n!r}")
    return int(n)


def make_counting_data(n: int, seed: int = 0, n_letters: int = 26):
    """Random character-counting inputs, as in the paper.

    A string is built from 3 distinct letters, each repeated 1-9 times, shuffled;
    then ``|c:`` asks for the count of one of the three letters ``c`` and the
    answer follows. Layout (right-padded to ``COUNTING.n_ctx`` = 33)::

        <s> s_1 ... s_m | c : k </s> _ _ ...

    Parameters
    ----------
    n : int
        Number of examples.
    seed : int
    n_letters : int
        Letters drawn from the first ``n_letters`` of the alphabet (26 = the paper's).

    Returns
    -------
    tokens : LongTensor [batch, 33]
    colon : LongTensor [batch]
        Position of ``:`` (where the model predicts the count).
    answer : LongTensor [batch]
        Token id of the count (``'1'`` .. ``'9'``).

    Named in chapter 6 (the counting model is not shipped: see :func:`train_counting`).
    """
    n = _check_n(n)
    if not (3 <= n_letters <= 26):
        raise ValueError(f"n_letters must lie in [3, 26], got {n_letters!r}")
    rng = np.random.default_rng(_check_seed(seed))
    letters = np.argsort(rng.random((n, n_letters)), axis=1)[:, :3]
    counts = rng.integers(1, 10, size=(n, 3))
    q = rng.integers(0, 3, size=n)
    # slot j of the string holds letter 0, 1 or 2 by the cumulative counts; a random
    # permutation of the first m slots (padding slots sort last) shuffles the string
    slots = np.arange(27)[None, :]
    cum = np.cumsum(counts, axis=1)
    m = cum[:, 2]
    which = (slots >= cum[:, :1]).astype(np.int64) + (slots >= cum[:, 1:2])
    valid = slots < m[:, None]
    order = np.argsort(rng.random((n, 27)) + 2.0 * ~valid, axis=1)
    string = np.take_along_axis(letters, np.minimum(np.take_along_axis(which, order, 1), 2), 1)
    tokens = np.full((n, COUNTING.n_ctx), COUNTING.pad, dtype=np.int64)
    tokens[:, 0] = COUNTING.bos
    tokens[:, 1:28] = np.where(valid, string, COUNTING.pad)
    r = np.arange(n)
    answer = _ONE + counts[r, q] - 1
    tokens[r, m + 1] = _BAR
    tokens[r, m + 2] = letters[r, q]
    tokens[r, m + 3] = _COLON
    tokens[r, m + 4] = answer
    tokens[r, m + 5] = COUNTING.eos
    colon = m + 3
    return torch.from_numpy(tokens), torch.from_numpy(colon), torch.from_numpy(answer)


def counting_tokens(string: str, query: str) -> torch.Tensor:
    """Tokens ``[1, 33]`` of one counting input, e.g. ``counting_tokens("abba", "a")``.

    The answer slot holds the true count. Named in chapter 6 (the counting model is not shipped: see :func:`train_counting`).

    >>> decode(counting_tokens("aab", "b"), COUNTING)
    '<s>aab|b:1</s>'
    """
    if not isinstance(string, str) or not isinstance(query, str) or len(query) != 1:
        raise TypeError("string must be a str of letters and query a single letter")
    if not string or any(ch not in COUNT_LETTERS for ch in string + query) or len(string) > 27:
        raise ValueError(f"string must be 1-27 lowercase letters and query a letter, got {string!r}, {query!r}")
    k = string.count(query)
    if not 1 <= k <= 9:
        raise ValueError(f"the query letter must occur 1-9 times in the string, got {k}")
    ids = [COUNTING.bos] + [COUNT_LETTERS.index(ch) for ch in string] + [
        _BAR, COUNT_LETTERS.index(query), _COLON, _ONE + k - 1, COUNTING.eos]
    ids += [COUNTING.pad] * (COUNTING.n_ctx - len(ids))
    return torch.tensor([ids])


def addition_tokens(a, b) -> torch.Tensor:
    """Tokens ``[batch, 14]`` of ``<s> a2 a1 a0 + b2 b1 b0 = c0 c1 c2 c3 </s>`` (zero-padded).

    ``a`` and ``b`` are ints or integer arrays in [0, 999]. The answer
    ``c = a + b`` is written *least significant digit first* (the paper writes
    it most significant first; reversed, the model emits the units digit first
    and each carry is known when it is needed, which a 2-layer model learns
    within our CPU budget). Used in chapter 6.

    >>> decode(addition_tokens(57, 968), ADDITION)
    '<s>057+968=5201</s>'
    """
    a = torch.as_tensor(a).long().reshape(-1)
    b = torch.as_tensor(b).long().reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same number of entries, got {a.numel()} and {b.numel()}")
    if a.numel() == 0 or int(a.min()) < 0 or int(b.min()) < 0 or int(a.max()) > 999 or int(b.max()) > 999:
        raise ValueError("a and b must be integers in [0, 999]")
    c = a + b

    def digits(x, k):
        return torch.stack([(x // 10 ** i) % 10 for i in reversed(range(k))], dim=1)

    n = a.shape[0]
    col = lambda v: torch.full((n, 1), v, dtype=torch.long, device=a.device)  # noqa: E731
    return torch.cat([col(ADDITION.bos), digits(a, 3), col(_PLUS), digits(b, 3), col(_EQ),
                      digits(c, 4).flip(1), col(ADDITION.eos)], dim=1)


def make_addition_data(n: int | None = None, seed: int = 0):
    """Addition pairs ``(a, b)``: all 10^6 in a seeded random order, or the first ``n`` of them.

    Returns ``(a, b)`` LongTensors ``[batch]``. Use :func:`addition_tokens` to
    get tokens. Used in chapter 6.
    """
    g = torch.Generator().manual_seed(_check_seed(seed))
    perm = torch.randperm(1_000_000, generator=g)
    if n is not None:
        perm = perm[: _check_n(n)]
    return perm // 1000, perm % 1000


def decode(tokens, task: Task) -> str | list[str]:
    """Text of tokens ``[pos]`` or ``[batch, pos]`` (padding dropped). Used in chapter 6."""
    t = torch.as_tensor(tokens)
    if t.ndim == 2:
        out = ["".join(task.vocab[i] for i in row.tolist() if i != task.pad or task.pad == task.eos) for row in t]
        return out[0] if len(out) == 1 else out
    return "".join(task.vocab[i] for i in t.tolist() if i != task.pad or task.pad == task.eos)


RESULTS = {"counting_attempt": CHECKPOINT_DIR / "results" / "ch6_counting_attempt.json",
           "decoder": CHECKPOINT_DIR / "results" / "ch6_decoder.json"}
"""Measured results that take too long for the page: ``tools/ch6_counting_attempt.py`` and
``tools/ch6_decoder_check.py`` write them; chapter 6 reads them with :func:`load_result`."""


def load_result(name: str) -> dict:
    """The stored result ``name`` (a key of :data:`RESULTS`) as a dict. Used in chapter 6."""
    import json

    if name not in RESULTS:
        raise ValueError(f"name must be one of {sorted(RESULTS)}, got {name!r}")
    path = RESULTS[name]
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run the tools/ch6_*.py script that writes it")
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------
# Probed models
# ---------------------------------------------------------------------------
def counting_config(seed: int = 0) -> TransformerConfig:
    """GPT-2-style counting model: 2 layers, 1 head, d_model 64, LayerNorm, biases, GELU.

    Named in chapter 6 (the counting model is not shipped: see :func:`train_counting`).
    """
    return TransformerConfig(n_layers=2, d_model=64, n_heads=1, d_head=64, d_mlp=256, d_vocab=COUNTING.d_vocab,
                             n_ctx=COUNTING.n_ctx, act_fn="gelu", normalization="LN", attn_bias=True,
                             mlp_bias=True, unembed_bias=True, init_std=0.02, seed=seed)


def addition_config(seed: int = 0) -> TransformerConfig:
    """GPT-2-style addition model: 2 layers, 4 heads, d_model 32, LayerNorm, biases, GELU.

    Not named on chapter 6's page: a building block of the functions, recipes or checks behind it.
    """
    return TransformerConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=128, d_vocab=ADDITION.d_vocab,
                             n_ctx=ADDITION.n_ctx, act_fn="gelu", normalization="LN", attn_bias=True,
                             mlp_bias=True, unembed_bias=True, init_std=0.02, seed=seed)


ADD_ANSWER_POS = torch.arange(8, 12)  # positions '=', c0, c1, c2 predict c0, c1, c2, c3


def answer_loss(model, batch) -> torch.Tensor:
    """Cross-entropy on the answer tokens only.

    ``batch`` is ``(tokens, read_pos)`` with ``read_pos [batch, n_read]`` the
    positions whose next token is an answer token (counting: the ``:``;
    addition: ``=``, c0, c1, c2). Not named on chapter 6's page: a building block of the functions, recipes or checks behind it.
    """
    tokens, read_pos = batch
    logits = model(tokens)
    idx = read_pos[:, :, None].expand(-1, -1, logits.shape[-1])
    lg = logits.gather(1, idx).reshape(-1, logits.shape[-1])
    tgt = tokens.gather(1, read_pos + 1).reshape(-1)
    return cross_entropy(lg, tgt)


@torch.no_grad()
def answer_accuracy(model, tokens, read_pos, batch_size: int = 4096) -> float:
    """Share of sequences whose every answer token is the argmax (greedy = teacher-forced here).

    Used in chapter 6.
    """
    ok = []
    for i in range(0, tokens.shape[0], batch_size):
        t, r = tokens[i:i + batch_size], read_pos[i:i + batch_size]
        logits = model(t)
        pred = logits.gather(1, r[:, :, None].expand(-1, -1, logits.shape[-1])).argmax(-1)
        ok.append((pred == t.gather(1, r + 1)).all(1))
    return torch.cat(ok).float().mean().item()


def _train_probed(task: str, seed: int, n_train: int, steps: int, batch_size: int, lr: float,
                  target_acc: float, progress):
    if task == "counting":
        model = HookedTransformer(counting_config(seed))
        tokens, colon, _ = make_counting_data(n_train + 5000, seed=seed)
        read = colon[:, None]
    else:
        model = HookedTransformer(addition_config(seed))
        a, b = make_addition_data(n_train + 5000, seed=seed)
        tokens = addition_tokens(a, b)
        read = ADD_ANSWER_POS.expand(tokens.shape[0], -1).clone()
    tr = (tokens[:n_train], read[:n_train])
    te = (tokens[n_train:n_train + 2000], read[n_train:n_train + 2000])

    def metrics(m):
        return {"test_acc": answer_accuracy(m, *te), "test_loss": answer_loss(m, te).item()}

    result = train(model, tr, answer_loss, steps=steps, lr=lr, weight_decay=0.01, warmup_steps=200,
                   batch_size=batch_size, seed=seed, log_every=250, metrics_fn=metrics,
                   grad_clip=1.0, threads=1, progress=progress, description=task,
                   stop_when=lambda row: row.get("test_acc", 0.0) >= target_acc)
    return model, result


def train_counting(seed: int = 0, n_train: int = 100_000, steps: int = 3000, batch_size: int = 128,
                   lr: float = 3e-3, target_acc: float = 0.99, progress: bool | None = False):
    """Train the counting model on ``n_train`` random strings (test: 2,000 more); ``(model, TrainResult)``.

    Stops early once the logged test accuracy reaches ``target_acc``. Not a
    shipped recipe. The authors' own run of this model (their repository's
    ``training_outputs/counting/checkpoint-914100/trainer_state.json``) needed
    914,100 steps of batch 128 at a constant learning rate of 5e-4: the
    answer loss sat on plateaus near 1.6 (to about step 170k), 0.6 and 0.22,
    and fell below 0.03 only after about step 690k. On one thread of our CPU a
    step of batch 128 costs 80-210 ms, so that schedule is 20-53 hours; our
    runs (3,000 steps here; a 20-minute attempt, 12,000 steps of batch 32 on fresh
    strings in ``tools/ch6_counting_attempt.py``) stay on the first plateau
    near 20% accuracy. Chapter 6 therefore probes the addition model only and
    shows this evidence.
    """
    return _train_probed("counting", seed, n_train, steps, batch_size, lr, target_acc, progress)


@recipe("inv_addition", "InversionView 3-digit addition: 2 layers, 4 heads, d_model 32")
def train_addition(seed: int = 0, n_train: int = 200_000, steps: int = 8000, batch_size: int = 256,
                   lr: float = 3e-3, target_acc: float = 0.985, progress: bool | None = False):
    """Train the addition model on ``n_train`` of the 10^6 pairs (test: 2,000 held out); ``(model, TrainResult)``.

    Stops early once the logged test accuracy reaches ``target_acc``.

    Used in chapter 6.
    """
    return _train_probed("addition", seed, n_train, steps, batch_size, lr, target_acc, progress)


# ---------------------------------------------------------------------------
# The distance and brute-force preimages
# ---------------------------------------------------------------------------
def distance(z: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """The paper's distance ``D(z, z_q) = ||z - z_q|| / ||z_q||`` over the last axis.

    Parameters
    ----------
    z : Tensor [..., d]
    z_q : Tensor [d] (or broadcastable to ``z``)

    Returns
    -------
    Tensor [...]

    Not symmetric: it is relative to the *query's* norm. Used in chapter 6.

    >>> distance(torch.tensor([1.0, 0.1]), torch.tensor([1.0, 0.0])).item()
    0.10000000149011612
    """
    if not isinstance(z, torch.Tensor) or not isinstance(z_q, torch.Tensor):
        raise TypeError("z and z_q must be tensors")
    if z.shape[-1] != z_q.shape[-1]:
        raise ValueError(f"z [..., {z.shape[-1]}] and z_q [..., {z_q.shape[-1]}] must share their last dimension")
    nq = z_q.norm(dim=-1)
    if (nq == 0).any():
        raise ValueError("z_q has zero norm: the relative distance is undefined")
    return (z - z_q).norm(dim=-1) / nq


def _site_hook(site) -> tuple[str, int | None]:
    if isinstance(site, str):
        return site, None
    if isinstance(site, tuple) and len(site) == 2 and isinstance(site[0], str) and isinstance(site[1], int):
        return site
    raise TypeError(f"site must be a hook name or (hook name, head), got {site!r}")


def site_name(site) -> str:
    """Short readable name of a site, e.g. ``'L1 attn_out'`` or ``'L0 head 2'``. Used in chapter 6."""
    name, head = _site_hook(site)
    parts = name.split(".")
    layer = f"L{parts[1]} " if parts[0] == "blocks" else ""
    leaf = parts[-1].replace("hook_", "")
    return f"{layer}head {head}" if head is not None else f"{layer}{leaf}"


@torch.no_grad()
def site_activations(model: HookedTransformer, tokens: torch.Tensor, sites, batch_size: int = 8192) -> list:
    """Activations of ``model`` on ``tokens`` at each site: a list of Tensors [batch, pos, d_site].

    A site is a hook name with ``[batch, pos, d]`` activations (``act_name("resid_post", 1)``)
    or ``(act_name("z", l), head)`` for one head's output ``[batch, pos, d_head]``.
    Used in chapter 6.
    """
    hooks = [_site_hook(s) for s in sites]
    names = sorted({h for h, _ in hooks})
    out: list[list] = [[] for _ in sites]
    for i in range(0, tokens.shape[0], batch_size):
        _, cache = model.run_with_cache(tokens[i:i + batch_size].to(model.device), names_filter=names)
        for j, (h, head) in enumerate(hooks):
            a = cache[h]
            out[j].append(a[:, :, head] if head is not None else a)
    return [torch.cat(o) for o in out]


def valid_positions(tokens: torch.Tensor, task: Task) -> torch.Tensor:
    """BoolTensor [batch, pos]: positions up to and including the first EOS (later ones are padding).

    Used in chapter 6.
    """
    is_eos = tokens == task.eos
    after = (is_eos.long().cumsum(1) - is_eos.long()) > 0
    return ~after


@torch.no_grad()
def min_distances(model: HookedTransformer, tokens: torch.Tensor, queries, task: Task,
                  batch_size: int = 8192) -> torch.Tensor:
    """For every query and every input, the smallest distance over the input's positions.

    Parameters
    ----------
    model : HookedTransformer
    tokens : LongTensor [batch, pos]
        The inputs searched (a whole input space, a dense sample, or decoder samples).
    queries : list of (site, z_q)
        ``z_q`` is Tensor [d_site].
    task : Task
        Positions after the first EOS are ignored.

    Returns
    -------
    Tensor [n_queries, batch]
        ``min_p D(z_site(x)[p], z_q)``; ``<= EPS`` means "in the epsilon-preimage".

    Used in chapter 6.
    """
    if not queries:
        raise ValueError("queries must be a non-empty list of (site, z_q)")
    keys = [s if isinstance(s, str) else tuple(s) for s, _ in queries]
    by_site: dict = {}
    for q, k in enumerate(keys):
        by_site.setdefault(k, []).append(q)
    names = sorted({_site_hook(k)[0] for k in by_site})
    out = torch.empty(len(queries), tokens.shape[0], device=model.device)
    for i in range(0, tokens.shape[0], batch_size):
        t = tokens[i:i + batch_size].to(model.device)
        _, cache = model.run_with_cache(t, names_filter=names)
        invalid = ~valid_positions(t, task)
        for k, qs in by_site.items():
            h, head = _site_hook(k)
            a = cache[h][:, :, head] if head is not None else cache[h]          # [b, p, d]
            a = a.double()                     # float64: the expansion below cancels near 0
            zq = torch.stack([queries[q][1].to(a.device, a.dtype) for q in qs])  # [nq, d]
            if zq.shape[-1] != a.shape[-1]:
                raise ValueError(f"query at {k!r} has width {zq.shape[-1]}, the site has {a.shape[-1]}")
            nq2 = (zq * zq).sum(-1)
            if (nq2 == 0).any():
                raise ValueError(f"a query at {k!r} has zero norm: the relative distance is undefined")
            # ||a - z||^2 = ||a||^2 - 2 a.z + ||z||^2, all queries of the site in one matmul
            d2 = (a * a).sum(-1)[..., None] - 2 * a @ zq.T + nq2
            d = (d2.clamp_min(0) / nq2).sqrt().masked_fill(invalid[..., None], float("inf"))
            out[qs, i:i + batch_size] = d.min(1).values.T.to(out.dtype)
    return out


def preimage_mask(model, tokens, queries, task: Task, eps: float = EPS, batch_size: int = 8192) -> torch.Tensor:
    """BoolTensor [n_queries, batch]: which inputs lie in each query's epsilon-preimage.

    Not named on chapter 6's page: a building block of the functions, recipes or checks behind it.
    """
    if not (isinstance(eps, (int, float)) and eps > 0):
        raise ValueError(f"eps must be a positive number, got {eps!r}")
    return min_distances(model, tokens, queries, task, batch_size) <= eps


# ---------------------------------------------------------------------------
# The conditional decoder
# ---------------------------------------------------------------------------
class _CondBlock(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, c):
        return c + self.fc2(F.gelu(self.fc1(self.ln(c))))


class _DecLayer(nn.Module):
    def __init__(self, d: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.cond_kv = nn.Linear(d, 2 * d)   # the activation's extra key/value slot
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x, c, mask):
        b, p, d = x.shape
        H = self.n_heads
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        ck, cv = self.cond_kv(c).split(d, dim=-1)
        k = torch.cat([ck[:, None], k], 1)
        v = torch.cat([cv[:, None], v], 1)
        split = lambda t: t.reshape(b, t.shape[1], H, d // H).transpose(1, 2)  # noqa: E731
        att = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=mask)
        x = x + self.proj(att.transpose(1, 2).reshape(b, p, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


@register_model_class
class ConditionalDecoder(nn.Module):
    """A small GPT that generates inputs conditioned on an activation (InversionView's decoder).

    The activation ``z`` (zero-padded to ``d_act``) is rescaled to unit RMS, its
    log-norm appended, mapped to ``d_model``, added to a learned embedding of
    the site it came from, and passed through ``n_cond_blocks`` residual MLP
    blocks. The result is an extra key/value slot that every query of every
    decoder layer may attend to (the paper's design) and, with ``cond_add``,
    is also added to every token's input embedding, so each position reads it
    without first having to attend to it; the rest is a causal pre-LayerNorm
    transformer.

    Parameters
    ----------
    d_vocab, n_ctx : int
        The probed task's vocabulary and length.
    d_act : int
        Largest activation width among the sites.
    n_sites : int
    d_model, n_layers, n_heads, n_cond_blocks : int
    cond_add : bool
        Also add the conditioning vector to every token embedding.
    seed : int
        Initialisation seed.

    ``forward(tokens [batch, pos], z [batch, d_act], site [batch]) -> logits [batch, pos, d_vocab]``.

    Not named on chapter 6's page: a building block of the functions, recipes or checks behind it.
    """

    def __init__(self, d_vocab: int, n_ctx: int, d_act: int, n_sites: int, d_model: int = 128,
                 n_layers: int = 2, n_heads: int = 4, n_cond_blocks: int = 2, cond_add: bool = False,
                 seed: int = 0) -> None:
        super().__init__()
        for name, v in dict(d_vocab=d_vocab, n_ctx=n_ctx, d_act=d_act, n_sites=n_sites, d_model=d_model,
                            n_layers=n_layers, n_heads=n_heads).items():
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.cfg = dict(d_vocab=d_vocab, n_ctx=n_ctx, d_act=d_act, n_sites=n_sites, d_model=d_model,
                        n_layers=n_layers, n_heads=n_heads, n_cond_blocks=n_cond_blocks, cond_add=bool(cond_add),
                        seed=seed)
        torch.manual_seed(_check_seed(seed))
        g = torch.random.get_rng_state()
        self.tok = nn.Embedding(d_vocab, d_model)
        self.pos = nn.Embedding(n_ctx, d_model)
        self.z_in = nn.Linear(d_act + 1, d_model)
        self.site_emb = nn.Embedding(n_sites, d_model)
        self.cond = nn.Sequential(*[_CondBlock(d_model) for _ in range(n_cond_blocks)])
        self.layers = nn.ModuleList(_DecLayer(d_model, n_heads) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, d_vocab)
        torch.random.set_rng_state(g)
        mask = torch.ones(n_ctx, n_ctx + 1, dtype=torch.bool).tril(diagonal=1)  # slot 0 always visible
        self.register_buffer("mask", mask, persistent=False)

    def config_dict(self) -> dict:
        return dict(self.cfg)

    @classmethod
    def from_config_dict(cls, d: dict) -> ConditionalDecoder:
        return cls(**d)

    @property
    def device(self) -> torch.device:
        return self.tok.weight.device

    def condition(self, z: torch.Tensor, site: torch.Tensor) -> torch.Tensor:
        """The conditioning vector ``[batch, d_model]`` of activations ``z [batch, d_act]`` from ``site [batch]``."""
        if z.ndim != 2 or z.shape[1] != self.cfg["d_act"]:
            raise ValueError(f"z must be [batch, {self.cfg['d_act']}] (zero-padded), got {tuple(z.shape)}")
        norm = z.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        d_true = (z != 0).sum(-1, keepdim=True).clamp_min(1).to(z.dtype)
        feats = torch.cat([z / norm * d_true.sqrt(), norm.log()], dim=-1)
        return self.cond(self.z_in(feats) + self.site_emb(site))

    def forward(self, tokens: torch.Tensor, z: torch.Tensor, site: torch.Tensor) -> torch.Tensor:
        b, p = tokens.shape
        if p > self.cfg["n_ctx"]:
            raise ValueError(f"tokens have {p} positions, n_ctx is {self.cfg['n_ctx']}")
        return self.logits_from(tokens, self.condition(z, site))

    def logits_from(self, tokens: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Logits ``[batch, pos, d_vocab]`` of ``tokens [batch, pos]`` given a conditioning vector ``c [batch, d_model]``."""
        p = tokens.shape[1]
        x = self.tok(tokens) + self.pos.weight[:p]
        if self.cfg.get("cond_add", False):
            x = x + c[:, None]
        mask = self.mask[:p, :p + 1]
        for layer in self.layers:
            x = layer(x, c, mask)
        return self.head(self.ln_f(x))


def pad_act(z: torch.Tensor, d_act: int) -> torch.Tensor:
    """Zero-pad activations ``[..., d]`` to ``[..., d_act]``. Not named on chapter 6's page: a building block of the functions, recipes or checks behind it."""
    if z.shape[-1] > d_act:
        raise ValueError(f"activation width {z.shape[-1]} exceeds d_act={d_act}")
    return F.pad(z, (0, d_act - z.shape[-1]))


# Sites probed in the chapter (the decoder is trained on all of them).
SITES = {
    "counting": [act_name("attn_out", 0), act_name("resid_mid", 0), act_name("resid_post", 0),
                 act_name("attn_out", 1), act_name("resid_mid", 1), act_name("mlp_out", 1),
                 act_name("resid_post", 1)],
    "addition": [act_name("resid_post", 0)] + [(act_name("z", 1), h) for h in range(4)]
                + [act_name("resid_mid", 1), act_name("resid_post", 1)],
}


def _task(task) -> Task:
    if task in ("counting", COUNTING):
        return COUNTING
    if task in ("addition", ADDITION):
        return ADDITION
    raise ValueError(f"task must be 'counting' or 'addition', got {task!r}")


def task_inputs(task, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` random task inputs (tokens ``[n, n_ctx]``), as the probed model was trained on. Not named on chapter 6's page: a building block of the functions, recipes or checks behind it."""
    t = _task(task)
    if t is COUNTING:
        return make_counting_data(n, seed=seed)[0]
    return addition_tokens(*make_addition_data(n, seed=seed))


@torch.no_grad()
def decoder_training_batch(model: HookedTransformer, task, tokens: torch.Tensor, sites, seed: int = 0,
                           batch_size: int = 8192):
    """Conditioning data for the decoder: one random site and query position per input.

    Returns ``(tokens [batch, n_ctx], z [batch, d_act], site [batch], qpos [batch])`` with
    ``d_act`` the widest site; positions are drawn among 1 .. last valid position.
    Not named on chapter 6's page: a building block of the functions, recipes or checks behind it.
    """
    t = _task(task)
    n = tokens.shape[0]
    g = torch.Generator().manual_seed(_check_seed(seed))
    site = torch.randint(0, len(sites), (n,), generator=g)
    last = valid_positions(tokens, t).sum(1) - 1
    qpos = 1 + (torch.rand(n, generator=g) * last).long().clamp_max(last - 1)
    z = None
    for i in range(0, n, batch_size):    # batch by batch: only the drawn (site, position) is kept
        acts = site_activations(model, tokens[i:i + batch_size], sites, batch_size)
        if z is None:
            z = torch.zeros(n, max(a.shape[-1] for a in acts))
        rows = torch.arange(acts[0].shape[0])
        for j, a in enumerate(acts):
            sel = site[i:i + batch_size] == j
            z[i:i + batch_size][sel, : a.shape[-1]] = a[rows[sel], qpos[i:i + batch_size][sel]].cpu()
    return tokens, z, site, qpos


def decoder_loss(decoder: ConditionalDecoder, batch, pad: int) -> torch.Tensor:
    """Teacher-forced next-token cross-entropy of the decoder on the input that produced ``z``.

    ``batch = (tokens, z, site)``; targets equal to ``pad`` (after the EOS) are skipped.
    Not named on chapter 6's page: a building block of the functions, recipes or checks behind it.
    """
    tokens, z, site = batch[:3]
    logits = decoder(tokens[:, :-1], z, site)
    tgt = tokens[:, 1:]
    keep = tgt != pad if pad != -1 else torch.ones_like(tgt, dtype=torch.bool)
    return F.cross_entropy(logits[keep], tgt[keep])


def _train_decoder(task: str, n_train: int, steps: int, batch_size: int, lr: float, d_model: int,
                   n_layers: int, cond_add: bool, seed: int, progress=False):
    """Teacher-forced decoder training with warm-up and a cosine decay of the learning rate.

    :func:`helpers.training.train` keeps the rate constant after warm-up; a
    decoder trained for a few thousand steps ends far lower when the rate decays
    to zero, so this loop adds the decay (AdamW, weight decay 0.01, gradient
    clipping at 1, minibatches without replacement reshuffled each epoch).
    """
    import time

    from helpers.store import load
    from helpers.training import TrainResult, torch_threads

    t = _task(task)
    probed = load(f"inv_{task}").model
    sites = SITES[task]
    tokens = task_inputs(task, n_train + 2000, seed=1000 + seed)
    tokens, z, site, _ = decoder_training_batch(probed, task, tokens, sites, seed=seed)
    pad = t.pad if t.pad != t.eos else -1
    dec = ConditionalDecoder(t.d_vocab, t.n_ctx, z.shape[1], len(sites), d_model=d_model, n_layers=n_layers,
                             cond_add=cond_add, seed=seed)
    tr = (tokens[:n_train], z[:n_train], site[:n_train])
    te = (tokens[n_train:], z[n_train:], site[n_train:])
    warmup = min(200, max(1, steps // 10))

    def lr_at(step):
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    result = TrainResult(history={"step": [], "train_loss": [], "test_loss": [], "lr": []})
    g = torch.Generator().manual_seed(seed)
    with torch_threads(1):
        torch.manual_seed(seed)
        opt = torch.optim.AdamW(dec.parameters(), lr=lr, weight_decay=0.01)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
        order, at = torch.randperm(n_train, generator=g), 0
        t0 = time.perf_counter()
        for step in range(steps + 1):
            if at + batch_size > n_train:
                order, at = torch.randperm(n_train, generator=g), 0
            idx = order[at:at + batch_size]
            at += batch_size
            loss = decoder_loss(dec, tuple(x[idx] for x in tr), pad)
            if step % 250 == 0 or step == steps:
                with torch.no_grad():
                    test = decoder_loss(dec, te, pad).item()
                for k, v in zip(result.history, (step, loss.item(), test, lr * lr_at(min(step, steps - 1)))):
                    result.history[k].append(v)
                if progress:
                    print(f"decoder {task}: step {step} train {loss.item():.4f} test {test:.4f} "
                          f"{time.perf_counter() - t0:.0f} s", flush=True)
            if step == steps:
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(dec.parameters(), 1.0)
            opt.step()
            sched.step()
        result.steps = steps
        result.seconds = time.perf_counter() - t0
    dec.eval()
    return dec, result


@recipe("inv_decoder_addition", "InversionView decoder for the addition model's sites")
def train_decoder_addition(seed: int = 0, n_train: int = 400_000, steps: int = 12_000, batch_size: int = 128,
                           lr: float = 3e-3, d_model: int = 96, n_layers: int = 2, cond_add: bool = True,
                           progress: bool | None = False):
    """Train the conditional decoder on activations of ``inv_addition`` at :data:`SITES` ``["addition"]``.

    ``n_train`` random pairs, each with one random site and query position;
    learning rate warmed up over 200 steps, then decayed to 0 on a cosine.

    Used in chapter 6.
    """
    return _train_decoder("addition", n_train, steps, batch_size, lr, d_model, n_layers, cond_add, seed,
                          progress)


# ---------------------------------------------------------------------------
# Sampling, precision and recall, token colouring
# ---------------------------------------------------------------------------
@torch.no_grad()
def sample_inputs(decoder: ConditionalDecoder, task, z: torch.Tensor, site: int, n: int,
                  temperatures=(0.5, 1.0), noise: float = 0.02, seed: int = 0) -> torch.Tensor:
    """Sample ``n`` inputs from the decoder conditioned on one activation.

    The samples are split evenly over ``temperatures``; each draws its own
    copy of ``z`` with Gaussian noise of relative size ``noise`` (standard
    deviation ``noise * ||z|| / sqrt(d)`` per coordinate). Generation starts
    at BOS and runs to ``n_ctx`` tokens; tokens after an EOS become padding.

    Parameters
    ----------
    z : Tensor [d_site]
    site : int
        Index of the site in the decoder's site list.

    Returns
    -------
    LongTensor [n, n_ctx]

    Used in chapter 6.
    """
    t = _task(task)
    n = _check_n(n)
    temps = list(temperatures)
    if not temps or any(not (isinstance(x, (int, float)) and x > 0) for x in temps):
        raise ValueError(f"temperatures must be positive numbers, got {temperatures!r}")
    dev = decoder.device
    g = torch.Generator(device=dev).manual_seed(_check_seed(seed))
    zz = pad_act(z.to(dev).float(), decoder.cfg["d_act"]).expand(n, -1).clone()
    d_true = z.shape[-1]
    zz[:, :d_true] += noise * z.norm().item() / math.sqrt(d_true) * torch.randn(n, d_true, generator=g, device=dev)
    temp = torch.tensor([temps[i * len(temps) // n] for i in range(n)], device=dev)[:, None]
    s = torch.full((n,), int(site), device=dev, dtype=torch.long)
    c = decoder.condition(zz, s)
    out = torch.full((n, t.n_ctx), t.pad, dtype=torch.long, device=dev)
    out[:, 0] = t.bos
    done = torch.zeros(n, dtype=torch.bool, device=dev)
    for p in range(1, t.n_ctx):
        logits = decoder.logits_from(out[:, :p], c)[:, -1] / temp
        nxt = torch.multinomial(F.softmax(logits, -1), 1, generator=g)[:, 0]
        out[:, p] = torch.where(done, torch.full_like(nxt, t.pad), nxt)
        done |= nxt == t.eos
    return out.cpu()


@torch.no_grad()
def addition_queries(model: HookedTransformer, pairs, positions=(8, 9, 10, 11), sites=None):
    """Query activations of the addition model: every (input, site, position) combination.

    Parameters
    ----------
    pairs : list of (a, b)
        The query inputs.
    positions : sequence of int
        Query positions (8 is ``=``, 9-11 the answer digits c0-c2).
    sites : list, optional
        Default :data:`SITES` ``["addition"]``.

    Returns
    -------
    queries : list of (site, z_q [d_site])
        For :func:`min_distances` and :func:`score_decoder`.
    meta : list of (input index, site index, position)
        One entry per query, in the same order (input, then site, then position).

    Used in chapter 6.
    """
    sites = SITES["addition"] if sites is None else sites
    q = addition_tokens(torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs]))
    acts = site_activations(model, q, sites)
    queries, meta = [], []
    for qi in range(len(pairs)):
        for si, s in enumerate(sites):
            for p in positions:
                queries.append((s, acts[si][qi, p]))
                meta.append((qi, si, int(p)))
    return queries, meta


@torch.no_grad()
def score_decoder(model: HookedTransformer, decoder: ConditionalDecoder, task, queries, site_index, pool: torch.Tensor,
                  inside: torch.Tensor, n_samples: int = 48, temperatures=(0.5, 1.0), noise: float = 0.02,
                  seed: int = 0) -> torch.Tensor:
    """Precision and recall of the decoder's samples for each query, against its brute-force preimage.

    Parameters
    ----------
    model : HookedTransformer
        The probed model (samples are run through it to test ``D <= EPS``).
    decoder : ConditionalDecoder
    queries : list of (site, z_q)
        As for :func:`min_distances`.
    site_index : list of int
        Index of each query's site in the decoder's site list.
    pool : LongTensor [batch, pos]
        The searched inputs; ``inside [n_queries, batch]`` marks each query's preimage among them.
    n_samples, temperatures, noise :
        Passed to :func:`sample_inputs` (query ``k`` samples with seed ``seed + k``).

    Returns
    -------
    Tensor [n_queries, 3]
        Columns: precision (share of samples inside the preimage), recall (share of the true
        preimage's :func:`input_class` values that some kept sample has), and the number of
        distinct classes in the true preimage.

    Used in chapter 6.
    """
    if len(site_index) != len(queries) or inside.shape[0] != len(queries):
        raise ValueError(f"queries ({len(queries)}), site_index ({len(site_index)}) and inside "
                         f"({inside.shape[0]} rows) must match")
    task = _task(task)
    out = torch.zeros(len(queries), 3, dtype=torch.float64)
    for k, ((s, z), si) in enumerate(zip(queries, site_index)):
        samples = sample_inputs(decoder, task, z, int(si), n_samples, temperatures=temperatures, noise=noise,
                                seed=seed + k)
        ok = min_distances(model, samples, [(s, z)], task)[0].cpu() <= EPS
        truth = input_class(pool[inside[k].cpu()], task)
        prec, rec = precision_recall(ok, input_class(samples, task), truth)
        out[k] = torch.tensor([prec, rec, len({c for c in truth if c is not None})], dtype=torch.float64)
    return out


def input_class(tokens: torch.Tensor, task) -> list:
    """A coarse description of each input, the unit in which recall is counted.

    Counting: ``(query letter, its count in the string)``. Addition: the three
    column sums ``(a2+b2, a1+b1, a0+b0)``. A malformed input gets ``None``.
    Used in chapter 6.
    """
    t = _task(task)
    out = []
    for row in tokens.tolist():
        if t is COUNTING:
            if _BAR not in row or row[0] != t.bos:
                out.append(None)
                continue
            i = row.index(_BAR)
            c = row[i + 1] if i + 1 < len(row) else None
            string = row[1:i]
            ok = c is not None and c < 26 and all(x < 26 for x in string)
            out.append((c, string.count(c)) if ok else None)
        else:
            d = row[1:4] + row[5:8]
            ok = all(x < 10 for x in d) and row[4] == _PLUS and row[8] == _EQ
            out.append((d[0] + d[3], d[1] + d[4], d[2] + d[5]) if ok else None)
    return out


def precision_recall(sample_in: torch.Tensor, sample_classes: list, true_classes: list) -> tuple[float, float]:
    """Precision and recall of one query's samples against its brute-force preimage.

    Parameters
    ----------
    sample_in : BoolTensor [n_samples]
        Whether each decoder sample lies in the epsilon-preimage (checked by
        running the probed model on it).
    sample_classes : list
        :func:`input_class` of each sample.
    true_classes : list
        :func:`input_class` of every input of the searched space inside the preimage.

    Returns
    -------
    precision : float
        Share of samples inside the preimage.
    recall : float
        Share of the true preimage's classes that some in-preimage sample has
        (NaN if the true preimage is empty).

    Used in chapter 6.
    """
    if len(sample_classes) != len(sample_in):
        raise ValueError(f"sample_classes has {len(sample_classes)} entries, sample_in {len(sample_in)}")
    precision = sample_in.float().mean().item()
    truth = {c for c in true_classes if c is not None}
    if not truth:
        return precision, float("nan")
    got = {c for c, ok in zip(sample_classes, sample_in.tolist()) if ok and c is not None}
    return precision, len(got & truth) / len(truth)


@torch.no_grad()
def token_contrast(decoder: ConditionalDecoder, tokens: torch.Tensor, z: torch.Tensor, z_base: torch.Tensor,
                   site: int) -> torch.Tensor:
    """``p(x_t | x_<t, z) - p(x_t | x_<t, z_base)`` for every token of one input: Tensor [pos].

    Position 0 (BOS, never predicted) gets 0. A large positive value marks a
    token the activation ``z`` pins down; about 0, a token it says nothing about.
    Used in chapter 6.
    """
    tokens = torch.as_tensor(tokens).reshape(1, -1).to(decoder.device)
    zs = torch.stack([pad_act(z.float(), decoder.cfg["d_act"]), pad_act(z_base.float(), decoder.cfg["d_act"])])
    zs = zs.to(decoder.device)
    logits = decoder(tokens[:, :-1].expand(2, -1), zs, torch.full((2,), int(site), device=decoder.device))
    p = F.softmax(logits, -1).gather(-1, tokens[:, 1:].expand(2, -1)[..., None])[..., 0]
    return torch.cat([torch.zeros(1, device=p.device), p[0] - p[1]]).cpu()


def colour_tokens_html(texts, values, title: str = "") -> str:
    """HTML of tokens with a background colour per value in [-1, 1] (red > 0, blue < 0).

    ``texts`` is a list of token strings, ``values`` a sequence of floats of
    the same length. The result displays in the static book through
    ``IPython.display.HTML``. Used in chapter 6.
    """
    values = [float(v) for v in values]
    if len(texts) != len(values):
        raise ValueError(f"texts ({len(texts)}) and values ({len(values)}) must have the same length")
    spans = []
    for s, v in zip(texts, values):
        a = min(abs(v), 1.0)
        rgb = "220,40,40" if v > 0 else "40,90,220"
        spans.append(f'<span title="{v:+.2f}" style="background:rgba({rgb},{a:.2f});padding:2px 1px;'
                     f'font-family:monospace;font-size:1.1em">{html.escape(s)}</span>')
    head = f"<b>{html.escape(title)}</b> " if title else ""
    return f'<div style="margin:4px 0">{head}{"".join(spans)}</div>'


def _aligned_features(tokens: torch.Tensor, task) -> torch.Tensor:
    """Per-token features used to compare inputs token by token: LongTensor [batch, n_ctx].

    Addition (fixed layout): the token itself. Counting: for each letter of
    the string, ``letter * 10 + its count in the string`` (so two inputs
    agree when they hold that letter equally often); the suffix ``| c : k``
    is aligned on the ``|`` and compared token by token, stored at the
    positions of the query input. Used by :func:`preimage_token_contrast`.
    """
    t = _task(task)
    if t is ADDITION:
        return tokens.clone()
    feats = torch.full_like(tokens, -1)
    for i, row in enumerate(tokens.tolist()):
        if _BAR not in row:
            continue
        b = row.index(_BAR)
        string = row[1:b]
        for j, x in enumerate(string):
            feats[i, 1 + j] = x * 10 + string.count(x)
        feats[i, b:b + 4] = torch.tensor(row[b:b + 4])
    return feats


def preimage_token_contrast(query_tokens: torch.Tensor, pool_tokens: torch.Tensor, in_preimage: torch.Tensor,
                            task) -> torch.Tensor:
    """Brute-force token colouring: how much the preimage agrees with the query, token by token.

    For each token of the query input, ``p(agree | x in preimage) - p(agree | x in pool)``,
    where "agree" means: the same token at that position (addition, and the
    ``| c : k`` suffix of counting, aligned on ``|``), or, for a letter of a
    counting string, the same number of that letter somewhere in the string.
    This is the exact counterpart of the paper's decoder-based colouring
    ``p(token | z) - p(token | baseline)``: near 1, every input with this
    activation shares the token; near 0, the activation says nothing about it.

    Parameters
    ----------
    query_tokens : LongTensor [n_ctx]
    pool_tokens : LongTensor [batch, n_ctx]
    in_preimage : BoolTensor [batch]

    Returns
    -------
    Tensor [n_ctx] (0 at BOS and padding)

    Used in chapter 6.
    """
    t = _task(task)
    q = torch.as_tensor(query_tokens).reshape(1, -1)
    if in_preimage.shape != pool_tokens.shape[:1]:
        raise ValueError(f"in_preimage must be [batch={pool_tokens.shape[0]}], got {tuple(in_preimage.shape)}")
    if not in_preimage.any():
        raise ValueError("the preimage is empty: nothing to compare")
    fq = _aligned_features(q, t)[0]
    out = torch.zeros(q.shape[1])
    if t is COUNTING:
        # align the suffix of every pool input on its own '|': compare through feature sets
        qb = q[0].tolist().index(_BAR)
        pool_rows = pool_tokens.tolist()
        agree = torch.zeros(len(pool_rows), q.shape[1], dtype=torch.bool)
        for i, row in enumerate(pool_rows):
            b = row.index(_BAR) if _BAR in row else None
            if b is None:
                continue
            string = row[1:b]
            have = {x * 10 + string.count(x) for x in set(string)}
            for j in range(1, qb):
                agree[i, j] = int(fq[j]) in have
            for k in range(4):
                if b + k < len(row) and qb + k < q.shape[1]:
                    agree[i, qb + k] = row[b + k] == int(q[0, qb + k])
    else:
        agree = pool_tokens == q
    agree = agree.float()
    out = agree[in_preimage].mean(0) - agree.mean(0)
    out[0] = 0.0
    out[fq < 0] = 0.0 if t is COUNTING else out[fq < 0]
    return out


# ---------------------------------------------------------------------------
# Reading a preimage: which properties of the input does it pin down?
# ---------------------------------------------------------------------------
def addition_features(tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """Named properties of addition inputs, each a LongTensor [batch].

    ``a2 a1 a0 b2 b1 b0`` (digits), ``s_i = a_i + b_i`` (column sums) and
    ``carry_i`` (the carry *into* column i: 1 if the columns below it
    overflow), for i = 0 (units), 1 (tens), 2 (hundreds); ``carry_3`` is the
    leading digit of the answer. Used in chapter 6.
    """
    d = {f"a{2 - i}": tokens[:, 1 + i] for i in range(3)}
    d.update({f"b{2 - i}": tokens[:, 5 + i] for i in range(3)})
    a = sum(d[f"a{i}"] * 10 ** i for i in range(3))
    b = sum(d[f"b{i}"] * 10 ** i for i in range(3))
    for i in range(3):
        d[f"s{i}"] = d[f"a{i}"] + d[f"b{i}"]
    for i in range(1, 4):
        m = 10 ** i
        d[f"carry{i}"] = ((a % m + b % m) >= m).long()
    return d


def counting_features(tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """Named properties of counting inputs, each a LongTensor [batch].

    ``query`` (the asked letter), ``count`` (its count), ``count±1`` (the
    count up to one either way: equal when the query's count is within one),
    ``letters`` (the set of three letters, as a code) and ``length``. Named in chapter 6 (the counting model is not shipped: see :func:`train_counting`).
    """
    q, cnt, letters, length = [], [], [], []
    for row in tokens.tolist():
        b = row.index(_BAR)
        s = row[1:b]
        q.append(row[b + 1])
        cnt.append(s.count(row[b + 1]))
        letters.append(sum(1 << x for x in set(s)))
        length.append(len(s))
    out = {"query": torch.tensor(q), "count": torch.tensor(cnt), "letters": torch.tensor(letters),
           "length": torch.tensor(length)}
    return out


def preimage_agreement(features: dict[str, torch.Tensor], in_preimage: torch.Tensor, query: int,
                       tolerance: dict[str, int] | None = None) -> dict[str, tuple[float, float]]:
    """For each property, the share of the preimage that agrees with the query input, and the base rate.

    Parameters
    ----------
    features : dict name -> LongTensor [batch]
        From :func:`addition_features` / :func:`counting_features` on the searched inputs.
    in_preimage : BoolTensor [batch]
    query : int
        Row of the query input among the searched inputs.
    tolerance : dict name -> int, optional
        Agreement within this absolute difference (e.g. ``{"count": 1}``).

    Returns
    -------
    dict name -> (share in the preimage, share in all inputs)
        A share near 1 where the base rate is low means the activation pins
        the property down. Used in chapter 6.
    """
    if in_preimage.dtype != torch.bool or in_preimage.ndim != 1:
        raise TypeError("in_preimage must be a 1-D BoolTensor")
    if not in_preimage.any():
        raise ValueError("the preimage is empty")
    tolerance = tolerance or {}
    out = {}
    for name, f in features.items():
        agree = (f - f[query]).abs() <= tolerance.get(name, 0)
        out[name] = (agree[in_preimage].float().mean().item(), agree.float().mean().item())
    return out
