/*
 * fileio.c - output sinks (memory or FILE) and whole-file reads and
 * atomic writes, shared by every serialized object (caches, calibrations).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* Counts first, then writes: a dst too small is left untouched (a
 * failed call writes nothing). */
gear_status gear_save_mem(gear_writer write, const void *obj, void *dst, size_t cap, size_t *size)
{
    gear_sink s = {NULL, 0, 0, NULL, 0};
    gear_status st = write(obj, &s);
    if (st) return st;
    *size = s.pos;
    if (!dst || cap < s.pos)
        return gear_fail(GEAR_ERR_DST_TOO_SMALL, "saving needs %zu bytes, got %zu", s.pos,
                         dst ? cap : 0);
    s = (gear_sink){dst, cap, 0, NULL, 0};
    return write(obj, &s);
}

/* A new file path.tmp.<pid>.<n> created with mode 0666 less the umask
 * (mkstemp's 0600 would make every saved file private); -1 on failure,
 * errno set. */
static int create_temp(const char *path, char *tmp, size_t len)
{
    static unsigned counter;
    for (int tries = 0; tries < 100; tries++) {
        unsigned n = __atomic_fetch_add(&counter, 1u, __ATOMIC_RELAXED);
        snprintf(tmp, len, "%s.tmp.%ld.%u", path, (long)getpid(), n);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST) return fd;
    }
    return -1;
}

gear_status gear_save_file(gear_writer write, const void *obj, const char *path)
{
    size_t len = strlen(path) + 40;
    char *tmp = malloc(len);
    if (!tmp) return gear_fail(GEAR_ERR_NO_MEMORY, "saving %s", path);
    int fd = create_temp(path, tmp, len);
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
    /* Regular files only: /dev/zero would be read until memory ran out,
     * and a FIFO would block.  Opened without blocking to ask. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return gear_fail(GEAR_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    int known = fstat(fd, &sb) == 0;
    if (!known || !S_ISREG(sb.st_mode)) {
        int err = errno;
        close(fd);
        return gear_fail(GEAR_ERR_IO, "cannot read %s: %s", path, known ? "not a regular file" : strerror(err));
    }
    int fl = fcntl(fd, F_GETFL);
    FILE *f = fl == -1 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == -1 ? NULL : fdopen(fd, "rb");
    if (!f) {
        int err = errno;
        close(fd);
        return gear_fail(GEAR_ERR_IO, "cannot open %s: %s", path, strerror(err));
    }
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
