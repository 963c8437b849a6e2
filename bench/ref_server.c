/* ref_server: the "C reference" column of bench/run.py (Linux, one thread, epoll).
 *
 * Built by bench/run.py at run time with the system compiler:
 *     gcc -O2 -o ref_server bench/ref_server.c
 *     ./ref_server --host 127.0.0.1 --port N [--app echo|broadcast]
 *
 * Why: issue 13 measures the Python servers against what the same jobs cost with no
 * interpreter at all (its 1 MiB echo goal is "within 10% of the C reference").  This is
 * that floor, not a server to deploy.  It does what RFC 6455 asks of a server for these
 * jobs, so that it is not faster for skipping work the others must do:
 *   - the opening handshake (section 4.2.1): GET, HTTP/1.1, one Host, Upgrade: websocket,
 *     Connection: upgrade, a key of 16 bytes in base64, version 13; otherwise an answer
 *     with the reason (405 for another method, 426 without Upgrade and Connection or for
 *     another version, 431 for a head over 8 KiB, 400 for the rest); the accept is SHA-1;
 *   - frames (section 5): masked, no RSV bits without an extension, known opcodes, control
 *     frames whole and short, fragments in order, a 64-bit length's top bit clear (1002);
 *     messages up to 16 MiB (1009); text valid UTF-8 across fragments (1007);
 *   - pings answered, the close handshake echoed, the server closing TCP first.
 * No extensions, no subprotocols, no Origin policy, no limits on connections.
 *
 * echo: every data frame comes back as it came (the same FIN and opcode: a fragmented
 * message comes back fragmented alike); what one read brings is answered with one writev
 * (one more per 255 frames), payloads unmasked in place and written from where they were
 * read.
 * broadcast: a connection to /sub subscribes; the data frames one read brings on /pub are
 * encoded once, into one buffer, and written to every subscriber with one write each (a
 * fragmented publish is refused with 1003: interleaved publishers would mix fragments).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define READ_SIZE (256 * 1024)
#define MAX_HEAD 8192
#define MAX_MESSAGE (16u * 1024 * 1024)
#define MAX_OUT (16u * 1024 * 1024) /* a subscriber this far behind is dropped */
#define PAUSE_OUT (4u * 1024 * 1024) /* an echo connection this far behind stops being read */
#define MAX_IOV 512
#define GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum state { ST_HEAD, ST_OPEN, ST_CLOSING };
enum kind { K_ECHO, K_SUB, K_PUB };

typedef struct conn {
    int fd;
    uint32_t gen;
    unsigned char state, kind, reading, writing;
    unsigned char in_msg, text;   /* inside a fragmented message; it is text */
    unsigned char u_need, u_lo, u_hi; /* UTF-8 state across fragments */
    uint64_t msg_len;
    int sub_index;
    unsigned char *in; /* a partial frame kept between reads */
    size_t in_len, in_cap, need;
    unsigned char *out; /* what the socket did not take */
    size_t out_len, out_off, out_cap;
} conn_t;

static int ep;
static int app_broadcast;
static conn_t **by_fd;
static size_t by_fd_len;
static uint32_t next_gen = 1;
static conn_t **subs;
static size_t n_subs, subs_cap;
static unsigned char rbuf[READ_SIZE];

/* what one read's frames answer: iovecs into the read buffer, headers kept here */
static struct iovec iov[MAX_IOV];
static unsigned char heads[MAX_IOV][14];
static int n_iov;
static unsigned char *bcast; /* a read's publishes, encoded once */
static size_t bcast_len, bcast_cap;

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void *grow(void *p, size_t *cap, size_t need) {
    if (need <= *cap) return p;
    size_t n = *cap ? *cap : 4096;
    while (n < need) n *= 2;
    p = realloc(p, n);
    if (!p) die("realloc");
    *cap = n;
    return p;
}

/* -- SHA-1 (FIPS 180-4) and base64, for Sec-WebSocket-Accept --------------------------- */

static uint32_t rol(uint32_t x, int n) { return x << n | x >> (32 - n); }

