/*
 * conversation.c: the C host test's conversation cases: a full turn, barge-in, and an agent that
 * fails its reply.
 */
#include "host_test.h"

/* ---------------------------------------------------------------------------------------------
 * Case: a full turn, speech in at 48 kHz, reply audio out at 48 kHz.
 * ------------------------------------------------------------------------------------------- */

void case_full_turn(void)
{
    Host h = {0};
    Agent *agent = agent_new();
    agent->chunks[0] = "Hello from C. ";
    agent->chunks[1] = "Nice to meet you.";
    const char *expected_reply = "Hello from C. Nice to meet you.";
    VbBackend *backend = start_backend(BACKEND_JSON);
    REQUIRE(backend != NULL);
    REQUIRE(open_host(&h, backend, 48000, agent));

    CHECK(say_turn(&h, 150.0, 1200));
    CHECK(wait_until(&h, got_turn_metrics, 30.0));
    /* Keep playing until the reply has been played out (state back to LISTENING). */
    CHECK(wait_until(&h, reply_played_out, 30.0));

    CHECK(h.counts[VB_EVENT_SPEECH_STARTED] == 1);
    CHECK(h.counts[VB_EVENT_SPEECH_STOPPED] == 1);
    CHECK(h.counts[VB_EVENT_TRANSCRIPT_PARTIAL] >= 1);
    REQUIRE(h.counts[VB_EVENT_TRANSCRIPT_FINAL] == 1);
    printf("    transcript: \"%s\", reply: \"%s\"\n", h.finals[0], h.responses[0]);
    CHECK(strncmp(h.finals[0], "pitch 150 hz", 12) == 0);
    CHECK(h.counts[VB_EVENT_AGENT_RESPONSE] == 1);
    CHECK(strcmp(h.responses[0], expected_reply) == 0);
    CHECK(h.counts[VB_EVENT_ERROR] == 0);
    CHECK(h.counts[VB_EVENT_AUDIO_DROPPED] == 0);
    CHECK(h.bad_events == 0);
    CHECK(h.call_failures == 0);

    /* The agent ran once, off the main thread, with our session handle and user_data, and
     * every vb_reply_* call inside it returned what the contract says. */
    CHECK(atomic_load(&agent->calls) == 1);
    CHECK(atomic_load(&g_foreign_user_data) == 0);
    CHECK(atomic_load(&agent->wrong_session) == 0);
    CHECK(atomic_load(&agent->on_main_thread) == 0);
    CHECK(atomic_load(&agent->failed_calls) == 0);
    CHECK(atomic_load(&agent->has_transcript));
    CHECK(strcmp(agent->transcript, h.finals[0]) == 0);

    /* Latencies are measured from the end of user speech, in pipeline order. */
    VbTurnMetrics m = h.metrics;
    printf("    metrics: stt_final %llu us, agent_first_text %llu us, tts_first_audio %llu us, "
           "first_output_audio %llu us\n",
           (unsigned long long)m.stt_final_us, (unsigned long long)m.agent_first_text_us,
           (unsigned long long)m.tts_first_audio_us, (unsigned long long)m.first_output_audio_us);
    CHECK(m.first_output_audio_us > 0);
    /* The turn ends after turn.silence_ms (500) of silence; the transcript cannot come sooner. */
    CHECK(m.stt_final_us >= 400000);
    /* And the host saw it all happen: the first reply audio was readable before the metrics
     * event was polled, which is at most this long after the last voiced audio was pushed. */
    double host_us = (h.metrics_at_s - h.speech_end_s) * 1e6;
    printf("    host clock: metrics polled %.0f us after the end of speech\n", host_us);
    CHECK(m.first_output_audio_us <= host_us + 50000);
    CHECK(m.stt_final_us <= m.agent_first_text_us);
    CHECK(m.agent_first_text_us <= m.tts_first_audio_us);
    CHECK(m.tts_first_audio_us <= m.first_output_audio_us);

    /* Reply audio at 48 kHz: 31 characters x 20 ms = 620 ms = 29760 samples of a 440 Hz tone
     * (at 24 kHz, unconverted, it would be half as many samples at 220 Hz). */
    size_t expected_samples = strlen(expected_reply) * 20 * 48;
    double hz = tone_hz(h.capture, h.capture_len, 48000);
    printf("    reply audio: %zu samples (%zu non-zero, expected ~%zu), tone %.0f Hz\n", h.played,
           h.played_nonzero, expected_samples, hz);
    CHECK(h.played_nonzero > 0);
    CHECK(h.played >= expected_samples * 95 / 100 && h.played <= expected_samples * 105 / 100);
    CHECK(hz > 420 && hz < 460);

done:
    close_host(&h);
    vb_backend_free(backend);
    agent_free(agent);
}

