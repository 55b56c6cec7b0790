// Writers: how the owner of a page changes it.  Every change is one operation that moves each
// page it covers to its next state, logged and published around the system call (begun before,
// done after; see shared_state.hpp), so readers always know which contents are legal.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include <vmcoh/fd.hpp>
#include <vmcoh/stamp.hpp>
#include <vmcoh/target.hpp>

#include "scenario.hpp"

namespace vmcoh::race {

inline constexpr std::uint64_t kPublishOpsEvery = 256;

// Writes `page` at `offset` with `method` (pwrite, pwritev or lseek+write); anything but a
// complete write throws.
void write_page(int fd, std::uint64_t offset, const PageImage& page, OpMethod method);

// The optional write paths, each given what it needs; anything but a complete write throws.
// copy_file_range(2) of `page` from `source` (its first page is set to `page` first):
void copy_page(int source, int fd, std::uint64_t offset, const PageImage& page);
// vmsplice(2) of `page` into a pipe, then splice(2) from the pipe into `fd` at `offset`:
struct Pipe {
  Fd read;
  Fd write;
  static Pipe open();
};
void splice_page(const Pipe& pipe, int fd, std::uint64_t offset, const PageImage& page);

// Setup (in the parent, before any actor, on an object of config.pages pages that is punched
// afterwards): tries FALLOC_FL_ZERO_RANGE, copy_file_range and splice on page 0 and publishes
// which the target takes (SharedState::set_method).  A refusal (EINVAL, EOPNOTSUPP, EXDEV,
// ENODEV) is recorded with its reason; any other error throws.
void probe_write_methods(const Target& target, const SharedState& shared, const RunConfig& config);

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

// How often PageWriter::punch uses FALLOC_FL_ZERO_RANGE instead, where the target takes it.
inline constexpr std::uint64_t kZeroRangeOneIn = 4;

class PageWriter {
 public:
  PageWriter(ActorEnv& env, const Target& target) noexcept : env_(env), target_(target) {}

  // Moves `page` to its next state, DATA: the stamp of the new state's generation.
  void write(std::size_t page, OpMethod method);
  // Moves each page of [first, first+count) to its next state, a hole, with one punch: a hole
  // punch, or one time in kZeroRangeOneIn FALLOC_FL_ZERO_RANGE where the target takes it.
  // `pinned` names a pinned write in flight across it (pin-vs-punch).
  void punch(std::size_t first, std::size_t count, OpMethod pinned = OpMethod::none);
  // Runs `op` as one operation moving each page of [first, first+count) to its next state, of
  // kind `kind`.  If `op` throws, the pages stay "in flight" (begun ahead of done): readers keep
  // accepting both states, and the actor fails.
  template <class Op>
  void apply(std::size_t first, std::size_t count, StateKind kind, OpMethod method, Op&& op,
             OpMethod pinned = OpMethod::none);

  // Mostly pwrite; sometimes pwritev, lseek+write, copy_file_range or splice (the last two where
  // the target takes them, else pwrite), so every write path is raced.
  [[nodiscard]] OpMethod random_write_method() noexcept;

 private:
  // Writes `image` at `offset` with any write method (made lazily: the copy source, the pipe).
  void write_image(std::uint64_t offset, const PageImage& image, OpMethod method);

  ActorEnv& env_;
  const Target& target_;
  Fd copy_source_;
  std::optional<Pipe> pipe_;
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
                       Op&& op, OpMethod pinned) {
  const SharedState& shared = env_.shared();
  shared.set_hot(env_.hot_slot(), first);
  for (std::size_t p = first; p < first + count; ++p) {
    shared.begin_op(p, shared.last_state(p) + 1, kind, method, first, count, pinned);
  }
  op();
  for (std::size_t p = first; p < first + count; ++p) shared.end_op(p, shared.last_state(p));
  if (++env_.counters().ops % kPublishOpsEvery == 0) env_.publish_counters();
}

}  // namespace vmcoh::race
