/*
 * ngx-pusher: libFuzzer target for the ring: the PUSHER_RING_EVENT record
 * codec (common/pusher_proto.c) and the reader (common/pusher_ring.c), as
 * a worker meets what a broken or hostile broker left in shared memory.
 *
 * Input: the first byte picks one of three checks, the rest is its input.
 *
 * 0  a record of arbitrary bytes for pusher_ring_event_decode(), from an
 *    exact-size heap copy.  It is accepted exactly when a plain model of
 *    the layout in pusher_shm.h accepts it; an accepted record's app id,
 *    socket id, channels, prefix and suffix tile it exactly, each channel
 *    walked with pusher_ring_event_channel() is 1 .. 200 bytes inside it,
 *    and the frame of every channel has exactly
 *    pusher_ring_event_frame_size() bytes: a FIN text frame header, then
 *    prefix, channel (not for a whole record) and suffix.  A whole record
 *    encoded again by pusher_ring_event_encode_json() is the same bytes.
 *
 * 1  fields for the encoders: app id, socket id, channels, event name and
 *    data (lengths in single bytes, so that empty and too long ones come
 *    up).  pusher_ring_event_encode() writes exactly the size
 *    pusher_ring_event_size() announces into an exact-size buffer, or
 *    nothing and returns 0 when a length is out of bounds; the record
 *    decodes to the same fields, and each channel's frame carries exactly
 *    pusher_event_json() of name, channel and data.  The same for
 *    pusher_ring_event_encode_json() and its JSON.  One byte less or more
 *    and the record is refused.
 *
 * 2  a script run on a 64 KiB ring whose buffer is exactly its capacity:
 *    writes (pusher_ring_write()), reads (pusher_ring_read() into a buffer
 *    of exactly max_record bytes), reader (re)starts, and, as a hostile
 *    broker would, byte flips in the buffer and stores of any value into
 *    the descriptor.  Every read returns OK, EMPTY or LAPPED, reads only
 *    inside the ring (ASan), moves the cursor as pusher_ring.h says, and
 *    copies out exactly the payload of the record it reports.  Until the
 *    first flip or store, each read gives exactly what a model of the
 *    writer predicts: the next record, EMPTY at the tail, LAPPED to latest
 *    when overwritten.  Records read are taken apart as a worker does:
 *    events decoded (as in 0), ring answers split into their fields.
 *
 *   clang -fsanitize=fuzzer,address,undefined -Icommon \
 *       tests/fuzz/fuzz_ring.c common/pusher_ring.c common/pusher_proto.c \
 *       common/pusher_ws.c -lcjson -lcrypto
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pusher_ctl.h"
#include "pusher_proto.h"
#include "pusher_ring.h"
#include "pusher_ws.h"
#include "fuzz_check.h"


#define FUZZ_CAPACITY      PUSHER_RING_MIN_CAPACITY
#define FUZZ_MAX_RECORD    (FUZZ_CAPACITY / 8)
#define FUZZ_RECORDS_MAX   8192
#define FUZZ_CHANNELS_MAX  256


typedef struct {
    const uint8_t  *pos;
    const uint8_t  *end;
} fuzz_in_t;


/* a record the model's writer wrote */
typedef struct {
    uint64_t        claimed;     /* the tail before it: padding starts here */
    uint64_t        start;       /* the record's header */
    uint64_t        next;        /* the tail after it */
    int32_t         type;
    uint32_t        len;
    uint64_t        hash;
} fuzz_record_t;


typedef struct {
    pusher_ring_t          ring;
    pusher_ring_reader_t   reader;
    pusher_ring_desc_t    *desc;
    pusher_shm_wake_t     *wake;
    uint8_t               *buffer;
    uint8_t               *buf;
    uint8_t               *payload;
    fuzz_record_t         *records;
    size_t                 nrecords;
    uint64_t               start;    /* the writer's tail when we came */
    int                    exact;    /* no flip or store yet */
    int                    stored;   /* the descriptor was written to */
} fuzz_ring_t;


/* the model's records: too big for every run to allocate */
static fuzz_record_t  fuzz_records[FUZZ_RECORDS_MAX];


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static unsigned
fuzz_byte(fuzz_in_t *in)
{
    return in->pos < in->end ? *in->pos++ : 0;
}


