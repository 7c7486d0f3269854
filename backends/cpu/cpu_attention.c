/*
 * cpu_attention.c - decode attention read straight from compressed blocks:
 * no block is ever decompressed to memory.  Keys enter through
 * s_t = sum_c (q_c*scale_c) code_ct + sum_c q_c min_c (+ outlier and
 * low-rank terms (q.B).A_t); values through o += p_t * decode(v_t) with the
 * low rank as (p.A).B^T.  Work is split over (KV head, chunk of blocks)
 * with an online softmax per chunk, merged per head at the end.  2-bit
 * blocks with groups of 64 (kivi2, gear2), and 4-bit ones (kivi4, kcvt4,
 * gear4) where the CPU has VNNI, go to the AVX-512 kernels of
 * cpu_avx512_attn.c.
 */
#include <omp.h>
#include "cpu_attn.h"

/* The partial results of the work items: item c's output rows and running
 * softmaxes, for every head, in pages of their own.  Neighbouring items
 * go to different threads and every block writes its item's results;
 * while those sat side by side ([head][item]), each of two threads took
 * 1.4-2.1x a lone thread's time per block pair (cpu_workspace.h). */
typedef struct item_results {
    uint8_t *base;
    size_t stride;     /* bytes per item: whole pages */
    size_t head_out;   /* floats of one head's output rows: rows * d */
    unsigned rows, H;
} item_results;

static item_results item_results_plan(unsigned H, unsigned rows, unsigned d)
{
    size_t out = (size_t)rows * d;
    return (item_results){NULL, gear_cpu_page_round(sizeof(float) * H * out + sizeof(part) * H * rows), out, rows, H};
}

/* Head h's output rows (rows x d) and running softmaxes (rows) in item c. */
static inline float *item_out(const item_results *r, unsigned c, unsigned h)
{
    return (float *)(r->base + c * r->stride) + h * r->head_out;
}
static inline part *item_parts(const item_results *r, unsigned c, unsigned h)
{
    return (part *)((float *)(r->base + c * r->stride) + r->H * r->head_out) + (size_t)h * r->rows;
}

GEAR_CLONES
void gear_cpu_unpack(const uint8_t *row, unsigned bits, unsigned p0, unsigned len, float *out)
{
    unpack_codes(row, bits, p0, len, out);
}

/* Work item i of a call: the first `nbuf` items are the full-precision
 * buffer, its heads split evenly among them (a buffer of 63 fp32 tokens
 * reads about as many bytes as 1024 kivi2 tokens: as one item it ran on
 * one thread while the others waited at the merge); the rest are chunks
 * of `per` block indices, each for every KV head.  Buffer items come
 * first, so that the chunks, taken after them, even out the threads. */
typedef struct work_item {
    unsigned slot;   /* its partial results: item_out(res, slot, h) */
    int buffer;      /* 1: the buffer of heads [h0, h1); 0: chunk c */
    unsigned c, h0, h1;
} work_item;

static work_item work_item_of(unsigned i, unsigned nbuf, unsigned H)
{
    if (i < nbuf) return (work_item){i, 1, 0, i * H / nbuf, (i + 1) * H / nbuf};
    return (work_item){i, 0, i - nbuf, 0, H};
}

/* One work item.  Compiled once per x86-64 level with every helper above
 * inlined into it, so the loops vectorize for the CPU at hand. */
