/* status.c - version, status names, per-thread error detail, logging. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

unsigned gear_version_number(void) { return GEAR_VERSION_NUMBER; }

#define GEAR_STR2(x) #x
#define GEAR_STR(x) GEAR_STR2(x)
const char *gear_version_string(void)
{
    return GEAR_STR(GEAR_VERSION_MAJOR) "." GEAR_STR(GEAR_VERSION_MINOR) "." GEAR_STR(
        GEAR_VERSION_PATCH);
}

const char *gear_status_string(gear_status s)
{
    switch (s) {
    case GEAR_OK: return "GEAR_OK: success";
    case GEAR_ERR_INVALID_ARG: return "GEAR_ERR_INVALID_ARG: invalid argument";
    case GEAR_ERR_NO_MEMORY: return "GEAR_ERR_NO_MEMORY: out of memory";
    case GEAR_ERR_UNSUPPORTED: return "GEAR_ERR_UNSUPPORTED: not supported";
    case GEAR_ERR_NO_BACKEND: return "GEAR_ERR_NO_BACKEND: backend not found or not usable";
    case GEAR_ERR_BACKEND: return "GEAR_ERR_BACKEND: backend failure";
    case GEAR_ERR_SHAPE: return "GEAR_ERR_SHAPE: shape or stride mismatch";
    case GEAR_ERR_OVERFLOW: return "GEAR_ERR_OVERFLOW: size overflow";
    case GEAR_ERR_CAPACITY: return "GEAR_ERR_CAPACITY: cache capacity exceeded";
    case GEAR_ERR_DST_TOO_SMALL: return "GEAR_ERR_DST_TOO_SMALL: destination too small";
    case GEAR_ERR_UNKNOWN_PRESET: return "GEAR_ERR_UNKNOWN_PRESET: unknown preset";
    case GEAR_ERR_NONFINITE: return "GEAR_ERR_NONFINITE: NaN or Inf in input";
    case GEAR_ERR_RANGE: return "GEAR_ERR_RANGE: value outside the fp16 range (or attention overflowing fp32)";
    case GEAR_ERR_IO: return "GEAR_ERR_IO: I/O error";
    case GEAR_ERR_FORMAT_MAGIC: return "GEAR_ERR_FORMAT_MAGIC: not libgear data (bad magic)";
    case GEAR_ERR_FORMAT_VERSION: return "GEAR_ERR_FORMAT_VERSION: unsupported format version";
    case GEAR_ERR_FORMAT_TRUNCATED: return "GEAR_ERR_FORMAT_TRUNCATED: data ends early";
    case GEAR_ERR_FORMAT_CORRUPT: return "GEAR_ERR_FORMAT_CORRUPT: corrupt data";
    case GEAR_ERR_FORMAT_CRC: return "GEAR_ERR_FORMAT_CRC: checksum mismatch";
    case GEAR_ERR_INTERNAL: return "GEAR_ERR_INTERNAL: internal error (a libgear bug)";
    }
    return "unknown gear_status";
}

static _Thread_local char err_msg[512];

gear_status gear_fail(gear_status s, const char *fmt, ...)
{
    /* format into a temporary: the arguments may point into err_msg itself
     * (a caller wrapping the previous message with "%s") */
    char tmp[sizeof err_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    memcpy(err_msg, tmp, sizeof err_msg);
    gear_log(GEAR_LOG_DEBUG, "%s: %s", gear_status_string(s), err_msg);
    return s;
}

void gear_clear_error(void) { err_msg[0] = 0; }

const char *gear_last_error_message(void) { return err_msg; }

static gear_log_fn log_fn;
static void *log_user;

void gear_log_set(gear_log_fn fn, void *user)
{
    log_fn = fn;
    log_user = user;
}

static int env_log_level(void)
{
    const char *e = getenv("GEAR_LOG_LEVEL");
    if (!e || !*e) return GEAR_LOG_WARN;
    if (!strcmp(e, "error")) return GEAR_LOG_ERROR;
    if (!strcmp(e, "info")) return GEAR_LOG_INFO;
    if (!strcmp(e, "debug")) return GEAR_LOG_DEBUG;
    if (e[0] >= '0' && e[0] <= '3' && !e[1]) return e[0] - '0';
    return GEAR_LOG_WARN;
}

void gear_log(gear_log_level level, const char *fmt, ...)
{
    char line[768];
    va_list ap;
    if (!log_fn && (int)level > env_log_level()) return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (log_fn) {
        log_fn(level, line, log_user);
    } else {
        static const char *names[] = {"error", "warn", "info", "debug"};
        fprintf(stderr, "libgear %s: %s\n", names[level & 3], line);
    }
}
