// TensorJob's chunked conversion and the worker pool that runs it.
#include "pipeline/conversion_workers.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

namespace hwyquant {
namespace {

// About 256 KiB of f32 per chunk: long enough that claiming a chunk costs nothing measurable,
// short enough that the last tensor of a model still splits evenly over the workers.
constexpr int64_t kChunkWeights = 64 * 1024;
// Rows of a tensor kept as it is are copied in chunks of as many bytes as that f32.
constexpr int64_t kChunkCopyBytes = kChunkWeights * static_cast<int64_t>(sizeof(float));

// count values of type T from source at byte offset: copied into scratch (hot in cache for the
// kernel that reads them next) where the source has a file, else viewed in place.
template <class T>
const T* SourceRows(const TensorBytes& source, size_t offset, size_t count,
                    std::vector<T>& scratch) {
  if (!source.has_file()) return AlignedView(source.data() + offset, count, scratch);
  scratch.resize(count);
  source.Read(offset, count * sizeof(T), scratch.data());
  return scratch.data();
}

}  // namespace

BufferPool::Buffer BufferPool::Take(size_t size) {
  auto best = idle_.end();
  for (auto it = idle_.begin(); it != idle_.end(); ++it) {
    if (it->capacity >= size && (best == idle_.end() || it->capacity < best->capacity)) best = it;
  }
  if (best == idle_.end()) {
    HugePageBuffer bytes = MapHugePages(size);
    if (!bytes) {
      throw Error("cannot allocate a " + std::to_string(size) +
                  "-byte output buffer: " + std::strerror(errno));
    }
    const size_t capacity = bytes.get_deleter().size;
    return {std::move(bytes), capacity};
  }
  Buffer buffer = std::move(*best);
  idle_.erase(best);
  idle_bytes_ -= buffer.capacity;
  return buffer;
}

void BufferPool::Give(Buffer buffer) {
  if (!buffer.bytes) return;
  idle_bytes_ += buffer.capacity;
  idle_.push_back(std::move(buffer));
  while (idle_bytes_ > max_idle_bytes_) {
    const auto smallest =
        std::min_element(idle_.begin(), idle_.end(),
                         [](const Buffer& a, const Buffer& b) { return a.capacity < b.capacity; });
    idle_bytes_ -= smallest->capacity;
    idle_.erase(smallest);
  }
}

TensorJob::TensorJob(const TensorPlan& plan, TensorBytes source, BufferPool& outputs,
                     int64_t first_row, int64_t row_count)
    : plan_(plan), source_(std::move(source)), first_row_(first_row) {
  const int64_t elements = plan_.ElementCount();
  if (elements == 0 || (!plan_.converts() && !source_.has_file())) {
    // The result is then the whole tensor: a piece of it would be written as all of it.
    if (first_row != 0 || (elements > 0 && row_count != elements / plan_.dims[0])) {
      throw Error("tensor '" + plan_.name + "': rows " + std::to_string(first_row) + "+" +
                  std::to_string(row_count) + " of a tensor that is not copied row by row");
    }
    views_source_ = true;
    result_size_ = source_.size();
    source_size_ = source_.size();
    return;
  }
  n_per_row_ = plan_.dims[0];
  rows_per_matrix_ = plan_.dims.size() > 1 ? plan_.dims[1] : 1;
  const size_t source_row_bytes = RowSize(plan_.source_type, n_per_row_);
  result_size_ = static_cast<size_t>(row_count) * RowSize(plan_.target_type, n_per_row_);
  source_offset_ = static_cast<size_t>(first_row) * source_row_bytes;
  source_size_ = static_cast<size_t>(row_count) * source_row_bytes;
  converted_ = outputs.Take(result_size_);
  const int64_t chunk_rows = std::max<int64_t>(
      1, plan_.converts() ? kChunkWeights / n_per_row_
                          : kChunkCopyBytes / static_cast<int64_t>(source_row_bytes));
  const int64_t end_row = first_row + row_count;
  for (int64_t row = first_row; row < end_row;) {
    const int64_t matrix_end = (row / rows_per_matrix_ + 1) * rows_per_matrix_;
    const int64_t rows = std::min({chunk_rows, end_row - row, matrix_end - row});
    chunks_.push_back({row, rows});
    row += rows;
  }
}

void TensorJob::ConvertChunk(size_t chunk, Scratch& scratch) {
  const Type source_type = plan_.source_type;
  const Type target_type = plan_.target_type;
  const int64_t rows = chunks_[chunk].rows;
  const size_t first_row = static_cast<size_t>(chunks_[chunk].first_row);
  const int64_t matrix = static_cast<int64_t>(first_row) / rows_per_matrix_;
  const size_t source_row_bytes = RowSize(source_type, n_per_row_);
  uint8_t* dst = converted_.bytes.get() +
                 (first_row - static_cast<size_t>(first_row_)) * RowSize(target_type, n_per_row_);
  const int64_t experts = plan_.dims.size() > 2 ? plan_.dims[2] : 1;
  const float* imatrix =
      plan_.imatrix != nullptr ? plan_.imatrix->data() + (matrix % experts) * n_per_row_ : nullptr;
  const size_t weights = static_cast<size_t>(rows * n_per_row_);
  const size_t from = first_row * source_row_bytes;
  if (!plan_.converts()) {
    source_.Read(from, static_cast<size_t>(rows) * source_row_bytes, dst);
  } else if (source_type == Type::kF32) {
    Quantize(target_type, SourceRows(source_, from, weights, scratch.floats), dst, rows, n_per_row_,
             imatrix);
  } else if (source_type == Type::kF16) {
    QuantizeF16(target_type, SourceRows(source_, from, weights, scratch.halves), dst, rows,
                n_per_row_, imatrix);
  } else if (source_type == Type::kBF16) {
    QuantizeBF16(target_type, SourceRows(source_, from, weights, scratch.halves), dst, rows,
                 n_per_row_, imatrix);
  } else {
    // Blocks start with an f16 scale and have even sizes, so they travel as uint16_t.
    const size_t block_halves = static_cast<size_t>(rows) * source_row_bytes / sizeof(uint16_t);
    const uint8_t* blocks =
        reinterpret_cast<const uint8_t*>(SourceRows(source_, from, block_halves, scratch.halves));
    scratch.floats.resize(weights);
    Dequantize(source_type, blocks, scratch.floats.data(), rows, n_per_row_);
    Quantize(target_type, scratch.floats.data(), dst, rows, n_per_row_, imatrix);
  }
}

ConversionWorkers::ConversionWorkers(int nthreads) {
  // Resolve the SIMD target here so workers only read the dispatch table.
  (void)ActiveTarget();
  for (int i = 0; i < std::max(1, nthreads); ++i) threads_.emplace_back([this] { Work(); });
}

ConversionWorkers::~ConversionWorkers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_all();
  for (std::thread& thread : threads_) thread.join();
}

void ConversionWorkers::Submit(TensorJob& job) {
  if (job.chunks_.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(&job);
  }
  work_ready_.notify_all();
}

void ConversionWorkers::Wait(TensorJob& job) {
  std::unique_lock<std::mutex> lock(mutex_);
  job_done_.wait(lock, [&] { return job.chunks_done_ == job.chunks_.size(); });
  if (job.error_) std::rethrow_exception(job.error_);
}

void ConversionWorkers::Work() {
  TensorJob::Scratch scratch;
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    work_ready_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    TensorJob& job = *queue_.front();
    const size_t chunk = job.next_chunk_++;
    if (job.next_chunk_ == job.chunks_.size()) queue_.pop_front();
    lock.unlock();
    std::exception_ptr error;
    try {
      job.ConvertChunk(chunk, scratch);
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    if (error && !job.error_) job.error_ = error;
    if (++job.chunks_done_ == job.chunks_.size()) job_done_.notify_all();
  }
}

}  // namespace hwyquant
