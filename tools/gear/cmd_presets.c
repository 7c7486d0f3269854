/* cmd_presets.c - `gear presets`: every preset's knobs and bits per entry. */
#include <stdlib.h>
#include "cli.h"
#include "json.h"

void usage_presets(FILE *f)
{
    fprintf(f, "Usage: gear presets [--head-dim D] [--block N] [--json]\n\n"
               "List the presets with their key (K) and value (V) settings and the bits per\n"
               "entry (bpe) of one compressed block of N tokens x D channels.\n\n"
               "  --head-dim D   head dimension (default 128)\n"
               "  --block N      tokens per block instead of each preset's own (64)\n"
               "  --json         one JSON object per preset, with \"k\" and \"v\" objects\n\n"
               "Columns: bits (0 = fp16), group (effective size: keys group tokens of a\n"
               "channel, values channels of a token), outliers (ratio s; k = round(s*g/2)\n"
               "kept per side of each group), rank and iters of the low-rank part, block.\n"
               "bpe counts everything a block stores, header included; formula is DESIGN's\n"
               "b + 32/g + 32*o/(n*d) + 16*r*(n+d)/(n*d), without the header; outl%% is the\n"
               "stored outlier fraction; K+V is the average bpe of keys and values.\n");
}

/* One kind's knobs and block facts (JSON object or table columns). */
static void emit_kind(json_out *j, const char *label, const gear_config *c,
                      const gear_block_info *b)
{
    if (j) {
        jo_obj(j, label);
        jo_uint(j, "bits", c->bits);
        jo_uint(j, "group", b->group);
        jo_num(j, "outliers", cli_ratio(c->outlier_ratio));
        jo_uint(j, "rank", c->rank);
        jo_uint(j, "iters", c->iters);
        jo_uint(j, "block", c->block);
        jo_num(j, "bpe", b->bpe);
        jo_num(j, "bpe_formula", b->bpe_formula);
        jo_uint(j, "header_bits", 8ull * b->header_bytes);
        jo_uint(j, "block_bytes", b->bytes);
        jo_num(j, "outlier_fraction", b->outlier_fraction);
        jo_end(j);
    } else {
        /* fp16 blocks have no groups, outliers or rank: show '-' rather than unused knobs. */
        char g[16] = "-", s[16] = "-", r[16] = "-", it[16] = "-";
        if (c->bits) {
            snprintf(g, sizeof g, "%u", b->group);
            snprintf(s, sizeof s, "%.3f", (double)c->outlier_ratio);
            snprintf(r, sizeof r, "%u", c->rank);
            if (c->rank) snprintf(it, sizeof it, "%u", c->iters);
        }
        printf("%-2s %4u %5s %8s %4s %5s %5u %7.3f %7.3f %6.3f", label, c->bits, g, s, r, it,
               c->block, b->bpe, b->bpe_formula, 100.0 * b->outlier_fraction);
    }
}

int cmd_presets(int argc, char **argv)
{
    const char *cmd = argv[0];
    int json = 0, block_given = 0;
    unsigned head_dim = 128, block = 64;
    const cli_opt opts[] = {
        {"--json", OPT_FLAG, &json, 0, 0, NULL},
        {"--head-dim", OPT_UINT, &head_dim, 1, 65535, NULL},
        {"--block", OPT_UINT, &block, 1, 65535, &block_given},
    };
    int rc = cli_parse(cmd, argc, argv, opts, 3, usage_presets);
    if (rc) return rc;

    /* Everything is computed first, so that a bad knob prints no partial table. */
    int n = gear_preset_count();
    gear_config (*cfg)[2] = malloc((size_t)(n > 0 ? n : 1) * sizeof *cfg);
    gear_block_info (*info)[2] = malloc((size_t)(n > 0 ? n : 1) * sizeof *info);
    if (!cfg || !info) {
        cli_error(cmd, "out of memory");
        rc = CLI_FAIL;
        goto done;
    }
    for (int i = 0; i < n; i++) {
        if ((rc = cli_preset(cmd, gear_preset_name(i), &cfg[i][0], &cfg[i][1]))) goto done;
        for (int k = 0; k < 2; k++) {
            if (block_given) cfg[i][k].block = block;
            if ((rc = cli_validate(cmd, &cfg[i][k], head_dim)) ||
                (rc = cli_block_info(cmd, &cfg[i][k], head_dim, &info[i][k])))
                goto done;
        }
    }
    if (!json)
        printf("%-7s %-2s %4s %5s %8s %4s %5s %5s %7s %7s %6s %7s\n", "preset", "kv", "bits",
               "group", "outliers", "rank", "iters", "block", "bpe", "formula", "outl%", "K+V");
    for (int i = 0; i < n; i++) {
        const char *name = gear_preset_name(i);
        const gear_block_info *b = info[i];
        double avg = 0.5 * (b[0].bpe + b[1].bpe);
        if (json) {
            json_out j;
            jo_begin(&j, stdout);
            jo_str(&j, "preset", name);
            jo_uint(&j, "head_dim", head_dim);
            emit_kind(&j, "k", &cfg[i][0], &b[0]);
            emit_kind(&j, "v", &cfg[i][1], &b[1]);
            jo_num(&j, "bpe", avg);
            jo_num(&j, "bpe_formula", 0.5 * (b[0].bpe_formula + b[1].bpe_formula));
            jo_end(&j);
        } else {
            printf("%-7s ", name);
            emit_kind(NULL, "K", &cfg[i][0], &b[0]);
            printf(" %7.3f\n%-7s ", avg, "");
            emit_kind(NULL, "V", &cfg[i][1], &b[1]);
            printf("\n");
        }
    }
    if (!json) printf("(head_dim %u: bpe of one block of 'block' tokens x %u channels, header "
                      "included)\n", head_dim, head_dim);
    rc = CLI_OK;
done:
    free(cfg);
    free(info);
    return rc;
}
