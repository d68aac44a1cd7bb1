/*
 * imflow bench/ingest sender: replays prebuilt NetFlow/IPFIX datagrams to one loopback
 * collector with sendmmsg(2), paced to a target datagram rate, bounded in count and time.
 *
 *   sender FILE PORT RATE MAX_DATAGRAMS MAX_SECONDS [EXPORTERS]
 *
 *   FILE           datagram file written by bench/ingest/datagrams.py:
 *                  "IMFB" u32 version(=1) u32 count, then per datagram
 *                  u16 length, u16 flow records, payload (little-endian lengths)
 *   PORT           UDP port on 127.0.0.1 (the only destination this program sends to)
 *   RATE           datagrams per second; 0 = as fast as the machine allows
 *   MAX_DATAGRAMS  stop after this many datagrams
 *   MAX_SECONDS    stop after this long (whichever comes first)
 *   EXPORTERS      1-256 (default 1): sockets of their own, so separate exporters (source
 *                  ports) to the collector, taking turns burst by burst
 *
 * Each exporter replays the file from its first datagram (which carries the templates) in a loop.
 * Sequence numbers are rewritten per exporter as a real exporter counts them, so replays stay gap-free:
 * v5 and IPFIX count flow records sent before the message, v9 counts export packets.
 * Exporter e (0-based) also adds e to the observation domain (v9 source ID, IPFIX observation
 * domain ID, v5 engine ID), so a collector that tells exporters apart by address and domain
 * only (nfcapd, nfacctd) sees N exporters too, each with its own templates and sequence.
 *
 * Prints one line on stdout:
 *   sent=N records=R errors=E seconds=S
 * N datagrams accepted by the kernel, R flow records in them, E sends that failed (those
 * datagrams are not in N or R), S seconds from the first to the last send.
 * Build: cc -O2 -o sender sender.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAXLEN 65535
#define MAXEXP 256 /* exporters: sockets of their own (source ports), each replaying the file */

