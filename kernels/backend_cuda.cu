// backend_cuda.cu: the CUDA backend table. Each slot's contract is in backend/backend.h;
// the kernels live one family per file (linear, layernorm, elementwise, adamw,
// attention, rollout); device discovery, description and precision in device.cu.
#include "kernels/cuda_common.h"

extern const BackendComm *const cuda_comm;   // nccl.cu (NULL without NCCL)

// Positional (C++17 has no designated initialisers): a slot added to backend.h must
// fail here rather than shift every entry by one.
static_assert(sizeof(Backend) == 56 * sizeof(void *), "Backend changed: update backend_cuda");

extern "C" const Backend backend_cuda = {
    /* name */ "cuda",
    /* available */ cuda_available,
    /* free_memory */ cuda_free_memory,
    /* scratch_peak */ cuda_scratch_max_request,
    /* describe */ cuda_describe,
    /* precisions */ CUDA_PRECISIONS,
    /* precision_note */ NULL,   // both precisions on every GPU it runs on
    /* set_precision */ cuda_set_precision,
    /* set_attention */ cuda_set_attention,
    /* act_bytes */ cuda_act_bytes,
    /* act_from_f32 */ cuda_act_from_f32,
    /* act_to_f32 */ cuda_act_to_f32,
    /* alloc */ cuda_alloc,
    /* free */ cuda_free,
    /* zero */ cuda_zero,
    /* to_device */ cuda_to_device,
    /* to_host */ cuda_to_host,
    /* copy */ cuda_copy,
    /* sync */ cuda_sync,
    /* host_alloc */ cuda_host_alloc,
    /* host_free */ cuda_host_free,
    /* upload */ cuda_upload,
    /* consumed */ cuda_consumed,
    /* host_ready */ cuda_host_ready,
    /* graph_run */ cuda_graph_run,
    /* graph_reset */ cuda_graph_reset,
    /* im2col_forward */ cuda_im2col_forward,
    /* tokens_forward */ cuda_tokens_forward,
    /* tokens_backward */ cuda_tokens_backward,
    /* layernorm_forward */ cuda_layernorm_forward,
    /* layernorm_backward */ cuda_layernorm_backward,
    /* linear_forward */ cuda_linear_forward,
    /* linear_backward */ cuda_linear_backward,
    /* linear_forward_act */ cuda_linear_forward_act,
    /* gelu_forward */ cuda_gelu_forward,
    /* gelu_backward */ cuda_gelu_backward,
    /* residual_forward */ cuda_residual_forward,
    /* residual_backward */ cuda_residual_backward,
    /* residual_layernorm_forward */ cuda_residual_layernorm_forward,
    /* residual_layernorm_backward */ cuda_residual_layernorm_backward,
    /* droppath_masks */ cuda_droppath_masks,
    /* gather_rows_forward */ cuda_gather_rows_forward,
    /* gather_rows_backward */ cuda_gather_rows_backward,
    /* attention_forward */ cuda_attention_forward,
    /* attention_backward */ cuda_attention_backward,
    /* rollout_step_attn */ cuda_rollout_step_attn,
    /* topk_select */ cuda_topk_select,
    /* crossentropy_forward */ cuda_crossentropy_forward,
    /* crossentropy_backward */ cuda_crossentropy_backward,
    /* loss_forward */ cuda_loss_forward,
    /* loss_backward */ cuda_loss_backward,
    /* adamw_update */ cuda_adamw_update,
    /* adamw_multi */ cuda_adamw_multi,
    /* sumsq */ cuda_sumsq,
    /* sumsq_into */ cuda_sumsq_into,
    /* comm */ cuda_comm,
};
