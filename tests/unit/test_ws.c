/*
 * ngx-pusher: unit tests for the WebSocket codec (common/pusher_ws.c).
 *
 * Every parse case is fed whole, split at every byte boundary and one byte
 * at a time, each chunk in its own exact-size heap buffer so that the
 * sanitizers catch a read past it, and must give the same events.  A
 * counting allocator checks that the parser holds no memory while idle or
 * after pusher_ws_parser_free(), and never asks for more than max_message.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "pusher_ws.h"


/* test_frame_t flags */
#define F_FRAME       0x01      /* set in every frame; 0 ends the list */
#define F_RAW         0x02      /* payload is the wire bytes as they are */
#define F_UNMASKED    0x04
#define F_LEN16       0x08      /* 16 bit length form even if shorter */
#define F_LEN64       0x10      /* 64 bit length form even if shorter */
#define F_DECLARE     0x20      /* header says .declared, payload cut */

/* first frame bytes: FIN | opcode */
#define B_TEXT        0x81
#define B_TEXT_MORE   0x01
#define B_BIN         0x82
#define B_BIN_MORE    0x02
#define B_CONT        0x80
#define B_CONT_MORE   0x00
#define B_CLOSE       0x88
#define B_PING        0x89
#define B_PONG        0x8a

/* test_event_t zero_copy, checked when the input is fed whole */
#define ZC_ANY        0
#define ZC_YES        1         /* msg->data points into the input */
#define ZC_NO         2         /* msg->data is the parser's buffer */

/* splitting every byte of large inputs is quadratic: sample those */
#define TEST_SPLIT_ALL_MAX   2048
#define TEST_SPLIT_EDGE      256
#define TEST_SPLIT_STRIDE    61

#define S(s)          (s), (sizeof(s) - 1)

#define FRAME(b0, s)        { F_FRAME, (b0), S(s), 0 }
#define FRAMEF(b0, s, f)    { F_FRAME | (f), (b0), S(s), 0 }
#define FRAMEN(b0, n)       { F_FRAME, (b0), NULL, (n), 0 }
#define RAW(s)              { F_FRAME | F_RAW, 0, S(s), 0 }
#define CUT(b0, s, n)       { F_FRAME | F_DECLARE, (b0), S(s), (n) }

#define EV(rc, op, code, s, zc)                                               \
    { (rc), (op), (code), NULL, S(s), (zc) }
#define TEXT(s)       EV(PUSHER_WS_MESSAGE, PUSHER_WS_OP_TEXT, 0, s, ZC_ANY)
#define TEXT_ZC(s)    EV(PUSHER_WS_MESSAGE, PUSHER_WS_OP_TEXT, 0, s, ZC_YES)
#define TEXT_COPY(s)  EV(PUSHER_WS_MESSAGE, PUSHER_WS_OP_TEXT, 0, s, ZC_NO)
#define BIN(s)        EV(PUSHER_WS_MESSAGE, PUSHER_WS_OP_BINARY, 0, s, ZC_ANY)
#define BIN_ZC(s)     EV(PUSHER_WS_MESSAGE, PUSHER_WS_OP_BINARY, 0, s, ZC_YES)
#define PING(s)       EV(PUSHER_WS_PING, PUSHER_WS_OP_PING, 0, s, ZC_ANY)
#define PONG(s)       EV(PUSHER_WS_PONG, PUSHER_WS_OP_PONG, 0, s, ZC_ANY)
#define CLOSE(c, s)   EV(PUSHER_WS_CLOSE, PUSHER_WS_OP_CLOSE, c, s, ZC_ANY)
#define MSG_N(rc, op, n)                                                      \
    { (rc), (op), 0, NULL, NULL, (n), ZC_ANY }
#define ERR(code, r)  { PUSHER_WS_ERROR, 0, (code), (r), "", 0, ZC_ANY }

#define E_PROTO(r)    ERR(PUSHER_WS_CLOSE_PROTOCOL, r)
#define E_UTF8        ERR(PUSHER_WS_CLOSE_INVALID_DATA, "Invalid UTF-8")
#define E_BIG         ERR(PUSHER_WS_CLOSE_TOO_BIG, "Message too big")

#define R10           "rrrrrrrrrr"
#define R123          R10 R10 R10 R10 R10 R10 R10 R10 R10 R10 R10 R10 "rrr"


typedef struct {
    unsigned            flags;
    unsigned            b0;             /* FIN | RSV | opcode */
    const char         *payload;        /* NULL: pattern bytes */
    size_t              len;
    uint64_t            declared;       /* F_DECLARE */
} test_frame_t;


typedef struct {
    pusher_ws_result_e  rc;             /* PUSHER_WS_AGAIN ends the list */
    unsigned            opcode;
    unsigned            close_code;
    const char         *reason;
    const char         *data;           /* NULL: pattern bytes */
    size_t              len;
    int                 zero_copy;
} test_event_t;


typedef struct {
    const char         *name;
    size_t              max_message;    /* 0: the default */
    test_frame_t        frames[8];
    test_event_t        events[8];
    int                 busy;           /* after the input, if not closed */
} test_case_t;


typedef struct {
    size_t              outstanding;
    size_t              allocs;
    size_t              limit;          /* largest allocation allowed */
    size_t              fail_after;     /* allocations granted */
} test_alloc_t;


typedef struct {
    uint8_t            *data;
    size_t              len;
    size_t              cap;
} test_buf_t;


typedef struct {
    const test_case_t  *c;
    const char         *mode;
    size_t              cut;
    size_t              event;          /* next expected event */
    size_t              pattern;        /* pattern bytes seen so far */
} test_run_t;


#define CHECK(run, cond)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            print_error("case \"%s\", %s %zu, event %zu: %s\n",               \
                        (run)->c->name, (run)->mode, (run)->cut,              \
                        (run)->event, #cond);                                 \
            fail();                                                           \
        }                                                                     \
    } while (0)


static const uint8_t  test_mask[4] = { 0x37, 0xfa, 0x21, 0x3d };


static void *
test_count_alloc(size_t size, void *ctx)
{
    test_alloc_t  *a = ctx;

    assert_true(size > 0);
    assert_true(size <= a->limit);

    if (a->allocs++ >= a->fail_after) {
        return NULL;
    }

    a->outstanding++;

    return malloc(size);
}


static void
test_count_free(void *p, void *ctx)
{
    test_alloc_t  *a = ctx;

    assert_non_null(p);
    assert_true(a->outstanding > 0);

    a->outstanding--;
    free(p);
}


static void
test_parser_init(pusher_ws_parser_t *p, test_alloc_t *a, size_t max_message)
{
    memset(a, 0, sizeof(test_alloc_t));

    a->limit = max_message ? max_message : PUSHER_WS_DEFAULT_MAX_MESSAGE;
    a->fail_after = SIZE_MAX;

    pusher_ws_parser_init(p, max_message, test_count_alloc, test_count_free,
                          a);
}


static uint8_t
test_pattern(size_t i)
{
    return (uint8_t) ('a' + i % 26);
}


static void
test_buf_add(test_buf_t *b, const void *data, size_t len)
{
    if (b->len + len > b->cap) {
        b->cap = (b->len + len) * 2;
        b->data = realloc(b->data, b->cap);
        assert_non_null(b->data);
    }

    if (len) {
        memcpy(b->data + b->len, data, len);
        b->len += len;
    }
}


/* client frames, masked by hand rather than with the code under test */

