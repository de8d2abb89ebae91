#include "io/csv.h"

#include "util/error.h"

namespace kt {

std::vector<CsvRecord> parse_csv(std::string_view t, const std::string& path) {
  std::vector<CsvRecord> out;
  size_t i = 0;
  int line = 1;
  const size_t n = t.size();
  while (i < n) {
    CsvRecord rec;
    rec.line = line;
    if (t[i] == '\n' || (t[i] == '\r' && i + 1 < n && t[i + 1] == '\n')) {  // blank line
      i += t[i] == '\r' ? 2 : 1;
      line++;
      continue;
    }
    for (;;) {  // one field per iteration
      std::string f;
      if (i < n && t[i] == '"') {
        const int open_line = line;
        i++;
        for (;;) {
          if (i >= n) fail(path, "line " + std::to_string(open_line) + ": quoted field not closed before the end of the file");
          if (t[i] == '"') {
            if (i + 1 < n && t[i + 1] == '"') {
              f += '"';
              i += 2;
              continue;
            }
            i++;
            break;
          }
          if (t[i] == '\n') line++;
          f += t[i++];
        }
        if (i < n && t[i] != ',' && t[i] != '\n' && !(t[i] == '\r' && i + 1 < n && t[i + 1] == '\n'))
          fail(path, "line " + std::to_string(line) + ": " + quote(std::string_view(&t[i], 1)) +
                         " after a closing quote (expected a comma or the end of the line)");
      } else {
        while (i < n && t[i] != ',' && t[i] != '\n' && !(t[i] == '\r' && i + 1 < n && t[i + 1] == '\n')) f += t[i++];
      }
      rec.fields.push_back(std::move(f));
      if (i < n && t[i] == ',') {
        i++;
        continue;
      }
      if (i < n) {  // end of the record
        i += t[i] == '\r' ? 2 : 1;
        line++;
      }
      break;
    }
    out.push_back(std::move(rec));
  }
  return out;
}

}  // namespace kt
