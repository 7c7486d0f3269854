/*
 * fuzz.h - shared by the fuzz targets in tests/fuzz.
 *
 * Every target defines LLVMFuzzerTestOneInput(data, size).  Built with
 * clang -fsanitize=fuzzer it is a libFuzzer target; built with
 * -DGEAR_FUZZ_STANDALONE (any compiler, e.g. afl-clang-fast for AFL++, or
 * gcc for replaying a corpus under valgrind) this header adds a main() that
 * runs each file named on the command line (or stdin when there is none)
 * through the target once.  See tests/fuzz/README.md.
 */
#ifndef GEAR_FUZZ_H
#define GEAR_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#ifdef GEAR_FUZZ_STANDALONE
#include <stdio.h>
#include <stdlib.h>

static int gear_fuzz_run_stream(FILE *f)
{
    size_t len = 0, cap = 1 << 16;
    uint8_t *buf = malloc(cap);
    if (!buf) return 1;
    for (;;) {
        if (len == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return 1;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        if (!got) break;
        len += got;
    }
    /* an exact-size copy, so that ASan sees reads past the end */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
        free(buf);
        return 1;
    }
    for (size_t i = 0; i < len; i++) exact[i] = buf[i];
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) return gear_fuzz_run_stream(stdin);
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            perror(argv[i]);
            return 1;
        }
        int rc = gear_fuzz_run_stream(f);
        fclose(f);
        if (rc) return rc;
    }
    return 0;
}
#endif /* GEAR_FUZZ_STANDALONE */

#endif
