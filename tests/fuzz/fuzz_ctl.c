/*
 * ngx-pusher: libFuzzer target for the control connection's framing
 * (common/pusher_ctl.h): the 8-byte message header and the uint32_t
 * length-prefixed fields of the uplink payloads.
 *
 * Input: 2 bytes of chunking seed, then a byte stream as either end of the
 * control socket receives it.  The stream is cut into messages twice:
 *
 *   as the broker reads it (broker/src/control_server.cpp): exactly 8
 *   header bytes, then exactly "length" payload bytes, each read into a
 *   buffer of that size;
 *
 *   as a worker reads it (ngx_module/ngx_http_pusher_ring.c): chunks of
 *   seed-chosen sizes appended to a buffer that starts small and grows to
 *   the size of the message that does not fit, messages cut from its
 *   front while 8 header bytes are there, the rest moved down.
 *
 * Both must see the same messages (type, length, payload) and stop the
 * same way (a length over PUSHER_CTL_MAX_PAYLOAD, or the end of the
 * stream).  Every payload is then walked with pusher_ctl_get(): a field it
 * returns lies inside the payload right after its length, a refusal
 * leaves the position alone and happens exactly when the length or the
 * bytes it announces are missing; the broker's split into the first N
 * fields of each uplink type agrees with that walk.  A payload the fields
 * cover exactly is written again with pusher_ctl_header_write() and
 * pusher_ctl_put() into an exact-size buffer and comes out byte for byte
 * (the header's reserved bytes as 0).
 *
 * The JSON payloads go through the codec of common/pusher_ctl.c:
 *
 *   HELLO and WELCOME messages: decoded from an exact-size copy, 0 or -1;
 *   a refusal leaves a reason, an accepted message has only strings that
 *   are NUL-terminated at their length (ids, key and secret not empty),
 *   webhook event masks within PUSHER_WEBHOOK_ALL and not empty, a slot
 *   below PUSHER_SHM_WAKE_SLOTS; encoded again, it decodes to the same
 *   message, whose encoding is the same text;
 *
 *   every other message: its payload bytes make a HELLO and a WELCOME
 *   within the bounds the decoders take (the module writes no others),
 *   which the encoder turns into JSON that decodes to them exactly.
 *
 * Every allocation is given back (libFuzzer's leak check).
 *
 *   clang -fsanitize=fuzzer,address,undefined -Icommon \
 *       tests/fuzz/fuzz_ctl.c common/pusher_ctl.c common/pusher_proto.c \
 *       common/pusher_ws.c -lcjson -lcrypto
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pusher_ctl.h"
#include "pusher_app.h"
#include "fuzz_check.h"


#define FUZZ_MESSAGES_MAX   256
#define FUZZ_APPS_MAX       4
#define FUZZ_WEBHOOKS_MAX   3
#define FUZZ_HEADERS_MAX    3
#define FUZZ_COALESCE_MAX   2
#define FUZZ_COALESCE_NAMES 2
#define FUZZ_CHUNK_MAX      4096
#define FUZZ_FIELDS_MAX     64


/* how a reader stopped */
#define FUZZ_END            0       /* the stream ended (maybe mid-message) */
#define FUZZ_TOO_BIG        1       /* a length over PUSHER_CTL_MAX_PAYLOAD */


typedef struct {
    uint16_t   type;
    uint16_t   reserved;
    uint32_t   length;
    uint64_t   hash;
} fuzz_message_t;


typedef struct {
    fuzz_message_t   messages[FUZZ_MESSAGES_MAX];
    size_t           n;
    int              stop;
} fuzz_run_t;


typedef struct {
    const uint8_t   *pos;
    const uint8_t   *end;
    char            *arena;          /* strings made from the input */
} fuzz_in_t;


/* a HELLO made from input bytes, in storage of its own */
typedef struct {
    pusher_ctl_hello_t     hello;
    pusher_ctl_app_t       apps[FUZZ_APPS_MAX];
    pusher_ctl_webhook_t   webhooks[FUZZ_APPS_MAX][FUZZ_WEBHOOKS_MAX];
    pusher_ctl_kv_t        headers[FUZZ_APPS_MAX][FUZZ_WEBHOOKS_MAX]
                                  [FUZZ_HEADERS_MAX];
    pusher_ctl_coalesce_t  coalesce[FUZZ_APPS_MAX][FUZZ_COALESCE_MAX];
    pusher_str_t           names[FUZZ_APPS_MAX][FUZZ_COALESCE_MAX]
                                [FUZZ_COALESCE_NAMES];
} fuzz_hello_t;


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static uint32_t
fuzz_u32(const uint8_t *p)
{
    uint32_t  v;

    /* host order, as the writer stores it */
    memcpy(&v, p, sizeof(v));

    return v;
}


