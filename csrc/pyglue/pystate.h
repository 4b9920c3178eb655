/*
 * pystate.h - the interpreter state that follows each coroutine.
 *
 * When one coroutine switches to another on the same thread, the parts of
 * PyThreadState that describe "what this flow of control is doing" (its
 * frames, the exception being handled, recursion depth, contextvars, the
 * frame data stack) must be saved and the other coroutine's restored.
 * This header and pystate.c are the only places that know which fields
 * those are in each CPython version; every version check in fastco is one
 * of the FC_PY3xx flags below.
 *
 * A coroutine's stack never moves (no stack copying), so the state only
 * holds pointers: the frames, _PyCFrame records and exception items it
 * points to stay where they are, on the suspended coroutine's own stack
 * and data stack, until it resumes.
 */
#ifndef FASTCO_PYSTATE_H
#define FASTCO_PYSTATE_H

#include <Python.h>
#include <stddef.h>

/* 3.11: frames live in a per-thread data stack of chunks, and the current
 * frame hangs off a _PyCFrame on the C stack; recursion is counted down. */
#define FC_PY311 (PY_VERSION_HEX >= 0x030B0000)
/* 3.12: recursion is split into Python and C counters, cframe loses
 * use_tracing (tracing became per code object), trash moves into a struct. */
#define FC_PY312 (PY_VERSION_HEX >= 0x030C0000)
/* 3.13: no more _PyCFrame: tstate->current_frame; trash list renamed. */
#define FC_PY313 (PY_VERSION_HEX >= 0x030D0000)
/* 3.14: c_recursion_remaining is gone; the JIT's current_executor is
 * per flow of control. */
#define FC_PY314 (PY_VERSION_HEX >= 0x030E0000)
/* 3.15: a thread's frame chain ends at a sentinel, tstate->base_frame, not
 * NULL. */
#define FC_PY315 (PY_VERSION_HEX >= 0x030F0000)
/* 3.14+: C recursion is checked against the stack pointer: CPython keeps
 * the bounds of the running C stack per thread state, which each coroutine
 * stack must announce when it starts running on it (see pystate.c). */
#define FC_STACK_LIMITS FC_PY314

#if PY_VERSION_HEX < 0x030A0000
#error "fastco supports CPython 3.10 to 3.15: this one is older"
#endif
#if PY_VERSION_HEX >= 0x03100000
#error "fastco supports CPython 3.10 to 3.15: this one is newer, and its thread state has not been checked"
#endif
#ifdef Py_GIL_DISABLED
#error "fastco does not support free-threaded CPython builds (Py_GIL_DISABLED): use the default build"
#endif

/* The smallest C stack CPython accepts for a coroutine (3.14+): three
 * times its stack margin (_PyOS_MIN_STACK_SIZE, an internal constant:
 * 48 KiB, or 96 KiB in debug builds).  Smaller stack_size requests are
 * rounded up to it. */
#if FC_STACK_LIMITS
#if defined(Py_DEBUG) || defined(_Py_ADDRESS_SANITIZER) || defined(_Py_THREAD_SANITIZER)
#define FC_PY_STACK_MARGIN ((size_t)4096 * sizeof(void *))
#else
#define FC_PY_STACK_MARGIN ((size_t)2048 * sizeof(void *))
#endif
#ifdef _Py_THREAD_SANITIZER
#define FC_PY_MIN_STACK (FC_PY_STACK_MARGIN * 6)
#else
#define FC_PY_MIN_STACK (FC_PY_STACK_MARGIN * 3)
#endif
#endif

/* `size` raised to CPython's smallest coroutine stack, if it has one. */
static inline size_t fc_py_stack_floor(size_t size)
{
#if FC_STACK_LIMITS
    return size < FC_PY_MIN_STACK ? FC_PY_MIN_STACK : size;
#else
    return size;
#endif
}

/* The saved interpreter state of a suspended coroutine. */
typedef struct fc_pystate {
    /* contextvars context (strong reference, moved in and out of tstate). */
    PyObject *context;
    /* Top of the chain of exceptions being handled. */
    _PyErr_StackItem *exc_info;
    /* Python recursion depth, as limit minus remaining on 3.11+, so that a
     * new sys.setrecursionlimit applies to suspended coroutines too. */
    int recursion_depth;
    /* Nesting of the deallocation trashcan (a C-stack depth). */
    int trash_nesting;
#if FC_PY313
    struct _PyInterpreterFrame *current_frame;
#if !FC_PY314
    int c_recursion_remaining;
#endif
    uintptr_t critical_section;
#elif FC_PY312
    _PyCFrame *cframe;
    int c_recursion_remaining;
#elif FC_PY311
    _PyCFrame *cframe;
#else
    PyFrameObject *frame;
    CFrame *cframe;
#endif
#if FC_PY311
    _PyStackChunk *datastack_chunk;
    PyObject **datastack_top;
    PyObject **datastack_limit;
#endif
#if FC_PY314
    /* The JIT trace running when it switched away (NULL outside one). */
    PyObject *current_executor;
#endif
#if FC_STACK_LIMITS
    /* Its C stack, [stack_lo, stack_lo + stack_len), announced to CPython
     * whenever it resumes; NULL for a thread's main coroutine, which runs
     * on the thread's own stack (CPython knows that one). */
    void *stack_lo;
    size_t stack_len;
#endif
} fc_pystate;

