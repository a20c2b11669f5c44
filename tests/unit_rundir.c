// unit_rundir.c: run directory creation, manifest contents, metrics, refusal
// to reuse a run, and `dcal audit` on a hand-made run (clean, then corrupted).
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "train/checkpoint.h"
#include "compliance/compliance.h"
#include "core/common.h"
#include "core/json.h"
#include "config/config.h"
#include "run/rundir.h"
#include "core/sha256.h"
#include "testutil.h"
#include "ckpt_edit.h"


static DcalConfig tiny(const char *out_dir, const char *run_name) {
    DcalConfig c;
    char p[1200];
    config_defaults(&c);
    snprintf(p, sizeof p, "%s/configs/fgvc/tiny.yaml", src_dir());
    ck_assert(config_load(&c, p));
    char set[1200];
    snprintf(set, sizeof set, "train.out_dir=%s", out_dir);
    ck_assert(config_set(&c, set));
    snprintf(set, sizeof set, "train.run_name=%s", run_name);
    ck_assert(config_set(&c, set));
    ck_assert(config_finalize(&c));
    return c;
}

static char *slurp(const char *dir, const char *name) {
    char p[1300];
    size_t n;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    char *s = read_file(p, &n);
    ck_assert_msg(s != NULL, "cannot read %s", p);
    return s;
}

// metrics.jsonl without the "time" and "wall_s" rundir_metric adds to each
// JSON object row (checked present and well-formed on every such row).
static char *metrics_unstamped(const char *dir) {
    char *s = slurp(dir, "metrics.jsonl"), *w = s;
    for (char *line = s, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        ck_assert_ptr_nonnull(nl);
        char *st = line[0] == '{' ? strstr(line, ",\"time\":\"") : NULL;
        ck_assert_msg(line[0] != '{' || (st && st < nl), "row without a time stamp: %.*s", (int)(nl - line), line);
        int y, mo, d, h, mi, sec, ms, n = 0;
        double wall;
        if (st) {
            ck_assert_msg(sscanf(st, ",\"time\":\"%4d-%2d-%2dT%2d:%2d:%2d.%3dZ\",\"wall_s\":%lf}%n", &y, &mo, &d, &h, &mi,
                                 &sec, &ms, &wall, &n) == 8 && st + n == nl && wall >= 0,
                          "bad stamp: %.*s", (int)(nl - st), st);
        }
        size_t keep = (size_t)((st ? st : nl) - line);
        memmove(w, line, keep);
        w += keep;
        if (st) *w++ = '}';
        *w++ = '\n';
    }
    *w = 0;
    return s;
}

