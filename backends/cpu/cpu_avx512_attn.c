/*
 * cpu_avx512_attn.c - AVX-512 decode attention over 2-bit blocks with
 * groups of 64 (kivi2, and gear2's outliers and low-rank factors: ranks up
 * to 8, k outliers per side, up to 2048 a block: blk2, blk2big) and, in
 * the fixed-point kernel, 4-bit ones (kivi4, kcvt4, gear4), one (block,
 * KV head) at a time for every query row (two heads side by side for a
 * single row at head dim 64 without outliers or rank: attend_fix_pair).  Compiled with AVX-512
 * flags, called only after the run-time CPU check (cpu_attention.c).
 *
 * Codes are expanded 64 at a time from 16 bytes: vpmovzxbd puts byte i in
 * lane i and two table permutes per nibble pick its 2-bit fields, so vector
 * j holds code 4i+j in lane i ("permuted" order).  Key scores are put back
 * in token order once per row (8 permutes); value sums stay permuted in the
 * output rows until gear_cpu_values_unpermute.  Outlier and low-rank terms
 * of values go to a second, natural-order accumulator (onat).
 *
 * Where the CPU has VBMI, VNNI and DQ (head dims 64, 80, 96, 128, 256), the codes enter
 * through int8 dot products against 16-bit fixed-point weights instead
 * (key_scores_fix, values_fix below): same layout, same permuted order.
 * That kernel also takes 4-bit codes (kivi4, kcvt4, gear4): 16 bytes hold
 * 32 codes, so 64 are two slices of two nibble planes, and vector 2h+j
 * holds code 32h+2i+j in lane i; and value groups of a whole row.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>
#include "cpu.h"
#include "cpu_simd.h"

#define INLINE static inline __attribute__((always_inline))
#define NB 64       /* tokens per block */
#define MAXD 256    /* largest head dim taken (gear_cpu_attn2_fits) */
#define QUAD 4      /* query rows per pass: 16 accumulators */
#define RMAX 4      /* largest low rank in blk2 (blk2big: RBIG) */

/* Per-block fp32 copies shared by a block's row quads.  The low-rank
 * columns and the outliers share x: A_k (rank x 64), B_k (rank x d), the
 * outliers, each at an offset of the layout (lowrank_b, outliers_at), with
 * the rank-2 offsets of every layout up to rank 2.  The struct's size and
 * the offsets of rank 2 stay what they were when it held fixed arrays for
 * rank 2 and one outlier per side: a few hundred bytes more on this stack
 * frame made gear2 and even kivi2 (which touches none of it) 6-10 % slower
 * at G = 4 (Zen 4, twentieth session), by where the other arrays landed. */
#define XFLOATS (2 * NB + 4 * MAXD)
#define OMAX (2 * MAXD) /* most outliers a block may have here */
typedef struct blk2 {
    float dl[MAXD], mn[MAXD];        /* scales, minima: [row][group] */
    float dlT[MAXD], mnT[MAXD];      /* values: [group][token] */
    float x[XFLOATS];                /* A_k, B_k, outlier value minus its group minimum */
    uint8_t ot[OMAX], oc[OMAX];      /* outlier token, channel (< 256) */
} blk2;

/* Layouts beyond blk2 (rank 5 to 8, or more outliers: gear2 at outlier
 * ratio 0.1 and head dim 128 has 768 a block) take a larger copy in
 * kernels of their own (gen == 2: attend_fix_big, attend_flt_big), so that
 * the other kernels keep their stack frames.  The kernels get a pointer
 * to its first member and find the larger arrays through blk_x, blk_ot and
 * blk_oc.  Two of them (a block pair) are 64 KiB: they live in the
 * per-thread workspace (gear_attn2_block.big), not on the caller's stack. */
#define RBIG 8
#define OBIG 2048
#define XBIG (RBIG * (NB + MAXD) + OBIG)
typedef struct blk2big {
    blk2 s;                          /* dl, mn, dlT, mnT (its x, ot and oc unused) */
    float x[XBIG];
    uint8_t ot[OBIG], oc[OBIG];
} blk2big;

#define BIG(f) ((blk2big *)(void *)(f))
#define CBIG(f) ((const blk2big *)(const void *)(f))
#define blk_x(f, gen) ((gen) == 2 ? BIG(f)->x : (f)->x)
#define blk_ot(f, gen) ((gen) == 2 ? BIG(f)->ot : (f)->ot)
#define blk_oc(f, gen) ((gen) == 2 ? BIG(f)->oc : (f)->oc)
#define cblk_x(f, gen) ((gen) == 2 ? CBIG(f)->x : (f)->x)
#define cblk_ot(f, gen) ((gen) == 2 ? CBIG(f)->ot : (f)->ot)
#define cblk_oc(f, gen) ((gen) == 2 ? CBIG(f)->oc : (f)->oc)

INLINE unsigned lowrank_b(const gear_block_layout *L) { return L->rank <= 2 ? 2 * NB : L->rank * NB; }
INLINE unsigned outliers_at(const gear_block_layout *L) { return L->rank <= 2 ? 2 * NB + 2 * MAXD : L->rank * (NB + L->d); }

/* The fixed-point kernel's weights drop a block's key products when all
 * are below 2^-100 (fix16), which the softmax scale, applied to the sum
 * afterwards, must not lift to where they count: up to 2^16 it leaves
 * them below 2^-73 (d = 128, 4-bit codes), nothing next to e^0.  A larger
 * scale takes the float kernel or the portable path. */
#define FIX_MAX_SCALE 65536.0f

static int use_fixed(unsigned d, float scale)
{
    /* the kernel is written for any multiple of 16 up to MAXD; admitted
     * are the head dims the cross-backend suite runs (check_xbackend) */
    return gear_cpu_have_avx512_vnni && (d == 64 || d == 80 || d == 96 || d == 128 || d == MAXD) &&
           fabsf(scale) <= FIX_MAX_SCALE;
}

/* Head dims other than 64 and 128 (80 and 96 in Phi-2 and Phi-3, 256 in
 * Gemma) run kernels of their own (attend_fix_d*), so that the two common
 * ones stay compiled as they were. */
INLINE int common_dim(unsigned d) { return d == 64 || d == 128; }

/* The low-rank columns and the outliers of L fit x[xf] and ot/oc[omax]
 * (outliers: none, or k maxima and k minima in every group; the last,
 * shorter group of a value row may have fewer). */
static int extras_fit(const gear_block_layout *L, unsigned rmax, unsigned xf, unsigned omax)
{
    if (L->rank > rmax || L->rank * (NB + L->d) > xf) return 0;
    return !L->n_outliers || (L->n_outliers <= omax && outliers_at(L) + L->n_outliers <= xf);
}

/* Whether a pair needs blk2big (attend_*_big). */
static int big_layout(const gear_block_layout *lk, const gear_block_layout *lv)
{
    return !extras_fit(lk, RMAX, XFLOATS, OMAX) || !extras_fit(lv, RMAX, XFLOATS, OMAX);
}

/* The float kernel: 2-bit codes, groups of 64, head dim 64/128/256; the
 * fixed-point kernel also 4-bit codes and value groups of a whole row, at
 * head dims 64, 80, 96, 128 and 256 (use_fixed; a value row's last group
 * then may be short: 16 or 32 channels), for layouts beyond blk2 at head
 * dims 64 and 128 only. */
int gear_cpu_attn2_fits(const gear_block_layout *lk, const gear_block_layout *lv, float scale)
{
    unsigned d = lk->d;
    int fixed = use_fixed(d, scale), flt = d == 64 || d == 128 || d == MAXD;
    if (!flt && !fixed) return 0;
    if (lv->d != d || lk->n != NB || lv->n != NB) return 0;
    const gear_block_layout *L[2] = {lk, lv};
    for (int i = 0; i < 2; i++) {
        const gear_block_layout *x = L[i];
        if ((x->bits != 2 && x->bits != 4) || x->cq_dim || x->row_bytes != x->row_len * x->bits / 8) return 0;
        /* keys: one group per channel row; values: 64 channels or the row */
        if (x->group != 64 && !(i == 1 && x->group == d)) return 0;
        if (!extras_fit(x, RBIG, XBIG, OBIG)) return 0;
        flt &= x->bits == 2 && x->group == 64 && x->tail_len == x->group;
    }
    /* the big kernels: fixed point at head dims 64 and 128 only */
    if (big_layout(lk, lv)) fixed &= common_dim(d);
    return flt || fixed;
}

/* e^x for x <= 0: gear_exp_neg (include/gear/backend.h), 16 lanes, the
 * same operations in the same order; NaN in gives NaN out, as there
 * (vmaxps returns its second operand when either is NaN, so x goes
 * second): a score that overflowed to Inf or NaN then reaches the
 * output, where the core sees it, instead of becoming a weight of
 * e^-87 that looks finite. */
INLINE __m512 exp_neg16(__m512 x)
{
    __m512 xc = _mm512_max_ps(_mm512_set1_ps(-87.0f), x);
    __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fmadd_ps(k, _mm512_set1_ps(-0.693145752f), xc);
    r = _mm512_fmadd_ps(k, _mm512_set1_ps(-1.42860677e-6f), r);
    __m512 p = _mm512_set1_ps(1.38888889e-3f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.33333333e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.16666667e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.66666667e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_scalef_ps(p, k);
    __mmask16 under = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_LT_OQ);
    return _mm512_maskz_mov_ps((__mmask16)~under, p);
}

/* 64 2-bit codes (16 bytes) as floats in permuted order: v[j] lane i =
 * code 4i+j.  vpermps reads the low 4 bits of each index: tables map a
 * nibble to its low and its high field. */
