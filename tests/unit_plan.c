// unit_plan.c: the memory plan adds up, matches what the model really
// allocates, reacts to checkpointing and micro-batch, and picks micro-batches
// that fit and divide the effective batch; `dcal plan` flags.
#include <string.h>
#include "core/common.h"
#include "config/config.h"
#include "model/model.h"
#include "cmd/cli.h"
#include "dist/reduce.h"
#include "model/plan.h"
#include "train/train.h"
#include "testutil.h"

static DcalConfig load(const char *name) {
    DcalConfig c;
    char p[1200];
    config_defaults(&c);
    snprintf(p, sizeof p, "%s/configs/fgvc/%s.yaml", src_dir(), name);
    ck_assert(config_load(&c, p) && config_finalize(&c));
    return c;
}

// On the CPU the planned peak RSS also counts the run's host data (train_host_bytes), by hand
// for ViT-B at 224 px (resize 256), micro-batch 4: a batch is 4·3·224²·4 = 2408448 bytes; with
// 2 workers the loader holds 3 batches in flight and each worker one image decoding (file,
// pixels, resized RGB, 3·256²·3 = 589824): 8404992; training adds its two buffers (13221888);
// an evaluation its loader and one batch (10813440) and a checkpoint its largest tensor (fc1's
// 768·3072·4 = 9437184): 33472512 in all. Without workers: one image decoding beside the
// buffers (5406720), evaluating 589824 + 2408448, and the tensor: 17842176.
START_TEST(host_data_counted) {
    DcalConfig c = load("cub");
    const char *sets[] = {"model.img_size=224", "data.crop=224", "data.resize=256", "data.workers=2"};
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++) ck_assert(config_set(&c, sets[i]));
    ck_assert_uint_eq(plan_largest_tensor(&c.model), 9437184u);
    Model m;   // the rule agrees with the model's own tensor table
    ck_assert(model_build(&m, &c.model, &backend_cpu));
    ck_assert_uint_eq(model_largest_tensor(&m) * sizeof(float), plan_largest_tensor(&c.model));
    model_free(&m);
    ck_assert_uint_eq(loader_plan_bytes(&c.data, 4), 8404992u);
    ck_assert_uint_eq(train_host_bytes(&c, 4), 33472512u);
    ck_assert(config_set(&c, "data.workers=0"));
    ck_assert_uint_eq(loader_plan_bytes(&c.data, 4), 589824u);
    ck_assert_uint_eq(train_host_bytes(&c, 4), 17842176u);
}
END_TEST

START_TEST(adds_up) {
    const char *names[] = {"tiny", "cub"};
    for (int k = 0; k < 2; k++) {
        DcalConfig c = load(names[k]);
        for (int B = 2; B <= 8; B *= 2)
            for (int ck = 0; ck < 2; ck++) {
                MemPlan p;
                model_plan(&c.model, B, ck, true, &p);
                ck_assert_uint_eq(p.total, p.weights + p.grads + p.optimizer + p.activations + p.workspace);
                ck_assert_uint_eq(p.total, plan_train_bytes(&c.model, B, ck));
                ck_assert_uint_eq(p.grads, p.weights);
                ck_assert_uint_eq(p.optimizer, 2 * p.weights);   // AdamW m + v, fp32
            }
        MemPlan a, b, c4, c8;
        model_plan(&c.model, 4, false, true, &a);
        model_plan(&c.model, 4, true, true, &b);
        ck_assert_msg(b.activations < a.activations, "%s: checkpointing must cut activations", names[k]);
        ck_assert(b.total < a.total);
        model_plan(&c.model, 4, false, true, &c4);
        model_plan(&c.model, 8, false, true, &c8);
        ck_assert(c8.activations > c4.activations);
        ck_assert_uint_eq(c8.weights, c4.weights);
    }
}
END_TEST

