/* npy.c - strict .npy reader (float32/float16, C order) and '<f4' writer. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "cli.h"
#include "npy.h"

#define NPY_MAX_HEADER (1u << 20) /* numpy itself writes a few hundred bytes */

/* ------------------------------------------- header: a Python dict literal */

typedef struct hdr {
    const char *s;
    size_t len, pos;
} hdr;

static void h_ws(hdr *h)
{
    while (h->pos < h->len && (h->s[h->pos] == ' ' || h->s[h->pos] == '\t')) h->pos++;
}

static int h_is(hdr *h, char c)
{
    h_ws(h);
    if (h->pos < h->len && h->s[h->pos] == c) {
        h->pos++;
        return 1;
    }
    return 0;
}

/* A quoted string without escapes (all numpy ever writes here). */
static int h_string(hdr *h, char *out, size_t cap)
{
    h_ws(h);
    if (h->pos >= h->len || (h->s[h->pos] != '\'' && h->s[h->pos] != '"')) return -1;
    char q = h->s[h->pos++];
    size_t n = 0;
    while (h->pos < h->len && h->s[h->pos] != q) {
        if (h->s[h->pos] == '\\' || n + 1 >= cap) return -1;
        out[n++] = h->s[h->pos++];
    }
    if (h->pos >= h->len) return -1;
    h->pos++;
    out[n] = 0;
    return 0;
}

static int h_word(hdr *h, const char *w)
{
    size_t n = strlen(w);
    h_ws(h);
    if (h->len - h->pos < n || memcmp(h->s + h->pos, w, n)) return 0;
    h->pos += n;
    return 1;
}

/* A tuple of non-negative integers: (), (5,), (2, 3), (2, 3,). */
static int h_shape(hdr *h, npy_array *a, char *err, size_t errlen)
{
    if (!h_is(h, '(')) return cli_set_err(err, errlen, "header: 'shape' is not a tuple");
    a->ndim = 0;
    if (h_is(h, ')')) return 0;
    for (;;) {
        h_ws(h);
        if (h->pos >= h->len || h->s[h->pos] < '0' || h->s[h->pos] > '9')
            return cli_set_err(err, errlen, "header: bad number in 'shape'");
        uint64_t v = 0;
        while (h->pos < h->len && h->s[h->pos] >= '0' && h->s[h->pos] <= '9') {
            unsigned d = (unsigned)(h->s[h->pos++] - '0');
            if (v > ((uint64_t)INT64_MAX - d) / 10)
                return cli_set_err(err, errlen, "header: dimension in 'shape' too large");
            v = v * 10 + d;
        }
        if (a->ndim == NPY_MAX_DIM)
            return cli_set_err(err, errlen, "header: more than %d dimensions", NPY_MAX_DIM);
        a->shape[a->ndim++] = (int64_t)v;
        if (h_is(h, ')')) return 0;
        if (!h_is(h, ',')) return cli_set_err(err, errlen, "header: bad 'shape' tuple");
        if (h_is(h, ')')) return 0;
    }
}