/* ---------------------------------------------------------------------------------------------
 * Case: barge-in. The user speaks while a long reply plays: playout stops at once, an
 * VB_EVENT_INTERRUPTED arrives and the interrupting speech becomes the next turn.
 * ------------------------------------------------------------------------------------------- */

void case_barge_in(void)
{
    Host h = {0};
    Agent *agent = agent_new();
    /* 200 characters: 4 s of tone. */
    static char long_reply[201];
    for (int i = 0; i < 8; i++)
        memcpy(long_reply + 25 * i, "The agent keeps talking. ", 25);
    long_reply[200] = '\0';
    agent->chunks[0] = long_reply;
    VbBackend *backend = start_backend(BACKEND_JSON);
    REQUIRE(backend != NULL);
    REQUIRE(open_host(&h, backend, 48000, agent));

    CHECK(say_turn(&h, 150.0, 1200));
    REQUIRE(wait_until(&h, reply_audio_flows, 30.0));
    size_t played_before = h.played;

    /* Interrupt by speaking (at a different pitch) while the reply plays. */
    REQUIRE(say_turn(&h, 220.0, 600));
    CHECK(wait_until(&h, got_interrupted, 5.0));
    CHECK(wait_until(&h, got_second_final, 30.0));

    printf("    reply audio: %zu samples before barge-in, %zu read in %d reads after "
           "VB_EVENT_INTERRUPTED; second transcript \"%s\"\n",
           played_before, h.played_after_interrupt, h.reads_after_interrupt, h.finals[1]);
    CHECK(h.counts[VB_EVENT_INTERRUPTED] == 1);
    /* Well under the 4 s reply was played (playout did not simply run out). */
    CHECK(h.played < 4 * 48000 * 3 / 4);
    /* Between the interruption and the next transcript (>= 500 ms of trailing silence), every
     * read returned nothing: playout stopped. */
    CHECK(h.reads_after_interrupt >= 5);
    CHECK(h.played_after_interrupt == 0);
    /* The session goes on: the interrupting speech is the next turn. */
    CHECK(strncmp(h.finals[0], "pitch 150 hz", 12) == 0);
    unsigned second_hz = 0;
    CHECK(sscanf(h.finals[1], "pitch %u hz", &second_hz) == 1);
    CHECK(second_hz >= 200 && second_hz <= 240); /* the interrupting voice, not the first one */
    CHECK(h.counts[VB_EVENT_ERROR] == 0); /* nothing failed: an interruption is no error */
    CHECK(h.bad_events == 0);
    CHECK(h.call_failures == 0);
    CHECK(atomic_load(&agent->on_main_thread) == 0);

done:
    close_host(&h);
    vb_backend_free(backend);
    agent_free(agent);
}

/* ---------------------------------------------------------------------------------------------
 * Case: vb_reply_fail. The agent fails its first reply with its own status and message: the
 * host gets that error, the turn ends cleanly and the session listens again. Its second reply
 * is cancelled by the host's interrupt before it fails it: too late, VB_ERR_INVALID_STATE.
 * ------------------------------------------------------------------------------------------- */

static atomic_int g_fail_calls;       /* on_transcript calls */
static atomic_int g_fail_mismatches;  /* vb_reply_* calls in the agent that returned the wrong status */
static atomic_bool g_fail_done;       /* the second call returned */

/* In the agent: `got` is `want`, with a message exactly when it failed. */
static void agent_expects(VbStatus got, VbStatus want, const char *what, const char *needle)
{
    const char *message = vb_last_error_message();
    bool ok = got == want && (want == VB_OK) == (message[0] == '\0') &&
              (needle == NULL || strstr(message, needle) != NULL);
    if (!ok) {
        printf("    agent: %s returned %s, expected %s (message: \"%s\")\n", what,
               vb_status_str((int32_t)got), vb_status_str((int32_t)want), message);
        atomic_fetch_add(&g_fail_mismatches, 1);
    }
}

