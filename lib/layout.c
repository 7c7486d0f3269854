/*
 * layout.c - the block format (docs/FORMAT.md): section offsets, the
 * 32-byte header, CRC sealing, and validation of untrusted blocks.
 */
#include <math.h>
#include <string.h>
#include "internal.h"

/* Header field offsets. */
enum {
    H_BYTES = 0, H_CRC = 4, H_KIND = 8, H_BITS = 9, H_RANK = 10, H_FLAGS = 11, H_N = 12,
    H_D = 14, H_GROUP = 16, H_ITERS = 18, H_NOUT = 20, H_RATIO = 24, H_CQ = 28, H_RESERVED = 29
};
#define H_RESERVED_BYTES 3u

gear_status gear_block_layout_init(gear_block_layout *L, const gear_config *cfg, unsigned d)
{
    gear_status st = gear_config_validate(cfg, d);
    if (st) return st;
    if (cfg->bits == 0) return gear_block_layout_raw(L, cfg->kind, cfg->block, d, GEAR_F16);
    memset(L, 0, sizeof *L);
    unsigned n = cfg->block;
    L->kind = cfg->kind;
    L->n = n;
    L->d = d;
    L->bits = cfg->bits;
    L->rank = cfg->rank;
    L->iters = cfg->rank ? cfg->iters : 0;
    L->rows = cfg->kind == GEAR_KEY ? d : n;
    L->row_len = cfg->kind == GEAR_KEY ? n : d;
    L->group = gear_config_group(cfg, L->row_len);
    L->groups_per_row = (L->row_len + L->group - 1) / L->group;
    L->tail_len = L->row_len - (L->groups_per_row - 1) * L->group;
    L->k_full = gear_outliers_per_side(cfg->outlier_ratio, L->group);
    L->k_tail = gear_outliers_per_side(cfg->outlier_ratio, L->tail_len);
    L->outliers_per_row = 2 * (L->k_full * (L->groups_per_row - 1) + L->k_tail);
    L->n_outliers = L->rows * L->outliers_per_row;
    /* All sizes are bounded by n*d <= 65536, so no overflow is possible. */
    size_t off = GEAR_BLOCK_HEADER_BYTES, a = GEAR_BLOCK_ALIGN;
    size_t n_groups = (size_t)L->rows * L->groups_per_row, code_bytes;
    if (cfg->cq_dim) { /* CQ: one code per token and channel group, no scales */
        L->cq_dim = cfg->cq_dim;
        L->cq_groups = d / cfg->cq_dim;
        L->cq_row_bytes = (unsigned)gear_align_up(((size_t)L->cq_groups * L->bits + 7) / 8, 4);
        L->cb_head_floats = (size_t)L->cq_groups * ((size_t)1 << L->bits) * L->cq_dim;
        code_bytes = (size_t)n * L->cq_row_bytes;
        n_groups = 0;
    } else {
        L->row_bytes = (unsigned)gear_align_up(((size_t)L->row_len * L->bits + 7) / 8, 4);
        code_bytes = (size_t)L->rows * L->row_bytes;
    }
    L->off_codes = off;
    off = gear_align_up(off + code_bytes, a);
    L->off_scales = off;
    off = gear_align_up(off + 2 * n_groups, a);
    L->off_mins = off;
    off = gear_align_up(off + 2 * n_groups, a);
    L->off_oidx = off;
    off = gear_align_up(off + 2 * (size_t)L->n_outliers, a);
    L->off_oval = off;
    off = gear_align_up(off + 2 * (size_t)L->n_outliers, a);
    L->off_a = off;
    off = gear_align_up(off + 2 * (size_t)n * L->rank, a);
    L->off_b = off;
    off = gear_align_up(off + 2 * (size_t)d * L->rank, a);
    L->off_raw = 0;
    L->bytes = off;
    L->raw_dtype = 0;
    /* Remember the ratio for the header (needed to re-derive k on load). */
    L->ratio = cfg->outlier_ratio;
    return GEAR_OK;
}

