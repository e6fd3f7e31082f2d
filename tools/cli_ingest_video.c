/*
 * `vttt ingest video`: video files (or URLs, or pipes) into frame shards,
 * as a resumable batch job. Exit status: 0 when every source is done, 1 when
 * some failed (see the manifest for why), 2 for a usage error or a job that
 * could not run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libavutil/log.h>

#include "cli.h"
#include "ingest.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: vttt ingest video --out DIR [options] FILES...\n"
            "       vttt ingest video --out DIR [options] --list FILE\n"
            "Decodes each source to SxS RGB frames in DIR/<name>-<id>.vfr and appends one JSON line per\n"
            "source to DIR/manifest.jsonl. Re-running the same command skips sources already done.\n"
            "options:\n"
            "  --out DIR        output directory (created if missing)\n"
            "  --list FILE      sources, one per line ('#' comments; '-' reads stdin)\n"
            "  --fps R          frames per second, chosen by timestamp as ffmpeg's fps filter does\n"
            "                   (30, 29.97, 30000/1001, ntsc, ...); default: every source frame\n"
            "  --size S         frame side in pixels (64)\n"
            "  --fit MODE       crop | pad | stretch (crop: center square)\n"
            "  --scaler NAME    bicubic | bilinear | fast_bilinear | area | lanczos | neighbor (bicubic)\n"
            "  --start T        start at T (seconds or [HH:]MM:SS[.frac])\n"
            "  --duration T     take at most T\n"
            "  --jobs N         sources decoded in parallel (1)\n"
            "  --threads N      decoder threads per source (0: cores / jobs)\n"
            "  --shard i/N      take list entries i, i+N, i+2N, ... (0 <= i < N); `--shard mpi`: this\n"
            "                   process's MPI rank and size (mpirun/srun environment)\n"
            "  --keep-partial   keep the frames decoded before damage (shard flagged partial)\n"
            "  --retry-failed   redo sources an earlier run recorded as failed\n"
            "  --lenient        accept damage the decoder conceals (default: damaged sources fail)\n"
            "  --hwaccel MODE   none | cuda (NVDEC; falls back to software with a message)\n"
            "  --open-timeout S a source must open within S seconds (30; 0: no limit), else it fails\n"
            "                   \"timed out opening\" (a FIFO nobody writes to, a silent server)\n"
            "  --stall-timeout S each read must bring data within S seconds (30; 0: no limit), else the\n"
            "                   source fails \"stalled\"; character devices and sockets are refused\n"
            "  --progress SEC   seconds between progress lines (1; 0: none)\n"
            "  --quiet          no progress lines\n"
            "  --verbose        show FFmpeg's own warnings\n"
            "exit status: 0 all sources done, 1 some failed (reasons in the manifest), 2 usage error\n");
}

typedef struct {
    char **items;
    int64_t n, cap;
} str_list;

static int list_push(str_list *l, const char *s) {
    if (l->n == l->cap) {
        int64_t cap = l->cap ? 2 * l->cap : 64;
        char **items = realloc(l->items, (size_t)cap * sizeof *items);
        if (!items) return -1;
        l->items = items;
        l->cap = cap;
    }
    if (!(l->items[l->n] = strdup(s))) return -1;
    l->n++;
    return 0;
}

static void list_free(str_list *l) {
    for (int64_t i = 0; i < l->n; i++) free(l->items[i]);
    free(l->items);
}

/* Reads sources from a list file: one per line, blank lines and '#' lines
 * skipped, surrounding whitespace trimmed. */
