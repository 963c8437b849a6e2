/* loadgen: the WebSocket load generator of bench/run.py (Linux, one thread, epoll).
 *
 * Built by bench/run.py at run time with the system compiler:
 *     gcc -O2 -o loadgen bench/loadgen.c
 *
 * Modes (every option is --name value; see usage() below):
 *     echo       N connections, K messages of S bytes in flight on each, for a measured window
 *     rtt        1 connection, 1 message in flight: round-trip percentiles
 *     handshake  T opening handshakes, C at a time, each followed by a close handshake
 *     idle       N open connections, held until a line (or EOF) on stdin
 *     broadcast  N subscribers (/sub) and one publisher (/pub): deliveries per second
 *     fanout     the same, R publishes per second: publish-to-receipt latency
 *
 * Why C: the client must cost far less per message than any server under test, so that
 * the servers are what is measured.  Frames are built once (masked, RFC 6455 section 5.3)
 * and copied into one output buffer per connection; everything read is parsed as a stream
 * (RFC 6455 section 5.2) and every payload is compared with what was sent.
 *
 * Output: one JSON object on stdout.  The server's CPU time (utime + stime of
 * /proc/PID/stat, all its threads) and this process's (getrusage) are sampled at both
 * ends of the measured window.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The sample key of RFC 6455 section 1.3 and its accept value: every connection uses them
   (servers do not require distinct keys), so no SHA-1 is needed here. */
#define WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

#define READ_SIZE (256 * 1024)
#define MAX_HEAD 8192
#define MAX_ERRORS 10

enum state { ST_FREE, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_DONE };
enum kind { K_ECHO, K_SUB, K_PUB };
enum phase { PH_OPENING, PH_SYNC, PH_RUN, PH_DRAIN, PH_CLOSING, PH_IDLE_HOLD, PH_FINISHED };

/* Broadcast payloads: [type][seq, 8 bytes LE][send time ns, 8 bytes LE][filler]. */
#define MSG_SYNC 'S'
#define MSG_DATA 'D'
#define MSG_HEADER 17

typedef struct {
    size_t slots, size, frame_size;
    unsigned char *payloads; /* slots * size */
    unsigned char *frames;   /* slots * frame_size, masked */
} ring_t;

typedef struct conn {
    int fd;
    int state;
    int kind;
    int epollout;
    int deflate;
    int close_sent, close_received;
    /* handshake */
    char head[MAX_HEAD + 1];
    size_t head_len;
    /* frame parser */
    unsigned char hdr[14];
    int hdr_len, hdr_need;
    int in_frame, opcode, fin;
    uint64_t remaining;
    int in_message, msg_opcode, msg_bad;
    uint64_t msg_len;
    unsigned char msg_head[MSG_HEADER];
    unsigned char ctl[128];
    int ctl_len;
    /* output */
    unsigned char *obuf;
    size_t olen, ooff, ocap;
    /* echo */
    ring_t *ring;
    uint64_t sent, received;
    int64_t t_sent;
    /* subscriber */
    uint64_t next_seq;
    int synced;
} conn_t;

/* -- options ---------------------------------------------------------------------------- */

static const char *o_mode;
static const char *o_host = "127.0.0.1";
static int o_port;
static int o_pid = -1;
static const char *o_path = "/";
static int o_conns = 1;
static int o_inflight = 1;
static size_t o_size = 64;
static double o_warmup = 1.0;
static double o_duration = 5.0;
static long o_count = 1000;     /* rtt: round trips; handshake: total; fanout: publishes */
static long o_warmup_count = 100;
static int o_concurrency = 64;
static int o_deflate;
static int o_window = 32;  /* broadcast: messages outstanding */
static int o_batch = 16;   /* broadcast: messages per publisher write */
static double o_rate = 5.0; /* fanout: publishes per second */

/* -- global state ----------------------------------------------------------------------- */

static int ep;
static conn_t *conns;
static int nconns;           /* slots in conns[] */
static conn_t *pub;          /* broadcast/fanout: the publisher (last slot) */
static int phase = PH_OPENING;
static struct sockaddr_in addr;
static unsigned char rbuf[READ_SIZE];
static uint64_t rng_state;
static unsigned char mask_key[4];

static long n_errors;
static char *error_samples[MAX_ERRORS];

static long opened, open_failed, started, finished, deflated;
static uint64_t total_received, total_sent;
static uint64_t payload_received;
static int running;
static int64_t t_phase, t_window0, t_window1, deadline;
static double server_cpu0 = -1, server_cpu1 = -1, client_cpu0, client_cpu1;
static uint64_t received0, received1, bytes0, bytes1;
static int window_open, window_closed;

