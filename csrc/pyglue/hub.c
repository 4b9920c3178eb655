/*
 * hub.c - the native core of fastco's hub: the ready queue, the timers,
 * the fd waits and the loop that runs them (fastco/hub.py is its face).
 *
 * One FhCore per hub (per thread).  It holds:
 *
 *   ring      greenlets to resume and callbacks to call, in FIFO order.  A
 *             greenlet's wake-up value sits in `pending` (greenlet -> value):
 *             a wait that ends otherwise (a kill, a Timeout) drops its entry,
 *             and the loop skips ring slots whose greenlet has none, so a
 *             greenlet is never resumed twice for one wait.
 *   heap      timers (FhTimer), a binary heap on (deadline, sequence); a
 *             cancelled timer is taken out at once.
 *   fds       per fd: the greenlet waiting to read, the one waiting to
 *             write, the registered interest and the "owner" (the socket
 *             object the registration is known good for).
 *
 * The loop, per turn: runs what the ring held at the start of the turn,
 * fires the due timers, then polls (not at all if something is ready and
 * nobody waits on an fd; with a zero timeout if something is ready) and
 * switches straight to each greenlet whose fd fired.
 *
 * With the edge-triggered epoll the fd of a socket is registered once, for
 * both directions, and kept: a greenlet waits only after its syscall failed
 * with EAGAIN, and every change after that is reported, so a wait is two
 * pointer stores and two switches, no system call.  The level-triggered
 * pollers (poll, select: fastco/_poller.py) get exactly the directions
 * waited for, through their Python methods.
 */
#include "hub.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FH_NVAL 0x020u   /* POLLNVAL (epoll never reports it) */
#define FH_READ_WAKE (EPOLLIN | EPOLLPRI | EPOLLERR | EPOLLHUP | EPOLLRDHUP | FH_NVAL)
#define FH_WRITE_WAKE (EPOLLOUT | EPOLLERR | EPOLLHUP | FH_NVAL)
/* What a socket's fd is registered for with the edge-triggered epoll. */
#define FH_EDGE_MASK (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)
#define FH_MAX_EVENTS 256

#if PY_VERSION_HEX < 0x030D0000
#define PyLong_AsInt _PyLong_AsInt
#endif

/* Set once by fastco.hub (hub_setup). */
static PyObject *switch_descr;    /* greenlet.switch, unbound */
static PyObject *mark_timeout;    /* fastco.hub.TIMEOUT */
static PyObject *mark_closed;     /* fastco.hub.CLOSED */
static PyObject *mark_missing;    /* fastco.hub.MISSING */
static PyObject *exc_concurrent;  /* fastco.hub.ConcurrentUseError */
static PyObject *py_get_hub;      /* fastco.hub.get_hub */
static PyObject *str_register, *str_modify, *str_unregister, *str_poll;

/* The running thread's core (borrowed: its hub keeps it alive). */
static _Thread_local FhCore *tls_core;

/* ------------------------------------------------------------------------
 * Types
 */

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
    struct epoll_event events[FH_MAX_EVENTS];
};

static PyTypeObject FhCore_Type;
static PyTypeObject FhTimer_Type;

/* ------------------------------------------------------------------------
 * Small helpers
 */

static double fh_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static PyObject *fh_getcurrent(void)
{
    fc_thread *ts = fc_thread_get();
    return ts != NULL ? (PyObject *)ts->current : NULL;
}

/* g.switch(value) (value NULL: g.switch()); a new reference or NULL. */
static PyObject *fh_switch(PyObject *g, PyObject *value)
{
    PyObject *args[2] = {g, value};
    return PyObject_Vectorcall(switch_descr, args, value != NULL ? 2 : 1, NULL);
}

/* Parses a timeout argument: None (-1: no limit) or a number >= 0. */
static int fh_timeout_arg(PyObject *obj, double *out)
{
    double t;
    if (obj == NULL || obj == Py_None) {
        *out = -1.0;
        return 0;
    }
    t = PyFloat_AsDouble(obj);
    if (t == -1.0 && PyErr_Occurred())
        return -1;
    if (!(t >= 0.0)) {
        PyErr_Format(PyExc_ValueError,
                     "timeout must be None or a non-negative number, not %R", obj);
        return -1;
    }
    *out = t;
    return 0;
}

/* Removes `key` from dict `d`: its value (new reference), else NULL without
 * an exception if absent (or with one on error). */
static PyObject *fh_dict_pop(PyObject *d, PyObject *key)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *v = NULL;
    if (PyDict_Pop(d, key, &v) < 0)
        return NULL;
    return v;
#else
    PyObject *v = PyDict_GetItemWithError(d, key);
    if (v == NULL)
        return NULL;
    Py_INCREF(v);
    if (PyDict_DelItem(d, key) < 0) {
        Py_DECREF(v);
        return NULL;
    }
    return v;
#endif
}

/* Reports the current exception through hub.handle_error(context, exc) if
 * it is an Exception; returns 0.  Other exceptions (GreenletExit,
 * KeyboardInterrupt, ...) are left set for the loop's caller: -1. */
static int fh_report(FhCore *core, PyObject *context)
{
    PyObject *t, *v, *tb, *r;
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return -1;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    if (tb != NULL && v != NULL)
        PyException_SetTraceback(v, tb);
    r = PyObject_CallFunctionObjArgs(core->handle_error, context, v, NULL);
    if (r == NULL)
        PyErr_WriteUnraisable(core->handle_error);
    Py_XDECREF(r);
    Py_XDECREF(t);
    Py_XDECREF(v);
    Py_XDECREF(tb);
    return 0;
}

/* ------------------------------------------------------------------------
 * The ring
 */

static int ring_push(FhCore *core, PyObject *obj, PyObject *args)
{
    if (core->ring_len == core->ring_cap) {
        Py_ssize_t cap = core->ring_cap ? core->ring_cap * 2 : 64;
        fh_entry *ring = PyMem_Malloc((size_t)cap * sizeof(fh_entry));
        if (ring == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < core->ring_len; i++)
            ring[i] = core->ring[(core->ring_head + i) % core->ring_cap];
        PyMem_Free(core->ring);
        core->ring = ring;
        core->ring_cap = cap;
        core->ring_head = 0;
    }
    fh_entry *e = &core->ring[(core->ring_head + core->ring_len) % core->ring_cap];
    e->obj = Py_NewRef(obj);
    e->args = Py_XNewRef(args);
    core->ring_len++;
    return 0;
}

/* Takes the first entry (its references pass to the caller). */
static fh_entry ring_pop(FhCore *core)
{
    fh_entry e = core->ring[core->ring_head];
    core->ring_head = (core->ring_head + 1) % core->ring_cap;
    core->ring_len--;
    return e;
}

/* Queues g to be resumed with value (a borrowed reference). */
static int fh_schedule(FhCore *core, PyObject *g, PyObject *value)
{
    if (PyDict_SetItem(core->pending, g, value) < 0)
        return -1;
    return ring_push(core, g, NULL);
}

/* ------------------------------------------------------------------------
 * Timers: a binary heap of FhTimer on (when, seq)
 */

