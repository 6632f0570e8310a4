#include "actors/trainer.h"

#include <algorithm>
#include <cstring>
#include <tuple>

#include "core/dataset.h"
#include "core/float_env.h"

namespace custody::actors {

Counter& training_samples_metric(MetricsRegistry& m) {
  return m.counter("custody_training_samples_total", "Training samples whose gradients this worker's servers applied.");
}

Histogram& training_step_metric(MetricsRegistry& m) {
  return m.histogram("custody_training_step_duration_seconds",
                     "One training step: batch, gradient, push and the servers' answer.", latency_buckets());
}

namespace {

std::string data_files(const DataSpec& d) {
  if (d.kind == DataSpec::Kind::kSynthetic) return "synthetic data";
  if (d.kind == DataSpec::Kind::kCsv) {
    return "'" + d.path(d.csv_train) + "'" + (d.csv_test.empty() ? "" : ", '" + d.path(d.csv_test) + "'");
  }
  return "'" + d.path(d.train_images) + "', '" + d.path(d.train_labels) + "', '" + d.path(d.test_images) + "', '" +
         d.path(d.test_labels) + "'";
}

// A task's records (`set` holds exactly records [begin, end) of a split) against
// `expected`, naming the file whose bytes differ.
Status check_records(const LabeledSet& set, uint64_t begin, uint64_t end, const RecordsDigest& expected,
                     const DataSpec& d, bool train) {
  if (expected.empty()) return Status::ok();
  const RecordsDigest here = records_digest(set, 0, set.count);
  const bool synthetic = d.kind == DataSpec::Kind::kSynthetic;
  const char* split = train ? "training" : "test";
  const bool csv = d.kind == DataSpec::Kind::kCsv;
  for (const auto& [mine, theirs, file] :
       {std::tuple{here.images_sha256, expected.images_sha256, train ? d.train_images : d.test_images},
        std::tuple{here.labels_sha256, expected.labels_sha256, train ? d.train_labels : d.test_labels}}) {
    if (mine == theirs) continue;
    const std::string where = synthetic ? "the synthetic data this node drew"
                              : csv     ? "the table this node read (" + data_files(d) + ")"
                                        : "'" + d.path(file) + "'";
    return data_loss(where + " holds other bytes in " + split + " records [" + std::to_string(begin) + ", " +
                     std::to_string(end) + ") than the job was submitted with (SHA-256 " + mine.substr(0, 16) +
                     "... here, " + theirs.substr(0, 16) + "... at submission): this node's copy of the file "
                     "differs; refusing to train on it. Replace it with the submitted file");
  }
  return Status::ok();
}

// A task's records as the trainer takes them: only the task's shard and test range (read
// from the node's files or shipped), record 0 of each being the range's first.
struct TaskRecords {
  LabeledSet train, test;
  int64_t train_total = 0;  // N, the whole training set's records (0: not known)
};

}  // namespace

// Sample j of a sample-major block into column `col` of `x`, as features() makes it: a
// byte scaled (scale_pixels: one rounding of byte * kInputScale, the bits serving computes
// from the same pixel), a float32 copied.
void Trainer::put_sample(Matrix& x, Eigen::Index col, const std::vector<uint8_t>& pixels, Eigen::Index features,
                         int64_t j) const {
  if (value_bytes_ == 4) {
    std::memcpy(x.col(col).data(), pixels.data() + j * features * 4, static_cast<size_t>(features) * sizeof(float));
    return;
  }
  scale_pixels(pixels.data() + j * features, x.col(col).data(), static_cast<size_t>(features));
}

namespace {

// The task's four files' records, each held to its digest (RecordsFetcher checks it).
Result<TaskRecords> shipped_records(const msg::AssignTask& t, RecordsFetcher& fetcher) {
  auto range = [](const char* split, uint64_t b, uint64_t e) {
    return std::string(split) + " records [" + std::to_string(b) + ", " + std::to_string(e) + ")";
  };
  const std::string train_range = range("training", t.shard.begin, t.shard.end);
  const std::string test_range = range("test", t.test_begin, t.test_end);
  TaskRecords r;
  r.train.count = static_cast<int64_t>(t.shard.end - t.shard.begin);
  r.test.count = static_cast<int64_t>(t.test_end - t.test_begin);
  r.train_total = static_cast<int64_t>(t.train_records);
  CUSTODY_ASSIGN_OR_RETURN(r.train.labels, fetcher.get(t.train_digest.labels_sha256, "the labels of " + train_range));
  CUSTODY_ASSIGN_OR_RETURN(r.train.pixels, fetcher.get(t.train_digest.images_sha256, "the images of " + train_range));
  CUSTODY_ASSIGN_OR_RETURN(r.test.labels, fetcher.get(t.test_digest.labels_sha256, "the labels of " + test_range));
  CUSTODY_ASSIGN_OR_RETURN(r.test.pixels, fetcher.get(t.test_digest.images_sha256, "the images of " + test_range));
  // The digests matched, so these are the bytes of submission; their sizes must still fit
  // the task's ranges (a task inconsistent with its own digests is the coordinator's bug).
  const auto n = static_cast<size_t>(r.train.count), m = static_cast<size_t>(r.test.count);
  if (n == 0 || m == 0 || r.train.labels.size() != n || r.test.labels.size() != m || r.train.pixels.size() % n != 0 ||
      r.test.pixels.size() != m * (r.train.pixels.size() / n)) {
    return data_loss("the shipped records do not fit rank " + std::to_string(t.rank) + "'s " + train_range + " and " +
                     test_range);
  }
  r.train.features = r.test.features = static_cast<int>(r.train.pixels.size() / n);
  return r;
}

}  // namespace

Result<TrainingRange> load_training_range(const DataSpec& d, uint64_t begin, uint64_t end,
                                          const RecordsDigest& digest, const std::string& dataset_hash,
                                          RecordsFetcher* records) {
  const auto started = SteadyClock::now();
  const std::string range = "training records [" + std::to_string(begin) + ", " + std::to_string(end) + ")";
  TrainingRange r;
  r.obtained = {0, msg::ShardSource::kLocal, data_files(d)};
  // Only the range is kept, as a trainer keeps only its shard; the whole set is hashed only
  // when there is no digest to hold the range to.
  auto loaded = load_data_parts(d, static_cast<int64_t>(begin), static_cast<int64_t>(end), 0, 0, digest.empty());
  if (!loaded.is_ok() && loaded.status().code() == ErrorCode::kNotFound && d.kind == DataSpec::Kind::kIdx &&
      !digest.empty() && records) {
    // The same way as a task's shipped records: each file's bytes held to its digest.
    auto failed = [&](const Status& s) {
      return Status(s.code(), loaded.status().message() + ", and obtaining " + range + " failed: " + s.message());
    };
    auto labels = records->get(digest.labels_sha256, "the labels of " + range);
    if (!labels.is_ok()) return failed(labels.status());
    auto pixels = records->get(digest.images_sha256, "the images of " + range);
    if (!pixels.is_ok()) return failed(pixels.status());
    r.set.labels = std::move(labels).value();
    r.set.pixels = std::move(pixels).value();
    const auto n = static_cast<size_t>(end - begin);
    if (n == 0 || r.set.labels.size() != n || r.set.pixels.size() % n != 0) {
      return data_loss("the records obtained do not fit " + range);
    }
    r.set.count = r.end = static_cast<int64_t>(n);
    r.set.features = static_cast<int>(r.set.pixels.size() / n);
    r.obtained.how = records->source();
    r.obtained.source = records->source_name();
    r.obtained.bytes_fetched = records->bytes_fetched();
  } else {
    CUSTODY_ASSIGN_OR_RETURN(DataParts data, std::move(loaded));
    if (begin >= end || end > static_cast<uint64_t>(data.train.total)) {
      return invalid_argument(range + " lie outside the data set this node holds (" + data_files(d) + ", " +
                              std::to_string(data.train.total) + " training records)");
    }
    if (!digest.empty()) {
      CUSTODY_RETURN_IF_ERROR(check_records(data.train.records, begin, end, digest, d, true));
    } else if (data.version_hash != dataset_hash) {
      return failed_precondition("the data set this node read (" + data.version_hash.substr(0, 16) +
                                 "...) is not the version asked for (" + dataset_hash.substr(0, 16) + "...)");
    }
    r.set = std::move(data.train.records);  // the range alone, record `begin` first
    r.begin = 0;
    r.end = r.set.count;
  }
  r.obtained.elapsed_ms = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - started).count());
  return r;
}

