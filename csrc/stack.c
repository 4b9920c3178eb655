/*
 * stack.c - coroutine stacks: arenas, guard pages, and the free-stack cache.
 *
 * Stacks come in size classes ("pools", one per distinct slot size).  A pool
 * carves slots out of arenas, large mmap'd regions that grow geometrically
 * and are never unmapped, so that 100,000 stacks cost a few hundred map
 * entries rather than one or two each (vm.max_map_count is often 65530).
 *
 * Freed stacks are cached per pool, newest first: the first `hot_limit`
 * (counted over all pools) keep their memory, so a coroutine started right
 * after another one finished runs on warm pages; the rest are "cold": their
 * pages go back to the kernel with MADV_DONTNEED and they wait in a plain
 * array, so that caching them costs no memory at all.  A hot stack's list
 * node lives inside the stack itself, at its top.
 *
 * One mutex guards everything here: taking it uncontended costs far less
 * than anything else a coroutine's creation does.
 */
#define _GNU_SOURCE
#include "fastco.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Under valgrind, every slot is announced as a stack, or valgrind takes a
 * switch onto it for a wild stack-pointer jump.  A no-op otherwise. */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef VALGRIND_STACK_REGISTER
#define VALGRIND_STACK_REGISTER(lo, hi) 0
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102      /* Linux 6.13+ */
#endif
#ifndef MAP_NORESERVE
#define MAP_NORESERVE 0
#endif
#ifndef MAP_STACK
#define MAP_STACK 0
#endif

/* Arenas hold at least this many slots, and grow by doubling ... */
#define ARENA_MIN_SLOTS 16
/* ... up to this many bytes, or one slot if a slot is larger. */
#define ARENA_MAX_BYTES ((size_t)256 << 20)
/* Freed stacks kept resident by default. */
#define HOT_LIMIT_DEFAULT 256

/* The list node of a hot cached stack, at the top of its usable area. */
struct hot_node {
    struct hot_node *next;
};

/* A size class: all stacks whose slots are `slot_size` bytes. */
struct pool {
    struct pool *next;            /* next pool, in creation order */
    size_t slot_size;             /* guard page + usable size */
    struct hot_node *hot;         /* resident cached stacks, LIFO */
    char **cold;                  /* slot addresses of cold cached stacks */
    size_t ncold, cold_cap;
    char *carve, *carve_end;      /* the newest arena's uncarved part */
    size_t arena_slots;           /* slots in the next arena */
};

/*
 * Every arena, for the SIGSEGV handler: blocks of records that are never
 * moved or freed.  A record is written before the count that covers it is
 * published (release), and read after the count (acquire), so a signal
 * handler may walk the registry at any moment without locks.
 */