static int timer_less(FhTimer *a, FhTimer *b)
{
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void heap_set(FhCore *core, Py_ssize_t i, FhTimer *t)
{
    core->heap[i] = t;
    t->index = i;
}

static void heap_up(FhCore *core, Py_ssize_t i)
{
    FhTimer *t = core->heap[i];
    while (i > 0) {
        Py_ssize_t parent = (i - 1) / 2;
        if (!timer_less(t, core->heap[parent]))
            break;
        heap_set(core, i, core->heap[parent]);
        i = parent;
    }
    heap_set(core, i, t);
}

static void heap_down(FhCore *core, Py_ssize_t i)
{
    FhTimer *t = core->heap[i];
    Py_ssize_t n = core->nheap;
    for (;;) {
        Py_ssize_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && timer_less(core->heap[c + 1], core->heap[c]))
            c++;
        if (!timer_less(core->heap[c], t))
            break;
        heap_set(core, i, core->heap[c]);
        i = c;
    }
    heap_set(core, i, t);
}

/* Takes timer t out of its core's heap; the heap's reference passes to the
 * caller. */
static void heap_remove(FhCore *core, FhTimer *t)
{
    Py_ssize_t i = t->index;
    FhTimer *last;
    core->nheap--;
    last = core->heap[core->nheap];
    core->heap[core->nheap] = NULL;
    if (i != core->nheap) {
        heap_set(core, i, last);
        heap_up(core, i);
        heap_down(core, last->index);
    }
    t->index = -1;
    t->core = NULL;
}

/* A new timer in `seconds`; returns a borrowed reference (the heap's), or
 * NULL with an exception set. */
