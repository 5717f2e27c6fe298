/*
 * tinycat: cat(1) without a C library, for the benchmark's "cheap child" view.
 *
 * Built static with -nostdlib: no dynamic loader, no libc start-up, so its
 * exec does none of ld.so's work (relocations, and the CPUID-based cache
 * detection that a virtual machine traps).  What remains of a spawned
 * connection is the daemon's own work plus the kernel's exec and exit, which
 * shows how the daemons compare when the child costs next to nothing.
 *
 * Copies standard input to standard output until end of file, then exits 0;
 * exits 1 on a read or write error.
 */

#if defined(__x86_64__)
static long sys3(long n, long a, long b, long c)
{
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return ret;
}
enum { SYS_READ = 0, SYS_WRITE = 1, SYS_EXIT = 60 };
#elif defined(__aarch64__)
static long sys3(long n, long a, long b, long c)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
    return x0;
}
enum { SYS_READ = 63, SYS_WRITE = 64, SYS_EXIT = 93 };
#else
#error "tinycat knows the system call convention of x86_64 and aarch64 only"
#endif

static char buf[65536];

static int copy(void)
{
    for (;;) {
        long got = sys3(SYS_READ, 0, (long)buf, sizeof buf);
        if (got == 0)
            return 0;
        if (got < 0)
            return 1;
        for (long off = 0; off < got;) {
            long put = sys3(SYS_WRITE, 1, (long)(buf + off), got - off);
            if (put <= 0)
                return 1;
            off += put;
        }
    }
}

void _start(void)
{
    sys3(SYS_EXIT, copy(), 0, 0);
    for (;;) {
    }
}
