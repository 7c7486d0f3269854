/*
 * make_seeds.c - writes the seed corpora of the fuzz targets from valid
 * inputs made by the library and the tools' own writers:
 *
 *   make_seeds OUTDIR    ->  OUTDIR/{stream,cache,calib,npy,safetensors}/...
 *
 * Linked with the same library build as the fuzz targets (and so with
 * nocrc.c: every CRC field of these seeds is 0).  The GGUF seed is
 * tests/fuzz/seeds/tiny.gguf (see tests/fuzz/README.md).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <gear.h>
#include "../../tools/gear/npy.h"

static const char *outdir;

static void put_file(const char *sub, const char *name, const void *p, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", outdir, sub);
    if (mkdir(path, 0777) && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof path, "%s/%s/%s", outdir, sub, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f)) {
        perror(path);
        exit(1);
    }
}

static float val(unsigned i)
{
    /* deterministic, structured: a few outlier channels */
    unsigned h = i * 2654435761u;
    float x = (float)(h >> 8) / 16777216.0f * 2.0f - 1.0f;
    return (i % 7 == 3) ? 8.0f * x : x;
}

static void fill(void *p, gear_dtype dt, size_t n, unsigned salt)
{
    for (size_t i = 0; i < n; i++) {
        float x = val((unsigned)i + salt);
        if (dt == GEAR_F32) {
            ((float *)p)[i] = x;
        } else {
            uint32_t u;
            memcpy(&u, &x, 4);
            /* f16 via a crude conversion (exactness does not matter for seeds) */
            uint16_t h = dt == GEAR_BF16 ? (uint16_t)(u >> 16)
                       : (uint16_t)(((u >> 16) & 0x8000) | ((((u >> 23) & 0xff) - 112) << 10) |
                                    ((u >> 13) & 0x3ff));
            if (x == 0.0f) h = 0;
            ((uint16_t *)p)[i] = h;
        }
    }
}

static void streams(gear_context *ctx)
{
    static const char *presets[] = {"fp16", "kivi2", "kivi4", "gear2", "gear4", "gearl2", "kcvt4"};
    static const struct { int h, t, d, block; gear_dtype dt; } shapes[] = {
        {1, 16, 8, 8, GEAR_F32}, {2, 21, 8, 8, GEAR_F16}, {1, 37, 16, 16, GEAR_BF16},
        {3, 8, 4, 8, GEAR_F32},  {1, 5, 8, 8, GEAR_F32},
    };
    int k = 0;
    for (size_t p = 0; p < sizeof presets / sizeof *presets; p++)
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
            for (int kind = 0; kind < 2; kind++) {
                gear_config cfg;
                if (gear_config_preset(presets[p], (gear_kind)kind, &cfg)) exit(1);
                cfg.block = (unsigned)shapes[s].block;
                if (cfg.group > cfg.block && kind == GEAR_KEY) cfg.group = 4;
                if (cfg.group > (unsigned)shapes[s].d && kind == GEAR_VALUE) cfg.group = 4;
                if (gear_config_validate(&cfg, (unsigned)shapes[s].d)) continue;
                size_t n = (size_t)shapes[s].h * shapes[s].t * shapes[s].d;
                void *x = malloc(n * 4);
                fill(x, shapes[s].dt, n, (unsigned)(p * 31 + s));
                gear_tensor t;
                gear_tensor_init(&t, x, shapes[s].dt, 3, shapes[s].h, shapes[s].t, shapes[s].d, 0);
                size_t bound, written;
                if (gear_compress_bound(&cfg, &t, &bound)) exit(1);
                void *dst = malloc(bound);
                gear_status st = gear_compress(ctx, &cfg, &t, 1, dst, bound, &written);
                if (st) {
                    fprintf(stderr, "compress %s: %s\n", presets[p], gear_last_error_message());
                    exit(1);
                }
                char name[64];
                snprintf(name, sizeof name, "%s-%d-%zu.gst", presets[p], kind, s);
                put_file("stream", name, dst, written);
                free(dst);
                free(x);
                k++;
            }
    printf("make_seeds: %d stream seeds\n", k);
}