static void sha1_block(uint32_t h[5], const unsigned char *p) {
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) f = (b & c) | (~b & d), k = 0x5A827999;
        else if (i < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
        else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
        else f = b ^ c ^ d, k = 0xCA62C1D6;
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d, d = c, c = rol(b, 30), b = a, a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

static void sha1(const unsigned char *data, size_t len, unsigned char out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t i = 0;
    for (; i + 64 <= len; i += 64) sha1_block(h, data + i);
    unsigned char last[128] = {0};
    size_t rest = len - i, blocks = rest + 9 <= 64 ? 1 : 2;
    memcpy(last, data + i, rest);
    last[rest] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int j = 0; j < 8; j++) last[blocks * 64 - 1 - j] = (unsigned char)(bits >> (8 * j));
    for (size_t j = 0; j < blocks; j++) sha1_block(h, last + 64 * j);
    for (int j = 0; j < 20; j++) out[j] = (unsigned char)(h[j / 4] >> (24 - 8 * (j % 4)));
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void base64_20(const unsigned char in[20], char out[29]) {
    int o = 0;
    for (int i = 0; i < 20; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < 20 ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < 20 ? in[i + 2] : 0);
        out[o++] = B64[v >> 18 & 63];
        out[o++] = B64[v >> 12 & 63];
        out[o++] = i + 1 < 20 ? B64[v >> 6 & 63] : '=';
        out[o++] = i + 2 < 20 ? B64[v & 63] : '=';
    }
    out[o] = 0;
}

/* A key is 16 bytes in base64: 22 characters of the alphabet, the last of them one whose
   low 4 bits are zero, then "==". */
static int valid_key(const char *k, size_t n) {
    if (n != 24 || k[22] != '=' || k[23] != '=') return 0;
    for (int i = 0; i < 22; i++) {
        const char *at = k[i] ? strchr(B64, k[i]) : NULL;
        if (!at) return 0;
        if (i == 21 && ((at - B64) & 15)) return 0;
    }
    return 1;
}

/* -- UTF-8 (RFC 3629), carried across fragments ----------------------------------------- */

static int utf8_feed(conn_t *c, const unsigned char *s, size_t n) {
    unsigned need = c->u_need, lo = c->u_lo, hi = c->u_hi;
    size_t i = 0;
    while (i < n) {
        if (need == 0) {
            while (i + 8 <= n) {
                uint64_t w;
                memcpy(&w, s + i, 8);
                if (w & 0x8080808080808080ULL) break;
                i += 8;
            }
            if (i >= n) break;
            unsigned b = s[i++];
            if (b < 0x80) continue;
            if (b < 0xC2) return 0;
            if (b < 0xE0) need = 1, lo = 0x80, hi = 0xBF;
            else if (b < 0xF0) need = 2, lo = b == 0xE0 ? 0xA0 : 0x80, hi = b == 0xED ? 0x9F : 0xBF;
            else if (b < 0xF5) need = 3, lo = b == 0xF0 ? 0x90 : 0x80, hi = b == 0xF4 ? 0x8F : 0xBF;
            else return 0;
        } else {
            unsigned b = s[i++];
            if (b < lo || b > hi) return 0;
            need--, lo = 0x80, hi = 0xBF;
        }
    }
    c->u_need = (unsigned char)need, c->u_lo = (unsigned char)lo, c->u_hi = (unsigned char)hi;
    return 1;
}

static void utf8_reset(conn_t *c) { c->u_need = 0, c->u_lo = 0x80, c->u_hi = 0xBF; }

/* -- connections ---------------------------------------------------------------------------- */

static void watch(conn_t *c, int reading, int writing) {
    if (c->reading == reading && c->writing == writing) return;
    struct epoll_event ev = {.events = (reading ? EPOLLIN : 0) | (writing ? EPOLLOUT : 0)};
    ev.data.u64 = (uint64_t)c->gen << 32 | (uint32_t)c->fd;
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
    c->reading = (unsigned char)reading, c->writing = (unsigned char)writing;
}