struct arena_rec {
    uintptr_t start, end;         /* [start, end) */
    size_t slot_size;
};
#define ARENA_BLOCK_RECS 256
struct arena_block {
    _Atomic(struct arena_block *) next;
    atomic_size_t n;
    struct arena_rec rec[ARENA_BLOCK_RECS];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct pool *pools;
static struct arena_block first_block;
static struct arena_block *last_block = &first_block;
static size_t page_size;
static size_t hot_limit = HOT_LIMIT_DEFAULT;
static fastco_stack_stats stats;
static size_t mprotect_budget;    /* slots that may get an mprotect guard */

size_t fastco_page_size(void)
{
    if (page_size == 0) {
        long p = sysconf(_SC_PAGESIZE);
        page_size = p > 0 ? (size_t)p : 4096;
    }
    return page_size;
}

/* A quarter of vm.max_map_count, in slots (each mprotect guard can cost two
 * map entries). */
static size_t read_mprotect_budget(void)
{
    long max_maps = 65530;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    if (f) {
        if (fscanf(f, "%ld", &max_maps) != 1)
            max_maps = 65530;
        fclose(f);
    }
    return (size_t)max_maps / 8;
}

/* Puts a guard page at the bottom of a freshly carved slot. */
static void guard_slot(char *slot)
{
    if (stats.guard_method != FASTCO_GUARD_MPROTECT) {
        if (madvise(slot, page_size, MADV_GUARD_INSTALL) == 0) {
            stats.guard_method = FASTCO_GUARD_MADVISE;
            stats.guarded++;
            return;
        }
        if (stats.guard_method == FASTCO_GUARD_NONE) {
            /* The kernel predates guard regions: use mprotect from now on. */
            stats.guard_method = FASTCO_GUARD_MPROTECT;
            mprotect_budget = read_mprotect_budget();
        }
    }
    if (stats.guard_method == FASTCO_GUARD_MPROTECT && mprotect_budget > 0
        && mprotect(slot, page_size, PROT_NONE) == 0) {
        mprotect_budget--;
        stats.guarded++;
        return;
    }
    stats.unguarded++;
}

static void register_arena(uintptr_t start, uintptr_t end, size_t slot_size)
{
    struct arena_block *b = last_block;
    size_t n = atomic_load_explicit(&b->n, memory_order_relaxed);
    if (n == ARENA_BLOCK_RECS) {
        struct arena_block *nb = calloc(1, sizeof(*nb));
        if (nb == NULL)
            return;    /* the guard page still works; only the message is lost */
        atomic_store_explicit(&b->next, nb, memory_order_release);
        last_block = b = nb;
        n = 0;
    }
    b->rec[n].start = start;
    b->rec[n].end = end;
    b->rec[n].slot_size = slot_size;
    atomic_store_explicit(&b->n, n + 1, memory_order_release);
}

/* Maps a new arena for `p`.  Returns 0 or ENOMEM. */
static int new_arena(struct pool *p)
{
    size_t nslots = p->arena_slots;
    size_t bytes = nslots * p->slot_size;
    void *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
                     -1, 0);
    if (mem == MAP_FAILED)
        return ENOMEM;
#ifdef MADV_NOHUGEPAGE
    /* A huge page would make a mostly idle stack cost 2 MiB of memory. */
    madvise(mem, bytes, MADV_NOHUGEPAGE);
#endif
    register_arena((uintptr_t)mem, (uintptr_t)mem + bytes, p->slot_size);
    p->carve = mem;
    p->carve_end = (char *)mem + bytes;
    stats.arenas++;
    stats.mapped_bytes += bytes;
    if (nslots * 2 * p->slot_size <= ARENA_MAX_BYTES)
        p->arena_slots = nslots * 2;
    return 0;
}

static struct pool *find_pool(size_t slot_size)
{
    struct pool *p;
    for (p = pools; p != NULL; p = p->next)
        if (p->slot_size == slot_size)
            return p;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->slot_size = slot_size;
    p->arena_slots = ARENA_MIN_SLOTS;
    if (ARENA_MIN_SLOTS * slot_size > ARENA_MAX_BYTES) {
        p->arena_slots = ARENA_MAX_BYTES / slot_size;
        if (p->arena_slots == 0)
            p->arena_slots = 1;
    }
    p->next = pools;
    pools = p;
    return p;
}

static struct hot_node *node_of(char *slot, size_t slot_size)
{
    return (struct hot_node *)(slot + slot_size) - 1;
}

static char *slot_of(struct hot_node *node, size_t slot_size)
{
    return (char *)(node + 1) - slot_size;
}

/* Takes a slot from `p`: hot first, then cold, then a fresh one. */
static int take_slot(struct pool *p, char **slot)
{
    if (p->hot != NULL) {
        struct hot_node *n = p->hot;
        p->hot = n->next;
        stats.hot--;
        *slot = slot_of(n, p->slot_size);
        return 0;
    }
    if (p->ncold > 0) {
        *slot = p->cold[--p->ncold];
        stats.cold--;
        return 0;
    }
    if (p->carve == p->carve_end) {
        int err = new_arena(p);
        if (err)
            return err;
    }
    *slot = p->carve;
    p->carve += p->slot_size;
    stats.slots++;
    guard_slot(*slot);
    (void)VALGRIND_STACK_REGISTER(*slot + page_size, *slot + p->slot_size);
    return 0;
}

int fastco_stack_get(fastco_stack *st, size_t size)
{
    size_t page = fastco_page_size();
    struct pool *p;
    char *slot;
    int err;

    if (size == 0)
        size = FASTCO_STACK_DEFAULT_SIZE;
    if (size > FASTCO_STACK_MAX_SIZE)
        return EINVAL;
    if (size < FASTCO_STACK_MIN_SIZE)
        size = FASTCO_STACK_MIN_SIZE;
    size = (size + page - 1) & ~(page - 1);

    pthread_mutex_lock(&lock);
    p = find_pool(size + page);
    err = p ? take_slot(p, &slot) : ENOMEM;
    if (err == 0)
        stats.in_use++;
    pthread_mutex_unlock(&lock);
    if (err)
        return err;
    st->slot = slot;
    st->lo = slot + page;
    st->size = size;
    st->pool = p;
    return 0;
}

