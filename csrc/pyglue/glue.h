/*
 * glue.h - internal declarations shared by the Python glue (csrc/pyglue/).
 *
 * The glue turns the C context library into CPython objects:
 *
 *   thread.c    per-thread state: the main greenlet, the current one, the
 *               value in flight during a switch, thread exit
 *   greenlet.c  the greenlet type, the Python face of a coroutine:
 *               creation, switch(), throw(), attributes, death, GC
 *   coro.c      the coroutine behind it (fc_coro): the switch, start and
 *               end on its own stack, the killing of dropped greenlets
 *   capi.c      greenlet's C API: the capsule greenlet._C_API
 *   module.c    the fastco._native module: getcurrent, settrace, errors
 *   pystate.c   the interpreter state saved per coroutine (per version)
 *
 * Everything here runs with the GIL held.
 */
#ifndef FASTCO_GLUE_H
#define FASTCO_GLUE_H

#include "pystate.h"
#include "../fastco.h"

typedef struct FcGreenlet FcGreenlet;
typedef struct fc_thread fc_thread;
typedef struct fc_coro fc_coro;

/* What a switch carries from one greenlet to the other. */
enum fc_xfer_kind {
    FC_XFER_NONE = 0,
    FC_XFER_VALUE,    /* a: one object, handed over as is */
    FC_XFER_ARGS,     /* a: args tuple, b: kwargs dict or NULL */
    FC_XFER_EXC       /* a, b, c: exception type, value, traceback */
};

typedef struct fc_xfer {
    int kind;
    PyObject *a, *b, *c;   /* strong references */
} fc_xfer;

/* Lifecycle of a greenlet. */
enum fc_state {
    FC_NEW = 0,       /* created, never switched to */
    FC_ACTIVE,        /* started and not finished: running or suspended */
    FC_DEAD           /* finished, or killed before it started */
};

/*
 * Per-thread state.  Reference-counted by the greenlets of the thread (a
 * greenlet keeps a pointer to its thread for its whole life) and by the
 * sentinel object that reports the thread's exit.
 */
struct fc_thread {
    long refs;
    int alive;                  /* 0 once the thread state is cleared */
    PyThreadState *tstate;
    FcGreenlet *main;           /* strong; NULL once the thread ended */
    FcGreenlet *current;        /* strong; the running greenlet */
    /* During a switch: */
    fc_xfer xfer;               /* what the switch carries */
    FcGreenlet *origin;         /* strong; the greenlet that switched */
    FcGreenlet *dying;          /* strong; finished, resources to release */
    PyObject *start_run;        /* strong; the callable a greenlet that
                                 * starts gets (see prepare_start) */
    int carry;                  /* see fc_pystate_save */
    PyObject *trace;            /* strong; fastco.settrace() callback */
    /* Greenlets of this thread that lost their last reference on another
     * thread: killed here, at the next switch (a list). */
    PyObject *pending_kills;
    /* The started, unfinished greenlets of this thread (not the main one),
     * linked through FcGreenlet.active_next/prev: killed when it exits. */
    FcGreenlet *active;
};

/*
 * The greenlet object: greenlet's PyGreenlet, field for field, so that C
 * code compiled against greenlet's greenlet.h (gevent's Cython subclasses,
 * whose own fields start right after these 40 bytes on x86-64) works on it
 * unchanged.  Everything else about a greenlet lives behind `pimpl`.
 */
struct FcGreenlet {
    PyObject_HEAD
    PyObject *weakreflist;
    PyObject *dict;
    fc_coro *pimpl;             /* owned; NULL only in an object that
                                 * green_new did not make (see there) */
};

/* What greenlet.h promises its consumers about the layout. */
_Static_assert(offsetof(FcGreenlet, weakreflist) == sizeof(PyObject),
               "weakreflist follows PyObject_HEAD, as in greenlet.h");
_Static_assert(offsetof(FcGreenlet, dict) == sizeof(PyObject) + sizeof(void *),
               "dict follows weakreflist, as in greenlet.h");
