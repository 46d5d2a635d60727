// How a failure travels through tools/iscsi-mpio, in one form, the one the libraries below use
// (docs/architecture.md, "Errors"): a std::error_code, returned or passed to a callback, says
// which failure it is (callers and tests compare codes, never text); beside it a
// `std::string& detail` says it to the operator, naming the path, socket or file and what to
// do. An empty detail means the code's own message says it all. (The operator's fail-path and
// reinstate-path fill the detail on success too: "ok: DETAIL" on the control socket.)
#pragma once

#include <string>
#include <string_view>
#include <system_error>

namespace iscsi_mpio {

// The words for a log line or stderr: `detail`, else the code's message. The one place that
// chooses between them.
std::string error_text(std::error_code ec, std::string_view detail);

}  // namespace iscsi_mpio
