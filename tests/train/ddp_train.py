"""Trains a tiny GPT for a few steps; run by test_trainer.py alone or under torchrun."""

import sys

import torch
from safetensors.torch import save_file

from lmforge.models.gpt import GPT, GPTConfig
from lmforge.train.config import TrainConfig
from lmforge.train.trainer import Trainer

torch.set_num_threads(1)
torch.manual_seed(0)
model = GPT(GPTConfig(vocab_size=17, d_model=32, n_layers=2, n_heads=2, d_ff=64, max_seq_len=16))
stream = torch.arange(2000) * 7 % 17
config = TrainConfig(
    batch_size=8, seq_len=16, max_steps=6, warmup_steps=2, eval_interval=100, log_interval=1
)
trainer = Trainer(model, config, stream, progress=False)
trainer.fit()
if trainer.rank == 0:
    save_file({k: v.contiguous().clone() for k, v in model.state_dict().items()}, sys.argv[1])
if trainer.world > 1:
    torch.distributed.destroy_process_group()
