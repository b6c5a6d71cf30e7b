// Sentencepiece protobuf decoding and the tokenizer.* metadata rules of
// convert_hf_to_gguf.py.
#include "pipeline/tokenizer.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <functional>
#include <map>
#include <set>

#include "hwyquant/format.h"
#include "pipeline/hf_model.h"
#include "pipeline/paths.h"

namespace hwyquant {
namespace {

// The UTF-8 encoding of U+2581 (LOWER ONE EIGHTH BLOCK), sentencepiece's
// visible space.
constexpr const char* kSpmSpace = "\xE2\x96\x81";

bool ValidUtf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += len;
  }
  return true;
}

// Minimal protobuf wire-format reader over a bounded buffer.
class ProtoReader {
 public:
  ProtoReader(const uint8_t* data, size_t size, const std::string& label)
      : p_(data), end_(data + size), base_(data), label_(label) {}
  bool done() const { return p_ >= end_; }

  uint64_t Varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ >= end_) Fail("truncated varint");
      const uint8_t b = *p_++;
      value |= static_cast<uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) return value;
    }
    Fail("varint longer than 10 bytes");
  }
  uint32_t Fixed32() {
    if (end_ - p_ < 4) Fail("truncated 32-bit field");
    uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | p_[i];
    p_ += 4;
    return v;
  }
  // A length-delimited field's bytes.
  std::pair<const uint8_t*, size_t> Bytes() {
    const uint64_t len = Varint();
    if (len > static_cast<uint64_t>(end_ - p_)) Fail("length-delimited field runs past its end");
    const uint8_t* start = p_;
    p_ += len;
    return {start, static_cast<size_t>(len)};
  }
  void Skip(uint32_t wire_type) {
    switch (wire_type) {
      case 0:
        Varint();
        break;
      case 1:
        if (end_ - p_ < 8) Fail("truncated 64-bit field");
        p_ += 8;
        break;
      case 2:
        Bytes();
        break;
      case 5:
        Fixed32();
        break;
      default:
        Fail("unsupported protobuf wire type " + std::to_string(wire_type));
    }
  }
  [[noreturn]] void Fail(const std::string& what) const {
    throw Error(label_ + ": malformed sentencepiece model at byte " + std::to_string(p_ - base_) +
                ": " + what);
  }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
  const uint8_t* base_;
  const std::string& label_;
};

SentencePiece ParsePiece(const uint8_t* data, size_t size, size_t index, const std::string& label) {
  ProtoReader r(data, size, label);
  SentencePiece piece;
  while (!r.done()) {
    const uint64_t tag = r.Varint();
    const uint32_t field = static_cast<uint32_t>(tag >> 3);
    const uint32_t wire = static_cast<uint32_t>(tag & 7);
    if (field == 1 && wire == 2) {
      auto [p, n] = r.Bytes();
      piece.piece.assign(reinterpret_cast<const char*>(p), n);
      if (!ValidUtf8(piece.piece)) {
        throw Error(label + ": piece " + std::to_string(index) + " is not valid UTF-8");
      }
    } else if (field == 2 && wire == 5) {
      const uint32_t bits = r.Fixed32();
      std::memcpy(&piece.score, &bits, sizeof(bits));
    } else if (field == 3 && wire == 0) {
      const uint64_t type = r.Varint();
      if (type < 1 || type > 6) {
        throw Error(label + ": piece " + std::to_string(index) + " has unknown type " +
                    std::to_string(type));
      }
      piece.type = static_cast<PieceType>(type);
    } else {
      r.Skip(wire);
    }
  }
  return piece;
}

// Special-token metadata, as gguf-py's SpecialVocab gathers it; vectors keep
// insertion order because that is the order the KV pairs are written in.
struct SpecialVocab {
  std::vector<std::string> types;
  std::optional<int64_t> n_vocab;
  std::vector<std::string> merges;
  std::vector<std::pair<std::string, int64_t>> ids;
  std::vector<std::pair<std::string, bool>> add;
  std::optional<Json> chat_template;
  std::optional<bool> normalizer_lowercase;
  std::optional<bool> normalizer_strip_accents;

