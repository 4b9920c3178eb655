/*
 * hublock.c - the uncontended paths of fastco's cooperative locks, in C:
 * fastco._native.LockBase and RLockBase, the bases of fastco._thread's
 * LockType (threading.Lock once patched) and RLock.
 *
 * Connection pools take a lock per request (redis-py's pool takes its RLock
 * three times per command, requests with urllib3 six times per request),
 * nearly always free.
 * In Python a `with rlock:` cost five frames (RLock.acquire, LockType.acquire,
 * RLock.__exit__, RLock.release, LockType.release), ~5,800 instructions
 * against ~2,100 for the stdlib's C RLock: on redis-py SET/GET under
 * patch_all that was nearly all of fastco's own cost per command.  Here
 * acquire, release, __enter__ and __exit__ run no Python frame while the
 * lock is free and nobody waits; anything else -- a wait, a timeout, a
 * failed non-blocking try that yields, waking a waiter -- calls the Python
 * side (fastco/_thread.py), which keeps the whole protocol of waiters.
 *
 * The state of a lock is a flag read and written with the GIL held, so it
 * changes atomically for every OS thread (the waiters' protocol across
 * threads is in fastco/_thread.py).  An RLock holds a LockType (its
 * `_block`, whose waits it uses) and its owner greenlet and count.
 */
#include "hubcore.h"

#include <structmember.h>   /* T_OBJECT, T_OBJECT_EX, T_PYSSIZET, READONLY */

typedef struct {
    PyObject_HEAD
    PyObject *waiters;       /* collections.deque of waiter records */
    PyObject *weakreflist;
    char locked;
} FhLock;

typedef struct {
    PyObject_HEAD
    PyObject *block;         /* a LockType (FhLock), taken while owned */
    PyObject *owner;         /* the owning greenlet, or NULL / None */
    Py_ssize_t count;        /* acquisitions by the owner */
    PyObject *weakreflist;
} FhRLock;

static PyTypeObject FhLock_Type;
static PyTypeObject FhRLock_Type;

/* Set by lock_setup (fastco/_thread.py). */
static PyObject *deque_type;     /* collections.deque */
static PyObject *wake_first;     /* _wake_first(waiters) */
static PyObject *lock_class;     /* LockType: what an RLock's _block is */
static PyObject *str_acquire, *str_acquire_slow, *str_acquire_other, *str_failed_try;
static PyObject *str_check_args;

/* ------------------------------------------------------------------------
 * LockBase
 */

/* Whether timeout is -1 (int or float): the default, "no timeout". */
static int timeout_is_default(PyObject *timeout)
{
    if (timeout == NULL)
        return 1;
    if (PyLong_CheckExact(timeout)) {
        int overflow;
        return PyLong_AsLongAndOverflow(timeout, &overflow) == -1 && !overflow;
    }
    return PyFloat_CheckExact(timeout) && PyFloat_AS_DOUBLE(timeout) == -1.0;
}

/* Wakes the first waiter of a lock that was just released, if any.  (A
 * lock that the cycle collector cleared has no deque: SystemError, no crash.) */