// No [B, N, N] buffer (MODEL.md §2: the rollout keeps no N×N map; attention is fused):
// over three image sizes the plan's second divided difference in N — its bytes per N² —
// stays under 2·B, half of what one [B, N, N] fp32 buffer alone adds (4·B). Measured:
// 0.7·B now, 4.7·B with the rollout's old S buffer.
START_TEST(nothing_quadratic_in_tokens) {
    DcalConfig c = load("cub");
    const int B = 16, sizes[3] = {384, 416, 448};
    for (int ck = 0; ck < 2; ck++) {
        double N[3], w[3];
        for (int k = 0; k < 3; k++) {
            c.model.img_size = sizes[k];
            N[k] = config_tokens(&c.model);
            w[k] = (double)plan_train_bytes(&c.model, B, ck);
        }
        double per_n2 = ((w[2] - w[1]) / (N[2] - N[1]) - (w[1] - w[0]) / (N[1] - N[0])) / (N[2] - N[0]);
        ck_assert_msg(per_n2 < 2 * B, "checkpointing %d: the plan grows by %.1f bytes per N^2 at micro-batch %d", ck,
                      per_n2, B);
    }
}
END_TEST

// A CPU backend that counts what it allocates.
static size_t counted;
static void *count_alloc(size_t n) { counted += n; return backend_cpu.alloc(n); }

// Also for a backend storing 2-byte Act elements (bf16): it allocates what a bf16 plan counts.
static size_t two_bytes(void) { return 2; }
START_TEST(plan_equals_allocation) {
    DcalConfig c = load("tiny");
    for (int k = 0; k < 4; k++) {
        int ck = k & 1, bf16 = k >> 1;
        Backend be = backend_cpu;
        be.alloc = count_alloc;
        if (bf16) be.act_bytes = two_bytes;
        c.model.act_bytes = bf16 ? 2 : 0;
        counted = 0;
        Model m;
        ck_assert(model_build(&m, &c.model, &be));
        ck_assert(model_alloc_activations(&m, c.train.micro_batch, ck, true));
        MemPlan p;
        model_plan(&c.model, c.train.micro_batch, ck, true, &p);
        ck_assert_uint_eq(p.weights, m.n_params * sizeof(float));
        size_t adam = 2 * m.n_params * sizeof(float);   // the trainer allocates m and v beside the model
        ck_assert_uint_eq(p.total, counted + adam);
        model_free(&m);
    }
}
END_TEST

// Act storage at precision bf16 (backend.h): exactly the Act tensors shrink, to 2 bytes an
// element, by the count written out here from MODEL.md's shapes — the streams x [L][rows, D]
// and z [T-1][rows, D] (z⁰ is x⁰, not a copy; x^L and z^T are the CLS tail's [B, D] fp32
// outputs); SA and PWCA blocks keep qkv [rows, 3D], fc1 [rows, F] and the attention
// output [rows, D] (but PWCA block 0, which reads SA block 0's qkv), but the last of each (the CLS tail) qkv [rows, 3D], fc1 [B, F] and att [B, D]; GLCA keeps q [B·Q, D], its local LN1 [B·Q, D], k|v [rows, 2D], its attention
// output [B·Q, D] and fc1 [B·Q, F]; im2col's columns [B·P, 3p²] and the three heads' LayerNorm
// outputs [B, D] — and the workspace gains B·D floats (the backward's fp32 view of a bf16
// stream entry shares the patch embedding's [B·(N-1), D] buffer, grown to [B·N, D]; the
// forward's two views live inside gradient scratch). (cub at micro-batch 16: every one of
// these is a multiple of 256 bytes, so alignment adds nothing.) With train.bf16_stream: false
// (model.fp32_stream) the streams stay fp32 and the workspace gains nothing.
START_TEST(bf16_act_storage) {
    DcalConfig c = load("cub");
    const ModelConfig *mc = &c.model;
    const int B = 16;
    size_t D = mc->dim, F = mc->mlp_dim, rows = (size_t)B * config_tokens(mc), lr = (size_t)B * (1 + config_topk(mc));
    size_t glca = mc->glca_blocks * (3 * lr * D + rows * 2 * D + lr * F), block = rows * (3 * D + F + D);
    size_t tail = rows * 3 * D + (size_t)B * (F + D);
    size_t P = config_tokens(mc) - 1, inputs = (size_t)B * P * 3 * mc->patch * mc->patch + 3 * (size_t)B * D;
    for (int ck = 0; ck < 2; ck++) {
        MemPlan f32, bf16, fs;
        c.model.act_bytes = 4;
        model_plan(&c.model, B, ck, true, &f32);
        c.model.act_bytes = 2;
        c.model.fp32_stream = true;   // train.bf16_stream: false, the default: the streams stay fp32
        model_plan(&c.model, B, ck, true, &fs);
        c.model.fp32_stream = false;
        model_plan(&c.model, B, ck, true, &bf16);
        // Kept blocks count as activations; checkpointing's one shared SA block and PWCA's own
        // qkv (the rest of PWCA's block shares SA's) as workspace.
        size_t streams = (size_t)(mc->depth + mc->pwca_blocks - 1) * rows * D;
        // PWCA block 0 reads SA block 0's qkv (model_graph.c pwca_shares_qkv): it keeps none.
        size_t kept = (ck ? 0 : (size_t)(mc->depth + mc->pwca_blocks - 2) * block - rows * 3 * D + 2 * tail) + glca +
                      inputs;
        size_t shared = ck ? block + rows * 3 * D : 0;
        ck_assert_uint_eq(f32.activations - bf16.activations, 2 * (kept + streams));
        ck_assert_uint_eq(f32.workspace + 4 * (size_t)B * D - bf16.workspace, 2 * shared);
        ck_assert_uint_eq(f32.weights + f32.grads + f32.optimizer, bf16.weights + bf16.grads + bf16.optimizer);
        // fp32 streams: every other Act tensor shrinks, and no fp32 view of a stream entry is needed.
        ck_assert_uint_eq(f32.activations - fs.activations, 2 * kept);
        ck_assert_uint_eq(f32.workspace - fs.workspace, 2 * shared);
    }
}
END_TEST

