// write.c: DcalConfig → YAML that config_load reads back to the same struct
// (doubles with 17 significant digits, floats with 9). The run directory's
// config.yaml is this text; its header names the source and each --set.
#include <string.h>
#include "config/fields.h"

static void write_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void write_value(FILE *f, const Field *fd, const char *base) {
    switch (fd->type) {
    case F_INT: fprintf(f, "%d", *(const int *)base); break;
    case F_U64: fprintf(f, "%llu", (unsigned long long)*(const uint64_t *)base); break;
    case F_DBL: fprintf(f, "%.17g", *(const double *)base); break;
    case F_BOOL: fputs(*(const bool *)base ? "true" : "false", f); break;
    case F_STR: write_str(f, base); break;
    case F_RETIRED: break;   // never written
    case F_F3: {
        const float *v = (const float *)base;
        fprintf(f, "[%.9g, %.9g, %.9g]", v[0], v[1], v[2]);
        break;
    }
    }
}

static void write_deviations(const DcalConfig *c, FILE *f) {
    if (!c->n_deviations) return;
    fputs("deviations:\n", f);
    for (int i = 0; i < c->n_deviations; i++) {
        fputs("  - rule: ", f);
        write_str(f, c->deviations[i].rule);
        fputs("\n    reason: ", f);
        write_str(f, c->deviations[i].reason);
        fputc('\n', f);
    }
}

int config_write_yaml(const DcalConfig *c, FILE *f) {
    fprintf(f, "# dcal resolved config (source: %s)\n", c->source[0] ? c->source : "defaults");
    for (int i = 0; i < c->n_overrides; i++) fprintf(f, "# --set %s\n", c->overrides[i]);
    char section[16] = "";
    for (int i = 0; i < config_n_fields; i++) {
        const Field *fd = &config_fields[i];
        if (fd->type == F_RETIRED) continue;
        const char *dot = strchr(fd->key, '.');
        size_t sl = (size_t)(dot - fd->key);
        if (strncmp(section, fd->key, sl) || section[sl]) {   // first key of a new section
            memcpy(section, fd->key, sl);
            section[sl] = 0;
            fprintf(f, "%s:\n", section);
        }
        fprintf(f, "  %s: ", dot + 1);
        write_value(f, fd, (const char *)c + fd->off);
        fputc('\n', f);
    }
    write_deviations(c, f);
    return ferror(f) ? 0 : 1;
}
