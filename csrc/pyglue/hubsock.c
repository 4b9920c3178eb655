/*
 * hubsock.c - the hot calls of fastco.socket, in C: recv, recv_into, send,
 * sendall and accept on a non-blocking socket, waiting in the hub on EAGAIN.
 *
 * In Python each of these costs an OSError object on every EAGAIN (~0.8 us
 * here, as much as the system call), plus the frames of the wait.  Here the
 * call is tried, and on EAGAIN the greenlet waits on the fd (fh_wait_fd,
 * no system call with epoll) and tries again, without any exception.
 *
 * sock_install(cls) puts them on fastco.socket.socket as method descriptors
 * (like the methods of a C type), so that `sock.recv(n)` runs no Python
 * frame at all.  They read the socket's fd, family and type from the C
 * socket object, whose layout starts with those (checked once against
 * fileno(), family and type, else fileno() is called), and its timeout and
 * owner (serial number) from the slots `_timeout` and `_serial` of the
 * Python class (their offsets are taken from its member descriptors).
 *
 * Readiness hints (edge-triggered epoll only).  A stream socket whose recv
 * returned less than asked was drained by it: the kernel copies until the
 * receive queue is empty (tcp_recvmsg, unix_stream_read_generic), and any
 * byte that arrives later makes a new edge.  So the next recv need not try
 * the system call to learn it would fail with EAGAIN: it waits for the edge
 * at once.  On a busy echo server that is one system call in three (recv,
 * EAGAIN, send becomes recv, send).  The hub keeps one hint per direction
 * per fd (hubcore.h, fh_fd.rready/wready): the socket layer clears it on
 * EAGAIN or a short read (stream sockets, flags 0), the loop sets it at
 * every edge that reports the direction, whether or not somebody waits.  A
 * short read can leave a FIN unread (the next recv returns b''), but the
 * FIN's RDHUP edge sets the hint back; once epoll reported RDHUP, HUP or
 * ERR the hints are no longer trusted for that fd.  The hints are used only
 * while the registration belongs to the calling socket (its owner), for
 * calls with flags 0 that may wait (not timeout 0.0); anything else tries
 * the system call, as before.  Sends clear their hint only on EAGAIN.
 *
 * Receive buffer.  recv(65536) used to allocate 64 KiB, receive, and shrink
 * the bytes object with realloc: ~3% of an echo server's CPU in malloc.
 * The core keeps one spare buffer (up to FH_RBUF_MAX): a result of up to
 * FH_COPY_MAX bytes is copied out of it into a new bytes object of the
 * right size (pymalloc below 512 bytes), a larger one takes the buffer
 * itself (shrunk), as before.
 */
#include "hubcore.h"

#include "structmember.h"   /* T_OBJECT_EX */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Results up to this size are copied out of the spare receive buffer. */
#define FH_COPY_MAX 4096
/* The largest buffer kept as the spare. */
#define FH_RBUF_MAX (256 * 1024)

/* The head of CPython's socket object (Modules/socketmodule.h). */
typedef struct {
    PyObject_HEAD
    int sock_fd;
    int sock_family;
    int sock_type;
} fh_sockhead;

/* 1: the layout above was checked; -1: it did not match. */
static int layout_ok;
/* _socket.socket, the only type whose memory the layout describes. */
static PyTypeObject *socket_type;
/* The class sock_install was given, and the offsets of its slots. */
static PyTypeObject *sock_cls;
static Py_ssize_t off_timeout = -1, off_serial = -1;

/* Checks the layout of fh_sockhead against sock's fileno(), family, type. */
static void check_layout(PyObject *sock, int fd)
{
    fh_sockhead *h = (fh_sockhead *)sock;
    PyObject *fam = PyObject_GetAttrString(sock, "family");
    PyObject *typ = fam != NULL ? PyObject_GetAttrString(sock, "type") : NULL;
    long f = fam != NULL ? PyLong_AsLong(fam) : -1;
    long t = typ != NULL ? PyLong_AsLong(typ) : -1;
    Py_XDECREF(fam);
    Py_XDECREF(typ);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return;   /* undecided: check again next time */
    }
    layout_ok = (h->sock_fd == fd && h->sock_family == f && h->sock_type == t) ? 1 : -1;
}