GEAR_CLONES
static void attend_item(const gear_attention_args *a, work_item it, unsigned per, const item_results *res, float *s,
                        float *tmp, blockf *fp)
{
    const gear_block_layout *lk = a->lk, *lv = a->lv;
    unsigned n = lk->n, d = lk->d, rows = a->n_group * a->n_qtok, H = a->n_head, c = it.c;
    size_t T = (size_t)a->n_blocks * n + a->n_buf;
    blockf f = *fp;
    if (it.buffer) {
        for (unsigned h = it.h0; h < it.h1; h++) {
            const float *q = a->q + (size_t)h * rows * d;
            const float *kb = a->kbuf + h * a->buf_stride, *vb = a->vbuf + h * a->buf_stride;
            float *o = item_out(res, it.slot, h);
            /* the row kernels: one dot a token and row, and an axpy through
             * memory, had made a buffer of 63 tokens cost as much as 1024
             * compressed ones (kivi2, 8 heads, head dim 128, G = 4) */
            if (!rows_simd(0, kb, 0, a->n_buf, d, q, rows, s)) raw_scores(kb, a->n_buf, d, q, rows, s);
            scale_mask(a, rows, a->n_buf, (size_t)a->n_blocks * n, T, s);
            online_softmax(rows, a->n_buf, d, s, item_parts(res, it.slot, h), o);
            if (rows_simd(1, vb, 0, a->n_buf, d, s, rows, o)) continue;
            for (unsigned t = 0; t < a->n_buf; t++)
                for (unsigned i = 0; i < rows; i++)
                    axpy(o + (size_t)i * d, s[(size_t)i * a->n_buf + t], vb + (size_t)t * d, d);
        }
        return;
    }
    unsigned b1 = (c + 1) * per < a->n_blocks ? (c + 1) * per : a->n_blocks;
    for (unsigned b = c * per; b < b1; b++)
        for (unsigned h = 0; h < H; h++) {
            const float *q = a->q + (size_t)h * rows * d;
            float *o = item_out(res, it.slot, h);
            /* the next pair in this order: head h + 1, else block b + 1 */
            if (h + 1 < H || b + 1 < b1) {
                size_t nx = h + 1 < H ? (size_t)(h + 1) * a->n_blocks + b : b + 1;
                prefetch_lines(a->kblocks[nx], lk->bytes);
                prefetch_lines(a->vblocks[nx], lv->bytes);
            }
            key_scores(lk, a->kblocks[(size_t)h * a->n_blocks + b], q, rows, s, tmp, &f);
            scale_mask(a, rows, n, (size_t)b * n, T, s);
            online_softmax(rows, n, d, s, item_parts(res, it.slot, h), o);
            value_accumulate(lv, a->vblocks[(size_t)h * a->n_blocks + b], s, rows, o, tmp, &f);
        }
}

#ifdef GEAR_CPU_AVX512
/* (K, V) pairs.  With prefetches into L1, 2 and 3 measured no better than
 * 1; into L2 (tenth session, Zen 4), 2 ahead gave 2-16 % more speed-up
 * over fp16 at 16k-32k tokens in the calm state of gear-bench's runs
 * (docs/bench/attn-s10-ahead2.txt); 4 was not tried there. */
#define PREFETCH_AHEAD 2
/* A chunk of compressed blocks for every KV head through the AVX-512
 * kernel (gear_cpu_attn2_fits layouts).  onat: H*rows*d floats of
 * scratch, NULL when the blocks have neither outliers nor low rank. */
static void attend_item2(const gear_attention_args *a, unsigned slot, unsigned c, unsigned per, const item_results *res,
                         float *onat, void *big)
{
    unsigned n = a->lk->n, d = a->lk->d, rows = a->n_group * a->n_qtok, H = a->n_head;
    size_t T = (size_t)a->n_blocks * n + a->n_buf, lim[MAX_ROWS];
    for (unsigned i = 0; i < rows; i++) lim[i] = T - a->n_qtok + i % a->n_qtok;
    if (onat) memset(onat, 0, sizeof(float) * H * rows * d);
    unsigned b1 = (c + 1) * per < a->n_blocks ? (c + 1) * per : a->n_blocks;
    /* One query row, head dim 64, no outliers or rank: two heads at a time
     * (gear_cpu_attend2_avx512): in cache, kivi2 125 -> 109 and kivi4
     * 150 -> 134 ns per block pair; at head dim 128 it gained nothing, and
     * gear2/gear4 lost 5-15% (four blocks' fp32 copies on the stack
     * instead of two). */
    unsigned step = rows == 1 && d == 64 && !onat ? 2 : 1;
    void (*attend)(const gear_attn2_block *, unsigned) = big ? gear_cpu_attend2_big_avx512 : gear_cpu_attend2_avx512;
    for (unsigned b = c * per; b < b1; b++)
        for (unsigned h0 = 0; h0 < H; h0 += step) {
            gear_attn2_block x[2];
            unsigned m = h0 + step <= H ? step : H - h0;
            for (unsigned k = 0; k < m; k++) {
                unsigned h = h0 + k;
                size_t i = (size_t)h * a->n_blocks + b;
                /* the pair PREFETCH_AHEAD calls later in this item's (block, head) order */
                size_t ahead = (size_t)(b - c * per) * H + h + PREFETCH_AHEAD * step, nb = c * per + ahead / H;
                size_t nx = nb < b1 ? (ahead % H) * a->n_blocks + nb : i;
                x[k] = (gear_attn2_block){a->lk, a->lv, a->kblocks[i], a->vblocks[i],
                                          nx != i ? a->kblocks[nx] : NULL, nx != i ? a->vblocks[nx] : NULL,
                                          a->q + (size_t)h * rows * d, rows,
                                          a->scale, (size_t)b * n, lim, item_parts(res, slot, h), item_out(res, slot, h),
                                          onat ? onat + (size_t)h * rows * d : NULL, big};
            }
            attend(x, m);
        }
    for (unsigned h = 0; h < H; h++)
        gear_cpu_values_unpermute(item_out(res, slot, h), onat ? onat + (size_t)h * rows * d : NULL,
                                  rows, d, a->lv->bits);
}
#endif

