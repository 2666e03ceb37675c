/*
 * host.c: the shared side of the C host test (declared in host_test.h): checks, time and audio,
 * the agent, and the Host that polls events and plays reply audio.
 */
#include "host_test.h"

/* ---------------------------------------------------------------------------------------------
 * Checks.
 * ------------------------------------------------------------------------------------------- */

int g_case_failures;
char g_last_message[1024];
char g_sentinel_storage;

void fail_at(const char *file, int line, const char *what)
{
    printf("    %s:%d: CHECK failed: %s\n", file, line, what);
    fflush(stdout);
    g_case_failures++;
}

/* Called with the status of the call just made, before any other vb_ call on this thread. */
bool status_is(const char *file, int line, const char *expr, VbStatus got, VbStatus want)
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

/* ---------------------------------------------------------------------------------------------
 * Time and audio.
 * ------------------------------------------------------------------------------------------- */

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void sleep_s(double seconds)
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
int16_t *speech(double f0, unsigned ms, unsigned rate, size_t *n)
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
int16_t *silence(unsigned ms, unsigned rate, size_t *n)
{
    *n = (size_t)rate * ms / 1000;
    return calloc(*n + 1, sizeof(int16_t));
}

/* Positive-going zero crossings per second of pcm at rate: the frequency of a pure tone. */
double tone_hz(const int16_t *pcm, size_t n, unsigned rate)
{
    size_t crossings = 0;
    for (size_t i = 1; i < n; i++) {
        if (pcm[i - 1] < 0 && pcm[i] >= 0)
            crossings++;
    }
    return n ? (double)crossings * rate / (double)n : 0;
}

/* ---------------------------------------------------------------------------------------------
 * The agent.
 * ------------------------------------------------------------------------------------------- */

/* The agents in use, so that the callback can tell its own user_data from anything else. */
enum { MAX_AGENTS = 8 };
static Agent *g_agents[MAX_AGENTS];
atomic_int g_foreign_user_data; /* callbacks whose user_data was no agent of ours */

VbStatus agent_on_transcript(void *user_data, VbSession *session, const char *transcript,
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

Agent *agent_new(void)
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
void agent_free(Agent *agent)
{
    for (int i = 0; i < MAX_AGENTS; i++) {
        if (g_agents[i] == agent)
            g_agents[i] = NULL;
    }
    free(agent);
}

/* ---------------------------------------------------------------------------------------------
 * The host side of one session.
 * ------------------------------------------------------------------------------------------- */

static bool event_carries_text(VbEventKind kind)
{
    return kind == VB_EVENT_TRANSCRIPT_PARTIAL || kind == VB_EVENT_TRANSCRIPT_FINAL ||
           kind == VB_EVENT_AGENT_RESPONSE || kind == VB_EVENT_ERROR;
}

void record_event(Host *h, const VbEvent *ev)
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
void pump(Host *h)
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
bool push_realtime(Host *h, const int16_t *pcm, size_t n)
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
bool say_turn(Host *h, double f0, unsigned speech_ms)
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
bool wait_until(Host *h, bool (*done)(const Host *), double timeout_s)
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

bool got_turn_metrics(const Host *h) { return h->counts[VB_EVENT_TURN_METRICS] > 0; }
bool got_second_final(const Host *h) { return h->counts[VB_EVENT_TRANSCRIPT_FINAL] > 1; }
bool got_interrupted(const Host *h) { return h->counts[VB_EVENT_INTERRUPTED] > 0; }
bool got_error(const Host *h) { return h->counts[VB_EVENT_ERROR] > 0; }
bool got_dropped(const Host *h) { return h->counts[VB_EVENT_AUDIO_DROPPED] > 0; }
bool got_speech_started(const Host *h) { return h->counts[VB_EVENT_SPEECH_STARTED] > 0; }
bool reply_audio_flows(const Host *h) { return h->played_nonzero > 0; }
bool reply_played_out(const Host *h)
{
    return h->spoke_and_listens && h->counts[VB_EVENT_AGENT_RESPONSE] > 0;
}

const char *const BACKEND_JSON =
    "{\"provider\":\"local\",\"stt_provider\":\"test-pitch-stt\",\"tts_provider\":\"test-tone-tts\"}";
const char *const SESSION_48K = "{\"input_sample_rate\":48000,\"output_sample_rate\":48000}";

/* A started backend on the test providers (NULL on failure, reported). */
VbBackend *start_backend(const char *json)
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
bool open_host(Host *h, VbBackend *backend, unsigned rate, Agent *agent)
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

void close_host(Host *h)
{
    if (h->session != NULL) {
        CHECK_STATUS(vb_session_stop(h->session), VB_OK);
        vb_session_free(h->session);
    }
    free(h->capture);
    memset(h, 0, sizeof *h);
}
