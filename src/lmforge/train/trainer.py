"""The one Trainer for every neural family.

It knows nothing about a family beyond the protocol in ``lmforge.models.family``. What it trains
on is a *task* (``lmforge.train.tasks.Task``): batches, the loss of a batch, and validation
metrics. The default task, ``LMTask``, is language modelling on a token stream; BERT's MLM + NSP,
sequence-to-sequence pairs and classification fine-tuning are the other tasks of
``lmforge.train.tasks`` (``make_task`` builds a family's own). The Trainer owns the loop, AdamW
or SGD, warmup + cosine or divide-on-plateau schedules, gradient accumulation and clipping, bf16
autocast (for GPUs), evaluation, early stopping, checkpoints written as a whole
(``lmforge.checkpoint``) with exact resume, progress, ``metrics.jsonl`` (cut back to the resumed
step), and data parallelism under ``torchrun`` (gloo on CPU, nccl on GPU).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn
from tqdm import tqdm

from lmforge.checkpoint import (
    METRICS_FILE,
    WEIGHTS_FILE,
    atomic_write_text,
    clean_leftovers,
    new_run_id,
    read_checkpoint,
    read_json,
    remove_checkpoints,
    write_checkpoint,
)
from lmforge.errors import CheckpointError, ConfigError
from lmforge.train.config import TrainConfig, TrainResult
from lmforge.train.schedules import Plateau, warmup_cosine
from lmforge.train.tasks import LMTask, Task

__all__ = ["Trainer"]


class _LossModule(nn.Module):
    """The task's loss as a module's forward, so DDP and torch.compile see the whole step."""

    def __init__(self, model: nn.Module, task: Task) -> None:
        super().__init__()
        self.model = model
        self.task = task

    def forward(self, *batch, state=None):
        return self.task.loss(self.model, batch, state)


def detach_state(state):
    """Cut the graph behind a carried recurrent state (truncated BPTT)."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    return type(state)(detach_state(s) for s in state)


