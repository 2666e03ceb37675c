/*
 * opus.c: the C host test's Opus cases (session keys input_codec / output_codec "opus"): a host
 * with its own transport sends the user's voice as Opus packets, some of them lost, and reads
 * the agent's as packets, encoding and decoding with libopus as the far end would; and the bad
 * input of the two Opus calls.
 */
#include "host_test.h"

#include <opus/opus.h>

/* ---------------------------------------------------------------------------------------------
 * The far end of a host's transport: libopus, and the packets on their way.
 * ------------------------------------------------------------------------------------------- */

typedef struct OpusHost {
    Host h;                  /* events (record_event), rates, the session */
    OpusEncoder *encoder;    /* the user's voice, at h.in_rate */
    OpusDecoder *decoder;    /* the agent's voice, at h.out_rate */
    int16_t *reply;          /* the agent's decoded audio */
    size_t reply_len, reply_cap;
    size_t packets_read, reply_nonzero;
    double last_read_s, read_credit;
} OpusHost;

static const char *const OPUS_SESSION =
    "{\"input_codec\":\"opus\",\"output_codec\":\"opus\","
    "\"input_sample_rate\":48000,\"output_sample_rate\":48000}";

static bool open_opus_host(OpusHost *o, VbBackend *backend, Agent *agent)
{
    memset(o, 0, sizeof *o);
    o->h.in_rate = o->h.out_rate = 48000;
    int error = 0;
    o->encoder = opus_encoder_create(48000, 1, OPUS_APPLICATION_VOIP, &error);
    if (error != OPUS_OK)
        return false;
    o->decoder = opus_decoder_create(48000, 1, &error);
    if (error != OPUS_OK)
        return false;
    o->reply_cap = 48000 * 5;
    o->reply = calloc(o->reply_cap, sizeof *o->reply);
    VbCallbacks callbacks = {agent, agent_on_transcript, NULL};
    if (!CHECK_STATUS(vb_session_create(backend, OPUS_SESSION, &callbacks, &o->h.session), VB_OK))
        return false;
    agent->session = o->h.session;
    return CHECK_STATUS(vb_session_start(o->h.session), VB_OK);
}

static void close_opus_host(OpusHost *o)
{
    if (o->h.session != NULL) {
        CHECK_STATUS(vb_session_stop(o->h.session), VB_OK);
        vb_session_free(o->h.session);
    }
    if (o->encoder != NULL)
        opus_encoder_destroy(o->encoder);
    if (o->decoder != NULL)
        opus_decoder_destroy(o->decoder);
    free(o->reply);
    memset(o, 0, sizeof *o);
}

/* Polls every waiting event, then reads and decodes the agent's packets due by now, one per
 * 20 ms, as a transport's pacer would. */
static void opus_pump(OpusHost *o)
{
    for (;;) {
        VbEvent ev;
        bool has_event = false;
        if (vb_session_poll_event(o->h.session, &ev, &has_event) != VB_OK) {
            o->h.call_failures++;
            break;
        }
        if (!has_event)
            break;
        record_event(&o->h, &ev);
    }
    double now = now_s();
    if (o->last_read_s == 0)
        o->last_read_s = now;
    o->read_credit += (now - o->last_read_s) / 0.020;
    o->last_read_s = now;
    if (o->read_credit > 5)
        o->read_credit = 5;
    for (; o->read_credit >= 1; o->read_credit -= 1) {
        uint8_t packet[VB_OPUS_MAX_PACKET];
        size_t written = 0;
        if (vb_session_read_opus(o->h.session, packet, sizeof packet, &written) != VB_OK ||
            written > sizeof packet) {
            o->h.call_failures++;
            return;
        }
        if (written == 0)
            break;
        int n = opus_decode(o->decoder, packet, (opus_int32)written, o->reply + o->reply_len,
                            (int)(o->reply_cap - o->reply_len), 0);
        if (n != 960) { /* 20 ms at 48 kHz, always */
            printf("    opus_decode of a %zu-byte packet: %d\n", written, n);
            o->h.call_failures++;
            return;
        }
        for (int i = 0; i < n; i++)
            o->reply_nonzero += o->reply[o->reply_len + (size_t)i] != 0;
        o->reply_len += (size_t)n;
        o->packets_read++;
        if (o->reply_cap - o->reply_len < 960)
            return;
    }
}

