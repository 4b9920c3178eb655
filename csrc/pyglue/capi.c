/*
 * capi.c - greenlet's C API, served by fastco: the capsule greenlet._C_API.
 *
 * Compiled consumers of greenlet (gevent's Cython modules, greenlet's own
 * test extension) include greenlet's greenlet.h and read this table with
 * PyCapsule_Import("greenlet._C_API"); since greenlet 2.0 every macro of
 * that header goes through it, and none reads the object's fields beyond
 * the 40-byte layout glue.h reproduces.  The slots, in greenlet's order:
 *
 *    0  PyGreenlet_Type        fastco's greenlet type
 *    1  PyExc_GreenletError    greenlet.error
 *    2  PyExc_GreenletExit     greenlet.GreenletExit
 *    3  New(run, parent)       greenlet(run, parent): new ref or NULL
 *    4  GetCurrent()           getcurrent(): new ref, or NULL with
 *                              RuntimeError during finalization
 *    5  Throw(g, typ, val, tb) g.throw(typ, val, tb), arguments borrowed
 *    6  Switch(g, args, kw)    g.switch(*args, **kw), arguments borrowed
 *    7  SetParent(g, parent)   g.parent = parent: 0, or -1 with an error
 *    8  MAIN(g)                1 or 0, -1 with TypeError for a non-greenlet
 *    9  STARTED(g)             likewise
 *   10  ACTIVE(g)              likewise
 *   11  GetParent(g)           new ref, or NULL with no error (no parent)
 *
 * Conventions are greenlet 3.5's (src/greenlet/CObjects.cpp): a function
 * given something that is not a greenlet sets TypeError (PyErr_BadArgument)
 * instead of touching it.
 */
#include "glue.h"

#include <string.h>

/* Number of slots: greenlet.h's PyGreenlet_API_pointers. */
#define FC_CAPI_SLOTS 12

/* Whether `op` is a greenlet; if not, TypeError is set, as greenlet's
 * functions do. */
static int check(void *op)
{
    if (op != NULL && FcGreenlet_Check((PyObject *)op))
        return 1;
    PyErr_BadArgument();
    return 0;
}

static FcGreenlet *capi_new(PyObject *run, FcGreenlet *parent)
{
    PyObject *empty, *kwargs = NULL, *g;
    int rc = -1;

    empty = PyTuple_New(0);
    if (empty == NULL)
        return NULL;
    g = FcGreenlet_Type.tp_new(&FcGreenlet_Type, empty, NULL);
    if (g == NULL)
        goto done;
    kwargs = PyDict_New();
    if (kwargs == NULL
        || (run != NULL && PyDict_SetItemString(kwargs, "run", run) < 0)
        || (parent != NULL && PyDict_SetItemString(kwargs, "parent", (PyObject *)parent) < 0))
        goto done;
    rc = FcGreenlet_Type.tp_init(g, empty, kwargs);
done:
    Py_DECREF(empty);
    Py_XDECREF(kwargs);
    if (rc < 0)
        Py_CLEAR(g);
    return (FcGreenlet *)g;
}

static FcGreenlet *capi_getcurrent(void)
{
    return (FcGreenlet *)fc_getcurrent();
}

static PyObject *capi_throw(FcGreenlet *g, PyObject *typ, PyObject *val, PyObject *tb)
{
    if (!check(g))
        return NULL;
    return fc_greenlet_throw(g, typ, val, tb);
}

static PyObject *capi_switch(FcGreenlet *g, PyObject *args, PyObject *kwargs)
{
    PyObject *empty = NULL, *r;

    if (!check(g))
        return NULL;
    if (args == NULL) {
        args = empty = PyTuple_New(0);
        if (args == NULL)
            return NULL;
    } else if (!PyTuple_Check(args)) {
        PyErr_Format(PyExc_TypeError, "switch() arguments must be a tuple, not %s",
                     Py_TYPE(args)->tp_name);
        return NULL;
    }
    if (kwargs != NULL && !PyDict_Check(kwargs))
        kwargs = NULL;   /* greenlet ignores keywords that are not a dict */
    r = fc_greenlet_switch_args(g, args, kwargs);
    Py_XDECREF(empty);
    return r;
}

static int capi_setparent(FcGreenlet *g, FcGreenlet *parent)
{
    if (!check(g))
        return -1;
    return fc_greenlet_setparent(g, (PyObject *)parent);
}

static int capi_main(FcGreenlet *g)
{
    if (!check(g))
        return -1;
    return g->pimpl->is_main;
}

/* Started: switched to at least once (a main greenlet always was). */
static int capi_started(FcGreenlet *g)
{
    if (!check(g))
        return -1;
    return g->pimpl->state != FC_NEW;
}

/* Active: started and not finished, on a thread that is still alive (what
 * bool(g) says). */
static int capi_active(FcGreenlet *g)
{
    if (!check(g))
        return -1;
    /* green_bool's test, read directly: a subclass's __bool__ (gevent's
     * Greenlet has one) is not asked, as greenlet does not ask it. */
    return g->pimpl->state == FC_ACTIVE && g->pimpl->thread->alive;
}

static FcGreenlet *capi_getparent(FcGreenlet *g)
{
    if (!check(g))
        return NULL;
    return (FcGreenlet *)Py_XNewRef((PyObject *)g->pimpl->parent);
}

/* A function's address as a slot of the table: greenlet.h declares the
 * table void *[] and casts each slot back to its function type, which
 * POSIX allows (ISO C has no conversion between the two, hence memcpy). */
_Static_assert(sizeof(void (*)(void)) == sizeof(void *), "function pointers fit a slot");
static void *fn_slot(void (*fn)(void))
{
    void *p;
    memcpy(&p, &fn, sizeof(p));
    return p;
}

/* The table itself: static, as the capsule outlives nothing that owns it
 * (greenlet keeps its own the same way). */
static void *capi_table[FC_CAPI_SLOTS];

/* Adds `_C_API`, the capsule named "greenlet._C_API", to `module`.  The
 * provider package (fastco/_as_greenlet/greenlet) re-exports it as
 * greenlet._C_API and greenlet._greenlet._C_API.  Returns 0, or -1 with an
 * exception set. */
int fc_capi_add(PyObject *module)
{
    PyObject *capsule;

    capi_table[0] = &FcGreenlet_Type;
    capi_table[1] = FcExc_Error;
    capi_table[2] = FcExc_GreenletExit;
    capi_table[3] = fn_slot((void (*)(void))capi_new);
    capi_table[4] = fn_slot((void (*)(void))capi_getcurrent);
    capi_table[5] = fn_slot((void (*)(void))capi_throw);
    capi_table[6] = fn_slot((void (*)(void))capi_switch);
    capi_table[7] = fn_slot((void (*)(void))capi_setparent);
    capi_table[8] = fn_slot((void (*)(void))capi_main);
    capi_table[9] = fn_slot((void (*)(void))capi_started);
    capi_table[10] = fn_slot((void (*)(void))capi_active);
    capi_table[11] = fn_slot((void (*)(void))capi_getparent);
    capsule = PyCapsule_New(capi_table, "greenlet._C_API", NULL);
    if (capsule == NULL)
        return -1;
    if (PyModule_AddObjectRef(module, "_C_API", capsule) < 0) {
        Py_DECREF(capsule);
        return -1;
    }
    Py_DECREF(capsule);
    return 0;
}