static int wake_waiter(FhLock *self)
{
    Py_ssize_t n = PyObject_Size(self->waiters);
    PyObject *r;
    if (n <= 0)
        return (int)n;   /* 0, or -1 with an exception set */
    r = PyObject_CallOneArg(wake_first, self->waiters);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static PyObject *release_lock(FhLock *self)
{
    if (!self->locked) {
        PyErr_SetString(PyExc_RuntimeError, "release unlocked lock");
        return NULL;
    }
    self->locked = 0;
    if (wake_waiter(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* A class without an __init__ of its own takes no arguments (as the stdlib's). */
static int check_no_args(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (type->tp_init == PyBaseObject_Type.tp_init
        && (PyTuple_GET_SIZE(args) > 0 || (kwds != NULL && PyDict_GET_SIZE(kwds) > 0))) {
        PyErr_Format(PyExc_TypeError, "%s() takes no arguments", type->tp_name);
        return -1;
    }
    return 0;
}

static PyObject *lock_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    FhLock *self;
    if (check_no_args(type, args, kwds) < 0)
        return NULL;
    if (deque_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "fastco._thread did not call lock_setup");
        return NULL;
    }
    self = (FhLock *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->waiters = PyObject_CallNoArgs(deque_type);
    if (self->waiters == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

/* Subclasses' instances: subtype_traverse visits the type, subtype_dealloc
 * drops the reference to it (this base is a static type). */
static int lock_traverse(FhLock *self, visitproc visit, void *arg)
{
    Py_VISIT(self->waiters);
    return 0;
}

static int lock_clear(FhLock *self)
{
    Py_CLEAR(self->waiters);
    return 0;
}

static void lock_dealloc(FhLock *self)
{
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)self);
    lock_clear(self);
    Py_TYPE(self)->tp_free(self);
}

/* The (up to two) arguments named in `names`, positional or by keyword, of
 * a METH_FASTCALL | METH_KEYWORDS method; absent ones stay NULL. */
static int parse_two(const char *fname, const char *const names[2], PyObject *const *args,
                     Py_ssize_t nargs, PyObject *kwnames, PyObject *vals[2])
{
    Py_ssize_t nkw = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
    vals[0] = vals[1] = NULL;
    if (nargs > 2) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most 2 arguments (%zd given)", fname,
                     nargs + nkw);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++)
        vals[i] = args[i];
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        int i = PyUnicode_CompareWithASCIIString(key, names[0]) == 0 ? 0
                : PyUnicode_CompareWithASCIIString(key, names[1]) == 0 ? 1 : -1;
        if (i < 0) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'",
                         fname, key);
            return -1;
        }
        if (vals[i] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname,
                         names[i]);
            return -1;
        }
        vals[i] = args[nargs + k];
    }
    return 0;
}

static const char *const acquire_names[2] = {"blocking", "timeout"};

/* acquire(blocking=True, timeout=-1) */
static PyObject *lock_acquire(FhLock *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    PyObject *v[2];
    int blocking;
    if (nargs == 0 && kwnames == NULL && !self->locked) {
        self->locked = 1;
        Py_RETURN_TRUE;
    }
    if (parse_two("acquire", acquire_names, args, nargs, kwnames, v) < 0)
        return NULL;
    if (!timeout_is_default(v[1])) {
        /* A timeout: its checks and waits are the Python side's. */
        PyObject *call[3] = {(PyObject *)self, v[0] != NULL ? v[0] : Py_True, v[1]};
        return PyObject_VectorcallMethod(str_acquire_other, call, 3, NULL);
    }
    if (!self->locked) {
        self->locked = 1;
        Py_RETURN_TRUE;
    }
    blocking = v[0] != NULL ? PyObject_IsTrue(v[0]) : 1;
    if (blocking < 0)
        return NULL;
    if (!blocking)
        return PyObject_CallMethodNoArgs((PyObject *)self, str_failed_try);
    return PyObject_CallMethodOneArg((PyObject *)self, str_acquire_slow, Py_None);
}

/* __enter__(): acquire() */
static PyObject *lock_enter(FhLock *self, PyObject *unused)
{
    (void)unused;
    if (!self->locked) {
        self->locked = 1;
        Py_RETURN_TRUE;
    }
    return PyObject_CallMethodOneArg((PyObject *)self, str_acquire_slow, Py_None);
}

/* release() */
static PyObject *lock_release(FhLock *self, PyObject *unused)
{
    (void)unused;
    return release_lock(self);
}

/* __exit__(*exc_info): release() */
static PyObject *lock_exit(FhLock *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)args;
    (void)nargs;
    return release_lock(self);
}

/* locked() */
static PyObject *lock_locked(FhLock *self, PyObject *unused)
{
    (void)unused;
    return PyBool_FromLong(self->locked);
}

