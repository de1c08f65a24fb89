/*
 * ngx-pusher: RFC 6455 WebSocket codec, server side.  No I/O.
 *
 * pusher_ws_parse() consumes bytes as they arrive, split anywhere, and
 * returns one event at a time: a complete data message (fragments joined,
 * UTF-8 checked for text), a ping, a pong, a close, or a protocol error
 * carrying the close code to send.  Payloads are unmasked in place.
 *
 * A message that arrives whole in one input buffer is returned as a pointer
 * into that buffer (no copy).  Otherwise it is assembled in a buffer the
 * parser allocates with the caller's allocator, never larger than
 * max_message, and freed by the parser on the next call or by
 * pusher_ws_parser_free().  An idle parser holds no heap memory.
 */

#ifndef PUSHER_WS_H
#define PUSHER_WS_H


#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif


#define PUSHER_WS_OP_CONT            0x0
#define PUSHER_WS_OP_TEXT            0x1
#define PUSHER_WS_OP_BINARY          0x2
#define PUSHER_WS_OP_CLOSE           0x8
#define PUSHER_WS_OP_PING            0x9
#define PUSHER_WS_OP_PONG            0xa

#define PUSHER_WS_CLOSE_NORMAL       1000
#define PUSHER_WS_CLOSE_GOING_AWAY   1001
#define PUSHER_WS_CLOSE_PROTOCOL     1002
#define PUSHER_WS_CLOSE_UNSUPPORTED  1003
#define PUSHER_WS_CLOSE_NO_STATUS    1005   /* never sent on the wire */
#define PUSHER_WS_CLOSE_ABNORMAL     1006   /* never sent on the wire */
#define PUSHER_WS_CLOSE_INVALID_DATA 1007
#define PUSHER_WS_CLOSE_POLICY       1008
#define PUSHER_WS_CLOSE_TOO_BIG      1009
#define PUSHER_WS_CLOSE_INTERNAL     1011

#define PUSHER_WS_CONTROL_MAX        125
#define PUSHER_WS_HEADER_MAX         14     /* 2 + 8 length + 4 mask */

/* Reverb's default max_message_size */
#define PUSHER_WS_DEFAULT_MAX_MESSAGE  10000


/* pusher_ws_parse() results */
typedef enum {
    PUSHER_WS_AGAIN = 0,      /* input consumed, need more */
    PUSHER_WS_MESSAGE,        /* data message: msg->opcode TEXT or BINARY */
    PUSHER_WS_PING,
    PUSHER_WS_PONG,
    PUSHER_WS_CLOSE,          /* peer close: msg->close_code (1005 if none) */
    PUSHER_WS_ERROR           /* msg->close_code to send, msg->reason */
} pusher_ws_result_e;


typedef struct {
    const uint8_t   *data;          /* payload (unmasked) */
    size_t           len;
    unsigned         opcode;
    unsigned         close_code;
    const char      *reason;        /* PUSHER_WS_ERROR: static text */
} pusher_ws_msg_t;


typedef void *(*pusher_ws_alloc_pt)(size_t size, void *ctx);
typedef void (*pusher_ws_free_pt)(void *p, void *ctx);


typedef struct {
    /* configuration, set by the caller */
    size_t              max_message;
    pusher_ws_alloc_pt  alloc;
    pusher_ws_free_pt   free;
    void               *alloc_ctx;

    /* state, private */
    uint8_t            *msg;            /* assembly buffer or NULL */
    size_t              msg_len;
    size_t              msg_cap;
    uint64_t            payload_left;   /* of the current frame */
    uint32_t            utf8_state;
    uint32_t            utf8_codepoint;
    uint8_t             state;
    uint8_t             hdr_len;        /* bytes of hdr[] filled */
    uint8_t             hdr_need;
    uint8_t             opcode;         /* of the current frame */
    uint8_t             msg_opcode;     /* of the message being assembled */
    uint8_t             fin;
    uint8_t             mask_pos;
    uint8_t             control_len;
    uint8_t             hdr[PUSHER_WS_HEADER_MAX];
    uint8_t             mask[4];
    uint8_t             control[PUSHER_WS_CONTROL_MAX];
} pusher_ws_parser_t;


/* zero the state; max_message == 0 means PUSHER_WS_DEFAULT_MAX_MESSAGE */
void pusher_ws_parser_init(pusher_ws_parser_t *p, size_t max_message,
    pusher_ws_alloc_pt alloc, pusher_ws_free_pt free, void *alloc_ctx);

/* release the assembly buffer, if any */
void pusher_ws_parser_free(pusher_ws_parser_t *p);

/*
 * Consume input from *pos up to end.  Returns an event and advances *pos
 * past the bytes it used; call again with the rest of the input until it
 * returns PUSHER_WS_AGAIN.  After PUSHER_WS_ERROR or PUSHER_WS_CLOSE the
 * parser must not be fed again.  msg->data stays valid until the next call.
 */
pusher_ws_result_e pusher_ws_parse(pusher_ws_parser_t *p, uint8_t **pos,
    uint8_t *end, pusher_ws_msg_t *msg);

/* 1 if the parser holds a partial frame or message (for idle checks) */
int pusher_ws_parser_busy(const pusher_ws_parser_t *p);


/*
 * Encoding, server to client (unmasked, FIN set).  Returns header bytes
 * written: 2, 4 or 10.  out must have room for 10.
 */
size_t pusher_ws_frame_header(uint8_t *out, unsigned opcode, uint64_t len);

/* header size for a payload of len bytes */
size_t pusher_ws_frame_header_size(uint64_t len);

/*
 * A complete close frame with code and reason (reason truncated to fit the
 * 125 byte control limit).  out must have room for 2 + 125.  Returns bytes.
 */
size_t pusher_ws_close_frame(uint8_t *out, unsigned code, const char *reason,
    size_t reason_len);

/*
 * Client side (tests and benchmark tools): masked frame header.  out must
 * have room for 14; payload must then be masked with pusher_ws_mask().
 */
size_t pusher_ws_client_frame_header(uint8_t *out, unsigned opcode, int fin,
    uint64_t len, const uint8_t mask[4]);
void pusher_ws_mask(uint8_t *data, size_t len, const uint8_t mask[4],
    size_t offset);

/* 1 if a close code may be received in a close frame (RFC 6455 7.4) */
int pusher_ws_close_code_valid(unsigned code);

/*
 * Incremental UTF-8 validation.  state starts at 0; returns the new state,
 * PUSHER_UTF8_REJECT on invalid input; a message is valid if the final
 * state is PUSHER_UTF8_ACCEPT (0).
 */
#define PUSHER_UTF8_ACCEPT  0
#define PUSHER_UTF8_REJECT  1
uint32_t pusher_utf8_validate(uint32_t state, const uint8_t *p, size_t len);

/*
 * The length of the longest prefix of the valid UTF-8 text p (len bytes)
 * that has at most max bytes and does not end inside a character: where
 * a text quoted back in an error may be cut.
 */
size_t pusher_utf8_prefix(const uint8_t *p, size_t len, size_t max);

/*
 * Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + GUID)).
 * out receives 28 characters and a NUL.
 */
void pusher_ws_accept_key(const uint8_t *key, size_t key_len, char out[29]);

/* 1 if key is base64 of exactly 16 bytes (RFC 6455 4.2.1) */
int pusher_ws_key_valid(const uint8_t *key, size_t len);


#ifdef __cplusplus
}
#endif

#endif /* PUSHER_WS_H */
