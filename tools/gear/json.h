/*
 * json.h - the two small JSON pieces the gear tool needs:
 *  - a strict parser for untrusted input (the safetensors header), building
 *    a tree of objects, arrays, strings, numbers, true/false/null, with a
 *    depth limit and overflow-checked integers;
 *  - a writer of one JSON object per line (the tool's --json output).
 */
#ifndef GEAR_TOOL_JSON_H
#define GEAR_TOOL_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum json_type {
    JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT
} json_type;

typedef struct json_value {
    json_type type;
    int boolean;              /* JSON_BOOL */
    double number;            /* JSON_NUMBER */
    int is_uint;              /* JSON_NUMBER written as a non-negative integer that fits u64 */
    uint64_t uint;            /* its value when is_uint */
    char *str;                /* JSON_STRING, UTF-8, NUL-terminated (\u0000 is rejected) */
    size_t n;                 /* JSON_ARRAY / JSON_OBJECT: number of items */
    struct json_value *items; /* the n items (object: the values) */
    char **keys;              /* JSON_OBJECT: the n keys */
} json_value;

#define JSON_MAX_DEPTH 32

/* Parse exactly one JSON value from text[0..len) (surrounding whitespace
 * allowed, nothing else).  On success returns 0 and *out (free with
 * json_free); on failure returns -1 and writes a message with the byte
 * offset to err. */
int json_parse(const char *text, size_t len, json_value **out, char *err, size_t errlen);
void json_free(json_value *v);
/* First member named key of an object, or NULL. */
const json_value *json_get(const json_value *obj, const char *key);

/* JSON-lines writer: jo_begin, fields, nested jo_obj ... jo_end, jo_end. */
typedef struct json_out {
    FILE *f;
    int depth;
    int first[8];
} json_out;

void jo_begin(json_out *j, FILE *f);
void jo_obj(json_out *j, const char *key);   /* opens a nested object */
void jo_end(json_out *j);                    /* closes; the outermost ends the line */
void jo_str(json_out *j, const char *key, const char *v);   /* NULL writes null */
void jo_int(json_out *j, const char *key, long long v);
void jo_uint(json_out *j, const char *key, unsigned long long v);
void jo_num(json_out *j, const char *key, double v);        /* non-finite writes null */
void jo_bool(json_out *j, const char *key, int v);
/* Write s as a JSON string literal (quotes included). */
void json_write_string(FILE *f, const char *s);

#endif
