/*
 * ngx-pusher: the control connection between each nginx worker and
 * pusher-broker (a unix stream socket the broker listens on).
 *
 * Every message is an 8-byte header followed by the payload:
 *
 *   uint32_t  length      payload bytes (host order: same machine)
 *   uint16_t  type        PUSHER_CTL_*
 *   uint16_t  reserved    0
 *
 * worker -> broker
 *   HELLO     JSON {"pid":123,"conf_time":1732630000123,
 *                   "apps":[{"id":"..","key":"..","secret":".."}, ...]}
 *             sent first on every (re)connect.  nginx.conf is the only
 *             place apps are written: the broker takes the app table of
 *             the HELLO with the highest conf_time (the newest nginx
 *             configuration; all workers of one cycle send the same).
 *
 * broker -> worker
 *   WELCOME   JSON {"shm":"/ngx-pusher","generation":"N","slot":K,
 *                   "size":BYTES}
 *             the segment to map and the wake slot this worker owns;
 *             generation is a decimal string (a JSON number is a double
 *             and cannot carry 64 bits).
 *   DOORBELL  empty: records were published while the worker's wake
 *             slot was armed.
 */

#ifndef PUSHER_CTL_H
#define PUSHER_CTL_H


#include <stdint.h>
#include <string.h>

#include "pusher_shm.h"

#ifdef __cplusplus
extern "C" {
#endif


#define PUSHER_CTL_HELLO             1
#define PUSHER_CTL_WELCOME           2
#define PUSHER_CTL_DOORBELL          3

#define PUSHER_CTL_HEADER_SIZE       8
#define PUSHER_CTL_MAX_PAYLOAD       (4 * 1024 * 1024)


typedef struct {
    uint32_t  length;
    uint16_t  type;
    uint16_t  reserved;
} pusher_ctl_header_t;

PUSHER_SHM_STATIC_ASSERT(sizeof(pusher_ctl_header_t) == PUSHER_CTL_HEADER_SIZE,
                         "control header size");


static inline void
pusher_ctl_header_write(uint8_t *out, uint16_t type, uint32_t length)
{
    pusher_ctl_header_t  h;

    h.length = length;
    h.type = type;
    h.reserved = 0;
    memcpy(out, &h, sizeof(h));
}


static inline void
pusher_ctl_header_read(const uint8_t *in, pusher_ctl_header_t *h)
{
    memcpy(h, in, sizeof(*h));
}


#ifdef __cplusplus
}
#endif

#endif /* PUSHER_CTL_H */
