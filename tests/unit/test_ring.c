/*
 * ngx-pusher: broadcast ring tests, named after the behaviour checked
 * (Aeron's broadcast receiver tests are the model).
 *
 * The ring is compiled into this file with PUSHER_RING_TEST_HOOKS, which
 * adds a hook between the copy and the check in pusher_ring_read(), so
 * an overwrite during the copy can be staged without threads.  The buffer
 * is exactly capacity bytes from malloc(), so ASan catches any read past
 * it.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#define PUSHER_RING_TEST_HOOKS
#include "pusher_ring.c"


#define CAPACITY     PUSHER_RING_MIN_CAPACITY
#define MAX_RECORD   (CAPACITY / 8)
#define MAX_PAYLOAD  (MAX_RECORD - PUSHER_RING_RECORD_HEADER)
#define TYPE         PUSHER_RING_EVENT
#define CANARY       0xaa


typedef struct {
    pusher_ring_t         ring;
    pusher_ring_reader_t  reader;
    pusher_ring_desc_t   *desc;
    pusher_shm_wake_t    *wake;
    uint8_t              *buffer;
    uint8_t              *buf;
    uint8_t              *payload;
} ring_test_t;


/* set by a test for its copy hook */
static uint32_t  hook_records;
static uint32_t  hook_len;
static int       hook_commit;
static uint8_t   hook_payload[MAX_RECORD];


static int
setup(void **state)
{
    ring_test_t  *t;

    t = calloc(1, sizeof(ring_test_t));
    assert_non_null(t);

    t->desc = calloc(1, sizeof(pusher_ring_desc_t));
    t->wake = calloc(1, sizeof(pusher_shm_wake_t));
    t->buffer = malloc(CAPACITY);
    t->buf = malloc(MAX_RECORD);
    t->payload = malloc(MAX_RECORD);
    assert_non_null(t->desc);
    assert_non_null(t->wake);
    assert_non_null(t->buffer);
    assert_non_null(t->buf);
    assert_non_null(t->payload);

    memset(t->buffer, 0x5c, CAPACITY);
    memset(t->buf, CANARY, MAX_RECORD);

    assert_int_equal(pusher_ring_init(&t->ring, t->buffer, CAPACITY, t->desc),
                     0);
    pusher_ring_writer_reset(&t->ring);
    pusher_ring_reader_init(&t->reader, &t->ring, 1);

    pusher_ring_test_copied = NULL;

    *state = t;

    return 0;
}


static int
teardown(void **state)
{
    ring_test_t  *t;

    t = *state;

    pusher_ring_test_copied = NULL;

    free(t->payload);
    free(t->buf);
    free(t->buffer);
    free(t->wake);
    free(t->desc);
    free(t);

    return 0;
}


/* payload bytes are a function of (seed, index): any mix-up shows */
static void
fill(uint8_t *p, uint32_t len, uint32_t seed)
{
    uint32_t  i;

    for (i = 0; i < len; i++) {
        p[i] = (uint8_t) (seed * 31 + i * 7 + (i >> 8));
    }
}


static void
write_record(ring_test_t *t, uint32_t len, uint32_t seed)
{
    fill(t->payload, len, seed);
    assert_int_equal(pusher_ring_write(&t->ring, TYPE, t->payload, len), 0);
}


static void
expect_record(ring_test_t *t, uint32_t len, uint32_t seed)
{
    int32_t   type;
    uint32_t  got;

    fill(t->payload, len, seed);

    assert_int_equal(pusher_ring_read(&t->reader, &t->ring, t->buf, &type,
                                      &got),
                     PUSHER_RING_OK);
    assert_int_equal(type, TYPE);
    assert_int_equal(got, len);
    assert_memory_equal(t->buf, t->payload, len);
}


static void
expect_empty(ring_test_t *t)
{
    int32_t   type;
    uint32_t  len;

    type = 12345;
    len = 12345;

    assert_int_equal(pusher_ring_read(&t->reader, &t->ring, t->buf, &type,
                                      &len),
                     PUSHER_RING_EMPTY);
    assert_int_equal(type, 12345);
    assert_int_equal(len, 12345);
    assert_true(pusher_ring_caught_up(&t->reader, &t->ring));
}


