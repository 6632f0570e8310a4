// Hosts as Linux network namespaces, for tests that must cross real links: a topology of
// one "switch" namespace holding a Linux bridge and N host namespaces, each joined to the
// bridge by a veth pair, with its own address on 10.77.0.0/24 (host i is 10.77.0.i):
//
//      host 1 (eth0 10.77.0.1)   host 2 (eth0 10.77.0.2)   ...   host N
//            |  veth                  |  veth                      |
//           p1 ---------------------- p2 ------- br0 ------------- pN      (the switch)
//
// Every namespace is named custody-<pid>-<topology>-<role>, so parallel runs (ctest -j)
// and leftovers of a killed run never collide; addresses need no such care, since each
// topology has its own switch and the hosts' addresses are visible only inside it. A
// topology deletes its namespaces when it goes out of scope (also when a test fails);
// a run killed before that leaves names whose pid is dead, and the next topology deletes
// them (`sweep_stale`). A host's processes start with `ip netns exec`, which execs the
// program (no intermediate process), so a Process's pid is the node's own.
//
// LinkCapture records a switch port the way a wiretap would: an AF_PACKET socket opened
// inside the switch namespace by a thread of its own (setns(2) changes only the calling
// thread's namespace), both directions, whole frames. It reassembles the TCP streams it
// saw (and keeps UDP datagrams) and searches them for byte strings (weights, tokens,
// keys), and writes a pcap file for a person to open in Wireshark.
//
// Requires root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2; `why_unavailable()` says
// what is missing, for a GTEST_SKIP. Not thread-safe: one test thread drives a topology;
// a LinkCapture's own thread touches only its packet list, under its mutex.
#pragma once

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstring>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "tests/integration/cluster.h"

namespace custody::testing {

inline const char* kIp = "/usr/sbin/ip";
inline const char* kNetnsDir = "/var/run/netns";

inline std::string joined(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) s += (s.empty() ? "" : " ") + a;
  return s;
}

class NetnsTopology {
 public:
  struct Host {
    std::string name;  // the test's name for it: "coordinator", "ps-1", "intruder"
    std::string ns;    // its namespace
    std::string ip;    // 10.77.0.i
    std::string port;  // its veth's peer on the switch: p<i>
  };

  // Empty if this process can create namespaces and veth pairs; otherwise why not, for a
  // skip message. Tried once per process, on a namespace of its own.
  static const std::string& why_unavailable() {
    static const std::string reason = []() -> std::string {
      if (geteuid() != 0)
        return "creating network namespaces needs root (CAP_SYS_ADMIN); CI runs this test as root";
      if (access(kIp, X_OK) != 0) return std::string(kIp) + " (iproute2) is not installed";
      const fs::path dir = fs::temp_directory_path();
      const std::string a = "custody-" + std::to_string(getpid()) + "-probe-a";
      const std::string b = "custody-" + std::to_string(getpid()) + "-probe-b";
      std::string why;
      for (const auto& argv : std::vector<std::vector<std::string>>{
               {kIp, "netns", "add", a},
               {kIp, "netns", "add", b},
               {kIp, "-n", a, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", b},
               {kIp, "-n", a, "link", "add", "br0", "type", "bridge"}}) {
        CliResult r = run_argv(dir, argv);
        if (r.code != 0) {
          while (!r.err.empty() && std::isspace(static_cast<unsigned char>(r.err.back()))) r.err.pop_back();
          why = "cannot create network namespaces here (`" + joined(argv) + "`: " + r.err + ")";
          break;
        }
      }
      run_argv(dir, {kIp, "netns", "del", a});
      run_argv(dir, {kIp, "netns", "del", b});
      return why;
    }();
    return reason;
  }

  // Namespaces of earlier runs whose test process is gone (a run killed by a timeout
  // cannot clean up after itself), with the nodes that run killed left running in them:
  // only such a run starts processes in a namespace of that name.
  static void sweep_stale(const fs::path& dir) {
    DIR* d = opendir(kNetnsDir);
    if (!d) return;
    std::vector<std::string> stale;
    while (dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (name.rfind("custody-", 0) != 0) continue;
      const pid_t pid = static_cast<pid_t>(std::atol(name.c_str() + 8));
      if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH) stale.push_back(name);
    }
    closedir(d);
    for (const auto& name : stale) {
      std::istringstream pids(run_argv(dir, {kIp, "netns", "pids", name}).out);
      for (pid_t pid; pids >> pid;) kill(pid, SIGKILL);
      run_argv(dir, {kIp, "netns", "del", name});
    }
  }

