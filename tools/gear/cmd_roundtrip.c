/* cmd_roundtrip.c - `gear roundtrip`: compress + decompress one .npy tensor. */
#include <math.h>
#include <stdlib.h>
#include "cli.h"
#include "json.h"
#include "npy.h"

void usage_roundtrip(FILE *f)
{
    fprintf(f, "Usage: gear roundtrip --preset P --kind key|value --in X.npy --out Y.npy\n"
               "                      [--bits B] [--group G] [--outliers S] [--rank R]\n"
               "                      [--iters L] [--block N] [--seed S] [--backend NAME]\n\n"
               "Compress X with gear_compress and decompress it with gear_decompress.\n"
               "X is a float32 ('<f4') or float16 ('<f2') C-order .npy of shape [T, d] or\n"
               "[H, T, d] (H heads, T tokens, d channels).  Every head is compressed in\n"
               "blocks of N tokens; a tail of T mod N tokens stays full precision, as in the\n"
               "cache.  Y (float32, same shape) is the reconstruction.\n\n"
               "  --preset P      starting configuration (see 'gear presets')\n"
               "  --kind K        key (grouped per channel) or value (grouped per token)\n"
               "  --bits B        override: code bits (0 = fp16, 1, 2, 3, 4, 8)\n"
               "  --group G       override: group size (0 = the whole axis)\n"
               "  --outliers S    override: outlier ratio in [0, 1]\n"
               "  --rank R        override: rank of the low-rank part (0 = none)\n"
               "  --iters L       override: power iterations\n"
               "  --block N       override: tokens per block\n"
               "  --seed S        seed of the power-iteration start (default 0)\n"
               "  --backend NAME  auto (default), ref, cpu, cuda, hip (see 'gear backends')\n"
               "  --json          accepted for uniformity: the output is always JSON\n\n"
               "Prints one JSON line: the effective knobs (group is the effective group\n"
               "size), bpe (everything a block stores, header included; gear_block_info_get),\n"
               "bpe_formula (without header), header_bits (per block), rel_err\n"
               "(||X - Y||_F / ||X||_F over the compressed tokens only, the tail being exact;\n"
               "null when T < N), outlier_fraction, compressed_bytes (the whole stream),\n"
               "tokens_compressed and tokens_tail (per head).\n");
}

/* ||x - y|| / ||x|| over the first nc tokens of every head, in double. */
static double rel_err_compressed(const float *x, const float *y, int64_t H, int64_t T,
                                 int64_t d, int64_t nc)
{
    double num = 0.0, den = 0.0;
    for (int64_t h = 0; h < H; h++)
        for (int64_t i = 0; i < nc * d; i++) {
            double a = x[(h * T) * d + i], e = a - (double)y[(h * T) * d + i];
            num += e * e;
            den += a * a;
        }
    return den > 0.0 ? sqrt(num / den) : num > 0.0 ? INFINITY : 0.0;
}

