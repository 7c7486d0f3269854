/* read_bw.h - the read-bandwidth baseline of gear-bench: one read of every
 * byte of a buffer, by the fastest reading loop this CPU runs (wide loads,
 * with or without software prefetch), so that "read bandwidth" is what the
 * memory gives and not what one loop's instructions allow. */
#ifndef GEAR_BENCH_READ_BW_H
#define GEAR_BENCH_READ_BW_H

#include <stddef.h>
#include <stdint.h>

/* The fastest loop over p[0, n) on `threads` threads (median of 5 passes
 * each) among those with the widest loads the bench's ISA level allows
 * (GEAR_CPU_NO_AVX512: no AVX-512), with and without software prefetch;
 * GEAR_BENCH_READ_LOOP=name forces one.  Choose once over a buffer well
 * beyond the LLC. */
unsigned read_bw_choose(const uint64_t *p, size_t n, int threads);

/* Its name, for the report ("avx512+prefetch", ...). */
const char *read_bw_name(unsigned loop);

/* One timed pass of that loop: seconds. */
double read_bw_pass(unsigned loop, const uint64_t *p, size_t n, int threads);

#endif
