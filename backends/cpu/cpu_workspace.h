/*
 * cpu_workspace.h - scratch memory kept by a cpu context between calls.
 *
 * Why: a call that mallocs its scratch and frees it at the end touches
 * fresh pages every time (glibc gives large blocks back to the kernel).
 * The first access maps the shared zero page and the first write then
 * replaces it, which flushes the TLB of every core running the process:
 * with two OpenMP threads that IPI storm took 45% of a decode attention
 * call (perf, 2-thread kivi2, G = 4).  A workspace is reused, so its
 * pages stay mapped.
 *
 * A context may be used from several threads at once (gear.h), so the
 * workspaces form a pool: a call takes one (a new one when all are in
 * use) and gives it back.
 */
#ifndef GEAR_CPU_WORKSPACE_H
#define GEAR_CPU_WORKSPACE_H

#include <stddef.h>

/* Buffers start and end on page boundaries.  Memory that threads on two
 * cores write side by side cost far more than false sharing of one line:
 * with work items' results 2 KiB apart, each of two threads took 1.4-2.1x
 * a lone thread's time per block pair in decode attention; padding
 * them to 64 bytes did not help, a page between them did.  Most likely a
 * core's prefetchers, which follow a stream past the lines it touches but
 * never past its 4 KiB page, pulled the other core's lines away from it
 * (docs/PERF-HISTORY.md, twenty-fourth session). */
#define CPU_PAGE 4096
static inline size_t gear_cpu_page_round(size_t bytes) { return (bytes + CPU_PAGE - 1) / CPU_PAGE * CPU_PAGE; }

/* A growable buffer, page-aligned (above). */
typedef struct cpu_buf {
    void *p;
    size_t cap;
} cpu_buf;

#define CPU_WS_BUFS 4

/* The buffers of one OpenMP thread of a call. */
typedef struct cpu_thread_ws {
    cpu_buf b[CPU_WS_BUFS];
    struct cpu_scratch *sc; /* block compression scratch (cpu.h), lazily made */
} cpu_thread_ws;

typedef struct cpu_ws {
    struct cpu_ws *next;
    cpu_buf shared[CPU_WS_BUFS]; /* buffers of the calling thread, shared by the team */
    unsigned n_thr;
    cpu_thread_ws *thr;          /* n_thr entries, by omp_get_thread_num() */
} cpu_ws;

struct cpu_state;

/* A workspace with room for n_thr team threads; NULL when out of memory. */
cpu_ws *gear_cpu_ws_get(struct cpu_state *s, unsigned n_thr);
/* Back to the pool of s (NULL is ignored); buffers over 64 MiB are freed. */
void gear_cpu_ws_put(struct cpu_state *s, cpu_ws *w);
/* Every pooled workspace freed (the context is going away). */
void gear_cpu_ws_pool_free(struct cpu_state *s);
/* b grown to at least `bytes` (contents not kept); NULL when out of memory. */
void *gear_cpu_buf(cpu_buf *b, size_t bytes);
/* n pieces of b, sizes[i] bytes each, every one 64-byte aligned, into
 * ptrs[i]; 0 (ptrs untouched) when out of memory or the sizes overflow. */
int gear_cpu_carve(cpu_buf *b, unsigned n, const size_t *sizes, void **ptrs);

#endif
