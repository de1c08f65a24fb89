/*
 * ngx-pusher: lossy single-writer broadcast ring (see pusher_ring.h).
 *
 * The byte at position p lives at buffer[p & mask].  The record at
 * position p is intact while p + capacity > tail_intent: the writer has
 * not yet announced the bytes that replace it.
 *
 * Record headers are stored and loaded with relaxed atomics, so a header
 * being overwritten reads as some whole value, never as a torn or twice
 * loaded one.  Every length taken from a header is bounded before it is
 * used, and a copy counts only if its position is still intact after the
 * copy.  Payload bytes are copied with memcpy() and may race with the
 * writer; that race is what the check after the copy detects (the seqlock
 * argument: a release fence after the tail_intent store in the writer, an
 * acquire fence after the copy in the reader).
 */


#include <string.h>

#include "pusher_ring.h"


#ifdef PUSHER_RING_TEST_HOOKS

/*
 * tests only: pusher_ring_read() calls it after the copy, or after reading
 * an impossible header, just before it checks tail_intent again
 */
void  (*pusher_ring_test_copied)(pusher_ring_t *ring);

#define pusher_ring_test_hook(ring)                                           \
    if (pusher_ring_test_copied != NULL) {                                    \
        pusher_ring_test_copied(ring);                                        \
    }

#else

#define pusher_ring_test_hook(ring)

#endif


static int pusher_ring_lapped(pusher_ring_reader_t *reader,
    pusher_ring_t *ring);


static inline uint32_t
pusher_ring_get_length(const uint8_t *p)
{
    return __atomic_load_n(&((const pusher_ring_record_t *) p)->length,
                           __ATOMIC_RELAXED);
}


static inline int32_t
pusher_ring_get_type(const uint8_t *p)
{
    return __atomic_load_n(&((const pusher_ring_record_t *) p)->type,
                           __ATOMIC_RELAXED);
}


static inline void
pusher_ring_put_header(uint8_t *p, uint32_t length, int32_t type)
{
    pusher_ring_record_t  *h;

    h = (pusher_ring_record_t *) p;

    __atomic_store_n(&h->length, length, __ATOMIC_RELAXED);
    __atomic_store_n(&h->type, type, __ATOMIC_RELAXED);
}


static inline int
pusher_ring_intact(const pusher_ring_t *ring, uint64_t pos,
    uint64_t tail_intent)
{
    return pos + ring->capacity > tail_intent;
}


int
pusher_ring_init(pusher_ring_t *ring, uint8_t *buffer, uint64_t capacity,
    pusher_ring_desc_t *desc)
{
    if (capacity < PUSHER_RING_MIN_CAPACITY
        || capacity > PUSHER_RING_MAX_CAPACITY
        || (capacity & (capacity - 1)) != 0
        || ((uintptr_t) buffer & (PUSHER_RING_ALIGNMENT - 1)) != 0)
    {
        return -1;
    }

    ring->buffer = buffer;
    ring->desc = desc;
    ring->capacity = capacity;
    ring->mask = capacity - 1;
    ring->max_record = (uint32_t) (capacity / 8);

    return 0;
}


const char *
pusher_shm_check(uint8_t *base, uint64_t mapped, uint64_t generation,
    pusher_ring_t *ring)
{
    uint64_t              size, capacity;
    pusher_shm_header_t  *hdr;

    if (mapped < PUSHER_SHM_RING_OFFSET) {
        return "smaller than its header";
    }

    hdr = pusher_shm_header(base);

    if (__atomic_load_n(&hdr->magic, __ATOMIC_RELAXED) != PUSHER_SHM_MAGIC) {
        return "no ngx-pusher segment (magic)";
    }

    /* pairs with the broker's store-release of layout_version, last */
    if (__atomic_load_n(&hdr->layout_version, __ATOMIC_ACQUIRE)
        != PUSHER_SHM_LAYOUT_VERSION)
    {
        return "another layout version";
    }

    if (__atomic_load_n(&hdr->generation, __ATOMIC_RELAXED) != generation) {
        return "another generation than WELCOME named";
    }

    if (__atomic_load_n(&hdr->ring_offset, __ATOMIC_RELAXED)
            != PUSHER_SHM_RING_OFFSET
        || __atomic_load_n(&hdr->desc_offset, __ATOMIC_RELAXED)
            != PUSHER_SHM_DESC_OFFSET
        || __atomic_load_n(&hdr->wake_offset, __ATOMIC_RELAXED)
            != PUSHER_SHM_WAKE_OFFSET)
    {
        return "other offsets";
    }

    size = __atomic_load_n(&hdr->segment_size, __ATOMIC_RELAXED);
    capacity = __atomic_load_n(&hdr->ring_capacity, __ATOMIC_RELAXED);

    if (size > mapped || size < PUSHER_SHM_RING_OFFSET) {
        return "segment_size does not match the file";
    }

    if (capacity > size - PUSHER_SHM_RING_OFFSET) {
        return "the ring does not fit the segment";
    }

    if (pusher_ring_init(ring, pusher_shm_ring(base), capacity,
                         pusher_shm_desc(base))
        != 0)
    {
        return "ring_capacity is not a power of two in range";
    }

    return NULL;
}


