/*
 * fuzz_lib.h - what the fuzz targets that drive libgear objects share: one
 * ref context per process, aborting with the library's last error, and a
 * finiteness check of outputs.
 */
#ifndef GEAR_FUZZ_LIB_H
#define GEAR_FUZZ_LIB_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <gear.h>

/* Abort, naming the target (its source file) and the library's last error. */
#define FUZZ_DIE(what) fuzz_die(__FILE__, what)

static inline void fuzz_die(const char *file, const char *what)
{
    const char *base = strrchr(file, '/');
    fprintf(stderr, "%s: %s (last error: %s)\n", base ? base + 1 : file, what,
            gear_last_error_message());
    abort();
}

/* The ref context every input runs on, created on first use. */
static inline gear_context *fuzz_ref_context(void)
{
    static gear_context *ctx;
    if (!ctx) {
        gear_context_params p;
        gear_context_params_init(&p);
        p.backend = "ref";
        if (gear_context_create(&p, &ctx)) FUZZ_DIE("no ref context");
    }
    return ctx;
}

static inline void fuzz_check_finite(const float *x, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) FUZZ_DIE(what);
}

#endif
