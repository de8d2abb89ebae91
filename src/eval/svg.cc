#include "eval/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace kt {

std::string html_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else if (c == '"') o += "&quot;";
    else o += c;
  }
  return o;
}

std::string svg_line_chart(const std::string& title, const std::string& xlabel, const std::string& ylabel,
                           const std::vector<Series>& series, bool log_y, int W, int H) {
  static const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};
  const double L = 52, R = 10, T = 24, B = 34 + 14.0 * ((series.size() + 2) / 3);
  auto tr = [&](double v) { return log_y ? std::log10(std::max(v, 1e-12)) : v; };
  double lo = INFINITY, hi = -INFINITY;
  size_t n = 0;
  for (auto& s : series) {
    n = std::max(n, s.y.size());
    for (double v : s.y)
      if (std::isfinite(v) && (!log_y || v > 0)) lo = std::min(lo, tr(v)), hi = std::max(hi, tr(v));
  }
  if (!std::isfinite(lo)) lo = 0, hi = 1;
  if (hi - lo < 1e-12) hi = lo + 1;
  const double pad = (hi - lo) * 0.05;
  lo -= pad;
  hi += pad;
  const double pw = W - L - R, ph = H - T - B;
  auto X = [&](double i) { return L + (n > 1 ? i / (n - 1) : 0.5) * pw; };
  auto Y = [&](double v) { return T + (1 - (tr(v) - lo) / (hi - lo)) * ph; };
  char buf[512];
  std::string s;
  std::snprintf(buf, sizeof buf,
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                "font-family=\"sans-serif\" font-size=\"10\" class=\"chart\">",
                W, H, W, H);
  s += buf;
  s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>";
  std::snprintf(buf, sizeof buf, "<text x=\"%d\" y=\"14\" text-anchor=\"middle\" font-size=\"12\">%s</text>", W / 2,
                html_escape(title).c_str());
  s += buf;
  // axes and y ticks
  std::snprintf(buf, sizeof buf, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#888\"/>",
                L, T, pw, ph);
  s += buf;
  for (int k = 0; k <= 4; k++) {
    double v = lo + (hi - lo) * k / 4, yy = T + (1 - (double)k / 4) * ph;
    double shown = log_y ? std::pow(10, v) : v;
    std::snprintf(buf, sizeof buf,
                  "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/><text x=\"%.1f\" y=\"%.1f\" "
                  "text-anchor=\"end\">%.3g</text>",
                  L, L + pw, yy, yy, L - 3, yy + 3, shown);
    s += buf;
  }
  for (size_t i = 0; i < n; i += std::max<size_t>(1, n / 8)) {
    std::snprintf(buf, sizeof buf, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%zu</text>", X((double)i),
                  T + ph + 12, i);
    s += buf;
  }
  std::snprintf(buf, sizeof buf, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>", L + pw / 2, T + ph + 24,
                html_escape(xlabel).c_str());
  s += buf;
  std::snprintf(buf, sizeof buf, "<text x=\"12\" y=\"%.1f\" transform=\"rotate(-90 12 %.1f)\" text-anchor=\"middle\">%s%s</text>",
                T + ph / 2, T + ph / 2, html_escape(ylabel).c_str(), log_y ? " (log)" : "");
  s += buf;
  for (size_t k = 0; k < series.size(); k++) {
    const char* c = colors[k % 8];
    std::string pts;
    for (size_t i = 0; i < series[k].y.size(); i++) {
      double v = series[k].y[i];
      if (!std::isfinite(v) || (log_y && v <= 0)) continue;
      std::snprintf(buf, sizeof buf, "%.1f,%.1f ", X((double)i), Y(v));
      pts += buf;
    }
    s += "<polyline class=\"series\" fill=\"none\" stroke-width=\"1.6\" stroke=\"" + std::string(c) + "\" points=\"" +
         pts + "\"/>";
    double lx = L + (k % 3) * (pw / 3), ly = T + ph + 36 + 14.0 * (k / 3);
    std::snprintf(buf, sizeof buf,
                  "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"3\"/><text x=\"%.1f\" "
                  "y=\"%.1f\">%s</text>",
                  lx, lx + 14, ly - 3, ly - 3, c, lx + 18, ly, html_escape(series[k].name).c_str());
    s += buf;
  }
  s += "</svg>";
  return s;
}

}  // namespace kt
