# A newer sender's Envelope, for tests: the same layout as custody.capnp's Envelope with one
# more body that this build does not know.
@0xd6e3b0a4c41f8e21;

struct FutureEnvelope {
  version @0 :UInt16;
  sender @1 :Text;
  jobId @2 :Text;
  requestId @3 :UInt64;
  body :union {
    error @4 :Void;
    register @5 :Void;
    registerAck @6 :Void;
    heartbeat @7 :Void;
    heartbeatAck @8 :Void;
    submitJob @9 :Void;
    jobAccepted @10 :Void;
    statusRequest @11 :Void;
    statusReply @12 :Void;
    cancelJob @13 :Void;
    assignKeyRange @14 :Void;
    keyRangeReady @15 :Void;
    assignTask @16 :Void;
    progress @17 :Void;
    epochEval @18 :Void;
    taskDone @19 :Void;
    stopJob @20 :Void;
    pull @21 :Void;
    push @22 :Void;
    params @23 :RawParams;   # same layout as custody.capnp's Params
    checkpointShard @24 :Void;
    resumeJob @25 :Void;
    exportRequest @26 :Void;
    exportReply @27 :Void;
    predict @28 :Void;
    predictReply @29 :Void;
    addPrincipal @31 :Void;
    principalAdded @32 :Void;
    usageRequest @33 :Void;
    usageReply @34 :Void;
    auditHeadRequest @36 :Void;
    auditHeadReply @37 :Void;
    jobReleased @38 :Void;
    storeBackup @39 :Void;
    storeBackupReply @40 :Void;
    somethingNew @41 :Text;
  }
  token @30 :Text;
  attempt @35 :UInt32;
}

struct RawParams {
  version @0 :UInt64;
  rangeBegin @1 :UInt64;
  values @2 :Data;
}