static int parse_header(const char *s, size_t len, npy_array *a, char *err, size_t errlen)
{
    hdr h = {s, len, 0};
    int seen_descr = 0, seen_order = 0, seen_shape = 0;
    /* numpy ends the header with '\n' after space padding. */
    while (h.len > 0 && (s[h.len - 1] == '\n' || s[h.len - 1] == ' ')) h.len--;
    if (!h_is(&h, '{')) return cli_set_err(err, errlen, "header is not a dict");
    while (!h_is(&h, '}')) {
        char k[32], v[32];
        if (h_string(&h, k, sizeof k) || !h_is(&h, ':'))
            return cli_set_err(err, errlen, "header: bad dict key");
        if (!strcmp(k, "descr")) {
            if (seen_descr++) return cli_set_err(err, errlen, "header: 'descr' given twice");
            if (h_string(&h, v, sizeof v))
                return cli_set_err(err, errlen, "header: 'descr' is not a simple dtype string");
            if (!strcmp(v, "<f4")) a->dtype = GEAR_F32;
            else if (!strcmp(v, "<f2")) a->dtype = GEAR_F16;
            else
                return cli_set_err(err, errlen, "dtype '%s' not supported (need float32 '<f4' or "
                               "float16 '<f2', little-endian)", v);
        } else if (!strcmp(k, "fortran_order")) {
            if (seen_order++) return cli_set_err(err, errlen, "header: 'fortran_order' given twice");
            if (h_word(&h, "True"))
                return cli_set_err(err, errlen, "fortran_order arrays are not supported (save a "
                               "C-order array, e.g. numpy.ascontiguousarray)");
            if (!h_word(&h, "False"))
                return cli_set_err(err, errlen, "header: 'fortran_order' is not True or False");
        } else if (!strcmp(k, "shape")) {
            if (seen_shape++) return cli_set_err(err, errlen, "header: 'shape' given twice");
            if (h_shape(&h, a, err, errlen)) return -1;
        } else {
            return cli_set_err(err, errlen, "header: unexpected key '%s'", k);
        }
        if (!h_is(&h, ',')) {
            if (!h_is(&h, '}')) return cli_set_err(err, errlen, "header: expected ',' or '}'");
            break;
        }
    }
    h_ws(&h);
    if (h.pos != h.len) return cli_set_err(err, errlen, "header: text after the dict");
    if (!seen_descr || !seen_order || !seen_shape)
        return cli_set_err(err, errlen, "header: missing '%s'",
                       !seen_descr ? "descr" : !seen_order ? "fortran_order" : "shape");
    return 0;
}

/* ------------------------------------------------------------- reading */

int npy_read(const char *path, npy_array *a, char *err, size_t errlen)
{
    unsigned char pre[12];
    char *h = NULL;
    struct stat sb;
    memset(a, 0, sizeof *a);
    FILE *f = fopen(path, "rb");
    if (!f) return cli_set_err(err, errlen, "cannot open: %s", strerror(errno));
    if (fstat(fileno(f), &sb) || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return cli_set_err(err, errlen, "not a regular file");
    }
    uint64_t fsize = (uint64_t)sb.st_size;
    if (fread(pre, 1, 8, f) != 8 || memcmp(pre, "\x93NUMPY", 6)) {
        fclose(f);
        return cli_set_err(err, errlen, "not a .npy file (bad magic)");
    }
    unsigned major = pre[6], minor = pre[7];
    if (major < 1 || major > 3 || minor != 0) {
        fclose(f);
        return cli_set_err(err, errlen, ".npy format version %u.%u not supported (1.0, 2.0, 3.0)",
                       major, minor);
    }
    size_t lsize = major == 1 ? 2 : 4;
    if (fread(pre + 8, 1, lsize, f) != lsize) {
        fclose(f);
        return cli_set_err(err, errlen, "truncated header");
    }
    uint64_t hlen = major == 1 ? cli_le16(pre + 8) : cli_le32(pre + 8);
    uint64_t data_off = 8 + lsize + hlen;
    if (hlen > NPY_MAX_HEADER || data_off > fsize) {
        fclose(f);
        return cli_set_err(err, errlen, "truncated or oversized header (%llu bytes)",
                       (unsigned long long)hlen);
    }
    h = malloc(hlen + 1);
    if (!h) {
        fclose(f);
        return cli_set_err(err, errlen, "out of memory");
    }
    if (fread(h, 1, hlen, f) != hlen) {
        free(h);
        fclose(f);
        return cli_set_err(err, errlen, "truncated header");
    }
    h[hlen] = 0;
    if (memchr(h, 0, hlen)) {
        free(h);
        fclose(f);
        return cli_set_err(err, errlen, "header: NUL byte");
    }
    int rc = parse_header(h, hlen, a, err, errlen);
    free(h);
    if (rc) {
        fclose(f);
        return -1;
    }
    /* Element count and byte size, overflow-checked, must match the file. */
    size_t item = a->dtype == GEAR_F32 ? 4 : 2;
    uint64_t count = 1;
    for (int i = 0; i < a->ndim; i++) {
        uint64_t d = (uint64_t)a->shape[i];
        if (d && count > UINT64_MAX / d) {
            fclose(f);
            return cli_set_err(err, errlen, "shape too large");
        }
        count *= d;
    }
    if (count > (fsize - data_off) / item || count > SIZE_MAX / item) {
        fclose(f);
        return cli_set_err(err, errlen, "truncated: shape needs %llu bytes of data, file has %llu",
                       (unsigned long long)(count > UINT64_MAX / item ? UINT64_MAX : count * item),
                       (unsigned long long)(fsize - data_off));
    }
    if (count * item != fsize - data_off) {
        fclose(f);
        return cli_set_err(err, errlen, "%llu bytes after the data (file larger than its shape)",
                       (unsigned long long)(fsize - data_off - count * item));
    }
    size_t bytes = (size_t)(count * item);
    unsigned char *raw = malloc(bytes ? bytes : 1);
    if (!raw) {
        fclose(f);
        return cli_set_err(err, errlen, "out of memory (%zu bytes)", bytes);
    }
    if (fread(raw, 1, bytes, f) != bytes) {
        free(raw);
        fclose(f);
        return cli_set_err(err, errlen, "truncated data");
    }
    fclose(f);
    /* Little-endian on disk -> host order, in place. */
    for (size_t i = 0; i < count; i++) {
        if (item == 4) {
            uint32_t v = cli_le32(raw + 4 * i);
            memcpy(raw + 4 * i, &v, 4);
        } else {
            uint16_t v = cli_le16(raw + 2 * i);
            memcpy(raw + 2 * i, &v, 2);
        }
    }
    a->count = (size_t)count;
    a->data = raw;
    return 0;
}