/* broadcast */
static uint64_t published, completed;
static uint32_t *seen;          /* per seq % window: subscribers that received it */
static long synced_subs;
static int64_t next_publish;
static long subs;               /* o_conns */
static uint64_t completed0, completed1;

/* latency samples (ns) */
static int64_t *lat;
static size_t nlat, caplat;

/* -- helpers ---------------------------------------------------------------------------- */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void error_at(const char *fmt, ...) {
    n_errors++;
    if (n_errors <= MAX_ERRORS) {
        char buf[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        error_samples[n_errors - 1] = strdup(buf);
    }
}

static void die(const char *what) {
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(2);
}

static uint64_t rnd(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static void fill_random(unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(rnd() >> 56);
}

static double server_cpu(void) {
    if (o_pid <= 0) return -1;
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", o_pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    p += 2; /* the state field */
    unsigned long long utime = 0, stime = 0;
    for (int field = 0; field < 13 && p; field++) {
        if (field == 11) utime = strtoull(p, NULL, 10);
        if (field == 12) stime = strtoull(p, NULL, 10);
        p = strchr(p, ' ');
        if (p) p++;
    }
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static double client_cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static size_t header_size(size_t len) { return len < 126 ? 2 : len < 65536 ? 4 : 10; }

/* A masked client frame (RFC 6455 section 5.2/5.3) of opcode with FIN set, into out. */
static size_t build_frame(unsigned char *out, int opcode, const unsigned char *payload,
                          size_t len) {
    size_t h = 0;
    out[h++] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        out[h++] = (unsigned char)(0x80 | len);
    } else if (len < 65536) {
        out[h++] = 0x80 | 126;
        out[h++] = (unsigned char)(len >> 8);
        out[h++] = (unsigned char)len;
    } else {
        out[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) out[h++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    memcpy(out + h, mask_key, 4);
    h += 4;
    for (size_t i = 0; i < len; i++) out[h + i] = payload[i] ^ mask_key[i & 3];
    return h + len;
}

static ring_t *ring_new(size_t slots, size_t size) {
    ring_t *r = calloc(1, sizeof *r);
    r->slots = slots;
    r->size = size;
    r->frame_size = header_size(size) + 4 + size;
    r->payloads = malloc(slots * size + 1);
    r->frames = malloc(slots * r->frame_size + 1);
    if (!r->payloads || !r->frames) die("malloc ring");
    fill_random(r->payloads, slots * size);
    for (size_t i = 0; i < slots; i++)
        build_frame(r->frames + i * r->frame_size, 2, r->payloads + i * size, size);
    return r;
}

/* -- output ----------------------------------------------------------------------------- */

static void out_reserve(conn_t *c, size_t n) {
    if (c->ooff == c->olen) c->ooff = c->olen = 0;
    if (c->olen + n <= c->ocap) return;
    if (c->ooff) {
        memmove(c->obuf, c->obuf + c->ooff, c->olen - c->ooff);
        c->olen -= c->ooff;
        c->ooff = 0;
        if (c->olen + n <= c->ocap) return;
    }
    size_t cap = c->ocap ? c->ocap : 4096;
    while (cap < c->olen + n) cap *= 2;
    c->obuf = realloc(c->obuf, cap);
    if (!c->obuf) die("realloc");
    c->ocap = cap;
}

static void out_append(conn_t *c, const void *p, size_t n) {
    out_reserve(c, n);
    memcpy(c->obuf + c->olen, p, n);
    c->olen += n;
}

static void set_epollout(conn_t *c, int on) {
    if (c->epollout == on) return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl mod");
    c->epollout = on;
}

static void conn_fail(conn_t *c);

static void flush(conn_t *c) {
    while (c->ooff < c->olen) {
        ssize_t n = write(c->fd, c->obuf + c->ooff, c->olen - c->ooff);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                set_epollout(c, 1);
                return;
            }
            if (errno == EINTR) continue;
            error_at("write: %s", strerror(errno));
            conn_fail(c);
            return;
        }
        c->ooff += (size_t)n;
    }
    c->ooff = c->olen = 0;
    if (c->epollout && c->state == ST_OPEN) set_epollout(c, 0);
}

static void send_close(conn_t *c, unsigned code) {
    if (c->close_sent || c->state != ST_OPEN) return;
    unsigned char payload[2] = {(unsigned char)(code >> 8), (unsigned char)code};
    unsigned char frame[8];
    size_t n = build_frame(frame, 8, payload, 2);
    out_append(c, frame, n);
    c->close_sent = 1;
    flush(c);
}

static void send_echo_frames(conn_t *c, uint64_t n) {
    ring_t *r = c->ring;
    for (uint64_t i = 0; i < n; i++) {
        out_append(c, r->frames + ((c->sent + i) % r->slots) * r->frame_size, r->frame_size);
    }
    c->sent += n;
    total_sent += n;
}

/* -- connections ------------------------------------------------------------------------ */

static void conn_reset(conn_t *c, int kind) {
    unsigned char *obuf = c->obuf;
    size_t ocap = c->ocap;
    ring_t *ring = c->ring;
    memset(c, 0, sizeof *c);
    c->obuf = obuf;
    c->ocap = ocap;
    c->ring = ring;
    c->fd = -1;
    c->kind = kind;
    c->hdr_need = 2;
}

static void conn_close_fd(conn_t *c) {
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
}

static void on_finished(conn_t *c, int ok);

static void conn_fail(conn_t *c) {
    if (c->state == ST_DONE || c->state == ST_FREE) return;
    int was_open = c->state == ST_OPEN;
    conn_close_fd(c);
    c->state = ST_DONE;
    if (!was_open) open_failed++;
    on_finished(c, 0);
}

static void conn_start(conn_t *c, int kind, const char *path) {
    conn_reset(c, kind);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->state = ST_CONNECTING;
    started++;
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: " WS_KEY "\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s\r\n",
                     path, o_host, o_port,
                     o_deflate ? "Sec-WebSocket-Extensions: permessage-deflate; "
                                 "client_max_window_bits\r\n"
                               : "");
    out_append(c, req, (size_t)n);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    c->epollout = 1;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl add");
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        error_at("connect: %s", strerror(errno));
        conn_fail(c);
    }
}

