/*
 * check_threads.c - the thread-safety promises of docs/RELIABILITY.md:
 *
 *  - one context shared by several threads, each appending to and reading
 *    its own caches at the same time: every result equals the one of the
 *    same work done on one thread, byte for byte;
 *  - one cache read by gear_cache_attention (and gear_cache_decompress,
 *    gear_cache_stats_get, gear_cache_save_mem) from several threads at
 *    once: every output equals the single-threaded one, bit for bit;
 *  - contexts created and freed from several threads at once (the backend
 *    registry loads once), and gear_last_error_message() is per thread.
 *
 * Runs on every available host backend.  Meant to be run under
 * ThreadSanitizer too (docs/RELIABILITY.md says how).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"

enum { NT = 4, H = 2, D = 32, BLK = 16, T = 75, HQ = 4 };

static const char *presets[NT] = {"gear2", "kivi4", "gearl2", "fp16"};

typedef struct job {
    gear_context *ctx;
    int id;                 /* picks the preset and the data */
    float *out;             /* attention output after every step, concatenated */
    uint8_t *saved;         /* gear_cache_save_mem at the end */
    size_t saved_len;
    gear_status st;
} job;

static size_t out_len(void) { return (size_t)T * HQ * D; }

/* Append T tokens in steps of 1..9 (a prefill of 20 first) to two layers,
 * running attention over layer 0 after each step; record everything. */
static void *run_job(void *arg)
{
    job *j = arg;
    gear_config ck, cv;
    j->st = gear_config_preset(presets[j->id % NT], GEAR_KEY, &ck);
    if (!j->st) j->st = gear_config_preset(presets[j->id % NT], GEAR_VALUE, &cv);
    if (j->st) return NULL;
    ck.block = cv.block = BLK;
    if (ck.group > BLK) ck.group = BLK;
    gear_cache *c = NULL;
    j->st = gear_cache_create(j->ctx, &ck, &cv, 2, H, D, T, &c);
    if (j->st) return NULL;
    float *k = tu_synth(100 + (uint64_t)j->id, GEAR_KEY, H, T, D);
    float *v = tu_synth(200 + (uint64_t)j->id, GEAR_VALUE, H, T, D);
    float *q = malloc(sizeof(float) * HQ * D);
    j->out = calloc(out_len(), sizeof(float));
    int t = 0, step = 20;
    while (!j->st && t < T) {
        int n = t + step > T ? T - t : step;
        for (unsigned l = 0; l < 2 && !j->st; l++)
            j->st = tu_cache_append_rows(c, l, k, v, H, T, D, t, n);
        t += n;
        step = 1 + (t * 7) % 9;
        for (int i = 0; i < HQ * D; i++) q[i] = k[i % (H * D)] * 0.5f + (float)(t % 5) * 0.1f;
        if (!j->st) j->st = tu_cache_attention(c, 0, q, HQ, 1, D, 0.18f, j->out + (size_t)(t - 1) * HQ * D);
    }
    if (!j->st) {
        gear_cache_save_mem(c, NULL, 0, &j->saved_len);
        j->saved = malloc(j->saved_len);
        j->st = gear_cache_save_mem(c, j->saved, j->saved_len, &j->saved_len);
    }
    free(k);
    free(v);
    free(q);
    gear_cache_free(c);
    return NULL;
}

static void free_job(job *j)
{
    free(j->out);
    free(j->saved);
}

static int n_backends(const char **names)
{
    int n = 0;
    for (int i = 0; i < gear_backend_count() && n < 8; i++) {
        const char *name = gear_backend_name(i);
        if (!gear_backend_available(i, NULL) || !strcmp(name, "cuda") || !strcmp(name, "hip"))
            continue;
        names[n++] = name;
    }
    return n;
}

START_TEST(test_caches_on_one_context_from_threads)
{
    const char *names[8];
    int nb = n_backends(names);
    for (int b = 0; b < nb; b++) {
        gear_context *ctx = tu_ctx(names[b]);
        /* the reference: the same jobs one after another */
        job ref[NT], par[2 * NT];
        for (int i = 0; i < NT; i++) {
            memset(&ref[i], 0, sizeof ref[i]);
            ref[i].ctx = ctx;
            ref[i].id = i;
            run_job(&ref[i]);
            TU_ASSERT(ref[i].st == GEAR_OK, "%s job %d: %s", names[b], i,
                      gear_status_string(ref[i].st));
        }
        /* 2 threads per job kind, all at once on the shared context */
        pthread_t th[2 * NT];
        for (int i = 0; i < 2 * NT; i++) {
            memset(&par[i], 0, sizeof par[i]);
            par[i].ctx = ctx;
            par[i].id = i % NT;
            TU_CHECK(pthread_create(&th[i], NULL, run_job, &par[i]) == 0);
        }
        for (int i = 0; i < 2 * NT; i++) TU_CHECK(pthread_join(th[i], NULL) == 0);
        for (int i = 0; i < 2 * NT; i++) {
            const job *r = &ref[i % NT];
            TU_ASSERT(par[i].st == GEAR_OK, "%s thread %d: %s", names[b], i,
                      gear_status_string(par[i].st));
            TU_ASSERT(par[i].saved_len == r->saved_len && !memcmp(par[i].saved, r->saved, r->saved_len),
                      "%s thread %d: cache bytes differ from the single-threaded run", names[b], i);
            TU_ASSERT(!memcmp(par[i].out, r->out, out_len() * sizeof(float)),
                      "%s thread %d: attention differs from the single-threaded run", names[b], i);
            free_job(&par[i]);
        }
        for (int i = 0; i < NT; i++) free_job(&ref[i]);
        gear_context_free(ctx);
    }
}
END_TEST