  // Creates the switch and one host per name, in order (the first is 10.77.0.1). `dir`
  // keeps the ip commands' outputs. Check ok() before use; what failed is a test failure.
  NetnsTopology(const fs::path& dir, const std::vector<std::string>& host_names) : dir_(dir) {
    static int topologies = 0;
    prefix_ = "custody-" + std::to_string(getpid()) + "-" + std::to_string(++topologies) + "-";
    sweep_stale(dir_);
    switch_ns_ = prefix_ + "switch";
    ok_ = add_namespace(switch_ns_) && ip({"-n", switch_ns_, "link", "add", "br0", "type", "bridge"}) &&
          ip({"-n", switch_ns_, "link", "set", "br0", "up"});
    for (size_t i = 0; ok_ && i < host_names.size(); ++i) {
      Host h{host_names[i], prefix_ + host_names[i], "10.77.0." + std::to_string(i + 1),
             "p" + std::to_string(i + 1)};
      ok_ = add_namespace(h.ns) && ip({"-n", h.ns, "link", "set", "lo", "up"}) &&
            ip({"-n", h.ns, "link", "add", "eth0", "type", "veth", "peer", "name", h.port, "netns",
                switch_ns_}) &&
            ip({"-n", switch_ns_, "link", "set", h.port, "master", "br0"}) &&
            ip({"-n", switch_ns_, "link", "set", h.port, "up"}) &&
            ip({"-n", h.ns, "addr", "add", h.ip + "/24", "dev", "eth0"}) &&
            ip({"-n", h.ns, "link", "set", "eth0", "up"});
      hosts_.push_back(h);
    }
  }
  ~NetnsTopology() {
    for (auto it = namespaces_.rbegin(); it != namespaces_.rend(); ++it)
      run_argv(dir_, {kIp, "netns", "del", *it});
  }
  NetnsTopology(const NetnsTopology&) = delete;
  NetnsTopology& operator=(const NetnsTopology&) = delete;

  bool ok() const { return ok_; }
  const std::string& switch_namespace() const { return switch_ns_; }
  const std::vector<Host>& hosts() const { return hosts_; }
  const Host& host(const std::string& name) const {
    for (const auto& h : hosts_) {
      if (h.name == name) return h;
    }
    ADD_FAILURE() << "no host named " << name << " in the topology";
    static const Host none;
    return none;
  }

  // argv (argv[0] a path) as a command run on `host`.
  std::vector<std::string> on(const std::string& host, std::vector<std::string> argv) const {
    argv.insert(argv.begin(), {kIp, "netns", "exec", this->host(host).ns});
    return argv;
  }

  // Unplugs (or plugs back) the host's cable at the switch: its port goes down, and the
  // host's eth0 loses carrier. Packets already in flight on it are lost.
  bool link_down(const std::string& host) {
    return ip({"-n", switch_ns_, "link", "set", this->host(host).port, "down"});
  }
  bool link_up(const std::string& host) {
    return ip({"-n", switch_ns_, "link", "set", this->host(host).port, "up"});
  }

 private:
  bool add_namespace(const std::string& ns) {
    if (!ip({"netns", "add", ns})) return false;
    namespaces_.push_back(ns);
    return true;
  }
  bool ip(std::vector<std::string> args) {
    args.insert(args.begin(), kIp);
    CliResult r = run_argv(dir_, args);
    EXPECT_EQ(r.code, 0) << joined(args) << ": " << r.err;
    return r.code == 0;
  }

  fs::path dir_;
  std::string prefix_, switch_ns_;
  std::vector<std::string> namespaces_;  // created, to delete
  std::vector<Host> hosts_;
  bool ok_ = false;
};

// Where a byte string was found in a capture.
struct CaptureHit {
  std::string what;   // the needle's label, e.g. "weights[40..48)" or "node token"
  std::string flow;   // "10.77.0.4:41234 -> 10.77.0.2:6000"
  size_t offset = 0;  // in that flow's reassembled bytes
};

class LinkCapture {
 public:
  // Starts recording the switch port of `host`; returns once the socket is bound, so
  // everything sent after the constructor is seen.
  LinkCapture(const NetnsTopology& topology, const std::string& host) : label_(host) {
    const std::string ns = topology.switch_namespace(), port = topology.host(host).port;
    std::promise<std::string> bound;
    std::future<std::string> result = bound.get_future();
    thread_ = std::thread([this, ns, port, b = std::move(bound)]() mutable { run(ns, port, b); });
    error_ = result.get();
    EXPECT_TRUE(error_.empty()) << "capture of " << host << "'s link: " << error_;
  }
  ~LinkCapture() { stop(); }
  LinkCapture(const LinkCapture&) = delete;
  LinkCapture& operator=(const LinkCapture&) = delete;

