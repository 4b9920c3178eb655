/*
 * hubsock.c - the hot calls of fastco.socket, in C: recv, recv_into, send,
 * sendall on a non-blocking socket, waiting in the hub on EAGAIN.
 *
 * In Python each of these costs an OSError object on every EAGAIN (~0.8 us
 * here, as much as the system call), plus the frames of the wait.  Here the
 * call is tried, and on EAGAIN the greenlet waits on the fd (fh_wait_fd,
 * no system call with epoll) and tries again, without any exception.
 *
 * The socket object is a fastco.socket.socket (a subclass of the C socket
 * type): its fd is read from the C object, whose layout starts with the fd
 * (checked once against fileno(), else fileno() is called); the timeout and
 * owner (the socket's serial number) come from the Python wrapper.
 */
#include "hub.h"

#include <errno.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

/* The head of CPython's socket object (Modules/socketmodule.h). */
typedef struct {
    PyObject_HEAD
    int sock_fd;
} fh_sockhead;

/* 1: the layout above was checked against fileno(); -1: it did not match. */
static int layout_ok;
/* _socket.socket, the only type whose memory the layout describes. */
static PyTypeObject *socket_type;

static int sock_fd(PyObject *sock)
{
    PyObject *r;
    int fd;
    if (socket_type == NULL) {
        PyObject *mod = PyImport_ImportModule("_socket");
        PyObject *t = mod != NULL ? PyObject_GetAttrString(mod, "socket") : NULL;
        Py_XDECREF(mod);
        if (t == NULL)
            return -2;
        if (!PyType_Check(t)) {
            Py_DECREF(t);
            PyErr_SetString(PyExc_TypeError, "_socket.socket is not a type");
            return -2;
        }
        socket_type = (PyTypeObject *)t;    /* kept for the process's life */
    }
    if (layout_ok > 0 && PyObject_TypeCheck(sock, socket_type))
        return ((fh_sockhead *)sock)->sock_fd;
    r = PyObject_CallMethod(sock, "fileno", NULL);
    if (r == NULL)
        return -2;
    fd = (int)PyLong_AsLong(r);
    Py_DECREF(r);
    if (fd == -1 && PyErr_Occurred())
        return -2;
    if (layout_ok == 0 && PyObject_TypeCheck(sock, socket_type))
        layout_ok = ((fh_sockhead *)sock)->sock_fd == fd && fd >= 0 ? 1 : (fd >= 0 ? -1 : 0);
    return fd;
}

/* Timeout and owner arguments: None / 0.0 (non-blocking) / t > 0. */
static int parse_common(PyObject *timeout_obj, PyObject *owner_obj, double *timeout,
                        long long *owner)
{
    if (timeout_obj == Py_None) {
        *timeout = -1.0;
    } else {
        *timeout = PyFloat_AsDouble(timeout_obj);
        if (*timeout == -1.0 && PyErr_Occurred())
            return -1;
    }
    *owner = PyLong_AsLongLong(owner_obj);
    if (*owner == -1 && PyErr_Occurred())
        return -1;
    return 0;
}

/* The call failed with errno `err`: decides what happens.  Returns 1 to try
 * again (after a signal, or after waiting in the hub), or -1 with an
 * exception set.  *deadline is made from the timeout at the first wait. */
static int on_error(int err, int fd, unsigned int event, double timeout, double *deadline,
                    long long owner)
{
    double remaining = -1.0;
    FhCore *core;
    int rc;

    if (err == EINTR)
        return PyErr_CheckSignals() < 0 ? -1 : 1;
    if ((err != EAGAIN && err != EWOULDBLOCK) || timeout == 0.0) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    if (timeout > 0.0) {
        struct timespec ts;
        double now;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        now = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
        if (*deadline < 0.0)
            *deadline = now + timeout;
        remaining = *deadline - now;
        if (remaining <= 0.0) {
            PyErr_SetString(PyExc_TimeoutError, "timed out");
            return -1;
        }
    }
    core = fh_current();
    if (core == NULL)
        return -1;
    rc = fh_wait_fd(core, fd, event, remaining, owner);
    return rc < 0 ? -1 : 1;
}

/* sock_recv(sock, bufsize, flags, timeout, owner) -> bytes */
static PyObject *sock_recv(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t size;
    int flags, fd;
    double timeout, deadline = -1.0;
    long long owner;
    PyObject *buf;
    (void)module;

    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "sock_recv(sock, bufsize, flags, timeout, owner)");
        return NULL;
    }
    size = PyLong_AsSsize_t(args[1]);
    if (size == -1 && PyErr_Occurred())
        return NULL;
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "negative buffersize in recv");
        return NULL;
    }
    flags = (int)PyLong_AsLong(args[2]);
    if (flags == -1 && PyErr_Occurred())
        return NULL;
    if (parse_common(args[3], args[4], &timeout, &owner) < 0)
        return NULL;
    buf = PyBytes_FromStringAndSize(NULL, size);
    if (buf == NULL)
        return NULL;
    for (;;) {
        ssize_t n;
        fd = sock_fd(args[0]);
        if (fd == -2)
            goto fail;
        n = recv(fd, PyBytes_AS_STRING(buf), (size_t)size, flags);
        if (n >= 0) {
            if (n != size && _PyBytes_Resize(&buf, n) < 0)
                return NULL;
            return buf;
        }
        if (on_error(errno, fd, EPOLLIN, timeout, &deadline, owner) < 0)
            goto fail;
    }