/* the number of fields split_fields<N>() of the broker takes per type */
static size_t
fuzz_uplink_fields(uint16_t type)
{
    switch (type) {

    case PUSHER_CTL_CLIENT_EVENT:
        return 4;

    case PUSHER_CTL_PRESENCE_JOIN:
        return 7;

    case PUSHER_CTL_PRESENCE_LEAVE:
    case PUSHER_CTL_CACHE_GET:
    case PUSHER_CTL_OCCUPANCY:
    case PUSHER_CTL_USER_OFFLINE:
    case PUSHER_CTL_GONE:
        return 3;

    case PUSHER_CTL_USER_ONLINE:
        return 4;

    default:
        return 0;
    }
}


/* the payload's fields, the re-encoding, the broker's split */
static void
fuzz_fields(const pusher_ctl_header_t *h, const uint8_t *payload)
{
    int             rc;
    size_t          n, i, want, size;
    uint8_t        *out, *p;
    uint32_t        len[FUZZ_FIELDS_MAX], flen;
    const uint8_t  *pos, *end, *before, *split, *fdata;
    const uint8_t  *field[FUZZ_FIELDS_MAX];

    pos = payload;
    end = payload + h->length;
    n = 0;

    for ( ;; ) {
        before = pos;
        fdata = NULL;
        flen = 0;

        rc = pusher_ctl_get(&pos, end, &fdata, &flen);

        FUZZ_CHECK(rc == 0 || rc == -1);

        if (rc == -1) {
            FUZZ_CHECK(pos == before);
            FUZZ_CHECK((size_t) (end - pos) < sizeof(uint32_t)
                       || fuzz_u32(pos) > (size_t) (end - pos)
                                          - sizeof(uint32_t));
            break;
        }

        FUZZ_CHECK(fdata == before + sizeof(uint32_t));
        FUZZ_CHECK(flen == fuzz_u32(before));
        FUZZ_CHECK(pos == fdata + flen && pos <= end);

        if (n < FUZZ_FIELDS_MAX) {
            field[n] = fdata;
            len[n] = flen;
        }

        n++;

        if (pos == end) {
            break;
        }
    }

    /* the broker's split_fields<N>: the first N fields, or a refusal */
    want = fuzz_uplink_fields(h->type);

    if (want > 0) {
        split = payload;

        for (i = 0; i < want; i++) {
            if (pusher_ctl_get(&split, end, &fdata, &flen) != 0) {
                break;
            }

            FUZZ_CHECK(fdata == field[i] && flen == len[i]);
        }

        FUZZ_CHECK((i == want) == (n >= want));
    }

    if (pos != end || n > FUZZ_FIELDS_MAX) {
        return;
    }

    /* written again as the worker writes an uplink message */
    size = 0;

    for (i = 0; i < n; i++) {
        size += PUSHER_CTL_FIELD_SIZE(len[i]);
    }

    FUZZ_CHECK(size == h->length);

    out = malloc(PUSHER_CTL_HEADER_SIZE + size);
    FUZZ_CHECK(out != NULL);

    pusher_ctl_header_write(out, h->type, (uint32_t) size);
    p = out + PUSHER_CTL_HEADER_SIZE;

    for (i = 0; i < n; i++) {
        p = pusher_ctl_put(p, field[i], len[i]);
    }

    FUZZ_CHECK(p == out + PUSHER_CTL_HEADER_SIZE + size);
    FUZZ_CHECK(memcmp(out + PUSHER_CTL_HEADER_SIZE, payload, size) == 0);

    free(out);
}


static void
fuzz_message(fuzz_run_t *run, const pusher_ctl_header_t *h,
    const uint8_t *payload)
{
    uint8_t              head[PUSHER_CTL_HEADER_SIZE];
    fuzz_message_t      *m;
    pusher_ctl_header_t  again;

    FUZZ_CHECK(h->length <= PUSHER_CTL_MAX_PAYLOAD);

    /* the header written again: the same but for reserved */
    pusher_ctl_header_write(head, h->type, h->length);
    pusher_ctl_header_read(head, &again);

    FUZZ_CHECK(again.type == h->type && again.length == h->length);
    FUZZ_CHECK(again.reserved == 0);

    if (run->n < FUZZ_MESSAGES_MAX) {
        m = &run->messages[run->n++];
        m->type = h->type;
        m->reserved = h->reserved;
        m->length = h->length;
        m->hash = fuzz_hash(payload, h->length);
    }
}


