/*
 * check_core.c - unit tests of the core pieces: fp16/bf16 conversion,
 * CRC-32C, the counter-based generator, checked size arithmetic, field
 * access, status strings, version, tensor views, presets, logging and the
 * backend registry.  Expected values are hand-computed or computed by an
 * independent method (double arithmetic, bitwise CRC, Python).
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <fenv.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "internal.h"

/* ---------------------------------------------------------------- fp16 */

/* Independent fp16 rounding in double: nearest, ties to even, overflow to
 * Inf.  Returns the value the half should hold. */
static double ref_half(float f)
{
    double a = fabs((double)f);
    if (a == 0.0) return (double)f;
    int e;
    frexp(a, &e);
    int ex = e - 1; /* a in [2^ex, 2^(ex+1)) */
    if (ex < -14) ex = -14;
    double ulp = ldexp(1.0, ex - 10);
    double q = nearbyint(a / ulp) * ulp;
    if (q > 65504.0) q = INFINITY;
    return copysign(q, (double)f);
}

static float f_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

START_TEST(test_half_hand_values)
{
    TU_EQ(gear_float_to_half(1.0f), 0x3C00);
    TU_EQ(gear_float_to_half(-2.0f), 0xC000);
    TU_EQ(gear_float_to_half(0.5f), 0x3800);
    TU_EQ(gear_float_to_half(0.0f), 0x0000);
    TU_EQ(gear_float_to_half(-0.0f), 0x8000);
    TU_EQ(gear_float_to_half(65504.0f), 0x7BFF);
    TU_EQ(gear_float_to_half(-65504.0f), 0xFBFF);
    TU_EQ(gear_float_to_half(65519.0f), 0x7BFF); /* below the tie */
    TU_EQ(gear_float_to_half(65520.0f), 0x7C00); /* tie to even: Inf */
    TU_EQ(gear_float_to_half(-65520.0f), 0xFC00);
    TU_EQ(gear_float_to_half(1e6f), 0x7C00);
    TU_EQ(gear_float_to_half(INFINITY), 0x7C00);
    TU_EQ(gear_float_to_half(-INFINITY), 0xFC00);
    TU_EQ(gear_float_to_half(0.1f), 0x2E66); /* 0.0999755859375 */
    TU_EQ(gear_float_to_half(3.140625f), 0x4248);
    TU_CHECK(gear_half_to_float(0x3C00) == 1.0f);
    TU_CHECK(gear_half_to_float(0x7BFF) == 65504.0f);
    TU_CHECK(gear_half_to_float(0xC000) == -2.0f);
    TU_CHECK(gear_half_to_float(0x2E66) == 0.0999755859375f);
    TU_CHECK(isinf(gear_half_to_float(0x7C00)) && gear_half_to_float(0x7C00) > 0);
    TU_CHECK(isinf(gear_half_to_float(0xFC00)) && gear_half_to_float(0xFC00) < 0);
    TU_CHECK(signbit(gear_half_to_float(0x8000)) && gear_half_to_float(0x8000) == 0.0f);
    /* NaN both ways */
    TU_CHECK(isnan(gear_half_to_float(0x7E00)));
    TU_CHECK(isnan(gear_half_to_float(0x7C01)));
    TU_CHECK(isnan(gear_half_to_float(0xFE00)));
    uint16_t hn = gear_float_to_half(NAN);
    TU_EQ(hn & 0x7C00, 0x7C00);
    ck_assert_uint_ne(hn & 0x03FF, 0);
    /* a NaN whose payload sits only in the low float bits stays NaN */
    uint16_t hn2 = gear_float_to_half(f_from_bits(0x7F800001u));
    TU_EQ(hn2 & 0x7C00, 0x7C00);
    ck_assert_uint_ne(hn2 & 0x03FF, 0);
}
END_TEST

/* fp16 output of a tensor row (gear_view_write: gear_decompress's
 * writer, which may take an F16C path) against gear_half_sat, and the
 * core's array converter (gear_floats_to_halves: raw blocks, which may
 * take it too) against gear_float_to_half, value by value: every 4099th fp32 bit pattern, the edges (65504, the 65520 tie,
 * the subnormal ties, Inf, NaN payloads, zeros), rows of odd lengths, and
 * all of it again with FTZ and DAZ set in MXCSR, as an inference engine
 * may leave them, and under each other rounding mode (both round to
 * nearest whatever the mode: the portable one once rounded subnormals by
 * a float addition, which followed it). */
