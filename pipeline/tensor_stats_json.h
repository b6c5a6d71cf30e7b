// Per-tensor quantization statistics as --progress-json lines, for `hwyquant
// serve`'s quality view.
//
// One line per tensor of the plan, in file order:
//   {"stage":"tensor_stats","tensor":"blk.0.attn_q.weight","message":"q4_K","metrics":{
//    "n_weights":4096,"bytes":2304,"rmse":...,"max_abs_error":...,"relative_output_error":...}}
// The job runner (pipeline/jobs.cc) collects them into the job's stats.json,
// served at GET /api/quantization/jobs/:id/stats. A tensor written unchanged is
// exact: its errors are 0. Header-only so that the commands, which link both
// the pipeline and the progress sink, are its only users.
#ifndef HWYQUANT_PIPELINE_TENSOR_STATS_JSON_H_
#define HWYQUANT_PIPELINE_TENSOR_STATS_JSON_H_

#include <map>
#include <string>

#include "hwyquant/format.h"
#include "pipeline/progress_json.h"
#include "pipeline/quantize.h"

namespace hwyquant {

inline void EmitTensorStatsJson(ProgressJsonSink& sink, const QuantizePlan& plan,
                                const QuantizeResult& result) {
  std::map<std::string, const TensorStats*> by_name;
  for (const TensorStats& s : result.stats) by_name[s.name] = &s;
  for (const TensorPlan& t : plan.tensors) {
    ProgressEvent event;
    event.stage = "tensor_stats";
    event.tensor = t.name;
    event.message = TypeName(t.target_type);
    event.metrics["n_weights"] = static_cast<double>(t.ElementCount());
    event.metrics["bytes"] = static_cast<double>(t.target_bytes);
    auto it = by_name.find(t.name);
    if (it != by_name.end()) {
      event.metrics["rmse"] = it->second->rmse;
      event.metrics["max_abs_error"] = it->second->max_abs_error;
      event.metrics["relative_output_error"] = it->second->relative_output_error;
    } else if (!t.converts()) {
      event.metrics["rmse"] = 0;
      event.metrics["max_abs_error"] = 0;
      event.metrics["relative_output_error"] = 0;
    }
    sink.Emit(std::move(event));
  }
}

}  // namespace hwyquant

#endif  // HWYQUANT_PIPELINE_TENSOR_STATS_JSON_H_
