/*
 * util.h - small helpers shared by the gear-llm example: error messages,
 * fp16/bf16 conversion, overflow-checked sizes, timing, file reading.
 */
#ifndef LLM_UTIL_H
#define LLM_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Record an error message (printf format); returns -1 so that callers can
 * write `return llm_fail(...)`. */
int llm_fail(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* The last message recorded by llm_fail ("" if none). */
const char *llm_error(void);

float llm_f16_to_f32(uint16_t h);
float llm_bf16_to_f32(uint16_t h);

/* a*b without overflow: 1 and *out = a*b, or 0. */
int llm_mul_ok(size_t a, size_t b, size_t *out);

/* Wall-clock seconds from a monotonic clock. */
double llm_now(void);

/* Read a whole file into a malloc'ed, NUL-terminated buffer. */
int llm_read_file(const char *path, char **data, size_t *size);

/* Allocate n elements of sz bytes (overflow-checked); NULL on failure with
 * an error recorded. */
void *llm_alloc(size_t n, size_t sz, const char *what);

#endif
