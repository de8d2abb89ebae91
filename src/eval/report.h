// The self-contained HTML report of `kurtail analyze`: per-layer line plots of every metric
// and site (original model and each method side by side), a sorted channel-magnitude plot
// for one layer and site, and the numbers as a table.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "eval/diagnostics.h"

namespace kt {

using DiagnosticsRun = std::pair<std::string, std::vector<LayerDiagnostics>>;

// Every report starts with this line, so --force can recognise a report kurtail wrote.
inline constexpr const char* kReportMarker = "<!DOCTYPE html><!-- kurtail analyze report -->";
bool is_kurtail_report(const std::string& path);

std::string html_report(const std::string& model, const std::vector<DiagnosticsRun>& runs, int channel_layer,
                        Site channel_site, int bits);

}  // namespace kt
