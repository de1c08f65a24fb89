/*
 * ngx-pusher: the one shared-memory layout.
 *
 * The segment is created by pusher-broker (Boost.Interprocess
 * shared_memory_object + mapped_region) and mapped by every nginx worker
 * (shm_open + mmap).  Both sides compile this header: C11 in nginx and the
 * tests, C++20 in the broker.  Fields are fixed width, offsets never
 * pointers, and every size and offset is checked at compile time.
 *
 *   offset 0                     pusher_shm_header_t     (broker writes once)
 *   PUSHER_SHM_DESC_OFFSET       pusher_ring_desc_t      (broker writes)
 *   PUSHER_SHM_WAKE_OFFSET       pusher_shm_wake_t[]     (worker arms,
 *                                                         broker disarms)
 *   PUSHER_SHM_RING_OFFSET       ring buffer, capacity bytes (broker writes)
 *
 * Attach protocol (Aeron CnC style): the broker fills the header and the
 * descriptor, then stores layout_version last with release.  A worker that
 * loads layout_version == 0 retries later; any other value than
 * PUSHER_SHM_LAYOUT_VERSION is incompatible.  A restarted broker makes a new
 * segment with a new generation.
 */

#ifndef PUSHER_SHM_H
#define PUSHER_SHM_H


#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif


#ifdef __cplusplus
#define PUSHER_SHM_STATIC_ASSERT(e, m)  static_assert(e, m)
#else
#define PUSHER_SHM_STATIC_ASSERT(e, m)  _Static_assert(e, m)
#endif


/* "PUSHRING" in little-endian byte order */
#define PUSHER_SHM_MAGIC             0x474e495248535550ULL
#define PUSHER_SHM_LAYOUT_VERSION    2
#define PUSHER_SHM_CACHE_LINE        64

/* max nginx workers attached to one broker at a time */
#define PUSHER_SHM_WAKE_SLOTS        256

#define PUSHER_SHM_HEADER_SIZE       128
#define PUSHER_SHM_DESC_OFFSET       128
#define PUSHER_SHM_DESC_SIZE         128
#define PUSHER_SHM_WAKE_OFFSET       256
#define PUSHER_SHM_WAKE_SIZE         64
#define PUSHER_SHM_RING_OFFSET       20480

/* ring capacity: power of two, 64 KiB .. 1 GiB; default 8 MiB */
#define PUSHER_RING_MIN_CAPACITY     (64 * 1024)
#define PUSHER_RING_MAX_CAPACITY     (1024 * 1024 * 1024ULL)
#define PUSHER_RING_DEFAULT_CAPACITY (8 * 1024 * 1024)

#define PUSHER_SHM_SIZE(capacity)    (PUSHER_SHM_RING_OFFSET + (capacity))


typedef struct {
    uint64_t  magic;
    uint32_t  layout_version;  /* 0 while initialising; stored last */
    uint32_t  header_size;     /* PUSHER_SHM_HEADER_SIZE */
    uint64_t  generation;      /* random, new for every broker start */
    int64_t   broker_pid;
    uint64_t  start_time_ms;   /* unix time of the broker start, ms */
    uint64_t  segment_size;    /* bytes mapped */
    uint64_t  desc_offset;
    uint64_t  wake_offset;
    uint64_t  ring_offset;
    uint64_t  ring_capacity;   /* power of two */
    uint32_t  wake_slots;
    uint32_t  max_record;      /* ring_capacity / 8: largest record */
    uint8_t   pad[PUSHER_SHM_HEADER_SIZE - 88];
} pusher_shm_header_t;


/*
 * Broadcast ring descriptor (Aeron broadcast buffer trailer).  Written only
 * by the broker; read by every worker.  Positions are byte counts since the
 * start of this generation and never wrap (2^64 bytes).
 */
