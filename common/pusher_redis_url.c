/*
 * The Redis URL of the cluster engine: see pusher_redis_url.h.
 */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "pusher_redis_url.h"


static int
redis_url_fail(char *why, size_t why_size, const char *fmt, ...)
{
    va_list  ap;

    if (why_size > 0) {
        va_start(ap, fmt);
        vsnprintf(why, why_size, fmt, ap);
        va_end(ap);
    }

    return -1;
}


static int
redis_url_hex(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}


/* percent-decodes s[0 .. n) into out (size cap); returns the length or -1 */
static long
redis_url_decode(char *out, size_t cap, const char *s, size_t n,
    int allow_nul)
{
    size_t  i, o;
    int     hi, lo;
    char    c;

    for (i = 0, o = 0; i < n; i++) {
        c = s[i];

        if (c == '%') {
            if (n - i < 3) {
                return -1;
            }
            hi = redis_url_hex(s[i + 1]);
            lo = redis_url_hex(s[i + 2]);
            if (hi < 0 || lo < 0) {
                return -1;
            }
            c = (char) (hi * 16 + lo);
            i += 2;
            if (c == '\0' && !allow_nul) {
                return -1;
            }

        } else if ((unsigned char) c <= 0x20 || c == 0x7f) {
            return -1;
        }

        if (o + 1 >= cap) {
            return -1;
        }
        out[o++] = c;
    }

    out[o] = '\0';

    return (long) o;
}


/* a decimal number in [min, max], all of s[0 .. n) */
static int
redis_url_number(const char *s, size_t n, unsigned long min,
    unsigned long max, unsigned *out)
{
    unsigned long  v;
    size_t         i;

    if (n == 0 || n > 10) {
        return -1;
    }

    for (i = 0, v = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        v = v * 10 + (unsigned long) (s[i] - '0');
    }

    if (v < min || v > max) {
        return -1;
    }

    *out = (unsigned) v;

    return 0;
}


static int
redis_url_host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}


static int
redis_url_options(pusher_redis_url_t *u, const char *q, size_t n,
    int *db_seen, char *why, size_t why_size)
{
    const char  *p, *end, *amp, *eq;
    size_t       klen, vlen;

    p = q;
    end = q + n;

    while (p < end) {
        amp = memchr(p, '&', (size_t) (end - p));
        if (amp == NULL) {
            amp = end;
        }

        eq = memchr(p, '=', (size_t) (amp - p));
        if (eq == NULL) {
            return redis_url_fail(why, why_size,
                "option \"%.*s\" of the Redis URL has no value",
                (int) (amp - p), p);
        }

        klen = (size_t) (eq - p);
        vlen = (size_t) (amp - eq - 1);

        if (klen == 2 && memcmp(p, "db", 2) == 0) {
            if (*db_seen) {
                return redis_url_fail(why, why_size,
                    "the Redis URL gives the database twice");
            }
            if (redis_url_number(eq + 1, vlen, 0, PUSHER_REDIS_DB_MAX,
                                 &u->db) != 0)
            {
                return redis_url_fail(why, why_size,
                    "db=%.*s of the Redis URL is not a database number "
                    "0 .. %d", (int) vlen, eq + 1, PUSHER_REDIS_DB_MAX);
            }
            *db_seen = 1;

        } else if (klen == 2 && memcmp(p, "ca", 2) == 0) {
            if (u->transport != PUSHER_REDIS_TLS) {
                return redis_url_fail(why, why_size,
                    "ca= is for rediss:// URLs only");
            }
            if (vlen == 0
                || redis_url_decode(u->ca_file, sizeof(u->ca_file), eq + 1,
                                    vlen, 0) < 0)
            {
                return redis_url_fail(why, why_size,
                    "ca= of the Redis URL is not a file name");
            }

        } else if (klen == 6 && memcmp(p, "verify", 6) == 0) {
            if (u->transport != PUSHER_REDIS_TLS) {
                return redis_url_fail(why, why_size,
                    "verify= is for rediss:// URLs only");
            }
            if (vlen == 1 && (eq[1] == '0' || eq[1] == '1')) {
                u->verify = eq[1] == '1';
            } else {
                return redis_url_fail(why, why_size,
                    "verify= of the Redis URL is 0 or 1");
            }

        } else {
            return redis_url_fail(why, why_size,
                "unknown option \"%.*s\" in the Redis URL (db, ca, verify)",
                (int) klen, p);
        }

        p = amp + 1;
        if (amp + 1 == end) {
            return redis_url_fail(why, why_size,
                "the Redis URL ends with \"&\"");
        }
    }

    return 0;
}


