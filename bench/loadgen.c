/*
 * loadgen.c - a closed-loop load generator for TCP echo servers.
 *
 *   loadgen -p PORT [-H HOST] [-c CONNS] [-s SIZE] [-d SECONDS] [-w SECONDS]
 *           [-n REQUESTS] [-r] [-S SEED]
 *
 * Each of CONNS connections runs the same loop: send a message of SIZE bytes,
 * read back exactly SIZE bytes, compare every byte with what was sent, record
 * the round-trip time, send the next message.  "Closed loop": one message is
 * in flight per connection, so the request rate is what the server sustains
 * at that concurrency, not a rate imposed from outside.
 *
 * One thread drives every connection with edge-triggered epoll.  A message is
 * written and read back concurrently (whatever the socket allows at each
 * event), so a message larger than the socket buffers cannot deadlock client
 * and server: the client keeps reading while it still has bytes to write.
 *
 * The payload.  At start the program fills one buffer ("the pattern") with
 * SIZE + WINDOWS - 1 pseudo-random bytes.  Each request of each connection
 * sends the SIZE bytes that start at an offset drawn from that connection's
 * own random generator, never the same offset twice in a row.  So messages
 * differ from one request to the next and from one connection to another,
 * and an echo that is stale (the previous message), misordered, duplicated,
 * truncated or taken from another connection is caught by the byte-by-byte
 * comparison.  Sending straight from the pattern and comparing with memcmp
 * keeps the client cheap even at gigabytes per second.
 *
 * The measurement.  The first -w seconds are a warm-up: nothing is recorded
 * but errors and mismatches.  Then for -d seconds every completed request adds
 * its latency (CLOCK_MONOTONIC, nanoseconds, from the first byte written to
 * the last byte read) to a log-linear histogram, and every byte moved is
 * counted.  With -n the window ends instead after REQUESTS requests (or
 * after -d seconds, whichever comes first): a fixed amount of work, for
 * harnesses that time it (the pytest-benchmark suite does).  Mismatches and errors are counted over the whole run.
 *
 * Output on stdout: one human-readable line, then one line of JSON (always the
 * last line).  The first few errors are described on stderr.
 * Exit status: 0 ok; 1 some echoed byte differed from what was sent; 2 bad
 * usage or a local failure; 3 no connection could ever be established.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Number of distinct start offsets a message can have in the pattern. */
#define WINDOWS 65536u
/* Size of the buffer echoed bytes are read into before they are compared. */
#define SCRATCH_SIZE (256u * 1024u)
/* Largest message accepted: the pattern must fit in memory. */
#define MAX_SIZE (1024ull * 1024u * 1024u)
/* Events taken from epoll per call. */
#define MAX_EVENTS 256
/* Delay before a closed connection is opened again (with -r). */
#define RETRY_NS 10000000ull
/* Longest sleep in epoll_wait, so that deadlines and signals are noticed. */
#define MAX_WAIT_MS 100
/* How many errors are described on stderr; later ones are only counted. */
#define MAX_ERROR_LOGS 5

#define NS_PER_S 1000000000ull

/* ------------------------------------------------------------------------ */
/* Time and random numbers                                                  */
/* ------------------------------------------------------------------------ */

/* The monotonic clock in nanoseconds (a vDSO call, no system call). */
static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* splitmix64: a small, fast generator with good statistical quality.  It
 * only has to make payloads unpredictable to a misbehaving server, it is not
 * meant for cryptography. */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ------------------------------------------------------------------------ */
/* Latency histogram                                                        */
/* ------------------------------------------------------------------------ */

/*
 * Log-linear buckets in the manner of HdrHistogram.  Values below 128 ns have
 * a bucket each.  Above, each power of two [2^k, 2^(k+1)) is split into 64
 * equal buckets, so a bucket is at most 1/64 of its value wide, and reporting
 * its middle is off by at most 0.8%.  Index of value v >= 128: with
 * shift = msb(v) - 6 (so that v >> shift lies in [64, 128)), the index is
 * 64 * shift + (v >> shift); this continues the linear range without a gap.
 * The largest uint64_t has shift 57 and index 64 * 57 + 127, hence 64 * 59
 * buckets.
 */
