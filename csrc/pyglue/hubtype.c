/*
 * hubtype.c - the Python face of the hub's native core: the HubCore and
 * HubTimer types, and the module functions sleep() and hub_setup(), in
 * fastco._native.  fastco/hub.py binds the methods to its Hub.
 */
#include "hubcore.h"

#include <structmember.h>   /* T_PYSSIZET, T_ULONGLONG, T_DOUBLE, READONLY */

#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* The running thread's core (borrowed: its hub keeps it alive).  Read on
 * every socket call: the initial-exec model makes that a plain load instead
 * of a __tls_get_addr call (a few bytes of the static TLS surplus that glibc
 * keeps for libraries loaded with dlopen). */
static _Thread_local FhCore *fh_tls_core __attribute__((tls_model("initial-exec")));

/* ------------------------------------------------------------------------
 * HubCore
 */

static PyObject *core_run(FhCore *self, PyObject *unused)
{
    (void)unused;
    if (fh_check_open(self) < 0)
        return NULL;
    return fh_run(self);
}

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
    PyObject *v;
    if (self->closed)             /* nothing is pending in a closed hub */
        return Py_NewRef(fh_mark_missing);
    v = fc_dict_pop(self->pending, g);
    if (v == NULL && !PyErr_Occurred())
        return Py_NewRef(fh_mark_missing);
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
    rc = fh_ring_push(self, args[0], cbargs);
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
    /* A job of a thread pool may finish after its hub was closed: there is
     * nobody left to call back, drop it. */
    if (self->closed)
        Py_RETURN_NONE;
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
    if (fh_check_open(self) < 0)
        return NULL;
    if (self->wake_fd < 0) {
        int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        fh_fd *s;
        if (fd < 0)
            return PyErr_SetFromErrno(PyExc_OSError);
        s = fh_fd_slot(self, fd);
        if (s == NULL || fh_fd_watch(self, s, fd) < 0) {
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
    t = fh_timer_add(self, seconds, FH_T_CALL, args[1], nargs == 3 ? args[2] : Py_None);
    return t != NULL ? Py_NewRef((PyObject *)t) : NULL;
}

static PyObject *core_cancel_timer(FhCore *self, PyObject *t)
{
    (void)self;
    if (!PyObject_TypeCheck(t, &FhTimer_Type)) {
        PyErr_Format(PyExc_TypeError, "not a timer: %R", t);
        return NULL;
    }
    fh_timer_cancel((FhTimer *)t);
    Py_RETURN_NONE;
}

/* wait(cur, timeout=None, on_drop=None) */
static PyObject *core_wait(FhCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *cur, *on_drop = Py_None, *r;
    double timeout = -1.0;
    FhTimer *timer = NULL;

    if (fh_check_open(self) < 0)
        return NULL;
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
        timer = fh_timer_add(self, timeout, FH_T_EXPIRE, NULL, cur);
        if (timer == NULL)
            return NULL;
        Py_INCREF(timer);
    }
    r = fh_switch(self->hub, NULL);
    if (timer != NULL) {
        fh_timer_cancel(timer);
        Py_DECREF(timer);
    }
    if (r == NULL) {
        /* An exception was thrown in: drop (and hand back) any wake-up. */
        PyObject *et, *ev, *etb, *v;
        PyErr_Fetch(&et, &ev, &etb);
        v = self->pending != NULL ? fc_dict_pop(self->pending, cur) : NULL;
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

    if (fh_check_open(self) < 0)
        return NULL;
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
    return fh_fd_wake_value(fh_fd_wait(self, fd, (unsigned int)event, timeout, owner), fd);
}

/* Clears cur from every slot it holds among `fds` (a list of ints). */
static void unwatch_all(FhCore *self, PyObject *fds, PyObject *cur)
{
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(fds); i++) {
        int fd = PyLong_AsInt(PyList_GET_ITEM(fds, i));
        if (fd == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            continue;
        }
        fh_fd_unwatch(self, fd, cur);
    }
}

