"""A low-rank matrix kept as its two factors (private; public as ``helpers.transformer.FactoredMatrix``).

A head's QK circuit ``W_Q W_K^T`` and OV circuit ``W_V W_O`` are
``[d_model, d_model]`` matrices of rank at most ``d_head``. Kept as the factors
``A [..., d_model, d_head]`` and ``B [..., d_head, d_model]``, their singular
values, eigenvalues and norm cost ``O(d_model d_head^2)`` instead of
``O(d_model^3)``, which is what TransformerLens's ``FactoredMatrix`` does too.
"""
from __future__ import annotations

import torch

__all__ = ["FactoredMatrix"]


def _check_factor(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(f"{name} must have at least 2 dimensions [..., rows, cols], got shape {tuple(x.shape)}")
    return x


class FactoredMatrix:
    """The matrix ``A @ B`` (batched over leading dimensions) stored as ``A`` and ``B``.

    Parameters
    ----------
    A : Tensor ``[..., ldim, mdim]``
    B : Tensor ``[..., mdim, rdim]``
        Leading dimensions broadcast; ``mdim`` is usually the small one
        (``d_head``).

    Indexing picks leading dimensions (``model.QK[layer, head]``); ``@``
    composes with tensors and other factored matrices without forming the
    product; ``.AB`` forms it.

    >>> A, B = torch.randn(2, 6, 3, dtype=torch.float64), torch.randn(2, 3, 6, dtype=torch.float64)
    >>> M = FactoredMatrix(A, B)
    >>> M.shape, M[0].shape
    (torch.Size([2, 6, 6]), torch.Size([6, 6]))
    >>> U, S, Vh = M.svd()
    >>> torch.allclose(U @ torch.diag_embed(S) @ Vh, M.AB)
    True
    """

    def __init__(self, A: torch.Tensor, B: torch.Tensor) -> None:
        A, B = _check_factor(A, "A"), _check_factor(B, "B")
        if A.shape[-1] != B.shape[-2]:
            raise ValueError(f"A [..., l, m] and B [..., m, r] must share m, got A {tuple(A.shape)} and B {tuple(B.shape)}")
        try:
            torch.broadcast_shapes(A.shape[:-2], B.shape[:-2])
        except RuntimeError:
            raise ValueError(f"the leading dimensions of A {tuple(A.shape)} and B {tuple(B.shape)} do not broadcast") from None
        self.A, self.B = A, B

    # -- shape ---------------------------------------------------------------
    @property
    def ldim(self) -> int:
        return self.A.shape[-2]

    @property
    def mdim(self) -> int:
        return self.A.shape[-1]

    @property
    def rdim(self) -> int:
        return self.B.shape[-1]

    @property
    def shape(self) -> torch.Size:
        """``[..., ldim, rdim]``, the shape of :attr:`AB`."""
        return torch.Size(torch.broadcast_shapes(self.A.shape[:-2], self.B.shape[:-2]) + (self.ldim, self.rdim))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, idx) -> FactoredMatrix:
        idx = idx if isinstance(idx, tuple) else (idx,)
        lead = self.ndim - 2
        if len(idx) > lead or any(i is Ellipsis or i is None for i in idx):
            raise IndexError(f"a FactoredMatrix of shape {tuple(self.shape)} is indexed by its {lead} leading "
                             f"dimension(s) only (ints, slices, index tensors), got {idx!r}")
        shape = self.shape[:-2]
        A = self.A.expand(*shape, *self.A.shape[-2:])
        B = self.B.expand(*shape, *self.B.shape[-2:])
        return FactoredMatrix(A[idx], B[idx])

    def to(self, *args, **kwargs) -> FactoredMatrix:
        """Both factors converted (``torch.Tensor.to``'s arguments: dtype, device)."""
        return FactoredMatrix(self.A.to(*args, **kwargs), self.B.to(*args, **kwargs))

    def detach(self) -> FactoredMatrix:
        return FactoredMatrix(self.A.detach(), self.B.detach())

    # -- the matrix and its transpose -------------------------------------
    @property
    def AB(self) -> torch.Tensor:
        """The full product ``A @ B``, ``[..., ldim, rdim]``."""
        return self.A @ self.B

    @property
    def BA(self) -> torch.Tensor:
        """``B @ A``, ``[..., mdim, mdim]``: same nonzero eigenvalues as :attr:`AB`."""
        if self.ldim != self.rdim:
            raise ValueError(f"BA needs a square matrix, got shape {tuple(self.shape)}")
        return self.B @ self.A

    @property
    def T(self) -> FactoredMatrix:
        """The transpose ``B^T A^T``."""
        return FactoredMatrix(self.B.transpose(-1, -2), self.A.transpose(-1, -2))

    def __matmul__(self, other) -> FactoredMatrix:
        if isinstance(other, FactoredMatrix):
            return FactoredMatrix(self.A, (self.B @ other.A) @ other.B)
        if isinstance(other, torch.Tensor):
            if other.ndim < 2:
                raise ValueError(f"can only multiply by a matrix [..., rdim, n], got shape {tuple(other.shape)}")
            return FactoredMatrix(self.A, self.B @ other)
        return NotImplemented

    def __rmatmul__(self, other) -> FactoredMatrix:
        if isinstance(other, torch.Tensor):
            if other.ndim < 2:
                raise ValueError(f"can only multiply a matrix [..., n, ldim] by it, got shape {tuple(other.shape)}")
            return FactoredMatrix(other @ self.A, self.B)
        return NotImplemented

    # -- spectra, from the factors ----------------------------------------
    def svd(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Thin SVD ``U, S, Vh`` with ``U @ diag(S) @ Vh == AB``, as ``torch.linalg.svd``.

        Computed without forming ``AB``: with ``A = Q_A R_A`` and
        ``B^T = Q_B R_B`` (QR), ``AB = Q_A (R_A R_B^T) Q_B^T``, and the SVD of
        the small core ``R_A R_B^T`` gives the rest. ``S`` has
        ``min(ldim, mdim, rdim)`` entries (the rest are zero), in decreasing
        order.

        Returns
        -------
        U : ``[..., ldim, k]``, S : ``[..., k]``, Vh : ``[..., k, rdim]``
        """
        shape = self.shape[:-2]
        A = self.A.expand(*shape, *self.A.shape[-2:])
        B = self.B.expand(*shape, *self.B.shape[-2:])
        Qa, Ra = torch.linalg.qr(A)
        Qb, Rb = torch.linalg.qr(B.transpose(-1, -2))
        Uc, S, Vhc = torch.linalg.svd(Ra @ Rb.transpose(-1, -2), full_matrices=False)
        k = min(self.ldim, self.mdim, self.rdim)
        U, Vh = Qa @ Uc, Vhc @ Qb.transpose(-1, -2)
        return U[..., :k], S[..., :k], Vh[..., :k, :]

    @property
    def S(self) -> torch.Tensor:
        """Singular values ``[..., k]`` (see :meth:`svd`)."""
        return self.svd()[1]

    @property
    def eigenvalues(self) -> torch.Tensor:
        """The ``mdim`` eigenvalues of ``B A`` (complex), ``[..., mdim]``.

        They are the eigenvalues of ``AB`` except for ``ldim - mdim`` zeros
        (``AB`` has rank at most ``mdim``).
        """
        return torch.linalg.eigvals(self.BA)

    def norm(self) -> torch.Tensor:
        """Frobenius norm of ``AB``, ``[...]``, from the singular values."""
        return self.S.norm(dim=-1)

    def __repr__(self) -> str:
        return f"FactoredMatrix(shape={tuple(self.shape)}, hidden dim {self.mdim}, dtype={self.A.dtype})"
