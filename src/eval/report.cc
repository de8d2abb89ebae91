#include "eval/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>

#include "eval/svg.h"
#include "util/error.h"
#include "util/file.h"

namespace kt {

std::string html_report(const std::string& model, const std::vector<DiagnosticsRun>& runs, int channel_layer,
                        Site channel_site, int bits) {
  struct Metric {
    const char* title;
    bool log_y;
    std::function<double(const SiteStats&)> get;
  };
  const std::vector<Metric> metrics = {
      {"per-token kurtosis (mean)", true, [](const SiteStats& s) { return s.kurt_mean; }},
      {"per-channel kurtosis (mean over channels)", true, [](const SiteStats& s) { return s.chan_kurt_mean; }},
      {"max |x| / median |x|", true, [](const SiteStats& s) { return s.max_over_median; }},
      {"quantization kernel: per-token zero share", false, [](const SiteStats& s) { return s.zero_share; }},
      {"quantization kernel: CrossQuant zero share", false, [](const SiteStats& s) { return s.cq_zero_share; }},
      {"channel-magnitude CV (activations)", false, [](const SiteStats& s) { return s.chan_mag_cv; }},
      {"channel-magnitude CV (weights)", false, [](const SiteStats& s) { return s.w_chan_mag_cv; }},
      {"layer output error ||XW^T - Q(X)Q(W)^T||^2 / token", true, [](const SiteStats& s) { return s.layer_error; }},
  };
  const Site sites[] = {Site::AttnIn, Site::OIn, Site::MlpIn, Site::DownIn, Site::K, Site::V};
  const int layers = runs.empty() ? 0 : (int)runs[0].second.size() - 1;
  std::string h =
      std::string(kReportMarker) + "<html><head><meta charset=\"utf-8\"><title>kurtail analyze</title><style>"
      "body{font-family:sans-serif;margin:16px;color:#222}h2{margin-top:28px;border-bottom:1px solid #ccc}"
      ".grid{display:flex;flex-wrap:wrap;gap:8px}table{border-collapse:collapse;font-size:11px}"
      "td,th{border:1px solid #ddd;padding:2px 6px;text-align:right}th{background:#f4f4f4}</style></head><body>";
  h += "<h1>kurtail analyze</h1><p>model: <code>" + html_escape(model) + "</code>; " + std::to_string(layers) +
       " layers; int" + std::to_string(bits) +
       " per-token quantizer for the zero share and layer error. Activations are measured as the "
       "quantizers see them (after each method's transforms, before quantization).</p>";
  for (const Metric& mt : metrics) {
    h += "<h2>" + html_escape(mt.title) + "</h2><div class=\"grid\">";
    for (Site site : sites) {
      std::vector<Series> ser;
      bool any = false;
      for (auto& [name, d] : runs) {
        Series s{name, {}};
        for (int l = 0; l < layers; l++) {
          const SiteStats& st = d[l].site[(int)site];
          s.y.push_back(st.seen ? mt.get(st) : NAN);
          any |= st.seen && mt.get(st) != 0;
        }
        ser.push_back(std::move(s));
      }
      if (!any) continue;
      h += svg_line_chart(std::string(site_name(site)), "layer", "", ser, mt.log_y);
    }
    h += "</div>";
  }
  // channel magnitudes, sorted
  h += "<h2>channel absmax, sorted (layer " + std::to_string(channel_layer) + ", " + site_name(channel_site) +
       ")</h2><div class=\"grid\">";
  std::vector<Series> ch;
  for (auto& [name, d] : runs) {
    if (channel_layer < 0 || channel_layer >= (int)d.size()) continue;
    const LayerDiagnostics& ld = d[channel_layer];
    // MoE: down_proj inputs are measured per expert; the plot shows expert 0's
    const bool per_expert = channel_site == Site::DownIn && !ld.site[(int)channel_site].seen && !ld.expert_down.empty();
    Series s{per_expert ? name + " (expert 0)" : name,
             per_expert ? ld.expert_down[0].chan_absmax : ld.site[(int)channel_site].chan_absmax};
    std::sort(s.y.begin(), s.y.end(), std::greater<double>());
    ch.push_back(std::move(s));
  }
  h += svg_line_chart("sorted per-channel max |x|", "channel rank", "max |x|", ch, true, 860, 320) + "</div>";
  // numbers
  h += "<h2>numbers</h2><table><tr><th>run</th><th>layer</th><th>site</th><th>kurt mean</th><th>kurt max</th>"
       "<th>max/median</th><th>zero share</th><th>CQ zero share</th><th>chan-mag CV</th><th>W chan-mag CV</th>"
       "<th>layer error</th></tr>";
  char buf[512];
  for (auto& [name, d] : runs)
    for (int l = 0; l < layers; l++)
      for (Site site : sites) {
        const SiteStats& st = d[l].site[(int)site];
        if (!st.seen) continue;
        std::snprintf(buf, sizeof buf,
                      "<tr><td>%s</td><td>%d</td><td>%s</td><td>%.3f</td><td>%.2f</td><td>%.1f</td><td>%.4f</td><td>%.4f</td>"
                      "<td>%.3f</td><td>%.3f</td><td>%.4g</td></tr>",
                      html_escape(name).c_str(), l, site_name(site), st.kurt_mean, st.kurt_max, st.max_over_median,
                      st.zero_share, st.cq_zero_share, st.chan_mag_cv, st.w_chan_mag_cv, st.layer_error);
        h += buf;
      }
  h += "</table></body></html>\n";
  return h;
}

bool is_kurtail_report(const std::string& path) {
  try {
    return read_prefix(path, std::strlen(kReportMarker)) == kReportMarker;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace kt
