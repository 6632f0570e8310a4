// What every binary's --version prints: "custody 0.1.0 (git 91042bd1a2, x86-64-v3)", the
// project version, the commit it was built from (with "-dirty" if the tree had changes)
// and the CPU baseline it was compiled for (CUSTODY_ARCH). Defined in a file generated at
// each build (cmake/version.cmake).
// Thread-safety: a constant.
#pragma once

namespace custody {

const char* version_string();

}  // namespace custody