/* _try(): take the lock if it is free; never waits nor yields. */
static PyObject *lock_try(FhLock *self, PyObject *unused)
{
    (void)unused;
    if (self->locked)
        Py_RETURN_FALSE;
    self->locked = 1;
    Py_RETURN_TRUE;
}

/* _reset(): free, whoever held it (a child after fork); wakes nobody. */
static PyObject *lock_reset(FhLock *self, PyObject *unused)
{
    (void)unused;
    self->locked = 0;
    Py_RETURN_NONE;
}

static PyMethodDef lock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))lock_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire(blocking=True, timeout=-1) -> bool\n--\n\n"
     "Take the lock, waiting (only this task) while another holds it; False if\n"
     "blocking is false, or after timeout seconds."},
    {"__enter__", (PyCFunction)lock_enter, METH_NOARGS, "acquire()"},
    {"release", (PyCFunction)lock_release, METH_NOARGS,
     "release()\n--\n\nRelease the lock (whoever took it) and wake a waiter."},
    {"__exit__", (PyCFunction)(void (*)(void))lock_exit, METH_FASTCALL, "release()"},
    {"locked", (PyCFunction)lock_locked, METH_NOARGS,
     "locked() -> bool\n--\n\nTrue while some task holds the lock."},
    {"_try", (PyCFunction)lock_try, METH_NOARGS,
     "_try() -> bool\n--\n\nTake the lock if it is free (no wait, no yield)."},
    {"_reset", (PyCFunction)lock_reset, METH_NOARGS,
     "_reset()\n--\n\nMark the lock free without waking anybody (after fork)."},
    {NULL, NULL, 0, NULL}
};

static PyMemberDef lock_members[] = {
    {"_waiters", T_OBJECT_EX, offsetof(FhLock, waiters), READONLY,
     "The waiter records of the tasks waiting for the lock (a deque)."},
    {NULL, 0, 0, 0, NULL}
};

static PyTypeObject FhLock_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fastco._native.LockBase",
    .tp_basicsize = sizeof(FhLock),
    .tp_dealloc = (destructor)lock_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The C paths of fastco._thread.LockType (subclass that).",
    .tp_traverse = (traverseproc)lock_traverse,
    .tp_clear = (inquiry)lock_clear,
    .tp_weaklistoffset = offsetof(FhLock, weakreflist),
    .tp_methods = lock_methods,
    .tp_members = lock_members,
    .tp_new = lock_new,
};

/* ------------------------------------------------------------------------
 * RLockBase
 */

static PyObject *rlock_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    FhRLock *self;
    if (check_no_args(type, args, kwds) < 0)
        return NULL;
    if (lock_class == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "fastco._thread did not call lock_setup");
        return NULL;
    }
    self = (FhRLock *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->block = PyObject_CallNoArgs(lock_class);
    if (self->block == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int rlock_traverse(FhRLock *self, visitproc visit, void *arg)
{
    Py_VISIT(self->block);
    Py_VISIT(self->owner);
    return 0;
}

static int rlock_clear(FhRLock *self)
{
    Py_CLEAR(self->block);
    Py_CLEAR(self->owner);
    return 0;
}

static void rlock_dealloc(FhRLock *self)
{
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)self);
    rlock_clear(self);
    Py_TYPE(self)->tp_free(self);
}

/* The RLock's block as an FhLock if it is one (it always is, unless the
 * Python side replaced it), else NULL. */
static inline FhLock *rlock_block(FhRLock *self)
{
    PyObject *b = self->block;
    return b != NULL && PyObject_TypeCheck(b, &FhLock_Type) ? (FhLock *)b : NULL;
}

/* The owner is now the running greenlet, once. */
static PyObject *rlock_owned(FhRLock *self)
{
    PyObject *me = fh_getcurrent();
    if (me == NULL)
        return NULL;
    Py_XSETREF(self->owner, Py_NewRef(me));
    self->count = 1;
    Py_RETURN_TRUE;
}

