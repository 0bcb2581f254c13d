"""``lmforge ladder``: the history of language modelling, trained and measured side by side.

Every rung — the n-gram model, Bengio's feed-forward NNLM, the Elman RNN, the LSTM, the GRU and
the decoder Transformer — is trained on the same corpus with the same tokenizer and scored on the
same tokens (each line's tokens and its ``</s>``), so the perplexities are directly comparable.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from lmforge.checkpoint import write_json
from lmforge.data import load_corpus
from lmforge.errors import ConfigError, LMForgeError
from lmforge.evaluate import line_log_probs
from lmforge.folders import save_model
from lmforge.metrics import mix_log_probs, perplexity
from lmforge.models import get_family
from lmforge.models.ngram import NgramConfig, NgramLM
from lmforge.tokenize import tokenize_lines, train_tokenizer
from lmforge.train.config import TrainConfig
from lmforge.workflows import train_family

__all__ = ["Rung", "Preset", "PRESETS", "RungResult", "LadderResult", "run_ladder"]

DEFAULT_MODELS = ("ngram", "nnlm", "rnn", "lstm", "gpt")
SMOKE_EVAL_LINES = 100  # lines of valid and of test scored by a smoke run (``max_steps``)


@dataclass(frozen=True)
class Rung:
    """One neural rung: its family, model settings and training settings.

    ``seconds`` is its expected training time at one thread on a 2-core CPU: the ladder starts
    the longest rungs first.
    """

    family: str
    model: dict
    train: dict
    seconds: float = 0.0


@dataclass(frozen=True)
class Preset:
    """A ladder setting: data, tokenizer, and the settings of every rung."""

    name: str
    summary: str
    corpus: str
    tokenizer: str
    rungs: dict[str, Rung]
    rare_threshold: int = 3
    vocab_size: int = 8000
    train_lines: int = 0  # 0: the whole train split
    eval_lines: int = 0  # 0: the whole valid and test splits
    ngram_order: int = 5
    mix_weight: float = 0.5
    minutes: float = 10.0  # expected wall time of the default rungs on a 2-core CPU


def _standard() -> Preset:
    # Every rung trains for a number of steps, not seconds, so the figures do not depend on how
    # busy the machine is (a time budget gave a loaded machine's NNLM a worse perplexity than
    # the n-gram's). The default preset until 2026-12-05 (then named quick).
    common = {
        "lr": 2e-3,
        "min_lr": 2e-4,
        "warmup_steps": 50,
        "weight_decay": 0.01,
        "grad_clip": 1.0,
        "eval_tokens": 50_000,
    }
    recurrent = {**common, "batch_size": 32, "seq_len": 64, "eval_interval": 200}
    one_layer = {"d_model": 256, "n_layers": 1}
    nnlm = {**common, "batch_size": 64, "seq_len": 128, "eval_interval": 100, "max_steps": 800}
    gpt = {**common, "batch_size": 32, "seq_len": 64, "eval_interval": 200, "max_steps": 4000}
    return Preset(
        name="standard",
        summary="brown, first 4,000 paragraphs (0.9M characters), char tokenizer; valid/test: "
        "first 300 paragraphs of each (0.2M characters); n-gram order 3; nnlm 800 steps "
        "(64 x 128), rnn 4,000, lstm 3,000 (32 x 64), gpt (2 x 192) 4,000 steps (32 x 64)",
        corpus="brown",
        tokenizer="char",
        train_lines=4000,
        eval_lines=300,
        ngram_order=3,
        minutes=11.0,
        rungs={
            "nnlm": Rung(
                "nnlm", {"context": 12, "d_model": 32, "d_hidden": 512, "direct": True}, nnlm, 172
            ),
            "rnn": Rung("rnn", one_layer, {**recurrent, "max_steps": 4000}, 152),
            "lstm": Rung("lstm", one_layer, {**recurrent, "max_steps": 3000}, 222),
            "gru": Rung("gru", one_layer, {**recurrent, "max_steps": 3000}, 222),
            "gpt": Rung(
                "gpt",
                {"d_model": 192, "n_layers": 2, "n_heads": 4, "d_ff": 768, "max_seq_len": 64},
                gpt,
                602,
            ),
        },
    )


def _quick() -> Preset:
    # The standard preset's data and models on shorter step budgets (under half its training),
    # so that the rungs side by side on 2 cores take ~4.5 minutes in all; the order on test
    # stays n-gram > NNLM > LSTM >= GPT (benchmarks/RESULTS.md, 2026-12-05).
    standard = _standard()
    budgets = {  # steps, steps between evaluations, expected seconds at one thread
        "nnlm": (300, 100, 65),
        "rnn": (1500, 500, 57),
        "lstm": (1500, 500, 111),
        "gru": (1500, 500, 111),
        "gpt": (1500, 500, 226),
    }
    rungs = {}
    for name, (steps, interval, seconds) in budgets.items():
        rung = standard.rungs[name]
        train = {**rung.train, "max_steps": steps, "eval_interval": interval, "eval_tokens": 20_000}
        rungs[name] = replace(rung, train=train, seconds=seconds)
    # at 2e-3 its 300 steps left the NNLM at test 7.40, hardly below the n-gram's 7.50
    rungs["nnlm"] = replace(rungs["nnlm"], train={**rungs["nnlm"].train, "lr": 5e-3})
    return replace(
        standard,
        name="quick",
        summary="the standard preset's data and models (brown, 4,000 paragraphs, char tokenizer; "
        "n-gram order 3) on shorter budgets: nnlm 300 steps (lr 5e-3), rnn, lstm and gpt 1,500 "
        "steps",
        minutes=5.0,
        rungs=rungs,
    )


def _paper() -> Preset:
    cutoffs = (2000, 6000)
    adam = {
        "lr": 1e-3,
        "min_lr": 1e-4,
        "warmup_steps": 200,
        "weight_decay": 0.01,
        "grad_clip": 1.0,
        "threads": 1,
        "eval_tokens": 50_000,
    }
    recurrent = {**adam, "batch_size": 20, "seq_len": 35}
    stacked = {"d_model": 200, "n_layers": 2, "dropout": 0.3, "adaptive_cutoffs": cutoffs}
    stacked_train = {**recurrent, "max_steps": 16000, "eval_interval": 1000}
    return Preset(
        name="paper",
        summary="brown (Bengio et al. 2003 split), word tokenizer, train frequency <= 3 -> <rare> "
        "(|V| = 14,025 + markers); n-gram order 5; Bengio's MLP (n=5, h=50, m=60, direct); "
        "Zaremba-small-like LSTM (2x200); a GPT of comparable size (4x192, adaptive input tied to "
        "its adaptive softmax); adaptive softmax (cutoffs 2000, 6000) for the neural rungs; AdamW; "
        "one thread per rung",
        corpus="brown",
        tokenizer="word",
        ngram_order=5,
        minutes=70.0,  # two rungs at a time; 130 one after another
        rungs={
            # Bengio's L2 penalty becomes AdamW weight decay 0.5, plus dropout 0.25 (absent in
            # the paper): without them the MLP overfits (valid 232 against KN5's 199).
            "nnlm": Rung(
                "nnlm",
                {
                    "context": 4,
                    "d_model": 60,
                    "d_hidden": 50,
                    "direct": True,
                    "dropout": 0.25,
                    "adaptive_cutoffs": cutoffs,
                },
                {
                    **adam,
                    "weight_decay": 0.5,
                    "batch_size": 64,
                    "seq_len": 64,
                    "max_steps": 5000,
                    "eval_interval": 500,
                },
                seconds=1417,
            ),
            "rnn": Rung(
                "rnn",
                {"d_model": 200, "n_layers": 1, "dropout": 0.2, "adaptive_cutoffs": cutoffs},
                {**recurrent, "max_steps": 10000, "eval_interval": 1000},
                seconds=641,
            ),
            "lstm": Rung("lstm", stacked, stacked_train, seconds=2218),
            "gru": Rung("gru", stacked, stacked_train, seconds=2218),
            "gpt": Rung(
                "gpt",
                {
                    "d_model": 192,
                    "n_layers": 4,
                    "n_heads": 4,
                    "d_ff": 768,
                    "max_seq_len": 128,
                    "dropout": 0.3,
                    # the input embedding reads the adaptive softmax's weights (Baevski & Auli
                    # 2019): 2.5 M parameters instead of 5.2 M, and far less memorising
                    "tie_embeddings": True,
                    "adaptive_cutoffs": cutoffs,
                },
                {
                    **adam,
                    "weight_decay": 0.1,
                    "batch_size": 16,
                    "seq_len": 128,
                    "max_steps": 6000,
                    "eval_interval": 600,
                },
                seconds=3402,
            ),
        },
    )


def _full() -> Preset:
    paper = _paper()
    rungs = dict(paper.rungs)
    rungs["lstm"] = Rung(
        "lstm",
        {"d_model": 650, "n_layers": 2, "dropout": 0.5},
        {
            "optimizer": "sgd",
            "lr": 1.0,
            "min_lr": 1e-3,
            "schedule": "plateau",
            "plateau_factor": 1.2,
            "weight_decay": 0.0,
            "grad_clip": 5.0,
            "batch_size": 20,
            "seq_len": 35,
            "max_steps": 39 * 1100,
            "eval_interval": 1100,
        },
        seconds=30_000,  # rough, on a CPU: what counts is the order of the rungs
    )
    rungs["gpt"] = Rung(
        "gpt",
        {
            "d_model": 512,
            "n_layers": 8,
            "n_heads": 8,
            "d_ff": 2048,
            "max_seq_len": 256,
            "dropout": 0.3,
        },
        {
            "lr": 6e-4,
            "min_lr": 6e-5,
            "warmup_steps": 500,
            "weight_decay": 0.1,
            "batch_size": 32,
            "seq_len": 256,
            "max_steps": 20000,
            "eval_interval": 1000,
        },
        seconds=40_000,
    )
    return replace(
        paper,
        name="full",
        rungs=rungs,
        minutes=600.0,
        summary="the papers' own sizes (Zaremba's medium LSTM, a larger GPT): meant for a GPU",
    )


PRESETS: dict[str, Preset] = {p.name: p for p in (_quick(), _standard(), _paper(), _full())}


@dataclass
class RungResult:
    """One row of the ladder table (perplexities on the same tokens for every rung)."""

    model: str
    params: int
    train_seconds: float
    tokens_per_second: float
    valid_ppl: float
    test_ppl: float
    curve: list[tuple[int, float]] = field(default_factory=list)  # (training tokens, valid ppl)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        names = ("model", "params", "train_seconds", "tokens_per_second", "valid_ppl", "test_ppl")
        return {**{name: getattr(self, name) for name in names}, **self.extra}


@dataclass
class LadderResult:
    """The whole ladder; ``max_steps`` is set for a smoke run (its figures mean little)."""

    preset: str
    corpus: str
    tokenizer: str
    summary: str
    rungs: list[RungResult]
    max_steps: int | None = None

    def to_dict(self) -> dict:
        return {
            "corpus": self.corpus,
            "tokenizer": self.tokenizer,
            "preset": self.preset,
            "summary": self.summary,
            "max_steps": self.max_steps,
            "rungs": [r.to_dict() for r in self.rungs],
        }


def run_ladder(
    preset: Preset,
    models: Sequence[str] = DEFAULT_MODELS,
    corpus: str | None = None,
    tokenizer: str | None = None,
    device: str = "cpu",
    out_dir: str | Path | None = None,
    progress: bool = True,
    max_steps: int | None = None,
    jobs: int | None = None,
) -> LadderResult:
    """Train and evaluate each requested rung; write ``ladder.json``/``ladder.png`` to out_dir.

    The n-gram model is fitted first, in this process (the NNLM's mixture needs its
    log-probabilities); the neural rungs then train side by side, ``jobs`` processes of
    ``cpu_count // jobs`` torch threads each, the longest first. Each rung seeds itself, so
    the figures do not depend on ``jobs`` beyond float noise.

    Args:
        jobs: rungs trained at once (default: one per CPU core, at most one per rung); 1 trains
            them one after another in this process.
        max_steps: cap every neural rung's training and score only the first
            ``SMOKE_EVAL_LINES`` lines of valid and test (a smoke run).
    """
    _check_models(preset, models)
    data = load_corpus(corpus or preset.corpus)
    cut = preset.eval_lines or None
    if max_steps:
        cut = min(cut or SMOKE_EVAL_LINES, SMOKE_EVAL_LINES)
    train = data.train[: preset.train_lines or None]
    valid, test = data.valid[:cut], data.test[:cut]
    kind = tokenizer or preset.tokenizer
    tok = train_tokenizer(
        kind, train, vocab_size=preset.vocab_size, rare_threshold=preset.rare_threshold
    )
    _say(progress, f"tokenizer {kind}: {tok.vocab_size:,} symbols")
    out = Path(out_dir) if out_dir else None
    rows: dict[str, RungResult] = {}
    ngram_logp: dict[str, np.ndarray] = {}
    if "ngram" in models:
        rows["ngram"], ngram_logp = _ngram_rung(preset, tok, train, valid, test, out)
        _say_done(progress, "ngram", rows["ngram"])
    neural = {name: _capped(preset.rungs[name], max_steps) for name in models if name != "ngram"}
    trained = _train_rungs(neural, (tok, train, valid, test, device, out), jobs, progress)
    for name, (row, logp) in trained.items():
        if name == "nnlm" and ngram_logp:
            row.extra.update(_mixture(logp, ngram_logp, preset.mix_weight))
        rows[name] = row
    result = LadderResult(
        preset.name, data.name, kind, preset.summary, [rows[name] for name in models], max_steps
    )
    if out:
        write_json(out / "ladder.json", result.to_dict())
        plot_ladder(result, out / "ladder.png")
    return result


def _check_models(preset: Preset, models: Sequence[str]) -> None:
    for name in models:
        if name != "ngram" and name not in preset.rungs:
            get_family(name)  # unknown names raise UnknownModelError listing the known ones
            raise ConfigError(f"the {preset.name} preset has no settings for {name!r}")


def _capped(rung: Rung, max_steps: int | None) -> Rung:
    """The rung with its training cut to ``max_steps`` (a smoke run), or unchanged."""
    if not max_steps:
        return rung
    steps = min(max_steps, rung.train["max_steps"])
    interval = min(steps, rung.train["eval_interval"])
    return replace(rung, train={**rung.train, "max_steps": steps, "eval_interval": interval})


def _ngram_rung(preset, tok, train, valid, test, out) -> tuple[RungResult, dict]:
    start = time.perf_counter()
    sentences = tokenize_lines(train, tok)
    model = NgramLM.fit(
        sentences, NgramConfig(order=preset.ngram_order, discount_fallback=(0.5, 1.0, 1.5))
    )
    seconds = time.perf_counter() - start
    logp = {
        split: line_log_probs(model, tok, lines)
        for split, lines in (("valid", valid), ("test", test))
    }
    if out:
        save_model(out / "ngram", model, tok)
    ppl = {split: perplexity(-float(v.sum()), len(v)) for split, v in logp.items()}
    tokens = sum(len(s) + 1 for s in sentences)
    row = RungResult(
        "ngram",
        sum(model.ngram_counts),
        seconds,
        tokens / seconds,
        ppl["valid"],
        ppl["test"],
        extra={"order": preset.ngram_order},
    )
    return row, logp


def _train_rungs(
    rungs: dict[str, Rung], shared: tuple, jobs: int | None, progress: bool
) -> dict[str, tuple[RungResult, dict]]:
    """Train and score the neural rungs, ``jobs`` at a time; {name: (row, log-probs)}.

    ``shared`` is (tokenizer, train, valid, test, device, out_dir), the same for every rung.
    """
    if not rungs:
        return {}
    cores = os.cpu_count() or 1
    jobs = max(1, min(jobs or cores, len(rungs)))
    threads = max(1, cores // jobs)
    if jobs == 1:
        done = {}
        for number, (name, rung) in enumerate(rungs.items(), 1):
            _say(progress, f"--- rung {number}/{len(rungs)}: {name}")
            done[name] = _neural_rung(rung, *shared, threads, progress)
            _say_done(progress, name, done[name][0])
        return done
    order = sorted(rungs, key=lambda name: rungs[name].seconds, reverse=True)
    _say(
        progress,
        f"--- rungs {', '.join(order)}: {jobs} at a time, {threads} thread"
        f"{'s' if threads > 1 else ''} each, the longest first",
    )
    return _run_in_workers(
        {name: (rungs[name], *shared, threads) for name in order}, jobs, progress
    )


def _run_in_workers(tasks: dict[str, tuple], jobs: int, progress: bool) -> dict:
    """Run ``_rung_job`` on each task in a pool of spawned processes; the first failure stops
    the other workers and is raised, naming its rung."""
    context = multiprocessing.get_context("spawn")
    before = set(multiprocessing.active_children())
    done = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = {
            pool.submit(_rung_job, name, *task, progress): name for name, task in tasks.items()
        }
        try:
            for future in as_completed(futures):
                name = futures[future]
                done[name] = _rung_outcome(name, future)
                _say_done(progress, name, done[name][0])
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            for child in set(multiprocessing.active_children()) - before:
                child.terminate()  # a rung still training would otherwise hold the error back
            raise
    return {name: done[name] for name in tasks}


def _rung_outcome(name: str, future) -> tuple[RungResult, dict]:
    try:
        return future.result()
    except LMForgeError as error:
        raise type(error)(f"ladder rung {name}: {error}") from error
    except Exception as error:
        error.add_note(f"raised by the ladder's {name} rung (trained in a worker process)")
        raise


def _rung_job(name: str, rung: Rung, *args) -> tuple[RungResult, dict]:
    """A worker's rung: its printed lines prefixed with its name, progress bars dropped."""
    sys.stdout = _RungLines(name, sys.__stderr__)
    sys.stderr = _RungLines(name, sys.__stderr__)
    return _neural_rung(rung, *args)


