#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string_view>

#include <fmt/format.h>

#include <vmcoh/actors.hpp>
#include <vmcoh/error.hpp>

namespace vmcoh {

namespace {

enum : std::uint64_t { kRunning = 0, kFinished = 1, kFailed = 2 };

std::atomic<bool> g_threads_abandoned{false};

constexpr auto kPollInterval = std::chrono::milliseconds(5);
// How long a SIGKILLed process gets to disappear (it may sit in an uninterruptible sleep).
constexpr auto kKillGrace = std::chrono::seconds(5);

std::string describe_wait_status(int status) {
  if (WIFSIGNALED(status)) {
    return fmt::format("killed by signal {} ({}){}", WTERMSIG(status),
                       ::strsignal(WTERMSIG(status)), WCOREDUMP(status) ? ", core dumped" : "");
  }
  return fmt::format("exited with status {} without reporting", WEXITSTATUS(status));
}

}  // namespace

std::string_view to_string(ActorMode mode) noexcept {
  return mode == ActorMode::threads ? "threads" : "processes";
}

std::string_view to_string(ActorOutcome::Status status) noexcept {
  switch (status) {
    case ActorOutcome::Status::finished:
      return "finished";
    case ActorOutcome::Status::failed:
      return "failed";
    case ActorOutcome::Status::crashed:
      return "crashed";
    case ActorOutcome::Status::hung:
      return "hung";
  }
  return "?";
}

ActorGroup::ActorGroup(ActorMode mode, std::size_t capacity) : mode_(mode), board_(capacity) {
  members_.reserve(capacity);
}

ActorGroup::~ActorGroup() {
  if (!joined_) join(std::chrono::steady_clock::now());
}

bool ActorGroup::threads_abandoned() noexcept { return g_threads_abandoned.load(); }

namespace {

// Into a fixed buffer in shared memory, truncated, without anything that could throw.
template <std::size_t N>
void copy_message(char (&dst)[N], std::string_view text) noexcept {
  const std::size_t n = std::min(text.size(), N - 1);
  std::memcpy(dst, text.data(), n);
  dst[n] = '\0';
}

}  // namespace

void ActorGroup::run_body(const std::function<void()>& body, Status& status) noexcept {
  std::uint64_t state = kFinished;
  try {
    body();
  } catch (const std::exception& e) {
    copy_message(status.message, e.what());
    state = kFailed;
  } catch (...) {
    copy_message(status.message, "unknown exception");
    state = kFailed;
  }
  atomic(status.state).store(state, std::memory_order_release);
}

void ActorGroup::spawn(std::string name, std::function<void()> body) {
  if (members_.size() == board_.size()) throw std::logic_error("ActorGroup: too many actors");
  const std::size_t index = members_.size();
  Status& status = board_[index];
  Member& member = members_.emplace_back();
  member.name = std::move(name);
  member.outcome.name = member.name;
  const std::string short_name = member.name.substr(0, 15);  // the kernel's comm limit

  if (mode_ == ActorMode::threads) {
    member.thread = std::thread([body = std::move(body), &status, short_name] {
      ::pthread_setname_np(::pthread_self(), short_name.c_str());
      run_body(body, status);
    });
    return;
  }
  // Buffered output would otherwise be written twice, by the parent and by the child.
  static_cast<void>(std::fflush(nullptr));
  const pid_t pid = ::fork();
  if (pid < 0) {
    members_.pop_back();
    throw_errno("fork");
  }
  if (pid == 0) {
    ::prctl(PR_SET_NAME, short_name.c_str());
    run_body(body, status);
    // _Exit: the child must not run the parent's atexit handlers or static destructors.
    std::_Exit(atomic(status.state).load() == kFinished ? 0 : 1);
  }
  member.pid = pid;
}

void ActorGroup::reap(Member& member, std::size_t index) {
  if (member.ended) return;
  Status& status = board_[index];
  if (mode_ == ActorMode::threads) {
    if (atomic(status.state).load(std::memory_order_acquire) == kRunning) return;
    member.thread.join();
  } else {
    int wstatus = 0;
    if (::waitpid(member.pid, &wstatus, WNOHANG) != member.pid) return;
    if (!WIFEXITED(wstatus) || atomic(status.state).load() == kRunning) {
      member.ended = true;
      member.outcome.status = ActorOutcome::Status::crashed;
      member.outcome.detail = describe_wait_status(wstatus);
      return;
    }
  }
  member.ended = true;
  if (atomic(status.state).load() == kFinished) {
    member.outcome.status = ActorOutcome::Status::finished;
  } else {
    member.outcome.status = ActorOutcome::Status::failed;
    member.outcome.detail = status.message;
  }
}

bool ActorGroup::poll_ended() {
  bool all = true;
  for (std::size_t i = 0; i < members_.size(); ++i) {
    reap(members_[i], i);
    all = all && members_[i].ended;
  }
  return all;
}

bool ActorGroup::any_failed() {
  poll_ended();
  for (const Member& m : members_) {
    if (m.ended && m.outcome.status != ActorOutcome::Status::finished) return true;
  }
  return false;
}

std::vector<ActorOutcome> ActorGroup::join(std::chrono::steady_clock::time_point deadline) {
  joined_ = true;
  while (!poll_ended() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(kPollInterval);
  }
  for (Member& m : members_) {
    if (m.ended) continue;
    m.ended = true;
    m.outcome.status = ActorOutcome::Status::hung;
    if (mode_ == ActorMode::threads) {
      m.thread.detach();
      g_threads_abandoned.store(true);
      m.outcome.detail = "still running at the deadline; thread abandoned";
      continue;
    }
    ::kill(m.pid, SIGKILL);
    const auto give_up = std::chrono::steady_clock::now() + kKillGrace;
    int wstatus = 0;
    while (::waitpid(m.pid, &wstatus, WNOHANG) == 0 && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(kPollInterval);
    }
    m.outcome.detail = fmt::format("still running at the deadline; pid {} killed", m.pid);
  }
  std::vector<ActorOutcome> outcomes;
  outcomes.reserve(members_.size());
  for (const Member& m : members_) outcomes.push_back(m.outcome);
  return outcomes;
}

}  // namespace vmcoh
