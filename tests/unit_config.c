// unit_config.c: YAML loading into the typed config, every error class with
// its line:col, --set overrides, the resolved YAML round trip, and
// config_resolve: order, memory budget, the gate on the final config,
// precision, resume-safe overrides.
#include <string.h>
#include "config/config.h"
#include "config/resolve.h"
#include "testutil.h"

static char out[16384];

// Write text to a temp config and run verify-config on it; returns exit code.
static int verify_text(const char *yaml, const char *extra) {
    const char *dir = test_tmpdir("cfg");
    char path[1200], args[2400];
    snprintf(path, sizeof path, "%s/c.yaml", dir);
    write_text(path, yaml);
    snprintf(args, sizeof args, "verify-config --config %s %s", path, extra ? extra : "");
    return run_dcal(args, out, sizeof out);
}

static DcalConfig load_text(const char *yaml, int *ok) {
    const char *dir = test_tmpdir("cfgl");
    char path[1200];
    snprintf(path, sizeof path, "%s/c.yaml", dir);
    write_text(path, yaml);
    DcalConfig c;
    config_defaults(&c);
    *ok = config_load(&c, path);
    return c;
}

START_TEST(test_defaults_are_paper) {
    DcalConfig c;
    config_defaults(&c);
    ck_assert(config_finalize(&c));
    ck_assert_int_eq(config_effective_batch(&c), 16);
    ck_assert_double_eq_tol(c.optim.lr, 1.5625e-5, 1e-12);
    ck_assert_int_eq(config_tokens(&c.model), 785);
    ck_assert_int_eq(config_topk(&c.model), 78);   // floor(0.10 * 784)
}
END_TEST

START_TEST(test_values_parse) {
    int ok;
    DcalConfig c = load_text("model:\n  preset: custom\n  dim: 32\n  heads: 2\n  top_r: 0.25\n"
                             "data:\n  mean: [0.1, 0.2, 0.3]\n  hflip: false\n"
                             "train:\n  seed: 18446744073709551615\n  device: cpu\n",
                             &ok);
    ck_assert(ok);
    ck_assert_int_eq(c.model.dim, 32);
    ck_assert_int_eq(c.model.heads, 2);
    ck_assert_double_eq_tol(c.model.top_r, 0.25, 1e-12);
    ck_assert_float_eq_tol(c.data.mean[2], 0.3f, 1e-7f);
    ck_assert(!c.data.hflip);
    ck_assert(c.train.seed == UINT64_MAX);
    ck_assert_str_eq(c.train.device, "cpu");
    ck_assert_int_eq(c.model.depth, 12);   // untouched default
}
END_TEST

START_TEST(test_preset_sets_shape) {
    int ok;
    DcalConfig c = load_text("model:\n  preset: deit_s\n", &ok);
    ck_assert(ok);
    ck_assert_int_eq(c.model.dim, 384);
    ck_assert_int_eq(c.model.heads, 6);
    ck_assert(config_finalize(&c));
    // A named preset with a conflicting shape is refused at finalize.
    c = load_text("model:\n  preset: deit_s\n  dim: 100\n", &ok);
    ck_assert(ok);
    ck_assert(!config_finalize(&c));
}
END_TEST

START_TEST(test_unknown_key_line_col_and_suggestion) {
    ck_assert_int_eq(verify_text("model:\n  depth: 12\n  glca_blokcs: 1\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:3:3: unknown key 'model.glca_blokcs' (did you mean 'model.glca_blocks'?)"),
                  "got: %s", out);
    ck_assert_int_eq(verify_text("train:\n  weight_decay: 0.05\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:2:3: unknown key 'train.weight_decay' (did you mean 'optim.weight_decay'?)"),
                  "got: %s", out);
    ck_assert_int_eq(verify_text("optim:\n  lr: 1\nmodle:\n  depth: 3\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:3:1: unknown section 'modle' (did you mean 'model'?)"), "got: %s", out);
    ck_assert_int_eq(verify_text("model:\n  zzzzzzzzzz: 1\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:2:3: unknown key 'model.zzzzzzzzzz'") && !strstr(out, "did you mean"),
                  "got: %s", out);
}
END_TEST

