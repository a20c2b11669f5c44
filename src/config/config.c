// config.c: the paper defaults (MODEL.md §1-5) and finalize: derived values and
// the cross-field checks no single key can make. The key table is fields.c;
// loading yaml.c, --set set.c, writing write.c; config_resolve (resolve.c)
// runs them in order for the commands.
#include "config/config.h"
#include <math.h>
#include <string.h>
#include "config/fields.h"

void config_defaults(DcalConfig *c) {
    memset(c, 0, sizeof *c);
    ModelConfig *m = &c->model;
    strcpy(m->preset, "vit_b16");
    m->img_size = 448; m->patch = 16; m->dim = 768; m->heads = 12; m->depth = 12; m->mlp_dim = 3072;
    m->glca_blocks = 1; m->pwca_blocks = 12; m->top_r = 0.10; m->drop_path = 0.1; m->num_classes = 200;
    m->glca_shares_sa_weights = false; m->pwca_shares_sa_weights = true; m->ln_eps = 1e-6;
    c->loss.uncertainty_weighting = true;
    DataConfig *d = &c->data;
    strcpy(d->dataset, "cub");
    strcpy(d->root, "data/CUB_200_2011");
    d->resize = 550; d->crop = 448;
    strcpy(d->train_crop, "random"); strcpy(d->test_crop, "center");
    d->hflip = true;
    for (int i = 0; i < 3; i++) { d->mean[i] = 0.5f; d->std[i] = 0.5f; }   // Google ViT-21k weights
    d->banner_px = 0; d->workers = 2; d->skip_bad = false;
    d->synth_classes = 10; d->synth_per_class = 30; d->synth_test_per_class = 10;
    OptimConfig *o = &c->optim;
    strcpy(o->name, "adamw");
    o->base_lr = 5e-4; o->lr_ref_batch = 512; o->lr = 0;    // 0: derive from the effective batch
    o->weight_decay = 0.05; o->beta1 = 0.9; o->beta2 = 0.999; o->eps = 1e-8;
    strcpy(o->schedule, "cosine");
    o->epochs = 100; o->warmup_epochs = 5; o->warmup_lr = 1e-6; o->min_lr = 0;
    TrainConfig *t = &c->train;
    t->micro_batch = 16; t->accum_steps = 1; t->devices = 0; t->seed = 42;
    strcpy(t->device, "auto"); t->checkpoint_blocks = false; strcpy(t->precision, "auto");
    t->update_in_backward = true;
    t->bf16_stream = false;
    strcpy(t->attention, "dcal");
    strcpy(t->out_dir, "runs");
    t->eval_every = 1; t->save_every = 1; t->keep_last = 1; t->max_steps = 0; t->threads = 0;
}

int config_topk(const ModelConfig *m) {
    int k = (int)floor(m->top_r * (config_tokens(m) - 1) + 1e-9);   // guard 0.1·784 = 78.4 style roundoff
    return k < 1 ? 1 : k;
}

// A named preset fixes the backbone shape; a config that also gives another shape is ambiguous.
static int check_preset(const ModelConfig *m, const char *src) {
    const Preset *p = config_preset(m->preset);
    if (!p || (m->dim == p->dim && m->heads == p->heads && m->depth == p->depth && m->mlp_dim == p->mlp)) return 1;
    dcal_err("%s: model.preset '%s' fixes dim/heads/depth/mlp_dim = %d/%d/%d/%d but the config gives %d/%d/%d/%d "
             "(set model.preset: custom to choose them)", src, p->name, p->dim, p->heads, p->depth, p->mlp,
             m->dim, m->heads, m->depth, m->mlp_dim);
    return 0;
}

static int check_model(const ModelConfig *m, const char *src) {
    if (!check_preset(m, src)) return 0;
    if (m->dim % m->heads) {
        dcal_err("%s: model.dim %d is not divisible by model.heads %d", src, m->dim, m->heads);
        return 0;
    }
    if (m->img_size % m->patch) {
        dcal_err("%s: model.img_size %d is not a multiple of model.patch %d", src, m->img_size, m->patch);
        return 0;
    }
    if (m->glca_blocks > m->depth) {   // 0 = no GLCA (an SA-only baseline)
        dcal_err("%s: model.glca_blocks %d must be in [0, model.depth=%d]", src, m->glca_blocks, m->depth);
        return 0;
    }
    if (m->pwca_blocks > m->depth) {
        dcal_err("%s: model.pwca_blocks %d exceeds model.depth %d (PWCA shares the SA blocks)", src, m->pwca_blocks,
                 m->depth);
        return 0;
    }
    return 1;
}

