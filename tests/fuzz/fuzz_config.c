// fuzz_config.c: the YAML config loader (config_load on a file), then what a
// run does next with an accepted config: config_finalize, and the resolved
// YAML it writes into the run directory, which must load back to the same text.
#include <string.h>
#include "config/config.h"
#include "fuzz_util.h"

// The resolved YAML without its first line (which names the source file).
static char *resolved_yaml(const DcalConfig *c) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f || !config_write_yaml(c, f)) abort();
    fclose(f);
    return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 16384) return -1;   // configs are short; longer inputs only slow the search
    char path[700], path2[700];
    fuzz_path(path, sizeof path, "c.yaml");
    fuzz_path(path2, sizeof path2, "resolved.yaml");
    fuzz_write(path, data, size);
    static DcalConfig c, c2;   // large (paths, overrides): not on the stack
    config_defaults(&c);
    if (!config_load(&c, path)) return 0;
    config_finalize(&c);
    char *text = resolved_yaml(&c);
    fuzz_write(path2, (const uint8_t *)text, strlen(text));
    config_defaults(&c2);
    if (!config_load(&c2, path2)) {
        fprintf(stderr, "fuzz_config: the resolved YAML of an accepted config does not load back:\n%s\n", text);
        abort();
    }
    char *text2 = resolved_yaml(&c2);
    const char *a = strchr(text, '\n'), *b = strchr(text2, '\n');
    if (!a || !b || strcmp(a, b)) {
        fprintf(stderr, "fuzz_config: resolved YAML changes on reload:\n%s\n---\n%s\n", text, text2);
        abort();
    }
    free(text);
    free(text2);
    return 0;
}