static FhTimer *timer_add(FhCore *core, double seconds, int kind, PyObject *fn,
                          PyObject *arg)
{
    FhTimer *t;
    if (core->nheap == core->heap_cap) {
        Py_ssize_t cap = core->heap_cap ? core->heap_cap * 2 : 64;
        FhTimer **heap = PyMem_Realloc(core->heap, (size_t)cap * sizeof(FhTimer *));
        if (heap == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        core->heap = heap;
        core->heap_cap = cap;
    }
    t = PyObject_GC_New(FhTimer, &FhTimer_Type);
    if (t == NULL)
        return NULL;
    t->when = fh_now() + seconds;
    t->seq = ++core->tseq;
    t->kind = kind;
    t->fn = Py_XNewRef(fn);
    t->arg = Py_XNewRef(arg);
    t->core = core;
    PyObject_GC_Track(t);
    core->heap[core->nheap] = t;
    t->index = core->nheap++;
    heap_up(core, t->index);
    return t;
}

/* Cancels t (no effect if it fired or was cancelled). */
static void timer_cancel(FhTimer *t)
{
    FhCore *core = t->core;
    if (core == NULL || t->index < 0)
        return;
    heap_remove(core, t);
    Py_CLEAR(t->fn);
    Py_CLEAR(t->arg);
    Py_DECREF(t);   /* the heap's reference */
}

/* Fires timer t, already out of the heap (consumes the heap's reference).
 * Returns 0, or -1 with an exception the loop must not swallow. */
static int timer_fire(FhCore *core, FhTimer *t)
{
    PyObject *fn = t->fn, *arg = t->arg, *r = NULL;
    int rc = 0;
    t->fn = NULL;
    t->arg = NULL;
    switch (t->kind) {
    case FH_T_CALL:
        r = PyObject_CallOneArg(fn, arg != NULL ? arg : Py_None);
        break;
    case FH_T_EXPIRE: {
        int has = PyDict_Contains(core->pending, arg);
        if (has < 0)
            break;
        r = has ? Py_NewRef(Py_None) : fh_switch(arg, mark_timeout);
        break;
    }
    default:
        r = fh_switch(arg, NULL);
        break;
    }
    if (r == NULL)
        rc = fh_report(core, fn != NULL ? fn : arg);
    Py_XDECREF(r);
    Py_XDECREF(fn);
    Py_XDECREF(arg);
    Py_DECREF(t);
    return rc;
}

/* ------------------------------------------------------------------------
 * fds
 */

static fh_fd *fd_slot(FhCore *core, int fd)
{
    if (fd >= core->nfds) {
        Py_ssize_t n = core->nfds ? core->nfds : 64;
        fh_fd *fds;
        while (n <= fd)
            n *= 2;
        fds = PyMem_Realloc(core->fds, (size_t)n * sizeof(fh_fd));
        if (fds == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        memset(fds + core->nfds, 0, (size_t)(n - core->nfds) * sizeof(fh_fd));
        core->fds = fds;
        core->nfds = n;
    }
    return &core->fds[fd];
}

static int epoll_set(FhCore *core, int op, int fd, unsigned int mask)
{
    struct epoll_event ev;
    ev.events = mask;
    ev.data.u64 = 0;
    ev.data.fd = fd;
    return epoll_ctl(core->epfd, op, fd, &ev);
}

/* Starts watching fd (epoll: registers it, which reports its current
 * readiness).  Returns 0 or -1 with an exception set. */
static int fd_watch(FhCore *core, fh_fd *s, int fd)
{
    if (core->closed) {
        PyErr_SetString(PyExc_RuntimeError, "the hub is closed");
        return -1;
    }
    if (core->epfd >= 0) {
        if (epoll_set(core, EPOLL_CTL_ADD, fd, FH_EDGE_MASK) < 0) {
            if (errno != EEXIST || epoll_set(core, EPOLL_CTL_MOD, fd, FH_EDGE_MASK) < 0) {
                PyErr_SetFromErrno(PyExc_OSError);
                return -1;
            }
        }
        s->mask = FH_EDGE_MASK;
    } else {
        s->mask = 0;
    }
    s->known = 1;
    return 0;
}

/* Edge mode: makes epoll re-check fd's readiness now (it may have forgotten
 * the fd if it was closed behind the hub's back: register it again). */
static int fd_rearm(FhCore *core, int fd)
{
    if (epoll_set(core, EPOLL_CTL_MOD, fd, FH_EDGE_MASK) == 0)
        return 0;
    if (errno == ENOENT && epoll_set(core, EPOLL_CTL_ADD, fd, FH_EDGE_MASK) == 0)
        return 0;
    PyErr_SetFromErrno(PyExc_OSError);
    return -1;
}

/* Level mode: registers with the Python poller exactly the directions
 * somebody waits for. */
static int fd_interest(FhCore *core, int fd)
{
    fh_fd *s = &core->fds[fd];
    unsigned int mask = (s->reader ? EPOLLIN : 0u) | (s->writer ? EPOLLOUT : 0u);
    PyObject *r;
    if (core->epfd >= 0 || !s->known || mask == s->mask || core->poller == NULL)
        return 0;
    if (mask == 0)
        r = PyObject_CallMethod(core->poller, "unregister", "i", fd);
    else
        r = PyObject_CallMethod(core->poller,
                                s->mask == 0 ? "register" : "modify", "iI", fd, mask);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    s->mask = mask;
    return 0;
}

/* Prepares fd for a wait by `owner` (0: readiness unknown, re-arm).  Returns
 * the slot, or NULL with an exception set. */
static fh_fd *fd_prepare(FhCore *core, int fd, long long owner)
{
    fh_fd *s;
    if (fd < 0) {
        PyErr_Format(PyExc_ValueError, "invalid file descriptor %d", fd);
        return NULL;
    }
    s = fd_slot(core, fd);
    if (s == NULL)
        return NULL;
    if (!s->known) {
        if (fd_watch(core, s, fd) < 0)
            return NULL;
        s->owner = owner;
    } else if (s->owner != owner || owner == 0) {
        if (core->epfd >= 0 && fd_rearm(core, fd) < 0)
            return NULL;
        s->owner = owner;
    }
    return s;
}

/* Raises OSError(err, msg) (or the subclass OSError picks for err). */
static void set_oserror(int err, const char *msg)
{
    PyObject *exc = PyObject_CallFunction(PyExc_OSError, "is", err, msg);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
}

static void set_closed_error(void)
{
    set_oserror(EBADF, "file descriptor was closed by another greenlet");
}

static PyObject *fd_wake_value(PyObject *r, int fd)
{
    /* What an fd wait returns, from what resumed it (consumed). */
    if (r == NULL)
        return NULL;
    if (PyLong_CheckExact(r)) {
        long ev = PyLong_AsLong(r);
        if ((unsigned long)ev & FH_NVAL) {
            char msg[64];
            Py_DECREF(r);
            snprintf(msg, sizeof(msg), "fd %d is not open", fd);
            set_oserror(EBADF, msg);
            return NULL;
        }
        return r;
    }
    if (r == mark_timeout) {
        Py_DECREF(r);
        PyErr_SetString(PyExc_TimeoutError, "timed out");
        return NULL;
    }
    if (r == mark_closed) {
        Py_DECREF(r);
        set_closed_error();
        return NULL;
    }
    PyErr_Format(PyExc_RuntimeError, "fd wait resumed with an unexpected value %R", r);
    Py_DECREF(r);
    return NULL;
}

/* The wait of fh_wait_fd, returning what resumed it (a new reference). */
static PyObject *fd_wait(FhCore *core, int fd, unsigned int event, double timeout,
                         long long owner)
{
    PyObject *cur = fh_getcurrent(), *r, **slotp;
    FhTimer *timer = NULL;
    fh_fd *s;
    PyObject *et, *ev, *etb;

    if (cur == NULL)
        return NULL;
    if (cur == core->hub) {
        PyErr_SetString(PyExc_RuntimeError, "cannot block in the hub (in a hub callback)");
        return NULL;
    }
    s = fd_prepare(core, fd, owner);
    if (s == NULL)
        return NULL;
    slotp = event == EPOLLIN ? &s->reader : &s->writer;
    if (*slotp != NULL) {
        PyErr_Format(exc_concurrent, "fd %d is already waited on for %s by %R", fd,
                     event == EPOLLIN ? "reading" : "writing", *slotp);
        return NULL;
    }
    *slotp = Py_NewRef(cur);
    if (fd_interest(core, fd) < 0) {
        s = &core->fds[fd];
        slotp = event == EPOLLIN ? &s->reader : &s->writer;
        Py_CLEAR(*slotp);
        return NULL;
    }
    if (timeout >= 0.0) {
        timer = timer_add(core, timeout, FH_T_EXPIRE, NULL, cur);
        if (timer == NULL) {
            s = &core->fds[fd];
            slotp = event == EPOLLIN ? &s->reader : &s->writer;
            Py_CLEAR(*slotp);
            return NULL;
        }
        Py_INCREF(timer);
    }
    /* The core must outlive this wait, even if the hub is destroyed while
     * we are suspended (then it is closed: empty, but still there). */
    Py_INCREF(core);
    core->nwait++;
    r = fh_switch(core->hub, NULL);
    /* Resumed: clean up, whatever resumed us (fds may have moved). */
    PyErr_Fetch(&et, &ev, &etb);
    core->nwait--;
    if (fd < core->nfds) {
        s = &core->fds[fd];
        if (s->reader == cur)
            Py_CLEAR(s->reader);
        if (s->writer == cur)
            Py_CLEAR(s->writer);
        if (fd_interest(core, fd) < 0)
            PyErr_WriteUnraisable(core->hub);
    }
    if (timer != NULL) {
        timer_cancel(timer);
        Py_DECREF(timer);
    }
    if (core->pending != NULL && PyDict_GET_SIZE(core->pending)) {
        PyObject *v = fh_dict_pop(core->pending, cur);
        Py_XDECREF(v);
        if (v == NULL && PyErr_Occurred())
            PyErr_WriteUnraisable(core->hub);
    }
    Py_DECREF(core);
    PyErr_Restore(et, ev, etb);
    return r;
}

int fh_wait_fd(FhCore *core, int fd, unsigned int event, double timeout, long long owner)
{
    PyObject *r = fd_wait(core, fd, event, timeout, owner);
    if (r == NULL)
        return -1;
    if (r == mark_closed) {
        Py_DECREF(r);
        set_closed_error();
        return -1;
    }
    r = fd_wake_value(r, fd);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* ------------------------------------------------------------------------
 * The loop
 */

/* Moves the callbacks other threads queued into the ring. */
static int drain_threadsafe(FhCore *core)
{
    unsigned long long count;
    PyObject *list;
    if (read(core->wake_fd, &count, sizeof(count)) < 0 && errno != EAGAIN) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    if (PyList_GET_SIZE(core->tsafe) == 0)
        return 0;
    list = core->tsafe;
    core->tsafe = PyList_New(0);
    if (core->tsafe == NULL) {
        core->tsafe = list;
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
        PyObject *item = PyList_GET_ITEM(list, i);
        if (ring_push(core, PyTuple_GET_ITEM(item, 0), PyTuple_GET_ITEM(item, 1)) < 0) {
            Py_DECREF(list);
            return -1;
        }
    }
    Py_DECREF(list);
    return 0;
}

/* Resumes the waiters of fd for the events `ev`.  Returns 0 or -1 with an
 * exception the loop must not swallow. */
static int dispatch(FhCore *core, int fd, unsigned int ev)
{
    PyObject *g, *r, *value;
    if (fd == core->wake_fd)
        return drain_threadsafe(core);
    if (fd < 0 || fd >= core->nfds || !core->fds[fd].known)
        return 0;
    value = NULL;
    if ((ev & FH_READ_WAKE) && (g = core->fds[fd].reader) != NULL) {
        core->fds[fd].reader = NULL;
        value = PyLong_FromUnsignedLong(ev);
        r = value != NULL ? fh_switch(g, value) : NULL;
        if (r == NULL && fh_report(core, g) < 0) {
            Py_DECREF(g);
            Py_XDECREF(value);
            return -1;
        }
        Py_XDECREF(r);
        Py_DECREF(g);
    }
    /* The reader may have closed fd, or grown the table: look again. */
    if ((ev & FH_WRITE_WAKE) && fd < core->nfds && core->fds[fd].known
        && (g = core->fds[fd].writer) != NULL) {
        core->fds[fd].writer = NULL;
        if (value == NULL)
            value = PyLong_FromUnsignedLong(ev);
        r = value != NULL ? fh_switch(g, value) : NULL;
        if (r == NULL && fh_report(core, g) < 0) {
            Py_DECREF(g);
            Py_XDECREF(value);
            return -1;
        }
        Py_XDECREF(r);
        Py_DECREF(g);
    }
    Py_XDECREF(value);
    return 0;
}

/* Waits for fd events (timeout < 0: forever) and dispatches them. */
static int poll_and_dispatch(FhCore *core, double timeout)
{
    if (core->epfd >= 0) {
        int ms, n;
        if (timeout < 0)
            ms = -1;
        else if (timeout >= 2e6)
            ms = 2000000000;
        else
            ms = (int)ceil(timeout * 1000.0);
        if (ms == 0) {
            n = epoll_wait(core->epfd, core->events, FH_MAX_EVENTS, 0);
        } else {
            Py_BEGIN_ALLOW_THREADS
            n = epoll_wait(core->epfd, core->events, FH_MAX_EVENTS, ms);
            Py_END_ALLOW_THREADS
        }
        if (n < 0) {
            if (errno == EINTR)
                return PyErr_CheckSignals();
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        for (int i = 0; i < n; i++) {
            if (dispatch(core, core->events[i].data.fd, core->events[i].events) < 0)
                return -1;
        }
        return 0;
    } else {
        PyObject *t = timeout < 0 ? Py_NewRef(Py_None) : PyFloat_FromDouble(timeout);
        PyObject *events;
        if (t == NULL)
            return -1;
        events = PyObject_CallMethodOneArg(core->poller, str_poll, t);
        Py_DECREF(t);
        if (events == NULL)
            return -1;
        if (!PyList_CheckExact(events)) {
            Py_SETREF(events, PySequence_List(events));
            if (events == NULL)
                return -1;
        }
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(events); i++) {
            PyObject *item = PyList_GET_ITEM(events, i);
            int fd = (int)PyLong_AsLong(PyTuple_GET_ITEM(item, 0));
            unsigned int ev = (unsigned int)PyLong_AsUnsignedLong(PyTuple_GET_ITEM(item, 1));
            if (PyErr_Occurred() || dispatch(core, fd, ev) < 0) {
                Py_DECREF(events);
                return -1;
            }
        }
        Py_DECREF(events);
        return 0;
    }
}

/* The loop.  Returns only with an exception that is not the loop's to
 * handle (GreenletExit: the hub is destroyed; KeyboardInterrupt, ...). */
static PyObject *core_run(FhCore *self, PyObject *unused)
{
    (void)unused;
    for (;;) {
        /* 1. the ring entries queued before this turn */
        Py_ssize_t n = self->ring_len;
        while (n-- > 0 && self->ring_len > 0) {
            fh_entry e = ring_pop(self);
            PyObject *r;
            if (e.args != NULL) {
                r = PyObject_Call(e.obj, e.args, NULL);
                Py_DECREF(e.args);
            } else {
                PyObject *value = fh_dict_pop(self->pending, e.obj);
                if (value == NULL) {
                    Py_DECREF(e.obj);
                    if (PyErr_Occurred())
                        return NULL;
                    continue;   /* its wait ended otherwise */
                }
                r = fh_switch(e.obj, value);
                Py_DECREF(value);
            }
            if (r == NULL && fh_report(self, e.obj) < 0) {
                Py_DECREF(e.obj);
                return NULL;
            }
            Py_XDECREF(r);
            Py_DECREF(e.obj);
        }
        /* 2. the due timers */
        if (self->nheap > 0) {
            double now = fh_now();
            while (self->nheap > 0 && self->heap[0]->when <= now) {
                FhTimer *t = self->heap[0];
                heap_remove(self, t);
                if (timer_fire(self, t) < 0)
                    return NULL;
            }
        }
        /* 3. the OS */
        double timeout;
        if (self->ring_len > 0) {
            if (self->nwait == 0 && self->thread_jobs == 0)
                continue;
            timeout = 0.0;
        } else if (self->nheap > 0) {
            timeout = self->heap[0]->when - fh_now();
            if (timeout < 0.0)
                timeout = 0.0;
        } else if (self->nwait > 0 || self->thread_jobs > 0) {
            timeout = -1.0;
        } else {
            /* Nothing could ever happen: tell the main greenlet. */
            PyObject *r = PyObject_CallNoArgs(self->loop_exit);
            if (r == NULL && fh_report(self, self->loop_exit) < 0)
                return NULL;
            Py_XDECREF(r);
            continue;
        }
        if (poll_and_dispatch(self, timeout) < 0 && fh_report(self, self->hub) < 0)
            return NULL;
    }
}

/* ------------------------------------------------------------------------
 * The Python methods of HubCore
 */

static PyObject *core_schedule(FhCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "schedule(greenlet, value=None)");
        return NULL;
    }
    if (!FcGreenlet_Check(args[0])) {
        PyErr_Format(PyExc_TypeError, "can only schedule a greenlet, not %s",
                     Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    if (fh_schedule(self, args[0], nargs == 2 ? args[1] : Py_None) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *core_unschedule(FhCore *self, PyObject *g)
{
    PyObject *v = fh_dict_pop(self->pending, g);
    if (v == NULL && !PyErr_Occurred())
        return Py_NewRef(mark_missing);
    return v;
}

static PyObject *core_run_callback(FhCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *cbargs;
    int rc;
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "run_callback(fn, *args)");
        return NULL;
    }
    cbargs = PyTuple_New(nargs - 1);
    if (cbargs == NULL)
        return NULL;
    for (Py_ssize_t i = 1; i < nargs; i++)
        PyTuple_SET_ITEM(cbargs, i - 1, Py_NewRef(args[i]));
    rc = ring_push(self, args[0], cbargs);
    Py_DECREF(cbargs);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *core_run_callback_threadsafe(FhCore *self, PyObject *const *args,
                                              Py_ssize_t nargs)
{
    PyObject *cbargs, *item;
    int rc;
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "run_callback_threadsafe(fn, *args)");
        return NULL;
    }
    cbargs = PyTuple_New(nargs - 1);
    if (cbargs == NULL)
        return NULL;
    for (Py_ssize_t i = 1; i < nargs; i++)
        PyTuple_SET_ITEM(cbargs, i - 1, Py_NewRef(args[i]));
    item = PyTuple_Pack(2, args[0], cbargs);
    Py_DECREF(cbargs);
    if (item == NULL)
        return NULL;
    rc = PyList_Append(self->tsafe, item);
    Py_DECREF(item);
    if (rc < 0)
        return NULL;
    if (self->wake_fd >= 0) {
        unsigned long long one = 1;
        /* May fail only if the counter is full: then the hub is awake. */
        if (write(self->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
            return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyObject *core_start_thread_job(FhCore *self, PyObject *unused)
{
    (void)unused;
    if (self->wake_fd < 0) {
        int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        fh_fd *s;
        if (fd < 0)
            return PyErr_SetFromErrno(PyExc_OSError);
        s = fd_slot(self, fd);
        if (s == NULL || fd_watch(self, s, fd) < 0) {
            close(fd);
            return NULL;
        }
        if (self->epfd < 0) {
            PyObject *r = PyObject_CallMethod(self->poller, "register", "iI", fd,
                                              (unsigned int)EPOLLIN);
            if (r == NULL) {
                s->known = 0;
                close(fd);
                return NULL;
            }
            Py_DECREF(r);
            s->mask = EPOLLIN;
        }
        self->wake_fd = fd;
    }
    self->thread_jobs++;
    Py_RETURN_NONE;
}

static PyObject *core_end_thread_job(FhCore *self, PyObject *unused)
{
    (void)unused;
    if (self->thread_jobs > 0)
        self->thread_jobs--;
    Py_RETURN_NONE;
}

static PyObject *core_call_later(FhCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    double seconds;
    FhTimer *t;
    if (nargs < 2 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "call_later(seconds, fn, arg=None)");
        return NULL;
    }
    if (fh_timeout_arg(args[0], &seconds) < 0)
        return NULL;
    if (seconds < 0.0) {
        PyErr_SetString(PyExc_ValueError, "call_later needs a number of seconds");
        return NULL;
    }
    t = timer_add(self, seconds, FH_T_CALL, args[1], nargs == 3 ? args[2] : Py_None);
    return t != NULL ? Py_NewRef((PyObject *)t) : NULL;
}

static PyObject *core_cancel_timer(FhCore *self, PyObject *t)
{
    (void)self;
    if (!PyObject_TypeCheck(t, &FhTimer_Type)) {
        PyErr_Format(PyExc_TypeError, "not a timer: %R", t);
        return NULL;
    }
    timer_cancel((FhTimer *)t);
    Py_RETURN_NONE;
}

/* wait(cur, timeout=None, on_drop=None) */
static PyObject *core_wait(FhCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *cur, *on_drop = Py_None, *r;
    double timeout = -1.0;
    FhTimer *timer = NULL;

    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "wait(cur, timeout=None, on_drop=None)");
        return NULL;
    }
    cur = args[0];
    if (nargs >= 2 && fh_timeout_arg(args[1], &timeout) < 0)
        return NULL;
    if (nargs == 3)
        on_drop = args[2];
    if (cur == self->hub) {
        PyErr_SetString(PyExc_RuntimeError, "cannot block in the hub (in a hub callback)");
        return NULL;
    }
    if (cur != fh_getcurrent()) {
        PyErr_SetString(PyExc_RuntimeError, "wait(cur): cur must be the current greenlet");
        return NULL;
    }
    if (timeout >= 0.0) {
        timer = timer_add(self, timeout, FH_T_EXPIRE, NULL, cur);
        if (timer == NULL)
            return NULL;
        Py_INCREF(timer);
    }
    r = fh_switch(self->hub, NULL);
    if (timer != NULL) {
        timer_cancel(timer);
        Py_DECREF(timer);
    }
    if (r == NULL) {
        /* An exception was thrown in: drop (and hand back) any wake-up. */
        PyObject *et, *ev, *etb, *v;
        PyErr_Fetch(&et, &ev, &etb);
        v = self->pending != NULL ? fh_dict_pop(self->pending, cur) : NULL;
        if (v != NULL && on_drop != Py_None) {
            PyObject *rr = PyObject_CallOneArg(on_drop, v);
            if (rr == NULL)
                PyErr_WriteUnraisable(on_drop);
            Py_XDECREF(rr);
        } else if (v == NULL && PyErr_Occurred()) {
            PyErr_WriteUnraisable(self->hub);
        }
        Py_XDECREF(v);
        PyErr_Restore(et, ev, etb);
    }
    return r;
}

/* wait_fd(fd, event, timeout=None, owner=0) */
static PyObject *core_wait_fd(FhCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    unsigned long event;
    double timeout = -1.0;
    long long owner = 0;
    PyObject *r;

    if (nargs < 2 || nargs > 4) {
        PyErr_SetString(PyExc_TypeError, "wait_fd(fd, event, timeout=None, owner=0)");
        return NULL;
    }
    if (!PyLong_Check(args[0])) {
        PyErr_Format(PyExc_TypeError, "fd must be an int, not %s", Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    fd = PyLong_AsInt(args[0]);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    event = PyLong_AsUnsignedLong(args[1]);
    if (PyErr_Occurred())
        return NULL;
    if (event != EPOLLIN && event != EPOLLOUT) {
        PyErr_Format(PyExc_ValueError, "event must be READ or WRITE, not %R", args[1]);
        return NULL;
    }
    if (nargs >= 3 && fh_timeout_arg(args[2], &timeout) < 0)
        return NULL;
    if (nargs == 4) {
        owner = PyLong_AsLongLong(args[3]);
        if (owner == -1 && PyErr_Occurred())
            return NULL;
    }
    r = fd_wait(self, fd, (unsigned int)event, timeout, owner);
    if (r == mark_closed) {
        Py_DECREF(r);
        set_closed_error();
        return NULL;
    }
    return fd_wake_value(r, fd);
}

/* Clears cur from every slot it holds among `fds` (a list of ints). */
static void unwatch_all(FhCore *self, PyObject *fds, PyObject *cur)
{
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(fds); i++) {
        int fd = PyLong_AsInt(PyList_GET_ITEM(fds, i));
        if (fd < 0 || fd >= self->nfds) {
            PyErr_Clear();
            continue;
        }
        if (self->fds[fd].reader == cur)
            Py_CLEAR(self->fds[fd].reader);
        if (self->fds[fd].writer == cur)
            Py_CLEAR(self->fds[fd].writer);
        if (fd_interest(self, fd) < 0)
            PyErr_WriteUnraisable(self->hub);
    }
}

/* wait_fds(rfds, wfds, timeout=None): any of them; re-arms each fd. */
static PyObject *core_wait_fds(FhCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *cur = fh_getcurrent(), *all = NULL, *r = NULL;
    double timeout = -1.0;
    FhTimer *timer = NULL;

    if (cur == NULL)
        return NULL;
    if (nargs < 2 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "wait_fds(rfds, wfds, timeout=None)");
        return NULL;
    }
    if (nargs == 3 && fh_timeout_arg(args[2], &timeout) < 0)
        return NULL;
    if (cur == self->hub) {
        PyErr_SetString(PyExc_RuntimeError, "cannot block in the hub (in a hub callback)");
        return NULL;
    }
    all = PyList_New(0);
    if (all == NULL)
        return NULL;
    for (int dir = 0; dir < 2; dir++) {
        PyObject *seq = PySequence_Fast(args[dir], "wait_fds needs lists of fds");
        if (seq == NULL)
            goto fail;
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
            PyObject *item = PySequence_Fast_GET_ITEM(seq, i), *other;
            int fd;
            fh_fd *s;
            if (!PyLong_Check(item)) {
                PyErr_Format(PyExc_TypeError, "fd must be an int, not %s",
                             Py_TYPE(item)->tp_name);
                Py_DECREF(seq);
                goto fail;
            }
            fd = PyLong_AsInt(item);
            if ((fd == -1 && PyErr_Occurred()) || (s = fd_prepare(self, fd, 0)) == NULL
                || PyList_Append(all, item) < 0) {
                Py_DECREF(seq);
                goto fail;
            }
            other = dir == 0 ? s->reader : s->writer;
            if (other != NULL && other != cur) {
                PyErr_Format(exc_concurrent, "fd %d is already waited on for %s by %R", fd,
                             dir == 0 ? "reading" : "writing", other);
                Py_DECREF(seq);
                goto fail;
            }
            if (other == NULL) {
                if (dir == 0)
                    s->reader = Py_NewRef(cur);
                else
                    s->writer = Py_NewRef(cur);
            }
            if (fd_interest(self, fd) < 0) {
                Py_DECREF(seq);
                goto fail;
            }
        }
        Py_DECREF(seq);
    }
    if (timeout >= 0.0) {
        timer = timer_add(self, timeout, FH_T_EXPIRE, NULL, cur);
        if (timer == NULL)
            goto fail;
        Py_INCREF(timer);
    }
    self->nwait++;
    r = fh_switch(self->hub, NULL);
    self->nwait--;
    {
        PyObject *et, *ev, *etb, *v;
        PyErr_Fetch(&et, &ev, &etb);
        if (timer != NULL) {
            timer_cancel(timer);
            Py_DECREF(timer);
        }
        unwatch_all(self, all, cur);
        v = self->pending != NULL ? fh_dict_pop(self->pending, cur) : NULL;
        Py_XDECREF(v);
        if (v == NULL && PyErr_Occurred())
            PyErr_WriteUnraisable(self->hub);
        PyErr_Restore(et, ev, etb);
    }
    Py_DECREF(all);
    if (r == mark_closed) {
        Py_DECREF(r);
        set_closed_error();
        return NULL;
    }
    if (r != NULL && PyLong_CheckExact(r) && (PyLong_AsUnsignedLong(r) & FH_NVAL)) {
        Py_DECREF(r);
        set_oserror(EBADF, "an fd is not open");
        return NULL;
    }
    return r;
fail:
    unwatch_all(self, all, cur);
    Py_DECREF(all);
    return NULL;
}

/* close_fd(fd): forget fd (before it is closed); its waiters get EBADF. */
static PyObject *core_close_fd(FhCore *self, PyObject *arg)
{
    int fd = PyLong_AsInt(arg);
    fh_fd *s;
    PyObject *reader, *writer;
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (fd < 0 || fd >= self->nfds || !self->fds[fd].known)
        Py_RETURN_NONE;
    s = &self->fds[fd];
    if (self->epfd >= 0) {
        (void)epoll_set(self, EPOLL_CTL_DEL, fd, 0);
    } else if (s->mask != 0 && self->poller != NULL) {
        PyObject *r = PyObject_CallMethodObjArgs(self->poller, str_unregister, arg, NULL);
        if (r == NULL)
            PyErr_Clear();
        Py_XDECREF(r);
    }
    reader = s->reader;
    writer = s->writer;
    memset(s, 0, sizeof(*s));
    if (reader != NULL && fh_schedule(self, reader, mark_closed) < 0)
        PyErr_WriteUnraisable(self->hub);
    if (writer != NULL && fh_schedule(self, writer, mark_closed) < 0)
        PyErr_WriteUnraisable(self->hub);
    Py_XDECREF(reader);
    Py_XDECREF(writer);
    Py_RETURN_NONE;
}

/* reinit(poller): after fork, or to switch pollers: re-register the fds. */
static PyObject *core_reinit(FhCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    int epfd;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "reinit(epoll_fd, poller)");
        return NULL;
    }
    epfd = PyLong_AsInt(args[0]);
    if (epfd == -1 && PyErr_Occurred())
        return NULL;
    self->epfd = epfd;
    Py_XSETREF(self->poller, args[1] == Py_None ? NULL : Py_NewRef(args[1]));
    if (self->wake_fd >= 0) {
        close(self->wake_fd);
        self->fds[self->wake_fd].known = 0;
        self->wake_fd = -1;
        self->thread_jobs = 0;
    }
    for (int fd = 0; fd < self->nfds; fd++) {
        fh_fd *s = &self->fds[fd];
        if (!s->known)
            continue;
        s->known = 0;
        s->mask = 0;
        s->owner = 0;
        if (fd_watch(self, s, fd) < 0 || fd_interest(self, fd) < 0)
            PyErr_Clear();  /* a dead fd: its waiter stays until its timeout */
    }
    Py_RETURN_NONE;
}

