/*
 * gear-llm - run a GGUF Llama-family model (first target: SmolLM2-135M)
 * with its KV cache in libgear, and measure what compression costs.
 *
 *   gear-llm info      -m MODEL
 *   gear-llm tokenize  -m MODEL (-p TEXT | --text FILE) [--special]
 *   gear-llm generate  -m MODEL -p PROMPT [--kv PRESET] [-n N] [--chat] [--temp T --top-k K --seed S]
 *   gear-llm ppl       -m MODEL --text FILE --kv LIST [--ctx N] [--skip N] [--mode decode|prefill]
 *                      [--serial] [--json FILE]
 *   gear-llm logits    -m MODEL (-p TEXT | --text FILE) --out FILE [--ctx N] [--kv PRESET] [--mode M]
 *   gear-llm dump-kv   -m MODEL --text FILE --out FILE [--ctx N] [--skip N] [--layers 0,9,19,29|all]
 *   gear-llm kv-error  -m MODEL --text FILE --kv LIST [--ctx N] [--skip N]
 *
 * MODEL defaults to $GEAR_LLM_MODEL (scripts/fetch_model.sh prints a path).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "gear.h"
#include "gguf.h"
#include "model.h"
#include "safetensors.h"
#include "tokenizer.h"
#include "util.h"

#define MAX_LANES 16

typedef struct opts {
    const char *cmd, *model, *backend, *text, *prompt, *kv, *out, *layers, *mode, *json;
    int ctx, n_predict, threads, chat, serial, skip, special, top_k;
    float temp;
    unsigned long long seed;
} opts;

typedef struct runner {
    gguf_file file;
    llm_model *model;
    llm_tokenizer *tok;
    gear_context *gctx;
} runner;

static void usage(FILE *f)
{
    fputs("usage: gear-llm COMMAND [options]\n"
          "commands:\n"
          "  info       model facts and, per preset, bits per entry and KV bytes\n"
          "  tokenize   print the token ids of -p TEXT or --text FILE\n"
          "  generate   complete -p PROMPT (greedy unless --temp > 0)\n"
          "  ppl        perplexity over --text FILE, and KL / top-1 against an fp16 cache\n"
          "  logits     write token ids and logits to --out FILE (safetensors)\n"
          "  dump-kv    write real K/V of some layers to --out FILE (safetensors, F16)\n"
          "  kv-error   per-layer relative error of K and V under each preset\n"
          "options:\n"
          "  -m, --model PATH     GGUF file (default $GEAR_LLM_MODEL)\n"
          "  --backend NAME       libgear backend (default auto)\n"
          "  --threads N          OpenMP threads\n"
          "  --kv PRESET[,...]    libgear presets (fp16 kivi2 kivi4 kcvt4 gear2 gearl2 gear4 gearl4)\n"
          "  --ctx N              tokens to evaluate / cache capacity (default 512)\n"
          "  --skip N             skip the first N tokens of --text\n"
          "  --mode decode|prefill  decode: one token at a time through the streaming buffer\n"
          "                       (default); prefill: the whole window in one append\n"
          "  --serial             ppl: run each preset alone (honest tokens/s) instead of in lockstep\n"
          "  --json FILE          ppl: append one JSON line per preset\n"
          "  -p, --prompt TEXT    --text FILE   -n N (tokens to generate, default 64)\n"
          "  --chat               wrap the prompt in the model's chat template\n"
          "  --special            parse special tokens written in the text\n"
          "  --temp T --top-k K --seed S   sampling (default greedy)\n"
          "  --layers LIST        dump-kv layers (default first, two middle, last)\n"
          "  --out FILE\n",
          f);
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return llm_fail("'%s' is not an integer in %d..%d", s, lo, hi);
    *out = (int)v;
    return 0;
}

static int parse_args(int argc, char **argv, opts *o)
{
    memset(o, 0, sizeof *o);
    o->backend = "auto";
    o->mode = "decode";
    o->ctx = 512;
    o->n_predict = 64;
    o->top_k = 40;
    o->model = getenv("GEAR_LLM_MODEL");
    if (argc < 2) return llm_fail("no command");
    o->cmd = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (!strcmp(a, name))
#define NEED() do { if (!v) return llm_fail("%s needs a value", a); i++; } while (0)
        if (ARG("-m") || ARG("--model")) { NEED(); o->model = v; }
        else if (ARG("--backend")) { NEED(); o->backend = v; }
        else if (ARG("--text")) { NEED(); o->text = v; }
        else if (ARG("-p") || ARG("--prompt")) { NEED(); o->prompt = v; }
        else if (ARG("--kv")) { NEED(); o->kv = v; }
        else if (ARG("--out") || ARG("-o")) { NEED(); o->out = v; }
        else if (ARG("--layers")) { NEED(); o->layers = v; }
        else if (ARG("--mode")) { NEED(); o->mode = v; }
        else if (ARG("--json")) { NEED(); o->json = v; }
        else if (ARG("--ctx")) { NEED(); if (parse_int(v, 2, 1 << 20, &o->ctx)) return -1; }
        else if (ARG("--skip")) { NEED(); if (parse_int(v, 0, 1 << 30, &o->skip)) return -1; }
        else if (ARG("-n")) { NEED(); if (parse_int(v, 0, 1 << 20, &o->n_predict)) return -1; }
        else if (ARG("--threads")) { NEED(); if (parse_int(v, 1, 1024, &o->threads)) return -1; }
        else if (ARG("--top-k")) { NEED(); if (parse_int(v, 1, 1 << 20, &o->top_k)) return -1; }
        else if (ARG("--temp")) {
            NEED();
            char *end;
            o->temp = strtof(v, &end);
            if (!*v || *end || !(o->temp >= 0.0f && o->temp < 100.0f)) return llm_fail("bad --temp '%s'", v);
        }
        else if (ARG("--seed")) {
            NEED();
            char *end;
            o->seed = strtoull(v, &end, 10);
            if (!*v || *end) return llm_fail("bad --seed '%s'", v);
        }
        else if (ARG("--chat")) o->chat = 1;
        else if (ARG("--serial")) o->serial = 1;
        else if (ARG("--special")) o->special = 1;
        else if (ARG("-h") || ARG("--help")) { usage(stdout); exit(0); }
        else return llm_fail("unknown option '%s'", a);
#undef ARG
#undef NEED
    }
    if (strcmp(o->mode, "decode") && strcmp(o->mode, "prefill"))
        return llm_fail("--mode must be decode or prefill");
    return 0;
}

static void runner_close(runner *r);

static int runner_open(runner *r, const opts *o)
{
    memset(r, 0, sizeof *r);
    if (!o->model) return llm_fail("no model: pass -m PATH or set GEAR_LLM_MODEL (scripts/fetch_model.sh prints one)");
    if (gguf_open(o->model, &r->file) || llm_model_load(&r->file, &r->model) || llm_tokenizer_load(&r->file, &r->tok))
        goto fail;
    if (llm_tokenizer_n_vocab(r->tok) != r->model->hp.n_vocab) {
        llm_fail("tokenizer has %d tokens, the embedding %d", llm_tokenizer_n_vocab(r->tok), r->model->hp.n_vocab);
        goto fail;
    }
    gear_context_params p;
    gear_context_params_init(&p);
    p.backend = o->backend;
    p.n_threads = o->threads;
    gear_status st = gear_context_create(&p, &r->gctx);
    if (st) {
        llm_fail("libgear context (%s): %s: %s", o->backend, gear_status_string(st), gear_last_error_message());
        goto fail;
    }
    return 0;
fail:
    runner_close(r);
    return -1;
}

static void runner_close(runner *r)
{
    gear_context_free(r->gctx);
    llm_tokenizer_free(r->tok);
    llm_model_free(r->model);
    gguf_close(&r->file);
}

/* Split a comma-separated list of cache specs; fp16 first when with_base. */
static int parse_presets(const char *list, int with_base, const llm_hparams *hp, char names[MAX_LANES][64], int *n)
{
    *n = 0;
    if (with_base) strcpy(names[(*n)++], "fp16");
    if (!list) return with_base ? 0 : llm_fail("--kv PRESET is required");
    const char *p = list;
    while (*p) {
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= 64) return llm_fail("bad preset list '%s'", list);
        char name[64];
        llm_spec sp;
        memcpy(name, p, len);
        name[len] = '\0';
        if (llm_spec_parse(name, hp, &sp)) return -1;
        llm_spec_free(&sp);
        int dup = 0;
        for (int i = 0; i < *n; i++) dup |= !strcmp(names[i], name);
        if (!dup) {
            if (*n == MAX_LANES) return llm_fail("at most %d presets", MAX_LANES);
            strcpy(names[(*n)++], name);
        }
        p += len + (p[len] == ',');
    }
    return 0;
}