/* --- the HELLO and WELCOME codec -------------------------------------- */


/* a decoded string: NUL-terminated at its length */
static void
fuzz_check_str(const pusher_str_t *s, int required)
{
    FUZZ_CHECK(!required || s->len > 0);

    if (s->len > 0 || s->data != NULL) {
        FUZZ_CHECK(s->data != NULL && strlen(s->data) == s->len);
    }
}


static void
fuzz_check_error(const char *error)
{
    FUZZ_CHECK(memchr(error, '\0', PUSHER_CTL_ERROR_SIZE) != NULL);
    FUZZ_CHECK(error[0] != '\0');
}


static int
fuzz_hello_eq(const pusher_ctl_hello_t *a, const pusher_ctl_hello_t *b)
{
    size_t                       i, w, k, m;
    unsigned                     bit;
    const uint64_t              *x, *y;
    const pusher_ctl_app_t      *p, *q;
    const pusher_ctl_webhook_t  *v, *u;
    const pusher_ctl_coalesce_t *c, *d;

    static const size_t  numbers[] = {
        offsetof(pusher_ctl_app_t, cache_ttl),
        offsetof(pusher_ctl_app_t, max_event_data),
        offsetof(pusher_ctl_app_t, max_channels),
        offsetof(pusher_ctl_app_t, max_event_name),
        offsetof(pusher_ctl_app_t, max_batch),
        offsetof(pusher_ctl_app_t, max_request_size),
        offsetof(pusher_ctl_app_t, webhook_vacated_delay)
    };

    static const unsigned  bits[] = {
        PUSHER_CTL_APP_CACHE_TTL, PUSHER_CTL_APP_MAX_EVENT_DATA,
        PUSHER_CTL_APP_MAX_CHANNELS, PUSHER_CTL_APP_MAX_EVENT_NAME,
        PUSHER_CTL_APP_MAX_BATCH, PUSHER_CTL_APP_MAX_REQUEST_SIZE,
        PUSHER_CTL_APP_WEBHOOK_VACATED_DELAY
    };

    if (a->pid != b->pid || a->conf_time != b->conf_time
        || a->napps != b->napps)
    {
        return 0;
    }

    for (i = 0; i < a->napps; i++) {
        p = &a->apps[i];
        q = &b->apps[i];

        if (!fuzz_str_eq(&p->id, &q->id) || !fuzz_str_eq(&p->key, &q->key)
            || !fuzz_str_eq(&p->secret, &q->secret)
            || (p->has & PUSHER_CTL_APP_ALL) != (q->has & PUSHER_CTL_APP_ALL)
            || p->nwebhooks != q->nwebhooks
            || p->ncoalesce != q->ncoalesce)
        {
            return 0;
        }

        for (w = 0; w < p->ncoalesce; w++) {
            c = &p->coalesce[w];
            d = &q->coalesce[w];

            if (!fuzz_str_eq(&c->pattern, &d->pattern)
                || c->window != d->window || c->nevents != d->nevents)
            {
                return 0;
            }

            for (k = 0; k < c->nevents; k++) {
                if (!fuzz_str_eq(&c->events[k], &d->events[k])) {
                    return 0;
                }
            }
        }

        if ((p->has & PUSHER_CTL_APP_SUBSCRIPTION_COUNT)
            && !p->subscription_count != !q->subscription_count)
        {
            return 0;
        }

        for (m = 0; m < sizeof(bits) / sizeof(bits[0]); m++) {
            bit = bits[m];
            x = (const uint64_t *) ((const char *) p + numbers[m]);
            y = (const uint64_t *) ((const char *) q + numbers[m]);

            if ((p->has & bit) && *x != *y) {
                return 0;
            }
        }

        for (w = 0; w < p->nwebhooks; w++) {
            v = &p->webhooks[w];
            u = &q->webhooks[w];

            if (!fuzz_str_eq(&v->url, &u->url)
                || (v->events & PUSHER_WEBHOOK_ALL) != u->events
                || !fuzz_str_eq(&v->prefix, &u->prefix)
                || !fuzz_str_eq(&v->suffix, &u->suffix)
                || v->nheaders != u->nheaders)
            {
                return 0;
            }

            for (k = 0; k < v->nheaders; k++) {
                if (!fuzz_str_eq(&v->headers[k].name, &u->headers[k].name)
                    || !fuzz_str_eq(&v->headers[k].value,
                                    &u->headers[k].value))
                {
                    return 0;
                }
            }
        }
    }

    return 1;
}


