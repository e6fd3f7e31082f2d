/*
 * ttt/ttt.h — the public interface of vttt's core: errors, logging, tensors,
 * backends, and the sequence layers (TTT-Linear, TTT-MLP, causal attention).
 *
 * Conventions: functions return 0 (VTTT_OK) or a negative VTTT_E* code; on
 * failure they log a message through the object's logger and leave their
 * outputs unspecified but free of leaks. Activations are row-major fp32,
 * (B, T, D) = (batch, time, width). Nothing here aborts on bad input.
 */
#ifndef VTTT_TTT_H
#define VTTT_TTT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ------------------------------------------------------------ */
enum {
    VTTT_OK = 0,
    VTTT_EINVAL = -1,   /* bad argument: shape, size, option */
    VTTT_ENOMEM = -2,   /* allocation failed */
    VTTT_EIO = -3,      /* read/write failed */
    VTTT_EFORMAT = -4,  /* malformed file or data */
    VTTT_ENODEV = -5,   /* no such device (e.g. no GPU) */
    VTTT_ENAN = -6,     /* non-finite value in an input */
    VTTT_ENOTSUP = -7,  /* not supported by this build/backend */
    VTTT_EAGAIN = -8,   /* need more input */
    VTTT_EOF = -9,      /* end of stream */
};
const char *vttt_strerror(int err);

/* ---- logging ----------------------------------------------------------- */
enum { VTTT_LOG_ERROR = 0, VTTT_LOG_WARNING = 1, VTTT_LOG_INFO = 2, VTTT_LOG_DEBUG = 3 };
typedef void (*vttt_log_fn)(void *user, int level, const char *msg);
/* A logger is a value carried by every object; {0} logs warnings and errors
 * to stderr. */