/* Bytes of one K and one V block, the blocks per layer and token block
 * (KV heads the cache stores), and bits per entry of the model's K/V (head
 * compression stores fewer, smaller blocks), of a cache spec. */
static int preset_blocks(const char *spec, const llm_hparams *hp, size_t *kbytes, size_t *vbytes, unsigned *block,
                         double *bpe, unsigned *heads)
{
    llm_spec sp;
    gear_block_info ik, iv;
    if (llm_spec_parse(spec, hp, &sp)) return -1;
    llm_spec_free(&sp);
    if (gear_block_info_get(&sp.ck, sp.dim, &ik) || gear_block_info_get(&sp.cv, sp.dim, &iv))
        return llm_fail("'%s': %s", spec, gear_last_error_message());
    *kbytes = ik.bytes;
    *vbytes = iv.bytes;
    *block = sp.ck.block;
    *heads = sp.heads;
    /* bits over the model entries the blocks stand for */
    double model_entries = 2.0 * ik.n * (double)hp->n_head_kv * hp->head_dim / sp.heads;
    *bpe = 8.0 * (double)(ik.bytes + iv.bytes) / model_entries;
    return 0;
}

/* KV bytes of a cache holding `tokens` tokens in every layer (the tail
 * below one block counted as fp16). */
static double kv_bytes_at(const llm_model *m, const char *preset, unsigned tokens)
{
    size_t kb = 0, vb = 0;
    unsigned block = 1, heads = 1;
    double bpe;
    if (preset_blocks(preset, &m->hp, &kb, &vb, &block, &bpe, &heads)) return -1.0;
    double per_head = (double)(tokens / block) * (double)(kb + vb);
    /* the tail below one block, as fp16 of the model's heads */
    double tail = 2.0 * 2.0 * (tokens % block) * m->hp.head_dim * m->hp.n_head_kv;
    return (per_head * heads + tail) * m->hp.n_layer;
}

static int read_tokens(const runner *r, const opts *o, int32_t **ids, size_t *n)
{
    char *text = NULL;
    size_t len;
    if (o->prompt) {
        len = strlen(o->prompt);
        if (!(text = malloc(len + 1))) return llm_fail("out of memory");
        memcpy(text, o->prompt, len + 1);
    } else if (o->text) {
        if (llm_read_file(o->text, &text, &len)) return -1;
    } else {
        return llm_fail("give -p TEXT or --text FILE");
    }
    int rc = llm_tokenize(r->tok, text, len, o->special, ids, n);
    free(text);
    return rc;
}

