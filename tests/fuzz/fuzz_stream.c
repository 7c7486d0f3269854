/*
 * fuzz_stream.c - gear_stream_info and gear_decompress on untrusted bytes.
 *
 * Both must return a status for any input (never crash, hang or read out
 * of bounds); they must agree on whether the stream is valid; and a valid
 * stream must decompress, in every output dtype, without touching memory
 * outside the output view (the view is placed inside guard bytes that are
 * checked afterwards).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <gear.h>
#include "fuzz.h"
#include "fuzz_lib.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gear_context *ctx = fuzz_ref_context();
    int64_t shape[3];
    gear_config cfg;
    gear_status si = gear_stream_info(data, size, shape, &cfg);
    if (si == GEAR_OK) {
        if (shape[0] <= 0 || shape[1] <= 0 || shape[2] <= 0) FUZZ_DIE("stream_info: bad shape");
        if (gear_config_validate(&cfg, (unsigned)shape[2])) FUZZ_DIE("stream_info: invalid config");
    }
    /* bound the work a valid stream can ask for (libFuzzer's -rss_limit) */
    int64_t n = si ? 1 : shape[0] * shape[1] * shape[2];
    if (n > (1 << 22)) return 0;
    static const gear_dtype dts[3] = {GEAR_F32, GEAR_F16, GEAR_BF16};
    gear_dtype dt = dts[size % 3];
    size_t es = dt == GEAR_F32 ? 4 : 2, guard = 64;
    uint8_t *buf = malloc((size_t)n * es + 2 * guard);
    if (!buf) return 0;
    memset(buf, 0xA5, (size_t)n * es + 2 * guard);
    gear_tensor out;
    if (si == GEAR_OK)
        gear_tensor_init(&out, buf + guard, dt, 3, shape[0], shape[1], shape[2], 0);
    else
        gear_tensor_init(&out, buf + guard, dt, 3, 1, 1, 1, 0);
    gear_status sd = gear_decompress(ctx, data, size, &out);
    if ((si == GEAR_OK) != (sd == GEAR_OK)) FUZZ_DIE("stream_info and decompress disagree");
    if (sd && sd != si) FUZZ_DIE("stream_info and decompress give different statuses");
    for (size_t i = 0; i < guard; i++)
        if (buf[i] != 0xA5 || buf[guard + (size_t)n * es + i] != 0xA5) FUZZ_DIE("write outside the view");
    if (sd) {
        /* a failed decompress leaves the output untouched */
        for (size_t i = 0; i < (size_t)n * es; i++)
            if (buf[guard + i] != 0xA5) FUZZ_DIE("failed decompress wrote its output");
    }
    free(buf);
    return 0;
}