static PyObject *core_install(FhCore *self, PyObject *unused)
{
    (void)unused;
    tls_core = self;
    Py_RETURN_NONE;
}

static PyObject *core_uninstall(FhCore *self, PyObject *unused)
{
    (void)unused;
    if (tls_core == self)
        tls_core = NULL;
    Py_RETURN_NONE;
}

static int core_clear(FhCore *self);

static PyObject *core_close(FhCore *self, PyObject *unused)
{
    (void)unused;
    self->closed = 1;
    if (tls_core == self)
        tls_core = NULL;
    if (self->wake_fd >= 0) {
        close(self->wake_fd);
        self->wake_fd = -1;
    }
    self->epfd = -1;
    core_clear(self);
    Py_RETURN_NONE;
}

static PyObject *core_get_nready(FhCore *self, void *c)
{
    (void)c;
    return PyLong_FromSsize_t(self->ring_len);
}

static PyObject *core_get_ntimers(FhCore *self, void *c)
{
    (void)c;
    return PyLong_FromSsize_t(self->nheap);
}

static PyObject *core_get_nwait(FhCore *self, void *c)
{
    (void)c;
    return PyLong_FromSsize_t(self->nwait);
}

static PyMethodDef core_methods[] = {
    {"run", (PyCFunction)core_run, METH_NOARGS,
     "run()\n--\n\nThe loop; returns only by raising (GreenletExit, KeyboardInterrupt...)."},
    {"schedule", (PyCFunction)(void (*)(void))core_schedule, METH_FASTCALL,
     "schedule(g, value=None)\n--\n\nResume g (waiting in the hub) with value at the next turn."},
    {"unschedule", (PyCFunction)core_unschedule, METH_O,
     "unschedule(g)\n--\n\nDrop g's pending wake-up; its value, or MISSING."},
    {"run_callback", (PyCFunction)(void (*)(void))core_run_callback, METH_FASTCALL,
     "run_callback(fn, *args)\n--\n\nCall fn(*args) in the hub at the next turn."},
    {"run_callback_threadsafe", (PyCFunction)(void (*)(void))core_run_callback_threadsafe,
     METH_FASTCALL,
     "run_callback_threadsafe(fn, *args)\n--\n\nrun_callback from another thread."},
    {"start_thread_job", (PyCFunction)core_start_thread_job, METH_NOARGS,
     "start_thread_job()\n--\n\nCount a job another thread ends with run_callback_threadsafe."},
    {"end_thread_job", (PyCFunction)core_end_thread_job, METH_NOARGS,
     "end_thread_job()\n--\n\nThe job counted by start_thread_job is over."},
    {"call_later", (PyCFunction)(void (*)(void))core_call_later, METH_FASTCALL,
     "call_later(seconds, fn, arg=None)\n--\n\nCall fn(arg) in the hub in seconds; "
     "returns a timer for cancel_timer."},
    {"cancel_timer", (PyCFunction)core_cancel_timer, METH_O,
     "cancel_timer(timer)\n--\n\nCancel it (no effect if it fired)."},
    {"wait", (PyCFunction)(void (*)(void))core_wait, METH_FASTCALL,
     "wait(cur, timeout=None, on_drop=None)\n--\n\n"
     "Suspend cur (the current greenlet, registered somewhere) until it is resumed;\n"
     "the wake-up value, or TIMEOUT.  If an exception is thrown in, a pending\n"
     "wake-up's value goes to on_drop."},
    {"wait_fd", (PyCFunction)(void (*)(void))core_wait_fd, METH_FASTCALL,
     "wait_fd(fd, event, timeout=None, owner=0)\n--\n\n"
     "Suspend until fd is ready for event (READ or WRITE); the poll mask.\n"
     "TimeoutError, OSError(EBADF) if closed meanwhile, ConcurrentUseError."},
    {"wait_fds", (PyCFunction)(void (*)(void))core_wait_fds, METH_FASTCALL,
     "wait_fds(rfds, wfds, timeout=None)\n--\n\n"
     "Suspend until any fd of rfds is readable or of wfds writable (or TIMEOUT)."},
    {"close_fd", (PyCFunction)core_close_fd, METH_O,
     "close_fd(fd)\n--\n\nForget fd before it is closed; its waiters get OSError(EBADF)."},
    {"reinit", (PyCFunction)(void (*)(void))core_reinit, METH_FASTCALL,
     "reinit(epoll_fd, poller)\n--\n\nUse a new poller (after fork): re-register the fds."},
    {"install", (PyCFunction)core_install, METH_NOARGS,
     "install()\n--\n\nMake this the running thread's core (for sleep and the sockets)."},
    {"uninstall", (PyCFunction)core_uninstall, METH_NOARGS,
     "uninstall()\n--\n\nUndo install()."},
    {"close", (PyCFunction)core_close, METH_NOARGS,
     "close()\n--\n\nDrop everything the core holds; it cannot be used any more."},
    {NULL, NULL, 0, NULL}
};

