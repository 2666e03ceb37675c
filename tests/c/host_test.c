/*
 * host_test.c: a C host of libvoicebackend, using nothing but include/voicebackend.h.
 *
 * Runs named test cases against the C ABI with the test providers compiled into the library
 * (cargo feature `test-providers`): STT `test-pitch-stt` ("pitch <hz> hz for <ms> ms"),
 * TTS `test-tone-tts` (a 440 Hz tone, 20 ms per character, at 24 kHz).
 *
 * Prints one line per case and a closing "N passed, N failed" line; exits 0 only when every case
 * passed. `host_test <case>` runs one case. Built and run by tests/c_abi.rs:
 *
 *   cc -std=c11 -Wall -Wextra -Werror -O1 -I include tests/c/host_test.c \
 *      -L<dir> -lvoicebackend -Wl,-rpath,<dir> -lpthread -lm
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "voicebackend.h"

/* ---------------------------------------------------------------------------------------------
 * Checks. CHECK records a failure and goes on; REQUIRE also jumps to the case's `done:` label
 * (its cleanup). CHECK_STATUS compares a status and checks vb_last_error_message(): non-empty
 * after a failure, "" after a success.
 * ------------------------------------------------------------------------------------------- */

static int g_case_failures;

static void fail_at(const char *file, int line, const char *what)
{
    printf("    %s:%d: CHECK failed: %s\n", file, line, what);
    fflush(stdout);
    g_case_failures++;
}

#define CHECK(cond) ((cond) ? (void)0 : fail_at(__FILE__, __LINE__, #cond))
#define REQUIRE(cond)                                                                          \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fail_at(__FILE__, __LINE__, #cond);                                                \
            goto done;                                                                         \
        }                                                                                      \
    } while (0)

static char g_last_message[1024];

/* Called with the status of the call just made, before any other vb_ call on this thread. */
static bool status_is(const char *file, int line, const char *expr, VbStatus got, VbStatus want)
{
    const char *message = vb_last_error_message();
    snprintf(g_last_message, sizeof g_last_message, "%s", message ? message : "(NULL)");
    char what[1400];
    if (got != want) {
        snprintf(what, sizeof what, "%s returned %s, expected %s (message: \"%s\")", expr,
                 vb_status_str((int32_t)got), vb_status_str((int32_t)want), g_last_message);
        fail_at(file, line, what);
        return false;
    }
    if (message == NULL || (want != VB_OK && message[0] == '\0')) {
        snprintf(what, sizeof what, "%s failed with %s but vb_last_error_message() is empty", expr,
                 vb_status_str((int32_t)got));
        fail_at(file, line, what);
        return false;
    }
    if (want == VB_OK && message[0] != '\0') {
        snprintf(what, sizeof what, "%s succeeded but vb_last_error_message() is \"%s\"", expr,
                 message);
        fail_at(file, line, what);
        return false;
    }
    return true;
}

#define CHECK_STATUS(expr, want) status_is(__FILE__, __LINE__, #expr, (expr), (want))
#define REQUIRE_STATUS(expr, want)                                                             \
    do {                                                                                       \
        if (!CHECK_STATUS(expr, want))                                                         \
            goto done;                                                                         \
    } while (0)
/* The message of the last CHECK_STATUS call contains `needle`. */
#define CHECK_MESSAGE_HAS(needle) CHECK(strstr(g_last_message, (needle)) != NULL)

/* ---------------------------------------------------------------------------------------------
 * Time and audio.
 * ------------------------------------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double seconds)
{
    if (seconds <= 0)
        return;
    struct timespec ts;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    nanosleep(&ts, NULL);
}

static const double TAU = 6.283185307179586;

/* A voiced buzz that webrtc-vad classifies as speech: fundamental f0 plus 9 harmonics (1/h
 * amplitude) with a 4 Hz syllable-like amplitude modulation. Port of `speech()` in
 * tests/common/mod.rs. Returns a malloc'ed buffer of *n samples. */
static int16_t *speech(double f0, unsigned ms, unsigned rate, size_t *n)
{
    *n = (size_t)rate * ms / 1000;
    int16_t *pcm = malloc(*n * sizeof *pcm + 1);
    for (size_t i = 0; i < *n; i++) {
        double t = (double)i / rate;
        double harmonics = 0;
        for (int h = 1; h <= 10; h++)
            harmonics += sin(t * f0 * h * TAU) / h;
        double syllables = 0.75 + 0.25 * sin(t * 4.0 * TAU);
        pcm[i] = (int16_t)(harmonics * syllables * 7000.0);
    }
    return pcm;
}

/* Digital silence (calloc'ed). */
static int16_t *silence(unsigned ms, unsigned rate, size_t *n)
{
    *n = (size_t)rate * ms / 1000;
    return calloc(*n + 1, sizeof(int16_t));
}

