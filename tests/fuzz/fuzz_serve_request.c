/* Fuzz target: the daemon's request handling without sockets
 * (infer/serve_request.c, serve_http_decide: framing headers, bearer
 * token, request target, route and method, query values, the body).
 *
 * Input: a request as text,
 *     METHOD TARGET\n
 *     Name: value\n        (any number of header lines)
 *     \n
 *     body                 (the rest; no blank line: no body)
 * judged twice, without a bearer token and with "fuzz-token". A decision
 * must be a status the daemon can send with a message, agree with what
 * the head alone decided, and on acceptance carry a well-formed route,
 * stream id, horizon and frame. */
#include <string.h>

#include "fuzz.h"
#include "serve_request.h"

#define MAX_HEADERS 32
#define FRAME_SIZE 16
#define MAX_HORIZON 8
#define TOKEN "fuzz-token"

typedef struct request {
    char *text;   /* the input with NULs written over line ends and ':' (owned) */
    serve_header h[MAX_HEADERS];
    serve_http q;
} request;

/* The next line of t[*pos, n) ('\n' ends it, a '\r' before it is dropped),
 * NUL-terminated in place; NULL at the end. */
static char *next_line(char *t, size_t n, size_t *pos, size_t *len) {
    if (*pos >= n) return NULL;
    char *s = t + *pos, *nl = memchr(s, '\n', n - *pos);
    if (!nl) return NULL;
    *len = (size_t)(nl - s);
    *pos += *len + 1;
    *nl = 0;
    if (*len && s[*len - 1] == '\r') s[--*len] = 0;
    return s;
}

static void request_parse(request *r, const uint8_t *data, size_t size) {
    memset(r, 0, sizeof *r);
    r->text = malloc(size + 1);
    FUZZ_CHECK(r->text);
    memcpy(r->text, data, size);
    r->text[size] = 0;
    size_t pos = 0, len = 0;
    char *line = next_line(r->text, size, &pos, &len);
    if (!line) line = r->text, len = size, pos = size;
    char *sp = memchr(line, ' ', len);
    r->q.method = line;
    r->q.target = sp ? sp + 1 : "";
    r->q.target_n = sp ? len - (size_t)(sp + 1 - line) : 0;
    if (sp) *sp = 0;
    while ((line = next_line(r->text, size, &pos, &len)) && len) {
        char *colon = strchr(line, ':');
        if (!colon || r->q.nheaders == MAX_HEADERS) continue;
        *colon = 0;
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t') v++;
        r->h[r->q.nheaders++] = (serve_header){line, v};
    }
    r->q.headers = r->h;
    if (line) r->q.body = (const uint8_t *)data + pos, r->q.body_n = size - pos;
}

static int is_id(const char *id) {
    int ok = strlen(id) == SERVE_ID_LEN;
    for (int i = 0; ok && i < SERVE_ID_LEN; i++) ok = (id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f');
    return ok;
}

static void check_accepted(const serve_rules *rules, const serve_http *q, const serve_decision *d) {
    fuzz_accepted();
    FUZZ_CHECK(d->route != SERVE_ROUTE_NONE);
    if (d->route >= SERVE_ROUTE_INFO) FUZZ_CHECK(is_id(d->id));
    if (d->route == SERVE_ROUTE_FRAMES) {
        FUZZ_CHECK(d->horizon >= 1 && d->horizon <= rules->max_horizon);
        FUZZ_CHECK(d->want == SERVE_OUT_PNG || d->want == SERVE_OUT_JSON || d->want == SERVE_OUT_RAW);
        FUZZ_CHECK(d->rgb != NULL);
        volatile uint8_t sink = d->rgb[0] ^ d->rgb[FRAME_SIZE * FRAME_SIZE * 3 - 1];   /* the whole frame is there */
        (void)sink;
    } else {
        FUZZ_CHECK(d->rgb == NULL);
    }
    if (d->route == SERVE_ROUTE_OPEN) FUZZ_CHECK(d->snapshot_body == 0 || q->body_n > 0);
    if (rules->token && d->route != SERVE_ROUTE_HEALTH) {
        const char *a = serve_http_header(q, "Authorization");
        FUZZ_CHECK(a && strstr(a, TOKEN));
    }
}

static void judge(const serve_rules *rules, const serve_http *q) {
    serve_decision head, d;
    int hs = serve_http_head(rules, q, &head);
    int s = serve_http_decide(rules, q, &d);
    FUZZ_CHECK(s == d.status && hs == head.status);
    FUZZ_CHECK(s == 0 || s == 400 || s == 401 || s == 404 || s == 405 || s == 411 || s == 413 || s == 415 ||
               s == 422 || s == 503);
    FUZZ_CHECK(hs == 0 || s == hs);   /* decide starts with the head's checks */
    FUZZ_CHECK(memchr(d.msg, 0, sizeof d.msg) && memchr(d.path, 0, sizeof d.path) && memchr(d.id, 0, sizeof d.id));
    if (s) FUZZ_CHECK(d.msg[0] != 0);
    if (s == 405) FUZZ_CHECK(d.allow != NULL);
    if (!s) check_accepted(rules, q, &d);
    serve_decision_clear(&d);
    FUZZ_CHECK(d.rgb == NULL);
    char small[4], big[64];
    (void)serve_http_query(q, "horizon", small, sizeof small);
    (void)serve_http_query(q, "format", big, sizeof big);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    request r;
    request_parse(&r, data, size);
    serve_rules rules = {.frame_size = FRAME_SIZE, .max_horizon = MAX_HORIZON, .max_body = 4096, .token = NULL};
    judge(&rules, &r.q);
    rules.token = TOKEN;
    judge(&rules, &r.q);
    rules.frame_size = 0;   /* the model not loaded yet: frames are not decoded */
    serve_decision d;
    if (!serve_http_decide(&rules, &r.q, &d)) FUZZ_CHECK(d.rgb == NULL);
    serve_decision_clear(&d);
    free(r.text);
    return 0;
}
