/*
 * udpflood: the tiny-datagram flood of the superd benchmark's latency figure
 * (bench/run builds it).  Sends datagrams of 0 to 8 bytes, as fast as one
 * sendmmsg(2) loop can (or at most -r per second), to one loopback address
 * and port for a bounded time, then prints ONE result line:
 *
 *   sent=N errors=N secs=S rate=R
 *
 *   udpflood -p PORT [-h HOST] [-b SRC_ADDR] [-P SRC_PORT] [-d SECS] [-r PPS]
 *
 * -b/-P bind the sending socket first (-P 7 needs root: a source port below
 * 1024, to which a UDP builtin with a reflection guard never answers).  HOST
 * and SRC_ADDR must be loopback addresses (127.0.0.0/8): this program floods.
 * Runs until the duration ends or SIGTERM/SIGINT.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAX_SIZE 8

static volatile sig_atomic_t stop_flag;

static struct {
    const char *host;
    const char *src_addr;
    int port;
    int src_port;
    double duration;
    double rate;
} opt = {"127.0.0.1", NULL, 0, 0, 2.0, 0.0};

static void on_stop(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void usage(void)
{
    fprintf(stderr, "usage: udpflood -p PORT [-h HOST] [-b SRC_ADDR] [-P SRC_PORT] "
                    "[-d SECS] [-r PPS]\n");
    exit(2);
}

/* A loopback IPv4 address, or exit: the flood never leaves the machine. */
static void loopback_addr(struct sockaddr_in *sa, const char *host, int port)
{
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1 ||
        (ntohl(sa->sin_addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "udpflood: %s is not a loopback IPv4 address\n", host);
        exit(2);
    }
}

static void parse_args(int argc, char **argv)
{
    int c;
    while ((c = getopt(argc, argv, "p:h:b:P:d:r:")) != -1) {
        switch (c) {
        case 'p': opt.port = atoi(optarg); break;
        case 'h': opt.host = optarg; break;
        case 'b': opt.src_addr = optarg; break;
        case 'P': opt.src_port = atoi(optarg); break;
        case 'd': opt.duration = atof(optarg); break;
        case 'r': opt.rate = atof(optarg); break;
        default: usage();
        }
    }
    if (opt.port <= 0 || opt.port > 65535 || opt.src_port < 0 || opt.src_port > 65535 ||
        opt.duration <= 0 || opt.duration > 600 || opt.rate < 0)
        usage();
}

static int flood_socket(void)
{
    struct sockaddr_in target, source;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("udpflood: socket");
        exit(1);
    }
    if (opt.src_addr || opt.src_port) {
        loopback_addr(&source, opt.src_addr ? opt.src_addr : "127.0.0.1", opt.src_port);
        if (bind(fd, (struct sockaddr *)&source, sizeof source) < 0) {
            perror("udpflood: bind");
            exit(1);
        }
    }
    loopback_addr(&target, opt.host, opt.port);
    if (connect(fd, (struct sockaddr *)&target, sizeof target) < 0) {
        perror("udpflood: connect");
        exit(1);
    }
    return fd;
}

int main(int argc, char **argv)
{
    static char payload[MAX_SIZE];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    long long sent = 0, errors = 0;

    parse_args(argc, argv);
    struct sigaction sa = {.sa_handler = on_stop};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int fd = flood_socket();
    memset(payload, 'u', sizeof payload);
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) { /* sizes 0, 1, ... 8, 0, 1, ... */
        iov[i].iov_base = payload;
        iov[i].iov_len = (size_t)(i % (MAX_SIZE + 1));
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    double start = now(), end = start + opt.duration, t = start;
    while (!stop_flag && t < end) {
        int n = sendmmsg(fd, msgs, BATCH, MSG_DONTWAIT);
        if (n > 0)
            sent += n;
        else
            errors++; /* ECONNREFUSED while nothing listens, a full buffer, ... */
        t = now();
        if (opt.rate > 0 && sent > opt.rate * (t - start)) {
            double wait = sent / opt.rate - (t - start);
            if (wait > end - t)
                wait = end - t;
            struct timespec nap = {(time_t)wait, (long)(1e9 * (wait - (time_t)wait))};
            nanosleep(&nap, NULL);
            t = now();
        }
    }
    double secs = t - start;
    printf("sent=%lld errors=%lld secs=%.3f rate=%.1f\n", sent, errors, secs,
           secs > 0 ? sent / secs : 0.0);
    close(fd);
    return 0;
}
