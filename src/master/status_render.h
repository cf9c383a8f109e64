// Renderings of a RunView for the HTTP status server: Prometheus text, JSON, the HTML page.
// Pure functions of the view (part of the library: tests call them without a server).
#pragma once
#include <string>

#include "master/run_view.h"

namespace pccl::master {

// Prometheus text exposition format 0.0.4 (metrics_text.cpp).
std::string renderMetrics(const RunView &view);
// The /api/status document; its schema is docs/status.schema.json (status_json.cpp).
std::string renderStatusJson(const RunView &view);
// The self-contained status page, which polls /api/status (status_page.cpp).
const std::string &statusPageHtml();
// "major.minor.patch" of this build.
std::string buildVersion();

} // namespace pccl::master
