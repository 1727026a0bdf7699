/*
 * examples/relay/proto.c - line framing and helpers shared by relay.c and load.c.
 */
#define _GNU_SOURCE
#include "proto.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

const char *const relay_counter_name[RC_COUNT] = {
#define RELAY_NAME(n) #n,
    RELAY_COUNTERS(RELAY_NAME)
#undef RELAY_NAME
};

char *linebuf_space(struct linebuf *b, size_t *room)
{
    if (b->start) {                         /* move the unread tail to the front */
        memmove(b->data, b->data + b->start, b->len - b->start);
        b->len -= b->start;
        b->start = 0;
    }
    *room = sizeof(b->data) - b->len;
    return b->data + b->len;
}

ssize_t linebuf_next(struct linebuf *b, char **line)
{
    char *p = b->data + b->start;
    size_t avail = b->len - b->start;
    char *nl = memchr(p, '\n', avail);
    if (!nl)
        return avail == sizeof(b->data) ? -2 : -1;  /* full without a '\n': too long */
    size_t n = (size_t)(nl - p);
    b->start += n + 1;
    if (n && p[n - 1] == '\r')
        n--;
    p[n] = '\0';
    *line = p;
    return (ssize_t)n;
}

char *next_word(char **p)
{
    char *s = *p;
    while (*s == ' ')
        s++;
    if (!*s)
        return NULL;
    char *e = strchr(s, ' ');
    if (e) {
        *e = '\0';
        *p = e + 1;
    } else {
        *p = s + strlen(s);
    }
    return s;
}

bool id_valid(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n <= RELAY_MAX_ID &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-") == n;
}

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    rl.rlim_cur = rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    return rl.rlim_cur > 1u << 30 ? 1 << 30 : (int)rl.rlim_cur;
}

bool parse_flags(int argc, char **argv, const struct flag *f, size_t n,
                 bool (*other)(const char *name, const char *value))
{
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc)
            return false;
        size_t k = 0;
        while (k < n && strcmp(argv[i], f[k].name))
            k++;
        char *end;
        long v = k < n ? strtol(argv[i + 1], &end, 10) : 0;
        if (k < n ? *end || v < f[k].min || v > f[k].max : !other(argv[i], argv[i + 1]))
            return false;
        if (k < n)
            *f[k].v = (int)v;
    }
    return true;
}
