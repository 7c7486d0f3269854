/*
 * synth.h - seeded synthetic KV with the structure of real attention KV:
 * keys with a few large-magnitude outlier channels and per-channel offsets
 * (as KIVI observed), values with heavier per-token structure, a decaying
 * spectrum (low effective rank plus noise) and heavy-tailed entries.
 * Shared by `gear demo`, the tests and the benchmarks; deterministic for a
 * given seed on every platform (uses only integer hashing and libm).
 */
#ifndef GEAR_SYNTH_H
#define GEAR_SYNTH_H

#include <stdint.h>
#include <gear.h>

/* Fill out[H][T][d] (fp32, contiguous) with synthetic keys or values.
 * seed selects the sample; kind selects key or value structure. */
void gear_synth_kv(uint64_t seed, gear_kind kind, int H, int T, int d, float *out);

/* Fill out[n] with seeded standard normal numbers (for queries). */
void gear_synth_normal(uint64_t seed, int n, float *out);

#endif