static void
expect_lapped(ring_test_t *t)
{
    int32_t   type;
    uint32_t  len;

    assert_int_equal(pusher_ring_read(&t->reader, &t->ring, t->buf, &type,
                                      &len),
                     PUSHER_RING_LAPPED);
}


static uint64_t
record_size(uint32_t len)
{
    return PUSHER_RING_ALIGN((uint64_t) len + PUSHER_RING_RECORD_HEADER);
}


static void
test_ring_init_rejects_bad_capacity(void **state)
{
    ring_test_t    *t;
    pusher_ring_t   r;

    t = *state;

    assert_int_equal(pusher_ring_init(&r, t->buffer, CAPACITY / 2, t->desc),
                     -1);
    assert_int_equal(pusher_ring_init(&r, t->buffer, CAPACITY + 8, t->desc),
                     -1);
    assert_int_equal(pusher_ring_init(&r, t->buffer, CAPACITY * 3, t->desc),
                     -1);
    assert_int_equal(pusher_ring_init(&r, t->buffer,
                                      PUSHER_RING_MAX_CAPACITY * 2, t->desc),
                     -1);
    assert_int_equal(pusher_ring_init(&r, t->buffer + 4, CAPACITY, t->desc),
                     -1);
    assert_int_equal(pusher_ring_init(&r, t->buffer, 0, t->desc), -1);

    assert_int_equal(pusher_ring_init(&r, t->buffer, CAPACITY, t->desc), 0);
    assert_int_equal(r.capacity, CAPACITY);
    assert_int_equal(r.mask, CAPACITY - 1);
    assert_int_equal(r.max_record, MAX_RECORD);
}


static void
test_ring_should_not_read_from_empty_ring(void **state)
{
    ring_test_t  *t;

    t = *state;

    expect_empty(t);
    expect_empty(t);

    assert_int_equal(t->reader.cursor, 0);
    assert_int_equal(t->reader.received, 0);
    assert_int_equal(t->reader.lapped, 0);

    /* nothing was copied */
    memset(t->payload, CANARY, MAX_RECORD);
    assert_memory_equal(t->buf, t->payload, MAX_RECORD);
}


static void
test_ring_should_read_first_message(void **state)
{
    ring_test_t  *t;

    t = *state;

    write_record(t, 5, 1);

    assert_int_equal(t->desc->tail_intent, 16);
    assert_int_equal(t->desc->tail, 16);
    assert_int_equal(t->desc->latest, 0);
    assert_int_equal(t->desc->records, 1);
    assert_false(pusher_ring_caught_up(&t->reader, &t->ring));

    /* the record as laid out in the buffer */
    assert_int_equal(((pusher_ring_record_t *) t->buffer)->length, 13);
    assert_int_equal(((pusher_ring_record_t *) t->buffer)->type, TYPE);
    fill(t->payload, 5, 1);
    assert_memory_equal(t->buffer + 8, t->payload, 5);

    expect_record(t, 5, 1);
    expect_empty(t);

    assert_int_equal(t->reader.cursor, 16);
    assert_int_equal(t->reader.received, 1);
    assert_int_equal(t->reader.lapped, 0);
}


static void
test_ring_should_read_several_messages_in_order(void **state)
{
    uint32_t      i;
    uint64_t      pos;
    ring_test_t  *t;

    static const uint32_t  lens[] = {
        0, 1, 7, 8, 9, 15, 16, 17, 100, 1000, MAX_PAYLOAD, 3
    };

    t = *state;
    pos = 0;

    for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        write_record(t, lens[i], i);
        pos += record_size(lens[i]);
    }

    assert_int_equal(t->desc->tail, pos);
    assert_int_equal(t->desc->latest, pos - record_size(3));
    assert_int_equal(t->desc->records, sizeof(lens) / sizeof(lens[0]));

    for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        expect_record(t, lens[i], i);
    }

    expect_empty(t);

    assert_int_equal(t->reader.cursor, pos);
    assert_int_equal(t->reader.received, sizeof(lens) / sizeof(lens[0]));
    assert_int_equal(t->reader.lapped, 0);
}


