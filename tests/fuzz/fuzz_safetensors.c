/*
 * fuzz_safetensors.c - the gear tool's safetensors reader
 * (tools/gear/safetensors.c, with its JSON parser json.c) on untrusted
 * files: st_open, then st_find and st_read_f32 of every tensor it accepted.
 */
#define _GNU_SOURCE /* memfd_create */
#include <string.h>
#include "memfile.h"
#include "../../tools/gear/safetensors.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = memfile_put(data, size);
    st_file *sf = NULL;
    char err[256];
    err[0] = 0;
    if (st_open(path, &sf, err, sizeof err)) {
        if (sf || !err[0]) abort();
        return 0;
    }
    uint64_t total = 0;
    for (size_t i = 0; i < sf->n; i++) {
        const st_tensor *t = &sf->t[i];
        if (st_find(sf, t->name) == NULL) abort();
        if (t->end < t->begin || t->end > sf->data_size) abort();
        if (t->count * t->elem != t->end - t->begin) abort();
        total += t->end - t->begin;
        float *out = malloc((size_t)(t->count ? t->count : 1) * sizeof(float));
        if (!out) abort();
        st_read_f32(sf, t, out, err, sizeof err);
        free(out);
    }
    if (total > sf->data_size) abort();
    st_close(sf);
    return 0;
}