fail:
    Py_DECREF(buf);
    return NULL;
}

/* sock_recv_into(sock, buffer, nbytes, flags, timeout, owner) -> int */
static PyObject *sock_recv_into(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t nbytes;
    int flags, fd;
    double timeout, deadline = -1.0;
    long long owner;
    Py_buffer view;
    PyObject *result = NULL;
    (void)module;

    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "sock_recv_into(sock, buffer, nbytes, flags, timeout, owner)");
        return NULL;
    }
    nbytes = PyLong_AsSsize_t(args[2]);
    if (nbytes == -1 && PyErr_Occurred())
        return NULL;
    flags = (int)PyLong_AsLong(args[3]);
    if (flags == -1 && PyErr_Occurred())
        return NULL;
    if (parse_common(args[4], args[5], &timeout, &owner) < 0)
        return NULL;
    if (nbytes < 0) {
        PyErr_SetString(PyExc_ValueError, "negative buffersize in recv_into");
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &view, PyBUF_WRITABLE) < 0)
        return NULL;
    if (nbytes == 0)
        nbytes = view.len;
    else if (nbytes > view.len) {
        PyErr_SetString(PyExc_ValueError, "buffer too small for requested bytes");
        goto done;
    }
    for (;;) {
        ssize_t n;
        fd = sock_fd(args[0]);
        if (fd == -2)
            goto done;
        n = recv(fd, view.buf, (size_t)nbytes, flags);
        if (n >= 0) {
            result = PyLong_FromSsize_t(n);
            goto done;
        }
        if (on_error(errno, fd, EPOLLIN, timeout, &deadline, owner) < 0)
            goto done;
    }
done:
    PyBuffer_Release(&view);
    return result;
}

/* Sends from `view` (from offset *sent) until one send succeeds (all=0) or
 * everything is sent (all=1).  Returns 0 or -1 with an exception set. */
static int send_loop(PyObject *const *args, Py_buffer *view, int all, Py_ssize_t *sent)
{
    int flags, fd;
    double timeout, deadline = -1.0;
    long long owner;

    flags = (int)PyLong_AsLong(args[2]);
    if (flags == -1 && PyErr_Occurred())
        return -1;
    if (parse_common(args[3], args[4], &timeout, &owner) < 0)
        return -1;
    *sent = 0;
    for (;;) {
        ssize_t n;
        fd = sock_fd(args[0]);
        if (fd == -2)
            return -1;
        n = send(fd, (char *)view->buf + *sent, (size_t)(view->len - *sent), flags);
        if (n >= 0) {
            *sent += n;
            if (!all || *sent >= view->len)
                return 0;
            continue;
        }
        if (on_error(errno, fd, EPOLLOUT, timeout, &deadline, owner) < 0)
            return -1;
    }
}

/* sock_send(sock, data, flags, timeout, owner) -> int */
static PyObject *sock_send(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t sent;
    int rc;
    (void)module;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "sock_send(sock, data, flags, timeout, owner)");
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    rc = send_loop(args, &view, 0, &sent);
    PyBuffer_Release(&view);
    return rc < 0 ? NULL : PyLong_FromSsize_t(sent);
}

/* sock_sendall(sock, data, flags, timeout, owner) -> None */
static PyObject *sock_sendall(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t sent;
    int rc;
    (void)module;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "sock_sendall(sock, data, flags, timeout, owner)");
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    rc = send_loop(args, &view, 1, &sent);
    PyBuffer_Release(&view);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

PyMethodDef fh_sock_methods[] = {
    {"sock_recv", (PyCFunction)(void (*)(void))sock_recv, METH_FASTCALL,
     "sock_recv(sock, bufsize, flags, timeout, owner)\n--\n\n"
     "recv on a non-blocking socket, waiting in the hub on EAGAIN."},
    {"sock_recv_into", (PyCFunction)(void (*)(void))sock_recv_into, METH_FASTCALL,
     "sock_recv_into(sock, buffer, nbytes, flags, timeout, owner)\n--\n\n"
     "recv_into on a non-blocking socket, waiting in the hub on EAGAIN."},
    {"sock_send", (PyCFunction)(void (*)(void))sock_send, METH_FASTCALL,
     "sock_send(sock, data, flags, timeout, owner)\n--\n\n"
     "send on a non-blocking socket, waiting in the hub on EAGAIN."},
    {"sock_sendall", (PyCFunction)(void (*)(void))sock_sendall, METH_FASTCALL,
     "sock_sendall(sock, data, flags, timeout, owner)\n--\n\n"
     "sendall on a non-blocking socket (the timeout covers the whole call)."},
    {NULL, NULL, 0, NULL}
};