void npy_free(npy_array *a)
{
    if (!a) return;
    free(a->data);
    a->data = NULL;
}

float *npy_to_f32(const npy_array *a)
{
    float *out = malloc((a->count ? a->count : 1) * sizeof *out);
    if (!out) return NULL;
    if (a->dtype == GEAR_F32) {
        memcpy(out, a->data, a->count * sizeof *out);
    } else {
        const uint16_t *h = a->data;
        for (size_t i = 0; i < a->count; i++) out[i] = cli_half_to_float(h[i]);
    }
    return out;
}

/* ------------------------------------------------------------- writing */

int npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape,
                  char *err, size_t errlen)
{
    char dict[256];
    size_t count = 1;
    int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (int i = 0; i < ndim; i++) {
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%lld%s", (long long)shape[i],
                      i + 1 < ndim ? ", " : ndim == 1 ? "," : ""); /* (5,) like Python */
        count *= (size_t)shape[i];
    }
    n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
    /* Pad with spaces so the data starts on a 64-byte boundary; end with '\n'. */
    size_t total = 10 + (size_t)n + 1;
    size_t pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)n + pad + 1;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                             (unsigned char)(hlen & 0xFF), (unsigned char)(hlen >> 8)};
    FILE *f = fopen(path, "wb");
    if (!f) return cli_set_err(err, errlen, "cannot create: %s", strerror(errno));
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(dict, 1, (size_t)n, f) == (size_t)n;
    char spaces[64];
    memset(spaces, ' ', sizeof spaces);
    ok = ok && fwrite(spaces, 1, pad, f) == pad && fputc('\n', f) != EOF;
    unsigned char buf[4096];
    for (size_t i = 0; ok && i < count; i += sizeof buf / 4) {
        size_t m = count - i < sizeof buf / 4 ? count - i : sizeof buf / 4;
        for (size_t j = 0; j < m; j++) { /* little-endian whatever the host */
            uint32_t v;
            memcpy(&v, &data[i + j], 4);
            for (int b = 0; b < 4; b++) buf[4 * j + (size_t)b] = (unsigned char)(v >> 8 * b);
        }
        ok = fwrite(buf, 4, m, f) == m;
    }
    int saved = errno;
    if (fclose(f) != 0 && ok) {
        ok = 0;
        saved = errno;
    }
    if (!ok) {
        remove(path);
        return cli_set_err(err, errlen, "write failed: %s", strerror(saved));
    }
    return 0;
}