static void caches(gear_context *ctx)
{
    static const char *presets[] = {"fp16", "kivi2", "gear2", "gear4", "gearl4"};
    static const struct { unsigned layers, heads, d, block, maxt, fill0, fill1; } shapes[] = {
        {2, 2, 16, 16, 64, 37, 16}, {1, 1, 8, 8, 24, 24, 0}, {3, 1, 4, 8, 40, 3, 17},
    };
    int k = 0;
    for (size_t p = 0; p < sizeof presets / sizeof *presets; p++)
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
            gear_config ck, cv;
            gear_config_preset(presets[p], GEAR_KEY, &ck);
            gear_config_preset(presets[p], GEAR_VALUE, &cv);
            ck.block = cv.block = shapes[s].block;
            if (ck.group > ck.block) ck.group = 4;
            if (cv.group > shapes[s].d) cv.group = 4;
            gear_cache *c;
            if (gear_cache_create(ctx, &ck, &cv, shapes[s].layers, shapes[s].heads, shapes[s].d,
                                  shapes[s].maxt, &c)) {
                fprintf(stderr, "cache %s: %s\n", presets[p], gear_last_error_message());
                exit(1);
            }
            for (unsigned l = 0; l < shapes[s].layers && l < 2; l++) {
                unsigned T = l ? shapes[s].fill1 : shapes[s].fill0;
                if (!T) continue;
                size_t n = (size_t)shapes[s].heads * T * shapes[s].d;
                float *k = malloc(n * 4), *v = malloc(n * 4);
                fill(k, GEAR_F32, n, 7 * l + 1);
                fill(v, GEAR_F32, n, 7 * l + 2);
                gear_tensor tk, tv;
                gear_tensor_init(&tk, k, GEAR_F32, 3, shapes[s].heads, T, shapes[s].d, 0);
                gear_tensor_init(&tv, v, GEAR_F32, 3, shapes[s].heads, T, shapes[s].d, 0);
                if (gear_cache_append(c, l, &tk, &tv)) {
                    fprintf(stderr, "append: %s\n", gear_last_error_message());
                    exit(1);
                }
                free(k);
                free(v);
            }
            size_t size;
            gear_cache_save_mem(c, NULL, 0, &size);
            void *buf = malloc(size);
            if (gear_cache_save_mem(c, buf, size, &size)) exit(1);
            char name[64];
            snprintf(name, sizeof name, "%s-%zu.gcache", presets[p], s);
            put_file("cache", name, buf, size);
            free(buf);
            gear_cache_free(c);
            k++;
        }
    printf("make_seeds: %d cache seeds\n", k);
}

/* Calibrations (CQ only, head compression only, both) on tiny shapes, so
 * that k-means is quick, into calib/; calibrated caches made with some of
 * them into cache/ (fuzz_cache then reaches the embedded calibration). */
static void calibs(gear_context *ctx)
{
    static const struct {
        unsigned layers, heads, d, cq_dim[2], cq_bits[2], hc_group, hc_dim, cache;
        const char *name;
    } cs[] = {
        {2, 2, 8, {2, 4}, {4, 3}, 0, 0, 1, "cq"},
        {1, 1, 4, {4, 0}, {2, 0}, 0, 0, 0, "cq-key"},
        {2, 4, 4, {0, 0}, {0, 0}, 2, 4, 1, "hc"},
        {1, 2, 8, {2, 2}, {3, 3}, 2, 8, 1, "hc-cq"},
        {1, 3, 2, {0, 1}, {0, 2}, 3, 3, 0, "hc3-cq-value"},
    };
    int nc = 0, ncache = 0;
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
        gear_calib_params p;
        gear_calib_params_init(&p);
        for (int kv = 0; kv < 2; kv++) p.cq_dim[kv] = cs[i].cq_dim[kv], p.cq_bits[kv] = cs[i].cq_bits[kv];
        p.hc_group = cs[i].hc_group;
        p.hc_dim = cs[i].hc_dim;
        p.kmeans_iters = 4;
        p.seed = i;
        gear_calib *cal;
        if (gear_calib_create(&p, cs[i].layers, cs[i].heads, cs[i].d, &cal)) {
            fprintf(stderr, "calib %s: %s\n", cs[i].name, gear_last_error_message());
            exit(1);
        }
        unsigned T = 40;
        size_t n = (size_t)cs[i].heads * T * cs[i].d;
        float *k = malloc(n * 4), *v = malloc(n * 4);
        for (unsigned l = 0; l < cs[i].layers; l++) {
            fill(k, GEAR_F32, n, 11 * l + 3);
            fill(v, GEAR_F32, n, 11 * l + 5);
            gear_tensor tk, tv;
            gear_tensor_init(&tk, k, GEAR_F32, 3, cs[i].heads, T, cs[i].d, 0);
            gear_tensor_init(&tv, v, GEAR_F32, 3, cs[i].heads, T, cs[i].d, 0);
            if (gear_calib_add(cal, l, &tk, &tv, NULL)) {
                fprintf(stderr, "calib add: %s\n", gear_last_error_message());
                exit(1);
            }
        }
        if (gear_calib_fit(cal)) {
            fprintf(stderr, "calib fit %s: %s\n", cs[i].name, gear_last_error_message());
            exit(1);
        }
        size_t size;
        gear_calib_save_mem(cal, NULL, 0, &size);
        void *buf = malloc(size);
        if (gear_calib_save_mem(cal, buf, size, &size)) exit(1);
        char name[64];
        snprintf(name, sizeof name, "%s.gcal", cs[i].name);
        put_file("calib", name, buf, size);
        free(buf);
        nc++;
        if (cs[i].cache) {
            gear_calib_info in;
            gear_calib_info_get(cal, &in);
            gear_config cfg[2];
            for (int kv = 0; kv < 2; kv++) {
                char pre[32];
                if (cs[i].cq_dim[kv])
                    snprintf(pre, sizeof pre, "cq-%uc%ub", cs[i].cq_dim[kv], cs[i].cq_bits[kv]);
                else
                    snprintf(pre, sizeof pre, "kivi2");
                gear_config_preset(pre, (gear_kind)kv, &cfg[kv]);
                cfg[kv].block = 4;
                if (cfg[kv].group > 4) cfg[kv].group = 4;
            }
            gear_cache *c;
            if (gear_cache_create_calibrated(ctx, &cfg[0], &cfg[1], cal, cs[i].layers,
                                             cs[i].heads, cs[i].d, 32, &c)) {
                fprintf(stderr, "calibrated cache %s: %s\n", cs[i].name, gear_last_error_message());
                exit(1);
            }
            gear_tensor tk, tv;
            unsigned t = 9; /* two blocks and a buffered token */
            gear_tensor_init(&tk, k, GEAR_F32, 3, cs[i].heads, t, cs[i].d, 0);
            gear_tensor_init(&tv, v, GEAR_F32, 3, cs[i].heads, t, cs[i].d, 0);
            if (gear_cache_append(c, 0, &tk, &tv)) {
                fprintf(stderr, "calibrated append: %s\n", gear_last_error_message());
                exit(1);
            }
            gear_cache_save_mem(c, NULL, 0, &size);
            buf = malloc(size);
            if (gear_cache_save_mem(c, buf, size, &size)) exit(1);
            snprintf(name, sizeof name, "calib-%s.gcache", cs[i].name);
            put_file("cache", name, buf, size);
            free(buf);
            gear_cache_free(c);
            ncache++;
        }
        free(k);
        free(v);
        gear_calib_free(cal);
    }
    printf("make_seeds: %d calibration seeds, %d calibrated cache seeds\n", nc, ncache);
}

