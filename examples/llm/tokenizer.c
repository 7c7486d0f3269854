/* tokenizer.c - see tokenizer.h. */
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "unicode_ranges.h"
#include "util.h"

typedef struct merge_slot {
    uint64_t key; /* (left id + 1) << 32 | right id; 0 = empty */
    int32_t rank, id;
} merge_slot;

struct llm_tokenizer {
    int n_vocab;
    char **text;   /* NUL-terminated copies of the vocabulary strings */
    uint32_t *len; /* their lengths */
    int32_t *type;
    int32_t *str_slots; /* open-addressing table: id + 1, 0 = empty */
    size_t str_cap;
    merge_slot *merges;
    size_t merge_cap;
    int byte_id[256];       /* token of each raw byte (byte-level alphabet) */
    int cp_byte[512];       /* byte-level code point -> byte, -1 if none */
    int32_t *special;       /* control/user-defined ids, longest text first */
    int n_special;
    int bos, eos, add_bos;
    int split_digits;       /* pre-tokenizer isolates every \p{N} */
};

/* ------------------------------------------------------------ hashing */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static int find_str(const llm_tokenizer *t, const char *s, size_t n)
{
    size_t mask = t->str_cap - 1, i = (size_t)hash_bytes(s, n) & mask;
    for (;; i = (i + 1) & mask) {
        int32_t v = t->str_slots[i];
        if (!v) return -1;
        if (t->len[v - 1] == n && !memcmp(t->text[v - 1], s, n)) return v - 1;
    }
}

static const merge_slot *find_merge(const llm_tokenizer *t, int a, int b)
{
    uint64_t key = ((uint64_t)(uint32_t)a + 1) << 32 | (uint32_t)b;
    size_t mask = t->merge_cap - 1, i = (size_t)hash_u64(key) & mask;
    for (;; i = (i + 1) & mask) {
        if (!t->merges[i].key) return NULL;
        if (t->merges[i].key == key) return &t->merges[i];
    }
}

/* ------------------------------------------------------------ unicode */

static int in_ranges(const unsigned (*r)[2], size_t n, unsigned cp)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < r[mid][0]) hi = mid;
        else if (cp > r[mid][1]) lo = mid + 1;
        else return 1;
    }
    return 0;
}

static int is_letter(unsigned cp)
{
    if (cp < 128) return (cp | 32) - 'a' < 26;
    return in_ranges(letter_ranges, sizeof letter_ranges / sizeof letter_ranges[0], cp);
}

static int is_number(unsigned cp)
{
    if (cp < 128) return cp - '0' < 10;
    return in_ranges(number_ranges, sizeof number_ranges / sizeof number_ranges[0], cp);
}

static int is_space(unsigned cp) /* Unicode White_Space */
{
    return (cp >= 9 && cp <= 13) || cp == 32 || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
           cp == 0x205f || cp == 0x3000;
}

/* Decode one UTF-8 sequence at s[0..n): its code point and length.
 * Malformed input gives U+FFFD for one byte (the byte itself is still what
 * byte-level BPE encodes). */