/* ------------------------------------------------------------ info */

static int cmd_info(const opts *o)
{
    runner r;
    if (runner_open(&r, o)) return -1;
    const llm_hparams *hp = &r.model->hp;
    printf("model        %s (%s)\n", r.model->name[0] ? r.model->name : "?", o->model);
    printf("GGUF         version %u, %llu tensors, %llu metadata keys, weights %s\n", r.file.version,
           (unsigned long long)r.file.n_tensors, (unsigned long long)r.file.n_kv, r.model->weight_types);
    printf("parameters   %zu (%.1f M)%s\n", r.model->n_params, r.model->n_params / 1e6,
           r.model->tied ? ", output tied to the token embedding" : "");
    printf("shape        %d layers, embedding %d, ffn %d, %d heads, %d KV heads, head_dim %d, vocab %d\n",
           hp->n_layer, hp->n_embd, hp->n_ff, hp->n_head, hp->n_head_kv, hp->head_dim, hp->n_vocab);
    printf("rope         base %g, %d dims; rms eps %g; trained context %d\n", hp->rope_base, hp->rope_dim,
           hp->norm_eps, hp->n_ctx_train);
    printf("tokenizer    bos %d, eos %d, add_bos %d\n", llm_tokenizer_bos(r.tok), llm_tokenizer_eos(r.tok),
           llm_tokenizer_add_bos(r.tok));
    printf("libgear      %s, backend %s\n", gear_version_string(), gear_context_backend_name(r.gctx));
    printf("\n%-8s %8s %14s %14s\n", "preset", "bpe", "KV@2k bytes", "KV@2k MiB");
    for (int i = 0; i < gear_preset_count(); i++) {
        const char *p = gear_preset_name(i);
        size_t kb, vb;
        unsigned block;
        double bpe;
        unsigned heads;
        if (preset_blocks(p, hp, &kb, &vb, &block, &bpe, &heads)) continue;
        double by = kv_bytes_at(r.model, p, 2048);
        printf("%-8s %8.3f %14.0f %14.2f\n", p, bpe, by, by / 1048576.0);
    }
    runner_close(&r);
    return 0;
}

