// Checks the type registry against the GGUF specification's ids, names and block sizes.
#include "hwyquant/format.h"

#include <catch2/catch.hpp>

namespace hwyquant {
namespace {

TEST_CASE("registry holds every type with GGUF ids, names and sizes") {
  struct Expected {
    uint32_t id;
    const char* name;
    int64_t block_size;
    int64_t type_size;
  };
  const Expected expected[] = {
      {0, "f32", 1, 4},       {1, "f16", 1, 2},       {2, "q4_0", 32, 18},
      {3, "q4_1", 32, 20},    {6, "q5_0", 32, 22},    {7, "q5_1", 32, 24},
      {8, "q8_0", 32, 34},    {10, "q2_K", 256, 84},  {11, "q3_K", 256, 110},
      {12, "q4_K", 256, 144}, {13, "q5_K", 256, 176}, {14, "q6_K", 256, 210},
      {15, "q8_K", 256, 292}, {30, "bf16", 1, 2},
  };
  for (const Expected& e : expected) {
    INFO("type " << e.name);
    const TypeTraits* traits = FindType(e.id);
    REQUIRE(traits != nullptr);
    CHECK(std::string(traits->name) == e.name);
    CHECK(traits->block_size == e.block_size);
    CHECK(traits->type_size == e.type_size);
    CHECK(FindTypeByName(e.name) == traits);
  }
}

TEST_CASE("registry ids are unique and lookups are case-insensitive") {
  for (const TypeTraits& a : kTypeRegistry) {
    for (const TypeTraits& b : kTypeRegistry) {
      if (&a != &b) CHECK(a.type != b.type);
    }
  }
  CHECK(FindTypeByName("Q4_K") == FindType(Type::kQ4_K));
  CHECK(FindTypeByName("BF16") == FindType(Type::kBF16));
  CHECK(FindTypeByName("q4_k_m") == nullptr);
  CHECK(FindType(4u) == nullptr);  // removed q4_2
  CHECK(FindType(9999u) == nullptr);
}

TEST_CASE("RowSize multiplies whole blocks and rejects partial ones") {
  CHECK(RowSize(Type::kQ4_0, 64) == 36);
  CHECK(RowSize(Type::kQ6_K, 512) == 420);
  CHECK(RowSize(Type::kF16, 7) == 14);
  CHECK(RowSize(Type::kQ4_K, 0) == 0);
  CHECK_THROWS_WITH(RowSize(Type::kQ4_K, 100),
                    Catch::Contains("100") && Catch::Contains("q4_K") && Catch::Contains("256"));
  CHECK_THROWS_AS(TraitsOf(static_cast<Type>(5)), Error);
}

}  // namespace
}  // namespace hwyquant
