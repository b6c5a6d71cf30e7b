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

// Whether a and b name the same existing file (symbolic links followed).
inline bool SameFile(const std::string& a, const std::string& b) {
  struct stat sa, sb;
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

// Whether path names a directory (symbolic links followed).
inline bool PathIsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace hwyquant

#endif  // HWYQUANT_PIPELINE_PATHS_H_