  void SetId(const std::string& type, const Json& id, const std::string& source) {
    // Python's isinstance(x, int) accepts bools as well.
    if (!id.is_number_integer() && !id.is_boolean()) return;
    const int64_t value = id.is_boolean() ? (id.get<bool>() ? 1 : 0) : id.get<int64_t>();
    if (value < 0) {
      throw Error(source + ": invalid value for special token type " + type + ": " +
                  std::to_string(value));
    }
    if (n_vocab && value >= *n_vocab) return;  // out of range: convert skips it with a warning
    for (const auto& [t, v] : ids) {
      if (t == type) return;
    }
    ids.emplace_back(type, value);
  }
  void SetAdd(const std::string& type, bool value) {
    for (auto& [t, v] : add) {
      if (t == type) {
        v = value;
        return;
      }
    }
    add.emplace_back(type, value);
  }
  bool HasType(const std::string& type) const {
    for (const std::string& t : types) {
      if (t == type) return true;
    }
    return false;
  }
};

Json Get(const Json& object, const char* key) {
  if (!object.is_object()) return Json();
  auto it = object.find(key);
  return it == object.end() ? Json() : *it;
}

std::string SpecialTokenId(const Json& template_item) {
  const Json id = Get(Get(template_item, "SpecialToken"), "id");
  return id.is_string() ? id.get<std::string>() : std::string();
}