/* -- mode callbacks --------------------------------------------------------------------- */

static void on_open(conn_t *c);
static void on_message(conn_t *c, int opcode, int64_t now);
static void on_chunk(conn_t *c, const unsigned char *p, size_t n);

static void record_latency(int64_t ns) {
    if (nlat == caplat) {
        caplat = caplat ? caplat * 2 : 4096;
        lat = realloc(lat, caplat * sizeof *lat);
        if (!lat) die("realloc latency");
    }
    lat[nlat++] = ns;
}

/* -- frame parsing (RFC 6455 section 5.2), server frames are unmasked ------------------- */

static void frame_end(conn_t *c, int64_t now) {
    c->in_frame = 0;
    c->hdr_len = 0;
    c->hdr_need = 2;
    if (c->opcode & 8) {
        if (c->opcode == 9) { /* ping: pong with the same payload (section 5.5.3) */
            unsigned char frame[140];
            size_t n = build_frame(frame, 10, c->ctl, (size_t)c->ctl_len);
            out_append(c, frame, n);
        } else if (c->opcode == 8) {
            c->close_received = 1;
            if (!c->close_sent) {
                if (phase != PH_CLOSING && phase != PH_FINISHED)
                    error_at("the server closed a connection (close frame, code %d)",
                             c->ctl_len >= 2 ? c->ctl[0] << 8 | c->ctl[1] : 1005);
                send_close(c, 1000);
            }
        }
        c->ctl_len = 0;
        return;
    }
    if (c->fin) {
        c->in_message = 0;
        on_message(c, c->msg_opcode, now);
    }
}

