/*
 * hub.h - the native core of fastco's hub (hub.c, hubfd.c, hubtype.c;
 * their shared internals are in hubcore.h) as the rest of the glue sees it,
 * and its socket fast paths (hubsock.c).  fastco/hub.py is their Python face.
 *
 * Everything here runs with the GIL held, on the thread that owns the hub,
 * except fh_core's run_callback_threadsafe (any thread, GIL held).
 */
#ifndef FASTCO_HUB_H
#define FASTCO_HUB_H

#include "glue.h"

typedef struct FhCore FhCore;

/* Adds the hub's types and functions to the fastco._native module. */
int fc_hub_module_init(PyObject *module);

/* The hub core of the running thread, made (through fastco.hub.get_hub)
 * on first use; a borrowed reference, or NULL with an exception set. */
FhCore *fh_current(void);

/* Suspends the current greenlet until `fd` is ready for `event` (EPOLLIN or
 * EPOLLOUT), or `timeout` seconds passed (a negative timeout: no limit).
 * `owner` identifies the socket object waiting (see Hub.wait_fd).  Returns
 * 0, or -1 with an exception set: TimeoutError, OSError(EBADF) when the fd
 * is closed meanwhile, ConcurrentUseError, or whatever was thrown in. */
int fh_wait_fd(FhCore *core, int fd, unsigned int event, double timeout,
               long long owner);

/* The socket fast paths (hubsock.c), registered by fc_hub_module_init. */
extern PyMethodDef fh_sock_methods[];

/* The cooperative locks' C paths (hublock.c): their types and functions,
 * registered by fc_hub_module_init. */
int fh_lock_types_init(PyObject *module);
extern PyMethodDef fh_lock_functions[];

#endif /* FASTCO_HUB_H */
