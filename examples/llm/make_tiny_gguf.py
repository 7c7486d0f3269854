#!/usr/bin/env python3
"""Write a tiny, random-weight GGUF 'llama' model (2 layers, embedding 32,
2 heads / 1 KV head, byte-level BPE vocabulary of 288 tokens with a few
merges; tensors in F32, F16, Q4_0, Q4_1 and Q8_0) for fuzzing gear-llm's
GGUF reader, model loader and tokenizer (see fuzz_gguf.py).  Its outputs are
meaningless; only the file structure matters.

    pip install numpy gguf
    python3 examples/llm/make_tiny_gguf.py tiny.gguf
"""
import sys

import numpy as np
import gguf
from gguf.quants import quantize

Q = gguf.GGMLQuantizationType


def byte_to_unicode():
    """GPT-2's byte -> printable character map (byte-level BPE)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def main(path):
    E, H, HK, F, L = 32, 2, 1, 64, 2
    d = E // H
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("tiny")
    w.add_block_count(L)
    w.add_embedding_length(E)
    w.add_feed_forward_length(F)
    w.add_head_count(H)
    w.add_head_count_kv(HK)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_context_length(128)
    m = byte_to_unicode()
    toks = [m[b] for b in range(256)] + ["th", "the", "Ġt", "<|endoftext|>"]
    while len(toks) % 32:
        toks.append(f"<pad{len(toks)}>")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(toks)
    w.add_token_merges(["t h", "th e", "Ġ t"])
    w.add_token_types([3 if t.startswith("<") else 1 for t in toks])
    w.add_bos_token_id(259)
    w.add_eos_token_id(259)
    rng = np.random.default_rng(0)

    def T(name, shape, q=None):
        a = (rng.standard_normal(shape) * 0.1).astype(np.float32)
        if q is None:
            w.add_tensor(name, a)
        else:
            w.add_tensor(name, quantize(a, q), raw_dtype=q)

    V = len(toks)
    T("token_embd.weight", (V, E), Q.Q8_0)
    T("output_norm.weight", (E,))
    for l in range(L):
        p = f"blk.{l}."
        T(p + "attn_norm.weight", (E,))
        T(p + "ffn_norm.weight", (E,))
        T(p + "attn_q.weight", (E, E), Q.Q4_1)
        T(p + "attn_k.weight", (HK * d, E), Q.Q4_0)
        T(p + "attn_v.weight", (HK * d, E), Q.F16)
        T(p + "attn_output.weight", (E, E))
        T(p + "ffn_gate.weight", (F, E), Q.Q4_1)
        T(p + "ffn_up.weight", (F, E))
        T(p + "ffn_down.weight", (E, F), Q.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tiny.gguf")
