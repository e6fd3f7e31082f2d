/*
 * `vttt frames`: look inside frame shards.
 *   vttt frames info --shard F                  the header as JSON
 *   vttt frames dump --shard F --png DIR        frames as DIR/frame_NNNNNN.png
 *   vttt frames dump --shard F --raw            frames as raw rgb24 on stdout
 * with --start N --count M selecting a window. The raw output is what
 * `ffmpeg ... -f rawvideo -pix_fmt rgb24 -` writes, so the two compare with
 * cmp or any PSNR tool.
 */
#include <errno.h>
#include <inttypes.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "ingest.h"

#define CHUNK_FRAMES 256

typedef struct {
    const char *shard, *png_dir;
    int raw;
    int64_t start, count;   /* count < 0: to the end */
} frames_opts;

static int usage(int status) {
    fprintf(status ? stderr : stdout,
            "usage: vttt frames info --shard F\n"
            "       vttt frames dump --shard F (--png DIR | --raw) [--start N] [--count M]\n"
            "  --png DIR   write frames N..N+M-1 as DIR/frame_NNNNNN.png (frame numbers in the shard)\n"
            "  --raw       write them as raw rgb24 (gray/rgba for 1/4 channels) to stdout\n");
    return status;
}

static void print_info(const vttt_frame_shard_info *in) {
    printf("{\"width\": %d, \"height\": %d, \"channels\": %d, \"fps_num\": %d, \"fps_den\": %d, "
           "\"frames\": %" PRId64 ", \"partial\": %s, \"source_id\": \"%016" PRIx64 "\", \"source\": \"",
           in->width, in->height, in->channels, in->fps_num, in->fps_den, in->frame_count,
           (in->flags & VTTT_FRAME_SHARD_PARTIAL) ? "true" : "false", in->source_id);
    for (const char *c = in->source; *c; c++) {
        if (*c == '"' || *c == '\\') printf("\\%c", *c);
        else if ((unsigned char)*c < 0x20) printf("\\u%04x", *c);
        else putchar(*c);
    }
    printf("\"}\n");
}

static int write_png(const char *dir, int64_t index, const uint8_t *px, const vttt_frame_shard_info *in) {
    char path[4096];
    snprintf(path, sizeof path, "%s/frame_%06" PRId64 ".png", dir, index);
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)in->width;
    img.height = (png_uint_32)in->height;
    img.format = in->channels == 1 ? PNG_FORMAT_GRAY : in->channels == 4 ? PNG_FORMAT_RGBA : PNG_FORMAT_RGB;
    if (in->channels == 2) img.format = PNG_FORMAT_GA;
    if (!png_image_write_to_file(&img, path, 0, px, 0, NULL)) {
        fprintf(stderr, "vttt frames: cannot write %s: %s\n", path, img.message);
        return -1;
    }
    return 0;
}

/* Streams the window [start, start+count) out in chunks. */
static int dump(vttt_frame_shard *s, const frames_opts *o) {
    const vttt_frame_shard_info *in = vttt_frame_shard_get_info(s);
    size_t fb = vttt_frame_shard_frame_bytes(in);
    uint8_t *buf = malloc(fb * CHUNK_FRAMES);
    if (!buf) return 1;
    int status = 0;
    for (int64_t done = 0; done < o->count && !status;) {
        int64_t n = o->count - done < CHUNK_FRAMES ? o->count - done : CHUNK_FRAMES;
        if (vttt_frame_shard_read(s, o->start + done, n, buf) < 0) {
            status = 1;
            break;
        }
        for (int64_t i = 0; i < n && !status && o->png_dir; i++)
            status = write_png(o->png_dir, o->start + done + i, buf + i * fb, in) < 0;
        if (o->raw && fwrite(buf, fb, (size_t)n, stdout) != (size_t)n) {
            fprintf(stderr, "vttt frames: writing to stdout failed: %s\n", strerror(errno));
            status = 1;
        }
        done += n;
    }
    free(buf);
    if (o->raw && fflush(stdout) != 0) status = 1;
    return status;
}

static int parse(int argc, char **argv, frames_opts *o) {
    memset(o, 0, sizeof *o);
    o->count = -1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "--raw")) o->raw = 1;
        else if (!v) return -1;
        else if (!strcmp(a, "--shard")) o->shard = v, i++;
        else if (!strcmp(a, "--png")) o->png_dir = v, i++;
        else if (!strcmp(a, "--start") && (o->start = strtoll(v, &end, 10)) >= 0 && !*end) i++;
        else if (!strcmp(a, "--count") && (o->count = strtoll(v, &end, 10)) >= 0 && !*end) i++;
        else return -1;
    }
    return o->shard ? 0 : -1;
}

int cli_frames(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) return usage(argc < 2 ? 2 : 0);
    int is_dump = !strcmp(argv[1], "dump"), is_info = !strcmp(argv[1], "info");
    frames_opts o;
    if ((!is_dump && !is_info) || parse(argc, argv, &o) < 0) return usage(2);
    if (is_dump && !o.raw == !o.png_dir) {
        fprintf(stderr, "vttt frames dump: give exactly one of --png DIR or --raw\n");
        return 2;
    }
    if (o.raw && isatty(STDOUT_FILENO)) {
        fprintf(stderr, "vttt frames dump --raw: stdout is a terminal; redirect it to a file or a pipe\n");
        return 2;
    }
    vttt_frame_shard *s = NULL;
    if (vttt_frame_shard_open(&s, o.shard, NULL) < 0) return 1;
    const vttt_frame_shard_info *in = vttt_frame_shard_get_info(s);
    int status = 0;
    if (is_info) {
        print_info(in);
    } else {
        if (o.count < 0) o.count = in->frame_count > o.start ? in->frame_count - o.start : 0;
        if (o.start + o.count > in->frame_count) {
            fprintf(stderr, "vttt frames dump: frames %" PRId64 "..%" PRId64 " are past the shard's %" PRId64 " frames\n",
                    o.start, o.start + o.count - 1, in->frame_count);
            status = 2;
        } else if (o.png_dir && mkdir(o.png_dir, 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "vttt frames dump: cannot create %s: %s\n", o.png_dir, strerror(errno));
            status = 1;
        } else {
            status = dump(s, &o);
        }
    }
    vttt_frame_shard_close(&s);
    return status;
}