/* ---------------------------------------------------------------------------------------------
 * The agent (on_transcript): what it writes, what it returns, and what it saw.
 * ------------------------------------------------------------------------------------------- */

enum { TEXT_CAP = 512, MAX_TEXTS = 8 };

typedef struct Agent {
    /* Configuration, set before the session starts. */
    const char *chunks[4];     /* written with vb_reply_write, NULL-terminated */
    bool end_reply;            /* call vb_reply_end (and check that a later write is refused) */
    int return_status;         /* returned to the engine as is (may be no VbStatus at all) */
    pthread_t main_thread;
    VbSession *session;        /* the handle vb_session_create gave us */
    /* Observations, written on the agent worker thread. */
    atomic_int calls;
    atomic_int wrong_session;  /* session argument != the handle */
    atomic_int on_main_thread;
    atomic_int failed_calls;   /* a vb_reply_* call inside the callback returned the wrong status */
    char transcript[TEXT_CAP]; /* of the first call */
    atomic_bool has_transcript;
} Agent;

/* The agents in use, so that the callback can tell its own user_data from anything else. */
enum { MAX_AGENTS = 8 };
static Agent *g_agents[MAX_AGENTS];
static atomic_int g_foreign_user_data; /* callbacks whose user_data was no agent of ours */

static VbStatus agent_on_transcript(void *user_data, VbSession *session, const char *transcript,
                                    VbReply *reply)
{
    Agent *agent = NULL;
    for (int i = 0; i < MAX_AGENTS; i++) {
        if (g_agents[i] != NULL && g_agents[i] == user_data)
            agent = g_agents[i];
    }
    if (agent == NULL) {
        atomic_fetch_add(&g_foreign_user_data, 1);
        return VB_ERR_INTERNAL;
    }
    atomic_fetch_add(&agent->calls, 1);
    if (session != agent->session)
        atomic_fetch_add(&agent->wrong_session, 1);
    if (pthread_equal(pthread_self(), agent->main_thread))
        atomic_fetch_add(&agent->on_main_thread, 1);
    if (transcript != NULL && !atomic_load(&agent->has_transcript)) {
        snprintf(agent->transcript, sizeof agent->transcript, "%s", transcript);
        atomic_store(&agent->has_transcript, true);
    }
    if (vb_reply_is_cancelled(reply))
        atomic_fetch_add(&agent->failed_calls, 1);
    for (int i = 0; agent->chunks[i] != NULL; i++) {
        if (vb_reply_write(reply, agent->chunks[i]) != VB_OK)
            atomic_fetch_add(&agent->failed_calls, 1);
    }
    if (agent->end_reply) {
        if (vb_reply_end(reply) != VB_OK)
            atomic_fetch_add(&agent->failed_calls, 1);
        /* After the end the reply is closed. */
        if (vb_reply_write(reply, "too late") != VB_ERR_INVALID_STATE ||
            vb_last_error_message()[0] == '\0')
            atomic_fetch_add(&agent->failed_calls, 1);
    }
    /* An out-of-range value (99) is legal C for an enum and must be validated by the engine. */
    return (VbStatus)agent->return_status;
}

static Agent *agent_new(void)
{
    Agent *agent = calloc(1, sizeof *agent);
    agent->main_thread = pthread_self();
    agent->end_reply = true;
    agent->return_status = VB_OK;
    for (int i = 0; i < MAX_AGENTS; i++) {
        if (g_agents[i] == NULL) {
            g_agents[i] = agent;
            break;
        }
    }
    return agent;
}

/* Only after every session using it has stopped. */
static void agent_free(Agent *agent)
{
    for (int i = 0; i < MAX_AGENTS; i++) {
        if (g_agents[i] == agent)
            g_agents[i] = NULL;
    }
    free(agent);
}

/* ---------------------------------------------------------------------------------------------
 * The host side of one session: polls events (copying what it needs) and plays reply audio the
 * way a sound card would, at real-time pace.
 * ------------------------------------------------------------------------------------------- */

typedef struct Host {
    VbSession *session;
    unsigned in_rate, out_rate;
    /* Events. */
    int counts[16];                    /* by kind */
    int bad_events;                    /* kind out of range, missing text, non-monotonic time */
    uint64_t last_timestamp_us;
    char finals[MAX_TEXTS][TEXT_CAP];  /* VB_EVENT_TRANSCRIPT_FINAL texts */
    char responses[MAX_TEXTS][TEXT_CAP]; /* VB_EVENT_AGENT_RESPONSE texts */
    VbStatus last_error;               /* of the last VB_EVENT_ERROR */
    char last_error_text[TEXT_CAP];
    VbTurnMetrics metrics;             /* of the last VB_EVENT_TURN_METRICS */
    double metrics_at_s;               /* when it was polled */
    double speech_end_s;               /* when say_turn pushed the last voiced piece */
    uint64_t first_dropped_samples;    /* of the first VB_EVENT_AUDIO_DROPPED */
    uint64_t dropped_samples;          /* summed */
    VbSessionState state;              /* from the last VB_EVENT_STATE_CHANGED */
    bool was_speaking;                 /* VB_STATE_SPEAKING was seen */
    bool spoke_and_listens;            /* VB_STATE_LISTENING after VB_STATE_SPEAKING */
    int call_failures;                 /* poll/read calls that failed */
    /* Reply audio. */
    double last_read_s;
    double read_credit;                /* samples the "sound card" may take */
    size_t played, played_nonzero;
    int16_t *capture;                  /* the first seconds of reply audio */
    size_t capture_len, capture_cap;
    /* Barge-in: audio read after VB_EVENT_INTERRUPTED was polled and before the next final
     * transcript was polled (none may be; playout stops at once). */
    bool after_interrupt;
    size_t played_after_interrupt;
    int reads_after_interrupt;
} Host;

