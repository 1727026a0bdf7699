/*
 * fuzz/replay_main.c - run a fuzz target without libFuzzer: the regression
 * replay.
 *
 *   fuzz_store_replay [-q] [--max-files N] FILE_OR_DIR... [--max-files M] ...
 *
 * Linked with one fuzz target (fuzz_store.c, ...) in builds without
 * LULL_FUZZ (gcc or clang, any sanitizer), it calls the target's
 * LLVMFuzzerInitialize (if it has one) once, then LLVMFuzzerTestOneInput
 * on the empty input and on each file named, or each regular file of each
 * directory named (sorted by name, dot files skipped; not recursive).
 * Every input gets its own heap buffer of exactly its size, as libFuzzer
 * does, so ASan sees an over-read.  A target reports a finding by crashing
 * or aborting, so the replay fails on the first one, having named the file
 * it was running.  -q: do not name each input.  --max-files N: replay at
 * most N files of each directory after it (spread evenly over the sorted
 * list; 0: all), for slow builds.  ctest runs it on
 * fuzz/corpus/<target>/ and fuzz/regress/<target>/ (see fuzz/regress/README.md).
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int quiet;
static const char *volatile current;    /* the input running now, named if it crashes */

/* A target reports a finding by aborting (sanitizers too: abort_on_error);
 * name the input, then die as it would have. */
static void on_abort(int sig)
{
    const char *p = current;
    if (p) {
        static const char pre[] = "replay: this input failed: ";
        (void)!write(2, pre, sizeof pre - 1);
        (void)!write(2, p, strlen(p));
        (void)!write(2, "\n", 1);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void die(const char *what, const char *path)
{
    fprintf(stderr, "replay: %s: %s: %s\n", what, path, strerror(errno));
    exit(2);
}

static void run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die("cannot open", path);
    size_t cap = 4096, n = 0;
    unsigned char *buf = malloc(cap);
    if (!buf)
        die("out of memory reading", path);
    for (;;) {
        if (n == cap && !(buf = realloc(buf, cap *= 2)))
            die("out of memory reading", path);
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0)
            break;
    }
    if (ferror(f))
        die("cannot read", path);
    fclose(f);
    /* exactly n bytes, so a read past the end is an ASan finding */
    unsigned char *data = malloc(n ? n : 1);
    if (!data)
        die("out of memory reading", path);
    memcpy(data, buf, n);
    free(buf);
    current = path;
    if (!quiet)
        fprintf(stderr, "replay: %s (%zu bytes)\n", path, n);
    LLVMFuzzerTestOneInput(data, n);
    current = NULL;
    free(data);
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Returns how many inputs were run. */
static size_t run_dir(const char *dir, size_t max_files)
{
    DIR *d = opendir(dir);
    if (!d)
        die("cannot open directory", dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;               /* ., .., .gitkeep */
        size_t len = strlen(dir) + 1 + strlen(e->d_name) + 1;
        char *p = malloc(len);
        if (!p)
            die("out of memory listing", dir);
        snprintf(p, len, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(p, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(p);
            continue;
        }
        if (n == cap && !(names = realloc(names, (cap = cap ? 2 * cap : 256) * sizeof(*names))))
            die("out of memory listing", dir);
        names[n++] = p;
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof(*names), name_cmp);
    size_t ran = 0;
    for (size_t i = 0; i < n; i++) {
        /* with a cap, every (n / max)-th file: the run stays spread out */
        if (!max_files || max_files >= n || (i * max_files) / n != ((i + 1) * max_files) / n) {
            run_file(names[i]);
            ran++;
        }
        free(names[i]);
    }
    free(names);
    return ran;
}

int main(int argc, char **argv)
{
    signal(SIGABRT, on_abort);
    signal(SIGSEGV, on_abort);      /* without ASan */
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    static const uint8_t empty[1];
    current = "(the empty input)";
    LLVMFuzzerTestOneInput(empty, 0);     /* libFuzzer always tries the empty input */
    current = NULL;
    size_t total = 1, max_files = 0;
    for (int i = 1; i < argc; i++) {
        /* options apply to the files and directories after them */
        if (strcmp(argv[i], "-q") == 0) {
            quiet = 1;
            continue;
        }
        if (strcmp(argv[i], "--max-files") == 0 && i + 1 < argc) {
            max_files = strtoul(argv[++i], NULL, 10);
            continue;
        }
        if (argv[i][0] == '-') {
            fprintf(stderr, "usage: %s [-q] [--max-files N] FILE_OR_DIR...\n", argv[0]);
            return 2;
        }
        struct stat st;
        if (stat(argv[i], &st) != 0)
            die("cannot find", argv[i]);
        if (S_ISDIR(st.st_mode)) {
            size_t k = run_dir(argv[i], max_files);
            fprintf(stderr, "replay: %s: %zu inputs\n", argv[i], k);
            total += k;
        } else {
            run_file(argv[i]);
            total++;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "replay: %zu inputs passed in %.2f s\n", total,
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