// A complete run: rundir_open + manifest + metrics + a checkpoint of a tiny model.
static void make_run_pre(RunDir *r, const DcalConfig *c, const char *pre, const char *pre_sha) {
    ck_assert(rundir_open(r, c, NULL));
    ck_assert(rundir_open_metrics(r, false, 0));
    char allowed[1][48] = {"effective_batch"};
    char *argv[] = {"dcal", "train", "--dataset", "tiny", "--set", "note=\"quoted\"\\path"};
    RuleResult rr[COMPLIANCE_MAX_RULES];
    int n = compliance_check(c, allowed, 1, rr);
    ManifestInfo info = {.argc = 6, .argv = argv, .backend = "cpu", .device_name = "",
                         .dataset_fingerprint = "fp-0123abcd", .pretrained_path = pre, .pretrained_sha256 = pre_sha,
                         .init_path = "", .init_sha256 = "", .n_allowed = 1, .allowed = allowed,
                         .rules = rr, .n_rules = n};
    ck_assert(rundir_write_manifest(r, c, &info));
    rundir_metric(r, "{\"kind\":\"train\",\"step\":1,\"loss\":2.5}");
    rundir_metric(r, "{\"kind\":\"train\",\"step\":2,\"loss\":2.4}");
    rundir_metric(r, "{\"kind\":\"eval\",\"step\":2,\"acc_sa\":0.1}");
    Model m;
    ck_assert(model_build(&m, &c->model, &backend_cpu));
    model_init_weights(&m, 1);
    char p[DCAL_PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/checkpoint.safetensors", r->dir);
    // A full training state, as dcal train writes it: the audit checks AdamW state and the seed too.
    float *am = backend_cpu.alloc(m.n_params * sizeof(float)), *av = backend_cpu.alloc(m.n_params * sizeof(float));
    TrainPos pos = {.step = 2, .micro_step = 8, .seed = c->train.seed};
    ck_assert(checkpoint_save(p, &m, am, av, &pos));
    backend_cpu.free(am);
    backend_cpu.free(av);
    model_free(&m);
}

static void make_run(RunDir *r, const DcalConfig *c) { make_run_pre(r, c, "", ""); }

START_TEST(open_manifest_metric) {
    char out[1100];
    snprintf(out, sizeof out, "%s", test_tmpdir("rundir"));
    DcalConfig c = tiny(out, "r1");
    RunDir r;
    make_run(&r, &c);
    rundir_close(&r);
    char want_dir[1200];
    snprintf(want_dir, sizeof want_dir, "%s/r1", out);
    ck_assert_str_eq(r.dir, want_dir);
    char *man = slurp(r.dir, "manifest.json");
    ck_assert_ptr_nonnull(strstr(man, "\"fingerprint\": \"fp-0123abcd\""));
    ck_assert_ptr_nonnull(strstr(man, "\"allow_deviation\": [\"effective_batch\"]"));
    ck_assert_ptr_nonnull(strstr(man, "{\"rule\": \"lr\", \"reason\": \"trained from scratch on a toy set\", \"declared_by\": \"config\"}"));
    ck_assert_ptr_nonnull(strstr(man, "\"note=\\\"quoted\\\"\\\\path\""));   // JSON escaping of argv
    ck_assert_ptr_nonnull(strstr(man, "\"dcal_version\": \"" DCAL_VERSION "\""));
    ck_assert_ptr_nonnull(strstr(man, "\"openblas\": "));
    ck_assert_ptr_nonnull(strstr(man, "train.run_name=r1"));   // overrides recorded
    char hex[65], path[1300], key[100];
    snprintf(path, sizeof path, "%s/config.yaml", r.dir);
    ck_assert(sha256_file(path, hex));
    snprintf(key, sizeof key, "\"config_sha256\": \"%s\"", hex);
    ck_assert_ptr_nonnull(strstr(man, key));
    free(man);
    char *cmp = slurp(r.dir, "compliance.txt");
    ck_assert_ptr_nonnull(strstr(cmp, "DEVIATION"));
    free(cmp);
    char *met = metrics_unstamped(r.dir);
    ck_assert_str_eq(met, "{\"kind\":\"train\",\"step\":1,\"loss\":2.5}\n{\"kind\":\"train\",\"step\":2,\"loss\":2.4}\n"
                          "{\"kind\":\"eval\",\"step\":2,\"acc_sa\":0.1}\n");
    free(met);

    // The same run name again: refused, naming --resume and train.run_name.
    RunDir r2;
    cap_begin();
    int ok = rundir_open(&r2, &c, NULL);
    const char *err = cap_end();
    ck_assert_int_eq(ok, 0);
    ck_assert_msg(strstr(err, "already exists") && strstr(err, "--resume") && strstr(err, "train.run_name"), "%s", err);
    // Resume appends to metrics and leaves config.yaml alone.
    struct stat before, after;
    ck_assert(stat(path, &before) == 0);
    ck_assert(rundir_open(&r2, &c, r.dir));
    ck_assert(rundir_open_metrics(&r2, true, 2));
    rundir_metric(&r2, "{\"kind\":\"train\",\"step\":3}");
    rundir_close(&r2);
    ck_assert(stat(path, &after) == 0);
    ck_assert(before.st_ino == after.st_ino && before.st_mtime == after.st_mtime);
    met = metrics_unstamped(r.dir);
    ck_assert_ptr_nonnull(strstr(met, "acc_sa\":0.1}\n{\"kind\":\"train\",\"step\":3}\n"));
    free(met);
    // Resume of a run that does not exist.
    char nope[1200];
    snprintf(nope, sizeof nope, "%s/nope", out);
    cap_begin();
    ok = rundir_open(&r2, &c, nope);
    err = cap_end();
    ck_assert_int_eq(ok, 0);
    ck_assert_ptr_nonnull(strstr(err, "manifest.json missing"));
}
END_TEST

// The manifest parses as JSON and records what the caller gave: backend_describe,
// and compliance.txt is the gate's table as passed (not re-evaluated).
START_TEST(manifest_from_caller) {
    char out[1100];
    snprintf(out, sizeof out, "%s", test_tmpdir("rundir"));
    DcalConfig c = tiny(out, "caller");
    RunDir r;
    ck_assert(rundir_open(&r, &c, NULL));
    ck_assert(rundir_open_metrics(&r, false, 0));
    RuleResult rr[COMPLIANCE_MAX_RULES];
    int n = compliance_check(&c, NULL, 0, rr);
    ck_assert_int_gt(n, 2);
    char *argv[] = {"dcal", "tab\there"};
    ManifestInfo info = {.argc = 2, .argv = argv, .backend = "cuda", .device_name = "Some GPU",
                         .backend_describe = "Some GPU | runtime 12.4 | tf32 off \"exact\"",
                         .dataset_fingerprint = "fp", .rules = rr, .n_rules = 2};
    ck_assert(rundir_write_manifest(&r, &c, &info));
    JsonW w;
    jw_init(&w, false, 0);
    jw_begin_object(&w);
    jw_kv_string(&w, "kind", "train");
    jw_kv_int(&w, "step", 5);
    jw_kv_double(&w, "loss", "%.6g", 2.0 / 3);
    jw_end_object(&w);
    rundir_metric_json(&r, &w);
    jw_free(&w);
    rundir_close(&r);

    char *man = slurp(r.dir, "manifest.json");
    Json v;
    JsonError e;
    ck_assert_msg(json_parse(man, strlen(man), 0, &v, &e), "manifest.json at %zu: %s", e.offset, e.msg);
    ck_assert_str_eq(json_str(&v, "backend_describe"), "Some GPU | runtime 12.4 | tf32 off \"exact\"");
    ck_assert_str_eq(json_str(&v, "device_name"), "Some GPU");
    ck_assert_str_eq(json_str(&v, "backend"), "cuda");
    ck_assert_str_eq(json_at(json_get(&v, "argv"), 1)->s, "tab\there");
    ck_assert_ptr_nonnull(json_str(json_get(&v, "libraries"), "openblas"));
    ck_assert(json_get(&v, "seed")->is_int);
    ck_assert_int_eq(json_get(&v, "deviations")->len, c.n_deviations);
    json_free(&v);
    free(man);
    // compliance.txt holds exactly the two rules passed.
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    compliance_print(f, rr, 2);
    fclose(f);
    char *cmp = slurp(r.dir, "compliance.txt");
    ck_assert_str_eq(cmp, buf);
    free(cmp);
    free(buf);
    char *met = metrics_unstamped(r.dir);
    ck_assert_str_eq(met, "{\"kind\":\"train\",\"step\":5,\"loss\":0.666667}\n");
    free(met);
}
END_TEST

START_TEST(default_run_name) {
    char out[1100];
    snprintf(out, sizeof out, "%s", test_tmpdir("rundir"));
    DcalConfig c = tiny(out, "");
    RunDir r;
    ck_assert(rundir_open(&r, &c, NULL));
    rundir_close(&r);
    // <dataset>-YYYYMMDD-HHMMSS (UTC), and config.yaml records it so --resume finds the dir.
    const char *name = strrchr(r.dir, '/') + 1;
    ck_assert_int_eq((int)strlen(name), (int)strlen("synthetic-20261123-054500"));
    ck_assert(!strncmp(name, "synthetic-20", 12) && name[18] == '-');
    char *yaml = slurp(r.dir, "config.yaml");
    char want[200];
    snprintf(want, sizeof want, "run_name: \"%s\"", name);
    ck_assert_msg(strstr(yaml, want) || strstr(yaml, name), "%s", yaml);
    free(yaml);
}
END_TEST

START_TEST(audit_run) {
    char out[1100], args[1400], buf[16384];
    snprintf(out, sizeof out, "%s", test_tmpdir("rundir"));
    DcalConfig c = tiny(out, "aud");
    RunDir r;
    make_run(&r, &c);
    rundir_close(&r);
    snprintf(args, sizeof args, "audit %s", r.dir);
    int rc = run_dcal(args, buf, sizeof buf);
    ck_assert_msg(rc == 0, "audit of a clean run failed:\n%s", buf);
    ck_assert_ptr_nonnull(strstr(buf, "params_sha256 matches"));
    ck_assert_ptr_nonnull(strstr(buf, "steps increasing"));
    ck_assert(strncmp(buf, "FAIL", 4) && !strstr(buf, "\nFAIL"));

    // An edit to config.yaml after the start: hash mismatch, exit 1, naming the file.
    char path[1300];
    snprintf(path, sizeof path, "%s/config.yaml", r.dir);
    FILE *f = fopen(path, "a");
    fputs("# edited later\n", f);
    fclose(f);
    rc = run_dcal(args, buf, sizeof buf);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(buf, "FAIL") && strstr(buf, "config.yaml: sha256"), "%s", buf);

    // A metrics line going back in step, and a flipped byte in the checkpoint's data.
    snprintf(path, sizeof path, "%s/metrics.jsonl", r.dir);
    f = fopen(path, "a");
    fputs("{\"kind\":\"train\",\"step\":1}\n", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", r.dir);
    f = fopen(path, "r+b");
    fseek(f, -4, SEEK_END);
    fputc(0x7f, f);
    fclose(f);
    rc = run_dcal(args, buf, sizeof buf);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(buf, "metrics.jsonl:4: step 1 goes back from 2"), "%s", buf);
    ck_assert_msg(strstr(buf, "checkpoint.safetensors: AdamW moments do not match the file's adam_sha256"), "%s", buf);
    ck_assert_msg(strstr(buf, "FAIL") && strstr(buf, "checkpoint.safetensors: does not verify"), "%s", buf);

    // Usage errors.
    ck_assert_int_eq(run_dcal("audit --bogus x", NULL, 0), 2);
    ck_assert_int_eq(run_dcal("audit", NULL, 0), 2);
    ck_assert_int_eq(run_dcal("audit --help", buf, sizeof buf), 0);
    ck_assert_ptr_nonnull(strstr(buf, "usage: dcal audit RUN_DIR"));
    // No such directory: one line. A directory that is not a run: its missing files.
    snprintf(args, sizeof args, "audit %s/none", out);
    ck_assert_int_eq(run_dcal(args, buf, sizeof buf), 1);
    ck_assert_msg(strstr(buf, "dcal: audit: ") && strstr(buf, "/none: no such run directory\n"), "%s", buf);
    snprintf(path, sizeof path, "%s/empty", out);
    ck_assert_int_eq(mkdir_p(path), 0);
    snprintf(args, sizeof args, "audit %s/empty", out);
    ck_assert_int_eq(run_dcal(args, buf, sizeof buf), 1);
    ck_assert_ptr_nonnull(strstr(buf, "manifest.json: missing"));
}
END_TEST

