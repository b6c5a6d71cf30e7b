// Model card front matter -> ModelCardMetadata, following gguf-py's Metadata.load_model_card and
// the model-card part of apply_metadata_heuristic.
#include "pipeline/model_card.h"

#include <yaml-cpp/yaml.h>

#include <regex>
#include <sstream>

#include "hwyquant/format.h"
#include "pipeline/hf_model.h"
#include "pipeline/paths.h"

namespace hwyquant {
namespace {

// How PyYAML's safe_load types a scalar.
enum class ScalarKind { kNull, kString, kOther };

// PyYAML's implicit resolvers (YAML 1.1) for plain scalars: null, bool, int, float, timestamp.
ScalarKind KindOf(const YAML::Node& node) {
  if (node.IsNull()) return ScalarKind::kNull;
  if (!node.IsScalar()) return ScalarKind::kOther;
  const std::string& tag = node.Tag();
  if (tag == "!" || tag == "tag:yaml.org,2002:str") return ScalarKind::kString;  // quoted
  if (tag != "?") return ScalarKind::kOther;  // explicitly tagged: not a plain string
  static const std::regex kNull("^(?:~|null|Null|NULL|)$");
  static const std::regex kBool(
      "^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$");
  static const std::regex kInt(
      "^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+"
      "|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$");
  static const std::regex kFloat(
      "^(?:[-+]?(?:[0-9][0-9_]*)\\.[0-9_]*(?:[eE][-+][0-9]+)?|\\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
      "|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\\.[0-9_]*|[-+]?\\.(?:inf|Inf|INF)|\\.(?:nan|NaN|NAN))$");
  static const std::regex kTimestamp(
      "^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]"
      "|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \\t]+)[0-9][0-9]?:[0-9][0-9]"
      ":[0-9][0-9](?:\\.[0-9]*)?(?:[ \\t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$");
  const std::string& text = node.Scalar();
  if (std::regex_match(text, kNull)) return ScalarKind::kNull;
  if (std::regex_match(text, kBool) || std::regex_match(text, kInt) ||
      std::regex_match(text, kFloat) || std::regex_match(text, kTimestamp)) {
    return ScalarKind::kOther;
  }
  return ScalarKind::kString;
}

class CardReader {
 public:
  CardReader(std::string path, YAML::Node root) : path_(std::move(path)), root_(std::move(root)) {}

  bool Has(const char* key) const { return root_[key].IsDefined(); }
  YAML::Node Get(const char* key) const { return root_[key]; }

  // use_model_card_metadata: a key the card has fills a field nothing filled yet; null leaves it
  // empty for later keys.
  void UseString(std::optional<std::string>& field, const char* key) const {
    if (!Has(key) || field) return;
    field = StringOrNull(root_[key], key);
  }

  // use_array_model_card_metadata: a string is appended, a list extends, anything else adds
  // nothing (but still makes the list exist).
  void UseArray(std::optional<std::vector<std::string>>& field, const char* key) const {
    const YAML::Node value = root_[key];
    if (!value.IsDefined() || KindOf(value) == ScalarKind::kNull) return;
    if (!field) field.emplace();
    if (value.IsSequence()) {
      for (const YAML::Node& item : value) field->push_back(RequireString(item, key));
    } else if (KindOf(value) == ScalarKind::kString) {
      field->push_back(value.Scalar());
    }
  }

  // A string, or nullopt for null; anything else cannot become a GGUF string.
  std::optional<std::string> StringOrNull(const YAML::Node& value, const std::string& key) const {
    switch (KindOf(value)) {
      case ScalarKind::kNull:
        return std::nullopt;
      case ScalarKind::kString:
        return value.Scalar();
      case ScalarKind::kOther:
        break;
    }
    throw Error(path_ + ": model card field '" + key + "' is " + Describe(value) +
                ", not a string; convert_hf_to_gguf.py cannot write it either");
  }

  std::string RequireString(const YAML::Node& value, const std::string& key) const {
    if (KindOf(value) != ScalarKind::kString) {
      throw Error(path_ + ": model card field '" + key + "' has " + Describe(value) +
                  " where a string is needed");
    }
    return value.Scalar();
  }

  // base_model(s) / datasets: HF ids and URLs become name, organization, version and repo_url;
  // mappings are taken as written.
  std::vector<CardSource> Sources(const YAML::Node& value, const std::string& key,
                                  int64_t total_params) const {
    std::vector<YAML::Node> ids;
    if (value.IsSequence()) {
      for (const YAML::Node& item : value) ids.push_back(item);
    } else if (KindOf(value) == ScalarKind::kString) {
      ids.push_back(value);
    }
    std::vector<CardSource> out;
    for (const YAML::Node& id_node : ids) {
      CardSource source;
      if (id_node.IsMap()) {
        for (const auto& entry : id_node) {
          const std::string field = RequireString(entry.first, key);
          if (std::optional<std::string> v = StringOrNull(entry.second, key + "." + field)) {
            source[field] = *v;
          }
        }
      } else if (KindOf(id_node) == ScalarKind::kString) {
        const std::string id = id_node.Scalar();
        const bool url = id.rfind("http://", 0) == 0 || id.rfind("https://", 0) == 0 ||
                         id.rfind("ssh://", 0) == 0;
        std::optional<ModelIdComponents> parts;
        if (url) {
          source["repo_url"] = id;
          static const std::regex kHubUrl("^https?://huggingface.co/([^/]+/[^/]+)$");
          std::smatch m;
          if (id.find("huggingface.co") != std::string::npos && std::regex_search(id, m, kHubUrl)) {
            parts = ParseModelId(m[1].str(), total_params);
          }
        } else {
          parts = ParseModelId(id, total_params);
        }
        if (parts) {
          if (parts->full_name) source["name"] = ModelIdToTitle(*parts->full_name);
          if (parts->org) source["organization"] = ModelIdToTitle(*parts->org);
          if (parts->version) source["version"] = *parts->version;
          if (!url && parts->org && parts->full_name) {
            source["repo_url"] = "https://huggingface.co/" + *parts->org + "/" + *parts->full_name;
          }
        }
      }
      // Anything else is an entry gguf-py logs as unknown and keeps empty.
      out.push_back(std::move(source));
    }
    return out;
  }

