#include <string>
#include <system_error>

#include <vmcoh/error.hpp>

namespace vmcoh {

void throw_errno(std::string_view what, int err) {
  throw std::system_error(err, std::generic_category(), std::string(what));
}

}  // namespace vmcoh
