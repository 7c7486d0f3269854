/*
 * cpu_top2.h - the compressors' pass-1 network: each lane's two largest
 * and two smallest entries (a multiset: a second copy of the maximum is
 * the second maximum) from rows taken two at a time, written once for
 * every vector type.  MAX and MIN are the type's maximum and minimum
 * (float maxima in cpu_avx512_compress.c and cpu_avx2_compress.c, 16-bit
 * integer ones on fp16 keys in the latter).
 */
#ifndef GEAR_CPU_TOP2_H
#define GEAR_CPU_TOP2_H

/* Rows u and v into the maxima a1 >= a2 and minima b1 <= b2: five
 * operations a side for two rows, where one row at a time took three a
 * row. */
#define CPU_TOP2_PAIR(T, MAX, MIN, u, v, a1, a2, b1, b2)                                                          \
    do {                                                                                                           \
        T hi_ = MAX(u, v), lo_ = MIN(u, v);                                                                        \
        a2 = MAX(a2, MAX(lo_, MIN(a1, hi_)));                                                                      \
        a1 = MAX(a1, hi_);                                                                                         \
        b2 = MIN(b2, MIN(hi_, MAX(b1, lo_)));                                                                      \
        b1 = MIN(b1, lo_);                                                                                         \
    } while (0)

/* A second stream's (c1, c2, d1, d2) merged into the first: two streams
 * so that each chain carries one maximum or minimum a step. */
#define CPU_TOP2_MERGE(MAX, MIN, a1, a2, b1, b2, c1, c2, d1, d2)                                                    \
    do {                                                                                                           \
        a2 = MAX(MIN(a1, c1), MAX(a2, c2));                                                                        \
        a1 = MAX(a1, c1);                                                                                          \
        b2 = MIN(MAX(b1, d1), MIN(b2, d2));                                                                        \
        b1 = MIN(b1, d1);                                                                                          \
    } while (0)

/* Rows 0 .. m-1 of a strip through the network, m a multiple of 4 with
 * outliers (k), of 2 without (then only a1 and b1, plain maxima and
 * minima); ROW(j) is row j of the current step, NEXT(s) moves the rows on
 * by s. */
#define CPU_TOP2_SCAN(T, MAX, MIN, ROW, NEXT, m, k, a1, a2, b1, b2)                                               \
    do {                                                                                                           \
        if (k) {                                                                                                   \
            T c1_ = a1, c2_ = a2, d1_ = b1, d2_ = b2;                                                              \
            for (unsigned i_ = 0; i_ < (m); i_ += 4) {                                                             \
                T u_ = ROW(0), v_ = ROW(1);                                                                        \
                CPU_TOP2_PAIR(T, MAX, MIN, u_, v_, a1, a2, b1, b2);                                                \
                u_ = ROW(2), v_ = ROW(3);                                                                          \
                CPU_TOP2_PAIR(T, MAX, MIN, u_, v_, c1_, c2_, d1_, d2_);                                            \
                NEXT(4);                                                                                           \
            }                                                                                                      \
            CPU_TOP2_MERGE(MAX, MIN, a1, a2, b1, b2, c1_, c2_, d1_, d2_);                                          \
        } else {                                                                                                   \
            T c1_ = a1, d1_ = b1;                                                                                  \
            for (unsigned i_ = 0; i_ < (m); i_ += 2) {                                                             \
                T u_ = ROW(0), v_ = ROW(1);                                                                        \
                a1 = MAX(a1, u_), b1 = MIN(b1, u_);                                                                \
                c1_ = MAX(c1_, v_), d1_ = MIN(d1_, v_);                                                            \
                NEXT(2);                                                                                           \
            }                                                                                                      \
            a1 = MAX(a1, c1_), b1 = MIN(b1, d1_);                                                                  \
        }                                                                                                          \
    } while (0)

#endif