static void
test_ring_should_read_record_that_exactly_fills_the_end(void **state)
{
    uint32_t      i, last;
    ring_test_t  *t;

    t = *state;

    /* 15 records of 4096 bytes, then one that ends exactly at capacity */
    for (i = 0; i < 15; i++) {
        write_record(t, 4096 - 8, i);
        expect_record(t, 4096 - 8, i);
    }

    last = CAPACITY - 15 * 4096 - 8 - 3;
    write_record(t, last, 100);

    assert_int_equal(t->desc->tail, CAPACITY);
    assert_int_equal(t->desc->latest, 15 * 4096);

    expect_record(t, last, 100);
    expect_empty(t);
    assert_int_equal(t->reader.cursor, CAPACITY);

    /* the next record starts at index 0 without padding */
    write_record(t, 32, 101);

    assert_int_equal(t->desc->tail, CAPACITY + 40);
    assert_int_equal(t->desc->latest, CAPACITY);
    assert_int_equal(((pusher_ring_record_t *) t->buffer)->length, 40);
    assert_int_equal(((pusher_ring_record_t *) t->buffer)->type, TYPE);

    expect_record(t, 32, 101);
    expect_empty(t);

    assert_int_equal(t->reader.received, 17);
    assert_int_equal(t->reader.lapped, 0);
}


static void
test_ring_should_cope_with_padding_and_wrap(void **state)
{
    uint32_t               i;
    ring_test_t           *t;
    pusher_ring_record_t  *pad;

    t = *state;

    /* leave 24 bytes before the end */
    for (i = 0; i < 15; i++) {
        write_record(t, 4096 - 8, i);
        expect_record(t, 4096 - 8, i);
    }

    write_record(t, 4096 - 8 - 24, 15);
    expect_record(t, 4096 - 8 - 24, 15);
    assert_int_equal(t->desc->tail, CAPACITY - 24);

    /* 100 + 8 bytes do not fit in 24: padding, then the record at 0 */
    write_record(t, 100, 16);

    pad = (pusher_ring_record_t *) (t->buffer + CAPACITY - 24);
    assert_int_equal(pad->length, 24);
    assert_int_equal(pad->type, PUSHER_RING_PADDING);
    assert_int_equal(((pusher_ring_record_t *) t->buffer)->length, 108);
    assert_int_equal(((pusher_ring_record_t *) t->buffer)->type, TYPE);

    assert_int_equal(t->desc->tail_intent, CAPACITY + 112);
    assert_int_equal(t->desc->tail, CAPACITY + 112);
    assert_int_equal(t->desc->latest, CAPACITY);
    assert_int_equal(t->desc->records, 17);

    expect_record(t, 100, 16);
    expect_empty(t);

    assert_int_equal(t->reader.cursor, CAPACITY + 112);
    assert_int_equal(t->reader.received, 17);
    assert_int_equal(t->reader.lapped, 0);

    /* a record that fits exactly in the last 8 bytes needs no padding */
    pusher_ring_reader_init(&t->reader, &t->ring, 0);

    for (i = 0; i < 15; i++) {
        write_record(t, 4096 - 8, 20 + i);
        expect_record(t, 4096 - 8, 20 + i);
    }

    write_record(t, 4096 - 8 - 112 - 8, 40);
    expect_record(t, 4096 - 8 - 112 - 8, 40);
    assert_int_equal(t->desc->tail, 2 * CAPACITY - 8);

    write_record(t, 0, 41);
    assert_int_equal(t->desc->tail, 2 * CAPACITY);
    expect_record(t, 0, 41);
    expect_empty(t);
}


static void
test_ring_should_read_every_length_across_many_wraps(void **state)
{
    uint32_t      i, len, pads;
    uint64_t      before;
    ring_test_t  *t;

    t = *state;
    pads = 0;

    for (i = 0; t->desc->tail < 8 * CAPACITY; i++) {
        len = (i * 37) % (MAX_PAYLOAD + 1);
        before = t->desc->tail;

        write_record(t, len, i);

        if (t->desc->tail - before != record_size(len)) {
            pads++;
        }

        expect_record(t, len, i);
        expect_empty(t);
    }

    assert_true(pads > 0);
    assert_int_equal(t->reader.received, i);
    assert_int_equal(t->reader.lapped, 0);
    assert_int_equal(t->desc->records, i);
}


