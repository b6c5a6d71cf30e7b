// The path of a program installed in the same directory as the running one: `hwyquant serve`
// runs hwyquant-serve, whose jobs run hwyquant.
#ifndef HWYQUANT_PIPELINE_SIBLING_PROGRAM_H_
#define HWYQUANT_PIPELINE_SIBLING_PROGRAM_H_

#include <unistd.h>

#include <string>
#include <vector>

namespace hwyquant {

// dir-of-this-executable/name, or just name when /proc/self/exe cannot be read (exec then looks
// in the working directory and fails with a message naming it).
inline std::string SiblingProgram(const std::string& name) {
  std::vector<char> self(4096);
  const ssize_t length = ::readlink("/proc/self/exe", self.data(), self.size() - 1);
  if (length <= 0) return name;
  const std::string path(self.data(), static_cast<size_t>(length));
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? name : path.substr(0, slash + 1) + name;
}

}  // namespace hwyquant

#endif  // HWYQUANT_PIPELINE_SIBLING_PROGRAM_H_