static uint64_t
fuzz_uint(fuzz_in_t *in, size_t n)
{
    size_t    i;
    uint64_t  v;

    v = 0;

    for (i = 0; i < n; i++) {
        v |= (uint64_t) fuzz_byte(in) << (8 * i);
    }

    return v;
}


/* up to n bytes of input; the string's length is what there was */
static void
fuzz_take(fuzz_in_t *in, size_t n, pusher_str_t *s)
{
    size_t  avail;

    avail = (size_t) (in->end - in->pos);

    s->data = (const char *) in->pos;
    s->len = n < avail ? n : avail;

    in->pos += s->len;
}


/* --- the record codec ------------------------------------------------- */


/* the layout of pusher_shm.h, read byte by byte */
static int
fuzz_decode_model(const uint8_t *rec, size_t len)
{
    size_t    i;
    unsigned  app, sock, nch, flags;
    uint64_t  prefix, suffix, p;

    if (len < sizeof(pusher_ring_event_t)) {
        return -1;
    }

    prefix = rec[0] | rec[1] << 8 | rec[2] << 16 | (uint64_t) rec[3] << 24;
    suffix = rec[4] | rec[5] << 8 | rec[6] << 16 | (uint64_t) rec[7] << 24;
    app = rec[8] | rec[9] << 8;
    nch = rec[10] | rec[11] << 8;
    sock = rec[12];
    flags = rec[13];

    if (app == 0 || app > PUSHER_APP_ID_MAX || sock > PUSHER_SOCKET_ID_MAX
        || nch == 0 || (flags & ~PUSHER_RING_EVENT_WHOLE) != 0
        || ((flags & PUSHER_RING_EVENT_WHOLE) && (nch != 1 || suffix != 0))
        || prefix + suffix > UINT32_MAX - PUSHER_WS_HEADER_MAX
                             - PUSHER_CHANNEL_MAX)
    {
        return -1;
    }

    p = sizeof(pusher_ring_event_t) + app + sock;

    for (i = 0; i < nch; i++) {
        if (p >= len || rec[p] == 0 || rec[p] > PUSHER_CHANNEL_MAX) {
            return -1;
        }

        p += 1 + rec[p];
    }

    return p + prefix + suffix == len ? 0 : -1;
}


/* a frame: FIN text, unmasked, its payload length; returns the header */
static size_t
fuzz_frame_header(const uint8_t *f, size_t size, uint64_t *len)
{
    size_t  i, n;

    FUZZ_CHECK(size >= 2);
    FUZZ_CHECK(f[0] == (0x80 | PUSHER_WS_OP_TEXT));
    FUZZ_CHECK((f[1] & 0x80) == 0);

    n = f[1] & 0x7f;

    if (n < 126) {
        *len = n;
        return 2;
    }

    n = (n == 126) ? 2 : 8;
    FUZZ_CHECK(size >= 2 + n);

    *len = 0;

    for (i = 0; i < n; i++) {
        *len = *len << 8 | f[2 + i];
    }

    /* the shortest form */
    FUZZ_CHECK(n == 2 ? *len >= 126 : *len > 0xffff);

    return 2 + n;
}


/*
 * An accepted record: the view tiles it, the channels walk inside it, and
 * every channel's frame is exactly its announced size.  json (when not
 * NULL) is what each frame must carry, channel by channel.
 */
typedef void (*fuzz_frame_pt)(const pusher_str_t *channel,
    const uint8_t *payload, size_t len, void *ctx);