static PyGetSetDef core_getsets[] = {
    {"nready", (getter)core_get_nready, NULL, "Ring entries waiting for the next turn.", NULL},
    {"ntimers", (getter)core_get_ntimers, NULL, "Timers set.", NULL},
    {"nwait", (getter)core_get_nwait, NULL, "Greenlets waiting on fds.", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

/* HubCore(hub, handle_error, loop_exit, epoll_fd, poller) */
static PyObject *core_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *hub, *handle_error, *loop_exit, *poller;
    int epfd;
    FhCore *self;
    if (kwds != NULL && PyDict_GET_SIZE(kwds) != 0) {
        PyErr_SetString(PyExc_TypeError, "HubCore takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OOOiO:HubCore", &hub, &handle_error, &loop_exit, &epfd,
                          &poller))
        return NULL;
    if (!FcGreenlet_Check(hub)) {
        PyErr_SetString(PyExc_TypeError, "the hub must be a greenlet");
        return NULL;
    }
    if (switch_descr == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "fastco.hub did not call hub_setup");
        return NULL;
    }
    self = (FhCore *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->hub = Py_NewRef(hub);
    self->handle_error = Py_NewRef(handle_error);
    self->loop_exit = Py_NewRef(loop_exit);
    self->epfd = epfd;
    self->poller = epfd >= 0 || poller == Py_None ? NULL : Py_NewRef(poller);
    self->wake_fd = -1;
    self->pending = PyDict_New();
    self->tsafe = PyList_New(0);
    if (self->pending == NULL || self->tsafe == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int core_traverse(FhCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->hub);
    Py_VISIT(self->poller);
    Py_VISIT(self->handle_error);
    Py_VISIT(self->loop_exit);
    Py_VISIT(self->pending);
    Py_VISIT(self->tsafe);
    for (Py_ssize_t i = 0; i < self->ring_len; i++) {
        fh_entry *e = &self->ring[(self->ring_head + i) % self->ring_cap];
        Py_VISIT(e->obj);
        Py_VISIT(e->args);
    }
    for (Py_ssize_t i = 0; i < self->nheap; i++)
        Py_VISIT(self->heap[i]);
    for (Py_ssize_t i = 0; i < self->nfds; i++) {
        Py_VISIT(self->fds[i].reader);
        Py_VISIT(self->fds[i].writer);
    }
    return 0;
}

static int core_clear(FhCore *self)
{
    while (self->ring_len > 0) {
        fh_entry e = ring_pop(self);
        Py_DECREF(e.obj);
        Py_XDECREF(e.args);
    }
    while (self->nheap > 0) {
        FhTimer *t = self->heap[self->nheap - 1];
        heap_remove(self, t);
        Py_CLEAR(t->fn);
        Py_CLEAR(t->arg);
        Py_DECREF(t);
    }
    for (Py_ssize_t i = 0; i < self->nfds; i++) {
        Py_CLEAR(self->fds[i].reader);
        Py_CLEAR(self->fds[i].writer);
        self->fds[i].known = 0;
    }
    Py_CLEAR(self->hub);
    Py_CLEAR(self->poller);
    Py_CLEAR(self->handle_error);
    Py_CLEAR(self->loop_exit);
    Py_CLEAR(self->pending);
    Py_CLEAR(self->tsafe);
    return 0;
}

static void core_dealloc(FhCore *self)
{
    PyObject_GC_UnTrack(self);
    if (tls_core == self)
        tls_core = NULL;
    core_clear(self);
    if (self->wake_fd >= 0)
        close(self->wake_fd);
    PyMem_Free(self->ring);
    PyMem_Free(self->heap);
    PyMem_Free(self->fds);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject FhCore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fastco.HubCore",
    .tp_basicsize = sizeof(FhCore),
    .tp_dealloc = (destructor)core_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "HubCore(hub, handle_error, loop_exit, epoll_fd, poller)\n--\n\n"
              "The native core of a hub (see fastco/hub.py): ready queue, timers,\n"
              "fd waits and the loop.  epoll_fd >= 0: edge-triggered epoll done in C;\n"
              "else the Python poller's register/modify/unregister/poll are used.",
    .tp_traverse = (traverseproc)core_traverse,
    .tp_clear = (inquiry)core_clear,
    .tp_methods = core_methods,
    .tp_getset = core_getsets,
    .tp_new = core_new,
};

/* ------------------------------------------------------------------------
 * Timers, as Python objects
 */

static PyObject *timer_get_pending(FhTimer *self, void *c)
{
    (void)c;
    return PyBool_FromLong(self->index >= 0);
}

static PyObject *timer_get_when(FhTimer *self, void *c)
{
    (void)c;
    return PyFloat_FromDouble(self->when);
}

static PyObject *timer_cancel_meth(FhTimer *self, PyObject *unused)
{
    (void)unused;
    timer_cancel(self);
    Py_RETURN_NONE;
}

static int timer_traverse(FhTimer *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fn);
    Py_VISIT(self->arg);
    return 0;
}

static int timer_clear(FhTimer *self)
{
    Py_CLEAR(self->fn);
    Py_CLEAR(self->arg);
    return 0;
}

static void timer_dealloc(FhTimer *self)
{
    PyObject_GC_UnTrack(self);
    timer_clear(self);
    PyObject_GC_Del(self);
}

static PyGetSetDef timer_getsets[] = {
    {"pending", (getter)timer_get_pending, NULL, "True until it fires or is cancelled.", NULL},
    {"when", (getter)timer_get_when, NULL, "Its deadline (monotonic seconds).", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

static PyMethodDef timer_methods[] = {
    {"cancel", (PyCFunction)timer_cancel_meth, METH_NOARGS,
     "cancel()\n--\n\nCancel the timer (no effect if it fired)."},
    {NULL, NULL, 0, NULL}
};

static PyTypeObject FhTimer_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fastco.HubTimer",
    .tp_basicsize = sizeof(FhTimer),
    .tp_dealloc = (destructor)timer_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A timer of a hub (from call_later).",
    .tp_traverse = (traverseproc)timer_traverse,
    .tp_clear = (inquiry)timer_clear,
    .tp_getset = timer_getsets,
    .tp_methods = timer_methods,
};

/* ------------------------------------------------------------------------
 * Module functions
 */

FhCore *fh_current(void)
{
    PyObject *hub;
    if (tls_core != NULL)
        return tls_core;
    if (py_get_hub == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "fastco.hub is not imported");
        return NULL;
    }
    hub = PyObject_CallNoArgs(py_get_hub);   /* makes one, and installs it */
    if (hub == NULL)
        return NULL;
    Py_DECREF(hub);
    if (tls_core == NULL)
        PyErr_SetString(PyExc_RuntimeError, "fastco.hub.get_hub did not install a core");
    return tls_core;
}

/* sleep(seconds=0) */
static PyObject *mod_sleep(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    double seconds = 0.0;
    FhCore *core;
    PyObject *cur, *r;
    (void)module;

    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "sleep(seconds=0)");
        return NULL;
    }
    if (nargs == 1) {
        PyObject *s = args[0];
        if (PyFloat_CheckExact(s))
            seconds = PyFloat_AS_DOUBLE(s);
        else if (PyLong_Check(s) || PyFloat_Check(s)) {
            seconds = PyFloat_AsDouble(s);
            if (seconds == -1.0 && PyErr_Occurred())
                return NULL;
        } else {
            PyErr_Format(PyExc_TypeError, "sleep length must be a number, not %s",
                         Py_TYPE(s)->tp_name);
            return NULL;
        }
        if (!(seconds >= 0.0)) {
            PyErr_Format(PyExc_ValueError, "sleep length must be non-negative, not %R", s);
            return NULL;
        }
    }
    core = tls_core != NULL ? tls_core : fh_current();
    if (core == NULL)
        return NULL;
    cur = fh_getcurrent();
    if (cur == NULL)
        return NULL;
    if (cur == core->hub) {
        PyErr_SetString(PyExc_RuntimeError, "cannot sleep in the hub (in a hub callback)");
        return NULL;
    }
    Py_INCREF(core);
    if (seconds == 0.0) {
        if (fh_schedule(core, cur, Py_None) < 0) {
            Py_DECREF(core);
            return NULL;
        }
        r = fh_switch(core->hub, NULL);
        if (r == NULL && core->pending != NULL) {
            PyObject *et, *ev, *etb, *v;
            PyErr_Fetch(&et, &ev, &etb);
            v = fh_dict_pop(core->pending, cur);
            Py_XDECREF(v);
            if (v == NULL && PyErr_Occurred())
                PyErr_WriteUnraisable(core->hub);
            PyErr_Restore(et, ev, etb);
        }
    } else {
        FhTimer *t = timer_add(core, seconds, FH_T_SWITCH, NULL, cur);
        if (t == NULL) {
            Py_DECREF(core);
            return NULL;
        }
        Py_INCREF(t);
        r = fh_switch(core->hub, NULL);
        timer_cancel(t);
        Py_DECREF(t);
    }
    Py_DECREF(core);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_NONE;
}