static void conn_free(conn_t *c) {
    if (c->kind == K_SUB && c->sub_index >= 0) {
        subs[c->sub_index] = subs[--n_subs];
        subs[c->sub_index]->sub_index = c->sub_index;
    }
    by_fd[c->fd] = NULL;
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

/* Queue bytes the socket did not take; they go out, in order, when it is writable. */
static void keep_out(conn_t *c, const void *p, size_t n) {
    if (c->out_off && c->out_off >= c->out_len / 2) { /* what was written goes */
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off, c->out_off = 0;
    }
    c->out = grow(c->out, &c->out_cap, c->out_len + n);
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    watch(c, c->reading, 1);
}

/* Write iovecs now if nothing is queued before them; keep the rest.  0: the peer is gone. */
static int send_iov(conn_t *c, struct iovec *v, int n) {
    size_t skip = 0;
    if (c->out_len == c->out_off) {
        ssize_t done = writev(c->fd, v, n);
        if (done < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) return 0;
            done = 0;
        }
        skip = (size_t)done;
    }
    for (int i = 0; i < n; i++) {
        if (skip >= v[i].iov_len) {
            skip -= v[i].iov_len;
            continue;
        }
        keep_out(c, (char *)v[i].iov_base + skip, v[i].iov_len - skip);
        skip = 0;
    }
    return 1;
}

static size_t frame_head(unsigned char *h, unsigned first, size_t len) {
    h[0] = (unsigned char)first;
    if (len < 126) {
        h[1] = (unsigned char)len;
        return 2;
    }
    if (len < 65536) {
        h[1] = 126, h[2] = (unsigned char)(len >> 8), h[3] = (unsigned char)len;
        return 4;
    }
    h[1] = 127;
    for (int i = 0; i < 8; i++) h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    return 10;
}

static int answers_lost; /* a write of this read's answers failed: the peer is gone */

static void flush_answers(conn_t *c) {
    if (n_iov && !send_iov(c, iov, n_iov)) answers_lost = 1;
    n_iov = 0;
}

/* Answer with a frame whose payload stays where it is until flush_answers. */
static void answer(conn_t *c, unsigned first, unsigned char *payload, size_t len) {
    if (n_iov + 2 > MAX_IOV) flush_answers(c);
    unsigned char *h = heads[n_iov];
    iov[n_iov].iov_base = h;
    iov[n_iov++].iov_len = frame_head(h, first, len);
    if (len) iov[n_iov].iov_base = payload, iov[n_iov++].iov_len = len;
}

/* Start the closing handshake with `code` (0: no status); the server closes TCP once it
   is written (RFC 6455 section 7.1.1). */
static void close_with(conn_t *c, unsigned code) {
    static unsigned char body[2];
    body[0] = (unsigned char)(code >> 8), body[1] = (unsigned char)code;
    answer(c, 0x88, body, code ? 2 : 0);
    c->state = ST_CLOSING;
}

static int valid_close_code(unsigned code) {
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

static void refuse(conn_t *c, const char *status, const char *reason, const char *extra) {
    char text[512];
    int n = snprintf(text, sizeof text,
                     "HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n%s\r\n%s\n",
                     status, strlen(reason) + 1, extra, reason);
    struct iovec v = {text, (size_t)n};
    send_iov(c, &v, 1);
    c->state = ST_CLOSING;
}

/* -- the opening handshake ------------------------------------------------------------------- */

static int has_token(const char *v, size_t n, const char *token) {
    size_t t = strlen(token), i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && v[j] != ',') j++;
        size_t a = i, b = j;
        while (a < b && (v[a] == ' ' || v[a] == '\t')) a++;
        while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t')) b--;
        if (b - a == t && strncasecmp(v + a, token, t) == 0) return 1;
        i = j + 1;
    }
    return 0;
}

static int is_name(const char *s, size_t n, const char *name) {
    return strlen(name) == n && strncasecmp(s, name, n) == 0;
}

