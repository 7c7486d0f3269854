/* ref_backend.c - the reference backend's table: host memory and the
 * scalar primitives.  Always built into libgear; no fused slots, so the
 * core's composition of the primitives is what it runs. */
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "ref/ref.h"

static int ref_score(const char **why)
{
    if (why) *why = "";
    return 1; /* usable everywhere, preferred last */
}

static gear_status ref_init(const gear_backend_params *p, void **state)
{
    (void)p;
    *state = NULL;
    return GEAR_OK;
}

static void ref_shutdown(void *state) { (void)state; }

static const char *ref_last_error(void *state)
{
    (void)state;
    return "";
}

static gear_status ref_alloc(void *state, size_t bytes, void **ptr)
{
    (void)state;
    *ptr = malloc(bytes ? bytes : 1);
    return *ptr ? GEAR_OK : gear_fail(GEAR_ERR_NO_MEMORY, "ref: cannot allocate %zu bytes", bytes);
}

static void ref_free(void *state, void *ptr)
{
    (void)state;
    free(ptr);
}

static gear_status ref_copy(void *state, void *dst, const void *src, size_t bytes,
                            gear_copy_dir dir)
{
    (void)state;
    (void)dir;
    if (bytes) memmove(dst, src, bytes);
    return GEAR_OK;
}

static gear_status ref_sync(void *state)
{
    (void)state;
    return GEAR_OK;
}

static const struct gear_backend_i ref_backend = {
    .abi_version = GEAR_BACKEND_ABI_VERSION,
    .name = "ref",
    .description = "reference: portable scalar C, the semantics oracle",
    .score = ref_score,
    .init = ref_init,
    .shutdown = ref_shutdown,
    .last_error = ref_last_error,
    .on_device = 0,
    .mem_alloc = ref_alloc,
    .mem_free = ref_free,
    .mem_copy = ref_copy,
    .sync = ref_sync,
    .outlier_select = gear_ref_outlier_select,
    .quantize = gear_ref_quantize,
    .dequantize = gear_ref_dequantize,
    .lowrank_fit = gear_ref_lowrank_fit,
    .reconstruct = gear_ref_reconstruct,
    .compress_blocks = NULL,
    .attention = NULL,
};


const struct gear_backend_i *gear_backend_ref_table(void) { return &ref_backend; }
