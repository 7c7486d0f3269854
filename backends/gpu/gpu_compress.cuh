/* gpu_compress.cuh - compression kernels: outlier selection, group
 * quantization (uniform and Coupled Quantization codes) and the power
 * iteration, as device functions shared by the fused kernel (one
 * workgroup per block, a whole batch in one launch) and the per-primitive
 * kernels.  Codes, scales, minima and outliers are ref's bit for bit: the
 * same fp32 operations, true division, rintf (round half to even), fp16
 * rounding of the minimum and step before coding; the modules are built
 * without FMA contraction so that no expression is fused behind our back. */
#ifndef GEAR_GPU_COMPRESS_CUH
#define GEAR_GPU_COMPRESS_CUH

#include "gpu_common.cuh"

/* One block of a batch.  Scratch (double): the residual E (n x d), Y
 * (n x r) and P (d x r) of the power iteration. */
typedef struct gpu_job {
    const float *x;   /* n x d input, device */
    const float *xq;  /* lowrank_fit only: Q^ + S */
    uint8_t *blk;
    gear_block_id id;
} gpu_job;

GPU_DEV size_t gpu_scratch_doubles(const gear_block_layout &L)
{
    return (size_t)L.n * L.d + (size_t)(L.n + L.d) * L.rank;
}

/* Outliers of group g of row r: the k largest, then the k smallest of the
 * rest, ties to the lower position (ref's sort order), stored sorted by
 * position.  The slots hold in-row positions until the final pass. */
GPU_DEV void gpu_select_group(const gear_block_layout &L, const float *x, uint8_t *blk,
                              unsigned r, unsigned g)
{
    unsigned cnt, s0 = gpu_group_slots(L, r, g, &cnt), k = cnt / 2;
    if (!k) return;
    unsigned lo = g * L.group, m = g + 1 == L.groups_per_row ? L.tail_len : L.group;
    uint16_t *oidx = (uint16_t *)(blk + L.off_oidx) + s0;
    uint16_t *oval = (uint16_t *)(blk + L.off_oval) + s0;
    for (unsigned i = 0; i < cnt; i++) {
        int want_max = i < k;
        float best = 0.0f;
        unsigned bp = ~0u;
        for (unsigned p = lo; p < lo + m; p++) {
            int taken = 0;
            for (unsigned j = 0; j < i; j++) taken |= oidx[j] == p;
            if (taken) continue;
            float v = x[gpu_flat(L, r, p)];
            if (bp == ~0u || (want_max ? v > best : v < best)) best = v, bp = p;
        }
        oidx[i] = (uint16_t)bp;
    }
    for (unsigned i = 1; i < cnt; i++) { /* insertion sort: 2k is small */
        uint16_t key = oidx[i];
        unsigned j = i;
        for (; j > 0 && oidx[j - 1] > key; j--) oidx[j] = oidx[j - 1];
        oidx[j] = key;
    }
    for (unsigned i = 0; i < cnt; i++) {
        unsigned f = gpu_flat(L, r, oidx[i]);
        oidx[i] = (uint16_t)f;
        oval[i] = gear_float_to_half(x[f]);
    }
}

/* Codes, step and minimum of group g of row r, skipping its outliers (their
 * flat indices increase with the position, as the group is walked).  E, if
 * given, receives x - (Q^ + S) in double, 0 at the outliers. */
