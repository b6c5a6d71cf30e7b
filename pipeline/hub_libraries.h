// The entry points of libcurl and libcrypto, loaded with dlopen on first use instead of linked:
// only Hub fetching needs them, and loading them measured 7-11 ms (libcurl, about 25 libraries)
// and 2.1 ms (libcrypto) on every hwyquant start (page faults cost about 35 us each on a VM).
#ifndef HWYQUANT_PIPELINE_HUB_LIBRARIES_H_
#define HWYQUANT_PIPELINE_HUB_LIBRARIES_H_

#include <curl/curl.h>
#include <openssl/evp.h>

namespace hwyquant {

// Pointers to the libcurl functions the Hub client calls, named without the curl_ prefix.
struct CurlLibrary {
  decltype(&::curl_global_init) global_init = nullptr;
  decltype(&::curl_easy_escape) easy_escape = nullptr;
  decltype(&::curl_free) free = nullptr;
  decltype(&::curl_url) url = nullptr;
  decltype(&::curl_url_cleanup) url_cleanup = nullptr;
  decltype(&::curl_url_get) url_get = nullptr;
  decltype(&::curl_url_set) url_set = nullptr;
  decltype(&::curl_easy_init) easy_init = nullptr;
  decltype(&::curl_easy_cleanup) easy_cleanup = nullptr;
  decltype(&::curl_slist_append) slist_append = nullptr;
  decltype(&::curl_slist_free_all) slist_free_all = nullptr;
  decltype(&::curl_easy_setopt) easy_setopt = nullptr;
  decltype(&::curl_easy_perform) easy_perform = nullptr;
  decltype(&::curl_easy_strerror) easy_strerror = nullptr;
  decltype(&::curl_easy_getinfo) easy_getinfo = nullptr;
};

// Loads libcurl (once, thread-safe) and runs curl_global_init. Throws Error naming the library
// and what failed when it is missing, lacks a function or does not initialize.
const CurlLibrary& Curl();

// Pointers to the libcrypto (OpenSSL 3) digest functions the Hub client calls.
struct CryptoLibrary {
  decltype(&::EVP_MD_CTX_new) md_ctx_new = nullptr;
  decltype(&::EVP_MD_CTX_free) md_ctx_free = nullptr;
  decltype(&::EVP_DigestInit_ex) digest_init_ex = nullptr;
  decltype(&::EVP_DigestUpdate) digest_update = nullptr;
  decltype(&::EVP_DigestFinal_ex) digest_final_ex = nullptr;
  decltype(&::EVP_sha256) sha256 = nullptr;
  decltype(&::EVP_sha1) sha1 = nullptr;
};

// Loads libcrypto (once, thread-safe); throws Error as Curl() does.
const CryptoLibrary& Crypto();

}  // namespace hwyquant

#endif  // HWYQUANT_PIPELINE_HUB_LIBRARIES_H_
