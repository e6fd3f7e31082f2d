/*
 * SIGINT/SIGTERM during training: the handler only sets the trainer's stop
 * flag; the loop sees it at the end of the step, writes a checkpoint and
 * returns. A second signal gets the default action (SA_RESETHAND), so a
 * stuck run can still be interrupted.
 */
#include <signal.h>
#include <string.h>

#include "train_internal.h"

/* The one piece of global state in the trainer: a handler receives no
 * context, so it reaches the running trainer's flag through this pointer.
 * It is set only while a trainer runs (one trainer per process). */
static volatile sig_atomic_t *volatile signal_target;
static struct sigaction old_int, old_term;

static void on_signal(int sig) {
    (void)sig;
    volatile sig_atomic_t *stop = signal_target;
    if (stop) *stop = 1;
}

void train_signals_install(train_ctx *c) { train_signals_install_flag(&c->stop); }

void train_signals_install_flag(volatile sig_atomic_t *stop) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    signal_target = stop;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
}

void train_signals_restore(void) {
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    signal_target = NULL;
}
