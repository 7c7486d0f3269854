/*
 * main.c - the `gear` command-line tool: dispatch, and the helpers every
 * subcommand shares (cli.h).
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "cli.h"

static const cli_command commands[] = {
    {"backends", "list the compute backends and whether they can run here", cmd_backends,
     usage_backends},
    {"presets", "list the presets: knobs and bits per entry", cmd_presets, usage_presets},
    {"roundtrip", "compress and decompress a .npy tensor, report error and size", cmd_roundtrip,
     usage_roundtrip},
    {"demo", "compare presets on the real KV sample, else synthetic KV (no input needed)", cmd_demo, usage_demo},
    {"eval", "compare presets on your KV dump (safetensors)", cmd_eval, usage_eval},
    {"calibrate", "learn CQ codebooks / KV-head projections from a KV dump", cmd_calibrate,
     usage_calibrate},
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

static void usage_main(FILE *f)
{
    fprintf(f, "Usage: gear <command> [options]\n"
               "       gear help [command] | gear --help | gear --version\n\n"
               "Compress LLM KV caches with GEAR (Q + S + L) and the methods it is measured\n"
               "against (KIVI, KCVT), and attend over the compressed cache.\n\n"
               "Commands:\n");
    for (int i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nEvery command takes --help and --json (JSON lines on stdout).\n"
               "Exit status: 0 success, 1 runtime failure, 2 usage error.\n"
               "Environment: GEAR_BACKEND, GEAR_DEVICE (refine --backend auto), "
               "GEAR_LOG_LEVEL.\n");
}

static const cli_command *find_command(const char *name)
{
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(commands[i].name, name)) return &commands[i];
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage_main(stderr);
        return CLI_USAGE;
    }
    const char *a = argv[1];
    if (!strcmp(a, "--version") || !strcmp(a, "version")) {
        printf("gear %d.%d.%d (libgear %s)\n", GEAR_VERSION_MAJOR, GEAR_VERSION_MINOR,
               GEAR_VERSION_PATCH, gear_version_string());
        return CLI_OK;
    }
    if (!strcmp(a, "--help") || !strcmp(a, "-h") || !strcmp(a, "help")) {
        if (argc == 2 || strcmp(a, "help")) {
            usage_main(stdout);
            return CLI_OK;
        }
        const cli_command *c = find_command(argv[2]);
        if (!c || argc > 3) {
            fprintf(stderr, "gear help: %s '%s'\n", c ? "unexpected argument" : "unknown command",
                    c ? argv[3] : argv[2]);
            return CLI_USAGE;
        }
        c->usage(stdout);
        return CLI_OK;
    }
    const cli_command *c = find_command(a);
    if (!c) {
        fprintf(stderr, "gear: unknown command '%s' (try 'gear --help')\n", a);
        return CLI_USAGE;
    }
    int rc = c->run(argc - 1, argv + 1);
    if (rc == CLI_HELP) rc = CLI_OK;
    /* A failed write to stdout (full disk, closed pipe) is a failure too. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "gear %s: error writing output: %s\n", a, strerror(errno));
        if (rc == CLI_OK) rc = CLI_FAIL;
    }
    return rc;
}

/* ------------------------------------------------------------- errors */

static void verror(const char *cmd, const char *fmt, va_list ap)
{
    fprintf(stderr, "gear %s: ", cmd);
    vfprintf(stderr, fmt, ap);
}

void cli_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(cmd, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(cmd, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'gear %s --help'.\n", cmd);
    return CLI_USAGE;
}

int cli_gear_error(const char *cmd, int code, gear_status st, const char *fmt, ...)
{
    /* Copy the detail first: it is only valid until the next libgear call. */
    char detail[512];
    snprintf(detail, sizeof detail, "%s", gear_last_error_message());
    va_list ap;
    va_start(ap, fmt);
    verror(cmd, fmt, ap);
    va_end(ap);
    fprintf(stderr, ": %s", gear_status_string(st));
    if (detail[0]) fprintf(stderr, " (%s)", detail);
    fputc('\n', stderr);
    if (code == CLI_USAGE) fprintf(stderr, "Try 'gear %s --help'.\n", cmd);
    return code;
}

/* ------------------------------------------------------------ options */

/* Decimal digits only: no sign, no spaces, no hex, overflow-checked. */
static int parse_ull(const char *s, unsigned long long *v)
{
    if (!*s) return -1;
    unsigned long long x = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        unsigned d = (unsigned)(*s - '0');
        if (x > (~0ull - d) / 10) return -1;
        x = x * 10 + d;
    }
    *v = x;
    return 0;
}