static void half_rows_match(void)
{
    enum { ROW = 4099 };
    float *src = malloc(sizeof(float) * ROW);
    uint16_t *dst = malloc(sizeof(uint16_t) * ROW);
    uint8_t *raw = malloc(2 * ROW);
    TU_CHECK(src && dst && raw);
    static const uint32_t edges[] = {0x00000000u, 0x80000000u, 0x477fe000u, 0x477fefffu, 0x477ff000u, 0x477ff001u,
                                     0xc77ff000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00000u, 0x7f800001u,
                                     0x7fbfffffu, 0xffffffffu, 0x33000000u, 0x33000001u, 0x33c00000u, 0x387fc000u,
                                     0x387fe000u, 0x38800000u, 0x00000001u, 0x807fffffu};
    uint64_t next = 0;
    int edge = 1;
    while (next < (1ull << 32)) {
        int64_t len = ROW - (int64_t)(next % 17); /* odd lengths: the scalar tail too */
        for (int64_t i = 0; i < len; i++) {
            uint32_t u;
            if (edge && (size_t)i < sizeof edges / sizeof edges[0]) u = edges[i];
            else u = (uint32_t)next, next += 4099;
            memcpy(&src[i], &u, 4);
        }
        edge = 0;
        gear_tensor t;
        TU_OK(gear_tensor_init(&t, dst, GEAR_F16, 3, 1, 1, len, 0));
        gear_view_write(&t, 0, 0, 1, len, src);
        for (int64_t i = 0; i < len; i++) {
            uint32_t u;
            memcpy(&u, &src[i], 4);
            TU_ASSERT(dst[i] == gear_half_sat(src[i]), "fp32 0x%08x: row writer 0x%04x, gear_half_sat 0x%04x", u,
                      dst[i], gear_half_sat(src[i]));
        }
        gear_floats_to_halves(src, (size_t)len, 0, raw);
        for (int64_t i = 0; i < len; i++) {
            uint32_t u;
            memcpy(&u, &src[i], 4);
            TU_ASSERT(gear_get_u16(raw + 2 * i) == gear_float_to_half(src[i]),
                      "fp32 0x%08x: gear_floats_to_halves 0x%04x, gear_float_to_half 0x%04x", u,
                      gear_get_u16(raw + 2 * i), gear_float_to_half(src[i]));
        }
    }
    free(src);
    free(dst);
    free(raw);
}

START_TEST(test_half_rows_writer)
{
    half_rows_match();
    const int modes[] = {FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO};
    int mode = fegetround();
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        TU_CHECK(fesetround(modes[i]) == 0);
        half_rows_match();
        TU_ASSERT(gear_float_to_half(ldexpf(1.5f, -24)) == 0x0002 && gear_float_to_half(ldexpf(1.25f, -24)) == 0x0001 &&
                      gear_float_to_half(-ldexpf(1.75f, -24)) == 0x8002,
                  "fp16 subnormals rounded by the mode (%d)", modes[i]);
        fesetround(mode);
    }
#if defined(__x86_64__) && defined(__GNUC__)
    unsigned csr = __builtin_ia32_stmxcsr();
    __builtin_ia32_ldmxcsr(csr | 0x8040u); /* FTZ, DAZ */
    half_rows_match();
    __builtin_ia32_ldmxcsr(csr);
#endif
}
END_TEST

START_TEST(test_half_subnormals)
{
    /* smallest subnormal 2^-24, largest subnormal 1023 * 2^-24, smallest normal 2^-14 */
    TU_CHECK(gear_half_to_float(0x0001) == ldexpf(1.0f, -24));
    TU_CHECK(gear_half_to_float(0x03FF) == 1023.0f * ldexpf(1.0f, -24));
    TU_CHECK(gear_half_to_float(0x0400) == ldexpf(1.0f, -14));
    TU_CHECK(gear_half_to_float(0x8001) == -ldexpf(1.0f, -24));
    TU_EQ(gear_float_to_half(ldexpf(1.0f, -24)), 0x0001);
    TU_EQ(gear_float_to_half(ldexpf(1.0f, -14)), 0x0400);
    TU_EQ(gear_float_to_half(1023.0f * ldexpf(1.0f, -24)), 0x03FF);
    /* 2^-25 is halfway between 0 and 2^-24: ties to even -> 0 */
    TU_EQ(gear_float_to_half(ldexpf(1.0f, -25)), 0x0000);
    TU_EQ(gear_float_to_half(-ldexpf(1.0f, -25)), 0x8000);
    /* just above the tie rounds up */
    TU_EQ(gear_float_to_half(nextafterf(ldexpf(1.0f, -25), 1.0f)), 0x0001);
    /* 1.5 * 2^-24: tie between 1 and 2 -> 2 (even) */
    TU_EQ(gear_float_to_half(1.5f * ldexpf(1.0f, -24)), 0x0002);
    /* 2.5 * 2^-24: tie between 2 and 3 -> 2 */
    TU_EQ(gear_float_to_half(2.5f * ldexpf(1.0f, -24)), 0x0002);
    /* 1023.5 * 2^-24: tie between 0x03FF and 0x0400 -> 0x0400 (even) */
    TU_EQ(gear_float_to_half(1023.5f * ldexpf(1.0f, -24)), 0x0400);
    /* tiny floats flush to signed zero */
    TU_EQ(gear_float_to_half(1e-10f), 0x0000);
    TU_EQ(gear_float_to_half(-1e-10f), 0x8000);
    TU_EQ(gear_float_to_half(FLT_MIN), 0x0000);
    TU_EQ(gear_float_to_half(f_from_bits(1)), 0x0000);
}
END_TEST

START_TEST(test_half_ties_to_even)
{
    /* 1 + 2^-11 is halfway between 1 and 1 + 2^-10 */
    TU_EQ(gear_float_to_half(1.0f + ldexpf(1.0f, -11)), 0x3C00);
    TU_EQ(gear_float_to_half(1.0f + 3 * ldexpf(1.0f, -11)), 0x3C02);
    TU_EQ(gear_float_to_half(1.0f + ldexpf(1.0f, -11) + ldexpf(1.0f, -20)), 0x3C01);
    TU_EQ(gear_float_to_half(2049.0f), 0x6800); /* 2048 */
    TU_EQ(gear_float_to_half(2051.0f), 0x6802); /* 2052 */
    TU_EQ(gear_float_to_half(-2049.0f), 0xE800);
    /* every tie between consecutive positive finite halves, and its neighbours */
    for (uint32_t h = 0; h < 0x7C00; h++) {
        float lo = gear_half_to_float((uint16_t)h);
        float hi = h + 1 == 0x7C00 ? 65536.0f : gear_half_to_float((uint16_t)(h + 1));
        float mid = (lo + hi) * 0.5f; /* exact: 12 significant bits */
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        TU_ASSERT(gear_float_to_half(mid) == even, "tie above %04x -> %04x", h,
                      gear_float_to_half(mid));
        TU_ASSERT(gear_float_to_half(nextafterf(mid, 0.0f)) == h, "below tie %04x", h);
        TU_ASSERT(gear_float_to_half(nextafterf(mid, INFINITY)) == h + 1, "above tie %04x",
                      h);
        TU_ASSERT(gear_float_to_half(-mid) == (even | 0x8000), "negative tie %04x", h);
    }
}
END_TEST

