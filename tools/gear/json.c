/* json.c - strict JSON parser for untrusted headers, and a JSON-lines writer. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "json.h"

/* ------------------------------------------------------------- parser */

typedef struct parser {
    const char *s;
    size_t len, pos;
    char *err;
    size_t errlen;
} parser;

static int fail(parser *p, const char *fmt, ...)
{
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (p->err && p->errlen) snprintf(p->err, p->errlen, "JSON: %s at byte %zu", msg, p->pos);
    return -1;
}

static void skip_ws(parser *p)
{
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                               p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static int peek(const parser *p) { return p->pos < p->len ? (unsigned char)p->s[p->pos] : -1; }

static int hex4(parser *p, unsigned *out)
{
    unsigned v = 0;
    if (p->len - p->pos < 4) return fail(p, "truncated \\u escape");
    for (int i = 0; i < 4; i++) {
        int c = p->s[p->pos++];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return fail(p, "bad hex digit in \\u escape");
    }
    *out = v;
    return 0;
}

/* Appends code point cp as UTF-8 (the output never outgrows the input:
 * an escape of 6 or 12 bytes yields at most 4). */
static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Parses a string literal at p->pos (the opening quote) into a new buffer. */
static int parse_string(parser *p, char **out)
{
    size_t start = ++p->pos, end = start;
    /* First pass: find the closing quote, so the buffer size is known. */
    while (end < p->len && p->s[end] != '"') end += p->s[end] == '\\' ? 2 : 1;
    if (end >= p->len) return fail(p, "unterminated string");
    char *o = malloc(end - start + 1);
    if (!o) return fail(p, "out of memory");
    size_t n = 0;
    while (p->pos < end) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c < 0x20) { free(o); return fail(p, "control character in string"); }
        if (c != '\\') { o[n++] = (char)c; p->pos++; continue; }
        p->pos++;
        char e = p->s[p->pos++];
        unsigned cp;
        switch (e) {
        case '"': o[n++] = '"'; break;
        case '\\': o[n++] = '\\'; break;
        case '/': o[n++] = '/'; break;
        case 'b': o[n++] = '\b'; break;
        case 'f': o[n++] = '\f'; break;
        case 'n': o[n++] = '\n'; break;
        case 'r': o[n++] = '\r'; break;
        case 't': o[n++] = '\t'; break;
        case 'u':
            if (hex4(p, &cp)) { free(o); return -1; }
            if (cp >= 0xD800 && cp < 0xDC00) { /* high surrogate: a low one must follow */
                unsigned lo;
                if (p->pos + 2 > end || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
                    free(o);
                    return fail(p, "unpaired surrogate in \\u escape");
                }
                p->pos += 2;
                if (hex4(p, &lo)) { free(o); return -1; }
                if (lo < 0xDC00 || lo > 0xDFFF) {
                    free(o);
                    return fail(p, "unpaired surrogate in \\u escape");
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                free(o);
                return fail(p, "unpaired surrogate in \\u escape");
            }
            if (cp == 0) { free(o); return fail(p, "\\u0000 in string"); }
            n += put_utf8(o + n, cp);
            break;
        default: free(o); return fail(p, "bad escape '\\%c'", e);
        }
        if (p->pos > end) { free(o); return fail(p, "bad escape at end of string"); }
    }
    o[n] = 0;
    p->pos = end + 1;
    *out = o;
    return 0;
}

static int is_digit(int c) { return c >= '0' && c <= '9'; }

/* Numbers follow the JSON grammar exactly; a plain non-negative integer is
 * also kept exactly as u64 (overflow-checked) for sizes and offsets. */
static int parse_number(parser *p, json_value *v)
{
    size_t start = p->pos;
    int neg = 0, frac = 0;
    if (peek(p) == '-') { neg = 1; p->pos++; }
    if (peek(p) == '0') p->pos++;
    else if (is_digit(peek(p))) while (is_digit(peek(p))) p->pos++;
    else return fail(p, "bad number");
    size_t int_end = p->pos;
    if (peek(p) == '.') {
        frac = 1;
        p->pos++;
        if (!is_digit(peek(p))) return fail(p, "bad number");
        while (is_digit(peek(p))) p->pos++;
    }
    if (peek(p) == 'e' || peek(p) == 'E') {
        frac = 1;
        p->pos++;
        if (peek(p) == '+' || peek(p) == '-') p->pos++;
        if (!is_digit(peek(p))) return fail(p, "bad number");
        while (is_digit(peek(p))) p->pos++;
    }
    size_t n = p->pos - start;
    char buf[64];
    if (n >= sizeof buf) return fail(p, "number too long");
    memcpy(buf, p->s + start, n);
    buf[n] = 0;
    v->type = JSON_NUMBER;
    v->number = strtod(buf, NULL);
    if (!neg && !frac) {
        uint64_t u = 0;
        int ok = 1;
        for (size_t i = start; i < int_end; i++) {
            unsigned d = (unsigned)(p->s[i] - '0');
            if (u > (UINT64_MAX - d) / 10) { ok = 0; break; }
            u = u * 10 + d;
        }
        v->is_uint = ok;
        v->uint = ok ? u : 0;
    }
    return 0;
}

static int parse_value(parser *p, json_value *v, int depth);

static int match_word(parser *p, const char *w)
{
    size_t n = strlen(w);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, w, n)) return fail(p, "unexpected character");
    p->pos += n;
    return 0;
}

