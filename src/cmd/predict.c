// predict.c: `dcal predict --checkpoint C IMAGES...` — the top-5 classes of
// each image, one line per image (or one JSON object per line with --json).
// Inference as in eval (MODEL.md §3): PWCA off, SA+GLCA by default.
// --tensor/--logits feed a preprocessed tensor and print raw logits, so dcal
// can be checked against another implementation (tests/e2e_timm.sh).
#include <stdlib.h>
#include <string.h>
#include "cmd/cmd.h"
#include "cmd/infer.h"
#include "core/json.h"
#include "core/safetensors.h"

#define TOPK 5
#define MAX_IMAGES 100000

static const char *images[MAX_IMAGES];
static int n_images;

static int add_image(CliArgs *a, const char *val) {
    if (n_images == MAX_IMAGES) { dcal_err("%s: more than %d images", a->cmd, MAX_IMAGES); return DCAL_EXIT_USAGE; }
    images[n_images++] = val;
    return CLI_OK;
}

typedef struct {
    Branch br;
    bool json, logits;
} PrintOpts;

static void print_logits(const char *name, const float *sa, const float *gl, int C, bool glca) {
    JsonW w;
    jw_init(&w, false, 0);
    jw_begin_object(&w);
    jw_kv_string(&w, "image", name);
    for (int h = 0; h < (glca ? 2 : 1); h++) {
        jw_key(&w, h ? "logits_glca" : "logits_sa");
        jw_begin_array(&w);
        for (int k = 0; k < C; k++) jw_double(&w, "%.9g", (h ? gl : sa)[k]);
        jw_end_array(&w);
    }
    jw_end_object(&w);
    jw_append(&w, "\n");
    jw_fwrite(&w, stdout);
    jw_free(&w);
}

static void print_top(const Infer *in, const char *name, const double *p, const int *idx, int k, Branch br) {
    JsonW w;
    jw_init(&w, false, 0);
    jw_begin_object(&w);
    jw_kv_string(&w, "image", name);
    jw_kv_string(&w, "branch", scores_branch_name(br));
    jw_key(&w, "top");
    jw_begin_array(&w);
    for (int j = 0; j < k; j++) {
        jw_begin_object(&w);
        jw_kv_int(&w, "class", idx[j]);
        jw_kv_string(&w, "name", in->names[idx[j]]);
        jw_kv_double(&w, "prob", "%.6f", p[idx[j]]);
        jw_end_object(&w);
    }
    jw_end_array(&w);
    jw_end_object(&w);
    jw_append(&w, "\n");
    jw_fwrite(&w, stdout);
    jw_free(&w);
}

// One image's line: its name, then "1. NAME 81.2%" for each of the top classes.
static void print_row(const Infer *in, const char *name, const float *sa, const float *gl, const PrintOpts *o) {
    if (o->logits) { print_logits(name, sa, gl, in->C, in->have_glca); return; }
    double *p = xmalloc((size_t)in->C * sizeof(double));
    int idx[TOPK], k = in->C < TOPK ? in->C : TOPK;
    scores_branch(sa, gl, in->C, o->br, p);
    scores_topk(p, in->C, k, idx);
    if (o->json) {
        print_top(in, name, p, idx, k, o->br);
    } else {
        printf("%s", name);
        for (int j = 0; j < k; j++) printf("  %d. %s %.1f%%", j + 1, in->names[idx[j]], 100 * p[idx[j]]);
        printf("\n");
    }
    free(p);
}

// Forward rows [0, rows) of img and print them; names[b] labels row b.
static void run_batch(Infer *in, const float *img, int rows, const char *const *names, const PrintOpts *o) {
    int C = in->C;
    float *sa = xmalloc(sizeof(float) * rows * C), *gl = xmalloc(sizeof(float) * rows * C);
    model_forward_infer(&in->m, img, rows, sa, gl, NULL);
    for (int b = 0; b < rows; b++) print_row(in, names[b], sa + (size_t)b * C, gl + (size_t)b * C, o);
    fflush(stdout);
    free(sa); free(gl);
}

static int predict_files(Infer *in, int B, const PrintOpts *o) {
    int S = in->cfg.model.img_size;
    size_t per = (size_t)3 * S * S;
    float *img = xmalloc(sizeof(float) * per * B);
    int ok = 1;
    for (int i = 0; i < n_images && ok; i += B) {
        int rows = n_images - i < B ? n_images - i : B;
        for (int b = 0; b < rows && ok; b++) ok = infer_load_image(in, images[i + b], img + per * b);
        if (ok) run_batch(in, img, rows, images + i, o);
    }
    free(img);
    return ok ? DCAL_EXIT_OK : DCAL_EXIT_FAIL;
}

