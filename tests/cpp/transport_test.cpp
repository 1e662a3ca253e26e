#include "llmbill/transport.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "temp_dir.hpp"

using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// A TCP listener that never answers: the kernel completes the connection, nobody reads or replies,
// so a send to it lasts until its timeout unless interrupted.
class SilentServer {
 public:
  SilentServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd_, 8) != 0) {
      throw std::runtime_error("cannot listen");
    }
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~SilentServer() { ::close(fd_); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int accept_one() { return ::accept(fd_, nullptr, nullptr); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

const std::string kEvent = R"({"transaction_id":"t1","code":"tokens"})";

}  // namespace

TEST(LagoTransport, AnInterruptThatLandsBeforeASendIsNotLost) {
  SilentServer server;
  auto transport = llmbill::make_lago_transport(server.url(), "key", 5s);
  transport->interrupt();  // close() ran while the sender was between taking a batch and sending it
  auto start = std::chrono::steady_clock::now();
  llmbill::HttpReply reply = transport->send({&kEvent});
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);  // not the 5 s timeout
  EXPECT_EQ(reply.status, 0);
  EXPECT_FALSE(reply.transport_error.empty());
}

TEST(LagoTransport, AnInterruptEndsASendInProgress) {
  SilentServer server;
  auto transport = llmbill::make_lago_transport(server.url(), "key", 20s);
  llmbill::HttpReply reply;
  auto start = std::chrono::steady_clock::now();
  std::thread sender([&] { reply = transport->send({&kEvent}); });
  int conn = server.accept_one();  // the request is on its way and will get no answer
  transport->interrupt();
  sender.join();
  ::close(conn);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_EQ(reply.status, 0);
}

TEST(FileTransport, WritesOneLinePerEventForTheOwnerOnly) {
  llmbill::testing::TempDir dir;
  fs::path sink = dir.path() / "events.jsonl";
  auto transport = llmbill::make_file_transport(sink);
  const std::string second = R"({"transaction_id":"t2"})";
  EXPECT_EQ(transport->send({&kEvent, &second}).status, 200);
  std::ifstream in(sink);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(), kEvent + "\n" + second + "\n");
  EXPECT_EQ(static_cast<unsigned>(fs::status(sink).permissions() & fs::perms::all), 0600u);
}