typedef struct vttt_logger {
    vttt_log_fn fn;   /* NULL: stderr */
    void *user;
    int level;        /* messages above this level are dropped; 0 = errors and warnings */
} vttt_logger;
void vttt_log(const vttt_logger *lg, int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---- files ------------------------------------------------------------- */
/* Reads the regular file at path whole into *out (malloc'd, NUL-terminated
 * after the *n bytes; the caller frees it): the reader of every small input
 * file (JSON files, configs, tokenizer files). Never blocks on a FIFO or a
 * device: those are refused. Logged naming path: VTTT_EIO when it cannot be
 * opened or read or is not a regular file, VTTT_EFORMAT when it is larger
 * than max_bytes ("larger than the limit of N bytes"), VTTT_ENOMEM. */
int vttt_file_read_all(const char *path, size_t max_bytes, char **out, size_t *n, const vttt_logger *lg);

/* ---- tensors ----------------------------------------------------------- */
typedef enum { VTTT_DTYPE_F32 = 0, VTTT_DTYPE_BF16 = 1 } vttt_dtype;
typedef enum { VTTT_DEVICE_CPU = 0, VTTT_DEVICE_CUDA = 1 } vttt_device;
#define VTTT_MAX_DIMS 4
typedef struct vttt_tensor {
    void *data;                     /* owned by whoever allocated it */
    int64_t shape[VTTT_MAX_DIMS];   /* unused trailing dims are 1 */
    int ndim;
    vttt_dtype dtype;
    vttt_device device;
} vttt_tensor;
int64_t vttt_tensor_numel(const vttt_tensor *t);
size_t vttt_tensor_nbytes(const vttt_tensor *t);
size_t vttt_dtype_size(vttt_dtype dt);
/* bf16 <-> fp32 conversion (round to nearest even). */
uint16_t vttt_f32_to_bf16(float f);
float vttt_bf16_to_f32(uint16_t b);

/* ---- backends ---------------------------------------------------------- */
typedef struct vttt_backend vttt_backend;      /* see ttt/backend.h */
const vttt_backend *vttt_backend_cpu(void);
/* Opens the CUDA backend on device `dev`. VTTT_ENODEV when there is no GPU
 * (or the build has no CUDA); *out is then NULL. */
int vttt_backend_cuda_open(vttt_backend **out, int dev, const vttt_logger *lg);
void vttt_backend_cuda_close(vttt_backend **be);
/* Allocates/frees a tensor's storage on a backend. */
int vttt_tensor_alloc(vttt_tensor *t, const vttt_backend *be, vttt_dtype dt, int ndim, const int64_t *shape);
void vttt_tensor_free(vttt_tensor *t, const vttt_backend *be);

/* ---- sequence layers --------------------------------------------------- */
typedef enum {
    VTTT_LAYER_TTT_LINEAR = 0,
    VTTT_LAYER_TTT_MLP = 1,
    VTTT_LAYER_ATTENTION = 2,
} vttt_layer_kind;

typedef struct vttt_layer_config {
    vttt_layer_kind kind;
    int width;          /* D */
    int num_heads;      /* H; head dim f = D / H */
    int mini_batch;     /* b, TTT mini-batch size (16) */
    float base_lr;      /* ttt_base_lr (1.0 for TTT-Linear and TTT-MLP as in the reference) */
    int share_qk;       /* Mamba backbone: XQ, XK = conv_q/conv_k(x Wq) */
    int use_gate;       /* y = gelu_tanh(x Wg) * post_norm(.) */
    int conv_kernel;    /* depthwise causal conv width for share_qk (4) */
    float rope_theta;   /* 10000 */
    int mlp_mult;       /* TTT-MLP hidden = mlp_mult * f (4) */
    int ckpt_group;     /* training: mini-batches between stored inner states (0 = auto) */
} vttt_layer_config;
vttt_layer_config vttt_layer_default_config(vttt_layer_kind kind, int width, int num_heads);

/* Parameters of one layer, one allocation, reference names in comments.
 * Linear weights are (out, in) as in torch.nn.Linear. f = D/H, h1 = f
 * (TTT-Linear) or mlp_mult*f (TTT-MLP). Unused pointers are NULL. */
typedef struct vttt_layer_params {
    float *wq;        /* (D, D)   q_proj.weight */
    float *wk;        /* (D, D)   k_proj.weight (not with share_qk) */
    float *wv;        /* (D, D)   v_proj.weight */
    float *wo;        /* (D, D)   o_proj.weight */
    float *wg;        /* (D, D)   g_proj.weight (use_gate) */
    float *conv_q_w;  /* (D, K)   conv_q.weight (D,1,K) (share_qk) */
    float *conv_q_b;  /* (D)      conv_q.bias */
    float *conv_k_w;  /* (D, K)   conv_k.weight */
    float *conv_k_b;  /* (D)      conv_k.bias */
    float *lr_w;      /* (H, D)   learnable_ttt_lr_weight (H,1,D) */
    float *lr_b;      /* (H)      learnable_ttt_lr_bias (H,1) */
    float *token_idx; /* (b)      learnable_token_idx (offsets delta_i) */
    float *ln_w;      /* (H, f)   ttt_norm_weight */
    float *ln_b;      /* (H, f)   ttt_norm_bias */
    float *W1;        /* (H, f, h1) */
    float *b1;        /* (H, h1)  b1 (H,1,h1) */
    float *W2;        /* (H, h1, f) TTT-MLP only */
    float *b2;        /* (H, f)   TTT-MLP only */
    float *post_w;    /* (D)      post_norm.weight */
    float *post_b;    /* (D)      post_norm.bias */
} vttt_layer_params;

/* One named parameter tensor, for I/O and tests. */
typedef struct vttt_param_info {
    const char *name;   /* reference name, e.g. "q_proj.weight" */
    float *data;
    int ndim;
    int64_t shape[VTTT_MAX_DIMS];  /* reference layout */
    int64_t numel;
} vttt_param_info;

typedef struct vttt_layer vttt_layer;
int vttt_layer_init(vttt_layer **out, const vttt_layer_config *cfg, const vttt_logger *lg);
void vttt_layer_free(vttt_layer **l);
const vttt_layer_config *vttt_layer_get_config(const vttt_layer *l);
vttt_layer_params *vttt_layer_get_params(vttt_layer *l);
vttt_layer_params *vttt_layer_get_grads(vttt_layer *l);   /* accumulated by backward */
size_t vttt_layer_num_params(const vttt_layer *l);
/* Lists the layer's parameter tensors (grads = 1: the gradient tensors with
 * the same names). Returns the count; fills at most `max` entries. */
int vttt_layer_param_list(vttt_layer *l, int grads, vttt_param_info *out, int max);
/* Random initialisation in the spirit of the reference (normal(0, 0.02) for
 * matrices, zeros for biases and token_idx, ones for norm weights). */
void vttt_layer_init_weights(vttt_layer *l, uint64_t seed);
void vttt_layer_zero_grads(vttt_layer *l);

typedef enum {
    VTTT_FORM_DUAL = 0,    /* mini-batch by mini-batch with matrix products only */
    VTTT_FORM_PRIMAL = 1,  /* per-token inner weights W_i, the readable reference */
} vttt_form;

/* Full-sequence forward. x, y: (B, T, D). With train != 0 the layer keeps
 * what vttt_layer_backward needs (inner states only every ckpt_group
 * mini-batches) until the next forward. */
int vttt_layer_forward(vttt_layer *l, float *y, const float *x, int B, int T, vttt_form form, int train);
/* Backward of the last train forward: dx (B,T,D) is written, parameter
 * gradients are accumulated (+=) into vttt_layer_get_grads(). */
int vttt_layer_backward(vttt_layer *l, float *dx, const float *dy);

/* Per-sequence state for generation: TTT keeps the inner weights committed
 * at the last mini-batch boundary plus the running mini-batch's gradient sum
 * (constant size); attention keeps its growing KV cache. */
typedef struct vttt_state vttt_state;
int vttt_state_init(vttt_state **out, const vttt_layer *l, int B, int max_T);
void vttt_state_free(vttt_state **s);
void vttt_state_reset(vttt_state *s);
size_t vttt_state_bytes(const vttt_state *s);   /* TTT: bytes of the state (constant); attention: KV cache in use (max_T is allocated) */
int64_t vttt_state_position(const vttt_state *s);
/* The furthest position (tokens) a sequence may reach: 2^40, about 1.1e12
 * tokens (18 years of 64-token frames at 30 fps). Prefill, decode and
 * snapshots refuse to go past it (VTTT_EINVAL with a message), so that no
 * position arithmetic can overflow. */
#define VTTT_MAX_POSITION ((int64_t)1 << 40)
/* Continues the sequence held in s by T tokens: x, y (B, T, D). */
int vttt_layer_prefill(vttt_layer *l, vttt_state *s, float *y, const float *x, int T);
/* One token per sequence: x, y (B, D). */
int vttt_layer_decode(vttt_layer *l, vttt_state *s, float *y, const float *x);

/* FLOPs of one forward over (B, T) (multiply-adds count 2). */
double vttt_layer_forward_flops(const vttt_layer_config *cfg, int B, int T);

/* ---- a TTT layer on a backend's device ----------------------------------
 * The same layer run on a backend (CUDA: cuBLAS projections and the fused
 * TTT kernels, shared by the trainer and the streaming daemon; the CPU
 * table runs the same steps). TTT-Linear and TTT-MLP. x, y, dx, dy are
 * memory of that backend, (B,T,D). One arena holds the parameters, their
 * gradients and every buffer for up to max_B sequences of max_T tokens;
 * the calls below allocate nothing. */
typedef struct vttt_layer_dev vttt_layer_dev;
int vttt_layer_dev_init(vttt_layer_dev **out, vttt_layer *l, const vttt_backend *be, int max_B, int max_T);
void vttt_layer_dev_free(vttt_layer_dev **d);
/* l's parameters to the device (call after they change on the host). */
int vttt_layer_dev_upload(vttt_layer_dev *d);
/* Adds the device's accumulated gradients into vttt_layer_get_grads(l)
 * and zeroes them on the device. */
int vttt_layer_dev_grads_to_host(vttt_layer_dev *d);
/* As vttt_layer_forward (dual form) / vttt_layer_backward. */
int vttt_layer_dev_forward(vttt_layer_dev *d, float *y, const float *x, int B, int T, int train);
int vttt_layer_dev_backward(vttt_layer_dev *d, float *dx, const float *dy);
/* Generation state on the device (constant size); decode replays one
 * CUDA graph per position inside the mini-batch where the backend has
 * graphs. A state refers to its layer: free the states first. */
typedef struct vttt_state_dev vttt_state_dev;
int vttt_state_dev_init(vttt_state_dev **out, vttt_layer_dev *d, int B);
void vttt_state_dev_free(vttt_state_dev **s);
int vttt_state_dev_reset(vttt_state_dev *s);
int64_t vttt_state_dev_position(const vttt_state_dev *s);
/* As vttt_layer_prefill (T <= max_T, or any T when B == 1) / decode. */
int vttt_layer_dev_prefill(vttt_layer_dev *d, vttt_state_dev *s, float *y, const float *x, int T);
int vttt_layer_dev_decode(vttt_layer_dev *d, vttt_state_dev *s, float *y, const float *x);

#ifdef __cplusplus
}
#endif
#endif
