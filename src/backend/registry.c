// registry.c: the backends compiled into this binary, and the one place that
// chooses among them by name at run time (train.device, bench, tests).
//
// The list comes from CMake (backend_list.h in the build directory, see
// CMakeLists.txt): DCAL_BACKENDS(X) expands X(symbol) once per compiled-in
// backend, best first, CPU last. No #ifdef here: a backend that is not built is
// simply not in the list.
#include <string.h>
#include "core/common.h"
#include "backend/backend.h"
#include "backend_list.h"

#define DECLARE(sym) extern const Backend sym;
DCAL_BACKENDS(DECLARE)
#undef DECLARE

#define ENTRY(sym) &sym,
static const Backend *const g_backends[] = {DCAL_BACKENDS(ENTRY)};
#undef ENTRY

// Every backend dcal knows, built or not, and why a build may lack it: a request
// for a known name that is not compiled in says how to get it.
static const struct {
    const char *name, *not_built;
} g_known[] = {
    {"cpu", "this dcal was built without the CPU backend"},
    {"cuda", "this dcal was built without CUDA (DCAL_CUDA=OFF)"},
};

int backend_count(void) { return (int)(sizeof g_backends / sizeof g_backends[0]); }

const Backend *backend_at(int i) { return i >= 0 && i < backend_count() ? g_backends[i] : NULL; }

static const Backend *compiled(const char *name) {
    for (int i = 0; i < backend_count(); i++)
        if (!strcmp(g_backends[i]->name, name)) return g_backends[i];
    return NULL;
}

static const Backend *pick_auto(void) {
    char why[256];
    for (int i = 0; i < backend_count(); i++)
        if (g_backends[i]->available(why, sizeof why)) return g_backends[i];
    dcal_err("no backend is available on this machine");   // not while CPU is built: it always is
    return NULL;
}

const Backend *backend_get(const char *name) {
    if (!strcmp(name, "auto")) return pick_auto();
    const Backend *be = compiled(name);
    if (be) {
        char why[256] = "";
        if (be->available(why, sizeof why)) return be;
        dcal_err("device '%s' requested but %s (use --set train.device=cpu)", name, why);
        return NULL;
    }
    for (size_t i = 0; i < sizeof g_known / sizeof g_known[0]; i++)
        if (!strcmp(g_known[i].name, name)) {
            dcal_err("device '%s' requested but %s", name, g_known[i].not_built);
            return NULL;
        }
    dcal_err("unknown device '%s' (expected auto, cpu or cuda)", name);
    return NULL;
}

// train.attention: "dcal" runs everywhere; another choice must be taken by the backend here.
int backend_set_attention(const Backend *be, const char *impl) {
    char why[256] = "only dcal's attention";
    if (!strcmp(impl, "dcal") ? (!be->set_attention || be->set_attention(impl, why, sizeof why))
                              : be->set_attention && be->set_attention(impl, why, sizeof why))
        return 1;
    dcal_err("train.attention=%s: the %s backend cannot run it: %s (use train.attention=dcal)", impl, be->name, why);
    return 0;
}