Result<Trainer> Trainer::load(const msg::AssignTask& t, const std::string& job_id, TrainerOptions options,
                              bool* data_failure) {
  CUSTODY_ASSIGN_OR_RETURN(JobSpec spec, parse_job_spec(t.spec_text, "job " + job_id));
  const auto started = SteadyClock::now();
  msg::ShardObtained obtained{t.rank, msg::ShardSource::kLocal, data_files(spec.data)};
  TaskRecords records;
  // What fails from here to the hash check is this node's copy of the data set: another
  // node's may do. Only the task's records are kept (core/dataset.h "Streaming"); the whole
  // set is hashed only when there are no digests to hold the records to.
  const bool digests = !t.train_digest.empty() || !t.test_digest.empty();
  auto loaded = load_data_parts(spec.data, static_cast<int64_t>(t.shard.begin), static_cast<int64_t>(t.shard.end),
                                static_cast<int64_t>(t.test_begin), static_cast<int64_t>(t.test_end), !digests);
  const bool shippable = spec.data.kind == DataSpec::Kind::kIdx && !t.train_digest.empty() &&
                         !t.test_digest.empty() && options.records != nullptr;
  if (!loaded.is_ok() && loaded.status().code() == ErrorCode::kNotFound && spec.data.kind == DataSpec::Kind::kCsv) {
    // Records are shipped for IDX data only: a CSV job needs its tables on every worker.
    if (data_failure) *data_failure = true;
    return Status(loaded.status().code(), loaded.status().message() +
                                              "; a CSV job's tables are not shipped to workers: every worker needs "
                                              "them at the job file's path");
  }
  if (!loaded.is_ok() && loaded.status().code() == ErrorCode::kNotFound && shippable) {
    // The job file's paths are not on this node: its records come from the node's cache or
    // the coordinator, each held to the digests of submission on the way in.
    auto shipped = shipped_records(t, *options.records);
    if (!shipped.is_ok()) {
      const ErrorCode c = shipped.status().code();
      // Bytes that do not match, or records the coordinator cannot give: no retry on this
      // node will do better. A link that fails is not the node's data: the job recovers.
      if (data_failure) *data_failure = c != ErrorCode::kDeadlineExceeded && c != ErrorCode::kUnavailable && c != ErrorCode::kCancelled;
      return Status(c, loaded.status().message() + ", and fetching rank " + std::to_string(t.rank) +
                           "'s records failed: " + shipped.status().message());
    }
    records = std::move(shipped).value();
    obtained.how = options.records->source();
    obtained.source = options.records->source_name();
    obtained.bytes_fetched = options.records->bytes_fetched();
  } else {
    if (!loaded.is_ok() && data_failure) *data_failure = true;
    CUSTODY_ASSIGN_OR_RETURN(DataParts data, std::move(loaded));
    if (t.shard.end > static_cast<uint64_t>(data.train.total) || t.shard.begin >= t.shard.end ||
        t.test_end > static_cast<uint64_t>(data.test.total) || t.test_begin >= t.test_end) {
      if (data_failure) *data_failure = !t.train_digest.empty();  // a shorter copy than the one submitted
      return invalid_argument("the assigned shard or test range lies outside the data set" +
                              std::string(t.train_digest.empty() ? "" : " this node holds (" + data_files(spec.data) + ")"));
    }
    if (digests) {
      // The records this task uses are checked, file by file, against what the coordinator
      // read at submission: a byte changed in them names its file. Records outside them do
      // not matter to this task (another node may hold only its own shard).
      Status checked = check_records(data.train.records, t.shard.begin, t.shard.end, t.train_digest, spec.data, true);
      if (checked.is_ok()) {
        checked = check_records(data.test.records, t.test_begin, t.test_end, t.test_digest, spec.data, false);
      }
      if (!checked.is_ok()) {
        if (data_failure) *data_failure = true;
        return checked;
      }
    } else if (data.version_hash != t.shard.dataset_hash) {
      if (data_failure) *data_failure = true;
      return failed_precondition("the data set this worker read (" + data.version_hash.substr(0, 16) +
                                 "...) is not the version the job was submitted with (" +
                                 t.shard.dataset_hash.substr(0, 16) +
                                 "...); the files differ between machines");
    }
    records.train_total = data.train.total;
    records.train = std::move(data.train.records);
    records.test = std::move(data.test.records);
  }
  obtained.elapsed_ms = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - started).count());
  CUSTODY_ASSIGN_OR_RETURN(Model model, spec.make_model(records.train.features));
  if (model.num_parameters() != t.num_parameters) {
    return invalid_argument("the job's model has " + std::to_string(model.num_parameters()) +
                            " parameters, the assignment says " + std::to_string(t.num_parameters));
  }
  // Retraining without withdrawn records: they are dropped here, before anything reads them
  // as samples, and the epoch's order is drawn over the records kept.
  for (size_t i = 0; i < t.excluded.size(); ++i) {
    if (t.excluded[i] < t.shard.begin || t.excluded[i] >= t.shard.end || (i > 0 && t.excluded[i] <= t.excluded[i - 1])) {
      return invalid_argument("the assignment excludes record " + std::to_string(t.excluded[i]) +
                              ", which is not in its shard [" + std::to_string(t.shard.begin) + ", " +
                              std::to_string(t.shard.end) + ") in order");
    }
  }
  const uint64_t kept = t.shard.end - t.shard.begin - t.excluded.size();
  CUSTODY_ASSIGN_OR_RETURN(BatchOrder order,
                           BatchOrder::make(spec.seed, t.rank, kept, t.steps_per_epoch,
                                            static_cast<uint32_t>(spec.batch_size)));
  const bool private_job = spec.privacy.enabled;
  if (private_job && records.train_total <= 0) {
    return failed_precondition("a private job's sampling rate needs the training set's size, which the coordinator "
                               "did not send with rank " + std::to_string(t.rank) + "'s records; upgrade it");
  }
  const double rate =
      static_cast<double>(spec.workers) * spec.batch_size / static_cast<double>(std::max<int64_t>(1, records.train_total));
  Trainer trainer(t, std::move(spec), std::move(model), std::move(order), std::move(options));
  trainer.obtained_ = std::move(obtained);
  if (private_job) {
    CUSTODY_ASSIGN_OR_RETURN(SecureRandom sampler, SecureRandom::from_os());
    trainer.sampler_.emplace(std::move(sampler));
    trainer.sampling_rate_ = std::min(1.0, rate);
  }
  // Kept as the data's bytes (a quarter of floats); each batch is converted as it is drawn.
  trainer.features_ = records.train.features;
  trainer.value_bytes_ = records.train.value_bytes;
  if (t.excluded.empty()) {
    trainer.shard_ = std::move(records.train.pixels);
    trainer.labels_ = std::move(records.train.labels);
  } else {
    // Record t.shard.begin + j is sample j of the shard's records.
    const auto f = static_cast<size_t>(trainer.features_) * static_cast<size_t>(trainer.value_bytes_);
    trainer.shard_.reserve(static_cast<size_t>(kept) * f);
    size_t next = 0;  // the next excluded index
    for (uint64_t i = t.shard.begin; i < t.shard.end; ++i) {
      if (next < t.excluded.size() && t.excluded[next] == i) {
        ++next;
        continue;
      }
      const size_t j = static_cast<size_t>(i - t.shard.begin);
      trainer.shard_.insert(trainer.shard_.end(), records.train.pixels.begin() + j * f,
                            records.train.pixels.begin() + (j + 1) * f);
      trainer.labels_.push_back(records.train.labels[j]);
    }
  }
  trainer.test_pixels_ = std::move(records.test.pixels);
  trainer.test_y_ = std::move(records.test.labels);
  return trainer;
}

