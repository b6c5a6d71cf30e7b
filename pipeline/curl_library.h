// libcurl's entry points, loaded with dlopen on first use instead of linked: libcurl brings in
// about 25 shared libraries whose loading measured 7-11 ms on every hwyquant start (their page
// faults cost about 35 us each on a VM), though only Hub fetching needs them.
#ifndef HWYQUANT_PIPELINE_CURL_LIBRARY_H_
#define HWYQUANT_PIPELINE_CURL_LIBRARY_H_

#include <curl/curl.h>

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

}  // namespace hwyquant

#endif  // HWYQUANT_PIPELINE_CURL_LIBRARY_H_