/* Arrays and objects: items grow by doubling. */
static int push_item(parser *p, json_value *v, size_t *cap, int with_key)
{
    if (v->n < *cap) return 0;
    size_t nc = *cap ? *cap * 2 : 4;
    json_value *it = realloc(v->items, nc * sizeof *it);
    if (!it) return fail(p, "out of memory");
    v->items = it;
    if (with_key) {
        char **k = realloc(v->keys, nc * sizeof *k);
        if (!k) return fail(p, "out of memory");
        v->keys = k;
    }
    *cap = nc;
    return 0;
}

static int parse_container(parser *p, json_value *v, int depth, int is_obj)
{
    size_t cap = 0;
    char close = is_obj ? '}' : ']';
    v->type = is_obj ? JSON_OBJECT : JSON_ARRAY;
    p->pos++;
    skip_ws(p);
    if (peek(p) == close) { p->pos++; return 0; }
    for (;;) {
        if (push_item(p, v, &cap, is_obj)) return -1;
        json_value *it = &v->items[v->n];
        memset(it, 0, sizeof *it);
        if (is_obj) {
            skip_ws(p);
            if (peek(p) != '"') return fail(p, "expected a string key");
            if (parse_string(p, &v->keys[v->n])) return -1;
            skip_ws(p);
            if (peek(p) != ':') { free(v->keys[v->n]); return fail(p, "expected ':'"); }
            p->pos++;
        }
        v->n++; /* counted now, so json_free releases it even if parsing fails */
        if (parse_value(p, it, depth + 1)) return -1;
        skip_ws(p);
        if (peek(p) == ',') { p->pos++; continue; }
        if (peek(p) == close) { p->pos++; return 0; }
        return fail(p, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static int parse_value(parser *p, json_value *v, int depth)
{
    if (depth > JSON_MAX_DEPTH) return fail(p, "nesting deeper than %d", JSON_MAX_DEPTH);
    skip_ws(p);
    switch (peek(p)) {
    case '{': return parse_container(p, v, depth, 1);
    case '[': return parse_container(p, v, depth, 0);
    case '"': v->type = JSON_STRING; return parse_string(p, &v->str);
    case 't': v->type = JSON_BOOL; v->boolean = 1; return match_word(p, "true");
    case 'f': v->type = JSON_BOOL; return match_word(p, "false");
    case 'n': v->type = JSON_NULL; return match_word(p, "null");
    case -1: return fail(p, "unexpected end of input");
    default: return parse_number(p, v);
    }
}

static void free_inner(json_value *v)
{
    for (size_t i = 0; i < v->n; i++) {
        free_inner(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->str);
}

void json_free(json_value *v)
{
    if (!v) return;
    free_inner(v);
    free(v);
}

int json_parse(const char *text, size_t len, json_value **out, char *err, size_t errlen)
{
    parser p = {text, len, 0, err, errlen};
    json_value *v = calloc(1, sizeof *v);
    *out = NULL;
    if (!v) return fail(&p, "out of memory");
    if (parse_value(&p, v, 0)) {
        json_free(v);
        return -1;
    }
    skip_ws(&p);
    if (p.pos != len) {
        json_free(v);
        return fail(&p, "trailing characters after the value");
    }
    *out = v;
    return 0;
}

const json_value *json_get(const json_value *obj, const char *key)
{
    if (!obj || obj->type != JSON_OBJECT) return NULL;
    for (size_t i = 0; i < obj->n; i++)
        if (!strcmp(obj->keys[i], key)) return &obj->items[i];
    return NULL;
}

/* ------------------------------------------------------------- writer */

void json_write_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') fprintf(f, "\\%c", *c);
        else if (*c == '\n') fputs("\\n", f);
        else if (*c == '\t') fputs("\\t", f);
        else if (*c < 0x20) fprintf(f, "\\u%04x", *c);
        else fputc(*c, f);
    }
    fputc('"', f);
}

static void key(json_out *j, const char *k)
{
    if (!j->first[j->depth]) fputc(',', j->f);
    j->first[j->depth] = 0;
    json_write_string(j->f, k);
    fputc(':', j->f);
}

void jo_begin(json_out *j, FILE *f)
{
    j->f = f;
    j->depth = 0;
    j->first[0] = 1;
    fputc('{', f);
}

void jo_obj(json_out *j, const char *k)
{
    key(j, k);
    fputc('{', j->f);
    if (j->depth + 1 < (int)(sizeof j->first / sizeof j->first[0])) j->depth++;
    j->first[j->depth] = 1;
}

void jo_end(json_out *j)
{
    fputc('}', j->f);
    if (j->depth == 0) fputc('\n', j->f);
    else j->depth--;
}

void jo_str(json_out *j, const char *k, const char *v)
{
    key(j, k);
    if (v) json_write_string(j->f, v);
    else fputs("null", j->f);
}

void jo_int(json_out *j, const char *k, long long v)
{
    key(j, k);
    fprintf(j->f, "%lld", v);
}

void jo_uint(json_out *j, const char *k, unsigned long long v)
{
    key(j, k);
    fprintf(j->f, "%llu", v);
}

void jo_num(json_out *j, const char *k, double v)
{
    key(j, k);
    if (isfinite(v)) fprintf(j->f, "%.10g", v);
    else fputs("null", j->f);
}

void jo_bool(json_out *j, const char *k, int v)
{
    key(j, k);
    fputs(v ? "true" : "false", j->f);
}