static void
test_ring_should_reject_record_over_max_size(void **state)
{
    uint8_t      *p;
    ring_test_t  *t;

    t = *state;

    assert_null(pusher_ring_claim(&t->ring, TYPE, MAX_PAYLOAD + 1));
    assert_null(pusher_ring_claim(&t->ring, TYPE, UINT32_MAX));
    assert_null(pusher_ring_claim(&t->ring, TYPE, UINT32_MAX - 7));
    assert_int_equal(pusher_ring_write(&t->ring, TYPE, t->payload,
                                       MAX_PAYLOAD + 1),
                     -1);

    /* a padding record cannot be written as a message */
    assert_null(pusher_ring_claim(&t->ring, PUSHER_RING_PADDING, 8));

    assert_int_equal(t->desc->tail_intent, 0);
    assert_int_equal(t->desc->tail, 0);
    assert_int_equal(t->desc->records, 0);
    expect_empty(t);

    /* max_record including the header is accepted, via claim and commit */
    p = pusher_ring_claim(&t->ring, TYPE, MAX_PAYLOAD);
    assert_non_null(p);
    assert_ptr_equal(p, t->buffer + 8);
    assert_int_equal(t->desc->tail_intent, MAX_RECORD);
    assert_int_equal(t->desc->tail, 0);

    /* claimed but not committed: invisible */
    fill(p, MAX_PAYLOAD, 7);
    expect_empty(t);

    pusher_ring_commit(&t->ring);
    assert_int_equal(t->desc->tail, MAX_RECORD);

    expect_record(t, MAX_PAYLOAD, 7);
    expect_empty(t);

    /* a commit without a claim publishes nothing */
    pusher_ring_commit(&t->ring);
    assert_int_equal(t->desc->tail, MAX_RECORD);
    assert_int_equal(t->desc->records, 1);
    expect_empty(t);
}


static void
test_ring_should_late_join_transmission(void **state)
{
    ring_test_t           *t;
    pusher_ring_reader_t   late;

    t = *state;

    write_record(t, 10, 1);
    write_record(t, 20, 2);
    write_record(t, 30, 3);

    /* from the tail: the old records are skipped */
    pusher_ring_reader_init(&late, &t->ring, 0);
    assert_int_equal(late.cursor, t->desc->tail);
    assert_true(pusher_ring_caught_up(&late, &t->ring));

    t->reader = late;
    expect_empty(t);

    write_record(t, 40, 4);
    expect_record(t, 40, 4);
    expect_empty(t);
    assert_int_equal(t->reader.received, 1);

    /* from the start: all of them */
    pusher_ring_reader_init(&t->reader, &t->ring, 1);
    assert_int_equal(t->reader.cursor, 0);

    expect_record(t, 10, 1);
    expect_record(t, 20, 2);
    expect_record(t, 30, 3);
    expect_record(t, 40, 4);
    expect_empty(t);

    assert_int_equal(t->reader.received, 4);
    assert_int_equal(t->reader.lapped, 0);
}


static void
test_ring_should_resync_lapped_reader_to_latest(void **state)
{
    uint32_t      i;
    ring_test_t  *t;

    t = *state;

    write_record(t, 50, 0);
    expect_record(t, 50, 0);

    /* more than a capacity while the reader is idle */
    for (i = 1; i <= 70; i++) {
        write_record(t, 1000, i);
    }

    assert_true(t->desc->tail > t->reader.cursor + CAPACITY);

    expect_lapped(t);
    assert_int_equal(t->reader.lapped, 1);
    assert_int_equal(t->reader.cursor, t->desc->latest);

    /* the latest record, then everything after it */
    expect_record(t, 1000, 70);
    expect_empty(t);

    write_record(t, 1, 71);
    write_record(t, 2000, 72);
    expect_record(t, 1, 71);
    expect_record(t, 2000, 72);
    expect_empty(t);

    assert_int_equal(t->reader.lapped, 1);
    assert_int_equal(t->reader.received, 4);
}