// A plan that counted other Act bytes than the backend stores is refused before anything runs.
START_TEST(act_bytes_agree) {
    DcalConfig c = load("tiny");
    c.model.act_bytes = 2;
    Model m;
    ck_assert(model_build(&m, &c.model, &backend_cpu));
    ck_assert(!model_alloc_activations(&m, c.train.micro_batch, false, true));   // CPU: 4-byte Act
    model_free(&m);
}
END_TEST

// The picker on the plan's table alone (no gradient-sum buffers): the divisor and budget rules.
static size_t table_bytes(const DcalConfig *c, int B, int accum, int world, bool ckpt) {
    (void)accum;
    (void)world;
    return plan_train_bytes(&c->model, B, ckpt);
}
static const DcalConfig *pick_cfg;   // the config pick_table's callers name by its model
static int pick_table(const ModelConfig *cfg, int per_device, bool ckpt, size_t budget) {
    ck_assert_ptr_eq(cfg, &pick_cfg->model);
    return config_pick_micro_batch(pick_cfg, per_device, 1, ckpt, budget, table_bytes);
}

START_TEST(pick_micro_batch) {
    DcalConfig c = load("tiny");
    const ModelConfig *mc = &c.model;
    pick_cfg = &c;
    size_t b8 = plan_train_bytes(mc, 8, false), b16 = plan_train_bytes(mc, 16, false);
    ck_assert_int_eq(pick_table(mc, 16, false, b16), 16);
    ck_assert_int_eq(pick_table(mc, 16, false, b16 - 1), 8);
    ck_assert_int_eq(pick_table(mc, 16, false, b8 - 1), 4);
    // 12 with the budget of B = 6: 6 divides 12; one byte less and 5 would fit but
    // does not divide 12, so 4. 10 with the budget of B = 4: 4 fits but only 2 divides.
    size_t b6 = plan_train_bytes(mc, 6, false);
    ck_assert_int_eq(pick_table(mc, 12, false, b6), 6);
    ck_assert_int_eq(pick_table(mc, 12, false, b6 - 1), 4);
    ck_assert_int_eq(pick_table(mc, 10, false, plan_train_bytes(mc, 4, false)), 2);
    // Never 1: PWCA needs a pair inside the micro-batch.
    ck_assert_int_eq(pick_table(mc, 16, false, plan_train_bytes(mc, 2, false) - 1), 0);
    ck_assert_int_eq(pick_table(mc, 7, false, (size_t)1 << 40), 7);
    ck_assert_int_eq(pick_table(mc, 1, false, (size_t)1 << 40), 0);
    // Checkpointing never picks less, and within budget.
    for (size_t bud = b8 / 2; bud <= b16; bud += b8 / 8) {
        int a = pick_table(mc, 16, false, bud), b = pick_table(mc, 16, true, bud);
        ck_assert_int_ge(b, a);
        if (b) ck_assert(plan_train_bytes(mc, b, true) <= bud);
    }
}
END_TEST