static void
test_build(const test_case_t *c, test_buf_t *out)
{
    size_t               i, j, n, pattern;
    uint8_t              hdr[PUSHER_WS_HEADER_MAX], mask[4], bit;
    uint8_t             *payload;
    uint64_t             declared;
    const test_frame_t  *f;

    memset(out, 0, sizeof(test_buf_t));
    pattern = 0;

    for (i = 0; c->frames[i].flags & F_FRAME; i++) {
        f = &c->frames[i];

        if (f->flags & F_RAW) {
            test_buf_add(out, f->payload, f->len);
            continue;
        }

        declared = (f->flags & F_DECLARE) ? f->declared : f->len;
        bit = (f->flags & F_UNMASKED) ? 0 : 0x80;

        n = 0;
        hdr[n++] = (uint8_t) f->b0;

        if (declared < 126 && !(f->flags & (F_LEN16 | F_LEN64))) {
            hdr[n++] = (uint8_t) (bit | declared);

        } else if (declared <= 0xffff && !(f->flags & F_LEN64)) {
            hdr[n++] = bit | 126;
            hdr[n++] = (uint8_t) (declared >> 8);
            hdr[n++] = (uint8_t) declared;

        } else {
            hdr[n++] = bit | 127;

            for (j = 0; j < 8; j++) {
                hdr[n++] = (uint8_t) (declared >> (56 - 8 * j));
            }
        }

        /* a different mask for each frame */
        memcpy(mask, test_mask, 4);
        mask[3] = (uint8_t) (mask[3] + i * 17);

        if (bit) {
            memcpy(hdr + n, mask, 4);
            n += 4;
        }

        test_buf_add(out, hdr, n);

        payload = malloc(f->len + 1);
        assert_non_null(payload);

        for (j = 0; j < f->len; j++) {
            payload[j] = f->payload ? (uint8_t) f->payload[j]
                                    : test_pattern(pattern++);

            if (bit) {
                payload[j] ^= mask[j % 4];
            }
        }

        test_buf_add(out, payload, f->len);
        free(payload);
    }
}


static size_t
test_events(const test_case_t *c)
{
    size_t  n;

    for (n = 0; c->events[n].rc != PUSHER_WS_AGAIN; n++) {
        /* void */
    }

    return n;
}


static void
test_check_event(test_run_t *run, pusher_ws_result_e rc,
    const pusher_ws_msg_t *msg, const uint8_t *chunk, size_t chunk_len,
    int whole)
{
    size_t               i;
    int                  inside;
    const test_event_t  *e;

    CHECK(run, run->event < test_events(run->c));

    e = &run->c->events[run->event];

    CHECK(run, rc == e->rc);

    if (rc == PUSHER_WS_ERROR) {
        CHECK(run, msg->close_code == e->close_code);
        CHECK(run, msg->reason != NULL);
        CHECK(run, strcmp(msg->reason, e->reason) == 0);
        return;
    }

    CHECK(run, msg->opcode == e->opcode);
    CHECK(run, msg->close_code == e->close_code);
    CHECK(run, msg->len == e->len);
    CHECK(run, msg->len == 0 || msg->data != NULL);

    for (i = 0; i < e->len; i++) {
        if (e->data) {
            CHECK(run, msg->data[i] == (uint8_t) e->data[i]);

        } else {
            CHECK(run, msg->data[i] == test_pattern(run->pattern + i));
        }
    }

    if (e->data == NULL) {
        run->pattern += e->len;
    }

    if (whole && e->zero_copy != ZC_ANY && e->len > 0) {
        inside = msg->data >= chunk
                 && msg->data + msg->len <= chunk + chunk_len;
        CHECK(run, inside == (e->zero_copy == ZC_YES));
    }
}


/*
 * Feeds input as a first chunk of cut bytes, then chunks of step bytes,
 * each copied to its own heap buffer of exactly its size.
 */

static void
test_feed(const test_case_t *c, const uint8_t *input, size_t len,
    const char *mode, size_t cut, size_t step)
{
    int                  done, whole;
    size_t               off, n;
    uint8_t             *chunk, *pos, *end;
    test_run_t           run;
    test_alloc_t         a;
    pusher_ws_msg_t      msg;
    pusher_ws_parser_t   p;
    pusher_ws_result_e   rc;

    memset(&run, 0, sizeof(test_run_t));
    run.c = c;
    run.mode = mode;
    run.cut = cut;

    test_parser_init(&p, &a, c->max_message);

    whole = (cut == len);
    done = 0;
    off = 0;
    n = cut;

    while (!done && (off < len || off == 0)) {

        if (n > len - off) {
            n = len - off;
        }

        /* malloc(n + !n): an empty chunk still has an address */
        chunk = malloc(n + !n);
        assert_non_null(chunk);
        memcpy(chunk, input + off, n);

        pos = chunk;
        end = chunk + n;

        for ( ;; ) {
            rc = pusher_ws_parse(&p, &pos, end, &msg);

            CHECK(&run, pos >= chunk && pos <= end);

            if (rc == PUSHER_WS_AGAIN) {
                CHECK(&run, pos == end);

                /* an idle parser holds no heap memory */
                CHECK(&run, pusher_ws_parser_busy(&p) || a.outstanding == 0);
                break;
            }

            test_check_event(&run, rc, &msg, chunk, n, whole);
            run.event++;

            if (rc == PUSHER_WS_ERROR || rc == PUSHER_WS_CLOSE) {
                done = 1;

                CHECK(&run, a.outstanding == 0);
                CHECK(&run, !pusher_ws_parser_busy(&p));

                /* whatever follows is ignored */
                rc = pusher_ws_parse(&p, &pos, end, &msg);
                CHECK(&run, rc == PUSHER_WS_AGAIN && pos == end);
                break;
            }
        }

        free(chunk);

        off += n;
        n = step;

        if (len == 0) {
            break;
        }
    }

    CHECK(&run, run.event == test_events(c));

    if (!done) {
        CHECK(&run, pusher_ws_parser_busy(&p) == c->busy);
    }

    pusher_ws_parser_free(&p);
    CHECK(&run, a.outstanding == 0);
}


static void
test_run_case(const test_case_t *c)
{
    size_t      k;
    test_buf_t  in;

    test_build(c, &in);

    test_feed(c, in.data, in.len, "whole", in.len, SIZE_MAX);
    test_feed(c, in.data, in.len, "bytes", 1, 1);

    for (k = 0; k <= in.len; k++) {

        if (in.len > TEST_SPLIT_ALL_MAX
            && k > TEST_SPLIT_EDGE && k < in.len - TEST_SPLIT_EDGE
            && k % TEST_SPLIT_STRIDE != 0)
        {
            continue;
        }

        test_feed(c, in.data, in.len, "split at", k, SIZE_MAX);
    }

    /* three chunks, for a header split and a payload split in one run */
    for (k = 1; k < in.len && k <= 16; k++) {
        test_feed(c, in.data, in.len, "chunks of", k, k);
    }

    free(in.data);
}


static void
test_run_cases(const test_case_t *cases, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        test_run_case(&cases[i]);
    }
}


#define RUN_CASES(cases)                                                      \
    test_run_cases(cases, sizeof(cases) / sizeof(cases[0]))