void LoadFromTokenizerJson(const std::string& dir, SpecialVocab& sv, bool load_merges) {
  const std::string tokenizer_path = dir + "/tokenizer.json";
  const std::string config_path = dir + "/tokenizer_config.json";
  std::optional<Json> tokenizer = LoadJsonFileIfExists(tokenizer_path);
  Json added_tokens = Json::array();
  if (tokenizer) {
    if (load_merges) {
      const Json merges = Get(Get(*tokenizer, "model"), "merges");
      if (merges.is_array() && !merges.empty()) {
        if (merges[0].is_string()) {
          for (const Json& m : merges) {
            if (!m.is_string()) throw Error(tokenizer_path + ": merges mix strings and pairs");
            sv.merges.push_back(m.get<std::string>());
          }
        } else if (merges[0].is_array() && merges[0].size() == 2 && merges[0][0].is_string()) {
          // Pairs may contain spaces; those are written as U+0120 so the pair
          // stays splittable.
          for (const Json& m : merges) {
            if (!m.is_array() || m.size() != 2 || !m[0].is_string() || !m[1].is_string()) {
              throw Error(tokenizer_path + ": a merge is not a pair of strings");
            }
            std::string joined;
            for (int part = 0; part < 2; ++part) {
              if (part) joined += ' ';
              for (char c : m[part].get<std::string>()) {
                joined += c == ' ' ? std::string("\xC4\xA0") : std::string(1, c);
              }
            }
            sv.merges.push_back(joined);
          }
        } else {
          throw Error(tokenizer_path + ": unknown tokenizer merges format");
        }
      }
    }
    const Json normalizer = Get(*tokenizer, "normalizer");
    if (JsonTruthy(normalizer)) {
      // Sequence normalizers nest; walk them in order.
      std::function<void(const Json&)> parse = [&](const Json& n) {
        const Json type = Get(n, "type");
        if (type == "Lowercase") {
          sv.normalizer_lowercase = true;
        } else if (type == "StripAccents") {
          sv.normalizer_strip_accents = true;
        } else if (type == "BertNormalizer") {
          if (Get(n, "lowercase").is_boolean())
            sv.normalizer_lowercase = Get(n, "lowercase").get<bool>();
          if (Get(n, "strip_accents").is_boolean()) {
            sv.normalizer_strip_accents = Get(n, "strip_accents").get<bool>();
          }
        } else if (type == "Sequence") {
          const Json list = Get(n, "normalizers");
          if (list.is_array()) {
            for (const Json& child : list) parse(child);
          }
        }
      };
      parse(normalizer);
    }
    const Json added = Get(*tokenizer, "added_tokens");
    if (added.is_array()) added_tokens = added;
  }
  std::optional<Json> config = LoadJsonFileIfExists(config_path);
  if (config && !config->is_object()) throw Error(config_path + ": not a JSON object");

  if (tokenizer && JsonTruthy(*tokenizer)) {
    Json empty = Json::object();
    Json& tc = config ? *config : empty;
    const bool have_tc = config && JsonTruthy(*config);
    Json special_bos = Get(tc, "bos_token");
    Json special_cls = Get(tc, "cls_token");
    Json special_eos = Get(tc, "eos_token");
    Json special_sep = Get(tc, "sep_token");
    if (!JsonTruthy(special_bos) && JsonTruthy(special_cls) && have_tc) {
      tc["bos_token"] = special_bos = special_cls;
    }
    if (!JsonTruthy(special_eos) && JsonTruthy(special_sep) && have_tc) {
      tc["eos_token"] = special_eos = special_sep;
    }
    const Json post = Get(*tokenizer, "post_processor");
    if (JsonTruthy(post)) {
      Json processors = Get(post, "processors");
      if (processors.is_null()) processors = Json::array({post});
      for (const Json& processor : processors) {
        const Json type = Get(processor, "type");
        if (type == "RobertaProcessing") {
          sv.SetAdd("bos", true);
          sv.SetAdd("eos", true);
          sv.SetAdd("sep", true);
          if (!JsonTruthy(special_cls) && have_tc) {
            const Json cls = Get(processor, "cls");
            special_cls = cls.is_array() && !cls.empty() ? cls[0] : special_bos;
            tc["cls_token"] = special_cls;
          }
          if (!JsonTruthy(special_sep) && have_tc) {
            const Json sep = Get(processor, "sep");
            special_sep = sep.is_array() && !sep.empty() ? sep[0] : special_eos;
            tc["sep_token"] = special_sep;
          }
          continue;
        }
        if (type != "TemplateProcessing") continue;
        const Json single =
            Get(processor, "single").is_array() ? Get(processor, "single") : Json::array();
        Json pair = Get(processor, "pair").is_array() ? Get(processor, "pair") : Json::array();
        std::string special_first, special_last;
        if (single.size() > 1) {
          special_first = SpecialTokenId(single[0]);
          if (!special_first.empty()) {
            const Json first(special_first);
            if (!have_tc) {
              special_bos = first;
            } else if (first != special_bos && first != special_cls) {
              if (!JsonTruthy(special_bos)) tc["bos_token"] = special_bos = first;
              if (!JsonTruthy(special_cls)) tc["cls_token"] = special_cls = first;
            }
            sv.SetAdd("bos", first == special_bos || first == special_cls);
          }
          special_last = SpecialTokenId(single[single.size() - 1]);
          if (!special_last.empty()) {
            const Json last(special_last);
            if (!have_tc) {
              special_eos = last;
            } else if (last != special_eos) {
              if (!sv.HasType("eot")) {
                sv.types.push_back("eot");
                tc["eot_token"] = special_eos;
              } else if (!sv.HasType("eom")) {
                sv.types.push_back("eom");
                tc["eom_token"] = special_eos;
              }
              tc["eos_token"] = special_eos = last;
            }
            sv.SetAdd("eos", last == special_eos);
          }
        }
        if (!pair.empty()) {
          size_t start =
              (!special_first.empty() && SpecialTokenId(pair[0]) == special_first) ? 1 : 0;
          size_t stop = pair.size();
          if (!special_last.empty() && SpecialTokenId(pair[pair.size() - 1]) == special_last) {
            stop = pair.size() - 1;
          }
          Json middle = Json::array();
          for (size_t i = start; i < stop; ++i) middle.push_back(pair[i]);
          if (!middle.empty()) {
            const Json a = Get(Get(middle[0], "Sequence"), "id");
            const Json b = Get(Get(middle[middle.size() - 1], "Sequence"), "id");
            if (a == "A" && b == "B" && middle.size() > 2) {
              bool add_sep = false;
              const std::string entry = SpecialTokenId(middle[1]);
              if (!entry.empty()) {
                const Json e(entry);
                if ((e == special_sep || e == special_eos) && special_last.empty()) add_sep = true;
              }
              if (middle.size() - 2 == 2) {
                const std::string second = SpecialTokenId(middle[2]);
                if (!second.empty()) {
                  const Json e(second);
                  if (e == special_sep || e == special_eos) add_sep = true;
                }
              }
              sv.SetAdd("sep", add_sep);
              if (add_sep && !JsonTruthy(special_sep) && have_tc) tc["sep_token"] = special_eos;
            }
          }
        }
      }
    }
  }
  if (!config || !JsonTruthy(*config)) return;
  const Json& tc = *config;

  std::optional<Json> template_alt;
  const std::string jinja_path = dir + "/chat_template.jinja";
  const std::string template_json_path = dir + "/chat_template.json";
  if (PathIsFile(jinja_path)) {
    template_alt = Json(ReadTextFile(jinja_path));
    // Additional named templates would be globbed from
    // additional_chat_templates/; we do not guess their order (Python's glob
    // order is the directory's), so they are refused.
    if (PathIsDirectory(dir + "/additional_chat_templates")) {
      throw Error(dir + "/additional_chat_templates: named chat templates are not supported");
    }
  } else if (PathIsFile(template_json_path)) {
    template_alt = Get(LoadJsonFile(template_json_path), "chat_template");
  }
  Json chat_template =
      tc.contains("chat_template") ? tc["chat_template"] : (template_alt ? *template_alt : Json());
  if (chat_template.is_string() || chat_template.is_array()) sv.chat_template = chat_template;

  for (const std::string& type : sv.types) {
    const Json add_entry = Get(tc, ("add_" + type + "_token").c_str());
    if (add_entry.is_boolean()) sv.SetAdd(type, add_entry.get<bool>());
    const Json entry = Get(tc, (type + "_token").c_str());
    std::string content;
    if (entry.is_string()) {
      content = entry.get<std::string>();
    } else if (entry.is_object() && Get(entry, "content").is_string()) {
      content = Get(entry, "content").get<std::string>();
    } else {
      continue;
    }
    for (const Json& token : added_tokens) {
      if (Get(token, "content") == Json(content)) {
        sv.SetId(type, Get(token, "id"), dir + "/tokenizer.json");
        break;
      }
    }
  }
}

