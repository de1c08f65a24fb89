/*
 * ngx-pusher: broadcast ring stress test.
 *
 * One writer and N readers share an anonymous MAP_SHARED mapping laid out
 * as pusher_shm.h says, with the smallest ring (64 KiB) so that readers
 * get lapped.  The writer publishes records of 16 .. max_record - 8 bytes:
 *
 *   uint64_t  seq
 *   uint32_t  len        payload length
 *   uint32_t  sum        FNV-1a over the payload with sum taken as 0
 *   data                 bytes generated from seq
 *
 * Every reader checks every record it accepts: type, length, checksum
 * (never a torn record), seq strictly increasing, and seq exactly one more
 * than the previous one unless the ring reported a lap in between.  Reader
 * roles by index modulo 4: fast (yields when empty), exact (also compares
 * every data byte), slow (sleeps now and then, gets lapped), wake (sleeps
 * in poll() on a pipe doorbell after pusher_ring_arm(); the writer rings
 * it after pusher_ring_take_wake(); a poll that times out while records
 * wait counts as a lost wake-up).
 *
 * usage: ring_stress [-t] [-n records] [-r readers] [-b burst] [-p pause]
 *   -t  readers are threads of one process (for ThreadSanitizer), not
 *       processes
 *   -b  records the writer publishes between pauses
 *   -p  length of a pause, microseconds (0: never pause)
 *
 * Exits 1 on any bad record, gap, lost wake-up or failed reader.
 */

#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "pusher_ring.h"


#define STRESS_CAPACITY      PUSHER_RING_MIN_CAPACITY
#define STRESS_RECORDS       2000000
#define STRESS_READERS       4
#define STRESS_MAX_READERS   16
#define STRESS_HEADER        16      /* seq, len, sum */
#define STRESS_TIMEOUT       60      /* seconds for the whole run */
#define STRESS_POLL_MS       1000    /* a wake reader's longest sleep */
#define STRESS_GRACE_MS      200     /* then a doorbell still in flight */
#define STRESS_BURST         256     /* the writer pauses after a burst */
#define STRESS_PAUSE_US      100

#define STRESS_FAST          0
#define STRESS_EXACT         1
#define STRESS_SLOW          2
#define STRESS_WAKE          3

#define STRESS_FNV_OFFSET    0xcbf29ce484222325ULL
#define STRESS_FNV_PRIME     0x100000001b3ULL


typedef struct {
    uint64_t  received;
    uint64_t  lapped;
    uint64_t  corrupt;       /* bad type, length or checksum */
    uint64_t  reordered;     /* seq not increasing */
    uint64_t  gaps;          /* a record missing without a lap */
    uint64_t  sleeps;
    uint64_t  wakeups;
    uint64_t  lost;          /* slept while records waited, no doorbell */
    uint64_t  last_seq;
    uint64_t  cursor;
    uint32_t  role;
    uint32_t  finished;
} stress_stats_t;


/* in its own shared mapping, next to the segment */
typedef struct {
    uint32_t        ready;   /* readers attached */
    uint32_t        done;    /* the writer published the last record */
    uint64_t        doorbells;
    uint64_t        bytes;
    uint64_t        tail;
    stress_stats_t  readers[STRESS_MAX_READERS];
} stress_ctl_t;


typedef struct {
    uint8_t        *base;
    stress_ctl_t   *ctl;
    uint64_t        records;
    unsigned        readers;
    unsigned        burst;
    unsigned        pause;   /* microseconds */
    int             doorbell[STRESS_MAX_READERS][2];
} stress_t;


typedef struct {
    stress_t       *stress;
    unsigned        index;
} stress_arg_t;


static uint64_t
stress_rand(uint64_t *state)
{
    uint64_t  x;

    x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;

    return x;
}


