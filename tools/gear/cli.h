/*
 * cli.h - what the subcommands of the `gear` tool share: exit codes, option
 * parsing, error reporting with the library's status and detail, context
 * and preset helpers, timing, and fp16/bf16 decoding.  Definitions are in
 * main.c.
 */
#ifndef GEAR_TOOL_CLI_H
#define GEAR_TOOL_CLI_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <gear.h>

/* Exit codes: success, runtime failure, usage error.  CLI_HELP is internal:
 * --help was printed, exit 0. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2, CLI_HELP = -1 };

/* ------------------------------------------------------------ commands */

typedef struct cli_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);   /* argv[0] is the command name */
    void (*usage)(FILE *f);
} cli_command;

int cmd_backends(int argc, char **argv);
int cmd_presets(int argc, char **argv);
int cmd_roundtrip(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
void usage_backends(FILE *f);
void usage_presets(FILE *f);
void usage_roundtrip(FILE *f);
void usage_demo(FILE *f);
void usage_eval(FILE *f);
void usage_calibrate(FILE *f);

/* ------------------------------------------------------------- options */

typedef enum cli_opt_type {
    OPT_FLAG,   /* int: set to 1 */
    OPT_STR,    /* const char * */
    OPT_STRS,   /* cli_strs: repeatable */
    OPT_UINT,   /* unsigned, in [min, max] */
    OPT_U64,    /* uint64_t, in [min, max] */
    OPT_RATIO   /* float in [0, 1] */
} cli_opt_type;

#define CLI_MAX_LIST 64
typedef struct cli_strs {
    const char *v[CLI_MAX_LIST];
    int n;
} cli_strs;

typedef struct cli_opt {
    const char *name;            /* "--bits" */
    cli_opt_type type;
    void *dst;
    unsigned long long min, max; /* OPT_UINT / OPT_U64 */
    int *given;                  /* optional: set to 1 when the option appears */
} cli_opt;

/* Parse argv[1..] (--name value or --name=value; --help/-h prints usage).
 * Returns CLI_OK, CLI_HELP, or CLI_USAGE after printing the problem. */
int cli_parse(const char *cmd, int argc, char **argv, const cli_opt *opts, int nopts,
              void (*usage)(FILE *f));

/* -------------------------------------------------------------- errors */

/* "gear CMD: message" on stderr. */
void cli_error(const char *cmd, const char *fmt, ...);
/* The same plus a pointer to --help; returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...);
/* "gear CMD: what: <gear_status_string> (<gear_last_error_message>)";
 * returns code (CLI_FAIL or CLI_USAGE).  Call it right after the failing
 * library call, before any other libgear call. */
int cli_gear_error(const char *cmd, int code, gear_status st, const char *fmt, ...);

/* ------------------------------------------------------------- library */

/* Create a context on backend (NULL = "auto").  A name this build does not
 * know is a usage error; a known backend that cannot start is a failure. */
int cli_context(const char *cmd, const char *backend, gear_context **ctx);
/* Preset name -> its key and value configs (a usage error if unknown). */
int cli_preset(const char *cmd, const char *name, gear_config *k, gear_config *v);
/* Validate a config for head_dim, naming what is wrong (usage error). */
int cli_validate(const char *cmd, const gear_config *cfg, unsigned head_dim);
/* Effective group and bpe facts, failure reported (CLI_FAIL). */
int cli_block_info(const char *cmd, const gear_config *cfg, unsigned head_dim,
                   gear_block_info *info);

/* -------------------------------------------------------------- misc */

double cli_now(void);                 /* seconds, CLOCK_MONOTONIC */
double cli_median(double *v, int n);  /* sorts v */
const char *cli_kind_name(gear_kind k);
double cli_ratio(float r);            /* a float knob as the decimal the user typed (0.02) */

/* Little-endian fp16 / bf16 bit patterns to float (exact). */
static inline float cli_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1F, man = h & 0x3FFu, bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (man << 13);             /* Inf / NaN */
    } else if (exp) {
        bits = sign | ((exp + 112) << 23) | (man << 13);     /* normal */
    } else if (man) {                                        /* subnormal: normalize */
        int e = -1;
        do { man <<= 1; e++; } while (!(man & 0x400u));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3FFu) << 13);
    } else {
        bits = sign;                                          /* zero */
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline float cli_bf16_to_float(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline uint16_t cli_le16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t cli_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t cli_le64(const unsigned char *p)
{
    return (uint64_t)cli_le32(p) | (uint64_t)cli_le32(p + 4) << 32;
}

/* Formats a parser's error message into err[errlen]; returns -1 so that a
 * parser can `return cli_set_err(...)`. */
static inline int cli_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

#endif
