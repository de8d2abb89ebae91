// Model's deferred globals (a streamed quantization): the embedding and head are left in the
// checkpoint and read a block of rows at a time with the recorded row transforms applied. The
// reference is the same model with its globals held and transformed whole: every row, read in
// any blocking, must be the same bits, and load_globals() must give the held tensors back.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "io/hf_config.h"
#include "io/safetensors.h"
#include "model/forward.h"
#include "model/model.h"
#include "test_util.h"
#include "transform/fuse.h"
#include "transform/rotation.h"
#include "util/error.h"
#include "util/file.h"

namespace kt {
namespace {

bool same_bits(const float* a, const float* b, size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

// Reads every row of `rows` (embed_rows or head_rows) in blocks of `block` into one buffer.
template <class F>
std::vector<float> read_all(const Model& m, int64_t block, F rows) {
  const int64_t V = m.spec.vocab, d = m.spec.hidden;
  std::vector<float> out((size_t)(V * d));
  for (int64_t r0 = 0; r0 < V; r0 += block) rows(r0, std::min(block, V - r0), out.data() + r0 * d);
  return out;
}

// The transforms a rotating method applies to the globals, on both models.
void transform(Model& m, const std::shared_ptr<const Rotation>& r1) {
  fold_final_norm(m);
  rotate_residual_globals(m, r1);
}

void check_model(const std::string& dir, bool stored_head) {
  auto held = Model::open(dir, 1);
  auto deferred = Model::open(dir, 1, "", /*defer_globals=*/true);
  ASSERT_FALSE(held->globals_deferred());
  ASSERT_TRUE(deferred->globals_deferred());
  EXPECT_TRUE(deferred->embed.empty());
  EXPECT_EQ(held->tied(), !stored_head);
  EXPECT_EQ(deferred->tied(), held->tied());
  const int64_t V = held->spec.vocab, d = held->spec.hidden;

  // untransformed: the checkpoint's rows
  auto e0 = read_all(*deferred, 1000, [&](int64_t r0, int64_t n, float* o) { deferred->embed_rows(r0, n, o); });
  EXPECT_TRUE(same_bits(e0.data(), held->embed.ptr(), e0.size()));

  // a dense R1 (the kind KurTail learns) and the final norm folded into the head
  const auto r1 = std::make_shared<const Rotation>(Rotation::random_orthogonal((int)d, 7));
  transform(*held, r1);
  transform(*deferred, r1);
  EXPECT_FALSE(deferred->tied());
  for (int64_t block : {int64_t{1}, int64_t{37}, int64_t{256}, V}) {
    auto e = read_all(*deferred, block, [&](int64_t r0, int64_t n, float* o) { deferred->embed_rows(r0, n, o); });
    auto h = read_all(*deferred, block, [&](int64_t r0, int64_t n, float* o) { deferred->head_rows(r0, n, o); });
    EXPECT_TRUE(same_bits(e.data(), held->embed.ptr(), e.size())) << "embedding, blocks of " << block;
    EXPECT_TRUE(same_bits(h.data(), held->lm_head.w.ptr(), h.size())) << "head, blocks of " << block;
  }
  // the rows of token ids, repeated and out of order, as embed_tokens reads them
  const std::vector<int32_t> ids = {5, (int32_t)V - 1, 5, 0, 4095, 17};
  std::vector<float> a(ids.size() * d), b(ids.size() * d);
  embed_tokens(*held, ids.data(), (int64_t)ids.size(), a.data());
  embed_tokens(*deferred, ids.data(), (int64_t)ids.size(), b.data());
  EXPECT_TRUE(same_bits(a.data(), b.data(), a.size()));
  // the held path of the same functions
  std::vector<float> c(3 * d);
  held->head_rows(V - 3, 3, c.data());
  EXPECT_TRUE(same_bits(c.data(), held->lm_head.w.ptr() + (V - 3) * d, c.size()));

  deferred->load_globals();
  EXPECT_FALSE(deferred->globals_deferred());
  ASSERT_EQ(deferred->embed.shape, held->embed.shape);
  ASSERT_EQ(deferred->lm_head.w.shape, held->lm_head.w.shape);
  EXPECT_TRUE(same_bits(deferred->embed.ptr(), held->embed.ptr(), held->embed.data.size()));
  EXPECT_TRUE(same_bits(deferred->lm_head.w.ptr(), held->lm_head.w.ptr(), held->lm_head.w.data.size()));
}

TEST(DeferredGlobals, TiedProxyRowsAreTheHeldRowsInAnyBlocking) { check_model(test::tinyllama(), false); }

TEST(DeferredGlobals, StoredHeadRowsAreTheHeldRowsInAnyBlocking) {
  check_model(test::data() + "/models/archs/llama2", true);
}

// A tied head loaded whole stays tied; rows outside the vocabulary are refused.
TEST(DeferredGlobals, LoadKeepsATiedHeadTiedAndRowsAreBounded) {
  auto m = Model::open(test::tinyllama(), 1, "", true);
  std::vector<float> row(m->spec.hidden);
  EXPECT_THROW(m->embed_rows(m->spec.vocab, 1, row.data()), Error);
  EXPECT_THROW(m->embed_rows(-1, 1, row.data()), Error);
  m->load_globals();
  EXPECT_TRUE(m->tied());
  EXPECT_EQ(m->embed.dim(0), m->spec.vocab);
}

// A NaN in a deferred embedding is found when its row is read, naming the file, tensor and row.
TEST(DeferredGlobals, ANonFiniteRowNamesTheFileTensorAndRow) {
  const std::string src = test::data() + "/models/archs/llama2", dir = test::temp_dir("deferred_nan");
  SafetensorsDir in(src);
  std::vector<Tensor> keep;
  keep.reserve(in.names().size());
  std::vector<std::pair<std::string, const Tensor*>> out;
  for (const std::string& n : in.names()) {
    keep.push_back(in.load(n));
    if (n == "model.embed_tokens.weight") keep.back().data[(size_t)300 * keep.back().dim(1) + 2] = NAN;
    out.emplace_back(n, &keep.back());
  }
  write_safetensors(dir + "/model.safetensors", out);
  auto m = Model::from_source(read_hf_config(src + "/config.json"), std::make_shared<SafetensorsDir>(dir), true, true);
  ASSERT_TRUE(m->globals_deferred());
  std::vector<float> rows(64 * m->spec.hidden);
  m->embed_rows(0, 64, rows.data());  // rows before it read fine
  try {
    m->embed_rows(256, 64, rows.data());
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find("model.safetensors"), std::string::npos) << w;
    EXPECT_NE(w.find("model.embed_tokens.weight"), std::string::npos) << w;
    EXPECT_NE(w.find("row 300"), std::string::npos) << w;
  }
  std::filesystem::remove_all(dir);
}

// The rows a deferred model reads are converted by to_f32_rows: the same values as to_f32 for
// every dtype it takes, and a tensor it cannot read by rows is refused.
TEST(DeferredGlobals, RowReadsConvertAsTheWholeTensor) {
  Tensor t({5, 64});
  for (size_t i = 0; i < t.data.size(); i++) t.data[i] = std::sin(0.37f * (float)i) * 3.0f;
  std::vector<uint16_t> bf(t.data.size()), hf(t.data.size());
  for (size_t i = 0; i < t.data.size(); i++) bf[i] = f32_to_bf16(t.data[i]), hf[i] = f32_to_f16(t.data[i]);
  std::vector<BlockQ8_0> q8(t.data.size() / 32);
  quantize_row_q8_0_ref(t.ptr(), q8.data(), t.data.size());
  struct Form {
    DType dtype;
    const void* data;
    size_t nbytes;
  };
  for (const Form& f : {Form{DType::F32, t.ptr(), t.data.size() * 4}, Form{DType::BF16, bf.data(), bf.size() * 2},
                        Form{DType::F16, hf.data(), hf.size() * 2}, Form{DType::Q8_0, q8.data(), q8.size() * 34}}) {
    TensorInfo ti;
    ti.name = "x";
    ti.dtype = f.dtype;
    ti.shape = {5, 64};
    ti.data = (const uint8_t*)f.data;
    ti.nbytes = f.nbytes;
    ASSERT_TRUE(readable_by_rows(ti)) << dtype_name(f.dtype);
    const Tensor whole = to_f32(ti);
    std::vector<float> rows(2 * 64);
    to_f32_rows(ti, 3, 2, rows.data());
    EXPECT_TRUE(same_bits(rows.data(), whole.ptr() + 3 * 64, rows.size())) << dtype_name(f.dtype);
    EXPECT_THROW(to_f32_rows(ti, 4, 2, rows.data()), Error);  // past the last row
    ti.unpermute_heads = 2;  // a GGUF q/k: stored in another row order
    EXPECT_FALSE(readable_by_rows(ti));
    EXPECT_THROW(to_f32_rows(ti, 0, 1, rows.data()), Error);
  }
  TensorInfo v;
  v.dtype = DType::F32;
  v.shape = {320};
  v.data = (const uint8_t*)t.ptr();
  v.nbytes = 320 * 4;
  EXPECT_FALSE(readable_by_rows(v));  // not a matrix
}

// write_safetensors with produced tensors: pieces asked for in order, the last one short, stored
// as the same values held would be.
TEST(DeferredGlobals, ProducedTensorsAreWrittenAsHeldOnes) {
  const std::string dir = test::temp_dir("produced");
  Tensor t({7, 3});
  for (size_t i = 0; i < t.data.size(); i++) t.data[i] = 0.1f * (float)i - 0.7f;
  std::vector<uint8_t> bytes(11);
  for (size_t i = 0; i < bytes.size(); i++) bytes[i] = (uint8_t)(i * 23);
  std::vector<size_t> asked;
  SafetensorsOut a{"a", t.shape, DType::BF16, nullptr, nullptr, {}, {}, 0};
  a.piece = 6;  // 21 elements: 6, 6, 6, 3
  a.produce = [&](size_t first, size_t n, float* dst) {
    asked.push_back(first);
    std::copy(t.data.begin() + first, t.data.begin() + first + n, dst);
  };
  SafetensorsOut b{"b", {11}, DType::U8, nullptr, nullptr, {}, {}, 0};
  b.piece = 4;
  b.produce_bytes = [&](size_t first, size_t n, uint8_t* dst) { std::copy(bytes.begin() + first, bytes.begin() + first + n, dst); };
  write_safetensors(dir + "/p.safetensors", {a, b}, {});
  write_safetensors(dir + "/h.safetensors", {{"a", t.shape, DType::BF16, t.ptr(), nullptr, {}, {}, 0}, {"b", {11}, DType::U8, nullptr, bytes.data(), {}, {}, 0}}, {});
  EXPECT_EQ(asked, (std::vector<size_t>{0, 6, 12, 18}));
  EXPECT_EQ(read_file(dir + "/p.safetensors"), read_file(dir + "/h.safetensors"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kt
