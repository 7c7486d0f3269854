#!/usr/bin/env python3
"""Independent reference for examples/llm (gear-llm): a numpy forward pass of
a GGUF Llama-family model, and its comparison with the C runner.

Independence: weights are read and dequantized by the PyPI `gguf` package
(not by our C reader); the tokenizer is Hugging Face `tokenizers` built from
the GGUF vocabulary and merges with the SmolLM2 pre-tokenizer (Digits
individual + ByteLevel); the Q/K weights are un-permuted back to the Hugging
Face layout and RoPE is applied in HF's rotate_half form (the C runner uses
ggml's interleaved pairs on the permuted weights), so a RoPE convention
mistake on either side shows up as a logit mismatch.  Math is float64.

The fp16 preset of libgear stores keys and values of every full 64-token
block in fp16 and keeps the newest tokens (the streaming buffer) in fp32.
--kv-round blocks (default) emulates exactly that; --kv-round none keeps
fp32 K/V everywhere.

    pip install numpy gguf tokenizers
    python3 scripts/llm_reference.py --model MODEL.gguf --gear-llm BUILD/examples/llm/gear-llm \
        --text FILE [--ctx 128] [--skip 0]

Prints token-id agreement (whole file and window), and for decode and prefill
mode the max abs logit difference, the max abs log-prob difference and the
argmax agreement.  Exit status 1 if a check fails its tolerance.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

try:
    import gguf
    from gguf.quants import dequantize
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
except ImportError as e:  # pragma: no cover
    sys.exit(f"llm_reference.py needs numpy, gguf and tokenizers from PyPI ({e})")


def field(r, name, default=None):
    f = r.fields.get(name)
    if f is None:
        return default
    return f.contents()


class Reference:
    def __init__(self, path):
        r = gguf.GGUFReader(path)
        arch = field(r, "general.architecture")
        if arch != "llama":
            sys.exit(f"architecture {arch!r} not handled by this reference")
        self.n_layer = int(field(r, "llama.block_count"))
        self.n_embd = int(field(r, "llama.embedding_length"))
        self.n_head = int(field(r, "llama.attention.head_count"))
        self.n_head_kv = int(field(r, "llama.attention.head_count_kv", self.n_head))
        self.head_dim = self.n_embd // self.n_head
        self.rope_base = float(field(r, "llama.rope.freq_base", 10000.0))
        self.eps = float(field(r, "llama.attention.layer_norm_rms_epsilon"))
        self.w = {}
        for t in r.tensors:
            a = dequantize(t.data, t.tensor_type).astype(np.float64)
            shape = [int(x) for x in reversed(t.shape)]  # ggml ne[] is innermost-first
            self.w[t.name] = a.reshape(shape)
        self.tok = self._tokenizer(r)

    @staticmethod
    def _tokenizer(r):
        f = r.fields["tokenizer.ggml.tokens"]
        tokens = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        f = r.fields["tokenizer.ggml.merges"]
        merges = [tuple(bytes(f.parts[i]).decode("utf-8").split(" ", 1)) for i in f.data]
        f = r.fields["tokenizer.ggml.token_type"]
        types = [int(f.parts[i][0]) for i in f.data]
        pre = field(r, "tokenizer.ggml.pre", "default")
        if pre != "smollm":
            sys.exit(f"pre-tokenizer {pre!r}: this reference implements 'smollm' only")
        tk = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
        tk.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True),
             pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
        tk.decoder = decoders.ByteLevel()
        tk.add_special_tokens([AddedToken(t, special=True, normalized=False)
                               for t, ty in zip(tokens, types) if ty == 3])
        return tk

    @staticmethod
    def unpermute(w, n_head):
        """Inverse of convert_hf_to_gguf's LlamaModel.permute (back to HF rows)."""
        out, inp = w.shape
        return w.reshape(n_head, out // n_head // 2, 2, inp).swapaxes(1, 2).reshape(out, inp)

    def rmsnorm(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope_hf(self, x, pos):
        """HF rotate_half RoPE; x [T, H, d] in HF channel order."""
        d = self.head_dim
        inv = self.rope_base ** (-np.arange(0, d, 2, dtype=np.float64) / d)
        ang = pos[:, None].astype(np.float64) * inv[None, :]
        cos = np.concatenate([np.cos(ang)] * 2, axis=-1)[:, None, :].astype(x.dtype)
        sin = np.concatenate([np.sin(ang)] * 2, axis=-1)[:, None, :].astype(x.dtype)
        rot = np.concatenate([-x[..., d // 2:], x[..., : d // 2]], axis=-1)
        return x * cos + rot * sin

    def forward(self, ids, mode, kv_round, dtype=np.float64, block=64):
        """Logits [T, vocab] for the token ids.  mode: 'decode' (token t sees
        the cache as it was after t+1 one-by-one appends) or 'prefill' (all T
        appended at once).  kv_round 'blocks' rounds K/V of full blocks to
        fp16 exactly where libgear's fp16 cache does.  dtype: float64 or
        float32 (the latter only to measure the reference's own spread)."""
        T, H, HK, d = len(ids), self.n_head, self.n_head_kv, self.head_dim
        g = H // HK

        def W(name):
            return self.w[name].astype(dtype, copy=False)

        x = W("token_embd.weight")[ids]
        pos = np.arange(T)
        for l in range(self.n_layer):
            p = f"blk.{l}."
            h = self.rmsnorm(x, W(p + "attn_norm.weight"))
            wq = self.unpermute(W(p + "attn_q.weight"), H)
            wk = self.unpermute(W(p + "attn_k.weight"), HK)
            q = self.rope_hf((h @ wq.T).reshape(T, H, d), pos)
            k = self.rope_hf((h @ wk.T).reshape(T, HK, d), pos)
            v = (h @ W(p + "attn_v.weight").T).reshape(T, HK, d)
            k16 = k.astype(np.float16).astype(dtype)
            v16 = v.astype(np.float16).astype(dtype)
            att = np.empty((T, H, d), dtype=dtype)
            for t in range(T):
                n_cached = t + 1 if mode == "decode" else T
                cut = (n_cached // block) * block if kv_round == "blocks" else 0
                kk = np.concatenate([k16[:cut], k[cut:t + 1]]) if cut <= t + 1 else k16[:t + 1]
                vv = np.concatenate([v16[:cut], v[cut:t + 1]]) if cut <= t + 1 else v16[:t + 1]
                for hq in range(H):
                    s = kk[:, hq // g, :] @ q[t, hq] / np.sqrt(dtype(d))
                    s = np.exp(s - s.max())
                    att[t, hq] = (s / s.sum()) @ vv[:, hq // g, :]
            x = x + att.reshape(T, H * d) @ W(p + "attn_output.weight").T
            h = self.rmsnorm(x, W(p + "ffn_norm.weight"))
            a = h @ W(p + "ffn_gate.weight").T
            b = h @ W(p + "ffn_up.weight").T
            x = x + (a / (1.0 + np.exp(-a)) * b) @ W(p + "ffn_down.weight").T
        x = self.rmsnorm(x, W("output_norm.weight"))
        out = W("output.weight") if "output.weight" in self.w else W("token_embd.weight")
        return (x @ out.T).astype(np.float64)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    dt = {"F32": np.float32, "F16": np.float16, "I32": np.int32}
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[a:b], dtype=dt[v["dtype"]]).reshape(v["shape"])
    return out


def log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.environ.get("GEAR_LLM_MODEL"))
    ap.add_argument("--gear-llm", default="gear-llm", help="path of the C runner")
    ap.add_argument("--text", required=True)
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--skip", type=int, default=0)
    ap.add_argument("--kv-round", choices=["blocks", "none"], default="blocks")
    ap.add_argument("--tol", type=float, default=5e-3, help="max abs logit difference allowed")
    a = ap.parse_args()
    if not a.model:
        sys.exit("--model or GEAR_LLM_MODEL is required")
    ref = Reference(a.model)
    text = open(a.text, encoding="utf-8").read()
    ids_ref = ref.tok.encode(text, add_special_tokens=False).ids
    out = subprocess.run([a.gear_llm, "tokenize", "-m", a.model, "--text", a.text],
                         check=True, capture_output=True, text=True).stdout
    ids_c = [int(x) for x in out.split()]
    same = sum(x == y for x, y in zip(ids_ref, ids_c))
    print(f"tokens: whole file {len(ids_ref)} (reference) vs {len(ids_c)} (gear-llm), "
          f"{same} equal at the same index{' - identical' if ids_ref == ids_c else ''}")
    ok = ids_ref == ids_c
    window = ids_ref[a.skip:a.skip + a.ctx]
    short = min(a.ctx, 63)  # prefill that leaves every token in the fp32 buffer
    cases = [("decode", a.ctx), ("prefill", short)] + ([("prefill", a.ctx)] if a.ctx > short else [])
    for mode, n in cases:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "logits.safetensors")
            subprocess.run([a.gear_llm, "logits", "-m", a.model, "--text", a.text, "--ctx", str(n),
                            "--skip", str(a.skip), "--kv", "fp16", "--mode", mode, "--out", path],
                           check=True, capture_output=True)
            got = read_safetensors(path)
        win = np.array(window[:n])
        win_same = np.array_equal(got["tokens"], win.astype(np.int32))
        want = ref.forward(win, mode, a.kv_round)
        lc = got["logits"].astype(np.float64)
        diff = np.abs(lc - want)
        dlp = np.abs(log_softmax(lc) - log_softmax(want))
        agree = np.mean(lc.argmax(-1) == want.argmax(-1))
        tol = a.tol
        note = ""
        if mode == "prefill" and n > short and a.kv_round == "blocks":
            # fp16 rounding of whole blocks makes prefill logits sensitive to
            # which side of a rounding boundary a K/V value falls: measure the
            # reference's own float32-vs-float64 spread and allow twice that.
            floor = np.abs(ref.forward(win, mode, a.kv_round, np.float32) - want).max()
            tol = max(tol, 2 * floor)
            note = f"; reference float32 vs float64 spread {floor:.3e}"
        passed = win_same and diff.max() <= tol
        print(f"{mode:8s} {n:5d} tokens (ids {'identical' if win_same else 'DIFFER'}): "
              f"max |logit diff| {diff.max():.3e} (logits {want.min():.1f}..{want.max():.1f}), mean {diff.mean():.3e}, "
              f"max |log-prob diff| {dlp.max():.3e}, argmax agreement {100 * agree:.2f}%{note}"
              f" -> {'ok' if passed else 'FAIL'} (tol {tol:.1e})")
        ok &= passed
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
