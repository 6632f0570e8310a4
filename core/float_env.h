// Flush-to-zero and denormals-are-zero for the training math (as TensorFlow's
// ScopedFlushDenormal and torch.set_flush_denormal(True)).
//
// Training one data set for many steps drives some values (momentum's velocity of a dead
// unit, the gradients of saturated outputs) into the denormal range, where x86 cores take
// a microcode assist per operation: Momentum::apply then took a third of a step's time.
// Flushing them to zero changes no result beyond the last bits of values smaller than
// 1.2e-38 (tests/core/float_env_test.cc measures the difference on a real run), and every
// compute path of workers, servers and serving sets it, so the model stays identical to
// the bit whatever the layout.
//
// The flags live in the thread's MXCSR register: the scope sets them for the thread that
// creates it and restores the previous value when it ends, so a caller's thread (a CAF
// scheduler thread shared with other actors, a test's thread) is left as it was found.
// Thread-safety: a scope belongs to the thread that made it.
#pragma once

namespace custody {

class FlushDenormals {
 public:
  FlushDenormals();
  ~FlushDenormals();
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

  // Whether this thread flushes denormal results to zero and reads denormal inputs as zero.
  static bool active();

 private:
  unsigned saved_ = 0;
};

}  // namespace custody
