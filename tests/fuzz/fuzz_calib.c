/*
 * fuzz_calib.c - gear_calib_load_mem on untrusted bytes, then everything a
 * program does with a loaded calibration: info, save_mem (which must give
 * back exactly the bytes loaded), a calibrated cache (ref backend) with
 * configs that match it (its codebooks' CQ presets, else kivi2; applied to
 * the stored dimension under head compression), appends of finite tokens
 * (one full block and a buffered tail), decompress and grouped-query
 * attention, whose outputs must be finite unless attention reports
 * GEAR_ERR_RANGE (a hostile mean or basis can overflow fp32).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <gear.h>
#include "fuzz.h"
#include "fuzz_lib.h"

/* A failed call is acceptable only with status `ok` and a message. */
static void expect(gear_status st, gear_status ok, const char *what)
{
    if (!st) return;
    if (st != ok) FUZZ_DIE(what);
    if (!gear_last_error_message()[0]) FUZZ_DIE("an error without a message");
}

/* The config of one kind: its codebook's CQ preset, else kivi2; `extra`
 * adds outliers and a low-rank part (CQ + S + L, or GEAR on kivi2). */
static void make_config(const gear_calib_info *in, gear_kind kind, int extra, gear_config *cfg)
{
    char name[32];
    if (in->params.cq_dim[kind])
        snprintf(name, sizeof name, "cq-%uc%ub", in->params.cq_dim[kind], in->params.cq_bits[kind]);
    else
        snprintf(name, sizeof name, "kivi2");
    if (gear_config_preset(name, kind, cfg)) FUZZ_DIE("no preset for the calibration's codebook");
    cfg->block = 4;
    if (cfg->group > 4 && kind == GEAR_KEY) cfg->group = 4;
    if (extra) {
        cfg->outlier_ratio = 0.05f;
        cfg->rank = 1;
        if (!cfg->iters) cfg->iters = 2;
    }
    if (gear_config_validate(cfg, in->stored_dim)) FUZZ_DIE("config invalid for the stored head dim");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gear_context *ctx = fuzz_ref_context();
    gear_calib *cal = (gear_calib *)1;
    gear_status st = gear_calib_load_mem(data, size, &cal);
    if (st) {
        if (cal) FUZZ_DIE("failed load returned a calibration");
        if (!gear_last_error_message()[0]) FUZZ_DIE("failed load without a message");
        return 0;
    }
    if (!cal) FUZZ_DIE("load succeeded without a calibration");

    gear_calib_info in;
    if (gear_calib_info_get(cal, &in)) FUZZ_DIE("info failed");
    if (!in.fitted) FUZZ_DIE("a loaded calibration is not fitted");
    if (in.bytes != size) FUZZ_DIE("info.bytes differs from the loaded size");
    if (!in.n_layer || !in.n_head_kv || !in.head_dim || !in.stored_heads || !in.stored_dim)
        FUZZ_DIE("info has an empty shape");
    if (in.params.hc_group) {
        if (in.stored_heads * in.params.hc_group != in.n_head_kv || in.stored_dim != in.params.hc_dim)
            FUZZ_DIE("info: stored shape does not follow head compression");
    } else if (in.stored_heads != in.n_head_kv || in.stored_dim != in.head_dim) {
        FUZZ_DIE("info: stored shape differs from the model's without head compression");
    }
    for (int kv = 0; kv < 2; kv++) {
        unsigned c = in.params.cq_dim[kv];
        if (c && (in.stored_dim % c || in.params.cq_bits[kv] < 1 || in.params.cq_bits[kv] > 8))
            FUZZ_DIE("info: codebook does not fit the stored head dim");
        if (!(in.hc_energy[kv] >= 0.0 && in.hc_energy[kv] <= 1.0 + 1e-9)) FUZZ_DIE("info: hc_energy");
        if (!(in.cq_rel_err[kv] >= 0.0)) FUZZ_DIE("info: cq_rel_err");
    }

    /* save gives back the input, byte for byte */
    size_t need = 0;
    if (gear_calib_save_mem(cal, NULL, 0, &need) != GEAR_ERR_DST_TOO_SMALL) FUZZ_DIE("save_mem sizing");
    if (need != size) FUZZ_DIE("save_mem size differs from the loaded size");
    uint8_t *again = malloc(need);
    if (!again) FUZZ_DIE("oom");
    if (gear_calib_save_mem(cal, again, need, &need)) FUZZ_DIE("save_mem failed");
    if (memcmp(again, data, size)) FUZZ_DIE("save_mem bytes differ from the loaded bytes");
    free(again);

    /* bounded work: the cache's own shape (the tables are bounded by size) */
    unsigned L = in.n_layer, H = in.n_head_kv, D = in.head_dim;
    if ((uint64_t)L * H * D > (1u << 16) || (uint64_t)H * D > (1u << 13)) {
        gear_calib_free(cal);
        return 0;
    }
    /* the token count field (offset 44, free metadata) picks the variant */
    int extra = size > 44 && (data[44] & 1);
    gear_config ck, cv;
    make_config(&in, GEAR_KEY, extra, &ck);
    make_config(&in, GEAR_VALUE, extra, &cv);
    gear_cache *c = NULL;
    st = gear_cache_create_calibrated(ctx, &ck, &cv, cal, L, H, D, 16, &c);
    if (st) FUZZ_DIE("calibrated cache refused a matching calibration");
    gear_calib_free(cal); /* the cache holds its own copy */

    /* a few finite tokens into the last layer */
    unsigned layer = L - 1, T = 5; /* one block of 4 and one buffered token */
    size_t kvn = (size_t)H * T * D;
    float *k = malloc(sizeof(float) * kvn), *v = malloc(sizeof(float) * kvn);
    if (!k || !v) FUZZ_DIE("oom");
    for (size_t i = 0; i < kvn; i++) {
        k[i] = (float)((i * 7919u) % 23) / 11.0f - 1.0f;
        v[i] = (float)((i * 104729u) % 19) / 9.0f - 1.0f;
    }
    gear_tensor tk, tv;
    gear_tensor_init(&tk, k, GEAR_F32, 3, H, T, D, 0);
    gear_tensor_init(&tv, v, GEAR_F32, 3, H, T, D, 0);
    /* under head compression the projected values may leave the fp16 range */
    st = gear_cache_append(c, layer, &tk, &tv);
    expect(st, in.params.hc_group ? GEAR_ERR_RANGE : GEAR_OK, "append failed");
    unsigned have = 0;
    if (gear_cache_tokens(c, layer, &have)) FUZZ_DIE("tokens failed");
    if (have != (st ? 0u : T)) FUZZ_DIE("token count after append");
    if (have) {
        if (gear_cache_decompress(c, layer, &tk, &tv)) FUZZ_DIE("decompress failed");
        /* grouped-query attention: 2 query heads per KV head, 2 tokens */
        unsigned hq = 2 * H, nq = 2;
        size_t qn = (size_t)hq * nq * D;
        float *q = malloc(sizeof(float) * qn), *o = malloc(sizeof(float) * qn);
        if (!q || !o) FUZZ_DIE("oom");
        for (size_t i = 0; i < qn; i++) q[i] = (float)((i * 31u) % 17) / 8.0f - 1.0f;
        gear_tensor tq, to;
        gear_tensor_init(&tq, q, GEAR_F32, 3, hq, nq, D, 0);
        gear_tensor_init(&to, o, GEAR_F32, 3, hq, nq, D, 0);
        st = gear_cache_attention(c, layer, &tq, 0.125f, &to);
        expect(st, GEAR_ERR_RANGE, "attention failed");
        if (!st) fuzz_check_finite(o, qn, "attention output is not finite");
        free(q);
        free(o);
    }
    free(k);
    free(v);

    /* the cache file with the embedded calibration loads back identically */
    need = 0;
    if (gear_cache_save_mem(c, NULL, 0, &need) != GEAR_ERR_DST_TOO_SMALL) FUZZ_DIE("cache save sizing");
    again = malloc(need);
    if (!again) FUZZ_DIE("oom");
    if (gear_cache_save_mem(c, again, need, &need)) FUZZ_DIE("cache save failed");
    gear_cache *c2 = NULL;
    if (gear_cache_load_mem(ctx, again, need, &c2)) FUZZ_DIE("a saved calibrated cache does not load");
    uint8_t *third = malloc(need);
    if (!third) FUZZ_DIE("oom");
    size_t need2 = need;
    if (gear_cache_save_mem(c2, third, need, &need2) || need2 != need || memcmp(third, again, need))
        FUZZ_DIE("a reloaded calibrated cache saves differently");
    free(third);
    free(again);
    gear_cache_free(c2);
    gear_cache_free(c);
    return 0;
}
