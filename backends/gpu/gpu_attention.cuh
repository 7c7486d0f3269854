/* gpu_attention.cuh - decode attention straight from compressed blocks,
 * split over the context (flash-decoding): workgroup (split, KV head,
 * sequence) decodes its blocks one at a time into shared memory (never an
 * fp16 copy of the cache in device memory), scores the n_group*n_qtok query
 * rows of its KV head against each (GQA: a block is decoded once for all
 * query heads that share it), keeps an online softmax, and writes a partial
 * (max, sum, weighted values); a second kernel merges the splits. */
#ifndef GEAR_GPU_ATTENTION_CUH
#define GEAR_GPU_ATTENTION_CUH

#include "gpu_common.cuh"

/* One sequence.  Block (b, h) is ktab[h*n_blocks + b] when the table is
 * given, else kbase + b*kstride_b + h*kstride_h (a cache arena: no table to
 * upload).  The fp32 tail of head h is at kbuf + h*buf_stride. */
typedef struct gpu_attn_seq {
    const uint8_t *const *ktab, *const *vtab;
    const uint8_t *kbase, *vbase;
    ptrdiff_t kstride_b, kstride_h, vstride_b, vstride_h;
    const float *kbuf, *vbuf;
    const float *q; /* rows [h][g][i] of d */
    float *out;     /* same layout */
    unsigned n_blocks, n_buf;
} gpu_attn_seq;

typedef struct gpu_attn_params {
    gear_block_layout lk, lv;
    unsigned n_head, n_group, n_qtok;
    unsigned n_split, units_per_split; /* unit = a block, or the tail */
    size_t buf_stride;
    float scale;
    int team;    /* lanes per softmax team: the device's warp size */
    float *part; /* [seq][head][split] partials of R*(d+2) floats */
} gpu_attn_params;

/* Shared memory of the split kernel, in floats. */
static inline size_t gpu_attn_smem_floats(unsigned n, unsigned d, unsigned R)
{
    return 2 * (size_t)R * d + (size_t)n * (d + 1) + (size_t)R * n + 3 * (size_t)R;
}

GPU_DEV const uint8_t *gpu_attn_block(const uint8_t *const *tab, const uint8_t *base,
                                      ptrdiff_t sb, ptrdiff_t sh, unsigned nb, unsigned h,
                                      unsigned b)
{
    return tab ? tab[(size_t)h * nb + b] : base + (ptrdiff_t)b * sb + (ptrdiff_t)h * sh;
}

/* tn rows of X^ (or of the fp32 tail when blk is NULL) into tile (stride
 * ld = d + 1: the score loop reads a column per thread without bank
 * conflicts). */
GPU_DEV void gpu_tile_load(const gear_block_layout &L, const uint8_t *blk, const float *buf,
                           unsigned tn, float *tile, unsigned ld)
{
    const unsigned d = L.d;
    for (unsigned e = threadIdx.x; e < tn * d; e += GPU_THREADS) {
        unsigned t = e / d, c = e % d;
        tile[t * ld + c] = blk ? gpu_entry(L, blk, t, c) : buf[(size_t)t * d + c];
    }
}

GPU_DYNAMIC_SHARED(float, gpu_smem);