class Trainer:
    """Trains one model on one task, optionally checkpointing to ``out_dir``.

    Args:
        model: a neural family's module (see ``lmforge.models.family``).
        config: the TrainConfig.
        train_stream: (N,) token ids (``lmforge.data.batching.token_stream``) for the default
            language-modelling task; None when ``task`` is given.
        valid_stream: ids for evaluation every ``eval_interval`` steps, or None.
        out_dir: folder for ``model.safetensors``, the checkpoints and ``metrics.jsonl``
            (``lmforge.checkpoint``); the caller writes ``config.json`` and ``tokenizer.json``
            there, and holds the folder's lock (``lmforge.lock``).
        progress: show a progress bar (rank 0 only).
        task: what to train on (``lmforge.train.tasks``; ``make_task`` builds a family's own);
            default ``LMTask(model, config, train_stream, valid_stream)``.
        run_id: the run's id, written into every checkpoint (``config.json``'s ``run_id``);
            a resume refuses a checkpoint of another run. None: a new id, and a resume takes
            the checkpoint's own.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        train_stream: torch.Tensor | None = None,
        valid_stream: torch.Tensor | None = None,
        out_dir: str | os.PathLike | None = None,
        progress: bool = True,
        task: Task | None = None,
        run_id: str | None = None,
    ) -> None:
        self.config = config
        self.run_id = run_id
        self.out_dir = Path(out_dir) if out_dir else None
        self.rank, self.world = _init_distributed(config.device)
        self.device = torch.device(
            config.device if config.device != "cuda" else f"cuda:{self._local_rank()}"
        )
        self.model = model.to(self.device)
        if task is None:
            if train_stream is None:
                raise ConfigError("the Trainer needs a train_stream or a task")
            task = LMTask(self.model, config, train_stream, valid_stream)
        self.task = task
        self.progress = progress and self.rank == 0
        if config.batch_size % (self.world * config.grad_accum):
            raise ConfigError(
                f"batch_size ({config.batch_size}) must divide evenly over {self.world} processes "
                f"x grad_accum {config.grad_accum}"
            )
        self.optimizer = _make_optimizer(self.model, config)
        self.plateau = Plateau(config.plateau_factor)
        self.step = 0
        self.best_valid = math.inf
        self.bad_evals = 0
        self.train_seconds = 0.0
        self.tokens_seen = 0
        self.state = None
        self.finished = False  # the current checkpoint is the run's last
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.history: list[dict] = []
        wrapped: nn.Module = _LossModule(self.model, self.task)
        if self.world > 1:
            wrapped = nn.parallel.DistributedDataParallel(wrapped)
        self.loss_module = torch.compile(wrapped) if config.compile else wrapped

    # -- the loop ---------------------------------------------------------------------------------

    def fit(self, resume: bool = False, stop_at: int | None = None) -> TrainResult:
        """Train until ``max_steps`` (or the time budget, or early stopping).

        Args:
            resume: continue from ``out_dir``'s current checkpoint (bitwise the same as a run
                that was never interrupted, on the CPU); without it, a new run replaces what an
                earlier Trainer wrote into ``out_dir``.
            stop_at: stop after this step without finishing (to test resuming).

        Raises:
            CheckpointError: ``resume`` without a complete checkpoint of this run.
        """
        cfg = self.config
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self._start(resume)
        bar = tqdm(
            total=cfg.max_steps,
            initial=self.step,
            disable=not self.progress,
            unit="step",
            dynamic_ncols=True,
        )
        self.model.train()
        done = self.step >= cfg.max_steps
        while not done:
            started = time.perf_counter()
            lr = self._set_lr()
            loss, grad_norm, tokens = self._train_step()
            self.train_seconds += time.perf_counter() - started
            self.tokens_seen += tokens
            self.step += 1
            bar.update(1)
            self._log_step(bar, loss, lr, grad_norm)
            done = self.step >= cfg.max_steps or bool(
                cfg.max_seconds and self.train_seconds >= cfg.max_seconds
            )
            if self.step % cfg.eval_interval == 0 or done:
                done = self._evaluate() or done
                self._save_state(finished=done)
            if stop_at is not None and self.step >= stop_at:
                break
        bar.close()
        if done:
            self._finish()
        return TrainResult(
            self.step,
            self.train_seconds,
            self.tokens_seen / max(self.train_seconds, 1e-9),
            self.best_valid,
            self.history,
        )

    def _start(self, resume: bool) -> None:
        """Clean the folder of what a killed job left, then resume or start afresh (seeded)."""
        writer = self.out_dir is not None and self.rank == 0
        if writer and resume:
            clean_leftovers(self.out_dir)
        elif writer:
            remove_checkpoints(self.out_dir)
        if self.run_id is None and not resume:
            self.run_id = new_run_id()
        if resume:
            self._load_state()
        else:
            torch.manual_seed(self.config.seed + self.rank)

    def _log_step(self, bar: tqdm, loss: float, lr: float, grad_norm: float) -> None:
        cfg = self.config
        if self.step % cfg.log_interval and self.step != cfg.max_steps:
            return
        speed = self.tokens_seen / max(self.train_seconds, 1e-9)
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{speed:,.0f}")
        record = {"step": self.step, "loss": loss, "lr": lr, "grad_norm": grad_norm}
        self._log({**record, "tokens_per_second": speed})

    def _train_step(self) -> tuple[float, float, int]:
        """One optimizer step: (loss, gradient norm before clipping, tokens in the global batch)."""
        cfg = self.config
        batch, reset = self.task.batch(self.step)
        tokens = self.task.tokens(batch)
        size = batch[0].shape[0]
        rows = slice(self.rank * size // self.world, (self.rank + 1) * size // self.world)
        batch = tuple(t[rows].to(self.device) for t in batch)
        if self.model.recurrent and (reset or self.state is None):
            self.state = self.model.init_state(batch[0].shape[0], self.device)
        micro = batch[0].shape[0] // cfg.grad_accum
        total = 0.0
        states = []
        for i in range(cfg.grad_accum):
            part = slice(i * micro, (i + 1) * micro)
            state = _slice_state(self.state, part)
            with self._autocast():
                loss, state = self.loss_module(*(t[part] for t in batch), state=state)
            (loss / cfg.grad_accum).backward()
            total += loss.item() / cfg.grad_accum
            states.append(detach_state(state))
        self.state = _concat_states(states)
        grad_norm = float(
            nn.utils.clip_grad_norm_(
                self.model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else math.inf
            )
        )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total, grad_norm, tokens

    def _set_lr(self) -> float:
        cfg = self.config
        if cfg.schedule == "cosine":
            step = self.step
            if cfg.max_seconds:  # anneal against whichever budget, steps or seconds, ends first
                step = max(step, int(cfg.max_steps * self.train_seconds / cfg.max_seconds))
            lr = warmup_cosine(step, cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.max_steps)
        elif cfg.schedule == "plateau":
            lr = max(cfg.lr * self.plateau.scale, cfg.min_lr)
        else:
            lr = cfg.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _autocast(self):
        enabled = self.config.dtype == "bfloat16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    # -- evaluation, early stopping, checkpoints --------------------------------------------------

    def _evaluate(self) -> bool:
        """Evaluate, update plateau / early stopping; True to stop training."""
        metrics = self.task.evaluate(self.model, self.config.eval_tokens)
        if metrics is None:
            return False
        valid = metrics["valid_loss"]
        self._log({"step": self.step, **metrics})
        if self.config.schedule == "plateau":
            self.plateau.update(valid)
        stop = False
        if valid < self.best_valid:
            self.best_valid, self.bad_evals = valid, 0
            self.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            self.bad_evals += 1
            stop = bool(self.config.patience) and self.bad_evals >= self.config.patience
        if self.progress:
            shown = ", ".join(f"{k.removeprefix('valid_')} {v:.4f}" for k, v in metrics.items())
            tqdm.write(f"step {self.step}: valid {shown}")
        return stop

    def _finish(self) -> None:
        """Keep the best-validation weights as the model (and the folder's weights)."""
        if not self.finished:  # a resumed run that had nothing left to train
            self._save_state(finished=True)
        if self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)

    def _save_state(self, finished: bool) -> None:
        """Write a checkpoint as a whole; a finished run's ``model.safetensors`` is its best."""
        self.finished = finished
        if not self.out_dir or self.rank != 0:
            return
        tensors, optim_meta = _flatten_optimizer(self.optimizer.state_dict())
        tensors["rng"] = torch.get_rng_state()
        for i, t in enumerate(_state_tensors(self.state)):
            tensors[f"carried.{i}"] = t
        last = _weights_bytes(self.model.state_dict())
        best = _weights_bytes(self.best_weights) if self.best_weights is not None else None
        meta = json.dumps(self._trainer_meta(optim_meta), indent=2) + "\n"
        with write_checkpoint(self.out_dir, self.step, self.run_id, finished) as add:
            add("last.safetensors", last)
            if best is not None:
                add("best.safetensors", best)
            add("optimizer.safetensors", _weights_bytes(tensors))
            add("trainer.json", meta.encode("utf-8"))
            add(WEIGHTS_FILE, best if finished and best is not None else last)

    def _trainer_meta(self, optim_meta: dict) -> dict:
        """The JSON half of the trainer's state (the tensors go to optimizer.safetensors)."""
        return {
            "step": self.step,
            "best_valid": self.best_valid if math.isfinite(self.best_valid) else None,
            "bad_evals": self.bad_evals,
            "plateau": {
                "scale": self.plateau.scale,
                "best": self.plateau.best if math.isfinite(self.plateau.best) else None,
            },
            "train_seconds": self.train_seconds,
            "tokens_seen": self.tokens_seen,
            "carried_layout": _state_layout(self.state),
            "optimizer": optim_meta,
            "train_config": asdict(self.config),
        }

    def _load_state(self) -> None:
        if not self.out_dir:
            raise ConfigError("resume needs an output folder with a checkpoint")
        path, manifest = read_checkpoint(self.out_dir, self.run_id)
        self.run_id, self.finished = manifest["run_id"], manifest["finished"]
        meta = read_json(path / "trainer.json", "trainer state")
        try:
            self.model.load_state_dict(
                load_file(str(path / "last.safetensors"), device=str(self.device))
            )
            tensors = load_file(str(path / "optimizer.safetensors"))
            best = path / "best.safetensors"
            self.best_weights = load_file(str(best)) if best.exists() else None
        except (OSError, RuntimeError, ValueError, SafetensorError) as err:
            raise CheckpointError(
                f"{path}: cannot resume from this checkpoint ({_reason(err)}); resume with the "
                "run's own model settings, or start again with --overwrite"
            ) from None
        self.optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
        torch.set_rng_state(tensors["rng"])
        carried = [
            tensors[f"carried.{i}"].to(self.device)
            for i in range(_count_layout(meta["carried_layout"]))
        ]
        self.state = _restore_state(meta["carried_layout"], carried)
        self._restore_counters(meta)

    def _restore_counters(self, meta: dict) -> None:
        """The step, early stopping, plateau and timing, and the log cut back to the step."""
        self.step = meta["step"]
        self.best_valid = meta["best_valid"] if meta["best_valid"] is not None else math.inf
        self.bad_evals = meta["bad_evals"]
        plateau_best = meta["plateau"]["best"]
        self.plateau = Plateau(
            self.config.plateau_factor,
            meta["plateau"]["scale"],
            plateau_best if plateau_best is not None else math.inf,
        )
        self.train_seconds = meta["train_seconds"]
        self.tokens_seen = meta["tokens_seen"]
        if self.rank == 0:
            self.history = _cut_metrics(self.out_dir / METRICS_FILE, self.step)

    def _log(self, record: dict) -> None:
        self.history.append(record)
        if self.out_dir and self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with open(self.out_dir / METRICS_FILE, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    def _local_rank(self) -> int:
        return int(os.environ.get("LOCAL_RANK", 0))


# -- helpers ------------------------------------------------------------------------------------


def _init_distributed(device: str) -> tuple[int, int]:
    """(rank, world size); joins the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return dist.get_rank(), world


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only (not biases, norms), or plain SGD."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, cfg.beta2))


def _weights_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    """A state dict as safetensors bytes; shared (tied) tensors are stored once per name."""
    plain = {k: v.detach().contiguous().cpu().clone() for k, v in tensors.items()}
    return safetensors_bytes(plain)


def _reason(err: Exception) -> str:
    """The first telling line of an error (torch's state-dict errors open with a heading)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [repr(err)]
    first = lines[1] if len(lines) > 1 and lines[0].endswith(":") else lines[0]
    return first[:200]


def _cut_metrics(path: Path, step: int) -> list[dict]:
    """Keep the records of ``metrics.jsonl`` up to ``step`` (a resumed run logs the rest
    again); a line cut short by a kill is dropped. Returns the kept records."""
    if not path.exists():
        return []
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("step", step + 1) <= step:
            kept.append(record)
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
    return kept


def _flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, plain = {}, {}
    for pid, values in state_dict["state"].items():
        plain[str(pid)] = {}
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                plain[str(pid)][key] = value
    return tensors, {"state": plain, "param_groups": state_dict["param_groups"]}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state = {int(pid): dict(values) for pid, values in meta["state"].items()}
    for name, tensor in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state[int(pid)][key] = tensor
    return {"state": state, "param_groups": meta["param_groups"]}


def _state_tensors(state) -> list[torch.Tensor]:
    if state is None:
        return []
    if isinstance(state, torch.Tensor):
        return [state]
    return [t for s in state for t in _state_tensors(s)]


def _state_layout(state):
    """JSON shape of a nested state: null, "t" for a tensor, or a list of layouts."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return "t"
    return [_state_layout(s) for s in state]


def _count_layout(layout) -> int:
    if layout is None:
        return 0
    if layout == "t":
        return 1
    return sum(_count_layout(part) for part in layout)


def _restore_state(layout, tensors: list[torch.Tensor]):
    if layout is None:
        return None
    if layout == "t":
        return tensors.pop(0)
    return tuple(_restore_state(part, tensors) for part in layout)


def _slice_state(state, rows: slice):
    """The rows of a carried state (batch is dim 1 for torch RNN states (layers, B, H))."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state[:, rows]
    return tuple(_slice_state(s, rows) for s in state)


def _concat_states(states: list):
    if states[0] is None:
        return None
    if isinstance(states[0], torch.Tensor):
        return torch.cat(states, dim=1)
    return tuple(_concat_states([s[i] for s in states]) for i in range(len(states[0])))