// Weight files named in the manifest are re-hashed: OK, FAIL when changed, WARN when gone.
START_TEST(audit_weight_files) {
    char out[1100], pre[1200], args[1400], buf[16384], hex[65];
    snprintf(out, sizeof out, "%s", test_tmpdir("rundir"));
    snprintf(pre, sizeof pre, "%s/vit.safetensors", out);
    write_text(pre, "pretend weights");
    ck_assert(sha256_file(pre, hex));
    DcalConfig c = tiny(out, "pre");
    RunDir r;
    make_run_pre(&r, &c, pre, hex);
    rundir_close(&r);
    snprintf(args, sizeof args, "audit %s", r.dir);
    ck_assert_int_eq(run_dcal(args, buf, sizeof buf), 0);
    ck_assert_msg(strstr(buf, "OK   pretrained: ") && strstr(buf, "sha256 matches"), "%s", buf);
    write_text(pre, "other weights");
    ck_assert_int_eq(run_dcal(args, buf, sizeof buf), 1);
    ck_assert_msg(strstr(buf, "FAIL pretrained: "), "%s", buf);
    unlink(pre);
    ck_assert_int_eq(run_dcal(args, buf, sizeof buf), 0);
    ck_assert_msg(strstr(buf, "WARN pretrained: ") && strstr(buf, "no longer exists"), "%s", buf);
}
END_TEST