void LoadFromConfigJson(const std::string& dir, SpecialVocab& sv) {
  std::optional<Json> config = LoadJsonFileIfExists(dir + "/config.json");
  if (!config) return;
  for (const std::string& type : sv.types) {
    Json id = Get(*config, (type + "_token_id").c_str());
    if (id.is_null() && config->contains("text_config")) {
      id = Get((*config)["text_config"], (type + "_token_id").c_str());
    }
    sv.SetId(type, id, dir + "/config.json");
  }
}

SpecialVocab LoadSpecialVocab(const std::string& dir, bool load_merges,
                              std::optional<int64_t> n_vocab,
                              std::vector<std::string> types = {"bos", "eos", "unk", "sep", "pad",
                                                                "cls", "mask"}) {
  SpecialVocab sv;
  sv.types = std::move(types);
  sv.n_vocab = n_vocab;
  LoadFromTokenizerJson(dir, sv, load_merges);
  LoadFromConfigJson(dir, sv);
  if (load_merges && sv.merges.empty() && PathIsFile(dir + "/merges.txt")) {
    throw Error(dir +
                "/merges.txt: merges.txt vocabularies are not supported (use "
                "tokenizer.json)");
  }
  return sv;
}

void AppendSpecialVocab(const SpecialVocab& sv, std::vector<GgufKv>& kv) {
  if (!sv.merges.empty()) SetKv(kv, "tokenizer.ggml.merges", GgufValue::StringArray(sv.merges));
  static const std::map<std::string, std::string> kIdKeys = {
      {"bos", "tokenizer.ggml.bos_token_id"},     {"eos", "tokenizer.ggml.eos_token_id"},
      {"unk", "tokenizer.ggml.unknown_token_id"}, {"sep", "tokenizer.ggml.seperator_token_id"},
      {"pad", "tokenizer.ggml.padding_token_id"}, {"mask", "tokenizer.ggml.mask_token_id"},
      {"eot", "tokenizer.ggml.eot_token_id"},     {"eom", "tokenizer.ggml.eom_token_id"},
  };
  for (const auto& [type, id] : sv.ids) {
    auto it = kIdKeys.find(type);
    if (it == kIdKeys.end()) continue;  // gguf-py has no key for cls: skipped
    SetKv(kv, it->second, GgufValue::U32(static_cast<uint32_t>(id)));
  }
  static const std::map<std::string, std::string> kAddKeys = {
      {"bos", "tokenizer.ggml.add_bos_token"},
      {"eos", "tokenizer.ggml.add_eos_token"},
      {"sep", "tokenizer.ggml.add_sep_token"},
  };
  for (const auto& [type, value] : sv.add) {
    auto it = kAddKeys.find(type);
    if (it == kAddKeys.end()) continue;
    SetKv(kv, it->second, GgufValue::Bool(value));
  }
  if (sv.chat_template) {
    const Json& t = *sv.chat_template;
    if (t.is_string()) {
      if (!t.get<std::string>().empty()) {
        SetKv(kv, "tokenizer.chat_template", GgufValue::String(t.get<std::string>()));
      }
    } else {
      std::optional<std::string> default_template;
      std::vector<std::string> names;
      for (const Json& choice : t) {
        std::string name = Get(choice, "name").is_string() ? Get(choice, "name").get<std::string>()
                                                           : std::string();
        // Python filters per character: one '_' for each non-alphanumeric code
        // point.
        std::string filtered;
        for (char c : name) {
          const unsigned char u = static_cast<unsigned char>(c);
          if ((u & 0xC0) == 0x80) continue;
          filtered += (u < 0x80 && std::isalnum(u)) ? c : '_';
        }
        name = filtered;
        const Json tmpl = Get(choice, "template");
        if (name.empty() || !tmpl.is_string()) continue;
        if (name == "default") {
          default_template = tmpl.get<std::string>();
        } else {
          bool seen = false;
          for (const std::string& n : names) seen |= n == name;
          if (!seen) names.push_back(name);
          if (!tmpl.get<std::string>().empty()) {
            SetKv(kv, "tokenizer.chat_template." + name,
                  GgufValue::String(tmpl.get<std::string>()));
          }
        }
      }
      if (!names.empty()) SetKv(kv, "tokenizer.chat_templates", GgufValue::StringArray(names));
      if (default_template && !default_template->empty()) {
        SetKv(kv, "tokenizer.chat_template", GgufValue::String(*default_template));
      }
    }
  }
  if (sv.normalizer_lowercase) {
    SetKv(kv, "tokenizer.ggml.normalizer.lowercase", GgufValue::Bool(*sv.normalizer_lowercase));
  }
  if (sv.normalizer_strip_accents) {
    SetKv(kv, "tokenizer.ggml.normalizer.strip_accents",
          GgufValue::Bool(*sv.normalizer_strip_accents));
  }
}

