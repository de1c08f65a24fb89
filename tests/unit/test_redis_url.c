/*
 * Unit tests: the Redis URL of the cluster engine (common/pusher_redis_url.c):
 * the three schemes, the defaults, userinfo with percent escapes, the
 * options and the rejects (with a message, never the password).
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "pusher_redis_url.h"


static int
parse(pusher_redis_url_t *u, const char *url, char *why, size_t n)
{
    int     rc;
    char   *copy;
    size_t  len;

    /* an exact-size heap copy without NUL: ASan sees any read past it */
    len = strlen(url);
    copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, url, len);
    rc = pusher_redis_url_parse(u, copy, len, why, n);
    free(copy);

    return rc;
}


static void
test_tcp_defaults(void **state)
{
    pusher_redis_url_t  u;
    char                why[256];

    assert_int_equal(parse(&u, "redis://localhost", why, sizeof(why)), 0);
    assert_int_equal(u.transport, PUSHER_REDIS_TCP);
    assert_string_equal(u.host, "localhost");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    assert_int_equal(u.has_password, 0);
    assert_string_equal(u.user, "");

    assert_int_equal(parse(&u, "redis://10.0.0.7:6380/3", why, sizeof(why)),
                     0);
    assert_string_equal(u.host, "10.0.0.7");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 3);

    assert_int_equal(parse(&u, "redis://h/", why, sizeof(why)), 0);
    assert_int_equal(u.db, 0);

    assert_int_equal(parse(&u, "redis://[::1]:7000/15", why, sizeof(why)),
                     0);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 7000);
    assert_int_equal(u.db, 15);

    assert_int_equal(parse(&u, "redis://[fe80::1]", why, sizeof(why)), 0);
    assert_string_equal(u.host, "fe80::1");
    assert_int_equal(u.port, 6379);

    assert_int_equal(parse(&u, "redis://h?db=2", why, sizeof(why)), 0);
    assert_int_equal(u.db, 2);
}


static void
test_userinfo(void **state)
{
    pusher_redis_url_t  u;
    char                why[256];

    assert_int_equal(parse(&u, "redis://:secret@h", why, sizeof(why)), 0);
    assert_int_equal(u.has_password, 1);
    assert_string_equal(u.user, "");
    assert_int_equal(u.password_len, 6);
    assert_memory_equal(u.password, "secret", 6);

    assert_int_equal(parse(&u, "redis://alice:pw@h:1/9", why, sizeof(why)),
                     0);
    assert_string_equal(u.user, "alice");
    assert_memory_equal(u.password, "pw", 2);
    assert_string_equal(u.host, "h");
    assert_int_equal(u.port, 1);
    assert_int_equal(u.db, 9);

    /* escapes; the last '@' of the authority ends the userinfo */
    assert_int_equal(parse(&u, "redis://a%40b:p%3A%2F%25@x@h", why,
                           sizeof(why)), 0);
    assert_string_equal(u.user, "a@b");
    assert_int_equal(u.password_len, 6);
    assert_memory_equal(u.password, "p:/%@x", 6);
    assert_string_equal(u.host, "h");

    /* an empty password is still AUTH */
    assert_int_equal(parse(&u, "redis://:@h", why, sizeof(why)), 0);
    assert_int_equal(u.has_password, 1);
    assert_int_equal(u.password_len, 0);

    /* a NUL byte in the password is kept, with its length */
    assert_int_equal(parse(&u, "redis://:a%00b@h", why, sizeof(why)), 0);
    assert_int_equal(u.password_len, 3);
    assert_memory_equal(u.password, "a\0b", 3);
}


static void
test_tls(void **state)
{
    pusher_redis_url_t  u;
    char                why[256];

    assert_int_equal(parse(&u, "rediss://:pw@cache.example:6380/1"
                           "?ca=/etc/ssl/redis%20ca.pem", why, sizeof(why)),
                     0);
    assert_int_equal(u.transport, PUSHER_REDIS_TLS);
    assert_string_equal(u.host, "cache.example");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 1);
    assert_string_equal(u.ca_file, "/etc/ssl/redis ca.pem");
    assert_int_equal(u.verify, 1);

    assert_int_equal(parse(&u, "rediss://h?verify=0&db=4", why, sizeof(why)),
                     0);
    assert_int_equal(u.verify, 0);
    assert_int_equal(u.db, 4);
    assert_string_equal(u.ca_file, "");
}


static void
test_unix(void **state)
{
    pusher_redis_url_t  u;
    char                why[256];

    assert_int_equal(parse(&u, "unix:///run/redis/redis.sock", why,
                           sizeof(why)), 0);
    assert_int_equal(u.transport, PUSHER_REDIS_UNIX);
    assert_string_equal(u.path, "/run/redis/redis.sock");
    assert_int_equal(u.db, 0);

    assert_int_equal(parse(&u, "unix://:pw@/tmp/r.sock?db=5", why,
                           sizeof(why)), 0);
    assert_string_equal(u.path, "/tmp/r.sock");
    assert_int_equal(u.db, 5);
    assert_int_equal(u.has_password, 1);
    assert_memory_equal(u.password, "pw", 2);
}