/* What a new coroutine starts with. */
typedef struct fc_fresh {
    /* Its own, zeroed, root exception item: sys.exc_info() in a coroutine
     * never sees another coroutine's exception. */
    _PyErr_StackItem *exc_item;
    /* Its context (a strong reference, given away) or NULL: empty. */
    PyObject *context;
    /* Memory for the root chunk of its frame data stack (3.11+), or NULL to
     * let CPython allocate one (which fc_pystate_finish then frees). */
    void *chunk;
    size_t chunk_size;
    /* Bytes of C stack it runs on.  CPython's recursion limits are sized for
     * an 8 MiB thread stack; on a smaller one they are scaled down in
     * proportion (Python and, on 3.12 and 3.13, C recursion), so that
     * recursion that raises RecursionError on a thread raises it here too,
     * before reaching the guard page.  (3.14+ check the stack pointer
     * against the announced stack instead: nothing is scaled.) */
    size_t stack_size;
    /* The C stack it runs on, [stack_lo, stack_hi): stack_hi is where it
     * starts, the guard page sits below stack_lo. */
    void *stack_lo, *stack_hi;
    /* Where its state will be saved while it is suspended (records the
     * stack bounds, for fc_pystate_restore). */
    fc_pystate *st;
} fc_fresh;

/* The stack size CPython's recursion limits are meant for. */
#define FC_FULL_STACK ((size_t)8 << 20)

/* Moves the running coroutine's state out of `ts` into `st`.  Returns the
 * "carry": state of the thread that must flow on into whichever coroutine
 * runs next (the tracing flag of 3.10/3.11), to pass to restore/start. */
int fc_pystate_save(fc_pystate *st, PyThreadState *ts);

/* Moves `st` back into `ts`.  Called on the resumed coroutine's own stack
 * right after the switch, before any other C-API call: on 3.14+ it first
 * tells CPython which C stack is now running. */
void fc_pystate_restore(fc_pystate *st, PyThreadState *ts, int carry);

/* Installs a fresh state for a new coroutine and calls body(arg), on the
 * coroutine's own stack.  The root _PyCFrame lives in this call's frame,
 * so body must never return: it ends by switching away for good. */
void fc_pystate_start(PyThreadState *ts, int carry, fc_fresh *fresh,
                      void (*body)(void *), void *arg)
    __attribute__((noreturn));

/* Checks, once when the module is made, that this interpreter has what
 * fastco needs at run time (3.14+: the stack protection API, which must
 * accept stacks of FC_PY_MIN_STACK bytes).  Returns 0, or -1 with an
 * ImportError set that says what is missing. */
int fc_pystate_check(void);

/* Called in a coroutine that has returned from its last Python call, just
 * before its final switch: checks that its frame data stack is back to the
 * root chunk and frees CPython-allocated chunks. */
void fc_pystate_finish(PyThreadState *ts, void *own_chunk);

/* The frame a suspended coroutine was last running, as a new reference,
 * or NULL (no exception set) if it has none.  `ts` must be the running
 * thread state (of the same thread). */
PyFrameObject *fc_pystate_frame(fc_pystate *st, PyThreadState *ts);

/* How much of a coroutine stack to give to its frame data stack (3.11+;
 * 0 before 3.11). */
size_t fc_pystate_chunk_bytes(size_t stack_size);

/* Tracing off (and back on) around a call that sys.settrace and
 * sys.setprofile must not see: fastco's own trace callback. */
void fc_tracing_enter(PyThreadState *ts);
void fc_tracing_leave(PyThreadState *ts);

/* Drops the references a coroutine's root exception item holds. */
void fc_exc_item_clear(_PyErr_StackItem *item);

/* Visits them, for the garbage collector. */
int fc_exc_item_traverse(_PyErr_StackItem *item, visitproc visit, void *arg);

/* The deallocation trashcan's nesting depth now, or -1 where CPython keeps
 * none per thread state (3.13+).  greenlet reports it to its tests. */
int fc_pystate_trash_nesting(PyThreadState *ts);

/* The interpreter is shutting down: no coroutine may run any more. */
int fc_py_finalizing(void);

/* Removes `key` from dict `d`: its value (new reference), else NULL without
 * an exception if absent (or with one on error). */
PyObject *fc_dict_pop(PyObject *d, PyObject *key);

/* PyLong_AsInt is public from 3.13 on. */
#if !FC_PY313
#define PyLong_AsInt _PyLong_AsInt
#endif

/* The running thread state, without checks. */
static inline PyThreadState *fc_tstate(void)
{
#if FC_PY313
    return PyThreadState_GetUnchecked();
#else
    return _PyThreadState_UncheckedGet();
#endif
}

#endif /* FASTCO_PYSTATE_H */