/* hub_setup(greenlet_switch, TIMEOUT, CLOSED, MISSING, ConcurrentUseError, get_hub) */
static PyObject *mod_hub_setup(PyObject *module, PyObject *args)
{
    PyObject *sw, *t, *c, *m, *e, *g;
    (void)module;
    if (!PyArg_ParseTuple(args, "OOOOOO:hub_setup", &sw, &t, &c, &m, &e, &g))
        return NULL;
    Py_XSETREF(switch_descr, Py_NewRef(sw));
    Py_XSETREF(mark_timeout, Py_NewRef(t));
    Py_XSETREF(mark_closed, Py_NewRef(c));
    Py_XSETREF(mark_missing, Py_NewRef(m));
    Py_XSETREF(exc_concurrent, Py_NewRef(e));
    Py_XSETREF(py_get_hub, Py_NewRef(g));
    Py_RETURN_NONE;
}

static PyMethodDef hub_functions[] = {
    {"sleep", (PyCFunction)(void (*)(void))mod_sleep, METH_FASTCALL,
     "sleep(seconds=0)\n--\n\n"
     "Suspend the current greenlet for seconds; 0 yields to the other ready ones."},
    {"hub_setup", (PyCFunction)mod_hub_setup, METH_VARARGS,
     "hub_setup(switch, TIMEOUT, CLOSED, MISSING, ConcurrentUseError, get_hub)\n--\n\n"
     "Called once by fastco.hub."},
    {NULL, NULL, 0, NULL}
};