START_TEST(test_half_roundtrip_all)
{
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = gear_half_to_float((uint16_t)h);
        if ((h & 0x7C00) == 0x7C00 && (h & 0x03FF)) {
            TU_ASSERT(isnan(f), "%04x should be NaN", h);
            continue;
        }
        TU_ASSERT(gear_float_to_half(f) == h, "round trip of %04x gives %04x", h,
                      gear_float_to_half(f));
        /* the value itself, from the bits */
        unsigned e = (h >> 10) & 31, m = h & 1023;
        double v = e == 0 ? ldexp((double)m, -24)
                 : e == 31 ? INFINITY : ldexp(1024.0 + m, (int)e - 25);
        if (h & 0x8000) v = -v;
        TU_ASSERT((double)f == v, "%04x -> %g, expected %g", h, (double)f, v);
    }
}
END_TEST

START_TEST(test_half_vs_double_random)
{
    uint64_t s = 12345;
    for (int i = 0; i < 300000; i++) {
        uint32_t u = (uint32_t)tu_rand_u64(&s);
        if (i & 1) /* half the samples with exponents near the fp16 range */
            u = (u & 0x807fffffu) | ((uint32_t)(127 - 27 + (u >> 23) % 46) << 23);
        float f = f_from_bits(u);
        if (isnan(f)) continue;
        double want = ref_half(f);
        float got = gear_half_to_float(gear_float_to_half(f));
        TU_ASSERT((double)got == want || (want == 0.0 && got == 0.0f),
                      "fp16(%a) = %a, expected %a", (double)f, (double)got, want);
        if (want == 0.0) TU_CHECK(!!signbit(got) == !!signbit(f));
    }
}
END_TEST

/* ---------------------------------------------------------------- bf16 */

START_TEST(test_bf16)
{
    TU_EQ(gear_float_to_bf16(1.0f), 0x3F80);
    TU_EQ(gear_float_to_bf16(-2.0f), 0xC000);
    TU_EQ(gear_float_to_bf16(3.140625f), 0x4049);
    TU_CHECK(gear_bf16_to_float(0x4049) == 3.140625f);
    TU_EQ(gear_float_to_bf16(1.0f + ldexpf(1.0f, -8)), 0x3F80);      /* tie -> even */
    TU_EQ(gear_float_to_bf16(1.0f + 3 * ldexpf(1.0f, -8)), 0x3F82);  /* tie -> even */
    TU_EQ(gear_float_to_bf16(1.0f + ldexpf(1.0f, -8) + ldexpf(1.0f, -20)), 0x3F81);
    TU_EQ(gear_float_to_bf16(FLT_MAX), 0x7F80); /* rounds to Inf */
    TU_EQ(gear_float_to_bf16(INFINITY), 0x7F80);
    TU_EQ(gear_float_to_bf16(-INFINITY), 0xFF80);
    TU_EQ(gear_float_to_bf16(-0.0f), 0x8000);
    uint16_t n = gear_float_to_bf16(NAN);
    TU_CHECK(isnan(gear_bf16_to_float(n)));
    TU_CHECK(isnan(gear_bf16_to_float(gear_float_to_bf16(f_from_bits(0x7F800001u)))));
    /* every finite bf16 round trips, and the ties between neighbours go to even */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7F80) == 0x7F80) continue;
        float f = gear_bf16_to_float((uint16_t)h);
        TU_EQ(bits_of(f), h << 16);
        TU_EQ(gear_float_to_bf16(f), h);
        if ((h & 0x7FFF) == 0x7F7F) continue; /* next one is Inf */
        float mid = f_from_bits((h << 16) | 0x8000u);
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        TU_ASSERT(gear_float_to_bf16(mid) == even, "bf16 tie at %04x", h);
        TU_EQ(gear_float_to_bf16(f_from_bits((h << 16) | 0x7FFFu)), h);
        TU_EQ(gear_float_to_bf16(f_from_bits((h << 16) | 0x8001u)), h + 1);
    }
}
END_TEST

/* --------------------------------------------------------------- crc32c */

static uint32_t crc_bitwise(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    }
    return ~c;
}