static bool event_carries_text(VbEventKind kind)
{
    return kind == VB_EVENT_TRANSCRIPT_PARTIAL || kind == VB_EVENT_TRANSCRIPT_FINAL ||
           kind == VB_EVENT_AGENT_RESPONSE || kind == VB_EVENT_ERROR;
}

static void record_event(Host *h, const VbEvent *ev)
{
    int kind = (int)ev->kind;
    if (kind < 0 || kind > VB_EVENT_AUDIO_DROPPED) {
        h->bad_events++;
        return;
    }
    h->counts[kind]++;
    if (ev->timestamp_us < h->last_timestamp_us)
        h->bad_events++;
    h->last_timestamp_us = ev->timestamp_us;
    if (event_carries_text(ev->kind) && ev->text == NULL)
        h->bad_events++;
    if ((ev->kind == VB_EVENT_ERROR) != (ev->error != VB_OK))
        h->bad_events++;
    const char *text = ev->text ? ev->text : "";
    int n;
    switch (ev->kind) {
    case VB_EVENT_STATE_CHANGED:
        h->state = ev->state;
        if (ev->state == VB_STATE_SPEAKING)
            h->was_speaking = true;
        if (ev->state == VB_STATE_LISTENING && h->was_speaking)
            h->spoke_and_listens = true;
        break;
    case VB_EVENT_TRANSCRIPT_FINAL:
        n = h->counts[kind] - 1;
        if (n < MAX_TEXTS)
            snprintf(h->finals[n], TEXT_CAP, "%s", text);
        h->after_interrupt = false;
        break;
    case VB_EVENT_AGENT_RESPONSE:
        n = h->counts[kind] - 1;
        if (n < MAX_TEXTS)
            snprintf(h->responses[n], TEXT_CAP, "%s", text);
        break;
    case VB_EVENT_INTERRUPTED:
        h->after_interrupt = true;
        break;
    case VB_EVENT_TURN_METRICS:
        h->metrics = ev->metrics;
        h->metrics_at_s = now_s();
        break;
    case VB_EVENT_ERROR:
        printf("    VB_EVENT_ERROR %s: \"%s\"\n", vb_status_str((int32_t)ev->error), text);
        h->last_error = ev->error;
        snprintf(h->last_error_text, TEXT_CAP, "%s", text);
        break;
    case VB_EVENT_AUDIO_DROPPED:
        if (h->dropped_samples == 0)
            h->first_dropped_samples = ev->dropped_samples;
        h->dropped_samples += ev->dropped_samples;
        break;
    default:
        break;
    }
}

/* Takes what the "sound card" consumed since the last call (real-time pace, no debt). */
static void play(Host *h)
{
    enum { CHUNK = 4096 };
    int16_t buf[CHUNK];
    double now = now_s();
    if (h->last_read_s == 0)
        h->last_read_s = now;
    h->read_credit += (now - h->last_read_s) * h->out_rate;
    h->last_read_s = now;
    if (h->read_credit > CHUNK)
        h->read_credit = CHUNK;
    size_t want = (size_t)h->read_credit;
    if (want == 0)
        return;
    h->read_credit -= (double)want;
    size_t written = 0;
    if (vb_session_read_audio(h->session, buf, want, &written) != VB_OK || written > want) {
        h->call_failures++;
        return;
    }
    h->played += written;
    for (size_t i = 0; i < written; i++) {
        if (buf[i] != 0)
            h->played_nonzero++;
    }
    if (h->after_interrupt) {
        h->played_after_interrupt += written;
        h->reads_after_interrupt++;
    }
    size_t room = h->capture_cap - h->capture_len;
    size_t keep = written < room ? written : room;
    memcpy(h->capture + h->capture_len, buf, keep * sizeof *buf);
    h->capture_len += keep;
}

/* Polls every waiting event, then plays. */
static void pump(Host *h)
{
    for (;;) {
        VbEvent ev;
        bool has_event = false;
        if (vb_session_poll_event(h->session, &ev, &has_event) != VB_OK) {
            h->call_failures++;
            break;
        }
        if (!has_event)
            break;
        record_event(h, &ev);
    }
    play(h);
}