static void
reject(const char *url, const char *part)
{
    pusher_redis_url_t  u;
    char                why[256];

    why[0] = '\0';
    if (parse(&u, url, why, sizeof(why)) != -1) {
        fail_msg("accepted: %s", url);
    }
    if (strstr(why, part) == NULL) {
        fail_msg("%s: \"%s\" has no \"%s\"", url, why, part);
    }
    /* the message never shows the password */
    assert_null(strstr(why, "hunter2"));
}


static void
test_rejects(void **state)
{
    char  path[200];

    reject("", "empty");
    reject("http://h", "starts with");
    reject("redis://", "starts with");
    reject("redis:///3", "no host");
    reject("redis://h:0", "port");
    reject("redis://h:65536", "port");
    reject("redis://h:", "port");
    reject("redis://h:63x", "port");
    reject("redis://h/x", "database");
    reject("redis://h/1/2", "database");
    reject("redis://h/1000001", "database");
    reject("redis://h/1?db=2", "twice");
    reject("redis://h?db=", "db=");
    reject("redis://h?", "ends with");
    reject("redis://h?db=1&", "ends with");
    reject("redis://h?db", "no value");
    reject("redis://h?timeout=1", "unknown option");
    reject("redis://h?ca=/x", "rediss://");
    reject("unix:///s?verify=0", "rediss://");
    reject("rediss://h?verify=2", "0 or 1");
    reject("redis://hunter2@h", ":password");
    reject("redis://:hunter2%zz@h", "password");
    reject("redis://:hunter2 x@h", "password");
    reject("redis://a%00:hunter2@h", "user");
    reject("redis://h_o st", "host");
    reject("redis://[::1", "IPv6");
    reject("redis://[]", "IPv6");
    reject("redis://[::1]x", "IPv6");
    reject("redis://[g::1]", "IPv6");
    reject("unix://h/s", "no host");
    reject("unix://relative", "no host");
    reject("unix://", "starts with");
    reject("unix:///s/2?db=x", "db=");

    memset(path, 'a', sizeof(path));
    memcpy(path, "unix:///", 8);
    path[8 + 120] = '\0';
    reject(path, "longer than");
}


static void
test_cluster_names(void **state)
{
    char  why[256], name[200];

    (void) state;

    assert_int_equal(pusher_cluster_prefix_check("ngx-pusher:", 11, why,
                                                 sizeof(why)), 0);
    assert_int_equal(pusher_cluster_prefix_check("{app}.v2_x:", 11, why,
                                                 sizeof(why)), 0);
    assert_int_equal(pusher_cluster_node_check("web-1.eu_west", 13, why,
                                               sizeof(why)), 0);

    assert_int_equal(pusher_cluster_prefix_check("", 0, why, sizeof(why)), -1);
    assert_string_equal(why, "empty prefix");

    assert_int_equal(pusher_cluster_prefix_check("a b", 3, why, sizeof(why)),
                     -1);
    assert_string_equal(why,
                        "prefix: character 2 is not one of A-Z a-z 0-9 _-.:{}");

    /* a NUL byte is not taken for the end of the allowed set */
    assert_int_equal(pusher_cluster_node_check("a\0b", 3, why, sizeof(why)),
                     -1);
    assert_string_equal(why, "node: character 2 is not one of A-Z a-z 0-9 _-.");

    /* ':' and braces are a prefix's, not a node's */
    assert_int_equal(pusher_cluster_node_check("a:b", 3, why, sizeof(why)),
                     -1);
    assert_int_equal(pusher_cluster_node_check("{a}", 3, why, sizeof(why)),
                     -1);

    memset(name, 'n', sizeof(name));
    assert_int_equal(pusher_cluster_node_check(name, PUSHER_CLUSTER_NODE_MAX,
                                               why, sizeof(why)), 0);
    assert_int_equal(pusher_cluster_node_check(name,
                                               PUSHER_CLUSTER_NODE_MAX + 1,
                                               why, sizeof(why)), -1);
    assert_string_equal(why, "node longer than 64 characters");
    assert_int_equal(pusher_cluster_prefix_check(name,
                                                 PUSHER_CLUSTER_PREFIX_MAX,
                                                 why, sizeof(why)), 0);
    assert_int_equal(pusher_cluster_prefix_check(name,
                                                 PUSHER_CLUSTER_PREFIX_MAX + 1,
                                                 why, sizeof(why)), -1);
    assert_string_equal(why, "prefix longer than 128 characters");
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp_defaults),
        cmocka_unit_test(test_userinfo),
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_unix),
        cmocka_unit_test(test_rejects),
        cmocka_unit_test(test_cluster_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
