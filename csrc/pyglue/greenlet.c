/*
 * greenlet.c - fastco's greenlet type, the Python face of a coroutine:
 * creation and its arguments, switch() and throw(), the attributes (run,
 * parent, dead, gr_frame, gr_context, ...), the collector's hooks, and
 * death: a suspended greenlet that is dropped is killed (tp_finalize).
 *
 * The object is greenlet's, field for field (glue.h); the coroutine it
 * stands for, and the switch, are in coro.c.
 */
#include "glue.h"

#include <structmember.h>

/* Largest stack_size a greenlet may ask for (the smallest is the stack
 * allocator's, FASTCO_STACK_MIN_SIZE). */
#define FC_MAX_STACK ((size_t)1 << 30)

/* C stack size of new greenlets that do not ask for one. */
static size_t default_stack_size = FASTCO_STACK_DEFAULT_SIZE;

/* A requested C stack size, rounded up to whole pages and the minimum:
 * the stack allocator's, or CPython's if larger (3.14+). */
static size_t round_stack_size(size_t size)
{
    size_t page = fastco_page_size();
    if (size < FASTCO_STACK_MIN_SIZE)
        size = FASTCO_STACK_MIN_SIZE;
    size = fc_py_stack_floor(size);
    return (size + page - 1) & ~(page - 1);
}

PyObject *FcExc_GreenletExit;
PyObject *FcExc_Error;

/* Main greenlets that exist (greenlet reports the same number). */
Py_ssize_t fc_main_greenlets;

FcGreenlet *fc_greenlet_new_main(fc_thread *ts)
{
    FcGreenlet *g = (FcGreenlet *)FcGreenlet_Type.tp_alloc(&FcGreenlet_Type, 0);
    if (g == NULL)
        return NULL;
    g->pimpl = fc_coro_alloc();
    if (g->pimpl == NULL) {
        Py_DECREF(g);
        return NULL;
    }
    g->pimpl->thread = ts;
    fc_thread_incref(ts);
    g->pimpl->state = FC_ACTIVE;
    g->pimpl->is_main = 1;
    fc_main_greenlets++;
    return g;
}

static PyObject *green_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    fc_thread *ts;
    FcGreenlet *g;
    fc_coro *co;
    (void)args;
    (void)kwds;
    if (type->tp_flags & Py_TPFLAGS_IS_ABSTRACT) {
        /* An abc subclass with abstract methods left: object.__new__ refuses
         * it, with the message that names them. */
        PyObject *empty = PyTuple_New(0);
        PyObject *r = empty != NULL ? PyBaseObject_Type.tp_new(type, empty, NULL) : NULL;
        Py_XDECREF(empty);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);   /* it did not refuse: go on as for any type */
    }
    ts = fc_thread_get();
    if (ts == NULL)
        return NULL;
    if (ts->pending_kills != NULL)
        fc_kill_pending(ts);   /* greenlet does it here too */
    g = (FcGreenlet *)type->tp_alloc(type, 0);
    if (g == NULL)
        return NULL;
    co = g->pimpl = fc_coro_alloc();
    if (co == NULL) {
        Py_DECREF(g);
        return NULL;
    }
    co->thread = ts;
    fc_thread_incref(ts);
    co->parent = (FcGreenlet *)Py_NewRef((PyObject *)ts->current);
    co->stack_size = default_stack_size;
    return (PyObject *)g;
}

static int green_setrun(FcGreenlet *self, PyObject *run, void *closure);

static int check_stack_size(Py_ssize_t size)
{
    if (size < 0 || (size_t)size > FC_MAX_STACK) {
        PyErr_Format(PyExc_ValueError,
                     "stack_size must be between 0 (the default, %zu) and %zu bytes",
                     default_stack_size, (size_t)FC_MAX_STACK);
        return -1;
    }
    return 0;
}

PyObject *fc_set_default_stack_size(PyObject *module, PyObject *arg)
{
    Py_ssize_t size = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
    size_t previous = default_stack_size;
    (void)module;
    if (size == -1 && PyErr_Occurred())
        return NULL;
    if (check_stack_size(size) < 0)
        return NULL;
    default_stack_size = size == 0 ? FASTCO_STACK_DEFAULT_SIZE : round_stack_size((size_t)size);
    return PyLong_FromSize_t(previous);
}
static int green_setparent(FcGreenlet *self, PyObject *parent, void *closure);

