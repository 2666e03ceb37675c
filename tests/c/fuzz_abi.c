/*
 * fuzz_abi.c: a libFuzzer target that drives the C ABI of libvoicebackend with random call
 * sequences, under AddressSanitizer and UndefinedBehaviorSanitizer on the C side.
 *
 * Each input is a little program: its bytes decode into up to MAX_OPS operations on two backend
 * slots and four session slots (create, start, stop, free, audio in and out as PCM and Opus,
 * events, say, interrupt, hooks, processors, buffers, logging, ...), with valid and broken
 * arguments: configurations from a list or from the input's bytes (bad JSON, wrong rates,
 * unknown keys), NULL handles and pointers, calls in the wrong state, buffers of every size,
 * room-service calls on a backend that has no room service. Agents (on_transcript) follow a
 * script from the input too: they write, end, fail, check for cancellation, read the history,
 * say, interrupt or stop from inside the callback, and return any int. Whatever is left is freed
 * at the end of the input; nothing is used after it was freed.
 *
 * What it checks, besides "no crash, no hang (libFuzzer's -timeout), no ASan/UBSan report":
 *   - every status returned is a VbStatus with a name, and vb_last_error_message() is "" after a
 *     success and a message after a failure (on every thread: the agent's calls too);
 *   - a failed call leaves its out-parameters alone;
 *   - buffers the library fills are exact-size heap blocks (ASan sees a write past the end), and
 *     `*needed`, `*written`, `*accepted` keep their promises (needed includes the NUL and the
 *     text fits on success; written <= capacity; accepted <= count, == count on VB_OK);
 *   - events have a known kind and state, a valid status, readable text where the kind carries
 *     text, and time stamps that never go back;
 *   - the library's buffers handed to host code (processor frames, the auth hook's user id
 *     buffer, strings) are as long as it says (the callbacks touch every byte).
 *
 * The Rust side is not instrumented: ASan checks the C side's memory and, since the library
 * allocates through the same malloc, the bounds of the library's heap blocks the C side reads
 * and writes. Extra counters (libFuzzer's __libfuzzer_extra_counters) report which statuses each
 * call returned and which events arrived in which state, so that inputs reaching new states of
 * the engine (a turn transcribed, a reply spoken, a barge-in) are kept.
 *
 * Built and run by scripts/fuzz-abi.sh:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I include tests/c/fuzz_abi.c \
 *         -L<dir> -lvoicebackend -Wl,-rpath,<dir> -lopus -lpthread -lm
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <math.h>
#include <opus/opus.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "voicebackend.h"

/* ---------------------------------------------------------------------------------------------
 * Checks and coverage features.
 * ------------------------------------------------------------------------------------------- */

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "fuzz_abi: %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fprintf(stderr, "\n");                                                             \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

enum { EXTRA_COUNTERS = 1 << 12 };
/* libFuzzer counts every non-zero byte here as a feature, like an edge of the coverage map. */
__attribute__((used, section("__libfuzzer_extra_counters"))) static uint8_t g_features[EXTRA_COUNTERS];

static void feature(unsigned area, unsigned a, unsigned b)
{
    unsigned index = (area * 97u + a) * 31u + b;
    uint8_t *counter = &g_features[index % EXTRA_COUNTERS];
    /* Racy increments from the library's threads only blur a counter's bucket. */
    if (*counter < 255)
        (*counter)++;
}

/* What the whole run reached, printed at exit (how deep random call sequences get). */
/* The last event kind of the header. */
#define LAST_EVENT_KIND VB_EVENT_DTMF

static atomic_ulong g_events[LAST_EVENT_KIND + 1], g_agent_calls, g_backends, g_sessions,
    g_samples_read, g_packets_read, g_processor_frames, g_inputs, g_threads_kept;

static void print_summary(void)
{
    static const char *const KINDS[] = {"state", "speech start", "speech stop", "partial",
                                        "final", "response", "interrupted", "metrics", "error",
                                        "dropped", "dtmf"};
    fprintf(stderr, "fuzz_abi: %lu inputs; %lu backends and %lu sessions created; events:",
            (unsigned long)g_inputs, (unsigned long)g_backends, (unsigned long)g_sessions);
    for (int k = 0; k <= LAST_EVENT_KIND; k++)
        fprintf(stderr, " %s %lu%s", KINDS[k], (unsigned long)g_events[k],
                k < LAST_EVENT_KIND ? "," : ";");
    fprintf(stderr,
            " agent calls %lu, reply samples read %lu, Opus packets read %lu, processor frames "
            "%lu; threads still running 2 s after everything was freed: %lu\n",
            (unsigned long)g_agent_calls, (unsigned long)g_samples_read,
            (unsigned long)g_packets_read, (unsigned long)g_processor_frames,
            (unsigned long)g_threads_kept);
}

/* Threads of this process. */
static unsigned thread_count(void)
{
    unsigned n = 0;
    DIR *dir = opendir("/proc/self/task");
    if (!dir)
        return 0;
    for (struct dirent *e; (e = readdir(dir));)
        n += e->d_name[0] != '.';
    closedir(dir);
    return n;
}

static unsigned g_quiet_threads;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    atexit(print_summary);
    g_quiet_threads = thread_count();
    return 0;
}

/* Call sites that report their status as a feature. */
enum Call {
    C_BACKEND_CREATE = 1, C_BACKEND_START, C_BACKEND_STOP, C_HEALTH, C_AUTH_HOOK, C_RATE_LIMITER,
    C_INCOMING, C_PROCESSOR, C_RECOVERED, C_REGISTRY, C_ROOM_SERVICE, C_DISCARD, C_FLUSH,
    C_RESUME, C_SESSION_CREATE, C_SESSION_START, C_SESSION_STOP, C_PROCESS_AUDIO, C_READ_AUDIO,
    C_POLL, C_SAY, C_INTERRUPT, C_SESSION_ID, C_HISTORY, C_WRITABLE, C_PROCESS_OPUS,
    C_READ_OPUS, C_LOG, C_REPLY_WRITE, C_REPLY_END, C_REPLY_FAIL, C_AGENT_HISTORY, C_AGENT_SAY,
    C_AGENT_INTERRUPT, C_AGENT_STOP, C_NULLS,
};

/* Checks a status returned by a vb_ call just made on this thread, and the thread's last error
 * message that goes with it. Returns the status. */
static VbStatus checked(enum Call call, VbStatus status)
{
    int raw = (int)status;
    const char *message = vb_last_error_message();
    CHECK(message != NULL, "call %d: vb_last_error_message() is NULL", call);
    size_t len = strlen(message);
    CHECK(raw >= VB_OK && raw <= VB_ERR_INTERNAL, "call %d returned %d, no VbStatus", call, raw);
    if (raw == VB_OK)
        CHECK(len == 0, "call %d succeeded but the last error is \"%s\"", call, message);
    else
        CHECK(len > 0, "call %d failed with %d but the last error message is empty", call, raw);
    const char *name = vb_status_str(raw);
    CHECK(name != NULL && strncmp(name, "VB_", 3) == 0 && strcmp(name, "VB_STATUS_UNKNOWN") != 0,
          "vb_status_str(%d) = %s", raw, name ? name : "(null)");
    feature(1, (unsigned)call, (unsigned)raw);
    return status;
}

