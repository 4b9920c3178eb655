/*
 * pystate.c - saving and restoring the interpreter state of a coroutine,
 * for CPython 3.10 to 3.15.  The only file that knows PyThreadState's
 * per-version fields (see pystate.h for what is saved and why).
 *
 * Some facts this code rests on:
 *
 * - The interpreter threads a _PyCFrame (3.11, 3.12; CFrame in 3.10) through
 *   the C stack: each _PyEval_EvalFrameDefault call links a new one to
 *   tstate->cframe and unlinks it on return.  A coroutine's records stay on
 *   its own stack while it is suspended, so saving the pointer is enough.
 *   A new coroutine gets a root record, in fc_pystate_start's frame on its
 *   own stack, whose current_frame is NULL: frame chains (tracebacks,
 *   f_back) of a coroutine therefore end at its `run`.
 * - 3.10 and 3.11 cache "is tracing on" in cframe->use_tracing; it must flow
 *   from the switching coroutine into the next one, or sys.settrace called
 *   in one coroutine is ignored in the others (the "carry").
 * - 3.11+ allocate frames in a per-thread stack of chunks.  A coroutine
 *   gets its own root chunk, carved from its stack slot by the caller;
 *   CPython never frees a root chunk (push_chunk skips its first slot so
 *   that popping never empties it), but it does allocate and free further
 *   chunks itself, with the object arena allocator, when frames overflow.
 * - The deallocation trashcan's list of deferred objects is shared by the
 *   thread's coroutines (whoever unwinds next destroys them; they are
 *   garbage either way), while its nesting counter, a C-stack depth, is
 *   per coroutine (3.10-3.12; 3.13 counts with c_recursion_remaining; 3.14+
 *   compare the stack pointer with the running stack's limits).  On 3.14+
 *   the list, delete_later, is drained by whichever coroutine next ends a
 *   trashcan with enough stack left; objects on it are garbage whoever
 *   frees them, so it stays per thread, not per coroutine.
 * - 3.14+ have no C recursion counter: CPython compares the stack pointer
 *   with bounds it keeps per thread state, normally the thread's own stack.
 *   Each coroutine stack is announced with
 *   PyUnstable_ThreadState_SetStackProtection when it starts or resumes,
 *   and the thread's stack restored with ..._ResetStackProtection when the
 *   main coroutine resumes, before any other C-API call.  Unannounced, a
 *   coroutine stack lies outside the bounds: 3.14.0 aborts at the first
 *   recursion check, later versions skip the check (a real overflow is not
 *   caught) and, as the trashcan then thinks the stack is exhausted, park
 *   every deallocated container on delete_later for good (gh-157519).  The
 *   announcement costs two stores behind a call; RecursionError then comes
 *   two margins (32 KiB, 64 KiB in debug builds) above the guard page, on
 *   any stack size, so the Python recursion limit is not scaled down.
 * - 3.14+ keep the running JIT trace in current_executor, per flow of
 *   control (a switch can happen inside a call the trace made).  jit_exit
 *   (3.15) is set and read back-to-back when a trace exits: not saved.
 * - 3.15 end a thread's frame chain at tstate->base_frame, a sentinel frame
 *   that profilers unwind to; a coroutine's chain ends there too.
 */
#include "pystate.h"

#include <stdio.h>
#include <string.h>

#if FC_STACK_LIMITS
/* Exported by 3.14.10 and 3.15.2, but not by every 3.14 (the docs disagree
 * on the release that added them): declared weak, so that a missing one
 * reads as NULL and fc_pystate_check refuses the import, rather than the
 * module failing to load with an unresolved symbol.  (The declarations
 * repeat the headers', for headers that lack them.) */
__attribute__((weak, visibility("default")))
int PyUnstable_ThreadState_SetStackProtection(PyThreadState *, void *, size_t);
__attribute__((weak, visibility("default")))
void PyUnstable_ThreadState_ResetStackProtection(PyThreadState *);

/* Tells CPython which C stack runs now: a coroutine's, or (lo == NULL)
 * the thread's own.  Cannot fail: every coroutine stack is at least
 * FC_PY_MIN_STACK bytes, which fc_pystate_check made sure CPython takes. */
