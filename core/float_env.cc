#include "core/float_env.h"

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define CUSTODY_HAS_MXCSR 1
#endif

namespace custody {

#ifdef CUSTODY_HAS_MXCSR
namespace {
constexpr unsigned kFlushToZero = 0x8000;       // MXCSR.FTZ: denormal results become 0
constexpr unsigned kDenormalsAreZero = 0x0040;  // MXCSR.DAZ: denormal inputs read as 0
constexpr unsigned kBoth = kFlushToZero | kDenormalsAreZero;
}  // namespace

FlushDenormals::FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | kBoth); }
FlushDenormals::~FlushDenormals() { _mm_setcsr(saved_); }
bool FlushDenormals::active() { return (_mm_getcsr() & kBoth) == kBoth; }
#else
// Other architectures keep IEEE denormals: results are the same, only slower.
FlushDenormals::FlushDenormals() = default;
FlushDenormals::~FlushDenormals() = default;
bool FlushDenormals::active() { return false; }
#endif

}  // namespace custody
