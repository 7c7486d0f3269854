/*
 * cmd_demo.c - `gear demo` (the real KV sample, or synthetic KV) and `gear eval` (a user's
 * safetensors KV dump): both fill a KV set and print the same per-preset
 * table of size, error, attention error and speed.
 */
#include <math.h>
#include <stdlib.h>
#include "cli.h"
#include "json.h"
#include "safetensors.h"
#include "synth.h"
#include "kvset.h"

#define BUILD_REPS 3 /* fresh caches per preset for the compress timing */
#define ATTN_REPS 9  /* timed attention passes */
#define STR_(x) #x
#define STR(x) STR_(x)

/* Options and description shared by both commands. */
typedef struct table_opts {
    const char *cmd;
    cli_strs presets;
    const char *backend;
    int json;
    uint64_t seed;
    unsigned qheads;
    const char *source;      /* "synthetic", "file" (eval) or "sample" (demo's real KV) */
    const char *file;
    char layers_desc[128];   /* e.g. "layers 0, 10, 20, 29" */
    const char *calib_path;  /* --calib */
    gear_calib *cal;         /* loaded from it: caches are calibrated, layers keep their ids */
    gear_calib_info cal_info;
} table_opts;

/* ----------------------------------------------------------- measuring */

typedef struct metrics {
    double bpe, bpe_k, bpe_v, k_err, v_err, attn_err, mbps, attn_us;
    gear_cache_stats stats;
} metrics;

static gear_tensor view3(float *data, unsigned a, unsigned b, unsigned c)
{
    gear_tensor t;
    gear_tensor_init(&t, data, GEAR_F32, 3, a, b, c, 0); /* cannot fail: ndim 3, F32 */
    return t;
}

/* A fresh cache holding every layer; *secs is the time of the appends. */
/* The cache layer of KV-set layer l: its number in the file when the cache
 * is calibrated (a calibration is per model layer), else l. */
static unsigned cache_layer(const gear_calib *cal, const kvset *s, unsigned l)
{
    return cal ? (unsigned)kvset_layer_id(s, l) : l;
}

/* A fresh cache holding every layer; *secs is the time of the appends. */
static int build_cache(const char *cmd, gear_context *ctx, const gear_config *ck,
                       const gear_config *cv, const gear_calib *cal, const kvset *s,
                       gear_cache **out, double *secs)
{
    gear_calib_info ci;
    unsigned n_layer = s->n_layer;
    if (cal) {
        gear_calib_info_get(cal, &ci);
        n_layer = ci.n_layer;
        for (unsigned l = 0; l < s->n_layer; l++)
            if (kvset_layer_id(s, l) < 0 || kvset_layer_id(s, l) >= (long)n_layer) {
                cli_error(cmd, "layer %ld is beyond the calibration's %u layers",
                          kvset_layer_id(s, l), n_layer);
                return CLI_FAIL;
            }
    }
    gear_status st = gear_cache_create_calibrated(ctx, ck, cv, cal, n_layer, s->heads, s->head_dim,
                                                  s->max_tokens, out);
    if (st) return cli_gear_error(cmd, CLI_FAIL, st, "gear_cache_create");
    double t0 = cli_now();
    for (unsigned l = 0; l < s->n_layer; l++) {
        gear_tensor k = view3(s->k[l], s->heads, s->tokens[l], s->head_dim);
        gear_tensor v = view3(s->v[l], s->heads, s->tokens[l], s->head_dim);
        if ((st = gear_cache_append(*out, cache_layer(cal, s, l), &k, &v))) {
            cli_gear_error(cmd, CLI_FAIL, st, "gear_cache_append (layer %ld)", kvset_layer_id(s, l));
            gear_cache_free(*out);
            *out = NULL;
            return CLI_FAIL;
        }
    }
    *secs = cli_now() - t0;
    return CLI_OK;
}

/* One decode-attention call per layer (1 query token) into out[l]. */
static int attend(const char *cmd, gear_cache *c, const gear_calib *cal, const kvset *s,
                  unsigned qheads, float *const *q, float *const *out)
{
    float scale = (float)(1.0 / sqrt((double)s->head_dim));
    for (unsigned l = 0; l < s->n_layer; l++) {
        gear_tensor tq = view3(q[l], qheads, 1, s->head_dim);
        gear_tensor to = view3(out[l], qheads, 1, s->head_dim);
        gear_status st = gear_cache_attention(c, cache_layer(cal, s, l), &tq, scale, &to);
        if (st)
            return cli_gear_error(cmd, CLI_FAIL, st, "gear_cache_attention (layer %ld)",
                                  kvset_layer_id(s, l));
    }
    return CLI_OK;
}

