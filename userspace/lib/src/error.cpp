#include <cstdio>
#include <exception>
#include <string>
#include <system_error>

#include <vmcoh/error.hpp>

namespace vmcoh {

void throw_errno(std::string_view what, int err) {
  throw std::system_error(err, std::generic_category(), std::string(what));
}

int main_guard(const char* program, int (*run)(int, char**), int argc, char** argv,
               int status) noexcept {
  const char* what = "unknown exception";
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    what = e.what();
    static_cast<void>(std::fprintf(stderr, "%s: %s\n", program, what));
  } catch (...) {
    static_cast<void>(std::fprintf(stderr, "%s: %s\n", program, what));
  }
  return status;
}

}  // namespace vmcoh