// Where key got its value: the last --set of it, else the file ("config" for defaults).
static const char *where_set(const DcalConfig *c, const char *key, const char *src, char *buf, size_t cap) {
    size_t n = strlen(key);
    for (int i = c->n_overrides - 1; i >= 0; i--)
        if (!strncmp(c->overrides[i], key, n) && c->overrides[i][n] == '=') {
            snprintf(buf, cap, "--set %s", c->overrides[i]);
            return buf;
        }
    return src;
}

// train.run_name names a directory under train.out_dir: a plain name ("" = generated), so a run
// can never be written outside it (no '/', not "." or "..", no control characters).
static int check_run_name(const DcalConfig *c, const char *src) {
    const char *name = c->train.run_name, *why = NULL;
    if (!strcmp(name, ".") || !strcmp(name, "..")) why = "is not a directory name";
    else if (strchr(name, '/')) why = "contains '/'";
    for (const unsigned char *p = (const unsigned char *)name; !why && *p; p++)
        if (*p < 0x20 || *p == 0x7f) why = "contains a control character";
    if (!why) return 1;
    char buf[300];
    bool show = strcmp(why, "contains a control character");   // keep the error on one line
    dcal_err("%s: train.run_name%s%s%s %s (a run name is a plain directory name under train.out_dir)",
             where_set(c, "train.run_name", src, buf, sizeof buf), show ? " '" : "", show ? name : "",
             show ? "'" : "", why);
    return 0;
}

// train.attention=cudnn: cuDNN's fused SDPA (kernels/attention_cudnn.cu) runs only on CUDA, only in
// bf16, and its flash engines take head dims that are multiples of 8 up to 128 (cuDNN 9 support
// surface for sm_80..sm_90). Refused here so verify-config names the conflict before any run.
static int check_attention(const DcalConfig *c, const char *src) {
    const TrainConfig *t = &c->train;
    if (strcmp(t->attention, "cudnn")) return 1;
    char buf[300];
    const char *at = where_set(c, "train.attention", src, buf, sizeof buf);
    int hd = c->model.dim / c->model.heads;
    if (!strcmp(t->device, "cpu"))
        dcal_err("%s: train.attention=cudnn runs on the cuda backend only, but train.device is cpu (set "
                 "train.device=cuda, or train.attention=dcal)", at);
    else if (!strcmp(t->precision, "fp32"))
        dcal_err("%s: train.attention=cudnn computes attention in bf16, but train.precision is fp32 (set "
                 "train.precision=bf16 or auto, or train.attention=dcal)", at);
    else if (hd % 8 || hd > 128)
        dcal_err("%s: train.attention=cudnn needs a head dim (model.dim / model.heads) that is a multiple of 8 and "
                 "at most 128, got %d (use train.attention=dcal)", at, hd);
    else return 1;
    return 0;
}

static int check_checkpoint_layers(const DcalConfig *c, const char *src) {
    int k = c->train.checkpoint_layers;
    if (k > c->model.depth) {
        dcal_err("%s: train.checkpoint_layers %d exceeds the model's %d layers (0 checkpoints them all)", src, k,
                 c->model.depth);
        return 0;
    }
    if (k && !c->train.checkpoint_blocks) {
        dcal_err("%s: train.checkpoint_layers %d needs train.checkpoint_blocks: true (it says how many layers are "
                 "checkpointed)", src, k);
        return 0;
    }
    return 1;
}

static int check_train(const DcalConfig *c, const char *src) {
    return check_run_name(c, src) && check_attention(c, src) && check_checkpoint_layers(c, src);
}