static uint32_t
stress_sum(const uint8_t *p, uint32_t len)
{
    uint64_t  h, w;
    uint32_t  i;

    h = STRESS_FNV_OFFSET;

    for (i = 0; i + 8 <= len; i += 8) {
        memcpy(&w, p + i, 8);
        h = (h ^ w) * STRESS_FNV_PRIME;
    }

    for ( /* void */ ; i < len; i++) {
        h = (h ^ p[i]) * STRESS_FNV_PRIME;
    }

    return (uint32_t) (h ^ (h >> 32));
}


/* the data bytes of record seq: the same in the writer and the readers */
static void
stress_data(uint8_t *p, uint64_t seq, uint32_t len)
{
    uint64_t  r, w;
    uint32_t  i;

    r = seq * 0x9e3779b97f4a7c15ULL + 1;

    for (i = STRESS_HEADER; i < len; i += 8) {
        w = stress_rand(&r);
        memcpy(p + i, &w, len - i < 8 ? len - i : 8);
    }
}


static void
stress_encode(uint8_t *p, uint64_t seq, uint32_t len)
{
    uint32_t  sum;

    sum = 0;

    memcpy(p, &seq, 8);
    memcpy(p + 8, &len, 4);
    memcpy(p + 12, &sum, 4);
    stress_data(p, seq, len);

    sum = stress_sum(p, len);
    memcpy(p + 12, &sum, 4);
}


static void
stress_attach(stress_t *s, pusher_ring_t *ring)
{
    pusher_shm_header_t  *h;

    h = pusher_shm_header(s->base);

    /* pairs with the store-release of layout_version in main() */
    if (pusher_load_acquire_u32(&h->layout_version)
        != PUSHER_SHM_LAYOUT_VERSION
        || h->magic != PUSHER_SHM_MAGIC
        || pusher_ring_init(ring, pusher_shm_ring(s->base), h->ring_capacity,
                            pusher_shm_desc(s->base))
           != 0
        || ring->max_record != h->max_record)
    {
        fprintf(stderr, "ring_stress: bad segment\n");
        exit(1);
    }
}


static uint32_t
stress_length(uint64_t *rng, uint32_t max)
{
    uint64_t  r;

    r = stress_rand(rng);

    /* mostly small records, as Pusher events are; one in 8 up to max */
    if ((r & 7) == 0) {
        return STRESS_HEADER + (uint32_t) ((r >> 3) % (max - STRESS_HEADER
                                                       + 1));
    }

    return STRESS_HEADER + (uint32_t) ((r >> 3) % 497);
}


static void
stress_writer(stress_t *s)
{
    uint8_t            *p, *scratch;
    unsigned            i;
    uint32_t            len, max;
    uint64_t            seq, rng, bytes, doorbells;
    pusher_ring_t       ring;
    pusher_shm_wake_t  *wake;

    stress_attach(s, &ring);

    max = ring.max_record - PUSHER_RING_RECORD_HEADER;
    scratch = malloc(max);
    if (scratch == NULL) {
        exit(1);
    }

    rng = 0x2545f4914f6cdd1dULL;
    bytes = 0;
    doorbells = 0;

    for (seq = 0; seq < s->records; seq++) {
        len = stress_length(&rng, max);
        stress_encode(scratch, seq, len);

        /* both ways of publishing */
        if (seq & 1) {
            p = pusher_ring_claim(&ring, PUSHER_RING_EVENT, len);
            if (p == NULL) {
                exit(1);
            }

            memcpy(p, scratch, len);
            pusher_ring_commit(&ring);

        } else if (pusher_ring_write(&ring, PUSHER_RING_EVENT, scratch, len)
                   != 0)
        {
            exit(1);
        }

        bytes += len;

        for (i = STRESS_WAKE; i < s->readers; i += 4) {
            wake = pusher_shm_wake(s->base, i);

            if (pusher_ring_take_wake(wake)) {
                doorbells++;

                /* a full pipe already holds a doorbell */
                if (write(s->doorbell[i][1], "", 1) == -1 && errno != EAGAIN)
                {
                    exit(1);
                }
            }
        }

        if (s->pause != 0 && seq % s->burst == s->burst - 1) {
            usleep(s->pause);
        }
    }

    s->ctl->bytes = bytes;
    s->ctl->doorbells = doorbells;
    s->ctl->tail = ring.desc->tail;

    /* pairs with the load-acquire of done in stress_reader() */
    pusher_store_release_u32(&s->ctl->done, 1);

    for (i = 0; i < s->readers; i++) {
        if (write(s->doorbell[i][1], "", 1) == -1 && errno != EAGAIN) {
            exit(1);
        }
    }

    free(scratch);
}


