// Where batches of Lago events go: Lago over HTTP (libcurl, one reused keep-alive connection), or a
// local JSON-lines file when no Lago is configured. The sender thread owns its transport; nothing here
// is shared between threads except interrupt().
#pragma once
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "llmbill/sender.hpp"

namespace llmbill {

class Transport {
 public:
  virtual ~Transport() = default;
  // Sends one batch; never throws for network or HTTP failures (they come back in the reply).
  virtual HttpReply send(const std::vector<const std::string*>& events) = 0;
  // Makes a send in progress return promptly (from another thread), for a bounded shutdown. Final:
  // every later send returns at once too (status 0), so an interrupt that lands just before a send
  // starts is not lost.
  virtual void interrupt() {}
  virtual std::string describe() const = 0;
};

// POST {api_base}/api/v1/events/batch with `Authorization: Bearer {api_key}`.
std::unique_ptr<Transport> make_lago_transport(const std::string& api_base, const std::string& api_key,
                                               std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Appends each event as one line to `path` (mode 0600, fsync per batch) and answers 200 only once the
// fsync succeeded (else status 0, and the partial batch is cut off). At-least-once: after a
// crash a line may repeat; its transaction_id tells the copies apart.
std::unique_ptr<Transport> make_file_transport(const std::filesystem::path& path);

}  // namespace llmbill