// What dcal train plans with: the table plus the gradient sum's buffers, which grow with
// accumulation (floor(log2 A) whole gradients, src/dist/reduce.h); a budget that holds B = 8's
// table but not the second gradient that accumulation 2 needs must not pick 8. On the CPU the
// budget is the peak RSS: the loaders' and checkpoints' host data and the process count too.
START_TEST(pick_counts_gradient_sum) {
    DcalConfig c = load("tiny");
    const ModelConfig *mc = &c.model;
    pick_cfg = &c;
    MemPlan p;
    model_plan(mc, 2, false, true, &p);
    // x: the CPU backend's own scratch (attention's, one thread here: plan_cpu_extra), the same at any B at fp32;
    // H(B): the host data (not the process's own pages: they vary from start to start).
    size_t g = p.grads, x = plan_cpu_extra(mc, 2);
#define H(B) train_host_bytes(&c, B)
    size_t b8 = plan_train_bytes(mc, 8, false) + x + H(8);
    ck_assert_uint_gt(x, 0);
    ck_assert_uint_gt(train_host_bytes(&c, 8), train_host_bytes(&c, 4));
    ck_assert_uint_eq(plan_cpu_extra(mc, 16), x);
    ck_assert_uint_eq(train_planned_bytes(&c, 16, 1, 1, false), plan_train_bytes(mc, 16, false) + x + H(16));
    ck_assert_uint_eq(train_planned_bytes(&c, 8, 2, 1, false), b8 + g);
    ck_assert_uint_eq(train_planned_bytes(&c, 4, 4, 1, false), plan_train_bytes(mc, 4, false) + x + H(4) + 2 * g);
    ck_assert_uint_eq(train_planned_bytes(&c, 2, 8, 1, true), plan_train_bytes(mc, 2, true) + x + H(2) + 3 * g);
    ck_assert_int_eq(pick_table(mc, 16, false, b8 - x - H(8)), 8);   // the table alone would take 8
    int B = config_pick_micro_batch(&c, 16, 1, false, b8, train_planned_bytes);
    ck_assert_int_lt(B, 8);
    if (B) ck_assert(train_planned_bytes(&c, B, 16 / B, 1, false) <= b8);
    ck_assert_int_eq(config_pick_micro_batch(&c, 16, 1, false, b8 + g, train_planned_bytes), 8);
    // The host data alone decides: one byte short of it and 8 no longer fits.
    ck_assert_int_lt(config_pick_micro_batch(&c, 16, 1, false, b8 + g - 1, train_planned_bytes), 8);
    // More loader threads hold more images in flight: the same budget fits less.
    DcalConfig more = c;
    more.data.workers = c.data.workers + 4;
    ck_assert_uint_gt(train_host_bytes(&more, 8), train_host_bytes(&c, 8));
    ck_assert_int_lt(config_pick_micro_batch(&more, 16, 1, false, b8 + g, train_planned_bytes), 8);
    // Several processes without accumulation need a receive bucket: the picker is told the
    // world (dcal plan --set train.devices=N plans for N without being launched N times).
    size_t b16 = plan_train_bytes(mc, 16, false) + x + H(16), bucket = reduce_extra_bytes(g / sizeof(float), 1, 2);
    ck_assert_uint_gt(bucket, 0);
    ck_assert_uint_eq(train_planned_bytes(&c, 16, 1, 2, false), b16 + bucket);
    ck_assert_int_eq(config_pick_micro_batch(&c, 16, 1, false, b16, train_planned_bytes), 16);
    ck_assert_int_lt(config_pick_micro_batch(&c, 16, 2, false, b16, train_planned_bytes), 16);
#undef H
}
END_TEST

