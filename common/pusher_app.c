/*
 * The rules for an app's settings, shared by the module (nginx -t) and
 * the broker (pusher_app.h).
 */

#include "pusher_app.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "pusher_shm.h"


static int
pusher_app_lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c;
}


static int
pusher_app_caseeq(const char *s, size_t len, const char *lit)
{
    size_t  i;

    if (strlen(lit) != len) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (pusher_app_lower((unsigned char) s[i]) != lit[i]) {
            return 0;
        }
    }

    return 1;
}


static int
pusher_app_caseprefix(const char *s, size_t len, const char *lit)
{
    size_t  n;

    n = strlen(lit);

    return len >= n && pusher_app_caseeq(s, n, lit);
}


int
pusher_url_parse(const char *url, size_t len, pusher_url_t *out,
    const char **why)
{
    size_t       i, n, hlen;
    unsigned     port;
    const char  *p, *end, *auth, *auth_end, *colon;

    memset(out, 0, sizeof(*out));

    if (len > PUSHER_APP_WEBHOOK_URL_MAX) {
        *why = "longer than 2048 bytes";
        return -1;
    }

    for (i = 0; i < len; i++) {
        unsigned char  c = (unsigned char) url[i];

        if (c <= 0x20 || c >= 0x7f) {
            *why = "a space, a control or a non-ASCII character";
            return -1;
        }
    }

    if (pusher_app_caseprefix(url, len, "http://")) {
        p = url + sizeof("http://") - 1;

    } else if (pusher_app_caseprefix(url, len, "https://")) {
        out->tls = 1;
        p = url + sizeof("https://") - 1;

    } else {
        *why = "http:// or https:// expected";
        return -1;
    }

    end = url + len;

    for (auth_end = p; auth_end < end; auth_end++) {
        if (*auth_end == '/' || *auth_end == '?' || *auth_end == '#') {
            break;
        }
    }

    auth = p;

    if (auth == auth_end) {
        *why = "no host";
        return -1;
    }

    if (memchr(auth, '@', auth_end - auth) != NULL) {
        *why = "user:password@ is not allowed (use header=Authorization:...)";
        return -1;
    }

    if (memchr(auth_end, '#', end - auth_end) != NULL) {
        *why = "a #fragment is not sent";
        return -1;
    }

    colon = NULL;

    if (*auth == '[') {
        for (p = auth + 1; p < auth_end && *p != ']'; p++) {
            if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')
                  || (*p >= 'A' && *p <= 'F') || *p == ':' || *p == '.'))
            {
                *why = "a bad IPv6 address";
                return -1;
            }
        }

        if (p == auth_end || p - auth < 3) {
            *why = "a bad IPv6 address";
            return -1;
        }

        out->host.data = auth + 1;
        out->host.len = p - auth - 1;
        out->bracketed = 1;

        p++;

        if (p < auth_end) {
            if (*p != ':') {
                *why = "a bad IPv6 address";
                return -1;
            }

            colon = p;
        }

    } else {
        colon = memchr(auth, ':', auth_end - auth);
        hlen = (colon ? colon : auth_end) - auth;

        if (hlen == 0) {
            *why = "no host";
            return -1;
        }

        for (i = 0; i < hlen; i++) {
            char  c = auth[i];

            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
                  || (c >= '0' && c <= '9') || c == '-' || c == '.'
                  || c == '_'))
            {
                *why = "a bad host name";
                return -1;
            }
        }

        out->host.data = auth;
        out->host.len = hlen;
    }

    if (colon) {
        n = auth_end - colon - 1;

        if (n == 0 || n > 5) {
            *why = "a bad port";
            return -1;
        }

        port = 0;

        for (i = 0; i < n; i++) {
            char  c = colon[1 + i];

            if (c < '0' || c > '9') {
                *why = "a bad port";
                return -1;
            }

            port = port * 10 + (unsigned) (c - '0');
        }

        if (port == 0 || port > 65535) {
            *why = "a port out of 1 .. 65535";
            return -1;
        }

        out->port = (uint16_t) port;
        out->port_given = 1;

    } else {
        out->port = out->tls ? 443 : 80;
    }

    out->target.data = auth_end;
    out->target.len = end - auth_end;

    return 0;
}


int
pusher_header_name_valid(const char *name, size_t len)
{
    size_t  i;

    if (len == 0 || len > 256) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        char  c = name[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9')
              || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL)))
        {
            return 0;
        }
    }

    return 1;
}


int
pusher_header_value_valid(const char *value, size_t len)
{
    size_t  i;

    if (len > PUSHER_APP_WEBHOOK_TEXT_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        unsigned char  c = (unsigned char) value[i];

        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return 0;
        }
    }

    return 1;
}


int
pusher_header_reserved(const char *name, size_t len)
{
    return pusher_app_caseeq(name, len, "content-type")
           || pusher_app_caseeq(name, len, "content-length")
           || pusher_app_caseeq(name, len, "host")
           || pusher_app_caseeq(name, len, "connection")
           || pusher_app_caseeq(name, len, "transfer-encoding")
           || pusher_app_caseeq(name, len, "user-agent")
           || pusher_app_caseprefix(name, len, "x-pusher-");
}