START_TEST(test_crc32c_vectors)
{
    uint8_t b[48];
    TU_EQ(gear_crc32c(0, "123456789", 9), 0xE3069283u);
    TU_EQ(gear_crc32c(0, "", 0), 0x00000000u);
    TU_EQ(gear_crc32c(0, NULL, 0), 0x00000000u);
    /* RFC 3720 B.4 vectors */
    memset(b, 0, 32);
    TU_EQ(gear_crc32c(0, b, 32), 0x8A9136AAu);
    memset(b, 0xFF, 32);
    TU_EQ(gear_crc32c(0, b, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++) b[i] = (uint8_t)i;
    TU_EQ(gear_crc32c(0, b, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++) b[i] = (uint8_t)(31 - i);
    TU_EQ(gear_crc32c(0, b, 32), 0x113FDB5Cu);
    /* "123456789" in two pieces */
    uint32_t c = gear_crc32c(0, "1234", 4);
    TU_EQ(gear_crc32c(c, "56789", 5), 0xE3069283u);
}
END_TEST

START_TEST(test_crc32c_chunked)
{
    enum { N = 5003 };
    uint8_t *buf = malloc(N);
    TU_CHECK((buf) != NULL);
    uint64_t s = 99;
    for (int i = 0; i < N; i++) buf[i] = (uint8_t)tu_rand_u64(&s);
    /* every length (unaligned starts too) against the bitwise definition,
     * across the 3 x 64-byte lanes of the hardware path's rest (192) */
    for (size_t off = 0; off < 9; off++)
        for (size_t n = 0; n + off <= 300; n++)
            TU_ASSERT(gear_crc32c(0, buf + off, n) == crc_bitwise(buf + off, n),
                          "crc of %zu bytes at %zu", n, off);
    /* lengths around the three-lane loop of the hardware path (3 x 256) */
    for (size_t off = 0; off < 3; off++)
        for (size_t n = 760; n + off <= N; n += n < 800 ? 1 : n < 1560 ? 97 : 1231)
            TU_ASSERT(gear_crc32c(0, buf + off, n) == crc_bitwise(buf + off, n),
                      "crc of %zu bytes at %zu", n, off);
    uint32_t whole = gear_crc32c(0, buf, N);
    TU_EQ(whole, crc_bitwise(buf, N));
    /* every split point gives the same running value */
    for (size_t k = 0; k <= N; k++)
        TU_EQ(gear_crc32c(gear_crc32c(0, buf, k), buf + k, N - k), whole);
    /* three pieces */
    TU_EQ(gear_crc32c(gear_crc32c(gear_crc32c(0, buf, 7), buf + 7, 500), buf + 507,
                                  N - 507),
                      whole);
    /* a single flipped bit changes it */
    buf[500] ^= 0x10;
    ck_assert_uint_ne(gear_crc32c(0, buf, N), whole);
    free(buf);
}
END_TEST

/* ------------------------------------------------------------------ rng */

START_TEST(test_rng_vectors)
{
    /* SplitMix64 outputs of seed 0 (state advanced by the golden gamma) */
    TU_CHECK(gear_mix64(0) == 0xe220a8397b1dcdafull);
    TU_CHECK(gear_mix64(0x9e3779b97f4a7c15ull) == 0x6e789e6aa1b965f4ull);
    TU_CHECK(gear_mix64(0x3c6ef372fe94f82aull) == 0x06c45d188009454full);
    /* keys and draws per FORMAT.md s5, computed independently in Python */
    uint64_t k0 = gear_rng_key(0, 0, 0, 0, 0);
    TU_CHECK(k0 == 0x238275bc38fcbe91ull);
    TU_CHECK(gear_rng_uniform(k0, 0) == 12238563.0f / 16777216.0f);
    TU_CHECK(gear_rng_uniform(k0, 1) == 10491239.0f / 16777216.0f);
    TU_CHECK(gear_rng_uniform(k0, 2) == 7583914.0f / 16777216.0f);
    uint64_t k1 = gear_rng_key(42, 3, 5, 7, 1);
    TU_CHECK(k1 == 0xb0b7e833aaf427f6ull);
    TU_CHECK(gear_rng_uniform(k1, 0) == 11677301.0f / 16777216.0f);
    TU_CHECK(gear_rng_uniform(k1, 1) == 7734004.0f / 16777216.0f);
    TU_CHECK(gear_rng_uniform(k1, 2) == 11173749.0f / 16777216.0f);
}
END_TEST

START_TEST(test_rng_properties)
{
    uint64_t base = gear_rng_key(7, 1, 2, 3, 0);
    TU_CHECK(base == gear_rng_key(7, 1, 2, 3, 0)); /* deterministic */
    /* every field of the key matters */
    TU_CHECK(base != gear_rng_key(8, 1, 2, 3, 0));
    TU_CHECK(base != gear_rng_key(7, 2, 2, 3, 0));
    TU_CHECK(base != gear_rng_key(7, 1, 3, 3, 0));
    TU_CHECK(base != gear_rng_key(7, 1, 2, 4, 0));
    TU_CHECK(base != gear_rng_key(7, 1, 2, 3, 1));
    TU_CHECK(gear_rng_key(0, 1, 0, 0, 0) != gear_rng_key(0, 0, 1, 0, 0)); /* layer vs head */
    double sum = 0.0, sum2 = 0.0;
    int eq = 0;
    const int N = 200000;
    for (int i = 0; i < N; i++) {
        float u = gear_rng_uniform(base, (uint32_t)i);
        TU_CHECK(u >= 0.0f && u < 1.0f);
        float scaled = u * 16777216.0f; /* 24 random bits: an integer */
        TU_CHECK(scaled == floorf(scaled));
        TU_CHECK(u == gear_rng_uniform(base, (uint32_t)i));
        eq += u == gear_rng_uniform(gear_rng_key(7, 1, 2, 3, 1), (uint32_t)i);
        sum += u;
        sum2 += (double)u * u;
    }
    double mean = sum / N, var = sum2 / N - mean * mean;
    TU_ASSERT(fabs(mean - 0.5) < 0.005, "mean %g", mean);
    TU_ASSERT(fabs(var - 1.0 / 12) < 0.003, "variance %g", var);
    ck_assert_int_lt(eq, 100); /* different keys give different streams */
}
END_TEST

/* ------------------------------------------------------ size arithmetic */

START_TEST(test_size_helpers)
{
    size_t r = 0;
    TU_CHECK(gear_mul_ok(3, 5, &r) && r == 15);
    TU_CHECK(gear_mul_ok(SIZE_MAX, 0, &r) && r == 0);
    TU_CHECK(gear_mul_ok(0, SIZE_MAX, &r) && r == 0);
    TU_CHECK(gear_mul_ok(SIZE_MAX / 2, 2, &r) && r == SIZE_MAX - 1);
    TU_CHECK(!gear_mul_ok(SIZE_MAX / 2 + 1, 2, &r));
    TU_CHECK(!gear_mul_ok(SIZE_MAX, SIZE_MAX, &r));
    TU_CHECK(!gear_mul_ok((size_t)1 << (sizeof(size_t) * 4), (size_t)1 << (sizeof(size_t) * 4), &r));
    TU_CHECK(gear_add_ok(SIZE_MAX - 1, 1, &r) && r == SIZE_MAX);
    TU_CHECK(!gear_add_ok(SIZE_MAX, 1, &r));
    TU_CHECK(!gear_add_ok(1, SIZE_MAX, &r));
    TU_CHECK(gear_add_ok(2, 3, &r) && r == 5);
    TU_EQ(gear_align_up(0, 16), 0);
    TU_EQ(gear_align_up(1, 16), 16);
    TU_EQ(gear_align_up(16, 16), 16);
    TU_EQ(gear_align_up(17, 16), 32);
    TU_EQ(gear_align_up(5, 4), 8);
    TU_EQ(gear_dtype_size(GEAR_F32), 4);
    TU_EQ(gear_dtype_size(GEAR_F16), 2);
    TU_EQ(gear_dtype_size(GEAR_BF16), 2);
    TU_EQ(gear_dtype_size((gear_dtype)7), 0);
}
END_TEST

START_TEST(test_le_fields_and_codes)
{
    uint8_t b[16];
    memset(b, 0, sizeof b);
    gear_put_u16(b, 0x1234);
    TU_CHECK(b[0] == 0x34 && b[1] == 0x12);
    gear_put_u32(b + 2, 0xA1B2C3D4u);
    TU_CHECK(b[2] == 0xD4 && b[3] == 0xC3 && b[4] == 0xB2 && b[5] == 0xA1);
    gear_put_u64(b + 6, 0x0102030405060708ull);
    TU_CHECK(b[6] == 0x08 && b[13] == 0x01);
    TU_EQ(gear_get_u16(b), 0x1234);
    TU_EQ(gear_get_u32(b + 2), 0xA1B2C3D4u);
    TU_CHECK(gear_get_u64(b + 6) == 0x0102030405060708ull);
    /* packed codes: 3-bit codes 5,2,7,1,6 little-endian bit string:
     * bits 0-2 = 101, 3-5 = 010, 6-8 = 111, 9-11 = 001, 12-14 = 110
     * byte0 = 0b11 010 101 = 0xD5, byte1 = 0b0 110 001 1 = 0x63 */
    uint8_t row[4] = {0xD5, 0x63, 0, 0};
    unsigned want3[5] = {5, 2, 7, 1, 6};
    for (unsigned j = 0; j < 5; j++) TU_EQ(gear_code_get(row, 3, j), want3[j]);
    uint8_t row2[2] = {0xE4, 0x1B}; /* 2-bit codes 0,1,2,3,3,2,1,0 */
    unsigned want2[8] = {0, 1, 2, 3, 3, 2, 1, 0};
    for (unsigned j = 0; j < 8; j++) TU_EQ(gear_code_get(row2, 2, j), want2[j]);
    uint8_t row1[1] = {0xA5};
    for (unsigned j = 0; j < 8; j++) TU_EQ(gear_code_get(row1, 1, j), (0xA5u >> j) & 1);
    uint8_t row4[2] = {0x4F, 0xC0};
    TU_EQ(gear_code_get(row4, 4, 0), 0xF);
    TU_EQ(gear_code_get(row4, 4, 1), 0x4);
    TU_EQ(gear_code_get(row4, 4, 3), 0xC);
    TU_EQ(gear_code_get(row4, 8, 1), 0xC0);
}
END_TEST

/* ---------------------------------------------------------------- status */

START_TEST(test_status_strings)
{
    static const struct { gear_status s; const char *name; } all[] = {
        {GEAR_OK, "GEAR_OK"},
        {GEAR_ERR_INVALID_ARG, "GEAR_ERR_INVALID_ARG"},
        {GEAR_ERR_NO_MEMORY, "GEAR_ERR_NO_MEMORY"},
        {GEAR_ERR_UNSUPPORTED, "GEAR_ERR_UNSUPPORTED"},
        {GEAR_ERR_NO_BACKEND, "GEAR_ERR_NO_BACKEND"},
        {GEAR_ERR_BACKEND, "GEAR_ERR_BACKEND"},
        {GEAR_ERR_SHAPE, "GEAR_ERR_SHAPE"},
        {GEAR_ERR_OVERFLOW, "GEAR_ERR_OVERFLOW"},
        {GEAR_ERR_CAPACITY, "GEAR_ERR_CAPACITY"},
        {GEAR_ERR_DST_TOO_SMALL, "GEAR_ERR_DST_TOO_SMALL"},
        {GEAR_ERR_UNKNOWN_PRESET, "GEAR_ERR_UNKNOWN_PRESET"},
        {GEAR_ERR_NONFINITE, "GEAR_ERR_NONFINITE"},
        {GEAR_ERR_RANGE, "GEAR_ERR_RANGE"},
        {GEAR_ERR_IO, "GEAR_ERR_IO"},
        {GEAR_ERR_FORMAT_MAGIC, "GEAR_ERR_FORMAT_MAGIC"},
        {GEAR_ERR_FORMAT_VERSION, "GEAR_ERR_FORMAT_VERSION"},
        {GEAR_ERR_FORMAT_TRUNCATED, "GEAR_ERR_FORMAT_TRUNCATED"},
        {GEAR_ERR_FORMAT_CORRUPT, "GEAR_ERR_FORMAT_CORRUPT"},
        {GEAR_ERR_FORMAT_CRC, "GEAR_ERR_FORMAT_CRC"},
        {GEAR_ERR_INTERNAL, "GEAR_ERR_INTERNAL"},
    };
    const int n = (int)(sizeof all / sizeof all[0]);
    for (int i = 0; i < n; i++) {
        const char *s = gear_status_string(all[i].s);
        TU_CHECK((s) != NULL);
        size_t len = strlen(all[i].name);
        TU_ASSERT(!strncmp(s, all[i].name, len) && (s[len] == 0 || s[len] == ':'),
                      "status %d is named '%s', expected '%s...'", (int)all[i].s, s, all[i].name);
        TU_ASSERT(all[i].s == GEAR_OK ? 1 : all[i].s < 0, "%s must be negative", all[i].name);
        for (int j = 0; j < i; j++) {
            ck_assert_str_ne(s, gear_status_string(all[j].s));
            ck_assert_int_ne(all[i].s, all[j].s);
        }
    }
    /* values outside the enum still give a string */
    TU_CHECK((gear_status_string((gear_status)-50)) != NULL);
    TU_CHECK((gear_status_string((gear_status)7)) != NULL);
    ck_assert_str_ne(gear_status_string((gear_status)-50), gear_status_string(GEAR_OK));
}
END_TEST

START_TEST(test_version)
{
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", GEAR_VERSION_MAJOR, GEAR_VERSION_MINOR,
             GEAR_VERSION_PATCH);
    ck_assert_str_eq(gear_version_string(), want);
    TU_EQ(gear_version_number(), GEAR_VERSION_NUMBER);
    TU_EQ(GEAR_VERSION_NUMBER, GEAR_VERSION_MAJOR * 10000 + GEAR_VERSION_MINOR * 100 +
                                               GEAR_VERSION_PATCH);
}
END_TEST

/* ---------------------------------------------------------------- tensor */

START_TEST(test_tensor_init)
{
    gear_tensor t;
    float data[120];
    TU_OK(gear_tensor_init(&t, data, GEAR_F32, 3, 2, 3, 4, 99));
    ck_assert_ptr_eq(t.data, data);
    TU_EQ(t.dtype, GEAR_F32);
    TU_EQ(t.ndim, 3);
    TU_EQ(t.shape[0], 2);
    TU_EQ(t.shape[1], 3);
    TU_EQ(t.shape[2], 4);
    TU_EQ(t.strides[0], 12);
    TU_EQ(t.strides[1], 4);
    TU_EQ(t.strides[2], 1);
    TU_EQ(t.on_device, 0);
    TU_OK(gear_tensor_init(&t, data, GEAR_BF16, 4, 2, 3, 4, 5));
    TU_EQ(t.strides[0], 60);
    TU_EQ(t.strides[1], 20);
    TU_EQ(t.strides[2], 5);
    TU_EQ(t.strides[3], 1);
    TU_OK(gear_tensor_init(&t, data, GEAR_F16, 1, 7, 0, 0, 0));
    TU_EQ(t.ndim, 1);
    TU_EQ(t.shape[0], 7);
    TU_EQ(t.strides[0], 1);
    TU_OK(gear_tensor_init(&t, data, GEAR_F32, 2, 5, 6, -3, -3)); /* dims beyond ndim ignored */
    TU_EQ(t.strides[0], 6);

    TU_STATUS(gear_tensor_init(NULL, data, GEAR_F32, 2, 1, 1, 0, 0), GEAR_ERR_INVALID_ARG);
    TU_STATUS(gear_tensor_init(&t, data, GEAR_F32, 0, 1, 1, 1, 1), GEAR_ERR_INVALID_ARG);
    TU_STATUS(gear_tensor_init(&t, data, GEAR_F32, 5, 1, 1, 1, 1), GEAR_ERR_INVALID_ARG);
    TU_STATUS(gear_tensor_init(&t, data, GEAR_F32, -1, 1, 1, 1, 1), GEAR_ERR_INVALID_ARG);
    TU_STATUS(gear_tensor_init(&t, data, (gear_dtype)3, 2, 1, 1, 0, 0), GEAR_ERR_INVALID_ARG);
    TU_STATUS(gear_tensor_init(&t, data, (gear_dtype)-1, 2, 1, 1, 0, 0), GEAR_ERR_INVALID_ARG);
    TU_STATUS(gear_tensor_init(&t, data, GEAR_F32, 2, -1, 4, 0, 0), GEAR_ERR_SHAPE);
    TU_STATUS(gear_tensor_init(&t, data, GEAR_F32, 3, 2, 4, -8, 0), GEAR_ERR_SHAPE);
    int64_t big = (int64_t)1 << 40;
    TU_STATUS2(gear_tensor_init(&t, data, GEAR_F32, 3, big, big, big, 0), GEAR_ERR_OVERFLOW,
               GEAR_ERR_SHAPE);
    TU_STATUS2(gear_tensor_init(&t, data, GEAR_F32, 2, INT64_MAX, 2, 0, 0), GEAR_ERR_OVERFLOW,
               GEAR_ERR_SHAPE);
}
END_TEST

/* --------------------------------------------------------------- config */

START_TEST(test_presets)
{
    static const struct { const char *name; unsigned bits, group; float s; unsigned rank; } want[] = {
        {"fp16", 0, 0, 0.0f, 0},   {"kivi2", 2, 64, 0.0f, 0},  {"kivi4", 4, 64, 0.0f, 0},
        {"kcvt4", 4, 0, 0.0f, 0},  {"gear2", 2, 64, 0.02f, 2}, {"gearl2", 2, 64, 0.0f, 2},
        {"gear4", 4, 0, 0.02f, 2}, {"gearl4", 4, 0, 0.0f, 2},
    };
    int n = gear_preset_count();
    ck_assert_int_ge(n, 8);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int found = 0;
        for (int j = 0; j < n; j++) found += gear_preset_name(j) && !strcmp(gear_preset_name(j), want[i].name);
        TU_ASSERT(found == 1, "preset %s listed %d times", want[i].name, found);
        for (int kind = 0; kind < 2; kind++) {
            gear_config c;
            memset(&c, 0xAB, sizeof c);
            TU_OK(gear_config_preset(want[i].name, (gear_kind)kind, &c));
            TU_EQ(c.kind, kind);
            TU_EQ(c.bits, want[i].bits);
            if (want[i].bits) TU_EQ(c.group, want[i].group);
            TU_CHECK(c.outlier_ratio == want[i].s);
            TU_EQ(c.rank, want[i].rank);
            if (want[i].rank) TU_EQ(c.iters, 3);
            TU_EQ(c.block, 64);
            TU_CHECK(c.seed == 0);
            TU_OK(gear_config_validate(&c, 128));
            TU_OK(gear_config_validate(&c, 64));
        }
    }
    TU_CHECK((gear_preset_name(-1)) == NULL);
    TU_CHECK((gear_preset_name(n)) == NULL);
    gear_config c;
    TU_STATUS(gear_config_preset("gear3", GEAR_KEY, &c), GEAR_ERR_UNKNOWN_PRESET);
    TU_STATUS(gear_config_preset("", GEAR_KEY, &c), GEAR_ERR_UNKNOWN_PRESET);
    TU_STATUS(gear_config_preset("KIVI2", GEAR_KEY, &c), GEAR_ERR_UNKNOWN_PRESET);
    TU_STATUS(gear_config_preset("kivi2 ", GEAR_KEY, &c), GEAR_ERR_UNKNOWN_PRESET);
}
END_TEST