int
pusher_redis_url_parse(pusher_redis_url_t *u, const char *url, size_t len,
    char *why, size_t why_size)
{
    const char  *p, *end, *auth, *auth_end, *at, *colon, *hp, *path,
                *query, *rb;
    size_t       n, plen;
    long         dl;
    int          db_seen;

    memset(u, 0, sizeof(*u));
    u->port = PUSHER_REDIS_DEFAULT_PORT;
    u->verify = 1;
    db_seen = 0;

    if (why_size > 0) {
        why[0] = '\0';
    }

    if (len == 0) {
        return redis_url_fail(why, why_size, "empty Redis URL");
    }
    if (len > PUSHER_REDIS_URL_MAX) {
        return redis_url_fail(why, why_size,
            "Redis URL longer than %d bytes", PUSHER_REDIS_URL_MAX);
    }
    if (memchr(url, '\0', len) != NULL) {
        return redis_url_fail(why, why_size, "NUL byte in the Redis URL");
    }

    end = url + len;

    if (len > 8 && memcmp(url, "redis://", 8) == 0) {
        u->transport = PUSHER_REDIS_TCP;
        p = url + 8;
    } else if (len > 9 && memcmp(url, "rediss://", 9) == 0) {
        u->transport = PUSHER_REDIS_TLS;
        p = url + 9;
    } else if (len > 7 && memcmp(url, "unix://", 7) == 0) {
        u->transport = PUSHER_REDIS_UNIX;
        p = url + 7;
    } else {
        return redis_url_fail(why, why_size,
            "the Redis URL starts with neither redis://, rediss:// nor "
            "unix://");
    }

    /* the authority ends at the first '/' or '?' */
    auth = p;
    for (auth_end = p; auth_end < end; auth_end++) {
        if (*auth_end == '/' || *auth_end == '?') {
            break;
        }
    }

    /* userinfo: up to the last '@' of the authority */
    at = NULL;
    for (hp = auth; hp < auth_end; hp++) {
        if (*hp == '@') {
            at = hp;
        }
    }

    hp = auth;

    if (at != NULL) {
        colon = memchr(auth, ':', (size_t) (at - auth));
        if (colon == NULL) {
            return redis_url_fail(why, why_size,
                "the user part of the Redis URL has no \":password\" "
                "(redis://user:password@host or redis://:password@host)");
        }

        if (redis_url_decode(u->user, sizeof(u->user), auth,
                             (size_t) (colon - auth), 0) < 0)
        {
            return redis_url_fail(why, why_size,
                "the user name of the Redis URL is invalid or too long");
        }

        dl = redis_url_decode(u->password, sizeof(u->password), colon + 1,
                              (size_t) (at - colon - 1), 1);
        if (dl < 0) {
            return redis_url_fail(why, why_size,
                "the password of the Redis URL is invalid (bad %%-escape, "
                "a space or a control byte) or too long");
        }
        u->password_len = (size_t) dl;
        u->has_password = 1;

        hp = at + 1;
    }

    path = auth_end;
    query = memchr(path, '?', (size_t) (end - path));
    plen = (size_t) ((query ? query : end) - path);

    if (u->transport == PUSHER_REDIS_UNIX) {
        if (hp != auth_end) {
            return redis_url_fail(why, why_size,
                "a unix:// Redis URL has no host: unix:///path/to/redis.sock");
        }
        if (plen == 0 || path[0] != '/') {
            return redis_url_fail(why, why_size,
                "a unix:// Redis URL needs an absolute socket path");
        }
        if (plen >= sizeof(u->path)) {
            return redis_url_fail(why, why_size,
                "the socket path of the Redis URL is longer than %d bytes",
                (int) sizeof(u->path) - 1);
        }
        for (n = 0; n < plen; n++) {
            if ((unsigned char) path[n] < 0x20 || path[n] == 0x7f) {
                return redis_url_fail(why, why_size,
                    "control byte in the socket path of the Redis URL");
            }
        }
        memcpy(u->path, path, plen);
        u->path[plen] = '\0';

    } else {
        /* host[:port] in hp .. auth_end */
        if (hp == auth_end) {
            return redis_url_fail(why, why_size, "the Redis URL has no host");
        }

        if (*hp == '[') {
            rb = memchr(hp, ']', (size_t) (auth_end - hp));
            if (rb == NULL || rb == hp + 1) {
                return redis_url_fail(why, why_size,
                    "bad IPv6 address in the Redis URL");
            }
            for (p = hp + 1; p < rb; p++) {
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')
                      || (*p >= 'A' && *p <= 'F') || *p == ':'
                      || *p == '.'))
                {
                    return redis_url_fail(why, why_size,
                        "bad IPv6 address in the Redis URL");
                }
            }
            n = (size_t) (rb - hp - 1);
            if (n >= sizeof(u->host)) {
                return redis_url_fail(why, why_size,
                    "bad IPv6 address in the Redis URL");
            }
            memcpy(u->host, hp + 1, n);
            u->host[n] = '\0';
            p = rb + 1;
            if (p < auth_end && *p != ':') {
                return redis_url_fail(why, why_size,
                    "bad IPv6 address in the Redis URL");
            }

        } else {
            for (p = hp; p < auth_end && *p != ':'; p++) {
                if (!redis_url_host_char(*p)) {
                    return redis_url_fail(why, why_size,
                        "bad character in the host of the Redis URL");
                }
            }
            n = (size_t) (p - hp);
            if (n == 0) {
                return redis_url_fail(why, why_size,
                    "the Redis URL has no host");
            }
            if (n >= sizeof(u->host)) {
                return redis_url_fail(why, why_size,
                    "the host of the Redis URL is longer than %d bytes",
                    (int) sizeof(u->host) - 1);
            }
            memcpy(u->host, hp, n);
            u->host[n] = '\0';
        }

        if (p < auth_end) {
            /* p at ':' */
            if (redis_url_number(p + 1, (size_t) (auth_end - p - 1), 1,
                                 65535, &u->port) != 0)
            {
                return redis_url_fail(why, why_size,
                    "the port of the Redis URL is not 1 .. 65535");
            }
        }

        /* /db */
        if (plen > 0) {
            if (plen > 1) {
                if (redis_url_number(path + 1, plen - 1, 0,
                                     PUSHER_REDIS_DB_MAX, &u->db) != 0)
                {
                    return redis_url_fail(why, why_size,
                        "the path of the Redis URL is not a database "
                        "number 0 .. %d", PUSHER_REDIS_DB_MAX);
                }
                db_seen = 1;
            }
        }
    }

    if (query != NULL) {
        if (query + 1 == end) {
            return redis_url_fail(why, why_size,
                "the Redis URL ends with \"?\"");
        }
        if (redis_url_options(u, query + 1, (size_t) (end - query - 1),
                              &db_seen, why, why_size) != 0)
        {
            return -1;
        }
    }

    return 0;
}


static int
cluster_name_check(const char *what, const char *s, size_t len, size_t max,
    const char *extra, char *why, size_t why_size)
{
    size_t  i;
    char    c;

    if (len == 0) {
        return redis_url_fail(why, why_size, "empty %s", what);
    }

    if (len > max) {
        return redis_url_fail(why, why_size, "%s longer than %zu characters",
                              what, max);
    }

    for (i = 0; i < len; i++) {
        c = s[i];

        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
            || (c >= '0' && c <= '9') || (c != '\0' && strchr(extra, c)))
        {
            continue;
        }

        return redis_url_fail(why, why_size,
                              "%s: character %zu is not one of A-Z a-z 0-9 %s",
                              what, i + 1, extra);
    }

    return 0;
}


int
pusher_cluster_prefix_check(const char *s, size_t len, char *why,
    size_t why_size)
{
    return cluster_name_check("prefix", s, len, PUSHER_CLUSTER_PREFIX_MAX,
                              "_-.:{}", why, why_size);
}


int
pusher_cluster_node_check(const char *s, size_t len, char *why,
    size_t why_size)
{
    return cluster_name_check("node", s, len, PUSHER_CLUSTER_NODE_MAX, "_-.",
                              why, why_size);
}