class _RungLines(io.TextIOBase):
    """A text stream that passes on whole lines, each prefixed with a rung's name, and drops the
    lines a progress bar redraws (those holding a carriage return)."""

    def __init__(self, name: str, target) -> None:
        self.name, self.target = name, target
        self.line, self.redrawn = "", False

    def write(self, text: str) -> int:
        rest = text
        while rest:
            piece, newline, rest = rest.partition("\n")
            if "\r" in piece:
                self.line, self.redrawn = "", True
            else:
                self.line += piece
            if newline:
                if self.line.strip() and not self.redrawn:
                    self.target.write(f"{self.name}: {self.line}\n")
                    self.target.flush()
                self.line, self.redrawn = "", False
        return len(text)


def _neural_rung(
    rung, tok, train, valid, test, device, out, threads, progress
) -> tuple[RungResult, dict]:
    """Train one neural rung (seeded by its own settings) and score valid and test."""
    train_config = TrainConfig(**{"threads": threads, **rung.train, "device": device})
    model, result, _ = train_family(
        rung.family,
        train,
        valid,
        tok,
        rung.model,
        train_config,
        out_dir=out / rung.family if out else None,
        progress=progress,
        overwrite=True,  # a ladder's folder is its own: a rerun replaces its rungs
    )
    logp = {
        split: line_log_probs(model, tok, lines)
        for split, lines in (("valid", valid), ("test", test))
    }
    ppl = {split: perplexity(-float(v.sum()), len(v)) for split, v in logp.items()}
    tokens_per_step = train_config.batch_size * train_config.seq_len
    curve = [
        (h["step"] * tokens_per_step, h["valid_ppl"]) for h in result.history if "valid_ppl" in h
    ]
    row = RungResult(
        rung.family,
        model.num_parameters(),
        result.train_seconds,
        result.tokens_per_second,
        ppl["valid"],
        ppl["test"],
        curve,
    )
    return row, logp


