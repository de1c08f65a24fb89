#include "segment.hpp"

#include "pusher_ctl.h"

#include <chrono>
#include <cstring>
#include <random>
#include <stdexcept>
#include <unistd.h>

#include "log.hpp"
#include "pusher_proto.h"

namespace pusher::broker {

namespace bip = boost::interprocess;

namespace {

// Boost adds the leading slash itself on Linux; give it the bare name.
std::string boost_name(const std::string &name)
{
    return name.starts_with('/') ? name.substr(1) : name;
}

std::uint64_t random_generation()
{
    std::random_device rd;
    std::uint64_t g = 0;
    while (g == 0) {
        g = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    }
    return g;
}

std::uint64_t unix_time_ms()
{
    using namespace std::chrono;
    return static_cast<std::uint64_t>(
        duration_cast<milliseconds>(system_clock::now().time_since_epoch())
            .count());
}

} // namespace

segment::remove_guard::~remove_guard()
{
    if (armed) {
        bip::shared_memory_object::remove(name.c_str());
    }
}

segment::segment(const std::string &name, std::uint64_t capacity, mode_t mode)
    : name_(name),
      size_(PUSHER_SHM_SIZE(capacity)),
      guard_{boost_name(name), false}
{
    if (bip::shared_memory_object::remove(guard_.name.c_str())) {
        log_line("removed stale shm object \"" + name_ + "\"");
    }

    bip::permissions perm;
    perm.set_permissions(static_cast<unsigned>(mode));

    shm_ = bip::shared_memory_object(bip::create_only, guard_.name.c_str(),
                                     bip::read_write, perm);
    guard_.armed = true;
    shm_.truncate(static_cast<bip::offset_t>(size_));
    region_ = bip::mapped_region(shm_, bip::read_write);

    void *base = region_.get_address();
    generation_ = random_generation();

    // truncate() gave zero pages: layout_version is 0 until the end
    pusher_shm_header_t *h = pusher_shm_header(base);
    h->magic = PUSHER_SHM_MAGIC;
    h->header_size = PUSHER_SHM_HEADER_SIZE;
    h->generation = generation_;
    h->broker_pid = static_cast<std::int64_t>(::getpid());
    h->start_time_ms = unix_time_ms();
    h->segment_size = size_;
    h->desc_offset = PUSHER_SHM_DESC_OFFSET;
    h->wake_offset = PUSHER_SHM_WAKE_OFFSET;
    h->ring_offset = PUSHER_SHM_RING_OFFSET;
    h->ring_capacity = capacity;
    h->wake_slots = PUSHER_SHM_WAKE_SLOTS;
    h->max_record = static_cast<std::uint32_t>(capacity / 8);

    if (pusher_ring_init(&ring_, pusher_shm_ring(base), capacity,
                         pusher_shm_desc(base)) != 0)
    {
        throw std::invalid_argument("ring capacity is not a power of two"
                                    " in range");
    }
    pusher_ring_writer_reset(&ring_);

    // pairs with the worker's load-acquire of layout_version in attach:
    // every store above is visible once the version is
    pusher_store_release_u32(&h->layout_version, PUSHER_SHM_LAYOUT_VERSION);
}

segment::~segment() = default;

bool segment::publish_fields(std::int32_t type,
                             std::initializer_list<std::string_view> fields)
{
    std::size_t size = 0;
    for (std::string_view f : fields) {
        size += PUSHER_CTL_FIELD_SIZE(f.size());
    }
    if (size + PUSHER_RING_RECORD_HEADER > ring_.max_record) {
        return false;
    }
    std::uint8_t *p = pusher_ring_claim(&ring_, type,
                                        static_cast<std::uint32_t>(size));
    if (p == nullptr) {
        return false;
    }
    last_ = {reinterpret_cast<const char *>(p), size};
    for (std::string_view f : fields) {
        p = pusher_ctl_put(p, f.data(), static_cast<std::uint32_t>(f.size()));
    }
    pusher_ring_commit(&ring_);
    return true;
}

bool segment::publish_json(std::string_view app_id, std::string_view channel,
                           std::string_view socket_id, std::string_view json)
{
    std::size_t size = pusher_ring_event_size(app_id.size(), socket_id.size(),
                                              1, channel.size(), json.size());
    if (size == 0 || size > ring_.max_record) {
        return false;
    }
    // NULL if the record with its header exceeds max_record
    std::uint8_t *p = pusher_ring_claim(&ring_, PUSHER_RING_EVENT,
                                        static_cast<std::uint32_t>(size));
    if (p == nullptr) {
        return false;
    }
    pusher_str_t a{app_id.data(), app_id.size()};
    pusher_str_t c{channel.data(), channel.size()};
    pusher_str_t s{socket_id.data(), socket_id.size()};
    pusher_ring_event_encode_json(
        p, &a, &c, &s, reinterpret_cast<const std::uint8_t *>(json.data()),
        json.size());
    pusher_ring_commit(&ring_);
    last_ = {reinterpret_cast<const char *>(p), size};
    return true;
}

} // namespace pusher::broker
