/*
 * opus_alloc_test.c: vb_session_process_opus and vb_session_read_opus never touch the heap —
 * libopus included, which tests/realtime_safety.rs (a Rust global allocator) cannot see.
 *
 * The program replaces malloc and its relatives, as glibc allows (every allocation of the
 * process comes here: the library's Rust code and libopus alike), with wrappers that count calls
 * made while this thread is inside one of the two Opus calls and forward to glibc's own
 * (__libc_malloc, ...). A session on the test providers takes 20 ms packets of a voice (some
 * lost, each followed by one that does not decode) while the agent's greeting is read as
 * packets, through a buffer too small and then a big one. It prints what the calls cost (the
 * session's realtime thread, woken by a complete frame, may run inside a call's time on a busy
 * machine) beside libopus's own cost, and exits 0 only when no heap operation happened inside
 * the calls. Built and run by tests/c_abi.rs:
 *
 *   cc -std=c11 -Wall -Wextra -Werror -O1 -I include tests/c/opus_alloc_test.c \
 *      -L<dir> -lvoicebackend -Wl,-rpath,<dir> -lopus -lpthread -lm
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <opus/opus.h>

#include "voicebackend.h"

/* ---------------------------------------------------------------------------------------------
 * The counting allocator.
 * ------------------------------------------------------------------------------------------- */

extern void *__libc_malloc(size_t size);
extern void __libc_free(void *ptr);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);

/* volatile: the compiler takes malloc and free for builtins that read no program state, and would
 * drop a store to a plain flag around them. */
static _Thread_local volatile bool t_counting;
static atomic_long g_heap_ops;

static void note(void)
{
    if (t_counting)
        atomic_fetch_add(&g_heap_ops, 1);
}

void *malloc(size_t size)
{
    note();
    return __libc_malloc(size);
}

void free(void *ptr)
{
    if (ptr != NULL)
        note();
    __libc_free(ptr);
}

void *calloc(size_t count, size_t size)
{
    note();
    return __libc_calloc(count, size);
}

void *realloc(void *ptr, size_t size)
{
    note();
    return __libc_realloc(ptr, size);
}