// A run holds <dir>/.lock: a second open of it (resume or a new run of the same
// name) is refused naming the directory and the holder; the lock ends with the run.
START_TEST(lock_refuses_second) {
    char out[1100], want[2400];
    snprintf(out, sizeof out, "%s", test_tmpdir("rundir"));
    DcalConfig c = tiny(out, "locked");
    RunDir r, r2;
    make_run(&r, &c);   // still open: holds the lock
    snprintf(want, sizeof want, "%s: in use by another dcal process (pid %ld) holding %s/.lock", r.dir,
             (long)getpid(), r.dir);
    cap_begin();
    int ok = rundir_open(&r2, &c, r.dir);
    const char *err = cap_end();
    ck_assert_int_eq(ok, 0);
    ck_assert_msg(strstr(err, want), "%s", err);
    cap_begin();
    ok = rundir_open(&r2, &c, NULL);
    err = cap_end();
    ck_assert_int_eq(ok, 0);
    ck_assert_msg(strstr(err, want), "%s", err);
    rundir_close(&r);
    ck_assert(rundir_open(&r2, &c, r.dir));   // released
    rundir_close(&r2);
}
END_TEST

// A new run never writes into a non-empty directory that is not a dcal run.
START_TEST(foreign_dir_refused) {
    char out[1100], p[1300];
    snprintf(out, sizeof out, "%s", test_tmpdir("rundir"));
    snprintf(p, sizeof p, "%s/mine", out);
    ck_assert(mkdir_p(p) == 0);
    snprintf(p, sizeof p, "%s/mine/notes.txt", out);
    write_text(p, "my notes\n");
    DcalConfig c = tiny(out, "mine");
    RunDir r;
    cap_begin();
    int ok = rundir_open(&r, &c, NULL);
    const char *err = cap_end();
    ck_assert_int_eq(ok, 0);
    ck_assert_msg(strstr(err, "/mine: not empty and not a dcal run (it holds 'notes.txt' but no manifest.json)"),
                  "%s", err);
    snprintf(p, sizeof p, "%s/mine/.lock", out);
    ck_assert_msg(access(p, F_OK) != 0, "a lock file was written into a foreign directory");
    snprintf(p, sizeof p, "%s/mine/config.yaml", out);
    ck_assert(access(p, F_OK) != 0);
    // An empty directory, and one a failed start left (config.yaml, .lock), are taken.
    snprintf(p, sizeof p, "%s/empty", out);
    ck_assert(mkdir_p(p) == 0);
    DcalConfig e = tiny(out, "empty");
    ck_assert(rundir_open(&r, &e, NULL));
    rundir_close(&r);   // leaves config.yaml and .lock, no manifest
    ck_assert(rundir_open(&r, &e, NULL));
    rundir_close(&r);
    // A resume never creates a lock in a directory without a run.
    snprintf(p, sizeof p, "%s/mine", out);
    cap_begin();
    ok = rundir_open(&r, &c, p);
    err = cap_end();
    ck_assert_int_eq(ok, 0);
    ck_assert_ptr_nonnull(strstr(err, "no run to resume here (manifest.json missing: a start that stopped before its first step"));
    snprintf(p, sizeof p, "%s/mine/.lock", out);
    ck_assert(access(p, F_OK) != 0);
}
END_TEST