static int
pusher_app_fail(char *why, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
pusher_app_fail(char *why, size_t size, const char *fmt, ...)
{
    va_list  args;

    if (size) {
        va_start(args, fmt);
        (void) vsnprintf(why, size, fmt, args);
        va_end(args);
    }

    return -1;
}


/* an optional number of the app, when present, in lo .. hi */
#define PUSHER_APP_RANGE(flag, field, name, lo, hi)                          \
    if ((app->has & (flag))                                                  \
        && (app->field < (lo) || app->field > (hi)))                         \
    {                                                                        \
        return pusher_app_fail(why, size, "\"%s\" out of %llu .. %llu",      \
                               name, (unsigned long long) (lo),              \
                               (unsigned long long) (hi));                   \
    }


int
pusher_app_check(const pusher_ctl_app_t *app, char *why, size_t size)
{
    size_t                        k, h;
    const char                   *reason;
    pusher_url_t                  url;
    const pusher_ctl_webhook_t   *wh;
    const pusher_ctl_coalesce_t  *co;

    if (app->id.len == 0 || app->id.len > PUSHER_APP_ID_MAX) {
        return pusher_app_fail(why, size, "an app id of 1 .. %d bytes expected",
                               PUSHER_APP_ID_MAX);
    }

    if (app->key.len == 0 || app->secret.len == 0) {
        return pusher_app_fail(why, size, "an empty key or secret");
    }

    PUSHER_APP_RANGE(PUSHER_CTL_APP_CACHE_TTL, cache_ttl, "cache_ttl",
                     1, PUSHER_APP_LIMIT_MAX)
    PUSHER_APP_RANGE(PUSHER_CTL_APP_MAX_EVENT_DATA, max_event_data,
                     "max_event_data", 1, PUSHER_APP_LIMIT_MAX)
    PUSHER_APP_RANGE(PUSHER_CTL_APP_MAX_CHANNELS, max_channels,
                     "max_event_channels", 1, PUSHER_APP_LIMIT_MAX)
    PUSHER_APP_RANGE(PUSHER_CTL_APP_MAX_EVENT_NAME, max_event_name,
                     "max_event_name", 1, PUSHER_APP_LIMIT_MAX)
    PUSHER_APP_RANGE(PUSHER_CTL_APP_MAX_BATCH, max_batch,
                     "max_batch_events", 1, PUSHER_APP_LIMIT_MAX)
    PUSHER_APP_RANGE(PUSHER_CTL_APP_MAX_REQUEST_SIZE, max_request_size,
                     "max_request_size", 1, PUSHER_APP_LIMIT_MAX)

    if ((app->has & PUSHER_CTL_APP_WEBHOOK_VACATED_DELAY)
        && app->webhook_vacated_delay > PUSHER_APP_VACATED_DELAY_MAX)
    {
        return pusher_app_fail(why, size, "\"webhook_vacated_delay\" over "
                               "%d ms (1h)", PUSHER_APP_VACATED_DELAY_MAX);
    }

    if (app->ncoalesce > PUSHER_COALESCE_RULES_MAX) {
        return pusher_app_fail(why, size, "more than %d \"coalesce\" lines",
                               PUSHER_COALESCE_RULES_MAX);
    }

    for (k = 0; k < app->ncoalesce; k++) {
        co = &app->coalesce[k];

        if (!pusher_coalesce_pattern_valid(co->pattern.data, co->pattern.len))
        {
            return pusher_app_fail(why, size, "a bad \"coalesce\" pattern");
        }

        if (co->window < PUSHER_COALESCE_WINDOW_MIN
            || co->window > PUSHER_COALESCE_WINDOW_MAX)
        {
            return pusher_app_fail(why, size, "a \"coalesce\" window out of "
                                   "%d .. %d ms", PUSHER_COALESCE_WINDOW_MIN,
                                   PUSHER_COALESCE_WINDOW_MAX);
        }

        if (co->nevents > PUSHER_COALESCE_EVENTS_MAX) {
            return pusher_app_fail(why, size, "more than %d \"coalesce\" "
                                   "events", PUSHER_COALESCE_EVENTS_MAX);
        }

        for (h = 0; h < co->nevents; h++) {
            if (!pusher_coalesce_event_valid(co->events[h].data,
                                             co->events[h].len))
            {
                return pusher_app_fail(why, size, "a bad \"coalesce\" event "
                                       "name");
            }
        }
    }

    if (app->nwebhooks > PUSHER_APP_WEBHOOKS_MAX) {
        return pusher_app_fail(why, size, "more than %d webhooks",
                               PUSHER_APP_WEBHOOKS_MAX);
    }

    for (k = 0; k < app->nwebhooks; k++) {
        wh = &app->webhooks[k];

        if (pusher_url_parse(wh->url.data, wh->url.len, &url, &reason)
            != 0)
        {
            return pusher_app_fail(why, size, "invalid webhook URL: %s",
                                   reason);
        }

        if (wh->prefix.len > PUSHER_APP_WEBHOOK_TEXT_MAX
            || wh->suffix.len > PUSHER_APP_WEBHOOK_TEXT_MAX)
        {
            return pusher_app_fail(why, size, "a webhook prefix= or suffix= "
                                   "longer than %d bytes",
                                   PUSHER_APP_WEBHOOK_TEXT_MAX);
        }

        if (wh->nheaders > PUSHER_APP_WEBHOOK_HEADERS_MAX) {
            return pusher_app_fail(why, size, "more than %d header= of a "
                                   "webhook", PUSHER_APP_WEBHOOK_HEADERS_MAX);
        }

        for (h = 0; h < wh->nheaders; h++) {
            if (!pusher_header_name_valid(wh->headers[h].name.data,
                                          wh->headers[h].name.len))
            {
                return pusher_app_fail(why, size, "a webhook header name that is "
                                       "not an HTTP token");
            }

            if (!pusher_header_value_valid(wh->headers[h].value.data,
                                           wh->headers[h].value.len))
            {
                return pusher_app_fail(why, size, "a webhook header value with a "
                                       "control character or longer than "
                                       "%d bytes",
                                       PUSHER_APP_WEBHOOK_TEXT_MAX);
            }
        }
    }

    return 0;
}