/* Pushes pcm in 20 ms pieces at real-time pace, pumping between pieces. Returns false when a
 * push was refused (at real-time pace the input ring never fills). */
static bool push_realtime(Host *h, const int16_t *pcm, size_t n)
{
    size_t piece = h->in_rate / 50;
    double start = now_s();
    bool ok = true;
    for (size_t i = 0; i * piece < n; i++) {
        sleep_s(start + 0.020 * (double)i - now_s());
        size_t off = i * piece;
        size_t len = n - off < piece ? n - off : piece;
        size_t accepted = 0;
        VbStatus s = vb_session_process_audio(h->session, pcm + off, len, &accepted);
        if (s != VB_OK || accepted != len) {
            printf("    push at %zu ms: %s, %zu of %zu accepted\n", off * 1000 / h->in_rate,
                   vb_status_str((int32_t)s), accepted, len);
            ok = false;
        }
        pump(h);
    }
    return ok;
}

/* One user turn at f0: speech_ms of voiced audio, then 800 ms of silence (turn.silence_ms is
 * 500 by default), at real-time pace. */
static bool say_turn(Host *h, double f0, unsigned speech_ms)
{
    size_t n_voice, n_quiet;
    int16_t *voice = speech(f0, speech_ms, h->in_rate, &n_voice);
    int16_t *quiet = silence(800, h->in_rate, &n_quiet);
    bool ok = push_realtime(h, voice, n_voice);
    h->speech_end_s = now_s();
    ok = push_realtime(h, quiet, n_quiet) && ok;
    free(voice);
    free(quiet);
    return ok;
}

/* Pumps until done(h) holds or timeout_s passed; returns done(h). */
static bool wait_until(Host *h, bool (*done)(const Host *), double timeout_s)
{
    double deadline = now_s() + timeout_s;
    while (!done(h)) {
        if (now_s() > deadline)
            return false;
        pump(h);
        sleep_s(0.005);
    }
    return true;
}

static bool got_turn_metrics(const Host *h) { return h->counts[VB_EVENT_TURN_METRICS] > 0; }
static bool got_second_final(const Host *h) { return h->counts[VB_EVENT_TRANSCRIPT_FINAL] > 1; }
static bool got_interrupted(const Host *h) { return h->counts[VB_EVENT_INTERRUPTED] > 0; }
static bool got_error(const Host *h) { return h->counts[VB_EVENT_ERROR] > 0; }
static bool got_dropped(const Host *h) { return h->counts[VB_EVENT_AUDIO_DROPPED] > 0; }
static bool got_speech_started(const Host *h) { return h->counts[VB_EVENT_SPEECH_STARTED] > 0; }
static bool reply_audio_flows(const Host *h) { return h->played_nonzero > 0; }
static bool reply_played_out(const Host *h)
{
    return h->spoke_and_listens && h->counts[VB_EVENT_AGENT_RESPONSE] > 0;
}

static const char *const BACKEND_JSON =
    "{\"provider\":\"local\",\"stt_provider\":\"test-pitch-stt\",\"tts_provider\":\"test-tone-tts\"}";
static const char *const SESSION_48K = "{\"input_sample_rate\":48000,\"output_sample_rate\":48000}";

/* A started backend on the test providers (NULL on failure, reported). */
static VbBackend *start_backend(const char *json)
{
    VbBackend *backend = NULL;
    if (!CHECK_STATUS(vb_backend_create(json, &backend), VB_OK))
        return NULL;
    if (!CHECK_STATUS(vb_backend_start(backend), VB_OK)) {
        vb_backend_free(backend);
        return NULL;
    }
    return backend;
}

/* Creates and starts a session with `agent` (may be NULL) at `rate` in and out. */
static bool open_host(Host *h, VbBackend *backend, unsigned rate, Agent *agent)
{
    memset(h, 0, sizeof *h);
    h->in_rate = h->out_rate = rate;
    h->capture_cap = (size_t)rate * 3;
    h->capture = calloc(h->capture_cap, sizeof *h->capture);
    char json[128];
    snprintf(json, sizeof json, "{\"input_sample_rate\":%u,\"output_sample_rate\":%u}", rate, rate);
    VbCallbacks callbacks = {agent, agent_on_transcript, NULL};
    if (!CHECK_STATUS(vb_session_create(backend, json, &callbacks, &h->session), VB_OK))
        return false;
    if (agent != NULL)
        agent->session = h->session;
    return CHECK_STATUS(vb_session_start(h->session), VB_OK);
}

static void close_host(Host *h)
{
    if (h->session != NULL) {
        CHECK_STATUS(vb_session_stop(h->session), VB_OK);
        vb_session_free(h->session);
    }
    free(h->capture);
    memset(h, 0, sizeof *h);
}