#define HIST_LINEAR 128u
#define HIST_SUB 64u
#define HIST_BUCKETS (HIST_SUB * 59u)

struct hist {
    uint64_t count[HIST_BUCKETS]; /* number of values seen per bucket */
    uint64_t n;                   /* number of values recorded */
    uint64_t sum;                 /* their sum, for the mean */
    uint64_t min, max;            /* exact extremes */
};

static unsigned hist_index(uint64_t v)
{
    if (v < HIST_LINEAR)
        return (unsigned)v;
    unsigned shift = (unsigned)(63 - __builtin_clzll(v)) - 6u;
    return HIST_SUB * shift + (unsigned)(v >> shift);
}

/* The middle of the range of values that fall into bucket i. */
static double hist_bucket_value(unsigned i)
{
    if (i < HIST_LINEAR)
        return (double)i;
    unsigned shift = i / HIST_SUB - 1u;
    uint64_t low = (uint64_t)(i - HIST_SUB * shift) << shift;
    return (double)low + (double)((1ull << shift) - 1u) / 2.0;
}

static void hist_reset(struct hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

static void hist_record(struct hist *h, uint64_t v)
{
    h->count[hist_index(v)]++;
    h->n++;
    h->sum += v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

/* The value at percentile p (0 < p <= 100): the smallest bucket whose
 * cumulative count reaches ceil(p% of n), clamped to the exact extremes. */
static double hist_percentile(const struct hist *h, double p)
{
    if (h->n == 0)
        return 0.0;
    double want = p / 100.0 * (double)h->n;
    uint64_t rank = (uint64_t)want;
    if ((double)rank < want || rank == 0)
        rank++;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= rank) {
            double v = hist_bucket_value(i);
            if (v < (double)h->min)
                v = (double)h->min;
            if (v > (double)h->max)
                v = (double)h->max;
            return v;
        }
    }
    return (double)h->max;
}

/* ------------------------------------------------------------------------ */
/* State                                                                    */
/* ------------------------------------------------------------------------ */

struct options {
    const char *host;   /* server address or name */
    const char *port;   /* server port, as given */
    long conns;         /* number of connections */
    size_t size;        /* bytes per message */
    double duration;    /* seconds measured */
    double warmup;      /* seconds run before measuring */
    uint64_t max_requests; /* end the window after this many (0: no limit) */
    int reconnect;      /* open closed connections again */
    uint64_t seed;      /* seed of all random choices */
};

enum conn_state {
    CS_CLOSED,     /* no socket; reopened later if -r */
    CS_CONNECTING, /* non-blocking connect in progress */
    CS_ACTIVE,     /* connected, a message in flight */
};

struct conn {
    int fd;               /* the socket, -1 when closed */
    enum conn_state state;
    uint64_t rng;         /* this connection's random generator */
    size_t off;           /* where the current message starts in the pattern */
    size_t sent;          /* bytes of the current message written so far */
    size_t recvd;         /* bytes of the current message read back so far */
    int bad;              /* some byte of the current message differed */
    uint64_t t_start;     /* when the current message was started */
    uint64_t retry_at;    /* when a closed connection may be reopened */
};

static struct {
    struct options opt;
    const unsigned char *pattern; /* SIZE + WINDOWS - 1 random bytes */
    unsigned char *scratch;       /* where echoed bytes are read into */
    struct conn *conns;
    struct addrinfo *addr;        /* the resolved server address */
    int ep;                       /* the epoll instance */
    long open;                    /* connections connecting or active */

    /* Counted in the measured window only (reset when the warm-up ends). */
    int measuring;
    uint64_t window_start, window_end;
    uint64_t requests, tx_bytes, rx_bytes;
    struct hist lat;
    struct rusage ru_start, ru_end;

