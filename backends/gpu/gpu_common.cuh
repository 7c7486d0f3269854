/* gpu_common.cuh - device helpers shared by every gpu kernel: block field
 * access, packed codes, the decode of one block entry, reductions.
 * Included once per module (backends/cuda, backends/hip) after the vendor
 * header; nothing here names a vendor. */
#ifndef GEAR_GPU_COMMON_CUH
#define GEAR_GPU_COMMON_CUH

#include <stdint.h>
#include <gear/backend.h>

#define GPU_DEV __device__ static inline
/* Threads per workgroup of every kernel: a multiple of any warp width
 * (32 or 64) and a power of two for the tree reductions. */
#define GPU_THREADS 256

/* Sections start at multiples of 16 bytes (docs/FORMAT.md), so u16 fields
 * can be read in place on these little-endian devices. */
GPU_DEV const uint16_t *gpu_u16s(const uint8_t *blk, size_t off)
{
    return (const uint16_t *)(blk + off);
}

/* Code j of a packed row (the same bit order as ref's gear_code_get). */
GPU_DEV unsigned gpu_code_get(const uint8_t *row, unsigned bits, unsigned j)
{
    unsigned bit = j * bits, sh = bit & 7u, v = row[bit >> 3];
    if (sh + bits > 8) v |= (unsigned)row[(bit >> 3) + 1] << 8;
    return (v >> sh) & ((1u << bits) - 1u);
}

/* Quantization row and position of entry (t, c). */
GPU_DEV void gpu_row_pos(const gear_block_layout &L, unsigned t, unsigned c, unsigned *r,
                         unsigned *p)
{
    *r = L.kind == GEAR_KEY ? c : t;
    *p = L.kind == GEAR_KEY ? t : c;
}

GPU_DEV unsigned gpu_flat(const gear_block_layout &L, unsigned r, unsigned p)
{
    return L.kind == GEAR_KEY ? p * L.d + r : r * L.d + p;
}

/* First outlier slot of group g of row r, and its number of slots. */
GPU_DEV unsigned gpu_group_slots(const gear_block_layout &L, unsigned r, unsigned g,
                                 unsigned *count)
{
    *count = 2u * (g + 1 == L.groups_per_row ? L.k_tail : L.k_full);
    return r * L.outliers_per_row + 2u * L.k_full * g;
}

/* Is entry (t, c) a stored outlier?  Its group holds 2k sorted indices. */
GPU_DEV int gpu_outlier_at(const gear_block_layout &L, const uint8_t *blk, unsigned t, unsigned c,
                           float *val)
{
    if (!L.n_outliers) return 0;
    unsigned r, p, cnt;
    gpu_row_pos(L, t, c, &r, &p);
    unsigned s0 = gpu_group_slots(L, r, p / L.group, &cnt), f = t * L.d + c;
    const uint16_t *oidx = gpu_u16s(blk, L.off_oidx);
    for (unsigned i = 0; i < cnt; i++)
        if (oidx[s0 + i] == f) {
            *val = gear_half_to_float(gpu_u16s(blk, L.off_oval)[s0 + i]);
            return 1;
        }
    return 0;
}

/* Q^ + S at entry (t, c): the dequantized code, or the outlier's value. */
GPU_DEV float gpu_dequant_entry(const gear_block_layout &L, const uint8_t *blk, unsigned t,
                                unsigned c)
{
    float v;
    if (gpu_outlier_at(L, blk, t, c, &v)) return v;
    if (L.cq_dim) {
        unsigned j = c / L.cq_dim, K = 1u << L.bits;
        unsigned code = gpu_code_get(blk + L.off_codes + (size_t)t * L.cq_row_bytes, L.bits, j);
        return L.codebook[((size_t)j * K + code) * L.cq_dim + c % L.cq_dim];
    }
    unsigned r, p;
    gpu_row_pos(L, t, c, &r, &p);
    size_t gi = (size_t)r * L.groups_per_row + p / L.group;
    float dl = gear_half_to_float(gpu_u16s(blk, L.off_scales)[gi]);
    float mn = gear_half_to_float(gpu_u16s(blk, L.off_mins)[gi]);
    unsigned code = gpu_code_get(blk + L.off_codes + (size_t)r * L.row_bytes, L.bits, p);
    return fmaf((float)code, dl, mn);
}

/* The low-rank term (A B^T)[t][c], summed in ref's order. */
GPU_DEV float gpu_lowrank_entry(const gear_block_layout &L, const uint8_t *blk, unsigned t,
                                unsigned c)
{
    const uint16_t *a = gpu_u16s(blk, L.off_a) + (size_t)t * L.rank;
    const uint16_t *b = gpu_u16s(blk, L.off_b) + (size_t)c * L.rank;
    float s = 0.0f;
    for (unsigned k = 0; k < L.rank; k++)
        s = fmaf(gear_half_to_float(a[k]), gear_half_to_float(b[k]), s);
    return s;
}

/* Entry (t, c) of a raw block (the fp16 preset, or a raw tail). */
GPU_DEV float gpu_raw_entry(const gear_block_layout &L, const uint8_t *blk, unsigned t, unsigned c)
{
    size_t i = (size_t)t * L.d + c;
    const uint8_t *p = blk + L.off_raw;
    switch (L.raw_dtype) {
    case GEAR_F16: return gear_half_to_float(((const uint16_t *)p)[i]);
    case GEAR_BF16: return gear_bf16_to_float(((const uint16_t *)p)[i]);
    default: return ((const float *)p)[i];
    }
}

/* The reconstruction X^ at (t, c): exactly ref's arithmetic, so values are
 * bit-identical to gear_ref_reconstruct. */
GPU_DEV float gpu_entry(const gear_block_layout &L, const uint8_t *blk, unsigned t, unsigned c)
{
    if (L.bits == 0) return gpu_raw_entry(L, blk, t, c);
    float v = gpu_dequant_entry(L, blk, t, c);
    return L.rank ? v + gpu_lowrank_entry(L, blk, t, c) : v;
}

/* OR `code` (bits wide) into bit position `bit` of a row of 32-bit words:
 * neighbouring groups may share a word, so the update is atomic. */
GPU_DEV void gpu_code_or(uint32_t *row, unsigned bit, unsigned code, unsigned bits)
{
    if (!code) return;
    unsigned w = bit >> 5, sh = bit & 31u;
    atomicOr(&row[w], code << sh);
    if (sh + bits > 32) atomicOr(&row[w + 1], code >> (32u - sh));
}

/* Sum over the workgroup (GPU_THREADS threads, all calling); red holds
 * GPU_THREADS values.  A tree in shared memory: no warp width assumed. */
template <typename T>
GPU_DEV T gpu_block_sum(T v, T *red)
{
    red[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = GPU_THREADS / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
        __syncthreads();
    }
    T r = red[0];
    __syncthreads();
    return r;
}

/* Max and sum inside a team of `width` lanes (width = the device's warp
 * size, passed by the host; every lane of the team calls). */
GPU_DEV float gpu_team_max(float v, int width)
{
    for (int o = width / 2; o > 0; o >>= 1) v = fmaxf(v, GPU_SHFL_XOR(v, o, width));
    return v;
}

GPU_DEV float gpu_team_sum(float v, int width)
{
    for (int o = width / 2; o > 0; o >>= 1) v += GPU_SHFL_XOR(v, o, width);
    return v;
}

#endif
