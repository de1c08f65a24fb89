#include "ring_flow.hpp"

#include "pusher_ring.h"

namespace pusher::broker {

ring_flow::ring_flow(segment &seg, clock::duration stall)
    : seg_(seg), stall_(stall)
{
}

std::uint64_t ring_flow::tail() const
{
    return pusher_ring_tail(&seg_.ring());
}

std::uint64_t ring_flow::end_after(std::uint64_t end, std::uint32_t len) const
{
    return pusher_ring_next_tail(&seg_.ring(), end, len);
}

bool ring_flow::room(std::uint64_t end, clock::time_point now)
{
    const pusher_ring_t &ring = seg_.ring();
    std::uint64_t tail = pusher_ring_tail(&ring);
    bool ok = true;

    for (std::uint32_t k = 0; k < PUSHER_SHM_WAKE_SLOTS; k++) {
        const pusher_shm_wake_t *wake = seg_.wake(k);
        slot_state &s = slots_[k];
        // set by control_server when it hands the slot to a worker; the
        // worker stores its cursor once it has mapped the segment (until
        // then the slot may show its previous owner's cursor, which at
        // worst makes a request wait until the new owner's first store)
        std::uint32_t pid = pusher_load_acquire_u32(&wake->pid);
        if (pid == 0) {
            s = slot_state{};
            continue;
        }
        std::uint64_t cursor = pusher_ring_load_cursor(wake);
        if (pid != s.pid || cursor != s.cursor || cursor >= tail) {
            s.pid = pid;
            s.cursor = cursor;
            s.moved = now;
        }
        // every slot is looked at, so that each one's progress is current
        if (end - cursor > ring.capacity && now - s.moved < stall_) {
            ok = false;
        }
    }
    return ok;
}

} // namespace pusher::broker
