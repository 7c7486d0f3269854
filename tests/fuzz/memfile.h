/* memfile.h - hand fuzz input to a reader that opens a path: the bytes go
 * into an anonymous in-memory file (memfd), named /proc/self/fd/N. */
#ifndef GEAR_FUZZ_MEMFILE_H
#define GEAR_FUZZ_MEMFILE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static int memfile_fd = -1;

/* Returns the path of a file holding exactly data[0..size), or NULL. */
static const char *memfile_put(const uint8_t *data, size_t size)
{
    static char path[64];
    if (memfile_fd < 0) {
        memfile_fd = memfd_create("gear-fuzz", 0);
        if (memfile_fd < 0) {
            perror("memfd_create");
            abort();
        }
        snprintf(path, sizeof path, "/proc/self/fd/%d", memfile_fd);
    }
    if (ftruncate(memfile_fd, 0)) abort();
    size_t off = 0;
    while (off < size) {
        ssize_t w = pwrite(memfile_fd, data + off, size - off, (off_t)off);
        if (w <= 0) abort();
        off += (size_t)w;
    }
    return path;
}

#endif
