// Scene: one repetition of an interleaving, from a clean object to a verdict.
//
// Every interleaving has the same shape:
//
//   arm a hold point -> side A runs into it and parks -> side B acts -> release -> oracle
//
// A Scene owns what one repetition creates - mappings, the armed hold point, the jobs of the two
// sides - and its destructor undoes them in the only safe order, on every path: release the hold
// point (a parked task goes on), wait for both sides, then unmap.  Every wait is bounded: a park
// by kParkTimeout (the kernel ends it), a step by kStepBound, a side's return by kJoinBound.  A
// side still running after that is stuck in the kernel; the repetition then ends with Hung and
// the program must stop (see Context::hung()).
//
// Side jobs must not allocate (see worker.hpp); the allocation-free operations below are for them.
// What they read and write lives in the scene (keep()), which outlives them.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <vmcoh/mapping.hpp>
#include <vmcoh/stamp.hpp>
#include <vmcoh/target.hpp>
#include <vmcoh/test_hooks.hpp>

#include "worker.hpp"

namespace vmcoh::interleave {

inline constexpr std::uint64_t kPages = 16;  // the object's size at the start of a repetition
inline constexpr std::uint64_t kIndex = 5;   // the page every interleaving races on

inline constexpr std::chrono::milliseconds kParkTimeout{5000};
inline constexpr std::chrono::milliseconds kStepBound{3000};
inline constexpr std::chrono::milliseconds kJoinBound{15000};
// How long B is given to return while A is parked holding a page lock, which B waits for only
// in the safe module (it sleeps there on no entry lock, so wait_returned_or_blocked() cannot tell).
inline constexpr std::chrono::milliseconds kPageLockBound{300};

// A page image a load may be compared with, and how a report names it.
struct Image {
  std::string label;
  PageImage page;
};

// What one load of a page through a mapping showed.
struct Load {
  bool sigbus = false;
  PageImage page;
};
// Loads page `index` of the mapping at `base`, word by word, catching SIGBUS.  Allocation-free.
Load load_page(const std::byte* base, std::uint64_t index) noexcept;

// Allocation-free operations on the device for side jobs: each returns 0 or an errno.
int pwrite_page(int fd, std::uint64_t index, const PageImage& page) noexcept;
// Stores `page` into page `index` of the mapping at `base`, word by word; EFAULT on SIGBUS.
int store_page(std::byte* base, std::uint64_t index, const PageImage& page) noexcept;
int punch_page(int fd, std::uint64_t index) noexcept;
int set_size_pages(int fd, std::uint64_t pages) noexcept;

// One illegal outcome of a repetition.
struct Violation {
  std::string check;     // what was looked at, and when
  std::string expected;  // what the protocol allows there
  std::string observed;
  std::string context;  // how the interleaving went (who blocked, who returned)
};

// The record of one repetition: its violations, or why it could not be driven.
struct Repetition {
  std::uint64_t number = 0;
  std::vector<Violation> violations;
  std::optional<std::string> error;
};

// The interleaving could not be driven as designed (a side did not reach its step in time, an
// operation failed): the repetition says nothing about the protocol.
struct NotDriven : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// A side is still inside the kernel kJoinBound after it was let go.
struct Hung : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// What lives as long as the program: the device, the two sides, the images every scene knows.
class Context {
 public:
  Context(Target target, std::uint64_t run_id);
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  [[nodiscard]] const Target& target() const noexcept { return target_; }
  [[nodiscard]] int fd() const noexcept { return target_.fd(); }
  [[nodiscard]] std::uint64_t run_id() const noexcept { return run_id_; }
  [[nodiscard]] Worker& a() noexcept { return a_; }
  [[nodiscard]] Worker& b() noexcept { return b_; }
  [[nodiscard]] const Image& zero() const noexcept { return zero_; }
  [[nodiscard]] const Image& poison() const noexcept { return poison_; }

  // True once a side hung: nothing more may run, and the program must end with std::_Exit.
  [[nodiscard]] bool hung() const noexcept { return hung_; }
  void set_hung() noexcept { hung_ = true; }
  // Keeps `mapping` mapped, and `state` allocated, until the program ends: a hung side may still
  // be faulting on the one and writing to the other.
  void abandon(Mapping mapping);
  void abandon(std::shared_ptr<void> state);

