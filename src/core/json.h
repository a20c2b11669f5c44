// json.h: the one JSON reader and writer (safetensors headers, manifest.json,
// metrics.jsonl, `dcal audit`).
//
// Reader: strict RFC 8259 into a small tree. Rejected: trailing text, control
// characters and bad escapes in strings, lone surrogates, invalid UTF-8,
// numbers outside the grammar (leading zeros, "+1", ".5", "nan") or out of
// double range, nesting deeper than JSON_MAX_DEPTH, duplicate keys (unless
// JSON_ALLOW_DUP_KEYS), U+0000 in object keys (keys are C strings; string
// values keep it, see slen). Every failure carries the byte offset it was found at.
//
// Writer: a growable buffer. Layout is compact ({"a":1,"b":[2,3]}) or spaced
// (", " and ": "), and containers opened above a chosen depth put one member
// per line; output is reproducible byte for byte.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 64

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } JsonType;

typedef struct Json {
    JsonType type;
    size_t pos;                // byte offset of the value's first character in the text
    bool b;                    // JSON_BOOL
    double num;                // JSON_NUMBER (nearest double)
    bool is_int;               // the number is written as an integer and fits int64 ...
    int64_t i;                 // ... with this exact value (2^53 + 1 stays exact)
    char *raw;                 // JSON_NUMBER: the text as written
    char *s;                   // JSON_STRING: decoded UTF-8, NUL-terminated
    size_t slen;               // its length in bytes (a \u0000 escape makes it exceed strlen)
    int len;                   // members of an array / object
    char **keys;               // object keys [len], decoded
    struct Json *items;        // members [len]
} Json;

typedef struct {
    size_t offset;             // byte offset into the text
    char msg[120];             // what was wrong there
} JsonError;

enum { JSON_ALLOW_DUP_KEYS = 1 };   // parse flag: keep repeated keys (the caller checks them)

// Parse text[0, len) as exactly one JSON value (whitespace around it allowed).
// 1 on success (free with json_free); 0 with *err filled and *out empty.
int json_parse(const char *text, size_t len, int flags, Json *out, JsonError *err);
void json_free(Json *v);

// Lookups: NULL when v is not of the right type or the member is absent.
const Json *json_get(const Json *obj, const char *key);     // first member named key
const char *json_str(const Json *obj, const char *key);     // member's string value
const Json *json_at(const Json *arr, int i);                // array element, 0 <= i < len
// Index of the first object member whose key appeared before it; -1 when none.
int json_dup_key(const Json *obj);
const char *json_type_name(JsonType t);

// ---- writer ------------------------------------------------------------------

typedef struct {
    char *s;                   // text so far, NUL-terminated (NULL before the first byte)
    size_t n, cap;
    bool spaced;               // ", " and ": " instead of "," and ":"
    int lines;                 // containers opened at depth < lines: one member per line
    int depth;
    int count[JSON_MAX_DEPTH]; // members written in each open container
    bool is_obj[JSON_MAX_DEPTH];
    bool multiline[JSON_MAX_DEPTH];   // one member per line in this container
    bool next_multiline;       // set by jw_multiline_next
    bool after_key;            // a key was written; its value comes next
} JsonW;

// lines = 0: everything on one line. lines = 1: the top-level container's
// members each on a line indented two spaces, nested containers inline.
void jw_init(JsonW *w, bool spaced, int lines);
void jw_free(JsonW *w);
// The next container opened puts one member per line too, whatever its depth.
void jw_multiline_next(JsonW *w);
void jw_begin_object(JsonW *w);
void jw_end_object(JsonW *w);
void jw_begin_array(JsonW *w);
void jw_end_array(JsonW *w);
void jw_key(JsonW *w, const char *key);
// NULL writes "". Control characters become \u00XX, '"' and '\\' are
// backslashed, invalid UTF-8 bytes become U+FFFD; everything else is verbatim.
void jw_string(JsonW *w, const char *s);
void jw_int(JsonW *w, int64_t v);
void jw_uint(JsonW *w, uint64_t v);
// printf format for one double, e.g. "%.6g". Non-finite values write null.
void jw_double(JsonW *w, const char *fmt, double v);
void jw_bool(JsonW *w, bool v);
void jw_null(JsonW *w);
void jw_raw(JsonW *w, const char *json);      // a value already formatted as JSON
void jw_append(JsonW *w, const char *text);   // bytes outside the JSON (padding, final newline)
// key + value in one call, for objects.
void jw_kv_string(JsonW *w, const char *key, const char *s);
void jw_kv_int(JsonW *w, const char *key, int64_t v);
void jw_kv_double(JsonW *w, const char *key, const char *fmt, double v);
// The text ("" when nothing was written); owned by w.
const char *jw_text(const JsonW *w, size_t *len);
int jw_fwrite(const JsonW *w, FILE *f);       // 1 when every byte was written