    /* Counted over the whole run. */
    uint64_t mismatched_bytes;    /* echoed bytes that differed */
    uint64_t mismatched_requests; /* messages with at least one such byte */
    uint64_t connect_errors;      /* connects refused, reset, timed out... */
    uint64_t peer_closed;         /* connections the server closed */
    uint64_t io_errors;           /* send/recv failures on open connections */
    uint64_t requests_all;        /* messages completed, warm-up included */
    uint64_t opened;              /* successful connects, reconnects included */
    uint64_t reconnects;          /* reconnect attempts */
    unsigned logged;              /* errors described on stderr so far */
} g;

static volatile sig_atomic_t g_stop; /* set by SIGINT/SIGTERM: stop early */

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

/* Describe one of the first few errors on stderr. */
static void log_error(const char *what, int err)
{
    if (g.logged++ < MAX_ERROR_LOGS)
        fprintf(stderr, "loadgen: %s: %s\n", what, err ? strerror(err) : "closed by peer");
}

/* ------------------------------------------------------------------------ */
/* Connections                                                              */
/* ------------------------------------------------------------------------ */

/* Close c; with -r it will be reopened after RETRY_NS.  Closing the fd also
 * removes it from the epoll set. */
static void conn_close(struct conn *c)
{
    close(c->fd);
    c->fd = -1;
    c->state = CS_CLOSED;
    c->retry_at = now_ns() + RETRY_NS;
    g.open--;
}

/* Close c because of a socket error (err != 0) or because the server closed
 * it (err == 0). */
static void conn_fail(struct conn *c, int err, const char *what)
{
    if (err)
        g.io_errors++;
    else
        g.peer_closed++;
    log_error(what, err);
    conn_close(c);
}

/* Write as much of the current message as the socket takes.
 * Returns 0, or -1 if the connection was closed. */
static int conn_write(struct conn *c)
{
    while (c->sent < g.opt.size) {
        ssize_t n = send(c->fd, g.pattern + c->off + c->sent, g.opt.size - c->sent,
                         MSG_NOSIGNAL);
        if (n > 0) {
            c->sent += (size_t)n;
            if (g.measuring)
                g.tx_bytes += (uint64_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 0; /* socket buffer full: EPOLLOUT will tell when to go on */
        } else {
            conn_fail(c, n < 0 ? errno : EIO, "send");
            return -1;
        }
    }
    return 0;
}

/* Begin the next message on c at time t, and write what the socket takes.
 * Returns 0, or -1 if the connection was closed. */
static int conn_start_request(struct conn *c, uint64_t t)
{
    /* A new offset, never the previous one, so no two consecutive messages
     * of a connection are equal. */
    c->off = (c->off + 1u + (size_t)(splitmix64(&c->rng) % (WINDOWS - 1u))) % WINDOWS;
    c->sent = 0;
    c->recvd = 0;
    c->bad = 0;
    c->t_start = t;
    return conn_write(c);
}

/* Compare n echoed bytes in buf with what was sent at the same position. */
static void conn_verify(struct conn *c, const unsigned char *buf, size_t n)
{
    const unsigned char *want = g.pattern + c->off + c->recvd;
    if (memcmp(buf, want, n) == 0)
        return;
    for (size_t i = 0; i < n; i++)
        g.mismatched_bytes += buf[i] != want[i];
    c->bad = 1;
}

/* The last byte of the current message came back: record it, start the
 * next one.  Returns 0, or -1 if the connection was closed. */
static int conn_finish_request(struct conn *c)
{
    uint64_t t = now_ns();
    if (c->bad)
        g.mismatched_requests++;
    g.requests_all++;
    if (g.measuring) {
        g.requests++;
        hist_record(&g.lat, t - c->t_start);
    }
    return conn_start_request(c, t);
}

/* Read echoed bytes until the socket is empty or the current message is
 * complete.  Reading never goes past the end of the current message: bytes a
 * server sends in excess are read as the start of the next message, and are
 * then caught as mismatches.  Returns 0, or -1 if the connection was closed. */
static int conn_read(struct conn *c)
{
    while (c->recvd < g.opt.size) {
        size_t want = g.opt.size - c->recvd;
        if (want > SCRATCH_SIZE)
            want = SCRATCH_SIZE;
        ssize_t n = recv(c->fd, g.scratch, want, 0);
        if (n > 0) {
            conn_verify(c, g.scratch, (size_t)n);
            c->recvd += (size_t)n;
            if (g.measuring)
                g.rx_bytes += (uint64_t)n;
        } else if (n == 0) {
            conn_fail(c, 0, "recv");
            return -1;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 0;
        } else {
            conn_fail(c, errno, "recv");
            return -1;
        }
    }
    /* Complete.  The next message's echo will raise a new EPOLLIN edge, so
     * there is no need to try another recv now (it would cost a system call
     * per request and find nothing). */
    return conn_finish_request(c);
}

/* The connect of c succeeded: start its first message. */
static void conn_connected(struct conn *c)
{
    c->state = CS_ACTIVE;
    g.opened++;
    conn_start_request(c, now_ns());
}

/* Open c: a non-blocking socket, registered with epoll once and for all
 * (edge-triggered, both directions), then connect. */
static void conn_open(struct conn *c)
{
    const struct addrinfo *ai = g.addr;
    int one = 1;
    c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        g.connect_errors++;
        log_error("socket", errno);
        c->state = CS_CLOSED;
        c->retry_at = now_ns() + RETRY_NS;
        return;
    }
    g.open++;
    /* Messages are sent whole; Nagle would only delay the tail of a
     * partially written large message. */
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.ptr = c};
    if (epoll_ctl(g.ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        g.connect_errors++;
        log_error("epoll_ctl", errno);
        conn_close(c);
        return;
    }
    if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) == 0) {
        conn_connected(c);
    } else if (errno == EINPROGRESS) {
        c->state = CS_CONNECTING;
    } else {
        g.connect_errors++;
        log_error("connect", errno);
        conn_close(c);
    }
}