START_TEST(test_duplicates) {
    ck_assert_int_eq(verify_text("model:\n  depth: 12\n  depth: 12\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:3:3: duplicate key 'model.depth'"), "got: %s", out);
    ck_assert_int_eq(verify_text("model:\n  depth: 12\ndata:\n  crop: 448\nmodel:\n  patch: 16\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:5:1: duplicate section 'model'"), "got: %s", out);
}
END_TEST

START_TEST(test_wrong_types) {
    ck_assert_int_eq(verify_text("model:\n  depth: twelve\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:2:10: model.depth: expected an integer, got 'twelve'"), "got: %s", out);
    ck_assert_int_eq(verify_text("optim:\n  weight_decay: 5%\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:2:17: optim.weight_decay: expected a number"), "got: %s", out);
    ck_assert_int_eq(verify_text("data:\n  hflip: maybe\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:2:10: data.hflip: expected true or false"), "got: %s", out);
    ck_assert_int_eq(verify_text("data:\n  mean: [1, 2]\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:2:9: data.mean: expected a list of 3 numbers, got 2"), "got: %s", out);
    ck_assert_int_eq(verify_text("model:\n  depth: [1, 2]\n", NULL), 1);
    ck_assert_msg(strstr(out, "model.depth: expected a single value, got a list"), "got: %s", out);
    ck_assert_int_eq(verify_text("data:\n  dataset: imagenet\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:2:12: data.dataset: 'imagenet' is not one of cub|cars|aircraft|synthetic"),
                  "got: %s", out);
    ck_assert_int_eq(verify_text("model: 3\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:1:8: model must be a mapping"), "got: %s", out);
}
END_TEST

START_TEST(test_ranges) {
    ck_assert_int_eq(verify_text("model:\n  top_r: 1.5\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:2:10: model.top_r: 1.5 out of range [0, 1]"), "got: %s", out);
    ck_assert_int_eq(verify_text("train:\n  micro_batch: 0\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:2:16: train.micro_batch: 0 out of range"), "got: %s", out);
    ck_assert_int_eq(verify_text("train:\n  seed: -1\n", NULL), 1);
    ck_assert_msg(strstr(out, "train.seed: expected a non-negative integer"), "got: %s", out);
    // Cross-field checks run after loading.
    ck_assert_int_eq(verify_text("model:\n  preset: custom\n  dim: 100\n  heads: 12\n", NULL), 1);
    ck_assert_msg(strstr(out, "model.dim 100 is not divisible by model.heads 12"), "got: %s", out);
}
END_TEST

START_TEST(test_syntax_error) {
    ck_assert_int_eq(verify_text("model:\n  depth: [1, 2\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:") && strstr(out, "YAML syntax error"), "got: %s", out);
    ck_assert_int_eq(run_dcal("verify-config --config /nonexistent/x.yaml", out, sizeof out), 1);
    ck_assert_msg(strstr(out, "/nonexistent/x.yaml: cannot open config"), "got: %s", out);
}
END_TEST

START_TEST(test_deviation_errors) {
    ck_assert_int_eq(verify_text("deviations:\n  - rule: lr\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:2:5: a deviation needs both 'rule' and a non-empty 'reason'"), "got: %s", out);
    ck_assert_int_eq(verify_text("deviations:\n  - rule: no_such_rule\n    reason: x\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:2:5: deviation names unknown rule 'no_such_rule'"), "got: %s", out);
    ck_assert_int_eq(verify_text("deviations:\n  - rule: lr\n    reason: a\n  - rule: lr\n    reason: b\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:4:5: deviation 'lr' declared twice"), "got: %s", out);
}
END_TEST

START_TEST(test_overrides) {
    DcalConfig c;
    config_defaults(&c);
    ck_assert(config_set(&c, "train.micro_batch=8"));
    ck_assert(config_set(&c, "train.accum_steps=2"));
    ck_assert(config_set(&c, "data.std=0.1,0.2,0.3"));
    ck_assert(config_finalize(&c));
    ck_assert_int_eq(config_effective_batch(&c), 16);
    ck_assert_float_eq_tol(c.data.std[1], 0.2f, 1e-7f);
    ck_assert_int_eq(c.n_overrides, 3);
    ck_assert_str_eq(c.overrides[0], "train.micro_batch=8");
    ck_assert(!config_set(&c, "train.micro_batch"));
    ck_assert(!config_set(&c, "train.micro_batch=x"));
    ck_assert(!config_set(&c, "nope.x=1"));
    ck_assert_int_eq(c.n_overrides, 3);   // failed overrides are not recorded
    ck_assert_int_eq(run_dcal("verify-config --set model.depht=3", out, sizeof out), 1);
    ck_assert_msg(strstr(out, "--set model.depht=3: unknown key 'model.depht' (did you mean 'model.depth'?)"),
                  "got: %s", out);
}
END_TEST

