"""The testbed's language-model training loop: AdamW, warm-up then constant learning rate.

It is separate from :class:`genlab.core.train.Trainer` because growth experiments need what
that loop does not track: tokens and FLOPs consumed (including what came before growth), a
held-out loss on a fixed validation set at regular intervals, and G_random's ramp stepping with
the optimiser. Runs are short and are not checkpointed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from genlab.growth.corpus import ByteCorpus
from genlab.growth.ramp import GrowthRamp
from genlab.growth.timing import training_flops_per_token

VALIDATION_SEED = 1234


@dataclass(frozen=True)
class LMSchedule:
    batch_size: int = 16
    seq_len: int = 128
    lr: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 50
    eval_batches: int = 8


def validation_loss(model: PreTrainedModel, corpus: ByteCorpus, schedule: LMSchedule) -> float:
    """Mean next-byte cross-entropy (nats) on a fixed set of validation windows."""
    generator = torch.Generator().manual_seed(VALIDATION_SEED)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        losses = [model(input_ids=ids, labels=ids).loss.item()
                  for ids in (corpus.batch(schedule.batch_size, schedule.seq_len, generator, "valid")
                              for _ in range(schedule.eval_batches))]
    model.train(was_training)
    return sum(losses) / len(losses)


def train_lm(model: PreTrainedModel, corpus: ByteCorpus, steps: int, schedule: LMSchedule, seed: int,
             ramp: GrowthRamp | None = None, tokens: int = 0, flops: float = 0.0,
             desc: str = "train") -> list[dict]:
    """Train ``steps`` steps; returns the curve ``[{step, tokens, flops, val_loss}]``.

    ``tokens``/``flops`` are what was spent before this run (the small model, operator
    training), so a grown model's curve continues from there.
    """
    tokens_per_step = schedule.batch_size * schedule.seq_len
    flops_per_step = training_flops_per_token(model.config, schedule.seq_len) * tokens_per_step
    optimizer = torch.optim.AdamW(model.parameters(), lr=schedule.lr, betas=(0.9, 0.95),
                                  weight_decay=schedule.weight_decay)
    warmup = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / max(schedule.warmup_steps, 1)))
    generator = torch.Generator().manual_seed(seed)
    model.train()
    curve = [{"step": 0, "tokens": tokens, "flops": flops, "val_loss": validation_loss(model, corpus, schedule)}]
    for step in tqdm(range(1, steps + 1), desc=desc, leave=False):
        ids = corpus.batch(schedule.batch_size, schedule.seq_len, generator)
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), schedule.grad_clip)
        optimizer.step()
        warmup.step()
        if ramp is not None:
            ramp.step()
        tokens += tokens_per_step
        flops += flops_per_step
        if step % schedule.eval_every == 0 or step == steps:
            curve.append({"step": step, "tokens": tokens, "flops": flops,
                          "val_loss": validation_loss(model, corpus, schedule)})
    return curve
