// gate.c: what is done with the rule table: print it (verify-config, the
// run's compliance.txt), gate training on it (warn on each DEVIATION, refuse
// on any undeclared FAIL), and check that every rule id a user names, in
// 'deviations:' or with --allow-deviation, is one the table knows.
#include <string.h>
#include "compliance/compliance.h"

static const char *status_word(const RuleResult *r) {
    switch (r->status) {
    case RULE_PASS: return r->pinned ? "PINNED" : "PASS";
    case RULE_FAIL: return "FAIL";
    case RULE_DEVIATION: return "DEVIATION";
    }
    return "?";
}

void compliance_print(FILE *f, const RuleResult *r, int n) {
    // Source last: it holds '§' (two bytes), which would skew printf's column widths.
    fprintf(f, "%-24s %-9s %-40s %-42s %s\n", "rule", "status", "expected", "actual", "source");
    for (int i = 0; i < n; i++) {
        fprintf(f, "%-24s %-9s %-40s %-42s %s", r[i].id, status_word(&r[i]), r[i].expected, r[i].actual,
                r[i].source);
        if (r[i].status == RULE_DEVIATION) fprintf(f, "  (%s)", r[i].reason);
        fputc('\n', f);
    }
    int pass = 0, pinned = 0, fail = 0, dev = 0;
    for (int i = 0; i < n; i++) {
        if (r[i].status == RULE_FAIL) fail++;
        else if (r[i].status == RULE_DEVIATION) dev++;
        else if (r[i].pinned) pinned++;
        else pass++;
    }
    fprintf(f, "%d rules: %d pass, %d pinned (docs/MODEL.md), %d declared deviation(s), %d FAIL\n", n, pass,
            pinned, dev, fail);
}

int compliance_failures(const RuleResult *r, int n) {
    int k = 0;
    for (int i = 0; i < n; i++) k += r[i].status == RULE_FAIL;
    return k;
}

int compliance_gate(const RuleResult *r, int n) {
    for (int i = 0; i < n; i++)
        if (r[i].status == RULE_DEVIATION)
            dcal_warn("deviating from the paper on '%s': expected %s, running %s (%s)", r[i].id, r[i].expected,
                      r[i].actual, r[i].reason);
    int fails = 0;
    for (int i = 0; i < n; i++)
        if (r[i].status == RULE_FAIL) {
            dcal_err("compliance rule '%s' fails: expected %s, got %s [%s] (%s%sdeclare it in 'deviations:' or pass "
                     "--allow-deviation %s)", r[i].id, r[i].expected, r[i].actual, r[i].source, r[i].hint,
                     r[i].hint[0] ? "; or " : "", r[i].id);
            fails++;
        }
    return fails == 0;
}

int compliance_rule_known(const char *id) {
    for (int i = 0; i < compliance_rule_count(); i++)
        if (!strcmp(compliance_rule_id(i), id)) return 1;
    return 0;
}

int compliance_check_allowed(const char *who, const char *id) {
    if (compliance_rule_known(id)) return 1;
    dcal_err("%s: --allow-deviation: unknown rule '%s' (see 'dcal verify-config' for rule ids)", who, id);
    return 0;
}

int compliance_check_deviations(const DcalConfig *c) {
    for (int i = 0; i < c->n_deviations; i++)
        if (!compliance_rule_known(c->deviations[i].rule)) {
            dcal_err("%s:%d:%d: deviation names unknown rule '%s' (see 'dcal verify-config' for rule ids)", c->source,
                     c->deviations[i].line, c->deviations[i].col, c->deviations[i].rule);
            return 0;
        }
    return 1;
}
