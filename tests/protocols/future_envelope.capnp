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
    # Placeholders for bodies this build may know (custody.capnp grows), so that
    # somethingNew stays unknown to it.
    reserved39 @39 :Void;
    reserved40 @40 :Void;
    reserved41 @41 :Void;
    reserved42 @42 :Void;
    reserved43 @43 :Void;
    reserved44 @44 :Void;
    reserved45 @45 :Void;
    reserved46 @46 :Void;
    reserved47 @47 :Void;
    reserved48 @48 :Void;
    reserved49 @49 :Void;
    reserved50 @50 :Void;
    reserved51 @51 :Void;
    attribute @52 :Void;
    attributionReply @53 :Void;
    reserved54 @54 :Void;
    reserved55 @55 :Void;
    reserved56 @56 :Void;
    reserved57 @57 :Void;
    reserved58 @58 :Void;
    reserved59 @59 :Void;
    reserved60 @60 :Void;
    reserved61 @61 :Void;
    reserved62 @62 :Void;
    reserved63 @63 :Void;
    reserved64 @64 :Void;
    reserved65 @65 :Void;
    reserved66 @66 :Void;
    reserved67 @67 :Void;
    reserved68 @68 :Void;
    reserved69 @69 :Void;
    reserved70 @70 :Void;
    reserved71 @71 :Void;
    reserved72 @72 :Void;
    reserved73 @73 :Void;
    reserved74 @74 :Void;
    reserved75 @75 :Void;
    reserved76 @76 :Void;
    reserved77 @77 :Void;
    reserved78 @78 :Void;
    reserved79 @79 :Void;
    somethingNew @80 :Text;
  }
  token @30 :Text;
  attempt @35 :UInt32;
}

struct RawParams {
  version @0 :UInt64;
  rangeBegin @1 :UInt64;
  values @2 :Data;
}
