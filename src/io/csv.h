// RFC 4180 CSV (MMLU's Hendrycks files): fields separated by commas, records by LF or CRLF; a
// field in double quotes may hold commas, line breaks and "" (one quote). A quote inside an
// unquoted field is kept as text (Python's csv module does the same); text after a closing
// quote other than a comma or a line break, and an unterminated quote, are refused naming the
// file and the line the record starts on.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace kt {

struct CsvRecord {
  std::vector<std::string> fields;
  int line = 0;  // 1-based line the record starts on
};

// `path` only names the file in errors. Blank lines (no field at all) are skipped.
std::vector<CsvRecord> parse_csv(std::string_view text, const std::string& path);

}  // namespace kt
