/*
 * greenlet_abi.h - greenlet's object as its greenlet.h declares it (the ABI
 * that Cython subclasses of greenlet.greenlet, gevent's among them, and C
 * consumers of its C API are compiled against), for tests/greenlet_sub.pyx
 * and tests/capi_probe.c.  Written out here: no greenlet header is needed,
 * nor committed.
 */
#ifndef GREENLET_ABI_H
#define GREENLET_ABI_H

#include <Python.h>

typedef struct {
    PyObject_HEAD
    PyObject *weakreflist;
    PyObject *dict;
    void *pimpl;
} PyGreenlet;

#endif /* GREENLET_ABI_H */