/*
 * The rules nginx -t and the broker share (pusher_app.h) on a decoded
 * app: a verdict, a reason that is a NUL-terminated line, and a URL
 * parse whose parts lie inside the URL.
 */
static void
fuzz_check_url(const pusher_str_t *u)
{
    const char    *why;
    pusher_url_t   url;

    if (pusher_url_parse(u->data, u->len, &url, &why) != 0) {
        FUZZ_CHECK(why != NULL && why[0] != '\0');
        return;
    }

    FUZZ_CHECK(url.host.len > 0 && url.host.data > u->data
               && url.host.data + url.host.len <= u->data + u->len);
    FUZZ_CHECK(url.target.data + url.target.len == u->data + u->len);
    FUZZ_CHECK(url.target.len == 0 || url.target.data[0] == '/'
               || url.target.data[0] == '?');
    FUZZ_CHECK(url.port != 0 && (url.port_given
                                 || url.port == (url.tls ? 443 : 80)));
}


static void
fuzz_check_app(const pusher_ctl_app_t *a)
{
    char    why[PUSHER_CTL_ERROR_SIZE];
    size_t  n;

    memset(why, 'x', sizeof(why));

    if (pusher_app_check(a, why, sizeof(why)) == 0) {
        FUZZ_CHECK(a->id.len >= 1 && a->id.len <= PUSHER_APP_ID_MAX);
        FUZZ_CHECK(a->nwebhooks <= PUSHER_APP_WEBHOOKS_MAX);
        return;
    }

    n = strnlen(why, sizeof(why));
    FUZZ_CHECK(n > 0 && n < sizeof(why) && memchr(why, '\n', n) == NULL);
}


static void
fuzz_check_hello(const pusher_ctl_hello_t *h)
{
    size_t                       i, w, k;
    const pusher_ctl_app_t      *a;
    const pusher_ctl_webhook_t  *wh;

    FUZZ_CHECK(h->json != NULL);
    FUZZ_CHECK(h->pid >= 0 && h->conf_time >= 0);
    FUZZ_CHECK(h->napps == 0 || h->apps != NULL);

    for (i = 0; i < h->napps; i++) {
        a = &h->apps[i];

        fuzz_check_str(&a->id, 1);
        fuzz_check_str(&a->key, 1);
        fuzz_check_str(&a->secret, 1);
        FUZZ_CHECK((a->has & ~PUSHER_CTL_APP_ALL) == 0);
        FUZZ_CHECK(a->nwebhooks == 0 || a->webhooks != NULL);

        for (w = 0; w < a->nwebhooks; w++) {
            wh = &a->webhooks[w];

            fuzz_check_str(&wh->url, 0);
            fuzz_check_str(&wh->prefix, 0);
            fuzz_check_str(&wh->suffix, 0);
            FUZZ_CHECK(wh->events != 0
                       && (wh->events & ~PUSHER_WEBHOOK_ALL) == 0);
            FUZZ_CHECK(wh->nheaders == 0 || wh->headers != NULL);

            for (k = 0; k < wh->nheaders; k++) {
                fuzz_check_str(&wh->headers[k].name, 0);
                fuzz_check_str(&wh->headers[k].value, 0);
            }

            fuzz_check_url(&wh->url);
        }

        fuzz_check_app(a);
    }
}


/* encoded, decoded again: the same message, and the same text again */
static void
fuzz_hello_again(const pusher_ctl_hello_t *h)
{
    char                *text, *again;
    size_t               len, len2;
    pusher_ctl_hello_t   d;

    text = pusher_ctl_hello_encode(h, &len);
    FUZZ_CHECK(text != NULL && strlen(text) == len);

    FUZZ_CHECK(pusher_ctl_hello_decode(&d, text, len) == 0);
    fuzz_check_hello(&d);
    FUZZ_CHECK(fuzz_hello_eq(h, &d));

    again = pusher_ctl_hello_encode(&d, &len2);
    FUZZ_CHECK(again != NULL && len2 == len && memcmp(again, text, len) == 0);

    pusher_ctl_hello_free(&d);
    FUZZ_CHECK(d.json == NULL && d.apps == NULL);

    pusher_ctl_text_free(text);
    pusher_ctl_text_free(again);
}


