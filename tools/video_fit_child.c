/* The stages of `vttt video fit` that run as child processes of this very
 * binary (ingest, tokenizer training, encoding, model training), each with
 * its output in a log file, stopped at its share of the time budget: the
 * trainers by SIGTERM (they stop after the step with a checkpoint and exit
 * 0), the others killed. Also: removing a work directory. */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "video_fit.h"

extern char **environ;

static off_t file_size(const char *path) {
    struct stat st;
    return path && stat(path, &st) == 0 ? st.st_size : 0;
}

int fit_metrics_last(const char *metrics, long long *step, double *loss) {
    char buf[4096];
    FILE *f = fopen(metrics, "rb");
    if (!f) return 0;
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : 0;
    long from = size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0;
    size_t n = fseek(f, from, SEEK_SET) == 0 ? fread(buf, 1, sizeof buf - 1, f) : 0;
    fclose(f);
    buf[n] = '\0';
    int found = 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
        if (sscanf(line, "{\"step\":%lld,\"loss\":%lf", step, loss) == 2) found = 1;
    return found;
}

static void progress(const fit_child *c, double now) {
    long long step;
    double loss;
    if (c->metrics && fit_metrics_last(c->metrics, &step, &loss))
        fprintf(stderr, "vttt video fit: %s: step %lld, loss %.4f, %.0f s left\n", c->stage, step, loss,
                c->stop_at > now ? c->stop_at - now : 0.0);
    else
        fprintf(stderr, "vttt video fit: %s: running, %.0f s left\n", c->stage, c->stop_at > now ? c->stop_at - now : 0.0);
}

/* The last lines of a failed stage's log, to say why. */
static void print_tail(const fit_child *c) {
    char buf[2048];
    FILE *f = fopen(c->log, "rb");
    if (!f) return;
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : 0;
    long from = size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0;
    size_t n = fseek(f, from, SEEK_SET) == 0 ? fread(buf, 1, sizeof buf - 1, f) : 0;
    fclose(f);
    buf[n] = '\0';
    fprintf(stderr, "vttt video fit: %s: the end of its log %s:\n", c->stage, c->log);
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) fprintf(stderr, "    %s\n", line);
}

static int spawn(const fit_child *c, char *const argv[], pid_t *pid) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, c->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
    int rc = posix_spawn(pid, c->exe, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc) fprintf(stderr, "vttt video fit: %s: cannot start %s: %s\n", c->stage, c->exe, strerror(rc));
    return rc ? -1 : 0;
}

static void nap(void) {
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* What to do at time now with a child still running: 0 nothing, else the
 * signal to send (SIGTERM once, then SIGKILL); *why says which outcome a
 * kill means. */
static int decide(const fit_child *c, double now, off_t size0, double *termed_at, int *why) {
    if (*termed_at > 0.0) return now > *termed_at + c->grace_s ? SIGKILL : 0;
    if (now < c->stop_at) return 0;
    if (!c->metrics) return *why = FIT_CHILD_TIMEOUT, SIGKILL;
    if (file_size(c->metrics) > size0) return *termed_at = now, SIGTERM;
    if (now > c->stop_at + c->grace_s) return *why = FIT_CHILD_NO_STEP, SIGKILL;
    return 0;
}

int fit_child_run(const fit_child *c, char *const argv[]) {
    off_t size0 = file_size(c->metrics);
    pid_t pid;
    if (spawn(c, argv, &pid)) return FIT_CHILD_FAILED;
    double termed_at = 0.0, next_report = cli_now_s() + c->progress_s;
    int why = FIT_CHILD_FAILED, status = 0, killed = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0 && errno != EINTR) return FIT_CHILD_FAILED;
        double now = cli_now_s();
        int sig = killed ? 0 : decide(c, now, size0, &termed_at, &why);
        if (sig) kill(pid, sig), killed = sig == SIGKILL;
        if (now >= next_report && !killed) progress(c, now), next_report = now + c->progress_s;
        nap();
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return termed_at > 0.0 ? FIT_CHILD_STOPPED : FIT_CHILD_DONE;
    if (killed && why != FIT_CHILD_FAILED) return why;
    if (WIFEXITED(status)) fprintf(stderr, "vttt video fit: %s failed (exit %d)\n", c->stage, WEXITSTATUS(status));
    else fprintf(stderr, "vttt video fit: %s died (signal %d)\n", c->stage, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    print_tail(c);
    return FIT_CHILD_FAILED;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

int fit_remove_tree(const char *dir) { return nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS); }