/* Handle the epoll events ev of connection c. */
static void conn_event(struct conn *c, uint32_t ev)
{
    if (c->state == CS_CONNECTING) {
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err) {
            g.connect_errors++;
            log_error("connect", err);
            conn_close(c);
        } else {
            conn_connected(c);
        }
        return;
    }
    if (c->state != CS_ACTIVE)
        return; /* closed earlier while handling this batch of events */
    if ((ev & EPOLLIN) && conn_read(c) < 0)
        return;
    if ((ev & EPOLLOUT) && conn_write(c) < 0)
        return;
    if (ev & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
        /* Everything readable has been read above; the server will send
         * nothing more, so the message in flight can never complete. */
        int err = 0;
        socklen_t len = sizeof err;
        if (ev & EPOLLERR)
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        conn_fail(c, err, "connection");
    }
}

/* ------------------------------------------------------------------------ */
/* The run                                                                  */
/* ------------------------------------------------------------------------ */

/* The warm-up is over: forget what was counted so far, start the window. */
static void start_window(uint64_t now)
{
    g.measuring = 1;
    g.window_start = now;
    g.requests = g.tx_bytes = g.rx_bytes = 0;
    hist_reset(&g.lat);
    getrusage(RUSAGE_SELF, &g.ru_start);
}

