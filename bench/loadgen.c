/*
 * loadgen: the load generator of the superd benchmark (bench/run builds it).
 *
 * Written in C with one epoll loop because a Python client cannot keep up
 * with a super-server on a 2-core machine: the figures would measure the
 * client.  Every mode prints ONE result line of key=value pairs on stdout.
 *
 *   echo   N concurrent slots: connect, write SIZE bytes, read SIZE back, close
 *   read   N concurrent slots: connect, read to EOF, close        (daytime)
 *   flood  N concurrent slots: connect, wait for the server to close or
 *          reset, close; every finished attempt counts      (attacker).
 *          An attempt not connected within -t ms (default 2) is abandoned
 *          and counted as a timeout, so a server that drops the attacker's
 *          SYNs still faces a steady stream of new ones.
 *   stream one connection: read as fast as possible               (chargen)
 *   hold   open N connections and keep them idle until SIGTERM/duration
 *   probe  latency probes started on a fixed schedule (-r per second for
 *          the duration, never waiting for the previous one): each a fresh
 *          connect, write SIZE bytes, read SIZE back, close.  A probe not done
 *          within -t ms (default 2000 in this mode) or refused/reset fails.
 *          Prints one "probe ok=0|1 us=MICROSECONDS" line per probe, then
 *          the result line (conns = probes that succeeded, errors = failed).
 *
 * Only completions inside the measurement window (after the warm-up) count.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum mode { M_ECHO, M_READ, M_FLOOD, M_STREAM, M_HOLD, M_PROBE };
enum state { S_CONNECTING, S_SENDING, S_RECEIVING };

struct slot {
    int fd;
    enum state st;
    size_t done;
    double started;
};

static struct {
    enum mode mode;
    const char *host;
    const char *bind_addr;
    int port;
    int conc;
    size_t size;
    double duration;
    double warmup;
    double attempt_timeout;
    double probe_rate;
} opt = {M_ECHO, "127.0.0.1", NULL, 0, 32, 64, 2.0, 0.3, -1.0, 10.0};

static struct sockaddr_in target, source;
static long long completed, errors, bytes_total, total_done, timeouts;
static double window_start, window_end;
static volatile sig_atomic_t stop_flag;
static char *payload;

static void on_writable(int ep, struct slot *s);

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void die(const char *what)
{
    perror(what);
    exit(2);
}

static int in_window(double t)
{
    return t >= window_start && t < window_end;
}

/* A socket for one attempt; non-blocking unless `blocking`. */
static int new_socket(int blocking)
{
    int flags = SOCK_STREAM | SOCK_CLOEXEC | (blocking ? 0 : SOCK_NONBLOCK);
    int fd = socket(AF_INET, flags, 0);
    if (fd < 0)
        die("socket");
    if (opt.bind_addr) {
        /* Let connect() pick the port so TIME_WAIT reuse still applies. */
        int one = 1;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&source, sizeof source) < 0)
            die("bind");
    }
    return fd;
}

static void slot_start(int ep, struct slot *s)
{
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = s};
    for (;;) {
        s->fd = new_socket(0);
        s->st = S_CONNECTING;
        s->done = 0;
        s->started = now();
        int rc = connect(s->fd, (struct sockaddr *)&target, sizeof target);
        if (rc == 0 || errno == EINPROGRESS)
            break;
        errors++;
        close(s->fd);
        if (now() >= window_end)
            return;
    }
    if (epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev) < 0)
        die("epoll_ctl");
}

static void slot_finish(int ep, struct slot *s, int ok)
{
    close(s->fd); /* close() also removes it from the epoll set */
    total_done += ok;
    if (ok && in_window(now()))
        completed++;
    else if (!ok && in_window(now()))
        errors++;
    slot_start(ep, s);
}

static void slot_want(int ep, struct slot *s, unsigned events)
{
    struct epoll_event ev = {.events = events, .data.ptr = s};
    epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
}

static void on_connected(int ep, struct slot *s)
{
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        slot_finish(ep, s, 0);
        return;
    }
    if (opt.mode == M_ECHO) {
        s->st = S_SENDING; /* stays registered for EPOLLOUT if it would block */
        on_writable(ep, s);
    } else {
        s->st = S_RECEIVING;
        slot_want(ep, s, EPOLLIN);
    }
}

static void on_writable(int ep, struct slot *s)
{
    ssize_t n = write(s->fd, payload + s->done, opt.size - s->done);
    if (n < 0) {
        if (errno != EAGAIN)
            slot_finish(ep, s, 0);
        return;
    }
    s->done += (size_t)n;
    if (s->done == opt.size) {
        s->st = S_RECEIVING;
        s->done = 0;
        slot_want(ep, s, EPOLLIN);
    }
}