INLINE void decode64(const uint8_t *p, __m512 v[4])
{
    const __m512 lo = _mm512_setr_ps(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3);
    const __m512 hi = _mm512_setr_ps(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    __m512i x = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
    __m512i x4 = _mm512_srli_epi32(x, 4);
    v[0] = _mm512_permutexvar_ps(x, lo);
    v[1] = _mm512_permutexvar_ps(x, hi);
    v[2] = _mm512_permutexvar_ps(x4, lo);
    v[3] = _mm512_permutexvar_ps(x4, hi);
}

/* Permuted order back to natural: v[j] lane i -> out[4i+j]. */
INLINE void unpermute64(const __m512 v[4], float *out)
{
    const __m512i i1 = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i i2 = _mm512_setr_epi32(0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
    const __m512i k8 = _mm512_set1_epi32(8);
    __m512 p0 = _mm512_permutex2var_ps(v[0], i1, v[1]), p1 = _mm512_permutex2var_ps(v[0], _mm512_add_epi32(i1, k8), v[1]);
    __m512 q0 = _mm512_permutex2var_ps(v[2], i1, v[3]), q1 = _mm512_permutex2var_ps(v[2], _mm512_add_epi32(i1, k8), v[3]);
    _mm512_storeu_ps(out, _mm512_permutex2var_ps(p0, i2, q0));
    _mm512_storeu_ps(out + 16, _mm512_permutex2var_ps(p0, _mm512_add_epi32(i2, k8), q0));
    _mm512_storeu_ps(out + 32, _mm512_permutex2var_ps(p1, i2, q1));
    _mm512_storeu_ps(out + 48, _mm512_permutex2var_ps(p1, _mm512_add_epi32(i2, k8), q1));
}

/* The 4-bit kernel's order back to natural: v[2h+j] lane i -> out[32h+2i+j]
 * (half h of the 64 codes, low or high nibble j). */
INLINE void unpermute64_b4(const __m512 v[4], float *out)
{
    const __m512i i1 = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i i2 = _mm512_add_epi32(i1, _mm512_set1_epi32(8));
    for (unsigned h = 0; h < 2; h++) {
        _mm512_storeu_ps(out + 32 * h, _mm512_permutex2var_ps(v[2 * h], i1, v[2 * h + 1]));
        _mm512_storeu_ps(out + 32 * h + 16, _mm512_permutex2var_ps(v[2 * h], i2, v[2 * h + 1]));
    }
}

/* in[4i+j] -> v[j] lane i (64 floats): the inverse of unpermute64. */
INLINE void permute64(const float *in, __m512 v[4])
{
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_add_epi32(ie, _mm512_set1_epi32(1));
    __m512 z0 = _mm512_loadu_ps(in), z1 = _mm512_loadu_ps(in + 16);
    __m512 z2 = _mm512_loadu_ps(in + 32), z3 = _mm512_loadu_ps(in + 48);
    __m512 e0 = _mm512_permutex2var_ps(z0, ie, z1), o0 = _mm512_permutex2var_ps(z0, io, z1);
    __m512 e1 = _mm512_permutex2var_ps(z2, ie, z3), o1 = _mm512_permutex2var_ps(z2, io, z3);
    v[0] = _mm512_permutex2var_ps(e0, ie, e1);
    v[2] = _mm512_permutex2var_ps(e0, io, e1);
    v[1] = _mm512_permutex2var_ps(o0, ie, o1);
    v[3] = _mm512_permutex2var_ps(o0, io, o1);
}

/* Rows x[r][0..m) (r < R, the rest zero) interleaved: out[4i + r] = x[r][i]. */
INLINE void interleave4(const float *x, unsigned stride, unsigned R, unsigned m, float *out)
{
    for (unsigned i = 0; i < m; i += 16) {
        __m512 v[4];
        for (unsigned r = 0; r < 4; r++) v[r] = r < R ? _mm512_loadu_ps(x + (size_t)r * stride + i) : _mm512_setzero_ps();
        unpermute64(v, out + 4 * i);
    }
}

/* x[r][i] += c[4i + r] for r < R, i < m. */
INLINE void add_deinterleaved4(float *x, unsigned stride, unsigned R, unsigned m, const float *c)
{
    for (unsigned i = 0; i < m; i += 16) {
        __m512 v[4];
        permute64(c + 4 * i, v);
        for (unsigned r = 0; r < R; r++) {
            float *y = x + (size_t)r * stride + i;
            _mm512_storeu_ps(y, _mm512_add_ps(_mm512_loadu_ps(y), v[r]));
        }
    }
}

/* n fp16 (n multiple of 16) to fp32. */
INLINE void halves16(const uint8_t *src, unsigned n, float *dst)
{
    for (unsigned i = 0; i < n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + 2 * i))));
}

/* m pairs (m multiple of 16) split into evens and odds. */
INLINE void deint2(const float *src, unsigned m, float *ev, float *od)
{
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_add_epi32(ie, _mm512_set1_epi32(1));
    for (unsigned i = 0; i < m; i += 16) {
        __m512 a = _mm512_loadu_ps(src + 2 * i), b = _mm512_loadu_ps(src + 2 * i + 16);
        _mm512_storeu_ps(ev + i, _mm512_permutex2var_ps(a, ie, b));
        _mm512_storeu_ps(od + i, _mm512_permutex2var_ps(a, io, b));
    }
}

/* m rows of w fp16 (w = 1 to 4) as w fp32 columns of m: dst[k*m + x]. */
INLINE void columns(const uint8_t *src, unsigned m, unsigned w, float *dst)
{
    float t[4 * MAXD], u[4 * MAXD];
    if (w == 1) {
        halves16(src, m, dst);
        return;
    }
    halves16(src, m * w, t);
    if (w == 2) {
        deint2(t, m, dst, dst + m);
        return;
    }
    if (w == 3) { /* rank 3 only: not worth a permute table */
        for (unsigned x = 0; x < m; x++)
            for (unsigned k = 0; k < 3; k++) dst[k * m + x] = t[3 * x + k];
        return;
    }
    deint2(t, 2 * m, u, u + 2 * m); /* columns {0,2} and {1,3}, still paired */
    deint2(u, m, dst, dst + 2 * m);
    deint2(u + 2 * m, m, dst + m, dst + 3 * m);
}

/* columns for w = 5 to RBIG (ranks of attend_*_big only, so that the
 * other kernels' code stays as it was), 64 rows at a time. */
INLINE void columns_big(const uint8_t *src, unsigned m, unsigned w, float *dst)
{
    float t[RBIG * 64], u[RBIG * 64];
    for (unsigned x0 = 0; x0 < m; x0 += 64) {
        unsigned mm = m - x0 < 64 ? m - x0 : 64;
        float *d0 = dst + x0;
        halves16(src + 2 * (size_t)x0 * w, mm * w, t);
        if (w == 8) { /* three rounds of pairs: {0,2,4,6} {1,3,5,7}, then {0,4} {2,6} {1,5} {3,7} */
            deint2(t, 4 * mm, u, u + 4 * mm);
            deint2(u, 2 * mm, t, t + 2 * mm);
            deint2(u + 4 * mm, 2 * mm, t + 4 * mm, t + 6 * mm);
            deint2(t, mm, d0, d0 + 4 * m);
            deint2(t + 2 * mm, mm, d0 + 2 * m, d0 + 6 * m);
            deint2(t + 4 * mm, mm, d0 + m, d0 + 5 * m);
            deint2(t + 6 * mm, mm, d0 + 3 * m, d0 + 7 * m);
            continue;
        }
        for (unsigned x = 0; x < mm; x++)
            for (unsigned k = 0; k < w; k++) d0[k * m + x] = t[x * w + k];
    }
}

INLINE float dot16(const float *a, const float *b, unsigned n)
{
    __m512 s = _mm512_setzero_ps();
    for (unsigned i = 0; i < n; i += 16) s = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s);
    return _mm512_reduce_add_ps(s);
}

INLINE void scale16(float *x, float a, unsigned n)
{
    for (unsigned i = 0; i < n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), _mm512_set1_ps(a)));
}

/* y += a*x + b*z */
INLINE void axpy2(float *y, float a, const float *x, float b, const float *z, unsigned n)
{
    for (unsigned i = 0; i < n; i += 16) {
        __m512 v = _mm512_fmadd_ps(_mm512_set1_ps(a), _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i));
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(_mm512_set1_ps(b), _mm512_loadu_ps(z + i), v));
    }
}

/* y (ny floats) += sum over k < rank of (x . u_k) v_k, with u_k and v_k
 * the columns u + k*nx and v + k*ny: the low-rank term of one row, two
 * columns a pass. */
INLINE void lowrank_row(float *y, unsigned ny, const float *x, const float *u, unsigned nx, const float *v, unsigned rank)
{
    unsigned k = 0;
    for (; k + 2 <= rank; k += 2)
        axpy2(y, dot16(x, u + (size_t)k * nx, nx), v + (size_t)k * ny, dot16(x, u + (size_t)(k + 1) * nx, nx),
              v + (size_t)(k + 1) * ny, ny);
    if (k < rank) {
        __m512 a = _mm512_set1_ps(dot16(x, u + (size_t)k * nx, nx));
        for (unsigned i = 0; i < ny; i += 16)
            _mm512_storeu_ps(y + i, _mm512_fmadd_ps(a, _mm512_loadu_ps(v + (size_t)k * ny + i), _mm512_loadu_ps(y + i)));
    }
}

/* Lane i: x[(j + i) / per] (0 past len), for the 16 outliers from j
 * (a multiple of 16) whose source rows (or groups) hold per >= 2 each, in
 * order: they span at most 9 rows, so one window of 16 and a permute
 * gather them.  per comes as sh or inv.  A power of two: sh = log2 per
 * (with a constant sh, constant masks and indices): rows j/per on, 16/per
 * of them (one for per >= 16).  Else sh < 0 and inv = 1/per in fp32:
 * (j + i + 0.5) * inv is within 2^-7/per of its exact value for j <
 * 2^16, and at least 0.5/per from an integer, so it truncates to the
 * exact quotient. */
INLINE __m512 rows16(const float *x, unsigned len, unsigned j, int sh, float inv)
{
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    if (sh >= 0) {
        __m512i r = sh <= 4 ? _mm512_srli_epi32(lane, (unsigned)sh) : _mm512_setzero_si512();
        __mmask16 m = sh <= 4 ? (__mmask16)((1u << (16 >> sh)) - 1) : 1;
        return _mm512_permutexvar_ps(r, _mm512_maskz_loadu_ps(m, x + (j >> sh)));
    }
    unsigned r0 = (unsigned)(((float)j + 0.5f) * inv), left = len > r0 ? len - r0 : 0;
    __m512 jf = _mm512_add_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(lane, _mm512_set1_epi32((int)j))), _mm512_set1_ps(0.5f));
    __m512i r = _mm512_sub_epi32(_mm512_cvttps_epi32(_mm512_mul_ps(jf, _mm512_set1_ps(inv))), _mm512_set1_epi32((int)r0));
    __m512 w = _mm512_maskz_loadu_ps(left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1), x + r0);
    return _mm512_permutexvar_ps(r, w);
}

/* x / m in 16 lanes, x < 2^16: (x + 0.5)/m in fp32 truncates to the
 * exact quotient (rows16). */