void
pusher_ring_writer_reset(pusher_ring_t *ring)
{
    pusher_ring_desc_t  *desc;

    desc = ring->desc;

    /* a new generation is a new segment: no reader depends on this order */
    __atomic_store_n(&desc->tail_intent, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&desc->latest, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&desc->records, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&desc->tail, 0, __ATOMIC_RELEASE);
    memset(desc->pad, 0, sizeof(desc->pad));
}


uint8_t *
pusher_ring_claim(pusher_ring_t *ring, int32_t type, uint32_t len)
{
    uint8_t             *p;
    uint64_t             tail, off, size, pad;
    pusher_ring_desc_t  *desc;

    if (len > ring->max_record - PUSHER_RING_RECORD_HEADER
        || type == PUSHER_RING_PADDING)
    {
        return NULL;
    }

    desc = ring->desc;

    /* tail is written by this thread only */
    tail = __atomic_load_n(&desc->tail, __ATOMIC_RELAXED);

    size = PUSHER_RING_ALIGN((uint64_t) len + PUSHER_RING_RECORD_HEADER);
    off = tail & ring->mask;
    pad = 0;

    if (size > ring->capacity - off) {
        pad = ring->capacity - off;
    }

    /*
     * Announce the bytes about to be overwritten.  The release fence keeps
     * this store ahead of every header and payload store that follows; it
     * pairs with the acquire fence after the copy in pusher_ring_read(): a
     * reader whose copy saw any of the new bytes then loads this
     * tail_intent (or a later one) and discards the copy.
     */
    __atomic_store_n(&desc->tail_intent, tail + pad + size, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);

    if (pad != 0) {
        /* pad < size <= max_record: fits in the 32-bit length */
        pusher_ring_put_header(ring->buffer + off, (uint32_t) pad,
                               PUSHER_RING_PADDING);
        off = 0;
    }

    p = ring->buffer + off;
    pusher_ring_put_header(p, len + PUSHER_RING_RECORD_HEADER, type);

    return p + PUSHER_RING_RECORD_HEADER;
}


uint64_t
pusher_ring_next_tail(const pusher_ring_t *ring, uint64_t tail, uint32_t len)
{
    uint64_t  off, size;

    /* as pusher_ring_claim() places a record */
    size = PUSHER_RING_ALIGN((uint64_t) len + PUSHER_RING_RECORD_HEADER);
    off = tail & ring->mask;

    if (size > ring->capacity - off) {
        tail += ring->capacity - off;
    }

    return tail + size;
}


uint64_t
pusher_ring_tail(const pusher_ring_t *ring)
{
    /* tail is written by the writer's thread only */
    return __atomic_load_n(&ring->desc->tail, __ATOMIC_RELAXED);
}


void
pusher_ring_commit(pusher_ring_t *ring)
{
    uint8_t             *p;
    uint64_t             start, end;
    pusher_ring_desc_t  *desc;

    desc = ring->desc;

    /* tail, tail_intent and the headers are written by this thread only */
    start = __atomic_load_n(&desc->tail, __ATOMIC_RELAXED);
    end = __atomic_load_n(&desc->tail_intent, __ATOMIC_RELAXED);

    if (start == end) {
        return;
    }

    /* latest is the record itself, past the padding a wrap put before it */
    p = ring->buffer + (start & ring->mask);

    if (pusher_ring_get_type(p) == PUSHER_RING_PADDING) {
        start += pusher_ring_get_length(p);
    }

    /* pairs with the load-acquire of latest in pusher_ring_lapped() */
    __atomic_store_n(&desc->latest, start, __ATOMIC_RELEASE);

    /*
     * Publishes the header and payload stores: pairs with the load-acquire
     * of tail in pusher_ring_read(); stored after latest, so a reader that
     * sees this tail sees this latest too.
     */
    __atomic_store_n(&desc->tail, end, __ATOMIC_RELEASE);

    __atomic_store_n(&desc->records,
                     __atomic_load_n(&desc->records, __ATOMIC_RELAXED) + 1,
                     __ATOMIC_RELAXED);
}


