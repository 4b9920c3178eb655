/*
 * hubfd.c - the fd waits of fastco's hub, and the polling that ends them.
 *
 * Per fd the core keeps the greenlet waiting to read, the one waiting to
 * write, the interest registered and the "owner": the socket object (its
 * serial number) for which the registration is known to be current.
 *
 * Edge-triggered epoll (the default): an fd is registered once, for both
 * directions, and kept.  A socket waits only after its call failed with
 * EAGAIN, and epoll reports every change after that, so the wait itself
 * makes no system call.  A registration belongs to the open file, not to the
 * fd number: if another object waits on the same number (the first one was
 * closed behind the hub's back), or the readiness is unknown (owner 0:
 * wait_read, select), the fd is re-armed first (EPOLL_CTL_MOD, which reports
 * the current readiness; ADD again if epoll forgot the fd).
 *
 * Level-triggered pollers (poll, select, in Python: fastco/_poller.py) get
 * exactly the directions somebody waits for, through their methods, or a
 * readable fd nobody reads would spin the loop.
 */
#include "hubcore.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------------
 * fds
 */

/* The slot of fd, growing the table as needed.  A slot past the table is
 * only made for an open fd: the table is indexed by fd, and an invalid
 * huge number must not cost gigabytes before it fails. */
fh_fd *fh_fd_slot(FhCore *core, int fd)
{
    if (fd >= core->nfds) {
        Py_ssize_t n = core->nfds ? core->nfds : 64;
        fh_fd *fds;
        if (fcntl(fd, F_GETFD) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            return NULL;
        }
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

int fh_epoll_set(FhCore *core, int op, int fd, unsigned int mask)
{
    struct epoll_event ev;
    ev.events = mask;
    ev.data.u64 = 0;
    ev.data.fd = fd;
    return epoll_ctl(core->epfd, op, fd, &ev);
}

/* Starts watching fd (epoll: registers it, which reports its current
 * readiness).  Returns 0 or -1 with an exception set. */
int fh_fd_watch(FhCore *core, fh_fd *s, int fd)
{
    if (fh_check_open(core) < 0)
        return -1;
    if (core->epfd >= 0) {
        if (fh_epoll_set(core, EPOLL_CTL_ADD, fd, FH_EDGE_MASK) < 0) {
            if (errno != EEXIST || fh_epoll_set(core, EPOLL_CTL_MOD, fd, FH_EDGE_MASK) < 0) {
                PyErr_SetFromErrno(PyExc_OSError);
                return -1;
            }
        }
        s->mask = FH_EDGE_MASK;
    } else {
        s->mask = 0;
    }
    s->known = 1;
    s->rready = s->wready = 1;   /* unknown: try the calls first */
    s->hup = 0;
    return 0;
}

/* Edge mode: makes epoll re-check fd's readiness now (it may have forgotten
 * the fd if it was closed behind the hub's back: register it again). */
static int fd_rearm(FhCore *core, int fd)
{
    if (fh_epoll_set(core, EPOLL_CTL_MOD, fd, FH_EDGE_MASK) == 0)
        return 0;
    if (errno == ENOENT && fh_epoll_set(core, EPOLL_CTL_ADD, fd, FH_EDGE_MASK) == 0)
        return 0;
    PyErr_SetFromErrno(PyExc_OSError);
    return -1;
}

/* Level mode: registers with the Python poller exactly the directions
 * somebody waits for. */
int fh_fd_interest(FhCore *core, int fd)
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
fh_fd *fh_fd_prepare(FhCore *core, int fd, long long owner)
{
    fh_fd *s;
    if (fd < 0) {
        PyErr_Format(PyExc_ValueError, "invalid file descriptor %d", fd);
        return NULL;
    }
    s = fh_fd_slot(core, fd);
    if (s == NULL)
        return NULL;
    if (!s->known) {
        if (fh_fd_watch(core, s, fd) < 0)
            return NULL;
        s->owner = owner;
    } else if (s->owner != owner || owner == 0) {
        if (core->epfd >= 0 && fd_rearm(core, fd) < 0)
            return NULL;
        s->owner = owner;
        s->rready = s->wready = 1;   /* maybe another open file: forget the hints */
        s->hup = 0;
    }
    return s;
}

/* Raises OSError(err, msg) (or the subclass OSError picks for err). */
void fh_set_oserror(int err, const char *msg)
{
    PyObject *exc = PyObject_CallFunction(PyExc_OSError, "is", err, msg);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
}

void fh_set_closed_error(void)
{
    fh_set_oserror(EBADF, "file descriptor was closed by another greenlet");
}

PyObject *fh_fd_wake_value(PyObject *r, int fd)
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
            fh_set_oserror(EBADF, msg);
            return NULL;
        }
        return r;
    }
    if (r == fh_mark_timeout) {
        Py_DECREF(r);
        PyErr_SetString(PyExc_TimeoutError, "timed out");
        return NULL;
    }
    if (r == fh_mark_closed) {
        Py_DECREF(r);
        fh_set_closed_error();
        return NULL;
    }
    PyErr_Format(PyExc_RuntimeError, "fd wait resumed with an unexpected value %R", r);
    Py_DECREF(r);
    return NULL;
}