INLINE __m512i quot16(__m512i x, unsigned m)
{
    __m512 xf = _mm512_add_ps(_mm512_cvtepi32_ps(x), _mm512_set1_ps(0.5f));
    return _mm512_cvttps_epi32(_mm512_mul_ps(xf, _mm512_set1_ps(1.0f / (float)m)));
}

/* log2 x for a power of two, else -1 */
INLINE int log2_exact(unsigned x) { return x && !(x & (x - 1)) ? __builtin_ctz(x) : -1; }

/* Scales, minima, factors and outliers of one block as fp32; gen: any
 * layout gear_cpu_attn2_fits takes (2: in a blk2big), else rank 0 or 2 and one outlier per
 * side (a constant in every kernel: see attend_fix_gen). */
INLINE void block_prep(const gear_block_layout *L, const uint8_t *blk, blk2 *f, int gen)
{
    unsigned d = L->d, G = L->groups_per_row, ng = L->rows * G;
    int lg = log2_exact(d);
    if (L->kind == GEAR_KEY) halves16(blk + L->off_scales, ng, f->dl);
    if (L->kind == GEAR_KEY || L->n_outliers) halves16(blk + L->off_mins, ng, f->mn);
    if (L->kind == GEAR_VALUE) {
        columns(blk + L->off_scales, NB, G, f->dlT);
        columns(blk + L->off_mins, NB, G, f->mnT);
    }
    if (L->rank) {
        if (gen == 2 && L->rank > 4) {
            columns_big(blk + L->off_a, NB, L->rank, blk_x(f, gen));
            columns_big(blk + L->off_b, d, L->rank, blk_x(f, gen) + lowrank_b(L));
        } else {
            columns(blk + L->off_a, NB, gen ? L->rank : 2, blk_x(f, gen));
            columns(blk + L->off_b, d, gen ? L->rank : 2, blk_x(f, gen) + lowrank_b(L));
        }
    }
    if (L->n_outliers) {
        /* outlier j lies in group j/2k (k maxima and k minima a group;
         * n_outliers is a multiple of 16: 2k a group, 64 or d rows) */
        const uint8_t *idx = blk + L->off_oidx, *val = blk + L->off_oval;
        unsigned opg = gen ? 2 * L->k_full : 2;
        float *ov = blk_x(f, gen) + outliers_at(L);
        for (unsigned j = 0; j < L->n_outliers; j += 16) {
            __m512i x = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(idx + 2 * j)));
            __m512 mn;
            if (gen && L->tail_len != L->group) {
                /* a value row's short last group has k_tail <= k_full a
                 * side: outlier u of row r lies in group min(u / 2k_full,
                 * G - 1), its minimum at mn[r*G + that] */
                __m512i jr = _mm512_add_epi32(_mm512_set1_epi32((int)j), _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
                __m512i r = quot16(jr, L->outliers_per_row);
                __m512i u = _mm512_sub_epi32(jr, _mm512_mullo_epi32(r, _mm512_set1_epi32((int)L->outliers_per_row)));
                __m512i g = _mm512_min_epu32(quot16(u, opg), _mm512_set1_epi32((int)G - 1));
                mn = _mm512_i32gather_ps(_mm512_add_epi32(_mm512_mullo_epi32(r, _mm512_set1_epi32((int)G)), g), f->mn, 4);
            } else {
                mn = gen ? rows16(f->mn, ng, j, log2_exact(opg), 1.0f / (float)opg) : rows16(f->mn, ng, j, 1, 0.5f);
            }
            __m512 v = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(val + 2 * j)));
            _mm512_storeu_ps(ov + j, _mm512_sub_ps(v, mn));
            __m512i t, c;
            if (!gen || lg >= 0) {
                t = _mm512_srli_epi32(x, (unsigned)(gen ? lg : d == 64 ? 6 : d == 128 ? 7 : 8));
                c = _mm512_and_si512(x, _mm512_set1_epi32((int)d - 1));
            } else {
                t = quot16(x, d);
                c = _mm512_sub_epi32(x, _mm512_mullo_epi32(t, _mm512_set1_epi32((int)d)));
            }
            _mm_storeu_si128((__m128i *)(blk_ot(f, gen) + j), _mm512_cvtepi32_epi8(t));
            _mm_storeu_si128((__m128i *)(blk_oc(f, gen) + j), _mm512_cvtepi32_epi8(c));
        }
    }
}

/* Lines of the next block to fetch, one per iteration of a code loop of
 * `iters`: an item's blocks follow each other in the arena, but the
 * hardware prefetchers stop at 4 KiB pages, which a block of 1-5 KiB
 * crosses every pair or two (without these prefetches kivi2 ran 2.6x
 * slower from DRAM).  They fetch into L2 (_MM_HINT_T2), not L1: into L1
 * the next pair's lines and the kernel's scratch no longer fit a 32 KiB
 * L1d together once a pair has outliers or low rank or 4-bit codes (Zen 4
 * VM, tenth session, from DRAM: gear2 at head dim 128 and G = 1 took 40 %
 * less time a pair, gear4 and kivi4 14-46 % less, kivi2 within 5 %
 * either way; in cache no change). */
INLINE unsigned prefetch_count(const uint8_t *next, size_t bytes, unsigned iters)
{
    size_t lines = (bytes + 63) / 64;
    return !next ? 0 : lines < iters ? (unsigned)lines : iters;
}

/* Sparse terms added one by one: dst[idx[j]] += x[j].  Outliers often
 * share a token or channel; four partial copies (part[j % 4]) keep one
 * read-modify-write from waiting on the last through memory (store
 * forwarding plus the add, for every repeat). */
typedef float part4[4][MAXD];

INLINE void part4_zero(part4 pt, unsigned len)
{
    for (unsigned k = 0; k < 4; k++)
        for (unsigned i = 0; i < len; i += 16) _mm512_storeu_ps(pt[k] + i, _mm512_setzero_ps());
}

/* dst (len floats, a multiple of 16) += the sum of the copies. */
INLINE void part4_add(part4 pt, float *dst, unsigned len)
{
    for (unsigned i = 0; i < len; i += 16) {
        __m512 a = _mm512_add_ps(_mm512_loadu_ps(pt[0] + i), _mm512_loadu_ps(pt[1] + i));
        __m512 b = _mm512_add_ps(_mm512_loadu_ps(pt[2] + i), _mm512_loadu_ps(pt[3] + i));
        _mm512_storeu_ps(dst + i, _mm512_add_ps(_mm512_loadu_ps(dst + i), _mm512_add_ps(a, b)));
    }
}

/* pt[k % 4][idx[k]] += lane k of x, k < 16 (idx below the length that
 * part4_zero cleared).  The terms come out of the
 * register and the indices out of two 8-byte words, so that an element
 * costs one load and one store: with x and idx read from memory it took
 * four memory operations, and those bounded it.  A term comes out of its
 * 128-bit quarter (vextractf32x4 once, then vpermilps): a 512-bit valignd
 * per term, as before, costs two passes on Zen 4's 256-bit units (gear2,
 * head dim 128, one row, in cache: 791 -> 750 ns a block pair there). */
#define SCATTER_LANE(k)                                                                                     \
    do {                                                                                                    \
        __m128 e_ = ((k) & 3) ? _mm_permute_ps(xq[(k) >> 2], (k) & 3) : xq[(k) >> 2];                       \
        float *y_ = &pt[(k) & 3][(w[(k) >> 3] >> (8 * ((k) & 7))) & 0xff];                                 \
        _mm_store_ss(y_, _mm_add_ss(_mm_load_ss(y_), e_));                                                  \
    } while (0)
INLINE void scatter16(part4 pt, __m512 x, const uint8_t *idx)
{
    uint64_t w[2];
    memcpy(w, idx, 16);
    const __m128 xq[4] = {_mm512_castps512_ps128(x), _mm512_extractf32x4_ps(x, 1), _mm512_extractf32x4_ps(x, 2),
                          _mm512_extractf32x4_ps(x, 3)};
    SCATTER_LANE(0); SCATTER_LANE(1); SCATTER_LANE(2); SCATTER_LANE(3);
    SCATTER_LANE(4); SCATTER_LANE(5); SCATTER_LANE(6); SCATTER_LANE(7);
    SCATTER_LANE(8); SCATTER_LANE(9); SCATTER_LANE(10); SCATTER_LANE(11);
    SCATTER_LANE(12); SCATTER_LANE(13); SCATTER_LANE(14); SCATTER_LANE(15);
}
#undef SCATTER_LANE

/* corr (len x 4 interleaved rows) = sum over j < n of ov[j] *
 * xT[4*(j/per) .. +4] at corr[4*idx[j] ..] (n a multiple of 4, idx < len,
 * len a multiple of 4; per, the outliers of a source row, even: keys, 2k a
 * channel; values, 2k per group of a token, which gear_block_parse
 * checks): the 4-row form of scatter16.  Four outliers a step: their terms
 * in one vector (lanes 4k..4k+3 for outlier j+k), then four 4-lane
 * read-modify-writes, the even ones into corr and the odd ones into a
 * second copy: the two outliers of a group never share an index, so
 * consecutive ones never wait on each other.  One outlier at a time (a
 * broadcast and an FMA each), the whole kernel was 2-5 % slower at G = 4
 * with outliers.  gen: per any even number (else 2, 4 or 8): outliers
 * j+2 and j+3 start the next source row or neither does (when j is
 * per - 2 into its row). */