/* Pumps for `seconds`: the last packet of a reply is completed with silence and sent 40 ms
 * after its audio ended, which may be after the session went back to listening. */
static void opus_settle(OpusHost *o, double seconds)
{
    double until = now_s() + seconds;
    while (now_s() < until) {
        opus_pump(o);
        sleep_s(0.005);
    }
}

static bool opus_wait_until(OpusHost *o, bool (*done)(const Host *), double timeout_s)
{
    double deadline = now_s() + timeout_s;
    while (!done(&o->h)) {
        if (now_s() > deadline)
            return false;
        opus_pump(o);
        sleep_s(0.005);
    }
    return true;
}

/* Encodes pcm (at 48 kHz) in packets of `frame` samples and sends them at real-time pace,
 * pumping between packets. The packets whose index is in `lost` (ascending, ended by -1) are
 * lost on the way: the host signals each with (NULL, 0). Returns false when a call failed. */
static bool send_opus(OpusHost *o, const int16_t *pcm, size_t n, size_t frame, const int *lost)
{
    int16_t *piece = calloc(frame, sizeof *piece);
    double start = now_s();
    bool ok = true;
    for (size_t i = 0; i * frame < n; i++) {
        sleep_s(start + (double)(i * frame) / 48000.0 - now_s());
        size_t off = i * frame, len = n - off < frame ? n - off : frame;
        memset(piece, 0, frame * sizeof *piece);
        memcpy(piece, pcm + off, len * sizeof *piece);
        uint8_t packet[1500];
        opus_int32 bytes = opus_encode(o->encoder, piece, (int)frame, packet, sizeof packet);
        VbStatus status;
        if (*lost >= 0 && (size_t)*lost == i) {
            lost++;
            status = vb_session_process_opus(o->h.session, NULL, 0);
        } else if (bytes > 0) {
            status = vb_session_process_opus(o->h.session, packet, (size_t)bytes);
        } else {
            printf("    opus_encode: %d\n", (int)bytes);
            status = VB_ERR_INTERNAL;
        }
        if (status != VB_OK) {
            printf("    packet %zu: %s (%s)\n", i, vb_status_str((int32_t)status),
                   vb_last_error_message());
            ok = false;
        }
        opus_pump(o);
    }
    free(piece);
    return ok;
}

/* eSpeak NG says `text`: mono PCM at 48 kHz (espeak-ng writes 22050 Hz; linear interpolation is
 * plenty for a test). NULL when espeak-ng could not run. */
static int16_t *espeak_48k(const char *text, size_t *n)
{
    char command[256];
    snprintf(command, sizeof command, "espeak-ng -v en-gb --stdout '%s'", text);
    FILE *pipe = popen(command, "r");
    if (pipe == NULL)
        return NULL;
    size_t cap = 1 << 20, len = 0;
    unsigned char *wav = malloc(cap);
    size_t got;
    while (len < cap && (got = fread(wav + len, 1, cap - len, pipe)) > 0)
        len += got;
    int status = pclose(pipe);
    /* RIFF/WAVE, a "fmt " chunk (rate at byte 24), then "data" (its size is left open when
     * written to a pipe: the data runs to the end). */
    if (status != 0 || len < 44 || memcmp(wav, "RIFF", 4) != 0 || memcmp(wav + 36, "data", 4)) {
        free(wav);
        return NULL;
    }
    unsigned rate = wav[24] | wav[25] << 8 | wav[26] << 16 | (unsigned)wav[27] << 24;
    size_t in_n = (len - 44) / 2;
    int16_t *in = malloc(in_n * sizeof *in + 2);
    for (size_t i = 0; i < in_n; i++)
        in[i] = (int16_t)(wav[44 + 2 * i] | wav[45 + 2 * i] << 8);
    free(wav);
    *n = in_n * 48000 / rate;
    int16_t *out = malloc(*n * sizeof *out + 2);
    for (size_t i = 0; i < *n; i++) {
        double at = (double)i * rate / 48000.0;
        size_t j = (size_t)at;
        double frac = at - (double)j;
        double next = j + 1 < in_n ? in[j + 1] : in[j];
        out[i] = (int16_t)(in[j] * (1 - frac) + next * frac);
    }
    free(in);
    return out;
}