static void feed(conn_t *c, const unsigned char *p, size_t n, int64_t now) {
    while (n > 0 && c->state == ST_OPEN) {
        if (!c->in_frame) {
            while (n > 0 && c->hdr_len < c->hdr_need) {
                c->hdr[c->hdr_len++] = *p++;
                n--;
                if (c->hdr_len == 2) {
                    int len7 = c->hdr[1] & 0x7f;
                    c->hdr_need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) +
                                  (c->hdr[1] & 0x80 ? 4 : 0);
                }
            }
            if (c->hdr_len < c->hdr_need) return;
            int b0 = c->hdr[0], b1 = c->hdr[1];
            if (b1 & 0x80) error_at("a server frame is masked (RFC 6455 section 5.1)");
            if (b0 & 0x70) error_at("RSV bits set (0x%02x) without an extension in use", b0);
            int len7 = b1 & 0x7f;
            uint64_t len = (uint64_t)len7;
            if (len7 == 126) len = (uint64_t)c->hdr[2] << 8 | c->hdr[3];
            if (len7 == 127) {
                len = 0;
                for (int i = 0; i < 8; i++) len = len << 8 | c->hdr[2 + i];
            }
            c->opcode = b0 & 0x0f;
            c->fin = b0 >> 7;
            c->remaining = len;
            c->in_frame = 1;
            if (c->opcode & 8) {
                if (len > 125 || !c->fin) {
                    error_at("bad control frame (opcode %d, %llu bytes)", c->opcode,
                             (unsigned long long)len);
                    conn_fail(c);
                    return;
                }
                c->ctl_len = 0;
            } else if (c->opcode == 0) {
                if (!c->in_message) error_at("continuation frame outside a message");
            } else {
                if (c->in_message) error_at("new message inside a fragmented one");
                c->in_message = 1;
                c->msg_opcode = c->opcode;
                c->msg_len = 0;
                c->msg_bad = 0;
            }
            if (len == 0) {
                frame_end(c, now);
                continue;
            }
        }
        size_t take = c->remaining < n ? (size_t)c->remaining : n;
        if (c->opcode & 8) {
            memcpy(c->ctl + c->ctl_len, p, take);
            c->ctl_len += (int)take;
        } else {
            on_chunk(c, p, take);
            c->msg_len += take;
        }
        p += take;
        n -= take;
        c->remaining -= take;
        if (c->remaining == 0) frame_end(c, now);
    }
}

/* -- the handshake response (RFC 6455 section 4.2.2) ------------------------------------ */

static void handle_handshake(conn_t *c, int64_t now) {
    ssize_t n = read(c->fd, c->head + c->head_len, MAX_HEAD - c->head_len);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        error_at("connection closed during the handshake (%s)", n ? strerror(errno) : "EOF");
        conn_fail(c);
        return;
    }
    c->head_len += (size_t)n;
    c->head[c->head_len] = 0;
    char *end = strstr(c->head, "\r\n\r\n");
    if (!end) {
        if (c->head_len >= MAX_HEAD) {
            error_at("handshake response head over %d bytes", MAX_HEAD);
            conn_fail(c);
        }
        return;
    }
    *end = 0;
    if (strncmp(c->head, "HTTP/1.1 101", 12) != 0) {
        char *eol = strstr(c->head, "\r\n");
        if (eol) *eol = 0;
        error_at("handshake refused: %.80s", c->head);
        conn_fail(c);
        return;
    }
    if (!strstr(c->head, WS_ACCEPT)) {
        error_at("handshake response without the right Sec-WebSocket-Accept");
        conn_fail(c);
        return;
    }
    c->deflate = strcasestr(c->head, "permessage-deflate") != NULL;
    if (c->deflate) deflated++;
    if (o_deflate && !c->deflate) error_at("permessage-deflate offered, not negotiated");
    size_t used = (size_t)(end - c->head) + 4;
    size_t rest = c->head_len - used;
    unsigned char leftover[MAX_HEAD];
    memcpy(leftover, c->head + used, rest);
    c->state = ST_OPEN;
    opened++;
    on_open(c);
    if (rest && c->state == ST_OPEN) feed(c, leftover, rest, now);
    if (c->state == ST_OPEN && c->olen > c->ooff) flush(c);
}

static void handle_read(conn_t *c, int64_t now) {
    ssize_t n = read(c->fd, rbuf, sizeof rbuf);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        error_at("read: %s", strerror(errno));
        conn_fail(c);
        return;
    }
    if (n == 0) { /* the server closed TCP: after the close handshake, as it should */
        int ok = c->close_sent && c->close_received;
        if (!ok) error_at("the server dropped a connection (EOF without a close handshake)");
        conn_close_fd(c);
        c->state = ST_DONE;
        on_finished(c, ok);
        return;
    }
    feed(c, rbuf, (size_t)n, now);
    if (c->state == ST_OPEN && c->olen > c->ooff) flush(c);
}