static void
stress_check(stress_stats_t *st, uint8_t *buf, int32_t type, uint32_t len,
    uint32_t max, uint64_t *expect, int *lapped, uint8_t *data)
{
    uint32_t  n, want;
    uint64_t  seq;

    if (type != PUSHER_RING_EVENT || len < STRESS_HEADER || len > max) {
        st->corrupt++;
        return;
    }

    memcpy(&seq, buf, 8);
    memcpy(&n, buf + 8, 4);
    memcpy(&want, buf + 12, 4);
    memset(buf + 12, 0, 4);

    if (n != len || stress_sum(buf, len) != want) {
        st->corrupt++;
        return;
    }

    if (data != NULL) {
        stress_data(data, seq, len);

        if (memcmp(data + STRESS_HEADER, buf + STRESS_HEADER,
                   len - STRESS_HEADER)
            != 0)
        {
            st->corrupt++;
            return;
        }
    }

    if (seq < *expect) {
        st->reordered++;

    } else if (seq != *expect && !*lapped) {
        st->gaps++;
    }

    *expect = seq + 1;
    *lapped = 0;

    st->last_seq = seq;
    st->received++;
}


static void
stress_sleep(stress_t *s, unsigned index, pusher_ring_t *ring,
    pusher_ring_reader_t *reader, stress_stats_t *st)
{
    int            n;
    char           drain[64];
    struct pollfd  pfd;

    pfd.fd = s->doorbell[index][0];
    pfd.events = POLLIN;

    st->sleeps++;

    n = poll(&pfd, 1, STRESS_POLL_MS);

    if (n == 0 && !pusher_ring_caught_up(reader, ring)) {
        n = poll(&pfd, 1, STRESS_GRACE_MS);

        if (n == 0) {
            st->lost++;
        }
    }

    if (n > 0) {
        st->wakeups++;

        while (read(pfd.fd, drain, sizeof(drain)) > 0) {
            /* void */
        }
    }
}


static void
stress_reader(stress_t *s, unsigned index)
{
    int                    rc, lapped, finishing;
    int32_t                type;
    uint8_t               *buf, *data;
    uint32_t               len, max;
    uint64_t               expect, rng;
    pusher_ring_t          ring;
    stress_stats_t        *st;
    pusher_shm_wake_t     *wake;
    pusher_ring_reader_t   reader;

    stress_attach(s, &ring);

    st = &s->ctl->readers[index];
    st->role = index % 4;

    max = ring.max_record - PUSHER_RING_RECORD_HEADER;
    buf = malloc(ring.max_record);
    data = malloc(ring.max_record);
    if (buf == NULL || data == NULL) {
        exit(1);
    }

    wake = pusher_shm_wake(s->base, index);
    rng = index + 1;

    pusher_ring_reader_init(&reader, &ring, 1);

    __atomic_add_fetch(&s->ctl->ready, 1, __ATOMIC_RELEASE);

    expect = 0;
    lapped = 0;
    finishing = 0;

    for ( ;; ) {
        rc = pusher_ring_read(&reader, &ring, buf, &type, &len);

        if (rc == PUSHER_RING_OK) {
            stress_check(st, buf, type, len, max, &expect, &lapped,
                         st->role == STRESS_EXACT ? data : NULL);

            if (st->role == STRESS_SLOW && (reader.received & 255) == 0) {
                usleep(stress_rand(&rng) % 500);
            }

            continue;
        }

        if (rc == PUSHER_RING_LAPPED) {
            lapped = 1;
            continue;
        }

        /* empty: after done was seen, the tail loaded is the final one */
        if (finishing) {
            break;
        }

        /* pairs with the store-release of done in stress_writer() */
        if (pusher_load_acquire_u32(&s->ctl->done)) {
            finishing = 1;
            continue;
        }

        if (st->role != STRESS_WAKE) {
            sched_yield();
            continue;
        }

        if (pusher_ring_arm(&ring, wake, &reader)) {
            continue;
        }

        stress_sleep(s, index, &ring, &reader, st);
    }

    st->lapped = reader.lapped;
    st->cursor = reader.cursor;

    if (reader.received != st->received + st->corrupt) {
        st->corrupt++;
    }

    st->finished = 1;

    free(data);
    free(buf);
}