gear_status gear_block_layout_raw(gear_block_layout *L, gear_kind kind, unsigned n, unsigned d,
                                  gear_dtype dtype)
{
    if (n == 0 || d == 0 || n > 65535 || d > 65535 || !gear_dtype_size(dtype))
        return gear_fail(GEAR_ERR_INVALID_ARG, "raw block %ux%u dtype %d invalid", n, d,
                         (int)dtype);
    memset(L, 0, sizeof *L);
    L->kind = kind;
    L->n = n;
    L->d = d;
    L->raw_dtype = dtype;
    L->rows = n;
    L->row_len = d;
    L->group = d;
    L->groups_per_row = 1;
    L->tail_len = d;
    L->off_raw = GEAR_BLOCK_HEADER_BYTES;
    L->bytes = gear_align_up(L->off_raw + (size_t)n * d * gear_dtype_size(dtype), GEAR_BLOCK_ALIGN);
    return GEAR_OK;
}

void gear_block_seal(const gear_block_layout *L, uint8_t *blk)
{
    int raw = L->bits == 0;
    gear_put_u32(blk + H_BYTES, (uint32_t)L->bytes);
    blk[H_KIND] = (uint8_t)L->kind;
    blk[H_BITS] = (uint8_t)L->bits;
    blk[H_RANK] = (uint8_t)L->rank;
    blk[H_FLAGS] = raw ? (uint8_t)(GEAR_BLOCK_RAW | L->raw_dtype << GEAR_BLOCK_DTYPE_SHIFT) : 0;
    gear_put_u16(blk + H_N, (uint16_t)L->n);
    gear_put_u16(blk + H_D, (uint16_t)L->d);
    gear_put_u16(blk + H_GROUP, (uint16_t)(raw ? 0 : L->group));
    gear_put_u16(blk + H_ITERS, (uint16_t)L->iters);
    gear_put_u32(blk + H_NOUT, L->n_outliers);
    gear_put_u32(blk + H_RATIO, raw ? 0 : gear_f32_bits(L->ratio));
    blk[H_CQ] = (uint8_t)L->cq_dim;
    memset(blk + H_RESERVED, 0, H_RESERVED_BYTES);
    gear_put_u32(blk + H_CRC, gear_crc32c(0, blk + 8, L->bytes - 8));
}

/* Every fp16 in [p, p+count) finite (and >= 0 when nonneg). */
GEAR_CLONES
static int halves_ok(const uint8_t *p, size_t count, int nonneg)
{
    /* branch-free, so that it vectorizes: parsing is on every load path */
    unsigned bad = 0, neg = nonneg ? 0x8000u : 0xffffu; /* h > 0x8000: below -0 */
    for (size_t i = 0; i < count; i++) {
        unsigned h = gear_get_u16(p + 2 * i);
        bad |= ((h & 0x7c00u) == 0x7c00u) | (h > neg);
    }
    return !bad;
}

/* Every fp16 of count within [-1, 1] (NaN and Inf fail too): the low-rank
 * factor A, whose columns the power iteration orthonormalizes.  With
 * |A| <= 1 and B in fp16, every low-rank term of a key is below r * 65504,
 * which the attention's overflow bound (lib/cache.c) relies on. */
GEAR_CLONES
static int halves_unit(const uint8_t *p, size_t count)
{
    unsigned bad = 0;
    for (size_t i = 0; i < count; i++) bad |= (gear_get_u16(p + 2 * i) & 0x7fffu) > 0x3c00u;
    return !bad;
}

/* Every element of a raw block of m elements finite. */
static int raw_finite(const uint8_t *p, size_t m, gear_dtype dt)
{
    if (dt == GEAR_F16) return halves_ok(p, m, 0);
    for (size_t i = 0; i < m; i++) {
        int bad = dt == GEAR_F32 ? (gear_get_u32(p + 4 * i) & 0x7f800000u) == 0x7f800000u
                                 : (gear_get_u16(p + 2 * i) & 0x7f80u) == 0x7f80u;
        if (bad) return 0;
    }
    return 1;
}

