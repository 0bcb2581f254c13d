"""GPT speed: lmforge against Hugging Face ``GPT2LMHeadModel`` on the same shape, in one run.

Shape of nanoGPT's README CPU line (../shared/BASELINES.md): n_layer 4, n_head 4, n_embd 128,
block 64, batch 12, vocab 65, AdamW lr 1e-3, fp32, no dropout, 2 threads. Random init and random
token ids (speed does not depend on them).

Two HF models hold lmforge's weights: "HF" is ``GPT2LMHeadModel`` as configured by default
(``gelu_new``, the tanh approximation of GELU, what nanoGPT's comparison in BASELINES.md used);
"HF exact-GELU" uses ``activation_function="gelu"`` and is then the very network lmforge computes
(the script checks that its logits and greedy tokens equal lmforge's before timing anything).

(a) training tokens/s, the models alternating in rounds of ``--steps`` steps after warm-up; the
    best round of each is reported (the machine is noisy);
(b) greedy generation of ``--new-tokens`` tokens from an 8-token prompt with a KV cache: lmforge's
    ``generate`` against HF ``generate(use_cache=True)``, all with 512 positions.

    python benchmarks/gpt_speed.py [--rounds 5] [--steps 30] [--new-tokens 500] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch.nn import functional as F

try:
    import transformers
except ImportError:
    sys.exit("gpt_speed.py compares against Hugging Face: pip install transformers")

from lmforge.models.gpt import GPT, GPTConfig
from lmforge.nn.sampling import Sampler

VOCAB, BATCH, BLOCK = 65, 12, 64
HF_ACTIVATIONS = {"HF": "gelu_new", "HF exact-GELU": "gelu"}


def build_models(max_seq_len: int) -> dict[str, torch.nn.Module]:
    """lmforge's GPT and the HF GPT-2s of the same shape, holding the same weights."""
    config = GPTConfig(
        vocab_size=VOCAB, d_model=128, n_layers=4, n_heads=4, d_ff=512, max_seq_len=max_seq_len
    )
    models = {"lmforge": GPT(config)}
    for name, activation in HF_ACTIVATIONS.items():
        hf_config = transformers.GPT2Config(
            vocab_size=VOCAB,
            n_positions=max_seq_len,
            n_embd=128,
            n_layer=4,
            n_head=4,
            n_inner=512,
            activation_function=activation,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=0,
            eos_token_id=None,
            pad_token_id=0,
        )
        hf = transformers.GPT2LMHeadModel._from_config(hf_config, attn_implementation="sdpa")
        hf.load_state_dict(hf_state_dict(models["lmforge"]), strict=False)
        models[name] = hf
    return models


def hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """lmforge GPT weights under HF GPT-2 names (HF's Conv1D stores Linear weights transposed)."""
    out = {
        "transformer.wte.weight": model.tok_emb.weight,
        "transformer.wpe.weight": model.pos_emb.weight,
        "transformer.ln_f.weight": model.ln_f.weight,
        "transformer.ln_f.bias": model.ln_f.bias,
    }
    for i, block in enumerate(model.blocks):
        pairs = {
            "ln_1": block.ln_1,
            "ln_2": block.ln_2,
            "attn.c_attn": block.attn.qkv,
            "attn.c_proj": block.attn.proj,
            "mlp.c_fc": block.mlp.fc,
            "mlp.c_proj": block.mlp.proj,
        }
        for name, module in pairs.items():
            linear = isinstance(module, torch.nn.Linear)
            out[f"transformer.h.{i}.{name}.weight"] = module.weight.t() if linear else module.weight
            out[f"transformer.h.{i}.{name}.bias"] = module.bias
    return {k: v.detach().clone() for k, v in out.items()}


def check_same_network(models: dict[str, torch.nn.Module]) -> None:
    ids = torch.randint(0, VOCAB, (2, BLOCK))
    with torch.no_grad():
        ours = models["lmforge"](ids)[0]
        diffs = {
            n: (ours - models[n](input_ids=ids).logits).abs().max().item() for n in HF_ACTIVATIONS
        }
    print("same weights, max |logit difference| from lmforge: ", end="")
    print(", ".join(f"{name} {diff:.1e}" for name, diff in diffs.items()))
    if diffs["HF exact-GELU"] > 1e-4:
        sys.exit("lmforge and HF exact-GELU disagree: the comparison would be meaningless")


