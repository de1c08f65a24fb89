
/*
 * ngx-pusher: libFuzzer target for the cluster message
 * (pusher_cluster_msg_decode() and pusher_cluster_msg_header() in
 * common/pusher_cluster.c), what a broker takes from Redis.
 *
 * Input: the message, as an exact-size heap copy.
 *
 *   - decode returns 0 or -1; on 0 the node, 1 .. 64 bytes, passes
 *     pusher_cluster_node_check(), the node and the payload lie inside the
 *     input, the header is at most PUSHER_CLUSTER_HEADER_MAX bytes, and
 *     the type is not negative;
 *   - the decoder takes only the canonical form: the header encoded again
 *     from the decoded fields, followed by the payload, is the input byte
 *     for byte;
 *   - an event record's payload goes through pusher_ring_event_decode()
 *     as a broker does (that decoder has its own target, fuzz_ring).
 *
 *   clang -fsanitize=fuzzer,address,undefined -Icommon \
 *       tests/fuzz/fuzz_cluster.c common/pusher_cluster.c \
 *       common/pusher_redis_url.c common/pusher_proto.c common/pusher_ws.c \
 *       -lcjson -lcrypto
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pusher_cluster.h"
#include "pusher_redis_url.h"
#include "pusher_shm.h"
#include "fuzz_check.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                       rc;
    char                     *copy, head[PUSHER_CLUSTER_HEADER_MAX + 1];
    size_t                    n, head_len;
    pusher_cluster_msg_t      m;
    pusher_ring_event_view_t  view;

    copy = malloc(size + !size);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, data, size);

    rc = pusher_cluster_msg_decode(&m, copy, size);
    FUZZ_CHECK(rc == 0 || rc == -1);

    if (rc == 0) {
        FUZZ_CHECK(m.node_len >= 1 && m.node_len <= PUSHER_CLUSTER_NODE_MAX);
        FUZZ_CHECK(m.node > copy && m.node + m.node_len < copy + size);
        FUZZ_CHECK(pusher_cluster_node_check(m.node, m.node_len, NULL, 0)
                   == 0);
        FUZZ_CHECK(m.type >= 0);
        FUZZ_CHECK(m.payload >= (const uint8_t *) copy
                   && m.payload + m.payload_len == (const uint8_t *) copy
                                                   + size);

        head_len = (size_t) ((const char *) m.payload - copy);
        FUZZ_CHECK(head_len <= PUSHER_CLUSTER_HEADER_MAX);

        n = pusher_cluster_msg_header(head, sizeof(head), m.node, m.node_len,
                                      m.epoch, m.seq, m.type);
        FUZZ_CHECK(n == head_len);
        FUZZ_CHECK(memcmp(head, copy, n) == 0);

        if (m.type == PUSHER_RING_EVENT) {
            rc = pusher_ring_event_decode(m.payload, m.payload_len, &view);
            FUZZ_CHECK(rc == 0 || rc == -1);
        }
    }

    free(copy);

    return 0;
}
