/* isa_floor.h - the instruction throughputs that bound attention's
 * compute on this core, measured (not looked up): a loop of independent
 * 512-bit instructions, timed against the wall clock.  Nanoseconds per
 * instruction; 0 where the CPU (or the compiler) lacks the instruction. */
#ifndef GEAR_BENCH_ISA_FLOOR_H
#define GEAR_BENCH_ISA_FLOOR_H

/* vpdpbusd zmm (AVX512-VNNI): the fixed-point kernels' dot products, 64
 * u8 x s8 products each. */
double isa_ns_vpdpbusd(void);

/* vfmadd231ps zmm (AVX-512F): the fp16 baseline's multiply-adds, 16 each. */
double isa_ns_fma512(void);

#endif