 private:
  static std::string Describe(const YAML::Node& value) {
    if (value.IsSequence()) return "a list";
    if (value.IsMap()) return "a mapping";
    return "'" + value.Scalar() + "' (not a string in YAML)";
  }

  std::string path_;
  YAML::Node root_;
};

}  // namespace

ModelCardMetadata LoadModelCard(const std::string& dir, int64_t total_params) {
  ModelCardMetadata card;
  const std::string path = dir + "/README.md";
  if (!PathIsFile(path)) return card;
  const std::string content = ReadTextFile(path);

  // str.splitlines() for the line breaks model cards use; the front matter is the lines between
  // a first "---" and the next.
  std::vector<std::string> lines;
  {
    std::string line;
    for (size_t i = 0; i < content.size(); ++i) {
      const char c = content[i];
      if (c == '\n' || c == '\r') {
        lines.push_back(line);
        line.clear();
        if (c == '\r' && i + 1 < content.size() && content[i + 1] == '\n') ++i;
      } else {
        line += c;
      }
    }
    if (!line.empty()) lines.push_back(line);
  }
  if (lines.empty() || lines[0] != "---") return card;
  std::string yaml;
  for (size_t i = 1; i < lines.size() && lines[i] != "---"; ++i) yaml += lines[i] + "\n";
  yaml += yaml.empty() ? "\n" : "";
  // gguf-py's two fix-ups: Norway's "no" stays a string in lists, and tabs become two spaces.
  for (size_t at = 0; (at = yaml.find("- no\n", at)) != std::string::npos; at += 7) {
    yaml.replace(at, 5, "- \"no\"\n");
  }
  for (size_t at = 0; (at = yaml.find('\t', at)) != std::string::npos; at += 2) {
    yaml.replace(at, 1, "  ");
  }

  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    throw Error(path + ": invalid YAML front matter: " + e.what());
  }
  if (!root.IsMap()) return card;  // gguf-py ignores a card that is not a mapping
  const CardReader r(path, root);

  // llama.cpp's own keys, then the same with a model_ prefix, then other creators' keys.
  r.UseString(card.name, "name");
  r.UseString(card.author, "author");
  r.UseString(card.version, "version");
  r.UseString(card.organization, "organization");
  r.UseString(card.description, "description");
  r.UseString(card.finetune, "finetune");
  r.UseString(card.basename, "basename");
  r.UseString(card.size_label, "size_label");
  r.UseString(card.source_url, "url");
  r.UseString(card.source_doi, "doi");
  r.UseString(card.source_uuid, "uuid");
  r.UseString(card.source_repo_url, "repo_url");
  r.UseString(card.name, "model_name");
  r.UseString(card.author, "model_author");
  r.UseString(card.version, "model_version");
  r.UseString(card.organization, "model_organization");
  r.UseString(card.description, "model_description");
  r.UseString(card.finetune, "model_finetune");
  r.UseString(card.basename, "model_basename");
  r.UseString(card.size_label, "model_size_label");
  r.UseString(card.source_url, "model_url");
  r.UseString(card.source_doi, "model_doi");
  r.UseString(card.source_uuid, "model_uuid");
  r.UseString(card.source_repo_url, "model_repo_url");
  r.UseString(card.author, "model_creator");
  r.UseString(card.basename, "model_type");

  // dict.get(a, dict.get(b, ...)): the first key present wins, even when its value is null.
  auto first_present = [&](std::initializer_list<const char*> keys) -> const char* {
    for (const char* k : keys) {
      if (r.Has(k)) return k;
    }
    return nullptr;
  };
  if (const char* key = first_present({"base_model", "base_models", "base_model_sources"})) {
    card.base_models = r.Sources(r.Get(key), key, total_params);
  }
  if (const char* key = first_present({"datasets", "dataset", "dataset_sources"})) {
    card.datasets = r.Sources(r.Get(key), key, total_params);
  }

  if (r.Has("license") && !card.license) {
    const YAML::Node license = r.Get("license");
    if (license.IsSequence()) {
      // A list of licenses is written comma-separated.
      std::string joined;
      for (const YAML::Node& item : license) {
        joined += (joined.empty() ? "" : ",") + r.RequireString(item, "license");
      }
      card.license = joined;
    } else {
      card.license = r.StringOrNull(license, "license");
    }
  }
  r.UseString(card.license_name, "license_name");
  r.UseString(card.license_link, "license_link");
  r.UseArray(card.tags, "tags");
  r.UseArray(card.tags, "pipeline_tag");
  r.UseArray(card.languages, "languages");
  r.UseArray(card.languages, "language");
  return card;
}

}  // namespace hwyquant
