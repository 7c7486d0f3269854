/* isa_floor.c - see isa_floor.h.  Twelve accumulators (more than any
 * latency x throughput product of these instructions on current x86
 * cores), written in assembly so that the compiler cannot keep them in
 * memory; best of five runs of 20 million iterations. */
#include "isa_floor.h"
#include "bench_util.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define ISA_ITERS 20000000L

#define OP12(op)                                                                                         \
    op " %%zmm13, %%zmm12, %%zmm0\n\t" op " %%zmm13, %%zmm12, %%zmm1\n\t" op " %%zmm13, %%zmm12, %%zmm2\n\t" \
    op " %%zmm13, %%zmm12, %%zmm3\n\t" op " %%zmm13, %%zmm12, %%zmm4\n\t" op " %%zmm13, %%zmm12, %%zmm5\n\t" \
    op " %%zmm13, %%zmm12, %%zmm6\n\t" op " %%zmm13, %%zmm12, %%zmm7\n\t" op " %%zmm13, %%zmm12, %%zmm8\n\t" \
    op " %%zmm13, %%zmm12, %%zmm9\n\t" op " %%zmm13, %%zmm12, %%zmm10\n\t" op " %%zmm13, %%zmm12, %%zmm11\n\t"
/* zmm0-13 written; vzeroupper clears the upper halves of zmm14-15 too */
#define CLOBBER "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", \
                "xmm12", "xmm13", "xmm14", "xmm15"
/* zeroed operands: no denormals, no overflow */
#define TIMED_LOOP(op)                                                                                   \
    do {                                                                                                 \
        long n = ISA_ITERS;                                                                              \
        __asm__ volatile("vpxord %%zmm12, %%zmm12, %%zmm12\n\tvpxord %%zmm13, %%zmm13, %%zmm13\n\t"       \
                         "1:\n\t" OP12(op) "dec %0\n\tjnz 1b\n\tvzeroupper"                               \
                         : "+r"(n)                                                                       \
                         :                                                                               \
                         : CLOBBER, "cc");                                                               \
    } while (0)

__attribute__((target("avx512f,avx512vnni"))) static void loop_vnni(void) { TIMED_LOOP("vpdpbusd"); }
__attribute__((target("avx512f"))) static void loop_fma(void) { TIMED_LOOP("vfmadd231ps"); }

static double best_ns(void (*loop)(void))
{
    double best = 0;
    for (int r = 0; r < 5; r++) {
        double t0 = bench_seconds();
        loop();
        double t = (bench_seconds() - t0) / (12.0 * ISA_ITERS) * 1e9;
        if (r == 0 || t < best) best = t;
    }
    return best;
}

double isa_ns_vpdpbusd(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni") ? best_ns(loop_vnni) : 0.0;
}

double isa_ns_fma512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? best_ns(loop_fma) : 0.0;
}
#else
double isa_ns_vpdpbusd(void) { return 0.0; }
double isa_ns_fma512(void) { return 0.0; }
#endif
