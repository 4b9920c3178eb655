/*
 * c_epoll_server.c - the ceiling: a single-threaded epoll echo server in C.
 *
 *   c_epoll_server --port PORT      (listens on 127.0.0.1; port 0 = any)
 *
 * Level-triggered epoll.  A readable connection gets one recv of up to 64 KiB
 * and an immediate send of all of it.  If the socket takes only part, the rest
 * is kept in a buffer of its own and the connection waits for EPOLLOUT, and is
 * not read meanwhile: a client that does not read gets back-pressure, and no
 * byte is ever dropped.  Prints "listening on 127.0.0.1:PORT" when ready;
 * exits with status 0 on SIGTERM or SIGINT.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

struct conn {
    int fd;
    char *pending;      /* bytes received but not yet sent back, or NULL */
    size_t off, len;    /* pending[off..len) is still to be sent */
};

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

/* Watch c for `events` (EPOLLIN while echoing, EPOLLOUT while flushing). */
static int watch(int ep, int op, struct conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    return epoll_ctl(ep, op, c->fd, &ev);
}

/* Send what is pending.  Returns 0 when all is sent, 1 if the socket is
 * full again, -1 on error. */
static int flush(struct conn *c)
{
    while (c->off < c->len) {
        ssize_t n = send(c->fd, c->pending + c->off, c->len - c->off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN ? 1 : -1;
        c->off += (size_t)n;
    }
    free(c->pending);
    c->pending = NULL;
    return 0;
}

/* Handle events on c; returns -1 when c must be closed. */
static int on_conn(int ep, struct conn *c)
{
    static char buf[65536];
    if (c->pending) {       /* we were waiting for EPOLLOUT (or an error) */
        int r = flush(c);
        if (r != 0)
            return r < 0 ? -1 : 0;
        return watch(ep, EPOLL_CTL_MOD, c, EPOLLIN);
    }
    ssize_t n = recv(c->fd, buf, sizeof buf, 0);
    if (n <= 0)
        return n < 0 && (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    size_t off = 0, len = (size_t)n;
    while (off < len) {
        ssize_t w = send(c->fd, buf + off, len - off, MSG_NOSIGNAL);
        if (w >= 0) {
            off += (size_t)w;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -1;
        /* The socket is full: keep the rest, stop reading, wait until writable. */
        c->off = 0;
        c->len = len - off;
        if (!(c->pending = malloc(c->len)))
            return -1;
        memcpy(c->pending, buf + off, c->len);
        return watch(ep, EPOLL_CTL_MOD, c, EPOLLOUT);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3 || strcmp(argv[1], "--port") != 0) {
        fprintf(stderr, "usage: %s --port PORT\n", argv[0]);
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_signal};  /* no SA_RESTART */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int one = 1, ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof addr;
    if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0
        || bind(ls, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(ls, 1024) < 0
        || getsockname(ls, (struct sockaddr *)&addr, &alen) < 0) {
        perror("c_epoll_server: listen");
        return 1;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct conn listener = {.fd = ls};
    watch(ep, EPOLL_CTL_ADD, &listener, EPOLLIN);
    printf("listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
    fflush(stdout);

    struct epoll_event evs[256];
    while (!stop) {
        int n = epoll_wait(ep, evs, 256, -1);   /* a signal interrupts it: EINTR */
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c != &listener) {
                if (on_conn(ep, c) < 0) {
                    close(c->fd);               /* also leaves the epoll set */
                    free(c->pending);
                    free(c);
                }
                continue;
            }
            int fd;
            while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                struct conn *nc = calloc(1, sizeof *nc);
                if (nc)
                    nc->fd = fd;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                if (!nc || watch(ep, EPOLL_CTL_ADD, nc, EPOLLIN) < 0) {
                    close(fd);          /* out of memory: refuse this one */
                    free(nc);
                }
            }
        }
    }
    return 0;
}