INLINE void scatter_fma4(const float *restrict ov, const float *restrict xT, unsigned per,
                         const uint8_t *restrict idx, unsigned n, float *restrict corr, unsigned len, int gen)
{
    float part[4 * MAXD];
    for (unsigned i = 0; i < 4 * len; i += 16) {
        _mm512_storeu_ps(corr + i, _mm512_setzero_ps());
        _mm512_storeu_ps(part + i, _mm512_setzero_ps());
    }
    const __m512i quad = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    const __m512i pair = _mm512_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7);
    unsigned sh = per == 2 ? 1 : per == 4 ? 2 : 3, row = 0, rem = 0; /* gen: j = row*per + rem */
    for (unsigned j = 0; j < n; j += 4) {
        __m512 x;
        if (gen) {
            if (rem + 2 == per) /* rows `row` (twice) and row + 1 (twice) */
                x = _mm512_permutexvar_ps(pair, _mm512_castps256_ps512(_mm256_loadu_ps(xT + 4 * row)));
            else /* row `row` four times */
                x = _mm512_broadcast_f32x4(_mm_loadu_ps(xT + 4 * row));
            for (rem += 4; rem >= per; rem -= per) row++;
        } else if (per == 2) { /* rows j/2 (twice) and j/2 + 1 (twice) */
            x = _mm512_permutexvar_ps(pair, _mm512_castps256_ps512(_mm256_loadu_ps(xT + 4 * (j / 2))));
        } else { /* row j/per four times */
            x = _mm512_broadcast_f32x4(_mm_loadu_ps(xT + 4 * (j >> sh)));
        }
        x = _mm512_mul_ps(x, _mm512_permutexvar_ps(quad, _mm512_castps128_ps512(_mm_loadu_ps(ov + j))));
        uint32_t w; /* the four indices in one load, before any store */
        memcpy(&w, idx + j, 4);
        float *y0 = corr + 4 * (w & 0xff), *y1 = part + 4 * ((w >> 8) & 0xff);
        float *y2 = corr + 4 * ((w >> 16) & 0xff), *y3 = part + 4 * (w >> 24);
        _mm_storeu_ps(y0, _mm_add_ps(_mm_loadu_ps(y0), _mm512_castps512_ps128(x)));
        _mm_storeu_ps(y1, _mm_add_ps(_mm_loadu_ps(y1), _mm512_extractf32x4_ps(x, 1)));
        _mm_storeu_ps(y2, _mm_add_ps(_mm_loadu_ps(y2), _mm512_extractf32x4_ps(x, 2)));
        _mm_storeu_ps(y3, _mm_add_ps(_mm_loadu_ps(y3), _mm512_extractf32x4_ps(x, 3)));
    }
    for (unsigned i = 0; i < 4 * len; i += 16)
        _mm512_storeu_ps(corr + i, _mm512_add_ps(_mm512_loadu_ps(corr + i), _mm512_loadu_ps(part + i)));
}

/* pt[idx[j]] += x[j / per] * ov[j] for the n outliers of one row (x:
 * len floats; per 2, 4 or 8 unless gen). */
INLINE void outlier_terms(part4 pt, const float *x, unsigned len, unsigned per, const float *ov, unsigned n,
                          const uint8_t *idx, int gen)
{
    int sh = gen ? log2_exact(per) : per == 2 ? 1 : per == 4 ? 2 : 3;
    float inv = gen ? 1.0f / (float)per : 0.0f;
    for (unsigned j = 0; j < n; j += 16)
        scatter16(pt, _mm512_mul_ps(rows16(x, len, j, sh, inv), _mm512_loadu_ps(ov + j)), idx + j);
}

/* The outlier terms of one row of key scores, into pt (partial copies):
 * run before the code loop, which they do not depend on, so that its
 * dot products and these loads and stores overlap. */
INLINE void key_outliers1(const gear_block_layout *L, const blk2 *f, const float *q, part4 pt, int gen)
{
    part4_zero(pt, NB);
    outlier_terms(pt, q, L->d, gen ? L->outliers_per_row : 2, cblk_x(f, gen) + outliers_at(L), L->n_outliers, cblk_ot(f, gen), gen);
}

/* Low-rank and outlier terms of R rows of key scores s (natural order);
 * one row's outliers are already in pt (key_outliers1). */
INLINE void key_extras(const gear_block_layout *L, const blk2 *f, const float *q, unsigned R, float *s, part4 pt, int gen)
{
    unsigned d = L->d;
    if (L->rank) /* (q.B_k) A_k */
        for (unsigned r = 0; r < R; r++) {
            const float *qr = q + (size_t)r * d, *a = cblk_x(f, gen), *b = cblk_x(f, gen) + lowrank_b(L);
            if (gen)
                lowrank_row(s + r * NB, NB, qr, b, d, a, L->rank);
            else
                axpy2(s + r * NB, dot16(qr, b, d), a, dot16(qr, b + d, d), a + NB, NB);
        }
    /* outliers: the exact value replaces the minimum that code 0 gave;
     * outlier j lies in channel j/2k */
    unsigned n = L->n_outliers;
    if (!n) return;
    if (R == 1) {
        part4_add(pt, s, NB);
        return;
    }
    /* several rows: one 4-row update per outlier, rows interleaved */
    float qT[4 * MAXD], corr[4 * NB];
    interleave4(q, d, R, d, qT);
    scatter_fma4(cblk_x(f, gen) + outliers_at(L), qT, gen ? L->outliers_per_row : 2, cblk_ot(f, gen), n, corr, NB, gen);
    add_deinterleaved4(s, NB, R, NB, corr);
}

/* Low-rank and outlier terms of R value rows, into onat (natural order). */
INLINE void value_extras(const gear_block_layout *L, const blk2 *f, const float *p, unsigned R, float *onat, int gen)
{
    unsigned d = L->d;
    if (L->rank) /* (p.A_k) B_k */
        for (unsigned r = 0; r < R; r++) {
            const float *pr = p + r * NB, *a = cblk_x(f, gen), *b = cblk_x(f, gen) + lowrank_b(L);
            if (gen)
                lowrank_row(onat + (size_t)r * d, d, pr, a, NB, b, L->rank);
            else
                axpy2(onat + (size_t)r * d, dot16(pr, a, NB), b, dot16(pr, a + NB, NB), b + d, d);
        }
    unsigned n = L->n_outliers;
    if (!n) return;
    if (R == 1) {
        part4 pt;
        /* outlier j belongs to token j / per (gear_block_parse checks the order) */
        part4_zero(pt, d);
        outlier_terms(pt, p, NB, L->outliers_per_row, cblk_x(f, gen) + outliers_at(L), n, cblk_oc(f, gen), gen);
        part4_add(pt, onat, d);
        return;
    }
    float pT[4 * NB], corr[4 * MAXD];
    interleave4(p, NB, R, NB, pT);
    scatter_fma4(cblk_x(f, gen) + outliers_at(L), pT, L->outliers_per_row, cblk_oc(f, gen), n, corr, d, gen);
    add_deinterleaved4(onat, d, R, d, corr);
}

/* s[r][t] = q_r . k_t for R rows (compile-time), natural token order. */
INLINE void key_scores2(const gear_block_layout *L, const uint8_t *blk, const blk2 *f, const float *q,
                        unsigned R, float *s, const uint8_t *next, float scale, int gen, unsigned dc)
{
    (void)scale, (void)dc;
    unsigned d = L->d;
    float qs[QUAD * MAXD];
    __m512 acc[QUAD][4];
    part4 pt;
    if (R == 1 && L->n_outliers) key_outliers1(L, f, q, pt, gen);
    for (unsigned r = 0; r < R; r++) {
        const float *qr = q + (size_t)r * d;
        __m512 b = _mm512_setzero_ps();
        for (unsigned c = 0; c < d; c += 16) {
            __m512 x = _mm512_loadu_ps(qr + c);
            _mm512_storeu_ps(qs + r * d + c, _mm512_mul_ps(x, _mm512_loadu_ps(f->dl + c)));
            b = _mm512_fmadd_ps(x, _mm512_loadu_ps(f->mn + c), b);
        }
        /* the minima enter once per token */
        for (unsigned j = 0; j < 4; j++) acc[r][j] = _mm512_set1_ps(_mm512_reduce_add_ps(b));
    }
    const uint8_t *codes = blk + L->off_codes;
    unsigned npf = prefetch_count(next, L->bytes, d);
    for (unsigned c = 0; c < d; c++) {
        __m512 v[4];
        if (c < npf) _mm_prefetch((const char *)next + 64 * c, _MM_HINT_T2);
        decode64(codes + 16 * c, v);
        for (unsigned r = 0; r < R; r++) {
            __m512 w = _mm512_set1_ps(qs[r * d + c]);
            for (unsigned j = 0; j < 4; j++) acc[r][j] = _mm512_fmadd_ps(w, v[j], acc[r][j]);
        }
    }
    for (unsigned r = 0; r < R; r++) unpermute64(acc[r], s + r * NB);
    key_extras(L, f, q, R, s, pt, gen);
}

/* o[r] (permuted groups) += sum_t p[r][t] v_t; onat[r] gets the outlier
 * and low-rank terms. */
INLINE void values2(const gear_block_layout *L, const uint8_t *blk, const blk2 *f, const float *p,
                    unsigned R, float *o, float *onat, const uint8_t *next, int gen, unsigned dc)
{
    (void)dc;
    unsigned d = L->d, G = L->groups_per_row;
    float pw[QUAD * NB];
    const uint8_t *codes = blk + L->off_codes;
    unsigned npf = prefetch_count(next, L->bytes, G * NB);
    for (unsigned g = 0; g < G; g++) {
        __m512 acc[QUAD][4];
        float bias[QUAD];
        for (unsigned r = 0; r < R; r++) {
            __m512 b = _mm512_setzero_ps();
            for (unsigned t = 0; t < NB; t += 16) {
                __m512 x = _mm512_loadu_ps(p + r * NB + t);
                _mm512_storeu_ps(pw + r * NB + t, _mm512_mul_ps(x, _mm512_loadu_ps(f->dlT + g * NB + t)));
                b = _mm512_fmadd_ps(x, _mm512_loadu_ps(f->mnT + g * NB + t), b);
            }
            bias[r] = _mm512_reduce_add_ps(b);
            for (unsigned j = 0; j < 4; j++) acc[r][j] = _mm512_setzero_ps();
        }
        for (unsigned t = 0; t < NB; t++) {
            __m512 v[4];
            if (g * NB + t < npf) _mm_prefetch((const char *)next + 64 * (g * NB + t), _MM_HINT_T2);
            decode64(codes + (size_t)t * L->row_bytes + 16 * g, v);
            for (unsigned r = 0; r < R; r++) {
                __m512 w = _mm512_set1_ps(pw[r * NB + t]);
                for (unsigned j = 0; j < 4; j++) acc[r][j] = _mm512_fmadd_ps(w, v[j], acc[r][j]);
            }
        }
        for (unsigned r = 0; r < R; r++)
            for (unsigned j = 0; j < 4; j++) {
                float *dst = o + (size_t)r * d + 64 * g + 16 * j;
                _mm512_storeu_ps(dst, _mm512_add_ps(_mm512_loadu_ps(dst), _mm512_add_ps(acc[r][j], _mm512_set1_ps(bias[r]))));
            }
    }
    value_extras(L, f, p, R, onat, gen);
}

/* Scale, mask (positions past lim[r]), fold into the running softmax of
 * each row; s becomes the weights.  Every row's maximum first, then every
 * row's exponentials, so that the rows' reductions (chains of dependent
 * shuffles) overlap: in cache at G = 4, head dim 64, kivi2 took 605 ns a
 * pair against 617 row by row, gear2 1010 against 1045; at head dim 128
 * 1-2 % less, at G = 1 the same. */