/* check_outliers for the common layout (one outlier per side, so a pair
 * per group; groups, groups per row and d powers of two, all groups the
 * same size; codes of 1, 2, 4 or 8 bits, which sit inside a byte), with
 * every test folded into one flag, a pair at a time, for constant kind
 * and bits (bits 0: CQ, no codes to test): 1 if all pass.  With a return
 * per test and a code lookup per outlier, the serial parse that
 * gear_decompress and gear_cache_load run over every block had taken
 * 1.2 us a gear2 block (Zen 4), a fifth of decompressing one.  A bad
 * position reads a code of its own group instead of past the row. */
static inline __attribute__((always_inline)) int pairs_ok(const gear_block_layout *L, const uint8_t *blk,
                                                          const int key, const unsigned bits)
{
    const uint8_t *idx = blk + L->off_oidx, *row = blk + L->off_codes;
    const unsigned sh = (unsigned)__builtin_ctz(L->d), dm = L->d - 1, G = L->groups_per_row;
    const unsigned gsz = L->group, n = L->n, mask = bits ? (1u << bits) - 1u : 0;
    unsigned bad = 0;
    for (unsigned r = 0; r < L->rows; r++, row += L->row_bytes)
        for (unsigned lo = 0; lo < G * gsz; lo += gsz, idx += 4) {
            unsigned f0 = gear_get_u16(idx), f1 = gear_get_u16(idx + 2);
            unsigned r0 = key ? f0 & dm : f0 >> sh, p0 = key ? f0 >> sh : f0 & dm;
            unsigned r1 = key ? f1 & dm : f1 >> sh, p1 = key ? f1 >> sh : f1 & dm;
            unsigned q0 = p0 - lo, q1 = p1 - lo; /* below lo: huge */
            bad |= (r0 != r) | (r1 != r) | (q0 >= gsz) | (q1 >= gsz) | (p1 <= p0);
            if (key) bad |= (p0 >= n) | (p1 >= n);
            if (bits) {
                unsigned b0 = (lo + (q0 & (gsz - 1))) * bits, b1 = (lo + (q1 & (gsz - 1))) * bits;
                bad |= ((row[b0 >> 3] >> (b0 & 7)) | (row[b1 >> 3] >> (b1 & 7))) & mask;
            }
        }
    return !bad;
}

static int outlier_pairs_ok(const gear_block_layout *L, const uint8_t *blk)
{
    const int key = L->kind == GEAR_KEY;
    const unsigned bits = L->cq_dim ? 0 : L->bits;
#define PAIRS(K)                                                                   \
    switch (bits) {                                                                \
    case 0: return pairs_ok(L, blk, K, 0);                                         \
    case 1: return pairs_ok(L, blk, K, 1);                                         \
    case 2: return pairs_ok(L, blk, K, 2);                                         \
    case 4: return pairs_ok(L, blk, K, 4);                                         \
    case 8: return pairs_ok(L, blk, K, 8);                                         \
    default: return 0; /* codes across bytes: the exact loop */                    \
    }
    if (key) PAIRS(1)
    PAIRS(0)
#undef PAIRS
}

/* Outliers: per row, per group, 2k entries with strictly increasing
 * positions inside that group, and (uniform codes) code 0 at each: the
 * fast attention kernels add the outlier minus the minimum that code 0
 * gives, where ref replaces the entry, so another code would make the
 * backends disagree on the same bytes. */
