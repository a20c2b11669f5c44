// infer.c: model, weights and class names for predict and explain. A run's
// checkpoint brings its config.yaml (model shape and preprocessing as trained)
// and its recorded dataset (class names); --dataset/--data-root point elsewhere.
#include "cmd/infer.h"
#include <ctype.h>
#include <libgen.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "datasets/dataset.h"
#include "model/weights.h"
#include "train/checkpoint.h"

static int resolve_file(const char *who, const char *path, ResolvedConfig *out) {
    ConfigRequest rq = {.who = who, .config_path = path};
    return config_resolve(&rq, out);
}

// The config the checkpoint was trained with, with data taken from the command
// line when --dataset or --data-root was given (the run's own otherwise).
static int run_config(const CliArgs *cli, const InferSource *src, const DcalConfig *asked, DcalConfig *out) {
    char path[DCAL_PATH_MAX + 32], tmp[DCAL_PATH_MAX];
    static ResolvedConfig trained;
    snprintf(tmp, sizeof tmp, "%s", src->checkpoint);
    if (src->run_config) snprintf(path, sizeof path, "%s", src->run_config);
    else snprintf(path, sizeof path, "%s/config.yaml", dirname(tmp));
    if (access(src->checkpoint, F_OK) != 0) { dcal_err("%s: no such file", src->checkpoint); return 0; }
    if (access(path, R_OK) != 0) {
        dcal_err("%s: no config.yaml beside the checkpoint (pass --run-config FILE)", path);
        return 0;
    }
    if (!resolve_file(cli->cmd, path, &trained)) return 0;
    *out = trained.cfg;
    if (cli->dataset || cli->data_root) {
        snprintf(out->data.dataset, sizeof out->data.dataset, "%s", asked->data.dataset);
        snprintf(out->data.root, sizeof out->data.root, "%s", asked->data.root);
    }
    snprintf(out->train.device, sizeof out->train.device, "%s", asked->train.device);
    config_use_precision(out, asked->train.precision);
    return 1;
}

// One class name a line: CUB's classes.txt ("1 001.Black_footed_Albatross") or bare names.
static char **names_from_file(const char *path, int C) {
    size_t len;
    char *text = read_file(path, &len);
    if (!text) { dcal_err("%s: no such file (--classes)", path); return NULL; }
    char **names = xcalloc((size_t)C, sizeof(char *));
    int n = 0;
    for (char *line = strtok(text, "\r\n"); line && n < C; line = strtok(NULL, "\r\n")) {
        while (isspace((unsigned char)*line)) line++;
        if (!*line) continue;
        char *rest = line;
        while (isdigit((unsigned char)*rest)) rest++;
        if (rest > line && (*rest == ' ' || *rest == '\t')) line = rest + strspn(rest, " \t");
        names[n++] = xstrdup(line);
    }
    free(text);
    for (int k = n; k < C; k++) {
        char buf[32];
        snprintf(buf, sizeof buf, "class_%d", k);
        names[k] = xstrdup(buf);
    }
    if (n < C) fprintf(stderr, "dcal: %s: %d class names for %d classes; the rest are numbered\n", path, n, C);
    return names;
}

// The dataset's names when its index can be read and has the model's classes; else NULL (a note says why).
static char **names_from_dataset(const DataConfig *data, int C) {
    struct stat sb;
    if (stat(data->root, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "dcal: no class names: dataset root %s is not a directory (pass --data-root DIR or "
                        "--classes FILE); printing class ids\n", data->root);
        return NULL;
    }
    Dataset ds;
    if (!dataset_open_lenient(&ds, data)) return NULL;
    char **names = NULL;
    if (ds.num_classes == C) {
        names = ds.class_names;
        ds.class_names = NULL;
    } else {
        fprintf(stderr, "dcal: no class names: dataset %s has %d classes, the model %d; printing class ids\n", ds.root,
                ds.num_classes, C);
    }
    dataset_free(&ds);
    return names;
}

static void find_names(Infer *in, const InferSource *src) {
    in->names = src->classes ? names_from_file(src->classes, in->C) : names_from_dataset(&in->cfg.data, in->C);
    if (in->names) return;
    in->names = xcalloc((size_t)in->C, sizeof(char *));
    for (int k = 0; k < in->C; k++) {
        char buf[32];
        snprintf(buf, sizeof buf, "class_%d", k);
        in->names[k] = xstrdup(buf);
    }
}

// Pretrained weights with their own classifier: backbone, then head.*. No init
// first (86M random draws for ViT-B): GLCA's head stays 0, and predict scores SA only.
static int load_pretrained(Infer *in, const char *path) {
    return weights_load_pretrained(&in->m, path) && weights_load_head(&in->m, path);
}

static int load_weights(Infer *in, const InferSource *src, int B) {
    const Backend *be = backend_get(in->cfg.train.device);
    if (!be || !be->set_precision(in->cfg.train.precision)) return 0;
    if (!backend_set_attention(be, in->cfg.train.attention)) return 0;
    if (!model_build(&in->m, &in->cfg.model, be)) return 0;
    int ok = src->checkpoint ? checkpoint_load(src->checkpoint, &in->m, NULL, NULL, NULL)
                             : load_pretrained(in, src->pretrained);
    if (!ok || !model_alloc_activations(&in->m, B, false, false)) { model_free(&in->m); return 0; }
    return 1;
}

int infer_open(Infer *in, const CliArgs *cli, const InferSource *src, int B) {
    memset(in, 0, sizeof *in);
    if (!src->checkpoint == !src->pretrained) {
        dcal_err("%s: give --checkpoint FILE (a run's) or --pretrained FILE (from `dcal convert --keep-head`)", cli->cmd);
        return 0;
    }
    ConfigRequest rq = cli_request(cli);
    rq.device_facts = cli_device_facts;   // train.precision=auto → the backend's best
    static ResolvedConfig asked;
    if (!config_resolve(&rq, &asked)) return 0;
    if (src->checkpoint) {
        if (!run_config(cli, src, &asked.cfg, &in->cfg)) return 0;
    } else {
        in->cfg = asked.cfg;
        if (access(src->pretrained, F_OK) != 0) { dcal_err("%s: no such file", src->pretrained); return 0; }
    }
    if (!load_weights(in, src, B)) return 0;
    in->C = in->cfg.model.num_classes;
    in->have_glca = in->cfg.model.glca_blocks > 0 && src->checkpoint;   // converted weights train no GLCA head
    find_names(in, src);
    return 1;
}

void infer_close(Infer *in) {
    for (int k = 0; in->names && k < in->C; k++) free(in->names[k]);
    free(in->names);
    model_free(&in->m);
    memset(in, 0, sizeof *in);
}

int infer_load_image(const Infer *in, const char *path, float *out) {
    return image_load(path, &in->cfg.data, false, 0, 0, 0, out);
}

int infer_branch(const char *s, Branch *br) {
    static const char *const names[] = {"sa", "glca", "sa+glca"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, names[i])) { *br = (Branch)i; return 1; }
    dcal_err("--branch '%s': expected sa, glca or sa+glca", s);
    return 0;
}