GPU_DEV void gpu_quantize_group(const gear_block_layout &L, const float *x, uint8_t *blk,
                                unsigned r, unsigned g, double *E)
{
    unsigned cnt, s0 = gpu_group_slots(L, r, g, &cnt);
    unsigned lo = g * L.group, hi = g + 1 == L.groups_per_row ? L.row_len : lo + L.group;
    const uint16_t *oidx = gpu_u16s(blk, L.off_oidx) + s0;
    const unsigned levels = (1u << L.bits) - 1u, bits = L.bits;
    float mn = INFINITY, mx = -INFINITY;
    for (unsigned p = lo, o = 0; p < hi; p++) {
        unsigned f = gpu_flat(L, r, p);
        if (o < cnt && oidx[o] == f) { o++; continue; }
        float v = x[f];
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
    }
    if (mn > mx) mn = mx = 0.0f; /* every entry is an outlier */
    uint16_t mn_h, dl_h;
    gear_group_params(mn, mx, levels, &mn_h, &dl_h);
    float mnf = gear_half_to_float(mn_h), dl = gear_half_to_float(dl_h);
    size_t gi = (size_t)r * L.groups_per_row + g;
    ((uint16_t *)(blk + L.off_scales))[gi] = dl_h;
    ((uint16_t *)(blk + L.off_mins))[gi] = mn_h;
    /* codes are gathered per 32-bit word; only the words a neighbouring
     * group shares need the atomic OR, but every flush uses it */
    uint32_t *row = (uint32_t *)(blk + L.off_codes + (size_t)r * L.row_bytes);
    uint32_t acc = 0;
    unsigned cur = (lo * bits) >> 5;
    for (unsigned p = lo, o = 0; p < hi; p++) {
        unsigned f = gpu_flat(L, r, p), code = 0;
        int out = o < cnt && oidx[o] == f;
        o += out;
        if (!out && dl != 0.0f) {
            float q = rintf((x[f] - mnf) / dl);
            code = q <= 0.0f ? 0u : q >= (float)levels ? levels : (unsigned)q;
        }
        if (E) E[f] = out ? 0.0 : (double)x[f] - (double)fmaf((float)code, dl, mnf);
        unsigned bit = p * bits, w = bit >> 5, sh = bit & 31u;
        if (w != cur) {
            if (acc) atomicOr(&row[cur], acc);
            cur = w, acc = 0;
        }
        acc |= code << sh;
        if (sh + bits > 32) { /* the code spills into the next word */
            if (acc) atomicOr(&row[cur], acc);
            cur = w + 1, acc = code >> (32u - sh);
        }
    }
    if (acc) atomicOr(&row[cur], acc);
}

/* Coupled Quantization codes of token t, code group j (outlier channels
 * skipped), against the block's head codebook. */
GPU_DEV void gpu_cq_code(const gear_block_layout &L, const float *x, uint8_t *blk, unsigned t,
                         unsigned j)
{
    unsigned c = L.cq_dim, K = 1u << L.bits;
    uint32_t skip = 0;
    for (unsigned i = 0; i < c; i++) {
        float v;
        skip |= (uint32_t)gpu_outlier_at(L, blk, t, j * c + i, &v) << i;
    }
    unsigned code = gear_cq_nearest(x + (size_t)t * L.d + (size_t)j * c, skip,
                                    L.codebook + (size_t)j * K * c, K, c);
    uint32_t *row = (uint32_t *)(blk + L.off_codes + (size_t)t * L.cq_row_bytes);
    unsigned bit = j * L.bits, w = bit >> 5, sh = bit & 31u;
    if (code) {
        atomicOr(&row[w], code << sh);
        if (sh + L.bits > 32) atomicOr(&row[w + 1], code >> (32u - sh));
    }
}

/* Power iteration on E (n x d, complete and visible to the workgroup):
 * P from the counter-based start matrix, then {Y = E P; orthonormalize Y;
 * P = E^T Y}; A = Y, B = P in fp16.  Each output is one thread's sum in
 * ref's order.  Called by every thread of the workgroup. */
GPU_DEV void gpu_lowrank(const gear_block_layout &L, const gear_block_id &id, const double *E,
                         double *Y, double *P, uint8_t *blk)
{
    const unsigned n = L.n, d = L.d, r = L.rank, tid = threadIdx.x;
    uint64_t key = gear_rng_key(id.seed, id.layer, id.head, id.block, L.kind);
    for (unsigned i = tid; i < d * r; i += GPU_THREADS) P[i] = gear_rng_uniform(key, i);
    __syncthreads();
    for (unsigned it = 0; it < L.iters; it++) {
        for (unsigned i = tid; i < n * r; i += GPU_THREADS) {
            unsigned t = i / r, c = i % r;
            double s = 0.0;
            for (unsigned j = 0; j < d; j++) s += E[(size_t)t * d + j] * P[j * r + c];
            Y[i] = s;
        }
        __syncthreads();
        if (tid == 0) gear_orthonormalize(Y, n, r); /* serial: ref's arithmetic exactly */
        __syncthreads();
        for (unsigned i = tid; i < d * r; i += GPU_THREADS) {
            unsigned j = i / r, c = i % r;
            double s = 0.0;
            for (unsigned t = 0; t < n; t++) s += E[(size_t)t * d + j] * Y[t * r + c];
            P[i] = s;
        }
        __syncthreads();
    }
    uint16_t *A = (uint16_t *)(blk + L.off_a), *B = (uint16_t *)(blk + L.off_b);
    for (unsigned i = tid; i < n * r; i += GPU_THREADS) A[i] = gear_half_sat((float)Y[i]);
    for (unsigned i = tid; i < d * r; i += GPU_THREADS) B[i] = gear_half_sat((float)P[i]);
}

/* ------------------------------------------------------------- kernels */