START_TEST(test_outliers_per_side)
{
    /* k = min(floor(s*m/2 + 0.5), floor(m/2)) */
    TU_EQ(gear_outliers_per_side(0.02f, 64), 1);  /* 0.64 + 0.5 */
    TU_EQ(gear_outliers_per_side(0.02f, 128), 1); /* 1.28 + 0.5 */
    TU_EQ(gear_outliers_per_side(0.02f, 16), 0);  /* 0.16 + 0.5 */
    TU_EQ(gear_outliers_per_side(0.02f, 75), 1);  /* 0.75 + 0.5 */
    TU_EQ(gear_outliers_per_side(0.02f, 25), 0);  /* 0.25 + 0.5 */
    TU_EQ(gear_outliers_per_side(0.02f, 256), 3); /* 2.56 + 0.5 */
    TU_EQ(gear_outliers_per_side(0.25f, 8), 1);   /* 1.0 + 0.5 */
    TU_EQ(gear_outliers_per_side(0.5f, 8), 2);
    TU_EQ(gear_outliers_per_side(0.5f, 4), 1);    /* 1.0 + 0.5 */
    TU_EQ(gear_outliers_per_side(1.0f, 5), 2);    /* min(3, 2) */
    TU_EQ(gear_outliers_per_side(1.0f, 4), 2);
    TU_EQ(gear_outliers_per_side(1.0f, 1), 0);
    TU_EQ(gear_outliers_per_side(0.0f, 64), 0);
    for (unsigned m = 1; m < 300; m += 7)
        for (float s = 0.0f; s <= 1.0f; s += 0.03125f)
            TU_EQ(gear_outliers_per_side(s, m), tu_k(s, m));
    gear_config c = tu_cfg(GEAR_KEY, 2, 0, 0.0f, 0, 0, 64);
    TU_EQ(gear_config_group(&c, 64), 64);
    c.group = 16;
    TU_EQ(gear_config_group(&c, 64), 16);
    c.group = 100;
    TU_EQ(gear_config_group(&c, 64), 64);
}
END_TEST