static void handle_event(conn_t *c, uint32_t events, int64_t now) {
    if (c->state == ST_CONNECTING) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err) {
                error_at("connect: %s", strerror(err));
                conn_fail(c);
                return;
            }
            c->state = ST_HANDSHAKE;
            flush(c);
            if (c->state == ST_HANDSHAKE && c->ooff == c->olen) set_epollout(c, 0);
        }
        return;
    }
    if (c->state == ST_HANDSHAKE) {
        if (events & EPOLLOUT) {
            flush(c);
            if (c->state == ST_HANDSHAKE && c->ooff == c->olen) set_epollout(c, 0);
        }
        if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) handle_handshake(c, now);
        return;
    }
    if (c->state != ST_OPEN) return;
    if (events & EPOLLOUT) flush(c);
    if (c->state == ST_OPEN && events & (EPOLLIN | EPOLLERR | EPOLLHUP)) handle_read(c, now);
}

/* -- modes ------------------------------------------------------------------------------ */

static int is(const char *mode) { return strcmp(o_mode, mode) == 0; }

static void window_start(int64_t now) {
    window_open = 1;
    t_window0 = now;
    server_cpu0 = server_cpu();
    client_cpu0 = client_cpu();
    received0 = total_received;
    bytes0 = payload_received;
    completed0 = completed;
}

static void window_end(int64_t now) {
    window_closed = 1;
    t_window1 = now;
    server_cpu1 = server_cpu();
    client_cpu1 = client_cpu();
    received1 = total_received;
    bytes1 = payload_received;
    completed1 = completed;
}

static void close_all(void) {
    for (int i = 0; i < nconns; i++)
        if (conns[i].state == ST_OPEN) send_close(&conns[i], 1000);
}

static int all_done(void) {
    for (int i = 0; i < nconns; i++)
        if (conns[i].state != ST_DONE && conns[i].state != ST_FREE) return 0;
    return 1;
}

static void publish(int type, uint64_t n) {
    int64_t now = now_ns();
    size_t fs = header_size(o_size) + 4 + o_size;
    unsigned char *payload = malloc(o_size);
    memset(payload, 'x', o_size);
    out_reserve(pub, n * fs);
    for (uint64_t i = 0; i < n; i++) {
        payload[0] = (unsigned char)type;
        uint64_t seq = type == MSG_DATA ? published + i : 0;
        memcpy(payload + 1, &seq, 8);
        memcpy(payload + 9, &now, 8);
        pub->olen += build_frame(pub->obuf + pub->olen, 2, payload, o_size);
    }
    free(payload);
    if (type == MSG_DATA) published += n;
    flush(pub);
}

static void on_open(conn_t *c) {
    if (is("handshake")) send_close(c, 1000);
}

static void on_chunk(conn_t *c, const unsigned char *p, size_t n) {
    if (c->kind == K_ECHO) {
        ring_t *r = c->ring;
        uint64_t off = c->msg_len;
        if (!r || off + n > r->size) {
            c->msg_bad = 1;
            return;
        }
        if (memcmp(p, r->payloads + (c->received % r->slots) * r->size + off, n) != 0)
            c->msg_bad = 1;
    } else if (c->kind == K_SUB) {
        uint64_t off = c->msg_len;
        if (off < MSG_HEADER) {
            size_t k = n < MSG_HEADER - off ? n : (size_t)(MSG_HEADER - off);
            memcpy(c->msg_head + off, p, k);
        }
    }
}

static void on_message(conn_t *c, int opcode, int64_t now) {
    if (c->kind == K_ECHO) {
        if (!c->ring) {
            error_at("a message on a connection that sent none");
            return;
        }
        if (opcode != 2 || c->msg_len != c->ring->size || c->msg_bad)
            error_at("echo #%llu differs from what was sent (opcode %d, %llu bytes)",
                     (unsigned long long)c->received, opcode, (unsigned long long)c->msg_len);
        c->received++;
        total_received++;
        payload_received += c->msg_len;
        if (is("rtt")) {
            if (c->received > (uint64_t)o_warmup_count) record_latency(now - c->t_sent);
            if (c->received == (uint64_t)o_warmup_count) window_start(now);
            if (c->received < (uint64_t)(o_warmup_count + o_count)) {
                c->t_sent = now_ns();
                send_echo_frames(c, 1);
            }
        } else if (running) {
            send_echo_frames(c, 1);
        }
        return;
    }
    if (c->kind == K_SUB) {
        if (opcode != 2 || c->msg_len != o_size) {
            error_at("subscriber got a %llu-byte message of opcode %d",
                     (unsigned long long)c->msg_len, opcode);
            return;
        }
        if (c->msg_head[0] == MSG_SYNC) {
            if (!c->synced) {
                c->synced = 1;
                synced_subs++;
            }
            return;
        }
        uint64_t seq;
        int64_t sent;
        memcpy(&seq, c->msg_head + 1, 8);
        memcpy(&sent, c->msg_head + 9, 8);
        if (c->msg_head[0] != MSG_DATA || seq != c->next_seq) {
            error_at("subscriber expected message %llu, got %llu",
                     (unsigned long long)c->next_seq, (unsigned long long)seq);
            if (c->msg_head[0] != MSG_DATA || seq >= published) return;
        }
        c->next_seq = seq + 1;
        total_received++;
        payload_received += c->msg_len;
        if (is("fanout")) record_latency(now - sent);
        if (++seen[seq % (uint64_t)o_window] == (uint32_t)subs) {
            while (completed < published && seen[completed % (uint64_t)o_window] == (uint32_t)subs) {
                seen[completed % (uint64_t)o_window] = 0;
                completed++;
            }
        }
        return;
    }
    /* the publisher gets nothing back */
    error_at("the publisher received a message");
}