/* Squared error and squared norm over the first nc tokens of every head. */
static void err_acc(const float *x, const float *y, unsigned H, unsigned T, unsigned d,
                    unsigned nc, double *num, double *den)
{
    for (size_t h = 0; h < H; h++)
        for (size_t i = 0; i < (size_t)nc * d; i++) {
            double a = x[h * T * d + i], e = a - (double)y[h * T * d + i];
            *num += e * e;
            *den += a * a;
        }
}

static double ratio_err(double num, double den)
{
    return den > 0.0 ? sqrt(num / den) : num > 0.0 ? INFINITY : 0.0;
}

/* Per-layer float buffers (n_layer x n), all or nothing. */
static float **bufs_new(unsigned n_layer, size_t n)
{
    float **b = calloc(n_layer, sizeof *b);
    for (unsigned l = 0; b && l < n_layer; l++)
        if (!(b[l] = malloc(n * sizeof **b))) {
            for (unsigned i = 0; i < l; i++) free(b[i]);
            free(b);
            return NULL;
        }
    return b;
}

static void bufs_free(float **b, unsigned n_layer)
{
    for (unsigned l = 0; b && l < n_layer; l++) free(b[l]);
    free(b);
}

static int measure(const table_opts *o, gear_context *ctx, const char *preset, const kvset *s,
                   float *const *q, float *const *ref, metrics *m)
{
    const char *cmd = o->cmd;
    gear_config ck, cv;
    gear_block_info bk, bv;
    gear_cache *cache = NULL;
    double secs[BUILD_REPS], at[ATTN_REPS];
    size_t nq = (size_t)o->qheads * s->head_dim;
    double kn = 0, kdn = 0, vn = 0, vdn = 0, an = 0, adn = 0;
    int rc;
    memset(m, 0, sizeof *m);
    /* under head compression blocks hold stored_heads x stored_dim of the
     * heads x head_dim the model has: bpe per model entry shrinks alike */
    unsigned bd = o->cal ? o->cal_info.stored_dim : s->head_dim;
    double shrink = o->cal ? (double)o->cal_info.stored_heads * bd / ((double)s->heads * s->head_dim)
                           : 1.0;
    if ((rc = cli_preset(cmd, preset, &ck, &cv)) || (rc = cli_block_info(cmd, &ck, bd, &bk)) ||
        (rc = cli_block_info(cmd, &cv, bd, &bv)))
        return rc;
    m->bpe_k = bk.bpe * shrink;
    m->bpe_v = bv.bpe * shrink;
    m->bpe = 0.5 * (m->bpe_k + m->bpe_v);

    for (int r = 0; r < BUILD_REPS; r++) {
        gear_cache_free(cache);
        cache = NULL;
        if ((rc = build_cache(cmd, ctx, &ck, &cv, o->cal, s, &cache, &secs[r]))) return rc;
    }
    gear_status st = gear_cache_stats_get(cache, &m->stats);
    if (st) {
        gear_cache_free(cache);
        return cli_gear_error(cmd, CLI_FAIL, st, "gear_cache_stats_get");
    }
    double t = cli_median(secs, BUILD_REPS);
    m->mbps = t > 0.0 ? (double)m->stats.fp16_bytes / t / 1e6 : INFINITY;

    size_t per_layer = (size_t)s->heads * s->max_tokens * s->head_dim;
    float *kd = malloc(per_layer * sizeof *kd), *vd = malloc(per_layer * sizeof *vd);
    float **outs = bufs_new(s->n_layer, nq);
    rc = CLI_FAIL;
    if (!kd || !vd || !outs) {
        cli_error(cmd, "out of memory");
        goto done;
    }
    for (unsigned l = 0; l < s->n_layer; l++) {
        unsigned T = s->tokens[l], nc = T / ck.block * ck.block; /* one block size for K and V */
        gear_tensor tk = view3(kd, s->heads, T, s->head_dim);
        gear_tensor tv = view3(vd, s->heads, T, s->head_dim);
        if ((st = gear_cache_decompress(cache, cache_layer(o->cal, s, l), &tk, &tv))) {
            cli_gear_error(cmd, CLI_FAIL, st, "gear_cache_decompress (layer %ld)",
                           kvset_layer_id(s, l));
            goto done;
        }
        err_acc(s->k[l], kd, s->heads, T, s->head_dim, nc, &kn, &kdn);
        err_acc(s->v[l], vd, s->heads, T, s->head_dim, nc, &vn, &vdn);
    }
    /* One warm-up pass gives the outputs; then the timed passes. */
    if (attend(cmd, cache, o->cal, s, o->qheads, q, outs)) goto done;
    for (unsigned l = 0; l < s->n_layer; l++)
        err_acc(ref[l], outs[l], 1, 1, (unsigned)nq, 1, &an, &adn);
    for (int r = 0; r < ATTN_REPS; r++) {
        double t0 = cli_now();
        if (attend(cmd, cache, o->cal, s, o->qheads, q, outs)) goto done;
        at[r] = cli_now() - t0;
    }
    /* No compressed token (T < block): there is no compression error to quote. */
    m->k_err = m->stats.compressed_entries ? ratio_err(kn, kdn) : NAN;
    m->v_err = m->stats.compressed_entries ? ratio_err(vn, vdn) : NAN;
    m->attn_err = ratio_err(an, adn);
    m->attn_us = 1e6 * cli_median(at, ATTN_REPS) / s->n_layer;
    rc = CLI_OK;
done:
    free(kd);
    free(vd);
    bufs_free(outs, s->n_layer);
    gear_cache_free(cache);
    return rc;
}