int cmd_roundtrip(int argc, char **argv)
{
    const char *cmd = argv[0], *preset = NULL, *kind_s = NULL, *backend = NULL, *in = NULL,
               *out = NULL;
    int json = 0, g_bits = 0, g_group = 0, g_out = 0, g_rank = 0, g_iters = 0, g_block = 0;
    unsigned bits = 0, group = 0, rank = 0, iters = 0, block = 0;
    float outliers = 0.0f;
    uint64_t seed = 0;
    const cli_opt opts[] = {
        {"--preset", OPT_STR, &preset, 0, 0, NULL},
        {"--kind", OPT_STR, &kind_s, 0, 0, NULL},
        {"--in", OPT_STR, &in, 0, 0, NULL},
        {"--out", OPT_STR, &out, 0, 0, NULL},
        {"--backend", OPT_STR, &backend, 0, 0, NULL},
        {"--bits", OPT_UINT, &bits, 0, 0xFFFFFFFFu, &g_bits},
        {"--group", OPT_UINT, &group, 0, 0xFFFFFFFFu, &g_group},
        {"--outliers", OPT_RATIO, &outliers, 0, 0, &g_out},
        {"--rank", OPT_UINT, &rank, 0, 0xFFFFFFFFu, &g_rank},
        {"--iters", OPT_UINT, &iters, 0, 0xFFFFFFFFu, &g_iters},
        {"--block", OPT_UINT, &block, 0, 0xFFFFFFFFu, &g_block},
        {"--seed", OPT_U64, &seed, 0, UINT64_MAX, NULL},
        {"--json", OPT_FLAG, &json, 0, 0, NULL},
    };
    int rc = cli_parse(cmd, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                       usage_roundtrip);
    if (rc) return rc;
    if (!preset || !kind_s || !in || !out)
        return cli_usage_error(cmd, "missing %s", !preset ? "--preset" : !kind_s ? "--kind"
                                                  : !in ? "--in" : "--out");
    gear_kind kind;
    if (!strcmp(kind_s, "key")) kind = GEAR_KEY;
    else if (!strcmp(kind_s, "value")) kind = GEAR_VALUE;
    else return cli_usage_error(cmd, "--kind must be 'key' or 'value', not '%s'", kind_s);

    gear_config cfgs[2];
    if ((rc = cli_preset(cmd, preset, &cfgs[0], &cfgs[1]))) return rc;
    gear_config cfg = cfgs[kind];
    if (g_bits) cfg.bits = bits;
    if (g_group) cfg.group = group;
    if (g_out) cfg.outlier_ratio = outliers;
    if (g_rank) cfg.rank = rank;
    if (g_iters) cfg.iters = iters;
    if (g_block) cfg.block = block;
    cfg.seed = seed;

    char err[256];
    npy_array a;
    if (npy_read(in, &a, err, sizeof err)) {
        cli_error(cmd, "'%s': %s", in, err);
        return CLI_FAIL;
    }
    if (a.ndim != 2 && a.ndim != 3) {
        cli_error(cmd, "'%s': shape has %d dimensions; need [T, d] or [H, T, d]", in, a.ndim);
        npy_free(&a);
        return CLI_FAIL;
    }
    int64_t H = a.ndim == 3 ? a.shape[0] : 1, T = a.shape[a.ndim - 2], d = a.shape[a.ndim - 1];
    if (!a.count || d > 65535) {
        cli_error(cmd, "'%s': shape [%lld, %lld, %lld] is empty or d > 65535", in, (long long)H,
                  (long long)T, (long long)d);
        npy_free(&a);
        return CLI_FAIL;
    }
    if ((rc = cli_validate(cmd, &cfg, (unsigned)d))) {
        npy_free(&a);
        return rc;
    }

    gear_context *ctx = NULL;
    gear_block_info info;
    gear_tensor x, y;
    void *stream = NULL;
    float *xf = NULL, *yf = NULL;
    size_t bound = 0, written = 0;
    gear_status st;
    rc = CLI_FAIL;
    if (cli_block_info(cmd, &cfg, (unsigned)d, &info)) goto done;
    if ((rc = cli_context(cmd, backend, &ctx))) goto done;
    rc = CLI_FAIL;
    st = gear_tensor_init(&x, a.data, a.dtype, a.ndim, a.shape[0], a.shape[1],
                          a.ndim == 3 ? a.shape[2] : 0, 0);
    if (st) { cli_gear_error(cmd, CLI_FAIL, st, "'%s': gear_tensor_init", in); goto done; }
    if ((st = gear_compress_bound(&cfg, &x, &bound))) {
        cli_gear_error(cmd, CLI_FAIL, st, "'%s': gear_compress_bound", in);
        goto done;
    }
    stream = malloc(bound ? bound : 1);
    xf = npy_to_f32(&a);
    yf = malloc(a.count * sizeof *yf);
    if (!stream || !xf || !yf) {
        cli_error(cmd, "out of memory (%zu-byte stream, %zu floats)", bound, a.count);
        goto done;
    }
    if ((st = gear_compress(ctx, &cfg, &x, 0, stream, bound, &written))) {
        cli_gear_error(cmd, CLI_FAIL, st, "'%s': gear_compress", in);
        goto done;
    }
    st = gear_tensor_init(&y, yf, GEAR_F32, a.ndim, a.shape[0], a.shape[1],
                          a.ndim == 3 ? a.shape[2] : 0, 0);
    if (!st) st = gear_decompress(ctx, stream, written, &y);
    if (st) { cli_gear_error(cmd, CLI_FAIL, st, "'%s': gear_decompress", in); goto done; }
    if (npy_write_f32(out, yf, a.ndim, a.shape, err, sizeof err)) {
        cli_error(cmd, "'%s': %s", out, err);
        goto done;
    }

    int64_t nc = T / cfg.block * cfg.block;
    json_out j;
    jo_begin(&j, stdout);
    jo_str(&j, "preset", preset);
    jo_str(&j, "kind", cli_kind_name(kind));
    jo_str(&j, "backend", gear_context_backend_name(ctx));
    jo_str(&j, "dtype", a.dtype == GEAR_F32 ? "f32" : "f16");
    jo_int(&j, "heads", H);
    jo_int(&j, "tokens", T);
    jo_int(&j, "head_dim", d);
    jo_uint(&j, "bits", cfg.bits);
    jo_uint(&j, "group", info.group);
    jo_num(&j, "outliers", cli_ratio(cfg.outlier_ratio));
    jo_uint(&j, "rank", cfg.rank);
    jo_uint(&j, "iters", cfg.iters);
    jo_uint(&j, "block", cfg.block);
    jo_uint(&j, "seed", cfg.seed);
    jo_num(&j, "bpe", info.bpe);
    jo_num(&j, "bpe_formula", info.bpe_formula);
    jo_uint(&j, "header_bits", 8ull * info.header_bytes);
    /* null when T < block: nothing was compressed, so there is no error to quote */
    jo_num(&j, "rel_err", nc ? rel_err_compressed(xf, yf, H, T, d, nc) : NAN);
    jo_num(&j, "outlier_fraction", info.outlier_fraction);
    jo_uint(&j, "compressed_bytes", written);
    jo_int(&j, "tokens_compressed", nc);
    jo_int(&j, "tokens_tail", T - nc);
    jo_end(&j);
    rc = CLI_OK;
done:
    free(stream);
    free(xf);
    free(yf);
    gear_context_free(ctx);
    npy_free(&a);
    return rc;
}