static void
fuzz_welcome_again(const pusher_ctl_welcome_t *w)
{
    char                  *text;
    size_t                 len;
    pusher_ctl_welcome_t   d;

    text = pusher_ctl_welcome_encode(w, &len);
    FUZZ_CHECK(text != NULL && strlen(text) == len);

    FUZZ_CHECK(pusher_ctl_welcome_decode(&d, text, len) == 0);
    FUZZ_CHECK(fuzz_str_eq(&d.shm, &w->shm));
    FUZZ_CHECK(d.generation == w->generation && d.slot == w->slot);
    FUZZ_CHECK(d.size == w->size);

    pusher_ctl_welcome_free(&d);
    FUZZ_CHECK(d.json == NULL);

    pusher_ctl_text_free(text);
}


static void
fuzz_json(const pusher_ctl_header_t *h, const uint8_t *payload)
{
    int                    rc;
    char                  *copy;
    pusher_ctl_hello_t     hello;
    pusher_ctl_welcome_t   welcome;

    copy = malloc(h->length + !h->length);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, payload, h->length);

    if (h->type == PUSHER_CTL_HELLO) {
        rc = pusher_ctl_hello_decode(&hello, copy, h->length);
        FUZZ_CHECK(rc == 0 || rc == -1);

        if (rc == 0) {
            fuzz_check_hello(&hello);
            fuzz_hello_again(&hello);

        } else {
            fuzz_check_error(hello.error);
        }

        pusher_ctl_hello_free(&hello);
        pusher_ctl_hello_free(&hello);

    } else {
        rc = pusher_ctl_welcome_decode(&welcome, copy, h->length);
        FUZZ_CHECK(rc == 0 || rc == -1);

        if (rc == 0) {
            fuzz_check_str(&welcome.shm, 1);
            FUZZ_CHECK(welcome.slot < PUSHER_SHM_WAKE_SLOTS);
            FUZZ_CHECK(welcome.size <= (uint64_t) PUSHER_CTL_NUMBER_MAX);
            fuzz_welcome_again(&welcome);

        } else {
            fuzz_check_error(welcome.error);
        }

        pusher_ctl_welcome_free(&welcome);
        pusher_ctl_welcome_free(&welcome);
    }

    free(copy);
}


static unsigned
fuzz_byte(fuzz_in_t *in)
{
    return in->pos < in->end ? *in->pos++ : 0;
}


static uint64_t
fuzz_uint(fuzz_in_t *in, uint64_t max)
{
    size_t    i;
    uint64_t  v;

    v = 0;

    for (i = 0; i < 8; i++) {
        v = v << 8 | fuzz_byte(in);
    }

    return max == UINT64_MAX ? v : v % (max + 1);
}


/* a string of the input without NUL bytes (nginx.conf has none) */
static void
fuzz_string(fuzz_in_t *in, pusher_str_t *s, int required)
{
    size_t    n, i;
    unsigned  c;

    n = fuzz_byte(in) % 24 + (required ? 1 : 0);

    for (i = 0; i < n; i++) {
        c = fuzz_byte(in);
        in->arena[i] = (char) (c ? c : 'x');
    }

    s->data = n ? in->arena : NULL;
    s->len = n;
    in->arena += n;
}


