// Small string helpers shared by the pipeline's parsers and commands.
#ifndef HWYQUANT_PIPELINE_TEXT_H_
#define HWYQUANT_PIPELINE_TEXT_H_

#include <string_view>

namespace hwyquant {

// Whether text ends with suffix (std::string::ends_with is C++20; the project builds as C++17).
inline bool EndsWith(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

}  // namespace hwyquant

#endif  // HWYQUANT_PIPELINE_TEXT_H_
