/*
 * coro.c - the coroutine behind a greenlet object (fc_coro, its pimpl): the
 * switch, a greenlet's start and end on its own C stack, and the killing of
 * greenlets that are dropped or outlive their thread.  The Python-facing
 * type is greenlet.c; greenlet's C API is capi.c.
 *
 * A switch, start to finish:
 *
 *   1. the caller packs what it sends into an fc_xfer and picks the target
 *      (the first live greenlet up the parent chain; a new one gets a stack);
 *   2. fc_switch_to saves the caller's interpreter state, makes the target
 *      current and switches C contexts (csrc/ctx.h): no syscall, no GIL
 *      release, nothing allocated;
 *   3. the target, back on its own stack, restores its interpreter state,
 *      releases the stack of a greenlet that just died, calls the trace
 *      function, and takes what was sent.
 *
 * Memory of a started greenlet's stack slot (see fastco.h for the slot):
 *
 *   lo + size  +------------------------------+
 *              | frame data root chunk (3.11+) |  grows up
 *   split  ->  +------------------------------+  FC_SPLIT bytes into a page
 *              | C stack                       |  grows down
 *              |   ...                         |
 *   lo     ->  +------------------------------+
 *              | guard page                    |
 *
 * The split sits inside a page so that a greenlet suspended a few calls
 * deep touches one page: the bottom of its frame data and the top of its
 * C stack share it.
 */
#include "glue.h"
#include "../ctx.h"

#include <string.h>

/* Bytes of the C stack in the page shared with the frame data chunk. */
#define FC_SPLIT 3072
/* How much of a finished greenlet's stack, on each side of the split, may
 * stay resident in the stack cache (see trim_deep). */
#define FC_HOT_KEEP ((size_t)64 << 10)

static PyObject *str_run, *str_switch, *str_throw;

/* ------------------------------------------------------------------------
 * Small helpers
 */

/* Whether `g` belongs to this thread (`ts`), so that a switch to it may
 * happen here.  Returns 0, or -1 with greenlet.error set, in greenlet's
 * words (its %R is each thread's main greenlet). */
static int check_thread(FcGreenlet *g, fc_thread *ts)
{
    if (g->pimpl->thread == ts)
        return 0;
    if (!g->pimpl->thread->alive)
        PyErr_SetString(FcExc_Error,
                        "cannot switch to a different thread (which happens to have exited)");
    else
        PyErr_Format(FcExc_Error,
                     "Cannot switch to a different thread\n\tCurrent:  %R\n\tExpected: %R",
                     (PyObject *)ts->main, (PyObject *)g->pimpl->thread->main);
    return -1;
}

/* The greenlet a switch to `g` really goes to: `g`, or the first of its
 * ancestors that has not finished. */
static FcGreenlet *live_target(FcGreenlet *g)
{
    while (g != NULL && g->pimpl->state == FC_DEAD)
        g = g->pimpl->parent;
    return g;
}

/* Bytes of stack slot a greenlet with `size` bytes of C stack asks for:
 * the C stack, its frame data chunk (3.11+), and a page to place the split
 * mid-page. */
static size_t slot_request(size_t size)
{
    size_t chunk = fc_pystate_chunk_bytes(size);
    return chunk == 0 ? size : size + chunk + fastco_page_size();
}

/* Where the C stack of a started greenlet ends and its frame data begins:
 * FC_SPLIT bytes into the page above its stack_size bytes of C stack. */
static char *stack_split(const fc_coro *co)
{
    char *lo = co->stack.lo;
    if (fc_pystate_chunk_bytes(co->stack_size) == 0)
        return lo + co->stack.size;
    return lo + co->stack_size + FC_SPLIT;
}

/* The root frame data chunk of a started greenlet, or NULL (3.10). */
static void *own_chunk(const fc_coro *co)
{
    char *split = stack_split(co);
    return split < (char *)co->stack.lo + co->stack.size ? split : NULL;
}

