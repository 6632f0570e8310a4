// Small files that must be whole or absent: written to a temporary file in the same
// directory, synced, renamed into place, and the directory synced (as LevelDB writes its
// CURRENT file); and append-only text files whose every line is synced before the call
// returns. Errors name the path and what the system said.
// Thread-safety: functions over their arguments; two writers of one path race.
#pragma once

#include <string>
#include <sys/types.h>

#include "core/error.h"

namespace custody {

// `path` holds exactly `content` with `mode` afterwards, or is unchanged.
Status write_file_atomically(const std::string& path, const std::string& content, mode_t mode);

// Appends `line` and a newline to `path` (created with mode 0644 if missing) and syncs it.
Status append_line_synced(const std::string& path, const std::string& line);

}  // namespace custody
