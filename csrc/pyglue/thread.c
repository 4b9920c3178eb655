/*
 * thread.c - the per-thread state of fastco's greenlets.
 *
 * Each thread that uses fastco gets a fc_thread, made lazily with the
 * thread's main greenlet (the greenlet that stands for the thread's own
 * stack).  A C thread-local points at it, so that the switch path finds it
 * with one load.
 *
 * A thread's end is noticed through its thread-state dict: a sentinel
 * object stored there is destroyed when CPython clears the thread state,
 * and marks the fc_thread dead.  Greenlets of a dead thread can never run
 * again; they keep the fc_thread alive (by reference count) so that they
 * can tell.
 */
#include "glue.h"

_Thread_local fc_thread *fc_tls __attribute__((tls_model("initial-exec")));

/* The key of the sentinel in the thread-state dict. */
static PyObject *sentinel_key;

typedef struct {
    PyObject_HEAD
    fc_thread *ts;
} FcSentinel;

void fc_xfer_clear(fc_xfer *x)
{
    PyObject *a = x->a, *b = x->b, *c = x->c;
    x->kind = FC_XFER_NONE;
    x->a = x->b = x->c = NULL;
    Py_XDECREF(a);
    Py_XDECREF(b);
    Py_XDECREF(c);
}

void fc_thread_incref(fc_thread *ts)
{
    ts->refs++;
}

void fc_thread_decref(fc_thread *ts)
{
    if (--ts->refs == 0)
        PyMem_RawFree(ts);
}

/* The thread's state is being cleared (it exits, or the interpreter shuts
 * down): its greenlets can never run again. */
static void thread_end(fc_thread *ts)
{
    FcGreenlet *main, *current;

    /* On its own thread (not when the interpreter clears another thread's
     * state at shutdown), its suspended greenlets are killed first. */
    if (fc_tls == ts && ts->tstate == fc_tstate())
        fc_kill_active(ts);
    main = ts->main;
    current = ts->current;
    ts->alive = 0;
    if (fc_tls == ts) {
        fc_tls = NULL;
        fastco_guard_thread_fini();
    }
    ts->main = NULL;
    ts->current = NULL;
    ts->tstate = NULL;
    fc_xfer_clear(&ts->xfer);
    Py_CLEAR(ts->trace);
    Py_CLEAR(ts->pending_kills);
    Py_CLEAR(ts->start_run);
    if (main != NULL)
        main->pimpl->state = FC_DEAD;
    Py_XDECREF(current);
    Py_XDECREF(main);
}

static void sentinel_dealloc(FcSentinel *self)
{
    fc_thread *ts = self->ts;
    self->ts = NULL;
    if (ts != NULL) {
        thread_end(ts);
        fc_thread_decref(ts);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject FcSentinel_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fastco._native._ThreadSentinel",
    .tp_basicsize = sizeof(FcSentinel),
    .tp_dealloc = (destructor)sentinel_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Marks the end of a thread for fastco (internal).",
};

int fc_thread_types_ready(void)
{
    if (PyType_Ready(&FcSentinel_Type) < 0)
        return -1;
    sentinel_key = PyUnicode_InternFromString("fastco.thread");
    return sentinel_key == NULL ? -1 : 0;
}

fc_thread *fc_thread_slow(void)
{
    PyObject *dict = PyThreadState_GetDict();
    FcSentinel *sentinel;
    fc_thread *ts;
    FcGreenlet *main;

    if (dict == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError,
                            "fastco: this thread has no thread state dict");
        return NULL;
    }
    /* An OS thread may run several thread states in turn (C code calling
     * PyThreadState_Swap, or PyGILState_* on foreign threads): the state
     * belongs to the thread state, found through its dict. */
    sentinel = (FcSentinel *)PyDict_GetItemWithError(dict, sentinel_key);
    if (sentinel != NULL && Py_IS_TYPE(sentinel, &FcSentinel_Type)
        && sentinel->ts != NULL) {
        fc_tls = sentinel->ts;
        return sentinel->ts;
    }
    if (PyErr_Occurred())
        return NULL;
    ts = PyMem_RawCalloc(1, sizeof(*ts));
    if (ts == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    ts->refs = 1;           /* the sentinel's */
    ts->alive = 1;
    ts->tstate = fc_tstate();

    sentinel = PyObject_New(FcSentinel, &FcSentinel_Type);
    if (sentinel == NULL) {
        PyMem_RawFree(ts);
        return NULL;
    }
    sentinel->ts = NULL;
    main = fc_greenlet_new_main(ts);
    if (main == NULL) {
        Py_DECREF(sentinel);
        PyMem_RawFree(ts);
        return NULL;
    }
    ts->main = main;
    Py_INCREF(main);
    ts->current = main;
    sentinel->ts = ts;
    if (PyDict_SetItem(dict, sentinel_key, (PyObject *)sentinel) < 0) {
        Py_DECREF(sentinel);    /* ends the thread state we just made */
        return NULL;
    }
    Py_DECREF(sentinel);
    fc_tls = ts;
    /* Without an alternate signal stack, an overflow of a coroutine stack
     * on this thread could not be reported (only crash): best effort. */
    (void)fastco_guard_thread_init();
    return ts;
}