def _mixture(logp: dict, ngram_logp: dict, weight: float) -> dict:
    """The NNLM mixed with the n-gram (Bengio et al. 2003, section 4): perplexity per split."""
    extra = {}
    for split in ("valid", "test"):
        mixed = mix_log_probs(logp[split], ngram_logp[split], weight)
        extra[f"mix_{split}_ppl"] = perplexity(-float(np.sum(mixed)), len(mixed))
    return {**extra, "mix_weight": weight}


def ladder_table(result: LadderResult) -> str:
    """The ladder as a fixed-width text table."""
    lines = [
        f"{'model':<12}{'params':>12}{'train s':>10}{'tokens/s':>11}"
        f"{'valid ppl':>11}{'test ppl':>10}"
    ]
    for r in result.rungs:
        lines.append(
            f"{r.model:<12}{r.params:>12,}{r.train_seconds:>10.1f}{r.tokens_per_second:>11,.0f}"
            f"{r.valid_ppl:>11.2f}{r.test_ppl:>10.2f}"
        )
        if "mix_test_ppl" in r.extra:
            label = f"{r.model}+ngram"
            lines.append(
                f"{label:<12}{'':>12}{'':>10}{'':>11}{r.extra['mix_valid_ppl']:>11.2f}"
                f"{r.extra['mix_test_ppl']:>10.2f}   (mixed, weight {r.extra['mix_weight']})"
            )
    if result.max_steps:
        lines.append(
            f"smoke run (--max-steps {result.max_steps}, the first {SMOKE_EVAL_LINES} lines of "
            "valid and test): these figures are not the preset's"
        )
    return "\n".join(lines)


def plot_ladder(result: LadderResult, path: Path) -> None:
    """Two panels: test perplexity per rung, and validation perplexity while training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (bars, curves) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = [r.model for r in result.rungs]
    values = [r.test_ppl for r in result.rungs]
    bars.bar(names, values, color="tab:blue")
    for i, v in enumerate(values):
        bars.text(i, v, f"{v:.1f}", ha="center", va="bottom")
    bars.set_ylabel("test perplexity (lower is better)")
    bars.set_title(f"{result.corpus}, {result.tokenizer} tokenizer: test perplexity per rung")
    for r in result.rungs:
        if r.curve:
            tokens, ppl = zip(*r.curve, strict=True)
            curves.plot(tokens, ppl, marker="o", label=r.model)
        elif r.model == "ngram":
            curves.axhline(r.valid_ppl, color="gray", linestyle="--", label="ngram")
    curves.set_xlabel("training tokens")
    curves.set_ylabel("validation perplexity")
    curves.set_yscale("log")
    curves.set_title("validation perplexity while training")
    curves.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def _say_done(progress: bool, name: str, row: RungResult) -> None:
    _say(progress, f"{name}: valid {row.valid_ppl:.2f}, test {row.test_ppl:.2f}")