START_TEST(test_yaml_round_trip) {
    DcalConfig a;
    config_defaults(&a);
    char p[1200];
    snprintf(p, sizeof p, "%s/configs/fgvc/synthetic.yaml", src_dir());
    ck_assert(config_load(&a, p));
    ck_assert(config_set(&a, "train.run_name=with \"quotes\""));
    ck_assert(config_finalize(&a));
    const char *dir = test_tmpdir("rt");
    char path[1200];
    snprintf(path, sizeof path, "%s/resolved.yaml", dir);
    FILE *f = fopen(path, "w");
    ck_assert(config_write_yaml(&a, f));
    fclose(f);
    DcalConfig b;
    config_defaults(&b);
    ck_assert(config_load(&b, path));
    ck_assert(config_finalize(&b));
    ck_assert_int_eq(memcmp(&a.model, &b.model, sizeof a.model), 0);
    ck_assert_int_eq(memcmp(&a.optim, &b.optim, sizeof a.optim), 0);
    ck_assert_int_eq(memcmp(&a.train, &b.train, sizeof a.train), 0);
    ck_assert_int_eq(memcmp(&a.data, &b.data, sizeof a.data), 0);
    ck_assert_int_eq(b.n_deviations, a.n_deviations);
    ck_assert_str_eq(b.deviations[3].reason, a.deviations[3].reason);
}
END_TEST

// ---- config_resolve ---------------------------------------------------------

static ResolvedConfig rc_out;

// A fake planner: 1000 bytes per image, so budgets are easy to reason about.
static size_t fake_bytes(const DcalConfig *c, int B, int accum, int world, bool ckpt) {
    (void)c, (void)accum, (void)world;
    return (size_t)B * (ckpt ? 500 : 1000);
}

// Resolve rq, capturing stderr into err; returns config_resolve's result.
static int resolve_cap(const ConfigRequest *rq, const char **err) {
    cap_begin();
    int ok = config_resolve(rq, &rc_out);
    *err = cap_end();
    return ok;
}

START_TEST(test_resolve_order) {
    const char *sets[] = {"train.micro_batch=8", "train.accum_steps=2", "optim.base_lr=1e-3"};
    ConfigRequest rq = {.sets = sets, .n_sets = 3, .pretrained = "w.safetensors"};
    ck_assert(config_resolve(&rq, &rc_out));
    const DcalConfig *c = &rc_out.cfg;
    ck_assert_int_eq(c->n_overrides, 4);                      // --set in order, then --pretrained
    ck_assert_str_eq(c->overrides[3], "train.pretrained=w.safetensors");
    ck_assert_str_eq(c->train.pretrained, "w.safetensors");
    ck_assert_double_eq_tol(c->optim.lr, 1e-3 / 512 * 16, 1e-15);   // finalize ran after the sets
    ck_assert_str_eq(c->train.precision, "auto");            // no backend: left as configured
    ck_assert_int_eq(rc_out.n_rules, compliance_rule_count());   // the table is always made
    ck_assert_str_eq(rc_out.run_dir, "");
    // A bad --set stops resolution with its own message.
    const char *bad[] = {"model.depht=3"};
    const char *err;
    rq = (ConfigRequest){.sets = bad, .n_sets = 1};
    ck_assert(!resolve_cap(&rq, &err));
    ck_assert_msg(strstr(err, "did you mean 'model.depth'"), "got: %s", err);
    // An unknown --allow-deviation id is refused.
    const char *allowed[] = {"no_such_rule"};
    rq = (ConfigRequest){.who = "train", .allowed = allowed, .n_allowed = 1};
    ck_assert(!resolve_cap(&rq, &err));
    ck_assert_msg(strstr(err, "train: --allow-deviation: unknown rule 'no_such_rule'"), "got: %s", err);
}
END_TEST