int
pusher_ring_write(pusher_ring_t *ring, int32_t type, const void *payload,
    uint32_t len)
{
    uint8_t  *p;

    p = pusher_ring_claim(ring, type, len);
    if (p == NULL) {
        return -1;
    }

    memcpy(p, payload, len);

    pusher_ring_commit(ring);

    return 0;
}


void
pusher_ring_reader_init(pusher_ring_reader_t *reader, pusher_ring_t *ring,
    int from_start)
{
    /* pairs with the store-release of tail in pusher_ring_commit() */
    reader->cursor = from_start ? 0 : __atomic_load_n(&ring->desc->tail,
                                                      __ATOMIC_ACQUIRE);
    reader->lapped = 0;
    reader->received = 0;
}


int
pusher_ring_read(pusher_ring_reader_t *reader, pusher_ring_t *ring,
    uint8_t *buf, int32_t *type, uint32_t *len)
{
    int32_t              t;
    uint8_t             *p;
    uint32_t             n;
    uint64_t             cursor, tail, pos, off;
    pusher_ring_desc_t  *desc;

    desc = ring->desc;
    cursor = reader->cursor;

    /* pairs with the store-release of tail in pusher_ring_commit() */
    tail = __atomic_load_n(&desc->tail, __ATOMIC_ACQUIRE);

    /* cursor > tail: resynced to a latest whose tail is not visible yet */
    if (cursor >= tail) {
        return PUSHER_RING_EMPTY;
    }

    /*
     * Records start aligned; a position that is not came from a corrupt
     * descriptor (a lap to its latest, or its tail): nothing there can be
     * read, skip to the tail once and count it as a lap.
     */
    if (((cursor | tail) & (PUSHER_RING_ALIGNMENT - 1)) != 0) {
        reader->cursor = tail;
        reader->lapped++;
        return PUSHER_RING_LAPPED;
    }

    /*
     * Already overwritten?  The load-acquire keeps the header loads below
     * after it; it reads the store of tail_intent in pusher_ring_claim().
     */
    if (!pusher_ring_intact(ring, cursor,
                            __atomic_load_n(&desc->tail_intent,
                                            __ATOMIC_ACQUIRE)))
    {
        return pusher_ring_lapped(reader, ring);
    }

    pos = cursor;
    off = cursor & ring->mask;
    p = ring->buffer + off;
    n = pusher_ring_get_length(p);
    t = pusher_ring_get_type(p);

    if (t == PUSHER_RING_PADDING) {

        /* the writer pads exactly to the end, then writes the record at 0 */
        if (n != ring->capacity - off) {
            goto invalid;
        }

        pos += n;
        p = ring->buffer;
        n = pusher_ring_get_length(p);
        t = pusher_ring_get_type(p);

        if (t == PUSHER_RING_PADDING) {
            goto invalid;
        }
    }

    /* bound the copy before it: the header may be garbage being rewritten */
    if (n < PUSHER_RING_RECORD_HEADER
        || n > ring->max_record
        || (pos & ring->mask) + n > ring->capacity
        || pos + PUSHER_RING_ALIGN((uint64_t) n) > tail)
    {
        goto invalid;
    }

    memcpy(buf, p + PUSHER_RING_RECORD_HEADER, n - PUSHER_RING_RECORD_HEADER);

    pusher_ring_test_hook(ring);

    /*
     * Pairs with the release fence after the tail_intent store in
     * pusher_ring_claim(): the loads of the copy above are ordered before
     * the load of tail_intent below, so if the copy saw bytes of a newer
     * record, this load sees the tail_intent that announced them.  Checked
     * against cursor, not pos, as the padding header was read there.
     */
    __atomic_thread_fence(__ATOMIC_ACQUIRE);

    if (!pusher_ring_intact(ring, cursor,
                            __atomic_load_n(&desc->tail_intent,
                                            __ATOMIC_RELAXED)))
    {
        return pusher_ring_lapped(reader, ring);
    }

    reader->cursor = pos + PUSHER_RING_ALIGN((uint64_t) n);
    reader->received++;

    *type = t;
    *len = n - PUSHER_RING_RECORD_HEADER;

    return PUSHER_RING_OK;

invalid:

    pusher_ring_test_hook(ring);

    /* as above: orders the header loads before the tail_intent load */
    __atomic_thread_fence(__ATOMIC_ACQUIRE);

    if (!pusher_ring_intact(ring, cursor,
                            __atomic_load_n(&desc->tail_intent,
                                            __ATOMIC_RELAXED)))
    {
        return pusher_ring_lapped(reader, ring);
    }

    /*
     * An intact header that the writer cannot have written: nothing up to
     * tail can be trusted, skip it all and count it as a lap.
     */
    reader->cursor = tail;
    reader->lapped++;

    return PUSHER_RING_LAPPED;
}


