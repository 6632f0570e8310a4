# The Custody wire protocol: every message between nodes and the CLI is one Envelope.
# Rules: fields are only ever added with new numbers, never renumbered or retyped; a
# reader that meets a body it does not know replies with an error (unknownBody).
# Encoded with the standard (unpacked) Cap'n Proto framing, one message per ZeroMQ frame.
@0x942579b53745de41;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("custody::wire");

struct Envelope {
  version @0 :UInt16;       # protocol version; see kProtocolVersion in messages.h
  sender @1 :Text;          # node id ("ps-1", "worker-2", "coordinator") or "cli"
  jobId @2 :Text;           # the job this message is about; empty when none
  requestId @3 :UInt64;     # echoed in the reply, so a caller can match replies
  body :union {
    error @4 :Error;
    register @5 :Register;
    registerAck @6 :RegisterAck;
    heartbeat @7 :Heartbeat;
    heartbeatAck @8 :HeartbeatAck;
    submitJob @9 :SubmitJob;
    jobAccepted @10 :JobAccepted;
    statusRequest @11 :StatusRequest;
    statusReply @12 :StatusReply;
    cancelJob @13 :CancelJob;
    assignKeyRange @14 :AssignKeyRange;
    keyRangeReady @15 :KeyRangeReady;
    assignTask @16 :AssignTask;
    progress @17 :Progress;
    epochEval @18 :EpochEval;
    taskDone @19 :TaskDone;
    stopJob @20 :StopJob;
    pull @21 :Pull;
    push @22 :Push;
    params @23 :Params;
    checkpointShard @24 :CheckpointShard;
    resumeJob @25 :ResumeJob;
    exportRequest @26 :ExportRequest;
    exportReply @27 :ExportReply;
    predict @28 :Predict;
    predictReply @29 :PredictReply;
    addPrincipal @31 :AddPrincipal;
    principalAdded @32 :PrincipalAdded;
    usageRequest @33 :UsageRequest;
    usageReply @34 :UsageReply;
    auditHeadRequest @36 :AuditHeadRequest;
    auditHeadReply @37 :AuditHeadReply;
    jobReleased @38 :JobReleased;
    principalsRequest @39 :PrincipalsRequest;
    principalsReply @40 :PrincipalsReply;
    revokePrincipal @41 :RevokePrincipal;
    storeBackup @42 :StoreBackup;
    storeBackupReply @43 :StoreBackupReply;
    storeQuery @44 :StoreQuery;
    storeQueryReply @45 :StoreQueryReply;
    setPrivacyBudget @46 :SetPrivacyBudget;
    privacyBudgetReply @47 :PrivacyBudgetReply;
    fetchRecords @48 :FetchRecords;
    recordsChunk @49 :RecordsChunk;
    shardObtained @50 :ShardObtained;
    liabilityRequest @51 :LiabilityRequest;
    liabilityReply @52 :LiabilityReply;
    attribute @53 :Attribute;
    attributionReply @54 :AttributionReply;
    scoreRecords @55 :ScoreRecords;
    recordScores @56 :RecordScores;
  }
  token @30 :Text;          # the caller's secret, when the coordinator requires one (--auth)
  attempt @35 :UInt32;      # which run of the job (0 first; +1 per recovery): messages of an
                            # older attempt are fenced off
}

enum ErrorCode {
  ok @0;
  invalidArgument @1;
  notFound @2;
  unavailable @3;
  deadlineExceeded @4;
  failedPrecondition @5;
  dataLoss @6;
  internal @7;
  cancelled @8;
  permissionDenied @9;
}

struct Error {
  code @0 :ErrorCode;
  message @1 :Text;         # what was wrong and what to do about it
  rank @2 :Int32 = -1;      # a worker's trainer failed: the rank of its task (-1: not a task's failure)
  nodeLocal @3 :Bool;       # the task cannot run on this node (its copy of the data set is missing,
                            # unreadable or not the submitted bytes): another node may run it
}

enum NodeRole {
  parameterServer @0;
  worker @1;
}

# node -> coordinator, on start and whenever the coordinator says it does not know it.
struct Register {
  role @0 :NodeRole;
  address @1 :Text;         # where peers reach this node (parameter servers), or empty
  host @2 :Text;            # host name, for operators
  pid @3 :UInt32;
  name @4 :Text;            # requested node id; empty lets the coordinator choose
  hostId @5 :Text;          # which kernel and network namespace the node runs in (boot id and
                            # the namespace's inode): equal on two nodes only if they can share
                            # memory and loopback; empty: unknown (never counted as the same host)
  session @6 :Text;         # random, new each time the node starts to register (at start, and
                            # after it lost the coordinator and dropped its work); the retries
                            # of one registration carry the same one: a repeat is one registration
}

