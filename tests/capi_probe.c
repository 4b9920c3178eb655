/*
 * capi_probe.c - a test extension (built by tests/test_capi.py) that calls
 * each slot of greenlet's C API table, as a consumer compiled against
 * greenlet's greenlet.h does: the table is read from the capsule
 * "greenlet._C_API" and each slot cast to the function type greenlet 3.5
 * documents.  The declarations below are that ABI, written out here (no
 * greenlet header is needed, nor committed).
 *
 * Python arguments equal to the module's NULL object stand for a C NULL,
 * so that the tests can pass NULL where greenlet.h allows (or forbids) it;
 * a slot returning NULL without an exception comes back as NULL too.
 */
#define PY_SSIZE_T_CLEAN
#include "greenlet_abi.h"   /* PyGreenlet, for sizeof: what a subclass's fields follow */

typedef PyGreenlet *(*new_fn)(PyObject *run, PyGreenlet *parent);
typedef PyGreenlet *(*getcurrent_fn)(void);
typedef PyObject *(*throw_fn)(PyGreenlet *g, PyObject *typ, PyObject *val, PyObject *tb);
typedef PyObject *(*switch_fn)(PyGreenlet *g, PyObject *args, PyObject *kwargs);
typedef int (*setparent_fn)(PyGreenlet *g, PyGreenlet *parent);
typedef int (*flag_fn)(PyGreenlet *g);
typedef PyGreenlet *(*getparent_fn)(PyGreenlet *g);

static void **api;
static PyObject *null_obj;   /* the module's NULL */

static PyObject *arg(PyObject *o)
{
    return o == null_obj ? NULL : o;
}

/* A slot's result: itself, NULL (the module's) if NULL without an error. */
static PyObject *result(PyObject *r)
{
    if (r == NULL && !PyErr_Occurred())
        return Py_NewRef(null_obj);
    return r;
}

/* The int of a flag slot, or the exception it set with -1.  A -1 without
 * an exception, or an exception with anything else, is an error here. */
static PyObject *flag_result(int v)
{
    if (v == -1 && PyErr_Occurred())
        return NULL;
    if (PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_AssertionError, "slot returned %d with an exception set", v);
        return NULL;
    }
    return PyLong_FromLong(v);
}

/* load(capsule=None): the table from `capsule`, or by PyCapsule_Import. */
static PyObject *probe_load(PyObject *self, PyObject *args)
{
    PyObject *capsule = Py_None;
    (void)self;
    if (!PyArg_ParseTuple(args, "|O", &capsule))
        return NULL;
    if (capsule == Py_None)
        api = PyCapsule_Import("greenlet._C_API", 0);
    else
        api = PyCapsule_GetPointer(capsule, "greenlet._C_API");
    if (api == NULL)
        return NULL;
    Py_RETURN_NONE;
}

#define NEED_API()                                                        \
    do {                                                                  \
        if (api == NULL) {                                                \
            PyErr_SetString(PyExc_RuntimeError, "load() first");          \
            return NULL;                                                  \
        }                                                                 \
    } while (0)

/* objects() -> (type, error, GreenletExit): slots 0, 1, 2. */
static PyObject *probe_objects(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    NEED_API();
    return PyTuple_Pack(3, (PyObject *)api[0], (PyObject *)api[1], (PyObject *)api[2]);
}

static PyObject *probe_new(PyObject *self, PyObject *args)
{
    PyObject *run, *parent;
    (void)self;
    NEED_API();
    if (!PyArg_ParseTuple(args, "OO", &run, &parent))
        return NULL;
    return result((PyObject *)((new_fn)api[3])(arg(run), (PyGreenlet *)arg(parent)));
}

static PyObject *probe_getcurrent(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    NEED_API();
    return result((PyObject *)((getcurrent_fn)api[4])());
}

static PyObject *probe_throw(PyObject *self, PyObject *args)
{
    PyObject *g, *typ, *val, *tb;
    (void)self;
    NEED_API();
    if (!PyArg_ParseTuple(args, "OOOO", &g, &typ, &val, &tb))
        return NULL;
    return result(((throw_fn)api[5])((PyGreenlet *)arg(g), arg(typ), arg(val), arg(tb)));
}

static PyObject *probe_switch(PyObject *self, PyObject *args)
{
    PyObject *g, *a, *kw;
    (void)self;
    NEED_API();
    if (!PyArg_ParseTuple(args, "OOO", &g, &a, &kw))
        return NULL;
    return result(((switch_fn)api[6])((PyGreenlet *)arg(g), arg(a), arg(kw)));
}

static PyObject *probe_setparent(PyObject *self, PyObject *args)
{
    PyObject *g, *p;
    (void)self;
    NEED_API();
    if (!PyArg_ParseTuple(args, "OO", &g, &p))
        return NULL;
    return flag_result(((setparent_fn)api[7])((PyGreenlet *)arg(g), (PyGreenlet *)arg(p)));
}

/* flag(i, g): slot i (8 MAIN, 9 STARTED, 10 ACTIVE) of g. */
static PyObject *probe_flag(PyObject *self, PyObject *args)
{
    int i;
    PyObject *g;
    (void)self;
    NEED_API();
    if (!PyArg_ParseTuple(args, "iO", &i, &g))
        return NULL;
    if (i < 8 || i > 10) {
        PyErr_SetString(PyExc_ValueError, "not a flag slot");
        return NULL;
    }
    return flag_result(((flag_fn)api[i])((PyGreenlet *)arg(g)));
}

static PyObject *probe_getparent(PyObject *self, PyObject *g)
{
    (void)self;
    NEED_API();
    return result((PyObject *)((getparent_fn)api[11])((PyGreenlet *)arg(g)));
}

static PyMethodDef probe_methods[] = {
    {"load", probe_load, METH_VARARGS, NULL},
    {"objects", probe_objects, METH_NOARGS, NULL},
    {"new", probe_new, METH_VARARGS, NULL},
    {"getcurrent", probe_getcurrent, METH_NOARGS, NULL},
    {"throw", probe_throw, METH_VARARGS, NULL},
    {"switch", probe_switch, METH_VARARGS, NULL},
    {"setparent", probe_setparent, METH_VARARGS, NULL},
    {"flag", probe_flag, METH_VARARGS, NULL},
    {"getparent", probe_getparent, METH_O, NULL},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef probe_module = {
    PyModuleDef_HEAD_INIT, "capi_probe", NULL, -1, probe_methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC PyInit_capi_probe(void)
{
    PyObject *m = PyModule_Create(&probe_module);
    if (m == NULL)
        return NULL;
    null_obj = PyUnicode_FromString("<NULL>");
    if (null_obj == NULL || PyModule_AddObjectRef(m, "NULL", null_obj) < 0
        || PyModule_AddIntConstant(m, "GREENLET_SIZE", (long)sizeof(PyGreenlet)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
