# cython: language_level=3
"""A Cython cdef subclass of greenlet.greenlet with fields of its own, as
gevent's Greenlet and Hub are: built by tests/test_cython_subclass.py and
imported with fastco serving as greenlet (FASTCO_AS_GREENLET=1)."""

cdef extern from "greenlet_abi.h":
    ctypedef class greenlet.greenlet [object PyGreenlet]:
        pass


cdef class Sub(greenlet):
    """Fields right after greenlet's 40 bytes: an object, a C long, a list."""
    cdef public object payload
    cdef public long counter
    cdef public list log

    def __init__(self, run=None, parent=None, payload=None):
        greenlet.__init__(self, run, parent)
        self.payload = payload
        self.counter = 0
        self.log = []

    cpdef long bump(self):
        self.counter += 1
        return self.counter


def basicsize():
    """The C size of Sub's object (greenlet's 40 bytes and its fields)."""
    return sizeof(Sub)