bool LooksSpecial(const std::string& token) {
  auto starts = [&](const std::string& p) { return token.rfind(p, 0) == 0; };
  auto ends = [&](const std::string& s) {
    return token.size() >= s.size() && token.compare(token.size() - s.size(), s.size(), s) == 0;
  };
  if (token == "<pad>" || token == "<mask>" || token == "<2mass>" || token == "[@BOS@]")
    return true;
  if (starts("<|") && ends("|>")) return true;
  if (starts("<\xEF\xBD\x9C") && ends("\xEF\xBD\x9C>")) return true;  // fullwidth bars
  if (starts("<unused") && ends(">")) return true;
  return false;
}

std::string ReplaceAll(std::string s, const std::string& from, const std::string& to) {
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
  return s;
}

}  // namespace

std::vector<SentencePiece> ParseSentencePieceModel(const uint8_t* data, size_t size,
                                                   const std::string& label) {
  ProtoReader r(data, size, label);
  std::vector<SentencePiece> pieces;
  while (!r.done()) {
    const uint64_t tag = r.Varint();
    const uint32_t field = static_cast<uint32_t>(tag >> 3);
    const uint32_t wire = static_cast<uint32_t>(tag & 7);
    if (field == 1 && wire == 2) {
      auto [p, n] = r.Bytes();
      pieces.push_back(ParsePiece(p, n, pieces.size(), label));
    } else {
      r.Skip(wire);
    }
  }
  if (pieces.empty()) throw Error(label + ": sentencepiece model has no pieces");
  return pieces;
}

bool HasSentencePieceModel(const std::string& dir) { return PathIsFile(dir + "/tokenizer.model"); }