/* ------------------------------------------------------------ logging */

static int log_calls;
static gear_log_level log_last_level;
static char log_last[256];

static void log_cb(gear_log_level level, const char *msg, void *user)
{
    ck_assert_ptr_eq(user, &log_calls);
    log_calls++;
    log_last_level = level;
    snprintf(log_last, sizeof log_last, "%s", msg);
}

START_TEST(test_logging)
{
    log_calls = 0;
    gear_log_set(log_cb, &log_calls);
    gear_log(GEAR_LOG_WARN, "hello %d", 42);
    TU_EQ(log_calls, 1);
    TU_EQ(log_last_level, GEAR_LOG_WARN);
    TU_CHECK((strstr(log_last, "hello 42")) != NULL);
    gear_log(GEAR_LOG_ERROR, "second");
    TU_EQ(log_calls, 2);
    TU_EQ(log_last_level, GEAR_LOG_ERROR);
    gear_log_set(NULL, NULL);
    gear_log(GEAR_LOG_DEBUG, "not to the callback");
    TU_EQ(log_calls, 2);
    /* the failure detail is kept per thread */
    gear_config c;
    TU_STATUS(gear_config_preset("no-such-preset", GEAR_KEY, &c), GEAR_ERR_UNKNOWN_PRESET);
    TU_CHECK((strstr(gear_last_error_message(), "no-such-preset")) != NULL);
}
END_TEST