/* ------------------------------------------------------------- output */

static void print_header(const table_opts *o, const kvset *s, const char *backend)
{
    unsigned tmin = s->tokens[0], tmax = s->tokens[0];
    for (unsigned l = 1; l < s->n_layer; l++) {
        if (s->tokens[l] < tmin) tmin = s->tokens[l];
        if (s->tokens[l] > tmax) tmax = s->tokens[l];
    }
    char tok[48];
    if (tmin == tmax) snprintf(tok, sizeof tok, "%u", tmin);
    else snprintf(tok, sizeof tok, "%u..%u", tmin, tmax);
    if (!strcmp(o->source, "synthetic"))
        printf("gear demo: SYNTHETIC KV data (gear_synth_kv, seed %llu), not a real model: ",
               (unsigned long long)o->seed);
    else if (!strcmp(o->source, "sample"))
        printf("gear demo: REAL KV sample '%s' (SmolLM2-135M on Persuasion, %s): ", o->file,
               o->layers_desc);
    else
        printf("gear eval: KV from '%s' (%s): ", o->file, o->layers_desc);
    printf("%u layer%s x %u KV heads x %s tokens x head_dim %u; backend %s\n", s->n_layer,
           s->n_layer == 1 ? "" : "s", s->heads, tok, s->head_dim, backend);
    printf("attention: %u query heads, 1 synthetic N(0,1) query token, scale 1/sqrt(d), "
           "compared with an fp16 cache of the same KV\n", o->qheads);
    printf("errors: ||X - X^||_F / ||X||_F over compressed tokens%s; ratio = 16/bpe; "
           "real = fp16 bytes / (compressed + buffer bytes)\n",
           s->n_layer > 1 ? ", pooled over layers" : "");
    printf("speed: MB/s of fp16-equivalent KV appended (median of %d fresh caches); "
           "attn us per layer call (median of %d)\n", BUILD_REPS, ATTN_REPS);
    if (tmax < 64) /* every preset's block is 64 tokens unless overridden */
        printf("note: fewer tokens than one block: nothing is compressed, K/V errors are '-'\n");
    printf("\n");
    printf("%-8s %7s %7s %7s %9s %9s %9s %10s %9s\n", "preset", "bpe", "ratio", "real",
           "K err", "V err", "attn err", "MB/s", "attn us");
}

