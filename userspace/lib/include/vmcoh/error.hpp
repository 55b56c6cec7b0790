// Errors: every failed system call surfaces as a std::system_error whose code() is the errno
// (std::generic_category()) and whose what() names the call and what it acted on.
#pragma once

#include <cerrno>
#include <string_view>

namespace vmcoh {

[[noreturn]] void throw_errno(std::string_view what, int err = errno);

// Returns `result` unless it is -1, in which case it throws with the current errno.
template <class T>
T check_syscall(T result, std::string_view what) {
  if (result == static_cast<T>(-1)) throw_errno(what);
  return result;
}

// A program's main(): runs `run` and turns an exception that escaped it into a message on stderr
// ("program: what") and `status`, without anything that could throw again.
int main_guard(const char* program, int (*run)(int, char**), int argc, char** argv,
               int status) noexcept;

}  // namespace vmcoh