static inline void announce_stack(PyThreadState *ts, void *lo, size_t len)
{
    if (lo != NULL)
        (void)PyUnstable_ThreadState_SetStackProtection(ts, lo, len);
    else
        PyUnstable_ThreadState_ResetStackProtection(ts);
}
#endif

int fc_pystate_check(void)
{
#if FC_STACK_LIMITS
    PyThreadState *ts = fc_tstate();
    char probe, version[32];

    if (PyUnstable_ThreadState_SetStackProtection == NULL
        || PyUnstable_ThreadState_ResetStackProtection == NULL) {
        /* "3.14.0 (main, ...) [GCC ...]": the first word. */
        snprintf(version, sizeof(version), "%.*s",
                 (int)strcspn(Py_GetVersion(), " "), Py_GetVersion());
        PyErr_Format(PyExc_ImportError,
                     "fastco needs PyUnstable_ThreadState_SetStackProtection, "
                     "which CPython %s does not have: use a later %d.%d release",
                     version, PY_MAJOR_VERSION, PY_MINOR_VERSION);
        return -1;
    }
    /* The smallest coroutine stack must be accepted (the minimum is an
     * internal constant that fastco computes like CPython does).  Only
     * the limits change meanwhile; nothing runs on them. */
    if (PyUnstable_ThreadState_SetStackProtection(
            ts, (void *)((uintptr_t)&probe - FC_PY_MIN_STACK), FC_PY_MIN_STACK) < 0) {
        PyObject *t, *v, *tb;
        PyErr_Fetch(&t, &v, &tb);
        PyErr_Format(PyExc_ImportError,
                     "fastco: this CPython refuses coroutine stacks of %zu bytes (%S): "
                     "a build with other stack margins than fastco assumes",
                     FC_PY_MIN_STACK, v != NULL ? v : Py_None);
        Py_XDECREF(t);
        Py_XDECREF(v);
        Py_XDECREF(tb);
        return -1;
    }
    PyUnstable_ThreadState_ResetStackProtection(ts);
#endif
    return 0;
}

#if !FC_STACK_LIMITS
/* `limit` scaled down to a stack of `size` bytes (at least 1). */
static int scaled(int limit, size_t size)
{
    if (size >= FC_FULL_STACK)
        return limit;
    size_t n = (size_t)limit * (size / 1024) / (FC_FULL_STACK / 1024);
    return n > 0 ? (int)n : 1;
}
#endif

int fc_pystate_save(fc_pystate *st, PyThreadState *ts)
{
    int carry = 0;

    st->context = ts->context;
    ts->context = NULL;
    st->exc_info = ts->exc_info;
#if FC_PY313
    st->current_frame = ts->current_frame;
    st->recursion_depth = ts->py_recursion_limit - ts->py_recursion_remaining;
#if FC_PY314
    st->current_executor = ts->current_executor;
#else
    st->c_recursion_remaining = ts->c_recursion_remaining;
#endif
    st->critical_section = ts->critical_section;
#elif FC_PY312
    st->cframe = ts->cframe;
    st->recursion_depth = ts->py_recursion_limit - ts->py_recursion_remaining;
    st->c_recursion_remaining = ts->c_recursion_remaining;
    st->trash_nesting = ts->trash.delete_nesting;
#elif FC_PY311
    st->cframe = ts->cframe;
    carry = ts->cframe->use_tracing;
    st->recursion_depth = ts->recursion_limit - ts->recursion_remaining;
    st->trash_nesting = ts->trash_delete_nesting;
#else
    st->frame = ts->frame;
    st->cframe = ts->cframe;
    carry = ts->cframe->use_tracing;
    st->recursion_depth = ts->recursion_depth;
    st->trash_nesting = ts->trash_delete_nesting;
#endif
#if FC_PY311
    st->datastack_chunk = ts->datastack_chunk;
    st->datastack_top = ts->datastack_top;
    st->datastack_limit = ts->datastack_limit;
#endif
    return carry;
}

