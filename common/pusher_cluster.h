/*
 * The message the brokers of a cluster exchange through Redis
 * (docs/cluster.md): a header line, then a ring record's payload as it is
 * in the ring (pusher_shm.h):
 *
 *     v1 <node> <epoch> <seq> <type>\n<payload>
 *
 * node as pusher_cluster_node_check() takes it; epoch and seq decimal
 * uint64 without a leading zero (but "0"); type a decimal int32 record type
 * (0: a heartbeat, no payload).  Single spaces, the header at most
 * PUSHER_CLUSTER_HEADER_MAX bytes with its newline.  A message comes from
 * whoever can PUBLISH on the Redis: the decoder trusts nothing.
 */

#ifndef PUSHER_CLUSTER_H
#define PUSHER_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif


#define PUSHER_CLUSTER_HEADER_MAX   256
#define PUSHER_CLUSTER_HEARTBEAT    0


typedef struct {
    const char     *node;          /* inside the decoded text */
    size_t          node_len;
    uint64_t        epoch;
    uint64_t        seq;
    int32_t         type;
    const uint8_t  *payload;       /* inside the decoded text */
    size_t          payload_len;
} pusher_cluster_msg_t;


/*
 * The header line of a message, with its newline, into out[0 .. cap);
 * returns its length, or 0 if the node is not a node name or it does not
 * fit.
 */
size_t pusher_cluster_msg_header(char *out, size_t cap, const char *node,
    size_t node_len, uint64_t epoch, uint64_t seq, int32_t type);

/* 0 with *m filled, or -1 if text[0 .. len) is not such a message */
int pusher_cluster_msg_decode(pusher_cluster_msg_t *m, const char *text,
    size_t len);


#ifdef __cplusplus
}
#endif

#endif /* PUSHER_CLUSTER_H */
