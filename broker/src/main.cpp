// pusher-broker: the Pusher HTTP API and ring writer behind nginx.

#include <csignal>
#include <cstdio>
#include <exception>
#include <optional>

#include <boost/asio/signal_set.hpp>

#include "app_registry.hpp"
#include "cluster.hpp"
#include "config.hpp"
#include "control_server.hpp"
#include "http_server.hpp"
#include "log.hpp"
#include "metrics.hpp"
#include "segment.hpp"
#include "ring_flow.hpp"
#include "trigger_api.hpp"
#include "unix_socket_path.hpp"
#include "webhooks.hpp"

namespace pusher::broker {

namespace {

int run(const options &opt)
{
    // one thread: the ring has a single writer and needs no locks
    net::io_context ioc(1);

    // another broker still serving these sockets keeps its segment
    unix_socket_path::refuse_if_live(opt.control_path);
    if (opt.api.is_unix) {
        unix_socket_path::refuse_if_live(opt.api.path);
    }

    segment seg(opt.shm_name, opt.ring_size, opt.socket_mode);
    app_registry apps;
    webhook_sender hooks(ioc, apps);
    control_server control(ioc, opt.control_path, opt.socket_mode, seg, apps,
                           hooks);
    ring_flow flow(seg);
    control.set_flow(flow);
    control.set_config_owner(opt.config_owner);
    cluster nodes(ioc, seg, flow, apps, [&] { control.notify_published(); });
    control.set_cluster(nodes);
    trigger_api api(ioc, seg, apps, control, flow);
    broker_metrics metrics;
    control.set_metrics([&](std::string &out) {
        metrics.render(out, apps, hooks);
        nodes.render_metrics(out);
        // coalescing is done here, before the ring (trigger_api)
        broker_metrics::render_coalescing(out, apps, api.coalescing());
    });
    http_server server(ioc, opt.api, opt.socket_mode, opt.max_body, apps,
                       api, metrics);

    net::signal_set signals(ioc, SIGINT, SIGTERM);
    signals.async_wait([&](boost::system::error_code ec, int signo) {
        if (ec) {
            return;
        }
        log_line(std::string("signal ") + (signo == SIGINT ? "INT" : "TERM")
                 + ": stopping");
        server.stop();
        // what coalescing holds was answered 200: out before the end
        api.drain_coalesced();
        control.stop();
        nodes.stop();
        hooks.stop();
        ioc.stop();
    });

    control.start();
    server.start();
    log_line("started: api " + opt.api.describe() + ", control "
             + opt.control_path + ", shm " + opt.shm_name + " ("
             + std::to_string(seg.size()) + " bytes, ring "
             + std::to_string(opt.ring_size) + ")");

    ioc.run();
    return 0;
}

} // namespace

} // namespace pusher::broker

int main(int argc, char **argv)
{
    using namespace pusher::broker;

    std::optional<options> opt;
    try {
        opt = parse_options(argc, argv);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "pusher-broker: %s\n", e.what());
        return 2;
    }
    if (!opt) {
        return 0;
    }

    // a worker that vanishes mid-write must not kill the broker
    std::signal(SIGPIPE, SIG_IGN);

    try {
        int rc = run(*opt);
        log_line("stopped");
        return rc;
    } catch (const std::exception &e) {
        log_line(std::string("fatal: ") + e.what());
        return 1;
    }
}
