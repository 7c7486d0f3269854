/*
 * model.h - a Llama-family transformer (GGUF architecture "llama": RMSNorm,
 * RoPE, grouped-query attention, SwiGLU, optionally tied embeddings) whose
 * KV cache lives in libgear.
 *
 * Weights are dequantized to fp32 at load.  The forward pass runs several
 * "lanes" in lockstep: each lane has its own gear_cache and sees the same
 * tokens, so one pass over the weights serves, e.g., an fp16 baseline and
 * a compressed cache side by side.  Keys and values of every layer go
 * through gear_cache_append, attention through gear_cache_attention.
 */
#ifndef LLM_MODEL_H
#define LLM_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "gear.h"
#include "gguf.h"

typedef struct llm_hparams {
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx_train, rope_dim;
    float rope_base, norm_eps;
} llm_hparams;

typedef struct llm_layer {
    float *attn_norm, *wq, *wk, *wv, *wo;
    float *ffn_norm, *w_gate, *w_up, *w_down;
} llm_layer;

typedef struct llm_model {
    llm_hparams hp;
    float *tok_embd;    /* [n_vocab][n_embd] */
    float *output;      /* [n_vocab][n_embd]; equals tok_embd when tied */
    float *output_norm; /* [n_embd] */
    llm_layer *layers;
    double *inv_freq;   /* [rope_dim/2] */
    int tied;
    size_t n_params;
    char name[96];
    char weight_types[64]; /* e.g. "Q4_1 (210), F32 (61), Q8_0 (1)" */
} llm_model;

int llm_model_load(const gguf_file *f, llm_model **out);
void llm_model_free(llm_model *m);

typedef struct llm_lane {
    gear_cache *cache;
    double t_gear;   /* seconds spent in gear_cache_append + gear_cache_attention */
    gear_status st;  /* status of the failed libgear call, if any */
    char err[256];   /* its message */
} llm_lane;

/* Run nt tokens at positions pos0 .. pos0+nt-1 through n_lanes lanes; every
 * lane's cache must hold exactly pos0 tokens.  hidden receives the final
 * (normed) hidden states, [n_lanes][nt][n_embd].  0 or -1 (llm_error()). */
int llm_forward(const llm_model *m, llm_lane *lanes, int n_lanes, const int32_t *tokens, int nt,
                int pos0, float *hidden);

/* logits[r][n_vocab] = output . hidden[r], for rows r < rows. */
void llm_logits(const llm_model *m, const float *hidden, int rows, float *logits);

/* A cache spec: a libgear preset name, optionally followed by overrides
 * ":key=value" (keys bits, group, outliers, rank, iters, block, seed; a
 * "k." or "v." prefix applies to keys or values only) and ":calib=FILE" (a
 * calibration from `gear calibrate`: CQ codebooks, head projections), e.g.
 * "gear2:rank=4:v.outliers=0.05" or "cq-4c8b:calib=cq.gcal".  The configs
 * are validated for the dimension the blocks will hold. */
typedef struct llm_spec {
    gear_config ck, cv;
    gear_calib *cal;      /* loaded from calib=FILE, or NULL */
    unsigned heads, dim;  /* KV heads and channels the blocks of a layer hold */
} llm_spec;
int llm_spec_parse(const char *spec, const llm_hparams *hp, llm_spec *s);
void llm_spec_free(llm_spec *s);

/* Create a cache for this model from a spec. */
int llm_cache_create(const llm_model *m, gear_context *ctx, const char *spec,
                     unsigned max_tokens, gear_cache **out);

#endif
