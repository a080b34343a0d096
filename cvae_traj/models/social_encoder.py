"""Social context: attention from the target agent over the neighbours present in its observed frames."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from cvae_traj.models.latent import mlp


def neighbour_features(past: Tensor, neighbours: Tensor, mask: Tensor) -> Tensor:
    """Per neighbour and observed step: position relative to the target's last position, position relative
    to the target at that step, backward-difference velocity, and whether it was observed.

    past (B, T, 2), neighbours (B, N, T, 2), mask (B, N, T) -> (B, N, T * 7); unobserved entries are zero.
    """
    m = mask.unsqueeze(-1).to(past.dtype)  # (B, N, T, 1)
    rel_now = (neighbours - past[:, None, -1:]) * m  # (B, N, T, 2)
    rel_same_step = (neighbours - past[:, None]) * m  # (B, N, T, 2)
    # A backward difference needs the step and the one before it observed; none at the first step.
    both = torch.cat([torch.zeros_like(m[:, :, :1]), m[:, :, 1:] * m[:, :, :-1]], 2)  # (B, N, T, 1)
    vel = torch.diff(neighbours, dim=2, prepend=neighbours[:, :, :1]) * both
    return torch.cat([rel_now, rel_same_step, vel, m], dim=-1).flatten(2)  # (B, N, T * 7)


class SocialEncoder(nn.Module):
    """Masked multi-head attention: the target's history embedding queries its neighbours' embeddings.

    A learned "nobody" token is always attendable, so agents without neighbours get a well-defined context.
    """

    def __init__(self, obs_len: int, query_dim: int, hidden_dim: int = 64, num_heads: int = 4) -> None:
        super().__init__()
        self.embed = mlp(obs_len * 7, hidden_dim, hidden_dim)
        self.query = nn.Linear(query_dim, hidden_dim)
        self.nobody = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        self.attention = nn.MultiheadAttention(hidden_dim, num_heads, batch_first=True)
        self.out_dim = hidden_dim
        # Embed and project only the slots that hold a neighbour (False: every slot, as nn.MultiheadAttention
        # does; the same result, slower on crowded batches, and what an exported graph always computes).
        self.pack_neighbours = True

    def forward(self, history: Tensor, past: Tensor, neighbours: Tensor, mask: Tensor) -> Tensor:
        """history (B, H) -> social context (B, hidden_dim)."""
        b = past.shape[0]
        present = mask.any(dim=-1)  # (B, N): slots that hold a neighbour, the rest is padding
        query = self.query(history)  # (B, H)
        if not self.pack_neighbours or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export():
            features = neighbour_features(past, neighbours, mask)
            keys = torch.cat([self.nobody.expand(b, 1, -1), self.embed(features)], 1)
            absent = torch.cat([mask.new_zeros(b, 1), ~present], dim=1)  # (B, 1 + N): padding slots
            out, _ = self.attention(query.unsqueeze(1), keys, keys, key_padding_mask=absent, need_weights=False)
            return out.squeeze(1)  # (B, hidden_dim)
        owner, slot = present.nonzero(as_tuple=True)  # (M,) each: the M neighbours present in the batch
        features = neighbour_features(past[owner], neighbours[owner, slot, None],
                                      mask[owner, slot, None]).squeeze(1)  # (M, T * 7)
        hidden = F.relu(self.embed[0](features))  # (M, E)
        e = hidden.new_zeros(*present.shape, hidden.shape[-1]).index_put((owner, slot), hidden)  # padding 0
        return self._attend_present(self.attention, query, e, present)

    def _attend_present(self, att: nn.MultiheadAttention, query: Tensor, e: Tensor, present: Tensor) -> Tensor:
        """`att`'s computation (query (B, H) over the neighbours' embedding hidden layers e (B, N, E), zero in
        padding) over the slots that hold a neighbour, refactored so that each of them costs one linear layer:
        a batch is padded to its most crowded window (UNIV's have up to
        ~80 neighbours, most others a few), and padded slots are masked out anyway. Same parameters, same result
        up to float rounding.

        A neighbour's key and value are affine in the embedding MLP's hidden layer e (its second layer W2, b2
        then the key or value projection), so per head the score q_h . k_h(e) = (W2^T W_k,h^T q_h) . e + a
        constant of the target, and the attended value is W_v,h W2 (sum of the weights times e) plus the bias
        times their sum. Only the first layer runs per neighbour; the rest runs per target.
        """
        h = self.out_dim
        heads = att.num_heads
        d = h // heads
        b = present.shape[0]
        (w_q, w_k, w_v), (b_q, b_k, b_v) = att.in_proj_weight.chunk(3), att.in_proj_bias.chunk(3)
        second = self.embed[2]
        # The key and value maps from e, per head: (heads, d, E) and (heads, d).
        key_w, key_b = (w_k @ second.weight).view(heads, d, -1), (w_k @ second.bias + b_k).view(heads, d)
        value_w, value_b = (w_v @ second.weight).view(heads, d, -1), (w_v @ second.bias + b_v).view(heads, d)
        q = F.linear(query, w_q, b_q).view(b, heads, d) * d ** -0.5  # scaled as attention scales
        nobody_k, nobody_v = (F.linear(self.nobody.view(1, h), w, bias).view(heads, d)
                              for w, bias in ((w_k, b_k), (w_v, b_v)))
        scores = torch.einsum("bhe,bne->bhn", torch.einsum("bhd,hde->bhe", q, key_w), e) + (q * key_b).sum(
            -1, keepdim=True)  # (B, heads, N)
        scores = torch.cat([(q * nobody_k).sum(-1, keepdim=True), scores.masked_fill(~present[:, None], -torch.inf)],
                           -1)  # (B, heads, 1 + N): the nobody token always attendable
        weights = scores.softmax(-1)
        to_nobody, to_present = weights[..., :1], weights[..., 1:]
        pooled = torch.einsum("bhn,bne->bhe", to_present, e)  # (B, heads, E)
        out = (torch.einsum("bhe,hde->bhd", pooled, value_w) + to_present.sum(-1, keepdim=True) * value_b
               + to_nobody * nobody_v)  # (B, heads, d)
        return att.out_proj(out.flatten(1))  # (B, H)