/* Gets a never-started greenlet of this thread ready to run: looks up the
 * callable it starts with (in *run, a new reference, for the switch to hand
 * to it: see after_switch) and gets its stack.  Runs in the switching
 * greenlet; on failure (-1, exception set) the switch fails there.
 *
 * Looking `run` up is Python code when a subclass defines run() or
 * __getattribute__: code that may start the greenlet itself (then 1 is
 * returned, and the caller switches to it as it is now, as greenlet does),
 * or give it a parent on another thread (an error, rechecked here). */
static int prepare_start(FcGreenlet *g, fc_thread *ts, PyObject **run_out)
{
    fc_coro *co = g->pimpl;
    PyObject *run;
    int err;

    run = PyObject_GetAttr((PyObject *)g, str_run);
    if (run == NULL)
        return -1;
    if (co->state != FC_NEW) {
        Py_DECREF(run);
        return 1;
    }
    if (check_thread(g, ts) < 0) {
        Py_DECREF(run);
        return -1;
    }
    if (co->stack.lo == NULL) {
        err = fastco_stack_get(&co->stack, slot_request(co->stack_size));
        if (err != 0) {
            Py_DECREF(run);
            if (err == ENOMEM)
                PyErr_NoMemory();
            else
                PyErr_SetString(PyExc_ValueError, "invalid stack size");
            return -1;
        }
    }
    *run_out = run;
    return 0;
}

/* Replaces what a switch carries by the exception set (the switch failed,
 * and this failure travels on instead). */
static void xfer_set_error(fc_xfer *x)
{
    fc_xfer_clear(x);
    x->kind = FC_XFER_EXC;
    PyErr_Fetch(&x->a, &x->b, &x->c);
}

/* Converts what a switch carried into the value switch() returns, the
 * greenlet way: () for nothing, the object for one, a tuple for several,
 * the kwargs dict, or (args, kwargs).  Consumes `x`. */
static PyObject *xfer_result(fc_xfer *x)
{
    PyObject *r = NULL;
    switch (x->kind) {
    case FC_XFER_VALUE:
        r = x->a;
        x->a = NULL;
        break;
    case FC_XFER_ARGS: {
        PyObject *args = x->a, *kwargs = x->b;
        if (kwargs == NULL || PyDict_GET_SIZE(kwargs) == 0) {
            if (PyTuple_GET_SIZE(args) == 1) {
                r = PyTuple_GET_ITEM(args, 0);
                Py_INCREF(r);
            } else {
                r = args;
                x->a = NULL;
            }
        } else if (PyTuple_GET_SIZE(args) == 0) {
            r = kwargs;
            x->b = NULL;
        } else {
            r = PyTuple_Pack(2, args, kwargs);
        }
        break;
    }
    case FC_XFER_EXC:
        PyErr_Restore(x->a, x->b, x->c);
        x->a = x->b = x->c = NULL;
        break;
    default:
        PyErr_SetString(FcExc_Error, "switch carried nothing (internal error)");
        break;
    }
    fc_xfer_clear(x);
    return r;
}

/* ------------------------------------------------------------------------
 * The switch
 */

/* Whether the page at `p` was ever written: a page never touched (or given
 * back) reads as zeros, one a stack ran through holds frames. */
static int page_used(const char *p)
{
    const volatile uintptr_t *w = (const volatile uintptr_t *)p;
    size_t n = fastco_page_size() / sizeof(*w);
    for (size_t i = 0; i < n; i += n / 8)
        if (w[i] != 0)
            return 1;
    return 0;
}

/* A finished greenlet's stack goes to the cache of warm stacks; if it ran
 * deeper than FC_HOT_KEEP bytes from the split (C stack below, frame data
 * above), the deep pages go back to the kernel first, so that a cached
 * stack holds a few pages, not what its deepest moment needed. */
static void trim_deep(fc_coro *co)
{
    uintptr_t page = fastco_page_size();
    char *lo = co->stack.lo, *hi = lo + co->stack.size, *split = stack_split(co);
    char *keep_lo = (char *)(((uintptr_t)split - FC_HOT_KEEP) & ~(page - 1));
    char *keep_hi = (char *)(((uintptr_t)split + FC_HOT_KEEP + page - 1) & ~(page - 1));

    if (keep_lo - page > lo && page_used(keep_lo - page))
        fastco_stack_discard(&co->stack, lo, keep_lo);
    if (keep_hi + page < hi && page_used(keep_hi))
        fastco_stack_discard(&co->stack, keep_hi, hi);
}