/* ------------------------------------------------------------ registry */

START_TEST(test_registry)
{
    int n = gear_backend_count(), ref = -1;
    ck_assert_int_ge(n, 1);
    for (int i = 0; i < n; i++) {
        const char *name = gear_backend_name(i);
        TU_CHECK((name) != NULL);
        TU_CHECK((gear_backend_origin(i)) != NULL);
        TU_CHECK((gear_backend_description(i)) != NULL);
        const char *why = NULL;
        int avail = gear_backend_available(i, &why);
        TU_CHECK((why) != NULL);
        if (!avail) TU_ASSERT(why[0] != 0, "backend %s unavailable without a reason", name);
        TU_EQ(avail, gear_backend_score(i) > 0);
        for (int j = 0; j < i; j++) ck_assert_str_ne(name, gear_backend_name(j));
        if (!strcmp(name, "ref")) ref = i;
    }
    ck_assert_int_ge(ref, 0);
    TU_EQ(gear_backend_available(ref, NULL), 1);
    ck_assert_str_eq(gear_backend_origin(ref), "built-in");
    TU_CHECK((gear_backend_name(-1)) == NULL);
    TU_CHECK((gear_backend_name(n)) == NULL);
    TU_CHECK((gear_backend_origin(n)) == NULL);
    TU_CHECK((gear_backend_description(-1)) == NULL);
    TU_CHECK((gear_backend_description(n)) == NULL);
    TU_CHECK(strstr(gear_backend_description(ref), "reference") != NULL);
    for (int i = 0; i < n; i++) /* the cpu module names the kernels it chose */
        if (!strcmp(gear_backend_name(i), "cpu") && gear_backend_available(i, NULL))
            TU_ASSERT(strstr(gear_backend_description(i), "compress ") && strstr(gear_backend_description(i), "attention "),
                      "cpu description '%s' names no kernels", gear_backend_description(i));
    TU_EQ(gear_backend_score(n), 0);
    const char *why = NULL;
    TU_EQ(gear_backend_available(n, &why), 0);
    TU_CHECK((why) != NULL);
    ck_assert_ptr_eq(gear_backend_ref_table(), gear_registry_get(ref));
    ck_assert_str_eq(gear_backend_ref_table()->name, "ref");
    TU_EQ(gear_backend_ref_table()->abi_version, GEAR_BACKEND_ABI_VERSION);
    gear_context *ctx = tu_ctx("ref");
    ck_assert_str_eq(gear_context_backend_name(ctx), "ref");
    gear_context_free(ctx);
    /* auto picks the best available backend */
    gear_context *a = NULL;
    unsetenv("GEAR_BACKEND");
    unsetenv("GEAR_DEVICE");
    TU_OK(gear_context_create(NULL, &a));
    int best = -1;
    for (int i = 0; i < n; i++)
        if (gear_backend_available(i, NULL) &&
            (best < 0 || gear_backend_score(i) > gear_backend_score(best)))
            best = i;
    ck_assert_str_eq(gear_context_backend_name(a), gear_backend_name(best));
    gear_context_free(a);
}
END_TEST