static void
test_ring_should_lap_reader_exactly_one_capacity_behind(void **state)
{
    uint32_t      i;
    ring_test_t  *t;

    t = *state;

    /* tail_intent == cursor + capacity: the check is strict, as Aeron's */
    for (i = 0; i < 16; i++) {
        write_record(t, 4096 - 8, i);
    }

    assert_int_equal(t->desc->tail_intent, CAPACITY);

    expect_lapped(t);
    assert_int_equal(t->reader.lapped, 1);
    assert_int_equal(t->reader.cursor, CAPACITY - 4096);

    expect_record(t, 4096 - 8, 15);
    expect_empty(t);
    assert_int_equal(t->reader.received, 1);

    /* one record less: everything arrives */
    pusher_ring_writer_reset(&t->ring);
    pusher_ring_reader_init(&t->reader, &t->ring, 1);

    for (i = 0; i < 15; i++) {
        write_record(t, 4096 - 8, 100 + i);
    }

    write_record(t, 4096 - 16, 115);
    assert_int_equal(t->desc->tail, CAPACITY - 8);

    for (i = 0; i < 15; i++) {
        expect_record(t, 4096 - 8, 100 + i);
    }

    expect_record(t, 4096 - 16, 115);
    expect_empty(t);
    assert_int_equal(t->reader.lapped, 0);
}


/* copy hook: the writer laps the reader while it copies */
static void
hook_overwrite(pusher_ring_t *ring)
{
    uint8_t   *p;
    uint32_t   i;

    pusher_ring_test_copied = NULL;

    for (i = 0; i < hook_records; i++) {
        fill(hook_payload, hook_len, 1000 + i);
        p = pusher_ring_claim(ring, TYPE, hook_len);
        assert_non_null(p);
        memcpy(p, hook_payload, hook_len);

        if (hook_commit || i + 1 < hook_records) {
            pusher_ring_commit(ring);
        }
    }
}


static void
test_ring_should_lap_reader_overwritten_while_copying(void **state)
{
    ring_test_t  *t;

    t = *state;

    write_record(t, 4000, 1);

    /* 17 records of 4000 bytes pass cursor + capacity */
    hook_records = 17;
    hook_len = 4000;
    hook_commit = 1;
    pusher_ring_test_copied = hook_overwrite;

    expect_lapped(t);

    assert_null(pusher_ring_test_copied);
    assert_int_equal(t->reader.lapped, 1);
    assert_int_equal(t->reader.received, 0);
    assert_int_equal(t->reader.cursor, t->desc->latest);

    expect_record(t, 4000, 1016);
    expect_empty(t);

    write_record(t, 7, 2);
    expect_record(t, 7, 2);
    expect_empty(t);

    assert_int_equal(t->reader.lapped, 1);
    assert_int_equal(t->reader.received, 2);
}


static void
test_ring_should_lap_reader_when_claim_overwrites_during_copy(void **state)
{
    uint64_t      latest;
    ring_test_t  *t;

    t = *state;

    write_record(t, 4000, 1);

    /* the last record is claimed and written, not committed */
    hook_records = 16;
    hook_len = 4000;
    hook_commit = 0;
    pusher_ring_test_copied = hook_overwrite;

    expect_lapped(t);

    latest = t->desc->latest;
    assert_int_equal(t->reader.lapped, 1);
    assert_int_equal(t->reader.cursor, latest);
    assert_true(t->desc->tail_intent > t->desc->tail);

    /* the latest committed record is intact and delivered */
    expect_record(t, 4000, 1014);
    expect_empty(t);

    pusher_ring_commit(&t->ring);
    expect_record(t, 4000, 1015);
    expect_empty(t);

    assert_int_equal(t->reader.lapped, 1);
    assert_int_equal(t->reader.received, 2);
}


static void
test_ring_should_deliver_record_when_writer_stays_behind_it(void **state)
{
    ring_test_t  *t;

    t = *state;

    write_record(t, 4000, 1);

    /* 15 more records end before cursor + capacity */
    hook_records = 15;
    hook_len = 4000;
    hook_commit = 1;
    pusher_ring_test_copied = hook_overwrite;

    expect_record(t, 4000, 1);
    assert_null(pusher_ring_test_copied);
    assert_true(t->desc->tail_intent < CAPACITY);

    assert_int_equal(t->reader.lapped, 0);
    assert_int_equal(t->reader.received, 1);
}