typedef struct {
    uint64_t  tail_intent;     /* end of the record being written */
    uint64_t  tail;            /* end of the last complete record */
    uint64_t  latest;          /* start of the last complete record */
    uint64_t  records;         /* records published (statistics) */
    uint8_t   pad[PUSHER_SHM_DESC_SIZE - 32];
} pusher_ring_desc_t;


/*
 * One wake slot per attached worker, one cache line each.  The worker
 * stores armed = 1 before it sleeps; the broker exchanges it to 0 after a
 * publish and sends a doorbell over the control connection if it was 1.
 * The worker also stores (release) its reader's cursor after each record
 * it has copied out of the ring: the broker does not write over what a
 * worker that keeps up has yet to read (broker/src/ring_flow.hpp).
 */
typedef struct {
    uint32_t  armed;
    uint32_t  pid;             /* owner, for diagnostics */
    uint64_t  cursor;          /* everything before it is read */
    uint8_t   pad[PUSHER_SHM_WAKE_SIZE - 16];
} pusher_shm_wake_t;


/* every record: header + payload, padded to 8 bytes */
typedef struct {
    uint32_t  length;          /* header + payload, before alignment */
    int32_t   type;
} pusher_ring_record_t;

#define PUSHER_RING_ALIGNMENT        8
#define PUSHER_RING_RECORD_HEADER    8
#define PUSHER_RING_ALIGN(n)                                                  \
    (((n) + (PUSHER_RING_ALIGNMENT - 1))                                      \
     & ~(uint64_t) (PUSHER_RING_ALIGNMENT - 1))

/* record types */
#define PUSHER_RING_PADDING          (-1)
#define PUSHER_RING_EVENT            1

/*
 * Answers to one socket, in the ring so that they are ordered with the
 * events around them: the socket receives exactly the records after its
 * answer.  The payload is a sequence of fields as in pusher_ctl.h
 * (uint32_t length + bytes each); every worker reads them, the one that
 * holds the socket acts.
 *
 *   PRESENCE_JOINED  socket_id, channel, status, json, cache
 *                    status "ok" (json: the subscription_succeeded
 *                    message) or "limit"; for presence-cache- channels
 *                    cache holds the cached event JSON ("" for a miss)
 *   CACHE            socket_id, channel, json
 *                    the cached event of a cache channel, "" for a miss
 *   TERMINATE        app_id, user_id
 *                    the HTTP API's terminate_connections: every worker
 *                    closes the sockets signed in as user_id and the
 *                    presence members with that user_id (4009)
 *   RECONNECT        node, count
 *                    the cluster (docs/cluster.md): count event records
 *                    of another node never reached this host; every
 *                    worker tells its subscribed sockets to reconnect
 *                    (4200), as after a lap: loss is announced, never
 *                    silent
 */
#define PUSHER_RING_PRESENCE_JOINED  2
#define PUSHER_RING_CACHE            3
#define PUSHER_RING_TERMINATE        4
#define PUSHER_RING_RECONNECT        5


/*
 * PUSHER_RING_EVENT payload: one event for one or more channels of an app.
 * The event's JSON differs between its channels only in the channel name,
 * so the record holds it once, split around the name: a worker builds the
 * frame of a channel it has subscribers of (WebSocket header, prefix,
 * name, suffix) once, whatever the number of subscribers, and a Laravel
 * event broadcast on 100 channels costs the ring its data once.
 *
 *   pusher_ring_event_t
 *   app_id      app_id_len bytes
 *   socket_id   socket_id_len bytes (excluded socket; 0 = none)
 *   channels    channels x (uint8_t length, name)
 *   prefix      prefix_len bytes: the JSON up to the channel name
 *   suffix      suffix_len bytes: the JSON after it
 *
 * With PUSHER_RING_EVENT_WHOLE (client events, presence events: JSON
 * built elsewhere) the record has one channel and prefix is the whole
 * JSON, suffix empty.
 */
