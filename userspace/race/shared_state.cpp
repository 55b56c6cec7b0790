#include "shared_state.hpp"

#include <algorithm>
#include <atomic>
#include <limits>

#include <vmcoh/clock.hpp>

namespace vmcoh::race {

namespace {

constexpr std::uint64_t kKindBits = 8;
// SizeRecord.generation while the resizer rewrites the slot.
constexpr std::uint64_t kReusing = std::numeric_limits<std::uint64_t>::max();

constexpr std::uint64_t make_tag(std::uint64_t state, StateKind kind) noexcept {
  return (state << kKindBits) | static_cast<std::uint64_t>(kind);
}
constexpr std::uint64_t tag_state(std::uint64_t tag) noexcept { return tag >> kKindBits; }
constexpr StateKind tag_kind(std::uint64_t tag) noexcept {
  return static_cast<StateKind>(tag & ((1U << kKindBits) - 1));
}

}  // namespace

std::string_view to_string(OpMethod method) noexcept {
  switch (method) {
    case OpMethod::none:
      return "none";
    case OpMethod::pwrite:
      return "pwrite";
    case OpMethod::pwritev:
      return "pwritev";
    case OpMethod::lseek_write:
      return "lseek+write";
    case OpMethod::punch:
      return "punch";
    case OpMethod::shrink:
      return "shrink";
    case OpMethod::mmap_store:
      return "mmap-store";
    case OpMethod::store_pwrite:
      return "store+pwrite";
    case OpMethod::zero_range:
      return "zero-range";
    case OpMethod::copy_file_range:
      return "copy_file_range";
    case OpMethod::splice:
      return "splice";
    case OpMethod::pvm:
      return "pvm";
    case OpMethod::dio:
      return "dio";
    case OpMethod::uring:
      return "uring";
    case OpMethod::zero_write:
      return "zero-write";
  }
  return "?";
}

std::string_view to_string(ReadPath path) noexcept {
  switch (path) {
    case ReadPath::shared_load:
      return "MAP_SHARED load";
    case ReadPath::private_load:
      return "MAP_PRIVATE load";
    case ReadPath::private_store:
      return "MAP_PRIVATE store";
    case ReadPath::pread:
      return "pread";
  }
  return "?";
}

SharedState::SharedState(std::size_t pages, std::size_t actors, std::size_t hot_slots)
    : control_(1),
      pages_(pages),
      counters_(actors),
      hot_(2 * hot_slots),
      violations_(kMaxRecordedViolations) {}

std::uint64_t SharedState::last_state(std::size_t page) const noexcept {
  return atomic(pages_[page].begun).load(std::memory_order_relaxed);
}

StateKind SharedState::last_kind(std::size_t page) const noexcept {
  const std::uint64_t state = last_state(page);
  if (state == 0) return StateKind::hole;
  return tag_kind(
      atomic(pages_[page].log[state % kOpLogDepth].tag).load(std::memory_order_relaxed));
}

void SharedState::begin_op(std::size_t page, std::uint64_t state, StateKind kind, OpMethod method,
                           std::size_t range_first, std::size_t range_pages,
                           OpMethod pinned) const noexcept {
  PageSlot& slot = pages_[page];
  OpRecord& rec = slot.log[state % kOpLogDepth];
  atomic(rec.method).store(static_cast<std::uint64_t>(method), std::memory_order_relaxed);
  atomic(rec.pinned).store(static_cast<std::uint64_t>(pinned), std::memory_order_relaxed);
  atomic(rec.range_first).store(range_first, std::memory_order_relaxed);
  atomic(rec.range_pages).store(range_pages, std::memory_order_relaxed);
  atomic(rec.end_ns).store(0, std::memory_order_relaxed);
  atomic(rec.start_ns).store(monotonic_ns(), std::memory_order_relaxed);
  atomic(rec.tag).store(make_tag(state, kind), std::memory_order_relaxed);
  // Release: a reader that sees begun >= state also sees the tag above.
  atomic(slot.begun).store(state, std::memory_order_release);
}

void SharedState::end_op(std::size_t page, std::uint64_t state) const noexcept {
  PageSlot& slot = pages_[page];
  // Release: the operation (a system call that returned) happens-before any load that sees done.
  atomic(slot.done).store(state, std::memory_order_release);
  atomic(slot.log[state % kOpLogDepth].end_ns).store(monotonic_ns(), std::memory_order_relaxed);
}

void SharedState::begin_resize(std::uint64_t generation, std::uint64_t size) const noexcept {
  Control& c = control();
  SizeRecord& rec = c.sizes[generation % kOpLogDepth];
  // A seqlock over the two words of the slot: a reader that sees the same generation before and
  // after reading the size read the size of that generation.
  atomic(rec.generation).store(kReusing, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  atomic(rec.size).store(size, std::memory_order_relaxed);
  atomic(rec.generation).store(generation, std::memory_order_release);
  atomic(c.size_begun).store(generation, std::memory_order_release);
}

void SharedState::end_resize(std::uint64_t generation) const noexcept {
  atomic(control().size_done).store(generation, std::memory_order_release);
}

void SharedState::begin_cut(std::size_t page) const noexcept {
  atomic(pages_[page].cuts_begun).fetch_add(1, std::memory_order_release);
}

void SharedState::end_cut(std::size_t page) const noexcept {
  atomic(pages_[page].cuts_done).fetch_add(1, std::memory_order_release);
}

void SharedState::set_method(OpMethod method, MethodState state,
                             std::string_view reason) const noexcept {
  MethodProbe& probe = control().methods[static_cast<std::size_t>(method)];
  const std::size_t n = std::min(reason.size(), sizeof probe.reason - 1);
  std::copy_n(reason.data(), n, probe.reason);
  probe.reason[n] = '\0';
  atomic(probe.state).store(state, std::memory_order_release);
}

bool SharedState::method_supported(OpMethod method) const noexcept {
  return atomic(control().methods[static_cast<std::size_t>(method)].state)
             .load(std::memory_order_acquire) == MethodState::supported;
}

std::vector<SharedState::MethodReport> SharedState::probed_methods() const {
  std::vector<MethodReport> out;
  for (std::size_t m = 0; m < kOpMethodCount; ++m) {
    MethodProbe& probe = control().methods[m];
    const MethodState state = atomic(probe.state).load(std::memory_order_acquire);
    if (state == MethodState::unprobed) continue;
    out.push_back({static_cast<OpMethod>(m), state == MethodState::supported, probe.reason});
  }
  return out;
}

std::uint64_t SharedState::latest_size() const noexcept {
  Control& c = control();
  const std::uint64_t g = atomic(c.size_begun).load(std::memory_order_acquire);
  SizeRecord& rec = c.sizes[g % kOpLogDepth];
  const std::uint64_t before = atomic(rec.generation).load(std::memory_order_acquire);
  const std::uint64_t size = atomic(rec.size).load(std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_acquire);
  if (before != g || atomic(rec.generation).load(std::memory_order_relaxed) != g) {
    return pages() * kPageSize;
  }
  return size;
}

std::optional<oracle::Window> SharedState::window(std::size_t page, std::uint64_t done,
                                                  std::uint64_t begun) const noexcept {
  PageSlot& slot = pages_[page];
  return oracle::Window::build(done, begun, [&](std::uint64_t s) -> std::optional<StateKind> {
    const std::uint64_t tag = atomic(slot.log[s % kOpLogDepth].tag).load(std::memory_order_relaxed);
    if (tag_state(tag) != s) return std::nullopt;  // the slot now describes a newer state
    return tag_kind(tag);
  });
}

std::optional<oracle::SizeWindow> SharedState::size_window(std::uint64_t done,
                                                           std::uint64_t begun) const noexcept {
  if (begun < done || begun - done >= kOpLogDepth) return std::nullopt;
  oracle::SizeWindow w{done, begun, std::numeric_limits<std::uint64_t>::max(), 0};
  Control& c = control();
  for (std::uint64_t g = done; g <= begun; ++g) {
    SizeRecord& rec = c.sizes[g % kOpLogDepth];
    const std::uint64_t before = atomic(rec.generation).load(std::memory_order_acquire);
    const std::uint64_t size = atomic(rec.size).load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    // The slot may have been reused for a newer generation meanwhile.
    if (before != g || atomic(rec.generation).load(std::memory_order_relaxed) != g) {
      return std::nullopt;
    }
    w.min_size = std::min(w.min_size, size);
    w.max_size = std::max(w.max_size, size);
  }
  return w;
}

std::array<OpRecord, kOpLogDepth> SharedState::op_log(std::size_t page) const noexcept {
  std::array<OpRecord, kOpLogDepth> out{};
  PageSlot& slot = pages_[page];
  for (std::size_t i = 0; i < kOpLogDepth; ++i) {
    OpRecord& rec = slot.log[i];
    out[i].tag = atomic(rec.tag).load(std::memory_order_relaxed);
    out[i].method = atomic(rec.method).load(std::memory_order_relaxed);
    out[i].range_first = atomic(rec.range_first).load(std::memory_order_relaxed);
    out[i].range_pages = atomic(rec.range_pages).load(std::memory_order_relaxed);
    out[i].start_ns = atomic(rec.start_ns).load(std::memory_order_relaxed);
    out[i].end_ns = atomic(rec.end_ns).load(std::memory_order_relaxed);
    out[i].pinned = atomic(rec.pinned).load(std::memory_order_relaxed);
  }
  return out;
}

void SharedState::set_hot(std::size_t slot, std::size_t page) const noexcept {
  const std::uint64_t previous = atomic(hot_[2 * slot]).load(std::memory_order_relaxed);
  atomic(hot_[2 * slot + 1]).store(previous, std::memory_order_relaxed);
  atomic(hot_[2 * slot]).store(page, std::memory_order_relaxed);
}

std::size_t SharedState::hot(std::size_t slot) const noexcept {
  return atomic(hot_[2 * slot]).load(std::memory_order_relaxed);
}

std::size_t SharedState::previous_hot(std::size_t slot) const noexcept {
  return atomic(hot_[2 * slot + 1]).load(std::memory_order_relaxed);
}

ActorCounters SharedState::total_counters() const noexcept {
  ActorCounters total{};
  for (ActorCounters& c : counters_.items()) {
    total.ops += atomic(c.ops).load();
    total.samples += atomic(c.samples).load();
    total.decisive += atomic(c.decisive).load();
    total.undecided += atomic(c.undecided).load();
    total.violations += atomic(c.violations).load();
    total.refused += atomic(c.refused).load();
    total.torn += atomic(c.torn).load();
    total.private_stores += atomic(c.private_stores).load();
    total.preads += atomic(c.preads).load();
    total.glances += atomic(c.glances).load();
    total.pinned_pvm += atomic(c.pinned_pvm).load();
    total.pinned_dio += atomic(c.pinned_dio).load();
    total.pinned_uring += atomic(c.pinned_uring).load();
    total.pin_waits += atomic(c.pin_waits).load();
  }
  return total;
}

void SharedState::record_violation(const ViolationRecord& record) const noexcept {
  // The earliest by its time stamp, whichever actor reports first.
  const std::uint64_t at = atomic(control().start_ns).load(std::memory_order_relaxed) + record.t_ns;
  auto first = atomic(control().first_violation_ns);
  std::uint64_t seen = first.load(std::memory_order_relaxed);
  while ((seen == 0 || at < seen) && !first.compare_exchange_weak(seen, at)) {
  }
  const std::uint64_t index = atomic(control().violations).fetch_add(1);
  if (index >= violations_.size()) return;
  ViolationRecord& slot = violations_[index];
  slot = record;
  slot.complete = 0;
  atomic(slot.complete).store(1, std::memory_order_release);
}

std::uint64_t SharedState::violation_count() const noexcept {
  return atomic(control().violations).load();
}

std::optional<std::uint64_t> SharedState::first_violation_ns() const noexcept {
  const std::uint64_t at = atomic(control().first_violation_ns).load();
  if (at == 0) return std::nullopt;
  return at;
}

std::vector<ViolationRecord> SharedState::recorded_violations() const {
  std::vector<ViolationRecord> out;
  for (ViolationRecord& rec : violations_.items()) {
    if (atomic(rec.complete).load(std::memory_order_acquire) != 0) out.push_back(rec);
  }
  return out;
}

}  // namespace vmcoh::race