/* Makes room for one more cold stack in `p`; 0 or ENOMEM. */
static int reserve_cold(struct pool *p)
{
    if (p->ncold == p->cold_cap) {
        size_t cap = p->cold_cap ? p->cold_cap * 2 : 64;
        char **c = realloc(p->cold, cap * sizeof(*c));
        if (c == NULL)
            return ENOMEM;
        p->cold = c;
        p->cold_cap = cap;
    }
    return 0;
}

/* Gives a slot's memory back to the kernel (the guard stays) and files it
 * as cold.  The caller has reserved room. */
static void push_cold(struct pool *p, char *slot)
{
    madvise(slot + page_size, p->slot_size - page_size, MADV_DONTNEED);
    p->cold[p->ncold++] = slot;
    stats.cold++;
}

static void push_hot(struct pool *p, char *slot)
{
    struct hot_node *n = node_of(slot, p->slot_size);
    n->next = p->hot;
    p->hot = n;
    stats.hot++;
}

void fastco_stack_put(fastco_stack *st)
{
    struct pool *p = st->pool;
    char *slot = st->slot;

    if (slot == NULL)
        return;
    memset(st, 0, sizeof(*st));
    pthread_mutex_lock(&lock);
    stats.in_use--;
    /* Past the hot limit the stack turns cold, unless there is no memory
     * to file it: then it stays hot rather than be lost. */
    if (stats.hot < hot_limit || reserve_cold(p) != 0)
        push_hot(p, slot);
    else
        push_cold(p, slot);
    pthread_mutex_unlock(&lock);
}

void fastco_stack_discard(fastco_stack *st, void *from, void *to)
{
    uintptr_t page = fastco_page_size();
    uintptr_t lo = (uintptr_t)st->lo, hi = lo + st->size;
    uintptr_t a = (uintptr_t)from, b = (uintptr_t)to;
    if (a < lo)
        a = lo;
    if (b > hi)
        b = hi;
    a = (a + page - 1) & ~(page - 1);
    b &= ~(page - 1);
    if (a < b)
        madvise((void *)a, b - a, MADV_DONTNEED);
}

/* Turns hot stacks cold until at most `keep` remain hot. */
static void cool_down(size_t keep)
{
    struct pool *p;
    for (p = pools; p != NULL && stats.hot > keep; p = p->next) {
        while (p->hot != NULL && stats.hot > keep) {
            struct hot_node *n = p->hot;
            if (reserve_cold(p) != 0)
                return;
            p->hot = n->next;
            stats.hot--;
            push_cold(p, slot_of(n, p->slot_size));
        }
    }
}

size_t fastco_stack_set_hot_limit(size_t n)
{
    size_t old;
    pthread_mutex_lock(&lock);
    old = hot_limit;
    hot_limit = n;
    cool_down(n);
    pthread_mutex_unlock(&lock);
    return old;
}

void fastco_stack_trim(void)
{
    pthread_mutex_lock(&lock);
    cool_down(0);
    pthread_mutex_unlock(&lock);
}

void fastco_stack_stats_get(fastco_stack_stats *out)
{
    pthread_mutex_lock(&lock);
    *out = stats;
    out->hot_limit = hot_limit;
    pthread_mutex_unlock(&lock);
}

int fastco_stack_guard_hit(const void *addr, size_t *stack_size)
{
    uintptr_t a = (uintptr_t)addr;
    const struct arena_block *b = &first_block;
    size_t page = page_size;

    if (page == 0)
        return 0;    /* no stack was ever made */
    while (b != NULL) {
        size_t n = atomic_load_explicit(&b->n, memory_order_acquire);
        for (size_t i = 0; i < n; i++) {
            const struct arena_rec *r = &b->rec[i];
            if (a >= r->start && a < r->end) {
                if ((a - r->start) % r->slot_size < page) {
                    if (stack_size)
                        *stack_size = r->slot_size - page;
                    return 1;
                }
                return 0;
            }
        }
        b = atomic_load_explicit(&b->next, memory_order_acquire);
    }
    return 0;
}