static void on_readable(int ep, struct slot *s)
{
    char buf[4096];
    ssize_t n = read(s->fd, buf, sizeof buf);
    if (opt.mode == M_FLOOD) { /* refused or served: the attempt is over */
        if (n == 0 || (n < 0 && errno != EAGAIN))
            slot_finish(ep, s, 1);
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN)
            slot_finish(ep, s, 0);
        return;
    }
    if (in_window(now()))
        bytes_total += n;
    if (opt.mode == M_READ) {
        if (n == 0)
            slot_finish(ep, s, s->done > 0);
        else
            s->done += (size_t)n;
        return;
    }
    if (n == 0) { /* EOF before the whole echo came back */
        slot_finish(ep, s, 0);
        return;
    }
    s->done += (size_t)n;
    if (s->done >= opt.size)
        slot_finish(ep, s, 1);
}

static void on_event(int ep, struct slot *s)
{
    if (s->st == S_CONNECTING)
        on_connected(ep, s);
    else if (s->st == S_SENDING)
        on_writable(ep, s);
    else
        on_readable(ep, s);
}

/* Flood mode: abandon connects the server left unanswered (dropped SYNs). */
static void expire_attempts(int ep, struct slot *slots)
{
    double t = now();
    for (int i = 0; i < opt.conc; i++) {
        struct slot *s = &slots[i];
        if (s->st != S_CONNECTING || t - s->started < opt.attempt_timeout)
            continue;
        if (in_window(t))
            timeouts++;
        close(s->fd);
        slot_start(ep, s);
    }
}

static void run_slots(void)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct slot *slots = calloc((size_t)opt.conc, sizeof *slots);
    payload = malloc(opt.size);
    struct epoll_event evs[256];
    if (ep < 0 || !slots || !payload)
        die("setup");
    memset(payload, 'x', opt.size);
    for (int i = 0; i < opt.conc; i++)
        slot_start(ep, &slots[i]);
    int wait_ms = opt.mode == M_FLOOD ? 1 : 100;
    while (!stop_flag && now() < window_end) {
        int n = epoll_wait(ep, evs, 256, wait_ms);
        for (int i = 0; i < n; i++)
            on_event(ep, evs[i].data.ptr);
        if (opt.mode == M_FLOOD)
            expire_attempts(ep, slots);
    }
}

static void run_stream(void)
{
    char *buf = malloc(1 << 18);
    int fd = new_socket(1);
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&target, sizeof target) < 0) {
        errors++;
        return;
    }
    completed = 1;
    while (!stop_flag) {
        double t = now();
        if (t >= window_end)
            break;
        ssize_t n = read(fd, buf, 1 << 18);
        if (n <= 0) {
            errors++;
            break;
        }
        if (in_window(t))
            bytes_total += n;
    }
    close(fd);
}

static void run_hold(void)
{
    int held = 0;
    for (int i = 0; i < opt.conc; i++) {
        int fd = new_socket(1);
        if (connect(fd, (struct sockaddr *)&target, sizeof target) < 0) {
            errors++;
            close(fd);
            continue;
        }
        held++;
    }
    printf("held=%d errors=%lld\n", held, errors);
    fflush(stdout);
    while (!stop_flag && now() < window_end)
        usleep(50000);
    exit(0); /* the kernel closes the held connections */
}

/* Probe mode: at most this many probes in flight (a stalled server makes
 * rate x timeout of them pile up; beyond it a probe slot is skipped). */
#define PROBES_IN_FLIGHT 64

struct probe {
    int fd;
    enum state st;
    size_t done;
    double started;
};

static void probe_end(struct probe *p, int ok)
{
    close(p->fd);
    p->fd = -1;
    printf("probe ok=%d us=%.0f\n", ok, (now() - p->started) * 1e6);
    if (ok)
        completed++, bytes_total += (long long)p->done;
    else
        errors++;
    total_done += ok;
}

static void probe_begin(struct probe *p)
{
    p->fd = new_socket(0);
    p->st = S_CONNECTING;
    p->done = 0;
    p->started = now();
    if (connect(p->fd, (struct sockaddr *)&target, sizeof target) < 0 && errno != EINPROGRESS)
        probe_end(p, 0);
}

/* One step of a probe whose descriptor poll() reported ready. */
static void probe_step(struct probe *p, short revents)
{
    if (p->st == S_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        /* SIZE <= 1 MiB fits an empty loopback send buffer: one write. */
        if (err || write(p->fd, payload, opt.size) != (ssize_t)opt.size) {
            probe_end(p, 0);
            return;
        }
        p->st = S_RECEIVING;
        return;
    }
    char buf[4096];
    ssize_t n = read(p->fd, buf, sizeof buf);
    if (n < 0 && errno == EAGAIN && !(revents & (POLLERR | POLLHUP)))
        return;
    if (n <= 0) {
        probe_end(p, 0);
        return;
    }
    p->done += (size_t)n;
    if (p->done >= opt.size)
        probe_end(p, 1);
}