/* Positive-going zero crossings per second of pcm at rate: the frequency of a pure tone. */
static double tone_hz(const int16_t *pcm, size_t n, unsigned rate)
{
    size_t crossings = 0;
    for (size_t i = 1; i < n; i++) {
        if (pcm[i - 1] < 0 && pcm[i] >= 0)
            crossings++;
    }
    return n ? (double)crossings * rate / (double)n : 0;
}

/* ---------------------------------------------------------------------------------------------
 * Case: a full turn, speech in at 48 kHz, reply audio out at 48 kHz.
 * ------------------------------------------------------------------------------------------- */

static void case_full_turn(void)
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

static void case_barge_in(void)
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
 * Case: every status bad input can produce, with a message, and untouched out-parameters.
 * ------------------------------------------------------------------------------------------- */

static char g_sentinel_storage;
#define SENTINEL ((void *)&g_sentinel_storage)

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

static void case_bad_input(void)
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

/* ---------------------------------------------------------------------------------------------
 * Case: input overrun. One call larger than the input ring (500 ms by default).
 * ------------------------------------------------------------------------------------------- */

static void case_input_overrun(void)
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

static void case_processor(void)
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

static void case_on_event(void)
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

static void case_health(void)
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

/* ---------------------------------------------------------------------------------------------
 * Case: admission of sessions through a C auth hook and a C rate limiter.
 * ------------------------------------------------------------------------------------------- */

typedef struct Access {
    atomic_int authenticate_calls;
    atomic_int authorize_calls;
    atomic_int allow_calls;
    atomic_int wait_calls;
    atomic_uint last_wait_ms;
    char last_operation[64];
    char last_metadata[256];
} Access;

/* Tokens "token-for-<user>" are valid; a few others misbehave on purpose. */
static VbStatus access_authenticate(void *user_data, const char *token, const char *metadata_json,
                                    char *user_id_out, size_t user_id_capacity)
{
    Access *access = user_data;
    atomic_fetch_add(&access->authenticate_calls, 1);
    snprintf(access->last_metadata, sizeof access->last_metadata, "%s", metadata_json);
    if (strcmp(token, "overflow") == 0) { /* no NUL anywhere in the buffer */
        memset(user_id_out, 'x', user_id_capacity);
        return VB_OK;
    }
    if (strcmp(token, "offline") == 0)
        return VB_ERR_CONNECTION_FAILED;
    if (strcmp(token, "bogus-status") == 0)
        return (VbStatus)77;
    if (strncmp(token, "token-for-", 10) != 0)
        return VB_ERR_UNAUTHORIZED;
    snprintf(user_id_out, user_id_capacity, "%s", token + 10);
    return VB_OK;
}

static VbStatus access_authorize(void *user_data, const char *user_id, const char *operation)
{
    Access *access = user_data;
    atomic_fetch_add(&access->authorize_calls, 1);
    snprintf(access->last_operation, sizeof access->last_operation, "%s", operation);
    return strcmp(user_id, "eve") == 0 ? VB_ERR_UNAUTHORIZED : VB_OK;
}

static VbStatus access_allow(void *user_data, const char *key)
{
    Access *access = user_data;
    atomic_fetch_add(&access->allow_calls, 1);
    return strcmp(key, "blocked") == 0 ? VB_ERR_RATE_LIMITED : VB_OK;
}

static VbStatus access_wait(void *user_data, const char *key, uint32_t timeout_ms)
{
    Access *access = user_data;
    atomic_fetch_add(&access->wait_calls, 1);
    atomic_store(&access->last_wait_ms, timeout_ms);
    return strcmp(key, "blocked") == 0 ? VB_ERR_RATE_LIMITED : VB_OK;
}

/* vb_session_create with `json` fails with `want`, writes nothing and creates nothing. */
static void check_refused(const char *file, int line, VbBackend *backend, const char *json,
                          VbStatus want, const char *needle)
{
    Agent *agent = agent_new();
    VbCallbacks callbacks = {agent, agent_on_transcript, NULL};
    VbSession *out = SENTINEL;
    uint32_t before = vb_backend_active_sessions(backend);
    char expr[512];
    snprintf(expr, sizeof expr, "vb_session_create(%.400s)", json);
    VbStatus got = vb_session_create(backend, json, &callbacks, &out);
    if (status_is(file, line, expr, got, want) && strstr(g_last_message, needle) == NULL) {
        snprintf(expr, sizeof expr, "message \"%.300s\" names \"%s\"", g_last_message, needle);
        fail_at(file, line, expr);
    }
    if (out != SENTINEL)
        fail_at(file, line, "*out_session was written by a refused vb_session_create");
    if (vb_backend_active_sessions(backend) != before)
        fail_at(file, line, "a refused session was counted");
    agent_free(agent);
}
#define CHECK_REFUSED(backend, json, want, needle)                                             \
    check_refused(__FILE__, __LINE__, (backend), (json), (want), (needle))

