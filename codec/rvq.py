"""Residual vector quantization search: the one encoder of code indices, for EQcodec and the classical coders.

Stage q codes what stages 0..q-1 left: r_0 = v, code_q = argmin_c ||r_q - c||^2 over
codebook q, r_{q+1} = r_q - codebook_q[code_q]. Decoding from the first k codes sums
their vectors. `greedy_codes` fixes each stage's code in turn; `beam_codes` keeps the
`width` best partial code sequences and returns the one with the least error after
all stages (better at high k, `width` times the work).
"""

from __future__ import annotations

import torch


def greedy_codes(vectors: torch.Tensor, codebooks: torch.Tensor, rows: int = 256) -> torch.Tensor:
    """[N, D] vectors, codebooks [K, C, D] -> [K, N] code indices (long), stage by stage.

    Exhaustive search, argmin ||r - c||^2 = argmin (||c||^2 - 2 r.c), in blocks of
    `rows` vectors with one reused distance buffer: the [rows, C] distances stay in
    cache instead of a fresh multi-MB matrix per stage.
    """
    K, C, D = codebooks.shape
    norms = codebooks.pow(2).sum(-1)  # [K, C]
    transposed = codebooks.transpose(1, 2).contiguous()  # [K, D, C]
    residual = vectors.reshape(-1, D).to(codebooks.dtype).clone()  # [N, D], updated in place
    codes = torch.empty(K, residual.shape[0], dtype=torch.long, device=vectors.device)
    distances = torch.empty(min(rows, residual.shape[0]), C, dtype=codebooks.dtype, device=vectors.device)
    for first in range(0, residual.shape[0], rows):
        block = residual[first : first + rows]
        d = distances[: block.shape[0]]
        for q in range(K):
            torch.addmm(norms[q], block, transposed[q], alpha=-2, out=d)
            index = d.argmin(-1)
            codes[q, first : first + block.shape[0]] = index
            block -= codebooks[q][index]
    return codes


def beam_codes(vectors: torch.Tensor, codebooks: torch.Tensor, width: int, rows: int = 256) -> torch.Tensor:
    """Like greedy_codes, keeping the `width` best partial code sequences per vector: [K, N]."""
    K, C, D = codebooks.shape
    norms = codebooks.pow(2).sum(-1)  # [K, C]
    vectors = vectors.reshape(-1, D).to(codebooks.dtype)
    codes = torch.empty(K, vectors.shape[0], dtype=torch.long, device=vectors.device)
    for first in range(0, vectors.shape[0], rows):
        residual = vectors[first : first + rows, None, :]  # [n, beams, D]
        n = residual.shape[0]
        error = residual.pow(2).sum(-1)  # [n, beams]
        paths = torch.empty(n, 1, 0, dtype=torch.long, device=vectors.device)  # [n, beams, stages so far]
        for q in range(K):
            # ||r - c||^2 = ||r||^2 - 2 r.c + ||c||^2 for every beam and code: [n, beams, C]
            candidates = torch.matmul(residual, codebooks[q].T).mul_(-2).add_(norms[q]).add_(error[..., None])
            error, best = candidates.reshape(n, -1).topk(min(width, candidates[0].numel()), largest=False)
            parent, code = best // C, best % C
            residual = residual.gather(1, parent[..., None].expand(-1, -1, D)) - codebooks[q][code]
            paths = torch.cat([paths.gather(1, parent[..., None].expand(-1, -1, q)), code[..., None]], dim=-1)
        codes[:, first : first + n] = paths[:, 0].T  # topk sorts ascending: beam 0 is the best
    return codes


def sum_codes(codes: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """[..., k] indices of the first k codebooks (last dimension), codebooks [K, C, D] -> [..., D] summed vectors."""
    return sum(codebooks[q][codes[..., q]] for q in range(codes.shape[-1]))