/* acquire(blocking=True, timeout=-1) */
/* The checks of acquire()'s arguments for a task that holds the RLock
 * already (it takes one more level, whatever they ask): a timeout is
 * checked by the Python side's _check_args (the stdlib lock's own checks
 * and messages).  Returns 0, or -1 with the stdlib's exception. */
static int owner_check_args(FhRLock *self, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames)
{
    PyObject *v[2], *r;
    if (parse_two("acquire", acquire_names, args, nargs, kwnames, v) < 0)
        return -1;
    if (timeout_is_default(v[1]))
        return v[0] != NULL && PyObject_IsTrue(v[0]) < 0 ? -1 : 0;
    PyObject *call[3] = {(PyObject *)self, v[0] != NULL ? v[0] : Py_True, v[1]};
    r = PyObject_VectorcallMethod(str_check_args, call, 3, NULL);
    Py_XDECREF(r);
    return r != NULL ? 0 : -1;
}

static PyObject *rlock_acquire(FhRLock *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    PyObject *me = fh_getcurrent(), *block, *r, *stack[3];
    Py_ssize_t n = nargs + (kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0);
    FhLock *b;
    int got;
    if (me == NULL)
        return NULL;
    if (self->owner == me) {
        /* One more level, once the arguments pass the stdlib's checks,
         * which apply whoever holds the lock. */
        if (n > 0 && owner_check_args(self, args, nargs, kwnames) < 0)
            return NULL;
        self->count++;
        Py_RETURN_TRUE;
    }
    if (self->block == NULL) {
        PyErr_SetString(PyExc_ValueError, "RLock was cleared");
        return NULL;
    }
    b = rlock_block(self);
    if (b != NULL && !b->locked && n == 0) {
        b->locked = 1;
        return rlock_owned(self);
    }
    if (n > 2) {
        PyErr_Format(PyExc_TypeError, "acquire() takes at most 2 arguments (%zd given)", n);
        return NULL;
    }
    /* Taken by another task, or arguments: the block's acquire decides (it
     * may wait; our own reference keeps the block alive meanwhile). */
    block = stack[0] = Py_NewRef(self->block);
    for (Py_ssize_t i = 0; i < n; i++)
        stack[i + 1] = args[i];
    r = PyObject_VectorcallMethod(str_acquire, stack, (size_t)nargs + 1, kwnames);
    Py_DECREF(block);
    if (r == NULL)
        return NULL;
    got = PyObject_IsTrue(r);
    Py_DECREF(r);
    if (got < 0)
        return NULL;
    if (!got)
        Py_RETURN_FALSE;
    return rlock_owned(self);
}

/* __enter__(): acquire() */
static PyObject *rlock_enter(FhRLock *self, PyObject *unused)
{
    (void)unused;
    return rlock_acquire(self, NULL, 0, NULL);
}

/* release() */
static PyObject *rlock_release(FhRLock *self, PyObject *unused)
{
    PyObject *me = fh_getcurrent();
    FhLock *b;
    (void)unused;
    if (me == NULL)
        return NULL;
    if (self->owner != me || self->count <= 0) {
        PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
        return NULL;
    }
    if (--self->count > 0)
        Py_RETURN_NONE;
    Py_CLEAR(self->owner);
    b = rlock_block(self);
    if (b != NULL)
        return release_lock(b);
    if (self->block == NULL) {
        PyErr_SetString(PyExc_ValueError, "RLock was cleared");
        return NULL;
    }
    return PyObject_CallMethod(self->block, "release", NULL);
}

/* __exit__(*exc_info): release() */
static PyObject *rlock_exit(FhRLock *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)args;
    (void)nargs;
    return rlock_release(self, NULL);
}

/* _is_owned() (for threading.Condition) */
static PyObject *rlock_is_owned(FhRLock *self, PyObject *unused)
{
    PyObject *me = fh_getcurrent();
    (void)unused;
    if (me == NULL)
        return NULL;
    return PyBool_FromLong(self->owner == me);
}

