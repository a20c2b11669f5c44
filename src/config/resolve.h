// resolve.h: the one road from a command line to the config every later
// layer reads. config_resolve applies, in order:
//   defaults → the file (or, on --resume, the run's own config.yaml) → --set
//   (on resume only the resume-safe keys) → --pretrained → finalize →
//   deviation ids → auto micro-batch (memory budget) → precision →
//   the compliance table, and for train the gate, ONCE, on that final config.
// Afterwards callers hold `const DcalConfig *`: nothing may rewrite the config
// past the gate (the micro-batch the gate saw is the one that runs).
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include "compliance/compliance.h"
#include "config/config.h"

#define CONFIG_MAX_ALLOWED 32

typedef struct {
    const char *who;                          // message prefix for the gate ("train"); NULL = "config"
    const char *config_path;                  // --config (or --dataset's file); NULL = defaults only
    const char *const *sets; int n_sets;      // --set in order (--data-root arrives as data.root=DIR)
    const char *resume_dir;                   // --resume RUN: a run directory (used exactly as given) or a
                                              // plain name under the default train.out_dir; its config.yaml
                                              // replaces config_path and only resume-safe keys may be --set
    const char *pretrained;                   // --pretrained FILE (same as --set train.pretrained=FILE)
    const char *const *allowed; int n_allowed;   // --allow-deviation ids
    size_t memory_budget;                     // bytes; 0 = keep the config's micro-batch. Else the largest
    const char *budget_from;                  //   micro-batch that fits ("8G", "free device memory")
    StepBytesFn train_bytes;                  // the planner (train_planned_bytes); required with
                                              //   memory_budget
    const char *backend_precisions;           // e.g. "bf16 fp32", best first: auto → the first, an explicit
                                              //   value must be listed. NULL = leave train.precision as is
    int (*device_facts)(const char *device, size_t *free_bytes, const char **precisions, const char **backend,
                 const char **precision_note);
                                              // asked once train.device is final: the bytes a run may plan
                                              //   with on it (0 = not limited: keep the config's micro-batch
                                              //   unless memory_budget is set), its precisions, best first,
                                              //   and the backend's name (cuda: model.on_cuda).
                                              //   0 after an error line (no such device). NULL = no device
    int world_size;                           // processes the launcher started (train: dist_world()); 0 =
                                              //   none: plan for train.devices (verify-config, plan)
    bool gate;                                // train: refuse an undeclared FAIL, warn on each DEVIATION
    bool training;                            // train: the micro-batch must hold PWCA pairs (>= 2)
} ConfigRequest;

// The result. rules[].reason points into cfg.deviations: use it in place, do not copy the struct.
typedef struct {
    DcalConfig cfg;
    RuleResult rules[COMPLIANCE_MAX_RULES];
    int n_rules;
    int n_allowed;
    char allowed[CONFIG_MAX_ALLOWED][48];     // the --allow-deviation ids (manifest, compliance.txt)
    char run_dir[2 * DCAL_PATH_MAX + 2];      // on resume: the run directory found; else ""
} ResolvedConfig;

// 1 on success; 0 after one or more "dcal: ..." error lines.
int config_resolve(const ConfigRequest *rq, ResolvedConfig *out);

