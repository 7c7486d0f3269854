/* safetensors.c - see safetensors.h. */
#include "safetensors.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

typedef struct sbuf {
    char *s;
    size_t n, cap;
    int oom;
} sbuf;

static void put(sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->cap - b->n < n + 1) {
        size_t nc = (b->cap + n + 1) * 2;
        char *ns = realloc(b->s, nc);
        if (!ns) {
            b->oom = 1;
            return;
        }
        b->s = ns;
        b->cap = nc;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }

static void put_json_str(sbuf *b, const char *s)
{
    puts_(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char tmp[8];
        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            put(b, tmp, 2);
        } else if (c < 0x20) {
            snprintf(tmp, sizeof tmp, "\\u%04x", c);
            puts_(b, tmp);
        } else {
            put(b, (const char *)&c, 1);
        }
    }
    puts_(b, "\"");
}

int st_write(const char *path, const st_tensor *t, int n, const char *const *meta, int n_meta)
{
    sbuf h = {NULL, 0, 0, 0};
    char tmp[256];
    size_t off = 0;
    puts_(&h, "{");
    if (n_meta > 0) {
        puts_(&h, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) puts_(&h, ",");
            put_json_str(&h, meta[2 * i]);
            puts_(&h, ":");
            put_json_str(&h, meta[2 * i + 1]);
        }
        puts_(&h, "}");
    }
    for (int i = 0; i < n; i++) {
        if (i || n_meta > 0) puts_(&h, ",");
        put_json_str(&h, t[i].name);
        snprintf(tmp, sizeof tmp, ":{\"dtype\":\"%s\",\"shape\":[", t[i].dtype);
        puts_(&h, tmp);
        for (int d = 0; d < t[i].ndim; d++) {
            snprintf(tmp, sizeof tmp, "%s%lld", d ? "," : "", (long long)t[i].shape[d]);
            puts_(&h, tmp);
        }
        snprintf(tmp, sizeof tmp, "],\"data_offsets\":[%zu,%zu]}", off, off + t[i].bytes);
        puts_(&h, tmp);
        off += t[i].bytes;
    }
    puts_(&h, "}");
    while (!h.oom && h.n % 8) puts_(&h, " "); /* data starts 8-byte aligned */
    if (h.oom) {
        free(h.s);
        return llm_fail("out of memory writing %s", path);
    }
    char *tmp_path = malloc(strlen(path) + 8);
    if (!tmp_path) {
        free(h.s);
        return llm_fail("out of memory");
    }
    sprintf(tmp_path, "%s.tmp", path);
    FILE *f = fopen(tmp_path, "wb");
    int rc = -1;
    if (!f) {
        llm_fail("cannot create %s: %s", tmp_path, strerror(errno));
        goto done;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.n >> (8 * i));
    int bad = fwrite(len8, 1, 8, f) != 8 || fwrite(h.s, 1, h.n, f) != h.n;
    for (int i = 0; i < n && !bad; i++) bad = fwrite(t[i].data, 1, t[i].bytes, f) != t[i].bytes;
    bad |= fclose(f) != 0;
    if (bad) {
        llm_fail("error writing %s", tmp_path);
        remove(tmp_path);
        goto done;
    }
    if (rename(tmp_path, path)) {
        llm_fail("cannot rename %s to %s: %s", tmp_path, path, strerror(errno));
        remove(tmp_path);
        goto done;
    }
    rc = 0;
done:
    free(tmp_path);
    free(h.s);
    return rc;
}