void AppendSentencePieceVocab(const std::string& dir, std::optional<int64_t> vocab_size_hparam,
                              std::vector<GgufKv>& kv) {
  const std::string model_path = dir + "/tokenizer.model";
  const std::string model_bytes = ReadTextFile(model_path);
  const std::vector<SentencePiece> pieces = ParseSentencePieceModel(
      reinterpret_cast<const uint8_t*>(model_bytes.data()), model_bytes.size(), model_path);

  const int64_t vocab_size = vocab_size_hparam && *vocab_size_hparam != 0
                                 ? *vocab_size_hparam
                                 : static_cast<int64_t>(pieces.size());
  if (vocab_size < 0 || vocab_size > (int64_t{1} << 24)) {
    throw Error(dir + "/config.json: vocab_size " + std::to_string(vocab_size) +
                " is out of range");
  }
  std::vector<std::string> tokens(vocab_size);
  std::vector<float> scores(vocab_size, -10000.0f);
  std::vector<int32_t> types(vocab_size, static_cast<int32_t>(PieceType::kUnused));
  for (int64_t i = 0; i < vocab_size; ++i) tokens[i] = "[PAD" + std::to_string(i) + "]";

  for (size_t id = 0; id < pieces.size() && static_cast<int64_t>(id) < vocab_size; ++id) {
    const SentencePiece& p = pieces[id];
    PieceType type = PieceType::kNormal;
    // User-defined pieces count as normal here, as sentencepiece's Is*
    // predicates report them.
    if (p.type == PieceType::kUnknown || p.type == PieceType::kControl ||
        p.type == PieceType::kUnused || p.type == PieceType::kByte) {
      type = p.type;
    }
    tokens[id] = p.piece;
    scores[id] = p.score;
    types[id] = static_cast<int32_t>(type);
  }

  const std::string added_path = dir + "/added_tokens.json";
  if (std::optional<Json> added = LoadJsonFileIfExists(added_path)) {
    if (!added->is_object()) throw Error(added_path + ": not a JSON object");
    for (auto it = added->begin(); it != added->end(); ++it) {
      if (!it.value().is_number_integer()) {
        throw Error(added_path + ": id of " + it.key() + " is not an integer");
      }
      const int64_t id = it.value().get<int64_t>();
      if (id < 0) throw Error(added_path + ": negative id for " + it.key());
      if (id >= vocab_size) continue;
      tokens[id] = it.key();
      scores[id] = -1000.0f;
      types[id] = static_cast<int32_t>(PieceType::kUserDefined);
    }
  }

  const std::string config_path = dir + "/tokenizer_config.json";
  if (std::optional<Json> config = LoadJsonFileIfExists(config_path)) {
    const Json decoder = Get(*config, "added_tokens_decoder");
    if (decoder.is_object()) {
      for (auto it = decoder.begin(); it != decoder.end(); ++it) {
        int64_t id;
        try {
          size_t used = 0;
          id = std::stoll(it.key(), &used);
          if (used != it.key().size()) throw std::invalid_argument("trailing");
        } catch (const std::exception&) {
          throw Error(config_path + ": added_tokens_decoder key '" + it.key() +
                      "' is not a token id");
        }
        const Json content = Get(it.value(), "content");
        if (!content.is_string()) {
          throw Error(config_path + ": added_tokens_decoder[" + it.key() + "].content is missing");
        }
        if (id < 0) throw Error(config_path + ": negative added token id " + it.key());
        if (id >= vocab_size) continue;
        std::string token = content.get<std::string>();
        if (JsonTruthy(Get(it.value(), "special")) || LooksSpecial(token)) {
          types[id] = static_cast<int32_t>(PieceType::kControl);
        } else {
          token = ReplaceAll(token, kSpmSpace, " ");
          types[id] = static_cast<int32_t>(PieceType::kUserDefined);
        }
        scores[id] = -1000.0f;
        tokens[id] = token;
      }
    }
  }

  SetKv(kv, "tokenizer.ggml.model", GgufValue::String("llama"));
  SetKv(kv, "tokenizer.ggml.pre", GgufValue::String("default"));
  SetKv(kv, "tokenizer.ggml.tokens", GgufValue::StringArray(tokens));
  SetKv(kv, "tokenizer.ggml.scores", GgufValue::ArrayOf(GgufType::kF32, scores));
  SetKv(kv, "tokenizer.ggml.token_type", GgufValue::ArrayOf(GgufType::kI32, types));

  AppendSpecialVocab(LoadSpecialVocab(dir, /*load_merges=*/false, vocab_size), kv);
}

void AppendFixedSpecialTokens(const std::string& dir, int64_t n_vocab,
                              const std::vector<std::pair<std::string, int64_t>>& fixed_ids,
                              std::vector<GgufKv>& kv) {
  std::vector<std::string> types;
  for (const auto& [type, id] : fixed_ids) types.push_back(type);
  SpecialVocab sv = LoadSpecialVocab(dir, /*load_merges=*/false, n_vocab, types);
  for (const auto& [type, id] : fixed_ids) sv.SetId(type, Json(id), dir);
  AppendSpecialVocab(sv, kv);
}

bool HasTokenizerJson(const std::string& dir) { return PathIsFile(dir + "/tokenizer.json"); }

namespace {

// The pre-tokenizer split patterns of the BPE families we can name without
// running transformers.
constexpr const char* kLlama3Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kQwen2Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

std::string RecognizePreTokenizer(const Json& pre, const std::string& path) {
  const Json type = Get(pre, "type");
  if (type == "ByteLevel" && Get(pre, "use_regex") != Json(false)) return "gpt-2";
  if (type == "Sequence") {
    const Json list = Get(pre, "pretokenizers");
    if (list.is_array() && list.size() == 2 && Get(list[0], "type") == "Split" &&
        Get(list[1], "type") == "ByteLevel" && Get(list[1], "use_regex") == Json(false)) {
      const Json regex = Get(Get(list[0], "pattern"), "Regex");
      if (regex == kLlama3Pattern) return "llama-bpe";
      if (regex == kQwen2Pattern) return "qwen2";
    }
  }
  throw Error(path + ": unrecognized BPE pre-tokenizer " + pre.dump().substr(0, 200) +
              "; recognized: gpt-2 (ByteLevel), llama-bpe (Llama 3 split), "
              "qwen2 (Qwen2 split)");
}

}  // namespace

