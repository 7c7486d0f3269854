/* context.c - contexts: a backend instance plus settings. */
#include <stdlib.h>
#include <string.h>
#include "internal.h"

void gear_context_params_init(gear_context_params *p)
{
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->backend = "auto";
}

gear_status gear_context_create(const gear_context_params *p, gear_context **out)
{
    gear_context_params def;
    if (!out) return gear_fail(GEAR_ERR_INVALID_ARG, "gear_context_create: out is NULL");
    *out = NULL;
    if (!p) {
        gear_context_params_init(&def);
        p = &def;
    }
    if (p->device < 0 || p->n_threads < 0)
        return gear_fail(GEAR_ERR_INVALID_ARG, "device (%d) and n_threads (%d) must be >= 0",
                         p->device, p->n_threads);
    /* The environment refines "auto"; an explicit backend name always wins,
     * so that programs (and tests) that ask for one backend get it. */
    const char *name = p->backend;
    int device = p->device;
    if (!name || !*name || !strcmp(name, "auto")) {
        const char *env = getenv("GEAR_BACKEND");
        if (env && *env) name = env;
        const char *dev = getenv("GEAR_DEVICE");
        if (dev && *dev) {
            char *end;
            long v = strtol(dev, &end, 10);
            if (*end || v < 0 || v > 1024)
                return gear_fail(GEAR_ERR_INVALID_ARG, "GEAR_DEVICE='%s' is not a device index",
                                 dev);
            device = (int)v;
        }
    }
    const struct gear_backend_i *be;
    gear_status st = gear_registry_find(name, &be);
    if (st) return st;
    gear_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return gear_fail(GEAR_ERR_NO_MEMORY, "gear_context_create");
    gear_backend_params bp = {device, p->n_threads};
    st = be->init(&bp, &ctx->state);
    if (st) {
        free(ctx);
        return st;
    }
    ctx->be = be;
    ctx->device = device;
    ctx->n_threads = p->n_threads;
    *out = ctx;
    return GEAR_OK;
}

void gear_context_free(gear_context *ctx)
{
    if (!ctx) return;
    ctx->be->shutdown(ctx->state);
    free(ctx);
}

const char *gear_context_backend_name(const gear_context *ctx)
{
    return ctx ? ctx->be->name : NULL;
}

gear_status gear_backend_failed(const gear_context *ctx, gear_status st, const char *what)
{
    if (st == GEAR_OK || st == GEAR_ERR_UNSUPPORTED) return st;
    const char *detail = ctx->be->last_error ? ctx->be->last_error(ctx->state) : NULL;
    return gear_fail(st, "%s: backend %s failed: %s", what, ctx->be->name,
                     detail && *detail ? detail : gear_status_string(st));
}