START_TEST(test_resolve_budget_then_gate) {
    // 16 images per step; 4500 bytes fit micro-batch 4 (largest divisor of 16 under the budget).
    ConfigRequest rq = {.who = "train", .memory_budget = 4500, .budget_from = "4500B", .train_bytes = fake_bytes,
                        .gate = true, .training = true};
    const char *err;
    ck_assert_msg(resolve_cap(&rq, &err), "got: %s", err);
    ck_assert_int_eq(rc_out.cfg.train.micro_batch, 4);
    ck_assert_int_eq(rc_out.cfg.train.accum_steps, 4);
    // The gate judged the final micro-batch: the table says so.
    const RuleResult *eb = NULL;
    for (int i = 0; i < rc_out.n_rules; i++)
        if (!strcmp(rc_out.rules[i].id, "effective_batch")) eb = &rc_out.rules[i];
    ck_assert(eb && eb->status == RULE_PASS);
    ck_assert_msg(strstr(eb->actual, "micro 4 x accum 4"), "got: %s", eb->actual);
    // Checkpointing halves the fake plan: micro-batch 8 fits.
    const char *ck[] = {"train.checkpoint_blocks=true"};
    rq.sets = ck;
    rq.n_sets = 1;
    ck_assert(resolve_cap(&rq, &err));
    ck_assert_int_eq(rc_out.cfg.train.micro_batch, 8);
    // Too small for micro-batch 2: one line naming the budget and what B=2 needs.
    rq.sets = NULL;
    rq.n_sets = 0;
    rq.memory_budget = 1500;
    ck_assert(!resolve_cap(&rq, &err));
    ck_assert_msg(strstr(err, "4500B (0.0 MiB): even micro-batch 2 needs 0.0 MiB"), "got: %s", err);
}
END_TEST

START_TEST(test_resolve_gate) {
    const char *sets[] = {"train.micro_batch=8"};
    ConfigRequest rq = {.who = "train", .sets = sets, .n_sets = 1, .gate = true};
    const char *err;
    ck_assert(!resolve_cap(&rq, &err));
    ck_assert_msg(strstr(err, "compliance rule 'effective_batch' fails") &&
                  strstr(err, "train: refusing to start"), "got: %s", err);
    // Without the gate the same config resolves, with the FAIL in its table.
    rq.gate = false;
    ck_assert(resolve_cap(&rq, &err));
    ck_assert_int_eq(compliance_failures(rc_out.rules, rc_out.n_rules), 1);
    // --allow-deviation turns it into a warned DEVIATION.
    const char *allowed[] = {"effective_batch"};
    rq.gate = true;
    rq.allowed = allowed;
    rq.n_allowed = 1;
    ck_assert(resolve_cap(&rq, &err));
    ck_assert_msg(strstr(err, "WARNING: deviating from the paper on 'effective_batch'"), "got: %s", err);
    ck_assert_int_eq(rc_out.n_allowed, 1);
    ck_assert_str_eq(rc_out.allowed[0], "effective_batch");
    // PWCA needs two images per micro-batch when training.
    const char *one[] = {"train.micro_batch=1", "train.accum_steps=16"};
    rq = (ConfigRequest){.sets = one, .n_sets = 2, .gate = true, .training = true};
    ck_assert(!resolve_cap(&rq, &err));
    ck_assert_msg(strstr(err, "train.micro_batch=1: PWCA pairs each image"), "got: %s", err);
    rq.training = false;
    ck_assert(resolve_cap(&rq, &err));
}
END_TEST

START_TEST(test_resolve_precision) {
    ConfigRequest rq = {.backend_precisions = "fp32"};
    const char *err;
    ck_assert(resolve_cap(&rq, &err));
    ck_assert_str_eq(rc_out.cfg.train.precision, "fp32");
    rq.backend_precisions = "bf16 fp32";
    ck_assert(resolve_cap(&rq, &err));
    ck_assert_str_eq(rc_out.cfg.train.precision, "bf16");
    const char *bf16[] = {"train.precision=bf16"};
    rq.sets = bf16;
    rq.n_sets = 1;
    ck_assert(resolve_cap(&rq, &err));
    rq.backend_precisions = "fp32";
    ck_assert(!resolve_cap(&rq, &err));
    ck_assert_msg(strstr(err, "train.precision=bf16: this backend supports fp32"), "got: %s", err);
}
END_TEST

