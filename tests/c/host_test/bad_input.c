/*
 * bad_input.c: the C host test's bad input case: every status bad input can produce, with a
 * message, and untouched out-parameters.
 */
#include "host_test.h"

/* ---------------------------------------------------------------------------------------------
 * Case: every status bad input can produce, with a message, and untouched out-parameters.
 * ------------------------------------------------------------------------------------------- */


static void check_backend_create_fails(const char *file, int line, const char *json,
                                       VbStatus want, const char *needle)
{
    VbBackend *backend = SENTINEL;
    VbStatus got = vb_backend_create(json, &backend);
    char expr[2048];
    snprintf(expr, sizeof expr, "vb_backend_create(%.500s)", json ? json : "NULL");
    if (status_is(file, line, expr, got, want)) {
        if (needle != NULL && strstr(g_last_message, needle) == NULL) {
            snprintf(expr, sizeof expr, "message \"%s\" names \"%.200s\"", g_last_message,
                     needle);
            fail_at(file, line, expr);
        }
    }
    if (backend != SENTINEL) {
        fail_at(file, line, "*out_backend was written by a failed vb_backend_create");
        if (got == VB_OK)
            vb_backend_free(backend);
    }
}
#define CHECK_CREATE_FAILS(json, want, needle)                                                 \
    check_backend_create_fails(__FILE__, __LINE__, (json), (want), (needle))