static void *
stress_reader_thread(void *data)
{
    stress_arg_t  *arg;

    arg = data;
    stress_reader(arg->stress, arg->index);

    return NULL;
}


#if defined(__SANITIZE_THREAD__)

/*
 * The reader copies payload bytes that the writer may be rewriting and
 * throws the copy away afterwards: a race by design (see pusher_ring.c).
 */
const char *
__tsan_default_suppressions(void)
{
    return "race:pusher_ring_read\n";
}


/* keeps the reader's stack of an old copy, which the suppression matches */
const char *
__tsan_default_options(void)
{
    return "history_size=7";
}

#endif


static double
stress_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec + ts.tv_nsec / 1e9;
}


static int
stress_report(stress_t *s, double elapsed)
{
    int              failed;
    unsigned         i;
    stress_stats_t  *st;

    static const char  *roles[] = { "fast", "exact", "slow", "wake" };

    failed = 0;

    printf("ring_stress: %llu records, %.1f MB, capacity %u, %u readers, "
           "pause %u us every %u, %.2f s, %llu doorbells\n",
           (unsigned long long) s->records, s->ctl->bytes / 1e6,
           STRESS_CAPACITY, s->readers, s->pause, s->burst, elapsed,
           (unsigned long long) s->ctl->doorbells);

    for (i = 0; i < s->readers; i++) {
        st = &s->ctl->readers[i];

        printf("  reader %u %-5s received %9llu lapped %7llu sleeps %6llu "
               "wakeups %6llu corrupt %llu reordered %llu gaps %llu "
               "lost %llu\n",
               i, roles[st->role], (unsigned long long) st->received,
               (unsigned long long) st->lapped,
               (unsigned long long) st->sleeps,
               (unsigned long long) st->wakeups,
               (unsigned long long) st->corrupt,
               (unsigned long long) st->reordered,
               (unsigned long long) st->gaps,
               (unsigned long long) st->lost);

        if (!st->finished || st->corrupt || st->reordered || st->gaps
            || st->lost || st->received == 0
            || st->cursor != s->ctl->tail
            || st->last_seq != s->records - 1)
        {
            printf("  reader %u FAILED\n", i);
            failed = 1;
        }
    }

    return failed;
}


