/*
 * ngx-pusher: libFuzzer target for the WebSocket codec (common/pusher_ws.c).
 *
 * Input: 2 bytes of max_message (0: the default), 2 bytes of chunking seed,
 * then the client byte stream.  The stream is parsed twice: whole, and cut
 * into chunks whose sizes follow from the seed (the idea of uWebSockets'
 * makeChunked), each chunk in its own exact-size heap buffer.  Both runs
 * must give the same events, and every event must keep the contract of
 * pusher_ws.h: data inside the input or the parser's own memory, lengths
 * within max_message and the control limit, text and close reasons valid
 * UTF-8 (checked against a separate decoder), no memory held while idle.
 *
 *   clang -fsanitize=fuzzer,address,undefined -Icommon \
 *       tests/fuzz/fuzz_ws.c common/pusher_ws.c -lcrypto
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pusher_ws.h"
#include "fuzz_check.h"


#define FUZZ_EVENTS_MAX   256
#define FUZZ_BLOCKS_MAX   4
#define FUZZ_CHUNK_MAX    4096


typedef struct {
    pusher_ws_result_e  rc;
    unsigned            opcode;
    unsigned            close_code;
    size_t              len;
    uint64_t            hash;
    const char         *reason;
} fuzz_event_t;


typedef struct {
    fuzz_event_t        events[FUZZ_EVENTS_MAX];
    size_t              n;
    int                 closed;
    int                 busy;
} fuzz_run_t;


typedef struct {
    size_t              outstanding;
    size_t              limit;
    uint8_t            *blocks[FUZZ_BLOCKS_MAX];
    size_t              sizes[FUZZ_BLOCKS_MAX];
} fuzz_alloc_t;


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static void *
fuzz_alloc(size_t size, void *ctx)
{
    size_t         i;
    fuzz_alloc_t  *a = ctx;

    FUZZ_CHECK(size > 0 && size <= a->limit);

    for (i = 0; i < FUZZ_BLOCKS_MAX; i++) {
        if (a->blocks[i] == NULL) {
            a->blocks[i] = malloc(size);
            FUZZ_CHECK(a->blocks[i] != NULL);
            a->sizes[i] = size;
            a->outstanding++;
            return a->blocks[i];
        }
    }

    /* the parser never needs more than the old and the new buffer */
    FUZZ_CHECK(0);

    return NULL;
}


static void
fuzz_free(void *p, void *ctx)
{
    size_t         i;
    fuzz_alloc_t  *a = ctx;

    for (i = 0; i < FUZZ_BLOCKS_MAX; i++) {
        if (a->blocks[i] == p) {
            free(p);
            a->blocks[i] = NULL;
            a->outstanding--;
            return;
        }
    }

    FUZZ_CHECK(0);
}


static int
fuzz_within(const uint8_t *data, size_t len, const uint8_t *start,
    size_t size)
{
    return data >= start && data + len <= start + size;
}


/* a plain decoder, independent of the table driven validator */

static int
fuzz_utf8_valid(const uint8_t *s, size_t len)
{
    size_t    i, n, k;
    uint32_t  cp, min;

    for (i = 0; i < len; i += n) {

        if (s[i] < 0x80) {
            n = 1;
            continue;
        }

        if ((s[i] & 0xe0) == 0xc0) {
            n = 2;
            cp = s[i] & 0x1f;
            min = 0x80;

        } else if ((s[i] & 0xf0) == 0xe0) {
            n = 3;
            cp = s[i] & 0x0f;
            min = 0x800;

        } else if ((s[i] & 0xf8) == 0xf0) {
            n = 4;
            cp = s[i] & 0x07;
            min = 0x10000;

        } else {
            return 0;
        }

        if (len - i < n) {
            return 0;
        }

        for (k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return 0;
            }

            cp = (cp << 6) | (s[i + k] & 0x3f);
        }

        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return 0;
        }
    }

    return 1;
}


static size_t
fuzz_chunk_size(uint32_t *seed)
{
    uint32_t  r;

    r = fuzz_next(seed);

    switch (r & 7) {

    case 0:
        return 0;

    case 1:
        return 1 + fuzz_next(seed) % FUZZ_CHUNK_MAX;

    default:
        return 1 + r % 16;
    }
}