static void run(void)
{
    struct epoll_event evs[MAX_EVENTS];
    uint64_t t0 = now_ns();
    uint64_t warm_end = t0 + (uint64_t)(g.opt.warmup * (double)NS_PER_S);
    uint64_t deadline = warm_end + (uint64_t)(g.opt.duration * (double)NS_PER_S);

    if (g.opt.warmup <= 0)
        start_window(t0);
    for (long i = 0; i < g.opt.conns; i++) {
        struct conn *c = &g.conns[i];
        c->rng = g.opt.seed ^ ((uint64_t)i * 0xd1b54a32d192ed03ull);
        c->off = (size_t)(splitmix64(&c->rng) % WINDOWS);
        conn_open(c);
    }

    uint64_t now = now_ns();
    while (now < deadline && !g_stop) {
        if (g.opt.max_requests && g.requests >= g.opt.max_requests)
            break; /* -n: the work asked for is done */
        if (g.open == 0 && !g.opt.reconnect)
            break; /* every connection is gone: nothing left to measure */
        uint64_t until = g.measuring ? deadline : warm_end;
        uint64_t wait_ms = until > now ? (until - now + 999999u) / 1000000u : 0;
        if (wait_ms > MAX_WAIT_MS)
            wait_ms = MAX_WAIT_MS;
        if (g.opt.reconnect && g.open < g.opt.conns && wait_ms > RETRY_NS / 1000000u)
            wait_ms = RETRY_NS / 1000000u;
        int n = epoll_wait(g.ep, evs, MAX_EVENTS, (int)wait_ms);
        if (n < 0 && errno != EINTR) {
            perror("loadgen: epoll_wait");
            exit(2);
        }
        now = now_ns();
        if (!g.measuring && now >= warm_end)
            start_window(now);
        for (int i = 0; i < n; i++)
            conn_event(evs[i].data.ptr, evs[i].events);
        if (g.opt.reconnect && g.open < g.opt.conns) {
            for (long i = 0; i < g.opt.conns; i++) {
                struct conn *c = &g.conns[i];
                if (c->state == CS_CLOSED && c->retry_at <= now) {
                    g.reconnects++;
                    conn_open(c);
                }
            }
        }
    }
    if (!g.measuring)
        start_window(now); /* stopped during the warm-up: an empty window */
    g.window_end = now;
    getrusage(RUSAGE_SELF, &g.ru_end);
}

