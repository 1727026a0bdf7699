/*
 * examples/relay/proto.h - the relay's wire protocol (README.md has the
 * grammar), shared by the server (relay.c) and the load generator (load.c).
 *
 * Every frame is one line of at most RELAY_MAX_LINE bytes, '\n' included.
 * A line reader, the counters the STATS frame reports, and a few helpers
 * both programs need.
 */
#ifndef RELAY_PROTO_H
#define RELAY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RELAY_MAX_LINE 4096     /* a frame, '\n' included: longer is "ERR frame too long" */
#define RELAY_MAX_TEXT 4000     /* the text of MSG and TO: the relayed frame must fit too */
#define RELAY_MAX_ID   64       /* ids: 1..64 of [A-Za-z0-9_.:-] */

/* The server's counters, in the order STATS reports them ("name=value"). */
#define RELAY_COUNTERS(X)                                                                     \
    X(accepted) X(closed) X(bad_input) X(idle_timeouts)                                       \
    X(claims) X(claims_refused) X(releases)                                                   \
    X(bin_replaced) X(bin_released) X(bin_shutdown) X(bin_double_close)                       \
    X(attaches) X(attach_refused)                                                             \
    X(phone_released) X(phone_expired) X(phone_replaced) X(phone_shutdown)                    \
    X(phone_double_close)                                                                     \
    X(to_binary) X(to_phone) X(misrouted) X(dropped_grace) X(dropped_no_holder)               \
    X(dropped_not_holder) X(dropped_no_phone) X(dropped_full)
enum relay_counter {
#define RELAY_ENUM(n) RC_##n,
    RELAY_COUNTERS(RELAY_ENUM)
#undef RELAY_ENUM
    RC_COUNT
};
extern const char *const relay_counter_name[RC_COUNT];

/* Incoming bytes, cut into lines. */
struct linebuf {
    size_t start, len;              /* unread bytes: data[start .. len) */
    char data[RELAY_MAX_LINE];
};

/* Where to read to (compacting first); *room 0 means the buffer is full. */
char *linebuf_space(struct linebuf *b, size_t *room);
/* The next complete line, NUL-terminated in place without its "\n" or
 * "\r\n".  Returns its length; -1: none complete yet; -2: a line is longer
 * than RELAY_MAX_LINE. */
ssize_t linebuf_next(struct linebuf *b, char **line);

/* Split off the next space-separated word of *p (NUL-terminating it); NULL
 * when none is left.  *p then points at the rest. */
char *next_word(char **p);
bool id_valid(const char *s);

/* Command-line flags, "--name value" pairs: integers from the table (range
 * checked), anything else through other(), which returns false for a flag
 * it does not know.  Returns false on a bad command line. */
struct flag {
    const char *name;
    int *v, min, max;
};
bool parse_flags(int argc, char **argv, const struct flag *f, size_t n,
                 bool (*other)(const char *name, const char *value));
uint64_t now_ns(void);              /* CLOCK_MONOTONIC: the wheels' clock too */
int raise_nofile(void);             /* RLIMIT_NOFILE soft := hard; returns the limit */

#endif /* RELAY_PROTO_H */
