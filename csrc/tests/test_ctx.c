/*
 * test_ctx.c - tests of fastco's C library alone: both context backends
 * and the stack allocator.  Build and run with `make -C csrc test`.
 *
 * Each test runs once per available backend.  A failed check prints where
 * and exits 1; the process exit status is what CI looks at.
 */
#define _GNU_SOURCE
#include "../ctx.h"   /* the asm backend's entry points, for test_switch_frame */
#include "../fastco.h"

#include <errno.h>
#include <fenv.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int checks, failures;
static const char *backend_name = "";

#define CHECK(cond)                                                           \
    do {                                                                      \
        checks++;                                                             \
        if (!(cond)) {                                                        \
            failures++;                                                       \
            fprintf(stderr, "FAIL [%s] %s:%d: %s\n", backend_name, __FILE__,  \
                    __LINE__, #cond);                                         \
        }                                                                     \
    } while (0)

/* A made context with its stack, and a link to whoever resumes it. */
struct co {
    fastco_ctx ctx;
    fastco_ctx *caller;   /* where to switch when yielding */
    fastco_stack stack;
    int done;
};

static void co_start(struct co *c, fastco_entry entry, size_t size)
{
    memset(c, 0, sizeof(*c));
    if (fastco_stack_get(&c->stack, size) != 0) {
        perror("fastco_stack_get");
        exit(2);
    }
    fastco_ctx_make(&c->ctx, c->stack.lo, c->stack.size, entry, c);
}

static void co_free(struct co *c)
{
    fastco_ctx_retire(&c->ctx);
    fastco_stack_put(&c->stack);
}

/* ---- a switch writes nothing above its caller's stack pointer ----------- */

#if FASTCO_HAVE_ASM
/* probe_switch(from_sp, to_sp) stores 0xbeef at its own [sp], calls
 * fastco_asm_switch(from_sp, to_sp, 0) and, once resumed, returns the word
 * at [sp].  The switch keeps what it saves below its caller's stack pointer:
 * the word must be intact (the resumed side reading back its own clobbered
 * word would not notice). */
uintptr_t probe_switch(void **from_sp, void *to_sp);
#if defined(__x86_64__)
__asm__(".text\n"
        ".globl probe_switch\n"
        ".hidden probe_switch\n"
        ".type probe_switch, @function\n"
        "probe_switch:\n"
        "    sub $24, %rsp\n"            /* 16-byte aligned at the call */
        "    movq $0xbeef, (%rsp)\n"
        "    xor %edx, %edx\n"
        "    call fastco_asm_switch\n"
        "    mov (%rsp), %rax\n"
        "    add $24, %rsp\n"
        "    ret\n"
        ".size probe_switch, .-probe_switch\n");
#elif defined(__aarch64__)
__asm__(".text\n"
        ".globl probe_switch\n"
        ".hidden probe_switch\n"
        ".type probe_switch, %function\n"
        "probe_switch:\n"
        "    stp x29, x30, [sp, #-16]!\n"
        "    mov x29, sp\n"
        "    sub sp, sp, #16\n"
        "    mov x9, #0xbeef\n"
        "    str x9, [sp]\n"
        "    mov x2, #0\n"
        "    bl fastco_asm_switch\n"
        "    ldr x0, [sp]\n"
        "    add sp, sp, #16\n"
        "    ldp x29, x30, [sp], #16\n"
        "    ret\n"
        ".size probe_switch, .-probe_switch\n");
#endif

static void *probe_main_sp, *probe_co_sp;

static void probe_entry(void *arg, void *value)
{
    (void)arg;
    for (;;)
        value = fastco_asm_switch(&probe_co_sp, probe_main_sp, value);
}

static void test_switch_frame(void)
{
    fastco_stack st;
    if (fastco_backend_get() != FASTCO_BACKEND_ASM)
        return;
    CHECK(fastco_stack_get(&st, 0) == 0);
    probe_co_sp = fastco_asm_make((char *)st.lo + st.size, probe_entry, NULL);
    for (int i = 0; i < 3; i++)   /* into the new context, then resuming it */
        CHECK(probe_switch(&probe_main_sp, probe_co_sp) == 0xbeef);
    fastco_stack_put(&st);
}
#else
static void test_switch_frame(void)
{
}
#endif

/* ---- ping-pong with values ---------------------------------------------- */

static fastco_ctx main_ctx;

static void pingpong_entry(void *arg, void *value)
{
    struct co *c = arg;
    uintptr_t v = (uintptr_t)value;
    /* Echo v + 1 back, until told 0. */
    while (v != 0)
        v = (uintptr_t)fastco_ctx_switch(&c->ctx, &main_ctx, (void *)(v + 1));
    c->done = 1;
    fastco_ctx_switch(&c->ctx, &main_ctx, (void *)(uintptr_t)0xd0e);
    abort();   /* unreachable: nothing resumes us */
}

static void test_pingpong(void)
{
    struct co c;
    co_start(&c, pingpong_entry, 0);
    for (uintptr_t i = 1; i <= 100000; i++) {
        uintptr_t r = (uintptr_t)fastco_ctx_switch(&main_ctx, &c.ctx, (void *)i);
        if (r != i + 1) {
            CHECK(r == i + 1);
            break;
        }
    }
    CHECK((uintptr_t)fastco_ctx_switch(&main_ctx, &c.ctx, NULL) == 0xd0e);
    CHECK(c.done);
    co_free(&c);
}

/* ---- many contexts, round robin ----------------------------------------- */

#define RING 1000
#define LAPS 50
static struct co ring[RING];
static fastco_ctx ring_main;

static void ring_entry(void *arg, void *value)
{
    struct co *c = arg;
    size_t me = (size_t)(c - ring);
    volatile unsigned long local = me * 1000003ul;   /* lives on this stack */
    unsigned long laps = 0;
    (void)value;
    for (;;) {
        laps++;
        local += 1;
        if (me == RING - 1 && laps == LAPS)
            break;
        fastco_ctx_switch(&c->ctx, me == RING - 1 ? &ring[0].ctx : &ring[me + 1].ctx,
                          NULL);
        /* If another context had clobbered our stack, this would differ. */
        if (local != me * 1000003ul + laps)
            failures++;
    }
    c->done = 1;
    fastco_ctx_switch(&c->ctx, &ring_main, NULL);
    abort();
}

static void test_ring(void)
{
    int before = failures;
    for (size_t i = 0; i < RING; i++)
        co_start(&ring[i], ring_entry, 64 << 10);
    fastco_ctx_switch(&ring_main, &ring[0].ctx, NULL);
    CHECK(ring[RING - 1].done);
    CHECK(failures == before);
    for (size_t i = 0; i < RING; i++)
        co_free(&ring[i]);
}

/* ---- deep nesting: each context makes and runs the next ----------------- */

#define DEPTH 200
static struct co nest[DEPTH];
static size_t nest_reached;

static void nest_entry(void *arg, void *value)
{
    struct co *c = arg;
    size_t level = (size_t)(c - nest);
    uintptr_t got;
    (void)value;
    if (level > nest_reached)
        nest_reached = level;
    if (level + 1 < DEPTH) {
        co_start(&nest[level + 1], nest_entry, 32 << 10);
        nest[level + 1].caller = &c->ctx;
        /* The child answers with its level; it then finished. */
        got = (uintptr_t)fastco_ctx_switch(&c->ctx, &nest[level + 1].ctx, NULL);
        if (got != level + 1)
            failures++;
        co_free(&nest[level + 1]);
    }
    c->done = 1;
    fastco_ctx_switch(&c->ctx, c->caller, (void *)(uintptr_t)level);
    abort();
}

static void test_nesting(void)
{
    static fastco_ctx top;
    int before = failures;
    nest_reached = 0;
    co_start(&nest[0], nest_entry, 32 << 10);
    nest[0].caller = &top;
    CHECK((uintptr_t)fastco_ctx_switch(&top, &nest[0].ctx, NULL) == 0);
    CHECK(nest_reached == DEPTH - 1u);
    CHECK(nest[0].done);
    CHECK(failures == before);
    co_free(&nest[0]);
}

/* ---- floating point state and callee-saved registers ---------------------- */

static volatile double fp_seen;

static void fp_entry(void *arg, void *value)
{
    struct co *c = arg;
    double x = 1.0;
    (void)value;
    fesetround(FE_DOWNWARD);    /* only this context rounds down */
    for (int i = 0; i < 10; i++) {
        x = x * 1.5 + 0.25;
        fastco_ctx_switch(&c->ctx, &main_ctx, NULL);
        if (fegetround() != FE_DOWNWARD)
            failures++;
    }
    fp_seen = x;
    c->done = 1;
    fastco_ctx_switch(&c->ctx, &main_ctx, NULL);
    abort();
}

static void test_fp_state(void)
{
    struct co c;
    int before = failures;
    double y = 3.0, expect = 1.0;
    fesetround(FE_TONEAREST);
    co_start(&c, fp_entry, 0);
    for (int i = 0; i < 10; i++) {
        y = y * 0.5 + 1.0;
        fastco_ctx_switch(&main_ctx, &c.ctx, NULL);
        if (fegetround() != FE_TONEAREST)
            failures++;
    }
    fastco_ctx_switch(&main_ctx, &c.ctx, NULL);
    for (int i = 0; i < 10; i++)
        expect = expect * 1.5 + 0.25;     /* exact in binary: rounding moot */
    CHECK(c.done);
    CHECK(fp_seen == expect);
    CHECK(y > 1.99 && y < 2.01);
    CHECK(failures == before);
    co_free(&c);
}

/* ---- a context using much of its stack ----------------------------------- */

static unsigned long recurse(unsigned long n)
{
    volatile char pad[512];
    pad[0] = (char)n;
    if (n == 0)
        return 0;
    return recurse(n - 1) + (unsigned long)(unsigned char)pad[0] - (n & 0xff) + 1;
}

static void deep_entry(void *arg, void *value)
{
    struct co *c = arg;
    (void)value;
    fp_seen = (double)recurse(300);    /* ~200 KiB of a 256 KiB stack */
    c->done = 1;
    fastco_ctx_switch(&c->ctx, &main_ctx, NULL);
    abort();
}

static void test_deep_stack(void)
{
    struct co c;
    co_start(&c, deep_entry, 256 << 10);
    fastco_ctx_switch(&main_ctx, &c.ctx, NULL);
    CHECK(c.done);
    CHECK(fp_seen == 300.0);
    co_free(&c);
}

/* ---- backend selection ---------------------------------------------------- */

static void test_backend_busy(void)
{
    struct co c;
    int other = fastco_backend_get() == FASTCO_BACKEND_ASM
                    ? FASTCO_BACKEND_UCONTEXT : FASTCO_BACKEND_ASM;
    co_start(&c, pingpong_entry, 0);
    if (fastco_backend_available(other)) {
        errno = 0;
        CHECK(fastco_backend_set(other) == -1 && errno == EBUSY);
    }
    CHECK(fastco_backend_set(fastco_backend_get()) == 0);
    co_free(&c);     /* never started: retiring it is allowed */
    CHECK(fastco_ctx_alive() == 0);
    errno = 0;
    CHECK(fastco_backend_set(42) == -1 && errno == EINVAL);
    CHECK(fastco_backend_lookup("asm") == FASTCO_BACKEND_ASM);
    CHECK(fastco_backend_lookup("ucontext") == FASTCO_BACKEND_UCONTEXT);
    CHECK(fastco_backend_lookup("nope") == -1);
    CHECK(fastco_backend_lookup(NULL) == -1);
}

/* ---- process-ending faults, in children ----------------------------------- */

static void returning_entry(void *arg, void *value)
{
    (void)arg;
    (void)value;
}

static void run_returning_entry(void)
{
    struct co c;
    co_start(&c, returning_entry, 0);
    fastco_ctx_switch(&main_ctx, &c.ctx, NULL);
}

static void touch_guard(void)
{
    fastco_stack st;
    if (fastco_stack_get(&st, 0) == 0)
        ((volatile char *)st.lo)[-1] = 1;
}

static void overflow_entry(void *arg, void *value)
{
    (void)arg;
    (void)value;
    fp_seen = (double)recurse(1000000);     /* far more than 16 KiB */
    abort();                               /* unreachable: it overflows */
}

static void run_overflow(void)
{
    struct co c;
    if (fastco_guard_handler_install() != 0 || fastco_guard_thread_init() != 0)
        _exit(3);
    co_start(&c, overflow_entry, 16 << 10);
    fastco_ctx_switch(&main_ctx, &c.ctx, NULL);
}

/* Runs fn in a child whose stderr we read; returns its signal number and
 * stores what it wrote in out. */
static int child_output(void (*fn)(void), char *out, size_t cap)
{
    int fds[2], status;
    size_t n = 0;
    ssize_t r;
    pid_t pid;

    if (pipe(fds) != 0)
        return -1;
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        fn();
        _exit(0);
    }
    close(fds[1]);
    while (n + 1 < cap && (r = read(fds[0], out + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = 0;
    close(fds[0]);
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

/* Runs fn in a child, dropping what it writes (the expected abort's
 * message); returns its signal number. */
static int child_signal(void (*fn)(void))
{
    char dropped[1024];
    return child_output(fn, dropped, sizeof dropped);
}

static void test_faults(void)
{
    char out[1024];
    CHECK(child_signal(run_returning_entry) == SIGABRT);
    /* qemu-user accepts MADV_GUARD_INSTALL but ignores it: under emulation
     * guard pages cannot be tested (FASTCO_TEST_SKIP_GUARD=1). */
    if (getenv("FASTCO_TEST_SKIP_GUARD") != NULL) {
        printf("  guard page faults: skipped (FASTCO_TEST_SKIP_GUARD)\n");
        return;
    }
    CHECK(child_signal(touch_guard) == SIGSEGV);
    /* An overflow dies of SIGSEGV still, but says what happened. */
    CHECK(child_output(run_overflow, out, sizeof(out)) == SIGSEGV);
    CHECK(strstr(out, "coroutine stack overflow") != NULL);
    CHECK(strstr(out, "16384-byte stack") != NULL);
    CHECK(strstr(out, "stack_size=32768") != NULL);
}

/* ---- the stack allocator -------------------------------------------------- */

static void test_stacks(void)
{
    fastco_stack a, b, c;
    fastco_stack_stats s0, s1;
    size_t page = fastco_page_size();
    size_t sz;

    fastco_stack_stats_get(&s0);
    CHECK(fastco_stack_get(&a, 0) == 0);
    CHECK(a.size == FASTCO_STACK_DEFAULT_SIZE);
    CHECK(((uintptr_t)a.lo & (page - 1)) == 0);
    CHECK(fastco_stack_get(&b, 1) == 0);
    CHECK(b.size == FASTCO_STACK_MIN_SIZE);
    CHECK(fastco_stack_get(&c, FASTCO_STACK_MIN_SIZE + 1) == 0);
    CHECK(c.size == FASTCO_STACK_MIN_SIZE + page);
    {
        fastco_stack too_big;
        CHECK(fastco_stack_get(&too_big, FASTCO_STACK_MAX_SIZE + 1) == EINVAL);
    }

    /* The whole usable range is writable; the byte below is a guard. */
    memset(a.lo, 0xab, a.size);
    CHECK(fastco_stack_guard_hit((char *)a.lo - 1, &sz) == 1);
    CHECK(sz == a.size);
    CHECK(fastco_stack_guard_hit((char *)a.lo - page, NULL) == 1);
    CHECK(fastco_stack_guard_hit(a.lo, NULL) == 0);
    CHECK(fastco_stack_guard_hit((char *)a.lo + a.size - 1, NULL) == 0);
    CHECK(fastco_stack_guard_hit(&sz, NULL) == 0);

    fastco_stack_stats_get(&s1);
    CHECK(s1.in_use == s0.in_use + 3);
    CHECK(s1.guard_method != FASTCO_GUARD_NONE);

    /* LIFO reuse: the stack just returned comes back first, still warm. */
    {
        void *lo = a.lo;
        fastco_stack_put(&a);
        CHECK(a.lo == NULL);
        CHECK(fastco_stack_get(&a, 0) == 0);
        CHECK(a.lo == lo);
        CHECK(((unsigned char *)a.lo)[0] == 0xab);
    }

    /* Discarding gives pages back: they read as zeros again. */
    {
        char *mid = (char *)a.lo + a.size / 2;
        memset(a.lo, 0x5a, a.size);
        fastco_stack_discard(&a, (char *)a.lo - page, mid + 1);
        CHECK(((unsigned char *)a.lo)[0] == 0);
        CHECK((unsigned char)mid[-1] == 0);
        CHECK((unsigned char)mid[0] == 0x5a);     /* partial page kept */
        CHECK(((unsigned char *)a.lo)[a.size - 1] == 0x5a);
        memset(a.lo, 0xab, a.size);
    }

    /* With no hot cache, a returned stack is given back to the kernel. */
    {
        size_t old = fastco_stack_set_hot_limit(0);
        void *lo = a.lo;
        fastco_stack_put(&a);
        fastco_stack_stats_get(&s1);
        CHECK(s1.hot == 0);
        CHECK(s1.cold >= 1);
        CHECK(fastco_stack_get(&a, 0) == 0);
        CHECK(a.lo == lo);
        CHECK(((unsigned char *)a.lo)[0] == 0);   /* fresh zero pages */
        fastco_stack_set_hot_limit(old);
    }

    /* Many stacks at once come from few arenas. */
    {
        enum { N = 2000 };
        static fastco_stack many[N];
        fastco_stack_stats_get(&s0);
        for (int i = 0; i < N; i++)
            CHECK(fastco_stack_get(&many[i], 64 << 10) == 0);
        fastco_stack_stats_get(&s1);
        CHECK(s1.arenas - s0.arenas < 16);
        for (int i = 0; i < N; i++)
            fastco_stack_put(&many[i]);
        fastco_stack_stats_get(&s1);
        CHECK(s1.hot <= s1.hot_limit);
        CHECK(s1.in_use == s0.in_use);
    }

    fastco_stack_put(&a);
    fastco_stack_put(&b);
    fastco_stack_put(&c);
    fastco_stack_trim();
    fastco_stack_stats_get(&s1);
    CHECK(s1.hot == 0);
    CHECK(s1.in_use == 0);
}

int main(void)
{
    static const int backends[] = {FASTCO_BACKEND_UCONTEXT, FASTCO_BACKEND_ASM};

    test_stacks();
    for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
        if (!fastco_backend_available(backends[i])) {
            printf("backend %s: not available here, skipped\n",
                   fastco_backend_name(backends[i]));
            continue;
        }
        if (fastco_backend_set(backends[i]) != 0) {
            perror("fastco_backend_set");
            return 2;
        }
        int before = failures;
        backend_name = fastco_backend_name(backends[i]);
        test_switch_frame();
        test_pingpong();
        test_ring();
        test_nesting();
        test_fp_state();
        test_deep_stack();
        test_backend_busy();
        test_faults();
        printf("backend %s: %s\n", backend_name,
               failures == before ? "ok" : "FAILED");
    }
    printf("%d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