static int green_init(FcGreenlet *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"run", "parent", "stack_size", NULL};
    PyObject *run = NULL, *parent = Py_None;
    Py_ssize_t stack_size = 0;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OO$n:greenlet", kwlist,
                                     &run, &parent, &stack_size))
        return -1;
    if (check_stack_size(stack_size) < 0)
        return -1;
    if (stack_size != 0 && self->pimpl->state != FC_NEW) {
        PyErr_SetString(PyExc_ValueError,
                        "stack_size cannot be set after the greenlet started");
        return -1;
    }
    /* As in greenlet: a run given, even None, is stored (None then fails
     * at the switch); a parent of None means the default. */
    if (run != NULL && green_setrun(self, run, NULL) < 0)
        return -1;
    if (parent != Py_None && green_setparent(self, parent, NULL) < 0)
        return -1;
    if (stack_size != 0)
        self->pimpl->stack_size = round_stack_size((size_t)stack_size);
    return 0;
}

static int green_traverse(FcGreenlet *self, visitproc visit, void *arg)
{
    fc_coro *co = self->pimpl;
    Py_VISIT(self->dict);
    if (co == NULL)
        return 0;
    Py_VISIT(co->run);
    Py_VISIT(co->parent);
    Py_VISIT(co->st.context);
    return fc_exc_item_traverse(&co->exc_item, visit, arg);
}

/* Suspended greenlets are roots for the collector, as in greenlet: what
 * their frames reference is reachable while they may resume. */
static int green_is_gc(FcGreenlet *self)
{
    fc_coro *co = self->pimpl;
    return co == NULL || co->state != FC_ACTIVE || co->is_main || !co->thread->alive;
}

static int green_clear(FcGreenlet *self)
{
    fc_coro *co = self->pimpl;
    Py_CLEAR(self->dict);
    if (co != NULL) {
        Py_CLEAR(co->run);
        Py_CLEAR(co->parent);
        Py_CLEAR(co->st.context);
        fc_exc_item_clear(&co->exc_item);
    }
    return 0;
}

/* Whether `self` is a started, unfinished, non-main greenlet: one that is
 * killed when it is dropped. */
static int is_suspended_child(FcGreenlet *self)
{
    fc_coro *co = self->pimpl;
    return co != NULL && co->state == FC_ACTIVE && !co->is_main;
}

/* tp_finalize (PEP 442): a suspended greenlet about to be freed gets
 * GreenletExit thrown in (fc_coro_kill_dropped).  Done here rather than only in
 * tp_dealloc so that a subclass's dealloc (Cython's, or CPython's for
 * classes) runs it first, while the subclass's own fields, which the
 * greenlet's code may still use, are intact; and a greenlet the kill
 * resurrects comes back whole.  Only when called for a dealloc (the
 * object's one reference is the temporary one): an explicit __del__()
 * call on a live greenlet does nothing. */
static void green_finalize(FcGreenlet *self)
{
    if (is_suspended_child(self) && Py_REFCNT(self) == 1)
        fc_coro_kill_dropped(self);
}

/* Whether a C-level subclass (a static type between `self`'s class and
 * fastco's, as Cython's cdef classes are) lies under the greenlet: its
 * tp_dealloc ran before green_dealloc and cleared its fields, which its
 * methods take for set. */
static int has_c_subclass(FcGreenlet *self)
{
    for (PyTypeObject *t = Py_TYPE(self); t != NULL && t != &FcGreenlet_Type; t = t->tp_base)
        if (!PyType_HasFeature(t, Py_TPFLAGS_HEAPTYPE))
            return 1;
    return 0;
}