// On CUDA a step also takes the backend's scratch and cuBLASLt's 32 MiB (dcal plan's line
// below the table). At 448 px, micro-batch 16, bf16 the largest request is fc1's backward:
// dout [12560, 3072] and W [3072, 768] in bf16, 256 bytes on top: 77168640 + 4718592 + 256.
START_TEST(cuda_extra_counted) {
    DcalConfig c = load("cub");
    ModelConfig mc = c.model;
    mc.act_bytes = 2;
    ck_assert_uint_eq(plan_cuda_scratch(&mc, 16), 77168640u + 4718592u + 256u);
    ck_assert_uint_eq(plan_cuda_extra(&mc, 16), 81887488u + ((size_t)32 << 20));
    // On the CPU at bf16 its own copies instead (cpu_scratch_rule.h): three grow-only buffers, each
    // at its largest request: fc1/fc2's W [3072, 768] as fp32 (9437184), 512 rows of fc2's input
    // [·, 3072] widened (6291456) and 512 rows of fc1's output or of its dout [·, 3072] (6291456);
    // and every linear weight in bf16: the patch embedding 768·768, 13 blocks (12 SA, 1 GLCA) of
    // 4·768² + 2·768·3072 = 7077888, two heads 200·768: 92909568 weights, 185819136 bytes.
    ck_assert_uint_eq(plan_cpu_copies(&mc, 16), 9437184u + 6291456u + 6291456u + 185819136u);
    // The CPU's budget is the peak RSS: host data too; a device's is its own memory.
    c.model = mc;
    ck_assert_uint_eq(train_planned_bytes(&c, 16, 1, 1, true), plan_train_bytes(&mc, 16, true) + plan_cpu_extra(&mc, 16) +
                                                                train_host_bytes(&c, 16));
    c.model.on_cuda = mc.on_cuda = true;
    ck_assert_uint_eq(train_planned_bytes(&c, 16, 1, 1, true), plan_train_bytes(&mc, 16, true) + plan_cuda_extra(&mc, 16));
    // At fp32 nothing is copied: the scratch is the backend's 1 MiB minimum.
    mc.act_bytes = 4;
    ck_assert_uint_eq(plan_cpu_copies(&mc, 16), 0);
    // At any precision one op's scratch (cpu_scratch_rule.h), ViT-B at 448 px (N 785, hd 64, H 12).
    // Attention a thread, PWCA's call: q, o, dO 3·64·64, qT and dOᵀ 2·64·64, Sᵀ and dPᵀ 2·256·64,
    // 3·64 statistics, its 2N keys and values 2·1570·64: 254400 floats. The rollout: 12·64·785 scores, and a thread
    // 64·64 query rows (+1 float for the bf16-only keys). Two threads: the rollout is larger;
    // eight: attention.
    mc.cpu_threads = 2;
    ck_assert_uint_eq(plan_cpu_op_scratch(&mc), 4u * (12 * 64 * 785 + 2 * (64 * 64 + 1)));
    mc.cpu_threads = 8;
    ck_assert_uint_eq(plan_cpu_op_scratch(&mc), 8u * 4 * 254400);
    ck_assert_uint_eq(plan_cpu_extra(&mc, 16), plan_cpu_op_scratch(&mc));
    // At bf16 the AMX tile's layout where it is larger (attention_bf16.c): floats q and dO rows
    // 2·64·64, Oᵀ 64·64, Sᵀ and dPᵀ 2·256·64, 3·64 statistics (45248); bf16 k and v as rows
    // 2·1570·64, transposed 2·64·(786 + 786), the query and dO tiles two ways 4·64·64, P and dS
    // two ways 4·256·64 (484096).
    mc.act_bytes = 2;
    ck_assert_uint_eq(plan_cpu_op_scratch(&mc), 8u * (4 * 45248 + 2 * 484096));
    mc.act_bytes = 4;
    ck_assert_uint_eq(plan_cuda_scratch(&mc, 16), 0);
    ck_assert_uint_eq(plan_cuda_extra(&mc, 16), ((size_t)1 << 20) + ((size_t)32 << 20));
}
END_TEST