static void
fuzz_check_view(const uint8_t *rec, size_t len,
    const pusher_ring_event_view_t *v, fuzz_frame_pt each, void *ctx)
{
    size_t          i, size, n, hdr;
    uint8_t        *frame, *p;
    uint64_t        plen;
    pusher_str_t    ch;
    const uint8_t  *pos;

    FUZZ_CHECK((const uint8_t *) v->app_id.data
               == rec + sizeof(pusher_ring_event_t));
    FUZZ_CHECK(v->app_id.len > 0 && v->app_id.len <= PUSHER_APP_ID_MAX);
    FUZZ_CHECK(v->socket_id.data == v->app_id.data + v->app_id.len);
    FUZZ_CHECK(v->socket_id.len <= PUSHER_SOCKET_ID_MAX);
    FUZZ_CHECK(v->channels
               == (const uint8_t *) v->socket_id.data + v->socket_id.len);
    FUZZ_CHECK(v->nchannels > 0
               && v->nchannels <= PUSHER_RING_EVENT_CHANNELS_MAX);
    FUZZ_CHECK(v->suffix == v->prefix + v->prefix_len);
    FUZZ_CHECK(v->suffix + v->suffix_len == rec + len);
    FUZZ_CHECK(!v->whole || (v->nchannels == 1 && v->suffix_len == 0));

    pos = v->channels;

    for (i = 0; i < v->nchannels; i++) {
        FUZZ_CHECK(pos < v->prefix);

        pusher_ring_event_channel(&pos, &ch);

        FUZZ_CHECK(ch.len > 0 && ch.len <= PUSHER_CHANNEL_MAX);
        FUZZ_CHECK((const uint8_t *) ch.data > v->channels
                   && (const uint8_t *) ch.data + ch.len == pos);
        FUZZ_CHECK(pos <= v->prefix);

        size = pusher_ring_event_frame_size(v, ch.len);
        frame = malloc(size);
        FUZZ_CHECK(frame != NULL);

        n = pusher_ring_event_frame(frame, v, &ch);
        FUZZ_CHECK(n == size);

        hdr = fuzz_frame_header(frame, size, &plen);
        FUZZ_CHECK(hdr + plen == size);
        FUZZ_CHECK(plen == v->prefix_len + (v->whole ? 0 : ch.len)
                           + v->suffix_len);

        p = frame + hdr;
        FUZZ_CHECK(v->prefix_len == 0
                   || memcmp(p, v->prefix, v->prefix_len) == 0);
        p += v->prefix_len;

        if (!v->whole) {
            FUZZ_CHECK(memcmp(p, ch.data, ch.len) == 0);
            p += ch.len;
        }

        FUZZ_CHECK(v->suffix_len == 0
                   || memcmp(p, v->suffix, v->suffix_len) == 0);

        if (each != NULL) {
            each(&ch, frame + hdr, (size_t) plen, ctx);
        }

        free(frame);
    }

    FUZZ_CHECK(pos == v->prefix);
}


/* decode from an exact-size copy: -1, or 0 with everything checked */
static int
fuzz_decode(const uint8_t *rec, size_t len, fuzz_frame_pt each, void *ctx)
{
    int                        rc;
    size_t                     n;
    uint8_t                   *copy, *again;
    pusher_str_t               ch;
    const uint8_t             *pos;
    pusher_ring_event_view_t   v;

    copy = malloc(len + !len);
    FUZZ_CHECK(copy != NULL);

    if (len) {
        memcpy(copy, rec, len);
    }

    rc = pusher_ring_event_decode(copy, len, &v);

    FUZZ_CHECK(rc == 0 || rc == -1);
    FUZZ_CHECK(rc == fuzz_decode_model(copy, len));

    if (rc == 0) {
        fuzz_check_view(copy, len, &v, each, ctx);
    }

    if (rc == 0 && v.whole) {
        /* a whole record is what pusher_ring_event_encode_json() writes */
        pos = v.channels;
        pusher_ring_event_channel(&pos, &ch);

        n = pusher_ring_event_size(v.app_id.len, v.socket_id.len, 1, ch.len,
                                   v.prefix_len);
        FUZZ_CHECK(n == len);

        again = malloc(n);
        FUZZ_CHECK(again != NULL);

        FUZZ_CHECK(pusher_ring_event_encode_json(again, &v.app_id, &ch,
                                                 &v.socket_id, v.prefix,
                                                 v.prefix_len)
                   == n);

        /* but for the header's two pad bytes */
        FUZZ_CHECK(memcmp(again, copy, 14) == 0);
        FUZZ_CHECK(memcmp(again + 16, copy + 16, n - 16) == 0);

        free(again);
    }

    free(copy);

    return rc;
}


typedef struct {
    const pusher_str_t  *name;
    const pusher_str_t  *data;
    const pusher_str_t  *channels;
    size_t               n;
    size_t               i;
    int                  whole;
} fuzz_expect_t;