static gear_status check_outliers(const gear_block_layout *L, const uint8_t *blk)
{
    const uint8_t *idx = blk + L->off_oidx;
    size_t j = 0;
    /* t = flat / d by a shift where d is a power of two (a division per
     * outlier was most of a gear2 block's parse) */
    const unsigned d = L->d, sh = (d & (d - 1)) ? 0 : (unsigned)__builtin_ctz(d);
#define POW2(x) ((x) && !((x) & ((x) - 1)))
    if (L->k_full == 1 && L->k_tail == 1 && L->tail_len == L->group && POW2(d) && POW2(L->group) &&
        POW2(L->groups_per_row) && (L->cq_dim || L->bits == 1 || L->bits == 2 || L->bits == 4 || L->bits == 8) &&
        outlier_pairs_ok(L, blk))
        return GEAR_OK;
#undef POW2
    /* a bad outlier, or groups of two sizes: one test at a time, which
     * names what failed */
    for (unsigned r = 0; r < L->rows; r++) {
        for (unsigned g = 0; g < L->groups_per_row; g++) {
            unsigned last = g + 1 == L->groups_per_row;
            unsigned cnt = 2 * (last ? L->k_tail : L->k_full);
            unsigned lo = g * L->group, hi = lo + (last ? L->tail_len : L->group);
            long prev = -1;
            for (unsigned i = 0; i < cnt; i++, j++) {
                unsigned flat = gear_get_u16(idx + 2 * j);
                unsigned t = sh ? flat >> sh : flat / d, c = flat - t * d;
                unsigned row = L->kind == GEAR_KEY ? c : t, pos = L->kind == GEAR_KEY ? t : c;
                if (t >= L->n || row != r || pos < lo || pos >= hi || (long)pos <= prev)
                    return gear_fail(GEAR_ERR_FORMAT_CORRUPT,
                                     "outlier %zu has index %u outside its group or unsorted",
                                     j, flat);
                if (!L->cq_dim &&
                    gear_code_get(blk + L->off_codes + (size_t)r * L->row_bytes, L->bits, pos))
                    return gear_fail(GEAR_ERR_FORMAT_CORRUPT,
                                     "outlier %zu (index %u) has a nonzero code under it", j, flat);
                prev = pos;
            }
        }
    }
    return GEAR_OK;
}

gear_status gear_block_parse(const uint8_t *src, size_t len, gear_block_layout *L)
{
    if (len < GEAR_BLOCK_HEADER_BYTES)
        return gear_fail(GEAR_ERR_FORMAT_TRUNCATED, "block header needs %u bytes, %zu left",
                         GEAR_BLOCK_HEADER_BYTES, len);
    uint32_t bytes = gear_get_u32(src + H_BYTES);
    if (bytes < GEAR_BLOCK_HEADER_BYTES || bytes % GEAR_BLOCK_ALIGN)
        return gear_fail(GEAR_ERR_FORMAT_CORRUPT, "block size %u invalid", bytes);
    if (bytes > len)
        return gear_fail(GEAR_ERR_FORMAT_TRUNCATED, "block of %u bytes, only %zu left", bytes, len);
    uint32_t crc = gear_crc32c(0, src + 8, bytes - 8);
    if (crc != gear_get_u32(src + H_CRC))
        return gear_fail(GEAR_ERR_FORMAT_CRC, "block CRC-32C mismatch (stored %08x, computed %08x)",
                         gear_get_u32(src + H_CRC), crc);
    unsigned kind = src[H_KIND], bits = src[H_BITS], flags = src[H_FLAGS];
    unsigned n = gear_get_u16(src + H_N), d = gear_get_u16(src + H_D);
    static const uint8_t zeros[H_RESERVED_BYTES];
    if (kind > 1 || memcmp(src + H_RESERVED, zeros, H_RESERVED_BYTES))
        return gear_fail(GEAR_ERR_FORMAT_CORRUPT, "block header: bad kind or reserved field");
    gear_status st;
    if (flags & GEAR_BLOCK_RAW) {
        unsigned dt = (flags >> GEAR_BLOCK_DTYPE_SHIFT) & 3u;
        if (bits || src[H_RANK] || src[H_CQ] || (flags & ~0x07u) || dt > GEAR_BF16 ||
            gear_get_u16(src + H_GROUP) || gear_get_u16(src + H_ITERS) ||
            gear_get_u32(src + H_NOUT) || gear_get_u32(src + H_RATIO))
            return gear_fail(GEAR_ERR_FORMAT_CORRUPT, "raw block header: bad fields");
        st = gear_block_layout_raw(L, (gear_kind)kind, n, d, (gear_dtype)dt);
        if (st) return gear_fail(GEAR_ERR_FORMAT_CORRUPT, "raw block: bad shape %ux%u", n, d);
        /* the size first: the checks below read the whole layout */
        if (L->bytes != bytes)
            return gear_fail(GEAR_ERR_FORMAT_CORRUPT, "block size %u, layout says %zu", bytes,
                             L->bytes);
        /* No Inf or NaN in any dtype (the library never writes one: its
         * inputs are checked), and zero padding, so that a block loaded and
         * saved again gives the same bytes. */
        size_t m = (size_t)n * d, es = gear_dtype_size((gear_dtype)dt);
        if (!raw_finite(src + L->off_raw, m, (gear_dtype)dt))
            return gear_fail(GEAR_ERR_FORMAT_CORRUPT, "raw block holds Inf or NaN");
        for (size_t i = L->off_raw + m * es; i < L->bytes; i++)
            if (src[i]) return gear_fail(GEAR_ERR_FORMAT_CORRUPT, "raw block: padding not zero");
    } else {
        if (flags)
            return gear_fail(GEAR_ERR_FORMAT_CORRUPT, "block header: unknown flags %02x", flags);
        gear_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.kind = (gear_kind)kind;
        cfg.bits = bits;
        cfg.rank = src[H_RANK];
        cfg.group = gear_get_u16(src + H_GROUP);
        cfg.iters = gear_get_u16(src + H_ITERS);
        cfg.block = n;
        cfg.outlier_ratio = gear_bits_f32(gear_get_u32(src + H_RATIO));
        cfg.cq_dim = src[H_CQ];
        if (bits == 0 || cfg.group == 0 || (cfg.rank && !cfg.iters) || (!cfg.rank && cfg.iters))
            return gear_fail(GEAR_ERR_FORMAT_CORRUPT, "block header: bad bits/group/rank/iters");
        st = gear_block_layout_init(L, &cfg, d);
        if (st) return gear_fail(GEAR_ERR_FORMAT_CORRUPT, "block header: %s",
                                 gear_last_error_message());
        if (L->group != cfg.group || L->n_outliers != gear_get_u32(src + H_NOUT))
            return gear_fail(GEAR_ERR_FORMAT_CORRUPT, "block header: group/outlier count "
                             "inconsistent");
        if (L->bytes != bytes) /* before reading the sections the layout places */
            return gear_fail(GEAR_ERR_FORMAT_CORRUPT, "block size %u, layout says %zu", bytes,
                             L->bytes);
        size_t ng = L->cq_dim ? 0 : (size_t)L->rows * L->groups_per_row;
        if (!halves_ok(src + L->off_scales, ng, 1) || !halves_ok(src + L->off_mins, ng, 0) ||
            !halves_ok(src + L->off_oval, L->n_outliers, 0) ||
            !halves_ok(src + L->off_b, (size_t)d * L->rank, 0))
            return gear_fail(GEAR_ERR_FORMAT_CORRUPT, "block holds a bad fp16 scale/value/factor");
        if (!halves_unit(src + L->off_a, (size_t)n * L->rank))
            return gear_fail(GEAR_ERR_FORMAT_CORRUPT, "block's low-rank factor A has an entry beyond "
                             "+-1 (its columns are orthonormal)");
        st = check_outliers(L, src);
        if (st) return st;
    }
    return GEAR_OK;
}

