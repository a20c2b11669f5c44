// compliance.h: the paper's rules, checked on a resolved config before any
// step is taken (MODEL.md §1-5). Each rule: id, expected, source, check.
#pragma once
#include <stdio.h>
#include <stdbool.h>
#include "config/config.h"

typedef enum { RULE_PASS, RULE_FAIL, RULE_DEVIATION } RuleStatus;

typedef struct {
    const char *id;            // e.g. "effective_batch"
    const char *source;        // "paper §4.1" or "MODEL.md §4 [pinned]"
    bool pinned;               // a pinned interpretation (docs/MODEL.md), not the paper's text
    char expected[96];
    char actual[96];
    RuleStatus status;         // DEVIATION = failed but declared (config deviations or --allow-deviation)
    const char *reason;        // declared reason, for DEVIATION
    char hint[192];            // for a FAIL: how to meet the rule instead ("" when the id says it)
} RuleResult;

#define COMPLIANCE_MAX_RULES 64
// Evaluate every rule. allowed: ids from --allow-deviation. Returns the number of rules.
int compliance_check(const DcalConfig *c, char allowed[][48], int n_allowed, RuleResult *out);
// Print the table (rule, expected, actual, source, PASS/FAIL/PINNED/DEVIATION).
void compliance_print(FILE *f, const RuleResult *r, int n);
// Number of rules with status FAIL (undeclared).
int compliance_failures(const RuleResult *r, int n);
// For train (config_resolve runs it once, on the final config): warn loudly on
// stderr for every DEVIATION and return 1 when training may start (no
// undeclared FAIL); 0 after naming each failing rule on stderr.
int compliance_gate(const RuleResult *r, int n);
// Rule ids, for validating --allow-deviation and config deviations.
int compliance_rule_count(void);
const char *compliance_rule_id(int i);
int compliance_rule_known(const char *id);
// An --allow-deviation id: 1 when known, else 0 after "who: --allow-deviation: unknown rule ...".
int compliance_check_allowed(const char *who, const char *id);
// Every 'deviations:' entry names a known rule; else 0 after "file:line:col: deviation names unknown rule ...".
int compliance_check_deviations(const DcalConfig *c);