/* each frame of an encoded record carries exactly its event JSON */
static void
fuzz_expect_frame(const pusher_str_t *channel, const uint8_t *payload,
    size_t len, void *ctx)
{
    size_t          n;
    uint8_t        *json;
    fuzz_expect_t  *e = ctx;

    FUZZ_CHECK(e->i < e->n);
    FUZZ_CHECK(fuzz_str_eq(channel, &e->channels[e->i]));
    e->i++;

    if (e->whole) {
        FUZZ_CHECK(len == e->data->len);
        FUZZ_CHECK(len == 0 || memcmp(payload, e->data->data, len) == 0);
        return;
    }

    /* channel names go into the frame unescaped: compare valid ones */
    if (pusher_json_escape(NULL, (const uint8_t *) channel->data,
                           channel->len)
        != channel->len)
    {
        return;
    }

    n = pusher_event_json_size((const uint8_t *) e->name->data, e->name->len,
                               (const uint8_t *) channel->data, channel->len,
                               (const uint8_t *) e->data->data, e->data->len);
    FUZZ_CHECK(n == len);

    json = malloc(n);
    FUZZ_CHECK(json != NULL);

    FUZZ_CHECK(pusher_event_json(json, (const uint8_t *) e->name->data,
                                 e->name->len,
                                 (const uint8_t *) channel->data,
                                 channel->len,
                                 (const uint8_t *) e->data->data,
                                 e->data->len)
               == n);
    FUZZ_CHECK(memcmp(json, payload, n) == 0);

    free(json);
}


/* a record one byte short, and one byte long, is refused */
static void
fuzz_check_exact_len(const uint8_t *rec, size_t len)
{
    uint8_t  *longer;

    FUZZ_CHECK(fuzz_decode(rec, len - 1, NULL, NULL) == -1);

    longer = malloc(len + 1);
    FUZZ_CHECK(longer != NULL);
    memcpy(longer, rec, len);
    longer[len] = '}';

    FUZZ_CHECK(fuzz_decode(longer, len + 1, NULL, NULL) == -1);

    free(longer);
}


static void
fuzz_encode(fuzz_in_t *in)
{
    int             valid;
    size_t          i, n, size, names_len, json_len;
    uint8_t        *out;
    unsigned        app_len, sock_len, nch;
    pusher_str_t    app_id, socket_id, name, data;
    fuzz_expect_t   e;

    static pusher_str_t  channels[FUZZ_CHANNELS_MAX];

    app_len = fuzz_byte(in);
    sock_len = fuzz_byte(in);
    nch = fuzz_byte(in);

    fuzz_take(in, app_len, &app_id);
    fuzz_take(in, sock_len, &socket_id);

    valid = 1;
    names_len = 0;

    for (i = 0; i < nch; i++) {
        fuzz_take(in, fuzz_byte(in), &channels[i]);

        names_len += channels[i].len;
        valid = valid && channels[i].len > 0
                && channels[i].len <= PUSHER_CHANNEL_MAX;
    }

    fuzz_take(in, fuzz_byte(in), &name);
    fuzz_take(in, (size_t) (in->end - in->pos), &data);

    /* an HTTP API event for every channel */
    json_len = pusher_event_json_size((const uint8_t *) name.data, name.len,
                                      (const uint8_t *) "", 0,
                                      (const uint8_t *) data.data, data.len);

    size = pusher_ring_event_size(app_id.len, socket_id.len, nch, names_len,
                                  json_len);

    out = malloc(size + !size);
    FUZZ_CHECK(out != NULL);

    n = pusher_ring_event_encode(out, &app_id, &socket_id, channels, nch,
                                 (const uint8_t *) name.data, name.len,
                                 (const uint8_t *) data.data, data.len);

    FUZZ_CHECK(n == (valid ? size : 0));

    if (n > 0) {
        e.name = &name;
        e.data = &data;
        e.channels = channels;
        e.n = nch;
        e.i = 0;
        e.whole = 0;

        FUZZ_CHECK(fuzz_decode(out, n, fuzz_expect_frame, &e) == 0);
        FUZZ_CHECK(e.i == nch);

        fuzz_check_exact_len(out, n);
    }

    free(out);

    /* one channel, the data as the JSON */
    if (nch == 0) {
        return;
    }

    size = pusher_ring_event_size(app_id.len, socket_id.len, 1,
                                  channels[0].len, data.len);

    out = malloc(size + !size);
    FUZZ_CHECK(out != NULL);

    n = pusher_ring_event_encode_json(out, &app_id, &channels[0], &socket_id,
                                      (const uint8_t *) data.data, data.len);

    FUZZ_CHECK(n == size);

    if (n > 0) {
        e.name = &name;
        e.data = &data;
        e.channels = channels;
        e.n = 1;
        e.i = 0;
        e.whole = 1;

        FUZZ_CHECK(fuzz_decode(out, n, fuzz_expect_frame, &e) == 0);
        FUZZ_CHECK(e.i == 1);

        fuzz_check_exact_len(out, n);
    }

    free(out);
}


