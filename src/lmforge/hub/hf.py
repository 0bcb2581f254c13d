"""Hugging Face model folders in and out, from and to local folders only (nothing is downloaded).

* ``import_hf(folder)``: a BERT-architecture encoder (``model_type`` "bert": BERT, MiniLM, the
  folders of sentence-transformers) into lmforge's ``bert``, with the checkpoint's own tokenizer;
  or a GPT-2 folder with exact GELU (as ``export_hf`` writes it) into ``gpt``.
* ``export_hf(model, tokenizer, folder)``: ``gpt`` as ``GPT2LMHeadModel`` (Conv1D layout, exact
  GELU), ``bert`` as ``BertForMaskedLM`` plus the pooler and NSP weights (as Google's BERT
  checkpoints hold them); tokenizer files for ``transformers`` and lmforge's own.
* ``embed(model, tokenizer, sentences)``: sentence vectors as sentence-transformers computes them
  (Reimers & Gurevych 2019): [CLS] tokens [SEP], truncated to the checkpoint's max length, mean
  of the last hidden vectors over real tokens, L2-normalised.

Weights are mapped by name through one table per family, read in both directions.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers import Tokenizer as HFTokenizer
from torch import nn

from lmforge._version import __version__
from lmforge.checkpoint import (
    CONFIG_FILE,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    atomic_write_bytes,
    atomic_write_text,
    read_json,
    write_json,
)
from lmforge.errors import CheckpointError, ConfigError
from lmforge.models.bert import BERT, BertConfig
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.tokenize import (
    BOS,
    CHAT_TOKENS,
    EOS,
    MASK,
    PAD,
    RARE,
    SPECIAL_TOKENS,
    UNK,
    WHITESPACE,
    PretrainedTokenizer,
    SubwordTokenizer,
    Tokenizer,
    VocabTokenizer,
    load_tokenizer,
)

__all__ = ["export_hf", "import_hf"]

LMFORGE_TOKENIZER = "lmforge_tokenizer.json"  # lmforge's own tokenizer file inside an HF folder
SUPPORTED = "bert (BERT, MiniLM, sentence-transformers folders) and gpt2 (as lmforge exports it)"
_BERT_ROLES = {  # lmforge role -> transformers' name of BERT's token
    "pad": "pad_token",
    "unk": "unk_token",
    "bos": "cls_token",
    "eos": "sep_token",
    "mask": "mask_token",
}
_BERT_DEFAULTS = {"pad": "[PAD]", "unk": "[UNK]", "bos": "[CLS]", "eos": "[SEP]", "mask": "[MASK]"}
_LMFORGE_SPECIALS = {"pad": PAD, "unk": UNK, "bos": BOS, "eos": EOS, "mask": MASK}


# ---------------------------------------------------------------------------------------------
# Name tables: one entry per lmforge tensor, read left to right on import, right to left on export.


@dataclass(frozen=True)
class _Param:
    """One lmforge tensor and the Hugging Face tensor(s) holding it.

    Attributes:
        name: lmforge state-dict key.
        hf: HF keys (without the "bert."/"transformer." prefix); several are concatenated
            along dim 0 (BERT's separate query, key and value into lmforge's fused qkv).
        transpose: stored transposed (GPT-2's Conv1D keeps (in, out)).
        optional: a head a checkpoint may lack; it then keeps its initialisation.
    """

    name: str
    hf: tuple[str, ...]
    transpose: bool = False
    optional: bool = False


def _pair(name: str, hf: str, transpose: bool = False, optional: bool = False) -> list[_Param]:
    """Weight and bias of a Linear or LayerNorm (``hf`` may hold "{}" for query/key/value)."""
    keys = ("query", "key", "value") if "{}" in hf else ("",)
    return [
        _Param(
            f"{name}.weight", tuple(hf.format(k) + ".weight" for k in keys), transpose, optional
        ),
        _Param(f"{name}.bias", tuple(hf.format(k) + ".bias" for k in keys), False, optional),
    ]


def _bert_table(config: BertConfig) -> list[_Param]:
    table = [
        _Param("tok_emb.weight", ("embeddings.word_embeddings.weight",)),
        _Param("pos_emb.weight", ("embeddings.position_embeddings.weight",)),
        _Param("seg_emb.weight", ("embeddings.token_type_embeddings.weight",)),
        *_pair("emb_ln", "embeddings.LayerNorm"),
    ]
    for i in range(config.n_layers):
        block, layer = f"blocks.{i}", f"encoder.layer.{i}"
        table += [
            *_pair(f"{block}.attn.qkv", f"{layer}.attention.self.{{}}"),
            *_pair(f"{block}.attn.proj", f"{layer}.attention.output.dense"),
            *_pair(f"{block}.ln_1", f"{layer}.attention.output.LayerNorm"),
            *_pair(f"{block}.mlp.fc", f"{layer}.intermediate.dense"),
            *_pair(f"{block}.mlp.proj", f"{layer}.output.dense"),
            *_pair(f"{block}.ln_2", f"{layer}.output.LayerNorm"),
        ]
    return [
        *table,
        *_pair("pooler", "pooler.dense", optional=True),
        *_pair("mlm_head.dense", "cls.predictions.transform.dense", optional=True),
        *_pair("mlm_head.ln", "cls.predictions.transform.LayerNorm", optional=True),
        _Param("mlm_head.bias", ("cls.predictions.bias",), optional=True),
        *_pair("nsp_head", "cls.seq_relationship", optional=True),
    ]


def _gpt_table(config: GPTConfig) -> list[_Param]:
    table = [_Param("tok_emb.weight", ("wte.weight",)), _Param("pos_emb.weight", ("wpe.weight",))]
    for i in range(config.n_layers):
        block, layer = f"blocks.{i}", f"h.{i}"
        table += [
            *_pair(f"{block}.ln_1", f"{layer}.ln_1"),
            *_pair(f"{block}.attn.qkv", f"{layer}.attn.c_attn", transpose=True),
            *_pair(f"{block}.attn.proj", f"{layer}.attn.c_proj", transpose=True),
            *_pair(f"{block}.ln_2", f"{layer}.ln_2"),
            *_pair(f"{block}.mlp.fc", f"{layer}.mlp.c_fc", transpose=True),
            *_pair(f"{block}.mlp.proj", f"{layer}.mlp.c_proj", transpose=True),
        ]
    table += _pair("ln_f", "ln_f")
    if not config.tie_embeddings:
        table.append(_Param("head.linear.weight", ("lm_head.weight",)))
    return table


# ---------------------------------------------------------------------------------------------
# Import.


def import_hf(folder: str | os.PathLike) -> tuple[nn.Module, Tokenizer]:
    """Load a local Hugging Face model folder into an lmforge model (in eval mode).

    Args:
        folder: holds ``config.json``, ``model.safetensors`` and the tokenizer (``tokenizer.json``
            or ``vocab.txt``, ``tokenizer_config.json``); a sentence-transformers folder also
            gives its max length and lower-casing (``sentence_bert_config.json``).

    Returns:
        (model, tokenizer): a ``BERT`` with a ``PretrainedTokenizer`` (the checkpoint's ids), or
        a ``GPT`` with the lmforge tokenizer that ``export_hf`` stored beside it.

    Raises:
        CheckpointError: a missing file, an unsupported ``model_type`` or config value, or a
            weight that is missing, misshapen or cannot be mapped; the message names it.
    """
    root = Path(folder)
    if not root.is_dir():
        raise CheckpointError(f"{root}: no such folder; give a Hugging Face model folder")
    path = _transformer_folder(root)
    hf_config = _read_config(path)
    model_type = hf_config.get("model_type")
    family = {"bert": (BERT, _bert_config), "gpt2": (GPT, _gpt_config)}.get(model_type)
    if family is not None:
        with torch.random.fork_rng(devices=[]):  # the caller's random state is left alone
            torch.manual_seed(0)  # weights the folder lacks start the same on every import
            model = family[0](family[1](hf_config, path))
    if model_type == "bert":
        table, prefixes = _bert_table(model.config), ("bert.",)
    elif model_type == "gpt2":
        table, prefixes = _gpt_table(model.config), ("transformer.",)
    else:
        raise CheckpointError(
            f"{path / CONFIG_FILE}: model_type {model_type!r} cannot be imported; lmforge imports "
            f"{SUPPORTED}"
        )
    tensors = _read_weights(path)
    missing = _load_weights(model, table, _hf_names(tensors, prefixes), path)
    model.fresh_heads = tuple(missing)  # left random: domain pretraining warms them up first
    if missing:
        warnings.warn(
            f"{path / WEIGHTS_FILE} has no weights for {', '.join(missing)}; they keep their "
            "random initialisation (fine for embeddings; train them before using those heads)",
            stacklevel=2,
        )
    if isinstance(model, BERT):
        tokenizer = _bert_tokenizer(root, path, model.config.max_seq_len)
    else:
        tokenizer = _lmforge_tokenizer(path)
    if tokenizer.vocab_size > model.config.vocab_size:
        raise CheckpointError(
            f"{path}: the tokenizer has {tokenizer.vocab_size} tokens but the model only "
            f"{model.config.vocab_size} embeddings; give the tokenizer saved with this model"
        )
    return model.eval(), tokenizer


def _transformer_folder(root: Path) -> Path:
    """The folder of the Transformer itself: ``root``, or the subfolder that an older
    sentence-transformers ``modules.json`` names (such as ``0_Transformer``)."""
    modules_file = root / "modules.json"
    if (root / CONFIG_FILE).exists() or not modules_file.exists():
        return root
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        sub = next(m["path"] for m in modules if m["type"].endswith("models.Transformer"))
    except (ValueError, KeyError, TypeError, StopIteration):
        return root
    return root / sub


def _read_config(path: Path) -> dict:
    if not (path / CONFIG_FILE).exists():
        raise CheckpointError(
            f"{path}: no {CONFIG_FILE}; give a Hugging Face model folder (config.json, "
            "model.safetensors, tokenizer files)"
        )
    return read_json(path / CONFIG_FILE, "Hugging Face config")


def _require(hf_config: dict, key: str, path: Path) -> object:
    if key not in hf_config:
        raise CheckpointError(f"{path / CONFIG_FILE} lacks {key!r}; give a complete config.json")
    return hf_config[key]


def _expect(hf_config: dict, key: str, default: object, allowed: object, path: Path) -> None:
    """A config value lmforge's model cannot change must have the one value it computes."""
    value = hf_config.get(key, default)
    if value != allowed:
        raise CheckpointError(
            f"{path / CONFIG_FILE}: {key}={value!r} cannot be mapped to lmforge, which computes "
            f"{key}={allowed!r}; this checkpoint is another architecture"
        )


def _bert_config(hf_config: dict, path: Path) -> BertConfig:
    _expect(hf_config, "hidden_act", "gelu", "gelu", path)
    _expect(hf_config, "position_embedding_type", "absolute", "absolute", path)
    _expect(hf_config, "is_decoder", False, False, path)
    _expect(hf_config, "add_cross_attention", False, False, path)
    _expect(hf_config, "tie_word_embeddings", True, True, path)
    return _built(
        BertConfig,
        path,
        vocab_size=_require(hf_config, "vocab_size", path),
        d_model=_require(hf_config, "hidden_size", path),
        n_layers=_require(hf_config, "num_hidden_layers", path),
        n_heads=_require(hf_config, "num_attention_heads", path),
        d_ff=_require(hf_config, "intermediate_size", path),
        max_seq_len=_require(hf_config, "max_position_embeddings", path),
        dropout=hf_config.get("hidden_dropout_prob", 0.1),
        type_vocab_size=hf_config.get("type_vocab_size", 2),
        layer_norm_eps=hf_config.get("layer_norm_eps", 1e-12),
    )


def _gpt_config(hf_config: dict, path: Path) -> GPTConfig:
    # lmforge's GPT: exact GELU, LayerNorm eps 1e-5, 1/sqrt(d_head) attention scale.
    _expect(hf_config, "activation_function", "gelu_new", "gelu", path)
    _expect(hf_config, "layer_norm_epsilon", 1e-5, 1e-5, path)
    _expect(hf_config, "scale_attn_weights", True, True, path)
    _expect(hf_config, "scale_attn_by_inverse_layer_idx", False, False, path)
    _expect(hf_config, "add_cross_attention", False, False, path)
    d_model = _require(hf_config, "n_embd", path)
    return _built(
        GPTConfig,
        path,
        vocab_size=_require(hf_config, "vocab_size", path),
        d_model=d_model,
        n_layers=_require(hf_config, "n_layer", path),
        n_heads=_require(hf_config, "n_head", path),
        d_ff=hf_config.get("n_inner") or 4 * d_model,
        max_seq_len=_require(hf_config, "n_positions", path),
        dropout=hf_config.get("resid_pdrop", 0.1),
        tie_embeddings=hf_config.get("tie_word_embeddings", True),
        bias=True,
    )


def _built(cls: type, path: Path, **values: object):
    try:
        return cls(**values)
    except ConfigError as err:
        raise CheckpointError(
            f"{path / CONFIG_FILE} gives an unusable {cls.__name__}: {err}"
        ) from None


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    file = path / WEIGHTS_FILE
    if not file.exists():
        if (path / "pytorch_model.bin").exists():
            raise CheckpointError(
                f"{path} has pytorch_model.bin but no {WEIGHTS_FILE}; lmforge does not unpickle "
                "weights: convert them to safetensors (save_pretrained(..., "
                "safe_serialization=True) in transformers)"
            )
        raise CheckpointError(f"{path}: no {WEIGHTS_FILE}; give a folder with the model's weights")
    try:
        return load_file(str(file))
    except (OSError, SafetensorError) as err:
        raise CheckpointError(f"{file}: cannot read the weights ({err}); copy it again") from None


def _hf_names(tensors: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict:
    """Keys without the base-model prefix (sentence-transformers folders have none) and with
    old TensorFlow LayerNorm names (gamma, beta) as weight and bias."""
    out = {}
    for key, value in tensors.items():
        for prefix in prefixes:
            key = key.removeprefix(prefix)
        if key.endswith(".gamma") or key.endswith(".beta"):
            key = key.rsplit(".", 1)[0] + (".weight" if key.endswith(".gamma") else ".bias")
        out[key] = value
    return out


def _load_weights(model: nn.Module, table: list[_Param], tensors: dict, path: Path) -> list[str]:
    """Copy the mapped tensors into ``model``; returns the optional heads that were absent.

    Raises:
        CheckpointError: a required tensor is missing or misshapen, or one is left unmapped.
    """
    own = model.state_dict()
    state, missing = {}, []
    for param in table:
        if any(key not in tensors for key in param.hf):
            if param.optional:
                missing.append(param.name.split(".")[0])
                continue
            absent = next(key for key in param.hf if key not in tensors)
            raise CheckpointError(
                f"{path / WEIGHTS_FILE} lacks {absent!r} (lmforge's {param.name}); give the "
                "complete checkpoint of this architecture"
            )
        value = torch.cat([tensors.pop(key) for key in param.hf])
        value = value.T if param.transpose else value
        if value.shape != own[param.name].shape:
            raise CheckpointError(
                f"{path / WEIGHTS_FILE}: {'+'.join(param.hf)} has shape {tuple(value.shape)}, but "
                f"config.json implies {tuple(own[param.name].shape)}; the files do not match"
            )
        state[param.name] = value.to(own[param.name].dtype)
    _check_leftovers(model, tensors, state, path)
    if isinstance(model, GPT):  # the tied head is tok_emb; an untied one has a zero bias
        state.setdefault("head.linear.weight", state["tok_emb.weight"])
        if model.head.linear.bias is not None:
            state["head.linear.bias"] = torch.zeros_like(model.head.linear.bias)
    result = model.load_state_dict(state, strict=False)
    heads = sorted(set(missing))
    assert not result.unexpected_keys, result.unexpected_keys
    assert all(k.split(".")[0] in heads for k in result.missing_keys), result.missing_keys
    return heads


def _check_leftovers(model: nn.Module, tensors: dict, state: dict, path: Path) -> None:
    """Tensors the table did not consume: buffers and equal tied copies pass, others raise."""
    tied = {
        "cls.predictions.decoder.weight": state["tok_emb.weight"],
        "cls.predictions.decoder.bias": state.get("mlm_head.bias"),
        "lm_head.weight": state["tok_emb.weight"],
    }
    for key, value in tensors.items():
        gpt2_mask = isinstance(model, GPT) and key.endswith(".attn.bias")  # old causal mask
        if key.rsplit(".", 1)[-1] in ("position_ids", "token_type_ids", "masked_bias") or gpt2_mask:
            continue
        if key not in tied:
            raise CheckpointError(
                f"{path / WEIGHTS_FILE}: cannot map weight {key!r} to lmforge's "
                f"{type(model).__name__}; the checkpoint has parts this architecture lacks"
            )
        if tied[key] is None or not torch.equal(value.to(tied[key].dtype), tied[key]):
            raise CheckpointError(
                f"{path / WEIGHTS_FILE}: {key!r} differs from the tensor it is tied to; lmforge "
                "ties the output layer to the word embeddings (an untied head cannot be mapped)"
            )


def _bert_tokenizer(root: Path, path: Path, max_positions: int) -> Tokenizer:
    """The lmforge tokenizer export_hf stored, else the checkpoint's as a PretrainedTokenizer
    with sentence-transformers' max length and lower-casing when the folder gives them."""
    if (path / LMFORGE_TOKENIZER).exists():
        return load_tokenizer(path / LMFORGE_TOKENIZER)
    settings = _optional_json(path / "tokenizer_config.json")
    settings.update(_optional_json(path / "special_tokens_map.json"))
    if (path / TOKENIZER_FILE).exists():
        try:
            hf = HFTokenizer.from_file(str(path / TOKENIZER_FILE))
        except Exception as err:  # tokenizers raises a bare Exception for a bad file
            raise CheckpointError(
                f"{path / TOKENIZER_FILE}: not a tokenizer file ({err})"
            ) from None
    elif (path / "vocab.txt").exists():
        hf = _wordpiece_from_vocab(path / "vocab.txt", settings)
    else:
        raise CheckpointError(
            f"{path}: no {TOKENIZER_FILE} or vocab.txt; give the tokenizer files of the checkpoint"
        )
    specials = {}
    for role, key in _BERT_ROLES.items():
        token = settings.get(key, _BERT_DEFAULTS[role])
        specials[role] = token.get("content") if isinstance(token, dict) else token
    sentence = _optional_json(root / "sentence_bert_config.json")
    limit = sentence.get("max_seq_length") or settings.get("model_max_length") or max_positions
    limit = min(int(limit), max_positions)
    return PretrainedTokenizer(hf, specials, limit, bool(sentence.get("do_lower_case", False)))


def _wordpiece_from_vocab(vocab_file: Path, settings: dict) -> HFTokenizer:
    """BERT's WordPiece tokenizer from vocab.txt, as transformers' BertTokenizerFast builds it."""
    unk = settings.get("unk_token", "[UNK]")
    hf = HFTokenizer(models.WordPiece.from_file(str(vocab_file), unk_token=unk))
    hf.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=settings.get("tokenize_chinese_chars", True),
        strip_accents=settings.get("strip_accents"),
        lowercase=settings.get("do_lower_case", True),
    )
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    hf.decoder = decoders.WordPiece(prefix="##")
    return hf


def _lmforge_tokenizer(path: Path) -> Tokenizer:
    if not (path / LMFORGE_TOKENIZER).exists():
        raise CheckpointError(
            f"{path}: no {LMFORGE_TOKENIZER}; lmforge imports GPT-2 folders that it exported "
            "(its GPT needs an lmforge tokenizer); export the model with `lmforge export hf`"
        )
    tokenizer = load_tokenizer(path / LMFORGE_TOKENIZER)
    tokenizer.chat_template = _optional_json(path / "tokenizer_config.json").get("chat_template")
    return tokenizer


def _optional_json(path: Path) -> dict:
    return read_json(path, "settings file") if path.exists() else {}


# ---------------------------------------------------------------------------------------------
# Export.


def export_hf(model: nn.Module, tokenizer: Tokenizer, folder: str | os.PathLike) -> Path:
    """Write ``model`` as a Hugging Face folder that ``transformers`` loads offline.

    ``gpt`` becomes ``GPT2LMHeadModel`` (``activation_function`` "gelu": exact, as lmforge),
    ``bert`` becomes ``BertForMaskedLM`` (with the pooler and NSP weights too). Files:
    ``config.json``, ``model.safetensors``, ``tokenizer.json`` (not for jieba),
    ``tokenizer_config.json`` (with a chat model's ``chat_template``),
    ``special_tokens_map.json`` and ``lmforge_tokenizer.json``.

    Raises:
        ConfigError: another family, an adaptive softmax, or an untied GPT head with a bias
            (GPT-2's ``lm_head`` has none).
    """
    if isinstance(model, GPT):
        hf_config, table, prefix = (
            _gpt_export(model, tokenizer),
            _gpt_table(model.config),
            "transformer.",
        )
    elif isinstance(model, BERT):
        hf_config, table, prefix = (
            _bert_export(model, tokenizer),
            _bert_table(model.config),
            "bert.",
        )
    else:
        raise ConfigError(
            f"only gpt and bert models export to Hugging Face format, not {type(model).__name__}"
        )
    out = Path(folder)
    state = _hf_state(model, table, prefix)
    atomic_write_bytes(out / WEIGHTS_FILE, safetensors_bytes(state, metadata={"format": "pt"}))
    write_json(out / CONFIG_FILE, hf_config)
    _write_hf_tokenizer(out, tokenizer, isinstance(model, BERT), model.config.max_seq_len)
    return out


def _gpt_export(model: GPT, tokenizer: Tokenizer) -> dict:
    c = model.config
    if c.positions != "learned":
        raise ConfigError(
            "GPT-2 has learned absolute positions; a GPT with rotary positions cannot be "
            "exported as GPT-2 (train it with positions=learned to export it)"
        )
    if c.copy_dim:
        raise ConfigError(
            "GPT-2 has no copy head; a GPT with copy_dim > 0 cannot be exported as GPT-2 (tune "
            "it with --set copy_dim=0 to export it)"
        )
    if c.adaptive_cutoffs:
        raise ConfigError(
            "GPT-2 has a full softmax; a GPT with adaptive_cutoffs cannot be exported "
            "(train it with adaptive_cutoffs=() to export it)"
        )
    head = model.head.linear
    if not c.tie_embeddings and head.bias is not None and bool(head.bias.any()):
        raise ConfigError(
            "this GPT's untied output layer has a bias, which GPT-2's lm_head lacks; export a "
            "GPT with tie_embeddings true (or an untied head whose bias is zero)"
        )
    specials = _special_tokens(tokenizer)
    ids = {role: tokenizer.token_to_id(token) for role, token in specials.items()}
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": c.vocab_size,
        "n_positions": c.max_seq_len,
        "n_embd": c.d_model,
        "n_layer": c.n_layers,
        "n_head": c.n_heads,
        "n_inner": c.d_ff,
        "activation_function": "gelu",
        "resid_pdrop": c.dropout,
        "embd_pdrop": c.dropout,
        "attn_pdrop": c.dropout,
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "tie_word_embeddings": c.tie_embeddings,
        "bos_token_id": ids["bos"],
        "eos_token_id": ids["eos"],
        "pad_token_id": ids["pad"],
        "lmforge_version": __version__,
    }


def _bert_export(model: BERT, tokenizer: Tokenizer) -> dict:
    c = model.config
    return {
        "architectures": ["BertForMaskedLM"],
        "model_type": "bert",
        "vocab_size": c.vocab_size,
        "hidden_size": c.d_model,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "intermediate_size": c.d_ff,
        "hidden_act": "gelu",
        "hidden_dropout_prob": c.dropout,
        "attention_probs_dropout_prob": c.dropout,
        "max_position_embeddings": c.max_seq_len,
        "type_vocab_size": c.type_vocab_size,
        "layer_norm_eps": c.layer_norm_eps,
        "initializer_range": 0.02,
        "position_embedding_type": "absolute",
        "tie_word_embeddings": True,
        "pad_token_id": tokenizer.token_to_id(_special_tokens(tokenizer)["pad"]),
        "lmforge_version": __version__,
    }


def _hf_state(model: nn.Module, table: list[_Param], prefix: str) -> dict[str, torch.Tensor]:
    """The model's tensors under HF names (a bias lmforge does not have is written as zeros)."""
    own = model.state_dict()
    out = {}
    for param in table:
        if param.name in own:
            value = own[param.name].detach().cpu()
        else:  # GPT with bias=False: GPT-2 always has biases
            value = torch.zeros(own[param.name.replace(".bias", ".weight")].shape[0])
        value = value.T if param.transpose else value
        parts = value.chunk(len(param.hf)) if len(param.hf) > 1 else (value,)
        for key, part in zip(param.hf, parts, strict=True):
            name = key if key.startswith(("cls.", "lm_head.")) else prefix + key
            out[name] = part.contiguous().clone()
    return out


def _special_tokens(tokenizer: Tokenizer) -> dict[str, str]:
    """Token string of each role (pad, unk, bos, eos, mask)."""
    if isinstance(tokenizer, PretrainedTokenizer):
        return dict(tokenizer.special_tokens)
    return dict(_LMFORGE_SPECIALS)


def _write_hf_tokenizer(out: Path, tokenizer: Tokenizer, bert: bool, max_length: int) -> None:
    tokenizer.save(out / LMFORGE_TOKENIZER)
    hf = _hf_tokenizer(tokenizer, bert)
    if hf is not None:
        atomic_write_text(out / TOKENIZER_FILE, hf.to_str())
    else:
        (out / TOKENIZER_FILE).unlink(missing_ok=True)
    specials = _special_tokens(tokenizer)
    names = _BERT_ROLES if bert else {role: f"{role}_token" for role in specials}
    tokens = {name: specials[role] for role, name in names.items()}
    write_json(out / "special_tokens_map.json", tokens)
    settings = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_length}
    if tokenizer.chat_template:  # transformers' apply_chat_template renders it
        settings["chat_template"] = tokenizer.chat_template
    write_json(out / "tokenizer_config.json", {**settings, **tokens})


