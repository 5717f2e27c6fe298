/*
 * superd.proc._clonespawn: start a program in a child without waiting for
 * its exec.
 *
 * posix_spawn (glibc's, and so os.posix_spawn) clones with CLONE_VM |
 * CLONE_VFORK: the calling thread sleeps until the child has executed its
 * program.  On a busy machine that wait is mostly the child waiting for a
 * CPU, and the reactor thread waits with it while other connections queue.
 * fork() does not wait, but copies the daemon's page tables for every
 * child.  This module clones with CLONE_VM and without CLONE_VFORK: the
 * child runs on a stack of its own in a block of memory that holds
 * everything it needs (path, argument and environment vectors, descriptor
 * map), and the parent returns at once.  No library does this (glibc,
 * CPython and posix_spawn all wait), which is why it is written here.
 *
 * Until it executes its program the child shares the daemon's memory, so
 * it touches nothing but its block and its stack, and makes its system
 * calls directly: glibc's wrappers would write errno into the parent
 * thread's thread-local storage, and a signal handler of the parent's
 * would run in the child.  The parent blocks every signal around the clone
 * (the child starts with them blocked), the child sets every disposition
 * to the default and only then unblocks them, just before execve.
 *
 * The kernel clears the block's tid word when the child executes its
 * program or exits (CLONE_CHILD_CLEARTID): only then may the block be
 * reused.  settle() reports each such child with the errno of a failed
 * execve (0: it executed), so that the caller learns of an exec failure
 * before it logs a start.
 *
 * x86_64 Linux only (the raw system calls); elsewhere the module reports
 * itself unavailable and superd uses posix_spawn.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if defined(__linux__) && defined(__x86_64__)
#define CLONESPAWN_AVAILABLE 1
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#else
#define CLONESPAWN_AVAILABLE 0
#endif

#if CLONESPAWN_AVAILABLE

/* Block size: the child's stack (it uses well under a page) and the
 * strings of a usual request; a larger request gets a block of its own. */
#define BLOCK_SIZE (64 * 1024)
#define STACK_RESERVE (16 * 1024)
/* Spare blocks kept for reuse. */
#define SPARE_MAX 64
#define MAX_FDS 16

struct block {
    /* Written by the kernel: the child's tid at clone, 0 once it has
     * executed its program or exited. */
    volatile pid_t tid;
    /* Written by the child: the errno that stopped it, 0 if none. */
    volatile int err;
    pid_t pid;
    int resetids;
    int nfds;
    int fds[MAX_FDS];           /* child descriptor i <- fds[i] */
    char *path;
    char **argv;
    char **envp;
    size_t size;
    struct block *next;
};

static struct block *pending = NULL;
static struct block *spare = NULL;
static int spare_count = 0;
static Py_ssize_t pending_count = 0;

static inline long raw1(long n, long a)
{
    long r;
    __asm__ volatile ("syscall" : "=a"(r) : "0"(n), "D"(a)
                      : "rcx", "r11", "memory");
    return r;
}

static inline long raw3(long n, long a, long b, long c)
{
    long r;
    __asm__ volatile ("syscall" : "=a"(r) : "0"(n), "D"(a), "S"(b), "d"(c)
                      : "rcx", "r11", "memory");
    return r;
}

static inline long raw4(long n, long a, long b, long c, long d)
{
    long r;
    register long r10 __asm__("r10") = d;
    __asm__ volatile ("syscall" : "=a"(r) : "0"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
                      : "rcx", "r11", "memory");
    return r;
}

/* The kernel's struct sigaction (not glibc's). */
struct kernel_sigaction {
    void *handler;
    unsigned long flags;
    void *restorer;
    unsigned long mask;
};

static void child_fail(struct block *b, long result)
{
    b->err = (int)-result;
    raw1(SYS_exit, 127);
}