/* ---------------------------------------------------------------------------------------------
 * Case: two turns over Opus, with lost packets: eSpeak NG's speech in 20 ms packets, then a
 * 150 Hz voice in 60 ms packets; the agent's replies read as 20 ms packets and decoded.
 * ------------------------------------------------------------------------------------------- */

void case_opus_turn(void)
{
    OpusHost o = {0};
    Agent *agent = agent_new();
    agent->chunks[0] = "Hello over Opus.";
    const size_t reply_chars = strlen(agent->chunks[0]);
    size_t n_said = 0, n_voice = 0, n_quiet = 0;
    int16_t *said = espeak_48k("What time is it?", &n_said);
    int16_t *voice = speech(150.0, 1000, 48000, &n_voice);
    int16_t *quiet = silence(800, 48000, &n_quiet);
    VbBackend *backend = start_backend(BACKEND_JSON);
    REQUIRE(said != NULL); /* espeak-ng on the PATH (scripts/setup.sh installs it) */
    REQUIRE(backend != NULL);
    REQUIRE(open_opus_host(&o, backend, agent));

    /* Turn 1: speech, three packets of it lost (one, then two in a row). */
    static const int lost_speech[] = {12, 30, 31, -1}, none[] = {-1};
    CHECK(send_opus(&o, said, n_said, 960, lost_speech));
    o.h.speech_end_s = now_s();
    CHECK(send_opus(&o, quiet, n_quiet, 960, none));
    CHECK(opus_wait_until(&o, reply_played_out, 30.0));
    opus_settle(&o, 0.2);
    REQUIRE(o.h.counts[VB_EVENT_TRANSCRIPT_FINAL] == 1);
    size_t first_reply = o.reply_len;
    /* The tone's frequency away from the reply's edges (the codec's ramp, the padded end). */
    REQUIRE(first_reply > 4 * 960);
    double first_hz = tone_hz(o.reply + 2 * 960, first_reply - 4 * 960, 48000);
    unsigned said_ms = 0;
    printf("    turn 1 (%zu ms of eSpeak NG speech, 3 packets lost): \"%s\"; reply %zu packets, "
           "%zu samples, tone %.0f Hz\n",
           n_said / 48, o.h.finals[0], o.packets_read, o.reply_len, first_hz);
    CHECK(sscanf(o.h.finals[0], "pitch %*u hz for %u ms", &said_ms) == 1);
    CHECK(said_ms >= 400 && said_ms <= 2500); /* the sentence was heard as one turn */

    /* Reply audio: 16 characters x 20 ms = 320 ms = 15360 samples of a 440 Hz tone at 48 kHz,
     * in whole 20 ms packets (the last one completed with silence). */
    size_t expected = reply_chars * 20 * 48;
    CHECK(o.reply_nonzero > expected / 2);
    CHECK(first_reply >= expected * 95 / 100 && first_reply <= expected * 110 / 100);
    CHECK(first_hz > 420 && first_hz < 460);

    /* Turn 2: a 150 Hz voice in 60 ms packets, one of them lost: the pitch survives the codec
     * and the concealment. */
    static const int lost_voice[] = {5, -1};
    o.h.was_speaking = o.h.spoke_and_listens = false;
    CHECK(send_opus(&o, voice, n_voice, 2880, lost_voice));
    CHECK(send_opus(&o, quiet, n_quiet, 2880, none));
    CHECK(opus_wait_until(&o, got_second_final, 30.0));
    CHECK(opus_wait_until(&o, reply_played_out, 30.0));
    opus_settle(&o, 0.2);
    printf("    turn 2 (150 Hz in 60 ms packets, 1 lost): \"%s\"; %zu reply samples in all\n",
           o.h.finals[1], o.reply_len);
    CHECK(strncmp(o.h.finals[1], "pitch 150 hz", 12) == 0);
    CHECK(o.reply_len - first_reply >= expected * 95 / 100);
    CHECK(o.reply_len - first_reply <= expected * 110 / 100);

    CHECK(o.h.counts[VB_EVENT_AGENT_RESPONSE] == 2);
    CHECK(strcmp(o.h.responses[0], "Hello over Opus.") == 0);
    CHECK(o.h.counts[VB_EVENT_ERROR] == 0);
    CHECK(o.h.counts[VB_EVENT_AUDIO_DROPPED] == 0);
    CHECK(o.h.bad_events == 0);
    CHECK(o.h.call_failures == 0);
    CHECK(atomic_load(&agent->calls) == 2);
    CHECK(atomic_load(&agent->failed_calls) == 0);

done:
    close_opus_host(&o);
    vb_backend_free(backend);
    agent_free(agent);
    free(said);
    free(voice);
    free(quiet);
}

