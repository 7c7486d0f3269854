/* crc32c.c - CRC-32C (Castagnoli, reflected 0x82F63B78): the SSE4.2 crc32
 * instruction where the CPU has it (checked at run time; it computes this
 * very polynomial), else portable slicing-by-8. */
#include <pthread.h>
#include "internal.h"

static uint32_t table[8][256];
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
}

#if defined(__x86_64__) && defined(__GNUC__)
#define GEAR_CRC_HW 1
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t len)
{
    uint64_t c = ~crc;
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
    if (__builtin_cpu_supports("sse4.2")) return crc_hw(crc, p, len);
#endif
    pthread_once(&table_once, table_init);
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