struct RegisterAck {
  nodeId @0 :Text;
  heartbeatIntervalMs @1 :UInt32;
}

# node -> coordinator, every heartbeatIntervalMs.
struct Heartbeat {
  busy @0 :Bool;            # working on a job
  leaving @1 :Bool;         # the node is stopping (SIGTERM/SIGINT): the coordinator forgets it at
                            # once (node_deregistered), recovers its jobs, and answers
                            # heartbeatAck{known=false}; the node exits without waiting longer
}

struct HeartbeatAck {
  known @0 :Bool;           # false: the coordinator lost this node; register again
}

# cli -> coordinator
struct SubmitJob {
  specText @0 :Text;        # the TOML job file
  origin @1 :Text;          # its path on the submitter's machine, for messages
  submitter @2 :Text;       # principal name
  budgetOverride @3 :Text;  # an admin's reason to run a job without a privacy guarantee on a
                            # data set with a privacy budget; empty: no override (recorded)
}

# coordinator -> cli
struct JobAccepted {
  jobId @0 :Text;
  message @1 :Text;
}

# cli -> coordinator; an empty envelope jobId asks for every job.
struct StatusRequest {
  includeNodes @0 :Bool;
}

struct JobStatus {
  jobId @0 :Text;
  name @1 :Text;
  state @2 :JobState;
  message @3 :Text;         # why it waits, failed or was cancelled
  submitter @4 :Text;
  epoch @5 :UInt32;         # epochs completed
  epochs @6 :UInt32;
  step @7 :UInt64;          # steps completed (per worker)
  totalSteps @8 :UInt64;
  loss @9 :Float64;         # mean training loss since the last report
  testAccuracy @10 :Float64;  # after the last completed epoch; -1 before the first
  testLoss @11 :Float64;
  samplesPerSec @12 :Float64;
  submittedAtMs @13 :Int64;
  startedAtMs @14 :Int64;
  finishedAtMs @15 :Int64;
  workers @16 :List(Text);
  servers @17 :List(Text);
  datasetHash @18 :Text;
  consistency @19 :Text;
  accuracyHistory @20 :List(Float64);  # test accuracy after each epoch
  lastCheckpoint @21 :Text;  # id of the newest checkpoint, or empty
  waitingFor @22 :List(Text);  # nodes a starting or stalled job waits for, each with why
  recoveries @23 :UInt32;   # times the job was rolled back to a checkpoint after a node died
  dataPlaneSealed @24 :Bool;  # the current (or last) attempt's pushes and pulls are sealed
                              # (AES-256-GCM under keys of that attempt)
  dataPlane @25 :Text;      # how its data plane runs and why ("sealed: ...", "in clear: ...")
}

enum JobState {
  pending @0;               # waiting for enough idle workers and parameter servers
  starting @1;
  running @2;
  completed @3;
  failed @4;
  cancelled @5;
}

struct NodeStatus {
  nodeId @0 :Text;
  role @1 :NodeRole;
  address @2 :Text;
  alive @3 :Bool;
  busy @4 :Bool;
  lastSeenMsAgo @5 :Int64;
  host @6 :Text;
  pid @7 :UInt32;
  left @8 :Bool;            # not alive because it deregistered (stopped), not because it went silent
}

struct StatusReply {
  jobs @0 :List(JobStatus);
  nodes @1 :List(NodeStatus);
  storePath @2 :Text;       # the coordinator's custody store (for local readers), or empty
}

# cli -> coordinator (envelope jobId); replied to with jobAccepted or error.
struct CancelJob {
  reason @0 :Text;
  principal @1 :Text;       # who cancels (with security on, the proven caller replaces it)
}

