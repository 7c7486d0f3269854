/*
 * fuzz_npy.c - the gear tool's .npy reader (tools/gear/npy.c) on untrusted
 * files: npy_read, then npy_to_f32 of what it accepted.
 */
#define _GNU_SOURCE /* memfd_create */
#include <string.h>
#include "memfile.h"
#include "../../tools/gear/npy.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = memfile_put(data, size);
    npy_array a;
    char err[256];
    err[0] = 0;
    if (npy_read(path, &a, err, sizeof err)) {
        if (!err[0]) abort(); /* every failure says why */
        return 0;
    }
    if (a.ndim < 0 || a.ndim > NPY_MAX_DIM) abort();
    size_t count = 1, item = a.dtype == GEAR_F32 ? 4 : 2;
    for (int i = 0; i < a.ndim; i++) count *= (size_t)a.shape[i];
    if (count != a.count) abort();
    if (count * item > size) abort(); /* cannot hold more data than the file */
    float *f = npy_to_f32(&a);
    if (f && count) {
        volatile float sink = f[0] + f[count - 1];
        (void)sink;
    }
    free(f);
    npy_free(&a);
    return 0;
}