  // Stops recording (idempotent). What the kernel dropped for lack of buffer space is
  // counted in drops(); a search over a capture with drops proves less.
  void stop() {
    stopping_ = true;
    if (thread_.joinable()) thread_.join();
  }
  bool ok() const { return error_.empty(); }
  size_t packets() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return packets_.size();
  }
  uint64_t drops() const { return drops_; }
  uint64_t truncated() const { return truncated_; }

  // The payloads seen, by flow ("10.77.0.3:41234 -> 10.77.0.2:6000"): each TCP
  // direction's bytes in sequence order (retransmissions once; a gap in sequence numbers
  // starts a new piece, so no match spans bytes that were not adjacent), and each UDP
  // datagram as a piece of its own (flow "... (udp)").
  std::map<std::string, std::vector<std::string>> streams() const {
    struct Segment {
      int64_t rel;
      std::string data;
    };
    std::map<std::string, std::pair<uint32_t, std::vector<Segment>>> flows;
    std::map<std::string, std::vector<std::string>> datagrams;
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& p : packets_) {
      const auto* b = reinterpret_cast<const uint8_t*>(p.data.data());
      size_t n = p.data.size();
      if (n < sizeof(ether_header) + sizeof(iphdr)) continue;
      ether_header eth;
      std::memcpy(&eth, b, sizeof eth);
      if (ntohs(eth.ether_type) != ETHERTYPE_IP) continue;
      b += sizeof eth;
      n -= sizeof eth;
      iphdr ip;
      std::memcpy(&ip, b, sizeof ip);
      if (ip.protocol != IPPROTO_TCP && ip.protocol != IPPROTO_UDP) continue;
      const size_t ip_len = ntohs(ip.tot_len);
      if (ip_len != 0 && ip_len < n) n = ip_len;  // Ethernet padding; 0 in a GSO packet over 64 KiB
      const size_t ihl = ip.ihl * 4u;
      char src[INET_ADDRSTRLEN], dst[INET_ADDRSTRLEN];
      inet_ntop(AF_INET, &ip.saddr, src, sizeof src);
      inet_ntop(AF_INET, &ip.daddr, dst, sizeof dst);
      if (ip.protocol == IPPROTO_UDP) {
        if (n < ihl + sizeof(udphdr)) continue;
        udphdr udp;
        std::memcpy(&udp, b + ihl, sizeof udp);
        datagrams[std::string(src) + ":" + std::to_string(ntohs(udp.source)) + " -> " + dst + ":" +
                  std::to_string(ntohs(udp.dest)) + " (udp)"]
            .emplace_back(reinterpret_cast<const char*>(b + ihl + sizeof udp), n - ihl - sizeof udp);
        continue;
      }
      if (n < ihl + sizeof(tcphdr)) continue;
      tcphdr tcp;
      std::memcpy(&tcp, b + ihl, sizeof tcp);
      const size_t doff = tcp.doff * 4u;
      if (n < ihl + doff) continue;
      const std::string flow = std::string(src) + ":" + std::to_string(ntohs(tcp.source)) + " -> " + dst +
                               ":" + std::to_string(ntohs(tcp.dest));
      const uint32_t seq = ntohl(tcp.seq);
      auto [it, fresh] = flows.try_emplace(flow);
      if (fresh) it->second.first = seq;
      if (n == ihl + doff) continue;
      // Relative to the first segment seen: a wrap of the 32-bit sequence stays ordered.
      const int64_t rel = static_cast<int32_t>(seq - it->second.first);
      it->second.second.push_back(
          {rel, std::string(reinterpret_cast<const char*>(b + ihl + doff), n - ihl - doff)});
    }
    std::map<std::string, std::vector<std::string>> streams = std::move(datagrams);
    for (auto& [flow, f] : flows) {
      auto& segs = f.second;
      std::stable_sort(segs.begin(), segs.end(),
                       [](const Segment& x, const Segment& y) { return x.rel < y.rel; });
      std::vector<std::string>& pieces = streams[flow];
      int64_t end = 0;  // of the bytes in pieces.back()
      for (const auto& s : segs) {
        const int64_t s_end = s.rel + static_cast<int64_t>(s.data.size());
        if (!pieces.empty() && s_end <= end) continue;  // a retransmission of bytes we have
        if (pieces.empty() || s.rel > end) {            // the first, or after a gap: bytes we never saw
          pieces.emplace_back();
          end = s.rel;
        }
        pieces.back() += s.data.substr(static_cast<size_t>(end - s.rel));
        end = s_end;
      }
    }
    return streams;
  }

  uint64_t payload_bytes() const {
    uint64_t n = 0;
    for (const auto& [flow, pieces] : streams()) {
      for (const auto& p : pieces) n += p.size();
    }
    return n;
  }

  // Every place where one of the needles (label, bytes; each at least 8 bytes) occurs in
  // the reassembled streams, at most `limit` of them.
  std::vector<CaptureHit> find(const std::vector<std::pair<std::string, std::string>>& needles,
                               size_t limit = 20) const {
    std::unordered_multimap<uint64_t, size_t> by_prefix;  // first 8 bytes -> needle
    for (size_t i = 0; i < needles.size(); ++i) {
      if (needles[i].second.size() < 8) {
        ADD_FAILURE() << "needle " << needles[i].first << " is shorter than 8 bytes";
        continue;
      }
      uint64_t k;
      std::memcpy(&k, needles[i].second.data(), 8);
      by_prefix.emplace(k, i);
    }
    std::vector<CaptureHit> hits;
    for (const auto& [flow, pieces] : streams()) {
      size_t base = 0;
      for (const auto& piece : pieces) {
        for (size_t at = 0; at + 8 <= piece.size(); ++at) {
          uint64_t k;
          std::memcpy(&k, piece.data() + at, 8);
          auto [lo, hi] = by_prefix.equal_range(k);
          for (auto it = lo; it != hi; ++it) {
            const std::string& needle = needles[it->second].second;
            if (piece.compare(at, needle.size(), needle) != 0) continue;
            hits.push_back({needles[it->second].first, flow, base + at});
            if (hits.size() >= limit) return hits;
          }
        }
        base += piece.size();
      }
    }
    return hits;
  }

  // The frames in pcap format (Ethernet link type), for Wireshark or tcpdump -r.
  void write_pcap(const fs::path& path) const {
    std::ofstream out(path, std::ios::binary);
    auto put32 = [&](uint32_t v) { out.write(reinterpret_cast<const char*>(&v), 4); };
    auto put16 = [&](uint16_t v) { out.write(reinterpret_cast<const char*>(&v), 2); };
    put32(0xa1b2c3d4);
    put16(2);
    put16(4);
    put32(0);
    put32(0);
    put32(262144);
    put32(1);  // LINKTYPE_ETHERNET
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& p : packets_) {
      put32(static_cast<uint32_t>(p.us / 1000000));
      put32(static_cast<uint32_t>(p.us % 1000000));
      put32(static_cast<uint32_t>(p.data.size()));
      put32(static_cast<uint32_t>(p.data.size()));
      out.write(p.data.data(), static_cast<std::streamsize>(p.data.size()));
    }
  }

 private:
  struct Packet {
    int64_t us;
    std::string data;
  };

  // The capture thread: enters the switch namespace, binds to the port, then reads until
  // stop(). `bound` gets "" once bound, or why it could not.
  void run(const std::string& ns, const std::string& port, std::promise<std::string>& bound) {
    const int ns_fd = open((std::string(kNetnsDir) + "/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (ns_fd < 0 || setns(ns_fd, CLONE_NEWNET) != 0) {
      bound.set_value("cannot enter namespace " + ns + ": " + std::strerror(errno));
      if (ns_fd >= 0) close(ns_fd);
      return;
    }
    close(ns_fd);
    const int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    const int buffer = 32 << 20;
    sockaddr_ll where{};
    where.sll_family = AF_PACKET;
    where.sll_protocol = htons(ETH_P_ALL);
    where.sll_ifindex = static_cast<int>(if_nametoindex(port.c_str()));
    if (fd < 0 || where.sll_ifindex == 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buffer, sizeof buffer) != 0 ||
        bind(fd, reinterpret_cast<sockaddr*>(&where), sizeof where) != 0) {
      bound.set_value("cannot capture on " + port + " in " + ns + ": " + std::strerror(errno));
      if (fd >= 0) close(fd);
      return;
    }
    bound.set_value("");
    std::vector<char> frame(1 << 18);
    while (!stopping_) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      const ssize_t n = recv(fd, frame.data(), frame.size(), MSG_TRUNC | MSG_DONTWAIT);
      if (n <= 0) continue;
      if (static_cast<size_t>(n) > frame.size()) ++truncated_;
      const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
      std::lock_guard<std::mutex> lock(mutex_);
      packets_.push_back({us, std::string(frame.data(), std::min(static_cast<size_t>(n), frame.size()))});
    }
    tpacket_stats stats{};
    socklen_t len = sizeof stats;
    if (getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &stats, &len) == 0) drops_ = stats.tp_drops;
    close(fd);
  }

  std::string label_, error_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> drops_{0}, truncated_{0};
  mutable std::mutex mutex_;
  std::vector<Packet> packets_;
};