INLINE void softmax2(float *s, unsigned R, float scale, size_t pos0, const size_t *lim, part *pt,
                     float *o, float *onat, unsigned d)
{
    __m512 x[QUAD][4];
    float mr[QUAD];
    for (unsigned r = 0; r < R; r++) {
        float *sr = s + r * NB;
        __m512 mx = _mm512_set1_ps(pt[r].m);
        for (unsigned j = 0; j < 4; j++) {
            x[r][j] = _mm512_mul_ps(_mm512_loadu_ps(sr + 16 * j), _mm512_set1_ps(scale));
            if (pos0 + NB - 1 > lim[r]) { /* causal mask: only when a query is inside the block */
                __m512i pos = _mm512_add_epi32(_mm512_set1_epi32((int)(16 * j)),
                                               _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
                long room = (long)lim[r] - (long)pos0;
                __mmask16 ok = _mm512_cmp_epi32_mask(pos, _mm512_set1_epi32(room < -1 ? -1 : (int)room), _MM_CMPINT_LE);
                x[r][j] = _mm512_mask_mov_ps(_mm512_set1_ps(-__builtin_inff()), ok, x[r][j]);
            }
            mx = _mm512_max_ps(mx, x[r][j]);
        }
        mr[r] = _mm512_reduce_max_ps(mx);
    }
    for (unsigned r = 0; r < R; r++) {
        float *sr = s + r * NB, m = mr[r];
        if (m == -__builtin_inff()) { /* everything masked so far */
            for (unsigned j = 0; j < 4; j++) _mm512_storeu_ps(sr + 16 * j, _mm512_setzero_ps());
            continue;
        }
        float alpha = m == pt[r].m ? 1.0f : gear_exp_neg(pt[r].m - m); /* e^0 is 1 exactly */
        if (alpha != 1.0f) {
            scale16(o + (size_t)r * d, alpha, d);
            if (onat) scale16(onat + (size_t)r * d, alpha, d);
        }
        __m512 sum = _mm512_setzero_ps();
        for (unsigned j = 0; j < 4; j++) {
            __m512 e = exp_neg16(_mm512_sub_ps(x[r][j], _mm512_set1_ps(m)));
            sum = _mm512_add_ps(sum, e);
            _mm512_storeu_ps(sr + 16 * j, e);
        }
        pt[r].l = pt[r].l * alpha + _mm512_reduce_add_ps(sum);
        pt[r].m = m;
    }
}

/*
 * Fixed-point variant (AVX-512 VBMI + VNNI + DQ, head dims 64, 80, 96, 128, 256): the
 * weights that multiply the codes (q_c*scale_c for keys, p_t*scale_t for
 * values) become 16-bit fixed point per (block, row) and every code enters
 * through vpdpbusd, which sums four u8 x s8 products per lane exactly in
 * int32.  A weight w = al*(256*hi + lo) with hi, lo bytes, so a code costs
 * two vpdpbusd per row where the float kernel above spends four FMAs.
 * Rounding the weights (at most max|w|*2^-15) is the only difference from
 * fp32; where that could reach 2e-3 in a key logit, the keys take one or
 * two more passes over finer grids of what it missed (KEY_LOGIT_ERR).  Minima,
 * outliers and the low rank stay in fp32 as above.
 */
#define VINLINE static inline __attribute__((always_inline, target("avx512vbmi,avx512vnni,avx512dq")))

/* rows4[x]: byte 4i+k = byte rb*k + off + i (lane i gathers byte i of four
 * code rows): rb = 16 (x = 0), rb = 32 with off 0 and 16 (x = 1, 2). */
static const uint8_t rows4[3][64] __attribute__((aligned(64))) = {
    {0, 16, 32, 48, 1, 17, 33, 49, 2, 18, 34, 50, 3, 19, 35, 51, 4, 20, 36, 52, 5, 21, 37, 53, 6, 22, 38, 54, 7, 23, 39, 55,
     8, 24, 40, 56, 9, 25, 41, 57, 10, 26, 42, 58, 11, 27, 43, 59, 12, 28, 44, 60, 13, 29, 45, 61, 14, 30, 46, 62, 15, 31, 47, 63},
    {0, 32, 64, 96, 1, 33, 65, 97, 2, 34, 66, 98, 3, 35, 67, 99, 4, 36, 68, 100, 5, 37, 69, 101, 6, 38, 70, 102, 7, 39, 71, 103,
     8, 40, 72, 104, 9, 41, 73, 105, 10, 42, 74, 106, 11, 43, 75, 107, 12, 44, 76, 108, 13, 45, 77, 109, 14, 46, 78, 110, 15, 47, 79, 111},
    {16, 48, 80, 112, 17, 49, 81, 113, 18, 50, 82, 114, 19, 51, 83, 115, 20, 52, 84, 116, 21, 53, 85, 117, 22, 54, 86, 118, 23, 55, 87, 119,
     24, 56, 88, 120, 25, 57, 89, 121, 26, 58, 90, 122, 27, 59, 91, 123, 28, 60, 92, 124, 29, 61, 93, 125, 30, 62, 94, 126, 31, 63, 95, 127},
};
/* The high byte of int16 e in packs_epi32(q0, q1) : packs_epi32(q2, q3),
 * where q0..q3 hold e = 0..63 in order (the low byte is one before). */
static const uint8_t pack_hi[64] __attribute__((aligned(64))) = {
    1, 3, 5, 7, 17, 19, 21, 23, 33, 35, 37, 39, 49, 51, 53, 55,
    9, 11, 13, 15, 25, 27, 29, 31, 41, 43, 45, 47, 57, 59, 61, 63,
    65, 67, 69, 71, 81, 83, 85, 87, 97, 99, 101, 103, 113, 115, 117, 119,
    73, 75, 77, 79, 89, 91, 93, 95, 105, 107, 109, 111, 121, 123, 125, 127,
};


/* v[0..m/16) (finite, largest magnitude top > 0) as int16 al*(256*hi[i] +
 * lo[i]) within +-32512, rounded to nearest whatever the caller's
 * rounding mode; returns al.  With worst, v is overwritten (by the
 * rounding in steps, fewer registers than a copy) and *worst is the most the
 * rounding can add up to, in steps, against any codes in [0, 1]: the
 * larger of its positive and its negative sum (to fp32's rounding of
 * v/al, about 2^-9 of a step per weight). */
VINLINE float grid16(__m512 *v, unsigned m, float top, int8_t *hi, int8_t *lo, float *worst)
{
    __m512 k = _mm512_set1_ps(32512.0f / top), *red = v;
    __m512i hs = _mm512_load_si512(pack_hi), ls = _mm512_sub_epi8(hs, _mm512_set1_epi8(1));
    for (unsigned i = 0; i < m / 64; i++) {
        __m512i q[4];
        for (unsigned j = 0; j < 4; j++) {
            __m512 s = _mm512_mul_ps(v[4 * i + j], k);
            q[j] = _mm512_cvt_roundps_epi32(s, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            if (worst) /* s - rint(s): exact, |s| <= 32512 */
                red[4 * i + j] = _mm512_reduce_ps(s, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        }
        __m512i p0 = _mm512_packs_epi32(q[0], q[1]), p1 = _mm512_packs_epi32(q[2], q[3]);
        /* hi = (w + 128) >> 8 and lo = w - 256*hi, both signed bytes: lo is
         * w's low byte read as signed (|w| + 128 stays below 2^15) */
        __m512i r0 = _mm512_add_epi16(p0, _mm512_set1_epi16(128)), r1 = _mm512_add_epi16(p1, _mm512_set1_epi16(128));
        _mm512_storeu_si512(hi + 64 * i, _mm512_permutex2var_epi8(r0, hs, r1));
        _mm512_storeu_si512(lo + 64 * i, _mm512_permutex2var_epi8(p0, ls, p1));
    }
    if (worst) { /* sums of the positive parts and of all, each as a tree */
        __m512 ps[MAXD / 16];
        unsigned nv = m / 16;
        for (unsigned i = 0; i < nv; i++) ps[i] = _mm512_max_ps(red[i], _mm512_setzero_ps());
        for (unsigned h = nv / 2; h >= 1; nv = h, h /= 2) {
            for (unsigned i = 0; i < h; i++) {
                ps[i] = _mm512_add_ps(ps[i], ps[i + h]);
                red[i] = _mm512_add_ps(red[i], red[i + h]);
            }
            if (nv & 1) { /* 12 vectors (head dim 192) fold to 6, 3, then 1 */
                ps[0] = _mm512_add_ps(ps[0], ps[nv - 1]);
                red[0] = _mm512_add_ps(red[0], red[nv - 1]);
            }
        }
        /* both in one reduction: positive parts in lanes 0-7, all in 8-15 */
        __m512 t = _mm512_add_ps(_mm512_shuffle_f32x4(ps[0], red[0], 0x44), _mm512_shuffle_f32x4(ps[0], red[0], 0xEE));
        t = _mm512_add_ps(t, _mm512_shuffle_f32x4(t, t, 0xB1));
        t = _mm512_add_ps(t, _mm512_permute_ps(t, 0x4E));
        t = _mm512_add_ps(t, _mm512_permute_ps(t, 0xB1));
        float p = _mm512_cvtss_f32(t), n = p - _mm512_cvtss_f32(_mm512_shuffle_f32x4(t, t, 0xAA));
        *worst = p > n ? p : n;
    }
    return top / 32512.0f;
}

/* v - al*rint(v*32512/top), what grid16 missed, in v's units: one
 * rounding (FMA), so exact to fp32 relative to itself, not to top. */
VINLINE void residual16(__m512 *v, unsigned m, float top, float al)
{
    __m512 k = _mm512_set1_ps(32512.0f / top);
    for (unsigned i = 0; i < m / 16; i++) {
        __m512 q = _mm512_roundscale_ps(_mm512_mul_ps(v[i], k), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v[i] = _mm512_fnmadd_ps(q, _mm512_set1_ps(al), v[i]);
    }
}

/* Largest magnitude of v[0..n) as bits: Inf and NaN patterns are the largest. */
VINLINE uint32_t top_bits(const __m512 *v, unsigned n)
{
    __m512i mx = _mm512_setzero_si512();
    for (unsigned i = 0; i < n; i++)
        mx = _mm512_max_epu32(mx, _mm512_and_si512(_mm512_castps_si512(v[i]), _mm512_set1_epi32(0x7fffffff)));
    return _mm512_reduce_max_epu32(mx);
}

/* Grids after the first that the key side may take (fix16). */
#define NFINE 2

/* Fixed-point weights of up to QUAD rows: w = al*(256*hi + lo), hi and
 * lo signed bytes (lo in [-128, 128)), so that the codes are vpdpbusd's
 * unsigned operand in both products. */
typedef struct fixw {
    int8_t hi[QUAD][MAXD];
    int8_t lo[QUAD][MAXD];
    float al[QUAD];
} fixw;

/* x[i]*w[i] for i < m (m a multiple of 16; 64 or 128, a constant after
 * inlining, so the products stay in registers between the passes; other
 * head dims pad them with zeros to whole 64s for grid16), as int16
 * al*(256*hi[i] + lo[i]) within +-32512; returns al, and in *bias the sum
 * of x[i]*mn[i] (the minima's term).  NaN when a product is not finite (it
 * then reaches the output as it would in fp32); 0 when all are below
 * 2^-100 in magnitude (what they would add, times a softmax scale of at
 * most FIX_MAX_SCALE, is below fp32's resolution of any other term).
 * With fine (keys, row r): while the rounding so far could add up to more
 * than `coarse` against codes in [0, 1] (bounded for the worst codes),
 * what it missed (exact, by FMA) goes on the next grid, fine[0] then
 * fine[1]: each is 2^-15 of the last, and the row's weights end within
 * 2^-45 of the largest, or within the bound; their steps go to
 * fal[level][r], 0 for grids not taken, which are left as they are (the
 * caller clears them if another row takes them).  The steps apart from
 * the grids: the common path then touches none of the grids' memory. */
VINLINE float fix16(const float *x, const float *w, const float *mn, unsigned m, int8_t *hi, int8_t *lo,
                    float *bias, float coarse, fixw *fine, float (*fal)[QUAD], unsigned r)
{
    __m512 v[MAXD / 16], b = _mm512_setzero_ps();
    unsigned mp = (m + 63) & ~63u;
    for (unsigned i = 0; i < m / 16; i++) {
        __m512 xi = _mm512_loadu_ps(x + 16 * i);
        v[i] = _mm512_mul_ps(xi, _mm512_loadu_ps(w + 16 * i));
        b = _mm512_fmadd_ps(xi, _mm512_loadu_ps(mn + 16 * i), b);
    }
    for (unsigned i = m / 16; i < mp / 16; i++) v[i] = _mm512_setzero_ps();
    *bias = _mm512_reduce_add_ps(b);
    uint32_t tb = top_bits(v, m / 16);
    float top, al, worst;
    memcpy(&top, &tb, 4);
    if (fine)
        for (unsigned l = 0; l < NFINE; l++) fal[l][r] = 0.0f;
    if (tb >= 0x7f800000u || tb < 0x0d800000u) { /* not finite; below 2^-100 */
        memset(hi, 0, m);
        memset(lo, 0, m);
        return tb >= 0x7f800000u ? __builtin_nanf("") : 0.0f;
    }
    /* each weight rounds by at most half a step: when m/2 steps are within
     * `coarse`, no finer grid can be needed and the exact bound is skipped */
    if (!fine || 0.5f * (float)m * (top / 32512.0f) <= coarse) return grid16(v, mp, top, hi, lo, NULL);
    al = grid16(v, mp, top, hi, lo, &worst);
    float tops[NFINE + 1] = {top}, als[NFINE + 1] = {al};
    for (unsigned l = 0; l < NFINE && worst * als[l] > coarse; l++) {
        /* the products again, less every grid so far: rare, and cheaper
         * than keeping them in registers through grid16 */
        for (unsigned i = 0; i < mp / 16; i++)
            v[i] = i < m / 16 ? _mm512_mul_ps(_mm512_loadu_ps(x + 16 * i), _mm512_loadu_ps(w + 16 * i)) : _mm512_setzero_ps();
        for (unsigned j = 0; j <= l; j++) residual16(v, mp, tops[j], als[j]);
        tb = top_bits(v, m / 16);
        if (tb < 0x0d800000u) break; /* below 2^-100: nothing fp32 would keep */
        memcpy(&tops[l + 1], &tb, 4);
        als[l + 1] = fal[l][r] = grid16(v, mp, tops[l + 1], fine[l].hi[r], fine[l].lo[r], &worst);
    }
    return al;
}

/* acc += u8 x s8 dot products (vpdpbusd).  GCC 12 does not keep the
 * accumulators of the intrinsic in place across the code loop: it copies
 * each in and out of a scratch register every step, and spills some.  The
 * template has both operand orders (AT&T | Intel), for -masm=intel. */
VINLINE __m512i dpbusd(__m512i acc, __m512i u8, __m512i s8)
{
    __asm__("vpdpbusd {%2, %1, %0|%0, %1, %2}" : "+v"(acc) : "v"(u8), "v"(s8));
    return acc;
}


/* Full unrolling of the short row and plane loops, so that accumulators
 * stay in registers: GCC 12 otherwise keeps some in memory, and clang reads
 * "GCC unroll 4" as a factor rather than a full unroll. */
#ifdef __clang__
#define UNROLL4 _Pragma("clang loop unroll(full)")
#else
#define UNROLL4 _Pragma("GCC unroll 4")
#endif

/* Lane i of the result holds byte off+i of four code rows rs bytes apart
 * (byte k of the lane from row k), for off + 16 <= rs, reading no byte
 * outside the four rows. */
VINLINE __m512i code_rows(const uint8_t *p, unsigned rs, unsigned off)
{
    if (rs == 16)
        return _mm512_permutexvar_epi8(_mm512_load_si512(rows4[0]), _mm512_loadu_si512(p));
    if (rs == 32)
        return _mm512_permutex2var_epi8(_mm512_loadu_si512(p), _mm512_load_si512(rows4[1 + (off >> 4)]),
                                        _mm512_loadu_si512(p + 64));
    p += off;
    __m512i x = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)p));
    x = _mm512_inserti32x4(x, _mm_loadu_si128((const __m128i *)(p + rs)), 1);
    x = _mm512_inserti32x4(x, _mm_loadu_si128((const __m128i *)(p + 2 * rs)), 2);
    x = _mm512_inserti32x4(x, _mm_loadu_si128((const __m128i *)(p + 3 * rs)), 3);
    return _mm512_permutexvar_epi8(_mm512_load_si512(rows4[0]), x);
}

/* Step st reads bytes [off, off+16) of four code rows (src + st*stride +
 * k*rs, k < 4) so that lane i holds byte off+i of each row.  Plane j = the
 * codes at bits `bits`*(p0+j) of every byte, which meet the weights' dword
 * st: acc[r][a0+j] (int32) = sum of code x (256*hi + lo) over the steps.
 * Exact: before the shift at most 257 * 4*240*128 * MAXD/4 steps (64: keys
 * at head dim 256) < 2^31.  The steps also prefetch the next block's lines
 * [pf0, pf0 + steps*per). */
_Static_assert(257LL * 4 * 240 * 128 * (MAXD / 4) < (1LL << 31), "dot_planes' int32 sums must stay exact");
VINLINE void dot_planes(const uint8_t *src, unsigned stride, unsigned rs, unsigned off, unsigned steps,
                        const fixw *w, unsigned R, unsigned bits, unsigned p0, unsigned JP, unsigned a0,
                        __m512i acc[QUAD][4], const uint8_t *next, unsigned pf0, unsigned per, unsigned lines)
{
    __m512i ah[QUAD][4], al[QUAD][4];
    UNROLL4 for (unsigned r = 0; r < R; r++)
        UNROLL4 for (unsigned j = 0; j < JP; j++) ah[r][j] = al[r][j] = _mm512_setzero_si512();
    for (unsigned st = 0; st < steps; st++) {
        if (next)
            for (unsigned l = pf0 + st * per; l < pf0 + (st + 1) * per && l < lines; l++)
                _mm_prefetch((const char *)next + 64 * l, _MM_HINT_T2);
        __m512i x = code_rows(src + (size_t)st * stride, rs, off);
        __m512i v[4];
        /* plane p0+j masked in place, not shifted down: 2^(bits*(p0+j))
         * times its codes, at most 192 (2-bit) or 240 (4-bit) as u8 */
        UNROLL4 for (unsigned j = 0; j < JP; j++)
            v[j] = _mm512_and_si512(x, _mm512_set1_epi8((char)(((1 << bits) - 1) << (bits * (p0 + j)))));
        UNROLL4 for (unsigned r = 0; r < R; r++) {
            int32_t h, l;
            memcpy(&h, w->hi[r] + 4 * st, 4); /* codes u8 x hi s8, codes u8 x lo s8 */
            memcpy(&l, w->lo[r] + 4 * st, 4);
            UNROLL4 for (unsigned j = 0; j < JP; j++) {
                ah[r][j] = dpbusd(ah[r][j], v[j], _mm512_set1_epi32(h));
                al[r][j] = dpbusd(al[r][j], v[j], _mm512_set1_epi32(l));
            }
        }
    }
    /* 256*hi + lo, and the plane's factor off again: an exact shift, every
     * term being a multiple of it */
    UNROLL4 for (unsigned r = 0; r < R; r++)
        UNROLL4 for (unsigned j = 0; j < JP; j++)
            acc[r][a0 + j] = _mm512_srai_epi32(_mm512_add_epi32(_mm512_slli_epi32(ah[r][j], 8), al[r][j]), bits * (p0 + j));
}

/* The 64 codes of R rows at byte off of rows rs apart, four accumulators
 * a row: 2-bit, one 16-byte slice of four planes, in one pass for one or
 * two rows, else in two (32 accumulators would spill); 4-bit, two slices
 * of two planes.  The first pass prefetches. */
VINLINE void dot_codes(const uint8_t *src, unsigned stride, unsigned rs, unsigned off, unsigned bits, unsigned steps,
                       const fixw *w, unsigned R, __m512i acc[QUAD][4], const uint8_t *next, unsigned pf0, unsigned per,
                       unsigned lines)
{
    if (bits == 4) {
        dot_planes(src, stride, rs, off, steps, w, R, 4, 0, 2, 0, acc, next, pf0, per, lines);
        dot_planes(src, stride, rs, off + 16, steps, w, R, 4, 0, 2, 2, acc, NULL, 0, 0, 0);
    } else if (R <= 2) {
        dot_planes(src, stride, rs, off, steps, w, R, 2, 0, 4, 0, acc, next, pf0, per, lines);
    } else {
        dot_planes(src, stride, rs, off, steps, w, R, 2, 0, 2, 0, acc, next, pf0, per, lines);
        dot_planes(src, stride, rs, off, steps, w, R, 2, 2, 2, 2, acc, NULL, 0, 0, 0);
    }
}

/* The most a key logit may be off by the int16 grid's rounding before
 * a finer grid is taken: fix16 bounds it for the worst codes (softmax
 * scale x (2^bits - 1) x the larger of the rounding's positive and
 * negative sums).  Sink tokens whose keys widen every channel's range, or
 * a few key channels 25 times the others, made it 1e-2 and more, and the
 * attention NMSE against fp32 1e-6 to 1e-5 with one grid
 * (docs/PERF-HISTORY.md: "Large weights in the fixed-point kernel"). */
#define KEY_LOGIT_ERR 2e-3f

/* sum[r][j] = the finer grids' scores (fix16) of the levels some row
 * took, out of line (into its own array, so that the caller's scores stay
 * in registers): they are rare, and inlined into every kernel variant
 * the second pass alone made the common case up to 4 % slower.  Each
 * level's pass runs over the rows that took it only, packed to the front
 * of its grid: at G = 4 it is mostly one row of the four (gear-bench's
 * keys: kivi2 took a level in 48 % of blocks, 13 % of rows).  n (the rows
 * of the pass) and bits become constants in each case, as dot_codes
 * needs, and so does d where it is 64 or 128 (or the kernel's constant:
 * attend_fix_d*). */
#define FINE_PASS(R_, B_, D_) dot_codes(codes, 4 * 8 * (B_), 8 * (B_), 0, B_, (D_) / 4, &fine[l], R_, acc, NULL, 0, 0, 0)
#define FINE_D(R_, B_)                                                                              \
    do {                                                                                            \
        if (d == 64)                                                                                \
            FINE_PASS(R_, B_, 64);                                                                  \
        else if (d == 128)                                                                          \
            FINE_PASS(R_, B_, 128);                                                                 \
        else                                                                                        \
            FINE_PASS(R_, B_, d);                                                                   \
    } while (0)
__attribute__((noinline, target("avx512vbmi,avx512vnni,avx512dq"))) static void
key_fine_passes(const uint8_t *codes, fixw *fine, float (*fal)[QUAD], unsigned R, unsigned bits, unsigned d,
                __m512 sum[QUAD][4])
{
    for (unsigned r = 0; r < QUAD; r++)
        for (unsigned j = 0; j < 4; j++) sum[r][j] = _mm512_setzero_ps();
    for (unsigned l = 0; l < NFINE; l++) {
        unsigned row[QUAD], n = 0;
        for (unsigned r = 0; r < R; r++)
            if (fal[l][r] != 0.0f) row[n++] = r;
        if (!n) break; /* a row takes level l + 1 only after level l */
        for (unsigned k = 0; k < n; k++) { /* row[k] >= k: a grid only moves forward */
            if (row[k] != k) {
                memcpy(fine[l].hi[k], fine[l].hi[row[k]], d);
                memcpy(fine[l].lo[k], fine[l].lo[row[k]], d);
            }
            fine[l].al[k] = fal[l][row[k]];
        }
        __m512i acc[QUAD][4];
        memset(acc, 0, sizeof acc); /* each case sets its n rows; GCC cannot see that */
        switch ((n - 1) * 2 + (bits == 4)) {
        case 0: FINE_D(1, 2); break;
        case 1: FINE_D(1, 4); break;
        case 2: FINE_D(2, 2); break;
        case 3: FINE_D(2, 4); break;
        case 4: FINE_D(3, 2); break;
        case 5: FINE_D(3, 4); break;
        case 6: FINE_D(4, 2); break;
        default: FINE_D(4, 4); break;
        }
        for (unsigned k = 0; k < n; k++)
            for (unsigned j = 0; j < 4; j++)
                sum[row[k]][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[k][j]), _mm512_set1_ps(fine[l].al[k]), sum[row[k]][j]);
    }
}
#undef FINE_D
#undef FINE_PASS