/* The socket's fd, or -2 with an exception set. */
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
    if (layout_ok == 0 && fd >= 0 && PyObject_TypeCheck(sock, socket_type))
        check_layout(sock, fd);
    return fd;
}

/* One call on a socket: what it needs to know while it runs. */
typedef struct {
    PyObject *sock;
    FhCore *core;        /* the thread's hub core, or NULL if it has none yet */
    double timeout;      /* < 0: none (blocking); 0: non-blocking; > 0: seconds */
    double deadline;     /* < 0 until the first wait */
    long long owner;     /* the socket's serial number (see Hub.wait_fd) */
    int stream;          /* SOCK_STREAM: a short read means drained */
} fh_call;

static int parse_timeout(PyObject *obj, double *out)
{
    if (obj == NULL || obj == Py_None) {
        *out = -1.0;
        return 0;
    }
    *out = PyFloat_CheckExact(obj) ? PyFloat_AS_DOUBLE(obj) : PyFloat_AsDouble(obj);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

/* Fills c for a method call on sock (an instance of sock_cls). */
static int call_from_slots(fh_call *c, PyObject *sock)
{
    PyObject *t, *o;
    c->sock = sock;
    c->core = fh_peek();
    c->deadline = -1.0;
    t = *(PyObject **)((char *)sock + off_timeout);
    o = *(PyObject **)((char *)sock + off_serial);
    if (parse_timeout(t, &c->timeout) < 0)
        return -1;
    if (o == NULL) {
        c->owner = 0;
    } else {
        c->owner = PyLong_AsLongLong(o);
        if (c->owner == -1 && PyErr_Occurred())
            return -1;
    }
    c->stream = layout_ok > 0 && ((fh_sockhead *)sock)->sock_type == SOCK_STREAM;
    return 0;
}

/* The slot of fd if its readiness hints can be trusted for this call. */
static fh_fd *trusted_slot(fh_call *c, int fd)
{
    FhCore *core = c->core;
    fh_fd *s;
    if (core == NULL || core->epfd < 0 || fd < 0 || fd >= core->nfds || c->owner == 0)
        return NULL;
    s = &core->fds[fd];
    if (!s->known || s->owner != c->owner || s->hup)
        return NULL;
    return s;
}

/* Waits until fd is ready for event, within the call's timeout.  Returns 0,
 * or -1 with an exception set (TimeoutError, EBADF, a kill...). */
static int wait_ready(fh_call *c, int fd, unsigned int event)
{
    double remaining = -1.0;
    FhCore *core;
    if (c->timeout > 0.0) {
        double now = fh_now();
        if (c->deadline < 0.0)
            c->deadline = now + c->timeout;
        remaining = c->deadline - now;
        if (remaining <= 0.0) {
            PyErr_SetString(PyExc_TimeoutError, "timed out");
            return -1;
        }
    }
    core = fh_current();   /* makes the hub if the thread has none yet */
    if (core == NULL)
        return -1;
    c->core = core;
    return fh_wait_fd(core, fd, event, remaining, c->owner);
}

/* The call failed with errno `err`.  Returns 1 to try again (after a
 * signal, or after waiting in the hub), or -1 with an exception set. */
static int on_error(fh_call *c, int err, int fd, unsigned int event)
{
    if (err == EINTR)
        return PyErr_CheckSignals() < 0 ? -1 : 1;
    if ((err != EAGAIN && err != EWOULDBLOCK) || c->timeout == 0.0) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    {
        fh_fd *s = trusted_slot(c, fd);
        if (s != NULL) {
            if (event == EPOLLIN)
                s->rready = 0;
            else
                s->wready = 0;
        }
    }
    return wait_ready(c, fd, event) < 0 ? -1 : 1;
}

/* Before a call with flags 0 that may wait: if the hint says the fd is
 * drained, wait for the edge now.  Returns 1 after waiting (look again), 0
 * to make the call, -1 with an exception set. */
static int wait_if_drained(fh_call *c, int fd, unsigned int event)
{
    fh_fd *s;
    if (c->timeout == 0.0 || (s = trusted_slot(c, fd)) == NULL)
        return 0;
    if (event == EPOLLIN ? s->rready : s->wready)
        return 0;
    return wait_ready(c, fd, event) < 0 ? -1 : 1;
}

/* ------------------------------------------------------------------------
 * The spare receive buffer
 */

static PyObject *rbuf_take(FhCore *core, Py_ssize_t size)
{
    if (core != NULL && core->rbuf != NULL && PyBytes_GET_SIZE(core->rbuf) >= size) {
        PyObject *b = core->rbuf;
        core->rbuf = NULL;
        return b;
    }
    return PyBytes_FromStringAndSize(NULL, size);
}

static void rbuf_give_back(FhCore *core, PyObject *b)
{
    if (core != NULL && !core->closed && PyBytes_GET_SIZE(b) <= FH_RBUF_MAX
        && (core->rbuf == NULL || PyBytes_GET_SIZE(core->rbuf) < PyBytes_GET_SIZE(b))) {
        Py_XSETREF(core->rbuf, b);
        return;
    }
    Py_DECREF(b);
}

/* The result of receiving n bytes into b (consumed). */
static PyObject *rbuf_result(FhCore *core, PyObject *b, Py_ssize_t n)
{
    PyObject *r;
    if (n == PyBytes_GET_SIZE(b))
        return b;
    if (n <= FH_COPY_MAX) {
        r = PyBytes_FromStringAndSize(PyBytes_AS_STRING(b), n);
        rbuf_give_back(core, b);
        return r;
    }
    if (_PyBytes_Resize(&b, n) < 0)
        return NULL;
    return b;
}

/* ------------------------------------------------------------------------
 * The calls
 */

static PyObject *do_recv(fh_call *c, Py_ssize_t size, int flags)
{
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "negative buffersize in recv");
        return NULL;
    }
    for (;;) {
        ssize_t n;
        PyObject *buf;
        int fd = sock_fd(c->sock), rc;
        if (fd == -2)
            return NULL;
        if (flags == 0 && (rc = wait_if_drained(c, fd, EPOLLIN)) != 0) {
            if (rc < 0)
                return NULL;
            continue;
        }
        buf = rbuf_take(c->core, size);
        if (buf == NULL)
            return NULL;
        n = recv(fd, PyBytes_AS_STRING(buf), (size_t)size, flags);
        if (n >= 0) {
            if (c->core != NULL)
                c->core->bytes_received += (unsigned long long)n;
            if (n > 0 && n < size && c->stream && flags == 0) {
                fh_fd *s = trusted_slot(c, fd);
                if (s != NULL)
                    s->rready = 0;   /* drained: the next recv waits for the edge */
            }
            return rbuf_result(c->core, buf, n);
        }
        rc = errno;
        rbuf_give_back(c->core, buf);
        if (on_error(c, rc, fd, EPOLLIN) < 0)
            return NULL;
    }
}

