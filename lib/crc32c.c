/* crc32c.c - CRC-32C (Castagnoli, reflected 0x82F63B78): the SSE4.2 crc32
 * instruction where the CPU has it (checked at run time; it computes this
 * very polynomial), else portable slicing-by-8.  The instruction has a
 * latency of three cycles and a throughput of one, so long buffers run
 * three independent lanes, joined by the linearity of the CRC register:
 * feeding D from state c gives shift(c, |D|) ^ feed(0, D).  Lanes of 256
 * bytes, then of 64 for the rest (a block's tail of up to 767 bytes had
 * run at the latency, a third of the rate). */
#include <pthread.h>
#include "internal.h"

static uint32_t table[8][256];
/* shift_tab[s][k][b]: the register (b << 8k) after lane[s] zero bytes. */
static const unsigned lane_len[2] = {256, 64};
static uint32_t shift_tab[2][4][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int s = 1; s < 8; s++)
            table[s][i] = (table[s - 1][i] >> 8) ^ table[0][table[s - 1][i] & 0xff];
    for (int s = 0; s < 2; s++) {
        uint32_t img[32]; /* images of single bits; the shift is linear */
        for (int b = 0; b < 32; b++) {
            uint32_t c = 1u << b;
            for (unsigned i = 0; i < lane_len[s]; i++) c = (c >> 8) ^ table[0][c & 0xff];
            img[b] = c;
        }
        for (int k = 0; k < 4; k++)
            for (uint32_t v = 0; v < 256; v++) {
                uint32_t c = 0;
                for (int j = 0; j < 8; j++)
                    if (v >> j & 1) c ^= img[8 * k + j];
                shift_tab[s][k][v] = c;
            }
    }
}

static uint32_t shift_lane(const uint32_t t[4][256], uint32_t c)
{
    return t[0][c & 0xff] ^ t[1][(c >> 8) & 0xff] ^ t[2][(c >> 16) & 0xff] ^ t[3][c >> 24];
}

#if defined(__x86_64__) && defined(__GNUC__)
#define GEAR_CRC_HW 1
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t len)
{
    uint64_t c = ~crc;
    for (int s = 0; s < 2; s++) {
        const size_t lane = lane_len[s];
        for (; len >= 3 * lane; p += 3 * lane, len -= 3 * lane) {
            uint64_t c1 = 0, c2 = 0;
            for (size_t i = 0; i < lane; i += 8) {
                c = __builtin_ia32_crc32di(c, gear_get_u64(p + i));
                c1 = __builtin_ia32_crc32di(c1, gear_get_u64(p + lane + i));
                c2 = __builtin_ia32_crc32di(c2, gear_get_u64(p + 2 * lane + i));
            }
            c = shift_lane(shift_tab[s], shift_lane(shift_tab[s], (uint32_t)c) ^ (uint32_t)c1) ^ (uint32_t)c2;
        }
    }
    for (; len >= 8; p += 8, len -= 8) c = __builtin_ia32_crc32di(c, gear_get_u64(p));
    uint32_t c32 = (uint32_t)c;
    while (len--) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return ~c32;
}
#endif

/* crc is the running value (0 to start); returns the updated CRC. */
uint32_t gear_crc32c(uint32_t crc, const void *data, size_t len)
{
    const uint8_t *p = data;
#ifdef GEAR_CRC_HW
    pthread_once(&table_once, table_init);
    if (__builtin_cpu_supports("sse4.2")) return crc_hw(crc, p, len);
#endif
    crc = ~crc;
    while (len >= 8) {
        uint32_t lo = crc ^ gear_get_u32(p), hi = gear_get_u32(p + 4);
        crc = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^
              table[4][lo >> 24] ^ table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^
              table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len--) crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
    return ~crc;
}