static const test_case_t  test_valid_frames[] = {

    { "rfc 6455 5.7 single-frame masked text",
      0, { RAW("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58") },
      { TEXT_ZC("Hello") }, 0 },

    { "text frame",
      0, { FRAME(B_TEXT, "hello, world") }, { TEXT_ZC("hello, world") }, 0 },

    { "binary frame with any bytes",
      0, { FRAME(B_BIN, "\x00\xff\x80\xc0\x01") },
      { BIN_ZC("\x00\xff\x80\xc0\x01") }, 0 },

    { "empty text frame",
      0, { FRAME(B_TEXT, "") }, { TEXT("") }, 0 },

    { "empty binary frame",
      0, { FRAME(B_BIN, "") }, { BIN("") }, 0 },

    { "two messages in one input",
      0, { FRAME(B_TEXT, "a"), FRAME(B_BIN, "bc") },
      { TEXT_ZC("a"), BIN_ZC("bc") }, 0 },

    { "125 byte text frame uses the 7 bit length",
      70000, { FRAMEN(B_TEXT, 125) },
      { MSG_N(PUSHER_WS_MESSAGE, PUSHER_WS_OP_TEXT, 125) }, 0 },

    { "126 byte text frame uses the 16 bit length",
      70000, { FRAMEN(B_TEXT, 126) },
      { MSG_N(PUSHER_WS_MESSAGE, PUSHER_WS_OP_TEXT, 126) }, 0 },

    { "65535 byte binary frame uses the 16 bit length",
      70000, { FRAMEN(B_BIN, 65535) },
      { MSG_N(PUSHER_WS_MESSAGE, PUSHER_WS_OP_BINARY, 65535) }, 0 },

    { "65536 byte binary frame uses the 64 bit length",
      70000, { FRAMEN(B_BIN, 65536) },
      { MSG_N(PUSHER_WS_MESSAGE, PUSHER_WS_OP_BINARY, 65536) }, 0 },

    { "non-minimal 16 bit length is accepted",
      0, { FRAMEF(B_TEXT, "abc", F_LEN16) }, { TEXT("abc") }, 0 },

    { "non-minimal 64 bit length is accepted",
      0, { FRAMEF(B_TEXT, "abc", F_LEN64) }, { TEXT("abc") }, 0 },

    { "ping with payload",
      0, { FRAME(B_PING, "are you there") },
      { PING("are you there") }, 0 },

    { "empty ping",
      0, { FRAME(B_PING, "") }, { PING("") }, 0 },

    { "125 byte ping",
      10, { FRAMEN(B_PING, 125) },
      { MSG_N(PUSHER_WS_PING, PUSHER_WS_OP_PING, 125) }, 0 },

    { "pong",
      0, { FRAME(B_PONG, "pong") }, { PONG("pong") }, 0 },

    { "ping between messages",
      0, { FRAME(B_TEXT, "a"), FRAME(B_PING, "p"), FRAME(B_TEXT, "b") },
      { TEXT("a"), PING("p"), TEXT("b") }, 0 },

    { "partial header is busy",
      0, { RAW("\x81") }, { { PUSHER_WS_AGAIN, 0, 0, NULL, NULL, 0, 0 } },
      1 },

    { "partial mask is busy",
      0, { RAW("\x81\x85\x37\xfa") },
      { { PUSHER_WS_AGAIN, 0, 0, NULL, NULL, 0, 0 } }, 1 },

    { "partial payload is busy",
      0, { CUT(B_TEXT, "ab", 5) },
      { { PUSHER_WS_AGAIN, 0, 0, NULL, NULL, 0, 0 } }, 1 },

    { "complete message then partial header",
      0, { FRAME(B_TEXT, "a"), RAW("\x81\xfe\x00") }, { TEXT("a") }, 1 },
};


static void
test_ws_parse_valid_frames(void **state)
{
    (void) state;

    RUN_CASES(test_valid_frames);
}


static const test_case_t  test_fragments[] = {

    { "text in two fragments is assembled",
      0, { FRAME(B_TEXT_MORE, "Hel"), FRAME(B_CONT, "lo") },
      { TEXT_COPY("Hello") }, 0 },

    { "rfc 6455 5.7 fragmented text, masked",
      0, { RAW("\x01\x83\x00\x00\x00\x00\x48\x65\x6c"),
           RAW("\x80\x82\x00\x00\x00\x00\x6c\x6f") },
      { TEXT_COPY("Hello") }, 0 },

    { "ping and pong between fragments",
      0, { FRAME(B_TEXT_MORE, "Hel"), FRAME(B_PING, "x"),
           FRAME(B_CONT_MORE, "l"), FRAME(B_PONG, ""),
           FRAME(B_CONT, "o") },
      { PING("x"), PONG(""), TEXT_COPY("Hello") }, 0 },

    { "125 byte ping between fragments",
      0, { FRAME(B_BIN_MORE, "ab"), FRAMEN(B_PING, 125),
           FRAME(B_CONT, "cd") },
      { MSG_N(PUSHER_WS_PING, PUSHER_WS_OP_PING, 125),
        BIN("abcd") }, 0 },

    { "binary in five one byte fragments",
      0, { FRAME(B_BIN_MORE, "\x01"), FRAME(B_CONT_MORE, "\x02"),
           FRAME(B_CONT_MORE, "\x03"), FRAME(B_CONT_MORE, "\xff"),
           FRAME(B_CONT, "\x00") },
      { BIN("\x01\x02\x03\xff\x00") }, 0 },

    { "empty fragments make an empty message",
      0, { FRAME(B_TEXT_MORE, ""), FRAME(B_CONT_MORE, ""),
           FRAME(B_CONT, "") },
      { TEXT("") }, 0 },

    { "empty first fragment",
      0, { FRAME(B_TEXT_MORE, ""), FRAME(B_CONT, "abc") },
      { TEXT_COPY("abc") }, 0 },

    { "empty last fragment",
      0, { FRAME(B_BIN_MORE, "abc"), FRAME(B_CONT, "") },
      { BIN("abc") }, 0 },

    { "code point split across fragments",
      0, { FRAME(B_TEXT_MORE, "\xce"), FRAME(B_CONT_MORE, "\xba"),
           FRAME(B_CONT_MORE, "\xf0\x9f"), FRAME(B_CONT, "\x98\x80") },
      { TEXT("\xce\xba\xf0\x9f\x98\x80") }, 0 },

    { "message after a fragmented message",
      0, { FRAME(B_TEXT_MORE, "a"), FRAME(B_CONT, "b"),
           FRAME(B_TEXT, "c") },
      { TEXT_COPY("ab"), TEXT_ZC("c") }, 0 },

    { "large fragments grow the buffer",
      70000, { FRAMEN(B_TEXT_MORE, 300), FRAMEN(B_CONT_MORE, 3000),
               FRAMEN(B_CONT_MORE, 1), FRAMEN(B_CONT, 1000) },
      { MSG_N(PUSHER_WS_MESSAGE, PUSHER_WS_OP_TEXT, 4301) }, 0 },

    { "close between fragments drops the message",
      0, { FRAME(B_TEXT_MORE, "Hel"), FRAME(B_CLOSE, "\x03\xe8") },
      { CLOSE(1000, "") }, 0 },

    { "unfinished fragmented message is busy",
      0, { FRAME(B_TEXT_MORE, "abc"), FRAME(B_PING, "") },
      { PING("") }, 1 },
};


static void
test_ws_parse_fragments(void **state)
{
    (void) state;

    RUN_CASES(test_fragments);
}


static const test_case_t  test_protocol_errors[] = {

    { "unmasked frame",
      0, { FRAMEF(B_TEXT, "a", F_UNMASKED) }, { E_PROTO("Unmasked frame") },
      0 },

    { "unmasked ping",
      0, { FRAMEF(B_PING, "", F_UNMASKED) }, { E_PROTO("Unmasked frame") },
      0 },

    { "rsv1 set",
      0, { FRAME(0xc1, "a") }, { E_PROTO("Reserved bits set") }, 0 },

    { "rsv2 set",
      0, { FRAME(0xa1, "a") }, { E_PROTO("Reserved bits set") }, 0 },

    { "rsv3 set on a ping",
      0, { FRAME(0x99, "") }, { E_PROTO("Reserved bits set") }, 0 },

    { "fragmented ping",
      0, { FRAME(0x09, "") }, { E_PROTO("Fragmented control frame") }, 0 },

    { "fragmented pong",
      0, { FRAME(0x0a, "") }, { E_PROTO("Fragmented control frame") }, 0 },

    { "fragmented close",
      0, { FRAME(0x08, "") }, { E_PROTO("Fragmented control frame") }, 0 },

    { "126 byte ping",
      0, { FRAMEN(B_PING, 126) }, { E_PROTO("Control frame too long") }, 0 },

    { "ping too long is seen in the header",
      0, { RAW("\x89\xfe") }, { E_PROTO("Control frame too long") }, 0 },

    { "continuation without a message",
      0, { FRAME(B_CONT, "a") },
      { E_PROTO("Unexpected continuation frame") }, 0 },

    { "non-final continuation without a message",
      0, { FRAME(B_CONT_MORE, "a") },
      { E_PROTO("Unexpected continuation frame") }, 0 },

    { "continuation after a complete message",
      0, { FRAME(B_TEXT, "a"), FRAME(B_CONT, "b") },
      { TEXT("a"), E_PROTO("Unexpected continuation frame") }, 0 },

    { "text inside a fragmented message",
      0, { FRAME(B_TEXT_MORE, "a"), FRAME(B_TEXT, "b") },
      { E_PROTO("Expected continuation frame") }, 0 },

    { "binary inside a fragmented message",
      0, { FRAME(B_TEXT_MORE, "a"), FRAME(B_BIN_MORE, "b") },
      { E_PROTO("Expected continuation frame") }, 0 },

    { "64 bit length with the top bit set",
      0, { RAW("\x82\xff\x80\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00\x00") },
      { E_PROTO("Invalid frame length") }, 0 },

    { "close with a 1 byte payload",
      0, { FRAME(B_CLOSE, "\x03") }, { E_PROTO("Invalid close frame") }, 0 },

    { "error after a message",
      0, { FRAME(B_TEXT, "ok"), FRAME(B_PING, "p"),
           FRAMEF(B_TEXT, "a", F_UNMASKED) },
      { TEXT("ok"), PING("p"), E_PROTO("Unmasked frame") }, 0 },

    { "error in a fragmented message frees it",
      0, { FRAMEN(B_BIN_MORE, 100), FRAME(0xc0, "a") },
      { E_PROTO("Reserved bits set") }, 0 },

    { "input after an error is ignored",
      0, { FRAME(0x83, "a"), FRAME(B_TEXT, "b") },
      { E_PROTO("Unknown opcode") }, 0 },
};