static void print_row(const table_opts *o, const kvset *s, const char *preset,
                      const char *backend, const metrics *m)
{
    const gear_cache_stats *st = &m->stats;
    double stored = (double)(st->compressed_bytes + st->buffer_bytes);
    double real = stored > 0 ? (double)st->fp16_bytes / stored : 0.0;
    if (!o->json) {
        char ke[16] = "-", ve[16] = "-";
        if (isfinite(m->k_err)) snprintf(ke, sizeof ke, "%.5f", m->k_err);
        if (isfinite(m->v_err)) snprintf(ve, sizeof ve, "%.5f", m->v_err);
        printf("%-8s %7.3f %6.2fx %6.2fx %9s %9s %9.5f %10.1f %9.1f\n", preset, m->bpe,
               16.0 / m->bpe, real, ke, ve, m->attn_err, m->mbps, m->attn_us);
        return;
    }
    json_out j;
    jo_begin(&j, stdout);
    jo_str(&j, "preset", preset);
    jo_str(&j, "source", o->source);
    if (o->file) jo_str(&j, "file", o->file);
    jo_str(&j, "backend", backend);
    jo_uint(&j, "layers", s->n_layer);
    jo_uint(&j, "heads", s->heads);
    jo_uint(&j, "qheads", o->qheads);
    jo_uint(&j, "tokens", st->tokens);
    jo_uint(&j, "head_dim", s->head_dim);
    jo_num(&j, "bpe", m->bpe);
    jo_num(&j, "bpe_k", m->bpe_k);
    jo_num(&j, "bpe_v", m->bpe_v);
    jo_num(&j, "ratio", 16.0 / m->bpe);
    jo_num(&j, "real_ratio", real);
    jo_uint(&j, "compressed_bytes", st->compressed_bytes);
    jo_uint(&j, "buffer_bytes", st->buffer_bytes);
    jo_uint(&j, "fp16_bytes", st->fp16_bytes);
    jo_num(&j, "k_rel_err", m->k_err);
    jo_num(&j, "v_rel_err", m->v_err);
    jo_num(&j, "attn_rel_err", m->attn_err);
    jo_num(&j, "compress_mb_s", m->mbps);
    jo_num(&j, "attn_us", m->attn_us);
    jo_end(&j);
}

/* The table for every preset: reference attention from an fp16 cache, then
 * one row per preset. */
static int run_table(table_opts *o, const kvset *s)
{
    const char *cmd = o->cmd;
    gear_context *ctx = NULL;
    gear_cache *ref_cache = NULL;
    float **q = NULL, **ref = NULL;
    size_t nq = (size_t)o->qheads * s->head_dim;
    double secs;
    int rc;
    if (!o->presets.n) /* default: every preset */
        for (int i = 0; i < gear_preset_count() && o->presets.n < CLI_MAX_LIST; i++)
            if (strncmp(gear_preset_name(i), "cq-", 3)) /* CQ needs a calibration */
                o->presets.v[o->presets.n++] = gear_preset_name(i);
    if (o->calib_path) {
        gear_status st = gear_calib_load(o->calib_path, &o->cal);
        if (st) return cli_gear_error(cmd, CLI_FAIL, st, "--calib '%s'", o->calib_path);
        gear_calib_info_get(o->cal, &o->cal_info);
    }
    unsigned bd = o->cal ? o->cal_info.stored_dim : s->head_dim;
    /* Every name and knob first, so a typo fails before any work. */
    for (int i = 0; i < o->presets.n; i++) {
        gear_config ck, cv;
        if ((rc = cli_preset(cmd, o->presets.v[i], &ck, &cv)) || (rc = cli_validate(cmd, &ck, bd)) ||
            (rc = cli_validate(cmd, &cv, bd)))
            goto early;
        if ((ck.cq_dim || cv.cq_dim) && !o->cal) {
            cli_error(cmd, "preset '%s' needs a calibration with codebooks: pass --calib FILE (made by "
                      "'gear calibrate --cq %s')", o->presets.v[i], o->presets.v[i]);
            rc = CLI_FAIL;
            goto early;
        }
    }
    if ((rc = cli_context(cmd, o->backend, &ctx))) return rc;
    const char *backend = gear_context_backend_name(ctx);
    rc = CLI_FAIL;
    q = bufs_new(s->n_layer, nq);
    ref = bufs_new(s->n_layer, nq);
    if (!q || !ref) {
        cli_error(cmd, "out of memory");
        goto done;
    }
    for (unsigned l = 0; l < s->n_layer; l++)
        gear_synth_normal(o->seed * 1000003u + 7919u * (l + 1), (int)nq, q[l]);
    gear_config fk, fv;
    if (cli_preset(cmd, "fp16", &fk, &fv) || build_cache(cmd, ctx, &fk, &fv, NULL, s, &ref_cache, &secs) ||
        attend(cmd, ref_cache, NULL, s, o->qheads, q, ref))
        goto done;
    gear_cache_free(ref_cache);
    ref_cache = NULL;

    if (!o->json) print_header(o, s, backend);
    for (int i = 0; i < o->presets.n; i++) {
        metrics m;
        if (measure(o, ctx, o->presets.v[i], s, q, ref, &m)) goto done;
        print_row(o, s, o->presets.v[i], backend, &m);
        fflush(stdout);
    }
    rc = CLI_OK;
done:
    gear_cache_free(ref_cache);
    bufs_free(q, s->n_layer);
    bufs_free(ref, s->n_layer);
    gear_context_free(ctx);
early:
    gear_calib_free(o->cal);
    o->cal = NULL;
    return rc;
}