static void
fuzz_make_hello(fuzz_in_t *in, fuzz_hello_t *f)
{
    size_t                 i, w, k, m;
    uint64_t              *number;
    pusher_ctl_app_t      *a;
    pusher_ctl_webhook_t  *wh;
    pusher_ctl_coalesce_t *co;

    static const size_t  numbers[] = {
        offsetof(pusher_ctl_app_t, cache_ttl),
        offsetof(pusher_ctl_app_t, max_event_data),
        offsetof(pusher_ctl_app_t, max_channels),
        offsetof(pusher_ctl_app_t, max_event_name),
        offsetof(pusher_ctl_app_t, max_batch),
        offsetof(pusher_ctl_app_t, max_request_size),
        offsetof(pusher_ctl_app_t, webhook_vacated_delay)
    };

    memset(f, 0, sizeof(fuzz_hello_t));

    /* the decoder's bounds: pid and conf_time below 9e15, numbers 2^53 */
    f->hello.pid = (int64_t) fuzz_uint(in, 9000000000000000ULL);
    f->hello.conf_time = (int64_t) fuzz_uint(in, 9000000000000000ULL);
    f->hello.napps = fuzz_byte(in) % (FUZZ_APPS_MAX + 1);
    f->hello.apps = f->apps;

    for (i = 0; i < f->hello.napps; i++) {
        a = &f->apps[i];

        fuzz_string(in, &a->id, 1);
        fuzz_string(in, &a->key, 1);
        fuzz_string(in, &a->secret, 1);

        a->has = fuzz_byte(in);
        a->subscription_count = fuzz_byte(in) & 1;

        for (m = 0; m < sizeof(numbers) / sizeof(numbers[0]); m++) {
            number = (uint64_t *) ((char *) a + numbers[m]);
            *number = fuzz_uint(in, 1ULL << 53);
        }

        a->nwebhooks = fuzz_byte(in) % (FUZZ_WEBHOOKS_MAX + 1);
        a->webhooks = f->webhooks[i];

        for (w = 0; w < a->nwebhooks; w++) {
            wh = &a->webhooks[w];

            fuzz_string(in, &wh->url, 0);
            fuzz_string(in, &wh->prefix, 0);
            fuzz_string(in, &wh->suffix, 0);

            /* the module refuses a webhook without events */
            wh->events = 1 + fuzz_byte(in) % PUSHER_WEBHOOK_ALL;

            wh->nheaders = fuzz_byte(in) % (FUZZ_HEADERS_MAX + 1);
            wh->headers = f->headers[i][w];

            for (k = 0; k < wh->nheaders; k++) {
                fuzz_string(in, &wh->headers[k].name, 0);
                fuzz_string(in, &wh->headers[k].value, 0);
            }
        }

        /* the codec carries any values: the bounds are the broker's */
        a->ncoalesce = fuzz_byte(in) % (FUZZ_COALESCE_MAX + 1);
        a->coalesce = f->coalesce[i];

        for (w = 0; w < a->ncoalesce; w++) {
            co = &a->coalesce[w];

            fuzz_string(in, &co->pattern, 0);
            co->window = fuzz_uint(in, 1ULL << 53);
            co->nevents = fuzz_byte(in) % (FUZZ_COALESCE_NAMES + 1);
            co->events = f->names[i][w];

            for (k = 0; k < co->nevents; k++) {
                fuzz_string(in, &co->events[k], 0);
            }
        }
    }
}


/* messages made from bytes: what the encoders write, the decoders read */
static void
fuzz_codec_made(const uint8_t *payload, size_t len)
{
    char                  *arena;
    fuzz_in_t              in;
    fuzz_hello_t          *f;
    pusher_ctl_welcome_t   welcome;

    /* every string takes at most 25 bytes */
    arena = malloc(25 * (3 + FUZZ_APPS_MAX * (3 + FUZZ_WEBHOOKS_MAX
                                              * (3 + 2 * FUZZ_HEADERS_MAX)
                                              + FUZZ_COALESCE_MAX
                                                * (1 + FUZZ_COALESCE_NAMES))));
    f = malloc(sizeof(fuzz_hello_t));
    FUZZ_CHECK(arena != NULL && f != NULL);

    in.pos = payload;
    in.end = payload + len;
    in.arena = arena;

    fuzz_make_hello(&in, f);
    fuzz_hello_again(&f->hello);

    memset(&welcome, 0, sizeof(pusher_ctl_welcome_t));
    fuzz_string(&in, &welcome.shm, 1);
    welcome.generation = fuzz_uint(&in, UINT64_MAX);
    welcome.slot = fuzz_byte(&in) % PUSHER_SHM_WAKE_SLOTS;
    welcome.size = fuzz_uint(&in, 1ULL << 53);

    fuzz_welcome_again(&welcome);

    free(f);
    free(arena);
}