void case_bad_input(void)
{
    VbBackend *backend = NULL, *limited = NULL, *unstarted = NULL;
    VbSession *session = NULL, *first = NULL, *second = NULL;
    Agent *agent = agent_new();
    Host h = {0};

    /* Versions, status names, the empty message after success. */
    CHECK(vb_abi_version() == VB_ABI_VERSION);
    CHECK(vb_version() != NULL && vb_version()[0] != '\0');
    static const char *const names[] = {
        "VB_OK", "VB_ERR_INVALID_ARGUMENT", "VB_ERR_INVALID_CONFIG", "VB_ERR_PROVIDER_NOT_FOUND",
        "VB_ERR_INVALID_STATE", "VB_ERR_SESSION_LIMIT", "VB_ERR_RATE_LIMITED",
        "VB_ERR_UNAUTHORIZED", "VB_ERR_CONNECTION_FAILED", "VB_ERR_TIMEOUT", "VB_ERR_PROVIDER",
        "VB_ERR_BUFFER_FULL", "VB_ERR_NOT_FOUND", "VB_ERR_PANIC", "VB_ERR_INTERNAL"};
    for (int32_t s = VB_OK; s <= VB_ERR_INTERNAL; s++) {
        const char *name = vb_status_str(s);
        if (name == NULL || strcmp(name, names[s]) != 0) {
            printf("    vb_status_str(%d) = \"%s\", expected \"%s\"\n", (int)s,
                   name ? name : "(NULL)", names[s]);
            CHECK(!"vb_status_str names every status");
        }
    }
    CHECK(strcmp(vb_status_str(99), "VB_STATUS_UNKNOWN") == 0);
    CHECK(strcmp(vb_status_str(-1), "VB_STATUS_UNKNOWN") == 0);
    CHECK(strcmp(vb_status_str(15), "VB_STATUS_UNKNOWN") == 0);

    /* vb_registry_list: a short buffer gives *needed and leaves the buffer alone. */
    char buf[64];
    size_t needed = 0;
    memset(buf, 'X', sizeof buf);
    CHECK_STATUS(vb_registry_list(buf, 3, &needed), VB_ERR_INVALID_ARGUMENT);
    CHECK(needed == strlen("[\"livekit\",\"local\",\"pipecat\"]") + 1);
    CHECK(buf[0] == 'X' && buf[1] == 'X' && buf[2] == 'X');
    needed = 0;
    CHECK_STATUS(vb_registry_list(NULL, 0, &needed), VB_ERR_INVALID_ARGUMENT);
    CHECK(needed == strlen("[\"livekit\",\"local\",\"pipecat\"]") + 1);
    CHECK_STATUS(vb_registry_list(buf, sizeof buf, &needed), VB_OK);
    CHECK(strcmp(buf, "[\"livekit\",\"local\",\"pipecat\"]") == 0);
    CHECK(strcmp(vb_last_error_message(), "") == 0);

    /* Backend configuration. */
    CHECK_CREATE_FAILS(NULL, VB_ERR_INVALID_ARGUMENT, NULL);
    CHECK_STATUS(vb_backend_create(BACKEND_JSON, NULL), VB_ERR_INVALID_ARGUMENT);
    CHECK_CREATE_FAILS("{\"provider\":\"loc\xff\xfe\"}", VB_ERR_INVALID_ARGUMENT, NULL);
    CHECK_CREATE_FAILS("{\"provider\":", VB_ERR_INVALID_CONFIG, NULL);
    CHECK_CREATE_FAILS("", VB_ERR_INVALID_CONFIG, NULL);
    CHECK_CREATE_FAILS("[1,2]", VB_ERR_INVALID_CONFIG, NULL);
    CHECK_CREATE_FAILS("{\"provider\":\"local\",\"stt_provider\":\"test-pitch-stt\","
                       "\"tts_provider\":\"test-tone-tts\",\"bogus_key\":1}",
                       VB_ERR_INVALID_CONFIG, "bogus_key");
    CHECK_CREATE_FAILS("{\"provider\":\"local\",\"stt_provider\":\"test-pitch-stt\","
                       "\"tts_provider\":\"test-tone-tts\",\"turn\":{\"silence_ms\":0}}",
                       VB_ERR_INVALID_CONFIG, "turn.silence_ms");
    CHECK_CREATE_FAILS("{\"provider\":\"local\",\"stt_provider\":\"test-pitch-stt\","
                       "\"tts_provider\":\"test-tone-tts\",\"vad\":{\"mode\":4}}",
                       VB_ERR_INVALID_CONFIG, "vad.mode");
    CHECK_CREATE_FAILS("{\"provider\":\"local\",\"stt_provider\":\"test-pitch-stt\","
                       "\"tts_provider\":\"test-tone-tts\",\"max_concurrent_sessions\":0}",
                       VB_ERR_INVALID_CONFIG, "max_concurrent_sessions");
    CHECK_CREATE_FAILS("{\"provider\":\"local\",\"tts_provider\":\"test-tone-tts\"}",
                       VB_ERR_INVALID_CONFIG, "stt_provider");
    CHECK_CREATE_FAILS("{\"provider\":\"no-such-backend\",\"stt_provider\":\"test-pitch-stt\","
                       "\"tts_provider\":\"test-tone-tts\"}",
                       VB_ERR_PROVIDER_NOT_FOUND, "no-such-backend");
    CHECK_CREATE_FAILS("{\"provider\":\"local\",\"stt_provider\":\"no-such-stt\","
                       "\"tts_provider\":\"test-tone-tts\"}",
                       VB_ERR_PROVIDER_NOT_FOUND, "no-such-stt");
    CHECK_CREATE_FAILS("{\"provider\":\"local\",\"stt_provider\":\"test-pitch-stt\","
                       "\"tts_provider\":\"no-such-tts\"}",
                       VB_ERR_PROVIDER_NOT_FOUND, "no-such-tts");

    /* State: sessions need a started backend; a backend starts once. */
    REQUIRE_STATUS(vb_backend_create(BACKEND_JSON, &backend), VB_OK);
    CHECK(strcmp(vb_last_error_message(), "") == 0);
    VbCallbacks callbacks = {agent, agent_on_transcript, NULL};
    session = SENTINEL;
    CHECK_STATUS(vb_session_create(backend, SESSION_48K, &callbacks, &session),
                 VB_ERR_INVALID_STATE);
    CHECK(session == SENTINEL);
    session = NULL;
    REQUIRE_STATUS(vb_backend_start(backend), VB_OK);
    CHECK_STATUS(vb_backend_start(backend), VB_ERR_INVALID_STATE);

    /* Session configuration and callbacks. */
    VbSession *out = SENTINEL;
    CHECK_STATUS(vb_session_create(backend, SESSION_48K, &callbacks, NULL),
                 VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_session_create(backend, "{\"input_sample_rate\":11025}", &callbacks, &out),
                 VB_ERR_INVALID_CONFIG);
    CHECK_MESSAGE_HAS("input_sample_rate");
    CHECK_STATUS(vb_session_create(backend, "{\"output_sample_rate\":7}", &callbacks, &out),
                 VB_ERR_INVALID_CONFIG);
    CHECK_MESSAGE_HAS("output_sample_rate");
    CHECK_STATUS(vb_session_create(backend, "{\"bogus_session_key\":true}", &callbacks, &out),
                 VB_ERR_INVALID_CONFIG);
    CHECK_MESSAGE_HAS("bogus_session_key");
    CHECK_STATUS(vb_session_create(backend, "{\"input_sample_rate\":", &callbacks, &out),
                 VB_ERR_INVALID_CONFIG);
    CHECK_STATUS(vb_session_create(backend, "{\"user_id\":\"\xc3\x28\"}", &callbacks, &out),
                 VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_session_create(backend, "{\"transport\":\"carrier-pigeon\"}", &callbacks,
                                   &out),
                 VB_ERR_PROVIDER_NOT_FOUND);
    CHECK_STATUS(vb_session_create(backend, SESSION_48K, NULL, &out), VB_ERR_INVALID_ARGUMENT);
    VbCallbacks no_agent = {agent, NULL, NULL};
    CHECK_STATUS(vb_session_create(backend, SESSION_48K, &no_agent, &out),
                 VB_ERR_INVALID_ARGUMENT);
    CHECK(out == SENTINEL);

    /* A session's life: audio before start and after stop is refused. */
    REQUIRE_STATUS(vb_session_create(backend, NULL, &callbacks, &session), VB_OK);
    agent->session = session;
    int16_t pcm[320] = {0};
    size_t accepted = 12345, written = 12345;
    CHECK_STATUS(vb_session_process_audio(session, pcm, 320, &accepted), VB_ERR_INVALID_STATE);
    CHECK(accepted == 12345);
    CHECK_STATUS(vb_session_read_audio(session, pcm, 320, &written), VB_ERR_INVALID_STATE);
    CHECK(written == 12345);
    CHECK_STATUS(vb_session_say(session, "hello"), VB_ERR_INVALID_STATE);
    CHECK_STATUS(vb_session_interrupt(session), VB_ERR_INVALID_STATE);

    /* vb_session_id: *needed always, the id only when it fits. */
    char id[128];
    memset(id, 'X', sizeof id);
    needed = 0;
    CHECK_STATUS(vb_session_id(session, id, 4, &needed), VB_ERR_INVALID_ARGUMENT);
    CHECK(needed > 1 && needed <= sizeof id);
    CHECK(id[0] == 'X' && id[3] == 'X');
    size_t needed_again = 0;
    CHECK_STATUS(vb_session_id(session, id, sizeof id, &needed_again), VB_OK);
    CHECK(needed_again == needed);
    CHECK(strlen(id) + 1 == needed);

    CHECK(vb_session_state(session) == VB_STATE_IDLE);
    REQUIRE_STATUS(vb_session_start(session), VB_OK);
    CHECK_STATUS(vb_session_start(session), VB_ERR_INVALID_STATE);
    size_t writable = 0;
    CHECK_STATUS(vb_session_writable_samples(session, &writable), VB_OK);
    CHECK(writable == 8000); /* the default 500 ms input ring at 16 kHz, empty */
    CHECK_STATUS(vb_session_writable_samples(session, NULL), VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_session_process_audio(session, pcm, 320, &accepted), VB_OK);
    CHECK(accepted == 320);
    CHECK_STATUS(vb_session_process_audio(session, pcm, 0, NULL), VB_OK);
    CHECK_STATUS(vb_session_process_audio(session, NULL, 0, NULL), VB_OK);
    accepted = 12345;
    CHECK_STATUS(vb_session_process_audio(session, NULL, 10, &accepted), VB_ERR_INVALID_ARGUMENT);
    CHECK(accepted == 12345);
    CHECK_STATUS(vb_session_read_audio(session, NULL, 10, &written), VB_ERR_INVALID_ARGUMENT);
    CHECK(written == 12345);
    CHECK_STATUS(vb_session_read_audio(session, pcm, 320, NULL), VB_ERR_INVALID_ARGUMENT);
    VbEvent ev;
    memset(&ev, 0xAB, sizeof ev);
    bool has_event = true;
    CHECK_STATUS(vb_session_poll_event(session, NULL, &has_event), VB_ERR_INVALID_ARGUMENT);
    CHECK(has_event == true);
    CHECK_STATUS(vb_session_poll_event(session, &ev, NULL), VB_ERR_INVALID_ARGUMENT);
    CHECK(((unsigned char *)&ev)[0] == 0xAB);
    CHECK_STATUS(vb_session_say(session, NULL), VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_session_say(session, "\xff oops"), VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_session_say(session, ""), VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_session_stop(session), VB_OK);
    CHECK_STATUS(vb_session_stop(session), VB_OK); /* idempotent */
    accepted = 12345;
    CHECK_STATUS(vb_session_process_audio(session, pcm, 320, &accepted), VB_ERR_INVALID_STATE);
    CHECK(accepted == 12345);
    CHECK_STATUS(vb_session_start(session), VB_ERR_INVALID_STATE);
    vb_session_free(session);
    session = NULL;

    /* max_concurrent_sessions. */
    limited = start_backend("{\"provider\":\"local\",\"stt_provider\":\"test-pitch-stt\","
                            "\"tts_provider\":\"test-tone-tts\",\"max_concurrent_sessions\":1}");
    REQUIRE(limited != NULL);
    REQUIRE_STATUS(vb_session_create(limited, NULL, &callbacks, &first), VB_OK);
    second = SENTINEL;
    CHECK_STATUS(vb_session_create(limited, NULL, &callbacks, &second), VB_ERR_SESSION_LIMIT);
    CHECK(second == SENTINEL);
    second = NULL;
    /* A stopped session frees its slot. */
    CHECK_STATUS(vb_session_stop(first), VB_OK);
    CHECK_STATUS(vb_session_create(limited, NULL, &callbacks, &second), VB_OK);

    /* Processors: NULL name or function. */
    VbProcessor no_name = {NULL, NULL, 0, NULL};
    CHECK_STATUS(vb_backend_add_processor(NULL, &no_name), VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_backend_create(BACKEND_JSON, &unstarted), VB_OK);
    CHECK_STATUS(vb_backend_add_processor(unstarted, &no_name), VB_ERR_INVALID_ARGUMENT);
    VbProcessor no_fn = {NULL, "no-fn", 0, NULL};
    CHECK_STATUS(vb_backend_add_processor(unstarted, &no_fn), VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_backend_add_processor(unstarted, NULL), VB_ERR_INVALID_ARGUMENT);

    /* NULL handles: an error status (or 0 / false / a no-op), never a crash. */
    VbHealth health;
    memset(&health, 0x5A, sizeof health);
    VbHealth untouched = health;
    needed = 777;
    CHECK_STATUS(vb_backend_start(NULL), VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_backend_stop(NULL, 0), VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_backend_health(NULL, &health), VB_ERR_INVALID_ARGUMENT);
    CHECK(memcmp(&health, &untouched, sizeof health) == 0);
    CHECK_STATUS(vb_backend_health(backend, NULL), VB_ERR_INVALID_ARGUMENT);
    CHECK(vb_backend_active_sessions(NULL) == 0);
    CHECK(vb_session_state(NULL) == VB_STATE_ERROR);
    out = SENTINEL;
    CHECK_STATUS(vb_session_create(NULL, NULL, &callbacks, &out), VB_ERR_INVALID_ARGUMENT);
    CHECK(out == SENTINEL);
    CHECK_STATUS(vb_session_start(NULL), VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_session_stop(NULL), VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_session_interrupt(NULL), VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_session_say(NULL, "hi"), VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_session_id(NULL, id, sizeof id, &needed), VB_ERR_INVALID_ARGUMENT);
    CHECK(needed == 777);
    accepted = 12345;
    CHECK_STATUS(vb_session_process_audio(NULL, pcm, 320, &accepted), VB_ERR_INVALID_ARGUMENT);
    CHECK(accepted == 12345);
    written = 12345;
    CHECK_STATUS(vb_session_read_audio(NULL, pcm, 320, &written), VB_ERR_INVALID_ARGUMENT);
    CHECK(written == 12345);
    has_event = true;
    CHECK_STATUS(vb_session_poll_event(NULL, &ev, &has_event), VB_ERR_INVALID_ARGUMENT);
    CHECK(has_event == true);
    CHECK_STATUS(vb_reply_write(NULL, "text"), VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_reply_end(NULL), VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_reply_fail(NULL, VB_ERR_PROVIDER, "failed"), VB_ERR_INVALID_ARGUMENT);
    CHECK(vb_reply_is_cancelled(NULL) == false);
    vb_session_free(NULL);
    vb_backend_free(NULL);

    /* A callback that returns a value that is no VbStatus: an error event, no crash. */
    agent->chunks[0] = NULL;
    agent->end_reply = false;
    agent->return_status = 99;
    REQUIRE(open_host(&h, backend, 16000, agent));
    CHECK(say_turn(&h, 150.0, 1000));
    CHECK(wait_until(&h, got_error, 30.0));
    CHECK(h.counts[VB_EVENT_ERROR] == 1);
    CHECK(h.last_error != VB_OK && vb_status_str((int32_t)h.last_error) != NULL &&
          strcmp(vb_status_str((int32_t)h.last_error), "VB_STATUS_UNKNOWN") != 0);
    CHECK(strstr(h.last_error_text, "99") != NULL);
    CHECK(atomic_load(&agent->calls) == 1);
    CHECK(h.bad_events == 0);
    /* The session survives it: it is still running and listening. */
    size_t n_quiet;
    int16_t *quiet = silence(200, 16000, &n_quiet);
    CHECK(push_realtime(&h, quiet, n_quiet));
    free(quiet);
    CHECK(h.call_failures == 0);

done:
    close_host(&h);
    vb_session_free(first);
    vb_session_free(second);
    vb_session_free(session);
    vb_backend_free(unstarted);
    vb_backend_free(limited);
    vb_backend_free(backend);
    agent_free(agent);
}