/* key_scores2 in fixed point, for `bits` (2 or 4) bits a code and head
 * dim d: constants after inlining.  scale: the softmax scale, for the
 * precision check. */
VINLINE void key_scores_fix_b(const gear_block_layout *L, const uint8_t *blk, const blk2 *f, const float *q,
                              unsigned R, float *s, const uint8_t *next, float scale, unsigned bits, unsigned d, int gen)
{
    unsigned rb = 8 * bits, lines = next ? (unsigned)((L->bytes + 63) / 64) : 0; /* rb: 64 codes */
    fixw w, fine[NFINE];
    float fal[NFINE][QUAD];
    float bias[QUAD], coarse = KEY_LOGIT_ERR / (fabsf(scale) * (float)((1u << bits) - 1));
    int more = 0;
    part4 pt;
    if (R == 1 && L->n_outliers) key_outliers1(L, f, q, pt, gen);
    for (unsigned r = 0; r < R; r++) { /* the minima enter once per token */
        w.al[r] = fix16(q + (size_t)r * d, f->dl, f->mn, d, w.hi[r], w.lo[r], &bias[r], coarse, fine, fal, r);
        more |= fal[0][r] != 0.0f;
    }
    __m512i acc[QUAD][4]; /* key rows are channels of 64 tokens; a step takes four */
    __m512 more_sum[QUAD][4];
    dot_codes(blk + L->off_codes, 4 * rb, rb, 0, bits, d / 4, &w, R, acc, next, 0, (lines + d / 4 - 1) / (d / 4), lines);
    if (__builtin_expect(more, 0)) key_fine_passes(blk + L->off_codes, fine, fal, R, bits, d, more_sum);
    for (unsigned r = 0; r < R; r++) {
        __m512 v[4];
        for (unsigned j = 0; j < 4; j++) {
            v[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][j]), _mm512_set1_ps(w.al[r]), _mm512_set1_ps(bias[r]));
            if (more) v[j] = _mm512_add_ps(v[j], more_sum[r][j]);
        }
        if (bits == 2)
            unpermute64(v, s + r * NB);
        else
            unpermute64_b4(v, s + r * NB);
    }
    key_extras(L, f, q, R, s, pt, gen);
}

