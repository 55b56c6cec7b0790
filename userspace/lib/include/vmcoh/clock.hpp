#pragma once

#include <time.h>

#include <cstdint>

namespace vmcoh {

// CLOCK_MONOTONIC in nanoseconds: one clock for every process of a run, so op logs written by
// different actors can be ordered against each other.
inline std::uint64_t monotonic_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ULL +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

}  // namespace vmcoh
