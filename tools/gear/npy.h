/*
 * npy.h - NumPy .npy files: a strict reader of float32/float16 C-order
 * arrays (format versions 1.0, 2.0, 3.0) and a writer of version 1.0 '<f4'.
 * The reader treats the file as untrusted: every size is checked against
 * the file and against overflow.
 */
#ifndef GEAR_TOOL_NPY_H
#define GEAR_TOOL_NPY_H

#include <stddef.h>
#include <stdint.h>
#include <gear.h>

#define NPY_MAX_DIM 8

typedef struct npy_array {
    gear_dtype dtype;             /* GEAR_F32 ('<f4') or GEAR_F16 ('<f2') */
    int ndim;
    int64_t shape[NPY_MAX_DIM];
    size_t count;                 /* product of shape */
    void *data;                   /* count floats or uint16_t halves, host byte order */
} npy_array;

/* Read path into *a.  Returns 0, or -1 with a message (not naming the file)
 * in err. */
int npy_read(const char *path, npy_array *a, char *err, size_t errlen);
void npy_free(npy_array *a);
/* The array as float32 (a new buffer the caller frees), or NULL when out of memory. */
float *npy_to_f32(const npy_array *a);
/* Write a float32 C-order array as a version 1.0 '<f4' file. */
int npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape,
                  char *err, size_t errlen);

#endif