// train.checkpoint_layers: one line naming the file for a count past the depth or without
// checkpoint_blocks; a good one reaches the model config. train.update_in_backward is in force
// (model.grads_per_block) only at accumulation 1 on one process.
START_TEST(test_checkpoint_layers_and_update_in_backward) {
    ck_assert_int_eq(verify_text("train:\n  checkpoint_blocks: true\n  checkpoint_layers: 13\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml: train.checkpoint_layers 13 exceeds the model's 12 layers"), "got: %s", out);
    ck_assert_int_eq(verify_text("train:\n  checkpoint_layers: 4\n", NULL), 1);
    ck_assert_msg(strstr(out, "train.checkpoint_layers 4 needs train.checkpoint_blocks: true"), "got: %s", out);
    DcalConfig c;
    config_defaults(&c);
    c.train.checkpoint_blocks = true;
    c.train.checkpoint_layers = 4;
    ck_assert(config_finalize(&c));
    ck_assert_int_eq(c.model.ckpt_layers, 4);
    ConfigRequest rq = {.backend_precisions = "fp32"};
    const char *err;
    ck_assert(resolve_cap(&rq, &err));
    ck_assert(rc_out.cfg.train.update_in_backward && rc_out.cfg.model.grads_per_block);
    const char *accum[] = {"train.micro_batch=8", "train.accum_steps=2"};
    rq.sets = accum;
    rq.n_sets = 2;
    ck_assert(resolve_cap(&rq, &err));
    ck_assert(!rc_out.cfg.model.grads_per_block);
    const char *off[] = {"train.update_in_backward=false"};
    rq.sets = off;
    rq.n_sets = 1;
    ck_assert(resolve_cap(&rq, &err));
    ck_assert(!rc_out.cfg.model.grads_per_block);
}
END_TEST

START_TEST(test_resolve_resume) {
    // A run directory holding the config it started with (micro-batch 4 x 4).
    const char *dir = test_tmpdir("resume");
    const char *sets[] = {"train.micro_batch=4", "train.accum_steps=4"};
    ConfigRequest rq = {.sets = sets, .n_sets = 2};
    ck_assert(config_resolve(&rq, &rc_out));
    char path[1200];
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    FILE *f = fopen(path, "w");
    ck_assert(f && config_write_yaml(&rc_out.cfg, f));
    fclose(f);
    // Resume: the run's config is the base (the request's file is ignored); safe keys may change.
    const char *safe[] = {"train.max_steps=3", "data.root=/elsewhere"};
    rq = (ConfigRequest){.config_path = "/nonexistent.yaml", .sets = safe, .n_sets = 2, .resume_dir = dir};
    const char *err;
    ck_assert_msg(resolve_cap(&rq, &err), "got: %s", err);
    ck_assert_str_eq(rc_out.run_dir, dir);
    ck_assert_int_eq(rc_out.cfg.train.micro_batch, 4);
    ck_assert_int_eq(rc_out.cfg.train.max_steps, 3);
    ck_assert_str_eq(rc_out.cfg.data.root, "/elsewhere");
    ck_assert_str_eq(rc_out.cfg.source, path);
    // Anything else would change the run.
    const char *unsafe[] = {"model.dim=64"};
    rq.sets = unsafe;
    rq.n_sets = 1;
    ck_assert(!resolve_cap(&rq, &err));
    ck_assert_msg(strstr(err, "--resume: --set model.dim=64 would change the run"), "got: %s", err);
    rq = (ConfigRequest){.resume_dir = "no-such-run"};
    ck_assert(!resolve_cap(&rq, &err));
    ck_assert_msg(strstr(err, "--resume no-such-run: no run there (expected no-such-run/config.yaml or "
                              "runs/no-such-run/config.yaml)"), "got: %s", err);
    // A path is used exactly as given: no fallback under train.out_dir.
    rq = (ConfigRequest){.resume_dir = "somewhere/run"};
    ck_assert(!resolve_cap(&rq, &err));
    ck_assert_msg(strstr(err, "--resume somewhere/run: no run there (expected somewhere/run/config.yaml)\n"), "got: %s",
                  err);
}
END_TEST