/* The wait of fh_wait_fd, returning what resumed it (a new reference). */
PyObject *fh_fd_wait(FhCore *core, int fd, unsigned int event, double timeout,
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
    s = fh_fd_prepare(core, fd, owner);
    if (s == NULL)
        return NULL;
    slotp = event == EPOLLIN ? &s->reader : &s->writer;
    if (*slotp != NULL) {
        PyErr_Format(fh_exc_concurrent, "fd %d is already waited on for %s by %R", fd,
                     event == EPOLLIN ? "reading" : "writing", *slotp);
        return NULL;
    }
    *slotp = Py_NewRef(cur);
    if (fh_fd_interest(core, fd) < 0)
        goto unslot;
    if (timeout >= 0.0) {
        timer = fh_timer_add(core, timeout, FH_T_EXPIRE, NULL, cur);
        if (timer == NULL)
            goto unslot;
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
    fh_fd_unwatch(core, fd, cur);
    if (timer != NULL) {
        fh_timer_cancel(timer);
        Py_DECREF(timer);
    }
    fh_pending_discard(core, cur);
    Py_DECREF(core);
    PyErr_Restore(et, ev, etb);
    return r;

unslot:   /* failed before waiting: take cur out of its slot (fds may have moved) */
    s = &core->fds[fd];
    slotp = event == EPOLLIN ? &s->reader : &s->writer;
    Py_CLEAR(*slotp);
    return NULL;
}

/* Takes g out of fd's slots, and updates the interest (level mode). */
void fh_fd_unwatch(FhCore *core, int fd, PyObject *g)
{
    fh_fd *s;
    if (fd < 0 || fd >= core->nfds)
        return;
    s = &core->fds[fd];
    if (s->reader == g)
        Py_CLEAR(s->reader);
    if (s->writer == g)
        Py_CLEAR(s->writer);
    if (fh_fd_interest(core, fd) < 0)
        PyErr_WriteUnraisable(core->hub);
}

int fh_wait_fd(FhCore *core, int fd, unsigned int event, double timeout, long long owner)
{
    PyObject *r = fh_fd_wake_value(fh_fd_wait(core, fd, event, timeout, owner), fd);
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
        if (fh_ring_push(core, PyTuple_GET_ITEM(item, 0), PyTuple_GET_ITEM(item, 1)) < 0) {
            Py_DECREF(list);
            return -1;
        }
    }
    Py_DECREF(list);
    return 0;
}

/* Switches to waiter g (a reference taken from its fd slot, consumed) with
 * the event mask, made once per dispatch in *value.  Returns 0 or -1 with
 * an exception the loop must not swallow. */
static int wake(FhCore *core, PyObject *g, PyObject **value, unsigned int ev)
{
    PyObject *r;
    if (*value == NULL) {
        *value = PyLong_FromUnsignedLong(ev);
        if (*value == NULL) {
            /* Out of memory: g must be resumed all the same, or it waits
             * forever.  The low byte (IN, PRI, OUT, ERR, HUP, NVAL) is a
             * cached small int, which cannot fail. */
            PyErr_Clear();
            *value = PyLong_FromUnsignedLong(ev & 0xffu);
        }
    }
    r = fh_switch(g, *value);
    if (r == NULL && fh_report(core, g) < 0) {
        Py_DECREF(g);
        return -1;
    }
    Py_XDECREF(r);
    Py_DECREF(g);
    return 0;
}

/* Resumes the waiters of fd for the events `ev`.  Returns 0 or -1 with an
 * exception the loop must not swallow. */
static int dispatch(FhCore *core, int fd, unsigned int ev)
{
    PyObject *g, *value = NULL;
    int rc = 0;
    if (fd == core->wake_fd)
        return drain_threadsafe(core);
    if (fd < 0 || fd >= core->nfds || !core->fds[fd].known)
        return 0;
    /* The readiness hints follow every edge, waited for or not. */
    if (ev & FH_READ_WAKE)
        core->fds[fd].rready = 1;
    if (ev & FH_WRITE_WAKE)
        core->fds[fd].wready = 1;
    if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR | FH_NVAL))
        core->fds[fd].hup = 1;
    if ((ev & FH_READ_WAKE) && (g = core->fds[fd].reader) != NULL) {
        core->fds[fd].reader = NULL;
        rc = wake(core, g, &value, ev);
    }
    /* The reader may have closed fd, or grown the table: look again. */
    if (rc == 0 && (ev & FH_WRITE_WAKE) && fd < core->nfds && core->fds[fd].known
        && (g = core->fds[fd].writer) != NULL) {
        core->fds[fd].writer = NULL;
        rc = wake(core, g, &value, ev);
    }
    Py_XDECREF(value);
    return rc;
}

/* Waits for fd events (timeout < 0: forever) and dispatches them. */
int fh_poll_and_dispatch(FhCore *core, double timeout)
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
        /* Edge-triggered: an event not dispatched now is never reported
         * again, so an error (KeyboardInterrupt from a woken greenlet, ...)
         * is held until the whole batch is dispatched. */
        PyObject *et = NULL, *ev = NULL, *etb = NULL;
        for (int i = 0; i < n; i++) {
            if (dispatch(core, core->events[i].data.fd, core->events[i].events) < 0) {
                if (et == NULL)
                    PyErr_Fetch(&et, &ev, &etb);
                else
                    PyErr_WriteUnraisable(core->hub);
            }
        }
        if (et != NULL) {
            PyErr_Restore(et, ev, etb);
            return -1;
        }
        return 0;
    } else {
        PyObject *t = timeout < 0 ? Py_NewRef(Py_None) : PyFloat_FromDouble(timeout);
        PyObject *events;
        if (t == NULL)
            return -1;
        events = PyObject_CallMethodOneArg(core->poller, fh_str_poll, t);
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

