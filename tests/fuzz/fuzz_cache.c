/*
 * fuzz_cache.c - gear_cache_load_mem on untrusted bytes, then everything a
 * program does with a loaded cache: stats, save_mem (which must give back
 * exactly the bytes loaded), decompress, decode attention with grouped
 * queries, and one more append followed by attention.  A calibrated cache
 * under head compression may refuse an append or an attention with
 * GEAR_ERR_RANGE (a hostile mean or basis can push the projected values out
 * of the fp16 range, or the reconstructed output out of fp32).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <gear.h>
#include "fuzz.h"
#include "fuzz_lib.h"

/* GEAR_ERR_RANGE, with a message, from a calibrated cache */
static int range_ok(gear_status st, int calibrated)
{
    return calibrated && st == GEAR_ERR_RANGE && gear_last_error_message()[0];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gear_context *ctx = fuzz_ref_context();
    gear_cache *c = NULL;
    gear_status st = gear_cache_load_mem(ctx, data, size, &c);
    if (st) {
        if (c) FUZZ_DIE("failed load returned a cache");
        if (!gear_last_error_message()[0]) FUZZ_DIE("failed load without a message");
        return 0;
    }
    gear_cache_stats s;
    if (gear_cache_stats_get(c, &s)) FUZZ_DIE("stats failed");

    /* save gives back the input, byte for byte */
    size_t need = 0;
    if (gear_cache_save_mem(c, NULL, 0, &need) != GEAR_ERR_DST_TOO_SMALL) FUZZ_DIE("save_mem sizing");
    if (need != size) FUZZ_DIE("save_mem size differs from the loaded size");
    uint8_t *again = malloc(need);
    if (!again) FUZZ_DIE("oom");
    if (gear_cache_save_mem(c, again, need, &need)) FUZZ_DIE("save_mem failed");
    if (memcmp(again, data, size)) FUZZ_DIE("save_mem bytes differ from the loaded bytes");
    free(again);

    /* the shape, from the header (validated by the load) */
    unsigned n_layer = data[80] | data[81] << 8 | data[82] << 16 | (unsigned)data[83] << 24;
    unsigned n_head = data[84] | data[85] << 8 | data[86] << 16 | (unsigned)data[87] << 24;
    unsigned d = data[88] | data[89] << 8 | data[90] << 16 | (unsigned)data[91] << 24;
    int calibrated = (data[96] | data[97] | data[98] | data[99]) != 0;
    unsigned budget = 1u << 22; /* entries of K/V work per input */
    for (unsigned l = 0; l < n_layer && l < 4; l++) {
        unsigned T;
        if (gear_cache_tokens(c, l, &T)) FUZZ_DIE("tokens failed");
        if (!T) continue;
        size_t kv = (size_t)n_head * T * d;
        if (kv > budget) continue;
        budget -= (unsigned)kv;
        float *k = malloc(sizeof(float) * kv), *v = malloc(sizeof(float) * kv);
        if (!k || !v) FUZZ_DIE("oom");
        gear_tensor tk, tv;
        gear_tensor_init(&tk, k, GEAR_F32, 3, n_head, T, d, 0);
        gear_tensor_init(&tv, v, GEAR_F32, 3, n_head, T, d, 0);
        if (gear_cache_decompress(c, l, &tk, &tv)) FUZZ_DIE("decompress of a loaded cache failed");
        free(k);
        free(v);
        /* grouped-query attention: 2 query heads per KV head, 1..2 tokens */
        unsigned hq = 2 * n_head, nq = T > 1 ? 2 : 1;
        size_t qn = (size_t)hq * nq * d;
        float *q = malloc(sizeof(float) * qn), *o = malloc(sizeof(float) * qn);
        if (!q || !o) FUZZ_DIE("oom");
        for (size_t i = 0; i < qn; i++) q[i] = (float)((i * 7919u) % 17) / 8.0f - 1.0f;
        gear_tensor tq, to;
        gear_tensor_init(&tq, q, GEAR_F32, 3, hq, nq, d, 0);
        gear_tensor_init(&to, o, GEAR_F32, 3, hq, nq, d, 0);
        st = gear_cache_attention(c, l, &tq, 0.125f, &to);
        if (st && !range_ok(st, calibrated)) FUZZ_DIE("attention on a loaded cache failed");
        if (!st) fuzz_check_finite(o, qn, "attention output is not finite");
        /* append one token (fails with GEAR_ERR_CAPACITY when full) */
        size_t one = (size_t)n_head * d;
        float *x = calloc(one, sizeof(float));
        if (!x) FUZZ_DIE("oom");
        gear_tensor_init(&tk, x, GEAR_F32, 3, n_head, 1, d, 0);
        st = gear_cache_append(c, l, &tk, &tk);
        if (st && st != GEAR_ERR_CAPACITY && !range_ok(st, calibrated))
            FUZZ_DIE("append to a loaded cache failed");
        if (!st) {
            st = gear_cache_attention(c, l, &tq, 0.125f, &to);
            if (st && !range_ok(st, calibrated)) FUZZ_DIE("attention after append failed");
        }
        free(x);
        free(q);
        free(o);
    }
    gear_cache_free(c);
    return 0;
}
