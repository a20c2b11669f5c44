// fields.c: the key table (section.name → type, offset, range, choices), the
// named presets, and "did you mean" by edit distance over the table.
#include "datasets/registry.h"
#include "config/fields.h"
#include <string.h>

#define OFF(f) offsetof(DcalConfig, f)
#define I(k, f, lo, hi) {k, F_INT, OFF(f), 0, lo, hi, NULL}
#define D(k, f, lo, hi) {k, F_DBL, OFF(f), 0, lo, hi, NULL}
#define B(k, f) {k, F_BOOL, OFF(f), 0, 0, 0, NULL}
#define S(k, f, ch) {k, F_STR, OFF(f), sizeof(((DcalConfig *)0)->f), 0, 0, ch}

// Order is the order of the written YAML (write.c): keep each section together.
const Field config_fields[] = {
    S("model.preset", model.preset, "vit_b16|deit_t|deit_s|deit_b|custom"),
    I("model.img_size", model.img_size, 8, 4096),
    I("model.patch", model.patch, 1, 64),
    I("model.dim", model.dim, 1, 8192),
    I("model.heads", model.heads, 1, 128),
    I("model.depth", model.depth, 1, 64),
    I("model.mlp_dim", model.mlp_dim, 1, 65536),
    I("model.glca_blocks", model.glca_blocks, 0, 64),
    I("model.pwca_blocks", model.pwca_blocks, 0, 64),
    D("model.top_r", model.top_r, 0, 1),
    D("model.drop_path", model.drop_path, 0, 0.99),
    I("model.num_classes", model.num_classes, 2, 100000),
    B("model.glca_shares_sa_weights", model.glca_shares_sa_weights),
    B("model.pwca_shares_sa_weights", model.pwca_shares_sa_weights),
    D("model.ln_eps", model.ln_eps, 1e-12, 1e-2),
    // Never implemented: the paper's loss is plain cross-entropy (MODEL.md §3).
    {"loss.label_smoothing", F_RETIRED, 0, 0, 0, 0,
     "label smoothing is not implemented: DCAL trains each branch with plain cross-entropy (docs/MODEL.md §3)"},
    B("loss.uncertainty_weighting", loss.uncertainty_weighting),
    S("data.dataset", data.dataset, DATASET_NAMES),
    S("data.root", data.root, NULL),
    I("data.resize", data.resize, 8, 8192),
    I("data.crop", data.crop, 8, 8192),
    S("data.train_crop", data.train_crop, "random|center"),
    S("data.test_crop", data.test_crop, "center|random"),
    B("data.hflip", data.hflip),
    {"data.mean", F_F3, OFF(data.mean), 0, -10, 10, NULL},
    {"data.std", F_F3, OFF(data.std), 0, 1e-6, 10, NULL},
    I("data.banner_px", data.banner_px, 0, 1000),
    I("data.workers", data.workers, 0, 64),
    B("data.skip_bad", data.skip_bad),
    D("data.val_fraction", data.val_fraction, 0, 0.5),
    I("data.synth_classes", data.synth_classes, 2, 1000),
    I("data.synth_per_class", data.synth_per_class, 1, 100000),
    I("data.synth_test_per_class", data.synth_test_per_class, 1, 100000),
    S("optim.name", optim.name, "adamw"),
    D("optim.base_lr", optim.base_lr, 0, 10),
    I("optim.lr_ref_batch", optim.lr_ref_batch, 1, 1 << 20),
    D("optim.lr", optim.lr, 0, 10),
    D("optim.weight_decay", optim.weight_decay, 0, 10),
    D("optim.beta1", optim.beta1, 0, 0.999999),
    D("optim.beta2", optim.beta2, 0, 0.999999999),
    D("optim.eps", optim.eps, 1e-30, 1),
    S("optim.schedule", optim.schedule, "cosine|constant"),
    I("optim.epochs", optim.epochs, 1, 100000),
    I("optim.warmup_epochs", optim.warmup_epochs, 0, 100000),
    D("optim.warmup_lr", optim.warmup_lr, 0, 10),
    D("optim.min_lr", optim.min_lr, 0, 10),
    I("train.micro_batch", train.micro_batch, 1, 65536),
    I("train.accum_steps", train.accum_steps, 1, 65536),
    I("train.devices", train.devices, 0, 1024),
    {"train.seed", F_U64, OFF(train.seed), 0, 0, 0, NULL},
    S("train.device", train.device, "auto|cpu|cuda"),
    B("train.checkpoint_blocks", train.checkpoint_blocks),
    I("train.checkpoint_layers", train.checkpoint_layers, 0, 4096),
    B("train.update_in_backward", train.update_in_backward),
    S("train.precision", train.precision, "auto|fp32|bf16"),
    B("train.bf16_stream", train.bf16_stream),
    S("train.attention", train.attention, "dcal|cudnn"),
    S("train.pretrained", train.pretrained, NULL),
    S("train.out_dir", train.out_dir, NULL),
    S("train.run_name", train.run_name, NULL),
    I("train.eval_every", train.eval_every, 0, 100000),
    I("train.save_every", train.save_every, 0, 100000),
    I("train.keep_last", train.keep_last, 1, 1000),
    I("train.max_steps", train.max_steps, 0, 1 << 30),
    I("train.threads", train.threads, 0, 1024),
};
#define N_FIELDS (int)(sizeof config_fields / sizeof config_fields[0])
const int config_n_fields = N_FIELDS;

const char *const config_sections[] = {"model", "loss", "data", "optim", "train", "deviations"};
#define N_SECTIONS (int)(sizeof config_sections / sizeof config_sections[0])
const int config_n_sections = N_SECTIONS;
_Static_assert(sizeof config_fields / sizeof config_fields[0] + sizeof config_sections / sizeof config_sections[0] <=
                   CONFIG_MAX_KEYS, "raise CONFIG_MAX_KEYS");

static const Preset presets[] = {
    {"vit_b16", 768, 12, 12, 3072}, {"deit_b", 768, 12, 12, 3072},
    {"deit_s", 384, 6, 12, 1536},   {"deit_t", 192, 3, 12, 768},
};

const Preset *config_preset(const char *name) {
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(presets[i].name, name)) return &presets[i];
    return NULL;
}

const Field *config_field(const char *key) {
    for (int i = 0; i < N_FIELDS; i++)
        if (!strcmp(config_fields[i].key, key)) return &config_fields[i];
    return NULL;
}

static int edit_distance(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 63 || lb > 63) return 99;
    int d[64][64];
    for (int i = 0; i <= la; i++) d[i][0] = i;
    for (int j = 0; j <= lb; j++) d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

// A near miss in the same section, or the same leaf name in another section.
const char *config_suggest(const char *key) {
    const char *best = NULL;
    int bestd = 99;
    const char *dot = strchr(key, '.');
    for (int i = 0; i < N_FIELDS; i++) {
        int d = edit_distance(key, config_fields[i].key);
        const char *fdot = strchr(config_fields[i].key, '.');
        if (dot && !strcmp(dot, fdot)) d = 1;   // right name, wrong section
        if (d < bestd) { bestd = d; best = config_fields[i].key; }
    }
    int limit = (int)strlen(key) / 3 > 2 ? (int)strlen(key) / 3 : 2;
    return bestd <= limit ? best : NULL;
}

const char *config_suggest_section(const char *name) {
    for (int i = 0; i < N_SECTIONS; i++)
        if (edit_distance(name, config_sections[i]) <= 2) return config_sections[i];
    return NULL;
}