uint32_t Trainer::private_batch(Matrix& x, std::vector<uint8_t>& y, uint64_t step) {
  if (spec_.privacy.sampling == PrivacySpec::Sampling::kShuffled) {
    const int64_t* samples = order_.batch(step);
    for (uint32_t i = 0; i < order_.batch_size(); ++i) {
      put_sample(x, i, shard_, features_, samples[i]);
      y[i] = labels_[samples[i]];
    }
    return order_.batch_size();
  }
  // Poisson: each example of the shard joins with probability q, independently; the gaps
  // between those taken are geometric, so a step costs O(q * shard) draws, not O(shard).
  const uint64_t n = labels_.size();
  uint32_t taken = 0;
  for (uint64_t i = sampler_->geometric_skip(sampling_rate_); i < n; i += 1 + sampler_->geometric_skip(sampling_rate_)) {
    if (taken == x.cols()) {  // more than the room so far: grow (rare past 2x the batch)
      Matrix wider(x.rows(), std::max<Eigen::Index>(1, x.cols() * 2));
      wider.leftCols(x.cols()) = x;
      x.swap(wider);
      y.resize(static_cast<size_t>(x.cols()));
    }
    put_sample(x, taken, shard_, features_, static_cast<int64_t>(i));
    y[taken] = labels_[i];
    ++taken;
  }
  return taken;
}

