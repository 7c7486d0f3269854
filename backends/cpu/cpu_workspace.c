/*
 * cpu_workspace.c - the pool of reusable scratch of a cpu context (see
 * cpu_workspace.h for why it exists).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "cpu.h"

void *gear_cpu_buf(cpu_buf *b, size_t bytes)
{
    if (bytes <= b->cap && b->p) return b->p;
    if (bytes > SIZE_MAX - (CPU_PAGE - 1)) return NULL;
    size_t sz = gear_cpu_page_round(bytes);
    /* grow by half again, so a slowly growing size does not realloc every call */
    if (sz < b->cap + b->cap / 2 && b->cap + b->cap / 2 <= SIZE_MAX - (CPU_PAGE - 1))
        sz = gear_cpu_page_round(b->cap + b->cap / 2);
    void *p = aligned_alloc(CPU_PAGE, sz ? sz : CPU_PAGE);
    if (!p) return NULL;
    free(b->p);
    b->p = p;
    b->cap = sz;
    return p;
}

int gear_cpu_carve(cpu_buf *b, unsigned n, const size_t *sizes, void **ptrs)
{
    size_t total = 0;
    for (unsigned i = 0; i < n; i++) {
        if (sizes[i] > SIZE_MAX - 63 - total) return 0;
        total += (sizes[i] + 63) / 64 * 64;
    }
    uint8_t *p = gear_cpu_buf(b, total);
    if (!p) return 0;
    for (unsigned i = 0; i < n; i++) {
        ptrs[i] = p;
        p += (sizes[i] + 63) / 64 * 64;
    }
    return 1;
}

static void bufs_free(cpu_buf *b)
{
    for (unsigned i = 0; i < CPU_WS_BUFS; i++) free(b[i].p);
}

static void ws_free(cpu_ws *w)
{
    if (!w) return;
    bufs_free(w->shared);
    for (unsigned t = 0; t < w->n_thr; t++) {
        bufs_free(w->thr[t].b);
        if (w->thr[t].sc) gear_cpu_scratch_free(w->thr[t].sc);
        free(w->thr[t].sc);
    }
    free(w->thr);
    free(w);
}

cpu_ws *gear_cpu_ws_get(cpu_state *s, unsigned n_thr)
{
    if (n_thr == 0) n_thr = 1;
    pthread_mutex_lock(&s->ws_lock);
    cpu_ws *w = s->ws_pool;
    if (w) s->ws_pool = w->next;
    pthread_mutex_unlock(&s->ws_lock);
    if (!w) {
        w = calloc(1, sizeof *w);
        if (!w) return NULL;
    }
    if (w->n_thr < n_thr) {
        cpu_thread_ws *t = realloc(w->thr, sizeof *t * n_thr);
        if (!t) {
            gear_cpu_ws_put(s, w);
            return NULL;
        }
        memset(t + w->n_thr, 0, sizeof *t * (n_thr - w->n_thr));
        w->thr = t;
        w->n_thr = n_thr;
    }
    w->next = NULL;
    return w;
}

/* Buffers above this go back to the system when a call ends: one
 * long-context call should not pin its scratch for the context's life. */
#define KEEP_MAX ((size_t)64 << 20)

static void bufs_trim(cpu_buf *b)
{
    for (unsigned i = 0; i < CPU_WS_BUFS; i++)
        if (b[i].cap > KEEP_MAX) {
            free(b[i].p);
            b[i].p = NULL;
            b[i].cap = 0;
        }
}

void gear_cpu_ws_put(cpu_state *s, cpu_ws *w)
{
    if (!w) return;
    bufs_trim(w->shared);
    for (unsigned t = 0; t < w->n_thr; t++) bufs_trim(w->thr[t].b);
    pthread_mutex_lock(&s->ws_lock);
    w->next = s->ws_pool;
    s->ws_pool = w;
    pthread_mutex_unlock(&s->ws_lock);
}

void gear_cpu_ws_pool_free(cpu_state *s)
{
    cpu_ws *w = s->ws_pool;
    while (w) {
        cpu_ws *n = w->next;
        ws_free(w);
        w = n;
    }
    s->ws_pool = NULL;
}
