// The cluster message of docs/cluster.md, without a broker process or a
// Redis: "v1 <node> <epoch> <seq> <type>\n<payload>" round trips with any
// payload bytes, and every malformed header is refused (a message comes
// from whoever can PUBLISH on the Redis).

#include "broker_test.hpp"

#include "cluster.hpp"

using namespace pusher::broker;

TEST_CASE("cluster: a message round trips with any payload bytes")
{
    std::string payload("a\nb\0c\xff", 6);
    std::string text = cluster::encode("web-1", 18446744073709551615ull, 7, 1,
                                       payload);
    CHECK_EQ(text.substr(0, text.find('\n')),
             std::string("v1 web-1 18446744073709551615 7 1"));
    cluster::message m;
    CHECK(cluster::decode(text, m));
    CHECK_EQ(std::string(m.node), std::string("web-1"));
    CHECK(m.epoch == 18446744073709551615ull);
    CHECK(m.seq == 7u);
    CHECK(m.type == 1);
    CHECK_EQ(std::string(m.payload), payload);

    // a heartbeat: type 0, no payload
    CHECK(cluster::decode(cluster::encode("n", 1, 0, cluster::heartbeat, {}),
                          m));
    CHECK(m.type == cluster::heartbeat);
    CHECK(m.payload.empty());
}

TEST_CASE("cluster: malformed headers are refused")
{
    const char *bad[] = {
        "",
        "v1 n 1 2 1",               // no newline
        "v2 n 1 2 1\n",             // another version
        "v1  1 2 1\n",              // no node
        "v1 n 1 2\n",               // no type
        "v1 n 1 2 1 9\n",           // a token too many
        "v1 n 1 2 1 \n",            // a trailing space
        "v1 n 01 2 1\n",            // a leading zero
        "v1 n 1 -2 1\n",            // a sign
        "v1 n 1 2 x\n",             // not a number
        "v1 n 18446744073709551616 2 1\n",  // over 64 bits
        "v1 n 1 2 2147483648\n",    // over the type's range
    };
    cluster::message m;
    for (const char *t : bad) {
        if (cluster::decode(t, m)) {
            std::fprintf(stderr, "accepted: \"%s\"\n", t);
            CHECK(false);
        }
    }
    // a header longer than 256 bytes, whatever follows
    std::string longer = "v1 " + std::string(300, 'n') + " 1 2 1\n";
    CHECK(!cluster::decode(longer, m));
    // zero is a number, not a leading zero
    CHECK(cluster::decode(std::string_view("v1 n 0 0 0\n"), m));
}

int main(int argc, char **argv)
{
    return test_main(argc, argv, "test_cluster", false);
}
