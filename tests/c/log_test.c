/*
 * log_test.c: a C host receiving libvoicebackend's log records in its own logger through
 * vb_set_log_callback, using nothing but include/voicebackend.h.
 *
 * Checks: records of a backend's and a session's life arrive at the callback, on the library's
 * log thread ("vb-log"), with their level, target and span; nothing above the host's level
 * arrives; a bad level is refused; after vb_set_log_callback(NULL, ...) returns, the callback is
 * never called again. Needs the test providers (cargo feature `test-providers`).
 *
 * Prints a closing "N passed, N failed" line; exits 0 only when every check passed. Built and run
 * by tests/c_abi.rs like host_test.c.
 */
#define _GNU_SOURCE

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "voicebackend.h"

static int g_passed, g_failed;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (cond) {                                                                      \
            g_passed++;                                                                  \
        } else {                                                                         \
            g_failed++;                                                                  \
            fprintf(stderr, "%s:%d: CHECK failed: %s (%s)\n", __FILE__, __LINE__, #cond, \
                    vb_last_error_message());                                            \
        }                                                                                \
    } while (0)

#define MAX_RECORDS 1024

/* What the callback saw; shared with the log thread. */
typedef struct {
    pthread_mutex_t lock;
    int count;
    int max_level_seen;
    int off_log_thread; /* records delivered on another thread than "vb-log" */
    char messages[MAX_RECORDS][256];
    int levels[MAX_RECORDS];
    char targets[MAX_RECORDS][96];
} Seen;

static Seen g_seen = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void on_log(void *user_data, int32_t level, const char *target, const char *message)
{
    Seen *seen = user_data;
    char thread[32] = "";
    pthread_getname_np(pthread_self(), thread, sizeof thread);
    pthread_mutex_lock(&seen->lock);
    if (strcmp(thread, "vb-log") != 0)
        seen->off_log_thread++;
    if (level > seen->max_level_seen)
        seen->max_level_seen = level;
    if (seen->count < MAX_RECORDS) {
        snprintf(seen->messages[seen->count], sizeof seen->messages[0], "%s", message);
        snprintf(seen->targets[seen->count], sizeof seen->targets[0], "%s", target);
        seen->levels[seen->count] = level;
    }
    seen->count++;
    pthread_mutex_unlock(&seen->lock);
}

/* The index of the first record whose message contains `needle`, or -1. */
static int find(const char *needle)
{
    int found = -1;
    pthread_mutex_lock(&g_seen.lock);
    int n = g_seen.count < MAX_RECORDS ? g_seen.count : MAX_RECORDS;
    for (int i = 0; i < n && found < 0; i++)
        if (strstr(g_seen.messages[i], needle) != NULL)
            found = i;
    pthread_mutex_unlock(&g_seen.lock);
    return found;
}

/* Waits up to 30 s for a record containing `needle` (records arrive on the log thread). */
static int wait_for(const char *needle)
{
    for (int i = 0; i < 3000; i++) {
        int at = find(needle);
        if (at >= 0)
            return at;
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    fprintf(stderr, "no record containing '%s'\n", needle);
    return -1;
}

static const char *const BACKEND_JSON =
    "{\"provider\":\"local\",\"stt_provider\":\"test-pitch-stt\",\"tts_provider\":\"test-tone-tts\","
    "\"persistence\":{\"path\":\"\"}}";

static VbStatus agent(void *user_data, VbSession *session, const char *transcript,
                      VbReply *reply)
{
    (void)user_data;
    (void)session;
    (void)transcript;
    return vb_reply_end(reply);
}

/* Creates, starts, stops and frees a backend with one session. */
static void one_session(void)
{
    VbBackend *backend = NULL;
    VbSession *session = NULL;
    VbCallbacks callbacks = {NULL, agent, NULL};
    CHECK(vb_backend_create(BACKEND_JSON, &backend) == VB_OK);
    CHECK(vb_backend_start(backend) == VB_OK);
    CHECK(vb_session_create(backend, "{}", &callbacks, &session) == VB_OK);
    CHECK(vb_session_start(session) == VB_OK);
    CHECK(vb_session_stop(session) == VB_OK);
    vb_session_free(session);
    CHECK(vb_backend_stop(backend, 0) == VB_OK);
    vb_backend_free(backend);
}

int main(void)
{
    CHECK(vb_set_log_callback(on_log, &g_seen, 9) == VB_ERR_INVALID_ARGUMENT);
    CHECK(vb_set_log_callback(on_log, &g_seen, VB_LOG_INFO) == VB_OK);
    one_session();

    int started = wait_for("backend started");
    int session = wait_for("session started");
    int stopped = wait_for("backend stopped");
    CHECK(started >= 0 && session >= 0 && stopped >= 0);
    if (session >= 0) {
        CHECK(g_seen.levels[session] == VB_LOG_INFO);
        CHECK(strncmp(g_seen.targets[session], "voicebackend", 12) == 0);
        CHECK(strstr(g_seen.messages[session], "session{session.id=sess-") != NULL);
        printf("a record: level %d, target %s: %s\n", g_seen.levels[session],
               g_seen.targets[session], g_seen.messages[session]);
    }
    pthread_mutex_lock(&g_seen.lock);
    CHECK(g_seen.max_level_seen <= VB_LOG_INFO);
    CHECK(g_seen.off_log_thread == 0);
    pthread_mutex_unlock(&g_seen.lock);

    /* Unset: from now on the callback is never called, whatever happens. */
    CHECK(vb_set_log_callback(NULL, NULL, VB_LOG_TRACE) == VB_OK);
    pthread_mutex_lock(&g_seen.lock);
    int count = g_seen.count;
    pthread_mutex_unlock(&g_seen.lock);
    one_session();
    nanosleep(&(struct timespec){0, 200 * 1000 * 1000}, NULL);
    pthread_mutex_lock(&g_seen.lock);
    CHECK(g_seen.count == count);
    pthread_mutex_unlock(&g_seen.lock);

    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 && g_passed > 0 ? 0 : 1;
}