static void
fuzz_check_event(pusher_ws_parser_t *p, fuzz_alloc_t *a,
    pusher_ws_result_e rc, const pusher_ws_msg_t *msg, const uint8_t *chunk,
    size_t n)
{
    size_t  i;
    int     inside;

    if (rc == PUSHER_WS_ERROR) {
        FUZZ_CHECK(msg->reason != NULL);
        FUZZ_CHECK(msg->close_code == PUSHER_WS_CLOSE_PROTOCOL
                   || msg->close_code == PUSHER_WS_CLOSE_INVALID_DATA
                   || msg->close_code == PUSHER_WS_CLOSE_TOO_BIG);
        return;
    }

    FUZZ_CHECK(msg->len == 0 || msg->data != NULL);

    inside = msg->len == 0 || fuzz_within(msg->data, msg->len, chunk, n);

    switch (rc) {

    case PUSHER_WS_MESSAGE:
        FUZZ_CHECK(msg->opcode == PUSHER_WS_OP_TEXT
                   || msg->opcode == PUSHER_WS_OP_BINARY);
        FUZZ_CHECK(msg->len <= p->max_message);

        for (i = 0; !inside && i < FUZZ_BLOCKS_MAX; i++) {
            inside = a->blocks[i] != NULL
                     && fuzz_within(msg->data, msg->len, a->blocks[i],
                                    a->sizes[i]);
        }

        FUZZ_CHECK(inside);

        if (msg->opcode == PUSHER_WS_OP_TEXT) {
            FUZZ_CHECK(fuzz_utf8_valid(msg->data, msg->len));
        }

        break;

    case PUSHER_WS_PING:
    case PUSHER_WS_PONG:
        FUZZ_CHECK(msg->opcode == (rc == PUSHER_WS_PING ? PUSHER_WS_OP_PING
                                                        : PUSHER_WS_OP_PONG));
        FUZZ_CHECK(msg->len <= PUSHER_WS_CONTROL_MAX);
        FUZZ_CHECK(inside || fuzz_within(msg->data, msg->len, p->control,
                                         PUSHER_WS_CONTROL_MAX));
        break;

    case PUSHER_WS_CLOSE:
        FUZZ_CHECK(msg->opcode == PUSHER_WS_OP_CLOSE);
        FUZZ_CHECK(msg->len <= PUSHER_WS_CONTROL_MAX - 2);
        FUZZ_CHECK(inside || fuzz_within(msg->data, msg->len, p->control,
                                         PUSHER_WS_CONTROL_MAX));
        FUZZ_CHECK(pusher_ws_close_code_valid(msg->close_code)
                   || (msg->close_code == PUSHER_WS_CLOSE_NO_STATUS
                       && msg->len == 0));
        FUZZ_CHECK(fuzz_utf8_valid(msg->data, msg->len));
        break;

    default:
        FUZZ_CHECK(0);
    }
}