typedef struct reader {
    gear_cache *c;
    const float *q;        /* NQ query sets of HQ x 2 x D */
    const float *want;     /* their single-threaded outputs */
    const float *want_k;   /* single-threaded decompress of layer 0 keys */
    const uint8_t *want_saved;
    size_t saved_len;
    int rounds, bad;
} reader;

enum { NQ = 6 };

static void *run_reader(void *arg)
{
    reader *r = arg;
    size_t qn = (size_t)HQ * 2 * D;
    float *o = malloc(sizeof(float) * qn), *k = malloc(sizeof(float) * H * T * D);
    uint8_t *saved = malloc(r->saved_len);
    for (int round = 0; round < r->rounds; round++)
        for (int i = 0; i < NQ; i++) {
            if (tu_cache_attention(r->c, 0, r->q + i * qn, HQ, 2, D, 0.18f, o) ||
                memcmp(o, r->want + i * qn, sizeof(float) * qn))
                r->bad++;
            if (i == 0) {
                gear_tensor tk;
                size_t len;
                gear_cache_stats st;
                gear_tensor_init(&tk, k, GEAR_F32, 3, H, T, D, 0);
                if (gear_cache_decompress(r->c, 0, &tk, NULL) ||
                    memcmp(k, r->want_k, sizeof(float) * H * T * D))
                    r->bad++;
                if (gear_cache_save_mem(r->c, saved, r->saved_len, &len) || len != r->saved_len ||
                    memcmp(saved, r->want_saved, len))
                    r->bad++;
                if (gear_cache_stats_get(r->c, &st) || st.tokens != T) r->bad++;
            }
        }
    free(o);
    free(k);
    free(saved);
    return NULL;
}

START_TEST(test_one_cache_read_from_threads)
{
    const char *names[8];
    int nb = n_backends(names);
    for (int b = 0; b < nb; b++) {
        gear_context *ctx = tu_ctx(names[b]);
        gear_config ck = tu_preset("gear2", GEAR_KEY), cv = tu_preset("gear2", GEAR_VALUE);
        ck.block = cv.block = BLK;
        gear_cache *c = NULL;
        TU_OK(gear_cache_create(ctx, &ck, &cv, 1, H, D, T, &c));
        float *k = tu_synth(7, GEAR_KEY, H, T, D), *v = tu_synth(8, GEAR_VALUE, H, T, D);
        TU_OK(tu_cache_append(c, 0, k, v, H, T, D)); /* 4 blocks + 11 buffered */
        size_t qn = (size_t)HQ * 2 * D;
        float *q = tu_alloc_f(qn * NQ), *want = tu_alloc_f(qn * NQ);
        tu_fill_normal(9, q, qn * NQ, 1.0f);
        for (int i = 0; i < NQ; i++)
            TU_OK(tu_cache_attention(c, 0, q + i * qn, HQ, 2, D, 0.18f, want + i * qn));
        float *wk, *wv;
        tu_cache_decompress(c, 0, H, T, D, &wk, &wv);
        size_t slen;
        uint8_t *saved = tu_cache_save(c, &slen);
        reader r[NT];
        pthread_t th[NT];
        for (int i = 0; i < NT; i++) {
            r[i] = (reader){c, q, want, wk, saved, slen, 3, 0};
            TU_CHECK(pthread_create(&th[i], NULL, run_reader, &r[i]) == 0);
        }
        for (int i = 0; i < NT; i++) {
            TU_CHECK(pthread_join(th[i], NULL) == 0);
            TU_ASSERT(r[i].bad == 0, "%s reader %d: %d results differ from the single-threaded ones",
                      names[b], i, r[i].bad);
        }
        free(saved);
        free(wk);
        free(wv);
        free(q);
        free(want);
        free(k);
        free(v);
        gear_cache_free(c);
        gear_context_free(ctx);
    }
}
END_TEST

static void *ctx_churn(void *arg)
{
    long id = (long)(intptr_t)arg;
    int bad = 0;
    for (int i = 0; i < 20; i++) {
        gear_context_params p;
        gear_context_params_init(&p);
        p.backend = (i + id) % 2 ? "ref" : "auto";
        gear_context *ctx = NULL;
        if (gear_context_create(&p, &ctx) || !ctx) bad++;
        /* a distinct failure per thread: the message must be this thread's */
        char name[32];
        snprintf(name, sizeof name, "no-such-preset-%ld", id);
        gear_config cfg;
        if (gear_config_preset(name, GEAR_KEY, &cfg) != GEAR_ERR_UNKNOWN_PRESET) bad++;
        if (!strstr(gear_last_error_message(), name)) bad++;
        (void)gear_backend_count();
        gear_context_free(ctx);
    }
    return (void *)(intptr_t)bad;
}

START_TEST(test_contexts_and_errors_from_threads)
{
    pthread_t th[NT];
    for (long i = 0; i < NT; i++)
        TU_CHECK(pthread_create(&th[i], NULL, ctx_churn, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < NT; i++) {
        void *bad;
        TU_CHECK(pthread_join(th[i], &bad) == 0);
        TU_ASSERT(bad == NULL, "thread %d: %ld failures", i, (long)(intptr_t)bad);
    }
}
END_TEST

static Suite *threads_suite(void)
{
    Suite *s = suite_create("threads");
    TCase *tc = tcase_create("threads");
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, test_contexts_and_errors_from_threads);
    tcase_add_test(tc, test_caches_on_one_context_from_threads);
    tcase_add_test(tc, test_one_cache_read_from_threads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(threads_suite(), 0); }
