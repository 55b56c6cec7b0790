// The SIGBUS probe: accesses to mapped memory that are allowed to fault.
//
// An access beyond the end of a mapped object raises SIGBUS.  install_sigbus_probe() installs a
// process-wide SA_SIGINFO handler; each probe arms a per-thread sigjmp_buf, and a SIGBUS taken
// while armed unwinds back to the probe (siglongjmp), which reports the faulting address.  A
// SIGBUS outside any probe is a real crash and kills the process as usual.  Threads probe
// independently; a forked child inherits the handler.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

namespace vmcoh {

// Idempotent; call it in every process before its first probe.
void install_sigbus_probe();

struct SigbusFault {
  const void* address;  // si_addr: the first address that faulted
};

// Copies `words` 8-byte words from mapped memory into `dst`, as volatile loads in ascending order.
[[nodiscard]] std::optional<SigbusFault> probe_load(std::uint64_t* dst,
                                                    const volatile std::uint64_t* src,
                                                    std::size_t words);
// Copies `words` words from `src` into mapped memory, as volatile stores in ascending order.
[[nodiscard]] std::optional<SigbusFault> probe_store(volatile std::uint64_t* dst,
                                                     const std::uint64_t* src, std::size_t words);

// True if one load of `address` raises SIGBUS.
[[nodiscard]] bool load_would_sigbus(const volatile void* address);
// Stores `value` at `address`; true if the store raised SIGBUS (and so did not happen).
[[nodiscard]] bool store_would_sigbus(volatile void* address, std::byte value);

}  // namespace vmcoh