// --tensor FILE: tensor "images" [n, 3, S, S], already preprocessed; rows are named "FILE[i]".
static int predict_tensor(Infer *in, const char *path, int B, const PrintOpts *o) {
    SafeTensors st;
    if (!st_load(&st, path)) return DCAL_EXIT_FAIL;
    const StTensor *t = st_find(&st, "images");
    int S = in->cfg.model.img_size;
    if (!t || t->ndim != 4 || t->shape[1] != 3 || t->shape[2] != S || t->shape[3] != S || t->shape[0] < 1) {
        dcal_err("%s: needs a tensor 'images' of shape [n,3,%d,%d] (model.img_size %d)", path, S, S, S);
        st_free(&st);
        return DCAL_EXIT_FAIL;
    }
    int n = (int)t->shape[0];
    size_t per = (size_t)3 * S * S;
    float *img = xmalloc(sizeof(float) * per * n);
    char **names = xmalloc(sizeof(char *) * n);
    int ok = st_read_f32(&st, t, img);
    for (int i = 0; i < n; i++) {
        names[i] = xmalloc(strlen(path) + 16);
        sprintf(names[i], "%s[%d]", path, i);
    }
    for (int i = 0; i < n && ok; i += B)
        run_batch(in, img + per * i, n - i < B ? n - i : B, (const char *const *)names + i, o);
    for (int i = 0; i < n; i++) free(names[i]);
    free(names); free(img);
    st_free(&st);
    return ok ? DCAL_EXIT_OK : DCAL_EXIT_FAIL;
}

static int run(const CliArgs *cli, const InferSource *src, const char *tensor, int B, PrintOpts *o) {
    Infer in;
    if (!infer_open(&in, cli, src, B)) return DCAL_EXIT_FAIL;
    if (!in.have_glca && o->br != BRANCH_SA) {
        fprintf(stderr, "dcal: predict: no trained GLCA branch (%s): scores are SA's\n",
                src->pretrained ? "converted weights" : "model.glca_blocks 0");
        o->br = BRANCH_SA;
    }
    int rc = tensor ? predict_tensor(&in, tensor, B, o) : predict_files(&in, B, o);
    infer_close(&in);
    return rc;
}

int cmd_predict(int argc, char **argv) {
    InferSource src = {0};
    const char *branch = "sa+glca", *batch = NULL, *tensor = NULL;
    int json = 0, logits = 0;
    const CliOpt extra[] = {
        {"", "IMAGE...", "JPEG or PNG files", NULL, NULL, add_image},
        {"--checkpoint", "FILE", "a run's checkpoint (its config.yaml beside it gives model and preprocessing)",
         &src.checkpoint, NULL, NULL},
        {"--run-config", "FILE", "the config the checkpoint was trained with (default: config.yaml beside it)",
         &src.run_config, NULL, NULL},
        {"--pretrained", "FILE", "instead: `dcal convert --keep-head` weights (shape from --config/--set)",
         &src.pretrained, NULL, NULL},
        {"--classes", "FILE", "class names, one a line or CUB's 'id name' (default: the run's dataset)", &src.classes,
         NULL, NULL},
        {"--branch", "B", "sa, glca or sa+glca (default: the paper's inference, sa+glca)", &branch, NULL, NULL},
        {"--json", NULL, "one JSON object per line", NULL, &json, NULL},
        {"--batch", "N", "images per forward pass (default 8)", &batch, NULL, NULL},
        {"--tensor", "FILE", "preprocessed input instead of images: safetensors 'images' [n,3,S,S]", &tensor, NULL,
         NULL},
        {"--logits", NULL, "print raw SA (and GLCA) logits as JSON lines (checking against another implementation)",
         NULL, &logits, NULL},
        {0},
    };
    CliArgs cli;
    n_images = 0;
    int rc = cli_parse(argc, argv,
                       "Classify images with a trained checkpoint: the top-5 classes with probabilities, one line per\n"
                       "image. Preprocessing as eval's (resize, centre crop, normalise; MODEL.md §5); scores are the\n"
                       "mean of softmax(SA) and softmax(GLCA), whose argmax is the paper's prediction (MODEL.md §3).",
                       extra, &cli);
    if (rc == CLI_HELP) return DCAL_EXIT_OK;
    if (rc != CLI_OK) return rc;
    PrintOpts o = {BRANCH_BOTH, json, logits};
    int B = batch ? atoi(batch) : 8;
    if (B < 1 || B > 4096) { dcal_err("predict: --batch must be an integer in 1..4096"); return DCAL_EXIT_USAGE; }
    if (!infer_branch(branch, &o.br)) return DCAL_EXIT_USAGE;
    if (!n_images == !tensor) {
        dcal_err("predict: give image files or --tensor FILE (see dcal predict --help)");
        return DCAL_EXIT_USAGE;
    }
    if (!tensor && n_images < B) B = n_images;
    return run(&cli, &src, tensor, B, &o);
}
