/* lowrank_blas.h - the baseline of gear-bench's lowrank section: GEAR's
 * power iteration on one block (n x d residual, rank r, `iters` rounds of
 * Y = E P^T, Gram-Schmidt on Y, P^T = Y^T E) with its two products done by
 * OpenBLAS's sgemm on one thread, for the question whether linking a BLAS
 * into the cpu module would pay (issue 7: "use OpenBLAS where it helps").
 * Built only when configure found OpenBLAS (GEAR_BENCH_OPENBLAS). */
#ifndef GEAR_BENCH_LOWRANK_BLAS_H
#define GEAR_BENCH_LOWRANK_BLAS_H

/* Whether this build has the baseline. */
int lowrank_blas_available(void);

/* Median seconds per block of the power iteration through sgemm, over
 * `blocks` blocks of random residuals, median of reps; < 0 when the
 * baseline is not built or out of memory. */
double lowrank_blas_seconds(unsigned n, unsigned d, unsigned r, unsigned iters, unsigned blocks, int reps);

#endif
