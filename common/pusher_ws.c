/*
 * ngx-pusher: RFC 6455 WebSocket codec, server side.  See pusher_ws.h.
 *
 * The parser is a two-state machine (frame header, frame payload) that
 * keeps at most PUSHER_WS_HEADER_MAX header bytes and PUSHER_WS_CONTROL_MAX
 * control payload bytes between calls.  Data payloads are either returned
 * in place (an unfragmented frame whose payload is all in the input) or
 * appended to p->msg, which exists only while a message is assembled.
 */


#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "pusher_ws.h"


#define PUSHER_WS_STATE_HEADER    0
#define PUSHER_WS_STATE_PAYLOAD   1
#define PUSHER_WS_STATE_CLOSED    2

/* flag in p->state: p->msg was returned and is freed on the next call */
#define PUSHER_WS_STATE_RELEASE   0x80

#define PUSHER_WS_FIN             0x80
#define PUSHER_WS_RSV             0x70
#define PUSHER_WS_OPCODE          0x0f
#define PUSHER_WS_MASKED          0x80
#define PUSHER_WS_LEN7            0x7f
#define PUSHER_WS_LEN16           126
#define PUSHER_WS_LEN64           127
#define PUSHER_WS_CONTROL         0x08

/* first buffer of a fragmented message, doubled up to max_message */
#define PUSHER_WS_MSG_MIN_ALLOC   256

/* longest close reason: the control limit less the 2 byte code */
#define PUSHER_WS_REASON_MAX      (PUSHER_WS_CONTROL_MAX - 2)

#define PUSHER_WS_GUID            "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define PUSHER_WS_GUID_LEN        (sizeof(PUSHER_WS_GUID) - 1)

/* base64 of 16 bytes: 22 characters and "==" */
#define PUSHER_WS_KEY_LEN         24

/* longer Sec-WebSocket-Key values are hashed without the stack buffer */
#define PUSHER_WS_KEY_STACK_MAX   64

#define PUSHER_UTF8_HIGH_BITS     0x8080808080808080ULL

/*
 * UTF-8 validator states besides ACCEPT (0) and REJECT (1).  The first
 * continuation byte after E0, ED, F0 and F4 has a narrower range, which
 * rules out overlong forms, surrogates and code points above U+10FFFF.
 */
#define PUSHER_UTF8_NEED1         2     /* one more 80..BF */
#define PUSHER_UTF8_NEED2         3     /* two more 80..BF */
#define PUSHER_UTF8_NEED3         4     /* three more 80..BF */
#define PUSHER_UTF8_AFTER_E0      5     /* A0..BF, then NEED1 */
#define PUSHER_UTF8_AFTER_ED      6     /* 80..9F, then NEED1 */
#define PUSHER_UTF8_AFTER_F0      7     /* 90..BF, then NEED2 */
#define PUSHER_UTF8_AFTER_F4      8     /* 80..8F, then NEED2 */
#define PUSHER_UTF8_STATES        9

#define PUSHER_UTF8_CLASSES       12


static pusher_ws_result_e pusher_ws_header_start(pusher_ws_parser_t *p,
    unsigned b0, unsigned b1, pusher_ws_msg_t *msg);
static pusher_ws_result_e pusher_ws_header_end(pusher_ws_parser_t *p,
    const uint8_t *h, pusher_ws_msg_t *msg);
static pusher_ws_result_e pusher_ws_data(pusher_ws_parser_t *p,
    uint8_t **pos, uint8_t *end, pusher_ws_msg_t *msg);
static pusher_ws_result_e pusher_ws_control(pusher_ws_parser_t *p,
    uint8_t **pos, uint8_t *end, pusher_ws_msg_t *msg);
static pusher_ws_result_e pusher_ws_control_end(pusher_ws_parser_t *p,
    uint8_t *data, size_t len, pusher_ws_msg_t *msg);
static int pusher_ws_reserve(pusher_ws_parser_t *p, size_t size, int exact);
static void pusher_ws_release(pusher_ws_parser_t *p);
static pusher_ws_result_e pusher_ws_fail(pusher_ws_parser_t *p,
    pusher_ws_msg_t *msg, unsigned code, const char *reason);
static void *pusher_ws_malloc(size_t size, void *ctx);
static void pusher_ws_mfree(void *p, void *ctx);