static int cmd_tokenize(const opts *o)
{
    runner r;
    int32_t *ids = NULL;
    size_t n;
    if (runner_open(&r, o) || read_tokens(&r, o, &ids, &n)) return -1;
    for (size_t i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
    printf("\n");
    fprintf(stderr, "%zu tokens\n", n);
    free(ids);
    runner_close(&r);
    return 0;
}

/* ------------------------------------------------------------ generate */

static uint64_t rng_next(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ull; /* splitmix64 */
    uint64_t z = *s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int sample(const float *logits, int V, float temp, int top_k, uint64_t *rng)
{
    int best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    if (temp <= 0.0f) return best;
    if (top_k > V) top_k = V;
    int *idx = malloc(sizeof *idx * (size_t)top_k);
    double *p = malloc(sizeof *p * (size_t)top_k);
    if (!idx || !p) {
        free(idx);
        free(p);
        return best;
    }
    int k = 0;
    for (int i = 0; i < V; i++) { /* insertion into a sorted top-k list */
        if (k == top_k && logits[i] <= logits[idx[k - 1]]) continue;
        int j = k < top_k ? k++ : k - 1;
        while (j > 0 && logits[idx[j - 1]] < logits[i]) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = i;
    }
    double sum = 0.0;
    for (int j = 0; j < k; j++) sum += p[j] = exp((logits[idx[j]] - logits[idx[0]]) / temp);
    double u = (double)(rng_next(rng) >> 11) / 9007199254740992.0 * sum;
    int pick = idx[k - 1];
    for (int j = 0; j < k; j++) {
        if (u < p[j]) {
            pick = idx[j];
            break;
        }
        u -= p[j];
    }
    free(idx);
    free(p);
    return pick;
}

static void print_token(const llm_tokenizer *t, int id)
{
    char buf[4096];
    int n = llm_token_bytes(t, id, buf, sizeof buf);
    if (n > 0) fwrite(buf, 1, (size_t)n, stdout);
}

static int cmd_generate(const opts *o)
{
    runner r;
    if (!o->prompt) return llm_fail("generate needs -p PROMPT");
    if (runner_open(&r, o)) return -1;
    const char *preset = o->kv ? o->kv : "fp16";
    const llm_model *m = r.model;
    int V = m->hp.n_vocab, E = m->hp.n_embd, rc = -1;
    char *text = NULL;
    if (o->chat) {
        static const char *sys = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
                                 "Hugging Face<|im_end|>\n<|im_start|>user\n";
        static const char *tail = "<|im_end|>\n<|im_start|>assistant\n";
        text = malloc(strlen(sys) + strlen(o->prompt) + strlen(tail) + 1);
        if (!text) return llm_fail("out of memory");
        sprintf(text, "%s%s%s", sys, o->prompt, tail);
    }
    int32_t *ids = NULL;
    size_t n_prompt;
    if (llm_tokenize(r.tok, text ? text : o->prompt, strlen(text ? text : o->prompt), o->special || o->chat,
                     &ids, &n_prompt))
        goto out;
    if (llm_tokenizer_add_bos(r.tok) && llm_tokenizer_bos(r.tok) >= 0) {
        int32_t *nid = realloc(ids, sizeof *ids * (n_prompt + 1));
        if (!nid) goto out;
        ids = nid;
        memmove(ids + 1, ids, sizeof *ids * n_prompt);
        ids[0] = llm_tokenizer_bos(r.tok);
        n_prompt++;
    }
    if (n_prompt == 0) {
        llm_fail("empty prompt");
        goto out;
    }
    unsigned cap = (unsigned)(n_prompt + (size_t)o->n_predict);
    gear_cache *cache = NULL;
    if (llm_cache_create(m, r.gctx, preset, cap, &cache)) goto out;
    llm_lane lane = {cache, 0.0, GEAR_OK, ""};
    float *hidden = llm_alloc(n_prompt, sizeof(float) * (size_t)E, "hidden");
    float *logits = llm_alloc((size_t)V, sizeof(float), "logits");
    uint64_t rng = o->seed;
    int produced = 0;
    double t_prefill = 0.0, t_decode = 0.0;
    if (!hidden || !logits) goto gen_done;
    double t0 = llm_now();
    if (llm_forward(m, &lane, 1, ids, (int)n_prompt, 0, hidden)) goto gen_done;
    llm_logits(m, hidden + (n_prompt - 1) * (size_t)E, 1, logits);
    t_prefill = llm_now() - t0;
    if (!o->chat) fwrite(text ? text : o->prompt, 1, strlen(text ? text : o->prompt), stdout);
    t0 = llm_now();
    for (int pos = (int)n_prompt; produced < o->n_predict; pos++) {
        int32_t next = sample(logits, V, o->temp, o->top_k, &rng);
        int type = llm_tokenizer_type(r.tok, next);
        if (next == llm_tokenizer_eos(r.tok) || type == LLM_TOKEN_CONTROL) break;
        print_token(r.tok, next);
        fflush(stdout);
        produced++;
        if (produced == o->n_predict) break;
        if (llm_forward(m, &lane, 1, &next, 1, pos, hidden)) goto gen_done;
        llm_logits(m, hidden, 1, logits);
    }
    t_decode = llm_now() - t0;
    printf("\n");
    fflush(stdout); /* the completion before the statistics on stderr */
    gear_cache_stats s;
    gear_cache_stats_get(cache, &s);
    fprintf(stderr,
            "[%s] prompt %zu tokens, prefill %.1f tok/s; %d generated, decode %.1f tok/s; "
            "KV %llu compressed bytes (bpe %.3f) + %llu buffer bytes; fp16 would be %llu\n",
            preset, n_prompt, n_prompt / t_prefill, produced, produced > 0 ? produced / t_decode : 0.0,
            (unsigned long long)s.compressed_bytes, s.bpe, (unsigned long long)s.buffer_bytes,
            (unsigned long long)s.fp16_bytes);
    rc = 0;
gen_done:
    free(hidden);
    free(logits);
    gear_cache_free(cache);
out:
    free(text);
    free(ids);
    runner_close(&r);
    return rc;
}

/* ------------------------------------------------------------ ppl */

typedef struct lane_stats {
    double nll;
    long n_nll;
    double kl, kl_max;
    long n_kl, top1;
    double wall;
} lane_stats;

/* Log-softmax of logits into lp; returns the argmax. */
static int log_softmax(const float *logits, int V, float *lp)
{
    int best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    double mx = logits[best], sum = 0.0;
    for (int i = 0; i < V; i++) sum += exp((double)logits[i] - mx);
    double lse = mx + log(sum);
    for (int i = 0; i < V; i++) lp[i] = (float)((double)logits[i] - lse);
    return best;
}

/* Score one position of one lane: NLL of the next token (next < 0: none)
 * and, against the baseline log-probs ref (NULL for the baseline itself),
 * KL(ref || lane) and top-1 agreement. */
static void score(lane_stats *s, const float *logits, int V, int next, const float *ref, int ref_top, float *lp,
                  int *top)
{
    *top = log_softmax(logits, V, lp);
    if (next >= 0) {
        s->nll -= lp[next];
        s->n_nll++;
    }
    if (!ref) return;
    double kl = 0.0;
    for (int i = 0; i < V; i++) {
        double pr = exp((double)ref[i]);
        kl += pr * ((double)ref[i] - lp[i]);
    }
    s->kl += kl;
    if (kl > s->kl_max) s->kl_max = kl;
    s->n_kl++;
    s->top1 += *top == ref_top;
}

typedef struct ppl_run {
    const runner *r;
    const int32_t *tok;
    int N;
    int decode;
    /* Baseline log-probs and argmaxes.  ref_full: N rows indexed by position
     * (serial runs); else the rows of the current chunk (lockstep runs). */
    float *ref;
    int *ref_top;
    int ref_full;
    int progress; /* report every 128 tokens on stderr */
} ppl_run;

#ifdef _OPENMP
#define PARALLEL_LANES _Pragma("omp parallel for schedule(dynamic)")
#else
#define PARALLEL_LANES
#endif

/* Run n lanes over the window, decoding token by token or in one prefill.
 * role[i] == 0 marks the fp16 baseline lane, whose log-probs go to pr->ref;
 * every other lane is scored against pr->ref. */
static int run_lanes(ppl_run *pr, llm_lane *lanes, lane_stats *stats, const int *role, int n)
{
    const llm_model *m = pr->r->model;
    int V = m->hp.n_vocab, E = m->hp.n_embd, N = pr->N, rc = -1;
    int chunk = pr->decode ? 1 : 16; /* positions per logits batch */
    size_t rows = pr->decode ? (size_t)n : (size_t)n * N;
    float *hidden = llm_alloc(rows, sizeof(float) * (size_t)E, "hidden");
    float *stage = llm_alloc((size_t)n * chunk, sizeof(float) * (size_t)E, "stage");
    float *logits = llm_alloc((size_t)n * chunk, sizeof(float) * (size_t)V, "logits");
    float *lp = llm_alloc((size_t)n * chunk, sizeof(float) * (size_t)V, "log-probs");
    if (!hidden || !stage || !logits || !lp) goto done;
    double t0 = llm_now();
    if (!pr->decode && llm_forward(m, lanes, n, pr->tok, N, 0, hidden)) goto done;
    for (int p0 = 0; p0 < N; p0 += chunk) {
        int np = N - p0 < chunk ? N - p0 : chunk;
        if (pr->decode) {
            if (llm_forward(m, lanes, n, pr->tok + p0, 1, p0, hidden)) goto done;
            memcpy(stage, hidden, sizeof(float) * (size_t)n * E);
        } else {
            for (int i = 0; i < n; i++)
                memcpy(stage + (size_t)i * np * E, hidden + ((size_t)i * N + p0) * E, sizeof(float) * (size_t)np * E);
        }
        llm_logits(m, stage, n * np, logits);
        if (pr->progress && (p0 + np) % 128 < np)
            fprintf(stderr, "  %d/%d tokens, %.1f s\n", p0 + np, N, llm_now() - t0);
        for (int i = 0; i < n; i++) { /* the baseline first: the others score against it */
            if (role[i] != 0) continue;
            for (int j = 0; j < np; j++) {
                int p = p0 + j, ri = pr->ref_full ? p : j;
                score(&stats[i], logits + ((size_t)i * np + j) * V, V, p + 1 < N ? pr->tok[p + 1] : -1, NULL, 0,
                      pr->ref + (size_t)ri * V, &pr->ref_top[ri]);
            }
        }
        PARALLEL_LANES
        for (int i = 0; i < n; i++) {
            if (role[i] == 0) continue;
            for (int j = 0; j < np; j++) {
                int p = p0 + j, ri = pr->ref_full ? p : j, top;
                score(&stats[i], logits + ((size_t)i * np + j) * V, V, p + 1 < N ? pr->tok[p + 1] : -1,
                      pr->ref + (size_t)ri * V, pr->ref_top[ri], lp + ((size_t)i * np + j) * V, &top);
            }
        }
    }
    double wall = llm_now() - t0;
    for (int i = 0; i < n; i++) stats[i].wall = wall;
    rc = 0;
done:
    free(hidden);
    free(stage);
    free(logits);
    free(lp);
    return rc;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Tokens of --text/-p, after --skip, at most --ctx of them. */
static int window_tokens(const runner *r, const opts *o, int32_t **ids, int *N)
{
    size_t n;
    if (read_tokens(r, o, ids, &n)) return -1;
    if (n < (size_t)o->skip + 2) {
        free(*ids);
        *ids = NULL;
        return llm_fail("the text has %zu tokens; --skip %d leaves fewer than 2", n, o->skip);
    }
    size_t avail = n - (size_t)o->skip;
    *N = avail < (size_t)o->ctx ? (int)avail : o->ctx;
    memmove(*ids, *ids + o->skip, sizeof **ids * (size_t)*N);
    return 0;
}

static int cmd_ppl(const opts *o)
{
    runner r;
    char names[MAX_LANES][64];
    int n, N, rc = -1;
    int32_t *tok = NULL;
    if (runner_open(&r, o)) return -1;
    if (parse_presets(o->kv, 1, &r.model->hp, names, &n) || window_tokens(&r, o, &tok, &N)) {
        runner_close(&r);
        return -1;
    }
    const llm_model *m = r.model;
    int V = m->hp.n_vocab;
    llm_lane lanes[MAX_LANES];
    lane_stats stats[MAX_LANES];
    int role[MAX_LANES];
    memset(lanes, 0, sizeof lanes);
    memset(stats, 0, sizeof stats);
    ppl_run pr = {&r, tok, N, !strcmp(o->mode, "decode"), NULL, NULL, o->serial, 1};
    size_t ref_rows = o->serial ? (size_t)N : (pr.decode ? 1 : 16);
    pr.ref = llm_alloc(ref_rows, sizeof(float) * (size_t)V, "baseline log-probs");
    pr.ref_top = llm_alloc(ref_rows, sizeof(int), "baseline argmax");
    if (!pr.ref || !pr.ref_top) goto done;
    for (int i = 0; i < n; i++) {
        role[i] = i == 0 ? 0 : 1;
        if (llm_cache_create(m, r.gctx, names[i], (unsigned)N, &lanes[i].cache)) goto done;
    }
    fprintf(stderr, "ppl: %d tokens of %s (skip %d), %s mode, %s, %d lanes\n", N, o->text ? base_name(o->text) : "prompt",
            o->skip, o->mode, o->serial ? "serial" : "lockstep", n);
    double t0 = llm_now();
    if (o->serial) {
        for (int i = 0; i < n; i++) {
            if (run_lanes(&pr, &lanes[i], &stats[i], &role[i], 1)) goto done;
            fprintf(stderr, "  %-7s done in %.1f s\n", names[i], stats[i].wall);
        }
    } else if (run_lanes(&pr, lanes, stats, role, n)) {
        goto done;
    }
    double wall = llm_now() - t0;
    double base_ppl = exp(stats[0].nll / (double)stats[0].n_nll);
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    printf("# model %s; text %s, %d tokens from token %d; %s mode, %s; libgear %s backend %s; %d threads\n",
           m->name, o->text ? base_name(o->text) : "(prompt)", N, o->skip, o->mode,
           o->serial ? "each preset run alone" : "presets in lockstep", gear_version_string(),
           gear_context_backend_name(r.gctx), threads);
    int w = 7;
    for (int i = 0; i < n; i++) w = (int)strlen(names[i]) > w ? (int)strlen(names[i]) : w;
    printf("%-*s %7s %10s %12s %9s %8s %9s %8s %8s %9s\n", w, "preset", "bpe", "KV@2k MiB", "KV bytes", "ppl",
           "dppl %", "KL", "top-1 %", "gear ms", o->serial ? "tok/s" : "tok/s*");
    FILE *js = NULL;
    if (o->json && !(js = fopen(o->json, "a"))) {
        llm_fail("cannot open %s", o->json);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        size_t kb, vb;
        unsigned block;
        double bpe;
        gear_cache_stats s;
        unsigned heads;
        if (preset_blocks(names[i], &m->hp, &kb, &vb, &block, &bpe, &heads) ||
            gear_cache_stats_get(lanes[i].cache, &s))
            goto done;
        double ppl = exp(stats[i].nll / (double)stats[i].n_nll), dppl = 100.0 * (ppl / base_ppl - 1.0);
        double kl = stats[i].n_kl ? stats[i].kl / stats[i].n_kl : 0.0;
        double top1 = stats[i].n_kl ? 100.0 * stats[i].top1 / stats[i].n_kl : 100.0;
        double kv2k = kv_bytes_at(m, names[i], 2048), ms = 1e3 * lanes[i].t_gear / N;
        double tps = N / (o->serial ? stats[i].wall : wall);
        unsigned long long kvb = (unsigned long long)(s.compressed_bytes + s.buffer_bytes / 2);
        printf("%-*s %7.3f %10.2f %12llu %9.4f %+8.3f %9.5f %8.2f %8.2f %9.2f\n", w, names[i], bpe, kv2k / 1048576.0,
               kvb, ppl, dppl, kl, top1, ms, tps);
        if (js)
            fprintf(js,
                    "{\"preset\":\"%s\",\"bpe\":%.4f,\"kv_bytes_2k\":%.0f,\"kv_bytes\":%llu,\"ppl\":%.6f,"
                    "\"dppl_pct\":%.4f,\"kl\":%.6g,\"kl_max\":%.6g,\"top1_pct\":%.3f,\"gear_ms_per_tok\":%.4f,"
                    "\"tok_s\":%.3f,\"tokens\":%d,\"skip\":%d,\"mode\":\"%s\",\"serial\":%d,\"text\":\"%s\","
                    "\"backend\":\"%s\",\"threads\":%d}\n",
                    names[i], bpe, kv2k, kvb, ppl, dppl, kl, stats[i].kl_max, top1, ms, tps, N, o->skip, o->mode,
                    o->serial, o->text ? base_name(o->text) : "prompt", gear_context_backend_name(r.gctx), threads);
    }
    if (js) fclose(js);
    printf("# KV bytes: the cache after the run, fp16 tail buffer included; KL = mean KL(fp16 || preset) of the\n"
           "# next-token distributions, top-1 = argmax agreement with fp16; gear ms = libgear append+attention per\n"
           "# token; %s\n",
           o->serial ? "tok/s = this preset alone, end to end" : "tok/s* = all lanes together (use --serial for per-preset speed)");
    rc = 0;
done:
    for (int i = 0; i < n; i++) gear_cache_free(lanes[i].cache);
    free(pr.ref);
    free(pr.ref_top);
    free(tok);
    runner_close(&r);
    return rc;
}

/* ------------------------------------------------------------ logits */

static int cmd_logits(const opts *o)
{
    runner r;
    int N, rc = -1;
    int32_t *tok = NULL;
    if (!o->out) return llm_fail("logits needs --out FILE");
    if (runner_open(&r, o) || window_tokens(&r, o, &tok, &N)) return -1;
    const llm_model *m = r.model;
    int V = m->hp.n_vocab, E = m->hp.n_embd;
    llm_lane lane;
    memset(&lane, 0, sizeof lane);
    float *hidden = llm_alloc((size_t)N, sizeof(float) * (size_t)E, "hidden");
    float *logits = llm_alloc((size_t)N, sizeof(float) * (size_t)V, "logits");
    if (!hidden || !logits || llm_cache_create(m, r.gctx, o->kv ? o->kv : "fp16", (unsigned)N, &lane.cache)) goto done;
    if (!strcmp(o->mode, "decode")) {
        for (int t = 0; t < N; t++) {
            if (llm_forward(m, &lane, 1, tok + t, 1, t, hidden)) goto done;
            llm_logits(m, hidden, 1, logits + (size_t)t * V);
        }
    } else {
        if (llm_forward(m, &lane, 1, tok, N, 0, hidden)) goto done;
        llm_logits(m, hidden, N, logits);
    }
    st_tensor t[2] = {{"tokens", "I32", 1, {N}, tok, sizeof *tok * (size_t)N},
                      {"logits", "F32", 2, {N, V}, logits, sizeof(float) * (size_t)N * V}};
    const char *meta[] = {"kv", o->kv ? o->kv : "fp16", "mode", o->mode, "model", m->name};
    if (st_write(o->out, t, 2, meta, 3)) goto done;
    fprintf(stderr, "wrote %d tokens x %d logits to %s\n", N, V, o->out);
    rc = 0;
done:
    gear_cache_free(lane.cache);
    free(hidden);
    free(logits);
    free(tok);
    runner_close(&r);
    return rc;
}

/* ------------------------------------------------------------ dump-kv, kv-error */

/* Run an fp16 cache over the window in one prefill. */
static int prefill_fp16(const runner *r, const int32_t *tok, int N, gear_cache **cache)
{
    const llm_model *m = r->model;
    llm_lane lane;
    memset(&lane, 0, sizeof lane);
    float *hidden = llm_alloc((size_t)N, sizeof(float) * (size_t)m->hp.n_embd, "hidden");
    if (!hidden || llm_cache_create(m, r->gctx, "fp16", (unsigned)N, &lane.cache) ||
        llm_forward(m, &lane, 1, tok, N, 0, hidden)) {
        free(hidden);
        gear_cache_free(lane.cache);
        return -1;
    }
    free(hidden);
    *cache = lane.cache;
    return 0;
}

static int parse_layers(const char *list, int n_layer, int *layers, int *n)
{
    *n = 0;
    if (!list) {
        int def[4] = {0, n_layer / 3, (2 * n_layer) / 3, n_layer - 1};
        for (int i = 0; i < 4; i++)
            if (*n == 0 || def[i] != layers[*n - 1]) layers[(*n)++] = def[i];
        return 0;
    }
    if (!strcmp(list, "all")) {
        for (int i = 0; i < n_layer && i < 256; i++) layers[(*n)++] = i;
        return 0;
    }
    for (const char *p = list; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v >= n_layer || (*end && *end != ',')) return llm_fail("bad --layers '%s'", list);
        if (*n == 256) return llm_fail("too many layers");
        layers[(*n)++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return 0;
}

static int cmd_dump_kv(const opts *o)
{
    runner r;
    int N, rc = -1, layers[256], nl;
    int32_t *tok = NULL;
    gear_cache *cache = NULL;
    uint16_t *buf = NULL;
    if (!o->out || !o->text) return llm_fail("dump-kv needs --text FILE and --out FILE");
    if (runner_open(&r, o) || window_tokens(&r, o, &tok, &N)) return -1;
    const llm_hparams *hp = &r.model->hp;
    if (parse_layers(o->layers, hp->n_layer, layers, &nl) || prefill_fp16(&r, tok, N, &cache)) goto done;
    size_t per = (size_t)hp->n_head_kv * N * hp->head_dim;
    buf = llm_alloc(per * 2 * (size_t)nl, sizeof *buf, "dump");
    st_tensor t[512];
    char names[512][32];
    if (!buf) goto done;
    for (int i = 0; i < nl; i++)
        for (int kv = 0; kv < 2; kv++) {
            uint16_t *dst = buf + per * (2 * (size_t)i + kv);
            gear_tensor view;
            gear_tensor_init(&view, dst, GEAR_F16, 3, hp->n_head_kv, N, hp->head_dim, 0);
            gear_status st = gear_cache_decompress(cache, (unsigned)layers[i], kv ? NULL : &view, kv ? &view : NULL);
            if (st) {
                llm_fail("gear_cache_decompress: %s: %s", gear_status_string(st), gear_last_error_message());
                goto done;
            }
            snprintf(names[2 * i + kv], sizeof names[0], "layer.%d.%c", layers[i], kv ? 'v' : 'k');
            t[2 * i + kv] = (st_tensor){names[2 * i + kv], "F16", 3, {hp->n_head_kv, N, hp->head_dim}, dst,
                                        per * sizeof *dst};
        }
    /* provenance: token ids, as a comma-separated list */
    char *ids = llm_alloc((size_t)N, 12, "ids");
    if (!ids) goto done;
    size_t w = 0;
    for (int i = 0; i < N; i++) w += (size_t)sprintf(ids + w, "%s%d", i ? "," : "", tok[i]);
    char ntok[32], skip[32], shape[96];
    snprintf(ntok, sizeof ntok, "%d", N);
    snprintf(skip, sizeof skip, "%d", o->skip);
    snprintf(shape, sizeof shape, "%d layers, %d KV heads, head_dim %d, rope base %g", hp->n_layer, hp->n_head_kv,
             hp->head_dim, hp->rope_base);
    const char *meta[] = {"model", r.model->name, "model_shape", shape, "text", base_name(o->text),
                          "skip_tokens", skip, "tokens", ntok, "token_ids", ids,
                          "layout", "layer.<i>.k / layer.<i>.v: [n_head_kv, T, head_dim] F16; keys after RoPE "
                                    "(GGUF/ggml interleaved-pair convention), values as projected",
                          "producer", "gear-llm dump-kv (libgear examples/llm), fp16 cache, one prefill"};
    int st = st_write(o->out, t, 2 * nl, meta, 8);
    free(ids);
    if (st) goto done;
    fprintf(stderr, "wrote %d layers x K,V [%d, %d, %d] F16 to %s\n", nl, hp->n_head_kv, N, hp->head_dim, o->out);
    rc = 0;
done:
    free(buf);
    gear_cache_free(cache);
    free(tok);
    runner_close(&r);
    return rc;
}

static double rel_err(const float *a, const float *b, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0.0 ? sqrt(num / den) : 0.0;
}

static int cmd_kv_error(const opts *o)
{
    runner r;
    char names[MAX_LANES][64];
    int n, N, rc = -1;
    int32_t *tok = NULL;
    gear_cache *base = NULL;
    float *x = NULL, *y = NULL;
    if (runner_open(&r, o)) return -1;
    if (parse_presets(o->kv, 0, &r.model->hp, names, &n) || window_tokens(&r, o, &tok, &N)) {
        runner_close(&r);
        return -1;
    }
    const llm_hparams *hp = &r.model->hp;
    size_t per = (size_t)hp->n_head_kv * N * hp->head_dim;
    if (prefill_fp16(&r, tok, N, &base)) goto done;
    x = llm_alloc(per * 2, sizeof *x, "kv");
    y = llm_alloc(per * 2, sizeof *y, "kv");
    if (!x || !y) goto done;
    int T = N / 64 * 64; /* whole blocks only: the tail is stored exactly */
    printf("# relative Frobenius error ||X^ - X|| / ||X|| of K and V per layer, first %d tokens of %s (skip %d)\n", T,
           base_name(o->text ? o->text : "prompt"), o->skip);
    printf("%5s", "layer");
    for (int i = 0; i < n; i++) printf(" %8s.K %8s.V", names[i], names[i]);
    printf("\n");
    double *sum = calloc((size_t)n * 2, sizeof *sum);
    if (!sum) goto done;
    for (int l = 0; l < hp->n_layer; l++) {
        gear_tensor kt, vt;
        gear_tensor_init(&kt, x, GEAR_F32, 3, hp->n_head_kv, T, hp->head_dim, 0);
        gear_tensor_init(&vt, x + per, GEAR_F32, 3, hp->n_head_kv, T, hp->head_dim, 0);
        /* the base cache holds N tokens; read them all, keep the first T */
        gear_tensor kf, vf;
        gear_tensor_init(&kf, y, GEAR_F32, 3, hp->n_head_kv, N, hp->head_dim, 0);
        gear_tensor_init(&vf, y + per, GEAR_F32, 3, hp->n_head_kv, N, hp->head_dim, 0);
        if (gear_cache_decompress(base, (unsigned)l, &kf, &vf)) {
            llm_fail("decompress: %s", gear_last_error_message());
            free(sum);
            goto done;
        }
        for (int h = 0; h < hp->n_head_kv; h++) { /* repack [H, N, d] -> [H, T, d] */
            memcpy(x + (size_t)h * T * hp->head_dim, y + (size_t)h * N * hp->head_dim, sizeof(float) * T * hp->head_dim);
            memcpy(x + per + (size_t)h * T * hp->head_dim, y + per + (size_t)h * N * hp->head_dim,
                   sizeof(float) * T * hp->head_dim);
        }
        printf("%5d", l);
        for (int i = 0; i < n; i++) {
            gear_cache *c = NULL;
            llm_spec sp;
            float *rk = y, *rv = y + (size_t)hp->n_head_kv * T * hp->head_dim;
            gear_tensor ko, vo;
            gear_tensor_init(&ko, rk, GEAR_F32, 3, hp->n_head_kv, T, hp->head_dim, 0);
            gear_tensor_init(&vo, rv, GEAR_F32, 3, hp->n_head_kv, T, hp->head_dim, 0);
            gear_status st = llm_spec_parse(names[i], hp, &sp) ? GEAR_ERR_INVALID_ARG : GEAR_OK;
            if (!st) st = gear_cache_create_calibrated(r.gctx, &sp.ck, &sp.cv, sp.cal, (unsigned)hp->n_layer,
                                                       (unsigned)hp->n_head_kv, (unsigned)hp->head_dim,
                                                       (unsigned)T, &c);
            llm_spec_free(&sp);
            if (!st) st = gear_cache_append(c, (unsigned)l, &kt, &vt);
            if (!st) st = gear_cache_decompress(c, (unsigned)l, &ko, &vo);
            gear_cache_free(c);
            if (st) {
                llm_fail("%s: %s: %s", names[i], gear_status_string(st), gear_last_error_message());
                free(sum);
                goto done;
            }
            size_t m_ = (size_t)hp->n_head_kv * T * hp->head_dim;
            double ek = rel_err(rk, x, m_), ev = rel_err(rv, x + per, m_);
            sum[2 * i] += ek;
            sum[2 * i + 1] += ev;
            printf(" %10.5f %10.5f", ek, ev);
        }
        printf("\n");
    }
    printf("%5s", "mean");
    for (int i = 0; i < 2 * n; i++) printf(" %10.5f", sum[i] / hp->n_layer);
    printf("\n");
    free(sum);
    rc = 0;
done:
    free(x);
    free(y);
    gear_cache_free(base);
    free(tok);
    runner_close(&r);
    return rc;
}

int main(int argc, char **argv)
{
    opts o;
    if (parse_args(argc, argv, &o)) {
        fprintf(stderr, "gear-llm: %s\n", llm_error());
        usage(stderr);
        return 2;
    }
#ifdef _OPENMP
    if (o.threads) omp_set_num_threads(o.threads);
#endif
    int rc;
    if (!strcmp(o.cmd, "info")) rc = cmd_info(&o);
    else if (!strcmp(o.cmd, "tokenize")) rc = cmd_tokenize(&o);
    else if (!strcmp(o.cmd, "generate")) rc = cmd_generate(&o);
    else if (!strcmp(o.cmd, "ppl")) rc = cmd_ppl(&o);
    else if (!strcmp(o.cmd, "logits")) rc = cmd_logits(&o);
    else if (!strcmp(o.cmd, "dump-kv")) rc = cmd_dump_kv(&o);
    else if (!strcmp(o.cmd, "kv-error")) rc = cmd_kv_error(&o);
    else if (!strcmp(o.cmd, "help") || !strcmp(o.cmd, "-h") || !strcmp(o.cmd, "--help")) {
        usage(stdout);
        return 0;
    } else {
        fprintf(stderr, "gear-llm: unknown command '%s'\n", o.cmd);
        usage(stderr);
        return 2;
    }
    if (rc) {
        fprintf(stderr, "gear-llm %s: %s\n", o.cmd, llm_error());
        return 1;
    }
    return 0;
}