static int add_functions(PyObject *module, PyMethodDef *defs)
{
    for (PyMethodDef *d = defs; d->ml_name != NULL; d++) {
        PyObject *f = PyCFunction_NewEx(d, NULL, NULL);
        if (f == NULL || PyModule_AddObjectRef(module, d->ml_name, f) < 0) {
            Py_XDECREF(f);
            return -1;
        }
        Py_DECREF(f);
    }
    return 0;
}

int fc_hub_module_init(PyObject *module)
{
    str_register = PyUnicode_InternFromString("register");
    str_modify = PyUnicode_InternFromString("modify");
    str_unregister = PyUnicode_InternFromString("unregister");
    str_poll = PyUnicode_InternFromString("poll");
    if (str_register == NULL || str_modify == NULL || str_unregister == NULL
        || str_poll == NULL)
        return -1;
    if (PyType_Ready(&FhCore_Type) < 0 || PyType_Ready(&FhTimer_Type) < 0)
        return -1;
    if (PyModule_AddObjectRef(module, "HubCore", (PyObject *)&FhCore_Type) < 0
        || PyModule_AddObjectRef(module, "HubTimer", (PyObject *)&FhTimer_Type) < 0)
        return -1;
    if (add_functions(module, hub_functions) < 0 || add_functions(module, fh_sock_methods) < 0)
        return -1;
    return 0;
}
