"""The network: scores every candidate of a customer's list at once.

Per candidate it sees the tabular features of the LightGBM ranker (standardised, with null
indicators), a learned embedding of the item, a hashed embedding of the customer, and a
target-aware attention over the customer's most recent purchased items: the candidate's
embedding is the query, so a candidate close to what the customer bought lately (and the order
they bought it in, through position embeddings) gets a different interest vector than one far
from it. That is what trees over hand-made features do poorly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

MASKED = -1e4  # attention logit of padding; finite so bf16 and all-padding rows stay NaN-free


@dataclass(frozen=True)
class Architecture:
    n_dense: int
    n_items: int
    user_buckets: int
    seq_len: int
    item_dim: int
    user_dim: int
    hidden: int
    dropout: float

    def as_dict(self) -> dict:
        return asdict(self)


class ListRanker(nn.Module):
    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        d = arch.item_dim
        self.arch = arch
        self.item_emb = nn.Embedding(arch.n_items, d, padding_idx=0)
        self.user_emb = nn.Embedding(arch.user_buckets + 1, arch.user_dim)
        self.pos_emb = nn.Embedding(arch.seq_len, d)
        self.dense = nn.Sequential(nn.Linear(arch.n_dense, arch.hidden), nn.ReLU())
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d)
        self.head = nn.Sequential(
            nn.Linear(arch.hidden + 3 * d + arch.user_dim, arch.hidden),
            nn.ReLU(),
            nn.Dropout(arch.dropout),
            nn.Linear(arch.hidden, arch.hidden // 2),
            nn.ReLU(),
            nn.Linear(arch.hidden // 2, 1),
        )
        # A linear path over the features: the network starts from what a linear ranker knows.
        self.wide = nn.Linear(arch.n_dense, 1)
        nn.init.normal_(self.item_emb.weight, std=0.05)
        nn.init.normal_(self.user_emb.weight, std=0.05)
        nn.init.normal_(self.pos_emb.weight, std=0.05)

    def interest(self, cand: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
        """[B, C, d]: attention of each candidate over the recent items [B, S]."""
        s = seq.shape[1]
        history = self.item_emb(seq) + self.pos_emb.weight[:s].unsqueeze(0)
        q, k, v = self.query(cand), self.key(history), self.value(history)
        logits = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])  # [B, C, S]
        present = (seq > 0).unsqueeze(1)
        weights = torch.softmax(logits.masked_fill(~present, MASKED), dim=-1) * present
        return weights @ v

    def forward(
        self, dense: torch.Tensor, item: torch.Tensor, user: torch.Tensor, seq: torch.Tensor
    ) -> torch.Tensor:
        """Scores [B, C] for dense [B, C, F], item [B, C], user [B], seq [B, S]."""
        cand = self.item_emb(item)
        interest = self.interest(cand, seq)
        who = self.user_emb(user).unsqueeze(1).expand(-1, item.shape[1], -1)
        h = torch.cat([self.dense(dense), cand, interest, cand * interest, who], dim=-1)
        return (self.head(h) + self.wide(dense)).squeeze(-1)


def masked_log_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(scores.float().masked_fill(~mask, float("-inf")), dim=-1)


def listwise_loss(scores: torch.Tensor, label: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy of each list against its relevance distribution (ListNet top-1),
    averaged over lists with at least one relevant candidate."""
    relevant = label.sum(dim=-1)
    keep = (relevant > 0).float()
    # No boolean indexing: selecting the kept lists would sync with the device at every step.
    target = label / relevant.clamp(min=1e-12).unsqueeze(-1)
    logp = masked_log_softmax(scores, mask).masked_fill(~mask, 0.0)
    per_list = -(target * logp).sum(dim=-1)
    return (per_list * keep).sum() / keep.sum().clamp(min=1.0)


def ndcg_at(scores: torch.Tensor, label: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """Per-list NDCG@k over the candidates (binary gains), 0 for lists without relevance."""
    scores = scores.float().masked_fill(~mask, float("-inf"))
    top = min(k, scores.shape[1])
    order = torch.argsort(scores, dim=-1, descending=True, stable=True)[:, :top]
    discounts = 1.0 / torch.log2(torch.arange(top, device=scores.device, dtype=torch.float32) + 2)
    dcg = (label.gather(1, order) * discounts).sum(-1)
    ideal = (torch.sort(label, dim=-1, descending=True).values[:, :top] * discounts).sum(-1)
    return torch.where(ideal > 0, dcg / ideal.clamp(min=1e-9), torch.zeros_like(dcg))