/* --- the reader ------------------------------------------------------- */


/* a record read: taken apart as the worker does */
static void
fuzz_consume(int32_t type, const uint8_t *payload, uint32_t len)
{
    size_t          i, nf;
    uint32_t        n;
    const uint8_t  *pos, *end, *before, *f;

    switch (type) {

    case PUSHER_RING_EVENT:
        (void) fuzz_decode(payload, len, NULL, NULL);
        return;

    case PUSHER_RING_PRESENCE_JOINED:
        nf = 5;
        break;

    case PUSHER_RING_CACHE:
        nf = 3;
        break;

    case PUSHER_RING_TERMINATE:
        nf = 2;
        break;

    default:
        return;
    }

    pos = payload;
    end = payload + len;

    for (i = 0; i < nf; i++) {
        before = pos;

        if (pusher_ctl_get(&pos, end, &f, &n) != 0) {
            FUZZ_CHECK(pos == before);
            return;
        }

        FUZZ_CHECK(f == before + sizeof(uint32_t) && pos == f + n);
        FUZZ_CHECK(pos <= end);
    }
}


static fuzz_record_t *
fuzz_record_at(fuzz_ring_t *t, uint64_t cursor)
{
    size_t  i;

    for (i = t->nrecords; i > 0; i--) {
        if (t->records[i - 1].claimed == cursor
            || t->records[i - 1].start == cursor)
        {
            return &t->records[i - 1];
        }
    }

    return NULL;
}


static void
fuzz_write(fuzz_ring_t *t, fuzz_in_t *in)
{
    int              rc;
    size_t           i;
    int32_t          type;
    uint32_t         len;
    uint64_t         tail, next;
    pusher_str_t     given;
    fuzz_record_t   *r;

    /*
     * The broker keeps its tail in the descriptor: once the fuzzer wrote
     * there, the writer is the hostile party and writes no more.
     */
    if (t->stored) {
        return;
    }

    type = (int8_t) fuzz_byte(in);
    len = (uint32_t) (fuzz_uint(in, 2) % (FUZZ_MAX_RECORD + 16));

    /* the payload: input bytes, then a pattern */
    fuzz_take(in, len, &given);

    if (given.len) {
        memcpy(t->payload, given.data, given.len);
    }

    for (i = given.len; i < len && i < FUZZ_MAX_RECORD; i++) {
        t->payload[i] = (uint8_t) (i * 31 + len);
    }

    tail = pusher_ring_tail(&t->ring);
    next = pusher_ring_next_tail(&t->ring, tail, len);

    rc = pusher_ring_write(&t->ring, type, t->payload, len);

    if (type == PUSHER_RING_PADDING
        || len > FUZZ_MAX_RECORD - PUSHER_RING_RECORD_HEADER)
    {
        FUZZ_CHECK(rc == -1);
        FUZZ_CHECK(pusher_ring_tail(&t->ring) == tail);
        return;
    }

    FUZZ_CHECK(rc == 0);

    if (!t->exact) {
        return;
    }

    FUZZ_CHECK(pusher_ring_tail(&t->ring) == next);
    FUZZ_CHECK(t->desc->tail_intent == next);
    FUZZ_CHECK(t->desc->latest == next - PUSHER_RING_ALIGN(len + 8));

    if (t->nrecords == FUZZ_RECORDS_MAX) {
        t->exact = 0;
        return;
    }

    r = &t->records[t->nrecords++];
    r->claimed = tail;
    r->start = t->desc->latest;
    r->next = next;
    r->type = type;
    r->len = len;
    r->hash = fuzz_hash(t->payload, len);
}