static PyObject *do_recv_into(fh_call *c, PyObject *buffer, Py_ssize_t nbytes, int flags)
{
    Py_buffer view;
    PyObject *result = NULL;
    if (nbytes < 0) {
        PyErr_SetString(PyExc_ValueError, "negative buffersize in recv_into");
        return NULL;
    }
    if (PyObject_GetBuffer(buffer, &view, PyBUF_WRITABLE) < 0)
        return NULL;
    if (nbytes == 0)
        nbytes = view.len;
    else if (nbytes > view.len) {
        PyErr_SetString(PyExc_ValueError, "buffer too small for requested bytes");
        goto done;
    }
    for (;;) {
        ssize_t n;
        int fd = sock_fd(c->sock), rc;
        if (fd == -2)
            goto done;
        if (flags == 0 && nbytes > 0 && (rc = wait_if_drained(c, fd, EPOLLIN)) != 0) {
            if (rc < 0)
                goto done;
            continue;
        }
        n = recv(fd, view.buf, (size_t)nbytes, flags);
        if (n >= 0) {
            if (c->core != NULL)
                c->core->bytes_received += (unsigned long long)n;
            if (n > 0 && n < nbytes && c->stream && flags == 0) {
                fh_fd *s = trusted_slot(c, fd);
                if (s != NULL)
                    s->rready = 0;
            }
            result = PyLong_FromSsize_t(n);
            goto done;
        }
        if (on_error(c, errno, fd, EPOLLIN) < 0)
            goto done;
    }
done:
    PyBuffer_Release(&view);
    return result;
}

/* Sends from `view` until one send succeeds (all=0) or everything is sent
 * (all=1).  Returns the bytes sent, or -1 with an exception set. */
