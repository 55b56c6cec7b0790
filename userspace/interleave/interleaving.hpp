// An interleaving: one seed diagram, driven exactly with hold points, and the unsafe protocol
// variant it exists to catch.  Against the safe module every repetition must be legal; against
// its variant every repetition must be a violation.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "scene.hpp"

namespace vmcoh::interleave {

struct Interleaving {
  std::string_view name;     // after the seed it reproduces
  std::string_view seed;     // the thread or commit, under /work/shared/seeds or in mm/
  std::uint64_t catches;     // VMCOH_UNSAFE_*
  bool uses_hold_points;     // false: the bug needs no concurrency to show
  std::string_view diagram;  // the steps, in order, on one line
  void (*run)(Scene& scene);
};

extern const Interleaving kWriteVsFault;
extern const Interleaving kUnmapBeforeRemove;
extern const Interleaving kTruncateVsNopage;
extern const Interleaving kTruncateEvenCows;
extern const Interleaving kFreeBeforeUnmap;
extern const Interleaving kWriteNoInvalidate;
extern const Interleaving kZeroUnmapAfterPublishFault;
extern const Interleaving kZeroUnmapAfterPublishMkwrite;
extern const Interleaving kStoreHandoff;

[[nodiscard]] std::span<const Interleaving* const> all_interleavings() noexcept;
// nullptr if there is none of that name.
[[nodiscard]] const Interleaving* find_interleaving(std::string_view name) noexcept;

}  // namespace vmcoh::interleave