 private:
  Target target_;
  std::uint64_t run_id_;
  Image zero_;
  Image poison_;
  std::vector<Mapping> abandoned_;
  std::vector<std::shared_ptr<void>> abandoned_state_;
  bool hung_ = false;
  Worker a_;
  Worker b_;
};

class Scene {
 public:
  // Brings the object to kPages pages of holes.  Violations and errors go to `out`.
  Scene(Context& context, Repetition& out);
  Scene(const Scene&) = delete;
  Scene& operator=(const Scene&) = delete;
  ~Scene();

  [[nodiscard]] int fd() const noexcept { return context_.fd(); }
  [[nodiscard]] Worker& a() noexcept { return context_.a(); }
  [[nodiscard]] Worker& b() noexcept { return context_.b(); }

  // A new mapping of the whole object, unmapped when the scene ends: it has no PTE yet.
  [[nodiscard]] std::byte* map(int prot, int flags);
  // `state` moved into the scene: what side jobs read and write must live here, not on the
  // stack of the interleaving, which an exception unwinds while a side may still be running.
  template <class T>
  [[nodiscard]] T& keep(T state) {
    auto owned = std::make_shared<T>(std::move(state));
    T& ref = *owned;
    kept_.push_back(std::move(owned));
    return ref;
  }

  // Images a load may show: the zero page, the poison free_before_unmap fills freed blocks with,
  // and stamps of page kIndex made for this repetition (each call a distinct one).
  [[nodiscard]] const Image& zero() const noexcept { return context_.zero(); }
  [[nodiscard]] const Image& poison() const noexcept { return context_.poison(); }
  const Image& stamp(std::string label, std::uint32_t flags = 0);

  // The driver's own operations; NotDriven if one fails.
  void pwrite(const Image& image);
  void resize(std::uint64_t pages);

  // Arms `point` for page kIndex (at most one per scene).
  void arm(std::uint64_t point, std::uint64_t ops = 0);
  // Returns once a task is parked at the armed point; NotDriven after kStepBound.
  void wait_parked();
  // Lets the parked task go; NotDriven if none was parked any more (its park timed out).
  void release();

  [[nodiscard]] std::uint64_t entry_lock_waits() const;
  enum class Progress { returned, blocked };
  // Waits until `side` has returned, or has gone to sleep on a locked entry (entry_lock_waits
  // grew past `waits_before`).  NotDriven after kStepBound.
  Progress wait_returned_or_blocked(Worker& side, std::uint64_t waits_before, std::string_view who);
  // Waits until `side` has returned; NotDriven after kStepBound.
  void wait_returned(Worker& side, std::string_view who);
  // Waits for `side` after it was let go: Hung after kJoinBound, NotDriven if its job threw.
  void join(Worker& side, std::string_view who);
  // How the interleaving went, for the violations found after it.
  void note(std::string what);
  // NotDriven unless `err` is 0.
  static void check_op(int err, std::string_view what);

  // The oracle.  Each records a violation unless the load was legal.
  void expect_exactly(std::string check, const Load& seen, const Image& legal);
  // A load concurrent with a change: every word must come from one of `legal`.
  void expect_words_from(std::string check, const Load& seen,
                         std::initializer_list<const Image*> legal);
  void expect_sigbus(std::string check, const Load& seen);
  // NotDriven unless `seen` is exactly `image` (a precondition of the interleaving).
  void require_exactly(std::string_view what, const Load& seen, const Image& image) const;

  // Names what a load showed, in terms of the images above.
  [[nodiscard]] std::string describe(const Load& seen) const;

 private:
  void violation(std::string check, std::string expected, const Load& seen);

  Context& context_;
  Repetition& out_;
  std::vector<Mapping> mappings_;
  std::vector<std::shared_ptr<void>> kept_;
  std::deque<Image> stamps_;
  std::optional<HoldPoint> hold_;
  std::vector<std::string> notes_;
};

}  // namespace vmcoh::interleave