static Py_ssize_t send_loop(fh_call *c, Py_buffer *view, int flags, int all)
{
    Py_ssize_t sent = 0;
    for (;;) {
        ssize_t n;
        int fd = sock_fd(c->sock), rc;
        if (fd == -2)
            return -1;
        if (flags == 0 && (rc = wait_if_drained(c, fd, EPOLLOUT)) != 0) {
            if (rc < 0)
                return -1;
            continue;
        }
        n = send(fd, (char *)view->buf + sent, (size_t)(view->len - sent), flags);
        if (n >= 0) {
            sent += n;
            if (c->core != NULL)
                c->core->bytes_sent += (unsigned long long)n;
            if (!all || sent >= view->len)
                return sent;
            continue;
        }
        if (on_error(c, errno, fd, EPOLLOUT) < 0)
            return -1;
    }
}

static PyObject *do_send(fh_call *c, PyObject *data, int flags, int all)
{
    Py_buffer view;
    Py_ssize_t sent;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    sent = send_loop(c, &view, flags, all);
    PyBuffer_Release(&view);
    if (sent < 0)
        return NULL;
    if (all)
        Py_RETURN_NONE;
    return PyLong_FromSsize_t(sent);
}

/* The peer address of an accepted socket, as the socket module makes it. */
static PyObject *make_address(struct sockaddr *sa, socklen_t len)
{
    char host[INET6_ADDRSTRLEN];
    switch (sa->sa_family) {
    case AF_INET: {
        struct sockaddr_in *a = (struct sockaddr_in *)sa;
        if (inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(si)", host, (int)ntohs(a->sin_port));
    }
    case AF_INET6: {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)sa;
        if (inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(siII)", host, (int)ntohs(a->sin6_port),
                             (unsigned int)ntohl(a->sin6_flowinfo),
                             (unsigned int)a->sin6_scope_id);
    }
    case AF_UNIX: {
        struct sockaddr_un *a = (struct sockaddr_un *)sa;
        size_t plen = len > offsetof(struct sockaddr_un, sun_path)
                      ? (size_t)len - offsetof(struct sockaddr_un, sun_path) : 0;
        if (plen > 0 && a->sun_path[0] == 0)   /* Linux abstract namespace */
            return PyBytes_FromStringAndSize(a->sun_path, (Py_ssize_t)plen);
        return PyUnicode_DecodeFSDefaultAndSize(a->sun_path,
                                                (Py_ssize_t)strnlen(a->sun_path, plen));
    }
    default:
        PyErr_Format(PyExc_OSError, "accept: unsupported address family %d", sa->sa_family);
        return NULL;
    }
}

/* accept4 (non-blocking, close-on-exec): (fd, address). */
static PyObject *do_accept(fh_call *c)
{
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = sock_fd(c->sock), conn, rc;
        PyObject *addr;
        if (fd == -2)
            return NULL;
        if ((rc = wait_if_drained(c, fd, EPOLLIN)) != 0) {
            if (rc < 0)
                return NULL;
            continue;
        }
        memset(&ss, 0, sizeof(ss));
        conn = accept4(fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (conn >= 0) {
            PyObject *r;
            addr = make_address((struct sockaddr *)&ss, len);
            if (addr == NULL) {
                close(conn);
                return NULL;
            }
            r = Py_BuildValue("(iN)", conn, addr);
            if (r == NULL)
                close(conn);
            return r;
        }
        if (on_error(c, errno, fd, EPOLLIN) < 0)
            return NULL;
    }
}

/* ------------------------------------------------------------------------
 * Argument parsing
 */

static int arg_ssize(PyObject *obj, Py_ssize_t *out)
{
    *out = PyLong_AsSsize_t(obj);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static int arg_flags(PyObject *obj, int *out)
{
    long v = PyLong_AsLong(obj);
    if (v == -1 && PyErr_Occurred())
        return -1;
    *out = (int)v;
    return 0;
}

/* ------------------------------------------------------------------------
 * The methods (installed on fastco.socket.socket by sock_install).  Their
 * descriptors check that self is an instance of that class (the slots are
 * read at fixed offsets), before the call.
 */

/* recv(bufsize, flags=0) -> bytes */
static PyObject *m_recv(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    fh_call c;
    Py_ssize_t size;
    int flags = 0;
    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "recv() takes 1 or 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (arg_ssize(args[0], &size) < 0
        || (nargs == 2 && arg_flags(args[1], &flags) < 0) || call_from_slots(&c, self) < 0)
        return NULL;
    return do_recv(&c, size, flags);
}