static PyMethodDef rlock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))rlock_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire(blocking=True, timeout=-1) -> bool\n--\n\n"
     "Take the lock, or once more if this task holds it."},
    {"__enter__", (PyCFunction)rlock_enter, METH_NOARGS, "acquire()"},
    {"release", (PyCFunction)rlock_release, METH_NOARGS,
     "release()\n--\n\n"
     "Release one level; the lock is free once every acquire was released."},
    {"__exit__", (PyCFunction)(void (*)(void))rlock_exit, METH_FASTCALL, "release()"},
    {"_is_owned", (PyCFunction)rlock_is_owned, METH_NOARGS,
     "_is_owned() -> bool\n--\n\nWhether the running task holds the lock."},
    {NULL, NULL, 0, NULL}
};

static PyMemberDef rlock_members[] = {
    {"_block", T_OBJECT_EX, offsetof(FhRLock, block), READONLY,
     "The LockType held while some task owns the RLock."},
    {"_owner", T_OBJECT, offsetof(FhRLock, owner), 0, "The owning greenlet, or None."},
    {"_count", T_PYSSIZET, offsetof(FhRLock, count), 0, "How many times the owner took it."},
    {NULL, 0, 0, 0, NULL}
};

static PyTypeObject FhRLock_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fastco._native.RLockBase",
    .tp_basicsize = sizeof(FhRLock),
    .tp_dealloc = (destructor)rlock_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The C paths of fastco._thread.RLock (subclass that).",
    .tp_traverse = (traverseproc)rlock_traverse,
    .tp_clear = (inquiry)rlock_clear,
    .tp_weaklistoffset = offsetof(FhRLock, weakreflist),
    .tp_methods = rlock_methods,
    .tp_members = rlock_members,
    .tp_new = rlock_new,
};

/* ------------------------------------------------------------------------
 * Module
 */

/* lock_setup(deque, wake_first, LockType) */
static PyObject *mod_lock_setup(PyObject *module, PyObject *args)
{
    PyObject *d, *w, *l;
    (void)module;
    if (!PyArg_ParseTuple(args, "OOO:lock_setup", &d, &w, &l))
        return NULL;
    if (!PyCallable_Check(d) || !PyCallable_Check(w) || !PyType_Check(l)
        || !PyType_IsSubtype((PyTypeObject *)l, &FhLock_Type)) {
        PyErr_SetString(PyExc_TypeError,
                        "lock_setup(deque, wake_first, LockType): LockType subclasses LockBase");
        return NULL;
    }
    Py_XSETREF(deque_type, Py_NewRef(d));
    Py_XSETREF(wake_first, Py_NewRef(w));
    Py_XSETREF(lock_class, Py_NewRef(l));
    Py_RETURN_NONE;
}

PyMethodDef fh_lock_functions[] = {
    {"lock_setup", (PyCFunction)mod_lock_setup, METH_VARARGS,
     "lock_setup(deque, wake_first, LockType)\n--\n\nCalled once by fastco._thread."},
    {NULL, NULL, 0, NULL}
};

int fh_lock_types_init(PyObject *module)
{
    str_acquire = PyUnicode_InternFromString("acquire");
    str_acquire_slow = PyUnicode_InternFromString("_acquire_slow");
    str_acquire_other = PyUnicode_InternFromString("_acquire_other");
    str_failed_try = PyUnicode_InternFromString("_failed_try");
    str_check_args = PyUnicode_InternFromString("_check_args");
    if (str_acquire == NULL || str_acquire_slow == NULL || str_acquire_other == NULL
        || str_failed_try == NULL || str_check_args == NULL)
        return -1;
    if (PyType_Ready(&FhLock_Type) < 0 || PyType_Ready(&FhRLock_Type) < 0)
        return -1;
    if (PyModule_AddObjectRef(module, "LockBase", (PyObject *)&FhLock_Type) < 0
        || PyModule_AddObjectRef(module, "RLockBase", (PyObject *)&FhRLock_Type) < 0)
        return -1;
    return 0;
}