// Resume keeps the metrics rows up to the checkpoint's step (train and eval),
// drops later ones, "final" rows and a torn last line; keeps a line it cannot read.
START_TEST(metrics_truncated_on_resume) {
    char out[1100], p[1300];
    snprintf(out, sizeof out, "%s", test_tmpdir("rundir"));
    DcalConfig c = tiny(out, "trunc");
    RunDir r;
    make_run(&r, &c);
    rundir_metric(&r, "not json");
    rundir_metric(&r, "{\"kind\":\"train\",\"step\":3,\"loss\":2.3}");
    rundir_metric(&r, "{\"kind\":\"eval\",\"step\":3,\"acc_sa\":0.2}");
    rundir_metric(&r, "{\"kind\":\"final\",\"step\":3}");
    rundir_close(&r);
    snprintf(p, sizeof p, "%s/metrics.jsonl", r.dir);
    FILE *f = fopen(p, "a");
    fputs("{\"kind\":\"train\",\"st", f);   // a kill -9 mid-line
    fclose(f);
    const char *kept = "{\"kind\":\"train\",\"step\":1,\"loss\":2.5}\n{\"kind\":\"train\",\"step\":2,\"loss\":2.4}\n"
                       "{\"kind\":\"eval\",\"step\":2,\"acc_sa\":0.1}\nnot json\n";
    // A negative step would drop everything: refused, file as it was.
    cap_begin();
    ck_assert(rundir_open(&r, &c, r.dir));
    int ok = rundir_open_metrics(&r, true, -1);
    const char *err = cap_end();
    ck_assert_int_eq(ok, 0);
    ck_assert_msg(strstr(err, "checkpoint step -1 is negative"), "%s", err);
    rundir_close(&r);
    char *met = slurp(r.dir, "metrics.jsonl");
    ck_assert_ptr_nonnull(strstr(met, "\"kind\":\"final\""));
    free(met);
    ck_assert(rundir_open(&r, &c, r.dir));
    ck_assert(rundir_open_metrics(&r, true, 2));
    rundir_metric(&r, "{\"kind\":\"train\",\"step\":3,\"loss\":2.2}");
    rundir_close(&r);
    met = metrics_unstamped(r.dir);
    char want[600];
    snprintf(want, sizeof want, "%s{\"kind\":\"train\",\"step\":3,\"loss\":2.2}\n", kept);
    ck_assert_str_eq(met, want);
    free(met);
    // metrics.csv was cut back with it: the same rows (the unreadable line has no CSV row).
    char *csv = slurp(r.dir, "metrics.csv");
    const char *rows[] = {",train,1,,2.5,", ",train,2,,2.4,", ",eval,2,,", ",train,3,,2.2,"};
    char *line = strchr(csv, '\n') + 1;
    ck_assert_msg(!strncmp(csv, "time,wall_s,kind,step,epoch,loss,", 33), "%s", csv);
    for (int i = 0; i < 4; i++, line = strchr(line, '\n') + 1)
        ck_assert_msg(strstr(line, rows[i]) && strstr(line, rows[i]) < strchr(line, '\n'), "row %d: %s", i, csv);
    ck_assert_str_eq(line, "");
    free(csv);
    // Nothing past the checkpoint: the file is not rewritten.
    struct stat before, after;
    ck_assert(stat(p, &before) == 0);
    ck_assert(rundir_open(&r, &c, r.dir));
    ck_assert(rundir_open_metrics(&r, true, 3));
    // The ledger: a row of that kind and step, complete; a torn line is none.
    ck_assert(!rundir_ledger_has(&r, "checkpoint", 3));
    rundir_metric(&r, "{\"kind\":\"checkpoint\",\"step\":3}");
    ck_assert(rundir_ledger_has(&r, "checkpoint", 3));
    ck_assert(!rundir_ledger_has(&r, "checkpoint", 2) && !rundir_ledger_has(&r, "best", 3));
    ck_assert(rundir_ledger_has(&r, "eval", 2));
    rundir_close(&r);
    FILE *torn = fopen(p, "a");
    fputs("{\"kind\":\"best\",\"step\":3}", torn);   // no newline: cut mid-write
    fclose(torn);
    ck_assert(rundir_open(&r, &c, r.dir));
    ck_assert(!rundir_ledger_has(&r, "best", 3));
    rundir_close(&r);
    ck_assert(stat(p, &after) == 0);
    ck_assert(before.st_ino == after.st_ino);
}
END_TEST

