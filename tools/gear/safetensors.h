/*
 * safetensors.h - a strict reader of safetensors files, safe on untrusted
 * input: the header length, the JSON header, every dtype, shape and offset
 * are checked against the file size and for overflow; tensors must tile the
 * data section exactly, as the reference implementation requires.
 */
#ifndef GEAR_TOOL_SAFETENSORS_H
#define GEAR_TOOL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define ST_MAX_DIM 8
#define ST_MAX_HEADER (100u << 20) /* the reference implementation's limit */

typedef struct st_tensor {
    char *name;
    char dtype[8];            /* "F32", "F16", "BF16", ... */
    size_t elem;              /* bytes per element */
    int ndim;
    uint64_t shape[ST_MAX_DIM];
    uint64_t count;           /* product of shape */
    uint64_t begin, end;      /* byte offsets in the data section */
} st_tensor;

typedef struct st_file {
    FILE *f;
    uint64_t data_start;      /* 8 + header length */
    uint64_t data_size;
    size_t n;
    st_tensor *t;             /* in header order */
} st_file;

/* Parse a header (the JSON text) for a data section of data_size bytes.
 * Separate from st_open so that it can be tested and fuzzed on memory. */
int st_parse_header(const char *json, size_t len, uint64_t data_size, st_file *sf, char *err,
                    size_t errlen);
/* Open and validate a file.  Returns 0, or -1 with a message in err. */
int st_open(const char *path, st_file **out, char *err, size_t errlen);
void st_close(st_file *sf);
const st_tensor *st_find(const st_file *sf, const char *name);
/* Read a F32, F16 or BF16 tensor converted to float32 (out has t->count floats). */
int st_read_f32(st_file *sf, const st_tensor *t, float *out, char *err, size_t errlen);

#endif