void *memalign(size_t alignment, size_t size);
void *memalign(size_t alignment, size_t size)
{
    note();
    return __libc_memalign(alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size)
{
    note();
    return __libc_memalign(alignment, size);
}

int posix_memalign(void **out, size_t alignment, size_t size);
int posix_memalign(void **out, size_t alignment, size_t size)
{
    note();
    if (alignment % sizeof(void *) != 0 || (alignment & (alignment - 1)) != 0)
        return EINVAL;
    void *ptr = __libc_memalign(alignment, size);
    if (ptr == NULL)
        return ENOMEM;
    *out = ptr;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The test.
 * ------------------------------------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static VbStatus agent(void *user_data, VbSession *session, const char *transcript,
                      VbReply *reply)
{
    (void)user_data;
    (void)session;
    (void)transcript;
    return vb_reply_end(reply);
}

/* Time spent in one kind of call, in microseconds. */
typedef struct Cost {
    double total_us, max_us;
    long calls;
} Cost;

static void add_cost(Cost *cost, double seconds)
{
    double us = seconds * 1e6;
    cost->total_us += us;
    cost->calls++;
    if (us > cost->max_us)
        cost->max_us = us;
}

static void print_cost(const char *what, const Cost *cost)
{
    printf("%-52s %6ld calls, mean %6.1f us, max %7.1f us\n", what, cost->calls,
           cost->calls ? cost->total_us / (double)cost->calls : 0.0, cost->max_us);
}

int main(void)
{
    /* The counter works: an allocation and a free while counting are two operations (through a
     * volatile pointer, or the compiler drops the pair). */
    t_counting = true;
    void *volatile probe = malloc(64);
    free(probe);
    t_counting = false;
    if (atomic_exchange(&g_heap_ops, 0) != 2) {
        printf("FAIL: the counting allocator did not see malloc and free\n");
        return 1;
    }

    /* No barge-in: the greeting plays on while the user speaks. */
    const char *backend_json =
        "{\"provider\":\"local\",\"stt_provider\":\"test-pitch-stt\","
        "\"tts_provider\":\"test-tone-tts\",\"interruptions\":{\"enabled\":false}}";
    const char *session_json = "{\"input_codec\":\"opus\",\"output_codec\":\"opus\","
                               "\"input_sample_rate\":48000,\"output_sample_rate\":24000}";
    VbBackend *backend = NULL;
    VbSession *session = NULL;
    VbCallbacks callbacks = {NULL, agent, NULL};
    if (vb_backend_create(backend_json, &backend) != VB_OK || vb_backend_start(backend) != VB_OK ||
        vb_session_create(backend, session_json, &callbacks, &session) != VB_OK ||
        vb_session_start(session) != VB_OK ||
        vb_session_say(session, "A greeting over Opus, long enough to read for a while.") != VB_OK) {
        printf("FAIL: setting up: %s\n", vb_last_error_message());
        return 1;
    }
    int error = 0, error2 = 0;
    OpusEncoder *encoder = opus_encoder_create(48000, 1, OPUS_APPLICATION_VOIP, &error);
    OpusDecoder *decoder = opus_decoder_create(48000, 1, &error2);
    if (error != OPUS_OK || error2 != OPUS_OK) {
        printf("FAIL: creating libopus's encoder or decoder: %d %d\n", error, error2);
        return 1;
    }

    enum { FRAME = 960, WARM_UP = 5, ITERATIONS = 60 };
    static const uint8_t garbage[2] = {0x03, 0x00};
    int16_t pcm[FRAME], decoded[FRAME];
    uint8_t packet[1500], out[VB_OPUS_MAX_PACKET];
    Cost decode = {0}, conceal = {0}, refuse = {0}, encode = {0}, wait = {0}, small = {0};
    Cost bare_encode = {0}, bare_decode = {0}; /* libopus alone, for comparison */
    long unexpected = 0, packets_read = 0, too_small = 0;
    for (int i = 0; i < ITERATIONS; i++) {
        /* A 150 Hz voice with harmonics (encoded outside the measured calls). */
        for (int s = 0; s < FRAME; s++) {
            double t = (double)(i * FRAME + s) / 48000.0;
            double v = 0;
            for (int h = 1; h <= 10; h++)
                v += sin(t * 150.0 * h * 6.283185307179586) / h;
            pcm[s] = (int16_t)(v * 6000.0);
        }
        double e0 = now_s();
        opus_int32 bytes = opus_encode(encoder, pcm, FRAME, packet, sizeof packet);
        double e1 = now_s();
        unexpected += opus_decode(decoder, packet, bytes, decoded, FRAME, 0) != FRAME;
        add_cost(&bare_encode, e1 - e0);
        add_cost(&bare_decode, now_s() - e1);
        bool lost = i % 10 == 7;
        size_t written = 0, tiny = 0;
        VbStatus in, bad, cramped, full;
        double t0, t1, t2, t3, t4;

        t_counting = i >= WARM_UP;
        t0 = now_s();
        in = vb_session_process_opus(session, lost ? NULL : packet, lost ? 0 : (size_t)bytes);
        t1 = now_s();
        bad = vb_session_process_opus(session, garbage, sizeof garbage);
        t2 = now_s();
        cramped = vb_session_read_opus(session, out, 2, &tiny);
        t3 = now_s();
        full = vb_session_read_opus(session, out, sizeof out, &written);
        t4 = now_s();
        t_counting = false;

        unexpected += bytes <= 0 || in != VB_OK || bad != VB_ERR_INVALID_ARGUMENT ||
                      (cramped != VB_OK && cramped != VB_ERR_INVALID_ARGUMENT) || full != VB_OK;
        too_small += cramped == VB_ERR_INVALID_ARGUMENT;
        packets_read += written > 0;
        if (i >= WARM_UP) {
            add_cost(lost ? &conceal : &decode, t1 - t0);
            add_cost(&refuse, t2 - t1);
            add_cost(cramped == VB_ERR_INVALID_ARGUMENT ? &small : &wait, t3 - t2);
            add_cost(written > 0 ? &encode : &wait, t4 - t3);
        }
        sleep_ms(20);
    }
    long heap_ops = atomic_load(&g_heap_ops);

    print_cost("process_opus, a 20 ms packet (decode, 48 kHz)", &decode);
    print_cost("process_opus, a lost packet (concealment)", &conceal);
    print_cost("process_opus, a packet that does not decode", &refuse);
    print_cost("read_opus, a packet (encode 20 ms, 24 kHz)", &encode);
    print_cost("read_opus, no whole frame yet", &wait);
    print_cost("read_opus, a buffer too small (packet kept)", &small);
    print_cost("libopus alone: opus_encode, 20 ms at 48 kHz", &bare_encode);
    print_cost("libopus alone: opus_decode, 20 ms at 48 kHz", &bare_decode);
    printf("packets read %ld, too-small refusals %ld, unexpected statuses %ld\n", packets_read,
           too_small, unexpected);
    printf("heap operations inside the Opus calls: %ld\n", heap_ops);

    opus_encoder_destroy(encoder);
    opus_decoder_destroy(decoder);
    vb_session_free(session);
    vb_backend_free(backend);
    bool ok = heap_ops == 0 && unexpected == 0 && packets_read >= 20 && too_small > 0 &&
              conceal.calls > 0;
    printf("%s\n", ok ? "PASS" : "FAIL");
    return ok ? 0 : 1;
}
