// Tokenizers behind one interface. Implementations:
//  - SentencePiece tokenizer.model (libsentencepiece, exact)
//  - score-merge SPM vocabularies: llama2.c tokenizer.bin, GGUF "llama" vocab (llama.cpp's algorithm)
//  - byte-level BPE: HF tokenizer.json (GPT-2 / Llama-3 / SmolLM2 style), GGUF "gpt2" vocab
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kt {

class GGUFFile;

// A vocabulary in the form GGUF (llama.cpp) stores it, for the GGUF writer.
struct VocabExport {
  std::string model;                 // "llama" (SentencePiece, scores) | "gpt2" (byte-level BPE)
  std::vector<std::string> tokens;   // SentencePiece spelling: "▁" for space, <0xHH> byte tokens
  std::vector<float> scores;
  std::vector<int32_t> types;        // 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte
  std::vector<std::string> merges;   // "left right", by rank (gpt2)
  bool add_space_prefix = true;
};

// Streaming encoder: text goes in as blocks of any size (a block may end inside a UTF-8
// character), ids come out as soon as they are final. Each tokenizer kind cuts the text only
// where cutting provably gives the same ids as encoding it whole (tokenizer_stream.h says
// where), so working memory is bounded by the longest uncuttable stretch, not by the text.
class TokenStream {
 public:
  virtual ~TokenStream() = default;
  virtual void feed(std::string_view bytes, std::vector<int>* out) = 0;
  virtual void finish(std::vector<int>* out) = 0;  // end of text
};

// Work granularity of the streams: about this many bytes are tokenized at a time.
inline constexpr size_t kTokenizeChunkBytes = 64u << 10;

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Text -> ids, without BOS/EOS; the text is fed to stream(chunk_bytes) in chunk_bytes blocks.
  // The ids do not depend on chunk_bytes (tests check that on real text).
  std::vector<int> encode(std::string_view text, size_t chunk_bytes = kTokenizeChunkBytes) const;
  virtual std::unique_ptr<TokenStream> stream(size_t chunk_bytes = kTokenizeChunkBytes) const = 0;
  // The bytes one token stands for, given the previous token (SPM strips the dummy-prefix
  // space after BOS). Byte tokens may yield partial UTF-8.
  virtual std::string piece(int prev, int id) const = 0;
  virtual int vocab_size() const = 0;
  virtual std::string kind() const = 0;
  // Fills `v` if this vocabulary can be written to GGUF.
  virtual bool export_vocab(VocabExport* v) const { return false; }

  std::vector<int> encode_for_model(std::string_view text) const;  // adds BOS if add_bos
  std::string decode(const std::vector<int>& ids) const;

  int bos = -1, eos = -1;
  bool add_bos = false;
};

// "<0xHH>" (SentencePiece byte-fallback spelling) -> the byte; false for anything else.
bool parse_byte_piece(std::string_view piece, unsigned char* byte);

// HF checkpoint directory: tokenizer.model (preferred, exact SentencePiece) or tokenizer.json.
// BOS handling from tokenizer_config.json (add_bos_token) or the tokenizer.json post-processor.
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& dir);
std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& model_path);
std::unique_ptr<Tokenizer> load_tokenizer_json(const std::string& path);
// llama2.c tokenizer.bin; vocab_size comes from the checkpoint header.
std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path, int vocab_size);
// GGUF tokenizer.ggml.* keys ("llama" SPM or "gpt2" byte-level BPE).
std::unique_ptr<Tokenizer> load_gguf_tokenizer(const GGUFFile& f);

}  // namespace kt
