/*
 * upstream: the plain server behind the redirect and TLS figures of the
 * superd benchmark (bench/run builds it).  Written in C with one epoll loop
 * so that what sits behind superd, xinetd's redirect or stunnel4 costs as
 * little as possible and the same for all of them.
 *
 *   upstream line   PORT   accept, write "hello\n", close          (conn/s)
 *   upstream echo   PORT   echo every byte back, any number of connections
 *   upstream stream PORT   write 64 KiB buffers until the client goes away
 *
 * Listens on 127.0.0.1:PORT until SIGTERM.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF (64 * 1024)

enum mode { M_LINE, M_ECHO, M_STREAM };

static char buf[BUF];

static int listen_on(int port)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (s < 0 || bind(s, (void *)&a, sizeof a) || listen(s, 4096)) {
        perror("upstream: listen");
        exit(1);
    }
    return s;
}

/* Echo what is readable; blocking writes are fine: the clients read back. */
static void echo_ready(int ep, int fd)
{
    ssize_t n = read(fd, buf, BUF);
    if (n > 0) {
        ssize_t off = 0;
        while (off < n) {
            ssize_t w = write(fd, buf + off, n - off);
            if (w < 0 && errno == EAGAIN)
                continue;
            if (w <= 0)
                break;
            off += w;
        }
        if (off == n)
            return;
    } else if (n < 0 && errno == EAGAIN) {
        return;
    }
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
}

/* One child per streamed connection; SIGPIPE ends it when the client leaves. */
static void stream_to(int lfd, int fd)
{
    pid_t pid = fork();
    if (pid == 0) {
        close(lfd);
        signal(SIGPIPE, SIG_DFL);
        memset(buf, 'x', BUF);
        for (;;)
            if (write(fd, buf, BUF) < 0 && errno != EAGAIN && errno != EINTR)
                _exit(0);
    }
    close(fd);
}

static void accept_all(int ep, int lfd, enum mode mode)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, mode == M_ECHO ? SOCK_NONBLOCK : 0);
        if (fd < 0)
            return;
        if (mode == M_LINE) {
            (void)!write(fd, "hello\n", 6);
            close(fd);
        } else if (mode == M_STREAM) {
            stream_to(lfd, fd);
        } else {
            struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        }
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: upstream line|echo|stream PORT\n");
        return 2;
    }
    enum mode mode = !strcmp(argv[1], "line") ? M_LINE : !strcmp(argv[1], "echo") ? M_ECHO : M_STREAM;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, SIG_IGN); /* streamed children are reaped by the kernel */
    int lfd = listen_on(atoi(argv[2]));
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd}, got[256];
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    for (;;) {
        int n = epoll_wait(ep, got, 256, -1);
        for (int i = 0; i < n; i++) {
            if (got[i].data.fd == lfd)
                accept_all(ep, lfd, mode);
            else
                echo_ready(ep, got[i].data.fd);
        }
    }
}