static void
corrupt(ring_test_t *t, uint64_t off, uint32_t length, int32_t type)
{
    pusher_ring_record_t  *h;

    h = (pusher_ring_record_t *) (t->buffer + off);
    h->length = length;
    h->type = type;
}


static void
expect_garbage_rejected(ring_test_t *t)
{
    uint64_t  lapped;

    lapped = t->reader.lapped;
    memset(t->buf, CANARY, MAX_RECORD);

    /* intact but impossible: skip to tail, count a lap, copy nothing */
    expect_lapped(t);

    assert_int_equal(t->reader.lapped, lapped + 1);
    assert_int_equal(t->reader.cursor, t->desc->tail);

    memset(t->payload, CANARY, MAX_RECORD);
    assert_memory_equal(t->buf, t->payload, MAX_RECORD);

    expect_empty(t);
}


/* restart the ring with the reader caught up at capacity - gap */
static void
fill_to_end_minus(ring_test_t *t, uint32_t gap)
{
    uint32_t  i;

    pusher_ring_writer_reset(&t->ring);
    pusher_ring_reader_init(&t->reader, &t->ring, 0);

    for (i = 0; i < 15; i++) {
        write_record(t, 4096 - 8, i);
        expect_record(t, 4096 - 8, i);
    }

    write_record(t, 4096 - 8 - gap, 15);
    expect_record(t, 4096 - 8 - gap, 15);

    assert_int_equal(t->desc->tail, CAPACITY - gap);
}


static void
test_ring_should_never_read_out_of_bounds_on_garbage_length(void **state)
{
    uint32_t      i;
    uint64_t      pos;
    ring_test_t  *t;

    static const uint32_t  lengths[] = {
        0, 1, 7, MAX_RECORD + 1, 0x7fffffff, 0xfffffff9, UINT32_MAX
    };
    static const uint32_t  pads[] = { 0, 8, 56, 72, 176, 4096, UINT32_MAX };
    static const uint32_t  second[] = { 8, 64, CAPACITY };

    t = *state;

    for (i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
        pos = t->desc->tail;
        write_record(t, 100, i);
        corrupt(t, pos & (CAPACITY - 1), lengths[i], TYPE);
        expect_garbage_rejected(t);
    }

    /* longer than max_record, yet inside the buffer and before tail */
    pos = t->desc->tail;
    write_record(t, 4000, 51);
    write_record(t, 4000, 52);
    write_record(t, 4000, 53);
    corrupt(t, pos & (CAPACITY - 1), MAX_RECORD + 1, TYPE);
    expect_garbage_rejected(t);

    /* a record running past tail */
    pos = t->desc->tail;
    write_record(t, 100, 50);
    corrupt(t, pos & (CAPACITY - 1), 200, TYPE);
    expect_garbage_rejected(t);

    /* a record near the end whose length crosses the end of the buffer */
    fill_to_end_minus(t, 64);
    write_record(t, 56, 16);
    write_record(t, 4000, 17);
    corrupt(t, CAPACITY - 64, 64 + 8, TYPE);
    expect_garbage_rejected(t);

    /* padding whose length is not the distance to the end */
    for (i = 0; i < sizeof(pads) / sizeof(pads[0]); i++) {
        fill_to_end_minus(t, 64);
        write_record(t, 100, 20 + i);
        write_record(t, 100, 40 + i);

        assert_int_equal(((pusher_ring_record_t *)
                          (t->buffer + CAPACITY - 64))->type,
                         PUSHER_RING_PADDING);

        corrupt(t, CAPACITY - 64, pads[i], PUSHER_RING_PADDING);
        expect_garbage_rejected(t);
    }

    /* a valid padding followed by another padding at index 0 */
    for (i = 0; i < sizeof(second) / sizeof(second[0]); i++) {
        fill_to_end_minus(t, 64);
        write_record(t, 100, 30 + i);
        corrupt(t, 0, second[i], PUSHER_RING_PADDING);
        expect_garbage_rejected(t);
    }

    /* the padding itself is fine: the record after it is delivered */
    fill_to_end_minus(t, 64);
    write_record(t, 100, 40);
    expect_record(t, 100, 40);
    expect_empty(t);
    assert_int_equal(t->reader.lapped, 0);
}


