// ParameterServerState: the data plane through shared memory (protocols/shared_region.h),
// for workers on this server's host. Which side writes which block when, and why no one
// reads a half-written block, is in that header; the update protocol is unchanged
// (parameter_server_state.cc): a push through a region is the same push with its gradient
// elsewhere.
#include <algorithm>
#include <atomic>

#include "actors/parameter_server_state.h"
#include "core/log.h"

namespace custody::actors {

Result<shm::SharedRegion*> ParameterServerState::region_of(JobShard& job, uint32_t rank,
                                                           const std::string& name) const {
  auto refused = [&](const std::string& why) {
    return failed_precondition("rank " + std::to_string(rank) + " of " + job.id + " named shared-memory region '" +
                               name + "': " + why + "; blocks go through the socket instead");
  };
  if (job.reply_key) return refused("the job's data plane is sealed, and sealed blocks travel only by socket");
  auto it = job.regions.find(rank);
  if (it != job.regions.end()) {
    if (it->second->name() == name) return it->second.get();
    return refused("the rank's region of attempt " + std::to_string(job.attempt) + " is '" + it->second->name() +
                   "'; one region serves a rank for the whole attempt");
  }
  auto opened = shm::SharedRegion::open(name, job.id, job.attempt, rank, job.params->size());
  if (!opened.is_ok()) {
    log(LogLevel::kWarn, node_id_, "shared memory refused for rank " + std::to_string(rank) + " of " + job.id + ": " +
                                       opened.status().message());
    return refused(opened.status().message());
  }
  log(LogLevel::kInfo, node_id_,
      "rank " + std::to_string(rank) + " of " + job.id + " reaches this server through shared memory");
  auto mapped = std::make_shared<shm::SharedRegion>(std::move(opened).value());
  job.regions.emplace(rank, mapped);
  return mapped.get();
}

std::shared_ptr<shm::SharedRegion> ParameterServerState::region(const std::string& job_id, uint32_t rank) const {
  auto job = jobs_.find(job_id);
  if (job == jobs_.end()) return nullptr;
  auto it = job->second.regions.find(rank);
  return it == job->second.regions.end() ? nullptr : it->second;
}

void ParameterServerState::copy_block(const float* from, size_t n, const std::vector<float*>& to,
                                      bool urgent) const {
  // In pieces of 128 KiB (a multiple of 64 bytes: no two threads write one cache line), so
  // that a helper takes a share whichever destination it is.
  constexpr size_t kPiece = size_t{1} << 15;
  const size_t pieces = (n + kPiece - 1) / kPiece;
  auto copy = [&](size_t i) {
    const size_t begin = (i % pieces) * kPiece, end = std::min(n, begin + kPiece);
    std::copy(from + begin, from + end, to[i / pieces] + begin);
  };
  if (urgent && shares_step_end(n)) {
    parallel_->run(pieces * to.size(), copy);
  } else {
    for (size_t i = 0; i < pieces * to.size(); ++i) copy(i);
  }
}

void ParameterServerState::write_values(JobShard& job, std::vector<Deferred>& answers) const {
  std::vector<float*> blocks;
  for (Deferred& d : answers) {
    if (!d.in_region || d.written) continue;
    blocks.push_back(job.regions.at(d.rank)->values());
    d.written = true;
  }
  if (blocks.empty()) return;
  // Written only now, as the ranks' requests are answered; each worker reads its block only
  // after its answer arrives, and has no other request outstanding here.
  copy_block(job.params->data(), job.params->size(), blocks, true);
  std::atomic_thread_fence(std::memory_order_release);
}

Result<const float*> ParameterServerState::gradient_in_region(JobShard& job, const msg::Push& push,
                                                              bool urgent) const {
  CUSTODY_ASSIGN_OR_RETURN(shm::SharedRegion * region, region_of(job, push.rank, push.region));
  if (!push.gradient.empty()) {
    return failed_precondition("a push through shared memory carries its gradient in the region, not also in "
                               "the message");
  }
  // The push was received after the worker wrote the block (acquire pairs with its
  // release before sending). Copied out at once: the finiteness check and the update then
  // see exactly these values, whatever the worker's process does to the region afterwards.
  std::atomic_thread_fence(std::memory_order_acquire);
  const size_t n = job.params->size();
  job.opened.resize(n);
  copy_block(region->gradient(), n, {job.opened.data()}, urgent);
  return static_cast<const float*>(job.opened.data());
}

msg::Params ParameterServerState::values_in_region(const JobShard& job, shm::SharedRegion& region,
                                                   bool written) const {
  if (!written) {
    // Written only now, as the rank's request is answered, and read by the worker only
    // after this answer arrives: the worker has no other request outstanding here.
    std::copy(job.params->begin(), job.params->end(), region.values());
    std::atomic_thread_fence(std::memory_order_release);
  }
  msg::Params p{job.version, job.range.begin, {}};
  p.in_region = true;
  return p;
}

}  // namespace custody::actors