// train.devices: the launcher's world size. A command without a launcher plans
// for train.devices; train under one refuses any other value, named by where it
// was set; the effective batch is split over the processes and kept.
START_TEST(test_devices_world) {
    ck_assert_int_eq(verify_text("train:\n  devices: 2\n  micro_batch: 8\n", NULL), 0);
    ck_assert_msg(strstr(out, "16 (micro 8 x accum 1 x devices 2)"), "got: %s", out);
    const char *sets[] = {"train.devices=2", "train.micro_batch=8"};
    ConfigRequest rq = {.sets = sets, .n_sets = 2, .world_size = 1};
    const char *err;
    ck_assert(!resolve_cap(&rq, &err));
    ck_assert_msg(strstr(err, "dcal: --set train.devices=2: train.devices 2 but 1 process was started (one process "
                              "per device: launch with 'mpirun -np 2 dcal train ...', or leave train.devices out)"),
                  "got: %s", err);
    // Left out: 16 = 4 x 4 on one process becomes 4 x 2 on each of 2, and 8 x 1 on each of 2 keeps micro-batch 8.
    const char *four[] = {"train.micro_batch=4", "train.accum_steps=4"};
    rq = (ConfigRequest){.sets = four, .n_sets = 2, .world_size = 2};
    ck_assert(config_resolve(&rq, &rc_out));
    ck_assert_int_eq(rc_out.cfg.train.micro_batch, 4);
    ck_assert_int_eq(rc_out.cfg.train.accum_steps, 2);
    ck_assert_int_eq(rc_out.cfg.train.devices, 2);
    ck_assert_int_eq(config_effective_batch(&rc_out.cfg), 16);
    ck_assert_double_eq_tol(rc_out.cfg.optim.lr, 5e-4 / 512 * 16, 1e-15);   // tied to the effective batch
    rq.world_size = 16;   // 1 image per process: PWCA needs pairs within a micro-batch
    rq.training = true;
    ck_assert(!resolve_cap(&rq, &err));
    ck_assert_msg(strstr(err, "train.micro_batch=1: PWCA pairs"), "got: %s", err);
    rq.world_size = 3;
    ck_assert(!resolve_cap(&rq, &err));
    ck_assert_msg(strstr(err, "the effective batch 16 (micro-batch 4 x accumulation 4 x devices 1) cannot be split "
                              "over 3 processes"), "got: %s", err);
}
END_TEST

// train.run_name is a plain directory name ("" = generated).
START_TEST(test_run_name_plain) {
    static const char *const bad[] = {"../x", "a/b", "/abs", ".", "..", "tab\there", "nl\nx", NULL};
    for (int i = 0; bad[i]; i++) {
        DcalConfig c;
        config_defaults(&c);
        snprintf(c.train.run_name, sizeof c.train.run_name, "%s", bad[i]);
        cap_begin();
        int ok = config_finalize(&c);
        const char *err = cap_end();
        ck_assert_msg(!ok, "run_name '%s' accepted", bad[i]);
        ck_assert_msg(strstr(err, "config: train.run_name") && strstr(err, "a run name is a plain directory name"),
                      "%s", err);
        ck_assert_msg(strchr(err, '\n') == err + strlen(err) - 1, "not one line: %s", err);
    }
    static const char *const good[] = {"", "tiny", "cub-20260101-120000", "a.b_c", "...", NULL};
    for (int i = 0; good[i]; i++) {
        DcalConfig c;
        config_defaults(&c);
        snprintf(c.train.run_name, sizeof c.train.run_name, "%s", good[i]);
        ck_assert_msg(config_finalize(&c), "run_name '%s' refused", good[i]);
    }
    ck_assert_int_eq(verify_text("train:\n  run_name: \"../up\"\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml: train.run_name '../up' contains '/'"), "got: %s", out);
    ck_assert_int_eq(verify_text("train:\n  run_name: ok\n", "--set train.run_name=.."), 1);
    ck_assert_msg(strstr(out, "dcal: --set train.run_name=..: train.run_name '..' is not a directory name"), "got: %s",
                  out);
}
END_TEST

