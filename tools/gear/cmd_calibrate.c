/*
 * cmd_calibrate.c - `gear calibrate`: learn Coupled Quantization codebooks
 * and/or KV-head compression projections from a KV dump and write the
 * calibration file that calibrated caches (and `gear eval --calib`) use.
 */
#include <stdlib.h>
#include "cli.h"
#include "json.h"
#include "kvset.h"

void usage_calibrate(FILE *f)
{
    fprintf(f, "Usage: gear calibrate --in KV.safetensors --out FILE [--cq PRESET]\n"
               "                      [--cq-k PRESET] [--cq-v PRESET] [--hc-group G --hc-dim M]\n"
               "                      [--iters N] [--max-tokens N] [--seed S] [--json]\n\n"
               "Learn from calibration K/V (a dump of EVERY layer 0..L-1, as 'gear eval --in'\n"
               "reads; gear-llm dump-kv --layers all writes one) and save a calibration:\n"
               "  Coupled Quantization (arXiv 2405.03917): per layer, K/V, KV head and group of\n"
               "    c channels, 2^b centroids by k-means (k-means++ seeding).\n"
               "  KV-head compression (arXiv 2406.07056): per layer, K/V and group of G KV\n"
               "    heads, the mean and top M principal directions of their G*d channels;\n"
               "    caches then store M channels per group.  Keys are post-RoPE (as dumped).\n"
               "With both, the codebooks are learned on the projected K/V.\n\n"
               "  --in FILE        calibration KV (use another text than the one you evaluate on)\n"
               "  --out FILE       the calibration file to write\n"
               "  --cq PRESET      codebooks for keys and values, e.g. cq-4c8b\n"
               "  --cq-k PRESET    codebooks for keys only (or different from values)\n"
               "  --cq-v PRESET    codebooks for values only\n"
               "  --hc-group G     KV heads merged per group (must divide the KV heads)\n"
               "  --hc-dim M       channels kept per group, 1..G*d\n"
               "  --iters N        k-means iterations (default 20)\n"
               "  --max-tokens N   calibration tokens used per layer (default 2048)\n"
               "  --seed S         k-means++ seed (default 0)\n"
               "  --json           one JSON object instead of the summary\n\n"
               "Prints the variance kept by head compression and the codebooks' relative\n"
               "squared error on the calibration tokens, per K and V.\n");
}

static int set_cq(const char *cmd, const char *preset, gear_calib_params *p, int kv)
{
    gear_calib_params t;
    gear_calib_params_init(&t);
    gear_status st = gear_calib_params_cq(&t, preset);
    if (st) return cli_gear_error(cmd, CLI_USAGE, st, "--cq '%s'", preset);
    for (int i = 0; i < 2; i++)
        if (kv < 0 || kv == i) p->cq_dim[i] = t.cq_dim[i], p->cq_bits[i] = t.cq_bits[i];
    return CLI_OK;
}

