// Actors: the concurrent parties of a scenario, run either as threads of this process or as
// forked child processes.  A process actor is forked before it runs its body, so the body opens
// and maps the target itself; whatever it shares with the others lives in memory mapped
// MAP_SHARED before the fork (SharedArray).  Each actor reports how it ended on a status board in
// such memory; the parent waits for all of them with a deadline and deals with stragglers: a
// process is killed, a thread (which cannot be killed) is abandoned, and the program must then end
// with std::_Exit once it has reported (see threads_abandoned()).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <vmcoh/shared_array.hpp>

namespace vmcoh {

enum class ActorMode { threads, processes };
[[nodiscard]] std::string_view to_string(ActorMode mode) noexcept;

struct ActorOutcome {
  enum class Status {
    finished,  // the body returned
    failed,    // the body threw; detail is the exception's message
    crashed,   // a process died without reporting (signal or exit); detail says how
    hung,      // still running at the deadline: killed, or (a thread) abandoned
  };
  std::string name;
  Status status = Status::finished;
  std::string detail;
};
[[nodiscard]] std::string_view to_string(ActorOutcome::Status status) noexcept;

class ActorGroup {
 public:
  ActorGroup(ActorMode mode, std::size_t capacity);
  ActorGroup(const ActorGroup&) = delete;
  ActorGroup& operator=(const ActorGroup&) = delete;
  // Joins with an immediate deadline if join() was not called.
  ~ActorGroup();

  // Starts `body` as the next actor (at most `capacity` of them).
  void spawn(std::string name, std::function<void()> body);

  // True once some actor has ended by throwing or crashing (without waiting for the others).
  [[nodiscard]] bool any_failed();
  // Waits until every actor has ended or `deadline` passes, then deals with stragglers.
  std::vector<ActorOutcome> join(std::chrono::steady_clock::time_point deadline);

  // True once a thread actor had to be abandoned: its stack may still reference objects of the
  // caller, so the program must report and leave through std::_Exit.
  [[nodiscard]] static bool threads_abandoned() noexcept;

 private:
  struct Status {  // one per actor, in shared memory
    std::uint64_t state;
    char message[504];
  };
  struct Member {
    std::string name;
    std::thread thread;  // mode threads
    pid_t pid = -1;      // mode processes
    bool ended = false;
    ActorOutcome outcome;
  };

  static void run_body(const std::function<void()>& body, Status& status) noexcept;
  void reap(Member& member, std::size_t index);
  bool poll_ended();

  ActorMode mode_;
  SharedArray<Status> board_;
  std::vector<Member> members_;
  bool joined_ = false;
};

}  // namespace vmcoh