static void
fuzz_read(fuzz_ring_t *t)
{
    int                    rc;
    int32_t                type;
    uint32_t               len;
    uint64_t               cursor, tail, tail_intent, latest, lapped;
    uint64_t               received, off, at;
    fuzz_record_t         *r;
    pusher_ring_record_t   h;

    cursor = t->reader.cursor;
    lapped = t->reader.lapped;
    received = t->reader.received;

    /* single-threaded: the descriptor holds still during the read */
    tail = t->desc->tail;
    tail_intent = t->desc->tail_intent;
    latest = t->desc->latest;

    FUZZ_CHECK(pusher_ring_caught_up(&t->reader, &t->ring)
               == (cursor >= tail));

    type = 0x7eadbeef;
    len = 0xffffffff;

    rc = pusher_ring_read(&t->reader, &t->ring, t->buf, &type, &len);

    FUZZ_CHECK(rc == PUSHER_RING_OK || rc == PUSHER_RING_EMPTY
               || rc == PUSHER_RING_LAPPED);

    switch (rc) {

    case PUSHER_RING_EMPTY:
        FUZZ_CHECK(cursor >= tail);
        FUZZ_CHECK(t->reader.cursor == cursor);
        FUZZ_CHECK(t->reader.lapped == lapped);
        FUZZ_CHECK(t->reader.received == received);
        break;

    case PUSHER_RING_LAPPED:
        FUZZ_CHECK(cursor < tail);
        FUZZ_CHECK(t->reader.lapped == lapped + 1);
        FUZZ_CHECK(t->reader.received == received);
        FUZZ_CHECK(t->reader.cursor == latest || t->reader.cursor == tail);
        break;

    default:
        FUZZ_CHECK(cursor < tail);
        FUZZ_CHECK(cursor + FUZZ_CAPACITY > tail_intent);
        FUZZ_CHECK(type != PUSHER_RING_PADDING);
        FUZZ_CHECK(len <= FUZZ_MAX_RECORD - PUSHER_RING_RECORD_HEADER);
        FUZZ_CHECK(t->reader.cursor > cursor && t->reader.cursor <= tail);
        FUZZ_CHECK(t->reader.lapped == lapped);
        FUZZ_CHECK(t->reader.received == received + 1);

        /* the payload is the bytes after the header it read */
        off = cursor & (FUZZ_CAPACITY - 1);
        FUZZ_CHECK(off + PUSHER_RING_RECORD_HEADER <= FUZZ_CAPACITY);

        memcpy(&h, t->buffer + off, sizeof(h));
        at = (h.type == PUSHER_RING_PADDING) ? 0 : off;

        FUZZ_CHECK(at + PUSHER_RING_RECORD_HEADER + len <= FUZZ_CAPACITY);
        FUZZ_CHECK(len == 0
                   || memcmp(t->buf,
                             t->buffer + at + PUSHER_RING_RECORD_HEADER, len)
                      == 0);

        fuzz_consume(type, t->buf, len);
        break;
    }

    if (!t->exact) {
        return;
    }

    /* what the writer's model predicts */
    if (cursor >= tail) {
        FUZZ_CHECK(rc == PUSHER_RING_EMPTY);
        return;
    }

    if (cursor + FUZZ_CAPACITY <= tail_intent) {
        FUZZ_CHECK(rc == PUSHER_RING_LAPPED);
        FUZZ_CHECK(t->reader.cursor == latest);
        return;
    }

    r = fuzz_record_at(t, cursor);
    FUZZ_CHECK(r != NULL);

    FUZZ_CHECK(rc == PUSHER_RING_OK);
    FUZZ_CHECK(type == r->type && len == r->len);
    FUZZ_CHECK(fuzz_hash(t->buf, len) == r->hash);
    FUZZ_CHECK(t->reader.cursor == r->next);
}


static void
fuzz_reader_start(fuzz_ring_t *t, fuzz_in_t *in)
{
    int  from_start;

    from_start = fuzz_byte(in) & 1;

    pusher_ring_reader_init(&t->reader, &t->ring, from_start);

    FUZZ_CHECK(t->reader.cursor == (from_start ? 0 : t->desc->tail));
    FUZZ_CHECK(t->reader.lapped == 0 && t->reader.received == 0);

    /* position 0 of a ring the model started further on is not a record */
    if (from_start && t->start != 0) {
        t->exact = 0;
    }
}


