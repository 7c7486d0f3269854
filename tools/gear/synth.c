/*
 * synth.c - seeded synthetic KV (see synth.h).
 *
 * Every number is a pure function of (seed, kind, head, token, channel)
 * through splitmix64 hashing, so a sample does not depend on loop order or
 * on T (a shorter sample is a prefix of a longer one) and is the same on
 * every platform up to libm rounding.
 *
 * Keys (what KIVI and GEAR observe in real models):
 *   x[t][c] = s_c (o_c + sum_j sigma_j u_j(t) v_j(c) + noise)
 *   with per-channel offsets o_c and scales s_c, a rank-4 part whose token
 *   factors u_j are smooth oscillations (like RoPE'd keys), mildly
 *   heavy-tailed noise, and 2-4 outlier channels per head carrying a large
 *   signed offset of 5-15x (|x| up to ~50).
 * Values:
 *   x[t][c] = a_t s_c (o_c + sum_j sigma_j u_j(t) v_j(c) + noise) + spikes
 *   with a per-token scale a_t, weak channel structure, a rank-4 part with
 *   random token factors, heavy-tailed (normal scale-mixture) noise and
 *   rare large spikes.
 */
#include <math.h>
#include <stddef.h>
#include "synth.h"

#define RANK 4
#define CHUNK 256 /* channels handled per pass, so per-channel terms live on the stack */

enum {
    T_CH_OFF = 1, T_CH_SCALE, T_N_OUT, T_OUT_CH, T_OUT_MAG, T_FREQ, T_PHASE, T_CH_FAC,
    T_TOK_FAC, T_NOISE, T_TOK_SCALE, T_SPIKE, T_NORMAL
};

static uint64_t mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Hash of a coordinate tuple; tags keep the different quantities independent. */
static uint64_t key(uint64_t seed, unsigned tag, uint64_t a, uint64_t b, uint64_t c)
{
    return mix(mix(mix(mix(seed ^ (uint64_t)tag << 56) ^ a) ^ b) ^ c);
}

