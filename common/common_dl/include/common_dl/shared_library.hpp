// A library opened with dlopen by its soname, for a dependency only some runs need: linking it
// would map it (and what it needs) into every process and run its initialisation there. The
// caller still declares each symbol with the library's own header (`decltype(&::f)`), so every
// call is type-checked; the soname is the ABI that header describes. Callers keep the soname a
// string literal: tests/integration/container-steps.sh finds the libraries a binary opens by
// the sonames in it.
#pragma once

#include <string>

namespace common_dl {

class SharedLibrary {
 public:
  // Opens `soname` now (RTLD_NOW | RTLD_LOCAL: its symbols are reached only through resolve()).
  // `package` names what installs it, for the error ("Debian package libsystemd0"). Never
  // closed: what it hands out may be in use until exit.
  SharedLibrary(const char* soname, const char* package);
  SharedLibrary(const SharedLibrary&) = delete;
  SharedLibrary& operator=(const SharedLibrary&) = delete;

  // Empty while the library is open and every symbol asked for was found; otherwise the first
  // failure: "cannot open libx.so.1 (Debian package libx1): <dlerror's words>" or "libx.so.1 has
  // no symbol x_open".
  const std::string& error() const { return error_; }

  // The address of `symbol` (a function, or a variable such as gnutls_free), or nullptr when the
  // library is not open or has no such symbol (then error() says so).
  void* address(const char* symbol);

  // Sets `pointer` (a function pointer, or a pointer to a variable) to `symbol`'s address.
  template <class Pointer>
  void resolve(Pointer& pointer, const char* symbol) {
    pointer = reinterpret_cast<Pointer>(address(symbol));
  }

 private:
  const char* soname_;
  void* handle_ = nullptr;
  std::string error_;
};

}  // namespace common_dl
