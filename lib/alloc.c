/*
 * alloc.c - aligned allocations for data the kernels stream (internal.h).
 */
#define _POSIX_C_SOURCE 200112L /* posix_memalign */
#include <stdlib.h>
#include "internal.h"

void *gear_alloc64(size_t bytes)
{
    void *p = NULL;
    if (!bytes || posix_memalign(&p, 64, bytes)) return NULL;
    return p;
}
