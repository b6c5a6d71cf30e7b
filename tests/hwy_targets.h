// Catch2 helper: runs a test body once per SIMD target that is both compiled into the test
// translation unit and supported by this CPU, naming the target in every failure.
//
// Compile the including TU with HWY_COMPILE_ALL_ATTAINABLE and HWY_WANT_AVX3_DL so that every
// x86 target (EMU128, SSSE3, SSE4, AVX2, AVX3, AVX3_DL) is generated.
#ifndef HWYQUANT_TESTS_HWY_TARGETS_H_
#define HWYQUANT_TESTS_HWY_TARGETS_H_

#include <stdint.h>

#include <catch2/catch.hpp>
#include <string>

#include "hwy/targets.h"

namespace hwyquant::test {

// Restores Highway's real target selection even when the body throws.
class ScopedTargetForTest {
 public:
  explicit ScopedTargetForTest(int64_t target) { hwy::SetSupportedTargetsForTest(target); }
  ~ScopedTargetForTest() { hwy::SetSupportedTargetsForTest(0); }
  ScopedTargetForTest(const ScopedTargetForTest&) = delete;
  ScopedTargetForTest& operator=(const ScopedTargetForTest&) = delete;
};

// body(const char* target_name) runs with dynamic dispatch forced to each target in turn.
template <class Body>
void ForEachHwyTarget(const Body& body) {
  const auto targets = hwy::SupportedAndGeneratedTargets();
  REQUIRE(!targets.empty());
  for (const int64_t target : targets) {
    const char* name = hwy::TargetName(target);
    INFO("target " << name);
    ScopedTargetForTest scoped(target);
    body(name);
  }
}

}  // namespace hwyquant::test

#endif  // HWYQUANT_TESTS_HWY_TARGETS_H_
