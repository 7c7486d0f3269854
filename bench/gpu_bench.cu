/*
 * gpu_bench.cu - GPU speed of libgear's kernels (the cuda/hip modules' own
 * source), as ratios against baselines measured in the same run:
 *
 *   copy   device-to-device copy bandwidth (the roof for the codec);
 *   codec  fused compress (gpu_k_compress, one launch per batch of blocks)
 *          and decompress (gpu_k_reconstruct_many), GB/s of fp16 KV, and
 *          as a ratio to the copy;
 *   attn   one decode step (1 query token per sequence, 8 KV heads, GQA 4,
 *          head_dim 128) over compressed caches, 4k..128k tokens, batch
 *          1..32, against the same split-context kernel reading an fp16
 *          cache (raw fp16 blocks: no decode work, the bytes an fp16 cache
 *          would move).  bench/sdpa_baseline.py adds PyTorch's
 *          scaled_dot_product_attention on the same shapes.
 *
 * Kernel times only (events around launches; blocks pre-zeroed for the
 * compress kernel, as the core hands them over).  Medians of repeats.
 * Output: a table on stdout and JSON lines (--json FILE).
 * Exits 77 when no device is usable.
 */
#if defined(GEAR_GPU_BENCH_EMU)
#include "vendors/emu.h" /* the bench's host logic under emulation (tiny shapes) */
#elif defined(__HIPCC__)
#include "vendors/hip.h"
#else
#include "vendors/cuda.h"
#endif
#include <algorithm>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>
#include "gpu_compress.cuh"
#include "gpu_attention.cuh"

extern "C" gear_status gear_block_layout_init(gear_block_layout *L, const gear_config *cfg,
                                              unsigned d);