static void handshake(conn_t *c, char *head, size_t len) {
    char *end = head + len - 2; /* the empty line's CRLF */
    char *eol = memmem(head, len, "\r\n", 2);
    if (strncmp(head, "GET ", 4) != 0)
        return refuse(c, "405 Method Not Allowed", "the opening handshake is a GET", "Allow: GET\r\n");
    char *target = head + 4, *sp = memchr(target, ' ', (size_t)(eol - target));
    if (!sp || *target != '/' || eol - sp - 1 != 8 || memcmp(sp + 1, "HTTP/1.1", 8) != 0)
        return refuse(c, "400 Bad Request", "the request line is not GET /path HTTP/1.1", "");
    for (char *p = target; p < sp; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return refuse(c, "400 Bad Request", "the request target is not visible ASCII", "");
    int hosts = 0, upgrade = 0, connection = 0, keys = 0, version13 = 0, versions = 0;
    char *key = NULL;
    for (char *line = eol + 2; line < end;) {
        char *e = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
        char *colon = memchr(line, ':', (size_t)(e - line));
        if (!colon || colon == line)
            return refuse(c, "400 Bad Request", "a header line without a name", "");
        for (char *p = line; p < colon; p++)
            if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", *p))
                return refuse(c, "400 Bad Request", "a header name is not a token", "");
        char *v = colon + 1, *ve = e;
        while (v < ve && (*v == ' ' || *v == '\t')) v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        for (char *p = v; p < ve; p++)
            if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
                return refuse(c, "400 Bad Request", "a header value holds a control character", "");
        size_t nlen = (size_t)(colon - line), vlen = (size_t)(ve - v);
        if (is_name(line, nlen, "host")) hosts += vlen ? 1 : 2; /* an empty one: refused */
        else if (is_name(line, nlen, "upgrade")) upgrade |= has_token(v, vlen, "websocket");
        else if (is_name(line, nlen, "connection")) connection |= has_token(v, vlen, "upgrade");
        else if (is_name(line, nlen, "sec-websocket-key")) keys++, key = valid_key(v, vlen) ? v : NULL;
        else if (is_name(line, nlen, "sec-websocket-version"))
            versions++, version13 = vlen == 2 && v[0] == '1' && v[1] == '3';
        line = e + 2;
    }
    if (hosts != 1) return refuse(c, "400 Bad Request", "one Host field is required", "");
    if (!upgrade || !connection)
        return refuse(c, "426 Upgrade Required", "this is a WebSocket endpoint",
                      "Upgrade: websocket\r\nConnection: Upgrade\r\n");
    if (versions != 1 || !version13)
        return refuse(c, "426 Upgrade Required", "Sec-WebSocket-Version 13 is required",
                      "Sec-WebSocket-Version: 13\r\n");
    if (keys != 1 || !key)
        return refuse(c, "400 Bad Request", "Sec-WebSocket-Key must be 16 bytes in base64", "");
    unsigned char digest[20], src[24 + sizeof GUID];
    memcpy(src, key, 24);
    memcpy(src + 24, GUID, sizeof GUID - 1);
    sha1(src, 24 + sizeof GUID - 1, digest);
    char accept[29], text[160];
    base64_20(digest, accept);
    int n = snprintf(text, sizeof text,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    struct iovec v = {text, (size_t)n};
    if (!send_iov(c, &v, 1)) {
        c->state = ST_CLOSING;
        return;
    }
    c->state = ST_OPEN;
    size_t tlen = (size_t)(sp - target);
    if (app_broadcast && tlen == 4 && memcmp(target, "/sub", 4) == 0) {
        c->kind = K_SUB;
        subs = grow(subs, &subs_cap, (n_subs + 1) * sizeof *subs);
        c->sub_index = (int)n_subs;
        subs[n_subs++] = c;
    } else if (app_broadcast && tlen == 4 && memcmp(target, "/pub", 4) == 0) {
        c->kind = K_PUB;
    }
}

/* -- frames ---------------------------------------------------------------------------------- */

static void unmask(unsigned char *p, size_t n, const unsigned char key[4]) {
    uint32_t k32;
    memcpy(&k32, key, 4);
    uint64_t k64 = (uint64_t)k32 << 32 | k32;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        w ^= k64;
        memcpy(p + i, &w, 8);
    }
    for (; i < n; i++) p[i] ^= key[i & 3];
}

static void publish(unsigned first, const unsigned char *payload, size_t len) {
    bcast = grow(bcast, &bcast_cap, bcast_len + 10 + len);
    bcast_len += frame_head(bcast + bcast_len, first, len);
    memcpy(bcast + bcast_len, payload, len);
    bcast_len += len;
}

static void fan_out(void) {
    for (size_t i = n_subs; i-- > 0;) {
        conn_t *s = subs[i];
        struct iovec v = {bcast, bcast_len};
        if (s->state != ST_OPEN) continue; /* closing: its close frame goes out last */
        if (!send_iov(s, &v, 1) || s->out_len - s->out_off > MAX_OUT)
            conn_free(s); /* gone, or too slow to keep: swaps the last subscriber in */
    }
    bcast_len = 0;
}

/* One frame at buf[0..avail): 0 when it is not whole yet (c->need says how much it
   needs), else its size.  Sets the closing state on a protocol error. */
static size_t one_frame(conn_t *c, unsigned char *p, size_t avail) {
    if (avail < 2) return c->need = 2, 0;
    unsigned b0 = p[0], b1 = p[1], op = b0 & 15, fin = b0 & 0x80;
    size_t hlen = (b1 & 127) == 126 ? 4 : (b1 & 127) == 127 ? 10 : 2;
    if (!(b1 & 0x80) || (b0 & 0x70)) return close_with(c, 1002), 0;
    if (op >= 8 ? (op > 10 || !fin || (b1 & 127) > 125) : op > 2) return close_with(c, 1002), 0;
    if (op < 8 && (op == 0) != c->in_msg) return close_with(c, 1002), 0;
    if (avail < hlen + 4) return c->need = hlen + 4, 0;
    uint64_t len = b1 & 127;
    if (hlen == 4) len = (uint64_t)p[2] << 8 | p[3];
    if (hlen == 10) {
        if (p[2] & 0x80) return close_with(c, 1002), 0;
        len = 0;
        for (int i = 2; i < 10; i++) len = len << 8 | p[i];
    }
    if (op < 8 && c->msg_len + len > MAX_MESSAGE) return close_with(c, 1009), 0;
    size_t size = hlen + 4 + (size_t)len;
    if (avail < size) return c->need = size, 0;
    unsigned char *payload = p + hlen + 4;
    unmask(payload, (size_t)len, p + hlen);
    if (op < 8) {
        if (op) c->text = op == 1, utf8_reset(c);
        if (c->text && (!utf8_feed(c, payload, (size_t)len) || (fin && c->u_need)))
            return close_with(c, 1007), 0;
        c->in_msg = !fin;
        c->msg_len = fin ? 0 : c->msg_len + len;
        if (c->kind == K_ECHO) answer(c, b0, payload, (size_t)len);
        else if (c->kind == K_PUB && (!fin || !op)) return close_with(c, 1003), 0;
        else if (c->kind == K_PUB) publish(b0, payload, (size_t)len);
        return size;
    }
    if (op == 9) answer(c, 0x8A, payload, (size_t)len);
    if (op == 8) {
        unsigned code = len >= 2 ? (unsigned)payload[0] << 8 | payload[1] : 0;
        if (len == 1 || (len >= 2 && !valid_close_code(code))) return close_with(c, 1002), 0;
        utf8_reset(c);
        if (len > 2 && (!utf8_feed(c, payload + 2, (size_t)len - 2) || c->u_need))
            return close_with(c, 1007), 0;
        close_with(c, code);
    }
    return size;
}

/* Parse what arrived; return how much of it was used. */
static size_t parse(conn_t *c, unsigned char *buf, size_t len) {
    size_t pos = 0;
    c->need = 0;
    if (c->state == ST_HEAD) {
        unsigned char *crlf2 = memmem(buf, len < MAX_HEAD ? len : MAX_HEAD, "\r\n\r\n", 4);
        if (!crlf2) {
            if (len >= MAX_HEAD)
                refuse(c, "431 Request Header Fields Too Large", "the head is over 8 KiB", "");
            return 0;
        }
        pos = (size_t)(crlf2 - buf) + 4;
        handshake(c, (char *)buf, pos);
    }
    while (c->state == ST_OPEN && pos < len) {
        size_t used = one_frame(c, buf + pos, len - pos);
        if (!used) break;
        pos += used;
    }
    return pos;
}

static void on_readable(conn_t *c) {
    unsigned char *buf = rbuf;
    size_t len, room = READ_SIZE;
    if (c->in_len) {
        /* A partial frame: read the rest next to it, into its own buffer, and at most
           64 KiB past its end, so that what is moved to the front afterwards stays small
           while small frames behind it still come in the same read. */
        size_t want = (c->need > c->in_len ? c->need : c->in_len) + 65536;
        c->in = grow(c->in, &c->in_cap, want);
        buf = c->in + c->in_len;
        room = want - c->in_len;
    }
    ssize_t n = read(c->fd, buf, room);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        return conn_free(c); /* EOF or reset: a peer that ended without a close handshake */
    }
    if (c->in_len) {
        c->in_len += (size_t)n;
        buf = c->in, len = c->in_len;
    } else {
        len = (size_t)n;
    }
    if (c->state == ST_CLOSING) return; /* reads after our close are discarded */
    size_t used = parse(c, buf, len);
    flush_answers(c);
    int ok = !answers_lost;
    answers_lost = 0;
    if (bcast_len) fan_out();
    if (!ok) return conn_free(c);
    size_t rest = len - used;
    if (c->state == ST_CLOSING) {
        c->in_len = 0;
    } else if (buf == rbuf) {
        if (rest) {
            c->in = grow(c->in, &c->in_cap, rest > c->need ? rest : c->need);
            memcpy(c->in, buf + used, rest);
        }
        c->in_len = rest;
    } else {
        memmove(c->in, c->in + used, rest);
        c->in_len = rest;
    }
    if (c->state == ST_CLOSING && c->out_len == c->out_off) return conn_free(c);
    watch(c, c->state != ST_CLOSING && c->out_len - c->out_off < PAUSE_OUT, c->out_len > c->out_off);
}

