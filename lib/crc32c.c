/* crc32c.c - CRC-32C (Castagnoli, reflected 0x82F63B78): the SSE4.2 crc32
 * instruction where the CPU has it (checked at run time; it computes this
 * very polynomial), else portable slicing-by-8.  The instruction has a
 * latency of three cycles and a throughput of one, so long buffers run
 * three independent lanes, joined by the linearity of the CRC register:
 * feeding D from state c gives shift(c, |D|) ^ feed(0, D). */
#include <pthread.h>
#include "internal.h"

static uint32_t table[8][256];
/* shift_tab[k][b]: the register (b << 8k) after LANE zero bytes. */
#define LANE 256
static uint32_t shift_tab[4][256];
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
    uint32_t img[32]; /* images of single bits; the shift is linear */
    for (int b = 0; b < 32; b++) {
        uint32_t c = 1u << b;
        for (int i = 0; i < LANE; i++) c = (c >> 8) ^ table[0][c & 0xff];
        img[b] = c;
    }
    for (int k = 0; k < 4; k++)
        for (uint32_t v = 0; v < 256; v++) {
            uint32_t c = 0;
            for (int j = 0; j < 8; j++)
                if (v >> j & 1) c ^= img[8 * k + j];
            shift_tab[k][v] = c;
        }
}

static uint32_t shift_lane(uint32_t c)
{
    return shift_tab[0][c & 0xff] ^ shift_tab[1][(c >> 8) & 0xff] ^ shift_tab[2][(c >> 16) & 0xff] ^
           shift_tab[3][c >> 24];
}

#if defined(__x86_64__) && defined(__GNUC__)
#define GEAR_CRC_HW 1
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t len)
{
    uint64_t c = ~crc;
    for (; len >= 3 * LANE; p += 3 * LANE, len -= 3 * LANE) {
        uint64_t c1 = 0, c2 = 0;
        for (size_t i = 0; i < LANE; i += 8) {
            c = __builtin_ia32_crc32di(c, gear_get_u64(p + i));
            c1 = __builtin_ia32_crc32di(c1, gear_get_u64(p + LANE + i));
            c2 = __builtin_ia32_crc32di(c2, gear_get_u64(p + 2 * LANE + i));
        }
        c = shift_lane(shift_lane((uint32_t)c) ^ (uint32_t)c1) ^ (uint32_t)c2;
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