/* the wake slot: arm, take, the cursor published */
static void
fuzz_wake(fuzz_ring_t *t)
{
    int  more;

    more = pusher_ring_arm(&t->ring, t->wake, &t->reader);

    FUZZ_CHECK(more == (t->reader.cursor < t->desc->tail));
    FUZZ_CHECK(t->wake->armed == 1);
    FUZZ_CHECK(pusher_ring_take_wake(t->wake) == 1);
    FUZZ_CHECK(pusher_ring_take_wake(t->wake) == 0);

    pusher_ring_store_cursor(t->wake, &t->reader);
    FUZZ_CHECK(pusher_ring_load_cursor(t->wake) == t->reader.cursor);
}


static void
fuzz_reader(fuzz_in_t *in)
{
    size_t        off;
    uint64_t      start, v;
    unsigned      op, field;
    fuzz_ring_t  *t;

    t = calloc(1, sizeof(fuzz_ring_t));
    FUZZ_CHECK(t != NULL);

    t->desc = calloc(1, sizeof(pusher_ring_desc_t));
    t->wake = calloc(1, sizeof(pusher_shm_wake_t));
    t->buffer = calloc(1, FUZZ_CAPACITY);
    t->buf = malloc(FUZZ_MAX_RECORD);
    t->payload = malloc(FUZZ_MAX_RECORD);
    FUZZ_CHECK(t->desc && t->wake && t->buffer && t->buf && t->payload);

    FUZZ_CHECK(pusher_ring_init(&t->ring, t->buffer, FUZZ_CAPACITY, t->desc)
               == 0);
    FUZZ_CHECK(t->ring.max_record == FUZZ_MAX_RECORD);

    pusher_ring_writer_reset(&t->ring);

    /*
     * A writer that has written up to an aligned position before the
     * reader attaches, maybe many laps on: the descriptor a real one
     * would leave, the buffer still zero.
     */
    start = PUSHER_RING_ALIGN(fuzz_uint(in, 2) * 8 + fuzz_byte(in)
                              * (uint64_t) FUZZ_CAPACITY);
    t->desc->tail_intent = start;
    t->desc->tail = start;
    t->desc->latest = start;

    pusher_ring_reader_init(&t->reader, &t->ring, 0);
    t->records = fuzz_records;
    t->start = start;
    t->exact = 1;

    while (in->pos < in->end) {
        op = fuzz_byte(in);

        switch (op % 8) {

        case 0:
        case 1:
        case 2:
            fuzz_write(t, in);
            break;

        case 3:
        case 4:
            fuzz_read(t);
            break;

        case 5:
            /* a byte of the buffer flipped */
            off = (size_t) fuzz_uint(in, 2) % FUZZ_CAPACITY;
            t->buffer[off] ^= (uint8_t) (1 + fuzz_byte(in) % 255);
            t->exact = 0;
            break;

        case 6:
            /* any value in a descriptor field */
            field = fuzz_byte(in) % 4;
            v = fuzz_uint(in, 8);

            if (op & 0x80) {
                /* near the reader, where it hurts */
                v = t->reader.cursor + (int64_t) (int16_t) v;
            }

            switch (field) {
            case 0:
                t->desc->tail = v;
                break;
            case 1:
                t->desc->tail_intent = v;
                break;
            case 2:
                t->desc->latest = v;
                break;
            default:
                t->desc->records = v;
                break;
            }

            t->exact = 0;
            t->stored = 1;
            break;

        default:
            if (op & 0x80) {
                fuzz_wake(t);

            } else {
                fuzz_reader_start(t, in);
            }

            break;
        }
    }

    /* drain what is left, as a worker does after a doorbell */
    for (op = 0; op < 64 && !pusher_ring_caught_up(&t->reader, &t->ring);
         op++)
    {
        fuzz_read(t);
    }

    free(t->desc);
    free(t->wake);
    free(t->buffer);
    free(t->buf);
    free(t->payload);
    free(t);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in_t  in;

    if (size < 1) {
        return 0;
    }

    in.pos = data + 1;
    in.end = data + size;

    switch (data[0] % 3) {

    case 0:
        (void) fuzz_decode(in.pos, size - 1, NULL, NULL);
        break;

    case 1:
        fuzz_encode(&in);
        break;

    default:
        fuzz_reader(&in);
        break;
    }

    return 0;
}