/* Item c's partial results emptied: its running softmax and the output
 * rows it accumulates into, for every head (by the thread that fills
 * them, so they are in its cache). */
static void item_reset(const item_results *res, unsigned c)
{
    memset(item_out(res, c, 0), 0, sizeof(float) * res->H * res->head_out);
    part *pt = item_parts(res, c, 0);
    for (size_t i = 0; i < (size_t)res->H * res->rows; i++) pt[i] = (part){-INFINITY, 0.0f};
}

/* Each head's items merged into a->out: their running softmaxes rescaled
 * to the largest maximum.  Cloned, so that its loops use the CPU's vectors
 * (in the baseline ISA the merge was a tenth of a call over a one-block
 * cache, most of it the division). */
GEAR_CLONES
static void merge_items(const gear_attention_args *a, const item_results *res, unsigned items)
{
    unsigned d = a->lk->d, rows = a->n_group * a->n_qtok;
    for (unsigned h = 0; h < a->n_head; h++)
        for (unsigned i = 0; i < rows; i++) {
            float m = -INFINITY, l = 0.0f;
            for (unsigned c = 0; c < items; c++) {
                float mc = item_parts(res, c, h)[i].m;
                m = mc > m ? mc : m;
            }
            float *out = a->out + ((size_t)h * rows + i) * d;
            memset(out, 0, sizeof(float) * d);
            for (unsigned c = 0; c < items; c++) {
                part pc = item_parts(res, c, h)[i];
                if (pc.m == -INFINITY) continue;
                float w = gear_exp_neg(pc.m - m);
                l += pc.l * w;
                axpy(out, w, item_out(res, c, h) + (size_t)i * d, d);
            }
            float inv = 1.0f / l; /* a division per element was most of the merge */
            for (unsigned x = 0; x < d; x++) out[x] *= inv;
        }
}