/* ------------------------------------------------------------------------ */
/* Report                                                                   */
/* ------------------------------------------------------------------------ */

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* Print s as a JSON string (the host name is the only free text). */
static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static void report(void)
{
    double secs = (double)(g.window_end - g.window_start) / 1e9;
    double rps = secs > 0 ? (double)g.requests / secs : 0.0;
    double tx_mbs = secs > 0 ? (double)g.tx_bytes / secs / 1e6 : 0.0;
    double rx_mbs = secs > 0 ? (double)g.rx_bytes / secs / 1e6 : 0.0;
    double cpu_user = tv_s(g.ru_end.ru_utime) - tv_s(g.ru_start.ru_utime);
    double cpu_sys = tv_s(g.ru_end.ru_stime) - tv_s(g.ru_start.ru_stime);
    double p50 = hist_percentile(&g.lat, 50) / 1e3;
    double p90 = hist_percentile(&g.lat, 90) / 1e3;
    double p99 = hist_percentile(&g.lat, 99) / 1e3;
    double p999 = hist_percentile(&g.lat, 99.9) / 1e3;
    double lmin = g.lat.n ? (double)g.lat.min / 1e3 : 0.0;
    double lmax = (double)g.lat.max / 1e3;
    double lmean = g.lat.n ? (double)g.lat.sum / (double)g.lat.n / 1e3 : 0.0;
    uint64_t errors = g.connect_errors + g.peer_closed + g.io_errors;
    long active = 0, inflight = 0;
    for (long i = 0; i < g.opt.conns; i++) {
        const struct conn *c = &g.conns[i];
        if (c->state == CS_ACTIVE) {
            active++;
            inflight += c->sent > 0 || c->recvd > 0;
        }
    }

    printf("%s:%s %ld conn x %zu B, %.2f s: %.0f req/s, %.1f MB/s (tx+rx), "
           "latency us p50 %.1f p90 %.1f p99 %.1f max %.1f, errors %" PRIu64
           ", mismatches %" PRIu64 ", connections %ld/%ld, cpu %.0f%%\n",
           g.opt.host, g.opt.port, g.opt.conns, g.opt.size, secs, rps, tx_mbs + rx_mbs,
           p50, p90, p99, lmax, errors, g.mismatched_bytes, active, g.opt.conns,
           secs >= 0.001 ? 100.0 * (cpu_user + cpu_sys) / secs : 0.0);
    printf("{\"host\":");
    json_string(g.opt.host);
    printf(",\"port\":");
    json_string(g.opt.port);
    printf(",\"connections_requested\":%ld,\"size\":%zu,\"duration_s\":%.6f,"
           "\"warmup_s\":%.3f,\"seed\":%" PRIu64 ",\"requests\":%" PRIu64
           ",\"requests_all\":%" PRIu64 ",\"rps\":%.1f,"
           "\"tx_bytes\":%" PRIu64 ",\"rx_bytes\":%" PRIu64
           ",\"tx_mb_s\":%.3f,\"rx_mb_s\":%.3f,\"mb_s\":%.3f,"
           "\"latency_us\":{\"min\":%.3f,\"mean\":%.3f,\"p50\":%.3f,\"p90\":%.3f,"
           "\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f},"
           "\"errors\":%" PRIu64 ",\"connect_errors\":%" PRIu64 ",\"peer_closed\":%" PRIu64
           ",\"io_errors\":%" PRIu64 ",\"reconnects\":%" PRIu64
           ",\"mismatches\":%" PRIu64 ",\"mismatched_requests\":%" PRIu64
           ",\"connections\":%ld,\"connections_opened\":%" PRIu64 ",\"inflight_at_end\":%ld"
           ",\"cpu_user_s\":%.3f,\"cpu_sys_s\":%.3f,\"interrupted\":%s}\n",
           g.opt.conns, g.opt.size, secs, g.opt.warmup, g.opt.seed, g.requests,
           g.requests_all, rps, g.tx_bytes, g.rx_bytes, tx_mbs, rx_mbs, tx_mbs + rx_mbs,
           lmin, lmean, p50, p90, p99, p999, lmax, errors, g.connect_errors, g.peer_closed,
           g.io_errors, g.reconnects, g.mismatched_bytes, g.mismatched_requests, active, g.opened,
           inflight, cpu_user, cpu_sys, g_stop ? "true" : "false");
    fflush(stdout);
}

/* ------------------------------------------------------------------------ */
/* Setup                                                                    */
/* ------------------------------------------------------------------------ */

static void usage(const char *why)
{
    if (why)
        fprintf(stderr, "loadgen: %s\n", why);
    fprintf(stderr,
            "usage: loadgen -p PORT [-H HOST] [-c CONNS] [-s SIZE[k|m]] [-d SECONDS]\n"
            "               [-w SECONDS] [-n REQUESTS] [-r] [-S SEED]\n"
            "  -H  server host (default 127.0.0.1)   -p  server port\n"
            "  -c  connections (default 1)           -s  message bytes, k/m: KiB/MiB (default 64)\n"
            "  -d  seconds measured (default 5)      -w  seconds of warm-up (default 1)\n"
            "  -n  stop after this many requests (or -d seconds, whichever first)\n"
            "  -r  reopen connections that close     -S  random seed (default: from the clock)\n");
    exit(2);
}

/* Parse a byte count with an optional k/m/g (binary) suffix; 0 if invalid. */
static size_t parse_size(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-')
        return 0;
    unsigned long long mult = 1;
    if (*end == 'k' || *end == 'K')
        mult = 1024ull;
    else if (*end == 'm' || *end == 'M')
        mult = 1024ull * 1024u;
    else if (*end == 'g' || *end == 'G')
        mult = 1024ull * 1024u * 1024u;
    else if (*end != '\0')
        return 0;
    if (mult != 1 && end[1] != '\0')
        return 0;
    if (v > MAX_SIZE / mult)
        return MAX_SIZE + 1; /* too large, rejected by the caller */
    return (size_t)(v * mult);
}

static double parse_seconds(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    return (end == s || *end != '\0') ? -1.0 : v;
}

