/*
 * hubcore.h - what the files of the hub's native core share: its types and
 * internal functions (hub.c: ring, timers, loop; hubfd.c: fd waits and
 * polling; hubtype.c: the Python types).  hub.h is the outside's view.
 *
 * Everything here runs with the GIL held, on the hub's own thread.
 */
#ifndef FASTCO_HUBCORE_H
#define FASTCO_HUBCORE_H

#include "hub.h"

#include <sys/epoll.h>

#define FH_NVAL 0x020u   /* POLLNVAL (epoll never reports it) */
#define FH_READ_WAKE (EPOLLIN | EPOLLPRI | EPOLLERR | EPOLLHUP | EPOLLRDHUP | FH_NVAL)
#define FH_WRITE_WAKE (EPOLLOUT | EPOLLERR | EPOLLHUP | FH_NVAL)
/* What a socket's fd is registered for with the edge-triggered epoll. */
#define FH_EDGE_MASK (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)
#define FH_MAX_EVENTS 256

/* A ring slot: a greenlet to resume (args NULL, the value in `pending`) or
 * a callback to call as obj(*args). */
typedef struct {
    PyObject *obj;
    PyObject *args;
} fh_entry;

/* What a timer does when it fires. */
enum fh_timer_kind {
    FH_T_CALL = 0,    /* fn(arg) */
    FH_T_EXPIRE,      /* end arg's wait with TIMEOUT, unless it has a wake-up */
    FH_T_SWITCH       /* arg.switch() (sleep) */
};

typedef struct FhTimer {
    PyObject_HEAD
    double when;                 /* deadline, CLOCK_MONOTONIC seconds */
    unsigned long long seq;      /* breaks ties: first set, first fired */
    int kind;                    /* enum fh_timer_kind */
    PyObject *fn;                /* strong; NULL unless FH_T_CALL */
    PyObject *arg;               /* strong */
    Py_ssize_t index;            /* in its core's heap; -1 once out */
    FhCore *core;                /* borrowed; NULL once out */
} FhTimer;

typedef struct {
    PyObject *reader;            /* strong: the greenlet waiting to read */
    PyObject *writer;            /* strong: the greenlet waiting to write */
    long long owner;             /* registration known good for this socket */
    unsigned int mask;           /* registered interest (edge: FH_EDGE_MASK) */
    unsigned char known;         /* 1 while the hub watches the fd */
    /* Readiness hints of the edge-triggered mode (see hubsock.c): 0 once the
     * socket layer saw the fd drained (EAGAIN, or a short read of a stream),
     * 1 again at the next edge for that direction (set by the loop whether
     * or not somebody waits).  While a hint is 0 a socket call waits for the
     * edge without trying the system call first.  `hup` sticks once epoll
     * reported RDHUP/HUP/ERR: then the hints are not trusted any more. */
    unsigned char rready;
    unsigned char wready;
    unsigned char hup;
} fh_fd;

struct FhCore {
    PyObject_HEAD
    PyObject *hub;               /* the hub greenlet */
    PyObject *poller;            /* level mode: the Python poller; else NULL */
    PyObject *handle_error;      /* hub.handle_error(context, exc) */
    PyObject *loop_exit;         /* hub._loop_exit(): nothing can ever happen */
    int epfd;                    /* edge mode: the epoll fd; else -1 */
    fh_entry *ring;
    Py_ssize_t ring_cap, ring_head, ring_len;
    PyObject *pending;           /* dict: greenlet -> wake-up value */
    FhTimer **heap;
    Py_ssize_t nheap, heap_cap;
    unsigned long long tseq;
    fh_fd *fds;
    Py_ssize_t nfds;
    Py_ssize_t nwait;            /* greenlets waiting on fds */
    Py_ssize_t thread_jobs;      /* jobs of other threads that will call back */
    int wake_fd;                 /* eventfd of run_callback_threadsafe, or -1 */
    PyObject *tsafe;             /* list of (fn, args) from other threads */
    int closed;
    PyObject *rbuf;              /* hubsock.c: a spare receive buffer (bytes), or NULL */
    unsigned long long bytes_received, bytes_sent;   /* by hubsock.c's calls */
    struct epoll_event events[FH_MAX_EVENTS];
};

extern PyTypeObject FhCore_Type;
extern PyTypeObject FhTimer_Type;

/* Set once by fastco.hub (hub_setup, in hubtype.c). */
extern PyObject *fh_mark_timeout;    /* fastco.hub.TIMEOUT */
extern PyObject *fh_mark_closed;     /* fastco.hub.CLOSED */
extern PyObject *fh_mark_missing;    /* fastco.hub.MISSING */
extern PyObject *fh_exc_concurrent;  /* fastco.hub.ConcurrentUseError */
extern PyObject *fh_py_get_hub;      /* fastco.hub.get_hub */
extern PyObject *fh_str_unregister, *fh_str_poll;

/* hub.c: helpers */
double fh_now(void);
PyObject *fh_getcurrent(void);
PyObject *fh_switch(PyObject *g, PyObject *value);
int fh_timeout_arg(PyObject *obj, double *out);
int fh_report(FhCore *core, PyObject *context);
/* hub.c: 0, or -1 with RuntimeError if the hub was closed (tasks and
 * thread-pool jobs may outlive their hub and still call into it). */
int fh_check_open(FhCore *core);
void fh_pending_discard(FhCore *core, PyObject *g);
/* hub.c: the ring and the timers */
int fh_ring_push(FhCore *core, PyObject *obj, PyObject *args);
fh_entry fh_ring_pop(FhCore *core);
int fh_schedule(FhCore *core, PyObject *g, PyObject *value);
void fh_heap_remove(FhCore *core, FhTimer *t);
FhTimer *fh_timer_add(FhCore *core, double seconds, int kind, PyObject *fn, PyObject *arg);
void fh_timer_cancel(FhTimer *t);
/* hub.c: the loop (returns only by raising) */
PyObject *fh_run(FhCore *self);

/* hubtype.c: the running thread's core if it has one (never makes one). */
FhCore *fh_peek(void);

/* hubfd.c */
fh_fd *fh_fd_slot(FhCore *core, int fd);
int fh_epoll_set(FhCore *core, int op, int fd, unsigned int mask);
int fh_fd_watch(FhCore *core, fh_fd *s, int fd);
int fh_fd_interest(FhCore *core, int fd);
void fh_fd_unwatch(FhCore *core, int fd, PyObject *g);
fh_fd *fh_fd_prepare(FhCore *core, int fd, long long owner);
void fh_set_oserror(int err, const char *msg);
void fh_set_closed_error(void);
PyObject *fh_fd_wake_value(PyObject *r, int fd);
PyObject *fh_fd_wait(FhCore *core, int fd, unsigned int event, double timeout,
                     long long owner);
int fh_poll_and_dispatch(FhCore *core, double timeout);

#endif /* FASTCO_HUBCORE_H */