// The statements kernels/attention_cudnn.cu and kernels/attention*.cu make true (their READMEs).
const char *config_attention_note(const char *impl, int *deterministic) {
    static const struct { const char *name, *note; int det; } impls[] = {
        {"dcal", "dcal's fused kernels; backward deterministic: yes (fixed reduction order, no atomics)", 1},
        {"cudnn", "cuDNN fused SDPA (bf16, fp32 softmax), CUDA only; backward deterministic: yes, requested (dQ "
                  "written by one matmul, no fp32 dQ accumulator; engines cuDNN marks "
                  "CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC refused); not yet run on a GPU", 1},
    };
    for (size_t i = 0; i < sizeof impls / sizeof impls[0]; i++)
        if (!strcmp(impl, impls[i].name)) {
            if (deterministic) *deterministic = impls[i].det;
            return impls[i].note;
        }
    return NULL;
}

// One process per device, started by the launcher (src/dist/): the config's
// effective batch (micro x accum x devices, devices 0 counting as 1) is split
// over the `world` processes. A fresh run keeps the largest micro-batch up to
// the config's that divides a process's share; a resumed run keeps its
// micro-batch exactly (the checkpoint counts micro-batches), so only the
// accumulation moves. An explicit train.devices must be the world size.
int config_apply_world(DcalConfig *c, int world, bool resume) {
    TrainConfig *t = &c->train;
    char buf[300];
    const char *src = c->source[0] ? c->source : "config";
    if (!resume && t->devices && t->devices != world) {
        dcal_err("%s: train.devices %d but %d process%s started (one process per device: launch with 'mpirun -np %d "
                 "dcal train ...', or leave train.devices out)", where_set(c, "train.devices", src, buf, sizeof buf),
                 t->devices, world, world == 1 ? " was" : "es were", t->devices);
        return 0;
    }
    int eff = config_effective_batch(c), mb = t->micro_batch;
    if (eff % world || (resume && (eff / world) % mb)) {
        dcal_err("%s: the effective batch %d (micro-batch %d x accumulation %d x devices %d) cannot be split over %d "
                 "processes%s", src, eff, mb, t->accum_steps, t->devices ? t->devices : 1, world,
                 resume ? " keeping the run's micro-batch (resume on a world size that divides it)" : "");
        return 0;
    }
    int per = eff / world;
    if (mb > per) mb = per;
    while (per % mb) mb--;
    t->micro_batch = mb;
    t->accum_steps = per / mb;
    t->devices = world;
    return 1;
}

int config_finalize(DcalConfig *c) {
    const ModelConfig *m = &c->model;
    const char *src = c->source[0] ? c->source : "config";
    if (!check_model(m, src) || !check_train(c, src)) return 0;
    if (c->data.crop != m->img_size) {
        dcal_err("%s: data.crop %d differs from model.img_size %d (the crop is the model's input)", src,
                 c->data.crop, m->img_size);
        return 0;
    }
    if (c->data.resize < c->data.crop) {
        dcal_err("%s: data.resize %d is smaller than data.crop %d", src, c->data.resize, c->data.crop);
        return 0;
    }
    if (c->optim.warmup_epochs > c->optim.epochs) {
        dcal_err("%s: optim.warmup_epochs %d exceeds optim.epochs %d", src, c->optim.warmup_epochs, c->optim.epochs);
        return 0;
    }
    c->model.ckpt_layers = c->train.checkpoint_layers;
    c->model.fp32_stream = !c->train.bf16_stream;
    if (c->optim.lr == 0)   // MODEL.md §4: linear scaling rule from the reference batch
        c->optim.lr = c->optim.base_lr / c->optim.lr_ref_batch * config_effective_batch(c);
    return 1;
}

int config_pick_micro_batch(const DcalConfig *c, int per_device, int world, bool ckpt, size_t budget,
                            StepBytesFn bytes) {
    // B >= 2: PWCA draws each image's distractor from the same micro-batch (a
    // derangement, no self-pairs), so a micro-batch of one has no pair. B must
    // divide the batch so that accumulation keeps it exact (MODEL.md §4).
    for (int B = per_device; B >= 2; B--)
        if (per_device % B == 0 && bytes(c, B, per_device / B, world, ckpt) <= budget) return B;
    return 0;
}