/* ---------------------------------------------------------------------------------------------
 * Case: the Opus calls' bad input: codecs at create, the call of the other codec, NULLs, a
 * packet that does not decode (nothing queued), a buffer too small (the packet kept).
 * ------------------------------------------------------------------------------------------- */

/* Frames the backend's realtime loops processed so far. */
static uint64_t frames_processed(VbBackend *backend)
{
    VbHealth health;
    CHECK_STATUS(vb_backend_health(backend, &health), VB_OK);
    return health.frames_processed;
}

void case_opus_bad_input(void)
{
    VbSession *pcm = NULL, *opus = NULL, *session = SENTINEL;
    OpusDecoder *decoder = NULL;
    Agent *agent = agent_new();
    VbCallbacks callbacks = {agent, agent_on_transcript, NULL};
    VbBackend *backend = start_backend(BACKEND_JSON);
    REQUIRE(backend != NULL);

    /* Codecs are checked at create, naming the key. */
    CHECK_STATUS(vb_session_create(backend, "{\"input_codec\":\"mp3\"}", &callbacks, &session),
                 VB_ERR_INVALID_CONFIG);
    CHECK_MESSAGE_HAS("input_codec");
    CHECK_MESSAGE_HAS("`pcm`");
    CHECK_MESSAGE_HAS("`opus`");
    CHECK_STATUS(vb_session_create(backend,
                                   "{\"output_codec\":\"opus\",\"output_sample_rate\":44100}",
                                   &callbacks, &session),
                 VB_ERR_INVALID_CONFIG);
    CHECK_MESSAGE_HAS("output_sample_rate: 44100 is not a rate Opus runs at");
    CHECK_STATUS(vb_session_create(backend, "{\"opus_bitrate\":24000}", &callbacks, &session),
                 VB_ERR_INVALID_CONFIG);
    CHECK_MESSAGE_HAS("opus_bitrate: only used with output_codec \"opus\"");
    CHECK(session == SENTINEL);

    /* A PCM session refuses the Opus calls, and an Opus session the PCM calls, naming the
     * key and the call to use. */
    REQUIRE_STATUS(vb_session_create(backend, NULL, &callbacks, &pcm), VB_OK);
    REQUIRE_STATUS(vb_session_create(backend, OPUS_SESSION, &callbacks, &opus), VB_OK);
    agent->session = opus;
    uint8_t packet[VB_OPUS_MAX_PACKET] = {0};
    size_t written = 12345;
    CHECK_STATUS(vb_session_process_opus(opus, NULL, 0), VB_ERR_INVALID_STATE);
    CHECK_MESSAGE_HAS("not been started");
    CHECK_STATUS(vb_session_read_opus(opus, packet, sizeof packet, &written),
                 VB_ERR_INVALID_STATE);
    REQUIRE_STATUS(vb_session_start(pcm), VB_OK);
    REQUIRE_STATUS(vb_session_start(opus), VB_OK);
    CHECK_STATUS(vb_session_process_opus(pcm, NULL, 0), VB_ERR_INVALID_STATE);
    CHECK_MESSAGE_HAS("input_codec is \"pcm\"");
    CHECK_STATUS(vb_session_read_opus(pcm, packet, sizeof packet, &written),
                 VB_ERR_INVALID_STATE);
    CHECK_MESSAGE_HAS("output_codec is \"pcm\"");
    int16_t pcm_buf[320] = {0};
    size_t accepted = 0;
    CHECK_STATUS(vb_session_process_audio(opus, pcm_buf, 320, &accepted), VB_ERR_INVALID_STATE);
    CHECK_MESSAGE_HAS("vb_session_process_opus");
    CHECK_STATUS(vb_session_read_audio(opus, pcm_buf, 320, &written), VB_ERR_INVALID_STATE);
    CHECK_MESSAGE_HAS("vb_session_read_opus");
    CHECK(written == 12345);

    /* NULLs. */
    CHECK_STATUS(vb_session_process_opus(NULL, packet, 10), VB_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("session is NULL");
    CHECK_STATUS(vb_session_process_opus(opus, NULL, 10), VB_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("packet is NULL");
    CHECK_STATUS(vb_session_read_opus(NULL, packet, sizeof packet, &written),
                 VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_session_read_opus(opus, packet, sizeof packet, NULL),
                 VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_session_read_opus(opus, NULL, 10, &written), VB_ERR_INVALID_ARGUMENT);
    CHECK(written == 12345);

    /* A packet that does not decode: refused, and nothing reaches the realtime loop (nothing
     * else was sent to this backend's sessions: it has processed no frame). */
    static const uint8_t garbage[][3] = {{0x03, 0x00, 0x00}, {0xff, 0xff, 0xff}};
    for (size_t i = 0; i < 2; i++) {
        CHECK_STATUS(vb_session_process_opus(opus, garbage[i], i == 0 ? 2 : 3),
                     VB_ERR_INVALID_ARGUMENT);
        CHECK_MESSAGE_HAS("nothing was queued");
    }
    sleep_s(0.1);
    CHECK(frames_processed(backend) == 0);
    /* A good packet (60 ms of silence) and a lost one do reach it. */
    int error = 0;
    OpusEncoder *encoder = opus_encoder_create(48000, 1, OPUS_APPLICATION_VOIP, &error);
    REQUIRE(error == OPUS_OK);
    int16_t quiet[2880] = {0};
    opus_int32 bytes = opus_encode(encoder, quiet, 2880, packet, sizeof packet);
    opus_encoder_destroy(encoder);
    REQUIRE(bytes > 0);
    CHECK_STATUS(vb_session_process_opus(opus, packet, (size_t)bytes), VB_OK);
    CHECK_STATUS(vb_session_process_opus(opus, NULL, 0), VB_OK);
    CHECK_STATUS(vb_session_process_opus(opus, packet, 0), VB_OK); /* len 0: lost, too */
    /* 60 ms decoded, 2 x 60 ms concealed (as long as the last packet): nine 20 ms frames. */
    double deadline = now_s() + 5;
    while (frames_processed(backend) < 9 && now_s() < deadline)
        sleep_s(0.01);
    sleep_s(0.05);
    CHECK(frames_processed(backend) == 9);
    VbHealth health;
    CHECK_STATUS(vb_backend_health(backend, &health), VB_OK);
    CHECK(health.media_packets_received == 1);
    CHECK(health.media_packets_lost == 2);
    CHECK(health.media_frames_concealed == 6); /* two 60 ms losses, in 20 ms frames */

    /* A buffer too small for the next packet: refused, *written untouched, the packet kept. */
    CHECK_STATUS(vb_session_say(opus, "Hi there."), VB_OK);
    VbStatus status = VB_OK;
    deadline = now_s() + 10;
    while ((status = vb_session_read_opus(opus, packet, 2, &written)) == VB_OK &&
           now_s() < deadline) {
        CHECK(written == 0);
        written = 12345;
        sleep_s(0.005);
    }
    CHECK(status == VB_ERR_INVALID_ARGUMENT);
    CHECK(written == 12345);
    CHECK(strstr(vb_last_error_message(), "kept for the next call") != NULL);
    CHECK_STATUS(vb_session_read_opus(opus, packet, 0, &written), VB_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(vb_session_read_opus(opus, packet, sizeof packet, &written), VB_OK);
    CHECK(written > 2 && written <= VB_OPUS_MAX_PACKET);
    decoder = opus_decoder_create(48000, 1, &error);
    REQUIRE(error == OPUS_OK);
    opus_int16 out[5760];
    CHECK(opus_decode(decoder, packet, (opus_int32)written, out, 5760, 0) == 960);

    /* After stop, the calls are refused. */
    CHECK_STATUS(vb_session_stop(opus), VB_OK);
    CHECK_STATUS(vb_session_process_opus(opus, NULL, 0), VB_ERR_INVALID_STATE);
    CHECK_MESSAGE_HAS("stopped");
    CHECK_STATUS(vb_session_read_opus(opus, packet, sizeof packet, &written),
                 VB_ERR_INVALID_STATE);

done:
    if (decoder != NULL)
        opus_decoder_destroy(decoder);
    vb_session_free(pcm);
    vb_session_free(opus);
    vb_backend_free(backend);
    agent_free(agent);
}