#define CHECK(call)                                                                     \
    do {                                                                                \
        gpuError_t e_ = (call);                                                         \
        if (e_ != gpuSuccess) {                                                         \
            fprintf(stderr, "gear-gpu-bench: %s: %s\n", #call, gpuGetErrorString(e_));  \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

static FILE *jf;
static int reps = 5, iters = 10, warp = 32, n_sm = 1;
static unsigned codec_blocks = 4096;
static size_t copy_bytes = (size_t)1 << 30;
/* decode shapes: tokens and batch (--quick: a smoke test of the bench) */
static std::vector<unsigned> Ts = {4096, 16384, 65536, 131072}, Bs = {1, 4, 16, 32};
static const unsigned D = 128, N = 64, HKV = 8, GQA = 4;

/* Synthetic KV: sums of uniforms (roughly normal), keys with a few
 * outlier channels as real keys have. */
__global__ void bench_fill(float *x, size_t n, uint64_t seed, unsigned d, int key)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint64_t z = gear_mix64(seed ^ (0x9e3779b97f4a7c15ull * (i + 1)));
        float g = ((float)(z & 0xffff) + (float)((z >> 16) & 0xffff) + (float)((z >> 32) & 0xffff) +
                   (float)(z >> 48)) * (1.0f / 65536.0f) - 2.0f;
        if (key && (i % d) % 16 == 3) g *= 8.0f;
        x[i] = g;
    }
}

static void fill(float *x, size_t n, uint64_t seed, int key)
{
    GPU_LAUNCH(bench_fill, 1024, 256, 0, x, n, seed, D, key);
    CHECK(gpuGetLastError());
}

static double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

/* Median over reps of the mean time of `iters` calls, in seconds. */
template <typename F>
static double timed(F f)
{
    gpuEvent_t a, b;
    CHECK(gpuEventCreate(&a));
    CHECK(gpuEventCreate(&b));
    f(); /* warm-up */
    CHECK(gpuDeviceSynchronize());
    std::vector<double> t;
    for (int r = 0; r < reps; r++) {
        CHECK(gpuEventRecord(a, 0));
        for (int i = 0; i < iters; i++) f();
        CHECK(gpuEventRecord(b, 0));
        CHECK(gpuEventSynchronize(b));
        float ms = 0;
        CHECK(gpuEventElapsedTime(&ms, a, b));
        t.push_back(ms * 1e-3 / iters);
    }
    CHECK(gpuGetLastError());
    CHECK(gpuEventDestroy(a));
    CHECK(gpuEventDestroy(b));
    return median(t);
}

static gear_block_layout layout(const char *preset, gear_kind kind)
{
    gear_config cfg;
    gear_block_layout L;
    if (gear_config_preset(preset, kind, &cfg) || (cfg.block = N, gear_block_layout_init(&L, &cfg, D))) {
        fprintf(stderr, "gear-gpu-bench: preset %s: no layout\n", preset);
        exit(1);
    }
    return L;
}

/* ------------------------------------------------------------ copy */

static double bench_copy(void)
{
    size_t bytes = copy_bytes;
    void *a, *b;
    CHECK(gpuMalloc(&a, bytes));
    CHECK(gpuMalloc(&b, bytes));
    CHECK(gpuMemset(a, 1, bytes));
    double t = timed([&] { CHECK(gpuMemcpy(b, a, bytes, gpuMemcpyDeviceToDevice)); });
    CHECK(gpuFree(a));
    CHECK(gpuFree(b));
    double gbs = (double)bytes / t * 1e-9;
    printf("copy   device-to-device %.1f GB/s (%zu MiB)\n", gbs, bytes >> 20);
    if (jf) fprintf(jf, "{\"bench\":\"gpu_copy\",\"backend\":\"%s\",\"gbs\":%.3f}\n", GPU_NAME, gbs);
    return gbs;
}

/* ----------------------------------------------------------- codec */

static void bench_codec(const char *preset, gear_kind kind, double copy_gbs)
{
    gear_block_layout L = layout(preset, kind);
    const unsigned count = codec_blocks;
    const size_t nd = (size_t)N * D;
    float *x, *out;
    uint8_t *blk;
    double *scratch = NULL;
    gpu_job *jobs;
    CHECK(gpuMalloc((void **)&x, count * nd * 4));
    CHECK(gpuMalloc((void **)&out, count * nd * 4));
    CHECK(gpuMalloc((void **)&blk, count * L.bytes));
    size_t sd = ((size_t)N * D + (size_t)(N + D) * L.rank) * sizeof(double);
    if (L.rank) CHECK(gpuMalloc((void **)&scratch, count * sd));
    CHECK(gpuMalloc((void **)&jobs, count * sizeof(gpu_job)));
    fill(x, count * nd, 7 + kind, kind == GEAR_KEY);
    std::vector<gpu_job> hj(count);
    for (unsigned i = 0; i < count; i++)
        hj[i] = {x + i * nd, NULL, blk + i * L.bytes, {1234, 0, i % HKV, i / HKV}};
    CHECK(gpuMemcpy(jobs, hj.data(), count * sizeof(gpu_job), gpuMemcpyHostToDevice));
    /* the core hands over zeroed blocks: zero them once, outside the timing
     * (the OR-ed codes of a rerun land on the same bits, so reruns are
     * identical) */
    CHECK(gpuMemset(blk, 0, count * L.bytes));
    double tc = L.bits ? timed([&] {
        GPU_LAUNCH(gpu_k_compress, count, GPU_THREADS, 0, L, (const gpu_job *)jobs, scratch);
    }) : 0.0;
    double td = L.bits ? timed([&] {
        GPU_LAUNCH(gpu_k_reconstruct_many, count, GPU_THREADS, 0, L, (const uint8_t *)blk,
                   (size_t)L.bytes, out);
    }) : 0.0;
    double fp16 = (double)count * nd * 2;
    double cg = tc > 0 ? fp16 / tc * 1e-9 : 0, dg = td > 0 ? fp16 / td * 1e-9 : 0;
    printf("codec  %-7s %s  compress %8.1f GB/s (%.3f x copy)  decompress %8.1f GB/s (%.3f x copy)"
           "  [GB/s of fp16 KV, %u blocks %ux%u]\n", preset, kind == GEAR_KEY ? "K" : "V", cg,
           cg / copy_gbs, dg, dg / copy_gbs, count, N, D);
    if (jf)
        fprintf(jf, "{\"bench\":\"gpu_codec\",\"backend\":\"%s\",\"preset\":\"%s\",\"kind\":\"%s\","
                "\"blocks\":%u,\"compress_gbs\":%.3f,\"decompress_gbs\":%.3f,\"copy_gbs\":%.3f,"
                "\"compress_vs_copy\":%.4f,\"decompress_vs_copy\":%.4f}\n",
                GPU_NAME, preset, kind == GEAR_KEY ? "K" : "V", count, cg, dg, copy_gbs,
                cg / copy_gbs, dg / copy_gbs);
    CHECK(gpuFree(x));
    CHECK(gpuFree(out));
    CHECK(gpuFree(blk));
    if (scratch) CHECK(gpuFree(scratch));
    CHECK(gpuFree(jobs));
}

/* ------------------------------------------------------- attention */

typedef std::vector<std::vector<double>> grid_t; /* [T][batch] */

/* Decode-step time of every (T, batch) for one preset; 0 where the cache
 * does not fit in device memory. */
static void bench_attn(const char *preset, grid_t &t_out)
{
    const size_t NT = Ts.size(), NB = Bs.size();
    t_out.assign(NT, std::vector<double>(NB, 0.0));
    gear_block_layout lk = layout(preset, GEAR_KEY), lv = layout(preset, GEAR_VALUE);
    const unsigned nb_max = Ts[NT - 1] / N, pool = std::min(256u, nb_max * HKV), R = GQA;
    /* a pool of distinct compressed blocks, repeated to fill the caches */
    float *x;
    uint8_t *pk, *pv;
    double *scratch = NULL;
    gpu_job *jobs;
    const size_t nd = (size_t)N * D;
    CHECK(gpuMalloc((void **)&x, pool * nd * 4));
    CHECK(gpuMalloc((void **)&pk, pool * lk.bytes));
    CHECK(gpuMalloc((void **)&pv, pool * lv.bytes));
    CHECK(gpuMalloc((void **)&jobs, pool * sizeof(gpu_job)));
    unsigned rank = lk.rank > lv.rank ? lk.rank : lv.rank;
    CHECK(gpuMalloc((void **)&scratch, pool * ((size_t)N * D + (size_t)(N + D) * rank) * 8 + 8));
    std::vector<gpu_job> hj(pool);
    for (int kv = 0; kv < 2; kv++) {
        const gear_block_layout &L = kv ? lv : lk;
        uint8_t *p = kv ? pv : pk;
        fill(x, pool * nd, 100 + kv, !kv);
        CHECK(gpuMemset(p, 0, pool * L.bytes));
        if (!L.bits) { /* fp16: raw blocks, the header is not read by the kernel */
            std::vector<uint16_t> h(pool * L.bytes / 2);
            std::vector<float> hx(pool * nd);
            CHECK(gpuMemcpy(hx.data(), x, pool * nd * 4, gpuMemcpyDeviceToHost));
            for (unsigned b = 0; b < pool; b++)
                for (size_t i = 0; i < nd; i++)
                    h[(b * L.bytes + L.off_raw) / 2 + i] = gear_float_to_half(hx[b * nd + i]);
            CHECK(gpuMemcpy(p, h.data(), pool * L.bytes, gpuMemcpyHostToDevice));
            continue;
        }
        for (unsigned i = 0; i < pool; i++) hj[i] = {x + i * nd, NULL, p + i * L.bytes, {1, 0, 0, i}};
        CHECK(gpuMemcpy(jobs, hj.data(), pool * sizeof(gpu_job), gpuMemcpyHostToDevice));
        GPU_LAUNCH(gpu_k_compress, pool, GPU_THREADS, 0, L, (const gpu_job *)jobs, scratch);
        CHECK(gpuGetLastError());
    }
    CHECK(gpuDeviceSynchronize());
    /* caches for the largest batch that fits at the longest context */
    size_t per_seq = (size_t)nb_max * HKV * (lk.bytes + lv.bytes), fr = 0, tot = 0;
    CHECK(gpuMemGetInfo(&fr, &tot));
    unsigned bmax = Bs[NB - 1];
    while (bmax > 1 && (double)per_seq * bmax > 0.8 * (double)fr) bmax /= 2;
    uint8_t *ak, *av;
    CHECK(gpuMalloc((void **)&ak, (size_t)nb_max * HKV * lk.bytes * bmax));
    CHECK(gpuMalloc((void **)&av, (size_t)nb_max * HKV * lv.bytes * bmax));
    for (int kv = 0; kv < 2; kv++) {
        size_t bytes = kv ? lv.bytes : lk.bytes, total = (size_t)nb_max * HKV * bytes * bmax;
        uint8_t *a = kv ? av : ak, *p = kv ? pv : pk;
        for (size_t off = 0; off < total; off += pool * bytes)
            CHECK(gpuMemcpy(a + off, p, std::min(total - off, pool * bytes), gpuMemcpyDeviceToDevice));
    }
    float *q, *out, *part;
    gpu_attn_seq *seqs;
    CHECK(gpuMalloc((void **)&q, (size_t)bmax * HKV * R * D * 4));
    CHECK(gpuMalloc((void **)&out, (size_t)bmax * HKV * R * D * 4));
    CHECK(gpuMalloc((void **)&seqs, bmax * sizeof(gpu_attn_seq)));
    fill(q, (size_t)bmax * HKV * R * D, 5, 0);
    gpu_attn_params P;
    memset(&P, 0, sizeof P);
    P.lk = lk, P.lv = lv, P.n_head = HKV, P.n_group = GQA, P.n_qtok = 1;
    P.scale = 1.0f / sqrtf((float)D), P.team = warp;
    size_t part_max = 0;
    for (unsigned b = 0; b < NB; b++) { /* the most splits any shape uses */
        gpu_attn_params Q = P;
        gpu_attn_plan(&Q, Bs[b], Ts[0] / N, n_sm);
        part_max = std::max(part_max, gpu_attn_part_floats(&Q, Bs[b]));
        gpu_attn_plan(&Q, Bs[b], nb_max, n_sm);
        part_max = std::max(part_max, gpu_attn_part_floats(&Q, Bs[b]));
    }
    CHECK(gpuMalloc((void **)&part, part_max * 4));
    P.part = part;
    size_t smem = gpu_attn_smem_floats(N, D, R) * 4;
    for (unsigned ti = 0; ti < NT; ti++)
        for (unsigned bi = 0; bi < NB; bi++) {
            unsigned B = Bs[bi], nb = Ts[ti] / N;
            t_out[ti][bi] = 0;
            if (B > bmax) continue;
            std::vector<gpu_attn_seq> hs(B);
            for (unsigned s = 0; s < B; s++) {
                gpu_attn_seq &S = hs[s];
                memset(&S, 0, sizeof S);
                S.kbase = ak + (size_t)s * nb_max * HKV * lk.bytes;
                S.vbase = av + (size_t)s * nb_max * HKV * lv.bytes;
                S.kstride_b = (ptrdiff_t)(HKV * lk.bytes), S.kstride_h = (ptrdiff_t)lk.bytes;
                S.vstride_b = (ptrdiff_t)(HKV * lv.bytes), S.vstride_h = (ptrdiff_t)lv.bytes;
                S.q = q + (size_t)s * HKV * R * D;
                S.out = out + (size_t)s * HKV * R * D;
                S.n_blocks = nb;
            }
            CHECK(gpuMemcpy(seqs, hs.data(), B * sizeof(gpu_attn_seq), gpuMemcpyHostToDevice));
            gpu_attn_params Q = P;
            gpu_attn_plan(&Q, B, nb, n_sm);
            t_out[ti][bi] = timed([&] {
                GPU_LAUNCH(gpu_k_attention, dim3(Q.n_split, HKV, B), GPU_THREADS, smem, Q,
                           (const gpu_attn_seq *)seqs);
                GPU_LAUNCH(gpu_k_attention_merge, dim3(HKV, B), GPU_THREADS, 0, Q,
                           (const gpu_attn_seq *)seqs);
            });
        }
    CHECK(gpuFree(x)); CHECK(gpuFree(pk)); CHECK(gpuFree(pv)); CHECK(gpuFree(jobs));
    CHECK(gpuFree(scratch)); CHECK(gpuFree(ak)); CHECK(gpuFree(av)); CHECK(gpuFree(q));
    CHECK(gpuFree(out)); CHECK(gpuFree(seqs)); CHECK(gpuFree(part));
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc) {
            if (!(jf = fopen(argv[++i], "w"))) { perror(argv[i]); return 1; }
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--quick")) {
            Ts = {1024}, Bs = {1, 2}, codec_blocks = 32, reps = 1, iters = 1;
            copy_bytes = (size_t)16 << 20;
        } else {
            fprintf(stderr, "usage: gear-gpu-bench [--json FILE] [--reps N] [--quick]\n");
            return 2;
        }
    }
    int n = 0;
    if (gpuGetDeviceCount(&n) != gpuSuccess || n == 0) {
        printf("SKIP: no %s device here\n", GPU_RUNTIME);
        return 77;
    }
    char name[256] = "";
    CHECK(gpuSetDevice(0));
    CHECK(gpuGetDeviceName(name, sizeof name, 0));
    CHECK(gpuDeviceGetAttribute(&warp, gpuDevAttrWarpSize, 0));
    CHECK(gpuDeviceGetAttribute(&n_sm, gpuDevAttrMultiProcessorCount, 0));
    printf("gear-gpu-bench: %s %s, %d SMs, warp %d; head_dim %u, block %u, %u KV heads, GQA %u\n",
           GPU_NAME, name, n_sm, warp, D, N, HKV, GQA);
    if (jf)
        fprintf(jf, "{\"bench\":\"gpu_device\",\"backend\":\"%s\",\"device\":\"%s\",\"sms\":%d,"
                "\"warp\":%d}\n", GPU_NAME, name, n_sm, warp);
    double copy = bench_copy();
    static const char *codec_presets[] = {"kivi2", "kivi4", "gear2", "gear4"};
    for (const char *p : codec_presets)
        for (int kind = 0; kind < 2; kind++) bench_codec(p, (gear_kind)kind, copy);

    static const char *attn_presets[] = {"fp16", "kivi2", "gear2", "gear4"};
    const size_t NT = Ts.size(), NB = Bs.size();
    grid_t t[4];
    for (int p = 0; p < 4; p++) bench_attn(attn_presets[p], t[p]);
    printf("\nattn   decode step, us (speedup vs fp16 cache, same kernel)\n%-8s", "T \\ B");
    for (unsigned b = 0; b < NB; b++) printf("%10u", Bs[b]);
    printf("\n");
    for (int p = 0; p < 4; p++) {
        printf("%s\n", attn_presets[p]);
        for (unsigned ti = 0; ti < NT; ti++) {
            printf("%-8u", Ts[ti]);
            for (unsigned bi = 0; bi < NB; bi++) {
                double us = t[p][ti][bi] * 1e6, f = t[0][ti][bi] * 1e6;
                if (us <= 0) { printf("%10s", "-"); continue; }
                if (p == 0) printf("%10.1f", us);
                else printf("%6.1f(%.1fx)", us, f > 0 ? f / us : 0.0);
                if (jf)
                    fprintf(jf, "{\"bench\":\"gpu_attn\",\"backend\":\"%s\",\"preset\":\"%s\","
                            "\"T\":%u,\"batch\":%u,\"kv_heads\":%u,\"gqa\":%u,\"head_dim\":%u,"
                            "\"us\":%.3f,\"us_fp16\":%.3f,\"speedup_vs_fp16\":%.4f}\n",
                            GPU_NAME, attn_presets[p], Ts[ti], Bs[bi], HKV, GQA, D, us, f,
                            f > 0 ? f / us : 0.0);
            }
            printf("\n");
        }
    }
    if (jf) fclose(jf);
    return 0;
}
