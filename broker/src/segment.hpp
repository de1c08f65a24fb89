#pragma once

#include <initializer_list>

#include <cstdint>
#include <string>
#include <string_view>
#include <sys/types.h>

#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>

#include "pusher_ring.h"
#include "pusher_shm.h"

namespace pusher::broker {

// The shared-memory segment of pusher_shm.h, owned by this process: created
// (after removing a stale object of the same name) in the constructor,
// removed in the destructor.  Only the layout of pusher_shm.h lives in it.
class segment {
public:
    // name as for shm_open ("/ngx-pusher"); capacity a valid ring size
    segment(const std::string &name, std::uint64_t capacity, mode_t mode);
    ~segment();

    segment(const segment &) = delete;
    segment &operator=(const segment &) = delete;

    const std::string &name() const noexcept { return name_; }
    std::uint64_t generation() const noexcept { return generation_; }
    std::uint64_t size() const noexcept { return size_; }
    pusher_ring_t &ring() noexcept { return ring_; }

    // Appends a PUSHER_RING_EVENT record whose frame carries exactly json
    // (socket_id empty: no exclusion).  The caller rings the doorbells.
    // False if the record cannot fit the ring.
    // a record of pusher_ctl.h fields (PUSHER_RING_PRESENCE_JOINED, ...);
    // false if it does not fit the ring
    bool publish_fields(std::int32_t type,
                        std::initializer_list<std::string_view> fields);

    bool publish_json(std::string_view app_id, std::string_view channel,
                      std::string_view socket_id, std::string_view json);

    // the payload of the record publish_fields() or publish_json() last
    // committed (valid until the next write)
    std::string_view last_record() const noexcept { return last_; }
    pusher_shm_wake_t *wake(std::uint32_t slot) noexcept
    {
        return pusher_shm_wake(region_.get_address(), slot);
    }

private:
    // removes the object when the owner goes away, even if the
    // constructor fails after creating it
    struct remove_guard {
        std::string name;
        bool armed = false;
        ~remove_guard();
    };

    std::string name_;
    std::uint64_t generation_ = 0;
    std::uint64_t size_ = 0;
    remove_guard guard_;
    boost::interprocess::shared_memory_object shm_;
    boost::interprocess::mapped_region region_;
    pusher_ring_t ring_{};
    std::string_view last_;
};

} // namespace pusher::broker