void Trainer::evaluate(uint32_t epoch, const Report& report) {
  // In chunks: the test range as floats is never held at once, and training's workspace is
  // left as it is (its buffers' addresses stay those of the steps).
  constexpr int64_t kChunk = 1024;
  const auto n = static_cast<int64_t>(test_y_.size());
  Matrix x(features_, std::min(kChunk, n));
  Workspace ws;
  BatchStats s;
  for (int64_t begin = 0; begin < n; begin += kChunk) {
    const int64_t cols = std::min(kChunk, n - begin);
    for (int64_t j = 0; j < cols; ++j) put_sample(x, j, test_pixels_, features_, begin + j);
    MatrixView view(x.data(), x.rows(), cols);
    const BatchStats part = model_.evaluate(params_.data(), view, test_y_.data() + begin, ws);
    s.loss_sum += part.loss_sum;
    s.correct += part.correct;
    s.samples += part.samples;
  }
  report(msg::EpochEval{epoch, static_cast<uint64_t>(s.correct), static_cast<uint64_t>(s.samples), s.loss_sum,
                        task_.rank});
}

Status Trainer::run(ParameterClient& servers, const Report& report) {
  const FlushDenormals flush;  // as the servers do (core/float_env.h)
  const msg::AssignTask& t = task_;
  params_.assign(t.num_parameters, 0.0f);
  CUSTODY_RETURN_IF_ERROR(servers.pull());
  CUSTODY_RETURN_IF_ERROR(servers.wait(params_.data(), options_.step_timeout));

  const uint32_t batch = order_.batch_size();
  Matrix x(features_, batch);
  std::vector<uint8_t> y(batch);
  // One server holding the whole model through shared memory: the steps read its values
  // block and compute into its gradient block, and neither is copied here. Both start on
  // 64-byte boundaries, as aligned as the trainer's own buffers, so Eigen takes the same
  // paths and the model is the same to the bit (cluster_test: memory against sockets).
  float* step_values = servers.values_block() ? servers.values_block() : params_.data();
  AlignedFloats own_grad(servers.gradient_block() ? 0 : t.num_parameters);
  float* const grad = servers.gradient_block() ? servers.gradient_block() : own_grad.data();
  const auto grad_size = static_cast<Eigen::Index>(t.num_parameters);
  // params_ holds the values for evaluation and values() (once an epoch, and at the end).
  auto keep_values = [&] {
    if (step_values != params_.data())
      std::copy(step_values, step_values + t.num_parameters, params_.begin());
  };
  const uint64_t last_step = static_cast<uint64_t>(spec_.epochs) * t.steps_per_epoch;
  // A resumed task starts inside the epoch of its checkpoint, and sees the batches the
  // uninterrupted run saw from there on (core/data_order.h).
  uint64_t step = t.start_step, samples_total = 0;
  uint64_t report_samples = 0;
  double report_loss = 0;
  auto report_start = options_.now();
  Counter* samples_metric = nullptr;
  Histogram* step_seconds = nullptr;
  if (options_.metrics) {
    samples_metric = &training_samples_metric(*options_.metrics);
    step_seconds = &training_step_metric(*options_.metrics);
  }
  auto step_start = report_start;  // one reading of the clock a step, as before
  if (sampler_) {  // Poisson batches vary around the batch size: room for twice it
    x.resize(features_, 2 * batch);
    y.resize(2 * batch);
  }
  // Step s's batch (not a private job's: its Poisson draw stays in the step) into x and y.
  auto draw = [&](uint64_t s) {
    const int64_t* samples = order_.batch(s);
    for (uint32_t i = 0; i < batch; ++i) {
      put_sample(x, i, shard_, features_, samples[i]);
      y[i] = labels_[samples[i]];
    }
  };
  bool drawn = false;  // x and y hold this step's batch already
  for (; step < last_step; ++step) {
    uint32_t taken = batch;
    BatchStats st;
    if (sampler_) {
      taken = private_batch(x, y, step);
      MatrixView view(x.data(), x.rows(), taken);
      st = model_.clipped_gradient_sum(step_values, view, y.data(),
                                       static_cast<float>(spec_.privacy.clip_norm), grad, ws_);
      Eigen::Map<Eigen::VectorXf>(grad, grad_size) *= 1.0f / static_cast<float>(batch);
    } else {
      if (!drawn) draw(step);
      drawn = false;
      MatrixView view(x.data(), x.rows(), x.cols());
      st = model_.gradient(step_values, view, y.data(), grad, ws_);
    }
    if (sampler_) {
      // What leaves the worker besides the clipped sum must not depend on who was sampled:
      // a Poisson batch's size and its loss are unnoised statistics of the training data,
      // so a private job reports the expected batch size and no training loss.
      taken = batch;
      st.loss_sum = 0;
    }
    CUSTODY_RETURN_IF_ERROR(servers.push(step, taken, grad));
    // The next batch is drawn while the servers work on this step (it depends on the data
    // order alone, not on the values they send back), and is ready when their answer comes.
    if (!sampler_ && step + 1 < last_step) {
      draw(step + 1);
      drawn = true;
    }
    CUSTODY_RETURN_IF_ERROR(servers.wait(step_values, options_.step_timeout));
    samples_total += taken;
    report_samples += taken;
    report_loss += st.loss_sum;
    const uint32_t epoch = order_.epoch_of(step);
    const auto now = options_.now();
    if (samples_metric) {
      samples_metric->add(batch);
      step_seconds->observe(std::chrono::duration<double>(now - step_start).count());
    }
    step_start = now;
    if (now - report_start > options_.progress_interval) {
      auto us = std::chrono::duration_cast<std::chrono::microseconds>(now - report_start).count();
      report(msg::Progress{epoch, step + 1, report_samples, report_loss, static_cast<uint64_t>(us), t.rank});
      report_samples = 0;
      report_loss = 0;
      report_start = now;
    }
    if (order_.ends_epoch(step)) {
      keep_values();
      evaluate(epoch, report);
    }
  }
  keep_values();
  report(msg::TaskDone{step, samples_total, t.rank});
  return Status::ok();
}

}  // namespace custody::actors