static void
test_ring_should_lap_reader_on_garbage_header_overwritten_meanwhile(
    void **state)
{
    uint64_t      pos;
    ring_test_t  *t;

    t = *state;

    write_record(t, 100, 1);
    pos = t->desc->tail;
    write_record(t, 100, 2);
    expect_record(t, 100, 1);

    /* the header is rewritten by a writer that laps us while we look */
    corrupt(t, pos, UINT32_MAX, TYPE);
    hook_records = 17;
    hook_len = 4000;
    hook_commit = 1;
    pusher_ring_test_copied = hook_overwrite;

    memset(t->buf, CANARY, MAX_RECORD);
    expect_lapped(t);

    assert_null(pusher_ring_test_copied);
    assert_int_equal(t->reader.lapped, 1);
    assert_int_equal(t->reader.cursor, t->desc->latest);

    memset(t->payload, CANARY, MAX_RECORD);
    assert_memory_equal(t->buf, t->payload, MAX_RECORD);

    expect_record(t, 4000, 1016);
    expect_empty(t);

    assert_int_equal(t->reader.received, 2);
}


static void
test_ring_should_arm_and_take_wake_once(void **state)
{
    ring_test_t  *t;

    t = *state;

    /* caught up: may sleep, the slot is armed */
    assert_int_equal(pusher_ring_arm(&t->ring, t->wake, &t->reader), 0);
    assert_int_equal(t->wake->armed, 1);

    /* the broker publishes and takes the wake-up exactly once */
    write_record(t, 24, 1);
    assert_int_equal(pusher_ring_take_wake(t->wake), 1);
    assert_int_equal(t->wake->armed, 0);
    assert_int_equal(pusher_ring_take_wake(t->wake), 0);

    /* not armed: no doorbell for the next publish */
    write_record(t, 25, 2);
    assert_int_equal(pusher_ring_take_wake(t->wake), 0);

    /* records arrived: drain again instead of sleeping */
    assert_int_equal(pusher_ring_arm(&t->ring, t->wake, &t->reader), 1);
    expect_record(t, 24, 1);
    assert_int_equal(pusher_ring_arm(&t->ring, t->wake, &t->reader), 1);
    expect_record(t, 25, 2);
    expect_empty(t);

    /* the slot stayed armed: one spurious doorbell, then none */
    assert_int_equal(pusher_ring_take_wake(t->wake), 1);
    assert_int_equal(pusher_ring_take_wake(t->wake), 0);

    assert_int_equal(pusher_ring_arm(&t->ring, t->wake, &t->reader), 0);
    write_record(t, 26, 3);
    assert_int_equal(pusher_ring_take_wake(t->wake), 1);
    assert_int_equal(pusher_ring_take_wake(t->wake), 0);
    expect_record(t, 26, 3);
    expect_empty(t);
}


static void
test_ring_should_reset_writer_to_a_new_generation(void **state)
{
    ring_test_t  *t;

    t = *state;

    write_record(t, 300, 1);
    write_record(t, 301, 2);
    memset(t->desc->pad, 0xff, sizeof(t->desc->pad));

    pusher_ring_writer_reset(&t->ring);

    assert_int_equal(t->desc->tail_intent, 0);
    assert_int_equal(t->desc->tail, 0);
    assert_int_equal(t->desc->latest, 0);
    assert_int_equal(t->desc->records, 0);
    assert_int_equal(t->desc->pad[0], 0);
    assert_int_equal(t->desc->pad[sizeof(t->desc->pad) - 1], 0);

    pusher_ring_reader_init(&t->reader, &t->ring, 1);
    expect_empty(t);

    write_record(t, 302, 3);
    expect_record(t, 302, 3);
    expect_empty(t);
}


/*
 * pusher_shm_check(): a segment whose header does not fit is refused with
 * a reason, never read past; segment_size below the ring offset is not
 * subtracted from (it used to wrap and pass).
 */