/* exact reads: 8 bytes of header, then the payload */
static void
fuzz_broker(const uint8_t *in, size_t len, fuzz_run_t *run)
{
    size_t               off;
    uint8_t             *head, *payload;
    pusher_ctl_header_t  h;

    memset(run, 0, sizeof(fuzz_run_t));

    off = 0;

    for ( ;; ) {
        if (len - off < PUSHER_CTL_HEADER_SIZE) {
            run->stop = FUZZ_END;
            return;
        }

        head = malloc(PUSHER_CTL_HEADER_SIZE);
        FUZZ_CHECK(head != NULL);
        memcpy(head, in + off, PUSHER_CTL_HEADER_SIZE);

        pusher_ctl_header_read(head, &h);
        free(head);

        FUZZ_CHECK(h.length == fuzz_u32(in + off));
        off += PUSHER_CTL_HEADER_SIZE;

        if (h.length > PUSHER_CTL_MAX_PAYLOAD) {
            run->stop = FUZZ_TOO_BIG;
            return;
        }

        if (len - off < h.length) {
            run->stop = FUZZ_END;
            return;
        }

        payload = malloc(h.length + !h.length);
        FUZZ_CHECK(payload != NULL);
        memcpy(payload, in + off, h.length);

        fuzz_message(run, &h, payload);
        fuzz_fields(&h, payload);

        if (h.type == PUSHER_CTL_HELLO || h.type == PUSHER_CTL_WELCOME) {
            fuzz_json(&h, payload);

        } else if (h.length > 0) {
            fuzz_codec_made(payload, h.length);
        }

        free(payload);
        off += h.length;
    }
}


/* a growing buffer, chunks of any size, messages cut from its front */
static void
fuzz_worker(const uint8_t *in, size_t len, uint32_t seed, fuzz_run_t *run)
{
    size_t               off, n, in_len, in_cap, need;
    uint8_t             *buf, *p;
    pusher_ctl_header_t  h;

    memset(run, 0, sizeof(fuzz_run_t));

    in_cap = PUSHER_CTL_HEADER_SIZE + fuzz_next(&seed) % 64;
    buf = malloc(in_cap);
    FUZZ_CHECK(buf != NULL);

    in_len = 0;
    off = 0;
    run->stop = FUZZ_END;

    while (off < len) {

        /* recv(): up to the room left, as much as the "network" gives */
        n = 1 + fuzz_next(&seed) % ((fuzz_next(&seed) & 1) ? 16
                                                          : FUZZ_CHUNK_MAX);
        n = n < in_cap - in_len ? n : in_cap - in_len;
        n = n < len - off ? n : len - off;

        FUZZ_CHECK(n > 0);

        memcpy(buf + in_len, in + off, n);
        in_len += n;
        off += n;

        while (in_len >= PUSHER_CTL_HEADER_SIZE) {

            pusher_ctl_header_read(buf, &h);

            if (h.length > PUSHER_CTL_MAX_PAYLOAD) {
                run->stop = FUZZ_TOO_BIG;
                free(buf);
                return;
            }

            need = PUSHER_CTL_HEADER_SIZE + h.length;

            if (in_len < need) {
                if (need - in_len > len - off) {
                    /* the stream ends inside it: spare the allocation */
                    free(buf);
                    return;
                }

                if (need > in_cap) {
                    p = malloc(need);
                    FUZZ_CHECK(p != NULL);
                    memcpy(p, buf, in_len);
                    free(buf);
                    buf = p;
                    in_cap = need;
                }

                break;
            }

            fuzz_message(run, &h, buf + PUSHER_CTL_HEADER_SIZE);

            memmove(buf, buf + need, in_len - need);
            in_len -= need;
        }
    }

    free(buf);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                i;
    uint32_t              seed;
    fuzz_run_t           *broker, *worker;
    const fuzz_message_t  *b, *w;

    if (size < 2) {
        return 0;
    }

    seed = data[0] | (uint32_t) data[1] << 8;

    data += 2;
    size -= 2;

    broker = malloc(sizeof(fuzz_run_t));
    worker = malloc(sizeof(fuzz_run_t));
    FUZZ_CHECK(broker != NULL && worker != NULL);

    fuzz_broker(data, size, broker);
    fuzz_worker(data, size, seed, worker);

    FUZZ_CHECK(broker->n == worker->n);
    FUZZ_CHECK(broker->stop == worker->stop);

    for (i = 0; i < broker->n; i++) {
        b = &broker->messages[i];
        w = &worker->messages[i];

        FUZZ_CHECK(b->type == w->type && b->reserved == w->reserved);
        FUZZ_CHECK(b->length == w->length && b->hash == w->hash);
    }

    free(broker);
    free(worker);

    return 0;
}