# coordinator -> parameter server: hold this key range of the job's parameters.
struct AssignKeyRange {
  specText @0 :Text;
  serverIndex @1 :UInt32;
  rangeBegin @2 :UInt64;
  rangeEnd @3 :UInt64;
  numParameters @4 :UInt64;
  numWorkers @5 :UInt32;
  totalSteps @6 :UInt64;    # per worker; drives the learning-rate schedule
  inputFeatures @7 :UInt32;
  stepsPerEpoch @8 :UInt64;
  checkpointEvery @9 :UInt64;  # steps between checkpoints (per worker)
  startStep @10 :UInt64;       # > 0 when resuming: the step the values below are from
  initialValues @11 :Data;     # this range's starting values (resume, fine-tune); empty: seeded init
  optimizerState @12 :Data;    # this range's optimizer state at startStep (resume, recovery), in the
                               # layout of core/optimizer.h (little-endian float32 blocks of the
                               # range's length, one per state tensor); empty: start from zeros
  optimizerSteps @13 :UInt64;  # updates that state has absorbed (Adam's step t)
  # The data plane's keys (docs/ARCHITECTURE.md, "The data plane: keys and sealing"); empty
  # when the job's data plane is not sealed. 32 bytes each, made for this attempt only.
  rankKeys @14 :List(Data);  # by rank: checks that rank's pushes and pulls on this range
  replyKey @15 :Data;        # seals this server's params replies
  rankNodes @16 :List(Text); # by rank: the node the coordinator assigned it to, named in the
                             # server's contributions (not the name a push gives)
  # A private job (its spec's [privacy] section): the standard deviation of the Gaussian
  # noise this server adds, from its secure random source, to each coordinate of each step's
  # mean gradient on its range: sigma * clipNorm / expected batch (core/privacy.h). 0: none.
  noiseStd @17 :Float64;
}

# parameter server -> coordinator
struct KeyRangeReady {
  rangeBegin @0 :UInt64;
  rangeEnd @1 :UInt64;
}

struct ShardId {
  datasetHash @0 :Text;     # the data set version's SHA-256
  index @1 :UInt32;         # which of numShards
  numShards @2 :UInt32;
  begin @3 :UInt64;         # first training record
  end @4 :UInt64;           # one past the last
}

struct ServerRange {
  nodeId @0 :Text;
  address @1 :Text;
  rangeBegin @2 :UInt64;
  rangeEnd @3 :UInt64;
  sharedMemory @4 :Bool;    # the worker reaches this server through shared memory (same host,
                            # data plane in clear; docs/ARCHITECTURE.md, "The data path")
}

# coordinator -> worker
struct AssignTask {
  specText @0 :Text;
  rank @1 :UInt32;
  shard @2 :ShardId;
  testBegin @3 :UInt64;     # the test records this worker evaluates
  testEnd @4 :UInt64;
  stepsPerEpoch @5 :UInt64;
  servers @6 :List(ServerRange);
  numParameters @7 :UInt64;
  startStep @8 :UInt64;     # > 0 when resuming from a checkpoint
  # The data plane's keys of this rank, for this attempt only; empty when it is not sealed
  # (docs/ARCHITECTURE.md, "The data plane: keys and sealing").
  rankKey @9 :Data;         # 32 bytes: this rank's pushes and pulls are sealed under keys derived from it
  repliesKey @10 :Data;     # 32 bytes: the servers' params replies are opened with keys derived from it
  # SHA-256 of this task's records as the coordinator read them at submission, per file:
  # the shard's [shard.begin, shard.end) and the test range's [testBegin, testEnd), their
  # pixel bytes and their label bytes (core/dataset.h, records_digest). The worker refuses
  # to train on a copy that differs, naming the file. Empty: not checked (an older coordinator).
  trainImagesSha256 @11 :Text;
  trainLabelsSha256 @12 :Text;
  testImagesSha256 @13 :Text;
  testLabelsSha256 @14 :Text;
  trainRecords @15 :UInt64;  # records in the whole training set (N): a private job's sampling rate
                             # q = workers * batch / N, known to a worker that holds only its shard
  # Retraining without withdrawn records (issue 15): training record indices in
  # [shard.begin, shard.end) this rank must not read; it trains on the others.
  excluded @16 :List(UInt64);
}

# worker -> coordinator, a few times a second.
struct Progress {
  epoch @0 :UInt32;
  step @1 :UInt64;          # steps done by this worker
  samples @2 :UInt64;       # samples since the previous report
  lossSum @3 :Float64;      # over those samples
  elapsedUs @4 :UInt64;     # since the previous report
  rank @5 :UInt32;          # which of the job's shards (a worker may run several)
}

# worker -> coordinator, after each epoch: its part of the test set.
struct EpochEval {
  epoch @0 :UInt32;
  correct @1 :UInt64;
  total @2 :UInt64;
  lossSum @3 :Float64;
  rank @4 :UInt32;
}

