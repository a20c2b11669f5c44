// explain.c: `dcal explain --checkpoint C --image I.jpg [--out DIR]` — what
// DCAL looked at (MODEL.md §2): the attention rollout's CLS row over the image
// as a heat-map, the top-R patches GLCA selected (the rest dimmed, the chosen
// outlined), each captioned with the SA / GLCA / SA+GLCA predictions and class
// names, and their top 5 as JSON beside them: overlay_<image>_rollout.png and
// overlay_<image>_topr.png (drawn by run/overlay.c), the names `dcal report`
// embeds from a run directory.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "cmd/cmd.h"
#include "cmd/infer.h"
#include "core/json.h"
#include "train/explain.h"

// The top 5 of one branch as [{"class", "name", "prob"}].
static void json_top(JsonW *w, const Infer *in, const float *sa, const float *gl, Branch br) {
    double *p = xmalloc((size_t)in->C * sizeof(double));
    int idx[5], k = in->C < 5 ? in->C : 5;
    scores_branch(sa, gl, in->C, br, p);
    scores_topk(p, in->C, k, idx);
    jw_key(w, scores_branch_name(br));
    jw_begin_array(w);
    for (int j = 0; j < k; j++) {
        jw_begin_object(w);
        jw_kv_int(w, "class", idx[j]);
        jw_kv_string(w, "name", in->names[idx[j]]);
        jw_kv_double(w, "prob", "%.6f", p[idx[j]]);
        jw_end_object(w);
    }
    jw_end_array(w);
    free(p);
}

// Sidecar: the predictions of each branch, and which patches GLCA took (token t ≥ 1 is
// patch t−1 in raster order: row (t−1) / grid, column (t−1) % grid).
static int write_json(const char *path, const Infer *in, const char *image, const float *sa, const float *gl,
                      const int *sel, int K, const float *r) {
    JsonW w;
    jw_init(&w, true, 0);
    jw_begin_object(&w);
    jw_kv_string(&w, "image", image);
    jw_kv_int(&w, "img_size", in->cfg.model.img_size);
    jw_kv_int(&w, "grid", in->cfg.model.img_size / in->cfg.model.patch);
    jw_kv_double(&w, "top_r", "%g", in->cfg.model.top_r);
    jw_key(&w, "selected_tokens");
    jw_begin_array(&w);
    for (int k = 1; k <= K; k++) jw_int(&w, sel[k]);
    jw_end_array(&w);
    jw_key(&w, "rollout");   // the CLS row over the patches (token 1.. in raster order), what selection ranked
    jw_begin_array(&w);
    for (int t = 1; t < in->m.N; t++) jw_double(&w, "%.6g", r[t]);
    jw_end_array(&w);
    jw_key(&w, "predictions");
    jw_begin_object(&w);
    for (int b = 0; b < 3; b++) json_top(&w, in, sa, gl, (Branch)b);
    jw_end_object(&w);
    jw_end_object(&w);
    jw_append(&w, "\n");
    FILE *f = fopen(path, "w");
    int ok = f && jw_fwrite(&w, f);
    if (f && fclose(f) != 0) ok = 0;
    jw_free(&w);
    if (!ok) dcal_err("%s: cannot write (%s)", path, strerror(errno));
    return ok;
}

// Forward one image, then the two PNGs and the JSON. 0 after an error line.
static int explain_image(Infer *in, const char *image, const char *dir) {
    int S = in->cfg.model.img_size;
    float *img = xmalloc(sizeof(float) * 3 * S * S);
    char pre[DCAL_PATH_MAX], json[DCAL_PATH_MAX + 32];
    Explained e = {0};
    int ok = infer_load_image(in, image, img);
    if (ok) {
        overlay_prefix(pre, sizeof pre, dir, image);
        snprintf(json, sizeof json, "%s.json", pre);
        ok = explain_write(&in->m, &in->cfg.data, img, in->names, -1, pre, &e) &&
             write_json(json, in, image, e.sa, e.glca, e.sel, e.K, e.r);
    }
    if (ok) {
        printf("%s: SA %s | GLCA %s | SA+GLCA %s\n", image, in->names[e.top[0]], in->names[e.top[1]],
               in->names[e.top[2]]);
        printf("wrote %s, %s (top-R: %d of %d patches), %s\n", e.png[0], e.png[1], e.K, e.N - 1, json);
    }
    explained_free(&e);
    free(img);
    return ok;
}

static int make_dir(const char *dir) {
    struct stat sb;
    if (stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode)) return 1;
    if (mkdir(dir, 0755) == 0) return 1;
    dcal_err("%s: cannot create the output directory (%s)", dir, strerror(errno));
    return 0;
}

int cmd_explain(int argc, char **argv) {
    InferSource src = {0};
    const char *image = NULL, *dir = ".";
    const CliOpt extra[] = {
        {"--checkpoint", "FILE", "a run's checkpoint (its config.yaml beside it gives model and preprocessing)",
         &src.checkpoint, NULL, NULL},
        {"--run-config", "FILE", "the config the checkpoint was trained with (default: config.yaml beside it)",
         &src.run_config, NULL, NULL},
        {"--image", "FILE", "the JPEG or PNG to explain", &image, NULL, NULL},
        {"--out", "DIR", "where the PNGs and JSON go (default: .; a run directory for `dcal report`)", &dir, NULL, NULL},
        {"--classes", "FILE", "class names, one a line or CUB's 'id name' (default: the run's dataset)", &src.classes,
         NULL, NULL},
        {0},
    };
    CliArgs cli;
    int rc = cli_parse(argc, argv,
                       "Show what DCAL attends to in one image (MODEL.md §2): overlay_<image>_rollout.png (attention\n"
                       "rollout of the SA layers before GLCA, as a heat-map), overlay_<image>_topr.png (the top-R patches\n"
                       "GLCA's queries came from; the rest dimmed) and overlay_<image>.json (SA, GLCA and SA+GLCA top-5).",
                       extra, &cli);
    if (rc == CLI_HELP) return DCAL_EXIT_OK;
    if (rc != CLI_OK) return rc;
    if (!src.checkpoint || !image) {
        dcal_err("explain: --checkpoint FILE and --image FILE are required");
        return DCAL_EXIT_USAGE;
    }
    Infer in;
    if (!infer_open(&in, &cli, &src, 1)) return DCAL_EXIT_FAIL;
    if (!in.have_glca) {
        dcal_err("explain: %s: an SA-only model (model.glca_blocks 0) has no rollout selection to show", src.checkpoint);
        infer_close(&in);
        return DCAL_EXIT_FAIL;
    }
    rc = make_dir(dir) && explain_image(&in, image, dir) ? DCAL_EXIT_OK : DCAL_EXIT_FAIL;
    infer_close(&in);
    return rc;
}