/* Runs in the child, on its own stack, sharing the parent's memory. */
static int child_main(void *arg)
{
    struct block *b = arg;
    struct kernel_sigaction dfl = {SIG_DFL, 0, NULL, 0};
    unsigned long none = 0;
    long r;
    int i;

    /* Every catchable signal to its default disposition: the handlers are
     * the parent's (they would run here, in its memory), and ignored
     * dispositions would survive the exec. */
    for (i = 1; i <= 64; i++) {
        if (i != SIGKILL && i != SIGSTOP)
            raw4(SYS_rt_sigaction, i, (long)&dfl, 0, sizeof(unsigned long));
    }
    r = raw1(SYS_setsid, 0);
    if (r < 0)
        child_fail(b, r);
    if (b->resetids) {
        /* The spawning thread holds the user's ids as its real ids; make
         * them the effective ones (as POSIX_SPAWN_RESETIDS). */
        r = raw3(SYS_setresgid, -1, raw1(SYS_getgid, 0), -1);
        if (r < 0)
            child_fail(b, r);
        r = raw3(SYS_setresuid, -1, raw1(SYS_getuid, 0), -1);
        if (r < 0)
            child_fail(b, r);
    }
    /* The sources are close-on-exec copies above the targets' numbers or
     * the targets themselves; dup2 clears close-on-exec on the target. */
    for (i = 0; i < b->nfds; i++) {
        if (b->fds[i] < 0)
            continue;
        if (b->fds[i] == i)
            r = raw3(SYS_fcntl, i, F_SETFD, 0);
        else
            r = raw3(SYS_dup2, b->fds[i], i, 0);
        if (r < 0)
            child_fail(b, r);
    }
    raw4(SYS_rt_sigprocmask, SIG_SETMASK, (long)&none, 0, sizeof(unsigned long));
    r = raw3(SYS_execve, (long)b->path, (long)b->argv, (long)b->envp);
    child_fail(b, r);
    return 127;
}

static void release(struct block *b)
{
    if (b->size == BLOCK_SIZE && spare_count < SPARE_MAX) {
        b->next = spare;
        spare = b;
        spare_count++;
    } else {
        munmap(b, b->size);
    }
}

static struct block *acquire(size_t need)
{
    size_t size = BLOCK_SIZE;
    struct block *b;
    void *memory;