int
main(int argc, char **argv)
{
    int                   c, threads, status, failed;
    double                start;
    pid_t                 pid, pids[STRESS_MAX_READERS];
    unsigned              i;
    stress_t              s;
    pthread_t             tids[STRESS_MAX_READERS];
    stress_arg_t          args[STRESS_MAX_READERS];
    pusher_ring_t         ring;
    pusher_shm_header_t  *h;

    memset(&s, 0, sizeof(stress_t));
    s.records = STRESS_RECORDS;
    s.readers = STRESS_READERS;
    s.burst = STRESS_BURST;
    s.pause = STRESS_PAUSE_US;
    threads = 0;

    while ((c = getopt(argc, argv, "tn:r:b:p:")) != -1) {
        switch (c) {
        case 't':
            threads = 1;
            break;
        case 'n':
            s.records = strtoull(optarg, NULL, 10);
            break;
        case 'r':
            s.readers = (unsigned) atoi(optarg);
            break;
        case 'b':
            s.burst = (unsigned) atoi(optarg);
            break;
        case 'p':
            s.pause = (unsigned) atoi(optarg);
            break;
        default:
            fprintf(stderr, "usage: ring_stress [-t] [-n records] "
                    "[-r readers] [-b burst] [-p pause]\n");
            return 1;
        }
    }

    if (s.records == 0 || s.readers == 0 || s.readers > STRESS_MAX_READERS
        || s.burst == 0)
    {
        fprintf(stderr, "ring_stress: bad arguments\n");
        return 1;
    }

    alarm(STRESS_TIMEOUT);

    s.base = mmap(NULL, PUSHER_SHM_SIZE(STRESS_CAPACITY),
                  PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    s.ctl = mmap(NULL, sizeof(stress_ctl_t), PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    if (s.base == MAP_FAILED || s.ctl == MAP_FAILED) {
        perror("ring_stress: mmap");
        return 1;
    }

    for (i = 0; i < s.readers; i++) {
        if (pipe2(s.doorbell[i], O_NONBLOCK) == -1) {
            perror("ring_stress: pipe2");
            return 1;
        }
    }

    /* the broker's part: header and descriptor, layout_version last */
    h = pusher_shm_header(s.base);
    h->magic = PUSHER_SHM_MAGIC;
    h->header_size = PUSHER_SHM_HEADER_SIZE;
    h->generation = 1;
    h->broker_pid = getpid();
    h->segment_size = PUSHER_SHM_SIZE(STRESS_CAPACITY);
    h->desc_offset = PUSHER_SHM_DESC_OFFSET;
    h->wake_offset = PUSHER_SHM_WAKE_OFFSET;
    h->ring_offset = PUSHER_SHM_RING_OFFSET;
    h->ring_capacity = STRESS_CAPACITY;
    h->wake_slots = PUSHER_SHM_WAKE_SLOTS;
    h->max_record = STRESS_CAPACITY / 8;

    if (pusher_ring_init(&ring, pusher_shm_ring(s.base), STRESS_CAPACITY,
                         pusher_shm_desc(s.base))
        != 0)
    {
        return 1;
    }

    pusher_ring_writer_reset(&ring);

    /* pairs with the load-acquire of layout_version in stress_attach() */
    pusher_store_release_u32(&h->layout_version, PUSHER_SHM_LAYOUT_VERSION);

    for (i = 0; i < s.readers; i++) {
        if (threads) {
            args[i].stress = &s;
            args[i].index = i;

            if (pthread_create(&tids[i], NULL, stress_reader_thread, &args[i])
                != 0)
            {
                return 1;
            }

            continue;
        }

        pids[i] = fork();

        if (pids[i] == -1) {
            perror("ring_stress: fork");
            return 1;
        }

        if (pids[i] == 0) {
            stress_reader(&s, i);
            _exit(0);
        }
    }

    while (__atomic_load_n(&s.ctl->ready, __ATOMIC_ACQUIRE) != s.readers) {
        usleep(1000);
    }

    start = stress_now();
    failed = 0;

    if (threads) {
        stress_writer(&s);

        for (i = 0; i < s.readers; i++) {
            pthread_join(tids[i], NULL);
        }

    } else {
        pid = fork();

        if (pid == -1) {
            perror("ring_stress: fork");
            return 1;
        }

        if (pid == 0) {
            stress_writer(&s);
            _exit(0);
        }

        for (i = 0; i <= s.readers; i++) {
            if (wait(&status) == -1) {
                perror("ring_stress: wait");
                return 1;
            }

            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "ring_stress: a child failed: %d\n",
                        status);
                failed = 1;
            }
        }
    }

    failed |= stress_report(&s, stress_now() - start);

    printf("ring_stress: %s\n", failed ? "FAILED" : "ok");

    return failed;
}
