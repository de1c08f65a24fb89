/*
 * ngx-pusher: lossy broadcast ring over the segment of pusher_shm.h.
 *
 * One writer (the broker), any number of readers (nginx workers), each
 * reader with a private cursor.  Aeron broadcast buffer discipline:
 *
 *   writer: store tail_intent; release fence; write record(s);
 *           store-release latest; store-release tail
 *   reader: load-acquire tail; copy record to a private buffer;
 *           acquire fence; load tail_intent; the copy is valid only if
 *           cursor + capacity > tail_intent (not overwritten meanwhile)
 *
 * A reader that fell more than a capacity behind is "lapped": it counts
 * it and jumps to latest.  The writer never waits inside the ring; its
 * owner decides before writing, from the cursors the readers publish in
 * their wake slots (pusher_ring_store_cursor), whether a batch would lap a
 * reader that keeps up (docs/architecture.md, "The ring").
 */

#ifndef PUSHER_RING_H
#define PUSHER_RING_H


#include "pusher_shm.h"

#ifdef __cplusplus
extern "C" {
#endif


typedef struct {
    uint8_t             *buffer;      /* capacity bytes */
    pusher_ring_desc_t  *desc;
    uint64_t             capacity;    /* power of two */
    uint64_t             mask;        /* capacity - 1 */
    uint32_t             max_record;  /* capacity / 8, header included */
} pusher_ring_t;


typedef struct {
    uint64_t             cursor;      /* position of the next record */
    uint64_t             lapped;      /* times resynchronised */
    uint64_t             received;    /* records delivered */
} pusher_ring_reader_t;


/* pusher_ring_read() results */
#define PUSHER_RING_OK       0        /* a record was copied */
#define PUSHER_RING_EMPTY    1        /* nothing new */
#define PUSHER_RING_LAPPED   2        /* records lost; cursor resynced */


/*
 * 0 on success, -1 if capacity is not a power of two in range or buffer is
 * not 8-byte aligned
 */
int pusher_ring_init(pusher_ring_t *ring, uint8_t *buffer, uint64_t capacity,
    pusher_ring_desc_t *desc);

/*
 * A mapped segment as a worker finds it: NULL if its header fits this
 * layout, "mapped" bytes and the generation WELCOME named, and the ring it
 * describes lies inside it (then ring is initialised); else why not, for
 * the log.  Every field is read once, as a broken or hostile writer may
 * change it meanwhile.
 */
const char *pusher_shm_check(uint8_t *base, uint64_t mapped,
    uint64_t generation, pusher_ring_t *ring);

/* writer side: clears the descriptor (new generation) */
void pusher_ring_writer_reset(pusher_ring_t *ring);

/*
 * Writer: reserve a record of "len" payload bytes and return where to
 * write the payload, or NULL if len + PUSHER_RING_RECORD_HEADER exceeds
 * max_record or type is PUSHER_RING_PADDING.  The record is invisible to
 * readers until pusher_ring_commit().  One claim at a time; a commit
 * without a claim does nothing.
 */
uint8_t *pusher_ring_claim(pusher_ring_t *ring, int32_t type, uint32_t len);
void pusher_ring_commit(pusher_ring_t *ring);

/*
 * Writer: the tail after a record of len payload bytes claimed at tail,
 * the padding of a wrap included.  With it the writer sees beforehand
 * whether a batch of records overwrites what a reader has yet to read: it
 * does iff the batch ends beyond that reader's cursor + capacity.
 */
uint64_t pusher_ring_next_tail(const pusher_ring_t *ring, uint64_t tail,
    uint32_t len);

/* writer: the current tail */
uint64_t pusher_ring_tail(const pusher_ring_t *ring);

/* claim + copy + commit; 0 on success, -1 if too big */
int pusher_ring_write(pusher_ring_t *ring, int32_t type, const void *payload,
    uint32_t len);

/*
 * Reader: start at the current tail (from_start == 0) or at position 0 of
 * this generation (from_start == 1, for a broker that started after us).
 */
void pusher_ring_reader_init(pusher_ring_reader_t *reader, pusher_ring_t *ring,
    int from_start);

/*
 * Copy the next record's payload into buf (at least ring->max_record bytes)
 * and set *type and *len.  Returns PUSHER_RING_OK, PUSHER_RING_EMPTY or
 * PUSHER_RING_LAPPED (the reader was overrun; it has been moved to the
 * latest record and reader->lapped incremented: call again).  A record
 * header that the writer cannot have written is also reported as
 * PUSHER_RING_LAPPED, with the reader moved to the tail.
 */
int pusher_ring_read(pusher_ring_reader_t *reader, pusher_ring_t *ring,
    uint8_t *buf, int32_t *type, uint32_t *len);

/* 1 if the reader has nothing to read */
int pusher_ring_caught_up(const pusher_ring_reader_t *reader,
    const pusher_ring_t *ring);

/*
 * Wake protocol (a Dekker pair with the broker's pusher_ring_take_wake):
 * the worker stores armed = 1 then loads tail; the broker stores tail then
 * exchanges armed.  Both seq_cst, so either the worker sees the new tail or
 * the broker sees armed == 1 and rings the doorbell.
 *
 * pusher_ring_arm returns 1 if records arrived meanwhile (drain again, the
 * slot may stay armed and cause one spurious doorbell), 0 if it may sleep.
 */
int pusher_ring_arm(pusher_ring_t *ring, pusher_shm_wake_t *wake,
    const pusher_ring_reader_t *reader);

/* broker: 1 if the slot was armed (now disarmed): send a doorbell */
int pusher_ring_take_wake(pusher_shm_wake_t *wake);

/*
 * Worker: everything before the reader's cursor is handed on; the broker
 * may now overwrite it (pusher_shm_wake_t.cursor, store-release).
 */
void pusher_ring_store_cursor(pusher_shm_wake_t *wake,
    const pusher_ring_reader_t *reader);

/* broker: the position a worker has read up to (load-acquire) */
uint64_t pusher_ring_load_cursor(const pusher_shm_wake_t *wake);


#ifdef __cplusplus
}
#endif

#endif /* PUSHER_RING_H */