int cmd_calibrate(int argc, char **argv)
{
    const char *cmd = argv[0], *in = NULL, *out = NULL, *cq = NULL, *cqk = NULL, *cqv = NULL;
    gear_calib_params p;
    gear_calib_params_init(&p);
    int json = 0;
    const cli_opt opts[] = {
        {"--in", OPT_STR, &in, 0, 0, NULL},
        {"--out", OPT_STR, &out, 0, 0, NULL},
        {"--cq", OPT_STR, &cq, 0, 0, NULL},
        {"--cq-k", OPT_STR, &cqk, 0, 0, NULL},
        {"--cq-v", OPT_STR, &cqv, 0, 0, NULL},
        {"--hc-group", OPT_UINT, &p.hc_group, 1, 65536, NULL},
        {"--hc-dim", OPT_UINT, &p.hc_dim, 1, 65536, NULL},
        {"--iters", OPT_UINT, &p.kmeans_iters, 1, 1000, NULL},
        {"--max-tokens", OPT_UINT, &p.max_tokens, 1, 1u << 24, NULL},
        {"--seed", OPT_U64, &p.seed, 0, UINT64_MAX, NULL},
        {"--json", OPT_FLAG, &json, 0, 0, NULL},
    };
    int rc = cli_parse(cmd, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), usage_calibrate);
    if (rc) return rc;
    if (!in || !out) return cli_usage_error(cmd, "--in and --out are required");
    if (!cq && !cqk && !cqv && !p.hc_group)
        return cli_usage_error(cmd, "nothing to learn: give --cq (or --cq-k/--cq-v) and/or "
                               "--hc-group with --hc-dim");
    if ((cq && (rc = set_cq(cmd, cq, &p, -1))) || (cqk && (rc = set_cq(cmd, cqk, &p, 0))) ||
        (cqv && (rc = set_cq(cmd, cqv, &p, 1))))
        return rc;
    char err[256], desc[128];
    st_file *sf = NULL;
    if (st_open(in, &sf, err, sizeof err)) {
        cli_error(cmd, "'%s': %s", in, err);
        return CLI_FAIL;
    }
    kvset s;
    memset(&s, 0, sizeof s);
    rc = kvset_load(cmd, in, sf, &s, desc, sizeof desc);
    st_close(sf);
    if (rc) return rc;
    for (unsigned l = 0; l < s.n_layer && !rc; l++)
        if (kvset_layer_id(&s, l) != (long)l) {
            cli_error(cmd, "'%s' must hold every layer 0..L-1 (a calibration is per layer); "
                      "it has %s", in, desc);
            rc = CLI_FAIL;
        }
    gear_calib *cal = NULL;
    gear_status st = GEAR_OK;
    double t0 = cli_now();
    if (!rc && (st = gear_calib_create(&p, s.n_layer, s.heads, s.head_dim, &cal)))
        rc = cli_gear_error(cmd, CLI_USAGE, st, "calibration settings");
    for (unsigned l = 0; l < s.n_layer && !rc; l++) {
        gear_tensor k, v;
        gear_tensor_init(&k, s.k[l], GEAR_F32, 3, s.heads, s.tokens[l], s.head_dim, 0);
        gear_tensor_init(&v, s.v[l], GEAR_F32, 3, s.heads, s.tokens[l], s.head_dim, 0);
        if ((st = gear_calib_add(cal, l, &k, &v, NULL)))
            rc = cli_gear_error(cmd, CLI_FAIL, st, "gear_calib_add (layer %u)", l);
    }
    if (!rc && (st = gear_calib_fit(cal))) rc = cli_gear_error(cmd, CLI_FAIL, st, "gear_calib_fit");
    double secs = cli_now() - t0;
    if (!rc && (st = gear_calib_save(cal, out)))
        rc = cli_gear_error(cmd, CLI_FAIL, st, "saving '%s'", out);
    gear_calib_info info;
    if (!rc && (st = gear_calib_info_get(cal, &info))) rc = cli_gear_error(cmd, CLI_FAIL, st, "info");
    if (!rc && json) {
        json_out j;
        jo_begin(&j, stdout);
        jo_str(&j, "in", in);
        jo_str(&j, "out", out);
        jo_uint(&j, "layers", info.n_layer);
        jo_uint(&j, "heads", info.n_head_kv);
        jo_uint(&j, "head_dim", info.head_dim);
        jo_uint(&j, "tokens", info.tokens);
        jo_uint(&j, "stored_heads", info.stored_heads);
        jo_uint(&j, "stored_dim", info.stored_dim);
        jo_uint(&j, "cq_dim_k", info.params.cq_dim[0]);
        jo_uint(&j, "cq_bits_k", info.params.cq_bits[0]);
        jo_uint(&j, "cq_dim_v", info.params.cq_dim[1]);
        jo_uint(&j, "cq_bits_v", info.params.cq_bits[1]);
        jo_num(&j, "hc_energy_k", info.hc_energy[0]);
        jo_num(&j, "hc_energy_v", info.hc_energy[1]);
        jo_num(&j, "cq_rel_err_k", info.cq_rel_err[0]);
        jo_num(&j, "cq_rel_err_v", info.cq_rel_err[1]);
        jo_uint(&j, "bytes", info.bytes);
        jo_num(&j, "seconds", secs);
        jo_end(&j);
    } else if (!rc) {
        printf("gear calibrate: %s: %u layers x %u KV heads x head_dim %u, %u tokens per layer\n",
               in, info.n_layer, info.n_head_kv, info.head_dim, info.tokens);
        if (p.hc_group)
            printf("  head compression: %u heads -> %u channels per group (cache stores %u x %u); "
                   "variance kept K %.4f, V %.4f\n", p.hc_group, p.hc_dim, info.stored_heads,
                   info.stored_dim, info.hc_energy[0], info.hc_energy[1]);
        for (int kv = 0; kv < 2; kv++)
            if (p.cq_dim[kv])
                printf("  %s codebooks: cq-%uc%ub, relative squared error %.4f\n", kv ? "V" : "K",
                       p.cq_dim[kv], p.cq_bits[kv], info.cq_rel_err[kv]);
        printf("  wrote %s: %zu bytes in %.1f s\n", out, info.bytes, secs);
    }
    gear_calib_free(cal);
    kvset_free(&s);
    return rc;
}