void AppendGpt2Vocab(const std::string& dir, std::optional<int64_t> vocab_size_hparam,
                     std::vector<GgufKv>& kv) {
  const std::string path = dir + "/tokenizer.json";
  const Json tokenizer = LoadJsonFile(path);
  const Json model = Get(tokenizer, "model");
  if (Get(model, "type") != "BPE" || !Get(model, "vocab").is_object()) {
    throw Error(path +
                ": model is not a BPE vocabulary (model.type \"BPE\" with a "
                "vocab object)");
  }
  const std::string pre = RecognizePreTokenizer(Get(tokenizer, "pre_tokenizer"), path);

  // transformers' get_vocab(): the model vocabulary with added tokens laid over
  // it.
  std::map<int64_t, std::string> by_id;
  std::map<std::string, int64_t> ids;
  for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0) {
      throw Error(path + ": vocab id of '" + it.key() + "' is not a non-negative integer");
    }
    ids[it.key()] = it.value().get<int64_t>();
  }
  struct Added {
    int64_t id;
    bool special;
  };
  std::map<std::string, Added> added;
  const Json added_tokens = Get(tokenizer, "added_tokens");
  if (added_tokens.is_array()) {
    for (const Json& t : added_tokens) {
      const Json id = Get(t, "id");
      const Json content = Get(t, "content");
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || !content.is_string()) {
        throw Error(path + ": an added_tokens entry lacks a valid id or content");
      }
      added[content.get<std::string>()] = Added{id.get<int64_t>(), JsonTruthy(Get(t, "special"))};
      ids[content.get<std::string>()] = id.get<int64_t>();
    }
  }
  int64_t max_id = -1;
  for (const auto& [token, id] : ids) {
    by_id[id] = token;
    max_id = std::max(max_id, id);
  }
  const int64_t vocab_size =
      vocab_size_hparam ? *vocab_size_hparam : static_cast<int64_t>(ids.size());
  if (max_id >= vocab_size) {
    throw Error(path + ": token id " + std::to_string(max_id) + " is not below vocab_size " +
                std::to_string(vocab_size));
  }
  if (vocab_size > (int64_t{1} << 24)) throw Error(path + ": vocab_size is implausibly large");
  std::map<int64_t, bool> added_special;  // added_tokens_decoder by id
  for (const auto& [content, a] : added) added_special[a.id] = a.special;

  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  tokens.reserve(vocab_size);
  for (int64_t i = 0; i < vocab_size; ++i) {
    auto it = by_id.find(i);
    if (it == by_id.end()) {
      tokens.push_back("[PAD" + std::to_string(i) + "]");
      types.push_back(static_cast<int32_t>(PieceType::kUnused));
      continue;
    }
    std::string token = it->second;
    if (added.count(token)) {
      auto special = added_special.find(i);
      if ((special != added_special.end() && special->second) || LooksSpecial(token)) {
        types.push_back(static_cast<int32_t>(PieceType::kControl));
      } else {
        token = ReplaceAll(token, kSpmSpace, " ");
        types.push_back(static_cast<int32_t>(PieceType::kUserDefined));
      }
    } else {
      types.push_back(static_cast<int32_t>(PieceType::kNormal));
    }
    tokens.push_back(std::move(token));
  }

  SetKv(kv, "tokenizer.ggml.model", GgufValue::String("gpt2"));
  SetKv(kv, "tokenizer.ggml.pre", GgufValue::String(pre));
  SetKv(kv, "tokenizer.ggml.tokens", GgufValue::StringArray(tokens));
  SetKv(kv, "tokenizer.ggml.token_type", GgufValue::ArrayOf(GgufType::kI32, types));
  const SpecialVocab sv = LoadSpecialVocab(dir, /*load_merges=*/true, std::nullopt);
  AppendSpecialVocab(sv, kv);
}

