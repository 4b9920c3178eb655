/*
 * ctx_bench.c - nanoseconds per context switch, for each backend.
 *
 * Two contexts ping-pong N times (2N switches); the figure is the median
 * over ROUNDS rounds of (elapsed / 2N).  Build and run: `make -C csrc bench`.
 * Output, one line per backend:  <backend> <ns per switch> ns/switch
 */
#define _GNU_SOURCE
#include "../csrc/fastco.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define N 2000000L
#define ROUNDS 7

static fastco_ctx main_ctx, co_ctx;

static void co_entry(void *arg, void *value)
{
    (void)arg;
    for (;;)
        value = fastco_ctx_switch(&co_ctx, &main_ctx, value);
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double bench_backend(int backend, long n)
{
    fastco_stack st;
    double t[ROUNDS];

    if (fastco_backend_set(backend) != 0 || fastco_stack_get(&st, 64 << 10) != 0) {
        perror("setup");
        exit(2);
    }
    fastco_ctx_make(&co_ctx, st.lo, st.size, co_entry, NULL);
    fastco_ctx_switch(&main_ctx, &co_ctx, NULL);      /* start it */
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = now_ns();
        for (long i = 0; i < n; i++)
            fastco_ctx_switch(&main_ctx, &co_ctx, (void *)i);
        t[r] = (now_ns() - t0) / (2.0 * n);
    }
    /* co_entry never ends: abandon the context rather than resume it. */
    fastco_ctx_retire(&co_ctx);
    fastco_stack_put(&st);
    qsort(t, ROUNDS, sizeof(t[0]), cmp_double);
    return t[ROUNDS / 2];
}

int main(int argc, char **argv)
{
    static const int backends[] = {FASTCO_BACKEND_ASM, FASTCO_BACKEND_UCONTEXT};
    long n = argc > 1 ? atol(argv[1]) : N;

    for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
        if (!fastco_backend_available(backends[i]))
            continue;
        /* ucontext is ~20x slower: fewer iterations give the same accuracy. */
        long iters = backends[i] == FASTCO_BACKEND_UCONTEXT ? n / 10 : n;
        printf("%-8s %7.1f ns/switch\n", fastco_backend_name(backends[i]),
               bench_backend(backends[i], iters > 0 ? iters : 1));
    }
    return 0;
}
