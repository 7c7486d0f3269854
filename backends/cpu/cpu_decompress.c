/*
 * cpu_decompress.c - reconstruction of one block, Q^ + S + A B^T, with the
 * arithmetic of ref (code * scale + min as one fmaf, outliers overwrite,
 * the low-rank sum as an fmaf chain over the rank in order), so codes and
 * outliers decode bit-identically; laid out so the loops vectorize:
 * groups are decoded along their rows, keys transposed in tiles after.
 * CQ blocks decode by centroid lookup (cpu_cq.c), the rest is shared.
 */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "cpu.h"
#include "cpu_simd.h"

/* dst[i] = gear_half_sat(src[i]): the bit selects vectorize. */
GEAR_CLONES
static void halves_sat(const float *src, size_t n, uint16_t *dst)
{
    for (size_t i = 0; i < n; i++) dst[i] = gear_half_sat(src[i]);
}

void gear_cpu_halves_sat(const float *src, size_t n, uint16_t *dst)
{
#ifdef GEAR_CPU_AVX512
    if (CPU_AVX2) {
        gear_cpu_halves_sat_avx2(src, n, dst);
        return;
    }
#endif
    halves_sat(src, n, dst);
}

/* y[i] = fmaf(x[i], a, b) */
GEAR_CLONES
static void fma_row(float *y, const float *x, float a, float b, unsigned n)
{
    for (unsigned i = 0; i < n; i++) y[i] = fmaf(x[i], a, b);
}

/* out[t][j] += sum_c a[t][c] bt[c][j] (fmaf chain over c from 0, as ref),
 * the chain advanced for a whole row at once so that it vectorizes over j */
GEAR_CLONES
static void lowrank_add(float *out, const float *a, const float *bt, unsigned n, unsigned d, unsigned r,
                        float *s)
{
    for (unsigned t = 0; t < n; t++) {
        float *o = out + (size_t)t * d;
        const float *at = a + (size_t)t * r;
        for (unsigned j = 0; j < d; j++) s[j] = 0.0f;
        for (unsigned c = 0; c < r; c++) {
            const float *b = bt + (size_t)c * d;
            for (unsigned j = 0; j < d; j++) s[j] = fmaf(at[c], b[j], s[j]);
        }
        for (unsigned j = 0; j < d; j++) o[j] += s[j];
    }
}

/* dst (cols x rows) = transpose of src (rows x cols), in 16x16 tiles */
GEAR_CLONES
static void transpose(const float *src, unsigned rows, unsigned cols, float *dst)
{
    for (unsigned r0 = 0; r0 < rows; r0 += 16)
        for (unsigned c0 = 0; c0 < cols; c0 += 16) {
            unsigned r1 = r0 + 16 < rows ? r0 + 16 : rows, c1 = c0 + 16 < cols ? c0 + 16 : cols;
            for (unsigned r = r0; r < r1; r++)
                for (unsigned c = c0; c < c1; c++) dst[(size_t)c * rows + r] = src[(size_t)r * cols + c];
        }
}

/* dst[j] = fmaf(code j, dl, mn) for `words` 32-bit words of a row of
 * `bits`-bit codes; bits is a constant where this is inlined, so the
 * shifts are per-lane constants and a vector of codes comes from one
 * broadcast word. */
CPU_INLINE void decode_bits(const uint8_t *row, const unsigned bits, unsigned words, float dl,
                            float mn, float *restrict dst)
{
    static const uint32_t shifts[3][16] = {
        {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30},
        {0, 4, 8, 12, 16, 20, 24, 28},
        {0, 8, 16, 24}};
    const unsigned per = 32 / bits;
    const uint32_t mask = (1u << bits) - 1u, *sh = shifts[bits == 2 ? 0 : bits == 4 ? 1 : 2];
    for (unsigned w = 0; w < words; w++) {
        uint32_t v = (uint32_t)row[4 * w] | (uint32_t)row[4 * w + 1] << 8 |
                     (uint32_t)row[4 * w + 2] << 16 | (uint32_t)row[4 * w + 3] << 24, b[16];
        for (unsigned j = 0; j < per; j++) b[j] = v;
        for (unsigned j = 0; j < per; j++) dst[w * per + j] = fmaf((float)((b[j] >> sh[j]) & mask), dl, mn);
    }
}

/* The same for len codes of a 2-, 4- or 8-bit row from a word boundary;
 * 0 if the group does not have that shape. */
GEAR_CLONES
static int decode_words(const uint8_t *row, unsigned bits, unsigned len, float dl, float mn,
                        float *restrict dst)
{
    if ((bits != 2 && bits != 4 && bits != 8) || len % (32 / bits)) return 0;
    unsigned words = len / (32 / bits);
    if (bits == 2) decode_bits(row, 2, words, dl, mn, dst);
    else if (bits == 4) decode_bits(row, 4, words, dl, mn, dst);
    else decode_bits(row, 8, words, dl, mn, dst);
    return 1;
}

/* Q^ of a uniform block (outliers not restored); tmp: n*d floats of
 * scratch for keys. */
