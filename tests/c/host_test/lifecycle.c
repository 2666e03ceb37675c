/*
 * lifecycle.c: the C host test's lifecycle cases: events pushed on the event thread until the
 * session stops, and backend health over its life.
 */
#include "host_test.h"

/* ---------------------------------------------------------------------------------------------
 * Case: push delivery of events (on_event) on the session's event thread.
 * ------------------------------------------------------------------------------------------- */

typedef struct Pushed {
    pthread_t main_thread;
    atomic_int events;
    atomic_int state_changes;
    atomic_int listening;
    atomic_int on_main_thread;
    atomic_int wrong_user_data;
} Pushed;

static Pushed g_pushed;

static void on_event(void *user_data, const VbEvent *event)
{
    Pushed *pushed = &g_pushed;
    if (user_data != pushed)
        atomic_fetch_add(&pushed->wrong_user_data, 1);
    atomic_fetch_add(&pushed->events, 1);
    if (pthread_equal(pthread_self(), pushed->main_thread))
        atomic_fetch_add(&pushed->on_main_thread, 1);
    if (event != NULL && event->kind == VB_EVENT_STATE_CHANGED) {
        atomic_fetch_add(&pushed->state_changes, 1);
        if (event->state == VB_STATE_LISTENING)
            atomic_fetch_add(&pushed->listening, 1);
    }
}

/* The on_event case's agent: never called (no speech), but stt_tts sessions need one. */
static VbStatus silent_agent(void *user_data, VbSession *session, const char *transcript,
                             VbReply *reply)
{
    (void)user_data, (void)session, (void)transcript;
    return vb_reply_end(reply);
}

void case_on_event(void)
{
    Pushed *pushed = &g_pushed;
    memset(pushed, 0, sizeof *pushed);
    pushed->main_thread = pthread_self();
    VbSession *session = NULL;
    VbBackend *backend = start_backend(BACKEND_JSON);
    REQUIRE(backend != NULL);

    VbCallbacks callbacks = {pushed, silent_agent, on_event};
    REQUIRE_STATUS(vb_session_create(backend, SESSION_48K, &callbacks, &session), VB_OK);
    REQUIRE_STATUS(vb_session_start(session), VB_OK);
    double deadline = now_s() + 5.0;
    while (atomic_load(&pushed->listening) == 0 && now_s() < deadline)
        sleep_s(0.005);
    CHECK(atomic_load(&pushed->listening) > 0);
    CHECK(atomic_load(&pushed->state_changes) > 0);
    CHECK(atomic_load(&pushed->on_main_thread) == 0);
    CHECK(atomic_load(&pushed->wrong_user_data) == 0);

    /* Nothing to poll when events are pushed. */
    VbEvent ev;
    memset(&ev, 0xAB, sizeof ev);
    bool has_event = true;
    CHECK_STATUS(vb_session_poll_event(session, &ev, &has_event), VB_ERR_INVALID_STATE);
    CHECK(has_event == true);
    CHECK(((unsigned char *)&ev)[0] == 0xAB);

    /* After stop returns, no callback runs any more. */
    CHECK_STATUS(vb_session_stop(session), VB_OK);
    int after_stop = atomic_load(&pushed->events);
    sleep_s(0.1);
    CHECK(atomic_load(&pushed->events) == after_stop);
    printf("    %d events pushed, %d state changes\n", after_stop,
           atomic_load(&pushed->state_changes));

done:
    vb_session_free(session);
    vb_backend_free(backend);
}

/* ---------------------------------------------------------------------------------------------
 * Case: backend health over its life.
 * ------------------------------------------------------------------------------------------- */

void case_health(void)
{
    VbBackend *backend = NULL;
    VbSession *a = NULL, *b = NULL;
    Agent *agent = agent_new();
    VbCallbacks callbacks = {agent, agent_on_transcript, NULL};
    VbHealth health;

    REQUIRE_STATUS(vb_backend_create(BACKEND_JSON, &backend), VB_OK);
    REQUIRE_STATUS(vb_backend_health(backend, &health), VB_OK);
    CHECK(health.status == VB_HEALTH_UNHEALTHY);
    CHECK(health.active_sessions == 0);

    REQUIRE_STATUS(vb_backend_start(backend), VB_OK);
    REQUIRE_STATUS(vb_backend_health(backend, &health), VB_OK);
    CHECK(health.status == VB_HEALTH_HEALTHY || health.status == VB_HEALTH_DEGRADED);

    REQUIRE_STATUS(vb_session_create(backend, NULL, &callbacks, &a), VB_OK);
    REQUIRE_STATUS(vb_session_create(backend, NULL, &callbacks, &b), VB_OK);
    CHECK_STATUS(vb_session_start(a), VB_OK);
    CHECK_STATUS(vb_backend_health(backend, &health), VB_OK);
    CHECK(health.active_sessions == 2);
    CHECK(vb_backend_active_sessions(backend) == 2);
    CHECK(health.status == VB_HEALTH_HEALTHY || health.status == VB_HEALTH_DEGRADED);

    CHECK_STATUS(vb_session_stop(a), VB_OK);
    CHECK_STATUS(vb_backend_health(backend, &health), VB_OK);
    CHECK(health.active_sessions == 1);
    CHECK(vb_backend_active_sessions(backend) == 1);

    CHECK_STATUS(vb_backend_stop(backend, 1000), VB_OK);
    CHECK_STATUS(vb_backend_health(backend, &health), VB_OK);
    CHECK(health.status == VB_HEALTH_UNHEALTHY);
    CHECK(health.active_sessions == 0);
    CHECK(vb_backend_active_sessions(backend) == 0);
    /* A stopped backend stays stopped. */
    CHECK_STATUS(vb_backend_stop(backend, 0), VB_ERR_INVALID_STATE);
    CHECK_STATUS(vb_backend_start(backend), VB_ERR_INVALID_STATE);
    VbSession *out = SENTINEL;
    CHECK_STATUS(vb_session_create(backend, NULL, &callbacks, &out), VB_ERR_INVALID_STATE);
    CHECK(out == SENTINEL);
    CHECK_STATUS(vb_session_start(b), VB_ERR_INVALID_STATE);

done:
    vb_session_free(a);
    vb_session_free(b);
    vb_backend_free(backend);
    agent_free(agent);
}