/* Raw sections through the vectorized conversions of convert.c. */
void gear_block_pack_raw(const gear_block_layout *L, const float *x, uint8_t *blk)
{
    size_t m = (size_t)L->n * L->d;
    uint8_t *p = blk + L->off_raw;
    switch ((gear_dtype)L->raw_dtype) {
    case GEAR_F32:
        gear_floats_store_le(x, m, p);
        break;
    case GEAR_F16:
    case GEAR_BF16:
        gear_floats_to_halves(x, m, L->raw_dtype == GEAR_BF16, p);
        break;
    }
}

void gear_block_unpack_raw(const gear_block_layout *L, const uint8_t *blk, float *x)
{
    size_t m = (size_t)L->n * L->d;
    const uint8_t *p = blk + L->off_raw;
    switch ((gear_dtype)L->raw_dtype) {
    case GEAR_F32:
        gear_floats_load_le(p, m, x);
        break;
    case GEAR_F16:
    case GEAR_BF16:
        gear_halves_to_floats(p, m, L->raw_dtype == GEAR_BF16, x);
        break;
    }
}

void gear_block_raw_f16_rows(const gear_block_layout *L, const uint8_t *blk, uint16_t *out, size_t ld)
{
    const uint8_t *p = blk + L->off_raw;
    for (unsigned t = 0; t < L->n; t++, p += 2 * (size_t)L->d, out += ld) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        memcpy(out, p, 2 * (size_t)L->d); /* stored little-endian */
#else
        for (unsigned c = 0; c < L->d; c++) out[c] = gear_get_u16(p + 2 * (size_t)c);
#endif
    }
}

