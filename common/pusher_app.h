/*
 * What an app's settings may be: the one set of rules nginx -t (the
 * module's directive handlers and its check of the whole table) and the
 * broker (the app table a HELLO carries) both apply, so that every value
 * nginx accepts, the broker accepts.  The bounds, the webhook URL parser
 * and the header rules are written here once.
 */

#ifndef PUSHER_APP_H
#define PUSHER_APP_H

#include <stddef.h>
#include <stdint.h>

#include "pusher_ctl.h"

#ifdef __cplusplus
extern "C" {
#endif


/* max_event_data, max_event_name, max_request_size: bytes, 1 .. 1 GiB;
 * max_event_channels, max_batch_events: 1 .. 1 Gi; cache_ttl: seconds */
#define PUSHER_APP_LIMIT_MAX             (1024 * 1024 * 1024)

/* webhook_vacated_delay: ms, 0 .. 1 hour */
#define PUSHER_APP_VACATED_DELAY_MAX     (3600 * 1000)

/* webhook lines per app, header= parameters per webhook */
#define PUSHER_APP_WEBHOOKS_MAX          16
#define PUSHER_APP_WEBHOOK_HEADERS_MAX   32

/* a webhook URL, its header values, its prefix and suffix */
#define PUSHER_APP_WEBHOOK_URL_MAX       2048
#define PUSHER_APP_WEBHOOK_TEXT_MAX      1024


/*
 * A webhook URL: http:// or https://, a host name or address (an IPv6
 * address in brackets), an optional port 1 .. 65535, an optional path and
 * query; no user:password@ (a secret in nginx.conf belongs in a header=),
 * no fragment, no spaces or control characters.  The strings point into
 * the URL parsed.
 */
typedef struct {
    int                     tls;             /* https:// */
    pusher_str_t            host;            /* without brackets */
    int                     bracketed;       /* [IPv6] */
    uint16_t                port;            /* 80/443 when not given */
    int                     port_given;
    pusher_str_t            target;          /* from '/' or '?'; may be empty */
} pusher_url_t;


/* 0, or -1 with the reason (a static string) in *why */
int pusher_url_parse(const char *url, size_t len, pusher_url_t *out,
    const char **why);

/* an HTTP token (RFC 9110 5.6.2) of 1 .. 256 bytes */
int pusher_header_name_valid(const char *name, size_t len);

/* no control character but HTAB; at most PUSHER_APP_WEBHOOK_TEXT_MAX */
int pusher_header_value_valid(const char *value, size_t len);

/* a header the broker sets itself (Content-Type, Host, X-Pusher-*...) */
int pusher_header_reserved(const char *name, size_t len);


/*
 * The whole check of one app as a HELLO carries it: 0, or -1 with the
 * reason (NUL-terminated, without the secret) in why[size].
 */
int pusher_app_check(const pusher_ctl_app_t *app, char *why, size_t size);


#ifdef __cplusplus
}
#endif

#endif /* PUSHER_APP_H */