static void start_next_handshake(conn_t *c) {
    if (started < o_count) conn_start(c, K_ECHO, o_path);
}

static void on_finished(conn_t *c, int ok) {
    (void)ok; /* failures were counted where they happened */
    finished++;
    if (is("handshake")) start_next_handshake(c);
}

static void open_more(void) {
    /* open the connections of conns[] that are still free, o_concurrency at a time */
    static int next;
    int limit = is("handshake") ? nconns : nconns - (pub ? 1 : 0);
    while (next < limit && started - opened - open_failed < o_concurrency) {
        conn_start(&conns[next], pub ? K_SUB : K_ECHO, pub ? "/sub" : o_path);
        next++;
    }
}

static void tick(int64_t now) {
    if (is("handshake")) {
        if (finished >= o_count) {
            window_end(now);
            phase = PH_FINISHED;
        }
        return;
    }
    long expected = nconns - (pub ? 1 : 0);
    if (phase == PH_OPENING) {
        open_more();
        if (opened + open_failed < expected) {
            if (now > deadline) {
                error_at("only %ld of %ld connections opened in time", opened, expected);
                phase = PH_CLOSING;
                deadline = now + 5000000000LL;
                close_all();
            }
            return;
        }
        if (open_failed) {
            phase = PH_CLOSING;
            deadline = now + 5000000000LL;
            close_all();
            return;
        }
        if (pub && pub->state == ST_FREE) {
            conn_start(pub, K_PUB, "/pub");
            return;
        }
        if (pub && pub->state != ST_OPEN) return;
        /* every connection is open */
        t_phase = now;
        if (is("idle")) {
            printf("ready %ld %ld\n", opened, deflated);
            fflush(stdout);
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
            if (epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev) < 0) die("epoll_ctl stdin");
            phase = PH_IDLE_HOLD;
        } else if (is("echo")) {
            running = 1;
            for (int i = 0; i < nconns; i++) {
                send_echo_frames(&conns[i], (uint64_t)o_inflight);
                flush(&conns[i]);
            }
            phase = PH_RUN;
        } else if (is("rtt")) {
            conns[0].t_sent = now_ns();
            send_echo_frames(&conns[0], 1);
            flush(&conns[0]);
            if (o_warmup_count == 0) window_start(now);
            phase = PH_RUN;
        } else { /* broadcast, fanout: make sure every subscriber is in the group */
            phase = PH_SYNC;
            deadline = now + 30000000000LL;
            next_publish = now;
        }
        return;
    }
    if (phase == PH_SYNC) {
        if (synced_subs == subs) {
            phase = PH_RUN;
            t_phase = now;
            running = 1;
            next_publish = now;
            if (is("fanout")) window_start(now);
        } else if (now > deadline) {
            error_at("only %ld of %ld subscribers got the sync message", synced_subs, subs);
            phase = PH_CLOSING;
            deadline = now + 5000000000LL;
            close_all();
        } else if (now >= next_publish) {
            publish(MSG_SYNC, 1);
            next_publish = now + 100000000LL;
        }
        return;
    }
    if (phase == PH_RUN) {
        if (is("rtt")) {
            if (conns[0].received >= (uint64_t)(o_warmup_count + o_count)) {
                window_end(now);
                phase = PH_CLOSING;
                deadline = now + 5000000000LL;
                close_all();
            } else if (conns[0].state != ST_OPEN) {
                phase = PH_FINISHED;
            }
            return;
        }
        if (is("fanout")) {
            if (published < (uint64_t)o_count && now >= next_publish) {
                publish(MSG_DATA, 1);
                next_publish += (int64_t)(1e9 / o_rate);
            }
            if (published >= (uint64_t)o_count) {
                running = 0;
                phase = PH_DRAIN;
                deadline = now + 10000000000LL;
            }
            return;
        }
        int64_t w0 = t_phase + (int64_t)(o_warmup * 1e9);
        int64_t w1 = w0 + (int64_t)(o_duration * 1e9);
        if (!window_open && now >= w0) window_start(now);
        if (is("broadcast") && pub->state == ST_OPEN &&
            published - completed <= (uint64_t)(o_window - o_batch))
            publish(MSG_DATA, (uint64_t)o_batch);
        if (now >= w1) {
            window_end(now);
            running = 0;
            phase = PH_DRAIN;
            deadline = now + 10000000000LL;
        }
        return;
    }
    if (phase == PH_DRAIN) {
        int drained = pub ? completed == published : total_received == total_sent;
        if (!drained && now < deadline) return;
        if (!drained) {
            if (pub)
                error_at("%llu messages not received by every subscriber 10 s after the last",
                         (unsigned long long)(published - completed));
            else
                error_at("%llu echoes missing 10 s after the last message was sent",
                         (unsigned long long)(total_sent - total_received));
        }
        if (is("fanout")) window_end(now);
        phase = PH_CLOSING;
        deadline = now + 5000000000LL;
        close_all();
        return;
    }
    if (phase == PH_CLOSING) {
        if (all_done()) {
            phase = PH_FINISHED;
        } else if (now > deadline) {
            long stuck = 0;
            for (int i = 0; i < nconns; i++)
                if (conns[i].state != ST_DONE && conns[i].state != ST_FREE) {
                    stuck++;
                    conn_close_fd(&conns[i]);
                    conns[i].state = ST_DONE;
                }
            error_at("%ld connections not closed by the server 5 s after the close handshake",
                     stuck);
            phase = PH_FINISHED;
        }
    }
}

