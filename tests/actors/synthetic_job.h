// The job file the custody record's tests submit: a softmax over a small synthetic data
// set (30 samples of 4 features, 3 classes), one worker, one epoch.
#pragma once

#include <string>

namespace custody::actors {

// `data_keys` are added to [data] as written (e.g. "name = \"triples\"\n").
inline std::string synthetic_job_text(const std::string& name, const std::string& data_keys = "") {
  return "[job]\nname = \"" + name +
         "\"\nepochs = 1\nworkers = 1\n"
         "[model]\ntype = \"softmax\"\nclasses = 3\n"
         "[data]\nkind = \"synthetic\"\n" +
         data_keys + "[data.synthetic]\ntrain_samples = 30\nfeatures = 4\nclasses = 3\n";
}

}  // namespace custody::actors