void AppendPhi3SentencePieceVocab(const std::string& dir, std::optional<int64_t> vocab_size_hparam,
                                  std::vector<GgufKv>& kv) {
  const std::string model_path = dir + "/tokenizer.model";
  if (!PathIsFile(model_path))
    throw Error(model_path + ": missing (Phi-3 needs its sentencepiece model)");
  const std::string model_bytes = ReadTextFile(model_path);
  const std::vector<SentencePiece> pieces = ParseSentencePieceModel(
      reinterpret_cast<const uint8_t*>(model_bytes.data()), model_bytes.size(), model_path);
  const int64_t vocab_size =
      vocab_size_hparam ? *vocab_size_hparam : static_cast<int64_t>(pieces.size());
  if (vocab_size < 0 || vocab_size > (int64_t{1} << 24)) {
    throw Error(dir + "/config.json: vocab_size " + std::to_string(vocab_size) +
                " is out of range");
  }
  if (static_cast<int64_t>(pieces.size()) > vocab_size) {
    throw Error(model_path + ": " + std::to_string(pieces.size()) +
                " pieces do not fit vocab_size " + std::to_string(vocab_size));
  }
  std::vector<std::string> tokens(vocab_size);
  std::vector<float> scores(vocab_size, -10000.0f);
  std::vector<int32_t> types(vocab_size, static_cast<int32_t>(PieceType::kUnused));
  for (int64_t i = 0; i < vocab_size; ++i) tokens[i] = "[PAD" + std::to_string(i) + "]";
  for (size_t id = 0; id < pieces.size(); ++id) {
    const SentencePiece& p = pieces[id];
    const bool keep = p.type == PieceType::kUnknown || p.type == PieceType::kControl ||
                      p.type == PieceType::kUnused || p.type == PieceType::kByte;
    tokens[id] = p.piece;
    scores[id] = p.score;
    types[id] = static_cast<int32_t>(keep ? p.type : PieceType::kNormal);
  }
  auto set_added = [&](int64_t id, const std::string& content, bool special,
                       const std::string& source) {
    if (id < 0 || id >= vocab_size) {
      throw Error(source + ": added token id " + std::to_string(id) + " is outside vocab_size " +
                  std::to_string(vocab_size));
    }
    tokens[id] = content;
    scores[id] = -1000.0f;
    types[id] = static_cast<int32_t>(special ? PieceType::kControl : PieceType::kUserDefined);
  };
  const std::string added_path = dir + "/added_tokens.json";
  if (std::optional<Json> added = LoadJsonFileIfExists(added_path)) {
    if (!added->is_object()) throw Error(added_path + ": not a JSON object");
    for (auto it = added->begin(); it != added->end(); ++it) {
      if (!it.value().is_number_integer())
        throw Error(added_path + ": id of " + it.key() + " is not an integer");
      const int64_t id = it.value().get<int64_t>();
      if (id >= vocab_size) continue;
      set_added(id, it.key(), false, added_path);
    }
  }
  const std::string config_path = dir + "/tokenizer_config.json";
  if (std::optional<Json> config = LoadJsonFileIfExists(config_path)) {
    const Json decoder = Get(*config, "added_tokens_decoder");
    if (decoder.is_object()) {
      for (auto it = decoder.begin(); it != decoder.end(); ++it) {
        int64_t id;
        try {
          size_t used = 0;
          id = std::stoll(it.key(), &used);
          if (used != it.key().size()) throw std::invalid_argument("trailing");
        } catch (const std::exception&) {
          throw Error(config_path + ": added_tokens_decoder key '" + it.key() +
                      "' is not a token id");
        }
        const Json content = Get(it.value(), "content");
        if (!content.is_string())
          throw Error(config_path + ": added token " + it.key() + " has no content");
        set_added(id, content.get<std::string>(), JsonTruthy(Get(it.value(), "special")),
                  config_path);
      }
    }
  }
  const std::string tokenizer_path = dir + "/tokenizer.json";
  if (std::optional<Json> tokenizer = LoadJsonFileIfExists(tokenizer_path)) {
    const Json added = Get(*tokenizer, "added_tokens");
    if (added.is_array()) {
      for (const Json& t : added) {
        if (!Get(t, "id").is_number_integer() || !Get(t, "content").is_string()) {
          throw Error(tokenizer_path + ": an added_tokens entry lacks id or content");
        }
        set_added(Get(t, "id").get<int64_t>(), Get(t, "content").get<std::string>(),
                  JsonTruthy(Get(t, "special")), tokenizer_path);
      }
    }
  }
  SetKv(kv, "tokenizer.ggml.model", GgufValue::String("llama"));
  SetKv(kv, "tokenizer.ggml.pre", GgufValue::String("default"));
  SetKv(kv, "tokenizer.ggml.tokens", GgufValue::StringArray(tokens));
  SetKv(kv, "tokenizer.ggml.scores", GgufValue::ArrayOf(GgufType::kF32, scores));
  SetKv(kv, "tokenizer.ggml.token_type", GgufValue::ArrayOf(GgufType::kI32, types));
  AppendSpecialVocab(LoadSpecialVocab(dir, /*load_merges=*/false, vocab_size), kv);
}

}  // namespace hwyquant