static unsigned utf8_next(const unsigned char *s, size_t n, size_t *len)
{
    unsigned c = s[0];
    *len = 1;
    if (c < 0x80) return c;
    int extra = c >= 0xf0 && c < 0xf5 ? 3 : c >= 0xe0 ? 2 : c >= 0xc2 && c < 0xe0 ? 1 : -1;
    if (extra < 0 || (size_t)extra >= n) return 0xfffd;
    unsigned cp = c & (0x3f >> extra);
    for (int i = 1; i <= extra; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0xfffd;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((extra == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (extra == 3 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0xfffd;
    *len = (size_t)extra + 1;
    return cp;
}

static size_t utf8_put(unsigned cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    out[0] = (char)(0xe0 | cp >> 12);
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
}

/* GPT-2's byte -> printable code point map. */
static void byte_level_map(unsigned map[256])
{
    int n = 0;
    for (unsigned b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        map[b] = printable ? b : 256 + (unsigned)n++;
    }
}

/* ------------------------------------------------------------ loading */

void llm_tokenizer_free(llm_tokenizer *t)
{
    if (!t) return;
    if (t->text)
        for (int i = 0; i < t->n_vocab; i++) free(t->text[i]);
    free(t->text);
    free(t->len);
    free(t->type);
    free(t->str_slots);
    free(t->merges);
    free(t->special);
    free(t);
}

static int opt_token_id(const gguf_file *f, const char *key, int n_vocab, int *out)
{
    uint32_t v;
    *out = -1;
    if (!gguf_find(f, key)) return 0;
    if (gguf_get_u32(f, key, &v)) return -1;
    if (v >= (uint32_t)n_vocab) return llm_fail("%s = %u is not a token id", key, v);
    *out = (int)v;
    return 0;
}

typedef struct special_entry {
    uint32_t len;
    int32_t id;
} special_entry;

static int cmp_special(const void *a, const void *b) /* longest first, then by id */
{
    const special_entry *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int load_vocab(llm_tokenizer *t, const gguf_file *f)
{
    const gguf_kv *kv = gguf_find(f, "tokenizer.ggml.tokens");
    if (!kv) return llm_fail("GGUF has no tokenizer.ggml.tokens");
    if (kv->type != GGUF_ARRAY || kv->arr_type != GGUF_STRING || kv->arr_n == 0 ||
        kv->arr_n > (uint64_t)INT32_MAX / 4)
        return llm_fail("tokenizer.ggml.tokens is not a usable string array");
    int n = (int)kv->arr_n;
    gguf_str *strs = llm_alloc((size_t)n, sizeof *strs, "vocabulary");
    if (!strs) return -1;
    if (gguf_str_array(kv, strs)) {
        free(strs);
        return -1;
    }
    t->n_vocab = n;
    t->text = calloc((size_t)n, sizeof *t->text);
    t->len = calloc((size_t)n, sizeof *t->len);
    t->type = calloc((size_t)n, sizeof *t->type);
    t->str_cap = 1;
    while (t->str_cap < (size_t)n * 2) t->str_cap <<= 1;
    t->str_slots = calloc(t->str_cap, sizeof *t->str_slots);
    if (!t->text || !t->len || !t->type || !t->str_slots) {
        free(strs);
        return llm_fail("out of memory loading the vocabulary");
    }
    for (int i = 0; i < n; i++) {
        if (strs[i].n > 4096) {
            unsigned long long len = (unsigned long long)strs[i].n;
            free(strs);
            return llm_fail("token %d is %llu bytes long", i, len);
        }
        if (!(t->text[i] = malloc(strs[i].n + 1))) {
            free(strs);
            return llm_fail("out of memory loading the vocabulary");
        }
        memcpy(t->text[i], strs[i].s, strs[i].n);
        t->text[i][strs[i].n] = '\0';
        t->len[i] = (uint32_t)strs[i].n;
        t->type[i] = LLM_TOKEN_NORMAL;
        if (find_str(t, t->text[i], t->len[i]) >= 0) continue; /* duplicate: first wins */
        size_t mask = t->str_cap - 1, s = (size_t)hash_bytes(t->text[i], t->len[i]) & mask;
        while (t->str_slots[s]) s = (s + 1) & mask;
        t->str_slots[s] = i + 1;
    }
    free(strs);
    const gguf_kv *tk = gguf_find(f, "tokenizer.ggml.token_type");
    if (tk) {
        if (tk->type != GGUF_ARRAY || tk->arr_n != (uint64_t)n)
            return llm_fail("tokenizer.ggml.token_type does not match the vocabulary");
        for (int i = 0; i < n; i++) {
            int64_t v;
            if (gguf_arr_int(tk, (uint64_t)i, &v)) return -1;
            t->type[i] = (int32_t)(v >= 1 && v <= 6 ? v : LLM_TOKEN_NORMAL);
        }
    }
    return 0;
}

static int load_merges(llm_tokenizer *t, const gguf_file *f)
{
    const gguf_kv *kv = gguf_find(f, "tokenizer.ggml.merges");
    if (!kv) return llm_fail("GGUF has no tokenizer.ggml.merges (a BPE vocabulary needs them)");
    if (kv->type != GGUF_ARRAY || kv->arr_type != GGUF_STRING || kv->arr_n > (uint64_t)INT32_MAX / 4)
        return llm_fail("tokenizer.ggml.merges is not a usable string array");
    size_t n = (size_t)kv->arr_n;
    gguf_str *strs = llm_alloc(n ? n : 1, sizeof *strs, "merges");
    if (!strs) return -1;
    if (gguf_str_array(kv, strs)) {
        free(strs);
        return -1;
    }
    t->merge_cap = 1;
    while (t->merge_cap < n * 2 + 2) t->merge_cap <<= 1;
    t->merges = calloc(t->merge_cap, sizeof *t->merges);
    char *buf = malloc(8192 + 1);
    if (!t->merges || !buf) {
        free(strs);
        free(buf);
        return llm_fail("out of memory loading merges");
    }
    for (size_t r = 0; r < n; r++) {
        const char *s = strs[r].s, *sp = memchr(s, ' ', strs[r].n);
        if (!sp || strs[r].n > 8192) continue; /* malformed merge: ignored, as llama.cpp does not */
        size_t la = (size_t)(sp - s), lb = strs[r].n - la - 1;
        int a = find_str(t, s, la), b = find_str(t, sp + 1, lb);
        memcpy(buf, s, la);
        memcpy(buf + la, sp + 1, lb);
        int ab = find_str(t, buf, la + lb);
        if (a < 0 || b < 0 || ab < 0) continue;
        uint64_t key = ((uint64_t)(uint32_t)a + 1) << 32 | (uint32_t)b;
        size_t mask = t->merge_cap - 1, i = (size_t)hash_u64(key) & mask;
        while (t->merges[i].key && t->merges[i].key != key) i = (i + 1) & mask;
        if (t->merges[i].key) continue; /* duplicate pair: the first (lowest rank) wins */
        t->merges[i].key = key;
        t->merges[i].rank = (int32_t)r;
        t->merges[i].id = ab;
    }
    free(buf);
    free(strs);
    return 0;
}

int llm_tokenizer_load(const gguf_file *f, llm_tokenizer **out)
{
    *out = NULL;
    gguf_str model, pre = {"default", 7};
    if (gguf_get_str(f, "tokenizer.ggml.model", &model)) return -1;
    if (!gguf_str_eq(model, "gpt2"))
        return llm_fail("tokenizer model '%.*s' not supported (only byte-level BPE, 'gpt2')",
                        (int)model.n, model.s);
    if (gguf_find(f, "tokenizer.ggml.pre") && gguf_get_str(f, "tokenizer.ggml.pre", &pre)) return -1;
    static const char *const digit_split[] = {"smollm", "starcoder", "refact", "command-r",
                                              "codeshell", "exaone", "minerva"};
    int split = -1;
    for (size_t i = 0; i < sizeof digit_split / sizeof digit_split[0]; i++)
        if (gguf_str_eq(pre, digit_split[i])) split = 1;
    if (gguf_str_eq(pre, "gpt2") || gguf_str_eq(pre, "default")) split = 0;
    if (split < 0)
        return llm_fail("pre-tokenizer '%.*s' not supported (smollm, starcoder, gpt2, default are)",
                        (int)pre.n, pre.s);
    llm_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return llm_fail("out of memory");
    t->split_digits = split;
    if (load_vocab(t, f) || load_merges(t, f)) goto fail;
    unsigned map[256];
    byte_level_map(map);
    for (int i = 0; i < 512; i++) t->cp_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        char s[4];
        size_t n = utf8_put(map[b], s);
        t->byte_id[b] = find_str(t, s, n);
        t->cp_byte[map[b]] = b;
    }
    if (opt_token_id(f, "tokenizer.ggml.bos_token_id", t->n_vocab, &t->bos) ||
        opt_token_id(f, "tokenizer.ggml.eos_token_id", t->n_vocab, &t->eos))
        goto fail;
    t->add_bos = 0;
    if (gguf_find(f, "tokenizer.ggml.add_bos_token") &&
        gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &t->add_bos))
        goto fail;
    for (int i = 0; i < t->n_vocab; i++)
        if ((t->type[i] == LLM_TOKEN_CONTROL || t->type[i] == LLM_TOKEN_USER_DEFINED) && t->len[i])
            t->n_special++;
    t->special = malloc(sizeof *t->special * (size_t)(t->n_special + 1));
    special_entry *se = malloc(sizeof *se * (size_t)(t->n_special + 1));
    if (!t->special || !se) {
        free(se);
        llm_fail("out of memory");
        goto fail;
    }
    t->n_special = 0;
    for (int i = 0; i < t->n_vocab; i++)
        if ((t->type[i] == LLM_TOKEN_CONTROL || t->type[i] == LLM_TOKEN_USER_DEFINED) && t->len[i])
            se[t->n_special++] = (special_entry){t->len[i], i};
    qsort(se, (size_t)t->n_special, sizeof *se, cmp_special);
    for (int k = 0; k < t->n_special; k++) t->special[k] = se[k].id;
    free(se);
    *out = t;
    return 0;
fail:
    llm_tokenizer_free(t);
    return -1;
}

int llm_tokenizer_n_vocab(const llm_tokenizer *t) { return t->n_vocab; }
int llm_tokenizer_bos(const llm_tokenizer *t) { return t->bos; }
int llm_tokenizer_eos(const llm_tokenizer *t) { return t->eos; }
int llm_tokenizer_add_bos(const llm_tokenizer *t) { return t->add_bos; }
int llm_tokenizer_find(const llm_tokenizer *t, const char *s) { return find_str(t, s, strlen(s)); }
int llm_tokenizer_type(const llm_tokenizer *t, int id)
{
    return id >= 0 && id < t->n_vocab ? t->type[id] : -1;
}

/* ------------------------------------------------------------ encoding */

typedef struct idvec {
    int32_t *v;
    size_t n, cap;
} idvec;

static int push(idvec *o, int32_t id)
{
    if (o->n == o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 256;
        int32_t *nv = nc > SIZE_MAX / sizeof *nv ? NULL : realloc(o->v, nc * sizeof *nv);
        if (!nv) return llm_fail("out of memory tokenizing");
        o->v = nv;
        o->cap = nc;
    }
    o->v[o->n++] = id;
    return 0;
}

/* Byte-level BPE of one pre-token: start from one symbol per byte and merge
 * the adjacent pair of lowest rank until none is left. */
static int bpe_word(const llm_tokenizer *t, const unsigned char *s, size_t n, int32_t *sym, idvec *o)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (t->byte_id[s[i]] < 0) return llm_fail("byte 0x%02x has no token in the vocabulary", s[i]);
        sym[m++] = t->byte_id[s[i]];
    }
    while (m > 1) {
        int32_t best = INT32_MAX, id = -1;
        size_t at = 0;
        for (size_t i = 0; i + 1 < m; i++) {
            const merge_slot *ms = find_merge(t, sym[i], sym[i + 1]);
            if (ms && ms->rank < best) {
                best = ms->rank;
                id = ms->id;
                at = i;
            }
        }
        if (id < 0) break;
        sym[at] = id;
        memmove(sym + at + 1, sym + at + 2, (m - at - 2) * sizeof *sym);
        m--;
    }
    for (size_t i = 0; i < m; i++)
        if (push(o, sym[i])) return -1;
    return 0;
}

/* The GPT-2 split of code points cp[0..n) (byte offsets off[0..n], with
 * off[n] the end); each piece goes to bpe_word. */
static int gpt2_split(const llm_tokenizer *t, const unsigned char *s, const unsigned *cp,
                      const size_t *off, size_t n, int32_t *sym, idvec *o)
{
    size_t pos = 0;
    while (pos < n) {
        unsigned c = cp[pos], c1 = pos + 1 < n ? cp[pos + 1] : 0, c2 = pos + 2 < n ? cp[pos + 2] : 0;
        size_t end = pos + 1;
        if (c == '\'' && pos + 1 < n &&
            (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd')) {
            end = pos + 2;
        } else if (c == '\'' && pos + 2 < n &&
                   ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))) {
            end = pos + 3;
        } else {
            size_t q = c == ' ' && pos + 1 < n ? pos + 1 : pos; /* optional leading space */
            unsigned d = cp[q];
            if (is_letter(d)) {
                for (end = q + 1; end < n && is_letter(cp[end]); end++) {}
            } else if (is_number(d)) {
                for (end = q + 1; end < n && is_number(cp[end]); end++) {}
            } else if (!is_space(d)) {
                for (end = q + 1; end < n && !is_space(cp[end]) && !is_letter(cp[end]) &&
                                  !is_number(cp[end]); end++) {}
            } else { /* \s+(?!\S) | \s+ */
                for (end = pos + 1; end < n && is_space(cp[end]); end++) {}
                if (end < n && end - pos > 1) end--; /* leave one space to prefix the next word */
            }
        }
        if (bpe_word(t, s + off[pos], off[end] - off[pos], sym, o)) return -1;
        pos = end;
    }
    return 0;
}