/* dc: the head dim as a constant in the kernels of the other head dims
 * (attend_fix_d*), else 0 (64 or 128, from the layout) */
VINLINE void key_scores_fix(const gear_block_layout *L, const uint8_t *blk, const blk2 *f, const float *q,
                            unsigned R, float *s, const uint8_t *next, float scale, int gen, unsigned dc)
{
    if (dc && !common_dim(dc) && L->bits == 2)
        key_scores_fix_b(L, blk, f, q, R, s, next, scale, 2, dc, gen);
    else if (dc && !common_dim(dc))
        key_scores_fix_b(L, blk, f, q, R, s, next, scale, 4, dc, gen);
    else if (L->bits == 2 && L->d == 64)
        key_scores_fix_b(L, blk, f, q, R, s, next, scale, 2, 64, gen);
    else if (L->bits == 2)
        key_scores_fix_b(L, blk, f, q, R, s, next, scale, 2, 128, gen);
    else if (L->d == 64)
        key_scores_fix_b(L, blk, f, q, R, s, next, scale, 4, 64, gen);
    else
        key_scores_fix_b(L, blk, f, q, R, s, next, scale, 4, 128, gen);
}

/* values2 in fixed point, 64 channels at a time; a group is 64 channels or
 * the whole row (one set of weights for every chunk).  bits and d are
 * constants after inlining where d is 64 or 128 (or attend_fix_d*'s), so that the code loops
 * know their row stride.  A head dim that is not a multiple of 64 ends in
 * a short chunk (16, 32 or 48 channels), added to o in natural order. */
VINLINE void values_fix_b(const gear_block_layout *L, const uint8_t *blk, const blk2 *f, const float *p,
                          unsigned R, float *o, float *onat, const uint8_t *next, unsigned bits, unsigned d, int gen)
{
    unsigned rb = d * bits / 8, chunks = (d + 63) / 64, steps = chunks * (NB / 4);
    unsigned lines = next ? (unsigned)((L->bytes + 63) / 64) : 0, per = (lines + steps - 1) / steps;
    fixw w;
    float bias[QUAD] = {0}; /* set with w at chunk 0 */
    for (unsigned ch = 0; ch < chunks; ch++) {
        unsigned g = ch * 64 / L->group, tw = d - 64 * ch < 64 ? d - 64 * ch : 64;
        if (ch == 0 || g != (ch - 1) * 64 / L->group)
            for (unsigned r = 0; r < R; r++) {
                w.al[r] = fix16(p + r * NB, f->dlT + g * NB, f->mnT + g * NB, NB, w.hi[r], w.lo[r], &bias[r], 0.0f, NULL, NULL, 0);
            }
        __m512i acc[QUAD][4];
        /* value rows are tokens: a step takes chunk ch of four, rb apart
         * (a short chunk reads past its row's end, into the next row or,
         * for the last token, into the scales that follow the codes; those
         * lanes are dropped below) */
        const uint8_t *src = blk + L->off_codes;
        unsigned off = ch * 8 * bits;
        if (bits == 4 && tw <= 32) { /* its codes are in the first 16 bytes */
            dot_planes(src, 4 * rb, rb, off, NB / 4, &w, R, 4, 0, 2, 0, acc, next, ch * per * (NB / 4), per, lines);
            for (unsigned r = 0; r < R; r++) acc[r][2] = acc[r][3] = _mm512_setzero_si512();
        } else {
            dot_codes(src, 4 * rb, rb, off, bits, NB / 4, &w, R, acc, next, ch * per * (NB / 4), per, lines);
        }
        for (unsigned r = 0; r < R; r++) {
            __m512 v[4];
            for (unsigned j = 0; j < 4; j++)
                v[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][j]), _mm512_set1_ps(w.al[r]), _mm512_set1_ps(bias[r]));
            float *dst = o + (size_t)r * d + 64 * ch;
            if (tw == 64) {
                for (unsigned j = 0; j < 4; j++)
                    _mm512_storeu_ps(dst + 16 * j, _mm512_add_ps(_mm512_loadu_ps(dst + 16 * j), v[j]));
            } else {
                float nat[64];
                if (bits == 2)
                    unpermute64(v, nat);
                else
                    unpermute64_b4(v, nat);
                for (unsigned j = 0; j < tw; j += 16)
                    _mm512_storeu_ps(dst + j, _mm512_add_ps(_mm512_loadu_ps(dst + j), _mm512_loadu_ps(nat + j)));
            }
        }
    }
    value_extras(L, f, p, R, onat, gen);
}

