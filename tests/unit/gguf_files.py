"""Write small GGUF files for tests, the way llama.cpp's convert_hf_to_gguf.py lays them out.

Used by test_gguf.py and test_named_models.py: a tiny random LLaMA and the built-in byte-level BPE
tokenizer, written with the ``gguf`` package's ``GGUFWriter`` (F32 tensors by default, so the import
must reproduce the logits; or Q8_0 for a block-quantized file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def tiny_source(tok: Any, seed: int) -> Any:
    """The random tiny llama a test writes into a GGUF file."""
    from slimkit.models import tiny_model

    return tiny_model("llama", seed=seed, vocab_size=len(tok))


CHAT_TEMPLATE = (
    "{% for message in messages %}<|bos|>{{ message['role'] }}\n{{ message['content'] }}<|eos|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|bos|>assistant\n{% endif %}"
)


def _permute(weights: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    # llama.cpp stores q/k rows interleaved for its rotary kernel; transformers undoes this on load
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _llama_tensors(model: Any) -> dict[str, np.ndarray]:
    cfg = model.config
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    out = {
        "token_embd.weight": sd["model.embed_tokens.weight"],
        "output_norm.weight": sd["model.norm.weight"],
    }
    if not cfg.tie_word_embeddings:
        out["output.weight"] = sd["lm_head.weight"]
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        out |= {
            f"blk.{i}.attn_norm.weight": sd[p + "input_layernorm.weight"],
            f"blk.{i}.attn_q.weight": _permute(sd[p + "self_attn.q_proj.weight"], cfg.num_attention_heads),
            f"blk.{i}.attn_k.weight": _permute(
                sd[p + "self_attn.k_proj.weight"], cfg.num_attention_heads, cfg.num_key_value_heads
            ),
            f"blk.{i}.attn_v.weight": sd[p + "self_attn.v_proj.weight"],
            f"blk.{i}.attn_output.weight": sd[p + "self_attn.o_proj.weight"],
            f"blk.{i}.ffn_norm.weight": sd[p + "post_attention_layernorm.weight"],
            f"blk.{i}.ffn_gate.weight": sd[p + "mlp.gate_proj.weight"],
            f"blk.{i}.ffn_up.weight": sd[p + "mlp.up_proj.weight"],
            f"blk.{i}.ffn_down.weight": sd[p + "mlp.down_proj.weight"],
        }
    return out


def _add_tokenizer(writer: Any, tokenizer: Any, chat_template: str | None) -> None:
    import gguf

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = tokenizer.get_vocab()
    tokens = [None] * len(vocab)
    for token, index in vocab.items():
        tokens[index] = token
    special = set(tokenizer.all_special_ids)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types(
        [gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(len(tokens))]
    )
    writer.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in spec["model"]["merges"]])
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)


def write_llama_gguf(
    model: Any,
    tokenizer: Any,
    path: str | Path,
    *,
    quant: str = "F32",
    architecture: str = "llama",
    with_tokenizer: bool = True,
    chat_template: str | None = CHAT_TEMPLATE,
    name: str = "tiny llama",
) -> Path:
    """Write ``model`` (a transformers LlamaForCausalLM) and ``tokenizer`` as a GGUF file at ``path``.

    ``quant``: ``F32`` (every tensor as float32) or ``Q8_0`` (2-D weights block-quantized, norms F32).
    """
    import gguf

    cfg = model.config
    path = Path(path)
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name(name)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_vocab_size(cfg.vocab_size)
    qtype = {"F32": None, "Q8_0": gguf.GGMLQuantizationType.Q8_0}[quant]
    writer.add_file_type(gguf.LlamaFileType.ALL_F32 if qtype is None else gguf.LlamaFileType.MOSTLY_Q8_0)
    if with_tokenizer:
        _add_tokenizer(writer, tokenizer, chat_template)
    for tensor_name, array in _llama_tensors(model).items():
        array = np.ascontiguousarray(array, dtype=np.float32)
        if qtype is not None and array.ndim == 2:
            writer.add_tensor(tensor_name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(tensor_name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def quantize_like_q8_0(model: Any) -> dict[str, Any]:
    """The state dict ``model`` has after a Q8_0 round trip of its 2-D weights (what the import must give)."""
    import gguf
    import torch

    out = {}
    for key, value in model.state_dict().items():
        if value.dim() == 2:
            array = value.detach().float().numpy()
            q = gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0)
            value = torch.from_numpy(gguf.quants.dequantize(q, gguf.GGMLQuantizationType.Q8_0).copy())
        out[key] = value
    return out
