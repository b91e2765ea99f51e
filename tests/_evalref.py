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