/*
 * byte classes: 0 ASCII, 1 80..8F, 2 90..9F, 3 A0..BF, 4 never valid
 * (C0, C1, F5..FF), 5 C2..DF, 6 E0, 7 E1..EC and EE..EF, 8 ED, 9 F0,
 * 10 F1..F3, 11 F4
 */
static const uint8_t  pusher_utf8_class[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,     /* 00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,     /* 10 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,     /* 20 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,     /* 30 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,     /* 40 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,     /* 50 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,     /* 60 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,     /* 70 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,     /* 80 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,     /* 90 */
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,     /* A0 */
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,     /* B0 */
    4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,     /* C0 */
    5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,     /* D0 */
    6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 7,     /* E0 */
    9, 10, 10, 10, 11, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4  /* F0 */
};


/* next state by [state][class]; 1 (REJECT) absorbs */
static const uint8_t  pusher_utf8_next[PUSHER_UTF8_STATES]
                                      [PUSHER_UTF8_CLASSES] =
{
    /*   00 80 90 A0 xx C2 E0 E1 ED F0 F1 F4 */
    {     0, 1, 1, 1, 1, 2, 5, 3, 6, 7, 4, 8 },   /* ACCEPT */
    {     1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 },   /* REJECT */
    {     1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1 },   /* NEED1 */
    {     1, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1 },   /* NEED2 */
    {     1, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1 },   /* NEED3 */
    {     1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1 },   /* AFTER_E0 */
    {     1, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1 },   /* AFTER_ED */
    {     1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1 },   /* AFTER_F0 */
    {     1, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 }    /* AFTER_F4 */
};


void
pusher_ws_parser_init(pusher_ws_parser_t *p, size_t max_message,
    pusher_ws_alloc_pt alloc, pusher_ws_free_pt dealloc, void *alloc_ctx)
{
    memset(p, 0, sizeof(pusher_ws_parser_t));

    p->max_message = max_message ? max_message
                                 : PUSHER_WS_DEFAULT_MAX_MESSAGE;

    /* no allocator: the C library's */

    if (alloc == NULL || dealloc == NULL) {
        alloc = pusher_ws_malloc;
        dealloc = pusher_ws_mfree;
    }

    p->alloc = alloc;
    p->free = dealloc;
    p->alloc_ctx = alloc_ctx;
}


void
pusher_ws_parser_free(pusher_ws_parser_t *p)
{
    pusher_ws_release(p);

    /* a freed parser ignores any further input, as after a close */

    p->msg_opcode = 0;
    p->hdr_len = 0;
    p->payload_left = 0;
    p->state = PUSHER_WS_STATE_CLOSED;
}


int
pusher_ws_parser_busy(const pusher_ws_parser_t *p)
{
    unsigned  state;

    state = p->state & ~PUSHER_WS_STATE_RELEASE;

    return state == PUSHER_WS_STATE_PAYLOAD
           || p->hdr_len != 0
           || p->msg_opcode != 0;
}