static int parse_value(const char *cmd, const cli_opt *o, const char *val)
{
    unsigned long long u;
    switch (o->type) {
    case OPT_STR: *(const char **)o->dst = val; return CLI_OK;
    case OPT_STRS: {
        cli_strs *l = o->dst;
        if (l->n == CLI_MAX_LIST)
            return cli_usage_error(cmd, "option %s given more than %d times", o->name,
                                   CLI_MAX_LIST);
        l->v[l->n++] = val;
        return CLI_OK;
    }
    case OPT_UINT:
    case OPT_U64:
        if (parse_ull(val, &u) || u < o->min || u > o->max) {
            if (o->min == 0 && (o->max == 0xFFFFFFFFull || o->max == ~0ull))
                return cli_usage_error(cmd, "option %s: '%s' is not a non-negative integer",
                                       o->name, val);
            return cli_usage_error(cmd, "option %s: '%s' is not an integer in %llu..%llu",
                                   o->name, val, o->min, o->max);
        }
        if (o->type == OPT_UINT) *(unsigned *)o->dst = (unsigned)u;
        else *(uint64_t *)o->dst = (uint64_t)u;
        return CLI_OK;
    case OPT_RATIO: {
        char *end;
        errno = 0;
        double d = strtod(val, &end);
        if (!*val || *end || errno || !(d >= 0.0 && d <= 1.0))
            return cli_usage_error(cmd, "option %s: '%s' is not a number in [0, 1]", o->name,
                                   val);
        *(float *)o->dst = (float)d;
        return CLI_OK;
    }
    case OPT_FLAG: break;
    }
    return CLI_OK;
}

int cli_parse(const char *cmd, int argc, char **argv, const cli_opt *opts, int nopts,
              void (*usage)(FILE *f))
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return CLI_HELP;
        }
        if (strncmp(a, "--", 2))
            return cli_usage_error(cmd, "unexpected argument '%s'", a);
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const cli_opt *o = NULL;
        for (int k = 0; k < nopts && !o; k++)
            if (strlen(opts[k].name) == len && !strncmp(opts[k].name, a, len)) o = &opts[k];
        if (!o) return cli_usage_error(cmd, "unknown option '%.*s'", (int)len, a);
        if (o->given) *o->given = 1;
        if (o->type == OPT_FLAG) {
            if (eq) return cli_usage_error(cmd, "option %s takes no value", o->name);
            *(int *)o->dst = 1;
            continue;
        }
        const char *val = eq ? eq + 1 : NULL;
        /* "--in --out y" means a forgotten value, not a file named --out. */
        if (!eq && i + 1 < argc && strncmp(argv[i + 1], "--", 2)) val = argv[++i];
        if (!val) return cli_usage_error(cmd, "option %s needs a value", o->name);
        int rc = parse_value(cmd, o, val);
        if (rc) return rc;
    }
    return CLI_OK;
}

/* ------------------------------------------------------------ library */

int cli_context(const char *cmd, const char *backend, gear_context **ctx)
{
    gear_context_params p;
    gear_context_params_init(&p);
    *ctx = NULL;
    if (backend && strcmp(backend, "auto")) {
        /* The documented names are never a usage error: this machine may just lack them. */
        int known = !strcmp(backend, "ref") || !strcmp(backend, "cpu") ||
                    !strcmp(backend, "cuda") || !strcmp(backend, "hip");
        for (int i = 0; i < gear_backend_count(); i++) {
            const char *n = gear_backend_name(i);
            if (n && !strcmp(n, backend)) known = 1;
        }
        if (!known) {
            char list[256] = "";
            for (int i = 0; i < gear_backend_count(); i++) {
                const char *n = gear_backend_name(i);
                size_t l = strlen(list);
                snprintf(list + l, sizeof list - l, "%s%s", l ? ", " : "", n ? n : "?");
            }
            return cli_usage_error(cmd, "unknown backend '%s' (known here: auto, %s; see 'gear "
                                   "backends')", backend, list);
        }
        p.backend = backend;
    }
    gear_status st = gear_context_create(&p, ctx);
    if (st) return cli_gear_error(cmd, CLI_FAIL, st, "cannot start backend '%s'",
                                  backend ? backend : "auto");
    return CLI_OK;
}

int cli_preset(const char *cmd, const char *name, gear_config *k, gear_config *v)
{
    gear_status st = gear_config_preset(name, GEAR_KEY, k);
    if (!st) st = gear_config_preset(name, GEAR_VALUE, v);
    if (st == GEAR_ERR_UNKNOWN_PRESET) {
        char list[256] = "";
        for (int i = 0; i < gear_preset_count(); i++) {
            size_t l = strlen(list);
            snprintf(list + l, sizeof list - l, "%s%s", l ? ", " : "", gear_preset_name(i));
        }
        return cli_usage_error(cmd, "unknown preset '%s' (known: %s)", name, list);
    }
    if (st) return cli_gear_error(cmd, CLI_FAIL, st, "preset '%s'", name);
    return CLI_OK;
}

int cli_validate(const char *cmd, const gear_config *cfg, unsigned head_dim)
{
    gear_status st = gear_config_validate(cfg, head_dim);
    if (st)
        return cli_gear_error(cmd, CLI_USAGE, st, "invalid %s configuration for head_dim %u",
                              cli_kind_name(cfg->kind), head_dim);
    return CLI_OK;
}

int cli_block_info(const char *cmd, const gear_config *cfg, unsigned head_dim,
                   gear_block_info *info)
{
    gear_status st = gear_block_info_get(cfg, head_dim, info);
    if (st) return cli_gear_error(cmd, CLI_FAIL, st, "gear_block_info_get (%s)",
                                  cli_kind_name(cfg->kind));
    return CLI_OK;
}

/* --------------------------------------------------------------- misc */

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double cli_median(double *v, int n)
{
    if (n <= 0) return NAN;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

const char *cli_kind_name(gear_kind k) { return k == GEAR_KEY ? "key" : "value"; }

double cli_ratio(float r) { return floor((double)r * 1e6 + 0.5) / 1e6; }