__global__ void __launch_bounds__(GPU_THREADS)
gpu_k_attention(gpu_attn_params P, const gpu_attn_seq *seqs)
{
    const gpu_attn_seq &S = seqs[blockIdx.z];
    const unsigned h = blockIdx.y, split = blockIdx.x, tid = threadIdx.x;
    const unsigned n = P.lk.n, d = P.lk.d, R = P.n_group * P.n_qtok, ld = d + 1;
    float *q = gpu_smem, *acc = q + R * d, *tile = acc + R * d, *p = tile + (size_t)n * ld;
    float *m = p + R * n, *l = m + R, *alpha = l + R;
    const unsigned units = S.n_blocks + (S.n_buf ? 1u : 0u);
    const unsigned u0 = split * P.units_per_split;
    const unsigned u1 = units < u0 + P.units_per_split ? units : u0 + P.units_per_split;
    const size_t T = (size_t)S.n_blocks * n + S.n_buf;
    const float *qh = S.q + (size_t)h * R * d;
    for (unsigned i = tid; i < R * d; i += GPU_THREADS) q[i] = qh[i], acc[i] = 0.0f;
    for (unsigned i = tid; i < R; i += GPU_THREADS) m[i] = -INFINITY, l[i] = 0.0f;
    gear_block_layout Lk = P.lk, Lv = P.lv; /* this head's codebooks (CQ) */
    if (Lk.cq_dim) Lk.codebook += h * Lk.cb_head_floats;
    if (Lv.cq_dim) Lv.codebook += h * Lv.cb_head_floats;
    const unsigned W = (unsigned)P.team, team = tid / W, lane = tid % W, teams = GPU_THREADS / W;
    __syncthreads();
    for (unsigned u = u0; u < u1; u++) {
        const int tail = u == S.n_blocks;
        const unsigned tn = tail ? S.n_buf : n;
        const size_t t0 = (size_t)u * n;
        const uint8_t *kb = tail ? NULL
            : gpu_attn_block(S.ktab, S.kbase, S.kstride_b, S.kstride_h, S.n_blocks, h, u);
        gpu_tile_load(Lk, kb, S.kbuf + h * P.buf_stride, tn, tile, ld);
        __syncthreads();
        for (unsigned e = tid; e < R * tn; e += GPU_THREADS) {
            unsigned row = e / tn, t = e % tn;
            const float *qr = q + row * d, *kr = tile + t * ld;
            float s = 0.0f;
            for (unsigned c = 0; c < d; c++) s = fmaf(qr[c], kr[c], s);
            size_t last = T - P.n_qtok + row % P.n_qtok; /* causal */
            p[row * n + t] = t0 + t <= last ? s * P.scale : -INFINITY;
        }
        __syncthreads();
        /* online softmax: one team (a whole warp) per query row, so the
         * shuffles below always run on every lane of the team */
        for (unsigned row = team; row < R; row += teams) {
            float *pr = p + row * n, mx = -INFINITY, sum = 0.0f;
            for (unsigned t = lane; t < tn; t += W) mx = fmaxf(mx, pr[t]);
            mx = gpu_team_max(mx, (int)W);
            float mold = m[row], mnew = fmaxf(mold, mx);
            for (unsigned t = lane; t < tn; t += W) {
                float e = mnew == -INFINITY ? 0.0f : expf(pr[t] - mnew);
                pr[t] = e;
                sum += e;
            }
            sum = gpu_team_sum(sum, (int)W);
            if (lane == 0) {
                float a = mnew == -INFINITY ? 1.0f : expf(mold - mnew);
                alpha[row] = a;
                l[row] = l[row] * a + sum;
                m[row] = mnew;
            }
        }
        __syncthreads();
        const uint8_t *vb = tail ? NULL
            : gpu_attn_block(S.vtab, S.vbase, S.vstride_b, S.vstride_h, S.n_blocks, h, u);
        gpu_tile_load(Lv, vb, S.vbuf + h * P.buf_stride, tn, tile, ld);
        __syncthreads();
        for (unsigned o = tid; o < R * d; o += GPU_THREADS) {
            unsigned row = o / d, c = o % d;
            const float *pr = p + row * n;
            float a = acc[o] * alpha[row];
            for (unsigned t = 0; t < tn; t++) a = fmaf(pr[t], tile[t * ld + c], a);
            acc[o] = a;
        }
        __syncthreads();
    }
    float *part = P.part + (((size_t)blockIdx.z * P.n_head + h) * P.n_split + split) * R * (d + 2);
    for (unsigned i = tid; i < R; i += GPU_THREADS) part[i] = m[i], part[R + i] = l[i];
    for (unsigned i = tid; i < R * d; i += GPU_THREADS) part[2 * R + i] = acc[i];
}

/* Merge the splits of (head, sequence): rescale each by e^(m_s - M). */
__global__ void __launch_bounds__(GPU_THREADS)
gpu_k_attention_merge(gpu_attn_params P, const gpu_attn_seq *seqs)
{
    const gpu_attn_seq &S = seqs[blockIdx.y];
    const unsigned h = blockIdx.x, d = P.lk.d, R = P.n_group * P.n_qtok;
    const size_t stride = (size_t)R * (d + 2);
    const float *part = P.part + ((size_t)blockIdx.y * P.n_head + h) * P.n_split * stride;
    for (unsigned o = threadIdx.x; o < R * d; o += GPU_THREADS) {
        unsigned row = o / d;
        float M = -INFINITY;
        for (unsigned s = 0; s < P.n_split; s++) M = fmaxf(M, part[s * stride + row]);
        float num = 0.0f, den = 0.0f;
        for (unsigned s = 0; s < P.n_split; s++) {
            const float *ps = part + s * stride;
            if (ps[row] == -INFINITY) continue; /* an empty split */
            float w = expf(ps[row] - M);
            num = fmaf(w, ps[2 * R + o], num);
            den = fmaf(w, ps[R + row], den);
        }
        S.out[(size_t)h * R * d + o] = num / den;
    }
}

/* Split the context so that the device gets about two workgroups per
 * multiprocessor for this many (head, sequence) pairs; max_units is the
 * longest sequence's block count (+1 for a tail). */
static inline void gpu_attn_plan(gpu_attn_params *P, unsigned n_seq, unsigned max_units, int n_sm)
{
    unsigned pairs = P->n_head * n_seq, want = (2u * (unsigned)n_sm + pairs - 1) / pairs;
    if (want < 1) want = 1;
    if (max_units < 1) max_units = 1;
    if (want > max_units) want = max_units;
    P->units_per_split = (max_units + want - 1) / want;
    P->n_split = (max_units + P->units_per_split - 1) / P->units_per_split;
}

/* Partials needed for a plan, in floats. */
static inline size_t gpu_attn_part_floats(const gpu_attn_params *P, unsigned n_seq)
{
    size_t R = (size_t)P->n_group * P->n_qtok;
    return (size_t)n_seq * P->n_head * P->n_split * R * (P->lk.d + 2);
}

#endif
