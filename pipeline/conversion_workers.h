// A persistent pool that converts tensors chunk by chunk, so loading and writing one tensor
// overlap with converting the next and no core waits at a per-tensor barrier.
#ifndef HWYQUANT_PIPELINE_CONVERSION_WORKERS_H_
#define HWYQUANT_PIPELINE_CONVERSION_WORKERS_H_

#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "hwyquant/hwyquant.h"
#include "pipeline/huge_pages.h"
#include "pipeline/model_source.h"
#include "pipeline/quantize.h"

namespace hwyquant {

// A pointer of type T into bytes, copied into scratch first when the bytes are misaligned (a GGUF
// with general.alignment 1 can place a tensor at an odd offset, which the kernels refuse).
template <class T>
const T* AlignedView(const uint8_t* bytes, size_t count, std::vector<T>& scratch) {
  if (reinterpret_cast<uintptr_t>(bytes) % alignof(T) == 0) {
    return reinterpret_cast<const T*>(bytes);
  }
  scratch.resize(count);
  std::memcpy(scratch.data(), bytes, count * sizeof(T));
  return scratch.data();
}

// Output buffers recycled from piece to piece: every first touch of a fresh allocation costs a
// page fault and a zeroed page, which measured as much as a fifth of the time to write them.
// Buffers are huge-page mappings (huge_pages.h): in 4 KiB pages, 15,800 first-touch faults
// had been a third of a Q8_0 run's CPU time on a VM. Used from one thread.
class BufferPool {
 public:
  struct Buffer {
    HugePageBuffer bytes;  // not written until the kernels do
    size_t capacity = 0;
  };

  // Idle buffers beyond max_idle_bytes are freed, smallest first.
  explicit BufferPool(uint64_t max_idle_bytes) : max_idle_bytes_(max_idle_bytes) {}

  // The smallest idle buffer that holds size bytes, or a new one.
  Buffer Take(size_t size);
  void Give(Buffer buffer);

 private:
  std::vector<Buffer> idle_;
  uint64_t idle_bytes_ = 0;
  uint64_t max_idle_bytes_;
};

// Rows of quantized blocks, copied into scratch first when misaligned: blocks start with an f16
// scale and have even sizes, and a GGUF with general.alignment 1 can place a tensor at an odd
// offset, which the kernels refuse.
inline const uint8_t* AlignedBlocks(const uint8_t* bytes, size_t size,
                                    std::vector<uint16_t>& scratch) {
  return reinterpret_cast<const uint8_t*>(AlignedView(bytes, size / sizeof(uint16_t), scratch));
}

// Rows [first_row, first_row + row_count) of one tensor (rows of dims[0] weights, counted
// across all its matrices) on their way from source bytes to target bytes. source holds the
// whole tensor. Chunks are row ranges inside one matrix (each expert of a stacked tensor has its
// own imatrix slice). A tensor kept as it is has its rows copied into the output buffer with
// pread where the source has a file (mapping them would put page-cache pages, possibly whole
// 2 MiB folios, into the process); otherwise its job is all of its rows, viewed in place.
class TensorJob {
 public:
  // Takes the output buffer for the rows from outputs (unless they are viewed in place) and
  // splits the rows into chunks of about kChunkWeights (or their bytes, when copying).
  TensorJob(const TensorPlan& plan, TensorBytes source, BufferPool& outputs, int64_t first_row,
            int64_t row_count);

  // The target bytes of the job's rows, result_size() of them; valid once the job is done.
  const uint8_t* result() const { return views_source_ ? source_.data() : converted_.bytes.get(); }
  size_t result_size() const { return result_size_; }
  // Where the job's rows lie in the source bytes.
  size_t source_offset() const { return source_offset_; }
  size_t source_size() const { return source_size_; }
  // Hands the output buffer back for the next pieces, once the result is written.
  BufferPool::Buffer TakeOutput() { return std::move(converted_); }
  const TensorBytes& source() const { return source_; }
  // Drops the source bytes (and with them the source's pages) once a converting job is done.
  void ReleaseSource() { source_ = TensorBytes(); }

 private:
  friend class ConversionWorkers;

  struct Scratch {
    std::vector<float> floats;
    std::vector<uint16_t> halves;  // f16, bf16 or quantized blocks
  };
  void ConvertChunk(size_t chunk, Scratch& scratch);

  struct Chunk {
    int64_t first_row;  // in the tensor
    int64_t rows;
  };

  const TensorPlan& plan_;
  TensorBytes source_;
  bool views_source_ = false;  // the result is the source bytes themselves
  BufferPool::Buffer converted_;
  int64_t n_per_row_ = 0;
  int64_t rows_per_matrix_ = 0;
  int64_t first_row_ = 0;
  size_t result_size_ = 0;
  size_t source_offset_ = 0;
  size_t source_size_ = 0;
  std::vector<Chunk> chunks_;
  // Guarded by the pool's mutex.
  size_t next_chunk_ = 0;
  size_t chunks_done_ = 0;
  std::exception_ptr error_;
};

// nthreads workers claim chunks in submission order, so they flow from one tensor into the next.
// The destructor stops and joins them after their current chunk; destroy the pool before the
// jobs it may still hold.
class ConversionWorkers {
 public:
  explicit ConversionWorkers(int nthreads);
  ~ConversionWorkers();
  ConversionWorkers(const ConversionWorkers&) = delete;
  ConversionWorkers& operator=(const ConversionWorkers&) = delete;

  // job must stay alive until Wait(job) returns or the pool is destroyed.
  void Submit(TensorJob& job);
  // Blocks until every chunk of job is converted; rethrows the first error of its chunks.
  void Wait(TensorJob& job);

 private:
  void Work();

  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable job_done_;
  std::deque<TensorJob*> queue_;  // jobs with unclaimed chunks, oldest first
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace hwyquant

#endif  // HWYQUANT_PIPELINE_CONVERSION_WORKERS_H_