/* wait_fds(rfds, wfds, timeout=None): any of them; re-arms each fd. */
static PyObject *core_wait_fds(FhCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *cur, *all = NULL, *r = NULL;
    double timeout = -1.0;
    FhTimer *timer = NULL;

    if (fh_check_open(self) < 0)
        return NULL;
    cur = fh_getcurrent();
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
            if ((fd == -1 && PyErr_Occurred()) || (s = fh_fd_prepare(self, fd, 0)) == NULL
                || PyList_Append(all, item) < 0) {
                Py_DECREF(seq);
                goto fail;
            }
            other = dir == 0 ? s->reader : s->writer;
            if (other != NULL && other != cur) {
                PyErr_Format(fh_exc_concurrent, "fd %d is already waited on for %s by %R", fd,
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
            if (fh_fd_interest(self, fd) < 0) {
                Py_DECREF(seq);
                goto fail;
            }
        }
        Py_DECREF(seq);
    }
    if (timeout >= 0.0) {
        timer = fh_timer_add(self, timeout, FH_T_EXPIRE, NULL, cur);
        if (timer == NULL)
            goto fail;
        Py_INCREF(timer);
    }
    self->nwait++;
    r = fh_switch(self->hub, NULL);
    self->nwait--;
    {
        PyObject *et, *ev, *etb;
        PyErr_Fetch(&et, &ev, &etb);
        if (timer != NULL) {
            fh_timer_cancel(timer);
            Py_DECREF(timer);
        }
        unwatch_all(self, all, cur);
        fh_pending_discard(self, cur);
        PyErr_Restore(et, ev, etb);
    }
    Py_DECREF(all);
    if (r == fh_mark_closed) {
        Py_DECREF(r);
        fh_set_closed_error();
        return NULL;
    }
    if (r != NULL && PyLong_CheckExact(r) && (PyLong_AsUnsignedLong(r) & FH_NVAL)) {
        Py_DECREF(r);
        fh_set_oserror(EBADF, "an fd is not open");
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
    if (self->closed || fd < 0 || fd >= self->nfds || !self->fds[fd].known)
        Py_RETURN_NONE;
    s = &self->fds[fd];
    if (self->epfd >= 0) {
        (void)fh_epoll_set(self, EPOLL_CTL_DEL, fd, 0);
    } else if (s->mask != 0 && self->poller != NULL) {
        PyObject *r = PyObject_CallMethodObjArgs(self->poller, fh_str_unregister, arg, NULL);
        if (r == NULL)
            PyErr_Clear();
        Py_XDECREF(r);
    }
    reader = s->reader;
    writer = s->writer;
    memset(s, 0, sizeof(*s));
    if (reader != NULL && fh_schedule(self, reader, fh_mark_closed) < 0)
        PyErr_WriteUnraisable(self->hub);
    if (writer != NULL && fh_schedule(self, writer, fh_mark_closed) < 0)
        PyErr_WriteUnraisable(self->hub);
    Py_XDECREF(reader);
    Py_XDECREF(writer);
    Py_RETURN_NONE;
}

/* reinit(poller): after fork, or to switch pollers: re-register the fds. */
static PyObject *core_reinit(FhCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    int epfd;
    if (fh_check_open(self) < 0)
        return NULL;
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
        if (fh_fd_watch(self, s, fd) < 0 || fh_fd_interest(self, fd) < 0)
            PyErr_Clear();  /* a dead fd: its waiter stays until its timeout */
    }
    Py_RETURN_NONE;
}

static PyObject *core_install(FhCore *self, PyObject *unused)
{
    (void)unused;
    fh_tls_core = self;
    Py_RETURN_NONE;
}

static PyObject *core_uninstall(FhCore *self, PyObject *unused)
{
    (void)unused;
    if (fh_tls_core == self)
        fh_tls_core = NULL;
    Py_RETURN_NONE;
}

static int core_clear(FhCore *self);