pusher_ws_result_e
pusher_ws_parse(pusher_ws_parser_t *p, uint8_t **pos, uint8_t *end,
    pusher_ws_msg_t *msg)
{
    size_t               n;
    uint8_t             *b;
    const uint8_t       *h;
    pusher_ws_result_e   rc;

    if (p->state & PUSHER_WS_STATE_RELEASE) {
        p->state &= ~PUSHER_WS_STATE_RELEASE;
        pusher_ws_release(p);
    }

    msg->data = NULL;
    msg->len = 0;
    msg->opcode = 0;
    msg->close_code = 0;
    msg->reason = NULL;

    if (p->state == PUSHER_WS_STATE_CLOSED) {
        /* fed after ERROR or CLOSE: the rest of the stream is ignored */
        *pos = end;
        return PUSHER_WS_AGAIN;
    }

    b = *pos;

    for ( ;; ) {

        if (p->state == PUSHER_WS_STATE_HEADER) {

            if (p->hdr_len == 0 && end - b >= 2) {

                rc = pusher_ws_header_start(p, b[0], b[1], msg);
                if (rc != PUSHER_WS_AGAIN) {
                    *pos = b;
                    return rc;
                }

                n = (size_t) (end - b);

                if (n < p->hdr_need) {
                    memcpy(p->hdr, b, n);
                    p->hdr_len = (uint8_t) n;
                    *pos = end;
                    return PUSHER_WS_AGAIN;
                }

                h = b;
                b += p->hdr_need;

            } else {

                while (p->hdr_len < 2) {

                    if (b == end) {
                        *pos = b;
                        return PUSHER_WS_AGAIN;
                    }

                    p->hdr[p->hdr_len++] = *b++;

                    if (p->hdr_len == 2) {
                        rc = pusher_ws_header_start(p, p->hdr[0], p->hdr[1],
                                                    msg);
                        if (rc != PUSHER_WS_AGAIN) {
                            *pos = b;
                            return rc;
                        }
                    }
                }

                n = p->hdr_need - p->hdr_len;

                if (n > (size_t) (end - b)) {
                    n = (size_t) (end - b);
                }

                memcpy(p->hdr + p->hdr_len, b, n);
                p->hdr_len += (uint8_t) n;
                b += n;

                if (p->hdr_len < p->hdr_need) {
                    *pos = b;
                    return PUSHER_WS_AGAIN;
                }

                h = p->hdr;
            }

            rc = pusher_ws_header_end(p, h, msg);
            if (rc != PUSHER_WS_AGAIN) {
                *pos = b;
                return rc;
            }
        }

        /* p->state == PUSHER_WS_STATE_PAYLOAD */

        if (b == end && p->payload_left != 0) {
            /* keeps a payload that starts in the next input zero copy */
            *pos = b;
            return PUSHER_WS_AGAIN;
        }

        if (p->opcode & PUSHER_WS_CONTROL) {
            rc = pusher_ws_control(p, &b, end, msg);

        } else {
            rc = pusher_ws_data(p, &b, end, msg);
        }

        if (rc != PUSHER_WS_AGAIN || p->state != PUSHER_WS_STATE_HEADER) {
            *pos = b;
            return rc;
        }

        /* a non-final data frame ended: on to the next header */
    }
}


static pusher_ws_result_e
pusher_ws_header_start(pusher_ws_parser_t *p, unsigned b0, unsigned b1,
    pusher_ws_msg_t *msg)
{
    unsigned  op, len;

    if (b0 & PUSHER_WS_RSV) {
        return pusher_ws_fail(p, msg, PUSHER_WS_CLOSE_PROTOCOL,
                              "Reserved bits set");
    }

    op = b0 & PUSHER_WS_OPCODE;

    switch (op) {

    case PUSHER_WS_OP_CONT:
    case PUSHER_WS_OP_TEXT:
    case PUSHER_WS_OP_BINARY:
    case PUSHER_WS_OP_CLOSE:
    case PUSHER_WS_OP_PING:
    case PUSHER_WS_OP_PONG:
        break;

    default:
        return pusher_ws_fail(p, msg, PUSHER_WS_CLOSE_PROTOCOL,
                              "Unknown opcode");
    }

    if (!(b1 & PUSHER_WS_MASKED)) {
        return pusher_ws_fail(p, msg, PUSHER_WS_CLOSE_PROTOCOL,
                              "Unmasked frame");
    }

    len = b1 & PUSHER_WS_LEN7;

    if (op & PUSHER_WS_CONTROL) {

        if (!(b0 & PUSHER_WS_FIN)) {
            return pusher_ws_fail(p, msg, PUSHER_WS_CLOSE_PROTOCOL,
                                  "Fragmented control frame");
        }

        if (len > PUSHER_WS_CONTROL_MAX) {
            return pusher_ws_fail(p, msg, PUSHER_WS_CLOSE_PROTOCOL,
                                  "Control frame too long");
        }

    } else if (op == PUSHER_WS_OP_CONT) {

        if (p->msg_opcode == 0) {
            return pusher_ws_fail(p, msg, PUSHER_WS_CLOSE_PROTOCOL,
                                  "Unexpected continuation frame");
        }

    } else if (p->msg_opcode != 0) {
        return pusher_ws_fail(p, msg, PUSHER_WS_CLOSE_PROTOCOL,
                              "Expected continuation frame");
    }

    p->opcode = (uint8_t) op;
    p->fin = (b0 & PUSHER_WS_FIN) ? 1 : 0;

    /* 2 + extended length + 4 mask */
    p->hdr_need = (len == PUSHER_WS_LEN16) ? 8
                  : (len == PUSHER_WS_LEN64) ? 14 : 6;

    return PUSHER_WS_AGAIN;
}