/* -- results ---------------------------------------------------------------------------- */

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static double percentile_us(double p) {
    if (!nlat) return -1;
    size_t i = (size_t)(p * (double)(nlat - 1) + 0.5);
    return lat[i] / 1e3;
}

static void print_json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') putchar('\\');
        putchar((unsigned char)*s >= 0x20 ? *s : '?');
    }
    putchar('"');
}

static void report(void) {
    if (!window_closed) window_end(now_ns());
    if (!window_open) {
        t_window0 = t_window1;
        server_cpu0 = server_cpu1;
        client_cpu0 = client_cpu1;
    }
    qsort(lat, nlat, sizeof *lat, cmp_i64);
    double elapsed = (t_window1 - t_window0) / 1e9;
    printf("{\"mode\": \"%s\", \"connections\": %d, \"opened\": %ld, \"deflate\": %ld, "
           "\"messages\": %llu, \"payload_bytes\": %llu, \"completed\": %llu, "
           "\"elapsed\": %.6f, \"client_cpu\": %.6f, \"server_cpu\": %.6f, "
           "\"latency_samples\": %zu, \"latency_p50_us\": %.3f, \"latency_p99_us\": %.3f, "
           "\"errors\": %ld, \"error_samples\": [",
           o_mode, is("handshake") ? (int)o_count : o_conns, opened, deflated,
           (unsigned long long)(received1 - received0), (unsigned long long)(bytes1 - bytes0),
           (unsigned long long)(completed1 - completed0), elapsed, client_cpu1 - client_cpu0,
           server_cpu0 >= 0 && server_cpu1 >= 0 ? server_cpu1 - server_cpu0 : -1.0, nlat,
           percentile_us(0.5), percentile_us(0.99), n_errors);
    for (int i = 0; i < MAX_ERRORS && i < n_errors; i++) {
        if (i) printf(", ");
        print_json_string(error_samples[i]);
    }
    printf("]}\n");
    fflush(stdout);
}

