#include "llmbill/deadletters.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <system_error>
#include <unordered_map>

namespace llmbill {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

[[noreturn]] void throw_io(const std::string& what, const fs::path& path, int e) {
  throw Error("dead letters: " + what + " " + path.string() + ": " + std::generic_category().message(e));
}

class Fd {
 public:
  Fd(const fs::path& path, int flags, const char* what) {
    do {
      fd_ = ::open(path.c_str(), flags | O_CLOEXEC, 0600);  // letters hold whole events: owner only
    } while (fd_ < 0 && errno == EINTR);
    if (fd_ < 0) throw_io(what, path, errno);
  }
  ~Fd() { ::close(fd_); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_ = -1;
};

// Orders writers across processes; the in-process mutex alone cannot see the CLI.
class WriterLock {
 public:
  explicit WriterLock(const fs::path& path) : fd_(path, O_RDWR | O_CREAT, "open") {
    while (::flock(fd_.get(), LOCK_EX) != 0) {
      if (errno != EINTR) throw_io("lock", path, errno);
    }
  }  // closing the descriptor releases the lock

 private:
  Fd fd_;
};

void write_all(int fd, std::string_view data, const fs::path& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_io("write", path, errno);
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

void sync_fd(int fd, const fs::path& path) {
  if (::fsync(fd) != 0) throw_io("fsync", path, errno);
}

void sync_dir(const fs::path& file) {
  fs::path dir = file.parent_path().empty() ? fs::path(".") : file.parent_path();
  Fd fd(dir, O_RDONLY | O_DIRECTORY, "open directory");
  sync_fd(fd.get(), dir);
}

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (!fs::exists(path)) return {};
    throw Error("dead letters: cannot read " + path.string());
  }
  std::ostringstream out;
  out << in.rdbuf();
  return std::move(out).str();
}

std::string to_line(const DeadLetter& d) {
  json j = {{"id", d.id}, {"event_json", d.event_json}, {"reason", d.reason}, {"reply", d.reply}, {"at", d.at_unix}};
  // A reply body may hold invalid UTF-8; store U+FFFD for such bytes rather than refuse the letter.
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

// One stored line, or nothing for a torn or foreign one.
std::optional<DeadLetter> parse_line(std::string_view line) {
  json j = json::parse(line.begin(), line.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  auto id = j.find("id");
  auto ev = j.find("event_json");
  if (id == j.end() || !id->is_string() || ev == j.end() || !ev->is_string()) return std::nullopt;
  DeadLetter d;
  d.id = id->get<std::string>();
  d.event_json = ev->get<std::string>();
  if (auto r = j.find("reason"); r != j.end() && r->is_string()) d.reason = r->get<std::string>();
  if (auto r = j.find("reply"); r != j.end() && r->is_string()) d.reply = r->get<std::string>();
  if (auto a = j.find("at"); a != j.end() && a->is_number()) d.at_unix = a->get<double>();
  return d;
}

// Calls f(line, parsed) for each line of the file, the last one even without its newline.
template <class F>
void for_each_line(std::string_view data, F&& f) {
  while (!data.empty()) {
    std::size_t nl = data.find('\n');
    std::string_view line = data.substr(0, nl);
    data = nl == std::string_view::npos ? std::string_view() : data.substr(nl + 1);
    if (!line.empty()) f(line, parse_line(line));
  }
}

}  // namespace

DeadLetterStore::DeadLetterStore(fs::path file) : file_(std::move(file)), lock_file_(file_.string() + ".lock") {
  if (file_.empty() || file_.filename().empty()) throw Error("dead letters: no file name given");
  if (file_.has_parent_path()) {
    std::error_code ec;
    fs::create_directories(file_.parent_path(), ec);
    if (ec) throw Error("dead letters: cannot create " + file_.parent_path().string() + ": " + ec.message());
  }
}

void DeadLetterStore::add(const DeadLetter& letter, bool sync) {
  std::string line = to_line(letter);
  std::unique_lock lock(mu_);
  WriterLock writer(lock_file_);
  bool existed = fs::exists(file_);
  Fd fd(file_, O_RDWR | O_CREAT | O_APPEND, "open");
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw_io("stat", file_, errno);
  // A file made by an older version (0644): narrow it, letters hold customer ids and amounts.
  if ((st.st_mode & 077) != 0 && ::fchmod(fd.get(), 0600) != 0) throw_io("chmod", file_, errno);
  if (st.st_size > 0) {
    // A torn last line (crash during an earlier add) must not swallow this one: start a new line.
    char last = '\n';
    if (::pread(fd.get(), &last, 1, st.st_size - 1) != 1) throw_io("read", file_, errno);
    if (last != '\n') line.insert(line.begin(), '\n');
  }
  write_all(fd.get(), line, file_);
  if (sync) {
    sync_fd(fd.get(), file_);
  } else {
    unsynced_.store(true, std::memory_order_release);
  }
  if (!existed) sync_dir(file_);  // once per file: its name must survive whatever the policy
}

void DeadLetterStore::sync_written() {
  if (!unsynced_.exchange(false, std::memory_order_acq_rel)) return;
  try {
    std::shared_lock lock(mu_);  // fsync flushes the file whatever descriptor wrote it
    if (!fs::exists(file_)) return;  // removed by an operator: nothing left to make durable
    Fd fd(file_, O_RDONLY, "open");
    sync_fd(fd.get(), file_);
  } catch (...) {
    unsynced_.store(true, std::memory_order_release);  // tried again at the next call
    throw;
  }
}

std::vector<DeadLetter> DeadLetterStore::load() const {
  std::string data = read_all(file_);
  std::vector<DeadLetter> out;
  std::unordered_map<std::string, std::size_t> index;
  for_each_line(data, [&](std::string_view, std::optional<DeadLetter> d) {
    if (!d) return;
    auto [it, inserted] = index.try_emplace(d->id, out.size());
    if (inserted) {
      out.push_back(std::move(*d));
    } else {
      out[it->second] = std::move(*d);  // the newest entry wins, in the first one's place
    }
  });
  return out;
}

std::vector<DeadLetter> DeadLetterStore::list() const {
  std::shared_lock lock(mu_);
  return load();
}

std::optional<DeadLetter> DeadLetterStore::get(std::string_view id) const {
  std::shared_lock lock(mu_);
  for (DeadLetter& d : load()) {
    if (d.id == id) return std::move(d);
  }
  return std::nullopt;
}

bool DeadLetterStore::remove(std::string_view id, std::optional<double> added_up_to) {
  std::unique_lock lock(mu_);
  WriterLock writer(lock_file_);
  std::string data = read_all(file_);
  std::string kept;
  kept.reserve(data.size());
  bool found = false;
  for_each_line(data, [&](std::string_view line, const std::optional<DeadLetter>& d) {
    if (!d) return;  // torn or unreadable: dropped by the rewrite
    if (d->id == id && (!added_up_to || d->at_unix <= *added_up_to)) {
      found = true;
    } else {
      kept.append(line);
      kept.push_back('\n');
    }
  });
  if (!found) return false;
  fs::path tmp = file_.string() + ".tmp";  // one writer at a time (flock), so a fixed name is safe
  {
    Fd fd(tmp, O_WRONLY | O_CREAT | O_TRUNC, "create");
    write_all(fd.get(), kept, tmp);
    sync_fd(fd.get(), tmp);
  }
  if (::rename(tmp.c_str(), file_.c_str()) != 0) throw_io("rename onto", file_, errno);
  sync_dir(file_);
  return true;
}

std::uint64_t DeadLetterStore::count() const {
  std::shared_lock lock(mu_);
  return load().size();
}

std::optional<double> DeadLetterStore::oldest_at() const {
  std::shared_lock lock(mu_);
  std::optional<double> oldest;
  for (const DeadLetter& d : load()) {
    if (!oldest || d.at_unix < *oldest) oldest = d.at_unix;
  }
  return oldest;
}

}  // namespace llmbill