typedef struct {
    uint32_t  prefix_len;
    uint32_t  suffix_len;
    uint16_t  app_id_len;
    uint16_t  channels;        /* 1 .. PUSHER_RING_EVENT_CHANNELS_MAX */
    uint8_t   socket_id_len;
    uint8_t   flags;
    uint8_t   pad[2];
} pusher_ring_event_t;

#define PUSHER_RING_EVENT_WHOLE      0x01

#define PUSHER_APP_ID_MAX            255
#define PUSHER_CHANNEL_MAX           200
#define PUSHER_SOCKET_ID_MAX         41
#define PUSHER_RING_EVENT_CHANNELS_MAX  65535


PUSHER_SHM_STATIC_ASSERT(sizeof(pusher_shm_header_t)
                         == PUSHER_SHM_HEADER_SIZE, "header size");
PUSHER_SHM_STATIC_ASSERT(offsetof(pusher_shm_header_t, layout_version) == 8,
                         "layout_version offset");
PUSHER_SHM_STATIC_ASSERT(offsetof(pusher_shm_header_t, generation) == 16,
                         "generation offset");
PUSHER_SHM_STATIC_ASSERT(offsetof(pusher_shm_header_t, ring_capacity) == 72,
                         "ring_capacity offset");
PUSHER_SHM_STATIC_ASSERT(offsetof(pusher_shm_header_t, max_record) == 84,
                         "max_record offset");
PUSHER_SHM_STATIC_ASSERT(sizeof(pusher_ring_desc_t) == PUSHER_SHM_DESC_SIZE,
                         "descriptor size");
PUSHER_SHM_STATIC_ASSERT(offsetof(pusher_ring_desc_t, tail) == 8,
                         "tail offset");
PUSHER_SHM_STATIC_ASSERT(offsetof(pusher_ring_desc_t, latest) == 16,
                         "latest offset");
PUSHER_SHM_STATIC_ASSERT(sizeof(pusher_shm_wake_t) == PUSHER_SHM_WAKE_SIZE,
                         "wake slot size");
PUSHER_SHM_STATIC_ASSERT(PUSHER_SHM_WAKE_OFFSET
                         + PUSHER_SHM_WAKE_SLOTS * PUSHER_SHM_WAKE_SIZE
                         <= PUSHER_SHM_RING_OFFSET, "wake slots fit");
PUSHER_SHM_STATIC_ASSERT(PUSHER_SHM_RING_OFFSET % 4096 == 0,
                         "ring is page aligned");
PUSHER_SHM_STATIC_ASSERT(sizeof(pusher_ring_record_t)
                         == PUSHER_RING_RECORD_HEADER, "record header");
PUSHER_SHM_STATIC_ASSERT(sizeof(pusher_ring_event_t) == 16, "event header");


/*
 * Atomic accessors.  Plain fixed-width fields accessed through the
 * __atomic builtins compile the same in C11 and C++20.
 */

static inline uint64_t
pusher_load_acquire_u64(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}


static inline void
pusher_store_release_u64(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}


static inline uint32_t
pusher_load_acquire_u32(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}


static inline void
pusher_store_release_u32(uint32_t *p, uint32_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}


static inline pusher_shm_header_t *
pusher_shm_header(void *base)
{
    return (pusher_shm_header_t *) base;
}


static inline pusher_ring_desc_t *
pusher_shm_desc(void *base)
{
    return (pusher_ring_desc_t *) ((uint8_t *) base + PUSHER_SHM_DESC_OFFSET);
}


static inline pusher_shm_wake_t *
pusher_shm_wake(void *base, uint32_t slot)
{
    return (pusher_shm_wake_t *) ((uint8_t *) base + PUSHER_SHM_WAKE_OFFSET
                                  + (size_t) slot * PUSHER_SHM_WAKE_SIZE);
}


static inline uint8_t *
pusher_shm_ring(void *base)
{
    return (uint8_t *) base + PUSHER_SHM_RING_OFFSET;
}


#ifdef __cplusplus
}
#endif

#endif /* PUSHER_SHM_H */