START_TEST(cmd_plan) {
    char args[1400], buf[8192];
    snprintf(args, sizeof args, "plan --config %s/configs/fgvc/tiny.yaml --micro-batch 2 --max-memory 64M --set train.threads=2",
             src_dir());
    ck_assert_int_eq(run_dcal(args, buf, sizeof buf), 0);
    DcalConfig c = load("tiny");
    MemPlan p;
    model_plan(&c.model, 2, true, true, &p);
    char want[64];
    snprintf(want, sizeof want, " %zu\n", p.total);   // exact bytes, per-block column, total row
    ck_assert_msg(strstr(buf, "micro-batch 2") && strstr(buf, want), "%s", buf);
    ck_assert_msg(strstr(buf, "per-block checkpointing : micro-batch"), "%s", buf);
    ck_assert_msg(strstr(buf, "CPU backend beyond the table: attention or rollout scratch 0.0 MiB (2 threads)"), "%s", buf);
    // Planning for a GPU on any machine: CUDA's best precision is bf16, so the Act tensors count 2 bytes.
    snprintf(args, sizeof args, "plan --config %s/configs/fgvc/tiny.yaml --micro-batch 2 --set train.device=cuda "
             "--set train.precision=bf16", src_dir());
    ck_assert_int_eq(run_dcal(args, buf, sizeof buf), 0);
    c.model.act_bytes = 2;
    model_plan(&c.model, 2, false, true, &p);
    snprintf(want, sizeof want, " %zu ", p.total);   // exact bytes, no-checkpointing column
    ck_assert_msg(strstr(buf, "precision bf16") && strstr(buf, "in bf16") && strstr(buf, want), "%s", buf);
    c.model.act_bytes = 0;
    snprintf(args, sizeof args, "plan --config %s/configs/fgvc/tiny.yaml --max-memory 12X", src_dir());
    ck_assert_int_eq(run_dcal(args, buf, sizeof buf), 2);
    ck_assert_ptr_nonnull(strstr(buf, "--max-memory '12X'"));
    snprintf(args, sizeof args, "plan --config %s/configs/fgvc/tiny.yaml --micro-batch 0", src_dir());
    ck_assert_int_eq(run_dcal(args, NULL, 0), 2);
    ck_assert_int_eq(run_dcal("plan --no-such-flag", NULL, 0), 2);
}
END_TEST

// The CPU at fp32 recomputes h always and the attention output only while 3·N <= D, at bf16
// neither (config_model_backend): ViT-B/16 at 224 px (N 197) recomputes it, at 448 px (N 785) keeps
// it, CUDA keeps both. Keeping it adds, at micro-batch B, one [B·N, D] output to each of the
// 2·11 SA and PWCA blocks below the CLS tails (whose B-row outputs are kept either way), less
// the one shared recompute buffer and its [B, H, N] log-sum-exp (each buffer 256-byte aligned).
START_TEST(cpu_recompute_rule) {
    DcalConfig c = load("cub");
    ModelConfig m = c.model;
    const int B = 2;
    m.img_size = 224;
    config_model_backend(&m, "cpu", 3);
    ck_assert(m.recompute_h && m.recompute_att);
    ck_assert_int_eq(m.cpu_threads, 3);   // train.threads; else OpenMP's default (its first number)
    m.img_size = 448;
    setenv("OMP_NUM_THREADS", "5,2", 1);
    config_model_backend(&m, "cpu", 0);
    unsetenv("OMP_NUM_THREADS");
    ck_assert_int_eq(m.cpu_threads, 5);
    ck_assert(m.recompute_h && !m.recompute_att);
    size_t keep = plan_train_bytes(&m, B, false);
    m.recompute_att = true;
    size_t again = plan_train_bytes(&m, B, false);
    size_t N = (size_t)config_tokens(&m), D = (size_t)m.dim, rows = B * N;
    size_t lse = ((size_t)B * m.heads * N * 4 + 255) / 256 * 256;
    ck_assert_uint_eq(keep - again, (2 * 11 - 1) * rows * D * 4 - lse);
    m.img_size = 224;   // bf16 keeps both even where fp32 recomputes both (config.h: speed first there)
    m.act_bytes = 2;
    config_model_backend(&m, "cpu", 0);
    ck_assert(!m.recompute_h && !m.recompute_att);
    m.act_bytes = 4;
    config_model_backend(&m, "cuda", 0);
    ck_assert(!m.recompute_h && !m.recompute_att);
    config_model_backend(&m, NULL, 0);
    ck_assert(!m.recompute_h && !m.recompute_att);
}
END_TEST

int main(void) {
    Suite *s = suite_create("plan");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, adds_up);
    tcase_add_test(tc, plan_equals_allocation);
    tcase_add_test(tc, bf16_act_storage);
    tcase_add_test(tc, act_bytes_agree);
    tcase_add_test(tc, nothing_quadratic_in_tokens);
    tcase_add_test(tc, pick_micro_batch);
    tcase_add_test(tc, cuda_extra_counted);
    tcase_add_test(tc, pick_counts_gradient_sum);
    tcase_add_test(tc, cmd_plan);
    tcase_add_test(tc, cpu_recompute_rule);
    tcase_add_test(tc, host_data_counted);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