/* Config record: kind u8, bits u8, rank u8, 0 u8, group u32, ratio f32,
 * iters u32, block u32, 0 u32, seed u64. */
void gear_config_write(const gear_config *cfg, uint8_t *p)
{
    memset(p, 0, GEAR_CONFIG_BYTES);
    p[0] = (uint8_t)cfg->kind;
    p[1] = (uint8_t)cfg->bits;
    p[2] = (uint8_t)cfg->rank;
    p[3] = (uint8_t)cfg->cq_dim;
    gear_put_u32(p + 4, cfg->group);
    gear_put_u32(p + 8, gear_f32_bits(cfg->outlier_ratio));
    gear_put_u32(p + 12, cfg->iters);
    gear_put_u32(p + 16, cfg->block);
    gear_put_u64(p + 24, cfg->seed);
}

gear_status gear_config_read(const uint8_t *p, unsigned d, gear_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    if (p[0] > 1 || gear_get_u32(p + 20))
        return gear_fail(GEAR_ERR_FORMAT_CORRUPT, "config record: bad kind or reserved bytes");
    cfg->kind = (gear_kind)p[0];
    cfg->bits = p[1];
    cfg->rank = p[2];
    cfg->cq_dim = p[3];
    cfg->group = gear_get_u32(p + 4);
    cfg->outlier_ratio = gear_bits_f32(gear_get_u32(p + 8));
    cfg->iters = gear_get_u32(p + 12);
    cfg->block = gear_get_u32(p + 16);
    cfg->seed = gear_get_u64(p + 24);
    if (gear_config_validate(cfg, d) != GEAR_OK)
        return gear_fail(GEAR_ERR_FORMAT_CORRUPT, "config record invalid: %s",
                         gear_last_error_message());
    return GEAR_OK;
}

gear_status gear_block_info_get(const gear_config *cfg, unsigned d, gear_block_info *info)
{
    gear_block_layout L;
    if (!info) return gear_fail(GEAR_ERR_INVALID_ARG, "gear_block_info_get: info is NULL");
    gear_status st = gear_block_layout_init(&L, cfg, d);
    if (st) return st;
    double nd = (double)L.n * L.d;
    memset(info, 0, sizeof *info);
    info->bytes = L.bytes;
    info->n = L.n;
    info->d = L.d;
    info->group = L.group;
    info->groups_per_row = L.groups_per_row;
    info->rows = L.rows;
    info->outliers = L.n_outliers;
    info->bpe = 8.0 * (double)L.bytes / nd;
    if (L.bits == 0) {
        info->bpe_formula = 16.0;
    } else {
        /* Groups per entry: rows*groups_per_row/(n*d); equals 1/g when g divides the row. */
        /* CQ: b bits per c channels and no scales (codebooks are per
         * cache, counted in gear_cache_stats.calib_bytes). */
        double q = L.cq_dim ? (double)L.bits / L.cq_dim
                            : L.bits + 32.0 * L.rows * L.groups_per_row / nd;
        info->bpe_formula = q + 32.0 * L.n_outliers / nd + 16.0 * L.rank * (L.n + L.d) / nd;
    }
    double payload_bytes = info->bpe_formula * nd / 8.0;
    info->header_bytes = L.bytes - (size_t)(payload_bytes + 0.5);
    info->outlier_fraction = L.n_outliers / nd;
    return GEAR_OK;
}

int gear_block_layout_equal(const gear_block_layout *a, const gear_block_layout *b)
{
    return a->kind == b->kind && a->n == b->n && a->d == b->d && a->bits == b->bits &&
           a->raw_dtype == b->raw_dtype && a->rank == b->rank && a->iters == b->iters &&
           a->group == b->group && a->n_outliers == b->n_outliers && a->bytes == b->bytes &&
           a->cq_dim == b->cq_dim &&
           (a->bits == 0 || a->ratio == b->ratio);
}
