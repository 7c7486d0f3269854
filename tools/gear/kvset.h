/* kvset.h - K/V of several layers, as float32 (see kvset.c). */
#ifndef GEAR_TOOL_KVSET_H
#define GEAR_TOOL_KVSET_H

#include "cli.h"
#include "safetensors.h"

typedef struct kvset {
    unsigned n_layer, heads, head_dim, max_tokens;
    unsigned *tokens;   /* per layer */
    float **k, **v;     /* per layer: [heads][tokens][head_dim] */
    long *ids;          /* per layer: its number in the file (NULL: 0, 1, ...) */
} kvset;

/* Layer l's number in the file. */
long kvset_layer_id(const kvset *s, unsigned l);
void kvset_free(kvset *s);
/* Per-layer arrays for n_layer layers (0, or -1 when out of memory). */
int kvset_alloc(kvset *s, unsigned n_layer);
/* Find the layers of an open safetensors file, check their shapes and read
 * them as float32; desc gets e.g. "layers 0, 10, 20".  CLI_OK or CLI_FAIL
 * after printing the problem. */
int kvset_load(const char *cmd, const char *path, st_file *sf, kvset *s, char *desc,
               size_t desc_cap);

#endif
