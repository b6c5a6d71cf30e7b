// The web page's files (index.html, app.js, style.css), embedded in the binary
// by web/embed.cmake.
#ifndef HWYQUANT_WEB_ASSETS_H_
#define HWYQUANT_WEB_ASSETS_H_

#include <string_view>

namespace hwyquant::web {

struct Asset {
  std::string_view path;          // URL path, e.g. "/app.js"
  std::string_view content_type;  // with charset for text
  std::string_view body;
};

// The asset served at `path`; "/" is index.html. nullptr for anything else, so
// a caller can fall through to its own 404 (the page has no client-side
// routes).
const Asset* FindAsset(std::string_view path);

}  // namespace hwyquant::web

#endif  // HWYQUANT_WEB_ASSETS_H_