gear_status gear_cpu_attention(void *state, const gear_attention_args *a)
{
    cpu_state *st = state;
    const gear_block_layout *lk = a->lk;
    unsigned n = lk->n, d = lk->d, rows = a->n_group * a->n_qtok, H = a->n_head;
    size_t T = (size_t)a->n_blocks * n + a->n_buf;
    if (rows > MAX_ROWS || a->n_qtok == 0 || a->n_qtok > T) return GEAR_ERR_UNSUPPORTED;
    /* uncompressed blocks are read as fp16 (what caches store); anything
     * else goes to the core's attention */
    if ((a->lk->bits == 0 && a->lk->raw_dtype != GEAR_F16) || (a->lv->bits == 0 && a->lv->raw_dtype != GEAR_F16))
        return GEAR_ERR_UNSUPPORTED;
    if (a->lk->cq_dim || a->lv->cq_dim) return gear_cpu_attention_cq(state, a);
    /* Work items are chunks of block indices, each over every head: the
     * cache stores blocks [block][head], so an item streams contiguous
     * memory.  Up to 8 chunks a thread, so that a thread slowed by
     * something else hands work to the others, but of 32 blocks at least
     * while every thread still gets one: an item's results cross to
     * another core for the merge and back for the next call's first
     * writes, which cost more than the balance gained (2 threads, kivi2,
     * head dim 64, G = 4: 16k tokens 362 ns a pair a thread with 16 items,
     * 314 with 8; 4k 430 with 16, 357 with 2; the same or better in the
     * other shapes timed).  The buffer comes first (work_item_of): one
     * item a thread (at most one a head) when every thread has a chunk,
     * else one item. */
    int threads = st->n_threads;
    unsigned per = 0, chunks = 0;
    if (a->n_blocks) {
        unsigned want = (unsigned)threads * 8, fair = a->n_blocks / (unsigned)threads;
        per = (a->n_blocks + want - 1) / want;
        if (per < 32) per = fair < 32 ? fair : 32; /* per <= fair: at least `threads` chunks */
        if (per < 4) per = 4;
        chunks = (a->n_blocks + per - 1) / per;
    }
    unsigned nbuf = !a->n_buf ? 0u : chunks < (unsigned)threads ? 1u : (unsigned)threads < H ? (unsigned)threads : H;
    unsigned items = chunks + nbuf;
    /* no more threads than chunks of blocks: a thread without one still
     * costs its wake-up, the join and the merge's reads across cores, more
     * than a buffer item saves (kivi2, 8 heads, head dim 128, G = 4, one
     * thread against two: 100 tokens 11.1 against 14.3 us a call, 200
     * 16.6 against 23.0, 300 24.0 against 26.0; from 8 blocks on, two
     * chunks of 4, two threads win: 520 tokens 28.4 against 36.7) */
    if ((unsigned)threads > chunks) threads = chunks ? (int)chunks : 1;
    int failed = 0, fast2 = 0, extra = 0, big = 0;
#ifdef GEAR_CPU_AVX512
    fast2 = CPU_AVX512 && gear_cpu_attn2_fits(a->lk, a->lv, a->scale);
    extra = a->lk->rank || a->lv->rank || a->lk->n_outliers || a->lv->n_outliers;
    big = fast2 && gear_cpu_attn2_big(a->lk, a->lv);
#endif
    cpu_ws *ws = gear_cpu_ws_get(st, (unsigned)threads);
    item_results res = item_results_plan(H, rows, d);
    if (ws && res.stride <= SIZE_MAX / items) res.base = gear_cpu_buf(&ws->shared[0], res.stride * items);
    if (!res.base) {
        gear_cpu_ws_put(st, ws);
        return GEAR_ERR_NO_MEMORY;
    }
#pragma omp parallel num_threads(threads)
    {
        attn_scratch w;
        cpu_thread_ws *tw = &ws->thr[omp_get_thread_num()];
        float *onat = fast2 && extra ? gear_cpu_buf(&tw->b[1], sizeof(float) * H * rows * d) : NULL;
        void *bigp = NULL;
#ifdef GEAR_CPU_AVX512
        bigp = big ? gear_cpu_buf(&tw->b[2], gear_cpu_attn2_big_bytes()) : NULL;
#endif
        /* a thread without its scratch takes its items and does nothing:
         * the call then fails as a whole */
        int ready = attn_scratch_alloc(&w, &tw->b[0], n, d, rows, (size_t)rows * (n > a->n_buf ? n : a->n_buf)) &&
                    !(fast2 && extra && !onat) && !(big && !bigp);
        if (!ready) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (unsigned i = 0; i < items; i++) {
            if (!ready) continue;
            work_item it = work_item_of(i, nbuf, H);
            item_reset(&res, i);
#ifdef GEAR_CPU_AVX512
            if (fast2 && !it.buffer) {
                attend_item2(a, i, it.c, per, &res, onat, bigp);
                continue;
            }
#endif
            attend_item(a, it, per, &res, w.s, w.tmp, &w.f);
        }
    }
    if (failed) {
        gear_cpu_ws_put(st, ws);
        return GEAR_ERR_NO_MEMORY;
    }
    merge_items(a, &res, items);
    gear_cpu_ws_put(st, ws);
    return GEAR_OK;
}