static pusher_ws_result_e
pusher_ws_header_end(pusher_ws_parser_t *p, const uint8_t *h,
    pusher_ws_msg_t *msg)
{
    size_t    i;
    uint64_t  len;

    len = h[1] & PUSHER_WS_LEN7;
    i = 2;

    if (len == PUSHER_WS_LEN16) {
        len = ((uint64_t) h[2] << 8) | h[3];
        i = 4;

    } else if (len == PUSHER_WS_LEN64) {

        if (h[2] & 0x80) {
            return pusher_ws_fail(p, msg, PUSHER_WS_CLOSE_PROTOCOL,
                                  "Invalid frame length");
        }

        len = 0;

        for (i = 2; i < 10; i++) {
            len = (len << 8) | h[i];
        }
    }

    /* p->msg_len <= max_message: the sum of the frames seen so far */

    if (!(p->opcode & PUSHER_WS_CONTROL)
        && len > p->max_message - p->msg_len)
    {
        return pusher_ws_fail(p, msg, PUSHER_WS_CLOSE_TOO_BIG,
                              "Message too big");
    }

    memcpy(p->mask, &h[i], 4);

    p->payload_left = len;
    p->mask_pos = 0;
    p->control_len = 0;
    p->hdr_len = 0;
    p->state = PUSHER_WS_STATE_PAYLOAD;

    return PUSHER_WS_AGAIN;
}


static pusher_ws_result_e
pusher_ws_data(pusher_ws_parser_t *p, uint8_t **pos, uint8_t *end,
    pusher_ws_msg_t *msg)
{
    size_t    n;
    uint8_t  *b;

    b = *pos;
    n = (size_t) (end - b);

    if (p->msg_opcode == 0) {

        /* the first frame of a message, TEXT or BINARY */

        if (p->fin && p->payload_left <= n) {

            /* zero copy: the whole payload is in the caller's buffer */

            n = (size_t) p->payload_left;

            pusher_ws_mask(b, n, p->mask, 0);

            if (p->opcode == PUSHER_WS_OP_TEXT
                && pusher_utf8_validate(PUSHER_UTF8_ACCEPT, b, n)
                   != PUSHER_UTF8_ACCEPT)
            {
                return pusher_ws_fail(p, msg, PUSHER_WS_CLOSE_INVALID_DATA,
                                      "Invalid UTF-8");
            }

            p->payload_left = 0;
            p->state = PUSHER_WS_STATE_HEADER;

            msg->data = b;
            msg->len = n;
            msg->opcode = p->opcode;

            *pos = b + n;

            return PUSHER_WS_MESSAGE;
        }

        p->msg_opcode = p->opcode;
        p->utf8_state = PUSHER_UTF8_ACCEPT;
    }

    /* header checks made msg_len + payload_left <= max_message */

    if (p->payload_left > p->msg_cap - p->msg_len
        && pusher_ws_reserve(p, p->msg_len + (size_t) p->payload_left,
                             p->fin)
           != 0)
    {
        return pusher_ws_fail(p, msg, PUSHER_WS_CLOSE_INTERNAL,
                              "Out of memory");
    }

    if (n > p->payload_left) {
        n = (size_t) p->payload_left;
    }

    if (n) {
        pusher_ws_mask(b, n, p->mask, p->mask_pos);
        p->mask_pos = (uint8_t) ((p->mask_pos + n) & 3);

        /* validated per chunk to fail fast, before the message ends */

        if (p->msg_opcode == PUSHER_WS_OP_TEXT) {
            p->utf8_state = pusher_utf8_validate(p->utf8_state, b, n);

            if (p->utf8_state == PUSHER_UTF8_REJECT) {
                return pusher_ws_fail(p, msg, PUSHER_WS_CLOSE_INVALID_DATA,
                                      "Invalid UTF-8");
            }
        }

        memcpy(p->msg + p->msg_len, b, n);

        p->msg_len += n;
        p->payload_left -= n;
        b += n;
    }

    *pos = b;

    if (p->payload_left) {
        return PUSHER_WS_AGAIN;
    }

    p->state = PUSHER_WS_STATE_HEADER;

    if (!p->fin) {
        return PUSHER_WS_AGAIN;
    }

    if (p->msg_opcode == PUSHER_WS_OP_TEXT
        && p->utf8_state != PUSHER_UTF8_ACCEPT)
    {
        return pusher_ws_fail(p, msg, PUSHER_WS_CLOSE_INVALID_DATA,
                              "Invalid UTF-8");
    }

    /* an empty message may have no buffer: point at the input instead */

    msg->data = p->msg ? p->msg : b;
    msg->len = p->msg_len;
    msg->opcode = p->msg_opcode;

    p->msg_opcode = 0;
    p->state |= PUSHER_WS_STATE_RELEASE;

    return PUSHER_WS_MESSAGE;
}