static void on_writable(conn_t *c) {
    ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        return conn_free(c);
    }
    c->out_off += (size_t)n;
    if (c->out_off < c->out_len) return;
    c->out_off = c->out_len = 0;
    if (c->state == ST_CLOSING) return conn_free(c);
    watch(c, 1, 0);
}

static void on_accept(int listener) {
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) return;
            if (errno == EMFILE || errno == ENFILE) return; /* level-triggered: tried again */
            die("accept4");
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if ((size_t)fd >= by_fd_len) {
            size_t n = by_fd_len ? by_fd_len : 1024;
            while (n <= (size_t)fd) n *= 2;
            by_fd = realloc(by_fd, n * sizeof *by_fd);
            if (!by_fd) die("realloc");
            memset(by_fd + by_fd_len, 0, (n - by_fd_len) * sizeof *by_fd);
            by_fd_len = n;
        }
        conn_t *c = calloc(1, sizeof *c);
        if (!c) die("calloc");
        c->fd = fd, c->gen = next_gen++, c->reading = 1, c->sub_index = -1;
        utf8_reset(c);
        by_fd[fd] = c;
        struct epoll_event ev = {.events = EPOLLIN};
        ev.data.u64 = (uint64_t)c->gen << 32 | (uint32_t)fd;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    }
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *app = "echo";
    int port = 9001;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--host")) host = argv[i + 1];
        else if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--app")) app = argv[i + 1];
        else {
            fprintf(stderr, "usage: ref_server [--host H] [--port N] [--app echo|broadcast]\n");
            return 2;
        }
    }
    if (strcmp(app, "echo") && strcmp(app, "broadcast")) {
        fprintf(stderr, "ref_server: --app is echo or broadcast\n");
        return 2;
    }
    app_broadcast = !strcmp(app, "broadcast");
    signal(SIGPIPE, SIG_IGN);
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listener < 0) die("socket");
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) die("inet_pton");
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(listener, 1024) < 0) die("listen");
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    struct epoll_event lev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, listener, &lev) < 0) die("epoll_ctl");
    printf("c-reference %s on ws://%s:%d/ (one thread, epoll)\n", app, host, port);
    fflush(stdout);
    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            uint64_t tag = events[i].data.u64;
            if (tag == UINT64_MAX) {
                on_accept(listener);
                continue;
            }
            int fd = (int)(uint32_t)tag;
            conn_t *c = (size_t)fd < by_fd_len ? by_fd[fd] : NULL;
            if (!c || c->gen != (uint32_t)(tag >> 32)) continue; /* freed in this batch */
            uint32_t e = events[i].events;
            if (e & EPOLLOUT) {
                on_writable(c);
                c = by_fd[fd];
                if (!c || c->gen != (uint32_t)(tag >> 32)) continue;
            }
            if (e & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
        }
    }
}
