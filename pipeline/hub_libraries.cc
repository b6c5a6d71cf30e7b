// Loads libcurl and libcrypto with dlopen and resolves the functions the Hub client calls.
#include "pipeline/hub_libraries.h"

#include <dlfcn.h>

#include <string>

#include "hwyquant/format.h"

namespace hwyquant {
namespace {

// The soname of libcurl 7.x and 8.x (Debian's libcurl4 packages).
constexpr const char* kLibcurl = "libcurl.so.4";
constexpr const char* kLibcurlNeeded = "libcurl 7.62 or newer";
// OpenSSL 3's libcrypto (Debian's libssl3 package).
constexpr const char* kLibcrypto = "libcrypto.so.3";
constexpr const char* kLibcryptoNeeded = "OpenSSL 3";

// One library opened with dlopen (never closed: its functions stay in use until the process
// ends) and its functions looked up by name; both throw Error naming what is missing.
class Symbols {
 public:
  Symbols(const char* soname, const char* package, const char* needed)
      : soname_(soname), needed_(needed), library_(::dlopen(soname, RTLD_NOW | RTLD_LOCAL)) {
    if (library_ == nullptr) {
      const char* why = ::dlerror();
      throw Error(std::string("cannot load ") + soname + ", which Hugging Face Hub access needs" +
                  " (install " + package + "): " + (why ? why : "unknown error"));
    }
  }

  template <class Fn>
  void operator()(const char* name, Fn& fn) const {
    fn = reinterpret_cast<Fn>(::dlsym(library_, name));
    if (fn == nullptr) {
      throw Error(std::string(soname_) + " has no function " + name + " (" + needed_ +
                  " is needed)");
    }
  }

 private:
  const char* soname_;
  const char* needed_;
  void* library_;
};

CurlLibrary LoadCurl() {
  const Symbols resolve(kLibcurl, "libcurl4", kLibcurlNeeded);
  CurlLibrary lib;
  resolve("curl_global_init", lib.global_init);
  resolve("curl_easy_escape", lib.easy_escape);
  resolve("curl_free", lib.free);
  resolve("curl_url", lib.url);
  resolve("curl_url_cleanup", lib.url_cleanup);
  resolve("curl_url_get", lib.url_get);
  resolve("curl_url_set", lib.url_set);
  resolve("curl_easy_init", lib.easy_init);
  resolve("curl_easy_cleanup", lib.easy_cleanup);
  resolve("curl_slist_append", lib.slist_append);
  resolve("curl_slist_free_all", lib.slist_free_all);
  resolve("curl_easy_setopt", lib.easy_setopt);
  resolve("curl_easy_perform", lib.easy_perform);
  resolve("curl_easy_strerror", lib.easy_strerror);
  resolve("curl_easy_getinfo", lib.easy_getinfo);
  if (lib.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    throw Error(std::string(kLibcurl) + ": curl_global_init failed");
  }
  return lib;
}

CryptoLibrary LoadCrypto() {
  const Symbols resolve(kLibcrypto, "libssl3", kLibcryptoNeeded);
  CryptoLibrary lib;
  resolve("EVP_MD_CTX_new", lib.md_ctx_new);
  resolve("EVP_MD_CTX_free", lib.md_ctx_free);
  resolve("EVP_DigestInit_ex", lib.digest_init_ex);
  resolve("EVP_DigestUpdate", lib.digest_update);
  resolve("EVP_DigestFinal_ex", lib.digest_final_ex);
  resolve("EVP_sha256", lib.sha256);
  resolve("EVP_sha1", lib.sha1);
  return lib;
}

}  // namespace

// A failed load throws out of the initializer, so the next call tries again.
const CurlLibrary& Curl() {
  static const CurlLibrary library = LoadCurl();
  return library;
}

const CryptoLibrary& Crypto() {
  static const CryptoLibrary library = LoadCrypto();
  return library;
}

}  // namespace hwyquant
