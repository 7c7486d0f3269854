/*
 * fuzz_gguf.c - gear-llm's GGUF reader (examples/llm/gguf.c) on untrusted
 * bytes: gguf_parse, the typed getters, dequantization of every tensor,
 * then the model loader and the tokenizer (load, tokenize, detokenize),
 * as examples/llm/main.c uses them.
 */
#include <stdlib.h>
#include <string.h>
#include "../../examples/llm/gguf.h"
#include "../../examples/llm/model.h"
#include "../../examples/llm/tokenizer.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf_file f;
    if (gguf_parse(data, size, &f)) return 0;
    uint32_t u;
    float x;
    int b;
    gguf_str s;
    gguf_get_u32(&f, "llama.block_count", &u);
    gguf_get_f32(&f, "llama.rope.freq_base", &x);
    gguf_get_bool(&f, "tokenizer.ggml.add_bos_token", &b);
    gguf_get_str(&f, "general.architecture", &s);
    for (uint64_t i = 0; i < f.n_kv; i++) {
        const gguf_kv *kv = &f.kv[i];
        if (kv->type != GGUF_ARRAY) continue;
        if (kv->arr_type == GGUF_STRING && kv->arr_n < 100000) {
            gguf_str *strs = malloc(sizeof *strs * (kv->arr_n ? kv->arr_n : 1));
            if (strs) gguf_str_array(kv, strs);
            free(strs);
        } else {
            int64_t v;
            for (uint64_t j = 0; j < kv->arr_n && j < 64; j++) gguf_arr_int(kv, j, &v);
        }
    }
    for (uint64_t i = 0; i < f.n_tensors; i++) {
        const gguf_tensor *t = &f.tensors[i];
        if (t->n_elem > (1u << 20) || gguf_find_tensor(&f, "x") == t) continue;
        float *out = malloc(sizeof(float) * (t->n_elem ? t->n_elem : 1));
        if (out) gguf_dequantize(t, 0, t->n_elem, out);
        free(out);
    }
    llm_model *m = NULL;
    llm_tokenizer *tk = NULL;
    if (!llm_model_load(&f, &m) && !llm_tokenizer_load(&f, &tk)) {
        int32_t *ids = NULL;
        size_t n = 0;
        const char *text = "the thing 123 <|endoftext|> h\xc3\xa9llo \xff\xfe";
        if (!llm_tokenize(tk, text, strlen(text), 1, &ids, &n)) {
            char buf[64];
            for (size_t j = 0; j < n; j++) llm_token_bytes(tk, ids[j], buf, sizeof buf);
        }
        free(ids);
    }
    llm_tokenizer_free(tk);
    llm_model_free(m);
    gguf_close(&f);
    return 0;
}
