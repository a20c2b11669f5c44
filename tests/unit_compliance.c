// unit_compliance.c: every paper rule passes on the paper configs and fails
// when its value is changed; deviations (declared or --allow-deviation) turn a
// FAIL into DEVIATION; verify-config's exit codes and table.
#include <string.h>
#include "compliance/compliance.h"
#include "testutil.h"

static char out[32768];

static void load_paper(DcalConfig *c, const char *name) {
    char p[1200];
    snprintf(p, sizeof p, "%s/configs/fgvc/%s.yaml", src_dir(), name);
    config_defaults(c);
    ck_assert(config_load(c, p));
    ck_assert(config_finalize(c));
}

static const RuleResult *find(const RuleResult *r, int n, const char *id) {
    for (int i = 0; i < n; i++)
        if (!strcmp(r[i].id, id)) return &r[i];
    ck_abort_msg("rule %s missing", id);
    return NULL;
}

START_TEST(test_paper_configs_pass) {
    const char *names[] = {"cub", "cars", "aircraft"};
    for (int k = 0; k < 3; k++) {
        DcalConfig c;
        load_paper(&c, names[k]);
        RuleResult r[COMPLIANCE_MAX_RULES];
        int n = compliance_check(&c, NULL, 0, r);
        ck_assert_int_eq(n, compliance_rule_count());
        for (int i = 0; i < n; i++)
            ck_assert_msg(r[i].status == RULE_PASS, "%s: rule %s: %s vs %s", names[k], r[i].id, r[i].expected,
                          r[i].actual);
        ck_assert_int_eq(compliance_failures(r, n), 0);
    }
}
END_TEST

// One mutation per configurable rule; each must make exactly that rule fail.
typedef struct { const char *rule; const char *set, *set2; } Mutation;
static const Mutation mutations[] = {
    {"effective_batch", "train.micro_batch=8", NULL},
    {"lr", "optim.lr=1e-4", NULL},
    {"sa_blocks", "model.preset=custom", "model.depth=13"},
    {"glca_blocks", "model.glca_blocks=2", NULL},
    {"pwca_blocks", "model.pwca_blocks=6", NULL},
    {"top_r", "model.top_r=0.2", NULL},
    {"backbone", "model.patch=14", NULL},
    {"train_resize", "data.resize=600", NULL},
    {"train_crop", "data.train_crop=center", NULL},
    {"test_crop", "data.test_crop=random", NULL},
    {"hflip", "data.hflip=false", NULL},
    {"num_classes", "model.num_classes=100", NULL},
    {"aircraft_banner", "data.banner_px=20", NULL},
    {"optimizer", "optim.beta2=0.99", NULL},
    {"weight_decay", "optim.weight_decay=0.1", NULL},
    {"schedule", "optim.epochs=50", NULL},
    {"val_split", "data.val_fraction=0.1", NULL},
    {"uncertainty_weighting", "loss.uncertainty_weighting=false", NULL},
    {"pwca_shares_sa_weights", "model.pwca_shares_sa_weights=false", NULL},
    {"glca_shares_sa_weights", "model.glca_shares_sa_weights=true", NULL},
    {"ln_eps", "model.ln_eps=1e-5", NULL},
    {"warmup", "optim.warmup_epochs=0", NULL},
    {"drop_path", "model.drop_path=0", NULL},
};

START_TEST(test_each_rule_fails_alone) {
    const Mutation *mu = &mutations[_i];
    DcalConfig c;
    load_paper(&c, "cub");
    ck_assert(config_set(&c, mu->set));
    if (mu->set2) ck_assert(config_set(&c, mu->set2));
    c.optim.lr = 0;   // re-derive lr from the (possibly changed) batch
    if (!strcmp(mu->rule, "lr")) c.optim.lr = 1e-4;
    else ck_assert(config_finalize(&c));
    RuleResult r[COMPLIANCE_MAX_RULES];
    int n = compliance_check(&c, NULL, 0, r);
    ck_assert_int_eq(find(r, n, mu->rule)->status, RULE_FAIL);
    ck_assert_int_eq(compliance_failures(r, n), 1);
    // Allowing exactly that rule turns it into a DEVIATION; nothing fails.
    char allowed[1][48];
    strcpy(allowed[0], mu->rule);
    n = compliance_check(&c, allowed, 1, r);
    ck_assert_int_eq(find(r, n, mu->rule)->status, RULE_DEVIATION);
    ck_assert_int_eq(compliance_failures(r, n), 0);
}
END_TEST

START_TEST(test_all_mutable_rules_covered) {
    // Every rule that is not fixed in code has a mutation above.
    DcalConfig c;
    load_paper(&c, "cub");
    RuleResult r[COMPLIANCE_MAX_RULES];
    int n = compliance_check(&c, NULL, 0, r);
    int n_mut = (int)(sizeof mutations / sizeof mutations[0]);
    for (int i = 0; i < n; i++) {
        if (!strcmp(r[i].actual, "fixed in code")) continue;
        int found = 0;
        for (int j = 0; j < n_mut; j++) found |= !strcmp(mutations[j].rule, r[i].id);
        ck_assert_msg(found, "rule %s has no failing test", r[i].id);
    }
}
END_TEST

