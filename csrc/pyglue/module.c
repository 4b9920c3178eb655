/*
 * module.c - the fastco._native module: the greenlet type and the
 * functions around it (getcurrent, settrace, gettrace), GreenletExit and
 * error.
 *
 * It lives inside the cffi extension fastco._core, whose functions release
 * the GIL around every call: too slow for a switch, and a switch must not
 * let other threads in.  So the switch path is a native CPython type, and
 * fastco_py_install (called once through cffi) registers this module in
 * sys.modules, from where fastco/__init__.py imports it.
 */
#include "glue.h"
#include "hub.h"

#include <stdio.h>
#include <string.h>

/* getcurrent(), for C callers too (greenlet's C API): a new reference, or
 * NULL with an exception. */
PyObject *fc_getcurrent(void)
{
    fc_thread *ts;
    if (fc_py_finalizing()) {
        /* No greenlet can run any more: greenlet 3.5 says so, in these words,
         * rather than hand out one (code run by the final collections). */
        PyErr_SetString(PyExc_RuntimeError, "greenlet is being finalized");
        return NULL;
    }
    ts = fc_thread_get();
    if (ts == NULL)
        return NULL;
    if (ts->pending_kills != NULL)
        fc_kill_pending(ts);   /* greenlet does it here too */
    return Py_NewRef((PyObject *)ts->current);
}

static PyObject *mod_getcurrent(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return fc_getcurrent();
}

static PyObject *mod_settrace(PyObject *module, PyObject *callback)
{
    fc_thread *ts = fc_thread_get();
    PyObject *previous;
    (void)module;
    if (ts == NULL)
        return NULL;
    if (callback != Py_None && !PyCallable_Check(callback)) {
        PyErr_Format(PyExc_TypeError, "trace function must be callable or None, not %s",
                     Py_TYPE(callback)->tp_name);
        return NULL;
    }
    previous = ts->trace;
    ts->trace = callback == Py_None ? NULL : Py_NewRef(callback);
    return previous != NULL ? previous : Py_NewRef(Py_None);
}

static PyObject *mod_gettrace(PyObject *module, PyObject *unused)
{
    fc_thread *ts = fc_thread_get();
    (void)module;
    (void)unused;
    if (ts == NULL)
        return NULL;
    return Py_NewRef(ts->trace != NULL ? ts->trace : Py_None);
}

static PyObject *mod_get_total_main_greenlets(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyLong_FromSsize_t(fc_main_greenlets);
}

