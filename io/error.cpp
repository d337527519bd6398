#include "io/error.h"

#include <atomic>
#include <cstdio>

namespace neuroseg::io {
namespace {
void stderr_sink(const std::string& message) { std::fprintf(stderr, "neuroseg: warning: %s\n", message.c_str()); }
std::atomic<WarningSink> g_sink{&stderr_sink};
}  // namespace

void warn(const std::string& message) { g_sink.load()(message); }

WarningSink set_warning_sink(WarningSink sink) { return g_sink.exchange(sink ? sink : &stderr_sink); }

}  // namespace neuroseg::io
