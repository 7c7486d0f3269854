/*
 * testutil.h - helpers shared by the Check suites: status assertions,
 * seeded data, error measures, an independent dense fp64 attention, an
 * independent implementation of the GEAR quantizer / outlier selection /
 * power iteration written from the spec (DESIGN s2, docs/FORMAT.md), and
 * temp directories.  Everything here is plain C99 + libcheck.
 */
#ifndef GEAR_TESTUTIL_H
#define GEAR_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <check.h>
#include <gear.h>
#include <gear/backend.h>
#include "../tools/gear/synth.h"

/* ------------------------------------------------------------ statuses */

/* ck_assert_msg without Check's per-assertion bookkeeping (a write to
 * Check's message file on every success), for hot loops and valgrind. */
#define TU_ASSERT(expr, ...)                                                            \
    do {                                                                                \
        if (!(expr)) ck_abort_msg(__VA_ARGS__);                                         \
    } while (0)
/* ck_assert without the bookkeeping */
#define TU_CHECK(expr)                                                                  \
    do {                                                                                \
        if (!(expr)) ck_abort_msg("Assertion '%s' failed", #expr);                      \
    } while (0)
/* exact equality of two integers */
#define TU_EQ(a, b)                                                                     \
    do {                                                                                \
        unsigned long long tu_a_ = (unsigned long long)(a), tu_b_ = (unsigned long long)(b); \
        if (tu_a_ != tu_b_)                                                             \
            ck_abort_msg("%s == %s failed: %llu != %llu (%s:%d)", #a, #b, tu_a_, tu_b_, \
                         __FILE__, __LINE__);                                           \
    } while (0)

/* true for the GEAR_ERR_FORMAT_* statuses */
#define TU_IS_FORMAT_ERR(st) ((st) <= GEAR_ERR_FORMAT_MAGIC && (st) >= GEAR_ERR_FORMAT_CRC)

#define TU_OK(expr)                                                                     \
    do {                                                                                \
        gear_status tu_st_ = (expr);                                                    \
        TU_ASSERT(tu_st_ == GEAR_OK, "%s -> %s (%s)", #expr,                        \
                      gear_status_string(tu_st_), gear_last_error_message());           \
    } while (0)

/* exact status, and a non-empty error message for failures */
#define TU_STATUS(expr, want)                                                           \
    do {                                                                                \
        gear_status tu_st_ = (expr);                                                    \
        TU_ASSERT(tu_st_ == (want), "%s -> %s (%s), expected %s", #expr,            \
                      gear_status_string(tu_st_), gear_last_error_message(),            \
                      gear_status_string(want));                                        \
        if (tu_st_ < 0)                                                                 \
            TU_ASSERT(gear_last_error_message()[0] != 0,                            \
                          "%s failed without an error message", #expr);                 \
    } while (0)

/* any failure, with a non-empty error message */
#define TU_FAILS(expr)                                                                  \
    do {                                                                                \
        gear_status tu_st_ = (expr);                                                    \
        TU_ASSERT(tu_st_ < 0, "%s -> %s, expected a failure", #expr,                \
                      gear_status_string(tu_st_));                                      \
        TU_ASSERT(gear_last_error_message()[0] != 0,                                \
                      "%s failed without an error message", #expr);                     \
    } while (0)

/* one of two statuses */
#define TU_STATUS2(expr, w1, w2)                                                        \
    do {                                                                                \
        gear_status tu_st_ = (expr);                                                    \
        TU_ASSERT(tu_st_ == (w1) || tu_st_ == (w2), "%s -> %s (%s), expected %s or %s", \
                      #expr, gear_status_string(tu_st_), gear_last_error_message(),     \
                      gear_status_string(w1), gear_status_string(w2));                  \
        TU_ASSERT(gear_last_error_message()[0] != 0,                                \
                      "%s failed without an error message", #expr);                     \
    } while (0)

/* ------------------------------------------------------------- running */

/* Run a suite; returns the process exit status.  nofork forces CK_NOFORK
 * (GPU suites); otherwise CK_FORK from the environment decides. */
int tu_run(Suite *s, int nofork);
/* A test case with a generous timeout (valgrind). */
TCase *tu_tcase(const char *name);

/* ------------------------------------------------------------- objects */

/* Context on a named backend (ck_assert on failure). */
gear_context *tu_ctx(const char *backend);
/* Preset for a kind (ck_assert on failure). */
gear_config tu_preset(const char *name, gear_kind kind);
/* A config from scratch. */
gear_config tu_cfg(gear_kind kind, unsigned bits, unsigned group, float ratio, unsigned rank,
                   unsigned iters, unsigned block);

/* ---------------------------------------------------------------- data */

uint64_t tu_rand_u64(uint64_t *state);
/* uniform in [0,1) */
double tu_rand01(uint64_t *state);
void tu_fill_uniform(uint64_t seed, float *x, size_t n, float lo, float hi);
void tu_fill_normal(uint64_t seed, float *x, size_t n, float sigma);
/* gear_synth_kv into a fresh malloc'd buffer [H][T][d] */
float *tu_synth(uint64_t seed, gear_kind kind, int H, int T, int d);
float *tu_alloc_f(size_t n); /* zeroed, ck_assert on failure */
/* fp16 / bf16 round trips */
float tu_h(float x);
float tu_bf(float x);

/* --------------------------------------------------------- error measures */

/* ||a - b|| / ||b|| (0 when both are zero) */
double tu_rel_err(const float *a, const float *b, size_t n);
/* ||a - b||^2 / ||b||^2 */
double tu_nmse(const float *a, const float *b, size_t n);
double tu_rel_err_d(const double *a, const double *b, size_t n);
double tu_max_abs_diff(const float *a, const float *b, size_t n);
/* number of positions where the bit patterns differ */
size_t tu_count_diff_bits(const float *a, const float *b, size_t n);

/* ------------------------------------------------------------ attention */

/* Dense causal attention in fp64.  q [hq][nq][d], k, v [hkv][T][d],
 * out [hq][nq][d]; query head h reads kv head h/(hq/hkv); query i sees
 * positions 0..T-nq+i. */
void tu_attention_dense(const float *q, int hq, int nq, const float *k, const float *v,
                        int hkv, int T, int d, float scale, double *out);

/* ------------------------------------------------------------ streams */

/* gear_compress into a malloc'd buffer of exactly gear_compress_bound bytes
 * (ck_assert on failure). */
uint8_t *tu_compress(gear_context *ctx, const gear_config *cfg, const float *x, int H, int T,
                     int d, uint32_t layer, size_t *len);
/* gear_decompress into a fresh fp32 [H][T][d] buffer (ck_assert). */
float *tu_decompress(gear_context *ctx, const uint8_t *s, size_t len, int H, int T, int d);
/* gear_cache_save_mem into a malloc'd buffer (ck_assert). */
uint8_t *tu_cache_save(const gear_cache *c, size_t *len);
/* Append [H][T][d] fp32 K and V to a layer (status returned). */
gear_status tu_cache_append(gear_cache *c, unsigned layer, const float *k, const float *v, int H,
                            int T, int d);
/* Like tu_cache_append but the rows [t0, t0+nt) of a [H][Ttot][d] array. */
gear_status tu_cache_append_rows(gear_cache *c, unsigned layer, const float *k, const float *v,
                                 int H, int Ttot, int d, int t0, int nt);
/* gear_cache_decompress of a layer into fresh [H][T][d] fp32 arrays. */
void tu_cache_decompress(gear_cache *c, unsigned layer, int H, int T, int d, float **k, float **v);
/* gear_cache_attention with contiguous fp32 q [hq][nq][d] into out. */
gear_status tu_cache_attention(gear_cache *c, unsigned layer, const float *q, int hq, int nq,
                               int d, float scale, float *out);

/* ------------------------------------------- independent GEAR (the spec) */

/* Outliers per side of a group of m entries: min(floor(s*m/2 + 0.5), floor(m/2)). */
unsigned tu_k(float ratio, unsigned m);

/* Byte layout of one compressed block, computed from FORMAT.md. */
typedef struct tu_layout {
    unsigned rows, row_len, group, gpr, tail, k_full, k_tail, n_out, row_bytes;
    size_t off_codes, off_scales, off_mins, off_oidx, off_oval, off_a, off_b, bytes;
} tu_layout;
void tu_layout_make(tu_layout *L, gear_kind kind, unsigned n, unsigned d, unsigned bits,
                    unsigned group, float ratio, unsigned rank);

/* Q + S of one n x d token-major block per the spec.  out (n*d) gets
 * deq(Q) with outliers restored as fp16.  Optional (may be NULL):
 * codes (n*d, flat index, 0 at outliers), is_out (n*d), scales and mins
 * (fp16 bits, [rows][gpr]), oidx (n_out u16 in storage order). */
void tu_quant_block(const float *x, unsigned n, unsigned d, gear_kind kind, unsigned bits,
                    unsigned group, float ratio, float *out, unsigned *codes,
                    unsigned char *is_out, uint16_t *scales, uint16_t *mins, uint16_t *oidx);

/* Power iteration per the spec on E = x - xq (0 where is_out), start
 * matrix keyed by key.  Writes fp16-rounded A (n*r) and B (d*r) as floats
 * and adds A B^T to out (n*d) when out is not NULL. */
void tu_lowrank(const float *x, const float *xq, const unsigned char *is_out, unsigned n,
                unsigned d, unsigned r, unsigned iters, uint64_t key, float *A, float *B,
                float *out);

/* The whole block reconstruction X^ = deq(Q) + S + A B^T per the spec.
 * x is one n x d block; id keys the start matrix. */
void tu_gear_block(const float *x, unsigned n, unsigned d, const gear_config *cfg,
                   uint32_t layer, uint32_t head, uint32_t block, float *out);
/* The reconstruction of a whole [H][T][d] tensor as gear_compress /
 * gear_decompress should produce it (tail kept as is). */
void tu_gear_tensor(const float *x, int H, int T, int d, const gear_config *cfg, uint32_t layer,
                    float *out);

/* ------------------------------------------------------------- files */

/* A fresh private directory (malloc'd path) and its removal. */
char *tu_tmpdir(void);
void tu_rmtree(char *dir); /* removes the files directly in dir, dir, frees */
/* Read a whole file (malloc'd). */
uint8_t *tu_read_file(const char *path, size_t *len);

#endif