static void run_probes(void)
{
    struct probe probes[PROBES_IN_FLIGHT];
    struct pollfd fds[PROBES_IN_FLIGHT];
    int index[PROBES_IN_FLIGHT];
    double interval = 1.0 / opt.probe_rate, next = window_start;
    payload = malloc(opt.size);
    if (!payload)
        die("malloc");
    memset(payload, 'p', opt.size);
    for (int i = 0; i < PROBES_IN_FLIGHT; i++)
        probes[i].fd = -1;
    for (;;) {
        double t = now();
        int busy = 0, nfds = 0;
        if (!stop_flag && t >= next && t < window_end) {
            for (int i = 0; i < PROBES_IN_FLIGHT; i++)
                if (probes[i].fd < 0) {
                    probe_begin(&probes[i]);
                    break;
                }
            next += interval;
        }
        double wake = next < window_end && !stop_flag ? next : t + 0.05;
        for (int i = 0; i < PROBES_IN_FLIGHT; i++) {
            struct probe *p = &probes[i];
            if (p->fd < 0)
                continue;
            if (t - p->started >= opt.attempt_timeout) {
                timeouts++;
                probe_end(p, 0);
                continue;
            }
            busy++;
            if (p->started + opt.attempt_timeout < wake)
                wake = p->started + opt.attempt_timeout;
            fds[nfds].fd = p->fd;
            fds[nfds].events = p->st == S_CONNECTING ? POLLOUT : POLLIN;
            index[nfds++] = i;
        }
        if (!busy && (t >= window_end || stop_flag))
            break;
        double wait = wake - t > 0 ? wake - t : 0;
        struct timespec ts = {(time_t)wait, (long)(1e9 * (wait - (time_t)wait))};
        int n = ppoll(fds, (nfds_t)nfds, &ts, NULL);
        for (int k = 0; n > 0 && k < nfds; k++)
            if (fds[k].revents)
                probe_step(&probes[index[k]], fds[k].revents);
    }
}

static enum mode parse_mode(const char *m)
{
    const char *names[] = {"echo", "read", "flood", "stream", "hold", "probe"};
    for (int i = 0; i < 6; i++)
        if (strcmp(m, names[i]) == 0)
            return (enum mode)i;
    fprintf(stderr, "unknown mode %s\n", m);
    exit(2);
}

static void usage(void)
{
    fprintf(stderr, "usage: loadgen -m echo|read|flood|stream|hold|probe -p PORT "
                    "[-h HOST] [-b SRC] [-c CONC] [-s SIZE] [-d SECS] "
                    "[-w WARMUP] [-t ATTEMPT_MS] [-r PROBES_PER_SEC]\n");
    exit(2);
}

static void parse_args(int argc, char **argv)
{
    int c;
    while ((c = getopt(argc, argv, "m:h:b:p:c:s:d:w:t:r:")) != -1) {
        switch (c) {
        case 'm': opt.mode = parse_mode(optarg); break;
        case 'h': opt.host = optarg; break;
        case 'b': opt.bind_addr = optarg; break;
        case 'p': opt.port = atoi(optarg); break;
        case 'c': opt.conc = atoi(optarg); break;
        case 's': opt.size = (size_t)atol(optarg); break;
        case 'd': opt.duration = atof(optarg); break;
        case 'w': opt.warmup = atof(optarg); break;
        case 't': opt.attempt_timeout = atof(optarg) / 1000.0; break;
        case 'r': opt.probe_rate = atof(optarg); break;
        default: usage();
        }
    }
    if (opt.attempt_timeout < 0) /* not given: 2 ms for a flood, 2 s for a probe */
        opt.attempt_timeout = opt.mode == M_PROBE ? 2.0 : 0.002;
    if (opt.port <= 0 || opt.conc <= 0 || opt.size == 0 || opt.size > 1 << 20 ||
        opt.probe_rate <= 0 || opt.probe_rate > 1000)
        usage();
}

static void fill_addr(struct sockaddr_in *sa, const char *host, int port)
{
    sa->sin_family = AF_INET;
    sa->sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1) {
        fprintf(stderr, "bad IPv4 address %s\n", host);
        exit(2);
    }
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    fill_addr(&target, opt.host, opt.port);
    if (opt.bind_addr)
        fill_addr(&source, opt.bind_addr, 0);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    double t0 = now();
    window_start = t0 + (opt.mode == M_HOLD ? 0 : opt.warmup);
    window_end = window_start + opt.duration;
    if (opt.mode == M_HOLD)
        run_hold();
    else if (opt.mode == M_STREAM)
        run_stream();
    else if (opt.mode == M_PROBE)
        run_probes();
    else
        run_slots();
    double secs = (stop_flag ? now() : window_end) - window_start;
    if (secs <= 0)
        secs = 1e-9;
    if (opt.mode == M_STREAM)
        total_done = completed;
    printf("conns=%lld errors=%lld bytes=%lld secs=%.3f rate=%.1f mbps=%.2f "
           "total=%lld timeouts=%lld\n",
           completed, errors, bytes_total, secs, completed / secs,
           bytes_total / secs / 1e6, total_done, timeouts);
    return 0;
}