static void parse_args(int argc, char **argv)
{
    struct options *o = &g.opt;
    o->host = "127.0.0.1";
    o->port = NULL;
    o->conns = 1;
    o->size = 64;
    o->duration = 5.0;
    o->warmup = 1.0;
    o->seed = now_ns() ^ ((uint64_t)getpid() << 32);
    int opt;
    char *end;
    while ((opt = getopt(argc, argv, "H:p:c:s:d:w:n:rS:h")) != -1) {
        switch (opt) {
        case 'H': o->host = optarg; break;
        case 'p': o->port = optarg; break;
        case 'c':
            o->conns = strtol(optarg, &end, 10);
            if (*end || o->conns < 1 || o->conns > 1000000)
                usage("-c: connections must be 1..1000000");
            break;
        case 's':
            o->size = parse_size(optarg);
            if (o->size == 0)
                usage("-s: message size must be at least 1 byte (an empty message has no echo)");
            if (o->size > MAX_SIZE)
                usage("-s: message size must be at most 1 GiB");
            break;
        case 'd':
            o->duration = parse_seconds(optarg);
            if (!(o->duration > 0 && o->duration < 1e6))
                usage("-d: duration must be > 0 seconds");
            break;
        case 'w':
            o->warmup = parse_seconds(optarg);
            if (!(o->warmup >= 0 && o->warmup < 1e6))
                usage("-w: warm-up must be >= 0 seconds");
            break;
        case 'n':
            o->max_requests = strtoull(optarg, &end, 10);
            if (*end || o->max_requests == 0)
                usage("-n: requests must be a positive integer");
            break;
        case 'r': o->reconnect = 1; break;
        case 'S':
            o->seed = strtoull(optarg, &end, 0);
            if (*end)
                usage("-S: seed must be an integer");
            break;
        case 'h': usage(NULL); break;
        default: usage(NULL);
        }
    }
    if (optind != argc)
        usage("unexpected argument");
    if (!o->port)
        usage("-p PORT is required");
}

/* Fill the pattern with random bytes, 8 at a time. */
static unsigned char *make_pattern(size_t len, uint64_t seed)
{
    unsigned char *p = malloc(len + 8);
    if (!p)
        return NULL;
    uint64_t state = seed;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t r = splitmix64(&state);
        memcpy(p + i, &r, 8);
    }
    return p;
}

/* Allow one descriptor per connection (and a few more) if the hard limit
 * permits. */
static void raise_fd_limit(long conns)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)conns + 16) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int rc = getaddrinfo(g.opt.host, g.opt.port, &hints, &g.addr);
    if (rc != 0) {
        fprintf(stderr, "loadgen: %s:%s: %s\n", g.opt.host, g.opt.port, gai_strerror(rc));
        return 2;
    }
    g.pattern = make_pattern(g.opt.size + WINDOWS - 1u, g.opt.seed);
    g.scratch = malloc(SCRATCH_SIZE);
    g.conns = calloc((size_t)g.opt.conns, sizeof *g.conns);
    if (!g.pattern || !g.scratch || !g.conns) {
        fprintf(stderr, "loadgen: out of memory\n");
        return 2;
    }
    for (long i = 0; i < g.opt.conns; i++)
        g.conns[i].fd = -1;
    raise_fd_limit(g.opt.conns);
    g.ep = epoll_create1(EPOLL_CLOEXEC);
    if (g.ep < 0) {
        perror("loadgen: epoll_create1");
        return 2;
    }
    hist_reset(&g.lat);

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* MSG_NOSIGNAL is used too; this is a backstop */

    run();
    report();

    for (long i = 0; i < g.opt.conns; i++)
        if (g.conns[i].fd >= 0)
            close(g.conns[i].fd);
    close(g.ep);
    freeaddrinfo(g.addr);
    free(g.conns);
    free(g.scratch);
    free((void *)g.pattern);

    if (g.mismatched_bytes > 0)
        return 1;
    if (g.opened == 0)
        return 3;
    return 0;
}