# worker -> coordinator
struct TaskDone {
  steps @0 :UInt64;
  samples @1 :UInt64;
  rank @2 :UInt32;
}

# coordinator -> parameter server or worker: the job ended or was cancelled.
struct StopJob {
  reason @0 :Text;
}

# worker -> parameter server: the current values of the server's range.
struct Pull {
  worker @0 :Text;
  rank @1 :UInt32;          # the shard whose trainer asks
  seal @2 :Data;            # sealed job: AES-256-GCM tag over nothing (28 bytes) under the rank's
                            # key, binding job, attempt, rank, range and request id
  region @3 :Text;          # shared memory: the name of the rank's region at this server
                            # (protocols/shared_region.h); the answer's values are put there
}

# worker -> parameter server: the gradient of step `step` for the server's whole range;
# the reply is the Params after the update (under BSP, after all workers' step).
struct Push {
  worker @0 :Text;
  step @1 :UInt64;
  gradient @2 :Data;        # little-endian float32, (rangeEnd - rangeBegin) values
  samples @3 :UInt32;       # batch size behind the gradient (attribution)
  baseVersion @4 :UInt64;   # version of the values the gradient was computed on (staleness)
  rank @5 :UInt32;          # the shard the gradient is of: (rank, step) names the update
  sealedGradient @6 :Data;  # sealed job: nonce || AES-256-GCM ciphertext || tag of the gradient
                            # under the rank's key, binding job, attempt, rank, step, range,
                            # samples and baseVersion; `gradient` is then empty
  region @7 :Text;          # shared memory: the gradient is in this region's gradient block
                            # (protocols/shared_region.h); `gradient` is then empty
}

struct Params {
  version @0 :UInt64;       # updates applied so far
  rangeBegin @1 :UInt64;
  values @2 :Data;          # little-endian float32
  sealedValues @3 :Data;    # sealed job: nonce || ciphertext || tag of the values under the
                            # server's reply key, binding job, attempt, range, version and the
                            # request answered; `values` is then empty
  inRegion @4 :Bool;        # shared memory: the values are in the values block of the region the
                            # request named; `values` is then empty
}

# What one worker did on one parameter server during one checkpoint interval, as that
# server measured it.
struct Contribution {
  worker @0 :Text;
  accepted @1 :UInt64;      # pushes applied
  rejected @2 :UInt64;      # pushes refused (bad size, non-finite, replayed, wrong step)
  samples @3 :UInt64;       # samples behind the accepted pushes
  updateNormSum @4 :Float64;  # sum of the L2 norms of the accepted gradients (this range)
  stalenessMax @5 :UInt64;  # server version minus the push's base version
  stalenessSum @6 :UInt64;
  rank @7 :UInt32;          # the shard the worker trained on
  keyFingerprint @8 :Text;  # sealed job: the fingerprint of the key that authenticated the
                            # accepted pushes (`worker` is then the node holding it); empty: in clear
  unauthenticated @9 :UInt64;  # pushes and pulls claiming this rank that were not sealed under its
                               # key (so not from `worker`): refused, and not in `rejected`
}

# parameter server -> coordinator: its range at a checkpoint step, and who contributed.
struct CheckpointShard {
  step @0 :UInt64;          # steps per worker covered by the values
  rangeBegin @1 :UInt64;
  values @2 :Data;          # little-endian float32
  contributions @3 :List(Contribution);  # since the previous checkpoint
  final @4 :Bool;           # the job's last step
  optimizerState @5 :Data;  # the range's optimizer state with the values (layout: core/optimizer.h);
                            # empty for sgd, or from a server that predates it
  optimizerSteps @6 :UInt64;  # updates that state has absorbed (Adam's step t)
}

# parameter server -> coordinator, the answer to stopJob: how far the job's attempt (the
# envelope's) had got on this server when it let go of it. After a rollback this is the
# work that was applied and is now discarded; progress reports lag it by up to 500 ms.
struct JobReleased {
  appliedStep @0 :UInt64;   # steps per worker the server's values covered (BSP: steps applied)
  updates @1 :UInt64;       # updates applied (BSP: steps; ASP, SSP: pushes)
  rangeBegin @2 :UInt64;
  rangeEnd @3 :UInt64;
}

# cli -> coordinator (envelope jobId): run a failed or cancelled job again from its last
# checkpoint.
struct ResumeJob {
  principal @0 :Text;
}