// Resume re-checks the dataset against manifest.json's fingerprint.
START_TEST(dataset_fingerprint_on_resume) {
    char out[1100];
    snprintf(out, sizeof out, "%s", test_tmpdir("rundir"));
    DcalConfig c = tiny(out, "fp");
    RunDir r;
    make_run(&r, &c);
    ck_assert(rundir_check_dataset(&r, "/data/here", "fp-0123abcd"));
    cap_begin();
    int ok = rundir_check_dataset(&r, "/data/other", "fp-ffff");
    const char *err = cap_end();
    ck_assert_int_eq(ok, 0);
    char want[2400];
    snprintf(want, sizeof want, "dcal: /data/other: dataset fingerprint fp-ffff differs from the run's fp-0123abcd "
             "(%s/manifest.json)", r.dir);
    ck_assert_msg(strstr(err, want), "%s", err);
    rundir_close(&r);
}
END_TEST

// The audit verifies each checkpoint against the model of config.yaml: a header
// of "{}", a transposed or renamed tensor, metadata without params_sha256, a NaN
// in the AdamW state or another seed each FAIL, the reason naming the tensor/field.
START_TEST(audit_checkpoint_tampering) {
    char out[1100], args[1400], buf[16384], ck[1300], orig[1300];
    snprintf(out, sizeof out, "%s", test_tmpdir("rundir"));
    DcalConfig c = tiny(out, "tamper");
    RunDir r;
    make_run(&r, &c);
    rundir_close(&r);
    snprintf(args, sizeof args, "audit %s", r.dir);
    snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", r.dir);
    snprintf(orig, sizeof orig, "%s/orig.st", out);
    ck_assert(rename(ck, orig) == 0);
    static const struct { CkptEdit e; const char *expect; } cases[] = {
        {{0}, NULL},
        {{.empty = 1}, "metadata 'format' is missing"},
        {{.poke = "blocks.1.attn.proj.weight", .poke_at = 0, .poke_val = 2}, "tensors do not match the file's params_sha256"},
        {{.transpose = "blocks.1.mlp.fc1.weight"}, "tensor 'blocks.1.mlp.fc1.weight': shape [32,64] in file, model expects [64,32]"},
        {{.rename_from = "cls_token", .rename_to = "cls"}, "tensor 'cls' is not part of a checkpoint of this model"},
        {{.drop_meta = "params_sha256"}, "metadata 'params_sha256' missing"},
        {{.poke = "adam.v.blocks.0.attn.qkv.weight", .poke_at = 17, .poke_val = NAN},
         "tensor 'adam.v.blocks.0.attn.qkv.weight': element 17 is NaN"},
        {{.meta_key = "seed", .meta_val = "8"}, "metadata 'seed' is 8, config.yaml's train.seed 7"},
        {{.meta_key = "step", .meta_val = "-2"}, "metadata 'step': '-2' is not a decimal integer"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ckpt_edit(orig, ck, &cases[i].e);
        int rc = run_dcal(args, buf, sizeof buf);
        if (!cases[i].expect) {
            ck_assert_msg(rc == 0 && strstr(buf, "params_sha256 matches, adam_sha256 matches"), "%s", buf);
            continue;
        }
        ck_assert_msg(rc == 1, "case %zu passed the audit:\n%s", i, buf);
        ck_assert_msg(strstr(buf, cases[i].expect) && strstr(buf, "FAIL") &&
                      strstr(buf, "checkpoint.safetensors: does not verify against the model of config.yaml"),
                      "case %zu: lacks '%s':\n%s", i, cases[i].expect, buf);
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("rundir");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, open_manifest_metric);
    tcase_add_test(tc, manifest_from_caller);
    tcase_add_test(tc, default_run_name);
    tcase_add_test(tc, audit_run);
    tcase_add_test(tc, audit_weight_files);
    tcase_add_test(tc, lock_refuses_second);
    tcase_add_test(tc, foreign_dir_refused);
    tcase_add_test(tc, metrics_truncated_on_resume);
    tcase_add_test(tc, dataset_fingerprint_on_resume);
    tcase_add_test(tc, audit_checkpoint_tampering);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