static int read_list(const char *path, str_list *l) {
    FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
    if (!f) {
        fprintf(stderr, "vttt ingest video: cannot read the list %s\n", path);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t k;
    int ret = 0;
    while (ret == 0 && (k = getline(&line, &cap, f)) >= 0) {
        char *s = line, *e = line + k;
        while (s < e && (*s == ' ' || *s == '\t')) s++;
        while (e > s && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t')) e--;
        *e = 0;
        if (*s && *s != '#') ret = list_push(l, s);
    }
    free(line);
    if (f != stdin) fclose(f);
    return ret;
}

static void format_eta(double s, char *out, size_t n) {
    if (s < 0) {
        snprintf(out, n, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(out, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(out, n, "%ld:%02ld", t / 60, t % 60);
}

/* Prints the progress line: rewritten in place on a terminal, one line per
 * report otherwise. */
static void print_progress(void *user, const vttt_ingest_progress *p) {
    int tty = *(int *)user;
    char eta[32];
    format_eta(p->eta_s, eta, sizeof eta);
    if (p->final) {
        fprintf(stderr, "%singest: %lld/%lld files done (%lld failed, %lld skipped as done earlier), %lld frames in %.1f s, %.0f frames/s\n",
                tty ? "\r\033[K" : "", (long long)(p->files_done + p->files_skipped), (long long)p->files_total,
                (long long)p->files_failed, (long long)p->files_skipped, (long long)p->frames, p->elapsed_s,
                p->frames_per_s);
        return;
    }
    fprintf(stderr, "%singest: %lld/%lld files (%lld failed, %lld skipped), %lld frames, %.0f frames/s, ETA %s%s",
            tty ? "\r\033[K" : "", (long long)(p->files_done + p->files_skipped), (long long)p->files_total,
            (long long)p->files_failed, (long long)p->files_skipped, (long long)p->frames, p->frames_per_s, eta,
            tty ? "" : "\n");
    fflush(stderr);
}

static int parse_int(const char *s, int lo, int hi, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

/* A number of seconds, 0 (no limit) up to a year. */
static int parse_seconds(const char *s, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= 0 && v <= 3.2e7)) return -1;
    *out = v;
    return 0;
}

/* "i/N", or "mpi": this process's rank and the world size from the
 * launcher's environment (Open MPI, MPICH/PMI, Slurm). */
static int parse_shard(const char *s, int *i, int *n) {
    char tail;
    if (!strcmp(s, "mpi")) {
        static const char *vars[][2] = {
            {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"}, {"PMI_RANK", "PMI_SIZE"}, {"SLURM_PROCID", "SLURM_NTASKS"}};
        for (int k = 0; k < 3; k++)
            if (getenv(vars[k][0]) && getenv(vars[k][1])) {
                *i = atoi(getenv(vars[k][0]));
                *n = atoi(getenv(vars[k][1]));
                return *n >= 1 && *i >= 0 && *i < *n ? 0 : -1;
            }
        fprintf(stderr, "vttt ingest video: --shard mpi, but no MPI rank in the environment (OMPI_COMM_WORLD_RANK, "
                        "PMI_RANK or SLURM_PROCID)\n");
        return -1;
    }
    if (sscanf(s, "%d/%d%c", i, n, &tail) != 2 || *n < 1 || *i < 0 || *i >= *n) return -1;
    return 0;
}

typedef struct {
    vttt_ingest_job_params job;
    str_list sources;
    int quiet, verbose;
} options;

/* One option at argv[*i] (its value, if any, at argv[*i + 1]). Returns 0,
 * or -1 with a message for a bad option or value. */
static int parse_option(options *o, int argc, char **argv, int *i) {
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    vttt_video_params *vp = &o->job.video;
    int bad = 0, takes = 1;
    if (!strcmp(a, "--keep-partial")) o->job.keep_partial = 1, takes = 0;
    else if (!strcmp(a, "--retry-failed")) o->job.retry_failed = 1, takes = 0;
    else if (!strcmp(a, "--lenient")) vp->lenient = 1, takes = 0;
    else if (!strcmp(a, "--quiet")) o->quiet = 1, takes = 0;
    else if (!strcmp(a, "--verbose")) o->verbose = 1, takes = 0;
    else if (!v) bad = 1;
    else if (!strcmp(a, "--out")) o->job.out_dir = v;
    else if (!strcmp(a, "--list")) bad = read_list(v, &o->sources) < 0;
    else if (!strcmp(a, "--fps")) bad = vttt_video_rate_parse(v, &vp->fps_num, &vp->fps_den) < 0;
    else if (!strcmp(a, "--size")) bad = parse_int(v, 1, 8192, &vp->size) < 0;
    else if (!strcmp(a, "--fit")) bad = vttt_video_fit_parse(v, &vp->fit) < 0;
    else if (!strcmp(a, "--scaler")) bad = vttt_video_scaler_parse(v, &vp->scaler) < 0;
    else if (!strcmp(a, "--start")) bad = vttt_video_time_parse(v, &vp->start_s) < 0;
    else if (!strcmp(a, "--duration")) bad = vttt_video_time_parse(v, &vp->duration_s) < 0 || vp->duration_s <= 0;
    else if (!strcmp(a, "--jobs")) bad = parse_int(v, 1, 1024, &o->job.jobs) < 0;
    else if (!strcmp(a, "--threads")) bad = parse_int(v, 0, 1024, &vp->threads) < 0;
    else if (!strcmp(a, "--shard")) bad = parse_shard(v, &o->job.shard_index, &o->job.shard_count) < 0;
    else if (!strcmp(a, "--progress")) o->job.progress_s = atof(v);
    else if (!strcmp(a, "--open-timeout")) bad = parse_seconds(v, &vp->open_timeout_s) < 0;
    else if (!strcmp(a, "--stall-timeout")) bad = parse_seconds(v, &vp->stall_timeout_s) < 0;
    else if (!strcmp(a, "--hwaccel")) {
        if (!strcmp(v, "cuda")) vp->hwaccel = VTTT_VIDEO_HWACCEL_CUDA;
        else if (!strcmp(v, "none")) vp->hwaccel = VTTT_VIDEO_HWACCEL_NONE;
        else bad = 1;
    } else {
        fprintf(stderr, "vttt ingest video: unknown option %s (--help lists them)\n", a);
        return -1;
    }
    if (bad) {
        fprintf(stderr, "vttt ingest video: bad or missing value for %s%s%s\n", a, v ? ": " : "", v ? v : "");
        return -1;
    }
    *i += takes;
    return 0;
}

static int parse_args(options *o, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 1;
        }
        if (argv[i][0] == '-' && argv[i][1] == '-' && argv[i][2]) {
            if (parse_option(o, argc, argv, &i) < 0) return -1;
        } else if (list_push(&o->sources, argv[i]) < 0) {
            return -1;
        }
    }
    if (!o->job.out_dir) {
        fprintf(stderr, "vttt ingest video: --out DIR is required\n");
        return -1;
    }
    if (o->sources.n == 0) {
        fprintf(stderr, "vttt ingest video: no sources (give FILES or --list FILE)\n");
        return -1;
    }
    return 0;
}

int cli_ingest_video(int argc, char **argv) {
    options o;
    memset(&o, 0, sizeof o);
    o.job = vttt_ingest_job_default_params();
    int ret = parse_args(&o, argc, argv);
    if (ret != 0) {
        if (ret < 0) fprintf(stderr, "usage: vttt ingest video --out DIR [options] FILES... (--help for more)\n");
        list_free(&o.sources);
        return ret > 0 ? 0 : 2;
    }
    av_log_set_level(o.verbose ? AV_LOG_WARNING : AV_LOG_QUIET);
    int tty = isatty(STDERR_FILENO);
    if (!o.quiet) {
        o.job.progress = print_progress;
        o.job.progress_user = &tty;
    }
    vttt_ingest_progress res;
    ret = vttt_ingest_job_run((const char *const *)o.sources.items, o.sources.n, &o.job, &res, NULL);
    list_free(&o.sources);
    if (ret < 0) {
        fprintf(stderr, "vttt ingest video: the job could not run: %s\n", vttt_strerror(ret));
        return 2;
    }
    if (res.files_failed > 0)
        fprintf(stderr, "vttt ingest video: %lld of %lld sources failed; see %s/manifest*.jsonl for the reasons\n",
                (long long)res.files_failed, (long long)res.files_total, o.job.out_dir);
    return res.files_failed > 0 ? 1 : 0;
}
