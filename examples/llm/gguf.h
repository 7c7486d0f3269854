/*
 * gguf.h - a strict reader of GGUF model files (versions 2 and 3).
 *
 * The whole file is read into memory and parsed once; every length, count,
 * offset and size is checked against the bytes actually present, so that a
 * truncated or hostile file gives an error message, never a crash.  Strings
 * point into the file buffer and are not NUL-terminated.
 */
#ifndef LLM_GGUF_H
#define LLM_GGUF_H

#include <stddef.h>
#include <stdint.h>

enum gguf_vtype {
    GGUF_U8 = 0, GGUF_I8 = 1, GGUF_U16 = 2, GGUF_I16 = 3, GGUF_U32 = 4, GGUF_I32 = 5,
    GGUF_F32 = 6, GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9, GGUF_U64 = 10,
    GGUF_I64 = 11, GGUF_F64 = 12
};

/* ggml tensor types this reader can size and dequantize. */
enum ggml_type {
    GGML_F32 = 0, GGML_F16 = 1, GGML_Q4_0 = 2, GGML_Q4_1 = 3, GGML_Q8_0 = 8, GGML_BF16 = 30
};

typedef struct gguf_str {
    const char *s;
    uint64_t n;
} gguf_str;

typedef struct gguf_kv {
    gguf_str key;
    uint32_t type;       /* enum gguf_vtype */
    uint32_t arr_type;   /* element type when type == GGUF_ARRAY */
    uint64_t arr_n;      /* element count when type == GGUF_ARRAY */
    const uint8_t *data; /* first byte of the value (of the first element for arrays) */
    size_t size;         /* bytes of the value */
} gguf_kv;

typedef struct gguf_tensor {
    gguf_str name;
    uint32_t n_dims;
    uint64_t ne[4]; /* ne[0] is the innermost (contiguous) dimension; unused dims are 1 */
    uint32_t type;  /* enum ggml_type (only supported ones are accepted) */
    uint64_t offset;
    uint64_t n_elem;
    size_t n_bytes;
    const uint8_t *data;
} gguf_tensor;

typedef struct gguf_file {
    uint8_t *buf; /* owned when loaded by gguf_open */
    size_t size;
    uint32_t version;
    uint32_t alignment;
    uint64_t n_kv, n_tensors;
    gguf_kv *kv;
    gguf_tensor *tensors;
    size_t data_offset;
} gguf_file;

/* Read and parse a file.  0 or -1 (message in llm_error()). */
int gguf_open(const char *path, gguf_file *f);
/* Parse bytes already in memory (not copied; f->buf is not freed by
 * gguf_close when parsed this way). */
int gguf_parse(const uint8_t *buf, size_t size, gguf_file *f);
void gguf_close(gguf_file *f);

const gguf_kv *gguf_find(const gguf_file *f, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

/* Typed getters: 0 when the key exists with a compatible type (integers of
 * any width that fit, floats of either width), -1 with a message otherwise. */
int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out);
int gguf_get_f32(const gguf_file *f, const char *key, float *out);
int gguf_get_bool(const gguf_file *f, const char *key, int *out);
int gguf_get_str(const gguf_file *f, const char *key, gguf_str *out);
/* A string array: fills out[0..n-1] (caller allocates kv->arr_n entries). */
int gguf_str_array(const gguf_kv *kv, gguf_str *out);
/* Element i of an integer array (any integer element type) as int64. */
int gguf_arr_int(const gguf_kv *kv, uint64_t i, int64_t *out);

int gguf_str_eq(gguf_str a, const char *b);
const char *ggml_type_name(uint32_t type);

/* Dequantize n elements of a tensor starting at element index first (which
 * must be a multiple of the type's block size, as must n) into out. */
int gguf_dequantize(const gguf_tensor *t, uint64_t first, uint64_t n, float *out);

#endif
