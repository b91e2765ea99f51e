"""gpt2lib.recipe: the trainer's floats equal a plain hand-written AdamW loop's, bit for bit.

The reference below is written from the recipe's description (GPT-3 App. B: AdamW, decay on 2-D weights,
warm-up + cosine, clipping; gradient accumulation over micro-batches), with ``torch.optim.AdamW`` directly and
none of gpt2lib's training code: the same batches and dropout stream must give the same weights and optimizer
state, so splitting :func:`gpt2lib.train.train` into recipe and run machinery changed no trained float.
"""
from __future__ import annotations

import math

import pytest
import torch
from _shards import shakespeare_shards

import gpt2lib.train as T
from gpt2lib import recipe, runner
from gpt2lib.checkpoint import load_checkpoint
from gpt2lib.data import TokenLoader, TokenShards
from gpt2lib.model import GPT2, GPT2Config
from gpt2lib.train import TrainConfig, train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return shakespeare_shards(tmp_path_factory.mktemp("shards"), 30_000)


def _model(dropout: float) -> GPT2:
    torch.manual_seed(0)
    return GPT2(GPT2Config(block_size=32, vocab_size=50257, n_layer=1, n_head=2, n_embd=16, dropout=dropout))


def _reference(cfg: TrainConfig, dropout: float) -> tuple[GPT2, torch.optim.AdamW, list[float]]:
    """The recipe as a plain loop: AdamW groups by hand, warm-up + cosine, accumulation, clipping, step."""
    model = _model(dropout)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    loader = TokenLoader(TokenShards.open(cfg.data_dir, "train"), cfg.block_size, cfg.micro_batch_size, seed=cfg.seed)
    accum = cfg.tokens_per_step // (cfg.micro_batch_size * cfg.block_size)
    torch.manual_seed(cfg.seed + 1)  # the trainer's documented dropout stream of rank 0
    model.train()
    losses = []
    for it in range(cfg.max_steps):
        if it < cfg.warmup_steps:
            lr = cfg.lr * (it + 1) / cfg.warmup_steps
        else:
            decay_ratio = (it - cfg.warmup_steps) / (cfg.max_steps - cfg.warmup_steps)
            coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
            lr = cfg.min_lr + coeff * (cfg.lr - cfg.min_lr)
        for group in opt.param_groups:
            group["lr"] = lr
        total = torch.zeros(())
        for _ in range(accum):
            x, y = loader.next_batch()
            _, loss = model(x, y, return_logits=False)
            loss = loss / accum
            loss.backward()
            total += loss.detach()
        losses.append(float(total))
        torch.nn.utils.clip_grad_norm_(list(model.parameters()), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return model, opt, losses


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_trained_floats_equal_a_hand_written_adamw_loop(tmp_path, data, dropout):
    """train() with accumulation (2 micro-batches), clipping that bites (0.5), warm-up, cosine decay and
    held-out evaluations in between == the plain loop: identical weights, AdamW moments and losses."""
    cfg = TrainConfig(data_dir=str(data), out_dir=str(tmp_path), model="gpt2-tiny", block_size=32,
                      micro_batch_size=4, tokens_per_step=256, max_steps=6, warmup_steps=2, lr=3e-3, min_lr=3e-4,
                      eval_interval=2, eval_batches=2, sample_tokens=0, save_interval=0, grad_clip=0.5,
                      dropout=dropout, progress=False)
    res = train(cfg, model=_model(dropout))
    ref, ref_opt, ref_losses = _reference(cfg, dropout)
    assert res["grad_accum"] == 2 and res["val_loss"] is not None
    assert res["losses"] == ref_losses
    got = res["model"].state_dict()
    assert all(torch.equal(got[k], v) for k, v in ref.state_dict().items())
    fresh = _model(dropout)
    opt = recipe.configure_optimizer(fresh, cfg, torch.device("cpu"))
    load_checkpoint(tmp_path, model=fresh, optimizer=opt)
    for p_got, p_ref in zip(fresh.parameters(), ref.parameters()):
        s_got, s_ref = opt.state[p_got], ref_opt.state[p_ref]
        assert torch.equal(s_got["exp_avg"], s_ref["exp_avg"]) and torch.equal(s_got["exp_avg_sq"], s_ref["exp_avg_sq"])
        assert float(s_got["step"]) == float(s_ref["step"]) == cfg.max_steps


def test_clipping_bites_in_that_run(data):
    """The clipping threshold of the run above is below the gradient norm, so the comparison covers it."""
    model = _model(0.0)
    loader = TokenLoader(TokenShards.open(data, "train"), 32, 4, seed=1337)
    opt = torch.optim.AdamW(model.parameters())
    _, norm = recipe.optimizer_step(model, opt, loader.next_batch, 2, 1e-3, 0.5)
    assert norm > 0.5


def test_a_non_finite_loss_makes_no_update(data):
    """optimizer_step returns (nan, None) and leaves weights and optimizer state untouched."""
    model = _model(0.0)
    loader = TokenLoader(TokenShards.open(data, "train"), 32, 4, seed=1337)
    opt = torch.optim.AdamW(model.parameters())
    model.transformer.ln_f.register_forward_hook(lambda m, i, o: o * float("nan"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss, norm = recipe.optimizer_step(model, opt, loader.next_batch, 2, 1e-3, 1.0)
    assert math.isnan(loss) and norm is None and not opt.state
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_train_keeps_its_public_names():
    """Everything gpt2lib.train exported before the split is still there, and is the one object."""
    assert T.lr_at is recipe.lr_at and T.configure_optimizer is recipe.configure_optimizer
    assert T.evaluate_loss is recipe.evaluate_loss and T.read_log is runner.read_log
    assert T.TrainingInterrupted is runner.TrainingInterrupted and T.plot_losses is runner.plot_losses
    for name in T.__all__:
        assert hasattr(T, name), name
