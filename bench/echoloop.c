/*
 * echoloop: the floor of the superd benchmark's echo figure (bench/run
 * builds it).  What a single-threaded echo server cannot do with less: one
 * epoll loop accepting until EAGAIN on every wake-up, echoing what each
 * connection sends, closing at EOF.  No access control, no logging, no
 * accounting; one thread, as superd's reactor.
 *
 *   echoloop PORT        (listens on 127.0.0.1:PORT until SIGTERM/SIGINT)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define EVENTS 256

static volatile sig_atomic_t stop_flag;
static char buf[64 * 1024];

static void on_stop(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static int listen_on(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 1024) < 0) {
        perror("echoloop: listen");
        exit(1);
    }
    return fd;
}

static void accept_all(int ep, int lfd)
{
    for (;;) {
        int conn = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (conn < 0)
            return; /* EAGAIN: the queue is empty; anything else: try next wake-up */
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = conn};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, conn, &ev) < 0)
            close(conn);
    }
}

/* Write all of buf[0..n); a full send buffer (never with the benchmark's
 * 64-byte echo) waits for room rather than losing bytes. */
static int write_all(int fd, ssize_t n)
{
    ssize_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, buf + off, (size_t)(n - off));
        if (w > 0) {
            off += w;
            continue;
        }
        if (w < 0 && errno == EAGAIN) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            if (poll(&p, 1, 1000) > 0)
                continue;
        }
        return -1;
    }
    return 0;
}

static void echo_ready(int fd)
{
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EAGAIN)
        return;
    if (n <= 0 || write_all(fd, n) < 0)
        close(fd); /* EOF or error; close() also leaves the epoll set */
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: echoloop PORT\n");
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_stop};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    int lfd = listen_on(atoi(argv[1]));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd}, evs[EVENTS];
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) {
        perror("echoloop: epoll");
        return 1;
    }
    while (!stop_flag) {
        int n = epoll_wait(ep, evs, EVENTS, 200);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.fd == lfd)
                accept_all(ep, lfd);
            else
                echo_ready(evs[i].data.fd);
        }
    }
    return 0;
}
