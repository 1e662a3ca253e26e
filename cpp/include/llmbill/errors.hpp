// The one exception root of the core. Bindings translate each class to the Python exception of the
// same name (python/llmbill/errors.py draws the tree); nothing else crosses the seam.
#pragma once
#include <stdexcept>
#include <string>

namespace llmbill {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A model name that the price table cannot resolve. Never priced as zero.
class UnknownModelError : public Error {
 public:
  using Error::Error;
};

// A price table (bundled or user file) that cannot be loaded or holds an unusable price.
class PriceTableError : public Error {
 public:
  using Error::Error;
};

// A provider reply whose usage cannot be read, or usage counts that contradict each other.
class UsageError : public Error {
 public:
  using Error::Error;
};

// Money arithmetic that would leave the representable range. Raised, never wrapped.
class MoneyOverflowError : public Error {
 public:
  using Error::Error;
};

}  // namespace llmbill
