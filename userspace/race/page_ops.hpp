// Writers: how the owner of a page changes it.  Every change is one operation that moves each
// page it covers to its next state, logged and published around the system call (begun before,
// done after; see shared_state.hpp), so readers always know which contents are legal.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <vmcoh/stamp.hpp>
#include <vmcoh/target.hpp>

#include "scenario.hpp"

namespace vmcoh::race {

inline constexpr std::uint64_t kPublishOpsEvery = 256;

// Writes `page` at `offset` with `method` (pwrite, pwritev or lseek+write); anything but a
// complete write throws.
void write_page(int fd, std::uint64_t offset, const PageImage& page, OpMethod method);

// The chunks writer `index` of `writers` owns in [first, end): the first page of each whole chunk
// of `chunk` pages, chunks dealt round-robin (so a multi-page operation never spans two owners;
// pages of a trailing partial chunk belong to nobody and keep their initial state).
[[nodiscard]] std::vector<std::size_t> owned_chunks(std::size_t first, std::size_t end,
                                                    std::size_t writers, std::size_t index,
                                                    std::size_t chunk);

// Setup (in the parent, before any actor): writes the first stamp (state 1) of each page of
// [first, end).
void write_initial_pages(const Target& target, const SharedState& shared, std::uint64_t run_id,
                         std::size_t first, std::size_t end);

class PageWriter {
 public:
  PageWriter(ActorEnv& env, const Target& target) noexcept : env_(env), target_(target) {}

  // Moves `page` to its next state, DATA: the stamp of the new state's generation.
  void write(std::size_t page, OpMethod method);
  // Moves each page of [first, first+count) to its next state, a hole, with one punch.
  void punch(std::size_t first, std::size_t count);
  // Runs `op` as one operation moving each page of [first, first+count) to its next state, of
  // kind `kind`.  If `op` throws, the pages stay "in flight" (begun ahead of done): readers keep
  // accepting both states, and the actor fails.
  template <class Op>
  void apply(std::size_t first, std::size_t count, StateKind kind, OpMethod method, Op&& op);

  // Mostly pwrite; sometimes pwritev or lseek+write, so every write path is raced.
  [[nodiscard]] OpMethod random_write_method() noexcept;

 private:
  ActorEnv& env_;
  const Target& target_;
};

// The one actor that changes the object's size: each change is published as a size generation
// around the call, and a shrink also moves every page it cuts to a TRUNCATED state and counts a
// truncation of it (cuts_begun before, cuts_done after), which decides what MAP_PRIVATE copies may
// still show.  Starts at config.pages pages, size generation 0 (prepare_object).
class Resizer {
 public:
  Resizer(ActorEnv& env, const Target& target, PageWriter& writer) noexcept;

  [[nodiscard]] std::size_t size_pages() const noexcept { return size_pages_; }
  // To `pages_to` < size_pages().
  void shrink(std::size_t pages_to);
  // To `pages_to` > size_pages(); readers are pointed at the old EOF, whose pages must read zero.
  void grow(std::size_t pages_to);

 private:
  ActorEnv& env_;
  const Target& target_;
  PageWriter& writer_;
  std::size_t size_pages_;
  std::uint64_t generation_ = 0;
};

template <class Op>
void PageWriter::apply(std::size_t first, std::size_t count, StateKind kind, OpMethod method,
                       Op&& op) {
  const SharedState& shared = env_.shared();
  shared.set_hot(env_.hot_slot(), first);
  for (std::size_t p = first; p < first + count; ++p) {
    shared.begin_op(p, shared.last_state(p) + 1, kind, method, first, count);
  }
  op();
  for (std::size_t p = first; p < first + count; ++p) shared.end_op(p, shared.last_state(p));
  if (++env_.counters().ops % kPublishOpsEvery == 0) env_.publish_counters();
}

}  // namespace vmcoh::race