/* Options common to demo and eval (cli_opt initializers over a table_opts). */
#define COMMON_OPTS(o, qh_given)                                                   \
    {"--preset", OPT_STRS, &(o).presets, 0, 0, NULL},                              \
    {"--backend", OPT_STR, &(o).backend, 0, 0, NULL},                              \
    {"--json", OPT_FLAG, &(o).json, 0, 0, NULL},                                   \
    {"--seed", OPT_U64, &(o).seed, 0, UINT64_MAX, NULL},                           \
    {"--qheads", OPT_UINT, &(o).qheads, 1, 65535, &(qh_given)},                    \
    {"--calib", OPT_STR, &(o).calib_path, 0, 0, NULL}

static int check_qheads(table_opts *o, int given, unsigned heads)
{
    if (!given) {
        o->qheads = 4 * heads;
        return CLI_OK;
    }
    if (o->qheads % heads)
        return cli_usage_error(o->cmd, "--qheads %u is not a multiple of the %u KV heads",
                               o->qheads, heads);
    return CLI_OK;
}

#define COMMON_HELP                                                                           \
    "  --preset P      a preset to evaluate; repeat for several (default: all)\n"            \
    "  --backend NAME  auto (default), ref, cpu, cuda, hip (see 'gear backends')\n"          \
    "  --qheads Q      query heads, a multiple of the KV heads (grouped-query;\n"            \
    "                  default 4 x KV heads)\n"                                              \
    "  --seed S        seed of the synthetic queries%s (default 1)\n"                        \
    "  --calib FILE    a calibration from 'gear calibrate' (needed by cq-* presets; with\n"  \
    "                  head compression every preset runs on the projected cache);\n"       \
    "                  KV layer numbers index its layers\n"                                 \
    "  --json          one JSON object per preset instead of the table\n\n"                  \
    "Per preset: bpe (K and V average, everything stored), ratio 16/bpe and the real\n"     \
    "ratio fp16 bytes / (compressed + full-precision buffer bytes), relative error of\n"    \
    "keys and values (gear_cache_decompress vs input, over compressed tokens), relative\n" \
    "error of the attention output against an fp16 cache of the same KV (one query\n"     \
    "token, scale 1/sqrt(d)), compress throughput (MB/s of fp16-equivalent KV through\n"  \
    "gear_cache_append, median of " STR(BUILD_REPS) " fresh caches) and attention time\n"  \
    "(us per layer call, median of " STR(ATTN_REPS) ").\n\n"                                \
    "JSON fields: preset source [file] backend layers heads qheads tokens (summed\n"      \
    "over layers) head_dim bpe bpe_k bpe_v ratio real_ratio compressed_bytes\n"           \
    "buffer_bytes fp16_bytes k_rel_err v_rel_err (null when nothing is compressed)\n"     \
    "attn_rel_err compress_mb_s attn_us.\n"

/* --------------------------------------------------------------- demo */

#define DEMO_SAMPLE "smollm2-135m-persuasion-kv.safetensors"


/* Where the demo's real KV sample is: $GEAR_DATA_DIR (an error if set but
 * the file is not there), else the installed copy in GEAR_PKGDATADIR, else
 * the source tree's tests/data in GEAR_SOURCE_DATA_DIR, when the build
 * defines those (both string macros, e.g. from Makefile.am).  1 and a path in buf when found, 0 when
 * not (synthetic fallback), -1 after printing an error. */