static Suite *core_suite(void)
{
    Suite *s = suite_create("core");
    TCase *tc = tu_tcase("fp16");
    tcase_add_test(tc, test_half_hand_values);
    tcase_add_test(tc, test_half_subnormals);
    tcase_add_test(tc, test_half_rows_writer);
    tcase_add_test(tc, test_half_ties_to_even);
    tcase_add_test(tc, test_half_roundtrip_all);
    tcase_add_test(tc, test_half_vs_double_random);
    tcase_add_test(tc, test_bf16);
    suite_add_tcase(s, tc);
    tc = tu_tcase("crc_rng");
    tcase_add_test(tc, test_crc32c_vectors);
    tcase_add_test(tc, test_crc32c_chunked);
    tcase_add_test(tc, test_rng_vectors);
    tcase_add_test(tc, test_rng_properties);
    suite_add_tcase(s, tc);
    tc = tu_tcase("misc");
    tcase_add_test(tc, test_size_helpers);
    tcase_add_test(tc, test_le_fields_and_codes);
    tcase_add_test(tc, test_status_strings);
    tcase_add_test(tc, test_version);
    tcase_add_test(tc, test_tensor_init);
    tcase_add_test(tc, test_presets);
    tcase_add_test(tc, test_outliers_per_side);
    tcase_add_test(tc, test_logging);
    tcase_add_test(tc, test_registry);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(core_suite(), 0); }
