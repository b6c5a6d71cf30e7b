// Loads libcurl with dlopen and resolves the functions the Hub client calls.
#include "pipeline/curl_library.h"

#include <dlfcn.h>

#include <string>

#include "hwyquant/format.h"

namespace hwyquant {
namespace {

// The soname of libcurl 7.x and 8.x (Debian's libcurl4 packages).
constexpr const char* kLibcurl = "libcurl.so.4";

template <class Fn>
void Resolve(void* library, const char* name, Fn& fn) {
  fn = reinterpret_cast<Fn>(::dlsym(library, name));
  if (fn == nullptr) {
    throw Error(std::string(kLibcurl) + " has no function " + name +
                " (libcurl 7.62 or newer is needed)");
  }
}

CurlLibrary Load() {
  // Never closed: the functions stay in use until the process ends.
  void* library = ::dlopen(kLibcurl, RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    const char* why = ::dlerror();
    throw Error(std::string("cannot load ") + kLibcurl + ", which Hugging Face Hub access needs" +
                " (install libcurl4): " + (why ? why : "unknown error"));
  }
  CurlLibrary lib;
  Resolve(library, "curl_global_init", lib.global_init);
  Resolve(library, "curl_easy_escape", lib.easy_escape);
  Resolve(library, "curl_free", lib.free);
  Resolve(library, "curl_url", lib.url);
  Resolve(library, "curl_url_cleanup", lib.url_cleanup);
  Resolve(library, "curl_url_get", lib.url_get);
  Resolve(library, "curl_url_set", lib.url_set);
  Resolve(library, "curl_easy_init", lib.easy_init);
  Resolve(library, "curl_easy_cleanup", lib.easy_cleanup);
  Resolve(library, "curl_slist_append", lib.slist_append);
  Resolve(library, "curl_slist_free_all", lib.slist_free_all);
  Resolve(library, "curl_easy_setopt", lib.easy_setopt);
  Resolve(library, "curl_easy_perform", lib.easy_perform);
  Resolve(library, "curl_easy_strerror", lib.easy_strerror);
  Resolve(library, "curl_easy_getinfo", lib.easy_getinfo);
  if (lib.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    throw Error(std::string(kLibcurl) + ": curl_global_init failed");
  }
  return lib;
}

}  // namespace

const CurlLibrary& Curl() {
  // A failed load throws out of the initializer, so the next call tries again.
  static const CurlLibrary library = Load();
  return library;
}

}  // namespace hwyquant