static void npys(void)
{
    char path[1024], err[256];
    float x[24];
    for (int i = 0; i < 24; i++) x[i] = val((unsigned)i);
    snprintf(path, sizeof path, "%s/npy", outdir);
    mkdir(path, 0777);
    static const int64_t shp[][3] = {{24, 0, 0}, {4, 6, 0}, {2, 3, 4}, {0, 0, 0}};
    static const int nd[] = {1, 2, 3, 0};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/npy/f32-%d.npy", outdir, i);
        if (npy_write_f32(path, x, nd[i], shp[i], err, sizeof err)) {
            fprintf(stderr, "npy: %s\n", err);
            exit(1);
        }
    }
    /* a float16 array, version 2.0 header */
    const char *dict = "{'descr': '<f2', 'fortran_order': False, 'shape': (2, 3), }";
    unsigned char buf[256];
    size_t hl = strlen(dict) + 1, n = 0;
    memcpy(buf, "\x93NUMPY\x02\x00", 8);
    buf[8] = (unsigned char)hl; buf[9] = 0; buf[10] = 0; buf[11] = 0;
    n = 12;
    memcpy(buf + n, dict, hl - 1);
    n += hl - 1;
    buf[n++] = '\n';
    uint16_t h[6] = {0x3c00, 0xbc00, 0x4000, 0x0001, 0x7bff, 0x8000};
    memcpy(buf + n, h, sizeof h);
    n += sizeof h;
    put_file("npy", "f16-v2.npy", buf, n);
    printf("make_seeds: 5 npy seeds\n");
}

static void safetensors(void)
{
    const char *json =
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"k\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
        "\"v\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[24,30]},"
        "\"w\":{\"dtype\":\"BF16\",\"shape\":[1,1,1],\"data_offsets\":[30,32]},"
        "\"e\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[32,32]}}";
    unsigned char buf[1024];
    size_t hl = strlen(json), pad = (8 - hl % 8) % 8, n = 0;
    uint64_t L = hl + pad;
    for (int i = 0; i < 8; i++) buf[n++] = (unsigned char)(L >> (8 * i));
    memcpy(buf + n, json, hl);
    n += hl;
    memset(buf + n, ' ', pad);
    n += pad;
    for (int i = 0; i < 32; i++) buf[n++] = (unsigned char)(i * 37);
    put_file("safetensors", "small.safetensors", buf, n);
    const char *one = "{\"x\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}";
    n = 0;
    hl = strlen(one);
    for (int i = 0; i < 8; i++) buf[n++] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + n, one, hl);
    n += hl;
    memset(buf + n, 0x3f, 4);
    n += 4;
    put_file("safetensors", "scalar.safetensors", buf, n);
    printf("make_seeds: 2 safetensors seeds\n");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds OUTDIR\n");
        return 2;
    }
    outdir = argv[1];
    mkdir(outdir, 0777);
    gear_context_params p;
    gear_context_params_init(&p);
    p.backend = "ref";
    gear_context *ctx;
    if (gear_context_create(&p, &ctx)) return 1;
    streams(ctx);
    caches(ctx);
    calibs(ctx);
    npys();
    safetensors();
    gear_context_free(ctx);
    return 0;
}