static int demo_sample_path(const char *cmd, char *buf, size_t cap)
{
    const char *env = getenv("GEAR_DATA_DIR");
    FILE *f;
    if (env && *env) {
        if ((size_t)snprintf(buf, cap, "%s/%s", env, DEMO_SAMPLE) >= cap) {
            cli_error(cmd, "GEAR_DATA_DIR is too long");
            return -1;
        }
        if (!(f = fopen(buf, "rb"))) {
            cli_error(cmd, "GEAR_DATA_DIR is set but '%s' cannot be opened (unset it, or use "
                      "--synthetic)", buf);
            return -1;
        }
        fclose(f);
        return 1;
    }
    static const char *const dirs[] = {
#ifdef GEAR_PKGDATADIR
        GEAR_PKGDATADIR, /* the installed copy */
#endif
#ifdef GEAR_SOURCE_DATA_DIR
        GEAR_SOURCE_DATA_DIR, /* the source tree */
#endif
        NULL};
    for (size_t i = 0; dirs[i]; i++)
        if ((size_t)snprintf(buf, cap, "%s/%s", dirs[i], DEMO_SAMPLE) < cap && (f = fopen(buf, "rb"))) {
            fclose(f);
            return 1;
        }
    return 0;
}

#if defined(GEAR_PKGDATADIR) && defined(GEAR_SOURCE_DATA_DIR)
#define DEMO_SOURCE_DIR ":\n" GEAR_PKGDATADIR ", then " GEAR_SOURCE_DATA_DIR
#elif defined(GEAR_PKGDATADIR)
#define DEMO_SOURCE_DIR ":\n" GEAR_PKGDATADIR
#elif defined(GEAR_SOURCE_DATA_DIR)
#define DEMO_SOURCE_DIR ":\n" GEAR_SOURCE_DATA_DIR
#else
#define DEMO_SOURCE_DIR " (no default directory compiled into this build)"
#endif

void usage_demo(FILE *f)
{
    fprintf(f, "Usage: gear demo [--preset P ...] [--synthetic] [--tokens T] [--heads H]\n"
               "                 [--head-dim D] [--qheads Q] [--seed S] [--backend NAME]\n"
               "                 [--calib FILE] [--json]\n\n"
               "Compare presets on the real KV sample when it can be found, else on\n"
               "built-in SYNTHETIC KV data.  No input needed.\n\n"
               "Real KV: " DEMO_SAMPLE " (SmolLM2-135M, 4 layers x 3\n"
               "KV heads x 1024 tokens x head_dim 64, on Jane Austen's Persuasion), looked up\n"
               "in $GEAR_DATA_DIR, then in the built-in data directories%s.\n"
               "SYNTHETIC KV (gear_synth_kv: keys with outlier channels and smooth low-rank\n"
               "structure, values with per-token scale and heavy tails, one layer) is used\n"
               "when the sample is not found, with --synthetic, or when --tokens, --heads or\n"
               "--head-dim is given.  The header line says which data was used.  For other\n"
               "real data use 'gear eval --in FILE'.\n\n"
               "  --synthetic     use synthetic KV even if the real sample is there\n"
               "  --tokens T      synthetic tokens (default 1024)\n"
               "  --heads H       synthetic KV heads (default 8)\n"
               "  --head-dim D    synthetic head dimension (default 128)\n",
               DEMO_SOURCE_DIR);
    fprintf(f, COMMON_HELP, " and of the KV data");
}