/* Release the stack of a finished greenlet.  (Its final context stays, as
 * its gr_context, as in greenlet.) */
static void release_dead(fc_thread *ts)
{
    FcGreenlet *g = ts->dying;
    fc_coro *co = g->pimpl;
    ts->dying = NULL;
    fastco_ctx_retire(&co->ctx);
    trim_deep(co);
    fastco_stack_put(&co->stack);
    Py_DECREF(g);
}

/* Reports a switch to the trace function of fastco.settrace, if any, as
 * greenlet does: event "switch" or "throw", args (origin, target).  The
 * call is made with tracing off, so that sys.settrace does not see it.  A
 * failing trace function is removed.  Returns 0, or -1 with an exception. */
static int call_trace(fc_thread *ts, int kind, FcGreenlet *origin, FcGreenlet *target)
{
    PyObject *trace = ts->trace, *res;
    if (trace == NULL)
        return 0;
    Py_INCREF(trace);
    fc_tracing_enter(ts->tstate);
    res = PyObject_CallFunction(trace, "O(OO)",
                                kind == FC_XFER_EXC ? str_throw : str_switch,
                                (PyObject *)origin, (PyObject *)target);
    fc_tracing_leave(ts->tstate);
    Py_DECREF(trace);
    if (res == NULL) {
        Py_CLEAR(ts->trace);
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

/* First thing a greenlet does when it gets control: take what was sent,
 * finish the switch's bookkeeping, and report it to the trace function.
 * A greenlet that starts gets `start_run`, the callable prepare_start
 * looked up, in place of the one it was given: dropping that one may run
 * Python code (a __del__), and does so here, in the new greenlet, as in
 * greenlet.  Returns 0 with the transfer in *x, or -1 with an exception set
 * (the trace function failed; the transfer is dropped, as greenlet does). */
static int after_switch(fc_thread *ts, FcGreenlet *self, fc_xfer *x, PyObject *start_run)
{
    FcGreenlet *origin = ts->origin;
    int rc = 0;

    *x = ts->xfer;
    ts->xfer.kind = FC_XFER_NONE;
    ts->xfer.a = ts->xfer.b = ts->xfer.c = NULL;
    ts->origin = NULL;
    if (ts->dying != NULL)
        release_dead(ts);
    if (start_run != NULL)
        Py_XSETREF(self->pimpl->run, start_run);
    if (origin != NULL && call_trace(ts, x->kind, origin, self) < 0) {
        fc_xfer_clear(x);
        rc = -1;
    }
    Py_XDECREF(origin);
    if (ts->pending_kills != NULL && rc == 0)
        fc_kill_pending(ts);
    return rc;
}

static void g_bootstrap(void *arg, void *value);

/* Links a greenlet that starts into its thread's list of active ones. */
static void active_link(fc_thread *ts, FcGreenlet *g)
{
    fc_coro *co = g->pimpl;
    co->active_prev = NULL;
    co->active_next = ts->active;
    if (ts->active != NULL)
        ts->active->pimpl->active_prev = g;
    ts->active = g;
}

/* Unlinks a greenlet that finished. */
static void active_unlink(fc_thread *ts, FcGreenlet *g)
{
    fc_coro *co = g->pimpl;
    FcGreenlet *prev = co->active_prev, *next = co->active_next;
    if (prev != NULL)
        prev->pimpl->active_next = next;
    else if (ts->active == g)
        ts->active = next;
    if (next != NULL)
        next->pimpl->active_prev = prev;
    co->active_next = co->active_prev = NULL;
}

/* Takes a greenlet that is freed while still active (its thread is gone, or
 * the interpreter is finalizing, so it could not be killed) out of its
 * thread's list of active ones: nothing may reach it there afterwards. */
void fc_coro_forget(FcGreenlet *g)
{
    active_unlink(g->pimpl->thread, g);
}

/* Leaves the current greenlet for `target`, which is live (or new and
 * prepared), on this thread, and not the current one; ts->xfer holds what
 * to send.  Returns when something switches back to the current greenlet. */
static void leave_for(fc_thread *ts, FcGreenlet *target)
{
    FcGreenlet *self = ts->current;
    fc_coro *me = self->pimpl, *to = target->pimpl;

    ts->carry = fc_pystate_save(&me->st, ts->tstate);
    ts->origin = self;              /* takes over ts->current's reference */
    Py_INCREF(target);
    ts->current = target;
    if (to->state == FC_NEW) {
        char *split = stack_split(to);
        to->state = FC_ACTIVE;
        active_link(ts, target);
        fastco_ctx_make(&to->ctx, to->stack.lo, (size_t)(split - (char *)to->stack.lo),
                        g_bootstrap, ts);
    }
    fastco_ctx_switch_inline(&me->ctx, &to->ctx, target);
    /* Resumed: some greenlet switched back to us. */
    fc_pystate_restore(&me->st, ts->tstate, ts->carry);
}

/* Switches to `target` (see leave_for) and returns what the switch back
 * carried, as switch() returns it. */
static PyObject *switch_to(fc_thread *ts, FcGreenlet *target)
{
    FcGreenlet *self = ts->current;
    fc_xfer x;

    leave_for(ts, target);
    if (after_switch(ts, self, &x, NULL) < 0)
        return NULL;
    return xfer_result(&x);
}

/* Sends `x` (consumed) to `g`, the greenlet way: to `g` if it is live, or
 * to its first live ancestor, which starts if it never did. */
PyObject *fc_coro_switch(fc_thread *ts, FcGreenlet *g, fc_xfer *x)
{
    FcGreenlet *target = g;
    PyObject *run = NULL;
    int rc;

    /* The thread is checked on `g` itself first, as greenlet does, so that
     * a dead greenlet of another thread is an error too; then on the live
     * target, each time round (Python code run by prepare_start may have
     * moved it, or had another thread start it). */
    if (check_thread(g, ts) < 0)
        goto fail;
    for (;;) {
        target = live_target(target);
        if (target == NULL) {
            PyErr_SetString(FcExc_Error, "cannot switch to a dead greenlet with no live parent");
            goto fail;
        }
        if (check_thread(target, ts) < 0)
            goto fail;
        if (target == ts->current) {
            if (call_trace(ts, x->kind, target, target) < 0)
                goto fail;
            return xfer_result(x);
        }
        if (target->pimpl->state != FC_NEW)
            break;
        rc = prepare_start(target, ts, &run);
        if (rc < 0)
            goto fail;
        if (rc == 0)
            break;
        /* Started meanwhile (see prepare_start): look again. */
    }
    ts->xfer = *x;
    ts->start_run = run;
    return switch_to(ts, target);
fail:
    fc_xfer_clear(x);
    return NULL;
}

/* ------------------------------------------------------------------------
 * Life and death of a greenlet's body
 */

/* Sends a finished greenlet's outcome to its first live ancestor, for good.
 * `result` is the value run() returned, or NULL with the exception set. */
static void g_finish(fc_thread *ts, FcGreenlet *self, PyObject *result)
    __attribute__((noreturn));
static void g_finish(fc_thread *ts, FcGreenlet *self, PyObject *result)
{
    fc_coro *co = self->pimpl;
    fc_xfer x = {FC_XFER_NONE, NULL, NULL, NULL};
    FcGreenlet *target;
    PyObject *run = NULL;

    /* GreenletExit does not propagate: it becomes the value sent. */
    if (result == NULL && PyErr_ExceptionMatches(FcExc_GreenletExit)) {
        PyObject *t, *v, *tb;
        PyErr_Fetch(&t, &v, &tb);
        PyErr_NormalizeException(&t, &v, &tb);
        result = v != NULL ? v : Py_NewRef(Py_None);
        Py_XDECREF(t);
        Py_XDECREF(tb);
    }
    if (result != NULL) {
        x.kind = FC_XFER_VALUE;
        x.a = result;
    } else {
        x.kind = FC_XFER_EXC;
        PyErr_Fetch(&x.a, &x.b, &x.c);
    }
    co->state = FC_DEAD;
    active_unlink(ts, self);
    fc_pystate_finish(ts->tstate, own_chunk(co));
    /* The outcome goes to the first live ancestor; an ancestor that never
     * started starts now, with the outcome as its arguments, like greenlet.
     * One that cannot start, or that moved to another thread (an unstarted
     * greenlet may, with a new parent), is passed over, with the reason as
     * outcome.  Past the end of the chain, this thread's main greenlet gets
     * it (greenlet aborts the process there). */
    for (FcGreenlet *candidate = co->parent;;) {
        int rc;
        target = live_target(candidate);
        if (target == NULL) {
            target = ts->main;
            break;
        }
        if (check_thread(target, ts) < 0) {
            xfer_set_error(&x);
            candidate = target->pimpl->parent;
            continue;
        }
        if (target->pimpl->state != FC_NEW)
            break;
        if (x.kind == FC_XFER_VALUE) {
            PyObject *args = PyTuple_Pack(1, x.a);
            if (args != NULL) {
                Py_SETREF(x.a, args);
                x.kind = FC_XFER_ARGS;
            } else {
                xfer_set_error(&x);
            }
        }
        rc = prepare_start(target, ts, &run);
        if (rc == 0)
            break;
        if (rc < 0) {
            /* It stays unstarted, as in greenlet; the error goes on up. */
            xfer_set_error(&x);
            candidate = target->pimpl->parent;
        } else {
            candidate = target;   /* started meanwhile: look again */
        }
    }
    ts->xfer = x;
    ts->start_run = run;
    Py_INCREF(self);
    ts->dying = self;
    fc_exc_item_clear(&self->pimpl->exc_item);
    leave_for(ts, target);
    Py_FatalError("fastco: a finished greenlet was resumed");
}

/* The body of a greenlet: runs with a fresh interpreter state on its own
 * stack (see fc_pystate_start) and never returns. */
static void g_body(void *arg)
{
    FcGreenlet *self = arg;
    fc_coro *co = self->pimpl;
    fc_thread *ts = co->thread;
    PyObject *run = ts->start_run, *result = NULL;
    fc_xfer x;

    ts->start_run = NULL;
    if (after_switch(ts, self, &x, run) == 0) {
        /* co->run stays set while it runs, for the collector to see;
         * nothing can change it (run cannot be set after the start). */
        run = Py_NewRef(co->run);
        switch (x.kind) {
        case FC_XFER_VALUE:
            result = PyObject_CallOneArg(run, x.a);
            break;
        case FC_XFER_ARGS:
            result = PyObject_Call(run, x.a, x.b);
            break;
        case FC_XFER_EXC:
            PyErr_Restore(x.a, x.b, x.c);
            x.a = x.b = x.c = NULL;
            break;
        default:
            PyErr_SetString(FcExc_Error, "greenlet started with nothing (internal error)");
            break;
        }
        fc_xfer_clear(&x);
        Py_DECREF(run);
    }
    /* Dropping the callable may run Python code (which keeps the outcome
     * pending), as in greenlet. */
    Py_CLEAR(co->run);
    g_finish(ts, self, result);
}

/* Entry of a new greenlet's C context: sets up its interpreter state. */
static void g_bootstrap(void *arg, void *value)
{
    fc_thread *ts = arg;
    FcGreenlet *self = value;
    fc_coro *co = self->pimpl;
    char *lo = co->stack.lo, *hi = lo + co->stack.size;
    char *split = stack_split(co);
    fc_fresh fresh;

    fresh.exc_item = &co->exc_item;
    fresh.context = co->st.context;     /* gr_context set before start */
    co->st.context = NULL;
    fresh.chunk = own_chunk(co);
    fresh.chunk_size = (size_t)(hi - split);
    fresh.stack_size = co->stack_size;
    fresh.stack_lo = lo;
    fresh.stack_hi = split;
    fresh.st = &co->st;
    fc_pystate_start(ts->tstate, ts->carry, &fresh, g_body, self);
}

/* ------------------------------------------------------------------------
 * Killing: throw GreenletExit in, and let it come back here
 */

/* Throws GreenletExit into `g` (an active greenlet of this thread) with the
 * current greenlet as its parent meanwhile, so that its end comes back
 * here.  Returns 0, or -1 with an exception set. */
static int kill_here(fc_thread *ts, FcGreenlet *g)
{
    FcGreenlet *oldparent = g->pimpl->parent;
    fc_xfer x = {FC_XFER_EXC, NULL, NULL, NULL};
    PyObject *res;

    x.a = Py_NewRef(FcExc_GreenletExit);
    x.b = PyUnicode_FromString("Killing the greenlet because all references have vanished.");
    if (x.b == NULL)
        return -1;
    g->pimpl->parent = (FcGreenlet *)Py_NewRef((PyObject *)ts->current);
    res = fc_coro_switch(ts, g, &x);
    Py_SETREF(g->pimpl->parent, oldparent);
    if (res == NULL)
        return -1;
    Py_DECREF(res);
    return 0;
}

/* Kills the greenlets that lost their last reference on another thread.
 * Called where greenlet does it: at a switch, getcurrent() and the creation
 * of a greenlet on their thread.  The exception being raised, if any, is
 * kept.  During finalization they are left alone (greenlet leaks them
 * there): no greenlet may run any more. */
void fc_kill_pending(fc_thread *ts)
{
    PyObject *list = ts->pending_kills, *et, *ev, *etb;

    if (list == NULL || fc_py_finalizing())
        return;
    ts->pending_kills = NULL;
    PyErr_Fetch(&et, &ev, &etb);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
        FcGreenlet *g = (FcGreenlet *)PyList_GET_ITEM(list, i);
        if (g->pimpl->state == FC_ACTIVE && g->pimpl->thread == ts && kill_here(ts, g) < 0)
            PyErr_WriteUnraisable((PyObject *)g);
    }
    Py_DECREF(list);
    PyErr_Restore(et, ev, etb);
}

/* The thread is exiting, still alive, on its main greenlet: kill its
 * suspended greenlets, so that their finally blocks run and everything
 * they hold is released, while their thread can still run them.  One
 * that survives GreenletExit is left behind (its stack is never reused). */
void fc_kill_active(fc_thread *ts)
{
    FcGreenlet *g, *survivors = NULL;
    PyObject *et, *ev, *etb;

    if (ts->current != ts->main || fc_py_finalizing())
        return;
    PyErr_Fetch(&et, &ev, &etb);
    while ((g = ts->active) != NULL) {
        Py_INCREF(g);
        if (kill_here(ts, g) < 0)
            PyErr_WriteUnraisable((PyObject *)g);
        if (g->pimpl->state == FC_ACTIVE) {
            /* It swallowed GreenletExit: set it aside. */
            active_unlink(ts, g);
            g->pimpl->active_next = survivors;
            survivors = g;
            PySys_FormatStderr("GreenletExit did not kill %R at thread exit\n", (PyObject *)g);
        }
        Py_DECREF(g);
    }
    ts->active = survivors;
    for (g = survivors; g != NULL; g = g->pimpl->active_next)
        if (g->pimpl->active_next != NULL)
            g->pimpl->active_next->pimpl->active_prev = g;
    PyErr_Restore(et, ev, etb);
}

/* A suspended greenlet lost its last reference: throw GreenletExit into it
 * so that its finally blocks run, as greenlet does.  `self` holds one
 * temporary reference (a dealloc's), which the kill may add to: then it is
 * resurrected.  The exception being raised, if any, is kept. */
void fc_coro_kill_dropped(FcGreenlet *self)
{
    fc_thread *owner = self->pimpl->thread;
    PyObject *et, *ev, *etb;

    PyErr_Fetch(&et, &ev, &etb);
    if (owner->alive && !fc_py_finalizing()) {
        if (owner->tstate != fc_tstate()) {
            /* Only its own thread may run it: that thread kills it at its
             * next switch.  (This thread needs no fastco state for that.) */
            if (owner->pending_kills == NULL) {
                /* Making the list may collect garbage, whose finalizers may
                 * let another thread in that makes one first. */
                PyObject *list = PyList_New(0);
                if (owner->pending_kills == NULL)
                    owner->pending_kills = list;
                else
                    Py_XDECREF(list);
            }
            if (owner->pending_kills == NULL
                || PyList_Append(owner->pending_kills, (PyObject *)self) < 0)
                PyErr_WriteUnraisable((PyObject *)self);
        } else if (fc_thread_get() == owner) {   /* also points fc_tls at it */
            if (kill_here(owner, self) < 0)
                PyErr_WriteUnraisable((PyObject *)self);
            if (Py_REFCNT(self) == 1 && self->pimpl->state == FC_ACTIVE) {
                /* It swallowed GreenletExit and is still alive: complain and
                 * keep it, as greenlet does. */
                PySys_FormatStderr("GreenletExit did not kill %R\n", (PyObject *)self);
                Py_INCREF(self);
            }
        } else {
            PyErr_WriteUnraisable((PyObject *)self);
        }
    }
    PyErr_Restore(et, ev, etb);
}

/* fc_coro_kill_dropped from within tp_dealloc, for a greenlet whose finalizer ran
 * already (see green_dealloc).  Returns 1 if it may be freed now, 0 if it
 * was resurrected (or handed to its own thread). */
int fc_coro_kill_on_dealloc(FcGreenlet *self)
{
    Py_ssize_t refcnt;

    Py_SET_REFCNT(self, 1);
    fc_coro_kill_dropped(self);
    refcnt = Py_REFCNT(self) - 1;
    Py_SET_REFCNT(self, refcnt);
    if (refcnt != 0) {
        /* Resurrected: undo what dealloc did so far. */
        if (PyType_HasFeature(Py_TYPE(self), Py_TPFLAGS_HEAPTYPE))
            Py_INCREF(Py_TYPE(self));
        PyObject_GC_Track((PyObject *)self);
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------------
 * The coroutine state's memory
 */

/* Coroutine states of freed greenlets, kept for the next ones (a LIFO list
 * linked through their first word; the GIL guards it), so that making a
 * greenlet costs no allocation in a steady state.  At most FC_CORO_KEEP. */
#define FC_CORO_KEEP 256
static void *coro_cache;
static int coro_cached;

/* Zeroes `co`, 64 bytes at a time: a memset of the whole becomes `rep stos`
 * on x86-64 (gcc -O2), whose start-up cost was about a tenth of a
 * greenlet's creation; pieces this small become a few vector stores. */
static void coro_zero(fc_coro *co)
{
    char *p = (char *)co;
    size_t n = sizeof(*co);
    for (; n >= 64; p += 64, n -= 64)
        memset(p, 0, 64);
    memset(p, 0, n);
}

/* A zeroed coroutine state for a new greenlet object, or NULL with
 * MemoryError. */
fc_coro *fc_coro_alloc(void)
{
    fc_coro *co = coro_cache;
    if (co != NULL) {
        coro_cache = *(void **)co;
        coro_cached--;
        coro_zero(co);
        return co;
    }
    co = PyObject_Calloc(1, sizeof(*co));
    if (co == NULL)
        PyErr_NoMemory();
    return co;
}

void fc_coro_free(fc_coro *co)
{
    if (coro_cached < FC_CORO_KEEP) {
        *(void **)co = coro_cache;
        coro_cache = co;
        coro_cached++;
        return;
    }
    PyObject_Free(co);
}

int fc_coro_ready(void)
{
    str_run = PyUnicode_InternFromString("run");
    str_switch = PyUnicode_InternFromString("switch");
    str_throw = PyUnicode_InternFromString("throw");
    return str_run == NULL || str_switch == NULL || str_throw == NULL ? -1 : 0;
}