static pusher_ws_result_e
pusher_ws_control(pusher_ws_parser_t *p, uint8_t **pos, uint8_t *end,
    pusher_ws_msg_t *msg)
{
    size_t    n;
    uint8_t  *b;

    b = *pos;
    n = (size_t) (end - b);

    if (p->control_len == 0 && p->payload_left <= n) {
        n = (size_t) p->payload_left;

        pusher_ws_mask(b, n, p->mask, 0);

        p->payload_left = 0;
        *pos = b + n;

        return pusher_ws_control_end(p, b, n, msg);
    }

    /* split control frame: payload_left + control_len <= 125 */

    if (n > p->payload_left) {
        n = (size_t) p->payload_left;
    }

    pusher_ws_mask(b, n, p->mask, p->control_len);
    memcpy(p->control + p->control_len, b, n);

    p->control_len += (uint8_t) n;
    p->payload_left -= n;
    *pos = b + n;

    if (p->payload_left) {
        return PUSHER_WS_AGAIN;
    }

    return pusher_ws_control_end(p, p->control, p->control_len, msg);
}


static pusher_ws_result_e
pusher_ws_control_end(pusher_ws_parser_t *p, uint8_t *data, size_t len,
    pusher_ws_msg_t *msg)
{
    unsigned  code;

    p->state = PUSHER_WS_STATE_HEADER;

    msg->opcode = p->opcode;
    msg->data = data;
    msg->len = len;

    switch (p->opcode) {

    case PUSHER_WS_OP_PING:
        return PUSHER_WS_PING;

    case PUSHER_WS_OP_PONG:
        return PUSHER_WS_PONG;

    default: /* PUSHER_WS_OP_CLOSE */
        break;
    }

    if (len == 0) {
        code = PUSHER_WS_CLOSE_NO_STATUS;

    } else if (len == 1) {
        return pusher_ws_fail(p, msg, PUSHER_WS_CLOSE_PROTOCOL,
                              "Invalid close frame");

    } else {
        code = ((unsigned) data[0] << 8) | data[1];

        if (!pusher_ws_close_code_valid(code)) {
            return pusher_ws_fail(p, msg, PUSHER_WS_CLOSE_PROTOCOL,
                                  "Invalid close code");
        }

        if (pusher_utf8_validate(PUSHER_UTF8_ACCEPT, data + 2, len - 2)
            != PUSHER_UTF8_ACCEPT)
        {
            return pusher_ws_fail(p, msg, PUSHER_WS_CLOSE_INVALID_DATA,
                                  "Invalid UTF-8");
        }

        msg->data = data + 2;
        msg->len = len - 2;
    }

    msg->close_code = code;

    /* a close may interrupt a fragmented message: drop it now */

    pusher_ws_release(p);
    p->msg_opcode = 0;
    p->state = PUSHER_WS_STATE_CLOSED;

    return PUSHER_WS_CLOSE;
}


/*
 * Makes room for size bytes of message.  The last frame of a message knows
 * the final size (exact); earlier fragments double the buffer, never past
 * max_message.
 */

