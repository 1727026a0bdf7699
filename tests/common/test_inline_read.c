/* tests/common/test_inline_read.c - LULL_INLINE_READ (<lull/rcu.h>): the
 * inline read side keeps the functions' semantics.  Sections nest and mix
 * with the function forms, a thread's first section registers it, a thread
 * its user registered with liburcu is seen inside a section, and liburcu's
 * grace-period machinery sees an inline section (its own read_ongoing).
 * tests/store runs store_stress again with inline sections, under ASan: the
 * grace period then really waits for them. */
#define LULL_INLINE_READ 1
#include "testutil.h"

#include <pthread.h>
#include <urcu/static/urcu-memb.h>   /* URCU_TLS(urcu_memb_reader), in TSan builds too */
#include <urcu/urcu-memb.h>

/* Under ThreadSanitizer the header keeps the functions; anywhere else the
 * macros must be there, or this file would test the functions twice. */
#if !defined(LULL__TSAN_BUILD) && !defined(lull_read_lock)
#error "LULL_INLINE_READ did not make lull_read_lock inline"
#endif

static void test_nest_and_mix(void **state)
{
    (void)state;
    assert_false(lull_read_ongoing());
    lull_read_lock();                   /* inline */
    assert_true(lull_read_ongoing());
    assert_true(urcu_memb_read_ongoing());   /* liburcu's function: the same counter */
    (lull_read_lock)();                 /* the function, nested */
    lull_read_lock();
    assert_int_equal(lull_synchronize(), -EDEADLK);
    assert_int_equal(lull_barrier(), -EDEADLK);
    lull_read_unlock();
    (lull_read_unlock)();
    assert_true(lull_read_ongoing());   /* still the outermost */
    assert_int_equal(lull_synchronize(), -EDEADLK);
    (lull_read_unlock)();               /* opened inline, closed by the function */
    assert_false(lull_read_ongoing());
    assert_false(urcu_memb_read_ongoing());

    (lull_read_lock)();                 /* and the other way round */
    lull_read_unlock();
    assert_false(lull_read_ongoing());
    assert_int_equal(lull_synchronize(), 0);
}

/* A snapshot got in an inline section is the store's, and a section that
 * outlives an update keeps the old one intact. */
static void test_snapshot_in_inline_section(void **state)
{
    (void)state;
    lull_store *s = lull_store_create(NULL);
    assert_non_null(s);
    assert_int_equal(lull_store_put(s, "lull:key:0000001", 16, "old", 3, NULL), 0);
    lull_read_lock();
    const struct lull_snap *sn = lull_store_get(s, "lull:key:0000001", 16);
    assert_non_null(sn);
    assert_int_equal(lull_store_put(s, "lull:key:0000001", 16, "new", 3, NULL), 0);
    assert_memory_equal(sn->value, "old", 3);
    assert_int_equal(lull_store_destroy(s), -EDEADLK);
    lull_read_unlock();
    lull_read_lock();
    sn = lull_store_get(s, "lull:key:0000001", 16);
    assert_non_null(sn);
    assert_memory_equal(sn->value, "new", 3);
    lull_read_unlock();
    assert_int_equal(lull_store_destroy(s), 0);
}

/* A fresh thread whose first lull call is an inline lock: registered by it
 * (the out-of-line path), and unregistered again at exit. */
static void *fresh_thread(void *p)
{
    (void)p;
    LT_CHECK(!URCU_TLS(urcu_memb_reader).registered);
    lull_read_lock();
    LT_CHECK(URCU_TLS(urcu_memb_reader).registered);
    LT_CHECK(lull_read_ongoing());
    LT_CHECK_EQ(lull_synchronize(), -EDEADLK);
    lull_read_unlock();
    LT_CHECK(!lull_read_ongoing());
    LT_CHECK_EQ(lull_synchronize(), 0);
    return NULL;
}

/* A thread its user registered with liburcu before any lull call: the
 * inline lock takes the inline path at once, and lull still knows the
 * thread is inside a section (lull_synchronize must refuse, not hang). */
static void *user_registered_thread(void *p)
{
    (void)p;
    urcu_memb_register_thread();
    lull_read_lock();
    LT_CHECK(lull_read_ongoing());
    LT_CHECK_EQ(lull_synchronize(), -EDEADLK);
    LT_CHECK_EQ(lull_barrier(), -EDEADLK);
    lull_read_unlock();
    LT_CHECK(!lull_read_ongoing());
    urcu_memb_read_lock();          /* liburcu's own section: the same one */
    LT_CHECK(lull_read_ongoing());
    LT_CHECK_EQ(lull_synchronize(), -EDEADLK);
    urcu_memb_read_unlock();
    LT_CHECK(!lull_read_ongoing());
    LT_CHECK_EQ(lull_synchronize(), 0);
    urcu_memb_unregister_thread();
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    char arg[1];
    lt_run_threads(2, fresh_thread, arg, 0);
    lt_run_threads(2, user_registered_thread, arg, 0);
    assert_int_equal(lull_barrier(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nest_and_mix),
        cmocka_unit_test(test_snapshot_in_inline_section),
        cmocka_unit_test(test_threads),
    };
    if (getenv("LT_TEST"))
        cmocka_set_test_filter(getenv("LT_TEST"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