START_TEST(test_declared_deviations) {
    DcalConfig c;
    load_paper(&c, "synthetic");
    RuleResult r[COMPLIANCE_MAX_RULES];
    int n = compliance_check(&c, NULL, 0, r);
    ck_assert_int_eq(compliance_failures(r, n), 0);
    const RuleResult *lr = find(r, n, "lr");
    ck_assert_int_eq(lr->status, RULE_DEVIATION);
    ck_assert(strstr(lr->reason, "from scratch"));
    // A deviation declared for a rule that passes leaves it PASS.
    ck_assert_int_eq(find(r, n, "effective_batch")->status, RULE_PASS);
}
END_TEST

START_TEST(test_verify_config_cli) {
    char args[1400];
    snprintf(args, sizeof args, "verify-config --config %s/configs/fgvc/cub.yaml", src_dir());
    ck_assert_int_eq(run_dcal(args, out, sizeof out), 0);
    for (int i = 0; i < compliance_rule_count(); i++)
        ck_assert_msg(strstr(out, compliance_rule_id(i)), "rule %s not listed", compliance_rule_id(i));
    ck_assert(strstr(out, "PINNED"));
    ck_assert(strstr(out, "0 FAIL"));
    // micro-batch 8 without accumulation 2: exit 1, naming the rule.
    snprintf(args, sizeof args, "verify-config --config %s/configs/fgvc/cub.yaml --set train.micro_batch=8", src_dir());
    ck_assert_int_eq(run_dcal(args, out, sizeof out), 1);
    ck_assert_msg(strstr(out, "rule 'effective_batch' FAILS: expected 16, got 8"), "got: %s", out);
    snprintf(args, sizeof args, "verify-config --dataset cub --set train.micro_batch=8 --set train.accum_steps=2");
    ck_assert_int_eq(run_dcal(args, out, sizeof out), 0);
    snprintf(args, sizeof args, "verify-config --dataset cub --set train.micro_batch=8 --allow-deviation effective_batch");
    ck_assert_int_eq(run_dcal(args, out, sizeof out), 0);
    ck_assert(strstr(out, "DEVIATION"));
    ck_assert_int_eq(run_dcal("verify-config --dataset cub --allow-deviation nope", out, sizeof out), 2);
    ck_assert(strstr(out, "unknown rule 'nope'"));
    ck_assert_int_eq(run_dcal("verify-config --dataset tiny", out, sizeof out), 0);
    ck_assert(strstr(out, "3-block test model"));   // declared reasons are shown
}
END_TEST

START_TEST(test_gate_and_ids) {
    DcalConfig c;
    load_paper(&c, "synthetic");   // declares deviations: the gate warns on each and lets training start
    RuleResult r[COMPLIANCE_MAX_RULES];
    int n = compliance_check(&c, NULL, 0, r);
    cap_begin();
    int ok = compliance_gate(r, n);
    const char *err = cap_end();
    ck_assert(ok);
    ck_assert_msg(strstr(err, "WARNING: deviating from the paper on 'lr'"), "got: %s", err);
    // An undeclared FAIL stops it, naming the rule and how to declare it.
    load_paper(&c, "cub");
    ck_assert(config_set(&c, "model.glca_blocks=2"));
    n = compliance_check(&c, NULL, 0, r);
    cap_begin();
    ok = compliance_gate(r, n);
    err = cap_end();
    ck_assert(!ok);
    ck_assert_msg(strstr(err, "compliance rule 'glca_blocks' fails") && strstr(err, "--allow-deviation glca_blocks"),
                  "got: %s", err);
    // Rule ids: known ones, unknown --allow-deviation ids and config deviations.
    ck_assert(compliance_rule_known("effective_batch"));
    ck_assert(!compliance_rule_known("effective-batch"));
    cap_begin();
    ok = compliance_check_allowed("eval", "nope");
    err = cap_end();
    ck_assert(!ok);
    ck_assert_msg(strstr(err, "eval: --allow-deviation: unknown rule 'nope'"), "got: %s", err);
    strcpy(c.deviations[0].rule, "nope");
    c.deviations[0].line = 7;
    c.deviations[0].col = 5;
    c.n_deviations = 1;
    cap_begin();
    ok = compliance_check_deviations(&c);
    err = cap_end();
    ck_assert(!ok);
    ck_assert_msg(strstr(err, "cub.yaml:7:5: deviation names unknown rule 'nope'"), "got: %s", err);
}
END_TEST

int main(void) {
    Suite *s = suite_create("compliance");
    TCase *tc = tcase_create("compliance");
    tcase_add_test(tc, test_paper_configs_pass);
    tcase_add_loop_test(tc, test_each_rule_fails_alone, 0, (int)(sizeof mutations / sizeof mutations[0]));
    tcase_add_test(tc, test_all_mutable_rules_covered);
    tcase_add_test(tc, test_declared_deviations);
    tcase_add_test(tc, test_verify_config_cli);
    tcase_add_test(tc, test_gate_and_ids);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