_Static_assert(offsetof(FcGreenlet, pimpl) == sizeof(PyObject) + 2 * sizeof(void *),
               "pimpl follows dict, as in greenlet.h");
_Static_assert(sizeof(FcGreenlet) == sizeof(PyObject) + 3 * sizeof(void *),
               "a subclass's fields start right after pimpl");
#if defined(__x86_64__) && !defined(Py_TRACE_REFS) && !defined(Py_GIL_DISABLED)
_Static_assert(sizeof(FcGreenlet) == 40 && offsetof(FcGreenlet, weakreflist) == 16
               && offsetof(FcGreenlet, dict) == 24 && offsetof(FcGreenlet, pimpl) == 32,
               "greenlet's 40-byte object on x86-64");
#endif

/*
 * The coroutine behind a greenlet object (its pimpl): where it stands, what
 * it runs, its interpreter state while suspended, and its C stack.
 */
struct fc_coro {
    fastco_ctx ctx;             /* where it was suspended */
    fc_thread *thread;          /* owning thread (strong, see fc_thread) */
    PyObject *run;              /* the callable, until it starts */
    FcGreenlet *parent;         /* strong; NULL only for a main greenlet */
    fc_pystate st;              /* interpreter state while suspended */
    _PyErr_StackItem exc_item;  /* its own root exception item */
    fastco_stack stack;         /* its C stack (none for a main greenlet) */
    size_t stack_size;          /* asked for; 0: the default */
    unsigned char state;        /* enum fc_state */
    unsigned char is_main;
    FcGreenlet *active_next;    /* see fc_thread.active */
    FcGreenlet *active_prev;
};

/* thread.c */
/* initial-exec: one load from the thread pointer, no __tls_get_addr call,
 * on the switch path; it costs 8 bytes of the static TLS reserve. */
extern _Thread_local fc_thread *fc_tls __attribute__((tls_model("initial-exec")));
fc_thread *fc_thread_slow(void);
static inline fc_thread *fc_thread_get(void)
{
    /* The state of the running thread, made on first use; NULL with an
     * exception set on failure. */
    fc_thread *ts = fc_tls;
    return ts != NULL && ts->tstate == fc_tstate() ? ts : fc_thread_slow();
}
void fc_thread_incref(fc_thread *ts);
void fc_thread_decref(fc_thread *ts);
void fc_xfer_clear(fc_xfer *x);
int fc_thread_types_ready(void);

/* greenlet.c */
extern PyTypeObject FcGreenlet_Type;
extern PyObject *FcExc_GreenletExit;
extern PyObject *FcExc_Error;
#define FcGreenlet_Check(op) PyObject_TypeCheck(op, &FcGreenlet_Type)
FcGreenlet *fc_greenlet_new_main(fc_thread *ts);
extern Py_ssize_t fc_main_greenlets;
int fc_greenlet_type_ready(void);
PyObject *fc_set_default_stack_size(PyObject *module, PyObject *arg);
PyObject *fc_greenlet_switch(PyObject *g, PyObject *value);
PyObject *fc_greenlet_switch_args(FcGreenlet *g, PyObject *args, PyObject *kwargs);
PyObject *fc_greenlet_throw(FcGreenlet *g, PyObject *typ, PyObject *val, PyObject *tb);
int fc_greenlet_setparent(FcGreenlet *g, PyObject *parent);

/* coro.c */
int fc_coro_ready(void);
fc_coro *fc_coro_alloc(void);
void fc_coro_free(fc_coro *co);
PyObject *fc_coro_switch(fc_thread *ts, FcGreenlet *g, fc_xfer *x);
void fc_coro_kill_dropped(FcGreenlet *g);
int fc_coro_kill_on_dealloc(FcGreenlet *g);
void fc_coro_forget(FcGreenlet *g);
void fc_kill_pending(fc_thread *ts);
void fc_kill_active(fc_thread *ts);

/* module.c */
PyObject *fc_getcurrent(void);

/* capi.c */
int fc_capi_add(PyObject *module);

#endif /* FASTCO_GLUE_H */
