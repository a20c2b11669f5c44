// unit_json.c: the JSON reader (types, numbers, escapes, surrogates, every
// rejection class with its byte offset, depth limit, duplicate keys) and the
// JsonW writer (layouts, escaping, numbers, misuse), and round trips.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "core/json.h"
#include "testutil.h"

static Json parse_ok(const char *text, int flags) {
    Json v;
    JsonError e;
    int ok = json_parse(text, strlen(text), flags, &v, &e);
    ck_assert_msg(ok, "'%s' rejected at %zu: %s", text, e.offset, e.msg);
    return v;
}

START_TEST(types_and_lookups) {
    Json v = parse_ok(" {\"s\": \"hi\", \"n\": -12.5, \"t\": true, \"f\": false, \"z\": null,\n"
                      "  \"a\": [1, \"two\", [], {}], \"o\": {\"k\": \"v\"}} ", 0);
    ck_assert_int_eq(v.type, JSON_OBJECT);
    ck_assert_int_eq(v.len, 7);
    ck_assert_int_eq((int)v.pos, 1);
    ck_assert_str_eq(json_str(&v, "s"), "hi");
    ck_assert_int_eq((int)json_get(&v, "s")->pos, 7);
    const Json *n = json_get(&v, "n");
    ck_assert(n->type == JSON_NUMBER && n->num == -12.5 && !n->is_int);
    ck_assert_str_eq(n->raw, "-12.5");
    ck_assert(json_get(&v, "t")->type == JSON_BOOL && json_get(&v, "t")->b);
    ck_assert(json_get(&v, "f")->type == JSON_BOOL && !json_get(&v, "f")->b);
    ck_assert_int_eq(json_get(&v, "z")->type, JSON_NULL);
    const Json *a = json_get(&v, "a");
    ck_assert_int_eq(a->len, 4);
    ck_assert(json_at(a, 0)->is_int && json_at(a, 0)->i == 1);
    ck_assert_str_eq(json_at(a, 1)->s, "two");
    ck_assert(json_at(a, 2)->type == JSON_ARRAY && json_at(a, 2)->len == 0);
    ck_assert(json_at(a, 3)->type == JSON_OBJECT && json_at(a, 3)->len == 0);
    ck_assert_ptr_null(json_at(a, 4));
    ck_assert_ptr_null(json_at(a, -1));
    ck_assert_ptr_null(json_at(&v, 0));           // not an array
    ck_assert_str_eq(json_str(json_get(&v, "o"), "k"), "v");
    ck_assert_ptr_null(json_get(&v, "missing"));
    ck_assert_ptr_null(json_str(&v, "n"));        // not a string
    ck_assert_ptr_null(json_get(a, "s"));         // not an object
    ck_assert_ptr_null(json_get(NULL, "s"));
    ck_assert_str_eq(json_type_name(JSON_ARRAY), "array");
    json_free(&v);
    ck_assert_int_eq(v.len, 0);
}
END_TEST

START_TEST(numbers) {
    Json v = parse_ok("[9223372036854775807, -9223372036854775808, 9223372036854775808, 9007199254740993,"
                      " -0, 0, 1.50E+3, 1e-400, 12e2]", 0);
    ck_assert(v.items[0].is_int && v.items[0].i == INT64_MAX);
    ck_assert(v.items[1].is_int && v.items[1].i == INT64_MIN);
    ck_assert(!v.items[2].is_int && v.items[2].num == 9223372036854775808.0);   // too big: double only
    ck_assert(v.items[3].is_int && v.items[3].i == 9007199254740993LL);          // 2^53 + 1 exact ...
    ck_assert(v.items[3].num == 9007199254740992.0);                            // ... the double is not
    ck_assert_str_eq(v.items[3].raw, "9007199254740993");
    ck_assert(v.items[4].is_int && v.items[4].i == 0 && signbit(v.items[4].num));
    ck_assert(v.items[5].is_int && v.items[5].i == 0);
    ck_assert(!v.items[6].is_int && v.items[6].num == 1500.0);
    ck_assert_str_eq(v.items[6].raw, "1.50E+3");
    ck_assert(v.items[7].num == 0.0);                                           // underflow is fine
    ck_assert(!v.items[8].is_int && v.items[8].num == 1200.0);                  // exponent: not integer syntax
    json_free(&v);
}
END_TEST

