// fields.h: the one table of config keys (config/ internal). The YAML loader
// (yaml.c), the --set parser (set.c) and the YAML writer (write.c) all walk
// it, so the three can never disagree on a key, its type or its range.
#pragma once
#include <stddef.h>
#include "config/config.h"

// F_RETIRED: a key dcal no longer has. Files written before it went (a run's
// config.yaml) still load when it holds the only value that ever ran (0); any
// other value is refused with the reason (choices), and it is never written.
typedef enum { F_INT, F_U64, F_DBL, F_BOOL, F_STR, F_F3, F_RETIRED } FieldType;

typedef struct {
    const char *key;           // "section.name"
    FieldType type;
    size_t off, size;          // offset in DcalConfig; size for strings
    double lo, hi;             // inclusive range for numbers
    const char *choices;       // "a|b|c" for enumerated strings, NULL = free text
} Field;

// A named backbone: model.preset fixes these four numbers.
typedef struct {
    const char *name;
    int dim, heads, depth, mlp;
} Preset;

// Upper bound on keys + sections, for the loader's "seen" list (checked in fields.c).
#define CONFIG_MAX_KEYS 96

extern const Field config_fields[];
extern const int config_n_fields;
extern const char *const config_sections[];
extern const int config_n_sections;

const Field *config_field(const char *key);
// The preset called name, or NULL (custom).
const Preset *config_preset(const char *name);
// A known section within edit distance 2 of name, or NULL.
const char *config_suggest_section(const char *name);
// Parse the text of one value into field f. where = "file:line:col" or
// "--set k=v" (prefix of every error line). An F_F3 value arrives as 3 items.
int config_field_set(DcalConfig *c, const Field *f, const char *where, const char *const *items, int n_items);