/* Uniform in (0, 1) from the high or low 32 bits of a hash. */
static double u32_hi(uint64_t k) { return ((double)(k >> 32) + 0.5) * (1.0 / 4294967296.0); }
static double u32_lo(uint64_t k) { return ((double)(k & 0xffffffffu) + 0.5) * (1.0 / 4294967296.0); }
static double uni(uint64_t k) { return ((double)(mix(k) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

/* Standard normal (Box-Muller) from one hash; 32-bit halves bound |z| < 6.7. */
static double gauss(uint64_t k)
{
    uint64_t h = mix(k);
    return sqrt(-2.0 * log(u32_hi(h))) * cos(6.283185307179586 * u32_lo(h));
}

typedef struct head_params {
    int n_out;
    int out_ch[4];
    double out_mag[4];
    double freq[RANK], phase[RANK], sigma[RANK];
} head_params;

static void head_setup(uint64_t seed, gear_kind kind, int h, int d, head_params *p)
{
    p->n_out = 0;
    if (kind == GEAR_KEY) {
        int n = 2 + (int)(mix(key(seed, T_N_OUT, (uint64_t)h, 0, 0)) % 3);
        if (n > d / 2) n = d / 2;
        for (int j = 0; j < n; j++) {
            int c = (int)(mix(key(seed, T_OUT_CH, (uint64_t)h, (uint64_t)j, 0)) % (uint64_t)d);
            for (int i = 0; i < j; i++)          /* distinct channels: probe onwards */
                if (p->out_ch[i] == c) { c = (c + 1) % d; i = -1; }
            double u = uni(key(seed, T_OUT_MAG, (uint64_t)h, (uint64_t)j, 0));
            double mag = 5.0 + 10.0 * u;
            p->out_ch[j] = c;
            p->out_mag[j] = mix(key(seed, T_OUT_MAG, (uint64_t)h, (uint64_t)j, 1)) & 1 ? -mag : mag;
        }
        p->n_out = n;
    }
    for (int j = 0; j < RANK; j++) {
        double u = uni(key(seed, T_FREQ, (uint64_t)h, (uint64_t)j, 0));
        p->freq[j] = 0.002 + 0.25 * u * u;      /* slow to moderate, radians per token */
        p->phase[j] = 6.283185307179586 * uni(key(seed, T_PHASE, (uint64_t)h, (uint64_t)j, 0));
        p->sigma[j] = (kind == GEAR_KEY ? 1.5 : 1.0) * pow(0.6, j);
    }
}

void gear_synth_kv(uint64_t seed, gear_kind kind, int H, int T, int d, float *out)
{
    if (!out || H <= 0 || T <= 0 || d <= 0) return;
    seed = mix(seed ^ (kind == GEAR_KEY ? 0x4b4b4b4bull : 0x56565656ull));
    double off[CHUNK], scale[CHUNK], fac[RANK][CHUNK], omag[CHUNK];
    for (int h = 0; h < H; h++) {
        head_params P;
        head_setup(seed, kind, h, d, &P);
        for (int c0 = 0; c0 < d; c0 += CHUNK) {
            int nc = d - c0 < CHUNK ? d - c0 : CHUNK;
            for (int i = 0; i < nc; i++) {
                uint64_t c = (uint64_t)(c0 + i);
                double go = gauss(key(seed, T_CH_OFF, (uint64_t)h, c, 0));
                double gs = gauss(key(seed, T_CH_SCALE, (uint64_t)h, c, 0));
                off[i] = kind == GEAR_KEY ? 1.0 * go : 0.2 * go;
                scale[i] = exp((kind == GEAR_KEY ? 0.3 : 0.15) * gs);
                for (int j = 0; j < RANK; j++)
                    fac[j][i] = gauss(key(seed, T_CH_FAC, (uint64_t)h, (uint64_t)j, c));
                omag[i] = 0.0;
                for (int j = 0; j < P.n_out; j++)
                    if (P.out_ch[j] == c0 + i) omag[i] = P.out_mag[j];
            }
            for (int t = 0; t < T; t++) {
                double u[RANK], a = 1.0;
                for (int j = 0; j < RANK; j++) {
                    double smooth = sqrt(2.0) * sin(P.freq[j] * t + P.phase[j]);
                    u[j] = kind == GEAR_KEY
                               ? smooth
                               : 0.5 * smooth +
                                     0.85 * gauss(key(seed, T_TOK_FAC, (uint64_t)h, (uint64_t)j,
                                                      (uint64_t)t));
                }
                if (kind == GEAR_VALUE)
                    a = exp(0.35 * gauss(key(seed, T_TOK_SCALE, (uint64_t)h, (uint64_t)t, 0)));
                float *row = out + ((size_t)h * (size_t)T + (size_t)t) * (size_t)d + c0;
                for (int i = 0; i < nc; i++) {
                    uint64_t c = (uint64_t)(c0 + i);
                    uint64_t kn = key(seed, T_NOISE, (uint64_t)h, (uint64_t)t, c);
                    double z1 = gauss(kn), z2 = gauss(kn ^ 0x9e3779b97f4a7c15ull);
                    double lr = 0.0;
                    for (int j = 0; j < RANK; j++) lr += P.sigma[j] * u[j] * fac[j][i];
                    double x;
                    if (kind == GEAR_KEY) {
                        double base = off[i] + lr + 0.5 * z1 * exp(0.3 * z2);
                        x = omag[i] != 0.0 ? omag[i] * (1.0 + 0.25 * base) : scale[i] * base;
                    } else {
                        x = a * scale[i] * (off[i] + lr + 0.3 * z1 * exp(0.5 * z2));
                        uint64_t ks = mix(key(seed, T_SPIKE, (uint64_t)h, (uint64_t)t, c));
                        if ((ks & 1023) < 3) /* ~0.3% of entries: a large spike */
                            x += ((ks & 1024) ? -1.0 : 1.0) * (4.0 + 6.0 * u32_hi(ks));
                    }
                    if (x > 60.0) x = 60.0;
                    if (x < -60.0) x = -60.0;
                    row[i] = (float)x;
                }
            }
        }
    }
}

void gear_synth_normal(uint64_t seed, int n, float *out)
{
    if (!out) return;
    for (int i = 0; i < n; i++) out[i] = (float)gauss(key(seed, T_NORMAL, (uint64_t)i, 0, 0));
}
