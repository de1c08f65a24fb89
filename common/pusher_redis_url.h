/*
 * The Redis URL of the cluster engine (issue 12): one parser that the
 * broker (which connects) and, later, the module (which checks the
 * pusher_cluster directive at nginx -t) both use.
 *
 *     redis://[[user]:password@]host[:port][/db][?option...]
 *     rediss://[[user]:password@]host[:port][/db][?option...]   (TLS)
 *     unix://[[user]:password@]/path/to/redis.sock[?option...]
 *
 * host: a name or an IPv4 address, or an IPv6 address in brackets; port
 * 1 .. 65535 (6379 by default); db 0 .. PUSHER_REDIS_DB_MAX (0 by default).
 * user and password are percent-decoded (a password with '@', ':' or '/'
 * is written %40, %3A, %2F); an empty user with a password ("redis://:pw@h")
 * is AUTH with the password only.  Options, "&"-separated:
 *
 *     db=N      the database (the only way to give it in a unix:// URL; in
 *               the others, not together with a /db path)
 *     ca=FILE   rediss:// only: the CA certificates (PEM) that verify the
 *               server, instead of the system's default paths
 *     verify=0  rediss:// only: no verification of the server's
 *               certificate (tests, private networks)
 *
 * The path of a unix:// URL is absolute, taken as it is (no percent
 * decoding) and shorter than sun_path.
 */

#ifndef PUSHER_REDIS_URL_H
#define PUSHER_REDIS_URL_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif


#define PUSHER_REDIS_URL_MAX        4096
#define PUSHER_REDIS_HOST_MAX       256
#define PUSHER_REDIS_PATH_MAX       108    /* sizeof(sun_path) on Linux */
#define PUSHER_REDIS_USER_MAX       256
#define PUSHER_REDIS_PASSWORD_MAX   512
#define PUSHER_REDIS_CA_MAX         1024
#define PUSHER_REDIS_DB_MAX         1000000
#define PUSHER_REDIS_DEFAULT_PORT   6379


typedef enum {
    PUSHER_REDIS_TCP = 0,
    PUSHER_REDIS_TLS,
    PUSHER_REDIS_UNIX
} pusher_redis_transport_e;


typedef struct {
    pusher_redis_transport_e  transport;
    char      host[PUSHER_REDIS_HOST_MAX];      /* TCP, TLS; no brackets */
    unsigned  port;                             /* TCP, TLS */
    char      path[PUSHER_REDIS_PATH_MAX];      /* UNIX */
    char      user[PUSHER_REDIS_USER_MAX];      /* "" for none */
    char      password[PUSHER_REDIS_PASSWORD_MAX];
    size_t    password_len;                     /* may hold NUL bytes */
    int       has_password;                     /* AUTH is sent */
    unsigned  db;
    char      ca_file[PUSHER_REDIS_CA_MAX];     /* TLS, "" for the default */
    int       verify;                           /* TLS, 1 unless verify=0 */
} pusher_redis_url_t;


/*
 * Parses url[0 .. len) into *u.  Returns 0, or -1 with a message in
 * why[0 .. why_size) (NUL-terminated, cut to fit) that never holds the
 * password.
 */
int pusher_redis_url_parse(pusher_redis_url_t *u, const char *url,
    size_t len, char *why, size_t why_size);


/*
 * The other two parts of "pusher_cluster URL [prefix=P] [node=N]":
 *
 * prefix  starts every Redis key and pub/sub channel of the cluster, so
 *         that several clusters (or a Laravel app) share one Redis:
 *         1 .. PUSHER_CLUSTER_PREFIX_MAX of A-Z a-z 0-9 and "_-.:{}"
 *         (braces: a Redis Cluster hash tag)
 * node    this host's name in the cluster, unique among its hosts (the
 *         host name by default): 1 .. PUSHER_CLUSTER_NODE_MAX of A-Z a-z
 *         0-9 and "_-."
 *
 * Each returns 0, or -1 with a message in why[0 .. why_size).
 */

#define PUSHER_CLUSTER_PREFIX_MAX      128
#define PUSHER_CLUSTER_NODE_MAX        64
#define PUSHER_CLUSTER_DEFAULT_PREFIX  "ngx-pusher:"

int pusher_cluster_prefix_check(const char *s, size_t len, char *why,
    size_t why_size);
int pusher_cluster_node_check(const char *s, size_t len, char *why,
    size_t why_size);


#ifdef __cplusplus
}
#endif

#endif /* PUSHER_REDIS_URL_H */
