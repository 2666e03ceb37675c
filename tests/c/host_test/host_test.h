/*
 * host_test.h: what the cases of the C host test share. The checks (CHECK, REQUIRE,
 * CHECK_STATUS, ...), synthetic audio and the clock, the agent (on_transcript) that records what
 * it saw, and the Host: one session's host side, polling events and playing reply audio the way a
 * sound card would. Implemented in host.c; the cases live in one file per area (see host_test.c).
 */
#ifndef VB_HOST_TEST_H
#define VB_HOST_TEST_H

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


/* Failures of the case running now (the runner resets it per case). */
extern int g_case_failures;

void fail_at(const char *file, int line, const char *what);

#define CHECK(cond) ((cond) ? (void)0 : fail_at(__FILE__, __LINE__, #cond))
#define REQUIRE(cond)                                                                          \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fail_at(__FILE__, __LINE__, #cond);                                                \
            goto done;                                                                         \
        }                                                                                      \
    } while (0)

/* The message of the last CHECK_STATUS call (status_is copies it). */
extern char g_last_message[1024];

/* Called with the status of the call just made, before any other vb_ call on this thread. */
bool status_is(const char *file, int line, const char *expr, VbStatus got, VbStatus want);

#define CHECK_STATUS(expr, want) status_is(__FILE__, __LINE__, #expr, (expr), (want))
#define REQUIRE_STATUS(expr, want)                                                             \
    do {                                                                                       \
        if (!CHECK_STATUS(expr, want))                                                         \
            goto done;                                                                         \
    } while (0)
/* The message of the last CHECK_STATUS call contains `needle`. */
#define CHECK_MESSAGE_HAS(needle) CHECK(strstr(g_last_message, (needle)) != NULL)

/* What out-parameters are preset to, to see that a failed call left them alone. */
extern char g_sentinel_storage;
#define SENTINEL ((void *)&g_sentinel_storage)

/* ---------------------------------------------------------------------------------------------
 * Time and audio.
 * ------------------------------------------------------------------------------------------- */

double now_s(void);
void sleep_s(double seconds);

/* A voiced buzz that webrtc-vad classifies as speech: fundamental f0 plus 9 harmonics (1/h
 * amplitude) with a 4 Hz syllable-like amplitude modulation. Port of `speech()` in
 * tests/common/mod.rs. Returns a malloc'ed buffer of *n samples. */
int16_t *speech(double f0, unsigned ms, unsigned rate, size_t *n);

/* Digital silence (calloc'ed). */
int16_t *silence(unsigned ms, unsigned rate, size_t *n);

/* Positive-going zero crossings per second of pcm at rate: the frequency of a pure tone. */
double tone_hz(const int16_t *pcm, size_t n, unsigned rate);

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

/* Callbacks whose user_data was no agent of ours. */
extern atomic_int g_foreign_user_data;

/* The on_transcript callback of every Agent (user_data is the Agent). */
VbStatus agent_on_transcript(void *user_data, VbSession *session, const char *transcript,
                             VbReply *reply);

/* An agent that writes nothing, ends its reply and returns VB_OK. */
Agent *agent_new(void);

/* Only after every session using it has stopped. */
void agent_free(Agent *agent);

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

/* Polls every waiting event, then plays. */
void pump(Host *h);

/* Records one polled event in h (what pump does with each). */
void record_event(Host *h, const VbEvent *ev);

/* Pushes pcm in 20 ms pieces at real-time pace, pumping between pieces. Returns false when a
 * push was refused (at real-time pace the input ring never fills). */
bool push_realtime(Host *h, const int16_t *pcm, size_t n);

/* One user turn at f0: speech_ms of voiced audio, then 800 ms of silence (turn.silence_ms is
 * 500 by default), at real-time pace. */
bool say_turn(Host *h, double f0, unsigned speech_ms);

/* Pumps until done(h) holds or timeout_s passed; returns done(h). */
bool wait_until(Host *h, bool (*done)(const Host *), double timeout_s);

/* Conditions for wait_until. */
bool got_turn_metrics(const Host *h);
bool got_second_final(const Host *h);
bool got_interrupted(const Host *h);
bool got_error(const Host *h);
bool got_dropped(const Host *h);
bool got_speech_started(const Host *h);
bool reply_audio_flows(const Host *h);
bool reply_played_out(const Host *h);

/* A backend on the test providers, and 48 kHz in and out for a session. */
extern const char *const BACKEND_JSON;
extern const char *const SESSION_48K;

/* A started backend on the test providers (NULL on failure, reported). */
VbBackend *start_backend(const char *json);

/* Creates and starts a session with `agent` (may be NULL) at `rate` in and out. */
bool open_host(Host *h, VbBackend *backend, unsigned rate, Agent *agent);

void close_host(Host *h);

/* ---------------------------------------------------------------------------------------------
 * The cases, one area per file: conversation.c (a turn, barge-in, a failed reply), audio.c
 * (input overrun, a host processor), lifecycle.c (pushed events, health), bad_input.c, access.c
 * (auth hook, rate limiter), persistence.c, opus.c (Opus packets in and out, with libopus:
 * -lopus).
 * ------------------------------------------------------------------------------------------- */

void case_full_turn(void);
void case_barge_in(void);
void case_reply_fail(void);
void case_bad_input(void);
void case_input_overrun(void);
void case_processor(void);
void case_on_event(void);
void case_health(void);
void case_access(void);
void case_persistence(void);
void case_opus_turn(void);
void case_opus_bad_input(void);
void case_tools(void);

#endif
