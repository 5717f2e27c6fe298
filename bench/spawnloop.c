/*
 * spawnloop: the floor for "spawn a server per connection" in the superd
 * benchmark.  The least an inetd can do: accept, posix_spawn the server with
 * the socket as fds 0, 1 and 2 in a new session (setsid), drop its own copy,
 * reap finished children.  No access control, no logging, no accounting.
 *
 *   spawnloop PORT PROGRAM [ARGS...]     (listens on 127.0.0.1:PORT)
 *
 * Runs until SIGTERM/SIGINT.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
static volatile sig_atomic_t stop_flag;

static void on_stop(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void on_child(int sig)
{
    (void)sig; /* only here to interrupt accept(); reaping is in the loop */
}

static int listen_on(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 1024) < 0) {
        perror("listen");
        exit(1);
    }
    return fd;
}

static void reap(void)
{
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

static void spawn_one(int conn, char **argv)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    pid_t pid;
    posix_spawn_file_actions_init(&fa);
    /* dup2 clears FD_CLOEXEC on 0, 1 and 2; the accepted fd itself is CLOEXEC. */
    for (int target = 0; target < 3; target++)
        posix_spawn_file_actions_adddup2(&fa, conn, target);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK);
    sigset_t empty;
    sigemptyset(&empty);
    posix_spawnattr_setsigmask(&attr, &empty);
    int rc = posix_spawn(&pid, argv[0], &fa, &attr, argv, environ);
    if (rc != 0)
        fprintf(stderr, "posix_spawn: %s\n", strerror(rc));
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: spawnloop PORT PROGRAM [ARGS...]\n");
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_stop};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_child;
    sigaction(SIGCHLD, &sa, NULL); /* no SA_RESTART: accept() returns EINTR */
    signal(SIGPIPE, SIG_IGN);
    int lfd = listen_on(atoi(argv[1]));
    while (!stop_flag) {
        int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (conn >= 0) {
            spawn_one(conn, argv + 2);
            close(conn);
        } else if (errno != EINTR) {
            perror("accept");
        }
        reap();
    }
    close(lfd);
    reap();
    return 0;
}