def lmforge_loss(model: GPT, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -model.log_probs(x, y)[0].mean()


def hf_loss(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=x).logits  # (B, T, V); the same loss as lmforge's, no label shift
    return F.cross_entropy(logits.view(-1, VOCAB), y.view(-1))


def train_steps(model, optimizer, loss_fn, batches) -> float:
    """One optimizer step per batch; returns tokens per second."""
    start = time.perf_counter()
    for x, y in batches:
        loss = loss_fn(model, x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return len(batches) * BATCH * BLOCK / (time.perf_counter() - start)


def report(what: str, best: dict[str, float], unit: str, scale: float, target: float) -> None:
    ours = best["lmforge"]
    print(f"{what}: lmforge {ours / scale:.2f}{unit}", end="")
    for name in HF_ACTIVATIONS:
        print(f", {name} {best[name] / scale:.2f}{unit} (ratio {ours / best[name]:.2f}x)", end="")
    print(f"; target >= {target}x")


def bench_training(rounds: int, steps: int, warmup: int) -> None:
    models = build_models(BLOCK)
    check_same_network(models)
    optimizers = {
        name: torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
        for name, m in models.items()
    }
    data = torch.randint(0, VOCAB, (steps, BATCH, BLOCK + 1), generator=torch.Generator())
    batches = [(d[:, :-1].contiguous(), d[:, 1:].contiguous()) for d in data]
    losses = {name: lmforge_loss if name == "lmforge" else hf_loss for name in models}
    best = dict.fromkeys(models, 0.0)
    for r in range(-1, rounds):  # round -1 is the warm-up
        rates = {}
        for name, model in models.items():
            model.train()
            chunk = batches[:warmup] if r < 0 else batches
            rates[name] = train_steps(model, optimizers[name], losses[name], chunk)
        if r >= 0:
            best = {name: max(best[name], rate) for name, rate in rates.items()}
            print(f"  round {r + 1}: " + "  ".join(f"{n} {v / 1e3:.2f}k" for n, v in rates.items()))
    report("(a) training tokens/s, best round", best, "k", 1e3, 1.2)


def bench_generation(new_tokens: int, rounds: int) -> None:
    models = build_models(512)
    prompt = torch.randint(0, VOCAB, (1, 8), generator=torch.Generator().manual_seed(1))
    greedy = Sampler(temperature=0.0)

    def run(name: str) -> torch.Tensor:
        model = models[name]
        if name == "lmforge":
            return model.generate(prompt, new_tokens, greedy)
        with torch.inference_mode():
            return model.generate(
                prompt,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                use_cache=True,
                attention_mask=torch.ones_like(prompt),
            )

    for model in models.values():
        model.eval()
    outputs = {name: run(name) for name in models}
    same = torch.equal(outputs["lmforge"], outputs["HF exact-GELU"])
    print(f"greedy tokens of lmforge and HF exact-GELU equal over all {new_tokens}: {same}")
    best = dict.fromkeys(models, 0.0)
    for r in range(rounds):
        for name in models:
            start = time.perf_counter()
            out = run(name)
            rate = (out.shape[1] - prompt.shape[1]) / (time.perf_counter() - start)
            best[name] = max(best[name], rate)
        print(
            f"  round {r + 1}, best so far: " + "  ".join(f"{n} {v:.0f}" for n, v in best.items())
        )
    report(f"(b) generation tokens/s, {new_tokens} new, greedy, KV cache", best, "", 1.0, 2.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    transformers.logging.set_verbosity_error()
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{torch.get_num_threads()} threads, fp32"
    )
    bench_training(args.rounds, args.steps, args.warmup)
    bench_generation(args.new_tokens, args.rounds)


if __name__ == "__main__":
    main()