static int
pusher_ring_lapped(pusher_ring_reader_t *reader, pusher_ring_t *ring)
{
    reader->lapped++;

    /*
     * Pairs with the store-release of latest in pusher_ring_commit().
     * latest >= cursor: the tail loaded by the caller was stored after the
     * latest of its record, and cursor is at or before that record.
     */
    reader->cursor = __atomic_load_n(&ring->desc->latest, __ATOMIC_ACQUIRE);

    return PUSHER_RING_LAPPED;
}


int
pusher_ring_caught_up(const pusher_ring_reader_t *reader,
    const pusher_ring_t *ring)
{
    /* pairs with the store-release of tail in pusher_ring_commit() */
    return reader->cursor >= __atomic_load_n(&ring->desc->tail,
                                             __ATOMIC_ACQUIRE);
}


/*
 * The wake protocol is a Dekker pair:
 *
 *   worker, pusher_ring_arm():          broker, commit + take_wake:
 *     W1  store armed = 1   (seq_cst)     B1  store tail       (release)
 *     W2  load tail         (seq_cst)     B2  fence            (seq_cst)
 *                                         B3  load armed / exchange
 *
 * In the single total order of seq_cst operations either B2 precedes W2,
 * and then W2 sees the tail of B1 (B1 is sequenced before the fence B2), or
 * W2 precedes B2, and then W1 does too and B3, sequenced after the fence
 * B2, sees armed == 1.  The worker never sleeps with a record it has not
 * seen unless the broker rings its doorbell.
 */

int
pusher_ring_arm(pusher_ring_t *ring, pusher_shm_wake_t *wake,
    const pusher_ring_reader_t *reader)
{
    uint64_t  tail;

    /* W1: pairs with B3, the load and exchange in pusher_ring_take_wake() */
    __atomic_store_n(&wake->armed, 1, __ATOMIC_SEQ_CST);

    /*
     * W2: pairs with B1, the store-release of tail in pusher_ring_commit(),
     * through B2, the seq_cst fence in pusher_ring_take_wake()
     */
    tail = __atomic_load_n(&ring->desc->tail, __ATOMIC_SEQ_CST);

    return reader->cursor < tail;
}


int
pusher_ring_take_wake(pusher_shm_wake_t *wake)
{
    /*
     * B2: orders B1, the caller's store of tail in pusher_ring_commit(),
     * before B3 below; pairs with W1 and W2 in pusher_ring_arm()
     */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);

    /* B3: a plain load first, so a busy stream does not write the line */
    if (__atomic_load_n(&wake->armed, __ATOMIC_RELAXED) == 0) {
        return 0;
    }

    /* B3: only this thread clears armed; claims the wake-up once */
    return __atomic_exchange_n(&wake->armed, 0, __ATOMIC_SEQ_CST) != 0;
}


void
pusher_ring_store_cursor(pusher_shm_wake_t *wake,
    const pusher_ring_reader_t *reader)
{
    /*
     * The records before the cursor have been copied out of the ring
     * (pusher_ring_read() copies before it returns): pairs with the
     * load-acquire in pusher_ring_load_cursor(), after which the broker
     * writes over them.
     */
    __atomic_store_n(&wake->cursor, reader->cursor, __ATOMIC_RELEASE);
}


uint64_t
pusher_ring_load_cursor(const pusher_shm_wake_t *wake)
{
    return __atomic_load_n(&wake->cursor, __ATOMIC_ACQUIRE);
}
