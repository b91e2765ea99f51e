"""Shared reference set-up for the evaluation tests: one random-weight `transformers` GPT-2 and
the same weights loaded into gpt2lib's GPT2 (through the Hugging Face folder layout)."""
from __future__ import annotations

import torch

N_VOCAB = 50257


def make_pair(tmp_dir, block_size: int = 64, seed: int = 0):
    from transformers import GPT2Config as HFConfig, GPT2LMHeadModel

    from gpt2lib.model import GPT2

    torch.manual_seed(seed)
    hf = GPT2LMHeadModel(HFConfig(vocab_size=N_VOCAB, n_positions=block_size, n_embd=32, n_layer=2, n_head=2,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)).eval()
    hf.save_pretrained(tmp_dir)
    ours = GPT2.from_pretrained(str(tmp_dir)).eval()
    return hf, ours


@torch.no_grad()
def hf_logprobs(hf, ids: list[int]) -> torch.Tensor:
    """log p(next token) at every position of ``ids`` ([T, V]), float64."""
    logits = hf(torch.tensor([ids])).logits[0]
    return torch.log_softmax(logits.double(), dim=-1)


class _OneHotHead(torch.nn.Module):
    """Logits 1 at the token id carried in the hidden state, 0 elsewhere."""

    def __init__(self, n_vocab: int) -> None:
        super().__init__()
        self.out_features = n_vocab

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = x[..., :1].long()
        return torch.zeros(*ids.shape[:-1], self.out_features, device=x.device).scatter_(-1, ids, 1.0)


class OracleLM(torch.nn.Module):
    """A fake language model that always predicts the true next token of one of ``sequences`` (token id
    lists): one-hot logits for it, read off a trie of the sequences. Off every sequence (past its end,
    or after a token no sequence has there) it predicts ``eot``. Its "hidden state" is the predicted id,
    so its head projects only the rows that are scored (cheap on all of LAMBADA)."""

    def __init__(self, sequences, n_vocab: int = N_VOCAB, eot: int = 50256, block_size: int = 1024) -> None:
        from types import SimpleNamespace

        super().__init__()
        self.config = SimpleNamespace(vocab_size=n_vocab, block_size=block_size)
        self.lm_head = _OneHotHead(n_vocab)
        self._anchor = torch.nn.Parameter(torch.zeros(1))  # gives the model a device
        self.eot = eot
        self.trie: dict = {}
        for seq in sequences:
            node = self.trie
            for t in seq:
                node = node.setdefault(t, {})

    def hidden_states(self, idx: torch.Tensor) -> torch.Tensor:
        rows = []
        for row in idx.tolist():
            node, nxt = self.trie, []
            for t in row:
                node = node.get(t) if node else None
                nxt.append(next(iter(node)) if node else self.eot)  # off every sequence: eot
            rows.append(nxt)
        return torch.tensor(rows, dtype=torch.float32, device=idx.device)[..., None]