static VbStatus failing_agent(void *user_data, VbSession *session, const char *transcript,
                              VbReply *reply)
{
    (void)user_data;
    (void)session;
    (void)transcript;
    if (atomic_fetch_add(&g_fail_calls, 1) > 0) {
        /* Wait for the host's interrupt, then try to fail the cancelled reply. */
        for (int i = 0; i < 1000 && !vb_reply_is_cancelled(reply); i++)
            sleep_s(0.01);
        agent_expects(vb_reply_fail(reply, VB_ERR_PROVIDER, "too late"), VB_ERR_INVALID_STATE,
                      "vb_reply_fail on a cancelled reply", "cancelled");
        atomic_store(&g_fail_done, true);
        return VB_OK;
    }
    agent_expects(vb_reply_write(reply, "Let me look. "), VB_OK, "vb_reply_write", NULL);
    /* Bad arguments change nothing. */
    agent_expects(vb_reply_fail(reply, VB_ERR_PROVIDER, NULL), VB_ERR_INVALID_ARGUMENT,
                  "vb_reply_fail(message NULL)", "message");
    agent_expects(vb_reply_fail(reply, VB_OK, "all fine"), VB_ERR_INVALID_ARGUMENT,
                  "vb_reply_fail(VB_OK)", "VB_OK");
    agent_expects(vb_reply_fail(reply, 99, "no status"), VB_ERR_INVALID_ARGUMENT,
                  "vb_reply_fail(99)", "99");
    agent_expects(vb_reply_fail(reply, VB_ERR_PROVIDER, "\xff\xfe"), VB_ERR_INVALID_ARGUMENT,
                  "vb_reply_fail(invalid UTF-8)", "UTF-8");
    VbStatus failed = vb_reply_fail(reply, VB_ERR_CONNECTION_FAILED, "the order database is down");
    agent_expects(failed, VB_OK, "vb_reply_fail", NULL);
    /* The reply is finished. */
    agent_expects(vb_reply_write(reply, "more"), VB_ERR_INVALID_STATE, "vb_reply_write after",
                  "failed");
    agent_expects(vb_reply_end(reply), VB_ERR_INVALID_STATE, "vb_reply_end after", "failed");
    agent_expects(vb_reply_fail(reply, VB_ERR_PROVIDER, "again"), VB_ERR_INVALID_STATE,
                  "vb_reply_fail after", "failed");
    return failed;
}

static bool second_agent_call_runs(const Host *h)
{
    (void)h;
    return atomic_load(&g_fail_calls) >= 2;
}

static bool second_agent_call_returned(const Host *h)
{
    (void)h;
    return atomic_load(&g_fail_done);
}

void case_reply_fail(void)
{
    Host h = {0};
    VbCallbacks callbacks = {NULL, failing_agent, NULL};
    VbBackend *backend = start_backend(BACKEND_JSON);
    REQUIRE(backend != NULL);
    h.in_rate = h.out_rate = 16000;
    h.capture_cap = 16000;
    h.capture = calloc(h.capture_cap, sizeof *h.capture);
    REQUIRE_STATUS(vb_session_create(backend, NULL, &callbacks, &h.session), VB_OK);
    REQUIRE_STATUS(vb_session_start(h.session), VB_OK);

    CHECK(say_turn(&h, 150.0, 800));
    CHECK(wait_until(&h, reply_played_out, 30.0));
    CHECK(h.counts[VB_EVENT_ERROR] == 1);
    CHECK(h.last_error == VB_ERR_CONNECTION_FAILED);
    CHECK(strcmp(h.last_error_text, "agent: the order database is down") == 0);
    /* What it wrote before failing is its reply, and was spoken. */
    CHECK(h.counts[VB_EVENT_AGENT_RESPONSE] == 1);
    CHECK(strcmp(h.responses[0], "Let me look. ") == 0);
    CHECK(h.played_nonzero > 0);
    CHECK(h.state == VB_STATE_LISTENING);
    CHECK(vb_session_state(h.session) == VB_STATE_LISTENING);

    /* The next reply is cancelled by the host before the agent fails it. */
    CHECK(say_turn(&h, 220.0, 800));
    CHECK(wait_until(&h, second_agent_call_runs, 30.0));
    CHECK_STATUS(vb_session_interrupt(h.session), VB_OK);
    CHECK(wait_until(&h, second_agent_call_returned, 30.0));
    CHECK(wait_until(&h, got_interrupted, 5.0));
    sleep_s(0.2);
    pump(&h);
    CHECK(h.counts[VB_EVENT_ERROR] == 1); /* nothing more was reported */
    CHECK(atomic_load(&g_fail_mismatches) == 0);
    CHECK(atomic_load(&g_fail_calls) == 2);
    CHECK(h.bad_events == 0);
    CHECK(h.call_failures == 0);

done:
    close_host(&h);
    vb_backend_free(backend);
}
