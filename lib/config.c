/* config.c - presets and validation of compression knobs. */
#include <math.h>
#include <string.h>
#include "internal.h"

typedef struct preset {
    const char *name;
    unsigned bits, group; /* group 0 = whole axis (KCVT) */
    float outliers;
    unsigned rank;
    unsigned cq_dim;      /* Coupled Quantization: channels per code */
} preset;

/* DESIGN s2: KIVI backbone g=64 per channel (K) / per token (V); KCVT one
 * group per row; GEAR adds 2% outliers and rank 2 from 3 power iterations. */
static const preset presets[] = {
    {"fp16", 0, 0, 0.0f, 0, 0},    {"kivi2", 2, 64, 0.0f, 0, 0},   {"kivi4", 4, 64, 0.0f, 0, 0},
    {"kcvt4", 4, 0, 0.0f, 0, 0},   {"gear2", 2, 64, 0.02f, 2, 0},  {"gearl2", 2, 64, 0.0f, 2, 0},
    {"gear4", 4, 0, 0.02f, 2, 0},  {"gearl4", 4, 0, 0.0f, 2, 0},
    /* CQ (arXiv 2405.03917): 8-bit codes of 2, 4, 8 channels = 4, 2, 1 bits
     * per channel.  Any cq-<c>c<b>b parses; these are the listed ones. */
    {"cq-2c8b", 8, 0, 0.0f, 0, 2}, {"cq-4c8b", 8, 0, 0.0f, 0, 4}, {"cq-8c8b", 8, 0, 0.0f, 0, 8},
};
#define N_PRESETS (int)(sizeof presets / sizeof presets[0])

int gear_preset_count(void) { return N_PRESETS; }

const char *gear_preset_name(int i) { return i >= 0 && i < N_PRESETS ? presets[i].name : NULL; }

/* cq-<c>c<b>b with c in 1..GEAR_CQ_MAX_DIM and b in 1..8, digits only. */
static int parse_cq(const char *name, preset *p)
{
    unsigned c = 0, b = 0;
    const char *s = name;
    if (strncmp(s, "cq-", 3)) return 0;
    s += 3;
    if (*s < '1' || *s > '9') return 0;
    while (*s >= '0' && *s <= '9' && c <= GEAR_CQ_MAX_DIM) c = c * 10 + (unsigned)(*s++ - '0');
    if (*s++ != 'c' || *s < '1' || *s > '9') return 0;
    while (*s >= '0' && *s <= '9' && b <= 8) b = b * 10 + (unsigned)(*s++ - '0');
    if (strcmp(s, "b") || c > GEAR_CQ_MAX_DIM || b > 8) return 0;
    memset(p, 0, sizeof *p);
    p->name = name;
    p->bits = b;
    p->cq_dim = c;
    return 1;
}

gear_status gear_config_preset(const char *name, gear_kind kind, gear_config *cfg)
{
    if (!name || !cfg) return gear_fail(GEAR_ERR_INVALID_ARG, "gear_config_preset: NULL argument");
    if (kind != GEAR_KEY && kind != GEAR_VALUE)
        return gear_fail(GEAR_ERR_INVALID_ARG, "gear_config_preset: kind %d is not GEAR_KEY or "
                         "GEAR_VALUE", (int)kind);
    preset p;
    int found = 0;
    for (int i = 0; i < N_PRESETS && !found; i++)
        if (!strcmp(name, presets[i].name)) p = presets[i], found = 1;
    if (!found) found = parse_cq(name, &p);
    if (found) {
        memset(cfg, 0, sizeof *cfg);
        cfg->kind = kind;
        cfg->bits = p.bits;
        cfg->group = p.group;
        cfg->outlier_ratio = p.outliers;
        cfg->rank = p.rank;
        cfg->cq_dim = p.cq_dim;
        cfg->iters = 3;
        cfg->block = 64;
        cfg->seed = 0;
        return GEAR_OK;
    }
    return gear_fail(GEAR_ERR_UNKNOWN_PRESET, "unknown preset '%s' (try `gear presets`)", name);
}

gear_status gear_config_validate(const gear_config *cfg, unsigned d)
{
    if (!cfg) return gear_fail(GEAR_ERR_INVALID_ARG, "config is NULL");
    if (cfg->kind != GEAR_KEY && cfg->kind != GEAR_VALUE)
        return gear_fail(GEAR_ERR_INVALID_ARG, "config kind %d is not GEAR_KEY or GEAR_VALUE",
                         (int)cfg->kind);
    unsigned b = cfg->bits;
    if (cfg->cq_dim) {
        if (b < 1 || b > 8)
            return gear_fail(GEAR_ERR_INVALID_ARG, "CQ code bits %u not in 1..8", b);
        if (cfg->cq_dim > GEAR_CQ_MAX_DIM || (d && d % cfg->cq_dim))
            return gear_fail(GEAR_ERR_INVALID_ARG, "CQ channels per code %u must be at most %u "
                             "and divide head_dim %u", cfg->cq_dim, GEAR_CQ_MAX_DIM, d);
    } else if (!(b == 0 || b == 1 || b == 2 || b == 3 || b == 4 || b == 8))
        return gear_fail(GEAR_ERR_INVALID_ARG, "bits %u not supported (0=fp16, 1, 2, 3, 4, 8)", b);
    if (d == 0 || d > 65535)
        return gear_fail(GEAR_ERR_INVALID_ARG, "head_dim %u not in 1..65535", d);
    if (cfg->block == 0 || cfg->block > 65535)
        return gear_fail(GEAR_ERR_INVALID_ARG, "block %u not in 1..65535", cfg->block);
    if ((uint64_t)cfg->block * d > GEAR_BLOCK_MAX_ENTRIES)
        return gear_fail(GEAR_ERR_INVALID_ARG, "block*head_dim = %u*%u exceeds %u entries",
                         cfg->block, d, GEAR_BLOCK_MAX_ENTRIES);
    if (b == 0) {
        if (cfg->rank || cfg->outlier_ratio != 0.0f)
            return gear_fail(GEAR_ERR_INVALID_ARG, "bits 0 (fp16) takes no outliers or rank");
        return GEAR_OK;
    }
    if (cfg->group > 65535)
        return gear_fail(GEAR_ERR_INVALID_ARG, "group %u too large (max 65535)", cfg->group);
    if (!(cfg->outlier_ratio >= 0.0f && cfg->outlier_ratio <= 1.0f))
        return gear_fail(GEAR_ERR_INVALID_ARG, "outlier ratio %g not in [0, 1]",
                         (double)cfg->outlier_ratio);
    unsigned mn = cfg->block < d ? cfg->block : d;
    if (cfg->rank > mn)
        return gear_fail(GEAR_ERR_INVALID_ARG, "rank %u exceeds min(block, head_dim) = %u",
                         cfg->rank, mn);
    if (cfg->rank > 255)
        return gear_fail(GEAR_ERR_INVALID_ARG, "rank %u too large (max 255)", cfg->rank);
    if (cfg->rank && (cfg->iters < 1 || cfg->iters > 64))
        return gear_fail(GEAR_ERR_INVALID_ARG, "iters %u not in 1..64 (rank %u)", cfg->iters,
                         cfg->rank);
    return GEAR_OK;
}

unsigned gear_config_group(const gear_config *cfg, unsigned row_len)
{
    return cfg->group == 0 || cfg->group > row_len ? row_len : cfg->group;
}

unsigned gear_outliers_per_side(float ratio, unsigned m)
{
    double k = floor((double)ratio * m / 2.0 + 0.5);
    return k > m / 2 ? m / 2 : (unsigned)k;
}