static int
pusher_ws_reserve(pusher_ws_parser_t *p, size_t size, int exact)
{
    size_t    cap;
    uint8_t  *buf;

    cap = size;

    if (!exact) {
        cap = p->msg_cap * 2;

        if (cap < PUSHER_WS_MSG_MIN_ALLOC) {
            cap = PUSHER_WS_MSG_MIN_ALLOC;
        }

        if (cap > p->max_message) {
            cap = p->max_message;
        }

        if (cap < size) {
            cap = size;
        }
    }

    buf = p->alloc(cap, p->alloc_ctx);
    if (buf == NULL) {
        return -1;
    }

    if (p->msg != NULL) {
        memcpy(buf, p->msg, p->msg_len);
        p->free(p->msg, p->alloc_ctx);
    }

    p->msg = buf;
    p->msg_cap = cap;

    return 0;
}


static void
pusher_ws_release(pusher_ws_parser_t *p)
{
    if (p->msg != NULL) {
        p->free(p->msg, p->alloc_ctx);
        p->msg = NULL;
    }

    p->msg_len = 0;
    p->msg_cap = 0;
}


static pusher_ws_result_e
pusher_ws_fail(pusher_ws_parser_t *p, pusher_ws_msg_t *msg, unsigned code,
    const char *reason)
{
    pusher_ws_release(p);

    p->msg_opcode = 0;
    p->hdr_len = 0;
    p->payload_left = 0;
    p->state = PUSHER_WS_STATE_CLOSED;

    msg->data = NULL;
    msg->len = 0;
    msg->opcode = 0;
    msg->close_code = code;
    msg->reason = reason;

    return PUSHER_WS_ERROR;
}


static void *
pusher_ws_malloc(size_t size, void *ctx)
{
    (void) ctx;

    return malloc(size);
}


static void
pusher_ws_mfree(void *p, void *ctx)
{
    (void) ctx;

    free(p);
}


size_t
pusher_ws_frame_header_size(uint64_t len)
{
    return (len < PUSHER_WS_LEN16) ? 2 : (len <= 0xffff) ? 4 : 10;
}


size_t
pusher_ws_frame_header(uint8_t *out, unsigned opcode, uint64_t len)
{
    size_t  i;

    out[0] = (uint8_t) (PUSHER_WS_FIN | (opcode & PUSHER_WS_OPCODE));

    if (len < PUSHER_WS_LEN16) {
        out[1] = (uint8_t) len;
        return 2;
    }

    if (len <= 0xffff) {
        out[1] = PUSHER_WS_LEN16;
        out[2] = (uint8_t) (len >> 8);
        out[3] = (uint8_t) len;
        return 4;
    }

    out[1] = PUSHER_WS_LEN64;

    for (i = 0; i < 8; i++) {
        out[2 + i] = (uint8_t) (len >> (56 - 8 * i));
    }

    return 10;
}


size_t
pusher_ws_close_frame(uint8_t *out, unsigned code, const char *reason,
    size_t reason_len)
{
    out[0] = PUSHER_WS_FIN | PUSHER_WS_OP_CLOSE;

    if (code == 0) {
        /* no status code, hence no reason either */
        out[1] = 0;
        return 2;
    }

    if (reason_len > PUSHER_WS_REASON_MAX) {
        reason_len = PUSHER_WS_REASON_MAX;

        /* do not cut a UTF-8 sequence: drop the whole of a cut one */

        while (reason_len
               && ((uint8_t) reason[reason_len] & 0xc0) == 0x80)
        {
            reason_len--;
        }
    }

    out[1] = (uint8_t) (2 + reason_len);
    out[2] = (uint8_t) (code >> 8);
    out[3] = (uint8_t) code;

    if (reason_len) {
        memcpy(out + 4, reason, reason_len);
    }

    return 4 + reason_len;
}


size_t
pusher_ws_client_frame_header(uint8_t *out, unsigned opcode, int fin,
    uint64_t len, const uint8_t mask[4])
{
    size_t  n;

    n = pusher_ws_frame_header(out, opcode, len);

    if (!fin) {
        out[0] &= (uint8_t) ~PUSHER_WS_FIN;
    }

    out[1] |= PUSHER_WS_MASKED;
    memcpy(out + n, mask, 4);

    return n + 4;
}


