/*
 * safetensors.h - a minimal writer of the safetensors format: an 8-byte
 * little-endian header length, a JSON header, then the raw tensor bytes.
 */
#ifndef LLM_SAFETENSORS_H
#define LLM_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

typedef struct st_tensor {
    const char *name;  /* plain ASCII, no quotes or backslashes */
    const char *dtype; /* "F16", "F32", "I32", ... */
    int ndim;
    int64_t shape[4];
    const void *data;  /* little-endian bytes */
    size_t bytes;
} st_tensor;

/* Write n tensors and string metadata (pairs meta[2i] = key, meta[2i+1] =
 * value, n_meta pairs; values are JSON-escaped here) to path, through a
 * temporary file renamed into place.  0 or -1 (llm_error()). */
int st_write(const char *path, const st_tensor *t, int n, const char *const *meta, int n_meta);

#endif