# cli -> coordinator: the weights of a checkpoint, recorded as a use by `principal`.
struct ExportRequest {
  checkpoint @0 :Text;      # checkpoint id, or a model as NAME@VERSION or NAME (newest)
  principal @1 :Text;
  purpose @2 :Text;
}

struct ExportReply {
  checkpoint @0 :Text;
  rootHash @1 :Text;
  layerSizes @2 :List(UInt32);
  values @3 :Data;          # every parameter, in the model's flat layout
  usageId @4 :Text;         # the usage record written for this export
  receipt @5 :Text;         # JSON receipt of that record, as for predictions
  modelCard @6 :Text;       # JSON model card from the custody store (storage/model_card.h)
  architecture @7 :Text;    # a model with conv/pool/flatten layers: core/model.h's text
                            # ("1x28x28 conv2d:32:3 ..."); empty: layerSizes describe it
}

# cli -> coordinator (its serving actor): class probabilities for rows of input. Every
# successful call is recorded in the usage log before the reply leaves.
struct Predict {
  model @0 :Text;           # NAME, NAME@VERSION or a checkpoint id
  principal @1 :Text;       # the caller
  rows @2 :UInt32;
  features @3 :UInt32;      # per row; must equal the model's input size
  inputs @4 :Data;          # rows x features little-endian float32, row-major, model-scaled
  purpose @5 :Text;
}

struct PredictReply {
  checkpoint @0 :Text;
  model @1 :Text;           # NAME@VERSION, or empty when called by checkpoint id
  rootHash @2 :Text;        # of the weights that answered
  classes @3 :UInt32;       # probabilities per row
  probabilities @4 :Data;   # rows x classes little-endian float32, row-major
  predictionIds @5 :List(Text);
  callId @6 :Text;          # the usage record of this call
  receipt @7 :Text;         # JSON: the call's record, its inclusion proof and a signed tree
                            # head (storage/notary.h); empty when the coordinator has no key
}

# cli -> coordinator (admin only): a principal and its role. With security = "token" the
# reply carries the token, the only time it is ever shown (the store keeps its SHA-256);
# with security = "curve" it registers publicKey, or makes a key pair and returns its secret
# half once (over the CurveZMQ session, so encrypted).
struct AddPrincipal {
  name @0 :Text;
  role @1 :Text;            # submitter, consumer, auditor, admin or node
  publicKey @2 :Text;       # curve: a key the principal made (Z85); empty: the coordinator makes one
  rotate @3 :Bool;          # a new credential for an existing principal, revoking its old ones
  bearerToken @4 :Bool;     # curve: issue a bearer token for the HTTPS listener instead of a key
                            # pair (the ZeroMQ socket never accepts it; docs/ARCHITECTURE.md,
                            # "HTTP serving"); token mode issues tokens anyway
}

struct PrincipalAdded {
  name @0 :Text;
  role @1 :Text;
  token @2 :Text;           # token mode
  publicKey @3 :Text;       # curve mode
  secretKey @4 :Text;       # curve mode, when the coordinator made the pair; never stored
}

# cli -> coordinator (admin only): every credential, active and revoked.
struct PrincipalsRequest {
}

struct PrincipalsReply {
  json @0 :Text;            # [{"principal", "role", "kind", "public_key", "created_by", ...}]
}

# cli -> coordinator (admin only): withdraw every credential of a principal; replied to with
# principalsReply listing that principal's credentials.
struct RevokePrincipal {
  name @0 :Text;
  reason @1 :Text;
}

# cli -> coordinator: who used a model. With --auth, a caller sees only its own calls
# unless it is an auditor or an admin.
struct UsageRequest {
  model @0 :Text;           # NAME, NAME@VERSION or a checkpoint id
  sinceMs @1 :Int64;        # time range, ms since the epoch; 0: open
  untilMs @2 :Int64;
  limit @3 :UInt32 = 100;   # newest records listed; 0: all (the summary covers all)
}

struct UsageReply {
  json @0 :Text;            # the summary `custody usage --json` prints
}

# cli -> coordinator: the custody store's Merkle log heads, signed with the coordinator's
# key, for an auditor to keep (`custody audit head`). Any authenticated caller.
struct AuditHeadRequest {
}

struct AuditHeadReply {
  json @0 :Text;            # the signed heads document (storage/notary.h)
}