// The needles a capture must not hold: every window of `window` consecutive float32
// values of `weights` (little-endian, as on the wire and in `custody export`'s file),
// labelled by their index range. Windows with a zero or a repeated value are left out:
// zero-filled or constant bytes would match by accident, and prove nothing.
inline std::vector<std::pair<std::string, std::string>> weight_windows(const std::vector<float>& weights,
                                                                       size_t window = 8) {
  std::vector<std::pair<std::string, std::string>> needles;
  for (size_t i = 0; i + window <= weights.size(); ++i) {
    std::vector<float> w(weights.begin() + static_cast<std::ptrdiff_t>(i),
                         weights.begin() + static_cast<std::ptrdiff_t>(i + window));
    if (std::find(w.begin(), w.end(), 0.0f) != w.end()) continue;
    std::vector<float> sorted = w;
    std::sort(sorted.begin(), sorted.end());
    if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) continue;
    needles.emplace_back("weights[" + std::to_string(i) + ".." + std::to_string(i + window) + ")",
                         std::string(reinterpret_cast<const char*>(w.data()), window * sizeof(float)));
  }
  return needles;
}

// A secret as it may travel: the text as stored in its file (without trailing
// whitespace), and, if that text is hex, Z85 (CurveZMQ's printable keys) or PEM, the
// bytes it encodes (for PEM, the DER and its last 32 bytes, where OpenSSL puts an
// Ed25519 or X25519 private key).
inline std::vector<std::pair<std::string, std::string>> secret_forms(const std::string& label,
                                                                     std::string text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  std::vector<std::pair<std::string, std::string>> forms;
  if (text.size() < 8) return forms;
  forms.emplace_back(label, text);
  if (text.rfind("-----BEGIN", 0) == 0) {
    static const std::string kBase64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const size_t body = text.find('\n'), end = text.find("-----END");
    std::string der;
    uint32_t bits = 0;
    int nbits = 0;
    for (size_t i = body; body != std::string::npos && end != std::string::npos && i < end; ++i) {
      const size_t v = kBase64.find(text[i]);
      if (v == std::string::npos) continue;  // newlines, padding
      bits = (bits << 6) | static_cast<uint32_t>(v);
      nbits += 6;
      if (nbits >= 8) {
        nbits -= 8;
        der += static_cast<char>((bits >> nbits) & 0xff);
      }
    }
    if (der.size() >= 32) {
      forms.emplace_back(label + " (PEM's DER)", der);
      forms.emplace_back(label + " (PEM's last 32 bytes)", der.substr(der.size() - 32));
    }
    return forms;
  }
  const bool hex = text.size() % 2 == 0 && std::all_of(text.begin(), text.end(), [](char ch) {
                     return std::isxdigit(static_cast<unsigned char>(ch));
                   });
  if (hex) {
    std::string bytes;
    for (size_t i = 0; i < text.size(); i += 2)
      bytes += static_cast<char>(std::stoi(text.substr(i, 2), nullptr, 16));
    if (bytes.size() >= 8) forms.emplace_back(label + " (hex-decoded)", bytes);
  }
  static const std::string kZ85 =
      "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
  const bool z85 = text.size() % 5 == 0 && std::all_of(text.begin(), text.end(), [](char ch) {
                     return kZ85.find(ch) != std::string::npos;
                   });
  if (z85 && !hex) {
    std::string bytes;
    for (size_t i = 0; i < text.size(); i += 5) {
      uint64_t v = 0;
      for (size_t j = 0; j < 5; ++j) v = v * 85 + kZ85.find(text[i + j]);
      for (int s = 24; s >= 0; s -= 8) bytes += static_cast<char>((v >> s) & 0xff);
    }
    forms.emplace_back(label + " (Z85-decoded)", bytes);
  }
  return forms;
}

}  // namespace custody::testing