def _hf_tokenizer(tokenizer: Tokenizer, bert: bool) -> HFTokenizer | None:
    """The tokenizer as a Hugging Face ``tokenizers`` object, or None (jieba has none)."""
    if isinstance(tokenizer, PretrainedTokenizer | SubwordTokenizer):
        hf = HFTokenizer.from_str(json.dumps(tokenizer.to_dict()["hf"]))
    elif isinstance(tokenizer, VocabTokenizer) and tokenizer.kind in ("word", "char"):
        ids = {token: i for i, token in enumerate(tokenizer.vocab)}
        unknown = RARE if tokenizer.rare_threshold > 0 else UNK
        hf = HFTokenizer(models.WordLevel(ids, unk_token=unknown))
        if tokenizer.kind == "word":
            hf.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        else:  # one token per character, whitespace as "▁" (lmforge's char tokenizer)
            hf.normalizer = normalizers.Replace(Regex(f"[{WHITESPACE}]"), "\u2581")
            hf.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
            hf.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.Fuse()])
    else:
        return None
    hf.add_special_tokens([t for t in (*SPECIAL_TOKENS, *CHAT_TOKENS) if t in tokenizer.vocab])
    if bert and not isinstance(tokenizer, PretrainedTokenizer):  # <s> A </s>, as [CLS] A [SEP]
        hf.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A {EOS}",
            pair=f"{BOS} $A {EOS} $B:1 {EOS}:1",
            special_tokens=[(BOS, tokenizer.token_to_id(BOS)), (EOS, tokenizer.token_to_id(EOS))],
        )
    return hf