static void
test_ws_parse_protocol_errors(void **state)
{
    (void) state;

    RUN_CASES(test_protocol_errors);
}


static void
test_ws_parse_unknown_opcodes(void **state)
{
    char         name[64];
    unsigned     op;
    test_case_t  c;

    (void) state;

    for (op = 0; op < 16; op++) {

        if (op <= PUSHER_WS_OP_BINARY
            || (op >= PUSHER_WS_OP_CLOSE && op <= PUSHER_WS_OP_PONG))
        {
            continue;
        }

        snprintf(name, sizeof(name), "opcode 0x%x", op);

        c = (test_case_t) {
            name, 0, { FRAME(0x80 | op, "a") },
            { E_PROTO("Unknown opcode") }, 0
        };

        test_run_case(&c);

        c = (test_case_t) {
            name, 0, { FRAME(op, "") }, { E_PROTO("Unknown opcode") }, 0
        };

        test_run_case(&c);
    }
}


static const test_case_t  test_close_frames[] = {

    { "empty close has no status",
      0, { FRAME(B_CLOSE, "") }, { CLOSE(1005, "") }, 0 },

    { "close with a code",
      0, { FRAME(B_CLOSE, "\x03\xe8") }, { CLOSE(1000, "") }, 0 },

    { "close with a code and reason",
      0, { FRAME(B_CLOSE, "\x03\xe9" "bye") }, { CLOSE(1001, "bye") }, 0 },

    { "close with a 123 byte reason",
      0, { FRAME(B_CLOSE, "\x0f\xa0" R123) }, { CLOSE(4000, R123) }, 0 },

    { "close with a UTF-8 reason",
      0, { FRAME(B_CLOSE, "\x0b\xb8\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc"
                          "\xce\xb5") },
      { CLOSE(3000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5") }, 0 },

    { "close reason with invalid UTF-8",
      0, { FRAME(B_CLOSE, "\x03\xe8" "a\xff") }, { E_UTF8 }, 0 },

    { "close reason with a truncated code point",
      0, { FRAME(B_CLOSE, "\x03\xe8" "a\xce") }, { E_UTF8 }, 0 },

    { "close reason with a surrogate",
      0, { FRAME(B_CLOSE, "\x03\xe8\xed\xa0\x80") }, { E_UTF8 }, 0 },

    { "input after a close is ignored",
      0, { FRAME(B_CLOSE, "\x03\xe8"), FRAME(B_TEXT, "a") },
      { CLOSE(1000, "") }, 0 },

    { "close after a message",
      0, { FRAME(B_TEXT, "a"), FRAME(B_CLOSE, "\x03\xe8") },
      { TEXT("a"), CLOSE(1000, "") }, 0 },
};


static void
test_ws_parse_close_frames(void **state)
{
    (void) state;

    RUN_CASES(test_close_frames);
}


/* Autobahn 7.7.x and 7.9.x, plus the edges of each range */

static const unsigned  test_close_codes_valid[] = {
    1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999,
    4000, 4999
};

static const unsigned  test_close_codes_invalid[] = {
    0, 1, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000,
    2999, 5000, 65535
};


static void
test_ws_parse_close_codes(void **state)
{
    char         name[64], payload[2];
    size_t       i;
    unsigned     code;
    test_case_t  c;

    (void) state;

    for (i = 0; i < sizeof(test_close_codes_valid) / sizeof(unsigned); i++) {
        code = test_close_codes_valid[i];

        assert_true(pusher_ws_close_code_valid(code));

        payload[0] = (char) (code >> 8);
        payload[1] = (char) code;
        snprintf(name, sizeof(name), "valid close code %u", code);

        c = (test_case_t) {
            name, 0, { { F_FRAME, B_CLOSE, payload, 2, 0 } },
            { CLOSE(code, "") }, 0
        };

        test_run_case(&c);
    }

    for (i = 0; i < sizeof(test_close_codes_invalid) / sizeof(unsigned); i++)
    {
        code = test_close_codes_invalid[i];

        assert_false(pusher_ws_close_code_valid(code));

        payload[0] = (char) (code >> 8);
        payload[1] = (char) code;
        snprintf(name, sizeof(name), "invalid close code %u", code);

        c = (test_case_t) {
            name, 0, { { F_FRAME, B_CLOSE, payload, 2, 0 } },
            { E_PROTO("Invalid close code") }, 0
        };

        test_run_case(&c);
    }
}


static const test_case_t  test_max_message[] = {

    { "message of exactly max_message",
      10, { FRAMEN(B_TEXT, 10) },
      { MSG_N(PUSHER_WS_MESSAGE, PUSHER_WS_OP_TEXT, 10) }, 0 },

    { "message of max_message + 1",
      10, { FRAMEN(B_TEXT, 11) }, { E_BIG }, 0 },

    { "too big is seen in the header, before the payload",
      10, { CUT(B_BIN, "", 11) }, { E_BIG }, 0 },

    { "64 bit length far above max_message",
      10, { RAW("\x82\xff\x40\x00\x00\x00\x00\x00\x00\x00"
                "\x00\x00\x00\x00") },
      { E_BIG }, 0 },

    { "fragments adding up to max_message",
      10, { FRAMEN(B_TEXT_MORE, 4), FRAMEN(B_CONT_MORE, 3),
            FRAMEN(B_CONT_MORE, 0), FRAMEN(B_CONT, 3) },
      { MSG_N(PUSHER_WS_MESSAGE, PUSHER_WS_OP_TEXT, 10) }, 0 },

    { "fragments adding up to max_message + 1",
      10, { FRAMEN(B_TEXT_MORE, 5), FRAMEN(B_CONT_MORE, 5),
            FRAMEN(B_CONT, 1) },
      { E_BIG }, 0 },

    { "fragments too big is seen in the header",
      10, { FRAMEN(B_BIN_MORE, 9), CUT(B_CONT_MORE, "", 2) }, { E_BIG }, 0 },

    { "control frames do not count against max_message",
      10, { FRAME(B_TEXT_MORE, "abcde"), FRAMEN(B_PING, 100),
            FRAME(B_CONT, "fghij") },
      { MSG_N(PUSHER_WS_PING, PUSHER_WS_OP_PING, 100),
        TEXT_COPY("abcdefghij") }, 0 },

    { "max_message counts each message anew",
      10, { FRAMEN(B_TEXT, 10), FRAMEN(B_TEXT_MORE, 5),
            FRAMEN(B_CONT, 5), FRAMEN(B_BIN, 10) },
      { MSG_N(PUSHER_WS_MESSAGE, PUSHER_WS_OP_TEXT, 10),
        MSG_N(PUSHER_WS_MESSAGE, PUSHER_WS_OP_TEXT, 10),
        MSG_N(PUSHER_WS_MESSAGE, PUSHER_WS_OP_BINARY, 10) }, 0 },

    { "default max_message allows 10000 bytes",
      0, { FRAMEN(B_BIN, 10000) },
      { MSG_N(PUSHER_WS_MESSAGE, PUSHER_WS_OP_BINARY, 10000) }, 0 },

    { "default max_message refuses 10001 bytes",
      0, { CUT(B_BIN, "", 10001) }, { E_BIG }, 0 },

    { "max_message of 1",
      1, { FRAME(B_TEXT_MORE, "a"), FRAME(B_CONT, ""), FRAME(B_TEXT, "ab") },
      { TEXT("a"), E_BIG }, 0 },
};


static void
test_ws_parse_max_message(void **state)
{
    (void) state;

    RUN_CASES(test_max_message);
}


typedef struct {
    const char  *bytes;
    size_t       len;
    int          valid;     /* 1 valid, 0 invalid, -1 truncated */
} test_utf8_t;


#define U8(s, v)  { S(s), (v) }

static const test_utf8_t  test_utf8[] = {
    U8("", 1),
    U8("plain ASCII text, longer than a word", 1),
    U8("\x00\x7f", 1),
    U8("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 1),   /* kosme */
    U8("\xc2\x80", 1),                                       /* U+0080 */
    U8("\xdf\xbf", 1),                                       /* U+07FF */
    U8("\xe0\xa0\x80", 1),                                   /* U+0800 */
    U8("\xed\x9f\xbf", 1),                                   /* U+D7FF */
    U8("\xee\x80\x80", 1),                                   /* U+E000 */
    U8("\xef\xbf\xbd", 1),                                   /* U+FFFD */
    U8("\xef\xbf\xbf", 1),                                   /* U+FFFF */
    U8("\xf0\x90\x80\x80", 1),                               /* U+10000 */
    U8("\xf3\xbf\xbf\xbf", 1),                               /* U+FFFFF */
    U8("\xf4\x8f\xbf\xbf", 1),                               /* U+10FFFF */
    U8("\x80", 0),                          /* lone continuation bytes */
    U8("\xbf", 0),
    U8("a\x80" "b", 0),
    U8("\xc0\x80", 0),                      /* overlong U+0000 */
    U8("\xc1\xbf", 0),                      /* overlong U+007F */
    U8("\xe0\x80\x80", 0),                  /* overlong U+0000 */
    U8("\xe0\x9f\xbf", 0),                  /* overlong U+07FF */
    U8("\xf0\x80\x80\x80", 0),              /* overlong U+0000 */
    U8("\xf0\x8f\xbf\xbf", 0),              /* overlong U+FFFF */
    U8("\xed\xa0\x80", 0),                  /* U+D800 */
    U8("\xed\xbf\xbf", 0),                  /* U+DFFF */
    U8("\xed\xa0\x80\xed\xb0\x80", 0),      /* surrogate pair */
    U8("\xf4\x90\x80\x80", 0),              /* U+110000 */
    U8("\xf5\x80\x80\x80", 0),
    U8("\xf7\xbf\xbf\xbf", 0),
    U8("\xf8\x88\x80\x80\x80", 0),          /* 5 byte form */
    U8("\xfc\x84\x80\x80\x80\x80", 0),      /* 6 byte form */
    U8("\xfe", 0),
    U8("\xff", 0),
    U8("\xc2\x41", 0),                      /* lead then ASCII */
    U8("\xe1\x80\x41", 0),
    U8("\xf1\x80\x80\x41", 0),
    U8("\xc2\xc2\x80", 0),                  /* lead then lead */
    U8("\xc2", -1),                         /* truncated at the end */
    U8("\xe0\xa0", -1),
    U8("\xed\x9f", -1),
    U8("\xf0\x90\x80", -1),
    U8("\xf4\x8f\xbf", -1),
    U8("\xce\xba\xe1\xbd", -1),
};


#define TEST_UTF8_PREFIX  "0123456789abcdef"


/*
 * pusher_utf8_prefix: every cut of a text of 1-, 2-, 3- and 4-byte
 * characters ends at a character boundary and is valid UTF-8 on its own,
 * and is the longest such prefix within the limit
 */
static void
test_ws_utf8_prefix(void **state)
{
    size_t          max, n, k;
    static const char  text[] = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80" "b";
    static const size_t  starts[] = { 0, 1, 3, 6, 10, 11 };

    (void) state;

    for (max = 0; max <= sizeof(text) + 1; max++) {
        n = pusher_utf8_prefix((const uint8_t *) text, sizeof(text) - 1, max);

        assert_true(n <= max && n <= sizeof(text) - 1);
        assert_int_equal(pusher_utf8_validate(PUSHER_UTF8_ACCEPT,
                                              (const uint8_t *) text, n),
                         PUSHER_UTF8_ACCEPT);

        /* the last character start at or before max */
        for (k = sizeof(starts) / sizeof(starts[0]); k > 0; k--) {
            if (starts[k - 1] <= max) {
                break;
            }
        }

        assert_int_equal(n, max >= sizeof(text) - 1 ? sizeof(text) - 1
                                                    : starts[k - 1]);
    }
}


static void
test_ws_utf8_validate(void **state)
{
    char                buf[128];
    size_t              i, j, n;
    uint32_t            s, expect;
    const test_utf8_t  *u;

    (void) state;

    for (i = 0; i < sizeof(test_utf8) / sizeof(test_utf8_t); i++) {
        u = &test_utf8[i];

        /* whole, then one byte at a time with the state carried */

        s = pusher_utf8_validate(PUSHER_UTF8_ACCEPT,
                                 (const uint8_t *) u->bytes, u->len);

        if (u->valid == 1) {
            assert_int_equal(s, PUSHER_UTF8_ACCEPT);

        } else if (u->valid == 0) {
            assert_int_equal(s, PUSHER_UTF8_REJECT);

        } else {
            assert_int_not_equal(s, PUSHER_UTF8_ACCEPT);
            assert_int_not_equal(s, PUSHER_UTF8_REJECT);
        }

        expect = s;
        s = PUSHER_UTF8_ACCEPT;

        for (j = 0; j < u->len; j++) {
            s = pusher_utf8_validate(s, (const uint8_t *) &u->bytes[j], 1);
        }

        assert_int_equal(s, expect);

        /* after a run of ASCII long enough for the word fast path */

        n = sizeof(TEST_UTF8_PREFIX) - 1;
        memcpy(buf, TEST_UTF8_PREFIX, n);
        memcpy(buf + n, u->bytes, u->len);

        s = pusher_utf8_validate(PUSHER_UTF8_ACCEPT, (const uint8_t *) buf,
                                 n + u->len);
        assert_int_equal(s, expect);

        /* followed by ASCII: a truncated sequence becomes invalid */

        memcpy(buf + n + u->len, TEST_UTF8_PREFIX, n);

        s = pusher_utf8_validate(PUSHER_UTF8_ACCEPT, (const uint8_t *) buf,
                                 2 * n + u->len);
        assert_int_equal(s, u->valid == 1 ? PUSHER_UTF8_ACCEPT
                                          : PUSHER_UTF8_REJECT);
    }

    /* REJECT absorbs, and a bad state is rejected */
    assert_int_equal(pusher_utf8_validate(PUSHER_UTF8_REJECT,
                                          (const uint8_t *) "a", 1),
                     PUSHER_UTF8_REJECT);
    assert_int_equal(pusher_utf8_validate(1000, (const uint8_t *) "a", 1),
                     PUSHER_UTF8_REJECT);
    assert_int_equal(pusher_utf8_validate(PUSHER_UTF8_ACCEPT, NULL, 0),
                     PUSHER_UTF8_ACCEPT);
}


static void
test_ws_utf8_validate_all_code_points(void **state)
{
    uint8_t   b[4];
    size_t    n;
    uint32_t  cp, s;

    (void) state;

    /* every scalar value encodes to valid UTF-8, every surrogate not */

    for (cp = 0; cp <= 0x10ffff; cp++) {

        if (cp < 0x80) {
            b[0] = (uint8_t) cp;
            n = 1;

        } else if (cp < 0x800) {
            b[0] = (uint8_t) (0xc0 | (cp >> 6));
            b[1] = (uint8_t) (0x80 | (cp & 0x3f));
            n = 2;

        } else if (cp < 0x10000) {
            b[0] = (uint8_t) (0xe0 | (cp >> 12));
            b[1] = (uint8_t) (0x80 | ((cp >> 6) & 0x3f));
            b[2] = (uint8_t) (0x80 | (cp & 0x3f));
            n = 3;

        } else {
            b[0] = (uint8_t) (0xf0 | (cp >> 18));
            b[1] = (uint8_t) (0x80 | ((cp >> 12) & 0x3f));
            b[2] = (uint8_t) (0x80 | ((cp >> 6) & 0x3f));
            b[3] = (uint8_t) (0x80 | (cp & 0x3f));
            n = 4;
        }

        s = pusher_utf8_validate(PUSHER_UTF8_ACCEPT, b, n);

        if (cp >= 0xd800 && cp <= 0xdfff) {
            assert_int_equal(s, PUSHER_UTF8_REJECT);

        } else if (s != PUSHER_UTF8_ACCEPT) {
            print_error("U+%04X rejected\n", (unsigned) cp);
            fail();
        }
    }
}


/* each sequence as a text message: whole, and in two fragments at each byte */

static void
test_ws_parse_utf8(void **state)
{
    char                name[96];
    size_t              i, k;
    test_case_t         c;
    const test_utf8_t  *u;

    (void) state;

    for (i = 0; i < sizeof(test_utf8) / sizeof(test_utf8_t); i++) {
        u = &test_utf8[i];

        snprintf(name, sizeof(name), "utf8 sequence %zu", i);

        c = (test_case_t) {
            name, 0, { { F_FRAME, B_TEXT, u->bytes, u->len, 0 } },
            { { PUSHER_WS_MESSAGE, PUSHER_WS_OP_TEXT, 0, NULL, u->bytes,
                u->len, ZC_YES } },
            0
        };

        if (u->valid != 1) {
            c.events[0] = (test_event_t) E_UTF8;
        }

        test_run_case(&c);

        c.events[0].zero_copy = ZC_ANY;

        for (k = 0; k <= u->len; k++) {
            snprintf(name, sizeof(name), "utf8 sequence %zu, fragment at %zu",
                     i, k);

            c.frames[0] = (test_frame_t) {
                F_FRAME, B_TEXT_MORE, u->bytes, k, 0
            };

            c.frames[1] = (test_frame_t) {
                F_FRAME, B_CONT, u->bytes + k, u->len - k, 0
            };

            test_run_case(&c);
        }
    }
}


static const test_case_t  test_utf8_fail_fast[] = {

    { "binary is not checked for UTF-8",
      0, { FRAME(B_BIN, "\xff\xfe\xc0\x80") }, { BIN("\xff\xfe\xc0\x80") },
      0 },

    { "invalid byte fails before the rest of the frame arrives",
      0, { CUT(B_TEXT, "ab\xff", 10) }, { E_UTF8 }, 0 },

    { "invalid byte fails in the first fragment",
      0, { FRAME(B_TEXT_MORE, "\xce\xba\xff") }, { E_UTF8 }, 0 },

    { "invalid sequence across fragments fails before the last",
      0, { FRAME(B_TEXT_MORE, "\xce"), FRAME(B_CONT_MORE, "A") },
      { E_UTF8 }, 0 },

    { "surrogate across three fragments fails on the second",
      0, { FRAME(B_TEXT_MORE, "\xed"), FRAME(B_CONT_MORE, "\xa0") },
      { E_UTF8 }, 0 },

    { "code point above U+10FFFF fails on its second byte",
      0, { CUT(B_TEXT, "\xf4\x90", 4) }, { E_UTF8 }, 0 },

    { "truncated sequence at the end of a fragmented message",
      0, { FRAME(B_TEXT_MORE, "a"), FRAME(B_CONT, "\xe2\x82") },
      { E_UTF8 }, 0 },

    { "truncated sequence with a ping after it is still pending",
      0, { FRAME(B_TEXT_MORE, "\xe2\x82"), FRAME(B_PING, ""),
           FRAME(B_CONT, "\xac") },
      { PING(""), TEXT("\xe2\x82\xac") }, 0 },
};


static void
test_ws_parse_utf8_fails_fast(void **state)
{
    (void) state;

    RUN_CASES(test_utf8_fail_fast);
}


static void
test_ws_parse_header_then_payload_is_zero_copy(void **state)
{
    uint8_t             *pos;
    uint8_t              hdr[6], payload[5];
    test_alloc_t         a;
    pusher_ws_msg_t      msg;
    pusher_ws_parser_t   p;

    (void) state;

    test_parser_init(&p, &a, 0);

    assert_int_equal(pusher_ws_client_frame_header(hdr, PUSHER_WS_OP_TEXT, 1,
                                                   5, test_mask),
                     6);
    memcpy(payload, "Hello", 5);
    pusher_ws_mask(payload, 5, test_mask, 0);

    pos = hdr;
    assert_int_equal(pusher_ws_parse(&p, &pos, hdr + 6, &msg),
                     PUSHER_WS_AGAIN);
    assert_true(pusher_ws_parser_busy(&p));

    pos = payload;
    assert_int_equal(pusher_ws_parse(&p, &pos, payload + 5, &msg),
                     PUSHER_WS_MESSAGE);
    assert_ptr_equal(msg.data, payload);
    assert_int_equal(msg.len, 5);
    assert_memory_equal(payload, "Hello", 5);
    assert_ptr_equal(pos, payload + 5);
    assert_int_equal(a.allocs, 0);
    assert_false(pusher_ws_parser_busy(&p));

    pusher_ws_parser_free(&p);
}


static void
test_ws_parse_frees_assembled_message_on_next_call(void **state)
{
    uint8_t             *pos;
    uint8_t              in[32];
    size_t               n;
    test_alloc_t         a;
    pusher_ws_msg_t      msg;
    pusher_ws_parser_t   p;

    (void) state;

    test_parser_init(&p, &a, 0);

    n = pusher_ws_client_frame_header(in, PUSHER_WS_OP_TEXT, 0, 2, test_mask);
    memcpy(in + n, "ab", 2);
    pusher_ws_mask(in + n, 2, test_mask, 0);
    n += 2;
    n += pusher_ws_client_frame_header(in + n, PUSHER_WS_OP_CONT, 1, 1,
                                       test_mask);
    in[n] = 'c';
    pusher_ws_mask(in + n, 1, test_mask, 0);
    n++;

    pos = in;
    assert_int_equal(pusher_ws_parse(&p, &pos, in + n, &msg),
                     PUSHER_WS_MESSAGE);
    assert_int_equal(msg.len, 3);
    assert_memory_equal(msg.data, "abc", 3);
    assert_int_equal(a.outstanding, 1);
    assert_false(pusher_ws_parser_busy(&p));

    /* the next call, even with no input, releases the buffer */
    assert_int_equal(pusher_ws_parse(&p, &pos, in + n, &msg),
                     PUSHER_WS_AGAIN);
    assert_int_equal(a.outstanding, 0);

    pusher_ws_parser_free(&p);
    assert_int_equal(a.outstanding, 0);
}


static void
test_ws_parser_free_mid_message_releases_and_closes(void **state)
{
    uint8_t             *pos;
    uint8_t              in[32];
    size_t               n;
    test_alloc_t         a;
    pusher_ws_msg_t      msg;
    pusher_ws_parser_t   p;

    (void) state;

    test_parser_init(&p, &a, 0);

    /* a first fragment, and half of the next one */
    n = pusher_ws_client_frame_header(in, PUSHER_WS_OP_TEXT, 0, 2, test_mask);
    memcpy(in + n, "ab", 2);
    pusher_ws_mask(in + n, 2, test_mask, 0);
    n += 2;
    n += pusher_ws_client_frame_header(in + n, PUSHER_WS_OP_CONT, 1, 4,
                                       test_mask);
    memcpy(in + n, "cd", 2);
    pusher_ws_mask(in + n, 2, test_mask, 0);
    n += 2;

    pos = in;
    assert_int_equal(pusher_ws_parse(&p, &pos, in + n, &msg),
                     PUSHER_WS_AGAIN);
    assert_true(pusher_ws_parser_busy(&p));
    assert_int_equal(a.outstanding, 1);

    pusher_ws_parser_free(&p);
    assert_int_equal(a.outstanding, 0);
    assert_false(pusher_ws_parser_busy(&p));

    /* the rest of the frame is ignored, and nothing is allocated */
    pos = in + n - 2;
    assert_int_equal(pusher_ws_parse(&p, &pos, in + n, &msg),
                     PUSHER_WS_AGAIN);
    assert_ptr_equal(pos, in + n);
    assert_int_equal(a.outstanding, 0);

    pusher_ws_parser_free(&p);
    assert_int_equal(a.outstanding, 0);
}


static void
test_ws_parse_out_of_memory(void **state)
{
    uint8_t             *pos;
    uint8_t              in[32];
    size_t               n;
    test_alloc_t         a;
    pusher_ws_msg_t      msg;
    pusher_ws_parser_t   p;

    (void) state;

    /* a fragment needs a buffer, and gets none */

    test_parser_init(&p, &a, 0);
    a.fail_after = 0;

    n = pusher_ws_client_frame_header(in, PUSHER_WS_OP_TEXT, 0, 2, test_mask);
    memcpy(in + n, "ab", 2);
    pusher_ws_mask(in + n, 2, test_mask, 0);
    n += 2;

    pos = in;
    assert_int_equal(pusher_ws_parse(&p, &pos, in + n, &msg),
                     PUSHER_WS_ERROR);
    assert_int_equal(msg.close_code, PUSHER_WS_CLOSE_INTERNAL);
    assert_string_equal(msg.reason, "Out of memory");
    assert_int_equal(a.outstanding, 0);

    pusher_ws_parser_free(&p);

    /* a failed regrowth keeps nothing either */

    test_parser_init(&p, &a, 100000);
    a.fail_after = 1;

    memset(in, 0, sizeof(in));
    n = pusher_ws_client_frame_header(in, PUSHER_WS_OP_BINARY, 0, 2,
                                      test_mask);
    n += 2;
    n += pusher_ws_client_frame_header(in + n, PUSHER_WS_OP_CONT, 1, 1000,
                                       test_mask);
    n += 1;

    pos = in;
    assert_int_equal(pusher_ws_parse(&p, &pos, in + n, &msg),
                     PUSHER_WS_ERROR);
    assert_int_equal(msg.close_code, PUSHER_WS_CLOSE_INTERNAL);
    assert_int_equal(a.allocs, 2);
    assert_int_equal(a.outstanding, 0);

    pusher_ws_parser_free(&p);
}


static void
test_ws_parse_without_allocator_uses_malloc(void **state)
{
    uint8_t             *pos;
    uint8_t              in[32];
    size_t               n;
    pusher_ws_msg_t      msg;
    pusher_ws_parser_t   p;

    (void) state;

    pusher_ws_parser_init(&p, 0, NULL, NULL, NULL);
    assert_int_equal(p.max_message, PUSHER_WS_DEFAULT_MAX_MESSAGE);

    n = pusher_ws_client_frame_header(in, PUSHER_WS_OP_TEXT, 0, 1, test_mask);
    in[n++] = 'a' ^ test_mask[0];
    n += pusher_ws_client_frame_header(in + n, PUSHER_WS_OP_CONT, 1, 1,
                                       test_mask);
    in[n++] = 'b' ^ test_mask[0];

    pos = in;
    assert_int_equal(pusher_ws_parse(&p, &pos, in + n, &msg),
                     PUSHER_WS_MESSAGE);
    assert_int_equal(msg.len, 2);
    assert_memory_equal(msg.data, "ab", 2);

    pusher_ws_parser_free(&p);
}


typedef struct {
    unsigned      opcode;
    uint64_t      len;
    const char   *bytes;
    size_t        n;
} test_header_t;


static const test_header_t  test_headers[] = {
    { PUSHER_WS_OP_TEXT, 0, S("\x81\x00") },
    { PUSHER_WS_OP_TEXT, 5, S("\x81\x05") },
    { PUSHER_WS_OP_TEXT, 125, S("\x81\x7d") },
    { PUSHER_WS_OP_BINARY, 126, S("\x82\x7e\x00\x7e") },
    { PUSHER_WS_OP_BINARY, 256, S("\x82\x7e\x01\x00") },      /* rfc 5.7 */
    { PUSHER_WS_OP_BINARY, 65535, S("\x82\x7e\xff\xff") },
    { PUSHER_WS_OP_BINARY, 65536,                             /* rfc 5.7 */
      S("\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00") },
    { PUSHER_WS_OP_BINARY, 0x0102030405060708ULL,
      S("\x82\x7f\x01\x02\x03\x04\x05\x06\x07\x08") },
    { PUSHER_WS_OP_PING, 5, S("\x89\x05") },                 /* rfc 5.7 */
    { PUSHER_WS_OP_PONG, 5, S("\x8a\x05") },
    { PUSHER_WS_OP_CLOSE, 2, S("\x88\x02") },
};


static void
test_ws_encode_frame_header(void **state)
{
    size_t                i, n;
    uint8_t               out[PUSHER_WS_HEADER_MAX];
    const test_header_t  *h;

    (void) state;

    for (i = 0; i < sizeof(test_headers) / sizeof(test_header_t); i++) {
        h = &test_headers[i];

        memset(out, 0xee, sizeof(out));

        n = pusher_ws_frame_header(out, h->opcode, h->len);

        assert_int_equal(n, h->n);
        assert_int_equal(pusher_ws_frame_header_size(h->len), h->n);
        assert_memory_equal(out, h->bytes, h->n);
        assert_int_equal(out[n], 0xee);
    }
}


static void
test_ws_encode_rfc6455_examples(void **state)
{
    size_t   n;
    uint8_t  out[32];

    (void) state;

    /* a single-frame unmasked text message */
    n = pusher_ws_frame_header(out, PUSHER_WS_OP_TEXT, 5);
    memcpy(out + n, "Hello", 5);
    assert_memory_equal(out, "\x81\x05\x48\x65\x6c\x6c\x6f", n + 5);

    /* a single-frame masked text message */
    n = pusher_ws_client_frame_header(out, PUSHER_WS_OP_TEXT, 1, 5,
                                      test_mask);
    assert_int_equal(n, 6);
    memcpy(out + n, "Hello", 5);
    pusher_ws_mask(out + n, 5, test_mask, 0);
    assert_memory_equal(out,
                        "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11);

    /* the first fragment of a text message, and the rest */
    n = pusher_ws_client_frame_header(out, PUSHER_WS_OP_TEXT, 0, 3,
                                      test_mask);
    assert_memory_equal(out, "\x01\x83\x37\xfa\x21\x3d", n);

    n = pusher_ws_client_frame_header(out, PUSHER_WS_OP_CONT, 1, 65536,
                                      test_mask);
    assert_int_equal(n, 14);
    assert_memory_equal(out,
                        "\x80\xff\x00\x00\x00\x00\x00\x01\x00\x00"
                        "\x37\xfa\x21\x3d", 14);

    n = pusher_ws_client_frame_header(out, PUSHER_WS_OP_BINARY, 1, 256,
                                      test_mask);
    assert_int_equal(n, 8);
    assert_memory_equal(out, "\x82\xfe\x01\x00\x37\xfa\x21\x3d", 8);
}


static void
test_ws_mask_matches_bytewise_at_any_offset_and_alignment(void **state)
{
    size_t    len, off, align, k, i;
    uint8_t   ref[80], buf[96], *d;

    (void) state;

    for (len = 0; len <= 70; len++) {
        for (off = 0; off < 8; off++) {
            for (align = 0; align < 8; align++) {

                for (i = 0; i < len; i++) {
                    ref[i] = (uint8_t) (i * 7 + len);
                }

                d = buf + align;
                memcpy(d, ref, len);

                for (i = 0; i < len; i++) {
                    ref[i] ^= test_mask[(off + i) % 4];
                }

                pusher_ws_mask(d, len, test_mask, off);
                assert_memory_equal(d, ref, len);

                /* unmasking again in two parts, the mask carried */
                k = len / 3;
                pusher_ws_mask(d, k, test_mask, off);
                pusher_ws_mask(d + k, len - k, test_mask, off + k);

                for (i = 0; i < len; i++) {
                    assert_int_equal(d[i], (uint8_t) (i * 7 + len));
                }
            }
        }
    }
}


static void
test_ws_encode_close_frame(void **state)
{
    char     reason[200];
    size_t   n;
    uint8_t  out[2 + PUSHER_WS_CONTROL_MAX];

    (void) state;

    n = pusher_ws_close_frame(out, 1000, "", 0);
    assert_int_equal(n, 4);
    assert_memory_equal(out, "\x88\x02\x03\xe8", 4);

    n = pusher_ws_close_frame(out, 4200, "reconnect", 9);
    assert_int_equal(n, 13);
    assert_memory_equal(out, "\x88\x0b\x10\x68reconnect", 13);

    n = pusher_ws_close_frame(out, 1000, NULL, 0);
    assert_int_equal(n, 4);

    /* code 0: no status at all */
    n = pusher_ws_close_frame(out, 0, "ignored", 7);
    assert_int_equal(n, 2);
    assert_memory_equal(out, "\x88\x00", 2);

    /* reasons are cut to 123 bytes, the control frame limit */
    memset(reason, 'x', sizeof(reason));

    n = pusher_ws_close_frame(out, 1008, reason, 123);
    assert_int_equal(n, 127);
    assert_int_equal(out[1], 125);

    n = pusher_ws_close_frame(out, 1008, reason, sizeof(reason));
    assert_int_equal(n, 127);
    assert_int_equal(out[1], 125);
    assert_memory_equal(out + 4, reason, 123);

    /* not in the middle of a code point */
    memcpy(reason + 122, "\xce\xba", 2);
    n = pusher_ws_close_frame(out, 1008, reason, 124);
    assert_int_equal(n, 126);
    assert_int_equal(out[1], 124);

    memcpy(reason + 121, "\xf0\x9f\x98\x80", 4);
    n = pusher_ws_close_frame(out, 1008, reason, 125);
    assert_int_equal(n, 125);
    assert_int_equal(out[1], 123);

    memcpy(reason + 120, "\xf0\x9f\x98\x80", 4);
    n = pusher_ws_close_frame(out, 1008, reason, 124);
    assert_int_equal(n, 124);
    assert_int_equal(out[1], 122);
    assert_int_equal(pusher_utf8_validate(PUSHER_UTF8_ACCEPT, out + 4,
                                          n - 4),
                     PUSHER_UTF8_ACCEPT);
}


static void
test_ws_encode_close_frame_parses_back(void **state)
{
    size_t               n, i;
    uint8_t             *pos;
    uint8_t              close[2 + PUSHER_WS_CONTROL_MAX];
    uint8_t              in[PUSHER_WS_HEADER_MAX + PUSHER_WS_CONTROL_MAX];
    char                 reason[130];
    test_alloc_t         a;
    pusher_ws_msg_t      msg;
    pusher_ws_parser_t   p;

    (void) state;

    for (i = 0; i < sizeof(reason); i++) {
        reason[i] = (char) ('A' + i % 26);
    }

    /* server frame to client frame: set MASK, insert the key, mask */
    n = pusher_ws_close_frame(close, 4001, reason, sizeof(reason));
    assert_int_equal(n, 127);

    in[0] = close[0];
    in[1] = close[1] | 0x80;
    memcpy(in + 2, test_mask, 4);
    memcpy(in + 6, close + 2, n - 2);
    pusher_ws_mask(in + 6, n - 2, test_mask, 0);

    test_parser_init(&p, &a, 0);

    pos = in;
    assert_int_equal(pusher_ws_parse(&p, &pos, in + n + 4, &msg),
                     PUSHER_WS_CLOSE);
    assert_int_equal(msg.close_code, 4001);
    assert_int_equal(msg.len, 123);
    assert_memory_equal(msg.data, reason, 123);

    pusher_ws_parser_free(&p);
}


static void
test_ws_accept_key_rfc6455_example(void **state)
{
    char           out[29];
    char           expect[29];
    uint8_t        md[SHA_DIGEST_LENGTH];
    uint8_t        key[200];
    const char    *guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char  cat[300];

    (void) state;

    memset(out, 0x55, sizeof(out));
    pusher_ws_accept_key((const uint8_t *) "dGhlIHNhbXBsZSBub25jZQ==", 24,
                         out);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

    /* keys too long to be valid are still hashed the same way */
    memset(key, 'k', sizeof(key));
    memcpy(cat, key, sizeof(key));
    memcpy(cat + sizeof(key), guid, 36);
    SHA1(cat, sizeof(key) + 36, md);
    EVP_EncodeBlock((unsigned char *) expect, md, SHA_DIGEST_LENGTH);

    pusher_ws_accept_key(key, sizeof(key), out);
    assert_string_equal(out, expect);
}


typedef struct {
    const char  *key;
    int          valid;
} test_key_t;


static const test_key_t  test_keys[] = {
    { "dGhlIHNhbXBsZSBub25jZQ==", 1 },
    { "AAAAAAAAAAAAAAAAAAAAAA==", 1 },
    { "+/+/+/+/+/+/+/+/+/+/+w==", 1 },
    { "dGhlIHNhbXBsZSBub25jZQ=", 0 },          /* 23 characters */
    { "dGhlIHNhbXBsZSBub25jZQ===", 0 },        /* 25 */
    { "dGhlIHNhbXBsZSBub25jZQAA", 0 },         /* 18 bytes, no padding */
    { "dGhlIHNhbXBsZSBub25jZ===", 0 },         /* padding too early */
    { "dGhlIHNhbXBsZSBub25j ZQ=", 0 },
    { "dGhlIHNhbXBsZSBub25jZ-==", 0 },         /* base64url */
    { "dGhlIHNhbXBsZSBub25jZ_==", 0 },
    { "", 0 },
    { "========================", 0 },
};


static void
test_ws_key_valid(void **state)
{
    size_t  i;

    (void) state;

    for (i = 0; i < sizeof(test_keys) / sizeof(test_key_t); i++) {
        if (pusher_ws_key_valid((const uint8_t *) test_keys[i].key,
                                strlen(test_keys[i].key))
            != test_keys[i].valid)
        {
            print_error("key \"%s\"\n", test_keys[i].key);
            fail();
        }
    }
}


static void
test_ws_close_code_valid(void **state)
{
    unsigned  code;
    int       expect;

    (void) state;

    for (code = 0; code < 70000; code++) {
        expect = (code >= 1000 && code <= 1003)
                 || (code >= 1007 && code <= 1011)
                 || (code >= 3000 && code <= 4999);

        if (pusher_ws_close_code_valid(code) != expect) {
            print_error("close code %u\n", code);
            fail();
        }
    }
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_ws_parse_valid_frames),
        cmocka_unit_test(test_ws_parse_fragments),
        cmocka_unit_test(test_ws_parse_protocol_errors),
        cmocka_unit_test(test_ws_parse_unknown_opcodes),
        cmocka_unit_test(test_ws_parse_close_frames),
        cmocka_unit_test(test_ws_parse_close_codes),
        cmocka_unit_test(test_ws_parse_max_message),
        cmocka_unit_test(test_ws_parse_utf8),
        cmocka_unit_test(test_ws_parse_utf8_fails_fast),
        cmocka_unit_test(test_ws_parse_header_then_payload_is_zero_copy),
        cmocka_unit_test(test_ws_parse_frees_assembled_message_on_next_call),
        cmocka_unit_test(test_ws_parser_free_mid_message_releases_and_closes),
        cmocka_unit_test(test_ws_parse_out_of_memory),
        cmocka_unit_test(test_ws_parse_without_allocator_uses_malloc),
        cmocka_unit_test(test_ws_utf8_validate),
        cmocka_unit_test(test_ws_utf8_prefix),
        cmocka_unit_test(test_ws_utf8_validate_all_code_points),
        cmocka_unit_test(test_ws_encode_frame_header),
        cmocka_unit_test(test_ws_encode_rfc6455_examples),
        cmocka_unit_test(
            test_ws_mask_matches_bytewise_at_any_offset_and_alignment),
        cmocka_unit_test(test_ws_encode_close_frame),
        cmocka_unit_test(test_ws_encode_close_frame_parses_back),
        cmocka_unit_test(test_ws_accept_key_rfc6455_example),
        cmocka_unit_test(test_ws_key_valid),
        cmocka_unit_test(test_ws_close_code_valid),
    };

    return cmocka_run_group_tests_name("pusher_ws", tests, NULL, NULL);
}