# cli -> coordinator (admin only): a consistent copy of the custody store as it is at one
# moment, taken while the coordinator trains and serves, added to a backup directory on the
# coordinator's machine (RocksDB's BackupEngine; `custody store backup DIR`). The reply
# comes when the backup is complete. A backup holds the records and the sealed tensors,
# never the store key.
struct StoreBackup {
  dir @0 :Text;                   # absolute path on the coordinator's machine
  rateLimitBytesPerSec @1 :UInt64;  # how fast the copy may go; 0: unlimited
}

struct StoreBackupReply {
  dir @0 :Text;
  backupId @1 :UInt32;            # its number in dir (`custody store backups DIR` lists them)
  takenAtS @2 :Int64;             # seconds since the epoch
  bytes @3 :UInt64;               # of its files (shared with earlier backups in dir too)
  files @4 :UInt32;
  storePath @5 :Text;             # the store it copies
  storeKeys @6 :List(Text);       # the store key versions its tensors are sealed under
  elapsedMs @7 :UInt64;
}

# Data shipping (docs/ARCHITECTURE.md, "Data shipping"): a worker that lacks its task's records
# fetches them from the coordinator, over a connection of its own to the coordinator's socket
# (so CurveZMQ-encrypted and authenticated like every control-plane message when security is
# curve). Records are addressed by the SHA-256 the task names (AssignTask @11..@14): a worker
# may ask only for a digest of a task the coordinator gave it in the envelope's job and attempt.

# worker -> coordinator: `length` bytes from `offset` of the records whose SHA-256 is `sha256`.
struct FetchRecords {
  sha256 @0 :Text;          # hex, one of the node's task's four digests
  offset @1 :UInt64;
  length @2 :UInt32;        # at most 4 MiB
}

# coordinator -> worker, the answer to fetchRecords.
struct RecordsChunk {
  sha256 @0 :Text;
  offset @1 :UInt64;
  totalBytes @2 :UInt64;    # the whole records' size
  data @3 :Data;            # bytes [offset, offset + size) of them
}

# worker -> coordinator, once per task before its first step: how the worker came by the records
# it trains on, each checked against the task's digests. Recorded as a `shard_obtained` event.
struct ShardObtained {
  rank @0 :UInt32;
  how @1 :Text;             # "local" (the job file's paths on the node), "cache" (the node's records
                            # cache, from an earlier fetch), "fetched" (from the coordinator, now)
  source @2 :Text;          # the files, the cache directory, or the coordinator's address
  bytesFetched @3 :UInt64;  # over the network (0 unless fetched)
  elapsedMs @4 :UInt64;     # to obtain and verify them
}

# cli -> coordinator: set (or change) a data set's differential-privacy budget; the data
# set's owner (the principal who first declared it) or an admin. Recorded in lineage and
# the audit log; every private job on the data set spends from it (storage/privacy_budget.h).
struct SetPrivacyBudget {
  dataset @0 :Text;         # "dataset:<sha256>"
  epsilon @1 :Float64;      # total, over every job on the data set
  delta @2 :Float64;
  reason @3 :Text;
  principal @4 :Text;       # who asks, on a cluster without security (the CLI's --as)
}

struct PrivacyBudgetReply {
  json @0 :Text;            # the data set's spending as `custody privacy DATASET --json` prints it
}

# cli -> coordinator: a read-only query of the coordinator's custody store, so that a CLI on
# any machine answers as one beside the store does (`custody models`, `checkpoints`,
# `lineage show|trace|impact|export|graph`, `privacy`, `audit verify`). Role-checked: auditors
# and admins read everything (actors/access_policy.h names what the other roles may ask).
# The query is named by text, not an enum, so an unknown one is refused by name.
struct StoreQuery {
  query @0 :Text;           # models, checkpoints, show, trace, impact, graph, openlineage,
                            # privacy or verify (storage/queries.h, run_query)
  argument @1 :Text;        # the id, job or model the query is about; for verify, the text of
                            # a head file to check the store against (may be empty)
}

struct StoreQueryReply {
  json @0 :Text;            # what `--json` prints for the query, from the coordinator's store
}