/* Encode plain text (no special tokens). */
static int encode_plain(const llm_tokenizer *t, const char *text, size_t len, idvec *o)
{
    if (!len) return 0;
    const unsigned char *s = (const unsigned char *)text;
    unsigned *cp = llm_alloc(len, sizeof *cp, "tokenizer");
    size_t *off = llm_alloc(len + 1, sizeof *off, "tokenizer");
    int32_t *sym = llm_alloc(len, sizeof *sym, "tokenizer");
    int rc = -1;
    if (!cp || !off || !sym) goto done;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        size_t l;
        off[n] = i;
        cp[n++] = utf8_next(s + i, len - i, &l);
        i += l;
    }
    off[n] = len;
    if (!t->split_digits) {
        rc = gpt2_split(t, s, cp, off, n, sym, o);
        goto done;
    }
    for (size_t a = 0; a < n;) { /* \p{N} isolated, the runs between split GPT-2 style */
        if (is_number(cp[a])) {
            if (bpe_word(t, s + off[a], off[a + 1] - off[a], sym, o)) goto done;
            a++;
            continue;
        }
        size_t b = a;
        while (b < n && !is_number(cp[b])) b++;
        if (gpt2_split(t, s, cp + a, off + a, b - a, sym, o)) goto done;
        a = b;
    }
    rc = 0;