static PyObject *core_close(FhCore *self, PyObject *unused)
{
    (void)unused;
    self->closed = 1;
    if (fh_tls_core == self)
        fh_tls_core = NULL;
    if (self->wake_fd >= 0) {
        close(self->wake_fd);
        self->wake_fd = -1;
    }
    self->epfd = -1;
    core_clear(self);
    Py_RETURN_NONE;
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

static PyMemberDef core_members[] = {
    {"bytes_received", T_ULONGLONG, offsetof(FhCore, bytes_received), READONLY,
     "Bytes received by fastco sockets' recv/recv_into in this thread."},
    {"bytes_sent", T_ULONGLONG, offsetof(FhCore, bytes_sent), READONLY,
     "Bytes sent by fastco sockets' send/sendall in this thread."},
    {"nready", T_PYSSIZET, offsetof(FhCore, ring_len), READONLY,
     "Ring entries waiting for the next turn."},
    {"ntimers", T_PYSSIZET, offsetof(FhCore, nheap), READONLY, "Timers set."},
    {"nwait", T_PYSSIZET, offsetof(FhCore, nwait), READONLY, "Greenlets waiting on fds."},
    {NULL, 0, 0, 0, NULL}
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
    if (fh_mark_timeout == NULL) {
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
    Py_CLEAR(self->rbuf);
    while (self->ring_len > 0) {
        fh_entry e = fh_ring_pop(self);
        Py_DECREF(e.obj);
        Py_XDECREF(e.args);
    }
    while (self->nheap > 0) {
        FhTimer *t = self->heap[self->nheap - 1];
        fh_heap_remove(self, t);
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
    if (fh_tls_core == self)
        fh_tls_core = NULL;
    core_clear(self);
    if (self->wake_fd >= 0)
        close(self->wake_fd);
    PyMem_Free(self->ring);
    PyMem_Free(self->heap);
    PyMem_Free(self->fds);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

PyTypeObject FhCore_Type = {
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
    .tp_members = core_members,
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

static PyObject *timer_cancel_meth(FhTimer *self, PyObject *unused)
{
    (void)unused;
    fh_timer_cancel(self);
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
    {NULL, NULL, NULL, NULL, NULL}
};

static PyMemberDef timer_members[] = {
    {"when", T_DOUBLE, offsetof(FhTimer, when), READONLY, "Its deadline (monotonic seconds)."},
    {NULL, 0, 0, 0, NULL}
};

static PyMethodDef timer_methods[] = {
    {"cancel", (PyCFunction)timer_cancel_meth, METH_NOARGS,
     "cancel()\n--\n\nCancel the timer (no effect if it fired)."},
    {NULL, NULL, 0, NULL}
};

PyTypeObject FhTimer_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fastco.HubTimer",
    .tp_basicsize = sizeof(FhTimer),
    .tp_dealloc = (destructor)timer_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A timer of a hub (from call_later).",
    .tp_traverse = (traverseproc)timer_traverse,
    .tp_clear = (inquiry)timer_clear,
    .tp_getset = timer_getsets,
    .tp_members = timer_members,
    .tp_methods = timer_methods,
};

/* ------------------------------------------------------------------------
 * Module functions
 */

FhCore *fh_peek(void)
{
    return fh_tls_core;
}

FhCore *fh_current(void)
{
    PyObject *hub;
    if (fh_tls_core != NULL)
        return fh_tls_core;
    if (fh_py_get_hub == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "fastco.hub is not imported");
        return NULL;
    }
    hub = PyObject_CallNoArgs(fh_py_get_hub);   /* makes one, and installs it */
    if (hub == NULL)
        return NULL;
    Py_DECREF(hub);
    if (fh_tls_core == NULL)
        PyErr_SetString(PyExc_RuntimeError, "fastco.hub.get_hub did not install a core");
    return fh_tls_core;
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
    core = fh_tls_core != NULL ? fh_tls_core : fh_current();
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
        if (r == NULL) {
            PyObject *et, *ev, *etb;
            PyErr_Fetch(&et, &ev, &etb);
            fh_pending_discard(core, cur);
            PyErr_Restore(et, ev, etb);
        }
    } else {
        FhTimer *t = fh_timer_add(core, seconds, FH_T_SWITCH, NULL, cur);
        if (t == NULL) {
            Py_DECREF(core);
            return NULL;
        }
        Py_INCREF(t);
        r = fh_switch(core->hub, NULL);
        fh_timer_cancel(t);
        Py_DECREF(t);
    }
    Py_DECREF(core);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_NONE;
}

/* hub_setup(TIMEOUT, CLOSED, MISSING, ConcurrentUseError, get_hub) */
static PyObject *mod_hub_setup(PyObject *module, PyObject *args)
{
    PyObject *t, *c, *m, *e, *g;
    (void)module;
    if (!PyArg_ParseTuple(args, "OOOOO:hub_setup", &t, &c, &m, &e, &g))
        return NULL;
    Py_XSETREF(fh_mark_timeout, Py_NewRef(t));
    Py_XSETREF(fh_mark_closed, Py_NewRef(c));
    Py_XSETREF(fh_mark_missing, Py_NewRef(m));
    Py_XSETREF(fh_exc_concurrent, Py_NewRef(e));
    Py_XSETREF(fh_py_get_hub, Py_NewRef(g));
    Py_RETURN_NONE;
}

static PyMethodDef hub_functions[] = {
    {"sleep", (PyCFunction)(void (*)(void))mod_sleep, METH_FASTCALL,
     "sleep(seconds=0)\n--\n\n"
     "Suspend the current greenlet for seconds; 0 yields to the other ready ones."},
    {"hub_setup", (PyCFunction)mod_hub_setup, METH_VARARGS,
     "hub_setup(TIMEOUT, CLOSED, MISSING, ConcurrentUseError, get_hub)\n--\n\n"
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
    fh_str_unregister = PyUnicode_InternFromString("unregister");
    fh_str_poll = PyUnicode_InternFromString("poll");
    if (fh_str_unregister == NULL || fh_str_poll == NULL)
        return -1;
    if (PyType_Ready(&FhCore_Type) < 0 || PyType_Ready(&FhTimer_Type) < 0)
        return -1;
    if (PyModule_AddObjectRef(module, "HubCore", (PyObject *)&FhCore_Type) < 0
        || PyModule_AddObjectRef(module, "HubTimer", (PyObject *)&FhTimer_Type) < 0)
        return -1;
    if (add_functions(module, hub_functions) < 0 || add_functions(module, fh_sock_methods) < 0
        || fh_lock_types_init(module) < 0 || add_functions(module, fh_lock_functions) < 0)
        return -1;
    return 0;
}