int cmd_demo(int argc, char **argv)
{
    table_opts o;
    memset(&o, 0, sizeof o);
    o.cmd = argv[0];
    o.seed = 1;
    o.source = "synthetic";
    unsigned tokens = 1024, heads = 8, head_dim = 128;
    int qh_given = 0, synthetic = 0, shape_given = 0;
    const cli_opt opts[] = {
        COMMON_OPTS(o, qh_given),
        {"--synthetic", OPT_FLAG, &synthetic, 0, 0, NULL},
        {"--tokens", OPT_UINT, &tokens, 1, 1u << 20, &shape_given},
        {"--heads", OPT_UINT, &heads, 1, 1024, &shape_given},
        {"--head-dim", OPT_UINT, &head_dim, 1, 65535, &shape_given},
    };
    int rc = cli_parse(o.cmd, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), usage_demo);
    if (rc) return rc;
    if (!synthetic && !shape_given) { /* the real KV sample, when it can be found */
        char path[4096];
        int found = demo_sample_path(o.cmd, path, sizeof path);
        if (found < 0) return CLI_FAIL;
        if (found) {
            char err[256];
            st_file *sf = NULL;
            kvset s;
            memset(&s, 0, sizeof s);
            if (st_open(path, &sf, err, sizeof err)) {
                cli_error(o.cmd, "'%s': %s", path, err);
                return CLI_FAIL;
            }
            o.source = "sample";
            o.file = path;
            rc = kvset_load(o.cmd, path, sf, &s, o.layers_desc, sizeof o.layers_desc);
            st_close(sf);
            if (!rc) rc = check_qheads(&o, qh_given, s.heads);
            if (!rc) rc = run_table(&o, &s);
            kvset_free(&s);
            return rc;
        }
    }
    if ((rc = check_qheads(&o, qh_given, heads))) return rc;
    if ((uint64_t)heads * tokens * head_dim > (1ull << 26))
        return cli_usage_error(o.cmd, "heads x tokens x head-dim = %llu entries is more than the "
                               "demo allows (2^26)",
                               (unsigned long long)heads * tokens * head_dim);
    kvset s;
    memset(&s, 0, sizeof s);
    size_t n = (size_t)heads * tokens * head_dim;
    if (kvset_alloc(&s, 1) || !(s.k[0] = malloc(n * sizeof(float))) ||
        !(s.v[0] = malloc(n * sizeof(float)))) {
        kvset_free(&s);
        cli_error(o.cmd, "out of memory");
        return CLI_FAIL;
    }
    s.heads = heads;
    s.head_dim = head_dim;
    s.max_tokens = s.tokens[0] = tokens;
    gear_synth_kv(o.seed, GEAR_KEY, (int)heads, (int)tokens, (int)head_dim, s.k[0]);
    gear_synth_kv(o.seed, GEAR_VALUE, (int)heads, (int)tokens, (int)head_dim, s.v[0]);
    rc = run_table(&o, &s);
    kvset_free(&s);
    return rc;
}

/* --------------------------------------------------------------- eval */

void usage_eval(FILE *f)
{
    fprintf(f, "Usage: gear eval --in KV.safetensors [--preset P ...] [--qheads Q] [--seed S]\n"
               "                 [--backend NAME] [--json]\n\n"
               "Compare presets on your own KV dump.  The file holds, per layer i, tensors\n"
               "named layer.<i>.k and layer.<i>.v (or k.<i> and v.<i>), each of shape\n"
               "[H, T, d] (or [T, d] for one head) in F32, F16 or BF16; keys as the model\n"
               "attends to them (after RoPE).  K and V of a layer have the same shape; H and\n"
               "d are the same in every layer; other tensors are ignored.  Every layer is\n"
               "evaluated and errors are pooled over layers.  The attention queries are\n"
               "SYNTHETIC (N(0,1)), not the model's.  gear-llm dump-kv (examples/llm)\n"
               "writes such files.\n\n"
               "  --in FILE       the safetensors file\n");
    fprintf(f, COMMON_HELP, "");
}

int cmd_eval(int argc, char **argv)
{
    table_opts o;
    memset(&o, 0, sizeof o);
    o.cmd = argv[0];
    o.seed = 1;
    o.source = "file";
    int qh_given = 0;
    const cli_opt opts[] = {
        COMMON_OPTS(o, qh_given),
        {"--in", OPT_STR, &o.file, 0, 0, NULL},
    };
    int rc = cli_parse(o.cmd, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), usage_eval);
    if (rc) return rc;
    if (!o.file) return cli_usage_error(o.cmd, "missing --in");
    char err[256];
    st_file *sf = NULL;
    kvset s;
    memset(&s, 0, sizeof s);
    if (st_open(o.file, &sf, err, sizeof err)) {
        cli_error(o.cmd, "'%s': %s", o.file, err);
        return CLI_FAIL;
    }
    rc = kvset_load(o.cmd, o.file, sf, &s, o.layers_desc, sizeof o.layers_desc);
    st_close(sf);
    if (!rc) rc = check_qheads(&o, qh_given, s.heads);
    if (!rc) rc = run_table(&o, &s);
    kvset_free(&s);
    return rc;
}