done:
    free(cp);
    free(off);
    free(sym);
    return rc;
}

int llm_tokenize(const llm_tokenizer *t, const char *text, size_t len, int parse_special,
                 int32_t **ids, size_t *n)
{
    idvec o = {NULL, 0, 0};
    *ids = NULL;
    *n = 0;
    size_t start = 0, i = 0;
    while (parse_special && i < len) {
        int hit = -1;
        for (int k = 0; k < t->n_special && hit < 0; k++) { /* longest match first */
            int id = t->special[k];
            if (t->len[id] <= len - i && !memcmp(text + i, t->text[id], t->len[id])) hit = id;
        }
        if (hit < 0) {
            i++;
            continue;
        }
        if (encode_plain(t, text + start, i - start, &o) || push(&o, hit)) {
            free(o.v);
            return -1;
        }
        i += t->len[hit];
        start = i;
    }
    if (encode_plain(t, text + start, len - start, &o)) {
        free(o.v);
        return -1;
    }
    if (!o.v && !(o.v = malloc(sizeof *o.v))) return llm_fail("out of memory");
    *ids = o.v;
    *n = o.n;
    return 0;
}

int llm_token_bytes(const llm_tokenizer *t, int id, char *buf, size_t cap)
{
    if (id < 0 || id >= t->n_vocab) return -1;
    const unsigned char *s = (const unsigned char *)t->text[id];
    size_t n = t->len[id], w = 0;
    if (t->type[id] == LLM_TOKEN_CONTROL || t->type[id] == LLM_TOKEN_USER_DEFINED) {
        w = n < cap ? n : cap;
        memcpy(buf, s, w);
        return (int)w;
    }
    for (size_t i = 0; i < n && w < cap;) {
        size_t l;
        unsigned cp = utf8_next(s + i, n - i, &l);
        int b = cp < 512 ? t->cp_byte[cp] : -1;
        if (b >= 0) {
            buf[w++] = (char)b;
        } else { /* not byte-level: copy the UTF-8 as is */
            for (size_t k = 0; k < l && w < cap; k++) buf[w++] = (char)s[i + k];
        }
        i += l;
    }
    return (int)w;
}
