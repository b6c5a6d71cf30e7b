// Anonymous huge-page mappings.
#include "pipeline/huge_pages.h"

#include <sys/mman.h>

#include <algorithm>

namespace hwyquant {

void Unmapper::operator()(uint8_t* bytes) const {
  if (bytes != nullptr) ::munmap(bytes, size);
}

HugePageBuffer MapHugePages(size_t size) {
  const size_t capacity =
      std::max<size_t>(1, (size + kHugePageBytes - 1) / kHugePageBytes) * kHugePageBytes;
  void* bytes =
      ::mmap(nullptr, capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (bytes == MAP_FAILED) return HugePageBuffer();
#ifdef MADV_HUGEPAGE
  ::madvise(bytes, capacity, MADV_HUGEPAGE);  // best effort: THP may be off
#endif
  return HugePageBuffer(static_cast<uint8_t*>(bytes), Unmapper{capacity});
}

}  // namespace hwyquant
