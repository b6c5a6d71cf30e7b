// Tokenizer metadata for GGUF: our own sentencepiece model parser,
// tokenizer.json (BPE) and the special-token rules of gguf-py's SpecialVocab,
// producing the tokenizer.* KV pairs.
#ifndef HWYQUANT_PIPELINE_TOKENIZER_H_
#define HWYQUANT_PIPELINE_TOKENIZER_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "pipeline/gguf.h"

namespace hwyquant {

// sentencepiece's piece types (ModelProto.SentencePiece.Type); GGUF token_type
// uses the same.
enum class PieceType : int32_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

struct SentencePiece {
  std::string piece;  // UTF-8
  float score = 0.0f;
  PieceType type = PieceType::kNormal;
};

// Decodes the pieces of a serialized sentencepiece ModelProto
// (tokenizer.model). Other fields (trainer and normalizer specs) are skipped.
// Throws Error naming `label` on truncated or malformed protobuf, invalid
// UTF-8, or unknown piece types.
std::vector<SentencePiece> ParseSentencePieceModel(const uint8_t* data, size_t size,
                                                   const std::string& label);

// Appends what convert_hf_to_gguf.py's _set_vocab_sentencepiece writes for the
// folder dir (tokenizer.model plus added_tokens.json, tokenizer_config.json,
// tokenizer.json and config.json): tokenizer.ggml.model "llama", pre "default",
// tokens, scores, token_type, then the special token ids, add_*_token flags and
// chat template. vocab_size is the model's (hparams), or nullopt to use the
// sentencepiece model's own size.
void AppendSentencePieceVocab(const std::string& dir, std::optional<int64_t> vocab_size,
                              std::vector<GgufKv>& kv);

// Appends what _set_vocab_gpt2 writes for a tokenizer.json BPE vocabulary:
// tokenizer.ggml.model "gpt2", pre, tokens, token_type, merges, special tokens.
// vocab_size is the model's (hparams) or nullopt for the tokenizer's own size.
// convert_hf_to_gguf.py names the pre-tokenizer by hashing how transformers
// tokenizes a probe text; without transformers we recognize the pre-tokenizer
// definitions of the families we know (gpt-2, llama-bpe, qwen2) and refuse any
// other, listing them. Added tokens are taken as written (convert re-normalizes
// unnormalized ones through the tokenizer, which is the identity for the
// special tokens of these families).
void AppendGpt2Vocab(const std::string& dir, std::optional<int64_t> vocab_size,
                     std::vector<GgufKv>& kv);

// Phi3MiniModel's own variant of the sentencepiece vocabulary: added tokens
// from added_tokens.json, tokenizer_config.json and tokenizer.json, typed only
// by their "special" flag.
void AppendPhi3SentencePieceVocab(const std::string& dir, std::optional<int64_t> vocab_size,
                                  std::vector<GgufKv>& kv);

// Sets special token ids the model class fixes (CodeLlama's infill tokens) the
// way a second SpecialVocab restricted to those types does: ids found in the
// tokenizer files win, the fixed ids fill in the rest, types without a GGUF key
// are dropped.
void AppendFixedSpecialTokens(const std::string& dir, int64_t n_vocab,
                              const std::vector<std::pair<std::string, int64_t>>& fixed_ids,
                              std::vector<GgufKv>& kv);

// Whether dir has the files each tokenizer kind needs.
bool HasSentencePieceModel(const std::string& dir);
bool HasTokenizerJson(const std::string& dir);

}  // namespace hwyquant

#endif  // HWYQUANT_PIPELINE_TOKENIZER_H_
