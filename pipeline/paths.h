// What a path names on disk, for checks shared by the pipeline's readers, writers and commands.
#ifndef HWYQUANT_PIPELINE_PATHS_H_
#define HWYQUANT_PIPELINE_PATHS_H_

#include <sys/stat.h>

#include <string>

namespace hwyquant {

// Whether path names a regular file (symbolic links followed).
inline bool PathIsFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// Whether path names a directory (symbolic links followed).
inline bool PathIsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace hwyquant

#endif  // HWYQUANT_PIPELINE_PATHS_H_