VINLINE void values_fix(const gear_block_layout *L, const uint8_t *blk, const blk2 *f, const float *p,
                        unsigned R, float *o, float *onat, const uint8_t *next, int gen, unsigned dc)
{
    if (dc && !common_dim(dc) && L->bits == 2)
        values_fix_b(L, blk, f, p, R, o, onat, next, 2, dc, gen);
    else if (dc && !common_dim(dc))
        values_fix_b(L, blk, f, p, R, o, onat, next, 4, dc, gen);
    else if (L->bits == 2 && L->d == 64)
        values_fix_b(L, blk, f, p, R, o, onat, next, 2, 64, gen);
    else if (L->bits == 2)
        values_fix_b(L, blk, f, p, R, o, onat, next, 2, 128, gen);
    else if (L->d == 64)
        values_fix_b(L, blk, f, p, R, o, onat, next, 4, 64, gen);
    else
        values_fix_b(L, blk, f, p, R, o, onat, next, 4, 128, gen);
}

/* One (K, V) block pair for R rows (a compile-time count) starting at r0:
 * scores, softmax, values, through the float (KEYS = key_scores2, VALS =
 * values2) or the fixed-point kernels, for any layout (GEN) or rank 0 or 2
 * and one outlier per side.  The first row quad prefetches. */
#define BLOCK_ROWS(a, fk, fv, r0, R, KEYS, VALS, GEN, DC)                                                  \
    do {                                                                                                  \
        float s_[QUAD * NB];                                                                              \
        unsigned d_ = (DC) ? (DC) : (a)->lk->d;                                                           \
        float *onat_ = (a)->onat ? (a)->onat + (size_t)(r0) * d_ : NULL, *o_ = (a)->o + (size_t)(r0) * d_; \
        KEYS((a)->lk, (a)->kblk, fk, (a)->q + (size_t)(r0) * d_, R, s_, (r0) ? NULL : (a)->next_k, (a)->scale, GEN, DC); \
        softmax2(s_, R, (a)->scale, (a)->pos0, (a)->lim + (r0), (a)->pt + (r0), o_, onat_, d_);           \
        VALS((a)->lv, (a)->vblk, fv, s_, R, o_, onat_, (r0) ? NULL : (a)->next_v, GEN, DC);              \
    } while (0)

/* Every row of a block pair, four at a time; the block copies are blk2s
 * on the stack, or for GEN 2 the two blk2bigs at a->big (BLK2_GEN). */
#define BLK2_0(a) blk2 fk_, fv_, *fkp_ = &fk_, *fvp_ = &fv_
#define BLK2_1(a) BLK2_0(a)
#define BLK2_2(a) blk2 *fkp_ = &((blk2big *)(a)->big)[0].s, *fvp_ = &((blk2big *)(a)->big)[1].s
#define ALL_ROWS(a, KEYS, VALS, GEN, DC)                                                       \
    do {                                                                                     \
        BLK2_##GEN(a);                                                                       \
        block_prep((a)->lk, (a)->kblk, fkp_, GEN);                                           \
        block_prep((a)->lv, (a)->vblk, fvp_, GEN);                                           \
        for (unsigned r0_ = 0; r0_ < (a)->rows; r0_ += QUAD) {                               \
            switch ((a)->rows - r0_) {                                                       \
            case 1: BLOCK_ROWS(a, fkp_, fvp_, r0_, 1, KEYS, VALS, GEN, DC); break;               \
            case 2: BLOCK_ROWS(a, fkp_, fvp_, r0_, 2, KEYS, VALS, GEN, DC); break;               \
            case 3: BLOCK_ROWS(a, fkp_, fvp_, r0_, 3, KEYS, VALS, GEN, DC); break;               \
            default: BLOCK_ROWS(a, fkp_, fvp_, r0_, 4, KEYS, VALS, GEN, DC); break;              \
            }                                                                                \
        }                                                                                    \
    } while (0)

__attribute__((target("avx512vbmi,avx512vnni,avx512dq"))) static void attend_fix(const gear_attn2_block *a)
{
    ALL_ROWS(a, key_scores_fix, values_fix, 0, 0);
}

/* The same for layouts of other ranks and outlier counts: a kernel of its
 * own, so that the presets' code is compiled as it was without them
 * (inlined into the one kernel, the general paths made gear2 at G = 4
 * 5-10 % slower and even kivi2 5 %, by how GCC 12 then allocated the
 * kernel's registers and laid out its code). */
__attribute__((noinline, target("avx512vbmi,avx512vnni,avx512dq"))) static void attend_fix_gen(const gear_attn2_block *a)
{
    ALL_ROWS(a, key_scores_fix, values_fix, 1, 0);
}

/* Head dims 80, 96 and 256 as constants: with the head dim read from the
 * layout, its loops and the weights' registers cost kivi2 at head dim 96
 * and G = 4 1219 ns a pair in cache (d 128: 1106). */
#define ATTEND_FIX_DIM(D)                                                                                        \
    __attribute__((noinline, target("avx512vbmi,avx512vnni,avx512dq"))) static void attend_fix_d##D(const gear_attn2_block *a) \
    {                                                                                                            \
        ALL_ROWS(a, key_scores_fix, values_fix, 1, D);                                                           \
    }
ATTEND_FIX_DIM(80)
ATTEND_FIX_DIM(96)
ATTEND_FIX_DIM(256)
#undef ATTEND_FIX_DIM

__attribute__((noinline)) static void attend_flt_gen(const gear_attn2_block *a)
{
    ALL_ROWS(a, key_scores2, values2, 1, 0);
}

/* Layouts beyond blk2 (blk2big): head dims 64 and 128 in fixed point,
 * the float kernel's head dims (64, 128, 256) in float. */
__attribute__((noinline, target("avx512vbmi,avx512vnni,avx512dq"))) static void attend_fix_big(const gear_attn2_block *a)
{
    ALL_ROWS(a, key_scores_fix, values_fix, 2, 0);
}

__attribute__((noinline)) static void attend_flt_big(const gear_attn2_block *a)
{
    ALL_ROWS(a, key_scores2, values2, 2, 0);
}

/* Rank 0 or 2 and at most one outlier per side: the presets' layouts. */
static int common_layout(const gear_block_layout *L)
{
    return (L->rank == 0 || L->rank == 2) &&
           (!L->n_outliers || (L->k_full == 1 && L->outliers_per_row == 2 * L->groups_per_row));
}

/* Two heads of one query row each, phase by phase (keys of both, then the
 * softmax of both, then values): the two chains are independent, so one
 * head's work fills the other's latencies. */
__attribute__((target("avx512vbmi,avx512vnni,avx512dq"))) static void attend_fix_pair(const gear_attn2_block *a)
{
    blk2 fk[2], fv[2];
    float s[2][NB];
    for (unsigned i = 0; i < 2; i++) {
        block_prep(a[i].lk, a[i].kblk, &fk[i], 0);
        block_prep(a[i].lv, a[i].vblk, &fv[i], 0);
    }
    for (unsigned i = 0; i < 2; i++) key_scores_fix(a[i].lk, a[i].kblk, &fk[i], a[i].q, 1, s[i], a[i].next_k, a[i].scale, 0, 0);
    for (unsigned i = 0; i < 2; i++)
        softmax2(s[i], 1, a[i].scale, a[i].pos0, a[i].lim, a[i].pt, a[i].o, a[i].onat, a[i].lk->d);
    for (unsigned i = 0; i < 2; i++) values_fix(a[i].lv, a[i].vblk, &fv[i], s[i], 1, a[i].o, a[i].onat, a[i].next_v, 0, 0);
}

void gear_cpu_attend2_avx512(const gear_attn2_block *a, unsigned n)
{
    int gen = !common_layout(a->lk) || !common_layout(a->lv); /* the same for every block of a call */
    if (use_fixed(a->lk->d, a->scale)) {
        gen |= !common_dim(a->lk->d);
        if (n == 2 && a[0].rows == 1 && a[1].rows == 1 && !gen) {
            attend_fix_pair(a);
            return;
        }
        unsigned d = a->lk->d;
        for (unsigned i = 0; i < n; i++) {
            if (d == 80)
                attend_fix_d80(a + i);
            else if (d == 96)
                attend_fix_d96(a + i);
            else if (d == 256)
                attend_fix_d256(a + i);
            else if (gen)
                attend_fix_gen(a + i);
            else
                attend_fix(a + i);
        }
        return;
    }
    for (unsigned i = 0; i < n; i++) {
        if (gen)
            attend_flt_gen(a + i);
        else
            ALL_ROWS(a + i, key_scores2, values2, 0, 0);
    }
}

/* A separate entry, chosen once a call (gear_cpu_attention asks
 * gear_cpu_attn2_big), so that the dispatch above, which inlines the float
 * kernel, stays as it was. */
int gear_cpu_attn2_big(const gear_block_layout *lk, const gear_block_layout *lv)
{
    return big_layout(lk, lv);
}

size_t gear_cpu_attn2_big_bytes(void) { return 2 * sizeof(blk2big); }

void gear_cpu_attend2_big_avx512(const gear_attn2_block *a, unsigned n)
{
    int fixed = use_fixed(a->lk->d, a->scale) && common_dim(a->lk->d); /* as gear_cpu_attn2_fits */
    for (unsigned i = 0; i < n; i++) {
        if (fixed)
            attend_fix_big(a + i);
        else
            attend_flt_big(a + i);
    }
}

/* o[r] (64-channel groups in the permuted order of `bits`-bit codes, a
 * last short group in natural order: values_fix_b) = natural order +
 * onat[r]. */
void gear_cpu_values_unpermute(float *o, const float *onat, unsigned rows, unsigned d, unsigned bits)
{
    for (unsigned r = 0; r < rows; r++)
        for (unsigned g = 0; g < d; g += 64) {
            float *x = o + (size_t)r * d + g;
            unsigned tw = d - g < 64 ? d - g : 64;
            if (tw == 64) {
                __m512 v[4] = {_mm512_loadu_ps(x), _mm512_loadu_ps(x + 16), _mm512_loadu_ps(x + 32), _mm512_loadu_ps(x + 48)};
                if (bits == 2)
                    unpermute64(v, x);
                else
                    unpermute64_b4(v, x);
            }
            if (onat)
                for (unsigned j = 0; j < tw; j += 16)
                    _mm512_storeu_ps(x + j, _mm512_add_ps(_mm512_loadu_ps(x + j), _mm512_loadu_ps(onat + (size_t)r * d + g + j)));
        }
}