void fc_pystate_restore(fc_pystate *st, PyThreadState *ts, int carry)
{
#if FC_STACK_LIMITS
    announce_stack(ts, st->stack_lo, st->stack_len);
#endif
    ts->context = st->context;
    st->context = NULL;
    ts->context_ver++;     /* invalidates contextvars' lookup cache */
    ts->exc_info = st->exc_info;
#if FC_PY313
    (void)carry;
    ts->current_frame = st->current_frame;
    ts->py_recursion_remaining = ts->py_recursion_limit - st->recursion_depth;
#if FC_PY314
    ts->current_executor = st->current_executor;
#else
    ts->c_recursion_remaining = st->c_recursion_remaining;
#endif
    ts->critical_section = st->critical_section;
#elif FC_PY312
    (void)carry;
    ts->cframe = st->cframe;
    ts->py_recursion_remaining = ts->py_recursion_limit - st->recursion_depth;
    ts->c_recursion_remaining = st->c_recursion_remaining;
    ts->trash.delete_nesting = st->trash_nesting;
#elif FC_PY311
    ts->cframe = st->cframe;
    ts->cframe->use_tracing = (uint8_t)carry;
    ts->recursion_remaining = ts->recursion_limit - st->recursion_depth;
    ts->trash_delete_nesting = st->trash_nesting;
#else
    ts->frame = st->frame;
    ts->cframe = st->cframe;
    ts->cframe->use_tracing = carry;
    ts->recursion_depth = st->recursion_depth;
    ts->trash_delete_nesting = st->trash_nesting;
#endif
#if FC_PY311
    ts->datastack_chunk = st->datastack_chunk;
    ts->datastack_top = st->datastack_top;
    ts->datastack_limit = st->datastack_limit;
#endif
}

void fc_pystate_start(PyThreadState *ts, int carry, fc_fresh *fresh,
                      void (*body)(void *), void *arg)
{
#if FC_STACK_LIMITS
    fresh->st->stack_lo = fresh->stack_lo;
    fresh->st->stack_len = (size_t)((char *)fresh->stack_hi - (char *)fresh->stack_lo);
    announce_stack(ts, fresh->st->stack_lo, fresh->st->stack_len);
#endif
#if FC_PY313
    (void)carry;
#elif FC_PY312
    _PyCFrame root = {NULL, NULL};
    (void)carry;
#elif FC_PY311
    _PyCFrame root = {(uint8_t)carry, NULL, NULL};
#else
    CFrame root = {carry, NULL};
#endif

    ts->context = fresh->context;
    fresh->context = NULL;
    ts->context_ver++;
    ts->exc_info = fresh->exc_item;
#if FC_PY314
#if FC_PY315
    ts->current_frame = ts->base_frame;
#else
    ts->current_frame = NULL;
#endif
    ts->current_executor = NULL;
    /* CPython checks the C stack itself: the full Python limit. */
    ts->py_recursion_remaining = ts->py_recursion_limit;
    ts->critical_section = 0;
#elif FC_PY313
    ts->current_frame = NULL;
    ts->py_recursion_remaining = scaled(ts->py_recursion_limit, fresh->stack_size);
    ts->c_recursion_remaining = scaled(Py_C_RECURSION_LIMIT, fresh->stack_size);
    ts->critical_section = 0;
#elif FC_PY312
    ts->cframe = &root;
    ts->py_recursion_remaining = scaled(ts->py_recursion_limit, fresh->stack_size);
    ts->c_recursion_remaining = scaled(C_RECURSION_LIMIT, fresh->stack_size);
    ts->trash.delete_nesting = 0;
#elif FC_PY311
    ts->cframe = &root;
    ts->recursion_remaining = scaled(ts->recursion_limit, fresh->stack_size);
    ts->trash_delete_nesting = 0;
#else
    ts->frame = NULL;
    ts->cframe = &root;
    ts->recursion_depth = Py_GetRecursionLimit()
                        - scaled(Py_GetRecursionLimit(), fresh->stack_size);
    ts->trash_delete_nesting = 0;
#endif
#if FC_PY311
    if (fresh->chunk != NULL) {
        _PyStackChunk *c = fresh->chunk;
        c->previous = NULL;
        c->size = fresh->chunk_size;
        c->top = 0;
        ts->datastack_chunk = c;
        /* Like CPython's push_chunk for a root chunk: skip data[0] so that
         * no frame ever starts there and the chunk is never popped. */
        ts->datastack_top = &c->data[1];
        ts->datastack_limit = (PyObject **)((char *)c + fresh->chunk_size);
    } else {
        ts->datastack_chunk = NULL;
        ts->datastack_top = NULL;
        ts->datastack_limit = NULL;
    }
#endif
    body(arg);
    Py_FatalError("fastco: a coroutine body returned");
}