static PyObject *mod_set_thread_local(PyObject *module, PyObject *args)
{
    PyObject *key, *value, *dict;
    (void)module;
    if (!PyArg_UnpackTuple(args, "set_thread_local", 2, 2, &key, &value))
        return NULL;
    dict = PyThreadState_GetDict();
    if (dict == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "this thread has no thread state dict");
        return NULL;
    }
    if (PyDict_SetItem(dict, key, value) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *mod_get_tstate_trash_delete_nesting(PyObject *module, PyObject *unused)
{
    int n = fc_pystate_trash_nesting(fc_tstate());
    (void)module;
    (void)unused;
    if (n < 0)
        Py_RETURN_NONE;
    return PyLong_FromLong(n);
}

/* While fastco serves as the greenlet module, its greenlet type carries
 * greenlet's name, greenlet.greenlet: in reprs, and in the messages that C
 * code checking argument types writes (PyArg_ParseTuple's "O!" says
 * "argument 1 must be greenlet.greenlet", as with greenlet). */
static PyObject *mod_name_as_greenlet(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    FcGreenlet_Type.tp_name = "greenlet.greenlet";
    PyType_Modified(&FcGreenlet_Type);
    Py_RETURN_NONE;
}

static PyMethodDef native_methods[] = {
    {"getcurrent", mod_getcurrent, METH_NOARGS,
     "getcurrent()\n--\n\nThe greenlet running now (the thread's main one at first)."},
    {"settrace", mod_settrace, METH_O,
     "settrace(callback)\n--\n\n"
     "Call callback(event, (origin, target)) on every switch of this thread,\n"
     "event being 'switch' or 'throw'; None removes it.  Returns the previous\n"
     "callback (or None)."},
    {"gettrace", mod_gettrace, METH_NOARGS,
     "gettrace()\n--\n\nThe callback set by settrace on this thread, or None."},
    {"get_total_main_greenlets", mod_get_total_main_greenlets, METH_NOARGS,
     "get_total_main_greenlets()\n--\n\n"
     "How many main greenlets exist: one per thread that used greenlets,\n"
     "until the thread ends and nothing refers to it (as greenlet counts)."},
    {"set_thread_local", mod_set_thread_local, METH_VARARGS,
     "set_thread_local(key, value)\n--\n\n"
     "Store value in the thread state's dict (what greenlet's function of that\n"
     "name does, for its tests: it lives and dies with the thread state)."},
    {"get_tstate_trash_delete_nesting", mod_get_tstate_trash_delete_nesting, METH_NOARGS,
     "get_tstate_trash_delete_nesting()\n--\n\n"
     "The deallocation trashcan's nesting depth of the running greenlet, or\n"
     "None where CPython keeps none per thread (3.13+)."},
    {"set_default_stack_size", fc_set_default_stack_size, METH_O,
     "set_default_stack_size(nbytes)\n--\n\n"
     "Set the C stack size of greenlets created without stack_size (0: back\n"
     "to 8 MiB) and return the previous one.  Smaller stacks cost less\n"
     "address space and page tables; recursion limits scale with them."},
    {"_name_as_greenlet", mod_name_as_greenlet, METH_NOARGS,
     "_name_as_greenlet()\n--\n\n"
     "Name the greenlet type greenlet.greenlet (the provider module, which\n"
     "serves fastco as greenlet, calls it once)."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "fastco._native",
    .m_doc = "fastco's greenlet machinery (native part of fastco._core).",
    .m_size = -1,
    .m_methods = native_methods,
};

static PyObject *make_module(void)
{
    PyObject *m, *d;

    if (fc_pystate_check() < 0 || fc_thread_types_ready() < 0
        || fc_greenlet_type_ready() < 0)
        return NULL;
    /* A coroutine stack overflow gets a message naming it (csrc/guard.c). */
    if (fastco_guard_handler_install() != 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return NULL;
    }
    FcExc_GreenletExit = PyErr_NewExceptionWithDoc(
        "fastco.GreenletExit",
        "Thrown into a greenlet to kill it; if not caught, the greenlet ends\n"
        "and its parent receives the exception instance as a value.",
        PyExc_BaseException, NULL);
    FcExc_Error = PyErr_NewExceptionWithDoc(
        "fastco.error",
        "A switch that cannot happen (another thread's greenlet, ...).",
        NULL, NULL);
    if (FcExc_GreenletExit == NULL || FcExc_Error == NULL)
        return NULL;
    m = PyModule_Create(&native_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "greenlet", (PyObject *)&FcGreenlet_Type) < 0
        || PyModule_AddObjectRef(m, "GreenletExit", FcExc_GreenletExit) < 0
        || PyModule_AddObjectRef(m, "error", FcExc_Error) < 0
        || fc_hub_module_init(m) < 0    /* the hub's native core (hub.c) */
        || fc_capi_add(m) < 0)          /* greenlet's C API (capi.c) */
        goto fail;
    /* greenlet.greenlet carries these as class attributes too. */
    d = FcGreenlet_Type.tp_dict;
    if (PyDict_SetItemString(d, "GreenletExit", FcExc_GreenletExit) < 0
        || PyDict_SetItemString(d, "error", FcExc_Error) < 0)
        goto fail;
    for (PyMethodDef *md = native_methods; md->ml_name != NULL; md++) {
        PyObject *f, *sm;
        if (strcmp(md->ml_name, "getcurrent") != 0 && strcmp(md->ml_name, "settrace") != 0
            && strcmp(md->ml_name, "gettrace") != 0)
            continue;    /* not a greenlet class attribute */
        f = PyObject_GetAttrString(m, md->ml_name);
        if (f == NULL)
            goto fail;
        sm = PyStaticMethod_New(f);
        Py_DECREF(f);
        if (sm == NULL || PyDict_SetItemString(d, md->ml_name, sm) < 0) {
            Py_XDECREF(sm);
            goto fail;
        }
        Py_DECREF(sm);
    }
    PyType_Modified(&FcGreenlet_Type);
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}

/* Called through cffi, without the GIL.  Returns 0, or -1 with a message
 * in errbuf. */
int fastco_py_install(char *errbuf, size_t errlen)
{
    static PyObject *module;
    PyGILState_STATE gil = PyGILState_Ensure();
    int rc = 0;

    if (module == NULL)
        module = make_module();
    if (module == NULL
        || PyDict_SetItemString(PyImport_GetModuleDict(), "fastco._native", module) < 0) {
        PyObject *t, *v, *tb, *s;
        const char *msg;
        PyErr_Fetch(&t, &v, &tb);
        s = v != NULL ? PyObject_Str(v) : NULL;
        msg = s != NULL ? PyUnicode_AsUTF8(s) : NULL;   /* NULL: not encodable */
        snprintf(errbuf, errlen, "%s", msg != NULL ? msg : "unknown error");
        Py_XDECREF(s);
        Py_XDECREF(t);
        Py_XDECREF(v);
        Py_XDECREF(tb);
        PyErr_Clear();
        rc = -1;
    }
    PyGILState_Release(gil);
    return rc;
}