void
pusher_ws_mask(uint8_t *data, size_t len, const uint8_t mask[4],
    size_t offset)
{
    size_t    i;
    uint8_t   m[8];
    uint64_t  w, m64;

    /* bytes up to 8 byte alignment, so that the words below are aligned */

    while (len && ((uintptr_t) data & 7)) {
        *data++ ^= mask[offset++ & 3];
        len--;
    }

    if (len >= 8) {

        for (i = 0; i < 8; i++) {
            m[i] = mask[(offset + i) & 3];
        }

        memcpy(&m64, m, 8);

        /* a word is 8 bytes, so offset & 3 is the same after each */

        do {
            memcpy(&w, data, 8);
            w ^= m64;
            memcpy(data, &w, 8);

            data += 8;
            len -= 8;

        } while (len >= 8);
    }

    while (len) {
        *data++ ^= mask[offset++ & 3];
        len--;
    }
}


int
pusher_ws_close_code_valid(unsigned code)
{
    /* RFC 6455 7.4.1 and 7.4.2: 1004-1006 and 1015 are never sent */

    return (code >= 1000 && code <= 1003)
           || (code >= 1007 && code <= 1011)
           || (code >= 3000 && code <= 4999);
}


uint32_t
pusher_utf8_validate(uint32_t state, const uint8_t *p, size_t len)
{
    uint64_t        w;
    const uint8_t  *last;

    if (state >= PUSHER_UTF8_STATES) {
        return PUSHER_UTF8_REJECT;
    }

    if (len == 0) {
        return state;
    }

    last = p + len;

    while (p < last) {

        if (state == PUSHER_UTF8_ACCEPT) {

            /* between code points: skip ASCII, 8 bytes at a time */

            while (last - p >= 8) {
                memcpy(&w, p, 8);

                if (w & PUSHER_UTF8_HIGH_BITS) {
                    break;
                }

                p += 8;
            }

            while (p < last && *p < 0x80) {
                p++;
            }

            if (p == last) {
                break;
            }
        }

        state = pusher_utf8_next[state][pusher_utf8_class[*p++]];

        if (state == PUSHER_UTF8_REJECT) {
            break;
        }
    }

    return state;
}


void
pusher_ws_accept_key(const uint8_t *key, size_t key_len, char out[29])
{
    uint8_t      md[SHA_DIGEST_LENGTH];
    uint8_t      buf[PUSHER_WS_KEY_STACK_MAX + PUSHER_WS_GUID_LEN];
    EVP_MD_CTX  *ctx;

    if (key_len <= PUSHER_WS_KEY_STACK_MAX) {
        memcpy(buf, key, key_len);
        memcpy(buf + key_len, PUSHER_WS_GUID, PUSHER_WS_GUID_LEN);

        SHA1(buf, key_len + PUSHER_WS_GUID_LEN, md);

    } else {
        /* not a valid key (pusher_ws_key_valid), hashed all the same */

        memset(md, 0, sizeof(md));

        ctx = EVP_MD_CTX_new();

        if (ctx != NULL) {
            if (EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) != 1
                || EVP_DigestUpdate(ctx, key, key_len) != 1
                || EVP_DigestUpdate(ctx, PUSHER_WS_GUID, PUSHER_WS_GUID_LEN)
                   != 1
                || EVP_DigestFinal_ex(ctx, md, NULL) != 1)
            {
                memset(md, 0, sizeof(md));
            }

            EVP_MD_CTX_free(ctx);
        }
    }

    /* 20 bytes are 28 base64 characters, and EVP_EncodeBlock adds a NUL */

    EVP_EncodeBlock((unsigned char *) out, md, SHA_DIGEST_LENGTH);
}


int
pusher_ws_key_valid(const uint8_t *key, size_t len)
{
    size_t   i;
    uint8_t  c;

    if (len != PUSHER_WS_KEY_LEN || key[22] != '=' || key[23] != '=') {
        return 0;
    }

    for (i = 0; i < 22; i++) {
        c = key[i];

        if (!((c >= 'A' && c <= 'Z')
              || (c >= 'a' && c <= 'z')
              || (c >= '0' && c <= '9')
              || c == '+' || c == '/'))
        {
            return 0;
        }
    }

    return 1;
}


size_t
pusher_utf8_prefix(const uint8_t *p, size_t len, size_t max)
{
    size_t  n;

    if (len <= max) {
        return len;
    }

    /* back over the continuation bytes (10xxxxxx) of a cut character */
    n = max;

    while (n > 0 && (p[n] & 0xc0) == 0x80) {
        n--;
    }

    return n;
}
