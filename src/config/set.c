// set.c: "--set key.sub=value" overrides. Same field table and value parsers
// as the YAML loader; a list value (data.mean, data.std) is "a,b,c". Each
// accepted override is recorded in order (the run's config.yaml names them).
#include <string.h>
#include "config/fields.h"

// "a,b,c" → up to 3 items in buf; returns how many were given (may exceed 3).
// Every comma separates, so an empty item counts (and its parser refuses it);
// -1 when the value does not fit buf (nothing may be cut off silently).
static int split_list(const char *val, char *buf, size_t cap, char *items[3]) {
    if (strlen(val) >= cap) return -1;
    strcpy(buf, val);
    int n = 0;
    for (char *s = buf;; n++) {
        char *comma = strchr(s, ',');
        if (comma) *comma = 0;
        if (n < 3) items[n] = s;
        if (!comma) return n + 1;
        s = comma + 1;
    }
}

int config_set(DcalConfig *c, const char *assignment) {
    char where[300];
    snprintf(where, sizeof where, "--set %s", assignment);
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment) {
        dcal_err("%s: expected key.sub=value", where);
        return 0;
    }
    char key[64];
    size_t kl = (size_t)(eq - assignment);
    if (kl >= sizeof key) { dcal_err("%s: key too long", where); return 0; }
    memcpy(key, assignment, kl);
    key[kl] = 0;
    const Field *f = config_field(key);
    if (!f) {
        const char *s = config_suggest(key);
        if (s) dcal_err("%s: unknown key '%s' (did you mean '%s'?)", where, key, s);
        else dcal_err("%s: unknown key '%s'", where, key);
        return 0;
    }
    const char *val = eq + 1;
    int ok;
    if (f->type == F_F3) {
        char buf[192], *items[3] = {0};
        int n = split_list(val, buf, sizeof buf, items);
        if (n < 0) { dcal_err("%s: value too long (%zu characters)", where, strlen(val)); return 0; }
        ok = config_field_set(c, f, where, (const char *const *)items, n);
    } else {
        ok = config_field_set(c, f, where, &val, 1);
    }
    if (!ok) return 0;
    if (c->n_overrides >= DCAL_MAX_OVERRIDES) { dcal_err("%s: too many --set overrides", where); return 0; }
    if (strlen(assignment) >= sizeof c->overrides[0]) {   // recorded whole or not at all
        dcal_err("%s: too long to record (%zu characters, at most %zu)", where, strlen(assignment),
                 sizeof c->overrides[0] - 1);
        return 0;
    }
    snprintf(c->overrides[c->n_overrides++], sizeof c->overrides[0], "%s", assignment);
    return 1;
}
