#!/usr/bin/env python3
"""Writes data/sample-model/: a tiny Hugging Face llama folder for README's main command.

Random bf16 weights from a fixed seed, a small sentencepiece-style tokenizer of our own (byte
fallback plus a few BPE pieces), config.json and the tokenizer side files. Python stdlib only;
the output is byte-for-byte the same on every run.

    python3 scripts/make_sample_model.py [OUT_DIR]
"""

import json
import math
import os
import random
import struct
import sys

SEED = 20241124
HIDDEN = 256          # rows of 256 let every K-quant apply without fallbacks
INTERMEDIATE = 256
HEADS = 4
KV_HEADS = 1
LAYERS = 1
CONTEXT = 256

SPACE = "\u2581"  # sentencepiece's visible space
WORDS = ["the", "and", "to", "a", "was", "he", "she", "it", "of", "in", "said", "day", "big",
         "little", "girl", "boy", "cat", "dog", "play", "happy", "once", "upon", "time",
         "there", "Lily", "Tom", "friend", "sun", "tree", "ball"]


def bf16_bits(value):
    """Round-to-nearest-even float32 -> bfloat16 bits (what torch does)."""
    bits = struct.unpack("<I", struct.pack("<f", value))[0]
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) & 0xFFFF


def tensor_bytes(rng, count, scale, offset=0.0):
    out = bytearray()
    for _ in range(count):
        out += struct.pack("<H", bf16_bits(offset + rng.gauss(0.0, scale)))
    return bytes(out)


def build_vocab():
    pieces = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)]
    pieces += [("<0x%02X>" % b, 0.0, 6) for b in range(256)]
    normal = [SPACE] + list("etaoinshrdlucmwfygpbvkTLS.,!'\"")
    normal += [SPACE + w for w in WORDS]
    seen = set()
    rank = 0
    for p in normal:
        if p in seen:
            continue
        seen.add(p)
        pieces.append((p, -float(rank), 1))
        rank += 1
    return pieces


def varint(value):
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field_bytes(number, payload):
    return varint((number << 3) | 2) + varint(len(payload)) + payload


def sentencepiece_model(pieces):
    """A ModelProto: pieces (field 1), a BPE trainer spec (2) and an identity normalizer (3)."""
    out = bytearray()
    for text, score, kind in pieces:
        body = field_bytes(1, text.encode("utf-8"))
        body += varint((2 << 3) | 5) + struct.pack("<f", score)
        if kind != 1:
            body += varint((3 << 3) | 0) + varint(kind)
        out += field_bytes(1, body)
    trainer = varint((3 << 3) | 0) + varint(2)              # model_type: BPE
    trainer += varint((4 << 3) | 0) + varint(len(pieces))   # vocab_size
    trainer += varint((35 << 3) | 0) + varint(1)            # byte_fallback
    out += field_bytes(2, trainer)
    normalizer = field_bytes(1, b"identity") + varint((3 << 3) | 0) + varint(1)  # add_dummy_prefix
    out += field_bytes(3, normalizer)
    return bytes(out)


def safetensors_file(tensors):
    header = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape, data in tensors:
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)  # align the data section, as safetensors does
    return struct.pack("<Q", len(text)) + text + b"".join(d for _, _, d in tensors)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "data", "sample-model")
    os.makedirs(out_dir, exist_ok=True)
    rng = random.Random(SEED)
    pieces = build_vocab()
    vocab = len(pieces)
    head_dim = HIDDEN // HEADS

    tensors = []

    def add(name, shape, scale, offset=0.0):
        tensors.append((name, shape, tensor_bytes(rng, math.prod(shape), scale, offset)))

    add("model.embed_tokens.weight", [vocab, HIDDEN], 0.02)
    for layer in range(LAYERS):
        p = "model.layers.%d." % layer
        add(p + "input_layernorm.weight", [HIDDEN], 0.05, 1.0)
        add(p + "self_attn.q_proj.weight", [HEADS * head_dim, HIDDEN], 0.02)
        add(p + "self_attn.k_proj.weight", [KV_HEADS * head_dim, HIDDEN], 0.02)
        add(p + "self_attn.v_proj.weight", [KV_HEADS * head_dim, HIDDEN], 0.02)
        add(p + "self_attn.o_proj.weight", [HIDDEN, HEADS * head_dim], 0.02)
        add(p + "post_attention_layernorm.weight", [HIDDEN], 0.05, 1.0)
        add(p + "mlp.gate_proj.weight", [INTERMEDIATE, HIDDEN], 0.02)
        add(p + "mlp.up_proj.weight", [INTERMEDIATE, HIDDEN], 0.02)
        add(p + "mlp.down_proj.weight", [HIDDEN, INTERMEDIATE], 0.02)
    add("model.norm.weight", [HIDDEN], 0.05, 1.0)
    tensors.sort(key=lambda t: t[0])  # safetensors writers store tensors by name

    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "attention_bias": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "max_position_embeddings": CONTEXT,
        "mlp_bias": False,
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "num_key_value_heads": KV_HEADS,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "vocab_size": vocab,
    }
    special = {"content": "", "lstrip": False, "normalized": False, "rstrip": False,
               "single_word": False, "special": True}
    tokenizer_config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": {
            str(i): dict(special, content=text) for i, (text, _, _) in enumerate(pieces[:3])},
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "legacy": True,
        "model_max_length": CONTEXT,
        "tokenizer_class": "LlamaTokenizer",
    }
    # No special_tokens_map.json: tokenizer_config.json names the special tokens already, and the
    # converted GGUF is the same without it.
    files = {
        "config.json": json.dumps(config, indent=2) + "\n",
        "generation_config.json": json.dumps({"bos_token_id": 1, "eos_token_id": 2}, indent=2) + "\n",
        "tokenizer_config.json": json.dumps(tokenizer_config, indent=2) + "\n",
    }
    for name, text in files.items():
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            f.write(text)
    with open(os.path.join(out_dir, "tokenizer.model"), "wb") as f:
        f.write(sentencepiece_model(pieces))
    with open(os.path.join(out_dir, "model.safetensors"), "wb") as f:
        f.write(safetensors_file(tensors))
    total = sum(os.path.getsize(os.path.join(out_dir, n)) for n in os.listdir(out_dir))
    print("wrote %s: %d tensors, vocab %d, %d bytes" % (out_dir, len(tensors), vocab, total))


if __name__ == "__main__":
    main()
