#include "llmbill/transport.hpp"

#include <curl/curl.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "llmbill/errors.hpp"

namespace llmbill {
namespace {

void global_curl_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

class LagoTransport final : public Transport {
 public:
  LagoTransport(const std::string& api_base, const std::string& api_key, std::chrono::milliseconds timeout)
      : url_(lago_batch_url(api_base)), timeout_(timeout) {
    global_curl_init();
    curl_ = curl_easy_init();
    if (curl_ == nullptr) throw Error("libcurl: cannot create a handle");
    headers_ = curl_slist_append(headers_, "Content-Type: application/json");
    headers_ = curl_slist_append(headers_, "Accept: application/json");
    headers_ = curl_slist_append(headers_, ("Authorization: Bearer " + api_key).c_str());
    headers_ = curl_slist_append(headers_, "Expect:");  // no 100-continue round trip
  }
  ~LagoTransport() override {
    curl_easy_cleanup(curl_);
    curl_slist_free_all(headers_);
  }

  HttpReply send(const std::vector<const std::string*>& events) override {
    HttpReply reply;
    // interrupt() is final (the pipeline calls it only to stop): a send that starts after it returns
    // at once. Resetting the flag here lost an interrupt that landed just before a send, and close()
    // then waited out the whole timeout.
    if (interrupted_.load()) {
      reply.transport_error = "interrupted (the pipeline is closing)";
      return reply;
    }
    std::string body = batch_body(events);
    // The same easy handle every time: libcurl keeps the connection alive between batches.
    curl_easy_setopt(curl_, CURLOPT_URL, url_.c_str());
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers_);
    curl_easy_setopt(curl_, CURLOPT_POST, 1L);
    curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_.count()));
    curl_easy_setopt(curl_, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(std::min<long long>(timeout_.count(), 5000)));
    curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl_, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &LagoTransport::on_body);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &reply);
    curl_easy_setopt(curl_, CURLOPT_HEADERFUNCTION, &LagoTransport::on_header);
    curl_easy_setopt(curl_, CURLOPT_HEADERDATA, &reply);
    curl_easy_setopt(curl_, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl_, CURLOPT_XFERINFOFUNCTION, &LagoTransport::on_progress);
    curl_easy_setopt(curl_, CURLOPT_XFERINFODATA, this);
    CURLcode rc = curl_easy_perform(curl_);
    if (rc != CURLE_OK) {
      reply.status = 0;
      reply.transport_error = curl_easy_strerror(rc);
      reply.body.clear();
      return reply;
    }
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &reply.status);
    return reply;
  }

  void interrupt() override { interrupted_ = true; }
  std::string describe() const override { return "lago " + redact_url_password(url_); }

 private:
  static size_t on_body(char* data, size_t size, size_t count, void* user) {
    auto* reply = static_cast<HttpReply*>(user);
    reply->body.append(data, size * count);
    return size * count;
  }
  static size_t on_header(char* data, size_t size, size_t count, void* user) {
    auto* reply = static_cast<HttpReply*>(user);
    std::string line(data, size * count);
    if (line.rfind("HTTP/", 0) == 0) reply->headers.clear();  // a new response (after redirects)
    auto colon = line.find(':');
    if (colon != std::string::npos) {
      std::string name = line.substr(0, colon);
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
      std::string value = line.substr(colon + 1);
      auto first = value.find_first_not_of(" \t");
      auto last = value.find_last_not_of(" \t\r\n");
      reply->headers[name] = first == std::string::npos ? "" : value.substr(first, last - first + 1);
    }
    return size * count;
  }
  static int on_progress(void* self, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    return static_cast<LagoTransport*>(self)->interrupted_.load() ? 1 : 0;  // non-zero aborts
  }

  std::string url_;
  std::chrono::milliseconds timeout_;
  CURL* curl_ = nullptr;
  curl_slist* headers_ = nullptr;
  std::atomic<bool> interrupted_{false};
};

class FileTransport final : public Transport {
 public:
  explicit FileTransport(std::filesystem::path path) : path_(std::move(path)) {
    if (path_.has_parent_path()) std::filesystem::create_directories(path_.parent_path());
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);  // billing data: owner only
    if (fd_ < 0) throw Error("cannot open billing sink " + path_.string() + ": " + std::strerror(errno));
  }
  ~FileTransport() override { ::close(fd_); }

  HttpReply send(const std::vector<const std::string*>& events) override {
    std::string lines;
    for (const auto* e : events) lines += *e + "\n";
    HttpReply reply;
    const off_t before = ::lseek(fd_, 0, SEEK_END);
    std::size_t done = 0;
    while (done < lines.size()) {
      ssize_t n = ::write(fd_, lines.data() + done, lines.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return failed("write", before);
      done += static_cast<std::size_t>(n);
    }
    // The events are acknowledged (and leave the spool) on a 200: only once they are on disk here.
    while (::fsync(fd_) != 0) {
      if (errno != EINTR) return failed("fsync", before);
    }
    reply.status = 200;
    return reply;
  }
  std::string describe() const override { return "file " + path_.string(); }

 private:
  // Status 0 (retried like a network error). The partial batch is cut off so that the resend does not
  // leave a torn line in the sink (if the cut fails too, the error says so).
  HttpReply failed(const char* what, off_t before) {
    HttpReply reply;
    reply.transport_error = std::string(what) + " " + path_.string() + ": " + std::strerror(errno);
    if (before >= 0 && ::ftruncate(fd_, before) != 0) reply.transport_error += " (partial batch left)";
    return reply;
  }

  std::filesystem::path path_;
  int fd_ = -1;
};

}  // namespace

std::unique_ptr<Transport> make_lago_transport(const std::string& api_base, const std::string& api_key,
                                               std::chrono::milliseconds timeout) {
  return std::make_unique<LagoTransport>(api_base, api_key, timeout);
}

std::unique_ptr<Transport> make_file_transport(const std::filesystem::path& path) {
  return std::make_unique<FileTransport>(path);
}

}  // namespace llmbill
