/*
 * greenlet_abi.h - greenlet's object as its greenlet.h declares it (the ABI
 * that Cython subclasses of greenlet.greenlet, gevent's among them, are
 * compiled against), for tests/cython/greenlet_sub.pyx.  Written out here:
 * no greenlet header is needed, nor committed.
 */
#include <Python.h>

typedef struct {
    PyObject_HEAD
    PyObject *weakreflist;
    PyObject *dict;
    void *pimpl;
} PyGreenlet;