/* An out-parameter's value before the call, to see that a failed call left it alone. */
#define SENTINEL_SIZE ((size_t)0x5a5a5a5a5a5a5a5aull)
static char g_sentinel_object;
#define SENTINEL_PTR ((void *)&g_sentinel_object)

/* ---------------------------------------------------------------------------------------------
 * The input.
 * ------------------------------------------------------------------------------------------- */

typedef struct Input {
    const uint8_t *p;
    size_t n;
} Input;

static uint8_t u8(Input *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static uint16_t u16(Input *in)
{
    uint16_t lo = u8(in);
    return (uint16_t)(lo | (uint16_t)u8(in) << 8);
}

static int32_t i32(Input *in)
{
    uint32_t v = u16(in);
    return (int32_t)(v | (uint32_t)u16(in) << 16);
}

/* A heap copy of up to max bytes of the input, NUL-terminated, exactly that long. */
static char *input_string(Input *in, size_t max)
{
    size_t len = u8(in) % (max + 1);
    if (len > in->n)
        len = in->n;
    char *s = malloc(len + 1);
    memcpy(s, in->p, len);
    s[len] = 0;
    in->p += len;
    in->n -= len;
    return s;
}

/* ---------------------------------------------------------------------------------------------
 * Time and audio.
 * ------------------------------------------------------------------------------------------- */

static void sleep_ms(unsigned ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* One second of a voiced buzz (as tests/c/host_test/host.c's speech(): webrtc-vad hears it as
 * speech) at each rate, computed once. */
#define TAU 6.283185307179586
enum { SPEECH_RATES = 6 };
static const unsigned RATES[SPEECH_RATES] = {8000, 16000, 22050, 24000, 44100, 48000};
static int16_t *g_speech[SPEECH_RATES];

static const int16_t *speech_second(unsigned rate, unsigned *rate_out)
{
    unsigned k = 0;
    for (unsigned i = 0; i < SPEECH_RATES; i++) {
        if (RATES[i] == rate)
            k = i;
    }
    if (RATES[k] != rate)
        k = 1; /* 16 kHz for a rate we do not know */
    *rate_out = RATES[k];
    if (!g_speech[k]) {
        int16_t *pcm = malloc(RATES[k] * sizeof *pcm);
        for (unsigned i = 0; i < RATES[k]; i++) {
            double t = (double)i / RATES[k], harmonics = 0;
            for (int h = 1; h <= 10; h++)
                harmonics += sin(t * 150.0 * h * TAU) / h;
            pcm[i] = (int16_t)(harmonics * (0.75 + 0.25 * sin(t * 4.0 * TAU)) * 7000.0);
        }
        g_speech[k] = pcm;
    }
    return g_speech[k];
}

/* ---------------------------------------------------------------------------------------------
 * Events.
 * ------------------------------------------------------------------------------------------- */

static void check_event(const VbEvent *e, uint64_t *last_timestamp_us)
{
    int kind = (int)e->kind, state = (int)e->state, error = (int)e->error;
    CHECK(kind >= VB_EVENT_STATE_CHANGED && kind <= LAST_EVENT_KIND, "event kind %d", kind);
    CHECK(state >= VB_STATE_IDLE && state <= VB_STATE_ERROR, "event state %d", state);
    CHECK(error >= VB_OK && error <= VB_ERR_INTERNAL, "event error %d", error);
    CHECK((kind == VB_EVENT_ERROR) == (error != VB_OK), "kind %d with error %d", kind, error);
    bool needs_text = kind == VB_EVENT_TRANSCRIPT_PARTIAL || kind == VB_EVENT_TRANSCRIPT_FINAL ||
                      kind == VB_EVENT_AGENT_RESPONSE || kind == VB_EVENT_ERROR ||
                      kind == VB_EVENT_DTMF;
    if (needs_text)
        CHECK(e->text != NULL, "event kind %d without text", kind);
    if (e->text) {
        size_t len = strlen(e->text); /* ASan: the text is a readable, terminated string */
        feature(2, (unsigned)kind, len > 0);
    }
    if (kind == VB_EVENT_AUDIO_DROPPED)
        CHECK(e->dropped_samples > 0, "VB_EVENT_AUDIO_DROPPED of 0 samples");
    if (last_timestamp_us) {
        CHECK(e->timestamp_us >= *last_timestamp_us, "event time went back: %llu after %llu",
              (unsigned long long)e->timestamp_us, (unsigned long long)*last_timestamp_us);
        *last_timestamp_us = e->timestamp_us;
    }
    feature(3, (unsigned)kind, (unsigned)state);
    atomic_fetch_add(&g_events[kind], 1);
    if (kind == VB_EVENT_ERROR)
        feature(4, (unsigned)error, 0);
}

/* ---------------------------------------------------------------------------------------------
 * Buffers the library fills.
 * ------------------------------------------------------------------------------------------- */

/* Checks a call that wrote (or not) a NUL-terminated text into buf (capacity bytes) and its
 * size into *needed (preset to SENTINEL_SIZE). */
static void check_filled(enum Call call, VbStatus status, const char *buf, size_t capacity,
                         size_t needed, bool needed_given)
{
    if (status == VB_OK) {
        CHECK(buf != NULL, "call %d: VB_OK without a buffer", call);
        size_t len = strnlen(buf, capacity);
        CHECK(len < capacity, "call %d: VB_OK but no NUL within the %zu bytes", call, capacity);
        if (needed_given)
            CHECK(needed == len + 1, "call %d: *needed %zu for a text of %zu bytes", call, needed,
                  len);
    } else if (needed_given && needed != SENTINEL_SIZE) {
        /* *needed is written when the text exists; then only a missing or short buffer fails. */
        CHECK(status == VB_ERR_INVALID_ARGUMENT, "call %d: *needed written, status %d", call,
              status);
        CHECK(needed >= 1 && (buf == NULL || needed > capacity),
              "call %d: refused with *needed %zu and capacity %zu", call, needed, capacity);
    }
}

/* A buffer of a size chosen by the input: NULL, or exactly `capacity` bytes on the heap. */
static char *text_buffer(Input *in, size_t *capacity)
{
    uint8_t choice = u8(in);
    if (choice % 8 == 0) {
        *capacity = choice / 8;
        return NULL;
    }
    *capacity = choice % 4 == 0 ? (size_t)u16(in) % 8192 : choice % 64;
    return malloc(*capacity);
}

/* ---------------------------------------------------------------------------------------------
 * Host objects: per backend (hooks and processors) and per session (agent and events).
 * ------------------------------------------------------------------------------------------- */

typedef struct BackendHost {
    bool known; /* made from BACKEND_CONFIGS: no persistence, no room service */
    uint8_t auth_mode, authorize_mode, limiter_mode;
    atomic_int processor_calls;
} BackendHost;

typedef struct SessionHost {
    _Atomic(VbSession *) handle;
    uint8_t script[8];          /* the agent's actions, one per byte */
    int agent_return;           /* what on_transcript returns */
    unsigned in_rate, out_rate; /* as configured (or defaults) */
    bool opus_in, opus_out, pushed_events;
    uint64_t last_timestamp_us;
    OpusEncoder *encoder;
    atomic_int agent_calls;
} SessionHost;

enum { BACKENDS = 2, SESSIONS = 4, MAX_OPS = 48 };

static VbBackend *g_backend[BACKENDS];
static BackendHost *g_backend_host[BACKENDS];
static VbSession *g_session[SESSIONS];
static SessionHost *g_session_host[SESSIONS];

/* The agent: runs its script on an agent worker thread. */
static VbStatus on_transcript(void *user_data, VbSession *session, const char *transcript,
                              VbReply *reply)
{
    SessionHost *host = user_data;
    CHECK(host != NULL && transcript != NULL && reply != NULL, "on_transcript arguments");
    VbSession *handle = atomic_load(&host->handle);
    CHECK(handle == NULL || session == handle, "on_transcript got another session's handle");
    size_t len = strlen(transcript);
    int calls = atomic_fetch_add(&host->agent_calls, 1);
    atomic_fetch_add(&g_agent_calls, 1);
    feature(5, calls < 8 ? (unsigned)calls : 8, len > 0);
    for (int i = 0; i < 8; i++) {
        uint8_t action = host->script[i];
        switch (action % 16) {
        case 0:
            checked(C_REPLY_WRITE, vb_reply_write(reply, "Hello there. "));
            break;
        case 1: {
            VbStatus s = checked(C_REPLY_WRITE, vb_reply_write(reply, NULL));
            CHECK(s == VB_ERR_INVALID_ARGUMENT, "vb_reply_write(reply, NULL) = %d", s);
            break;
        }
        case 2: {
            VbStatus s = checked(C_REPLY_WRITE, vb_reply_write(reply, "\xff\xfe not UTF-8"));
            CHECK(s != VB_OK, "invalid UTF-8 accepted");
            break;
        }
        case 3:
            checked(C_REPLY_END, vb_reply_end(reply));
            break;
        case 4: {
            int status = (int)(action / 16) - 1; /* -1 .. 14: VB_OK and -1 are refused */
            VbStatus s = checked(C_REPLY_FAIL, vb_reply_fail(reply, status, "agent says no"));
            if (status <= 0)
                CHECK(s == VB_ERR_INVALID_ARGUMENT, "vb_reply_fail(%d) = %d", status, s);
            break;
        }
        case 5:
            feature(6, vb_reply_is_cancelled(reply), 0);
            break;
        case 6: {
            size_t capacity = action / 16 * 32, needed = SENTINEL_SIZE;
            char *buf = malloc(capacity);
            VbStatus s = checked(C_AGENT_HISTORY,
                                 vb_session_history(session, capacity ? buf : NULL, capacity,
                                                    &needed));
            check_filled(C_AGENT_HISTORY, s, capacity ? buf : NULL, capacity, needed, true);
            free(buf);
            break;
        }
        case 7: {
            int state = (int)vb_session_state(session);
            CHECK(state >= VB_STATE_IDLE && state <= VB_STATE_ERROR, "state %d", state);
            break;
        }
        case 8:
            checked(C_AGENT_SAY, vb_session_say(session, "By the way."));
            break;
        case 9:
            checked(C_AGENT_INTERRUPT, vb_session_interrupt(session));
            break;
        case 10: {
            VbStatus s = checked(C_REPLY_WRITE, vb_reply_write(NULL, "x"));
            CHECK(s == VB_ERR_INVALID_ARGUMENT, "vb_reply_write(NULL) = %d", s);
            break;
        }
        case 11:
            checked(C_REPLY_WRITE, vb_reply_write(reply, transcript));
            break;
        case 12:
            sleep_ms(action / 16 % 6);
            break;
        case 13: {
            VbStatus s = checked(C_REPLY_FAIL, vb_reply_fail(reply, VB_ERR_PROVIDER, NULL));
            CHECK(s == VB_ERR_INVALID_ARGUMENT, "vb_reply_fail(message NULL) = %d", s);
            break;
        }
        case 14:
            if (action / 16 == 0) /* stopping from inside the callback, now and then */
                checked(C_AGENT_STOP, vb_session_stop(session));
            break;
        default:
            break;
        }
    }
    return (VbStatus)host->agent_return;
}

static void on_event(void *user_data, const VbEvent *event)
{
    CHECK(user_data != NULL && event != NULL, "on_event arguments");
    check_event(event, NULL);
}

/* Hooks: what they do comes from the input (per backend). */
static VbStatus authenticate(void *user_data, const char *token, const char *metadata_json,
                             char *user_id_out, size_t user_id_capacity)
{
    BackendHost *host = user_data;
    CHECK(token && metadata_json && user_id_out, "authenticate arguments");
    (void)strlen(token);
    (void)strlen(metadata_json);
    memset(user_id_out, 'u', user_id_capacity); /* ASan: the buffer is that long */
    switch (host->auth_mode % 5) {
    case 0:
        snprintf(user_id_out, user_id_capacity, "user-%u", host->auth_mode);
        return VB_OK;
    case 1:
        return VB_ERR_UNAUTHORIZED;
    case 2:
        return VB_OK; /* no NUL in the buffer */
    case 3:
        return (VbStatus)(100 + host->auth_mode);
    default:
        user_id_out[0] = (char)0xff;
        user_id_out[1] = 0;
        return VB_OK; /* not UTF-8 */
    }
}

static VbStatus authorize(void *user_data, const char *user_id, const char *operation)
{
    BackendHost *host = user_data;
    CHECK(user_id && operation, "authorize arguments");
    (void)strlen(user_id);
    (void)strlen(operation);
    return (VbStatus)(host->authorize_mode % 3 == 0 ? VB_OK : host->authorize_mode % 16);
}

static VbStatus limiter_allow(void *user_data, const char *key)
{
    BackendHost *host = user_data;
    CHECK(key != NULL, "allow arguments");
    (void)strlen(key);
    return (VbStatus)(host->limiter_mode % 2 ? VB_OK : host->limiter_mode % 20);
}

static VbStatus limiter_wait(void *user_data, const char *key, uint32_t timeout_ms)
{
    (void)timeout_ms;
    return limiter_allow(user_data, key);
}

static VbStatus incoming_session(void *user_data, VbSession *session, const char *info_json,
                                 VbCallbacks *callbacks)
{
    (void)user_data;
    (void)session;
    (void)strlen(info_json);
    (void)callbacks;
    return VB_ERR_UNAUTHORIZED;
}

static void process(void *user_data, int16_t *pcm, size_t samples, uint32_t sample_rate)
{
    BackendHost *host = user_data;
    CHECK(pcm != NULL && samples > 0 && sample_rate >= 8000 && sample_rate <= 48000,
          "processor got %zu samples at %u Hz", samples, sample_rate);
    for (size_t i = 0; i < samples; i++) /* ASan: the frame is that long */
        pcm[i] = (int16_t)(pcm[i] / 2 * 2);
    atomic_fetch_add(&host->processor_calls, 1);
    atomic_fetch_add(&g_processor_frames, 1);
}

static atomic_int g_log_records;

static void on_log(void *user_data, int32_t level, const char *target, const char *message)
{
    CHECK(user_data == &g_log_records, "log user_data");
    CHECK(level >= VB_LOG_ERROR && level <= VB_LOG_TRACE, "log level %d", level);
    CHECK(target && message, "log strings");
    (void)strlen(target);
    (void)strlen(message);
    atomic_fetch_add(&g_log_records, 1);
}

/* ---------------------------------------------------------------------------------------------
 * Configurations.
 * ------------------------------------------------------------------------------------------- */

#define TEST_PROVIDERS                                                                         \
    "\"provider\":\"local\",\"stt_provider\":\"test-pitch-stt\",\"tts_provider\":\"test-tone-tts\"," \
    "\"persistence\":{\"path\":\"\"}"

static const char *const BACKEND_CONFIGS[] = {
    "{" TEST_PROVIDERS "}",
    /* Quick turns, so that random audio ends turns and the agent is called. */
    "{" TEST_PROVIDERS ",\"turn\":{\"silence_ms\":100,\"min_speech_ms\":60,\"max_turn_ms\":1500},"
    "\"agent_timeout_ms\":300,\"interruptions\":{\"enabled\":true,\"min_speech_ms\":40}}",
    "{" TEST_PROVIDERS ",\"audio\":{\"realtime_threads\":1},\"max_concurrent_sessions\":2,"
    "\"turn\":{\"silence_ms\":100,\"min_speech_ms\":60}}",
    "{\"provider\":\"local\",\"pipeline_type\":\"s2s\",\"s2s_provider\":\"test-echo-s2s\","
    "\"persistence\":{\"path\":\"\"},\"turn\":{\"silence_ms\":100,\"min_speech_ms\":60}}",
    "{" TEST_PROVIDERS ",\"auth\":{\"required\":true,\"jwt_hs256_secret\":\"secret\"}}",
    "{" TEST_PROVIDERS ",\"rate_limit\":{\"sessions_per_second\":1,\"burst\":1,"
    "\"per_user_sessions_per_minute\":2}}",
    "{" TEST_PROVIDERS ",\"audio\":{\"frame_ms\":10},\"interruptions\":{\"enabled\":false},"
    "\"vad\":{\"mode\":3}}",
    /* Maybe valid. */
    "{" TEST_PROVIDERS ",\"audio\":{\"frame_ms\":30,\"sample_rate\":8000}}",
    /* Broken ones. */
    "{" TEST_PROVIDERS ",\"audio\":{\"frame_ms\":7}}",
    "{" TEST_PROVIDERS ",\"no_such_key\":1}",
    "{\"provider\":\"no-such-backend\"}",
    "{\"provider\":\"local\",\"stt_provider\":\"no-such-stt\",\"tts_provider\":\"test-tone-tts\"}",
    "{\"provider\":\"local\",\"pipeline_type\":\"s2s\",\"persistence\":{\"path\":\"\"}}",
    "{\"provider\":\"pipecat\",\"persistence\":{\"path\":\"\"}}",
    "{\"provider\":\"local\",\"stt_provider\":\"test-pitch-stt\",\"tts_provider\":",
    "",
    "[]",
    "null",
    "{\"provider\":\"local\",\"stt_provider\":\"test-pitch-stt\",\"tts_provider\":\"test-tone-tts\","
    "\"persistence\":{\"path\":\"\"},\"max_concurrent_sessions\":0}",
    "{\"provider\":\"local\",\"stt_provider\":\"\xc3\x28\",\"tts_provider\":\"test-tone-tts\"}",
};
enum { BACKEND_CONFIG_COUNT = sizeof BACKEND_CONFIGS / sizeof BACKEND_CONFIGS[0] };
/* The first ones of BACKEND_CONFIGS are valid: vb_backend_create must take them. */
enum { VALID_BACKEND_CONFIGS = 7 };

typedef struct SessionConfig {
    const char *json;
    unsigned in_rate, out_rate;
    bool opus_in, opus_out;
} SessionConfig;

static const SessionConfig SESSION_CONFIGS[] = {
    {"{\"input_sample_rate\":16000,\"output_sample_rate\":16000}", 16000, 16000, false, false},
    {"{\"input_sample_rate\":48000,\"output_sample_rate\":48000}", 48000, 48000, false, false},
    {"{\"input_sample_rate\":8000,\"output_sample_rate\":24000}", 8000, 24000, false, false},
    {"{\"input_sample_rate\":44100,\"output_sample_rate\":22050,\"user_id\":\"u1\"}", 44100, 22050,
     false, false},
    {"{\"input_codec\":\"opus\",\"output_codec\":\"opus\",\"input_sample_rate\":48000,"
     "\"output_sample_rate\":48000}",
     48000, 48000, true, true},
    {"{\"input_codec\":\"opus\",\"input_sample_rate\":16000,\"output_codec\":\"opus\","
     "\"output_sample_rate\":16000,\"opus_complexity\":0,\"opus_bitrate\":6000}",
     16000, 16000, true, true},
    {"{\"output_codec\":\"opus\",\"output_sample_rate\":24000}", 16000, 24000, false, true},
    {"{\"input_codec\":\"opus\",\"input_sample_rate\":8000}", 8000, 16000, true, false},
    {"{\"user_id\":\"u1\",\"auth_token\":\"tok\",\"metadata\":{\"k\":[1,2]}}", 16000, 16000, false,
     false},
    {"{\"admission_wait_ms\":3,\"user_id\":\"u2\"}", 16000, 16000, false, false},
    {"{\"conversation_id\":\"c1\"}", 16000, 16000, false, false},
    /* Broken ones. */
    {"{\"input_sample_rate\":0}", 16000, 16000, false, false},
    {"{\"input_sample_rate\":7}", 16000, 16000, false, false},
    {"{\"output_sample_rate\":400000}", 16000, 16000, false, false},
    {"{\"input_codec\":\"opus\",\"input_sample_rate\":44100}", 16000, 16000, false, false},
    {"{\"output_codec\":\"mp3\"}", 16000, 16000, false, false},
    {"{\"opus_complexity\":11,\"output_codec\":\"opus\"}", 16000, 16000, false, false},
    {"{\"transport\":\"webrtc\",\"room\":\"r\"}", 16000, 16000, false, false},
    {"{\"no_such_key\":true}", 16000, 16000, false, false},
    {"{\"input_sample_rate\":", 16000, 16000, false, false},
    {"\"\"", 16000, 16000, false, false},
};
enum { SESSION_CONFIG_COUNT = sizeof SESSION_CONFIGS / sizeof SESSION_CONFIGS[0] };

static const char *const ROOM_REQUESTS[] = {
    "{\"op\":\"list_rooms\"}",
    "{\"op\":\"create_room\",\"room\":\"r\"}",
    "{\"op\":\"no_such_op\"}",
    "{",
    "",
};
enum { ROOM_REQUEST_COUNT = sizeof ROOM_REQUESTS / sizeof ROOM_REQUESTS[0] };

/* ---------------------------------------------------------------------------------------------
 * Operations.
 * ------------------------------------------------------------------------------------------- */

/* Polls every waiting event of a session that polls (at most `max`). */
static void poll_events(unsigned slot, unsigned max)
{
    VbSession *session = g_session[slot];
    SessionHost *host = g_session_host[slot];
    VbEvent *event = malloc(sizeof *event);
    bool *has_event = malloc(sizeof *has_event);
    for (unsigned i = 0; i < max; i++) {
        *has_event = true;
        memset(event, 0xa5, sizeof *event);
        VbStatus s = checked(C_POLL, vb_session_poll_event(session, event, has_event));
        if (s != VB_OK) {
            CHECK(*has_event, "a failed poll wrote *has_event");
            CHECK(session == NULL || host->pushed_events || s == VB_ERR_INVALID_STATE,
                  "poll failed with %d", s);
            break;
        }
        CHECK(!host->pushed_events, "a session with on_event was polled");
        if (!*has_event)
            break;
        check_event(event, &host->last_timestamp_us);
    }
    free(event);
    free(has_event);
}

/* Polls every session and waits `ms`. */
static void wait_and_poll(unsigned ms)
{
    double until = now_ms() + ms;
    do {
        for (unsigned i = 0; i < SESSIONS; i++) {
            if (g_session[i] && !g_session_host[i]->pushed_events)
                poll_events(i, 64);
        }
        sleep_ms(1);
    } while (now_ms() < until);
}

/* Pushes PCM into a session, in pieces of `piece` samples, waiting (up to ~50 ms) for room. */
static void push_pcm(unsigned slot, const int16_t *pcm, size_t n, size_t piece)
{
    VbSession *session = g_session[slot];
    size_t *writable = malloc(sizeof *writable);
    for (size_t at = 0; at < n; at += piece) {
        size_t len = n - at < piece ? n - at : piece;
        for (int tries = 0; tries < 50; tries++) {
            *writable = SENTINEL_SIZE;
            VbStatus s = checked(C_WRITABLE, vb_session_writable_samples(session, writable));
            if (s != VB_OK || *writable >= len)
                break;
            sleep_ms(1);
        }
        int16_t *copy = malloc(len * sizeof *copy);
        memcpy(copy, pcm + at, len * sizeof *copy);
        size_t accepted = SENTINEL_SIZE;
        VbStatus s = checked(C_PROCESS_AUDIO, vb_session_process_audio(session, copy, len, &accepted));
        free(copy);
        if (s == VB_OK)
            CHECK(accepted == len, "VB_OK with %zu of %zu samples accepted", accepted, len);
        else if (s == VB_ERR_BUFFER_FULL)
            CHECK(accepted < len, "VB_ERR_BUFFER_FULL with %zu of %zu accepted", accepted, len);
        else {
            CHECK(accepted == SENTINEL_SIZE, "a failed process_audio wrote *accepted");
            break;
        }
    }
    free(writable);
}

/* Pushes one user turn (speech_ms of speech, then 700 ms of silence) as PCM or Opus. */
static void push_turn(unsigned slot, unsigned speech_ms)
{
    SessionHost *host = g_session_host[slot];
    unsigned rate;
    const int16_t *second = speech_second(host->in_rate, &rate);
    size_t speech = (size_t)rate * speech_ms / 1000, total = speech + (size_t)rate * 7 / 10;
    size_t frame = rate / 50;
    int16_t *pcm = calloc(total, sizeof *pcm);
    for (size_t i = 0; i < speech; i++)
        pcm[i] = second[i % rate];
    if (!host->opus_in) {
        push_pcm(slot, pcm, total, frame);
    } else {
        if (!host->encoder) {
            int error = 0;
            host->encoder = opus_encoder_create((opus_int32)rate, 1, OPUS_APPLICATION_VOIP, &error);
        }
        unsigned char packet[1500];
        for (size_t at = 0; host->encoder && at + frame <= total; at += frame) {
            opus_int32 len = opus_encode(host->encoder, pcm + at, (int)frame, packet, sizeof packet);
            if (len <= 0)
                break;
            uint8_t *copy = malloc((size_t)len);
            memcpy(copy, packet, (size_t)len);
            VbStatus s = checked(C_PROCESS_OPUS, vb_session_process_opus(g_session[slot], copy, (size_t)len));
            free(copy);
            if (s != VB_OK && s != VB_ERR_BUFFER_FULL)
                break;
            if (s == VB_ERR_BUFFER_FULL)
                sleep_ms(2);
        }
    }
    free(pcm);
}

static void free_session(unsigned slot)
{
    if (!g_session_host[slot])
        return;
    vb_session_free(g_session[slot]);
    /* No callback runs after vb_session_free returns: the host's side can go. */
    if (g_session_host[slot]->encoder)
        opus_encoder_destroy(g_session_host[slot]->encoder);
    free(g_session_host[slot]);
    g_session[slot] = NULL;
    g_session_host[slot] = NULL;
}

static void free_backend(unsigned slot)
{
    if (!g_backend_host[slot])
        return;
    vb_backend_free(g_backend[slot]);
    free(g_backend_host[slot]);
    g_backend[slot] = NULL;
    g_backend_host[slot] = NULL;
}

static void op_backend_create(Input *in)
{
    unsigned slot = u8(in) % BACKENDS;
    uint8_t choice = u8(in);
    if (g_backend_host[slot])
        return;
    /* 0..223: one of the list; 224..253: bytes of the input; 254: out NULL; 255: json NULL. */
    char *fuzzed = NULL;
    const char *json = NULL;
    bool known = choice < 224;
    if (known) {
        json = BACKEND_CONFIGS[choice % BACKEND_CONFIG_COUNT];
    } else if (choice < 254) {
        fuzzed = input_string(in, 200);
        json = fuzzed;
    } else if (choice == 254) {
        json = BACKEND_CONFIGS[0];
    }
    VbBackend *backend = SENTINEL_PTR;
    VbStatus s;
    if (choice == 254) {
        s = checked(C_BACKEND_CREATE, vb_backend_create(json, NULL));
        CHECK(s == VB_ERR_INVALID_ARGUMENT, "vb_backend_create(out NULL) = %d", s);
    } else {
        s = checked(C_BACKEND_CREATE, vb_backend_create(json, &backend));
        if (known && choice % BACKEND_CONFIG_COUNT < VALID_BACKEND_CONFIGS)
            CHECK(s == VB_OK, "a valid configuration was refused: %d %s", s, vb_last_error_message());
    }
    if (s == VB_OK) {
        CHECK(backend != SENTINEL_PTR && backend != NULL, "VB_OK without a backend");
        g_backend[slot] = backend;
        atomic_fetch_add(&g_backends, 1);
        g_backend_host[slot] = calloc(1, sizeof(BackendHost));
        g_backend_host[slot]->known = known;
        g_backend_host[slot]->auth_mode = u8(in);
        g_backend_host[slot]->authorize_mode = u8(in);
        g_backend_host[slot]->limiter_mode = u8(in);
    } else {
        CHECK(backend == SENTINEL_PTR, "a failed vb_backend_create wrote *out_backend");
    }
    free(fuzzed);
}

static void op_hooks(Input *in)
{
    unsigned slot = u8(in) % BACKENDS;
    uint8_t which = u8(in);
    VbBackend *backend = g_backend[slot];
    void *user = g_backend_host[slot];
    switch (which % 6) {
    case 0: {
        VbAuthHook hook = {user, which & 8 ? NULL : authenticate, authorize};
        checked(C_AUTH_HOOK, vb_backend_set_auth_hook(backend, which & 16 ? NULL : &hook));
        break;
    }
    case 1: {
        VbRateLimiter limiter = {user, which & 8 ? NULL : limiter_allow,
                                 which & 16 ? NULL : limiter_wait};
        checked(C_RATE_LIMITER, vb_backend_set_rate_limiter(backend, &limiter));
        break;
    }
    case 2: {
        VbIncoming incoming = {user, which & 8 ? NULL : incoming_session};
        checked(C_INCOMING, vb_backend_set_incoming(backend, which & 16 ? NULL : &incoming));
        break;
    }
    default: {
        char name[16];
        snprintf(name, sizeof name, "p%u", which / 8 % 4);
        VbProcessor processor = {user, which & 64 ? NULL : name, (int32_t)(which % 7) - 3,
                                 which & 128 ? NULL : process};
        checked(C_PROCESSOR, vb_backend_add_processor(backend, &processor));
        break;
    }
    }
}

static void op_backend_buffers(Input *in)
{
    unsigned slot = u8(in) % BACKENDS;
    uint8_t which = u8(in);
    size_t capacity, needed = SENTINEL_SIZE;
    char *buf = text_buffer(in, &capacity);
    bool give_needed = which & 8;
    size_t *needed_ptr = give_needed ? &needed : NULL;
    VbStatus s;
    enum Call call;
    switch (which % 3) {
    case 0:
        call = C_RECOVERED;
        s = checked(call, vb_backend_recovered_sessions(g_backend[slot], buf, capacity, needed_ptr));
        break;
    case 1:
        call = C_REGISTRY;
        s = checked(call, vb_registry_list(buf, capacity, needed_ptr));
        CHECK(s == VB_OK || s == VB_ERR_INVALID_ARGUMENT, "vb_registry_list = %d", s);
        break;
    default: {
        call = C_ROOM_SERVICE;
        const char *request = which & 16 ? NULL : ROOM_REQUESTS[which / 32 % ROOM_REQUEST_COUNT];
        s = checked(call, vb_backend_room_service(g_backend[slot], request, buf, capacity, needed_ptr));
        /* Only a livekit backend has a room service; none of the list is one. */
        if (g_backend_host[slot] && g_backend_host[slot]->known)
            CHECK(s == VB_ERR_INVALID_CONFIG || s == VB_ERR_INVALID_ARGUMENT,
                  "room service on a local backend: %d", s);
        break;
    }
    }
    check_filled(call, s, buf, capacity, needed, give_needed);
    free(buf);
}

static void op_backend_misc(Input *in)
{
    unsigned slot = u8(in) % BACKENDS;
    uint8_t which = u8(in);
    VbBackend *backend = g_backend[slot];
    bool no_store = g_backend_host[slot] && g_backend_host[slot]->known;
    char *id = which & 8 ? NULL : input_string(in, 40);
    switch (which % 4) {
    case 0: {
        VbStatus s = checked(C_DISCARD, vb_backend_discard_recovered(backend, id));
        if (no_store)
            CHECK(s != VB_OK, "discarded a recovered session with persistence off");
        break;
    }
    case 1:
        checked(C_FLUSH, vb_backend_flush_store(backend));
        break;
    case 2: {
        VbSession *session = SENTINEL_PTR;
        VbStatus s = checked(C_RESUME, vb_session_resume(backend, id, NULL, &session));
        if (s == VB_OK) /* only a backend of fuzzed configuration can have a store */
            vb_session_free(session);
        else
            CHECK(session == SENTINEL_PTR, "a failed resume wrote *out_session");
        CHECK(!no_store || s != VB_OK, "resumed a session with persistence off");
        break;
    }
    default: {
        VbHealth *health = malloc(sizeof *health);
        memset(health, 0xa5, sizeof *health);
        VbStatus s = checked(C_HEALTH, vb_backend_health(backend, which & 16 ? NULL : health));
        if (s == VB_OK) {
            int status = (int)health->status;
            CHECK(status >= VB_HEALTH_HEALTHY && status <= VB_HEALTH_UNHEALTHY, "health %d", status);
            CHECK(health->active_sessions == vb_backend_active_sessions(backend),
                  "health says %u sessions", health->active_sessions);
        }
        free(health);
        break;
    }
    }
    free(id);
}

static void op_session_create(Input *in)
{
    unsigned slot = u8(in) % SESSIONS;
    unsigned b = u8(in) % (BACKENDS + 1); /* BACKENDS: a NULL backend */
    uint8_t choice = u8(in), callbacks_choice = u8(in);
    SessionHost *host = calloc(1, sizeof *host);
    for (int i = 0; i < 8; i++)
        host->script[i] = u8(in);
    int32_t ret = i32(in);
    host->agent_return = ret % 4 == 0 ? ret : ret % 4 == 1 ? VB_ERR_PROVIDER : VB_OK;
    if (g_session_host[slot]) {
        free(host);
        return;
    }
    char *fuzzed = NULL;
    const char *json = NULL;
    SessionConfig config = SESSION_CONFIGS[0];
    if (choice % 8 == 7) {
        fuzzed = input_string(in, 120);
        json = fuzzed;
    } else if (choice % 8 != 6) {
        config = SESSION_CONFIGS[choice / 8 % SESSION_CONFIG_COUNT];
        json = config.json;
    }
    host->in_rate = config.in_rate;
    host->out_rate = config.out_rate;
    host->opus_in = config.opus_in;
    host->opus_out = config.opus_out;
    VbCallbacks *callbacks = malloc(sizeof *callbacks);
    callbacks->user_data = host;
    callbacks->on_transcript = callbacks_choice & 1 ? NULL : on_transcript;
    callbacks->on_event = callbacks_choice & 2 ? on_event : NULL;
    host->pushed_events = callbacks->on_event != NULL;
    VbBackend *backend = b < BACKENDS ? g_backend[b] : NULL;
    VbSession *session = SENTINEL_PTR;
    VbStatus s = checked(C_SESSION_CREATE,
                         vb_session_create(backend, json, callbacks_choice & 4 ? NULL : callbacks,
                                           callbacks_choice & 8 ? NULL : &session));
    free(callbacks);
    if (callbacks_choice & 4)
        host->pushed_events = false;
    if (s == VB_OK) {
        CHECK(session != NULL && session != SENTINEL_PTR, "VB_OK without a session");
        atomic_store(&host->handle, session);
        g_session[slot] = session;
        atomic_fetch_add(&g_sessions, 1);
        g_session_host[slot] = host;
        feature(7, slot, b);
    } else {
        CHECK(session == SENTINEL_PTR, "a failed vb_session_create wrote *out_session");
        free(host);
    }
    free(fuzzed);
}

static void op_process_audio(Input *in)
{
    unsigned slot = u8(in) % SESSIONS;
    uint8_t mode = u8(in);
    size_t n = u16(in) % 6000;
    VbSession *session = g_session[slot];
    int16_t *pcm = NULL;
    if (mode % 4 != 3) {
        pcm = malloc(n * sizeof *pcm);
        for (size_t i = 0; i < n; i++) {
            if (mode % 4 == 0)
                pcm[i] = (int16_t)(u8(in) << 8 | u8(in));
            else if (mode % 4 == 1)
                pcm[i] = (int16_t)((i * 37 % 200) * 100 - 10000);
            else
                pcm[i] = 0;
        }
    }
    size_t accepted = SENTINEL_SIZE;
    VbStatus s = checked(C_PROCESS_AUDIO,
                         vb_session_process_audio(session, pcm, n, mode & 16 ? NULL : &accepted));
    if (s == VB_OK) {
        CHECK(mode & 16 || accepted == n, "VB_OK with %zu of %zu accepted", accepted, n);
    } else if (s == VB_ERR_BUFFER_FULL) {
        CHECK(mode & 16 || accepted < n, "VB_ERR_BUFFER_FULL with %zu of %zu", accepted, n);
    } else {
        CHECK(accepted == SENTINEL_SIZE, "a failed process_audio wrote *accepted");
        if (pcm == NULL && n > 0 && session)
            CHECK(s == VB_ERR_INVALID_ARGUMENT || s == VB_ERR_INVALID_STATE, "NULL pcm: %d", s);
    }
    free(pcm);
}

static void op_read_audio(Input *in)
{
    unsigned slot = u8(in) % SESSIONS;
    uint8_t mode = u8(in);
    size_t capacity = u16(in) % 8000;
    int16_t *out = mode % 8 == 7 ? NULL : malloc(capacity * sizeof *out);
    size_t written = SENTINEL_SIZE;
    VbStatus s = checked(C_READ_AUDIO, vb_session_read_audio(g_session[slot], out, capacity,
                                                             mode % 8 == 6 ? NULL : &written));
    if (s == VB_OK) {
        CHECK(written <= capacity, "read_audio wrote %zu into %zu", written, capacity);
        atomic_fetch_add(&g_samples_read, written);
        feature(8, written > 0, capacity > 0);
    } else {
        CHECK(written == SENTINEL_SIZE, "a failed read_audio wrote *written");
    }
    free(out);
}

static void op_opus(Input *in)
{
    unsigned slot = u8(in) % SESSIONS;
    uint8_t mode = u8(in);
    VbSession *session = g_session[slot];
    if (mode & 1) {
        size_t capacity = mode & 2 ? VB_OPUS_MAX_PACKET : u16(in) % 1600;
        uint8_t *buf = mode & 4 ? NULL : malloc(capacity);
        size_t written = SENTINEL_SIZE;
        VbStatus s = checked(C_READ_OPUS, vb_session_read_opus(session, buf, capacity,
                                                               mode & 8 ? NULL : &written));
        if (s == VB_OK) {
            CHECK(written <= capacity, "read_opus wrote %zu into %zu", written, capacity);
            atomic_fetch_add(&g_packets_read, written > 0);
            feature(9, written > 0, 0);
        } else {
            CHECK(written == SENTINEL_SIZE, "a failed read_opus wrote *written");
        }
        free(buf);
    } else {
        size_t len = u8(in);
        if (len > in->n)
            len = in->n;
        uint8_t *packet = mode & 4 ? NULL : malloc(len);
        if (packet)
            memcpy(packet, in->p, len);
        in->p += len;
        in->n -= len;
        if (mode & 8)
            len = 0; /* a lost packet */
        checked(C_PROCESS_OPUS, vb_session_process_opus(session, packet, len));
        free(packet);
    }
}

static void op_say(Input *in)
{
    unsigned slot = u8(in) % SESSIONS;
    uint8_t mode = u8(in);
    char *text = NULL;
    static const char *const TEXTS[] = {"Hello there.", "", "   ", "Yes. No? Maybe!"};
    if (mode % 4 == 0)
        text = input_string(in, 60);
    VbStatus s = checked(C_SAY, vb_session_say(g_session[slot],
                                               mode % 4 == 1 ? NULL
                                               : text        ? text
                                                             : TEXTS[mode / 4 % 4]));
    if (mode % 4 == 1)
        CHECK(s == VB_ERR_INVALID_ARGUMENT, "say(NULL) = %d", s);
    free(text);
}

static void op_session_buffers(Input *in)
{
    unsigned slot = u8(in) % SESSIONS;
    uint8_t which = u8(in);
    size_t capacity, needed = SENTINEL_SIZE;
    char *buf = text_buffer(in, &capacity);
    bool give_needed = which & 2;
    enum Call call = which & 1 ? C_HISTORY : C_SESSION_ID;
    VbStatus s = which & 1 ? vb_session_history(g_session[slot], buf, capacity,
                                                give_needed ? &needed : NULL)
                           : vb_session_id(g_session[slot], buf, capacity,
                                           give_needed ? &needed : NULL);
    checked(call, s);
    check_filled(call, s, buf, capacity, needed, give_needed);
    if (g_session[slot] && give_needed)
        CHECK(needed != SENTINEL_SIZE, "*needed not written for a live session");
    free(buf);
}

static void op_null_calls(Input *in)
{
    uint8_t which = u8(in);
    switch (which % 8) {
    case 0:
        CHECK(vb_backend_active_sessions(NULL) == 0, "active sessions of NULL");
        CHECK(vb_session_state(NULL) == VB_STATE_ERROR, "state of NULL");
        CHECK(!vb_reply_is_cancelled(NULL), "NULL reply cancelled");
        vb_session_free(NULL);
        vb_backend_free(NULL);
        break;
    case 1:
        CHECK(checked(C_NULLS, vb_backend_start(NULL)) == VB_ERR_INVALID_ARGUMENT, "start(NULL)");
        CHECK(checked(C_NULLS, vb_backend_stop(NULL, 0)) == VB_ERR_INVALID_ARGUMENT, "stop(NULL)");
        break;
    case 2:
        CHECK(checked(C_NULLS, vb_session_start(NULL)) == VB_ERR_INVALID_ARGUMENT, "start(NULL)");
        CHECK(checked(C_NULLS, vb_session_stop(NULL)) == VB_ERR_INVALID_ARGUMENT, "stop(NULL)");
        CHECK(checked(C_NULLS, vb_session_interrupt(NULL)) == VB_ERR_INVALID_ARGUMENT, "interrupt");
        break;
    case 3:
        CHECK(checked(C_NULLS, vb_reply_write(NULL, "x")) == VB_ERR_INVALID_ARGUMENT, "write");
        CHECK(checked(C_NULLS, vb_reply_end(NULL)) == VB_ERR_INVALID_ARGUMENT, "end");
        CHECK(checked(C_NULLS, vb_reply_fail(NULL, VB_ERR_PROVIDER, "x")) == VB_ERR_INVALID_ARGUMENT,
              "fail");
        break;
    case 4: {
        int32_t status = i32(in);
        const char *name = vb_status_str(status);
        CHECK(name != NULL && strlen(name) > 3, "vb_status_str(%d)", status);
        CHECK(vb_abi_version() == VB_ABI_VERSION, "ABI version");
        CHECK(vb_version() != NULL && strlen(vb_version()) > 0, "version");
        break;
    }
    case 5: {
        size_t *writable = malloc(sizeof *writable);
        *writable = SENTINEL_SIZE;
        unsigned slot = which / 8 % SESSIONS;
        VbStatus s = checked(C_WRITABLE, vb_session_writable_samples(g_session[slot],
                                                                     which & 64 ? NULL : writable));
        if (s != VB_OK)
            CHECK(*writable == SENTINEL_SIZE, "a failed writable_samples wrote");
        free(writable);
        break;
    }
    case 6: {
        unsigned slot = which / 8 % SESSIONS;
        int state = (int)vb_session_state(g_session[slot]);
        CHECK(state >= VB_STATE_IDLE && state <= VB_STATE_ERROR, "state %d", state);
        feature(10, slot, (unsigned)state);
        break;
    }
    default: {
        int32_t level = (int32_t)(which / 8 % 8) - 1; /* -1 .. 6: two invalid */
        VbStatus s = checked(C_LOG, vb_set_log_callback(which & 128 ? NULL : on_log,
                                                        &g_log_records, level));
        if (level < 0 || level > VB_LOG_TRACE)
            CHECK(s == VB_ERR_INVALID_ARGUMENT, "log level %d accepted", level);
        break;
    }
    }
}

/* Every live object is freed at the end of an input, sessions first or backends first. */
static void free_everything(bool backends_first)
{
    if (backends_first) {
        for (unsigned i = 0; i < BACKENDS; i++)
            free_backend(i);
    }
    for (unsigned i = 0; i < SESSIONS; i++)
        free_session(i);
    for (unsigned i = 0; i < BACKENDS; i++)
        free_backend(i);
}

/* vb_backend_free does not wait for its I/O runtime's threads to exit (tokio's
 * shutdown_background: a stop never blocks on a provider's task), so some may still be exiting
 * when an input ends. libFuzzer checks for leaks right after each input; glibc frees a thread's
 * thread-local destructor list (__cxa_thread_atexit_impl) as it exits, and a check racing with
 * that reported the list as leaked (once in a 7.7-minute run; never when the input was replayed).
 * So the input waits, up to 2 s, until the threads it started have ended; a thread still running
 * then (the log thread of vb_set_log_callback, which stays) is counted in the summary and
 * belongs to the quiet process from then on. */
static void wait_for_threads(void)
{
    double until = now_ms() + 2000;
    unsigned n;
    while ((n = thread_count()) > g_quiet_threads && now_ms() < until)
        sleep_ms(1);
    if (n > g_quiet_threads)
        atomic_fetch_add(&g_threads_kept, n - g_quiet_threads);
    g_quiet_threads = n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Input in = {data, size};
    atomic_fetch_add(&g_inputs, 1);
    bool backends_first = u8(&in) & 1;
    for (int ops = 0; ops < MAX_OPS && in.n > 0; ops++) {
        uint8_t op = u8(&in);
        feature(11, op % 24, 0);
        switch (op % 24) {
        case 0:
        case 1:
            op_backend_create(&in);
            break;
        case 2: {
            unsigned slot = u8(&in) % BACKENDS;
            checked(C_BACKEND_START, vb_backend_start(g_backend[slot]));
            break;
        }
        case 3: {
            unsigned slot = u8(&in) % BACKENDS;
            checked(C_BACKEND_STOP, vb_backend_stop(g_backend[slot], u8(&in) % 40));
            break;
        }
        case 4:
            free_backend(u8(&in) % BACKENDS);
            break;
        case 5:
            op_hooks(&in);
            break;
        case 6:
            op_backend_buffers(&in);
            break;
        case 7:
            op_backend_misc(&in);
            break;
        case 8:
        case 9:
            op_session_create(&in);
            break;
        case 10: {
            unsigned slot = u8(&in) % SESSIONS;
            checked(C_SESSION_START, vb_session_start(g_session[slot]));
            break;
        }
        case 11: {
            unsigned slot = u8(&in) % SESSIONS;
            VbStatus s = checked(C_SESSION_STOP, vb_session_stop(g_session[slot]));
            if (g_session[slot])
                CHECK(s == VB_OK, "vb_session_stop = %d (idempotent)", s);
            break;
        }
        case 12:
            free_session(u8(&in) % SESSIONS);
            break;
        case 13:
            op_process_audio(&in);
            break;
        case 14:
        case 15: {
            unsigned slot = u8(&in) % SESSIONS;
            unsigned ms = 100 + u8(&in) * 4u;
            if (g_session[slot])
                push_turn(slot, ms);
            break;
        }
        case 16:
            op_read_audio(&in);
            break;
        case 17: {
            unsigned slot = u8(&in) % SESSIONS;
            if (!g_session_host[slot] || !g_session_host[slot]->pushed_events)
                poll_events(slot, u8(&in) % 32 + 1);
            break;
        }
        case 18:
            op_say(&in);
            break;
        case 19: {
            unsigned slot = u8(&in) % SESSIONS;
            checked(C_INTERRUPT, vb_session_interrupt(g_session[slot]));
            break;
        }
        case 20:
            op_session_buffers(&in);
            break;
        case 21:
            op_opus(&in);
            break;
        case 22:
            wait_and_poll(u8(&in) % 40);
            break;
        default:
            op_null_calls(&in);
            break;
        }
    }
    free_everything(backends_first);
    wait_for_threads();
    return 0;
}