START_TEST(strings_and_surrogates) {
    Json v = parse_ok("[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\", \"\\u00e9\\u20AC\", \"\\ud83d\\ude00\", \"a\\u0000b\","
                      " \"caf\xc3\xa9 \xf0\x9f\x98\x80\", \"\"]", 0);
    ck_assert_str_eq(v.items[0].s, "\"\\/\b\f\n\r\t");
    ck_assert_str_eq(v.items[1].s, "\xc3\xa9\xe2\x82\xac");
    ck_assert_str_eq(v.items[2].s, "\xf0\x9f\x98\x80");                          // U+1F600 from a pair
    ck_assert_int_eq((int)v.items[3].slen, 3);
    ck_assert(!memcmp(v.items[3].s, "a\0b", 4));
    ck_assert_str_eq(v.items[4].s, "caf\xc3\xa9 \xf0\x9f\x98\x80");              // raw UTF-8 passes
    ck_assert_str_eq(v.items[5].s, "");
    json_free(&v);
    v = parse_ok("{\"k\\u00e9y\": 1}", 0);                                       // keys are decoded too
    ck_assert_ptr_nonnull(json_get(&v, "k\xc3\xa9y"));
    json_free(&v);
}
END_TEST

// Every class of malformed text, with the byte offset the error names.
START_TEST(rejections) {
    static const struct { const char *text; size_t len; size_t off; const char *msg; } cases[] = {
        {"", 0, 0, "end of text"},
        {"  ", 2, 2, "end of text"},
        {"{\"a\":1} x", 9, 8, "trailing characters"},
        {"[1] [2]", 7, 4, "trailing characters"},
        {"[1,]", 4, 3, "unexpected character ']'"},
        {"{\"a\":1,}", 8, 7, "expected a string key"},
        {"{1:2}", 5, 1, "expected a string key"},
        {"{\"a\" 1}", 7, 5, "expected ':'"},
        {"[1 2]", 5, 3, "expected ',' or ']'"},
        {"{\"a\":1 \"b\":2}", 13, 7, "expected ',' or '}'"},
        {"[1", 2, 2, "expected ',' or ']'"},
        {"\"a\tb\"", 5, 2, "control character 0x09"},
        {"\"a\nb\"", 5, 2, "control character 0x0a"},
        {"\"\\x\"", 4, 1, "bad escape '\\x'"},
        {"\"\\u12G4\"", 8, 1, "bad \\u escape"},
        {"\"\\u12\"", 6, 1, "bad \\u escape"},
        {"\"\\ud800\"", 8, 1, "lone high surrogate"},
        {"\"ab\\ud800\\u0041\"", 16, 3, "lone high surrogate"},
        {"\"\\udc00\"", 8, 1, "lone low surrogate"},
        {"\"abc", 4, 0, "unterminated string"},
        {"\"abc\\\"", 6, 0, "unterminated string"},
        {"01", 2, 0, "leading zero"},
        {"-01", 3, 0, "leading zero"},
        {"+1", 2, 0, "unexpected character '+'"},
        {".5", 2, 0, "unexpected character '.'"},
        {"1.", 2, 0, "expected a digit after '.'"},
        {"1.e5", 4, 0, "expected a digit after '.'"},
        {"1e", 2, 0, "exponent"},
        {"1e+", 3, 0, "exponent"},
        {"-", 1, 0, "expected a digit"},
        {"[1e400]", 7, 1, "out of range"},
        {"nan", 3, 0, "unexpected character 'n'"},
        {"Infinity", 8, 0, "unexpected character 'I'"},
        {"tru", 3, 0, "unexpected character 't'"},
        {"[True]", 6, 1, "unexpected character 'T'"},
        {"[nul]", 5, 1, "unexpected character 'n'"},
        {"\"\xff\"", 3, 1, "invalid UTF-8 byte 0xff"},
        {"\"a\xc0\xaf\"", 5, 2, "invalid UTF-8"},                 // overlong '/'
        {"\"\xed\xa0\x80\"", 5, 1, "invalid UTF-8"},              // a surrogate encoded in UTF-8
        {"\"\xe2\x82\"", 4, 1, "invalid UTF-8"},                  // cut sequence
        {"\"\xf4\x90\x80\x80\"", 6, 1, "invalid UTF-8"},          // above U+10FFFF
        {"[1,\0]", 5, 3, "unexpected byte 0x00"},
        {"[\"a\0b\"]", 7, 3, "control character 0x00"},
        {"{\"a\":1,\"b\":2,\"a\":3}", 19, 17, "duplicate key \"a\""},
        {"[{\"x\":[], \"x\":{}}]", 18, 14, "duplicate key \"x\""},
        {"\xef\xbb\xbf{}", 5, 0, "unexpected byte 0xef"},          // no byte-order mark
        {"{\"a\\u0000b\": 1}", 15, 1, "\\u0000 in an object key"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Json v;
        JsonError e;
        int ok = json_parse(cases[i].text, cases[i].len, 0, &v, &e);
        ck_assert_msg(!ok, "case %zu accepted", i);
        ck_assert_msg(e.offset == cases[i].off && strstr(e.msg, cases[i].msg), "case %zu: at %zu: '%s' (want %zu: '%s')",
                      i, e.offset, e.msg, cases[i].off, cases[i].msg);
        ck_assert_int_eq(v.type, JSON_NULL);   // nothing left to free
        ck_assert_ptr_null(v.items);
    }
    Json v;
    ck_assert_int_eq(json_parse("[1,", 3, 0, &v, NULL), 0);   // err may be NULL
    ck_assert_int_eq(json_parse("[1]xyz", 3, 0, &v, NULL), 1);   // only len bytes are read
    json_free(&v);
}
END_TEST

START_TEST(duplicate_keys_allowed) {
    Json v = parse_ok("{\"a\": 1, \"b\": {\"c\": 1, \"c\": 2}, \"a\": 3}", JSON_ALLOW_DUP_KEYS);
    ck_assert_int_eq(json_dup_key(&v), 2);
    ck_assert_int_eq(json_get(&v, "a")->i, 1);   // the first wins
    ck_assert_int_eq(json_dup_key(json_get(&v, "b")), 1);
    ck_assert_int_eq(json_dup_key(json_get(&v, "a")), -1);
    json_free(&v);
    v = parse_ok("{\"z\": 0, \"y\": 0, \"x\": 0, \"y\": 0, \"z\": 0}", JSON_ALLOW_DUP_KEYS);
    ck_assert_int_eq(json_dup_key(&v), 3);       // the earliest repeat, whatever the sort order
    json_free(&v);
}
END_TEST

static char *nested(int depth) {
    char *s = malloc((size_t)depth * 2 + 1);
    for (int i = 0; i < depth; i++) { s[i] = '['; s[depth + i] = ']'; }
    s[2 * depth] = 0;
    return s;
}

START_TEST(depth_limit) {
    char *s = nested(JSON_MAX_DEPTH);
    Json v = parse_ok(s, 0);
    json_free(&v);
    free(s);
    s = nested(JSON_MAX_DEPTH + 1);
    JsonError e;
    ck_assert_int_eq(json_parse(s, strlen(s), 0, &v, &e), 0);
    ck_assert_int_eq((int)e.offset, JSON_MAX_DEPTH);
    ck_assert_ptr_nonnull(strstr(e.msg, "nested deeper than 64"));
    free(s);
    // Objects count the same way.
    char obj[1024] = "";
    for (int i = 0; i <= JSON_MAX_DEPTH; i++) strcat(obj, "{\"a\":");
    strcat(obj, "1");
    for (int i = 0; i <= JSON_MAX_DEPTH; i++) strcat(obj, "}");
    ck_assert_int_eq(json_parse(obj, strlen(obj), 0, &v, &e), 0);
    ck_assert_int_eq((int)e.offset, 5 * JSON_MAX_DEPTH);
}
END_TEST

static void build_sample(JsonW *w) {
    jw_begin_object(w);
    jw_kv_string(w, "s", "a\"b\\c/d");
    jw_kv_int(w, "i", -7);
    jw_key(w, "arr");
    jw_begin_array(w);
    jw_int(w, INT64_MIN);
    jw_uint(w, UINT64_MAX);
    jw_double(w, "%.6g", 0.1);
    jw_bool(w, true);
    jw_null(w);
    jw_raw(w, "{\"r\":[]}");
    jw_end_array(w);
    jw_key(w, "o");
    jw_begin_object(w);
    jw_end_object(w);
    jw_end_object(w);
}

START_TEST(writer_layouts) {
    JsonW w;
    jw_init(&w, false, 0);
    build_sample(&w);
    ck_assert_str_eq(jw_text(&w, NULL), "{\"s\":\"a\\\"b\\\\c/d\",\"i\":-7,\"arr\":[-9223372036854775808,"
                                        "18446744073709551615,0.1,true,null,{\"r\":[]}],\"o\":{}}");
    jw_free(&w);
    jw_init(&w, true, 0);
    build_sample(&w);
    ck_assert_str_eq(jw_text(&w, NULL), "{\"s\": \"a\\\"b\\\\c/d\", \"i\": -7, \"arr\": [-9223372036854775808, "
                                        "18446744073709551615, 0.1, true, null, {\"r\":[]}], \"o\": {}}");
    jw_free(&w);
    jw_init(&w, true, 1);
    build_sample(&w);
    jw_append(&w, "\n");
    ck_assert_str_eq(jw_text(&w, NULL), "{\n  \"s\": \"a\\\"b\\\\c/d\",\n  \"i\": -7,\n  \"arr\": [-9223372036854775808, "
                                        "18446744073709551615, 0.1, true, null, {\"r\":[]}],\n  \"o\": {}\n}\n");
    jw_free(&w);
    // One nested container on its own lines; empty ones stay "[]".
    jw_init(&w, true, 1);
    jw_begin_object(&w);
    jw_key(&w, "d");
    jw_multiline_next(&w);
    jw_begin_array(&w);
    jw_int(&w, 1);
    jw_begin_object(&w);
    jw_kv_int(&w, "x", 2);
    jw_end_object(&w);
    jw_end_array(&w);
    jw_key(&w, "e");
    jw_multiline_next(&w);
    jw_begin_array(&w);
    jw_end_array(&w);
    jw_end_object(&w);
    ck_assert_str_eq(jw_text(&w, NULL), "{\n  \"d\": [\n    1,\n    {\"x\": 2}\n  ],\n  \"e\": []\n}");
    jw_free(&w);
    jw_init(&w, false, 0);
    ck_assert_str_eq(jw_text(&w, NULL), "");
    jw_free(&w);
}
END_TEST

START_TEST(writer_strings_and_numbers) {
    JsonW w;
    jw_init(&w, false, 0);
    jw_begin_array(&w);
    jw_string(&w, "\x01\t\n\x1f\x7f");
    jw_string(&w, "caf\xc3\xa9 \xf0\x9f\x98\x80");
    jw_string(&w, "bad \xff \xc3 end");   // invalid UTF-8 → U+FFFD per byte
    jw_string(&w, NULL);
    jw_double(&w, "%.3e", 1234.56);
    jw_double(&w, "%.1f", -0.04);
    jw_double(&w, "%.6g", 1e-5);
    jw_double(&w, "%.6g", NAN);
    jw_double(&w, "%.6g", -INFINITY);
    jw_end_array(&w);
    size_t n;
    const char *t = jw_text(&w, &n);
    ck_assert_str_eq(t, "[\"\\u0001\\u0009\\u000a\\u001f\x7f\",\"caf\xc3\xa9 \xf0\x9f\x98\x80\","
                        "\"bad \xef\xbf\xbd \xef\xbf\xbd end\",\"\",1.235e+03,-0.0,1e-05,null,null]");
    ck_assert_int_eq((int)n, (int)strlen(t));
    Json v = parse_ok(t, 0);   // and it reads back
    ck_assert_str_eq(v.items[0].s, "\x01\t\n\x1f\x7f");
    ck_assert(v.items[4].num == 1235.0 && v.items[6].num == 1e-5);
    ck_assert_int_eq(v.items[7].type, JSON_NULL);
    json_free(&v);
    // jw_fwrite writes exactly the text.
    FILE *f = tmpfile();
    ck_assert(jw_fwrite(&w, f));
    ck_assert_int_eq((int)ftell(f), (int)n);
    fclose(f);
    jw_free(&w);
}
END_TEST

// Every byte value that may appear in a C string, and a few code points, survive a round trip.
START_TEST(round_trip) {
    char all[200];
    int k = 0;
    for (int c = 1; c < 0x80; c++) all[k++] = (char)c;
    strcpy(all + k, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf");
    JsonW w;
    jw_init(&w, true, 1);
    jw_begin_object(&w);
    jw_kv_string(&w, all, all);
    jw_kv_int(&w, "big", 9007199254740993LL);
    jw_kv_double(&w, "d", "%.17g", 0.1);
    jw_key(&w, "nest");
    jw_begin_array(&w);
    jw_begin_array(&w);
    jw_end_array(&w);
    jw_end_array(&w);
    jw_end_object(&w);
    Json v = parse_ok(jw_text(&w, NULL), 0);
    ck_assert_str_eq(json_str(&v, all), all);
    ck_assert(json_get(&v, "big")->i == 9007199254740993LL);
    ck_assert(json_get(&v, "d")->num == 0.1);
    ck_assert_int_eq(json_at(json_get(&v, "nest"), 0)->type, JSON_ARRAY);
    json_free(&v);
    jw_free(&w);
}
END_TEST

// Writer misuse is a programming error: it dies (exit 1) rather than emit bad JSON.
START_TEST(writer_value_without_key) {
    JsonW w;
    jw_init(&w, false, 0);
    jw_begin_object(&w);
    jw_int(&w, 1);
}
END_TEST
START_TEST(writer_mismatched_close) {
    JsonW w;
    jw_init(&w, false, 0);
    jw_begin_array(&w);
    jw_end_object(&w);
}
END_TEST
START_TEST(writer_bad_format) {
    JsonW w;
    jw_init(&w, false, 0);
    jw_double(&w, "%.2f%%", 1.0);   // "1.00%"
}
END_TEST

int main(void) {
    Suite *s = suite_create("json");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, types_and_lookups);
    tcase_add_test(tc, numbers);
    tcase_add_test(tc, strings_and_surrogates);
    tcase_add_test(tc, rejections);
    tcase_add_test(tc, duplicate_keys_allowed);
    tcase_add_test(tc, depth_limit);
    tcase_add_test(tc, writer_layouts);
    tcase_add_test(tc, writer_strings_and_numbers);
    tcase_add_test(tc, round_trip);
    tcase_add_exit_test(tc, writer_value_without_key, 1);
    tcase_add_exit_test(tc, writer_mismatched_close, 1);
    tcase_add_exit_test(tc, writer_bad_format, 1);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
