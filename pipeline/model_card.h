// The YAML front matter of a Hugging Face model card (README.md), read the way gguf-py's
// Metadata does (PyYAML safe_load, then its model-card heuristics), for convert's general.* KV.
#ifndef HWYQUANT_PIPELINE_MODEL_CARD_H_
#define HWYQUANT_PIPELINE_MODEL_CARD_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace hwyquant {

// A base model or dataset entry: general.base_model.{i}.* / general.dataset.{i}.*, keyed by
// name, author, version, organization, description, url, doi, uuid, repo_url.
using CardSource = std::map<std::string, std::string>;

// What the model card contributes. Scalar fields are set only when the card has them; they take
// precedence over config.json's _name_or_path and the folder name, as in gguf-py.
struct ModelCardMetadata {
  std::optional<std::string> name, author, version, organization, description, finetune, basename,
      size_label, source_url, source_doi, source_uuid, source_repo_url, license, license_name,
      license_link;
  std::optional<std::vector<CardSource>> base_models, datasets;
  std::optional<std::vector<std::string>> tags, languages;
};

// Reads dir/README.md. No file, or no front matter ("---" on the first line), gives an empty
// result. Malformed YAML, or a value convert_hf_to_gguf.py could not write as a GGUF string
// (e.g. `version: 1.0`, a number), is an Error naming the file and the field.
// total_params feeds the size-label heuristic of base model and dataset ids.
ModelCardMetadata LoadModelCard(const std::string& dir, int64_t total_params);

}  // namespace hwyquant

#endif  // HWYQUANT_PIPELINE_MODEL_CARD_H_