// Numbers follow one strict grammar in YAML and --set alike (issue 12 item 14):
// no spaces, no leading zeros, no hex; the whole text is parsed, never cut short.
START_TEST(test_strict_numbers) {
    ck_assert_int_eq(verify_text("train:\n  micro_batch: \" 42\"\n", NULL), 1);
    ck_assert_msg(strstr(out, "dcal: ") && strstr(out, "c.yaml:2:16: train.micro_batch: expected an integer, got ' 42' "
                                                     "(no spaces around a number)"), "got: %s", out);
    ck_assert_int_eq(verify_text("model:\n  depth: 0448\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:2:10: model.depth: expected an integer, got '0448' (no leading zeros"),
                  "got: %s", out);
    ck_assert_int_eq(verify_text("train:\n  seed: 042\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:2:9: train.seed: expected a non-negative integer, got '042' (no leading zeros"),
                  "got: %s", out);
    ck_assert_int_eq(verify_text("train:\n  seed: 18446744073709551616\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:2:9: train.seed: 18446744073709551616 out of range"), "got: %s", out);
    ck_assert_int_eq(verify_text("model:\n  depth: 99999999999999999999\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:2:10: model.depth: 99999999999999999999 out of range"), "got: %s", out);
    ck_assert_int_eq(verify_text("optim:\n  weight_decay: \"0.05 \"\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:2:17: optim.weight_decay: expected a number, got '0.05 ' (no spaces"),
                  "got: %s", out);
    ck_assert_int_eq(verify_text("optim:\n  weight_decay: 0x1p-4\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:2:17: optim.weight_decay: expected a number, got '0x1p-4'"), "got: %s", out);
    ck_assert_int_eq(verify_text("model:\n  top_r: 00.5\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:2:10: model.top_r: expected a number, got '00.5' (no leading zeros"),
                  "got: %s", out);
    // Still fine: signs, exponents, a trailing dot, 0 and 0.x.
    int ok;
    DcalConfig c = load_text("model:\n  top_r: +0.25\n  depth: +3\noptim:\n  eps: 1.0E-08\n  min_lr: 0\n"
                             "  weight_decay: 5.\ndata:\n  mean: [-0, 0.5e0, 1e+0]\n", &ok);
    ck_assert(ok);
    ck_assert_int_eq(c.model.depth, 3);
    ck_assert_double_eq(c.optim.eps, 1e-8);
    ck_assert_double_eq(c.optim.weight_decay, 5.0);
    ck_assert_float_eq(c.data.mean[2], 1.0f);
}
END_TEST

// A list item longer than 63 characters was cut there and the rest parsed as
// if that were the whole number; a quoted "\0" ended a value early.
START_TEST(test_long_and_nul_values) {
    char yaml[512], num[200];
    snprintf(num, sizeof num, "0.5%070dx", 0);   // 0.5, 70 zeros, then junk past byte 63
    snprintf(yaml, sizeof yaml, "data:\n  mean: [%s, 0.5, 0.5]\n", num);
    ck_assert_int_eq(verify_text(yaml, NULL), 1);
    char want[300];
    snprintf(want, sizeof want, "c.yaml:2:9: data.mean: expected a number, got '%s'", num);
    ck_assert_msg(strstr(out, want), "got: %s", out);
    // A long but valid number is read whole: 0.25 followed by 70 zeros and a 1.
    snprintf(num, sizeof num, "0.25%070d1", 0);
    snprintf(yaml, sizeof yaml, "data:\n  std: [%s, 0.5, 0.5]\n", num);
    int ok;
    DcalConfig c = load_text(yaml, &ok);
    ck_assert(ok);
    ck_assert_float_eq(c.data.std[0], 0.25f);
    ck_assert_int_eq(verify_text("model:\n  depth: \"12\\0junk\"\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:2:10: value contains a NUL character"), "got: %s", out);
    ck_assert_int_eq(verify_text("data:\n  dataset: \"cub\\0x\"\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:2:12: value contains a NUL character"), "got: %s", out);
}
END_TEST