/* recv_into(buffer, nbytes=0, flags=0) -> int */
static PyObject *m_recv_into(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
    static const char *const names[] = {"buffer", "nbytes", "flags"};
    PyObject *vals[3] = {NULL, NULL, NULL};
    Py_ssize_t nbytes = 0, nkw = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
    int flags = 0;
    fh_call c;
    if (nargs > 3) {
        PyErr_Format(PyExc_TypeError, "recv_into() takes at most 3 arguments (%zd given)",
                     nargs + nkw);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nargs; i++)
        vals[i] = args[i];
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        int found = 0;
        for (int i = 0; i < 3; i++) {
            if (PyUnicode_CompareWithASCIIString(key, names[i]) == 0) {
                if (vals[i] != NULL) {
                    PyErr_Format(PyExc_TypeError, "recv_into() got multiple values for "
                                 "argument '%s'", names[i]);
                    return NULL;
                }
                vals[i] = args[nargs + k];
                found = 1;
            }
        }
        if (!found) {
            PyErr_Format(PyExc_TypeError, "recv_into() got an unexpected keyword argument "
                         "'%U'", key);
            return NULL;
        }
    }
    if (vals[0] == NULL) {
        PyErr_SetString(PyExc_TypeError, "recv_into() missing required argument 'buffer'");
        return NULL;
    }
    if ((vals[1] != NULL && arg_ssize(vals[1], &nbytes) < 0)
        || (vals[2] != NULL && arg_flags(vals[2], &flags) < 0)
        || call_from_slots(&c, self) < 0)
        return NULL;
    return do_recv_into(&c, vals[0], nbytes, flags);
}

/* The arguments (data, flags=0) of send and sendall, then do_send. */
static inline PyObject *send_method(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                    int all)
{
    fh_call c;
    int flags = 0;
    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "%s() takes 1 or 2 arguments (%zd given)",
                     all ? "sendall" : "send", nargs);
        return NULL;
    }
    if ((nargs == 2 && arg_flags(args[1], &flags) < 0)
        || call_from_slots(&c, self) < 0)
        return NULL;
    return do_send(&c, args[0], flags, all);
}

/* send(data, flags=0) -> int */
static PyObject *m_send(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return send_method(self, args, nargs, 0);
}

/* sendall(data, flags=0) -> None */
static PyObject *m_sendall(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return send_method(self, args, nargs, 1);
}

/* _accept_nonblocking() -> (fd, address) */
static PyObject *m_accept(PyObject *self, PyObject *unused)
{
    fh_call c;
    (void)unused;
    if (call_from_slots(&c, self) < 0)
        return NULL;
    return do_accept(&c);
}

/* settimeout(value): None (blocking), 0 (non-blocking) or seconds > 0; the
 * OS socket stays non-blocking (the timeout is the class's slot). */
static PyObject *m_settimeout(PyObject *self, PyObject *value)
{
    PyObject **slot = (PyObject **)((char *)self + off_timeout);
    if (value != Py_None) {
        double t;
        if (!PyLong_Check(value) && !PyFloat_Check(value)) {
            PyErr_SetString(PyExc_TypeError, "Timeout value must be int, float or None");
            return NULL;
        }
        t = PyFloat_AsDouble(value);
        if (t == -1.0 && PyErr_Occurred())
            return NULL;
        if (!(t >= 0.0)) {
            PyErr_SetString(PyExc_ValueError, "Timeout value out of range");
            return NULL;
        }
        value = PyFloat_CheckExact(value) ? Py_NewRef(value) : PyFloat_FromDouble(t);
        if (value == NULL)
            return NULL;
    } else {
        Py_INCREF(value);
    }
    Py_XSETREF(*slot, value);
    Py_RETURN_NONE;
}

/* gettimeout() */
static PyObject *m_gettimeout(PyObject *self, PyObject *unused)
{
    PyObject *t = *(PyObject **)((char *)self + off_timeout);
    (void)unused;
    return Py_NewRef(t != NULL ? t : Py_None);
}

