/*
 * hub.c - the native core of fastco's hub: the ready queue, the timers and
 * the loop (fastco/hub.py is its face; hubfd.c does the fd waits, hubtype.c
 * the Python types).
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
#include "hubcore.h"

#include <errno.h>
#include <math.h>
#include <time.h>

PyObject *fh_mark_timeout, *fh_mark_closed, *fh_mark_missing;
PyObject *fh_exc_concurrent, *fh_py_get_hub, *fh_str_unregister, *fh_str_poll;

/* ------------------------------------------------------------------------
 * Small helpers
 */

double fh_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

PyObject *fh_getcurrent(void)
{
    fc_thread *ts = fc_thread_get();
    return ts != NULL ? (PyObject *)ts->current : NULL;
}

/* g.switch(value) (value NULL: g.switch()); a new reference or NULL. */
PyObject *fh_switch(PyObject *g, PyObject *value)
{
    return fc_greenlet_switch(g, value);
}

/* Parses a timeout argument: None (-1: no limit) or a number >= 0. */
int fh_timeout_arg(PyObject *obj, double *out)
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

/* Drops g's pending wake-up, if it has one (it was resumed some other way,
 * e.g. by an exception thrown in); a failure is reported as unraisable.
 * Call it with no exception set. */
void fh_pending_discard(FhCore *core, PyObject *g)
{
    PyObject *v;
    if (core->pending == NULL || PyDict_GET_SIZE(core->pending) == 0)
        return;
    v = fc_dict_pop(core->pending, g);
    if (v != NULL)
        Py_DECREF(v);
    else if (PyErr_Occurred())
        PyErr_WriteUnraisable(core->hub);
}

static int report(FhCore *core, PyObject *context);

/* Reports the current exception through hub.handle_error(context, exc) if
 * it is an Exception; returns 0.  Other exceptions (GreenletExit,
 * KeyboardInterrupt, ...) are left set for the loop's caller: -1. */
int fh_report(FhCore *core, PyObject *context)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return -1;
    return report(core, context);
}

static int report(FhCore *core, PyObject *context)
{
    PyObject *t, *v, *tb, *r;
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

int fh_check_open(FhCore *core)
{
    if (core->closed) {
        PyErr_SetString(PyExc_RuntimeError, "the hub is closed");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * The ring
 */

int fh_ring_push(FhCore *core, PyObject *obj, PyObject *args)
{
    if (fh_check_open(core) < 0)
        return -1;
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
fh_entry fh_ring_pop(FhCore *core)
{
    fh_entry e = core->ring[core->ring_head];
    core->ring_head = (core->ring_head + 1) % core->ring_cap;
    core->ring_len--;
    return e;
}

/* Queues g to be resumed with value (a borrowed reference). */
int fh_schedule(FhCore *core, PyObject *g, PyObject *value)
{
    if (fh_check_open(core) < 0 || PyDict_SetItem(core->pending, g, value) < 0)
        return -1;
    return fh_ring_push(core, g, NULL);
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
void fh_heap_remove(FhCore *core, FhTimer *t)
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
 * NULL with an exception set.  The timer object is made first: making it
 * may run a garbage collection, whose finalizers may add timers, so the
 * heap's room is checked only after that, with no Python code in between. */
FhTimer *fh_timer_add(FhCore *core, double seconds, int kind, PyObject *fn,
                          PyObject *arg)
{
    FhTimer *t;
    if (fh_check_open(core) < 0)
        return NULL;
    t = PyObject_GC_New(FhTimer, &FhTimer_Type);
    if (t == NULL)
        return NULL;
    t->fn = NULL;
    t->arg = NULL;
    t->core = NULL;
    t->index = -1;
    /* A finalizer run by that allocation may have closed the hub. */
    if (fh_check_open(core) < 0) {
        Py_DECREF(t);
        return NULL;
    }
    if (core->nheap == core->heap_cap) {
        Py_ssize_t cap = core->heap_cap ? core->heap_cap * 2 : 64;
        FhTimer **heap = PyMem_Realloc(core->heap, (size_t)cap * sizeof(FhTimer *));
        if (heap == NULL) {
            Py_DECREF(t);
            PyErr_NoMemory();
            return NULL;
        }
        core->heap = heap;
        core->heap_cap = cap;
    }
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
void fh_timer_cancel(FhTimer *t)
{
    FhCore *core = t->core;
    if (core == NULL || t->index < 0)
        return;
    fh_heap_remove(core, t);
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
        r = has ? Py_NewRef(Py_None) : fh_switch(arg, fh_mark_timeout);
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
 * The loop
 */

/* The loop.  Returns only with an exception that is not the loop's to
 * handle (GreenletExit: the hub is destroyed; KeyboardInterrupt, ...). */
PyObject *fh_run(FhCore *self)
{
    for (;;) {
        /* 1. the ring entries queued before this turn */
        Py_ssize_t n = self->ring_len;
        while (n-- > 0 && self->ring_len > 0) {
            fh_entry e = fh_ring_pop(self);
            PyObject *r;
            int rc;
            if (e.args != NULL) {
                r = PyObject_Call(e.obj, e.args, NULL);
                Py_DECREF(e.args);
                rc = r == NULL ? fh_report(self, e.obj) : 0;
            } else {
                PyObject *value = fc_dict_pop(self->pending, e.obj);
                if (value == NULL) {
                    Py_DECREF(e.obj);
                    if (PyErr_Occurred())
                        return NULL;
                    continue;   /* its wait ended otherwise */
                }
                r = fh_switch(e.obj, value);
                Py_DECREF(value);
                rc = r == NULL ? fh_report(self, e.obj) : 0;
            }
            Py_XDECREF(r);
            Py_DECREF(e.obj);
            if (rc < 0)
                return NULL;
        }
        /* 2. the due timers */
        if (self->nheap > 0) {
            double now = fh_now();
            while (self->nheap > 0 && self->heap[0]->when <= now) {
                FhTimer *t = self->heap[0];
                fh_heap_remove(self, t);
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
        if (fh_poll_and_dispatch(self, timeout) < 0 && fh_report(self, self->hub) < 0)
            return NULL;
    }
}