# cli -> coordinator: withdrawal of data and the exceptions to the taint it derives (issue
# 15; storage/liability.h). The caller is the proven principal (its name here counts only
# on a cluster without security, as --as). Every request, refused ones too, is recorded.
struct LiabilityRequest {
  enum Action {
    revoke @0;              # withdraw a data set (admin, or its owner: who declared it in its
                            # first submission): dataset, records
    allow @1;               # let one tainted model version be used despite one revocation, for
                            # one purpose (admin only): model, revocation, purpose
  }
  action @0 :Action;
  principal @1 :Text;
  reason @2 :Text;          # required: what a dispute reads
  dataset @3 :Text;         # revoke: "dataset:HASH", a hash, a unique prefix of one, or a name
  records @4 :List(UInt64); # revoke: training record indices; empty: the whole data set
  model @5 :Text;           # allow: NAME@VERSION or a checkpoint id (not a bare NAME: the
                            # exception is for the version the admin looked at)
  revocation @6 :Text;      # allow: "revocation:<16 hex>"
  purpose @7 :Text;         # allow: the one purpose it is allowed for
}

# coordinator -> cli: what was recorded (JSON: the revocation or override entity, and for a
# revocation the model versions it taints now).
struct LiabilityReply {
  json @0 :Text;
}

# cli -> coordinator (its serving actor): which training records explain a prediction
# (TracInCP, storage/attribution.h), or a model's training records by self-influence. The
# request and its answer are recorded in the usage log before the reply leaves.
struct Attribute {
  predictionId @0 :Text;    # pred-…: the prediction to explain; empty for self-influence
  principal @1 :Text;       # the caller (set by the coordinator from the credential)
  rows @2 :UInt32;          # the call's input again, as sent to predict: the store keeps
  features @3 :UInt32;      #   only its SHA-256, which this must match
  inputs @4 :Data;          # rows x features little-endian float32, row-major, model-scaled
  top @5 :UInt32;           # proponents and opponents (or records) listed
  label @6 :Int32 = -1;     # the label the test gradient is taken for; -1: the class answered
  selfInfluence @7 :Text;   # a model (NAME, NAME@V or checkpoint id): rank its run's records
  purpose @8 :Text;
  batchRows @9 :UInt32;     # rows per predict call when the input was sent (predict --batch):
                            #   the call is found among the input's batches; 0: one call
  inCoordinator @10 :Bool;  # score in the coordinator, not on the workers (--in-coordinator)
}

struct AttributionReply {
  json @0 :Text;            # the answer (storage/attribution.h documents its fields)
  usageId @1 :Text;         # the usage record of this request and its answer
  receipt @2 :Text;         # JSON receipt of that record, as for predictions
}

# coordinator -> worker (its attribution actor): score a range of a run's training records
# with TracInCP against the checkpoints given, and keep the top K (core/tracin_ranking.h).
# The worker reads the records the way a trainer does (actors/task_records.h): the job
# file's paths held to the range's digests, else its records cache. Only the coordinator
# sends it (the worker's one socket is to the coordinator).
struct ScoreRecords {
  specText @0 :Text;          # the run's job spec: its data files
  datasetHash @1 :Text;       # the data set version the run consumed
  begin @2 :UInt64;           # training records [begin, end)
  end @3 :UInt64;
  imagesSha256 @4 :Text;      # SHA-256 of the range's pixel and label bytes (records_digest)
  labelsSha256 @5 :Text;
  trainRecords @6 :UInt64;    # N, the whole training set's records
  layerSizes @7 :List(UInt32);  # the model (the answering checkpoint's)
  activation @8 :Text;
  checkpoints @9 :List(ScoringCheckpoint);
  selfInfluence @10 :Bool;    # rank by self-influence; else against the test point
  testInput @11 :Data;        # features little-endian float32, model-scaled
  testLabel @12 :UInt8;       # the label the test gradient is taken for
  top @13 :UInt32;            # K
  architecture @14 :Text;     # Model::architecture() of a model with conv layers; empty: layerSizes
}

struct ScoringCheckpoint {
  params @0 :Data;            # the flat parameter vector, little-endian float32
  learningRate @1 :Float32;   # its TracIn weight
}

# worker -> coordinator: the range's top K (highest first; lowest first for a prediction's
# opponents), equal scores by index.
struct RecordScores {
  begin @0 :UInt64;
  end @1 :UInt64;
  highest @2 :List(ScoredRecord);
  lowest @3 :List(ScoredRecord);
  recordsScored @4 :UInt64;
  elapsedMs @5 :UInt64;       # reading the records and scoring them
  source @6 :Text;            # where the records came from ("local", "cache", ...)
}

struct ScoredRecord {
  index @0 :UInt64;           # in the training set
  score @1 :Float32;
}