static PyMethodDef sock_methods[] = {
    {"recv", (PyCFunction)(void (*)(void))m_recv, METH_FASTCALL,
     "recv(bufsize[, flags]) -> data\n\n"
     "Receive up to bufsize bytes; b'' once the peer closed its side.  Waits\n"
     "(this greenlet only) while nothing is there, up to the socket's timeout."},
    {"recv_into", (PyCFunction)(void (*)(void))m_recv_into, METH_FASTCALL | METH_KEYWORDS,
     "recv_into(buffer[, nbytes[, flags]]) -> nbytes_read\n\n"
     "Like recv, into a writable buffer (nbytes 0: all of it)."},
    {"send", (PyCFunction)(void (*)(void))m_send, METH_FASTCALL,
     "send(data[, flags]) -> count\n\n"
     "Send what the socket takes now (at least one byte); waits while it takes none."},
    {"sendall", (PyCFunction)(void (*)(void))m_sendall, METH_FASTCALL,
     "sendall(data[, flags])\n\n"
     "Send all of data, waiting while the socket is full; the timeout covers the\n"
     "whole call."},
    {"settimeout", (PyCFunction)m_settimeout, METH_O,
     "settimeout(timeout)\n\n"
     "None: blocking (only this greenlet waits); 0: non-blocking; t > 0: a\n"
     "timeout of t seconds (socket.timeout) on each blocking call."},
    {"gettimeout", (PyCFunction)m_gettimeout, METH_NOARGS,
     "gettimeout() -> timeout\n\nThe timeout in seconds (float), or None."},
    {"_accept_nonblocking", (PyCFunction)m_accept, METH_NOARGS,
     "_accept_nonblocking() -> (fd, address)\n\n"
     "accept4 (non-blocking, close-on-exec), waiting while nobody connects."},
    {NULL, NULL, 0, NULL}
};

/* Offset of the object slot `name` of cls (a member descriptor). */
static Py_ssize_t slot_offset(PyTypeObject *cls, const char *name)
{
    PyObject *d = PyDict_GetItemString(cls->tp_dict, name);
    PyMemberDef *m;
    if (d == NULL || !PyObject_TypeCheck(d, &PyMemberDescr_Type)) {
        PyErr_Format(PyExc_TypeError, "%s has no slot %s", cls->tp_name, name);
        return -1;
    }
    m = ((PyMemberDescrObject *)d)->d_member;
    if (m->type != T_OBJECT_EX && m->type != T_OBJECT) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not an object slot", cls->tp_name, name);
        return -1;
    }
    return m->offset;
}

/* sock_install(cls): the methods above on cls, which has slots _timeout and _serial. */
static PyObject *sock_install(PyObject *module, PyObject *arg)
{
    PyTypeObject *cls;
    Py_ssize_t ot, os_;
    (void)module;
    if (!PyType_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "sock_install needs a class");
        return NULL;
    }
    cls = (PyTypeObject *)arg;
    if ((ot = slot_offset(cls, "_timeout")) < 0 || (os_ = slot_offset(cls, "_serial")) < 0)
        return NULL;
    if (sock_cls != NULL && sock_cls != cls) {
        PyErr_SetString(PyExc_RuntimeError, "sock_install was called for another class");
        return NULL;
    }
    for (PyMethodDef *d = sock_methods; d->ml_name != NULL; d++) {
        PyObject *descr = PyDescr_NewMethod(cls, d);
        if (descr == NULL || PyObject_SetAttrString(arg, d->ml_name, descr) < 0) {
            Py_XDECREF(descr);
            return NULL;
        }
        Py_DECREF(descr);
    }
    Py_XSETREF(sock_cls, (PyTypeObject *)Py_NewRef(arg));
    off_timeout = ot;
    off_serial = os_;
    Py_RETURN_NONE;
}

PyMethodDef fh_sock_methods[] = {
    {"sock_install", (PyCFunction)sock_install, METH_O,
     "sock_install(cls)\n--\n\n"
     "Install recv, recv_into, send, sendall, settimeout, gettimeout and\n"
     "_accept_nonblocking, in C, on cls\n"
     "(fastco.socket.socket: slots _timeout and _serial)."},
    {NULL, NULL, 0, NULL}
};
