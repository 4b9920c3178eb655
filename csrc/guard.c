/*
 * guard.c - a clear message when a coroutine overflows its stack.
 *
 * Running past the end of a coroutine stack hits its guard page, and the
 * kernel sends SIGSEGV.  By default that is a bare "Segmentation fault".
 * This handler recognises a fault address inside a fastco guard page (see
 * fastco_stack_guard_hit) and says what happened and what to do, then lets
 * the process die as it would have: it reinstalls the handler that was there
 * before (the default, or e.g. Python's faulthandler, which then prints the
 * Python traceback) and raises the signal again.
 *
 * The stack that overflowed cannot run the handler: it runs on an alternate
 * signal stack, which is per thread, so every thread that runs coroutines
 * calls fastco_guard_thread_init.
 */
#define _GNU_SOURCE
#include "fastco.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Size of the alternate signal stacks we make. */
#define ALTSTACK_SIZE ((size_t)64 << 10)

static struct sigaction previous[2];       /* SIGSEGV, SIGBUS */
static int installed;
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;

/* The alternate stack this thread got from us, if any. */
static _Thread_local void *own_altstack;

/* Async-signal-safe formatting: appends to buf[*len], up to cap. */
static void put_str(char *buf, size_t *len, size_t cap, const char *s)
{
    while (*s && *len + 1 < cap)
        buf[(*len)++] = *s++;
}

static void put_num(char *buf, size_t *len, size_t cap, uintptr_t n, int base)
{
    char digits[32];
    int i = 0;
    do {
        digits[i++] = "0123456789abcdef"[n % (uintptr_t)base];
        n /= (uintptr_t)base;
    } while (n && i < (int)sizeof(digits));
    if (base == 16)
        put_str(buf, len, cap, "0x");
    while (i > 0 && *len + 1 < cap)
        buf[(*len)++] = digits[--i];
}

static void on_fault(int sig, siginfo_t *info, void *uctx)
{
    size_t size = 0;
    int saved_errno = errno;
    (void)uctx;

    if (info != NULL && fastco_stack_guard_hit(info->si_addr, &size)) {
        char msg[512];
        size_t n = 0;
        ssize_t w;
        put_str(msg, &n, sizeof(msg), "\nfastco: coroutine stack overflow: a coroutine ran past "
                                      "the end of its ");
        put_num(msg, &n, sizeof(msg), size, 10);
        put_str(msg, &n, sizeof(msg), "-byte stack and hit the guard page below it (address ");
        put_num(msg, &n, sizeof(msg), (uintptr_t)info->si_addr, 16);
        put_str(msg, &n, sizeof(msg), ").\nGive it a larger stack, e.g. stack_size=");
        put_num(msg, &n, sizeof(msg), size * 2, 10);
        put_str(msg, &n, sizeof(msg), " (fastco.greenlet(run, stack_size=...)).\n");
        w = write(STDERR_FILENO, msg, n);
        (void)w;
    }
    /* Die as without us: the previous disposition takes the signal. */
    sigaction(sig, &previous[sig == SIGBUS], NULL);
    errno = saved_errno;
    raise(sig);
}

int fastco_guard_handler_install(void)
{
    struct sigaction sa;
    int rc = 0;

    pthread_mutex_lock(&install_lock);
    if (!installed) {
        memset(&sa, 0, sizeof(sa));
        sa.sa_sigaction = on_fault;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGSEGV, &sa, &previous[0]) != 0
            || sigaction(SIGBUS, &sa, &previous[1]) != 0)
            rc = -1;
        else
            installed = 1;
    }
    pthread_mutex_unlock(&install_lock);
    return rc;
}

int fastco_guard_thread_init(void)
{
    stack_t old, ss;
    void *mem;

    if (sigaltstack(NULL, &old) != 0)
        return -1;
    if (!(old.ss_flags & SS_DISABLE))
        return 0;        /* the thread has one already (faulthandler's, ...) */
    mem = mmap(NULL, ALTSTACK_SIZE, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return -1;
    ss.ss_sp = mem;
    ss.ss_size = ALTSTACK_SIZE;
    ss.ss_flags = 0;
    if (sigaltstack(&ss, NULL) != 0) {
        munmap(mem, ALTSTACK_SIZE);
        return -1;
    }
    own_altstack = mem;
    return 0;
}

void fastco_guard_thread_fini(void)
{
    stack_t cur, off;

    if (own_altstack == NULL)
        return;
    /* Only take down the alternate stack if it is still ours. */
    if (sigaltstack(NULL, &cur) == 0 && cur.ss_sp == own_altstack) {
        memset(&off, 0, sizeof(off));
        off.ss_flags = SS_DISABLE;
        if (sigaltstack(&off, NULL) == 0)
            munmap(own_altstack, ALTSTACK_SIZE);
    }
    own_altstack = NULL;
}