static void case_access(void)
{
    static Access access; /* valid until the backend is freed */
    memset(&access, 0, sizeof access);
    VbBackend *backend = NULL;
    VbSession *carol = NULL, *alice = NULL;
    Agent *agent = agent_new();
    VbCallbacks callbacks = {agent, agent_on_transcript, NULL};
    VbAuthHook hook = {&access, access_authenticate, access_authorize};
    VbRateLimiter limiter = {&access, access_allow, access_wait};

    REQUIRE_STATUS(vb_backend_create("{\"provider\":\"local\",\"stt_provider\":\"test-pitch-stt\","
                                     "\"tts_provider\":\"test-tone-tts\",\"auth\":{\"required\":true}}",
                                     &backend),
                   VB_OK);
    /* auth.required with no hook to check tokens cannot start. */
    CHECK_STATUS(vb_backend_start(backend), VB_ERR_INVALID_CONFIG);
    CHECK_MESSAGE_HAS("auth.required");

    CHECK_STATUS(vb_backend_set_auth_hook(NULL, &hook), VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_backend_set_auth_hook(backend, NULL), VB_ERR_INVALID_ARGUMENT);
    VbAuthHook half = {&access, access_authenticate, NULL};
    CHECK_STATUS(vb_backend_set_auth_hook(backend, &half), VB_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("authorize");
    VbRateLimiter no_allow = {&access, NULL, access_wait};
    CHECK_STATUS(vb_backend_set_rate_limiter(backend, &no_allow), VB_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("allow");
    CHECK_STATUS(vb_backend_set_rate_limiter(backend, NULL), VB_ERR_INVALID_ARGUMENT);

    REQUIRE_STATUS(vb_backend_set_auth_hook(backend, &hook), VB_OK);
    REQUIRE_STATUS(vb_backend_set_rate_limiter(backend, &limiter), VB_OK);
    REQUIRE_STATUS(vb_backend_start(backend), VB_OK);
    CHECK_STATUS(vb_backend_set_auth_hook(backend, &hook), VB_ERR_INVALID_STATE);
    CHECK_STATUS(vb_backend_set_rate_limiter(backend, &limiter), VB_ERR_INVALID_STATE);

    /* Refusals: status, reason, nothing created, the token never in the message. */
    CHECK_REFUSED(backend, "{}", VB_ERR_UNAUTHORIZED, "no auth_token");
    CHECK_REFUSED(backend, "{\"auth_token\":\"forged-secret-token\"}", VB_ERR_UNAUTHORIZED,
                  "refused the token");
    CHECK(strstr(g_last_message, "forged-secret-token") == NULL);
    CHECK_REFUSED(backend, "{\"auth_token\":\"overflow\"}", VB_ERR_UNAUTHORIZED,
                  "not NUL-terminated");
    CHECK_REFUSED(backend, "{\"auth_token\":\"offline\"}", VB_ERR_CONNECTION_FAILED,
                  "authenticate failed");
    CHECK_REFUSED(backend, "{\"auth_token\":\"bogus-status\"}", VB_ERR_UNAUTHORIZED,
                  "no VbStatus");
    CHECK_REFUSED(backend, "{\"auth_token\":\"token-for-eve\"}", VB_ERR_UNAUTHORIZED,
                  "'eve'");
    CHECK(strcmp(access.last_operation, "session.create") == 0);
    CHECK_REFUSED(backend, "{\"user_id\":\"bob\",\"auth_token\":\"token-for-carol\"}",
                  VB_ERR_UNAUTHORIZED, "'bob'");
    CHECK_REFUSED(backend, "{\"auth_token\":\"token-for-blocked\"}", VB_ERR_RATE_LIMITED,
                  "'blocked'");
    /* Only the authorized session reached the limiter. */
    CHECK(atomic_load(&access.allow_calls) == 1);
    CHECK(vb_backend_active_sessions(backend) == 0);

    /* Admitted: the hook saw the metadata; a waiting session used the limiter's wait. */
    CHECK_STATUS(vb_session_create(backend,
                                   "{\"auth_token\":\"token-for-carol\",\"metadata\":{\"app\":\"c\"}}",
                                   &callbacks, &carol),
                 VB_OK);
    CHECK(strstr(access.last_metadata, "\"app\":\"c\"") != NULL);
    CHECK(strcmp(access.last_operation, "session.create") == 0);
    CHECK_STATUS(vb_session_create(backend,
                                   "{\"auth_token\":\"token-for-alice\",\"admission_wait_ms\":250}",
                                   &callbacks, &alice),
                 VB_OK);
    CHECK(atomic_load(&access.wait_calls) == 1);
    CHECK(atomic_load(&access.last_wait_ms) == 250);
    CHECK(vb_backend_active_sessions(backend) == 2);
    CHECK_STATUS(vb_session_start(carol), VB_OK);

done:
    vb_session_free(carol);
    vb_session_free(alice);
    vb_backend_free(backend);
    agent_free(agent);
}

/* ---------------------------------------------------------------------------------------------
 * Case: session persistence. A child process (this program again, with VB_PERSISTENCE_CHILD
 * set) holds a turn on a store file and is killed with SIGKILL; a backend on the same file
 * recovers the session, resumes it with its history and goes on; its stop deletes the record.
 * ------------------------------------------------------------------------------------------- */

#define PERSIST_PATH "persistence-case/sessions.redb"
static const char *const PERSIST_BACKEND_JSON =
    "{\"provider\":\"local\",\"stt_provider\":\"test-pitch-stt\",\"tts_provider\":\"test-tone-tts\","
    "\"persistence\":{\"path\":\"" PERSIST_PATH "\"}}";

/* Turns in a vb_session_history array. */
static int history_turns(const char *json)
{
    int n = 0;
    for (const char *p = json; (p = strstr(p, "\"transcript\":")) != NULL; p++)
        n++;
    return n;
}

/* The child: one turn, flushed to disk, its session id on stdout, then it waits to be killed. */
static void persistence_child(void)
{
    Host h = {0};
    Agent *agent = agent_new();
    agent->chunks[0] = "Noted.";
    VbBackend *backend = start_backend(PERSIST_BACKEND_JSON);
    REQUIRE(backend != NULL);
    REQUIRE(open_host(&h, backend, 16000, agent));
    CHECK(say_turn(&h, 150.0, 800));
    REQUIRE(wait_until(&h, reply_played_out, 30.0));
    REQUIRE_STATUS(vb_backend_flush_store(backend), VB_OK);
    char id[128];
    size_t needed = 0;
    REQUIRE_STATUS(vb_session_id(h.session, id, sizeof id, &needed), VB_OK);
    printf("persisted session %s\n", id);
    fflush(stdout);
    sleep_s(60.0); /* the parent kills it long before */
done:
    close_host(&h);
    vb_backend_free(backend);
    agent_free(agent);
}

static void case_persistence(void)
{
    if (getenv("VB_PERSISTENCE_CHILD") != NULL) {
        persistence_child();
        return;
    }
    VbBackend *backend = NULL, *later = NULL;
    VbSession *session = NULL, *out = SENTINEL;
    Agent *agent = agent_new();
    agent->chunks[0] = "Noted.";
    VbCallbacks callbacks = {agent, agent_on_transcript, NULL};
    Host h = {0};
    FILE *from_child = NULL;
    char id[128] = "", line[512], buf[4096], expected[256];
    size_t needed = 0;
    int fds[2], status = 0;
    pid_t pid = -1;

    unlink(PERSIST_PATH);
    REQUIRE(pipe(fds) == 0);
    fflush(stdout);
    setenv("VB_PERSISTENCE_CHILD", "1", 1);
    pid = fork();
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execl("/proc/self/exe", "host_test", "persistence", (char *)NULL);
        _exit(127);
    }
    unsetenv("VB_PERSISTENCE_CHILD");
    close(fds[1]);
    REQUIRE(pid > 0);
    from_child = fdopen(fds[0], "r");
    while (id[0] == '\0' && fgets(line, sizeof line, from_child) != NULL) {
        printf("    child: %s", line);
        if (sscanf(line, "persisted session %127s", id) != 1)
            id[0] = '\0';
    }
    REQUIRE(id[0] != '\0');
    /* kill -9 while its session is active. */
    CHECK(kill(pid, SIGKILL) == 0);
    CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    pid = -1;

    backend = start_backend(PERSIST_BACKEND_JSON);
    REQUIRE(backend != NULL);
    /* vb_backend_recovered_sessions: the buffer rules, then the session with its one turn. */
    snprintf(expected, sizeof expected, "[{\"session_id\":\"%s\",\"user_id\":\"\",\"turns\":1}]", id);
    memset(buf, 'X', sizeof buf);
    CHECK_STATUS(vb_backend_recovered_sessions(backend, buf, 3, &needed), VB_ERR_INVALID_ARGUMENT);
    CHECK(needed == strlen(expected) + 1);
    CHECK(buf[0] == 'X' && buf[2] == 'X');
    needed = 0;
    CHECK_STATUS(vb_backend_recovered_sessions(backend, NULL, 0, &needed), VB_ERR_INVALID_ARGUMENT);
    CHECK(needed == strlen(expected) + 1);
    CHECK_STATUS(vb_backend_recovered_sessions(NULL, buf, sizeof buf, &needed),
                 VB_ERR_INVALID_ARGUMENT);
    REQUIRE_STATUS(vb_backend_recovered_sessions(backend, buf, sizeof buf, &needed), VB_OK);
    CHECK(strcmp(buf, expected) == 0);

    /* vb_session_resume: bad arguments and unknown ids leave *out_session alone; a refused
     * resume leaves the session recoverable. */
    CHECK_STATUS(vb_session_resume(NULL, id, &callbacks, &out), VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_session_resume(backend, NULL, &callbacks, &out), VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_session_resume(backend, id, &callbacks, NULL), VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_session_resume(backend, "sess-nobody", &callbacks, &out), VB_ERR_NOT_FOUND);
    CHECK_MESSAGE_HAS("sess-nobody");
    CHECK_STATUS(vb_session_resume(backend, id, NULL, &out), VB_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("on_transcript");
    CHECK(out == SENTINEL);
    REQUIRE_STATUS(vb_session_resume(backend, id, &callbacks, &session), VB_OK);
    agent->session = session;
    CHECK_STATUS(vb_session_resume(backend, id, &callbacks, &out), VB_ERR_NOT_FOUND);
    CHECK(out == SENTINEL);
    CHECK_STATUS(vb_backend_recovered_sessions(backend, buf, sizeof buf, &needed), VB_OK);
    CHECK(strcmp(buf, "[]") == 0);
    char resumed_id[128];
    CHECK_STATUS(vb_session_id(session, resumed_id, sizeof resumed_id, &needed), VB_OK);
    CHECK(strcmp(resumed_id, id) == 0);

    /* vb_session_history: the child's turn, with the buffer rules. */
    REQUIRE_STATUS(vb_session_history(session, buf, sizeof buf, &needed), VB_OK);
    printf("    history: %s\n", buf);
    CHECK(history_turns(buf) == 1);
    CHECK(strncmp(buf, "[{\"transcript\":\"pitch 150 hz for ", 33) == 0);
    CHECK(strstr(buf, "\"reply\":\"Noted.\",\"interrupted\":false}]") != NULL);
    size_t size = needed;
    CHECK(size == strlen(buf) + 1);
    memset(buf, 'X', sizeof buf);
    CHECK_STATUS(vb_session_history(session, buf, size - 1, &needed), VB_ERR_INVALID_ARGUMENT);
    CHECK(needed == size && buf[0] == 'X');
    CHECK_STATUS(vb_session_history(NULL, buf, sizeof buf, &needed), VB_ERR_INVALID_ARGUMENT);

    /* The conversation goes on: the next turn is appended. */
    h.session = session;
    session = NULL;
    h.in_rate = h.out_rate = 16000;
    h.capture_cap = 16000;
    h.capture = calloc(h.capture_cap, sizeof *h.capture);
    REQUIRE_STATUS(vb_session_start(h.session), VB_OK);
    CHECK(say_turn(&h, 220.0, 800));
    CHECK(wait_until(&h, reply_played_out, 30.0));
    REQUIRE_STATUS(vb_session_history(h.session, buf, sizeof buf, &needed), VB_OK);
    CHECK(history_turns(buf) == 2);
    CHECK(strstr(buf, "{\"transcript\":\"pitch 220 hz for ") != NULL);
    CHECK_STATUS(vb_backend_flush_store(backend), VB_OK);
    CHECK_STATUS(vb_backend_flush_store(NULL), VB_ERR_INVALID_ARGUMENT);

    /* Stopped: completed, so its record is gone; a later backend recovers nothing. */
    close_host(&h);
    vb_backend_free(backend);
    backend = NULL;
    later = start_backend(PERSIST_BACKEND_JSON);
    REQUIRE(later != NULL);
    CHECK_STATUS(vb_backend_recovered_sessions(later, buf, sizeof buf, &needed), VB_OK);
    CHECK(strcmp(buf, "[]") == 0);

done:
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    if (from_child != NULL)
        fclose(from_child);
    vb_session_free(session);
    close_host(&h);
    vb_backend_free(later);
    vb_backend_free(backend);
    agent_free(agent);
    unlink(PERSIST_PATH);
}

/* ---------------------------------------------------------------------------------------------
 * The runner.
 * ------------------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    void (*run)(void);
} CASES[] = {
    {"full_turn", case_full_turn},
    {"barge_in", case_barge_in},
    {"bad_input", case_bad_input},
    {"input_overrun", case_input_overrun},
    {"processor", case_processor},
    {"on_event", case_on_event},
    {"health", case_health},
    {"access", case_access},
    {"persistence", case_persistence},
};

int main(int argc, char **argv)
{
    int passed = 0, failed = 0;
    printf("libvoicebackend %s, C ABI %u\n", vb_version(), (unsigned)vb_abi_version());
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        if (argc > 1 && strcmp(argv[1], CASES[i].name) != 0)
            continue;
        printf("case %s\n", CASES[i].name);
        fflush(stdout);
        g_case_failures = 0;
        double start = now_s();
        CASES[i].run();
        bool ok = g_case_failures == 0;
        printf("%s %s (%.1f s)\n", ok ? "PASS" : "FAIL", CASES[i].name, now_s() - start);
        fflush(stdout);
        if (ok)
            passed++;
        else
            failed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 && passed > 0 ? 0 : 1;
}
