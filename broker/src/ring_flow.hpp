#pragma once

#include <array>
#include <chrono>
#include <cstdint>

#include "segment.hpp"

namespace pusher::broker {

// Flow control of the ring (docs/architecture.md, "The ring"): records are
// written only if they leave intact what every attached worker that keeps
// up has yet to read.  A worker stores its read cursor in its wake slot
// after each record it has handed to its sockets; one whose cursor has not
// moved for `stall` while it had records to read has stopped (SIGSTOP,
// swapped out, a debugger) and no longer holds the writer back: it is
// lapped, and closes its subscribed sockets with 4200 when it runs again.
class ring_flow {
public:
    using clock = std::chrono::steady_clock;

    explicit ring_flow(segment &seg,
                       clock::duration stall = std::chrono::seconds(1));

    // true if records ending at position end overwrite nothing a live
    // worker has yet to read
    bool room(std::uint64_t end, clock::time_point now = clock::now());

    // the end of records of the given payload lengths written now
    std::uint64_t end_after(std::uint64_t end, std::uint32_t len) const;
    std::uint64_t tail() const;

private:
    struct slot_state {
        std::uint32_t pid = 0;          // the owner these fields are about
        std::uint64_t cursor = 0;
        clock::time_point moved{};      // cursor last moved, or caught up
    };

    segment &seg_;
    clock::duration stall_;
    std::array<slot_state, PUSHER_SHM_WAKE_SLOTS> slots_{};
};

} // namespace pusher::broker