static void
fuzz_parse(const uint8_t *in, size_t len, size_t max_message,
    uint32_t seed, int whole, fuzz_run_t *run)
{
    size_t               off, n;
    uint8_t             *chunk, *pos, *end;
    fuzz_alloc_t         a;
    fuzz_event_t        *e;
    pusher_ws_msg_t      msg;
    pusher_ws_parser_t   p;
    pusher_ws_result_e   rc;

    memset(&a, 0, sizeof(fuzz_alloc_t));
    a.limit = max_message ? max_message : PUSHER_WS_DEFAULT_MAX_MESSAGE;

    memset(run, 0, sizeof(fuzz_run_t));

    pusher_ws_parser_init(&p, max_message, fuzz_alloc, fuzz_free, &a);

    for (off = 0; off < len && !run->closed; off += n) {

        n = whole ? len : fuzz_chunk_size(&seed);

        if (n > len - off) {
            n = len - off;
        }

        chunk = malloc(n + !n);
        FUZZ_CHECK(chunk != NULL);
        memcpy(chunk, in + off, n);

        pos = chunk;
        end = chunk + n;

        for ( ;; ) {
            rc = pusher_ws_parse(&p, &pos, end, &msg);

            FUZZ_CHECK(pos >= chunk && pos <= end);

            if (rc == PUSHER_WS_AGAIN) {
                FUZZ_CHECK(pos == end);
                FUZZ_CHECK(pusher_ws_parser_busy(&p) || a.outstanding == 0);
                break;
            }

            fuzz_check_event(&p, &a, rc, &msg, chunk, n);

            if (run->n < FUZZ_EVENTS_MAX) {
                e = &run->events[run->n++];
                e->rc = rc;
                e->opcode = msg.opcode;
                e->close_code = msg.close_code;
                e->len = msg.len;
                e->hash = fuzz_hash(msg.data, msg.len);
                e->reason = msg.reason;
            }

            if (rc == PUSHER_WS_ERROR || rc == PUSHER_WS_CLOSE) {
                FUZZ_CHECK(a.outstanding == 0);
                FUZZ_CHECK(!pusher_ws_parser_busy(&p));
                run->closed = 1;
                break;
            }
        }

        free(chunk);
    }

    run->busy = pusher_ws_parser_busy(&p);

    pusher_ws_parser_free(&p);
    FUZZ_CHECK(a.outstanding == 0);
}


static void
fuzz_utf8(const uint8_t *data, size_t size, uint32_t seed)
{
    size_t    k;
    uint32_t  s, whole;

    whole = pusher_utf8_validate(PUSHER_UTF8_ACCEPT, data, size);

    FUZZ_CHECK((whole == PUSHER_UTF8_ACCEPT) == fuzz_utf8_valid(data, size));

    /* the state carries across any split */
    k = size ? fuzz_next(&seed) % (size + 1) : 0;

    s = pusher_utf8_validate(PUSHER_UTF8_ACCEPT, data, k);
    s = pusher_utf8_validate(s, data + k, size - k);

    FUZZ_CHECK(s == whole);
}


static void
fuzz_close_frame(const uint8_t *data, size_t size)
{
    size_t   n;
    uint8_t  out[2 + PUSHER_WS_CONTROL_MAX];

    n = pusher_ws_close_frame(out, PUSHER_WS_CLOSE_NORMAL,
                              (const char *) data, size);

    FUZZ_CHECK(n >= 4 && n <= sizeof(out));
    FUZZ_CHECK(out[1] == n - 2);

    if (fuzz_utf8_valid(data, size)) {
        FUZZ_CHECK(fuzz_utf8_valid(out + 4, n - 4));
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t               i, max_message;
    uint32_t             seed;
    fuzz_run_t          *whole, *chunked;
    const fuzz_event_t  *w, *c;

    if (size < 4) {
        return 0;
    }

    max_message = data[0] | (size_t) data[1] << 8;
    seed = data[2] | (uint32_t) data[3] << 8;

    data += 4;
    size -= 4;

    fuzz_utf8(data, size, seed);
    fuzz_close_frame(data, size);

    whole = malloc(sizeof(fuzz_run_t));
    chunked = malloc(sizeof(fuzz_run_t));
    FUZZ_CHECK(whole != NULL && chunked != NULL);

    fuzz_parse(data, size, max_message, seed, 1, whole);
    fuzz_parse(data, size, max_message, seed, 0, chunked);

    FUZZ_CHECK(whole->n == chunked->n);
    FUZZ_CHECK(whole->closed == chunked->closed);
    FUZZ_CHECK(whole->busy == chunked->busy);

    for (i = 0; i < whole->n; i++) {
        w = &whole->events[i];
        c = &chunked->events[i];

        FUZZ_CHECK(w->rc == c->rc);
        FUZZ_CHECK(w->opcode == c->opcode);
        FUZZ_CHECK(w->close_code == c->close_code);
        FUZZ_CHECK(w->len == c->len);
        FUZZ_CHECK(w->hash == c->hash);
        FUZZ_CHECK(w->reason == c->reason
                   || (w->reason && c->reason
                       && strcmp(w->reason, c->reason) == 0));
    }

    free(whole);
    free(chunked);

    return 0;
}
