// A minimal SVG line-chart writer for self-contained HTML reports (no scripts, no network).
#pragma once
#include <string>
#include <vector>

namespace kt {

struct Series {
  std::string name;
  std::vector<double> y;  // x = 0..n-1
};

// One chart as an inline <svg> element. log_y plots log10 of positive values.
std::string svg_line_chart(const std::string& title, const std::string& xlabel, const std::string& ylabel,
                           const std::vector<Series>& series, bool log_y = false, int width = 420, int height = 260);

std::string html_escape(const std::string& s);

}  // namespace kt
