/*
 * The end-of-run summary: wall time, tokens, mean tokens/s, the smoothed
 * final training loss, the best validation loss and its step; reported
 * (VTTT_TRAIN_EVENT_END) and written to RUN/summary.json.
 */
#include <math.h>
#include <stdio.h>

#include "json_file.h"
#include "train_internal.h"

void train_summary_step(train_summary *s, float loss) {
    s->ema = TRAIN_SUMMARY_BETA * s->ema + (1.0 - TRAIN_SUMMARY_BETA) * (double)loss;
    s->ema_n++;
}

void train_summary_eval(train_summary *s, int64_t step, float val_loss) {
    if (s->best_step < 0 || val_loss < s->best_val) s->best_val = val_loss, s->best_step = step;
}

vttt_train_report train_summary_report(const train_summary *s, int64_t step, int64_t steps, int64_t tokens) {
    vttt_train_report r = {.event = VTTT_TRAIN_EVENT_END, .step = step, .steps = steps, .tokens = tokens,
                           .best_val_loss = s->best_val, .best_val_step = s->best_step};
    r.wall_s = train_now_s() - s->t0;
    r.tokens_per_s = (double)(tokens - s->tokens0) / (r.wall_s > 1e-9 ? r.wall_s : 1e-9);
    /* bias correction: the average starts at 0 */
    r.loss_smoothed = s->ema_n ? (float)(s->ema / (1.0 - pow(TRAIN_SUMMARY_BETA, (double)s->ema_n))) : NAN;
    return r;
}

/* A float member, or null when it is not a number. */
static void add_num(cJSON *j, const char *key, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(j, key, v);
    else cJSON_AddNullToObject(j, key);
}

int train_summary_write(const char *run, const vttt_train_report *r, const vttt_logger *lg) {
    char path[VTTT_TRAIN_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/summary.json", run);
    cJSON *j = cJSON_CreateObject();
    if (!j) return VTTT_ENOMEM;
    cJSON_AddNumberToObject(j, "step", (double)r->step);
    cJSON_AddNumberToObject(j, "steps", (double)r->steps);
    cJSON_AddNumberToObject(j, "tokens", (double)r->tokens);
    add_num(j, "wall_s", r->wall_s);
    add_num(j, "tokens_per_s", r->tokens_per_s);
    add_num(j, "loss_smoothed", (double)r->loss_smoothed);
    add_num(j, "best_val_loss", (double)r->best_val_loss);
    if (r->best_val_step >= 0) cJSON_AddNumberToObject(j, "best_val_step", (double)r->best_val_step);
    else cJSON_AddNullToObject(j, "best_val_step");
    return vttt_json_file_write(j, path, lg);
}