// --set goes through the same parsers, with the same messages.
START_TEST(test_set_strict_numbers) {
    ck_assert_int_eq(run_dcal("verify-config --set 'train.micro_batch= 8'", out, sizeof out), 1);
    ck_assert_msg(strstr(out, "--set train.micro_batch= 8: train.micro_batch: expected an integer, got ' 8' "
                              "(no spaces around a number)"), "got: %s", out);
    ck_assert_int_eq(run_dcal("verify-config --set model.depth=012", out, sizeof out), 1);
    ck_assert_msg(strstr(out, "--set model.depth=012: model.depth: expected an integer, got '012' (no leading zeros"),
                  "got: %s", out);
    DcalConfig c;
    config_defaults(&c);
    cap_begin();
    int ok = config_set(&c, "data.mean=0.5,0x1p-1,0.5");
    const char *err = cap_end();
    ck_assert(!ok);
    ck_assert_msg(strstr(err, "--set data.mean=0.5,0x1p-1,0.5: data.mean: expected a number, got '0x1p-1'"), "got: %s", err);
    ck_assert(config_set(&c, "optim.base_lr=5.0e-4"));
    ck_assert_double_eq(c.optim.base_lr, 5e-4);
    // An empty list item counts (and is refused); nothing of a long value is cut off.
    cap_begin();
    ok = config_set(&c, "data.mean=0.1,,0.2");
    err = cap_end();
    ck_assert(!ok);
    ck_assert_msg(strstr(err, "data.mean"), "got: %s", err);
    char big[400] = "data.mean=0.5,0.5,0.5";
    memset(big + strlen(big), '0', 200);
    strcpy(big + strlen(big), ",junk");
    cap_begin();
    ok = config_set(&c, big);
    err = cap_end();
    ck_assert(!ok);
    ck_assert_msg(strstr(err, "value too long"), "got: %s", err);
    char path[1200] = "data.root=/";
    memset(path + strlen(path), 'd', 1100);
    cap_begin();
    ok = config_set(&c, path);
    err = cap_end();
    ck_assert(!ok);
    ck_assert_msg(strstr(err, "data.root: value longer than 1023 characters"), "got: %s", err);
    path[700] = 0;   // a long path that fits is recorded whole
    ck_assert(config_set(&c, path));
    ck_assert_str_eq(c.overrides[c.n_overrides - 1], path);
}
END_TEST

// Config text must read back the same from the run's config.yaml (found by
// tests/fuzz/fuzz_config's round trip): one line of UTF-8, in YAML and --set.
START_TEST(test_text_values_one_line) {
    ck_assert_int_eq(verify_text("data:\n  root: \"a\\nb\"\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:2:9: data.root: the value contains a control character or line break"),
                  "got: %s", out);
    ck_assert_int_eq(verify_text("deviations:\n  - rule: lr\n    reason: \"x\\u0085y\"\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:3:5: deviations.reason: the value contains a control character"), "got: %s", out);
    ck_assert_int_eq(verify_text("deviations:\n  - rule: lr\n    reason: |\n      two\n      lines\n", NULL), 1);
    ck_assert_msg(strstr(out, "c.yaml:3:5: deviations.reason: the value contains a control character"), "got: %s", out);
    ck_assert_int_eq(run_dcal("verify-config --set \"$(printf 'data.root=a\\tb')\"", out, sizeof out), 1);
    ck_assert_msg(strstr(out, ": data.root: the value contains a control character"), "got: %s", out);
    ck_assert_int_eq(run_dcal("verify-config --set \"$(printf 'data.root=\\377')\"", out, sizeof out), 1);
    ck_assert_msg(strstr(out, ": data.root: the value is not UTF-8"), "got: %s", out);
    // A folded reason (">") loses only its final newline; UTF-8 text is fine.
    int ok;
    DcalConfig c = load_text("data:\n  root: \"/données/ü\"\ndeviations:\n  - rule: lr\n    reason: >\n      one\n      GPU\n", &ok);
    ck_assert(ok);
    ck_assert_str_eq(c.deviations[0].reason, "one GPU");
    ck_assert_str_eq(c.data.root, "/données/ü");
}
END_TEST

int main(void) {
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, test_defaults_are_paper);
    tcase_add_test(tc, test_values_parse);
    tcase_add_test(tc, test_preset_sets_shape);
    tcase_add_test(tc, test_unknown_key_line_col_and_suggestion);
    tcase_add_test(tc, test_duplicates);
    tcase_add_test(tc, test_wrong_types);
    tcase_add_test(tc, test_ranges);
    tcase_add_test(tc, test_syntax_error);
    tcase_add_test(tc, test_deviation_errors);
    tcase_add_test(tc, test_overrides);
    tcase_add_test(tc, test_yaml_round_trip);
    tcase_add_test(tc, test_resolve_order);
    tcase_add_test(tc, test_resolve_budget_then_gate);
    tcase_add_test(tc, test_resolve_gate);
    tcase_add_test(tc, test_resolve_precision);
    tcase_add_test(tc, test_checkpoint_layers_and_update_in_backward);
    tcase_add_test(tc, test_resolve_resume);
    tcase_add_test(tc, test_devices_world);
    tcase_add_test(tc, test_run_name_plain);
    tcase_add_test(tc, test_strict_numbers);
    tcase_add_test(tc, test_long_and_nul_values);
    tcase_add_test(tc, test_set_strict_numbers);
    tcase_add_test(tc, test_text_values_one_line);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