void fc_pystate_finish(PyThreadState *ts, void *own_chunk)
{
#if FC_PY311
    /* All frames are popped: what remains above our root chunk, if
     * anything, and a root CPython made itself, go back to the arena
     * allocator that _PyObject_VirtualAlloc took them from. */
    _PyStackChunk *c = ts->datastack_chunk;
    PyObjectArenaAllocator alloc;
    PyObject_GetArenaAllocator(&alloc);
    while (c != NULL && c != own_chunk) {
        _PyStackChunk *prev = c->previous;
        alloc.free(alloc.ctx, c, c->size);
        c = prev;
    }
    ts->datastack_chunk = NULL;
    ts->datastack_top = NULL;
    ts->datastack_limit = NULL;
#else
    (void)ts;
    (void)own_chunk;
#endif
}

PyFrameObject *fc_pystate_frame(fc_pystate *st, PyThreadState *ts)
{
#if FC_PY311
    /* Making a frame object for an interpreter frame takes internal calls
     * that are not exported; the public way is PyThreadState_GetFrame on a
     * thread state whose current frame is the suspended one.  Point the
     * running thread state there for the duration, with the collector off
     * so that no Python code can run meanwhile. */
    PyFrameObject *f;
    int gc_was_enabled = PyGC_Disable();
#if FC_PY313
    struct _PyInterpreterFrame *saved = ts->current_frame;
    ts->current_frame = st->current_frame;
    f = PyThreadState_GetFrame(ts);
    ts->current_frame = saved;
#else
    _PyCFrame *saved = ts->cframe;
    ts->cframe = st->cframe;
    f = PyThreadState_GetFrame(ts);
    ts->cframe = saved;
#endif
    if (gc_was_enabled)
        PyGC_Enable();
    return f;
#else
    (void)ts;
    Py_XINCREF(st->frame);
    return st->frame;
#endif
}

size_t fc_pystate_chunk_bytes(size_t stack_size)
{
#if FC_PY311
    /* An eighth of the C stack, from 4 KiB to 64 KiB (about 400 frames):
     * deeper calls spill into chunks CPython allocates itself.  The cap
     * keeps the page a suspended coroutine touches near the top of its
     * slot, next to the guard page of the slot above: both then share one
     * page-table page. */
    size_t n = stack_size / 8;
    return n < 4096 ? 4096 : n > 65536 ? 65536 : n;
#else
    (void)stack_size;
    return 0;
#endif
}

void fc_tracing_enter(PyThreadState *ts)
{
#if FC_PY311
    PyThreadState_EnterTracing(ts);
#else
    ts->tracing++;
    ts->cframe->use_tracing = 0;
#endif
}

void fc_tracing_leave(PyThreadState *ts)
{
#if FC_PY311
    PyThreadState_LeaveTracing(ts);
#else
    ts->tracing--;
    ts->cframe->use_tracing = ts->c_tracefunc != NULL || ts->c_profilefunc != NULL;
#endif
}

void fc_exc_item_clear(_PyErr_StackItem *item)
{
#if FC_PY311
    Py_CLEAR(item->exc_value);
#else
    Py_CLEAR(item->exc_type);
    Py_CLEAR(item->exc_value);
    Py_CLEAR(item->exc_traceback);
#endif
}

int fc_exc_item_traverse(_PyErr_StackItem *item, visitproc visit, void *arg)
{
#if FC_PY311
    Py_VISIT(item->exc_value);
#else
    Py_VISIT(item->exc_type);
    Py_VISIT(item->exc_value);
    Py_VISIT(item->exc_traceback);
#endif
    return 0;
}

int fc_pystate_trash_nesting(PyThreadState *ts)
{
#if FC_PY313
    (void)ts;
    return -1;
#elif FC_PY312
    return ts->trash.delete_nesting;
#else
    return ts->trash_delete_nesting;
#endif
}

int fc_py_finalizing(void)
{
#if FC_PY313
    return Py_IsFinalizing();
#else
    return _Py_IsFinalizing();
#endif
}

PyObject *fc_dict_pop(PyObject *d, PyObject *key)
{
#if FC_PY313
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