static void
test_shm_check_refuses_headers_that_do_not_fit(void **state)
{
    uint8_t              *base;
    uint64_t              size;
    pusher_ring_t         ring;
    pusher_shm_header_t  *hdr;

    (void) state;

    size = PUSHER_SHM_RING_OFFSET + PUSHER_RING_MIN_CAPACITY;
    base = aligned_alloc(64, size);
    assert_non_null(base);
    memset(base, 0, size);

    hdr = pusher_shm_header(base);

#define GOOD()                                                                \
    do {                                                                      \
        hdr->magic = PUSHER_SHM_MAGIC;                                        \
        hdr->layout_version = PUSHER_SHM_LAYOUT_VERSION;                      \
        hdr->generation = 7;                                                  \
        hdr->segment_size = size;                                             \
        hdr->desc_offset = PUSHER_SHM_DESC_OFFSET;                            \
        hdr->wake_offset = PUSHER_SHM_WAKE_OFFSET;                            \
        hdr->ring_offset = PUSHER_SHM_RING_OFFSET;                            \
        hdr->ring_capacity = PUSHER_RING_MIN_CAPACITY;                        \
    } while (0)

    GOOD();
    assert_null(pusher_shm_check(base, size, 7, &ring));
    assert_int_equal(ring.capacity, PUSHER_RING_MIN_CAPACITY);

    assert_string_equal(pusher_shm_check(base, PUSHER_SHM_RING_OFFSET - 1, 7,
                                         &ring),
                        "smaller than its header");

    assert_string_equal(pusher_shm_check(base, size, 8, &ring),
                        "another generation than WELCOME named");

    hdr->magic = 1;
    assert_string_equal(pusher_shm_check(base, size, 7, &ring),
                        "no ngx-pusher segment (magic)");
    GOOD();

    hdr->layout_version = PUSHER_SHM_LAYOUT_VERSION + 1;
    assert_string_equal(pusher_shm_check(base, size, 7, &ring),
                        "another layout version");
    GOOD();

    hdr->wake_offset = 0;
    assert_string_equal(pusher_shm_check(base, size, 7, &ring),
                        "other offsets");
    GOOD();

    /* below the ring offset: size - offset would wrap to ~2^64 */
    hdr->segment_size = 64;
    hdr->ring_capacity = (uint64_t) 1 << 40;
    assert_string_equal(pusher_shm_check(base, size, 7, &ring),
                        "segment_size does not match the file");
    GOOD();

    hdr->segment_size = size + 1;
    assert_string_equal(pusher_shm_check(base, size, 7, &ring),
                        "segment_size does not match the file");
    GOOD();

    hdr->ring_capacity = 2 * PUSHER_RING_MIN_CAPACITY;
    assert_string_equal(pusher_shm_check(base, size, 7, &ring),
                        "the ring does not fit the segment");
    GOOD();

    hdr->ring_capacity = PUSHER_RING_MIN_CAPACITY - 8;
    assert_string_equal(pusher_shm_check(base, size, 7, &ring),
                        "ring_capacity is not a power of two in range");

#undef GOOD

    free(base);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_shm_check_refuses_headers_that_do_not_fit),
        cmocka_unit_test_setup_teardown(
            test_ring_init_rejects_bad_capacity, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_ring_should_not_read_from_empty_ring, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_ring_should_read_first_message, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_ring_should_read_several_messages_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_ring_should_read_record_that_exactly_fills_the_end,
            setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_ring_should_cope_with_padding_and_wrap, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_ring_should_read_every_length_across_many_wraps,
            setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_ring_should_reject_record_over_max_size, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_ring_should_late_join_transmission, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_ring_should_resync_lapped_reader_to_latest, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_ring_should_lap_reader_exactly_one_capacity_behind,
            setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_ring_should_lap_reader_overwritten_while_copying,
            setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_ring_should_lap_reader_when_claim_overwrites_during_copy,
            setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_ring_should_deliver_record_when_writer_stays_behind_it,
            setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_ring_should_never_read_out_of_bounds_on_garbage_length,
            setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_ring_should_lap_reader_on_garbage_header_overwritten_meanwhile,
            setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_ring_should_arm_and_take_wake_once, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_ring_should_reset_writer_to_a_new_generation,
            setup, teardown),
    };

    return cmocka_run_group_tests_name("pusher ring", tests, NULL, NULL);
}