/* -- main ------------------------------------------------------------------------------- */

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen MODE --port N [--host H] [--pid SERVER_PID] [options]\n"
            "  echo      --conns N --inflight K --size S --warmup SEC --duration SEC\n"
            "  rtt       --size S --count N --warmup-count N\n"
            "  handshake --count TOTAL --concurrency C [--path P]\n"
            "  idle      --conns N --concurrency C [--deflate 1]: holds until stdin\n"
            "  broadcast --conns SUBSCRIBERS --size S --window W --batch B --warmup --duration\n"
            "  fanout    --conns SUBSCRIBERS --size S --rate PER_S --count N\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    o_mode = argv[1];
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--host")) o_host = v;
        else if (!strcmp(k, "--port")) o_port = atoi(v);
        else if (!strcmp(k, "--pid")) o_pid = atoi(v);
        else if (!strcmp(k, "--path")) o_path = v;
        else if (!strcmp(k, "--conns")) o_conns = atoi(v);
        else if (!strcmp(k, "--inflight")) o_inflight = atoi(v);
        else if (!strcmp(k, "--size")) o_size = (size_t)atol(v);
        else if (!strcmp(k, "--warmup")) o_warmup = atof(v);
        else if (!strcmp(k, "--duration")) o_duration = atof(v);
        else if (!strcmp(k, "--count")) o_count = atol(v);
        else if (!strcmp(k, "--warmup-count")) o_warmup_count = atol(v);
        else if (!strcmp(k, "--concurrency")) o_concurrency = atoi(v);
        else if (!strcmp(k, "--deflate")) o_deflate = atoi(v);
        else if (!strcmp(k, "--window")) o_window = atoi(v);
        else if (!strcmp(k, "--batch")) o_batch = atoi(v);
        else if (!strcmp(k, "--rate")) o_rate = atof(v);
        else {
            fprintf(stderr, "loadgen: unknown option %s\n", k);
            usage();
        }
    }
    int broadcast = is("broadcast") || is("fanout");
    if (!o_port || o_conns < 1 || o_inflight < 1 || o_concurrency < 1 || o_count < 1 ||
        (!is("echo") && !is("rtt") && !is("handshake") && !is("idle") && !broadcast))
        usage();
    if (broadcast && (o_size < MSG_HEADER || o_batch < 1 || o_window < o_batch || o_rate <= 0)) {
        fprintf(stderr, "loadgen: broadcast needs --size >= %d and --window >= --batch\n",
                MSG_HEADER);
        exit(2);
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    rng_state = (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ULL;
    fill_random(mask_key, 4);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)o_port);
    if (inet_pton(AF_INET, o_host, &addr.sin_addr) != 1) {
        fprintf(stderr, "loadgen: --host must be an IPv4 address\n");
        exit(2);
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");

    if (is("rtt")) o_conns = 1, o_inflight = 1;
    if (is("handshake")) {
        nconns = o_concurrency < o_count ? o_concurrency : (int)o_count;
    } else {
        nconns = o_conns + (broadcast ? 1 : 0);
    }
    conns = calloc((size_t)nconns, sizeof *conns);
    if (!conns) die("calloc");
    for (int i = 0; i < nconns; i++) conn_reset(&conns[i], K_ECHO);
    if (broadcast) {
        pub = &conns[nconns - 1];
        subs = o_conns;
        seen = calloc((size_t)o_window, sizeof *seen);
    }
    if (is("echo") || is("rtt")) {
        /* A ring longer than the window: a lost, repeated or reordered echo shows.  One
           ring per connection unless that takes too much memory. */
        size_t slots = (size_t)o_inflight + 1;
        int share = (double)o_conns * slots * (o_size * 2 + 14) > 256e6;
        ring_t *shared = share ? ring_new(slots, o_size) : NULL;
        for (int i = 0; i < nconns; i++) conns[i].ring = share ? shared : ring_new(slots, o_size);
    }

    int64_t start = now_ns();
    deadline = start + 60000000000LL;
    if (is("handshake")) {
        window_start(start);
        for (int i = 0; i < nconns; i++) conn_start(&conns[i], K_ECHO, o_path);
    }
    struct epoll_event events[1024];
    int64_t last_progress = start;
    long last_finished = 0;
    while (phase != PH_FINISHED) {
        int n = epoll_wait(ep, events, 1024, 10);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        int64_t now = now_ns();
        for (int i = 0; i < n; i++) {
            conn_t *c = events[i].data.ptr;
            if (!c) { /* stdin: the driver has measured; close everything */
                epoll_ctl(ep, EPOLL_CTL_DEL, 0, NULL);
                phase = PH_CLOSING;
                deadline = now + 5000000000LL;
                close_all();
                continue;
            }
            handle_event(c, events[i].events, now);
        }
        tick(now);
        if (is("handshake")) {
            if (finished != last_finished) {
                last_finished = finished;
                last_progress = now;
            } else if (now - last_progress > 10000000000LL) {
                error_at("no handshake finished for 10 s (%ld of %ld done)", finished, o_count);
                break;
            }
        }
    }
    report();
    return 0;
}
