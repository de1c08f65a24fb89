/*
 * The message the brokers of a cluster exchange: see pusher_cluster.h.
 */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "pusher_cluster.h"
#include "pusher_redis_url.h"


static const char  pusher_cluster_version[] = "v1";


size_t
pusher_cluster_msg_header(char *out, size_t cap, const char *node,
    size_t node_len, uint64_t epoch, uint64_t seq, int32_t type)
{
    int  n;

    if (type < 0 || pusher_cluster_node_check(node, node_len, NULL, 0) != 0) {
        return 0;
    }

    /* the decoder looks for the newline in the first HEADER_MAX bytes */
    if (cap > PUSHER_CLUSTER_HEADER_MAX + 1) {
        cap = PUSHER_CLUSTER_HEADER_MAX + 1;
    }

    n = snprintf(out, cap, "%s %.*s %" PRIu64 " %" PRIu64 " %" PRId32 "\n",
                 pusher_cluster_version, (int) node_len, node, epoch, seq,
                 type);

    if (n < 0 || (size_t) n >= cap) {
        return 0;
    }

    return (size_t) n;
}


/* a decimal number of s[0 .. len) up to max, no sign, no leading zero */
static int
pusher_cluster_number(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    size_t    i;
    uint64_t  v, d;

    if (len == 0 || (len > 1 && s[0] == '0')) {
        return -1;
    }

    v = 0;

    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }

        d = (uint64_t) (s[i] - '0');

        if (v > (max - d) / 10) {
            return -1;
        }

        v = v * 10 + d;
    }

    *out = v;

    return 0;
}


int
pusher_cluster_msg_decode(pusher_cluster_msg_t *m, const char *text,
    size_t len)
{
    size_t       i, start, n, head;
    uint64_t     type;
    const char  *nl, *tok[5];
    size_t       tok_len[5];

    nl = memchr(text, '\n', len < PUSHER_CLUSTER_HEADER_MAX
                            ? len : PUSHER_CLUSTER_HEADER_MAX);
    if (nl == NULL) {
        return -1;
    }

    head = (size_t) (nl - text);

    /* five tokens, single spaces between them */
    n = 0;
    start = 0;

    for (i = 0; i <= head; i++) {
        if (i < head && text[i] != ' ') {
            continue;
        }

        if (n == 5 || i == start) {
            return -1;
        }

        tok[n] = text + start;
        tok_len[n] = i - start;
        n++;
        start = i + 1;
    }

    if (n != 5
        || tok_len[0] != sizeof(pusher_cluster_version) - 1
        || memcmp(tok[0], pusher_cluster_version, tok_len[0]) != 0
        || pusher_cluster_node_check(tok[1], tok_len[1], NULL, 0) != 0
        || pusher_cluster_number(tok[2], tok_len[2], UINT64_MAX, &m->epoch)
           != 0
        || pusher_cluster_number(tok[3], tok_len[3], UINT64_MAX, &m->seq)
           != 0
        || pusher_cluster_number(tok[4], tok_len[4], INT32_MAX, &type) != 0)
    {
        return -1;
    }

    m->node = tok[1];
    m->node_len = tok_len[1];
    m->type = (int32_t) type;
    m->payload = (const uint8_t *) nl + 1;
    m->payload_len = len - head - 1;

    return 0;
}