/* The whole recipe for a batch: workgroup i compresses block i (zeroed by
 * the core).  A thread selects and quantizes whole groups, so its group's
 * outliers need no synchronisation; the power iteration follows. */
__global__ void __launch_bounds__(GPU_THREADS)
gpu_k_compress(gear_block_layout L, const gpu_job *jobs, double *scratch)
{
    const gpu_job &jb = jobs[blockIdx.x];
    double *E = scratch + blockIdx.x * gpu_scratch_doubles(L);
    unsigned groups = L.rows * L.groups_per_row;
    for (unsigned i = threadIdx.x; i < groups; i += GPU_THREADS) {
        unsigned r = i / L.groups_per_row, g = i % L.groups_per_row;
        gpu_select_group(L, jb.x, jb.blk, r, g);
        gpu_quantize_group(L, jb.x, jb.blk, r, g, L.rank ? E : NULL);
    }
    if (!L.rank) return;
    __syncthreads();
    double *Y = E + (size_t)L.n * L.d, *P = Y + (size_t)L.n * L.rank;
    gpu_lowrank(L, jb.id, E, Y, P, jb.blk);
}

__global__ void __launch_bounds__(GPU_THREADS)
gpu_k_outliers(gear_block_layout L, const float *x, uint8_t *blk)
{
    unsigned groups = L.rows * L.groups_per_row;
    for (unsigned i = blockIdx.x * GPU_THREADS + threadIdx.x; i < groups; i += gridDim.x * GPU_THREADS)
        gpu_select_group(L, x, blk, i / L.groups_per_row, i % L.groups_per_row);
}

/* Codes of a block whose outliers are set and whose code rows are zero. */
__global__ void __launch_bounds__(GPU_THREADS)
gpu_k_quantize(gear_block_layout L, const float *x, uint8_t *blk)
{
    unsigned stride = gridDim.x * GPU_THREADS, i0 = blockIdx.x * GPU_THREADS + threadIdx.x;
    if (L.cq_dim) {
        for (unsigned i = i0; i < L.n * L.cq_groups; i += stride)
            gpu_cq_code(L, x, blk, i / L.cq_groups, i % L.cq_groups);
        return;
    }
    for (unsigned i = i0; i < L.rows * L.groups_per_row; i += stride)
        gpu_quantize_group(L, x, blk, i / L.groups_per_row, i % L.groups_per_row, NULL);
}

/* lowrank_fit: E = x - xq in double, zero at the outliers, then the power
 * iteration; one workgroup. */
__global__ void __launch_bounds__(GPU_THREADS)
gpu_k_lowrank(gear_block_layout L, gear_block_id id, const float *x, const float *xq,
              uint8_t *blk, double *E)
{
    size_t nd = (size_t)L.n * L.d;
    for (size_t f = threadIdx.x; f < nd; f += GPU_THREADS) E[f] = (double)x[f] - (double)xq[f];
    __syncthreads();
    const uint16_t *oidx = gpu_u16s(blk, L.off_oidx);
    for (unsigned j = threadIdx.x; j < L.n_outliers; j += GPU_THREADS) E[oidx[j]] = 0.0;
    __syncthreads();
    double *Y = E + nd, *P = Y + (size_t)L.n * L.rank;
    gpu_lowrank(L, id, E, Y, P, blk);
}

/* out = Q^ + S (with_lowrank 0) or Q^ + S + A B^T, one thread per entry. */
__global__ void __launch_bounds__(GPU_THREADS)
gpu_k_reconstruct(gear_block_layout L, const uint8_t *blk, float *out, int with_lowrank)
{
    size_t nd = (size_t)L.n * L.d;
    for (size_t f = (size_t)blockIdx.x * GPU_THREADS + threadIdx.x; f < nd;
         f += (size_t)gridDim.x * GPU_THREADS) {
        unsigned t = (unsigned)(f / L.d), c = (unsigned)(f % L.d);
        out[f] = with_lowrank ? gpu_entry(L, blk, t, c) : gpu_dequant_entry(L, blk, t, c);
    }
}

/* Reconstruction of a batch: block i at base + i*stride into out + i*n*d,
 * one workgroup per block (gear_decompress of many blocks; the bench). */
__global__ void __launch_bounds__(GPU_THREADS)
gpu_k_reconstruct_many(gear_block_layout L, const uint8_t *base, size_t stride, float *out)
{
    const size_t nd = (size_t)L.n * L.d;
    const uint8_t *blk = base + blockIdx.x * stride;
    float *o = out + blockIdx.x * nd;
    for (unsigned f = threadIdx.x; f < nd; f += GPU_THREADS)
        o[f] = gpu_entry(L, blk, f / L.d, f % L.d);
}

#endif