    if (need + STACK_RESERVE > size)
        size = (need + STACK_RESERVE + 4095) & ~(size_t)4095;
    if (size == BLOCK_SIZE && spare != NULL) {
        b = spare;
        spare = b->next;
        spare_count--;
    } else {
        memory = mmap(NULL, size, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (memory == MAP_FAILED)
            return NULL;
        b = memory;
    }
    b->size = size;
    return b;
}

/* Bytes needed for a tuple of bytes as strings, or -1 (exception set). */
static Py_ssize_t strings_size(PyObject *items, const char *what)
{
    Py_ssize_t i, total = 0;
    for (i = 0; i < PyTuple_GET_SIZE(items); i++) {
        PyObject *item = PyTuple_GET_ITEM(items, i);
        if (!PyBytes_Check(item)) {
            PyErr_Format(PyExc_TypeError, "%s items must be bytes", what);
            return -1;
        }
        if (strlen(PyBytes_AS_STRING(item)) != (size_t)PyBytes_GET_SIZE(item)) {
            PyErr_Format(PyExc_ValueError, "embedded null byte in %s", what);
            return -1;
        }
        total += PyBytes_GET_SIZE(item) + 1;
    }
    return total;
}

static char *copy_strings(PyObject *items, char **vector, char *into)
{
    Py_ssize_t i, n = PyTuple_GET_SIZE(items);
    for (i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(items, i);
        size_t length = (size_t)PyBytes_GET_SIZE(item) + 1;
        memcpy(into, PyBytes_AS_STRING(item), length);
        vector[i] = into;
        into += length;
    }
    vector[n] = NULL;
    return into;
}

PyDoc_STRVAR(spawn_doc,
"spawn(path, argv, envp, fds, resetids) -> pid\n\n"
"Start path with argv and envp (tuples of bytes) in a new session, every\n"
"signal at its default disposition and unblocked, child descriptor i a\n"
"copy of fds[i] (a tuple of ints, -1 to leave it closed); with resetids the\n"
"effective ids become the real ones.  Returns once the child exists, before\n"
"it executes path: settle() says whether it did.  Raises OSError if no\n"
"child could be created.");

static PyObject *clonespawn_spawn(PyObject *self, PyObject *args)
{
    PyObject *path, *argv, *envp, *fds;
    int resetids;
    Py_ssize_t argv_size, envp_size, nargs, nenv, nfds, i;
    size_t need;
    struct block *b;
    char **vector;
    char *strings;
    sigset_t all, old;
    pid_t pid;
    int saved;

    if (!PyArg_ParseTuple(args, "SO!O!O!p:spawn", &path, &PyTuple_Type, &argv,
                          &PyTuple_Type, &envp, &PyTuple_Type, &fds, &resetids))
        return NULL;
    if (strlen(PyBytes_AS_STRING(path)) != (size_t)PyBytes_GET_SIZE(path)) {
        PyErr_SetString(PyExc_ValueError, "embedded null byte in path");
        return NULL;
    }
    nargs = PyTuple_GET_SIZE(argv);
    nenv = PyTuple_GET_SIZE(envp);
    nfds = PyTuple_GET_SIZE(fds);
    if (nargs < 1) {
        PyErr_SetString(PyExc_ValueError, "argv must not be empty");
        return NULL;
    }
    if (nfds > MAX_FDS) {
        PyErr_Format(PyExc_ValueError, "at most %d descriptors", MAX_FDS);
        return NULL;
    }
    argv_size = strings_size(argv, "argv");
    if (argv_size < 0)
        return NULL;
    envp_size = strings_size(envp, "envp");
    if (envp_size < 0)
        return NULL;
    need = sizeof(struct block) + (size_t)(nargs + nenv + 2) * sizeof(char *)
        + (size_t)argv_size + (size_t)envp_size + (size_t)PyBytes_GET_SIZE(path) + 1;
    need = (need + 15) & ~(size_t)15;

    b = acquire(need);
    if (b == NULL)
        return PyErr_SetFromErrno(PyExc_OSError);
    b->err = 0;
    b->resetids = resetids;
    b->nfds = (int)nfds;
    for (i = 0; i < nfds; i++) {
        long fd = PyLong_AsLong(PyTuple_GET_ITEM(fds, i));
        if (fd == -1 && PyErr_Occurred()) {
            release(b);
            return NULL;
        }
        b->fds[i] = (int)fd;
    }
    vector = (char **)(b + 1);
    strings = (char *)(vector + nargs + nenv + 2);
    b->argv = vector;
    strings = copy_strings(argv, vector, strings);
    b->envp = vector + nargs + 1;
    strings = copy_strings(envp, b->envp, strings);
    b->path = strings;
    memcpy(strings, PyBytes_AS_STRING(path), (size_t)PyBytes_GET_SIZE(path) + 1);

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid = clone(child_main, (char *)b + b->size,
                CLONE_VM | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD,
                b, &b->tid, NULL, &b->tid);
    saved = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        release(b);
        errno = saved;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    b->pid = pid;
    b->next = pending;
    pending = b;
    pending_count++;
    return PyLong_FromLong(pid);
}

PyDoc_STRVAR(settle_doc,
"settle() -> list of (pid, errno)\n\n"
"The children started by spawn() that have since executed their program\n"
"(errno 0) or given up (the errno that stopped them; they exit with 127),\n"
"each reported once.");

static PyObject *clonespawn_settle(PyObject *self, PyObject *unused)
{
    PyObject *out = PyList_New(0);
    struct block **link = &pending;

    if (out == NULL)
        return NULL;
    while (*link != NULL) {
        struct block *b = *link;
        if (__atomic_load_n(&b->tid, __ATOMIC_ACQUIRE) != 0) {
            link = &b->next;
            continue;
        }
        PyObject *item = Py_BuildValue("(ii)", (int)b->pid, (int)b->err);
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(item);
        *link = b->next;
        pending_count--;
        release(b);
    }
    return out;
}

PyDoc_STRVAR(pending_doc,
"pending() -> int\n\nChildren started and not yet reported by settle().");

static PyObject *clonespawn_pending(PyObject *self, PyObject *unused)
{
    return PyLong_FromSsize_t(pending_count);
}

static PyMethodDef methods[] = {
    {"spawn", clonespawn_spawn, METH_VARARGS, spawn_doc},
    {"settle", clonespawn_settle, METH_NOARGS, settle_doc},
    {"pending", clonespawn_pending, METH_NOARGS, pending_doc},
    {NULL, NULL, 0, NULL}
};

#else

static PyMethodDef methods[] = {{NULL, NULL, 0, NULL}};

#endif

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "superd.proc._clonespawn",
    "Start a child without waiting for its exec (x86_64 Linux).", -1, methods,
};

PyMODINIT_FUNC PyInit__clonespawn(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "AVAILABLE", CLONESPAWN_AVAILABLE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
