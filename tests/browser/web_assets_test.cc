// The page files compiled into the binary (web/embed.cmake) are exactly those in web/, and the
// page refers to no file the server would not have.
#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include "web/assets.h"

namespace hwyquant::web {
namespace {

std::string ReadSource(const std::string& name) {
  const std::string path = std::string(HWYQUANT_WEB_DIR) + "/" + name;
  std::ifstream in(path, std::ios::binary);
  INFO("reading " << path);
  REQUIRE(in);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

TEST_CASE("web assets: every page file is embedded byte for byte with its type") {
  struct Expected {
    const char* url;
    const char* file;
    const char* type;
  };
  for (const Expected& e : {Expected{"/index.html", "index.html", "text/html; charset=utf-8"},
                            Expected{"/app.js", "app.js", "text/javascript; charset=utf-8"},
                            Expected{"/style.css", "style.css", "text/css; charset=utf-8"}}) {
    INFO("asset " << e.url);
    const Asset* asset = FindAsset(e.url);
    REQUIRE(asset != nullptr);
    CHECK(asset->path == e.url);
    CHECK(asset->content_type == e.type);
    const std::string source = ReadSource(e.file);
    CHECK(asset->body.size() == source.size());
    // The first differing byte, not two whole files, when the build is stale.
    const size_t common = std::min(asset->body.size(), source.size());
    size_t first_difference = 0;
    while (first_difference < common && asset->body[first_difference] == source[first_difference]) {
      ++first_difference;
    }
    INFO("embedded and web/" << e.file << " first differ at byte " << first_difference
                             << " (rebuild to re-embed)");
    CHECK(first_difference == std::max(asset->body.size(), source.size()));
  }
}

TEST_CASE("web assets: / is the index page and nothing else resolves") {
  REQUIRE(FindAsset("/") != nullptr);
  CHECK(FindAsset("/") == FindAsset("/index.html"));
  for (const char* path : {"", "index.html", "/App.js", "/app.js/", "/../web/app.js", "/web/app.js",
                           "/assets.h", "/embed.cmake", "/favicon.ico", "/api/quantization/jobs"}) {
    INFO("path '" << path << "'");
    CHECK(FindAsset(path) == nullptr);
  }
}

TEST_CASE("web assets: every file the page loads is embedded") {
  const std::string html(FindAsset("/index.html")->body);
  const std::regex ref(R"re((?:src|href)="([^"]*)")re");
  int local = 0;
  for (auto it = std::sregex_iterator(html.begin(), html.end(), ref); it != std::sregex_iterator();
       ++it) {
    const std::string target = (*it)[1];
    if (target.rfind("data:", 0) == 0 || target.rfind("#", 0) == 0) continue;
    INFO("index.html refers to '" << target << "'");
    // No CDN, no absolute URL: the page must work offline from the binary alone.
    CHECK(target.find("//") == std::string::npos);
    CHECK(FindAsset("/" + target) != nullptr);
    ++local;
  }
  CHECK(local == 2);  // style.css and app.js
}

}  // namespace
}  // namespace hwyquant::web
