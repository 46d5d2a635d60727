#include "common_dl/shared_library.hpp"

#include <dlfcn.h>

namespace common_dl {

SharedLibrary::SharedLibrary(const char* soname, const char* package) : soname_(soname) {
  handle_ = ::dlopen(soname, RTLD_NOW | RTLD_LOCAL);
  if (handle_ == nullptr) {
    const char* why = ::dlerror();
    error_ = std::string("cannot open ") + soname + " (" + package +
             "): " + (why != nullptr ? why : "dlopen failed");
  }
}

void* SharedLibrary::address(const char* symbol) {
  if (handle_ == nullptr) return nullptr;
  void* found = ::dlsym(handle_, symbol);
  if (found == nullptr && error_.empty())
    error_ = std::string(soname_) + " has no symbol " + symbol;
  return found;
}

}  // namespace common_dl