static void decode_uniform(const gear_block_layout *L, const uint8_t *blk, float *out, float *tmp)
{
#ifdef GEAR_CPU_AVX512
    if (CPU_AVX512 && L->kind == GEAR_KEY && (L->bits == 2 || L->bits == 4 || L->bits == 8) && L->d % 16 == 0 &&
        L->n % 16 == 0 && L->group % 16 == 0) {
        gear_cpu_decode_keys_avx512(L, blk, out);
        return;
    }
#endif
    /* keys decode along their rows (channels) into tmp, then transpose */
    if (L->kind != GEAR_KEY) tmp = out;
    float codes[1024]; /* one group's codes at a time */
    for (unsigned row = 0; row < L->rows; row++) {
        const uint8_t *cr = blk + L->off_codes + (size_t)row * L->row_bytes;
        float *dst = tmp + (size_t)row * L->row_len;
        for (unsigned g = 0; g < L->groups_per_row; g++) {
            size_t gi = (size_t)row * L->groups_per_row + g;
            unsigned lo = g * L->group, len = g + 1 == L->groups_per_row ? L->row_len - lo : L->group;
            float dl = gear_half_to_float(cpu_u16(blk + L->off_scales + 2 * gi));
            float mn = gear_half_to_float(cpu_u16(blk + L->off_mins + 2 * gi));
#ifdef GEAR_CPU_AVX512
            if (CPU_AVX512 && (L->bits == 2 || L->bits == 4 || L->bits == 8) && lo % 16 == 0 && len % 16 == 0) {
                gear_cpu_decode_avx512(cr + (size_t)lo * L->bits / 8, L->bits, len, dl, mn, dst + lo);
                continue;
            }
#endif
            if ((size_t)lo * L->bits % 32 == 0 &&
                decode_words(cr + (size_t)lo * L->bits / 8, L->bits, len, dl, mn, dst + lo))
                continue;
            for (unsigned p = 0; p < len; p += 1024) {
                unsigned m = len - p < 1024 ? len - p : 1024;
                gear_cpu_unpack(cr, L->bits, lo + p, m, codes);
                fma_row(dst + lo + p, codes, dl, mn, m);
            }
        }
    }
    if (L->kind == GEAR_KEY) {
#ifdef GEAR_CPU_AVX512
        if (CPU_AVX512_COMPRESS && L->rows % 16 == 0 && L->row_len % 16 == 0)
            gear_cpu_transpose_avx512(tmp, L->rows, L->row_len, out);
        else
#endif
            transpose(tmp, L->rows, L->row_len, out);
    }
}

gear_status gear_cpu_reconstruct_buf(const gear_block_layout *L, const uint8_t *blk, float *out, cpu_buf *buf)
{
    unsigned n = L->n, d = L->d, r = L->rank;
    size_t sz[2] = {sizeof(float) * ((size_t)n * d + 16), sizeof(float) * ((size_t)n * r + (size_t)d * r + d)};
    void *p[2];
    if (!gear_cpu_carve(buf, 2, sz, p)) return GEAR_ERR_NO_MEMORY;
    if (L->cq_dim) {
        if (!L->codebook) return GEAR_ERR_INVALID_ARG;
        gear_cpu_cq_decode(L, blk, out);
    } else {
        decode_uniform(L, blk, out, p[0]);
    }
    for (unsigned j = 0; j < L->n_outliers; j++)
        out[cpu_u16(blk + L->off_oidx + 2 * j)] = gear_half_to_float(cpu_u16(blk + L->off_oval + 2 * j));
    if (!r) return GEAR_OK;
    float *a = p[1];
    float *bt = a + (size_t)n * r, *row = bt + (size_t)d * r;
    for (size_t i = 0; i < (size_t)n * r; i++) a[i] = gear_half_to_float(cpu_u16(blk + L->off_a + 2 * i));
    for (unsigned j = 0; j < d; j++)
        for (unsigned c = 0; c < r; c++)
            bt[(size_t)c * d + j] = gear_half_to_float(cpu_u16(blk + L->off_b + 2 * ((size_t)j * r + c)));
#ifdef GEAR_CPU_AVX512
    if (CPU_AVX512 && d % 16 == 0) {
        gear_cpu_lowrank_add_avx512(out, a, bt, n, d, r);
        return GEAR_OK;
    }
#endif
    lowrank_add(out, a, bt, n, d, r, row);
    return GEAR_OK;
}

gear_status gear_cpu_reconstruct(void *state, const gear_block_layout *L, const uint8_t *blk,
                                 float *out)
{
    if (!state) { /* called like ref's slot, without a context: scratch of its own */
        cpu_buf b = {NULL, 0};
        gear_status st = gear_cpu_reconstruct_buf(L, blk, out, &b);
        free(b.p);
        return st;
    }
    cpu_ws *ws = gear_cpu_ws_get(state, 1);
    if (!ws) return GEAR_ERR_NO_MEMORY;
    gear_status st = gear_cpu_reconstruct_buf(L, blk, out, &ws->thr[0].b[0]);
    gear_cpu_ws_put(state, ws);
    return st;
}