static void green_dealloc(FcGreenlet *self)
{
    fc_coro *co = self->pimpl;

    if (is_suspended_child(self)) {
        /* green_finalize, unless a subclass's dealloc ran it already.  The
         * object must be tracked in case it is resurrected (untracked first:
         * PyObject_GC_IsTracked asks tp_is_gc, which says no here). */
        PyObject_GC_UnTrack(self);
        PyObject_GC_Track(self);
        if (PyObject_CallFinalizerFromDealloc((PyObject *)self) < 0)
            return;   /* resurrected */
    }
    PyObject_GC_UnTrack(self);
    /* Still suspended: finalized once already and resurrected then, or its
     * finalizer replaced by a subclass's __del__.  Killed here, unless a C
     * subclass's dealloc has cleared its fields already: its code would run
     * on them (greenlet crashes there); it is left unfinished instead. */
    if (is_suspended_child(self)) {
        if (has_c_subclass(self))
            PySys_FormatStderr("fastco: a suspended %s was dropped after its C-level fields "
                               "were cleared, where GreenletExit cannot be thrown into it; "
                               "it is left unfinished (its finally blocks do not run)\n",
                               Py_TYPE(self)->tp_name);
        else if (!fc_coro_kill_on_dealloc(self))
            return;
    }
    if (self->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)self);
    green_clear(self);
    if (co != NULL) {   /* NULL: made by object.__new__ (see green_new) */
        if (co->stack.lo != NULL && co->state != FC_ACTIVE) {
            /* Prepared to start but never switched to. */
            fastco_stack_put(&co->stack);
        }
        /* An active greenlet left here could not be killed (its thread is
         * gone, or the interpreter is shutting down): its suspended frames
         * still point into its stack, which is therefore never reused.  It
         * leaves its thread's list of active greenlets, which a neighbour
         * that finishes, or the thread's exit, walks. */
        if (co->state == FC_ACTIVE && !co->is_main)
            fc_coro_forget(self);
        fc_thread_decref(co->thread);
        if (co->is_main)
            fc_main_greenlets--;
        self->pimpl = NULL;
        fc_coro_free(co);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* switch(*args, **kwargs) */
static PyObject *green_switch(FcGreenlet *self, PyObject *const *args,
                              Py_ssize_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    fc_thread *ts = fc_thread_get();
    fc_xfer x = {FC_XFER_NONE, NULL, NULL, NULL};

    if (ts == NULL)
        return NULL;
    if (kwnames == NULL || PyTuple_GET_SIZE(kwnames) == 0) {
        if (nargs == 1) {
            x.kind = FC_XFER_VALUE;
            x.a = Py_NewRef(args[0]);
        } else {
            x.kind = FC_XFER_ARGS;
            x.a = PyTuple_New(nargs);
            if (x.a == NULL)
                return NULL;
            for (Py_ssize_t i = 0; i < nargs; i++)
                PyTuple_SET_ITEM(x.a, i, Py_NewRef(args[i]));
        }
    } else {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        x.kind = FC_XFER_ARGS;
        x.a = PyTuple_New(nargs);
        x.b = PyDict_New();
        if (x.a == NULL || x.b == NULL) {
            fc_xfer_clear(&x);
            return NULL;
        }
        for (Py_ssize_t i = 0; i < nargs; i++)
            PyTuple_SET_ITEM(x.a, i, Py_NewRef(args[i]));
        for (Py_ssize_t i = 0; i < nkw; i++) {
            if (PyDict_SetItem(x.b, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0) {
                fc_xfer_clear(&x);
                return NULL;
            }
        }
    }
    return fc_coro_switch(ts, self, &x);
}

/* g.switch(value), or g.switch() if value is NULL, for C callers (the hub):
 * what the method does, without the method call around it. */
PyObject *fc_greenlet_switch(PyObject *g, PyObject *value)
{
    fc_thread *ts = fc_thread_get();
    fc_xfer x = {FC_XFER_NONE, NULL, NULL, NULL};

    if (ts == NULL)
        return NULL;
    if (!FcGreenlet_Check(g)) {
        PyErr_Format(PyExc_TypeError, "can only switch to a greenlet, not %s",
                     Py_TYPE(g)->tp_name);
        return NULL;
    }
    if (value != NULL) {
        x.kind = FC_XFER_VALUE;
        x.a = Py_NewRef(value);
    } else {
        x.kind = FC_XFER_ARGS;
        x.a = PyTuple_New(0);
        if (x.a == NULL)
            return NULL;
    }
    return fc_coro_switch(ts, (FcGreenlet *)g, &x);
}

/* g.switch(*args, **kwargs) for C callers (greenlet's C API): args a
 * tuple, kwargs a dict or NULL.  Borrows them. */
PyObject *fc_greenlet_switch_args(FcGreenlet *g, PyObject *args, PyObject *kwargs)
{
    fc_thread *ts = fc_thread_get();
    fc_xfer x = {FC_XFER_ARGS, NULL, NULL, NULL};

    if (ts == NULL)
        return NULL;
    x.a = Py_NewRef(args);
    x.b = Py_XNewRef(kwargs);
    return fc_coro_switch(ts, g, &x);
}

/* throw(typ=GreenletExit, val=None, tb=None) */
static PyObject *green_throw(FcGreenlet *self, PyObject *args)
{
    PyObject *typ = FcExc_GreenletExit, *val = Py_None, *tb = Py_None;

    if (!PyArg_UnpackTuple(args, "throw", 0, 3, &typ, &val, &tb))
        return NULL;
    return fc_greenlet_throw(self, typ, val, tb);
}

/* g.throw(typ, val, tb) for C callers (greenlet's C API too): val and tb
 * may be NULL, for None.  Borrows its arguments. */
PyObject *fc_greenlet_throw(FcGreenlet *self, PyObject *typ, PyObject *val, PyObject *tb)
{
    fc_thread *ts;
    fc_xfer x = {FC_XFER_EXC, NULL, NULL, NULL};

    if (val == NULL)
        val = Py_None;
    if (tb == Py_None)
        tb = NULL;
    else if (tb != NULL && !PyTraceBack_Check(tb)) {
        PyErr_SetString(PyExc_TypeError,
                        "throw() third argument must be a traceback object");
        return NULL;
    }
    if (typ != NULL && PyExceptionClass_Check(typ)) {
        x.a = Py_NewRef(typ);
        x.b = Py_NewRef(val);
        x.c = Py_XNewRef(tb);
        PyErr_NormalizeException(&x.a, &x.b, &x.c);
        if (PyErr_Occurred()) {
            fc_xfer_clear(&x);
            return NULL;
        }
    } else if (typ != NULL && PyExceptionInstance_Check(typ)) {
        if (val != Py_None) {
            PyErr_SetString(PyExc_TypeError,
                            "instance exception may not have a separate value");
            return NULL;
        }
        x.b = Py_NewRef(typ);
        x.a = Py_NewRef((PyObject *)Py_TYPE(typ));
        x.c = tb != NULL ? Py_NewRef(tb) : PyException_GetTraceback(typ);
    } else {
        PyErr_Format(PyExc_TypeError,
                     "exceptions must be classes, or instances, not %s",
                     typ != NULL ? Py_TYPE(typ)->tp_name : "NULL");
        return NULL;
    }
    ts = fc_thread_get();
    if (ts == NULL) {
        fc_xfer_clear(&x);
        return NULL;
    }
    /* Into a finished greenlet, GreenletExit turns into a plain value for its
     * parent, as greenlet does; other exceptions go to the parent as such. */
    if (self->pimpl->state == FC_DEAD
        && PyErr_GivenExceptionMatches(x.a, FcExc_GreenletExit)) {
        PyObject *exc = x.b;
        x.b = NULL;
        fc_xfer_clear(&x);
        x.kind = FC_XFER_VALUE;
        x.a = exc;
    }
    return fc_coro_switch(ts, self, &x);
}

static int green_bool(FcGreenlet *self)
{
    return self->pimpl->state == FC_ACTIVE && self->pimpl->thread->alive;
}

static PyObject *green_getdead(FcGreenlet *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->pimpl->state == FC_DEAD
                           || (self->pimpl->state == FC_ACTIVE && !self->pimpl->thread->alive));
}

static PyObject *green_getrun(FcGreenlet *self, void *closure)
{
    (void)closure;
    if (self->pimpl->state != FC_NEW || self->pimpl->run == NULL) {
        PyErr_SetString(PyExc_AttributeError, "run");
        return NULL;
    }
    return Py_NewRef(self->pimpl->run);
}

static int green_setrun(FcGreenlet *self, PyObject *run, void *closure)
{
    (void)closure;
    if (self->pimpl->state != FC_NEW) {
        PyErr_SetString(PyExc_AttributeError,
                        "run cannot be set after the start of the greenlet");
        return -1;
    }
    Py_XSETREF(self->pimpl->run, Py_XNewRef(run));
    return 0;
}

static PyObject *green_getparent(FcGreenlet *self, void *closure)
{
    (void)closure;
    return Py_NewRef(self->pimpl->parent ? (PyObject *)self->pimpl->parent : Py_None);
}

static int green_setparent(FcGreenlet *self, PyObject *parent, void *closure)
{
    (void)closure;
    return fc_greenlet_setparent(self, parent);
}

/* g.parent = parent (NULL: del g.parent), for C callers too. */
int fc_greenlet_setparent(FcGreenlet *self, PyObject *parent)
{
    FcGreenlet *p;
    if (parent == NULL) {
        PyErr_SetString(PyExc_AttributeError, "can't delete attribute");
        return -1;
    }
    if (self->pimpl->is_main) {
        PyErr_SetString(PyExc_AttributeError, "cannot set the parent of a main greenlet");
        return -1;
    }
    if (!FcGreenlet_Check(parent)) {
        /* greenlet's message, word for word. */
        PyErr_Format(PyExc_TypeError, "GreenletChecker: Expected any type of greenlet, not %s",
                     Py_TYPE(parent)->tp_name);
        return -1;
    }
    for (p = (FcGreenlet *)parent; p != NULL; p = p->pimpl->parent) {
        if (p == self) {
            PyErr_SetString(PyExc_ValueError, "cyclic parent chain");
            return -1;
        }
    }
    p = (FcGreenlet *)parent;
    if (p->pimpl->thread != self->pimpl->thread) {
        /* A greenlet belongs to the thread of its parent chain: one that has
         * not started yet may move to another thread with a new parent. */
        if (self->pimpl->state != FC_NEW) {
            PyErr_SetString(PyExc_ValueError, "parent cannot be on a different thread");
            return -1;
        }
        fc_thread_incref(p->pimpl->thread);
        fc_thread_decref(self->pimpl->thread);
        self->pimpl->thread = p->pimpl->thread;
    }
    Py_XSETREF(self->pimpl->parent, (FcGreenlet *)Py_NewRef(parent));
    return 0;
}

static int is_running(FcGreenlet *self)
{
    return self->pimpl->thread->alive && self->pimpl->thread->current == self;
}

/* A suspended greenlet's frames stay where they are while it is suspended
 * (and it cannot resume while we hold the GIL), so they can be read from any
 * thread, as greenlet allows (gevent's monitor thread does). */
static PyObject *green_getframe(FcGreenlet *self, void *closure)
{
    PyFrameObject *f = NULL;
    (void)closure;
    if (self->pimpl->state == FC_ACTIVE && self->pimpl->thread->alive && !is_running(self))
        f = fc_pystate_frame(&self->pimpl->st, fc_tstate());
    return f != NULL ? (PyObject *)f : Py_NewRef(Py_None);
}

static PyObject *green_getcontext(FcGreenlet *self, void *closure)
{
    PyObject *ctx;
    (void)closure;
    if (is_running(self)) {
        if (self->pimpl->thread->tstate != fc_tstate()) {
            PyErr_SetString(PyExc_ValueError,
                            "cannot get context of a greenlet that is running in a different "
                            "thread");
            return NULL;
        }
        ctx = self->pimpl->thread->tstate->context;
    } else {
        ctx = self->pimpl->st.context;
    }
    return Py_NewRef(ctx != NULL ? ctx : Py_None);
}

static int green_setcontext(FcGreenlet *self, PyObject *ctx, void *closure)
{
    (void)closure;
    if (ctx == NULL) {
        PyErr_SetString(PyExc_AttributeError, "can't delete context attribute");
        return -1;
    }
    if (ctx == Py_None)
        ctx = NULL;
    else if (!PyContext_CheckExact(ctx)) {
        PyErr_SetString(PyExc_TypeError,
                        "greenlet context must be a contextvars.Context or None");
        return -1;
    }
    if (is_running(self)) {
        PyThreadState *tstate;
        if (self->pimpl->thread->tstate != fc_tstate()) {
            PyErr_SetString(PyExc_ValueError,
                            "cannot set context of a greenlet that is running in a different "
                            "thread");
            return -1;
        }
        tstate = self->pimpl->thread->tstate;
        Py_XSETREF(tstate->context, Py_XNewRef(ctx));
        tstate->context_ver++;
    } else {
        Py_XSETREF(self->pimpl->st.context, Py_XNewRef(ctx));
    }
    return 0;
}

static PyObject *green_getstacksaved(FcGreenlet *self, void *closure)
{
    (void)self;
    (void)closure;
    return PyLong_FromLong(0);
}

static PyObject *green_getstacksize(FcGreenlet *self, void *closure)
{
    (void)closure;
    if (self->pimpl->is_main)
        Py_RETURN_NONE;
    return PyLong_FromSize_t(self->pimpl->stack_size);
}

/* Whether `self` is the running greenlet of the calling thread. */
static int is_current_here(FcGreenlet *self)
{
    return is_running(self) && self->pimpl->thread->tstate == fc_tstate();
}

static PyObject *green_repr(FcGreenlet *self)
{
    const char *tp_name = Py_TYPE(self)->tp_name;
    if (self->pimpl->state == FC_DEAD || !self->pimpl->thread->alive)
        return PyUnicode_FromFormat("<%s object at %p (otid=%p)%s dead>", tp_name,
                                    self, self->pimpl->thread,
                                    self->pimpl->thread->alive ? "" : " (thread exited)");
    return PyUnicode_FromFormat(
        "<%s object at %p (otid=%p)%s%s%s%s>", tp_name, self, self->pimpl->thread,
        is_current_here(self) ? " current" : self->pimpl->state == FC_ACTIVE ? " suspended" : "",
        self->pimpl->state == FC_ACTIVE ? " active" : "",
        self->pimpl->state == FC_NEW ? " pending" : " started",
        self->pimpl->is_main ? " main" : "");
}

static PyObject *green_getstate(FcGreenlet *self, PyObject *unused)
{
    (void)unused;
    PyErr_Format(PyExc_TypeError, "cannot serialize '%s' object", Py_TYPE(self)->tp_name);
    return NULL;
}

static PyMethodDef green_methods[] = {
    {"switch", (PyCFunction)(void (*)(void))green_switch,
     METH_FASTCALL | METH_KEYWORDS,
     "switch(*args, **kwargs)\n--\n\n"
     "Run this greenlet (or its first live parent) until it switches back.\n"
     "A new greenlet calls run(*args, **kwargs); a suspended one returns\n"
     "from its own switch() with () for no arguments, the argument for one,\n"
     "the args tuple for several, the kwargs dict, or (args, kwargs)."},
    {"throw", (PyCFunction)green_throw, METH_VARARGS,
     "throw(typ=GreenletExit, val=None, tb=None)\n--\n\n"
     "Switch to this greenlet and raise the exception in it at once."},
    {"__getstate__", (PyCFunction)green_getstate, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL}
};

static PyGetSetDef green_getsets[] = {
    {"run", (getter)green_getrun, (setter)green_setrun,
     "The callable run when the greenlet starts; gone once it started.", NULL},
    {"parent", (getter)green_getparent, (setter)green_setparent,
     "The greenlet that gets this one's result (or exception) when it ends.", NULL},
    {"dead", (getter)green_getdead, NULL,
     "True once the greenlet finished (or its thread exited).", NULL},
    {"gr_frame", (getter)green_getframe, NULL,
     "The frame the greenlet is suspended in, or None.", NULL},
    {"gr_context", (getter)green_getcontext, (setter)green_setcontext,
     "The contextvars.Context the greenlet runs in (None: a new empty one).", NULL},
    {"_stack_saved", (getter)green_getstacksaved, NULL,
     "Bytes of stack copied away: always 0, fastco never copies stacks.", NULL},
    {"stack_size", (getter)green_getstacksize, NULL,
     "Usable bytes of the greenlet's C stack (None for a main greenlet).", NULL},
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

static PyNumberMethods green_as_number = {
    .nb_bool = (inquiry)green_bool,
};

PyTypeObject FcGreenlet_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fastco.greenlet",
    .tp_basicsize = sizeof(FcGreenlet),
    .tp_dealloc = (destructor)green_dealloc,
    .tp_repr = (reprfunc)green_repr,
    .tp_as_number = &green_as_number,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "greenlet(run=None, parent=None, *, stack_size=0)\n--\n\n"
              "A coroutine on its own C stack, with greenlet's interface.\n"
              "parent defaults to the current greenlet; stack_size (bytes of C\n"
              "stack; 0 for the default, 8 MiB unless set_default_stack_size\n"
              "changed it) is fastco's own addition.",
    .tp_traverse = (traverseproc)green_traverse,
    .tp_clear = (inquiry)green_clear,
    .tp_weaklistoffset = offsetof(FcGreenlet, weakreflist),
    .tp_methods = green_methods,
    .tp_getset = green_getsets,
    .tp_dictoffset = offsetof(FcGreenlet, dict),
    .tp_init = (initproc)green_init,
    .tp_new = green_new,
    .tp_is_gc = (inquiry)green_is_gc,
    .tp_finalize = (destructor)green_finalize,
};

int fc_greenlet_type_ready(void)
{
    if (fc_coro_ready() < 0)
        return -1;
    return PyType_Ready(&FcGreenlet_Type);
}
