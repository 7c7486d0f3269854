/*
 * fileio.c - output sinks (memory or FILE) and whole-file reads and
 * atomic writes, shared by every serialized object (caches, calibrations).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "internal.h"

void gear_sink_put(gear_sink *s, const void *p, size_t n)
{
    if (s->f) {
        if (!s->failed && fwrite(p, 1, n, s->f) != n) s->failed = 1;
    } else if (s->buf && s->pos <= s->cap && n <= s->cap - s->pos) {
        memcpy(s->buf + s->pos, p, n);
    }
    s->pos += n;
}

gear_status gear_save_mem(gear_writer write, const void *obj, void *dst, size_t cap, size_t *size)
{
    gear_sink s = {dst, dst ? cap : 0, 0, NULL, 0};
    gear_status st = write(obj, &s);
    if (st) return st;
    *size = s.pos;
    if (!dst || cap < s.pos)
        return gear_fail(GEAR_ERR_DST_TOO_SMALL, "saving needs %zu bytes, got %zu", s.pos,
                         dst ? cap : 0);
    return GEAR_OK;
}

gear_status gear_save_file(gear_writer write, const void *obj, const char *path)
{
    size_t len = strlen(path);
    char *tmp = malloc(len + 16);
    if (!tmp) return gear_fail(GEAR_ERR_NO_MEMORY, "saving %s", path);
    snprintf(tmp, len + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        gear_status st = gear_fail(GEAR_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
        free(tmp);
        return st;
    }
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        unlink(tmp);
        free(tmp);
        return gear_fail(GEAR_ERR_IO, "fdopen failed: %s", strerror(errno));
    }
    gear_sink s = {NULL, 0, 0, f, 0};
    gear_status st = write(obj, &s);
    /* Durable: data on disk before the new name replaces the old file. */
    int bad = s.failed || fflush(f) != 0 || fsync(fileno(f)) != 0;
    int err = errno;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        err = errno;
    }
    if (!st && bad) st = gear_fail(GEAR_ERR_IO, "writing %s failed: %s", tmp, strerror(err));
    if (!st && rename(tmp, path) != 0)
        st = gear_fail(GEAR_ERR_IO, "renaming %s to %s failed: %s", tmp, path, strerror(errno));
    if (st) unlink(tmp);
    free(tmp);
    return st;
}

gear_status gear_read_file(const char *path, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return gear_fail(GEAR_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    uint8_t *data = NULL;
    size_t len = 0, cap = 0;
    gear_status st = GEAR_OK;
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 1 << 16;
            uint8_t *nd = ncap > cap ? realloc(data, ncap) : NULL;
            if (!nd) {
                st = gear_fail(GEAR_ERR_NO_MEMORY, "reading %s", path);
                break;
            }
            data = nd;
            cap = ncap;
        }
        size_t got = fread(data + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) st = gear_fail(GEAR_ERR_IO, "reading %s failed", path);
            break;
        }
    }
    fclose(f);
    if (st) {
        free(data);
        return st;
    }
    *out = data;
    *out_len = len;
    return GEAR_OK;
}
