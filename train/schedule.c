/* Learning-rate schedules: the outer AdamW rate and the TTT inner base
 * rate, as pure functions of the step. */
#include <math.h>

#include "train_internal.h"

float train_schedule_lr(const train_schedule *s, int64_t step) {
    if (step < s->warmup) return (float)((double)s->lr * (double)(step + 1) / (double)s->warmup);
    int64_t decay = s->steps - s->warmup;
    if (decay <= 0) return s->lr;
    double progress = (double)(step - s->warmup) / (double)decay;
    if (progress > 1.0) progress = 1.0;
    double cosine = 0.5 * (1.0 + cos(3.14159265358979323846 * progress));
    return (float)(s->min_lr + cosine * ((double)s->lr - s->min_lr));
}

float train_schedule_ttt_lr(const train_schedule *s, int64_t step) {
    if (s->ttt_lr_init < 0.0f || s->ttt_warmup <= 0) return s->ttt_lr;
    double f = (double)step / (double)s->ttt_warmup;
    if (f > 1.0) f = 1.0;
    return (float)(s->ttt_lr_init + f * ((double)s->ttt_lr - s->ttt_lr_init));
}

train_schedule train_schedule_of(const vttt_train_params *p) {
    return (train_schedule){p->lr, p->min_lr, p->warmup, p->steps, p->ttt_base_lr, p->ttt_base_lr_init,
                            p->ttt_base_lr_warmup};
}
