/*
 * audio.c: the C host test's audio cases: input overrun, and a host audio processor.
 */
#include "host_test.h"

/* ---------------------------------------------------------------------------------------------
 * Case: input overrun. One call larger than the input ring (500 ms by default).
 * ------------------------------------------------------------------------------------------- */

void case_input_overrun(void)
{
    Host h = {0};
    Agent *agent = agent_new();
    size_t n = 0;
    int16_t *two_seconds = speech(150.0, 2000, 48000, &n);
    VbBackend *backend = start_backend(BACKEND_JSON);
    REQUIRE(backend != NULL);
    REQUIRE(open_host(&h, backend, 48000, agent));

    size_t accepted = 0;
    CHECK_STATUS(vb_session_process_audio(h.session, two_seconds, n, &accepted),
                 VB_ERR_BUFFER_FULL);
    printf("    pushed %zu samples at once: %zu accepted, %zu dropped\n", n, accepted,
           n - accepted);
    CHECK(accepted > 0);
    CHECK(accepted < n);
    CHECK(accepted <= 48000 / 2); /* the ring holds 500 ms */

    REQUIRE(wait_until(&h, got_dropped, 5.0));
    printf("    VB_EVENT_AUDIO_DROPPED: %llu samples\n",
           (unsigned long long)h.first_dropped_samples);
    CHECK(h.first_dropped_samples == n - accepted);

    VbHealth health;
    CHECK_STATUS(vb_backend_health(backend, &health), VB_OK);
    printf("    health: frames_processed %llu, frames_dropped %llu\n",
           (unsigned long long)health.frames_processed,
           (unsigned long long)health.frames_dropped);
    CHECK(health.frames_dropped > 0);
    CHECK(health.status == VB_HEALTH_DEGRADED); /* audio was lost since the last check */

    /* At real-time pace the session takes audio again. */
    size_t n_quiet;
    int16_t *quiet = silence(200, 48000, &n_quiet);
    CHECK(push_realtime(&h, quiet, n_quiet));
    free(quiet);
    CHECK(h.dropped_samples == n - accepted);
    CHECK(h.bad_events == 0);
    CHECK(h.call_failures == 0);

done:
    close_host(&h);
    vb_backend_free(backend);
    agent_free(agent);
    free(two_seconds);
}

/* ---------------------------------------------------------------------------------------------
 * Case: a host audio processor runs on every internal frame (16 kHz) before VAD.
 * ------------------------------------------------------------------------------------------- */

typedef struct Mute {
    atomic_int calls;
    atomic_int wrong_rate;
    atomic_int wrong_size;
} Mute;

/* Realtime thread: counts and silences the frame, so VAD never hears the user. */
static void mute_process(void *user_data, int16_t *pcm, size_t samples, uint32_t sample_rate)
{
    Mute *mute = user_data;
    atomic_fetch_add(&mute->calls, 1);
    if (sample_rate != 16000)
        atomic_fetch_add(&mute->wrong_rate, 1);
    if (samples != 320)
        atomic_fetch_add(&mute->wrong_size, 1);
    memset(pcm, 0, samples * sizeof *pcm);
}

void case_processor(void)
{
    static Mute mute; /* valid until the backend is freed */
    atomic_store(&mute.calls, 0);
    atomic_store(&mute.wrong_rate, 0);
    atomic_store(&mute.wrong_size, 0);
    Host h = {0};
    Agent *agent = agent_new();
    VbBackend *backend = NULL;
    REQUIRE_STATUS(vb_backend_create(BACKEND_JSON, &backend), VB_OK);

    VbProcessor processor = {&mute, "c-mute", 0, mute_process};
    REQUIRE_STATUS(vb_backend_add_processor(backend, &processor), VB_OK);
    VbProcessor duplicate = {&mute, "c-mute", 5, mute_process};
    CHECK_STATUS(vb_backend_add_processor(backend, &duplicate), VB_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("c-mute");
    REQUIRE_STATUS(vb_backend_start(backend), VB_OK);
    VbProcessor late = {&mute, "c-late", 1, mute_process};
    CHECK_STATUS(vb_backend_add_processor(backend, &late), VB_ERR_INVALID_STATE);

    REQUIRE(open_host(&h, backend, 48000, agent));
    size_t n;
    int16_t *voice = speech(150.0, 600, 48000, &n);
    CHECK(push_realtime(&h, voice, n));
    free(voice);
    sleep_s(0.2);
    pump(&h);
    int calls = atomic_load(&mute.calls);
    printf("    processor called %d times for 600 ms of audio\n", calls);
    CHECK(calls >= 25); /* 30 internal frames of 20 ms */
    CHECK(atomic_load(&mute.wrong_rate) == 0);
    CHECK(atomic_load(&mute.wrong_size) == 0);
    /* It runs before VAD: the muted speech never starts a turn. */
    CHECK(!got_speech_started(&h));
    CHECK(h.call_failures == 0);

done:
    close_host(&h);
    vb_backend_free(backend);
    agent_free(agent);
}