struct dgram {
    const uint8_t *data;
    uint16_t len;
    uint16_t records;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int load(const char *path, uint8_t **buf, struct dgram **out, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); return -1; }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (size < 12) { fprintf(stderr, "%s: too short\n", path); fclose(f); return -1; }
    *buf = malloc(size);
    if (!*buf || fread(*buf, 1, size, f) != (size_t)size) { fprintf(stderr, "%s: read failed\n", path); fclose(f); return -1; }
    fclose(f);
    uint8_t *b = *buf;
    uint32_t version, count;
    if (memcmp(b, "IMFB", 4) != 0) { fprintf(stderr, "%s: not a datagram file\n", path); return -1; }
    memcpy(&version, b + 4, 4);
    memcpy(&count, b + 8, 4);
    if (version != 1 || count == 0) { fprintf(stderr, "%s: version %u, %u datagrams\n", path, version, count); return -1; }
    *out = calloc(count, sizeof(struct dgram));
    size_t off = 12;
    for (uint32_t i = 0; i < count; i++) {
        if (off + 4 > (size_t)size) { fprintf(stderr, "%s: truncated at %u\n", path, i); return -1; }
        uint16_t len, rec;
        memcpy(&len, b + off, 2);
        memcpy(&rec, b + off + 2, 2);
        off += 4;
        if (len < 20 || off + len > (size_t)size) { fprintf(stderr, "%s: bad datagram %u\n", path, i); return -1; }
        (*out)[i].data = b + off;
        (*out)[i].len = len;
        (*out)[i].records = rec;
        off += len;
    }
    *n = count;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: %s FILE PORT RATE MAX_DATAGRAMS MAX_SECONDS [EXPORTERS]\n", argv[0]);
        return 2;
    }
    long exporters = argc == 7 ? strtol(argv[6], NULL, 10) : 1;
    long port = strtol(argv[2], NULL, 10);
    double rate = strtod(argv[3], NULL);
    long long max_count = strtoll(argv[4], NULL, 10);
    double max_seconds = strtod(argv[5], NULL);
    if (port < 1 || port > 65535 || rate < 0 || max_count < 1 || !(max_seconds > 0) || max_seconds > 600
        || exporters < 1 || exporters > MAXEXP) {
        fprintf(stderr, "bad arguments (port 1-65535, rate >= 0, count >= 1, 0 < seconds <= 600, 1-256 exporters)\n");
        return 2;
    }
    uint8_t *file;
    struct dgram *dg;
    size_t n;
    if (load(argv[1], &file, &dg, &n) != 0)
        return 1;

    int fds[MAXEXP];
    struct sockaddr_in to = {0};
    to.sin_family = AF_INET;
    to.sin_port = htons((uint16_t)port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK); /* loopback only, by construction */
    for (long e = 0; e < exporters; e++) {
        fds[e] = socket(AF_INET, SOCK_DGRAM, 0);
        if (fds[e] < 0) { perror("socket"); return 1; }
        int sndbuf = 4 << 20;
        setsockopt(fds[e], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
        if (connect(fds[e], (struct sockaddr *)&to, sizeof to) != 0) { perror("connect"); return 1; }
    }

    static uint8_t bufs[BATCH][MAXLEN];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    size_t idx[BATCH];
    /* per exporter: packets sent (v9), records sent (v5, IPFIX), its place in the file */
    uint32_t seq_v9[MAXEXP] = {0}, seq_records[MAXEXP] = {0};
    size_t nexts[MAXEXP] = {0};
    long long sent = 0, records = 0, errors = 0, made = 0;
    long turn = 0;
    double t0 = now_s(), last = t0, deadline = t0 + max_seconds;

    while (made < max_count) {
        double t = now_s();
        if (t >= deadline)
            break;
        long long due = BATCH;
        if (rate > 0) {
            /* send in bursts of about 0.5 ms of traffic (1..BATCH datagrams) */
            double burst = rate * 0.0005;
            if (burst < 1) burst = 1;
            if (burst > BATCH) burst = BATCH;
            due = (long long)((t - t0) * rate) - made;
            if (due < (long long)burst) {
                double wait = (made + burst) / rate - (t - t0);
                if (wait > deadline - t)
                    wait = deadline - t;
                if (wait > 0.0001) {
                    wait -= 0.00005;
                    struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
                    nanosleep(&ts, NULL);
                }
                continue;
            }
            if (due > BATCH) due = BATCH;
        }
        if (due > max_count - made) due = max_count - made;
        /* Build the batch from the next exporter in turn; sequence numbers assume every
         * earlier datagram of that exporter went out. */
        long e = turn;
        turn = (turn + 1) % exporters;
        int fd = fds[e];
        size_t next = nexts[e];
        int k = 0;
        for (; k < due; k++) {
            const struct dgram *d = &dg[next];
            memcpy(bufs[k], d->data, d->len);
            uint16_t version = (uint16_t)(d->data[0] << 8 | d->data[1]);
            if (version == 5) {
                put32(bufs[k] + 16, seq_records[e]);
                bufs[k][21] = (uint8_t)(bufs[k][21] + e); /* engine ID */
            } else if (version == 9) {
                put32(bufs[k] + 12, seq_v9[e]);
                put32(bufs[k] + 16, get32(d->data + 16) + (uint32_t)e); /* source ID */
            } else if (version == 10) {
                put32(bufs[k] + 8, seq_records[e]);
                put32(bufs[k] + 12, get32(d->data + 12) + (uint32_t)e); /* observation domain */
            }
            seq_v9[e] += 1;
            seq_records[e] += d->records;
            iov[k].iov_base = bufs[k];
            iov[k].iov_len = d->len;
            memset(&msgs[k], 0, sizeof msgs[k]);
            msgs[k].msg_hdr.msg_iov = &iov[k];
            msgs[k].msg_hdr.msg_iovlen = 1;
            idx[k] = next;
            next = (next + 1) % n;
        }
        nexts[e] = next;
        made += k;
        int done = 0;
        while (done < k) {
            int r = sendmmsg(fd, msgs + done, k - done, 0);
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                errors++; /* this datagram is lost; go on with the next */
                done++;
                continue;
            }
            for (int j = done; j < done + r; j++)
                records += dg[idx[j]].records;
            sent += r;
            done += r;
        }
        last = now_s();
    }
    printf("sent=%lld records=%lld errors=%lld seconds=%.6f\n", sent, records, errors, last - t0);
    for (long e = 0; e < exporters; e++)
        close(fds[e]);
    free(dg);
    free(file);
    return 0;
}
